"""Readiness to trade: what must be true on the current connection before a new order may be sent.

Four conditions, all since the current connection: market data (a `bbo` and an asset context for every
configured market), the `orderUpdates` subscription acknowledged (a fresh account never receives any
`orderUpdates` data, so the ack is the only evidence), the `userFills` snapshot received, and positions
reconciled. A disconnect starts a new *generation* with all four false.

Marks may carry the generation they were observed on; a mark for an old generation (a late answer from
a session that already ended) is ignored, so it cannot make the new connection look ready.

Every transition is a plain synchronous method and nothing here awaits: whoever needs to wait for
readiness waits on the owner's state (the engine's `wait_until`), which is re-checked after every step.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import attrs

__all__ = ["Readiness"]

log = logging.getLogger(__name__)


@attrs.frozen
class ReadinessStatistics:
    """The current generation and how far its four conditions are (markets with a bbo / a context)."""

    generation: int
    bbo: int
    ctx: int
    orders_acked: bool
    fills_snapshot: bool
    reconciled: bool


class Readiness:
    """Readiness flags for the configured `markets`, per connection generation."""

    def __init__(self, markets: Collection[str]) -> None:
        self.markets = frozenset(markets)
        self._generation = 0
        self._announced = False  # "ready to trade" logged for this generation
        self._bbo: set[str] = set()
        self._ctx: set[str] = set()
        self._orders_acked = False
        self._fills_snapshot = False
        self._reconciled = False

    # --- queries -----------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """The current connection generation (0 until the first `new_connection`)."""
        return self._generation

    @property
    def md_ready(self) -> bool:
        """A bbo and an asset context for every configured market on this connection."""
        return self._bbo >= self.markets and self._ctx >= self.markets

    @property
    def orders_acked(self) -> bool:
        """The `orderUpdates` subscription was acknowledged on this connection."""
        return self._orders_acked

    @property
    def reconciled(self) -> bool:
        """Positions and orders were reconciled with the exchange on this connection."""
        return self._reconciled

    @property
    def fills_snapshot(self) -> bool:
        """The `userFills` snapshot arrived on this connection."""
        return self._fills_snapshot

    @property
    def positions_known(self) -> bool:
        """Order stream acked, fills snapshot in and positions reconciled on this connection: enough to
        reduce positions (a flatten needs only its own market's mark, never every market's data)."""
        return self._orders_acked and self._fills_snapshot and self._reconciled

    @property
    def ready(self) -> bool:
        """All four conditions hold on this connection (what the NotReady gate reads)."""
        return self.md_ready and self._orders_acked and self._fills_snapshot and self._reconciled

    def statistics(self) -> ReadinessStatistics:
        return ReadinessStatistics(
            self._generation,
            len(self._bbo),
            len(self._ctx),
            self._orders_acked,
            self._fills_snapshot,
            self._reconciled,
        )

    def missing(self) -> list[str]:
        """What is still missing, for logs and status pages."""
        out = [f"bbo {m}" for m in sorted(self.markets - self._bbo)]
        out += [f"asset ctx {m}" for m in sorted(self.markets - self._ctx)]
        if not self._orders_acked:
            out.append("orderUpdates ack")
        if not self._fills_snapshot:
            out.append("userFills snapshot")
        if not self._reconciled:
            out.append("positions reconciled")
        return out

    # --- transitions -------------------------------------------------------------------------------

    def new_connection(self, *, orderly: bool = False) -> int:
        """Start a new generation (on connect, and on disconnect): every condition resets.

        Losing a ready connection is a WARNING; with `orderly` (the engine closed it itself, at its
        orderly stop) it is only noted, so a normal stop never reads like a reconnect in the log.
        """
        was_ready = self.ready
        self._announced = False
        self._generation += 1
        self._bbo.clear()
        self._ctx.clear()
        self._orders_acked = self._fills_snapshot = self._reconciled = False
        if was_ready and orderly:
            log.info("connection closed for the orderly stop")
        elif was_ready:
            log.warning("not ready: the connection ended; trading waits for a new connection and its sync")
        return self._generation

    on_disconnect = new_connection

    def on_bbo(self, market: str, generation: int | None = None) -> None:
        # Every bbo frame comes here: one already counted for this connection changes nothing.
        if market not in self._bbo and market in self.markets and self._current(generation):
            self._bbo.add(market)
            self._maybe_ready()

    def on_asset_ctx(self, market: str, generation: int | None = None) -> None:
        if market not in self._ctx and market in self.markets and self._current(generation):
            self._ctx.add(market)
            self._maybe_ready()

    def on_order_stream_acked(self, generation: int | None = None) -> None:
        if self._current(generation):
            self._orders_acked = True
            self._maybe_ready()

    def on_fills_snapshot(self, generation: int | None = None) -> None:
        if self._current(generation):
            self._fills_snapshot = True
            self._maybe_ready()

    def on_reconciled(self, generation: int | None = None) -> None:
        if self._current(generation):
            self._reconciled = True
            self._maybe_ready()

    # --- internals ---------------------------------------------------------------------------------

    def _current(self, generation: int | None) -> bool:
        if generation is None or generation == self._generation:
            return True
        log.debug("ignoring a readiness mark for generation %d (now %d)", generation, self._generation)
        return False

    def _maybe_ready(self) -> None:
        if self.ready and not self._announced:
            log.info("ready to trade (generation %d)", self._generation)
            self._announced = True
