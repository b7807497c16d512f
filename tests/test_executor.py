"""Executor: gate order, fail-closed caps, the budget, atomic submit/rollback, order shape, post outcomes."""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

import pytest

from hip3_trio.execution.batch import (
    BatchConfig,
    BatchScheduler,
    CancelItem,
    InflightFull,
    QueueFull,
    QueueKind,
)
from hip3_trio.execution.executor import (
    AlreadyHasPosition,
    BudgetExhausted,
    EnqueueRefused,
    Executor,
    ExecutorConfig,
    HardStopped,
    InvalidOrder,
    MaxPositionPerMarket,
    MaxPositionTotal,
    NoMark,
    NotReady,
    PendingOrderExists,
    Submitted,
    TokenBucket,
    UnknownMarket,
)
from hip3_trio.execution.posts import PostEntry, PostTable
from hip3_trio.position.book import PositionBook
from hip3_trio.position.records import (
    FlattenAllRequested,
    OrderRejected,
    OrderState,
    OrderSubmitted,
    Outbox,
)
from hip3_trio.strategy.detector import Signal
from hip3_trio.wire.actions import CancelByCloidWire, CancelWire, Cloid, LimitOrderType
from hip3_trio.wire.messages import (
    ActionErr,
    ActionOk,
    Filled,
    PostResult,
    Resting,
    StatusError,
    TransportErr,
    UnknownPostStatus,
)
from tests.test_position_book import (
    MARKETS,
    SPECS,
    A,
    B,
    C,
    D,
    Flags,
    fill,
    of_type,
    pending_markets,
    user_fills,
)

PREFIX = 0xABC


def signal(market: str = A, *, is_buy: bool = True, price: str = "10", size: str = "2") -> Signal:
    px = D(price)
    return Signal(
        market=market,
        is_buy=is_buy,
        price=px,
        size=D(size),
        expected_edge_bps=D(12),
        cost_bps=D("9.5"),
        fee_bps=D("1.25"),
        oracle_px=px,
        mark_px=px,
        best_px=px,
        mid_px=px,
        book_time_ms=0,
        oracle_time_ms=0,
        time_ms=0,
    )


class Touch(NamedTuple):
    """A best bid/ask as the time stop reads it (`execution.time_stop.Touch`)."""

    bid_px: Decimal | None
    ask_px: Decimal | None


class Rig:
    """An executor over a fresh book and scheduler, ready, with marks A=10, B=20, C=5."""

    def __init__(self, sched: BatchConfig | None = None, **config: object) -> None:
        self.flags = Flags()
        self.book = PositionBook(MARKETS, Outbox())
        self.scheduler = BatchScheduler(sched)
        self.marks: dict[str, Decimal] = {A: D(10), B: D(20), C: D(5)}
        self.touches: dict[str, Touch] = {}  # the time stop's best bid/ask per market (none: the mark)
        self.inflight = 0
        self.posts: PostTable[PostResult] = PostTable()
        self.executor = Executor(
            book=self.book,
            scheduler=self.scheduler,
            markets=SPECS,
            readiness=self.flags,
            latch=self.flags,
            marks=self.marks,
            config=ExecutorConfig(cloid_prefix=PREFIX, **config),  # type: ignore[arg-type]
            inflight=lambda: self.inflight,
        )

    def submit(self, sig: Signal | None = None, now: float = 0.0) -> Submitted:
        result = self.executor.submit_signal(sig if sig is not None else signal(), now)
        assert isinstance(result, Submitted), result
        return result

    def reduce_only(self, market: str = A, *, size: str = "1", now: float = 0.0) -> Submitted:
        result = self.executor.submit_reduce_only(market, is_buy=False, size=D(size), limit_px=D(9), now=now)
        assert isinstance(result, Submitted), result
        return result

    def send(self, *, sent: bool = True) -> PostEntry[PostResult]:
        """Take the next batch and post it (marking it sent unless `sent` is False)."""
        batch = self.scheduler.tick(self.inflight)
        assert batch is not None
        entry = self.posts.create(batch, nonce=1, now=0.0)
        if sent:
            marked = self.posts.mark_sent(entry.post_id, 0.0)
            assert isinstance(marked, PostEntry)
            self.executor.on_batch_sent(batch, 0.0)
            return marked
        return entry

    def reply(self, entry: PostEntry[PostResult], payload: PostResult) -> None:
        resolved = self.posts.resolve(entry.post_id, payload, 1.0)
        assert isinstance(resolved, PostEntry)
        self.executor.on_post_outcome(resolved, 1.0)

    def state(self, cloid: Cloid) -> OrderState:
        order = self.book.order(cloid)
        assert order is not None
        return order.state


# --- gates --------------------------------------------------------------------------------------


def test_gates_apply_in_the_documented_order() -> None:
    rig = Rig(order_burst=1, order_rate_per_s=0.1)
    # A holds $20 and a live order; B holds $60 (over the per-market cap on its own); the budget is spent.
    rig.book.on_user_fills(user_fills(fill(A, sz="2", px="10"), fill(B, sz="3", px="20")), 0.0)
    rig.submit(signal(C, price="5", size="2"))
    live = rig.reduce_only(A)
    rig.flags.latched = True
    rig.flags.ready = False
    big = signal(A, size="4")  # +$40 on A's $20
    ex = rig.executor
    assert isinstance(ex.submit_signal(big, 1.0), HardStopped)
    rig.flags.latched = False
    assert isinstance(ex.submit_signal(big, 1.0), NotReady)
    rig.flags.ready = True
    assert ex.submit_signal(big, 1.0) == MaxPositionPerMarket(A, D(60), D(50))
    small = signal(A, size="1")  # $30 on A, but the total is 20 + 60 + 10 (C's order) + 10 = 100 + ...
    rig.book.on_user_fills(user_fills(fill(B, sz="0.05", px="20")), 1.0)
    assert ex.submit_signal(small, 1.0) == MaxPositionTotal(D(101), D(100))
    rig.book.on_user_fills(user_fills(fill(B, sz="3.05", px="20", is_buy=False)), 1.0)
    assert ex.submit_signal(small, 1.0) == AlreadyHasPosition(A)
    rig.book.on_user_fills(user_fills(fill(A, sz="2", px="10", is_buy=False)), 1.0)
    assert ex.submit_signal(small, 1.0) == PendingOrderExists(A)
    rig.book.on_reply_error(live.cloid, "Reduce only order would increase position.", 1.0)
    assert ex.submit_signal(small, 1.0) == BudgetExhausted()
    assert isinstance(ex.submit_signal(small, 11.0), Submitted)


def test_caps_fail_closed_without_a_mark() -> None:
    rig = Rig()
    del rig.marks[A]
    assert rig.executor.submit_signal(signal(A), 0.0) == NoMark(A)
    rig.marks[A] = D(10)
    rig.book.on_user_fills(user_fills(fill(C, sz="2", px="5")), 0.0)
    del rig.marks[C]  # another market with exposure has no mark: the total cannot be known
    assert rig.executor.submit_signal(signal(A), 0.0) == NoMark(C)


def test_caps_count_pending_new_orders_at_mark() -> None:
    rig = Rig()
    rig.submit(signal(A, size="4.5"))  # $45 pending on A
    rig.submit(signal(B, size="2.5"))  # $50 pending on B
    assert rig.executor.submit_signal(signal(C, price="5", size="2"), 0.0) == MaxPositionTotal(D(105), D(100))


def test_the_budget_is_consumed_only_when_every_gate_passed() -> None:
    rig = Rig(order_burst=1, order_rate_per_s=1 / 60)
    rig.flags.ready = False
    for _ in range(3):
        assert isinstance(rig.executor.submit_signal(signal(), 0.0), NotReady)
    rig.flags.ready = True
    assert isinstance(rig.executor.submit_signal(signal(A, size="9"), 0.0), MaxPositionPerMarket)
    rig.submit(signal(A))
    assert rig.executor.submit_signal(signal(B, price="20"), 0.0) == BudgetExhausted()


def test_the_token_bucket_refills_whole_tokens_up_to_capacity() -> None:
    bucket = TokenBucket(capacity=2, refill_s=5.0, now=0.0)
    assert bucket.try_take(0.0) and bucket.try_take(0.0) and not bucket.try_take(4.9)
    assert bucket.available(5.0) == 1
    assert bucket.available(9.9) == 1 and bucket.available(10.0) == 2
    assert bucket.available(100.0) == 2  # no hoarding beyond capacity
    assert bucket.try_take(100.0) and bucket.available(104.9) == 1
    bucket.give_back()
    assert bucket.available(104.9) == 2


# --- submit: atomic, rolled back on refusal, order shape ----------------------------------------


def test_a_submitted_signal_is_registered_pending_and_queued_in_one_step() -> None:
    rig = Rig()
    result = rig.submit(signal(A))
    assert rig.scheduler.new_orders[0].order == result.order
    assert rig.state(result.cloid) is OrderState.QUEUED
    assert rig.book.pending(A)
    (journal,) = rig.book.outbox.drain()
    assert journal == OrderSubmitted(
        cloid=result.cloid,
        market=A,
        is_buy=True,
        price=D(10),
        size=D(2),
        reduce_only=False,
        reason="entry",
        at=0.0,
    )


@pytest.mark.parametrize("refusal", ["queue_full", "inflight_full"])
def test_a_refused_enqueue_rolls_everything_back(refusal: str) -> None:
    rig = Rig(BatchConfig(new_order_capacity=1), order_burst=2)
    if refusal == "queue_full":
        rig.submit(signal(B, price="20"))
    else:
        rig.inflight = 100
    before_tokens = rig.executor.budget.available(0.0)
    rig.book.outbox.drain()
    result = rig.executor.submit_signal(signal(A), 0.0)
    assert isinstance(result, EnqueueRefused)
    assert isinstance(result.result, QueueFull if refusal == "queue_full" else InflightFull)
    assert rig.book.orders(A) == () and not rig.book.pending(A)
    assert rig.executor.budget.available(0.0) == before_tokens
    assert rig.book.outbox.drain() == []


def test_the_order_is_an_ioc_at_the_signal_price_rounded_aggressively() -> None:
    rig = Rig()
    buy = rig.submit(signal(A, price="10.0003", size="2.009")).order
    sell = rig.submit(signal(B, is_buy=False, price="20.0007", size="1")).order
    assert (buy.limit_px, buy.sz, buy.is_buy, buy.reduce_only) == (D("10.001"), D("2"), True, False)
    assert buy.order_type == LimitOrderType("Ioc") and buy.asset == SPECS[A].asset
    assert (sell.limit_px, sell.is_buy) == (D(20), False)
    assert (buy.cloid, sell.cloid) == (Cloid.from_int(PREFIX << 64 | 1), Cloid.from_int(PREFIX << 64 | 2))


def test_orders_that_cannot_be_made_valid_are_refused() -> None:
    rig = Rig()
    assert isinstance(rig.executor.submit_signal(signal(A, size="0.001"), 0.0), InvalidOrder)
    assert isinstance(rig.executor.submit_signal(signal(A, size="0.5"), 0.0), InvalidOrder)  # $5 < $10
    assert rig.executor.submit_signal(signal("xyz:ZZZ"), 0.0) == UnknownMarket("xyz:ZZZ")
    assert rig.book.orders() == ()


# --- reduce-only and cancels -------------------------------------------------------------------


def test_reduce_only_skips_the_new_order_gates() -> None:
    rig = Rig(order_burst=1)
    rig.flags.latched = True
    rig.flags.ready = False
    del rig.marks[A]
    result = rig.reduce_only(A, size="0.999")
    assert result.order.reduce_only and result.order.sz == D("0.99")
    assert rig.scheduler.reduce_only[0].order == result.order
    assert rig.state(result.cloid) is OrderState.QUEUED


def test_reduce_only_respects_the_queue_bound_and_rolls_back() -> None:
    rig = Rig(BatchConfig(reduce_only_capacity=1))
    rig.reduce_only(A)
    result = rig.executor.submit_reduce_only(B, is_buy=True, size=D(1), limit_px=D(21), now=0.0)
    assert isinstance(result, EnqueueRefused) and result.result == QueueFull(QueueKind.REDUCE_ONLY, 1)
    assert rig.book.orders(B) == ()


def test_a_newer_reduce_only_order_replaces_the_queued_one_which_is_released() -> None:
    rig = Rig()
    old = rig.reduce_only(A, size="1")
    new = rig.reduce_only(A, size="2")
    assert rig.scheduler.reduce_only[0].order == new.order
    assert rig.state(old.cloid) is OrderState.CANCELED
    assert rig.book.live_orders(A) == (rig.book.order(new.cloid),)


def test_cancels_are_queued_by_cloid_or_oid_within_the_bound() -> None:
    rig = Rig(BatchConfig(cancel_capacity=2))
    cloid = Cloid.from_int(5)
    assert rig.executor.submit_cancel(A, cloid).accepted
    assert rig.executor.submit_cancel(A, 77).accepted
    assert rig.scheduler.cancels == (
        CancelItem(A, CancelByCloidWire(SPECS[A].asset, cloid)),
        CancelItem(A, CancelWire(SPECS[A].asset, 77)),
    )
    assert rig.executor.submit_cancel(A, 78) == QueueFull(QueueKind.CANCEL, 2)
    assert rig.executor.submit_cancel("xyz:ZZZ", 1) == UnknownMarket("xyz:ZZZ")


# --- post outcomes ------------------------------------------------------------------------------


def three_orders(rig: Rig) -> tuple[Cloid, Cloid, Cloid]:
    a = rig.submit(signal(A)).cloid
    b = rig.submit(signal(B, price="20")).cloid
    c = rig.submit(signal(C, price="5")).cloid
    return a, b, c


def test_on_batch_sent_marks_its_orders_sent() -> None:
    rig = Rig()
    a, b, c = three_orders(rig)
    rig.send()
    assert {rig.state(x) for x in (a, b, c)} == {OrderState.SENT}


def test_reply_statuses_are_zipped_with_the_batch_orders() -> None:
    rig = Rig()
    a, b, c = three_orders(rig)
    entry = rig.send()
    rig.book.outbox.drain()
    rig.reply(
        entry, ActionOk("order", (Filled(D(2), D(10), 11), Resting(12), StatusError("Insufficient margin")))
    )
    assert [rig.state(x) for x in (a, b, c)] == [OrderState.FILLED, OrderState.RESTING, OrderState.REJECTED]
    b_order = rig.book.order(b)
    assert b_order is not None and b_order.oid == 12
    assert (rig.book.pending(A), rig.book.pending(B), rig.book.pending(C)) == (False, True, False)
    assert rig.book.has_position(A)  # the reply announced the fill
    assert of_type(rig.book.outbox.drain(), OrderRejected) == [
        OrderRejected(market=C, message="Insufficient margin")
    ]


def test_a_whole_action_error_rejects_every_order_of_the_batch() -> None:
    rig = Rig()
    cloids = three_orders(rig)
    rig.reply(rig.send(), ActionErr("Invalid nonce: duplicate nonce"))
    assert {rig.state(x) for x in cloids} == {OrderState.REJECTED}
    assert not pending_markets(rig.book)
    assert len(of_type(rig.book.outbox.drain(), OrderRejected)) == 3


def test_fewer_statuses_than_orders_leaves_the_unmatched_ones_unknown() -> None:
    rig = Rig()
    a, b, c = three_orders(rig)
    rig.reply(rig.send(), ActionOk("order", (StatusError("Order has invalid size"),)))
    assert [rig.state(x) for x in (a, b, c)] == [OrderState.REJECTED, OrderState.UNKNOWN, OrderState.UNKNOWN]
    assert rig.book.pending(B) and rig.book.pending(C)


def test_an_unreadable_status_makes_its_order_unknown() -> None:
    rig = Rig()
    cloid = rig.submit().cloid
    rig.reply(rig.send(), ActionOk("order", (UnknownPostStatus({"waitingForFill": {"oid": 1}}),)))
    assert rig.state(cloid) is OrderState.UNKNOWN


def mixed_batch(rig: Rig) -> tuple[Cloid, Cloid]:
    ro = rig.reduce_only(A).cloid
    new = rig.submit(signal(B, price="20")).cloid
    return ro, new


@pytest.mark.parametrize("how", ["timeout", "disconnect"])
def test_a_post_that_may_have_executed_makes_new_orders_unknown_and_requeues_reduce_only(how: str) -> None:
    rig = Rig()
    ro, new = mixed_batch(rig)
    rig.send()
    if how == "timeout":
        (resolved,) = rig.posts.expire(10.0)
    else:
        (resolved,) = rig.posts.drain_on_disconnect(10.0)
    rig.executor.on_post_outcome(resolved, 10.0)
    assert rig.state(new) is OrderState.UNKNOWN and rig.book.pending(B)
    assert rig.state(ro) is OrderState.QUEUED
    assert [i.cloid for i in rig.scheduler.reduce_only] == [ro]
    assert rig.scheduler.new_orders == ()


def test_a_post_that_never_left_releases_new_orders_and_requeues_reduce_only() -> None:
    rig = Rig()
    ro, new = mixed_batch(rig)
    rig.send(sent=False)
    (resolved,) = rig.posts.drain_on_disconnect(1.0)
    rig.executor.on_post_outcome(resolved, 1.0)
    assert rig.state(new) is OrderState.CANCELED and not rig.book.pending(B)
    assert rig.state(ro) is OrderState.QUEUED and [i.cloid for i in rig.scheduler.reduce_only] == [ro]


def test_a_transport_error_is_treated_as_never_executed() -> None:
    rig = Rig()
    ro, new = mixed_batch(rig)
    rig.reply(rig.send(), TransportErr("429 Too Many Requests"))
    assert rig.state(new) is OrderState.CANCELED
    assert rig.state(ro) is OrderState.QUEUED
    assert of_type(rig.book.outbox.drain(), OrderRejected) == []


def test_a_requeued_reduce_only_order_superseded_by_a_newer_one_is_resolved() -> None:
    rig = Rig()
    old = rig.reduce_only(A).cloid
    entry = rig.send()
    newer = rig.reduce_only(A, size="0.5").cloid
    (resolved,) = rig.posts.expire(10.0)
    rig.executor.on_post_outcome(resolved, 10.0)
    assert rig.state(old) is OrderState.UNKNOWN  # it may have executed: reconciliation decides
    assert [i.cloid for i in rig.scheduler.reduce_only] == [newer]
    assert entry.batch.order_items[0].cloid == old


def test_cancel_posts_are_requeued_unless_answered() -> None:
    rig = Rig()
    rig.executor.submit_cancel(A, 5)
    entry = rig.send()
    (resolved,) = rig.posts.expire(10.0)
    rig.executor.on_post_outcome(resolved, 10.0)
    assert len(rig.scheduler.cancels) == 1
    rig.reply(
        rig.send(), ActionOk("cancel", (StatusError("Order was never placed, already canceled, or filled."),))
    )
    assert not rig.scheduler.cancels
    assert entry.batch.kind == "cancel"


def test_on_post_outcome_refuses_an_unresolved_entry() -> None:
    rig = Rig()
    rig.submit()
    with pytest.raises(ValueError):
        rig.executor.on_post_outcome(rig.send(), 0.0)


# --- hard stop ---------------------------------------------------------------------------------


def test_hard_stop_drops_queued_new_orders_refuses_signals_and_requests_flatten_all() -> None:
    rig = Rig()
    resting = rig.submit(signal(C, price="5")).cloid
    rig.send()
    rig.book.on_reply_resting(resting, Resting(99), 0.0)
    queued = rig.submit(signal(A)).cloid
    ro = rig.reduce_only(B).cloid
    rig.book.outbox.drain()
    dropped = rig.executor.hard_stop("cumulative loss", 5.0)
    assert rig.executor.stopped
    assert [i.cloid for i in dropped] == [queued] and rig.scheduler.new_orders == ()
    assert rig.state(queued) is OrderState.CANCELED and not rig.book.pending(A)
    assert rig.state(ro) is OrderState.QUEUED  # reduce-only orders stay queued
    assert rig.scheduler.cancels == (CancelItem(C, CancelByCloidWire(SPECS[C].asset, resting)),)
    assert of_type(rig.book.outbox.drain(), FlattenAllRequested) == [
        FlattenAllRequested(reason="cumulative loss", at=5.0)
    ]
    assert rig.executor.submit_signal(signal(B, price="20"), 6.0) == HardStopped("cumulative loss")
    flatten = rig.executor.submit_reduce_only(A, is_buy=False, size=D(1), limit_px=D(9), now=6.0)
    assert isinstance(flatten, Submitted)


def test_the_persisted_latch_alone_stops_new_signals() -> None:
    rig = Rig()
    rig.flags.latched = True
    assert rig.executor.stopped
    assert rig.executor.submit_signal(signal(), 0.0) == HardStopped("hard stop latched")
