"""BatchScheduler: bounded priority queues, inflight back-pressure, one action per tick."""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from decimal import Decimal

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hip3_trio.execution.batch import (
    Batch,
    BatchConfig,
    BatchScheduler,
    CancelItem,
    InflightFull,
    OrderItem,
    Queued,
    QueuedDegraded,
    QueuedReplaced,
    QueueFull,
    QueueKind,
    Requeued,
)
from hip3_trio.wire.actions import (
    CancelAction,
    CancelByCloidAction,
    CancelByCloidWire,
    CancelWire,
    Cloid,
    LimitOrderType,
    OrderAction,
    OrderWire,
)

_ids = itertools.count(1)


def order(market: str = "xyz:COIN", *, reduce_only: bool = False, sz: str = "0.01") -> OrderItem:
    """A distinct IOC order (unique cloid) for `market`."""
    n = next(_ids)
    wire = OrderWire(
        asset=110_000,
        is_buy=True,
        limit_px=Decimal("50000"),
        sz=Decimal(sz),
        reduce_only=reduce_only,
        order_type=LimitOrderType("Ioc"),
        cloid=Cloid.from_int(n),
    )
    return OrderItem(market, wire)


def reduce_only(market: str = "xyz:COIN", sz: str = "0.01") -> OrderItem:
    return order(market, reduce_only=True, sz=sz)


def cancel(market: str = "xyz:COIN", *, by_cloid: bool = False) -> CancelItem:
    n = next(_ids)
    wire = CancelByCloidWire(110_000, Cloid.from_int(n)) if by_cloid else CancelWire(110_000, n)
    return CancelItem(market, wire)


# --- capacities ----------------------------------------------------------------------------------


def test_the_1001st_new_order_is_refused_queue_full() -> None:
    sched = BatchScheduler()
    for _ in range(1000):
        assert sched.enqueue_new(order(), inflight=0) == Queued(QueueKind.NEW_ORDER)
    assert sched.enqueue_new(order(), inflight=0) == QueueFull(QueueKind.NEW_ORDER, 1000)
    assert len(sched.new_orders) == 1000


def test_the_501st_reduce_only_order_is_refused_and_logged_critical(caplog: pytest.LogCaptureFixture) -> None:
    sched = BatchScheduler()
    for i in range(500):
        assert sched.enqueue_reduce_only(reduce_only(f"xyz:M{i}")) == Queued(QueueKind.REDUCE_ONLY)
    assert caplog.records == []
    assert sched.enqueue_reduce_only(reduce_only("xyz:M500")) == QueueFull(QueueKind.REDUCE_ONLY, 500)
    assert [r.levelno for r in caplog.records] == [logging.CRITICAL]
    assert len(sched.reduce_only) == 500


def test_the_201st_cancel_is_refused_and_logged_critical(caplog: pytest.LogCaptureFixture) -> None:
    sched = BatchScheduler()
    for _ in range(200):
        assert sched.enqueue_cancel(cancel()) == Queued(QueueKind.CANCEL)
    assert caplog.records == []
    assert sched.enqueue_cancel(cancel()) == QueueFull(QueueKind.CANCEL, 200)
    assert [r.levelno for r in caplog.records] == [logging.CRITICAL]
    assert len(sched.cancels) == 200


# --- priority and batch shape ---------------------------------------------------------------------


def test_priority_is_cancel_then_reduce_only_then_new() -> None:
    sched = BatchScheduler()
    new, ro, cx = order(), reduce_only(), cancel()
    sched.enqueue_new(new, inflight=0)
    sched.enqueue_reduce_only(ro)
    sched.enqueue_cancel(cx)
    assert sched.tick(inflight=0) == Batch("cancel", (cx,))
    assert sched.tick(inflight=0) == Batch("order", (ro, new))
    assert sched.tick(inflight=0) is None


def test_an_order_batch_puts_reduce_only_first_and_holds_at_most_max_batch() -> None:
    sched = BatchScheduler()
    news = [order() for _ in range(40)]
    ros = [reduce_only(f"xyz:M{i}") for i in range(30)]
    for item in news:
        sched.enqueue_new(item, inflight=0)
    for item in ros:
        sched.enqueue_reduce_only(item)
    first = sched.tick(inflight=0)
    assert first is not None
    assert first.items == (*ros, *news[:20])
    second = sched.tick(inflight=0)
    assert second is not None
    assert second.items == tuple(news[20:])


def test_a_cancel_batch_holds_one_cancel_type_the_leading_run() -> None:
    sched = BatchScheduler()
    by_oid = [cancel() for _ in range(3)]
    by_cloid = [cancel(by_cloid=True) for _ in range(2)]
    for item in (*by_oid[:2], *by_cloid, by_oid[2]):
        sched.enqueue_cancel(item)
    batches = [sched.tick(inflight=0) for _ in range(3)]
    assert batches == [
        Batch("cancel", tuple(by_oid[:2])),
        Batch("cancel", tuple(by_cloid)),
        Batch("cancel", (by_oid[2],)),
    ]
    oid_batch, cloid_batch = batches[0], batches[1]
    assert oid_batch is not None and cloid_batch is not None
    assert isinstance(oid_batch.action(), CancelAction)
    assert isinstance(cloid_batch.action(), CancelByCloidAction)


def test_a_cancel_batch_holds_at_most_max_batch() -> None:
    sched = BatchScheduler(BatchConfig(max_batch=50))
    for _ in range(120):
        sched.enqueue_cancel(cancel())
    sizes = [len(b.items) for b in iter(lambda: sched.tick(inflight=0), None)]
    assert sizes == [50, 50, 20]


def test_batch_builds_its_action() -> None:
    ro, new = reduce_only(), order()
    assert Batch("order", (ro, new)).action() == OrderAction(orders=(ro.order, new.order))
    w1, w2 = CancelWire(110_000, 1), CancelWire(110_001, 2)
    cancels = Batch("cancel", (CancelItem("xyz:A", w1), CancelItem("xyz:B", w2)))
    assert cancels.action() == CancelAction(cancels=(w1, w2))
    k = CancelByCloidWire(110_000, Cloid.from_int(7))
    assert Batch("cancel", (CancelItem("xyz:A", k),)).action() == CancelByCloidAction(cancels=(k,))


def test_batch_rejects_malformed_content() -> None:
    with pytest.raises(ValueError):
        Batch("order", ())
    with pytest.raises(TypeError):
        Batch("order", (cancel(),))
    with pytest.raises(TypeError):
        Batch("cancel", (cancel(), cancel(by_cloid=True)))


# --- inflight back-pressure -----------------------------------------------------------------------


def test_degraded_mode_new_orders_are_queued_but_not_sent() -> None:
    sched = BatchScheduler()
    below, at = order(), order()
    assert sched.enqueue_new(below, inflight=79) == Queued(QueueKind.NEW_ORDER)
    assert sched.enqueue_new(at, inflight=80) == QueuedDegraded(inflight=80, watermark=80)
    assert sched.enqueue_new(order(), inflight=99).accepted
    assert sched.tick(inflight=80) is None  # at the watermark new orders wait
    batch = sched.tick(inflight=79)  # inflight dropped below the watermark
    assert batch is not None
    assert batch.items[:2] == (below, at)


def test_at_the_watermark_cancels_and_reduce_only_are_still_sent() -> None:
    sched = BatchScheduler()
    new, ro, cx = order(), reduce_only(), cancel()
    sched.enqueue_new(new, inflight=0)
    sched.enqueue_reduce_only(ro)
    sched.enqueue_cancel(cx)
    assert sched.tick(inflight=99) == Batch("cancel", (cx,))
    assert sched.tick(inflight=80) == Batch("order", (ro,))  # reduce-only without the new order
    assert sched.tick(inflight=80) is None
    assert sched.new_orders == (new,)


def test_at_the_inflight_limit_tick_returns_nothing_not_even_cancels() -> None:
    sched = BatchScheduler()
    cx, ro = cancel(), reduce_only()
    assert sched.enqueue_cancel(cx).accepted
    assert sched.enqueue_reduce_only(ro).accepted  # still queued at the limit
    assert sched.enqueue_new(order(), inflight=100) == InflightFull(inflight=100, limit=100)
    assert sched.tick(inflight=100) is None
    assert sched.tick(inflight=150) is None
    assert (sched.cancels, sched.reduce_only, sched.new_orders) == ((cx,), (ro,), ())
    assert sched.tick(inflight=99) == Batch("cancel", (cx,))


def test_tick_never_changes_inflight() -> None:
    """The scheduler does not count posts: repeated ticks at the same inflight keep flowing."""
    sched = BatchScheduler(BatchConfig(max_batch=1, inflight_limit=3, inflight_watermark=2))
    items = [order() for _ in range(10)]
    for item in items:
        sched.enqueue_new(item, inflight=0)
    taken = [b.items[0] for b in iter(lambda: sched.tick(inflight=1), None)]
    assert taken == items  # ten posts taken at inflight 1: nothing counted them up to the watermark
    assert not hasattr(sched, "inflight")


# --- requeue, replacement, drop -------------------------------------------------------------------


def test_requeue_puts_reduce_only_and_cancels_back_at_the_front_in_order() -> None:
    sched = BatchScheduler(BatchConfig(max_batch=3))
    ros = [reduce_only(f"xyz:M{i}") for i in range(3)]
    news = [order() for _ in range(2)]
    cxs = [cancel() for _ in range(4)]
    for ro in ros:
        sched.enqueue_reduce_only(ro)
    for new in news:
        sched.enqueue_new(new, inflight=0)
    for cx in cxs:
        sched.enqueue_cancel(cx)
    cancel_batch = sched.tick(inflight=0)
    last_cancel = sched.tick(inflight=0)  # cancels still queued come before any order
    assert cancel_batch is not None and last_cancel is not None
    assert last_cancel.items == (cxs[3],)
    orders = sched.tick(inflight=0)
    assert orders is not None and orders.items == tuple(ros)
    mixed = sched.tick(inflight=0)
    assert mixed is not None and mixed.items == tuple(news)

    later_ro = reduce_only("xyz:OTHER")
    later_cx = cancel()
    sched.enqueue_reduce_only(later_ro)
    sched.enqueue_cancel(later_cx)
    result = sched.requeue_front(cancel_batch, orders, mixed)
    assert result == Requeued(handed_back=tuple(news), superseded=())
    assert sched.cancels == (*cxs[:3], later_cx)
    assert sched.reduce_only == (*ros, later_ro)
    assert sched.new_orders == ()  # new orders are never silently re-sent


def test_requeue_may_exceed_capacity_rather_than_drop_a_reduce_only_order() -> None:
    sched = BatchScheduler(BatchConfig(reduce_only_capacity=2, max_batch=2))
    sent = (reduce_only("xyz:A"), reduce_only("xyz:B"))
    for item in sent:
        sched.enqueue_reduce_only(item)
    batch = sched.tick(inflight=0)
    assert batch is not None
    sched.enqueue_reduce_only(reduce_only("xyz:C"))
    sched.enqueue_reduce_only(reduce_only("xyz:D"))
    assert isinstance(sched.enqueue_reduce_only(reduce_only("xyz:E")), QueueFull)
    sched.requeue_front(batch)
    assert [i.market for i in sched.reduce_only] == ["xyz:A", "xyz:B", "xyz:C", "xyz:D"]


def test_a_second_reduce_only_for_a_market_replaces_the_queued_one() -> None:
    sched = BatchScheduler(BatchConfig(reduce_only_capacity=2))
    first, other = reduce_only("xyz:A", sz="1"), reduce_only("xyz:B")
    sched.enqueue_reduce_only(first)
    sched.enqueue_reduce_only(other)
    newer = reduce_only("xyz:A", sz="0.4")
    assert sched.enqueue_reduce_only(newer) == QueuedReplaced(replaced=first)  # needs no room
    assert sched.reduce_only == (newer, other)  # in the older one's place; the newer size wins
    batch = sched.tick(inflight=0)
    assert batch is not None
    assert [i.order.sz for i in batch.order_items if i.market == "xyz:A"] == [Decimal("0.4")]


def test_requeue_supersedes_a_reduce_only_order_whose_market_has_a_newer_one() -> None:
    sched = BatchScheduler()
    old = reduce_only("xyz:A", sz="1")
    sched.enqueue_reduce_only(old)
    batch = sched.tick(inflight=0)
    assert batch is not None
    newer = reduce_only("xyz:A", sz="0.5")
    sched.enqueue_reduce_only(newer)
    assert sched.requeue_front(batch) == Requeued(handed_back=(), superseded=(old,))
    assert sched.reduce_only == (newer,)


def test_drop_new_orders_returns_what_it_dropped() -> None:
    sched = BatchScheduler()
    news = [order() for _ in range(3)]
    for item in news:
        sched.enqueue_new(item, inflight=0)
    ro, cx = reduce_only(), cancel()
    sched.enqueue_reduce_only(ro)
    sched.enqueue_cancel(cx)
    assert sched.drop_new_orders() == tuple(news)
    assert sched.drop_new_orders() == ()
    assert (sched.cancels, sched.reduce_only, sched.new_orders) == ((cx,), (ro,), ())


def test_enqueueing_the_wrong_kind_of_order_is_a_programming_error() -> None:
    sched = BatchScheduler()
    with pytest.raises(ValueError):
        sched.enqueue_new(reduce_only(), inflight=0)
    with pytest.raises(ValueError):
        sched.enqueue_reduce_only(order())


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        BatchConfig(inflight_limit=10, inflight_watermark=11)
    with pytest.raises(ValueError):
        BatchConfig(max_batch=0)


# --- stateful: nothing lost or duplicated, priority and bounds hold -------------------------------

CONFIG = BatchConfig(
    cancel_capacity=4,
    reduce_only_capacity=2,
    new_order_capacity=5,
    max_batch=3,
    inflight_limit=6,
    inflight_watermark=4,
)
MARKETS = ("xyz:A", "xyz:B", "xyz:C")
inflights = st.integers(0, CONFIG.inflight_limit + 1)


class SchedulerMachine(RuleBasedStateMachine):
    """Mirrors the three queues with plain lists and accounts for every accepted item.

    Every accepted item is in exactly one place: queued, in a batch taken by tick and not yet finished,
    finished (its post was answered), handed back, superseded, replaced or dropped.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sched = BatchScheduler(CONFIG)
        self.cancels: list[CancelItem] = []
        self.reduce_only: list[OrderItem] = []
        self.new_orders: list[OrderItem] = []
        self.outstanding: list[Batch] = []
        self.accepted: list[OrderItem | CancelItem] = []
        self.gone: list[OrderItem | CancelItem] = []  # finished, handed back, superseded, replaced, dropped

    @rule(by_cloid=st.booleans())
    def enqueue_cancel(self, by_cloid: bool) -> None:
        item = cancel(by_cloid=by_cloid)
        full = len(self.cancels) >= CONFIG.cancel_capacity
        result = self.sched.enqueue_cancel(item)
        if full:
            assert result == QueueFull(QueueKind.CANCEL, CONFIG.cancel_capacity)
        else:
            assert result == Queued(QueueKind.CANCEL)
            self.cancels.append(item)
            self.accepted.append(item)

    @rule(market=st.sampled_from(MARKETS))
    def enqueue_reduce_only(self, market: str) -> None:
        item = reduce_only(market)
        result = self.sched.enqueue_reduce_only(item)
        same = [i for i, q in enumerate(self.reduce_only) if q.market == market]
        if same:
            old = self.reduce_only[same[0]]
            assert result == QueuedReplaced(replaced=old)
            self.reduce_only[same[0]] = item
            self.gone.append(old)
            self.accepted.append(item)
        elif len(self.reduce_only) >= CONFIG.reduce_only_capacity:
            assert result == QueueFull(QueueKind.REDUCE_ONLY, CONFIG.reduce_only_capacity)
        else:
            assert result == Queued(QueueKind.REDUCE_ONLY)
            self.reduce_only.append(item)
            self.accepted.append(item)

    @rule(inflight=inflights)
    def enqueue_new(self, inflight: int) -> None:
        item = order()
        result = self.sched.enqueue_new(item, inflight)
        if inflight >= CONFIG.inflight_limit:
            assert result == InflightFull(inflight, CONFIG.inflight_limit)
            return
        if len(self.new_orders) >= CONFIG.new_order_capacity:
            assert result == QueueFull(QueueKind.NEW_ORDER, CONFIG.new_order_capacity)
            return
        if inflight >= CONFIG.inflight_watermark:
            assert result == QueuedDegraded(inflight, CONFIG.inflight_watermark)
        else:
            assert result == Queued(QueueKind.NEW_ORDER)
        self.new_orders.append(item)
        self.accepted.append(item)

    @rule(inflight=inflights)
    def tick(self, inflight: int) -> None:
        batch = self.sched.tick(inflight)
        if inflight >= CONFIG.inflight_limit:
            assert batch is None
            return
        if self.cancels:  # cancels first: the leading run of one type
            kind = type(self.cancels[0].cancel)
            run = list(itertools.takewhile(lambda c: type(c.cancel) is kind, self.cancels))
            expected: Batch | None = Batch("cancel", tuple(run[: CONFIG.max_batch]))
            del self.cancels[: len(run[: CONFIG.max_batch])]
        else:
            ros = self.reduce_only[: CONFIG.max_batch]
            del self.reduce_only[: len(ros)]
            news: list[OrderItem] = []
            if inflight < CONFIG.inflight_watermark:
                news = self.new_orders[: CONFIG.max_batch - len(ros)]
                del self.new_orders[: len(news)]
            expected = Batch("order", (*ros, *news)) if ros or news else None
        assert batch == expected
        if batch is not None:
            assert 1 <= len(batch.items) <= CONFIG.max_batch
            batch.action()  # always buildable
            self.outstanding.append(batch)

    @precondition(lambda self: self.outstanding)
    @rule(index=st.integers(0, 100))
    def finish(self, index: int) -> None:
        batch = self.outstanding.pop(index % len(self.outstanding))
        self.gone.extend(batch.items)

    @precondition(lambda self: self.outstanding)
    @rule(picks=st.sets(st.integers(0, 100), min_size=1, max_size=3))
    def requeue(self, picks: set[int]) -> None:
        chosen = sorted({p % len(self.outstanding) for p in picks})
        batches = [self.outstanding[i] for i in chosen]
        for i in reversed(chosen):
            del self.outstanding[i]
        result = self.sched.requeue_front(*batches)
        items = [i for b in batches for i in b.items]
        cancels = [i for i in items if isinstance(i, CancelItem)]
        ros = [i for i in items if isinstance(i, OrderItem) and i.reduce_only]
        news = [i for i in items if isinstance(i, OrderItem) and not i.reduce_only]
        kept = [
            r
            for n, r in enumerate(ros)
            if r.market not in {q.market for q in self.reduce_only}
            and r.market not in {later.market for later in ros[n + 1 :]}
        ]
        assert result.handed_back == tuple(news)
        assert Counter(result.superseded) == Counter(ros) - Counter(kept)
        self.cancels[:0] = cancels
        self.reduce_only[:0] = kept
        self.gone.extend((*news, *result.superseded))

    @rule()
    def drop_new_orders(self) -> None:
        assert self.sched.drop_new_orders() == tuple(self.new_orders)
        self.gone.extend(self.new_orders)
        self.new_orders.clear()

    @invariant()
    def queues_match_the_model(self) -> None:
        assert self.sched.cancels == tuple(self.cancels)
        assert self.sched.reduce_only == tuple(self.reduce_only)
        assert self.sched.new_orders == tuple(self.new_orders)

    @invariant()
    def nothing_lost_or_duplicated(self) -> None:
        places = Counter(
            [*self.sched.cancels, *self.sched.reduce_only, *self.sched.new_orders, *self.gone]
            + [i for b in self.outstanding for i in b.items]
        )
        assert places == Counter(self.accepted)
        assert max(places.values(), default=1) == 1

    @invariant()
    def bounds_hold(self) -> None:
        assert len(self.sched.new_orders) <= CONFIG.new_order_capacity  # requeue never adds new orders
        markets = [i.market for i in self.sched.reduce_only]
        assert len(markets) == len(set(markets))  # one flatten per market


SchedulerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestSchedulerMachine = SchedulerMachine.TestCase


def test_a_batch_expires_with_its_earliest_entry_and_without_entries_never() -> None:
    """`Batch.expires_after`: the min of its entries' expiries; reduce-only orders and cancels add none."""
    early = attrs.evolve(order("xyz:COIN"), expires_at_ms=5_000)
    late = attrs.evolve(order("xyz:NVDA"), expires_at_ms=9_000)
    assert Batch("order", (reduce_only("xyz:GOLD"), late, early)).expires_after == 5_000
    assert Batch("order", (reduce_only("xyz:GOLD"),)).expires_after is None
    assert Batch("cancel", (cancel(),)).expires_after is None
