"""The risk monitor: turns trading events into hard-stop triggers.

Triggers (all in `RiskConfig`):
- cumulative realised loss above $20;
- more than 5 losing trades in a row;
- more than 3 flatten failures;
- more than 10 non-benign order rejects within a rolling hour;
- slippage above 50 bps on 3 consecutive measurements.

Rejects that are a normal outcome of this strategy are benign and not counted: an IOC that found nothing
to match (the dislocation was gone), a reduce-only order that would increase the position (the position
was already flat), an order under the minimum value, and the venue's "action budget exhausted". They
are recognised by the exchange's own error strings (Hyperliquid "Error responses" docs) and the
equivalent `orderUpdates` statuses.

`on_event` is synchronous: an event is counted and, if it crosses a limit, the HardStop is latched in the
same step (atomic under Trio). The counters live in memory, but the limits count over the whole test, not
per process: at start-up, before trading, `restore` replays the risk events journaled since the hard stop
was last cleared (`risk/history.py` reads them), so a restart continues where the last run stopped. The
latch itself is persisted (`risk/hard_stop.py`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from decimal import Decimal
from typing import Final

import attrs

from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.validators import finite_decimal, ge, gt

__all__ = [
    "BENIGN_REJECT_FRAGMENTS",
    "FlattenFailed",
    "MarketEvent",
    "OrderRejected",
    "RiskConfig",
    "RiskEvent",
    "RiskHeadroom",
    "RiskMonitor",
    "SlippageMeasured",
    "TradeClosed",
    "is_benign_reject",
]

HOUR_MS: Final = 3_600_000

# Lower-cased fragments of the exchange's benign reject messages. Matched as substrings because the
# exchange decorates them: "Order 0: Reduce only order would increase position.", "... asset=10107".
BENIGN_REJECT_FRAGMENTS: Final = (
    # IocCancel: "Order could not immediately match against any resting orders."
    "could not immediately match against any resting orders",
    # ReduceOnly: "Reduce only order would increase position."
    "reduce only order would increase position",
    # MinTradeNtl: "Order must have minimum value of $10." (spot: "... of 10 {quote_token}.")
    "order must have minimum value of",
    # The venue's action budget exhausted: the whole action refused, nothing executed or spent. The
    # executor never turns it into a reject (`execution.request_budget`); listed here so it can never
    # count towards the hard stop however it arrives.
    "too many cumulative requests sent",
    # The same three as orderUpdates statuses.
    "iocCancelRejected".lower(),
    "reduceOnlyRejected".lower(),
    "minTradeNtlRejected".lower(),
)


def is_benign_reject(message: str) -> bool:
    """True if `message` is one of the expected rejects that must not count towards the reject limit."""
    text = message.lower()
    return any(fragment in text for fragment in BENIGN_REJECT_FRAGMENTS)


@attrs.frozen(kw_only=True)
class MarketEvent:
    """Base of the risk events: each is about one `market`."""

    market: str


@attrs.frozen(kw_only=True)
class TradeClosed(MarketEvent):
    """A round trip finished; `pnl` is realised and net of fees (negative = loss)."""

    pnl: Decimal


@attrs.frozen(kw_only=True)
class FlattenFailed(MarketEvent):
    """A position could not be flattened within the flatten deadline. `age_s`: how long it had been
    open (since entry, or since its first flatten when its entry time is unknown)."""

    detail: str = ""
    age_s: float | None = None


@attrs.frozen(kw_only=True)
class OrderRejected(MarketEvent):
    """The exchange rejected an order; `message` is its error string or order status."""

    message: str


@attrs.frozen(kw_only=True)
class SlippageMeasured(MarketEvent):
    """Adverse slippage of a fill against the signal's price, in bps (positive = worse than expected)."""

    bps: Decimal


RiskEvent = TradeClosed | FlattenFailed | OrderRejected | SlippageMeasured


@attrs.frozen(kw_only=True)
class RiskConfig:
    """Hard-stop limits: the config file's ``[risk]`` section. Each trips when the count or amount goes
    strictly above it (slippage: on the `slippage_strikes`-th consecutive measurement above
    `slippage_bps_limit`)."""

    # Cumulative realised loss, net of fees.
    max_loss_usd: Decimal = attrs.field(default=Decimal(20), validator=[finite_decimal, gt(0)])
    max_consecutive_losses: int = attrs.field(default=5, validator=ge(1))
    max_flatten_failures: int = attrs.field(default=3, validator=ge(0))
    # Non-benign rejects within a rolling hour.
    max_rejects_per_hour: int = attrs.field(default=10, validator=ge(0))
    slippage_bps_limit: Decimal = attrs.field(default=Decimal(50), validator=[finite_decimal, gt(0)])
    slippage_strikes: int = attrs.field(default=3, validator=ge(1))


@attrs.frozen(kw_only=True)
class RiskHeadroom:
    """How far the engine is from each hard-stop limit: the monitor's counters (since the hard stop was
    last cleared, earlier runs included) beside their limits, for the metrics and their alerting rules.
    A limit trips when its counter goes strictly above it; the loss budget when it goes below zero."""

    realized_pnl: Decimal
    loss_budget_left_usd: Decimal  # max_loss_usd + realized_pnl
    max_loss_usd: Decimal
    loss_streak: int
    max_consecutive_losses: int
    flatten_failures: int
    max_flatten_failures: int
    rejects_last_hour: int
    max_rejects_per_hour: int


@attrs.define
class RiskMonitor:
    """Counts events against `RiskConfig` and latches `hard_stop` on the first limit crossed."""

    config: RiskConfig
    hard_stop: HardStop
    realized_pnl: Decimal = Decimal(0)
    consecutive_losses: int = 0
    flatten_failures: int = 0
    slippage_streak: int = 0
    _reject_times: deque[int] = attrs.field(factory=deque, init=False)

    def rejects_in_window(self, now_ms: int) -> int:
        """Non-benign rejects within the last hour (older ones are dropped)."""
        horizon = now_ms - HOUR_MS
        while self._reject_times and self._reject_times[0] <= horizon:
            self._reject_times.popleft()
        return len(self._reject_times)

    def headroom(self, now_ms: int) -> RiskHeadroom:
        """The counters against their limits now (see `RiskHeadroom`)."""
        cfg = self.config
        return RiskHeadroom(
            realized_pnl=self.realized_pnl,
            loss_budget_left_usd=cfg.max_loss_usd + self.realized_pnl,
            max_loss_usd=cfg.max_loss_usd,
            loss_streak=self.consecutive_losses,
            max_consecutive_losses=cfg.max_consecutive_losses,
            flatten_failures=self.flatten_failures,
            max_flatten_failures=cfg.max_flatten_failures,
            rejects_last_hour=self.rejects_in_window(now_ms),
            max_rejects_per_hour=cfg.max_rejects_per_hour,
        )

    def on_event(self, event: RiskEvent, now_ms: int) -> str | None:
        """Count `event`; if it crosses a limit, latch the hard stop and return the reason, else None.

        The reason is returned every time a limit is (still) crossed, even if the latch already holds an
        earlier reason, so the caller can journal each trigger; the HardStop keeps the first.
        """
        reason = self._check(event, now_ms)
        if reason is not None:
            self.hard_stop.trigger(reason, now_ms)
        return reason

    def restore(self, history: Iterable[tuple[int, RiskEvent]]) -> str | None:
        """Continue from earlier runs: replay their risk events, each with its time in ms, oldest first.

        Call it once, on a fresh monitor, before trading. Each event goes through `on_event`, the step a
        live event takes, so the counters end where an uninterrupted run's would be. A limit that the
        history already crossed latches the hard stop here, with the reason and time of the event that
        crossed it, as the run that recorded it did. That run's latch holds anyway unless it could not be
        written or its file was removed instead of cleared. Returns the first reason crossed, or None.
        """
        first: str | None = None
        for time_ms, event in history:
            reason = self.on_event(event, time_ms)
            first = first or reason
        return first

    def _check(self, event: RiskEvent, now_ms: int) -> str | None:
        cfg = self.config
        if isinstance(event, TradeClosed):
            self.realized_pnl += event.pnl
            self.consecutive_losses = self.consecutive_losses + 1 if event.pnl < 0 else 0
            if -self.realized_pnl > cfg.max_loss_usd:
                return f"cumulative loss ${-self.realized_pnl} > ${cfg.max_loss_usd}"
            if self.consecutive_losses > cfg.max_consecutive_losses:
                return f"{self.consecutive_losses} consecutive losing trades > {cfg.max_consecutive_losses}"
        elif isinstance(event, FlattenFailed):
            self.flatten_failures += 1
            if self.flatten_failures > cfg.max_flatten_failures:
                return (
                    f"{self.flatten_failures} flatten failures > {cfg.max_flatten_failures}"
                    f" (last: {event.market})"
                )
        elif isinstance(event, OrderRejected):
            if is_benign_reject(event.message):
                return None
            self._reject_times.append(now_ms)
            count = self.rejects_in_window(now_ms)
            if count > cfg.max_rejects_per_hour:
                return (
                    f"{count} non-benign order rejects in {HOUR_MS} ms"
                    f" > {cfg.max_rejects_per_hour} (last: {event.market}: {event.message})"
                )
        else:
            self.slippage_streak = self.slippage_streak + 1 if event.bps > cfg.slippage_bps_limit else 0
            if self.slippage_streak >= cfg.slippage_strikes:
                return (
                    f"slippage > {cfg.slippage_bps_limit} bps {self.slippage_streak} times in a row"
                    f" (last: {event.market} {event.bps} bps)"
                )
        return None
