"""The venue's own account of each position, followed through its fills: what a position the book
learns only by reconciliation (after a restart, a lost entry reply, a wrong wipe) is dated and
accounted from, and what the journal remembers of our entry orders (`EntryHint`) to fill in the rest.

Each fill carries the venue's position before it (`startPosition`), so the fills seen — the `userFills`
snapshot of a connect and the live ones, each once — tell when the current position opened, at what
price, with which fees and by which of our orders, as long as they reach back to that opening.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import attrs

from hip3_trio.position.orders import TrackedOrder
from hip3_trio.position.positions import Position, apply_venue_fill, open_position
from hip3_trio.wire.actions import Cloid
from hip3_trio.wire.messages import Fill

__all__ = ["EntryHint", "FillLedger"]


@attrs.frozen
class EntryHint:
    """What the journal remembers of one of our entry orders, for positions the book learns about only
    from the venue (after a restart): the signal's expected edge and price, and when it was submitted
    (exchange ms), the last resort for a position's age when no fill dates it."""

    market: str
    submitted_ms: int
    expected_edge_bps: Decimal | None = None
    signal_px: Decimal | None = None


class FillLedger:
    """Per market, the position as the venue's fills tell it, with its opening fill's time, fees and
    cloid; absent where the fills seen do not reach back to the position's opening. `hints` (shared with
    the book, filled at start-up from the journal) names the signal of an opening order no longer
    tracked."""

    def __init__(self, hints: Mapping[Cloid, EntryHint]) -> None:
        self.hints = hints
        self._positions: dict[str, Position] = {}

    def position(self, market: str) -> Position | None:
        return self._positions.get(market)

    def on_fill(self, fill: Fill, order: TrackedOrder | None, now: float) -> None:
        """Follow the venue's position of `fill.coin` through its own fills (live and snapshot, each
        once): a fill from flat opens it, a fill that continues the ledger's size extends it (through
        `apply_fill`, so flips split as they do in the book), any gap makes it unknown until the next
        opening. This is what a position learned by reconciliation is dated and accounted from."""
        market, start = fill.coin, fill.start_position
        signed = fill.sz if fill.is_buy else -fill.sz
        current = self._positions.get(market)
        if start == 0:
            current = None
        elif current is None or current.size != start:
            self._positions.pop(market, None)
            end = start + signed
            if end == 0 or (end > 0) == (start > 0):
                return  # a gap: the fills seen do not reach back to this position's opening
            # A flip: the remainder opens here, with its share of the fee.
            rest_fee = fill.fee * abs(end) / fill.sz
            self._positions[market] = self._open(market, end, fill, rest_fee, order, now)
            return
        if current is None:
            self._positions[market] = self._open(market, signed, fill, fill.fee, order, now)
            return
        pos, _ = apply_venue_fill(current, fill, now, order)
        if pos is None:
            self._positions.pop(market, None)
        elif pos.size != 0 and (pos.size > 0) != (current.size > 0):
            self._positions[market] = self._with_hint(pos, fill)  # flipped: the remainder opened here
        else:
            self._positions[market] = pos

    def _open(
        self, market: str, signed: Decimal, fill: Fill, fee: Decimal, order: TrackedOrder | None, now: float
    ) -> Position:
        return self._with_hint(open_position(market, signed, fill.px, fee, now, fill.time, order), fill)

    def _with_hint(self, pos: Position, fill: Fill) -> Position:
        """Fill in a ledger position's signal data from the journal when its opening order is not
        tracked any more (a restart): the opening fill's cloid names the order."""
        if pos.entry_cloid is not None or fill.cloid is None:
            return pos
        try:
            cloid = Cloid(fill.cloid)
        except ValueError:
            return pos
        hint = self.hints.get(cloid)
        return attrs.evolve(
            pos,
            entry_cloid=cloid,
            expected_edge_bps=hint.expected_edge_bps if hint is not None else None,
            signal_px=hint.signal_px if hint is not None else None,
        )
