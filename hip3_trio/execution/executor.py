"""The executor: the synchronous order path from a signal to the scheduler, and back from post outcomes.

`submit_signal` applies the gates in a fixed order and returns a value naming the first that refused:
HardStop → NotReady → MaxPositionPerMarket → MaxPositionTotal → AlreadyHasPosition → PendingOrderExists
→ RequestBudget (the venue's action budget is below the reserve) → BudgetExhausted (our own new-order
rate). Caps are valued at the mark and fail closed: no mark, no order. Only when every gate passed is
a budget token taken; then the order is registered in the book (which makes its market pending) and
enqueued, in one synchronous step — if the scheduler refuses it, both are undone.

`submit_reduce_only` and `submit_cancel` reduce risk, so they skip the new-order gates (they work during
a hard stop and while not ready) but not the queue bounds.

`on_post_outcome` routes every resolved post exactly once (the post table hands each out once): reply
statuses are zipped with the batch's orders; a whole-action error rejects them all; a post that may
have executed (timeout, disconnect) makes its new orders unknown for reconciliation and
requeues reduce-only orders and cancels; a post that certainly never executed releases its new orders
and requeues the rest. The venue's "action budget exhausted" refusal (`request_budget`) is not a reject:
the action was refused whole and spent nothing, so it certainly never executed; the venue link pauses
sending (`RequestBudgetExhausted`).

Outputs go to the book's `Outbox`; the caller drains it. Nothing here awaits.

Why ~630 lines: the gates, the submission of entries, flattens and cancels, and the routing of every
resolved post are one path whose invariants (register and enqueue together, route each post once) the
tests check as a whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Final, Protocol

import attrs

from hip3_trio.execution.batch import (
    Accepted,
    Batch,
    BatchScheduler,
    CancelItem,
    EnqueueResult,
    OrderItem,
    Queued,
    QueuedReplaced,
    QueueFull,
    Refused,
)
from hip3_trio.execution.posts import Disconnected, NotSent, PostEntry, Reply, Timeout
from hip3_trio.execution.request_budget import RequestBudget as RequestBudgetState
from hip3_trio.execution.request_budget import is_budget_exhausted
from hip3_trio.position.book import PositionBook
from hip3_trio.position.records import FlattenAllRequested, OrderState, OrderSubmitted, RequestBudgetExhausted
from hip3_trio.strategy.detector import Signal
from hip3_trio.validators import NOT_IN_FILE, finite_decimal, ge, gt, lt, not_above
from hip3_trio.wire.actions import CancelByCloidWire, CancelWire, Cloid, LimitOrderType, OrderWire
from hip3_trio.wire.markets import Markets, MarketSpec
from hip3_trio.wire.messages import (
    ActionErr,
    ActionOk,
    Filled,
    PostResult,
    PostStatus,
    Resting,
    StatusError,
    TransportErr,
)
from hip3_trio.wire.numbers import DEFAULT_MIN_NOTIONAL, InvalidNumber, Rounding, check_min_notional

__all__ = [
    "AlreadyHasPosition",
    "BudgetExhausted",
    "EnqueueRefused",
    "Executor",
    "ExecutorConfig",
    "HardStopped",
    "InvalidOrder",
    "Latch",
    "MaxPositionPerMarket",
    "MaxPositionTotal",
    "NoMark",
    "NotReady",
    "PendingOrderExists",
    "ReadyFlag",
    "RequestBudget",
    "SubmitResult",
    "Submitted",
    "TokenBucket",
    "UnknownMarket",
]

log = logging.getLogger(__name__)

_COUNTER_BITS: Final = 64
_IOC: Final = LimitOrderType("Ioc")


class Latch(Protocol):
    """The hard-stop latch as the executor reads it (`risk.hard_stop.HardStop`)."""

    @property
    def latched(self) -> bool: ...


class ReadyFlag(Protocol):
    """Readiness as the executor reads it (`position.readiness.Readiness`)."""

    @property
    def ready(self) -> bool: ...


@attrs.frozen(kw_only=True)
class ExecutorConfig:
    """Position caps (USD at mark) and the new-order budget: the config file's ``[limits]`` section.

    Two more fields are not keys of that section: the minimum order value is the detector's
    (``[detector] min_notional_usd``, checked again on the rounded order), and the cloid prefix is
    chosen per process: cloids are `prefix << 64 | counter`, so a restarted process (new prefix) never
    reuses one.
    """

    max_position_per_market_usd: Decimal = attrs.field(default=Decimal(50), validator=[finite_decimal, gt(0)])
    max_position_total_usd: Decimal = attrs.field(default=Decimal(100), validator=[finite_decimal, gt(0)])
    # New-order budget: a token bucket of `order_burst` tokens refilled at `order_rate_per_s`.
    order_rate_per_s: float = attrs.field(default=0.5, validator=gt(0))
    order_burst: int = attrs.field(default=5, validator=ge(1))
    # An entry's post carries `expiresAfter` = its signal's time + this: a post delayed past its signal's
    # life is dropped by the venue instead of executing on a dislocation that is gone. Flattens and
    # cancels never expire.
    entry_expiry_s: float = attrs.field(default=3.0, validator=gt(0))
    # The venue's per-address action budget (PROTOCOL.md, Limits): below this many requests left, new
    # entries are refused (`RequestBudget`), keeping them for reduce-only orders and cancels; after the
    # venue's exhaustion error, sending pauses for its trickle interval (one action per interval).
    request_reserve: int = attrs.field(default=500, validator=ge(0))
    request_trickle_s: float = attrs.field(default=10.0, validator=gt(0))
    # Isolated leverage set on every market at start (`updateLeverage`), never above its maxLeverage.
    leverage: int = attrs.field(default=2, validator=ge(1))
    min_notional_usd: Decimal = attrs.field(
        default=DEFAULT_MIN_NOTIONAL, validator=[finite_decimal, gt(0)], metadata=NOT_IN_FILE
    )
    cloid_prefix: int = attrs.field(default=0, validator=[ge(0), lt(1 << 64)], metadata=NOT_IN_FILE)

    def __attrs_post_init__(self) -> None:
        not_above(self, "max_position_per_market_usd", "max_position_total_usd")


class TokenBucket:
    """Whole tokens, refilled one per `refill_s` seconds up to `capacity` (no float accumulation)."""

    def __init__(self, capacity: int, refill_s: float, now: float = 0.0) -> None:
        self.capacity = capacity
        self.refill_s = refill_s
        self._tokens = capacity
        self._last = now

    def available(self, now: float) -> int:
        """Tokens available at `now` (refills first)."""
        if self._tokens >= self.capacity:
            self._last = max(self._last, now)
        else:
            whole = int((now - self._last) // self.refill_s)
            if whole > 0:
                self._tokens = min(self.capacity, self._tokens + whole)
                self._last = now if self._tokens == self.capacity else self._last + whole * self.refill_s
        return self._tokens

    def try_take(self, now: float) -> bool:
        """Take one token if there is one."""
        if self.available(now) <= 0:
            return False
        self._tokens -= 1
        return True

    def give_back(self) -> None:
        """Return a token taken for an order that was then rolled back."""
        self._tokens = min(self.capacity, self._tokens + 1)


# --- results ---------------------------------------------------------------------------------------


@attrs.frozen
class Submitted(Accepted):
    """Registered in the book and queued: the order is on its way."""

    market: str
    order: OrderWire
    queued: EnqueueResult

    @property
    def cloid(self) -> Cloid:
        assert self.order.cloid is not None
        return self.order.cloid


@attrs.frozen
class HardStopped(Refused):
    """The executor is stopped (a hard stop, the persisted latch, or an orderly shutdown)."""

    reason: str


@attrs.frozen
class NotReady(Refused):
    """The engine is not ready to trade (`Readiness`)."""


@attrs.frozen
class MarketRefused(Refused):
    """Base of the refusals that name the market they are about."""

    market: str


@attrs.frozen
class UnknownMarket(MarketRefused):
    """`market` is not one of the configured markets with a spec."""


@attrs.frozen
class InvalidOrder(MarketRefused):
    """The price or size cannot be made valid (below one lot, under the minimum value, ...)."""

    reason: str


@attrs.frozen
class NoMark(MarketRefused):
    """A cap could not be checked: `market` has no mark price. Fail closed."""


@attrs.frozen
class MaxPositionPerMarket(MarketRefused):
    """The market's position (USD at mark) with the order would exceed `limit`."""

    notional: Decimal
    limit: Decimal


@attrs.frozen
class MaxPositionTotal(Refused):
    """The total position (USD at mark) with the order would exceed `limit`."""

    notional: Decimal
    limit: Decimal


@attrs.frozen
class AlreadyHasPosition(MarketRefused):
    """The market already holds a position: one at a time."""


@attrs.frozen
class PendingOrderExists(MarketRefused):
    """An order for the market is still pending: one at a time."""


@attrs.frozen
class RequestBudget(Refused):
    """The venue's action budget is below the reserve kept for flattens and cancels (or exhausted)."""

    remaining: int | None
    reserve: int


@attrs.frozen
class BudgetExhausted(Refused):
    """The new-order budget (a token bucket) is empty."""


@attrs.frozen
class EnqueueRefused(Refused):
    """The scheduler refused the order (queue full, inflight full); everything was rolled back."""

    result: EnqueueResult


SubmitResult = (
    Submitted
    | HardStopped
    | NotReady
    | UnknownMarket
    | InvalidOrder
    | NoMark
    | MaxPositionPerMarket
    | MaxPositionTotal
    | AlreadyHasPosition
    | PendingOrderExists
    | RequestBudget
    | BudgetExhausted
    | EnqueueRefused
)


def _no_inflight() -> int:
    return 0


class Executor:
    """Gates, order construction and post-outcome routing over one `PositionBook` and `BatchScheduler`.

    `marks` is the live mark price per market (updated by the market-data task); `inflight` returns the
    current post table's inflight count (posts are per connection, so it is a callable).
    """

    def __init__(
        self,
        *,
        book: PositionBook,
        scheduler: BatchScheduler,
        markets: Markets | Mapping[str, MarketSpec],
        readiness: ReadyFlag,
        latch: Latch,
        marks: Mapping[str, Decimal],
        config: ExecutorConfig | None = None,
        inflight: Callable[[], int] = _no_inflight,
        now: float = 0.0,
    ) -> None:
        self.book = book
        self.outbox = book.outbox
        self.scheduler = scheduler
        self.specs: Mapping[str, MarketSpec] = markets.by_coin if isinstance(markets, Markets) else markets
        self.readiness = readiness
        self.latch = latch
        self.marks = marks
        self.config = config if config is not None else ExecutorConfig()
        self.inflight = inflight
        self.budget = TokenBucket(self.config.order_burst, 1.0 / self.config.order_rate_per_s, now)
        self.requests = RequestBudgetState(
            reserve=self.config.request_reserve, trickle_s=self.config.request_trickle_s
        )
        self._counter = 0
        self._stop_reason: str | None = None
        self._flatten_on_stop = True

    @property
    def stopped(self) -> bool:
        """True once `hard_stop` ran or the persisted latch holds: no new positions."""
        return self._stop_reason is not None or self.latch.latched

    @property
    def flatten_everything(self) -> bool:
        """True when every position must go, whatever its age: a hard stop (or the latch), or a
        shutdown with flatten on exit. A shutdown without flatten stops entries but keeps positions."""
        return (self._stop_reason is not None and self._flatten_on_stop) or self.latch.latched

    # --- submissions -------------------------------------------------------------------------------

    def submit_signal(self, signal: Signal, now: float) -> SubmitResult:
        """Gate a signal and, if every gate passes, queue its IOC order (see the module docstring)."""
        if self.stopped:
            return HardStopped(self._stop_reason or "hard stop latched")
        if not self.readiness.ready:
            return NotReady()
        market = signal.market
        spec = self.specs.get(market)
        if spec is None or market not in self.book.markets:
            return UnknownMarket(market)
        priced = self._price_size(
            spec, is_buy=signal.is_buy, px=signal.price, sz=signal.size, reduce_only=False
        )
        if isinstance(priced, InvalidOrder):
            return priced
        refused = self._check_caps(market, priced[1])
        if refused is not None:
            return refused
        if self.book.has_position(market):
            return AlreadyHasPosition(market)
        if self.book.pending(market):
            return PendingOrderExists(market)
        if not self.requests.entries_allowed:
            return RequestBudget(self.requests.remaining, self.requests.reserve)
        if not self.budget.try_take(now):
            return BudgetExhausted()
        order = self._order(spec, priced, is_buy=signal.is_buy, reduce_only=False)
        self.book.register(
            market,
            order,
            now,
            expected_edge_bps=signal.expected_edge_bps,
            signal_px=signal.price,
            reason="entry",
        )
        expires_at_ms = signal.time_ms + round(self.config.entry_expiry_s * 1000)
        queued = self.scheduler.enqueue_new(OrderItem(market, order, expires_at_ms), self.inflight())
        if not queued.accepted:
            assert order.cloid is not None
            self.book.unregister(order.cloid)
            self.budget.give_back()
            log.warning("new order for %s refused by the scheduler: %s", market, queued)
            return EnqueueRefused(queued)
        return self._submitted(market, order, queued, "entry", now)

    def submit_reduce_only(
        self,
        market: str,
        *,
        is_buy: bool,
        size: Decimal,
        limit_px: Decimal,
        now: float,
        reason: str = "flatten",
    ) -> Submitted | UnknownMarket | InvalidOrder | EnqueueRefused:
        """Queue a reduce-only IOC (flatten). No new-order gates; the queue bound still applies.

        The price is snapped aggressively and the size floored to the lot. A reduce-only order already
        queued for the market is replaced (the newer one wins) and released in the book.
        """
        spec = self.specs.get(market)
        if spec is None or market not in self.book.markets:
            return UnknownMarket(market)
        priced = self._price_size(spec, is_buy=is_buy, px=limit_px, sz=size, reduce_only=True)
        if isinstance(priced, InvalidOrder):
            return priced
        order = self._order(spec, priced, is_buy=is_buy, reduce_only=True)
        self.book.register(market, order, now, reason=reason)
        queued = self.scheduler.enqueue_reduce_only(OrderItem(market, order))
        if isinstance(queued, QueueFull):
            assert order.cloid is not None
            self.book.unregister(order.cloid)
            return EnqueueRefused(queued)
        if isinstance(queued, QueuedReplaced) and queued.replaced.cloid is not None:
            self.book.release_unsent(queued.replaced.cloid, now, "superseded by a newer reduce-only order")
        return self._submitted(market, order, queued, reason, now)

    def submit_cancel(self, market: str, target: Cloid | int) -> Queued | QueueFull | UnknownMarket:
        """Queue a cancel by cloid or by exchange order id. No gates; the queue bound still applies."""
        spec = self.specs.get(market)
        if spec is None:
            return UnknownMarket(market)
        wire = (
            CancelByCloidWire(spec.asset, target)
            if isinstance(target, Cloid)
            else CancelWire(spec.asset, target)
        )
        return self.scheduler.enqueue_cancel(CancelItem(market, wire))

    def hard_stop(self, reason: str, now: float) -> tuple[OrderItem, ...]:
        """Stop trading: refuse new signals, drop queued new orders (releasing their markets), cancel
        resting new orders, and request flatten-all (the time stop flattens while `stopped`)."""
        if self._stop_reason is None:
            log.critical("executor hard stop: %s", reason)
        return self.stop_new_orders(reason, now, flatten=True)

    def stop_new_orders(self, reason: str, now: float, *, flatten: bool) -> tuple[OrderItem, ...]:
        """Refuse new signals from now on, drop queued new orders and cancel resting ones; with
        `flatten`, also request flatten-all. `hard_stop` is this with flatten; an orderly shutdown
        with `flatten_on_exit = false` is this without."""
        if self._stop_reason is None:
            self._stop_reason = reason
            self._flatten_on_stop = flatten
        elif flatten:
            self._flatten_on_stop = True
        dropped = self.scheduler.drop_new_orders()
        for item in dropped:
            if item.cloid is not None:
                self.book.release_unsent(item.cloid, now, f"dropped by hard stop: {reason}")
        for order in self.book.live_orders():
            if order.state is OrderState.RESTING and not order.reduce_only:
                self.submit_cancel(order.market, order.cloid)
        if flatten:
            self.outbox.emit(FlattenAllRequested(reason=reason, at=now))
        return dropped

    def enforce_latch(self, now: float) -> bool:
        """Run `hard_stop` once if the persisted latch holds but `hard_stop` has not run yet (the risk
        monitor latched it, or it was loaded latched at start-up). Called every second by the time stop,
        so queued new orders are dropped even if nobody called `hard_stop`. True if it ran now."""
        if self._stop_reason is not None or not self.latch.latched:
            return False
        self.hard_stop("hard stop latched", now)
        return True

    # --- post lifecycle ----------------------------------------------------------------------------

    def on_batch_sent(self, batch: Batch, now: float) -> None:
        """The sender marked the batch's post sent: its orders are `sent`."""
        for item in batch.order_items:
            if item.cloid is not None:
                self.book.mark_sent(item.cloid, now)

    def on_post_outcome(self, entry: PostEntry[PostResult], now: float) -> None:
        """Route one resolved post to the book and the scheduler (call once per resolved entry)."""
        outcome = entry.outcome
        if outcome is None:
            raise ValueError(f"post {entry.post_id} is not resolved")
        batch = entry.batch
        payload = outcome.payload if isinstance(outcome, Reply) else None
        if isinstance(payload, ActionErr) and is_budget_exhausted(payload.message):
            self._budget_exhausted(entry, payload.message, now)
            return
        if batch.kind == "cancel":
            self._route_cancel_outcome(entry, now)
            return
        if isinstance(outcome, Reply):
            payload = outcome.payload
            if isinstance(payload, ActionOk):
                self._route_statuses(batch.order_items, payload.statuses, now)
            elif isinstance(payload, ActionErr):
                for item in batch.order_items:
                    self._on_status(item, StatusError(f"action error: {payload.message}"), now)
            elif isinstance(payload, TransportErr):
                self._never_executed(batch, now, f"transport error: {payload.message}")
            else:
                self._route_statuses(batch.order_items, (), now)
        elif isinstance(outcome, NotSent):
            self._never_executed(batch, now, "not sent")
        elif isinstance(outcome, Timeout | Disconnected):
            self._maybe_executed(batch, now, type(outcome).__name__.lower())

    def _budget_exhausted(self, entry: PostEntry[PostResult], message: str, now: float) -> None:
        """The whole action was refused for the budget: it never executed and spent nothing. Reduce-only
        orders and cancels go back to the front of their queues, new orders are released; sending
        pauses (`RequestBudgetExhausted` → `requests.on_exhausted`)."""
        batch = entry.batch
        self.requests.on_exhausted(now)
        if batch.kind == "cancel":
            self.scheduler.requeue_front(batch)
        else:
            self._never_executed(batch, now, "action budget exhausted")
        self.outbox.emit(
            RequestBudgetExhausted(message=message, kind=batch.kind, items=len(batch.items), at=now)
        )

    # --- internals ---------------------------------------------------------------------------------

    def _price_size(
        self, spec: MarketSpec, *, is_buy: bool, px: Decimal, sz: Decimal, reduce_only: bool
    ) -> tuple[Decimal, Decimal] | InvalidOrder:
        """An IOC's price (snapped aggressively: buy up, sell down) and size (floored to the lot)."""
        try:
            price = spec.price(px, Rounding.for_order(is_buy=is_buy, aggressive=True))
            size = spec.size(sz)
            if not reduce_only:
                check_min_notional(price, size, self.config.min_notional_usd)
        except InvalidNumber as exc:
            return InvalidOrder(spec.coin, str(exc))
        return price, size

    def _order(
        self, spec: MarketSpec, priced: tuple[Decimal, Decimal], *, is_buy: bool, reduce_only: bool
    ) -> OrderWire:
        """The order, built once, with the next cloid (only orders that passed every gate take one)."""
        price, size = priced
        return OrderWire(
            asset=spec.asset,
            is_buy=is_buy,
            limit_px=price,
            sz=size,
            reduce_only=reduce_only,
            order_type=_IOC,
            cloid=self._next_cloid(),
        )

    def _check_caps(
        self, market: str, size: Decimal
    ) -> NoMark | MaxPositionPerMarket | MaxPositionTotal | None:
        mark = self.marks.get(market)
        if mark is None:
            return NoMark(market)
        adding = size * mark
        cfg = self.config
        in_market = self.book.notional(market, mark) + adding
        if in_market > cfg.max_position_per_market_usd:
            return MaxPositionPerMarket(market, in_market, cfg.max_position_per_market_usd)
        held = self.book.total_notional(self.marks)
        if held is None:  # an exposed market without a mark: fail closed, naming it
            return NoMark(next(m for m in self.book.exposed_markets() if self.marks.get(m) is None))
        total = adding + held
        if total > cfg.max_position_total_usd:
            return MaxPositionTotal(total, cfg.max_position_total_usd)
        return None

    def _next_cloid(self) -> Cloid:
        self._counter += 1
        if self._counter >= 1 << _COUNTER_BITS:
            raise OverflowError("cloid counter exhausted")
        return Cloid.from_int(self.config.cloid_prefix << _COUNTER_BITS | self._counter)

    def _submitted(
        self, market: str, order: OrderWire, queued: EnqueueResult, reason: str, now: float
    ) -> Submitted:
        assert order.cloid is not None
        self.outbox.emit(
            OrderSubmitted(
                cloid=order.cloid,
                market=market,
                is_buy=order.is_buy,
                price=order.limit_px,
                size=order.sz,
                reduce_only=order.reduce_only,
                reason=reason,
                at=now,
            )
        )
        return Submitted(market, order, queued)

    def _route_statuses(
        self, items: tuple[OrderItem, ...], statuses: tuple[PostStatus, ...], now: float
    ) -> None:
        if len(statuses) != len(items):
            log.warning(
                "post reply has %d statuses for %d orders; unmatched orders are unknown",
                len(statuses),
                len(items),
            )
        for index, item in enumerate(items):
            status = statuses[index] if index < len(statuses) else None
            self._on_status(item, status, now)

    def _on_status(self, item: OrderItem, status: PostStatus | None, now: float) -> None:
        cloid = item.cloid
        if cloid is None:
            return
        if isinstance(status, Filled):
            self.book.on_reply_filled(cloid, status, now)
        elif isinstance(status, Resting):
            self.book.on_reply_resting(cloid, status, now)
        elif isinstance(status, StatusError):
            self.book.on_reply_error(cloid, status.message, now)
        else:
            self.book.mark_unknown(cloid, now, f"post reply status {status!r:.80}")

    def _requeue(
        self, batch: Batch, now: float, detail: str, *, executed_maybe: bool
    ) -> tuple[OrderItem, ...]:
        """Requeue the batch's reduce-only orders and cancels; returns its new orders (handed back).

        A reduce-only order the exchange already settled (its order update or fill arrived before the
        post's reply was lost) is not requeued: its fate is known, and sending its cloid again would ask
        the venue to execute a filled order twice."""
        settled = {
            item.cloid
            for item in batch.order_items
            if item.reduce_only
            and item.cloid is not None
            and (order := self.book.order(item.cloid)) is not None
            and order.state.is_terminal
        }
        if settled:
            kept = tuple(i for i in batch.order_items if i.cloid not in settled)
            log.info("not requeueing settled reduce-only order(s): %s", ", ".join(map(str, settled)))
            if not kept:
                return ()
            batch = Batch(batch.kind, kept)
        result = self.scheduler.requeue_front(batch)
        superseded = {i.cloid for i in result.superseded}
        for item in batch.order_items:
            if not item.reduce_only or item.cloid is None:
                continue
            if item.cloid not in superseded:
                self.book.requeued(item.cloid, now, f"requeued after {detail}")
            elif executed_maybe:
                self.book.mark_unknown(item.cloid, now, f"{detail}; superseded")
            else:
                self.book.release_unsent(item.cloid, now, f"{detail}; superseded")
        return result.handed_back

    def _never_executed(self, batch: Batch, now: float, detail: str) -> None:
        for item in self._requeue(batch, now, detail, executed_maybe=False):
            if item.cloid is not None:
                self.book.release_unsent(item.cloid, now, detail)

    def _maybe_executed(self, batch: Batch, now: float, detail: str) -> None:
        for item in self._requeue(batch, now, detail, executed_maybe=True):
            if item.cloid is not None:
                self.book.mark_unknown(item.cloid, now, detail)

    def _route_cancel_outcome(self, entry: PostEntry[PostResult], now: float) -> None:
        outcome = entry.outcome
        batch = entry.batch
        if isinstance(outcome, Reply):
            payload = outcome.payload
            if isinstance(payload, ActionOk):
                for item, status in zip(batch.cancel_items, payload.statuses, strict=False):
                    if isinstance(status, StatusError):
                        log.info("cancel on %s refused: %s", item.market, status.message)
                return
            if isinstance(payload, ActionErr):
                log.error("cancel action of post %d refused: %s", entry.post_id, payload.message)
                return
        self.scheduler.requeue_front(batch)
        log.info("cancel post %d requeued after %s", entry.post_id, type(outcome).__name__)
