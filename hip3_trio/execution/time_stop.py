"""Time stop and flatten: no position is held longer than `hold_s`, and flatten-all uses the same path.

Every check (about once a second) looks at each open position. One that is older than `hold_s` — or
any position at all once the executor is stopped (hard stop, shutdown: flatten-all) — gets a reduce-only
IOC for its full size, priced `flatten_slippage_bps` through its reference and rounded aggressively, so
it crosses the book; each further flatten of the same position is priced one step wider, up to
`flatten_max_slippage_bps` (a missed flatten is never simply repeated). The reference is the mark — or
the book's touch on the side the flatten takes (the best bid for a sell, the best ask for a buy) when
the book has moved through the mark: the mark lags the book, and right after a dislocation was swept a
flatten priced from the mark cannot match. Whatever the book shows, a flatten is never priced more than
`flatten_max_slippage_bps` through the mark (a thin book's touch is not a price to dump into). The size
is clamped to the live
position and floored to the lot (never rounded up), and is what remains once fills already announced by
post replies are counted.

At most one flatten is live per market: while one is queued, sent or resting, the check waits (a queued
one that no longer fits the position — reconciliation flipped or shrank it — is replaced). A
flatten that is rejected or fills only partly is no longer live, so the next check sends the remainder.
If a market is still not flat `flatten_fail_after_s` after its entry, a `FlattenFailed` event goes
to the risk monitor — again each further deadline — and retries continue.

`check(now)` is synchronous; the app's time-stop task calls it (through the engine, which drains the
outbox after it) every `check_interval_s`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Final, Protocol

import attrs

from hip3_trio.execution.executor import Executor, Submitted
from hip3_trio.position.book import PositionBook
from hip3_trio.position.orders import TrackedOrder
from hip3_trio.position.records import FlattenFailed, OrderState
from hip3_trio.validators import NOT_IN_FILE, Invalid, finite_decimal, gt, le
from hip3_trio.wire.numbers import InvalidNumber, clamp_reduce_only_size

__all__ = ["TimeStop", "TimeStopConfig", "Touch"]

log = logging.getLogger(__name__)

BPS: Final = Decimal(10_000)


@attrs.frozen(kw_only=True)
class TimeStopConfig:
    """How long a position may live, how it is flattened, and what happens on exit: the config file's
    ``[time_stop]`` section. The engine's orderly stop reads `flatten_on_exit` and `exit_deadline_s`."""

    hold_s: float = attrs.field(default=30.0, validator=gt(0))
    # Price limit of the reduce-only IOC through its reference (the mark, or the touch when the book has
    # moved through the mark): wide enough to fill through a thin book.
    flatten_slippage_bps: Decimal = attrs.field(
        default=Decimal(50), validator=[finite_decimal, gt(0), le(Decimal(5000))]
    )
    # Each further flatten of one position is priced one flatten_slippage_bps step wider, up to this;
    # and no flatten, whatever the book shows, is priced further than this through the mark.
    flatten_max_slippage_bps: Decimal = attrs.field(
        default=Decimal(500), validator=[finite_decimal, gt(0), le(Decimal(5000))]
    )
    # A position still open this long after its time stop counts as a flatten failure (risk monitor).
    flatten_fail_after_s: float = attrs.field(default=60.0, validator=gt(0))
    flatten_on_exit: bool = True
    # On SIGINT/SIGTERM/duration: how long to wait for flatten replies and the journal before exiting.
    exit_deadline_s: float = attrs.field(default=10.0, validator=gt(0))
    # How often the time stop checks (not a file key: tests and benchmarks shorten it).
    check_interval_s: float = attrs.field(default=1.0, validator=gt(0), metadata=NOT_IN_FILE)

    def __attrs_post_init__(self) -> None:
        if self.flatten_max_slippage_bps < self.flatten_slippage_bps:
            raise Invalid(
                f"flatten_max_slippage_bps ({self.flatten_max_slippage_bps}) must not be below "
                f"flatten_slippage_bps ({self.flatten_slippage_bps})"
            )


class Touch(Protocol):
    """A market's best bid and ask prices from its latest `bbo` (None: that side is empty); the
    detector's `BookTop` is one."""

    @property
    def bid_px(self) -> Decimal | None: ...

    @property
    def ask_px(self) -> Decimal | None: ...


@attrs.frozen
class TimeStopStatistics:
    """Markets being flattened, with a flatten failure reported, and with flatten attempts counted."""

    flattening: int
    failed: int
    attempts: int


class TimeStop:
    """Flattens aged positions (all positions once the executor is stopped) through the executor."""

    def __init__(
        self,
        *,
        book: PositionBook,
        executor: Executor,
        marks: Mapping[str, Decimal],
        touch: Callable[[str], Touch | None] = lambda market: None,
        config: TimeStopConfig | None = None,
    ) -> None:
        self.book = book
        self.executor = executor
        self.marks = marks
        self.touch = touch  # a market's current best bid/ask, if known (the core: the detector's books)
        self.config = config if config is not None else TimeStopConfig()
        self._flattening_since: dict[str, float] = {}
        self._failed_at: dict[str, float] = {}
        self._attempts: dict[str, int] = {}  # flattens sent for the market's current position
        self._flatten_all = False

    def flatten_all(self, now: float) -> list[Submitted]:
        """Flatten every position from now on, whatever its age (hard stop, shutdown)."""
        self._flatten_all = True
        return self.check(now)

    def flattening(self, market: str) -> float | None:
        """When the current flatten of `market` started, or None."""
        return self._flattening_since.get(market)

    def statistics(self) -> TimeStopStatistics:
        return TimeStopStatistics(len(self._flattening_since), len(self._failed_at), len(self._attempts))

    def check(self, now: float) -> list[Submitted]:
        """One pass: book housekeeping, the hard-stop latch, then a flatten for every due position that
        has no live one."""
        self.book.check(now)
        self.executor.enforce_latch(now)
        everything = self._flatten_all or self.executor.flatten_everything
        sent: list[Submitted] = []
        for market in sorted(self.book.markets):
            pos = self.book.position(market)
            if pos is None or pos.size == 0:
                self._flattening_since.pop(market, None)
                self._failed_at.pop(market, None)
                self._attempts.pop(market, None)
                continue
            if not everything and now - pos.entry_time < self.config.hold_s:
                continue
            first_flatten = self._flattening_since.setdefault(market, now)
            # The plan's deadline runs from entry; a position of unknown age (learned by reconciliation
            # with nothing to date it) is measured from its first flatten instead.
            since = pos.entry_time if math.isfinite(pos.entry_time) else first_flatten
            self._check_deadline(market, since, now)
            if self.book.in_doubt(market):
                continue  # evidence says the book is wrong here: flatten what reconciliation finds
            live = self.book.live_flatten(market)
            if live is not None and not self._outdated(live, pos.size):
                continue
            result = self._flatten(market, pos.size, now, "flatten_all" if everything else "time_stop")
            if result is not None:
                sent.append(result)
        return sent

    def _flatten(self, market: str, size: Decimal, now: float, reason: str) -> Submitted | None:
        expected = self.book.expected_size(market)
        if expected == 0 or (expected > 0) != (size > 0):
            return None  # replies already announced the fills that flatten it; wait for them
        mark = self.marks.get(market)
        if mark is None:
            log.error("cannot flatten %s: no mark price", market)
            return None
        is_buy = size < 0
        try:
            qty = clamp_reduce_only_size(abs(expected), abs(size), self.executor.specs[market].sz_decimals)
        except InvalidNumber as exc:
            log.error("cannot flatten %s of %s: %s", size, market, exc)
            return None
        attempts = self._attempts.get(market, 0)
        slippage = self.slippage_bps(attempts)
        reference, px = self.limit_price(market, mark, is_buy=is_buy, slippage_bps=slippage)
        result = self.executor.submit_reduce_only(
            market, is_buy=is_buy, size=qty, limit_px=px, now=now, reason=reason
        )
        if not isinstance(result, Submitted):
            log.error("flatten of %s refused: %s", market, result)
            return None
        self._attempts[market] = attempts + 1
        log.info(
            "flatten %s: %s %s @ %s (%s bps through %s %s, mark %s, attempt %d)",
            market,
            "buy" if is_buy else "sell",
            qty,
            result.order.limit_px,
            slippage,
            "the mark" if reference == mark else "the touch",
            reference,
            mark,
            attempts + 1,
        )
        return result

    def limit_price(
        self, market: str, mark: Decimal, *, is_buy: bool, slippage_bps: Decimal
    ) -> tuple[Decimal, Decimal]:
        """(reference, limit price before rounding) of a flatten: `slippage_bps` through the more
        aggressive of the mark and the touch the flatten takes, and never further than
        `flatten_max_slippage_bps` through the mark."""
        touch = self.touch(market)
        cap = self.config.flatten_max_slippage_bps
        if is_buy:
            ask = touch.ask_px if touch is not None else None
            reference = mark if ask is None or ask <= mark else ask
            return reference, min(reference * (BPS + slippage_bps) / BPS, mark * (BPS + cap) / BPS)
        bid = touch.bid_px if touch is not None else None
        reference = mark if bid is None or bid >= mark else bid
        return reference, max(reference * (BPS - slippage_bps) / BPS, mark * (BPS - cap) / BPS)

    def slippage_bps(self, attempts: int) -> Decimal:
        """How far through the mark the next flatten is priced after `attempts` that did not flatten the
        position: one more `flatten_slippage_bps` step each time, up to `flatten_max_slippage_bps`. A
        flatten that missed (no liquidity within its limit, a mark frozen by a market-data outage) is
        never simply repeated."""
        cfg = self.config
        return min(cfg.flatten_slippage_bps * (attempts + 1), cfg.flatten_max_slippage_bps)

    def _outdated(self, live: TrackedOrder, size: Decimal) -> bool:
        """A queued flatten that no longer fits the position (reconciliation changed its sign or shrank
        it) is replaced by a new one; once sent, it is left to the venue to answer."""
        if live.state is not OrderState.QUEUED:
            return False
        return live.is_buy == (size > 0) or live.size > abs(size)

    def _check_deadline(self, market: str, since: float, now: float) -> None:
        """A `FlattenFailed` once the position is `flatten_fail_after_s` old and again each further
        deadline, while retries go on (the plan: not flat 60 s after entry → alert, keep flattening)."""
        last = self._failed_at.get(market, since)
        if now - last >= self.config.flatten_fail_after_s:
            self._failed_at[market] = now
            age = now - since
            detail = f"not flat {age:.0f} s after entry (size {self.book.size(market)})"
            log.error("flatten failed on %s: %s", market, detail)
            self.book.outbox.emit(FlattenFailed(market=market, detail=detail, age_s=age))
