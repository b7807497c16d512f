"""PositionBook: the order state machine, fills → positions, snapshots, order updates, reconciliation.

The helpers at the top are shared by the executor, readiness and time-stop tests.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable
from decimal import Decimal
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hip3_trio.execution.batch import Batch, BatchConfig, BatchScheduler
from hip3_trio.execution.executor import Executor, ExecutorConfig
from hip3_trio.execution.posts import PostEntry, PostTable
from hip3_trio.execution.time_stop import TimeStop, TimeStopConfig
from hip3_trio.position.book import BookConfig, PositionBook, Reconciled, ReconcileDeferred
from hip3_trio.position.positions import Position, apply_fill
from hip3_trio.position.records import (
    ClosedTrade,
    OrderRejected,
    OrderState,
    OrderTransition,
    Outbox,
    PositionCorrected,
    ReconcileRequested,
    SlippageMeasured,
    TradeClosed,
    UnknownOrderEscalated,
)
from hip3_trio.strategy.detector import Signal
from hip3_trio.wire.actions import Cloid, LimitOrderType, OrderWire
from hip3_trio.wire.markets import MarketSpec
from hip3_trio.wire.messages import (
    ActionErr,
    ActionOk,
    AssetPosition,
    Fill,
    Filled,
    OrderUpdate,
    OrderUpdates,
    PostResult,
    PostStatus,
    Resting,
    StatusError,
    TransportErr,
    UserFills,
    WsOrder,
)

D = Decimal
T = TypeVar("T")
A, B, C = "xyz:AAA", "xyz:BBB", "xyz:CCC"
MARKETS = (A, B, C)
SPECS = {m: MarketSpec(coin=m, asset=110_000 + i, sz_decimals=2, dex="xyz") for i, m in enumerate(MARKETS)}

_tids = itertools.count(1)
_cloids = itertools.count(1 << 100)


def new_cloid() -> Cloid:
    return Cloid.from_int(next(_cloids))


def wire(
    market: str = A,
    *,
    is_buy: bool = True,
    px: str = "10",
    sz: str = "1",
    reduce_only: bool = False,
    cloid: Cloid | None = None,
) -> OrderWire:
    return OrderWire(
        asset=SPECS[market].asset,
        is_buy=is_buy,
        limit_px=D(px),
        sz=D(sz),
        reduce_only=reduce_only,
        order_type=LimitOrderType("Ioc"),
        cloid=cloid if cloid is not None else new_cloid(),
    )


def fill(
    market: str = A,
    *,
    sz: str = "1",
    px: str = "10",
    is_buy: bool = True,
    cloid: Cloid | None = None,
    oid: int = 0,
    tid: int | None = None,
    time: int = 1,
    fee: str = "0",
) -> Fill:
    return Fill(
        coin=market,
        px=D(px),
        sz=D(sz),
        side="B" if is_buy else "A",
        time=time,
        start_position=D(0),
        dir="Open Long",
        closed_pnl=D(0),
        hash="0x0",
        oid=oid,
        crossed=True,
        fee=D(fee),
        tid=tid if tid is not None else next(_tids),
        fee_token="USDC",
        cloid=cloid.raw if cloid is not None else None,
    )


def user_fills(*fills: Fill, snapshot: bool = False) -> UserFills:
    return UserFills(user="0xabc", fills=tuple(fills), is_snapshot=snapshot)


def ws_order(
    market: str = A,
    *,
    cloid: Cloid | None = None,
    oid: int = 7,
    sz: str = "0",
    is_buy: bool = True,
    orig: str = "1",
) -> WsOrder:
    return WsOrder(
        coin=market,
        side="B" if is_buy else "A",
        limit_px=D(10),
        sz=D(sz),
        oid=oid,
        timestamp=1,
        orig_sz=D(orig),
        cloid=cloid.raw if cloid is not None else None,
    )


def status(name: str, *, sz: str | None = None, orig: str = "1", stamp: int = 1, **kw: object) -> OrderUpdate:
    """An order update; `sz` (remaining) defaults to 0 for `filled` and to `orig` for anything else."""
    remaining = sz if sz is not None else ("0" if name == "filled" else orig)
    order = ws_order(sz=remaining, orig=orig, **kw)  # type: ignore[arg-type]
    return OrderUpdate(order=order, status=name, status_timestamp=stamp)


def updates(*items: OrderUpdate) -> OrderUpdates:
    return OrderUpdates(tuple(items))


def asset_position(market: str, szi: str, entry_px: str | None = "10") -> AssetPosition:
    return AssetPosition(coin=market, szi=D(szi), entry_px=D(entry_px) if entry_px is not None else None)


def of_type(items: Iterable[object], kind: type[T]) -> list[T]:
    """The items that are instances of `kind`, in order."""
    return [i for i in items if isinstance(i, kind)]


def new_book(**config: object) -> PositionBook:
    return PositionBook(MARKETS, Outbox(), BookConfig(**config))  # type: ignore[arg-type]


def registered(
    book: PositionBook,
    market: str = A,
    *,
    now: float = 0.0,
    sent: bool = True,
    reason: str = "entry",
    **kw: object,
) -> Cloid:
    """Register (and by default send) an order; its signal had 12 bps of edge at the order's price."""
    order = wire(market, **kw)  # type: ignore[arg-type]
    assert order.cloid is not None
    book.register(market, order, now, expected_edge_bps=D(12), signal_px=order.limit_px, reason=reason)
    if sent:
        book.mark_sent(order.cloid, now)
    return order.cloid


def state(book: PositionBook, cloid: Cloid) -> OrderState:
    order = book.order(cloid)
    assert order is not None
    return order.state


def pending_markets(book: PositionBook) -> frozenset[str]:
    """The configured markets with an order that is not terminal (`PositionBook.pending`)."""
    return frozenset(m for m in book.markets if book.pending(m))


# --- the order state machine and the pending mark ---------------------------------------------------


def test_a_registered_order_marks_its_market_pending_until_terminal() -> None:
    book = new_book()
    cloid = registered(book, sent=False)
    assert book.pending(A) and not book.pending(B)
    assert state(book, cloid) is OrderState.QUEUED
    book.mark_sent(cloid, 1.0)
    assert state(book, cloid) is OrderState.SENT and book.pending(A)
    book.on_reply_filled(cloid, Filled(D(1), D(10), oid=5), 2.0)
    assert state(book, cloid) is OrderState.FILLED
    assert not book.pending(A)


@pytest.mark.parametrize(
    "terminal",
    ["reply_error", "update_canceled", "update_rejected", "update_filled", "unsent", "reconciled_unknown"],
)
def test_every_terminal_path_releases_the_pending_mark(terminal: str) -> None:
    book = new_book()
    cloid = registered(book)
    if terminal == "reply_error":
        book.on_reply_error(cloid, "Order could not immediately match", 1.0)
    elif terminal.startswith("update_"):
        book.on_order_updates(updates(status(terminal.removeprefix("update_"), cloid=cloid)), 1.0)
    elif terminal == "unsent":
        book.release_unsent(cloid, 1.0, "not sent")
    else:
        book.mark_unknown(cloid, 1.0, "timeout")
        book.reconcile([], [], {cloid: None}, 2.0)
    assert state(book, cloid).is_terminal
    assert not book.pending(A)


def test_terminal_is_absorbing_and_a_reject_is_reported_once() -> None:
    book = new_book()
    cloid = registered(book)
    book.on_reply_error(cloid, "Insufficient margin", 1.0)
    book.on_order_updates(updates(status("rejected", cloid=cloid)), 2.0)
    book.on_order_updates(updates(status("open", cloid=cloid, sz="1")), 3.0)
    book.mark_unknown(cloid, 4.0, "late")
    assert state(book, cloid) is OrderState.REJECTED
    assert not book.pending(A)
    assert of_type(book.outbox.drain(), OrderRejected) == [
        OrderRejected(market=A, message="Insufficient margin")
    ]


def test_transitions_are_journaled() -> None:
    book = new_book()
    cloid = registered(book, sent=False)
    book.mark_sent(cloid, 1.0)
    book.on_reply_resting(cloid, Resting(oid=9), 2.0)
    transitions = of_type(book.outbox.drain(), OrderTransition)
    assert transitions[-1].oid == 9 and transitions[-1].detail == "post reply: resting"
    assert [(t.old, t.new) for t in transitions] == [
        (OrderState.QUEUED, OrderState.SENT),
        (OrderState.SENT, OrderState.RESTING),
    ]
    order = book.order(cloid)
    assert order is not None and order.oid == 9


def test_unregister_rolls_back_a_queued_order_without_trace() -> None:
    book = new_book()
    cloid = registered(book, sent=False)
    book.unregister(cloid)
    assert book.order(cloid) is None and not book.pending(A)
    assert book.outbox.drain() == []
    sent = registered(book)
    with pytest.raises(ValueError):
        book.unregister(sent)


def test_register_refuses_duplicates_unconfigured_markets_and_missing_cloids() -> None:
    book = new_book()
    order = wire()
    book.register(A, order, 0.0)
    with pytest.raises(ValueError):
        book.register(A, order, 0.0)
    with pytest.raises(ValueError):
        book.register("xyz:ZZZ", wire(), 0.0)
    with pytest.raises(ValueError):
        book.register(A, OrderWire(1, True, D(1), D(1), False, LimitOrderType("Ioc")), 0.0)


def test_an_unknown_order_escalates_after_the_deadline_and_is_kept() -> None:
    book = new_book(unknown_deadline_s=60.0)
    cloid = registered(book)
    book.mark_unknown(cloid, 10.0, "timeout")
    assert of_type(book.outbox.drain(), ReconcileRequested)
    book.check(69.9)
    assert state(book, cloid) is OrderState.UNKNOWN and book.pending(A)
    book.check(70.0)
    assert state(book, cloid) is OrderState.ESCALATED
    assert not book.pending(A)
    assert of_type(book.outbox.drain(), UnknownOrderEscalated) == [
        UnknownOrderEscalated(cloid=cloid, market=A, unknown_since=10.0, at=70.0)
    ]
    # Late evidence still names its real fate.
    book.on_user_fills(user_fills(fill(cloid=cloid)), 80.0)
    assert state(book, cloid) is OrderState.FILLED
    assert book.size(A) == 1


def test_escalated_orders_are_never_pruned() -> None:
    book = new_book(order_memory=4)
    stuck = registered(book)
    book.mark_unknown(stuck, 0.0, "timeout")
    book.check(100.0)
    for _ in range(10):
        book.release_unsent(registered(book), 101.0, "x")
    assert book.order(stuck) is not None
    assert len(book.orders()) <= 4


def test_pruning_forgets_every_oid_an_order_had() -> None:
    book = new_book(order_memory=4)
    twice = registered(book)
    book.on_reply_resting(twice, Resting(oid=1), 1.0)
    book.on_order_updates(updates(status("canceled", cloid=twice, oid=2)), 2.0)  # a second oid
    stats = book.statistics()
    assert (stats.oids, stats.stale_oids) == (2, 1)  # oid 1 no longer names the order's current oid
    for _ in range(10):
        book.release_unsent(registered(book), 3.0, "x")
    assert book.order(twice) is None
    assert book.statistics().oids == 0


# --- fills and positions ----------------------------------------------------------------------------


def test_fills_are_deduplicated_by_tid_and_partial_fills_accumulate() -> None:
    book = new_book()
    cloid = registered(book, sz="3")
    f1, f2 = fill(sz="1", px="10", cloid=cloid), fill(sz="2", px="13", cloid=cloid)
    assert book.on_user_fills(user_fills(f1), 1.0) == 1
    assert book.on_user_fills(user_fills(f1, f2, f2), 2.0) == 1
    pos = book.position(A)
    assert pos is not None
    assert pos.size == 3 and pos.avg_entry_px == 12 and pos.entry_time == 1.0
    order = book.order(cloid)
    assert order is not None and order.filled_sz == 3


def test_tid_memory_is_bounded_and_evicts_the_oldest() -> None:
    book = new_book(tid_memory=3)
    first = fill(sz="1")
    book.on_user_fills(user_fills(first, *(fill(sz="1") for _ in range(3))), 1.0)
    assert book.size(A) == 4
    book.on_user_fills(user_fills(first), 2.0)  # evicted: it counts again (the bound is the trade-off)
    assert book.size(A) == 5
    recent = fill(sz="1")
    book.on_user_fills(user_fills(recent), 3.0)
    book.on_user_fills(user_fills(recent), 3.0)
    assert book.size(A) == 6


def test_sells_open_shorts_and_fees_accumulate() -> None:
    book = new_book()
    book.on_user_fills(user_fills(fill(sz="2", px="10", is_buy=False, fee="0.01")), 1.0)
    pos = book.position(A)
    assert pos is not None and pos.size == -2 and pos.fees == D("0.01")


def test_a_round_trip_yields_a_closed_trade_for_journal_and_risk() -> None:
    book = new_book()
    cloid = registered(book, sz="2")
    book.on_user_fills(user_fills(fill(sz="2", px="10.05", cloid=cloid, time=1000, fee="0.01")), 5.0)
    exit_cloid = registered(book, is_buy=False, sz="2", reduce_only=True, reason="time_stop")
    book.on_user_fills(user_fills(fill(sz="1", px="11", is_buy=False, cloid=exit_cloid, fee="0.01")), 30.0)
    assert of_type(book.outbox.peek(), ClosedTrade) == []
    book.on_user_fills(
        user_fills(fill(sz="1", px="12", is_buy=False, cloid=exit_cloid, time=36000, fee="0.01")), 36.0
    )
    assert book.position(A) is None and not book.has_position(A)
    out = book.outbox.drain()
    (trade,) = of_type(out, ClosedTrade)
    assert trade == ClosedTrade(
        market=A,
        is_long=True,
        size=D(2),
        entry_px=D("10.05"),
        exit_px=D("11.5"),
        pnl=D("2.9"),
        fees=D("0.03"),
        opened_at=5.0,
        closed_at=36.0,
        opened_ms=1000,
        closed_ms=36000,
        expected_edge_bps=D(12),
        slippage_bps=D(50),
        entry_cloid=cloid,
        exit_cloid=exit_cloid,
        exit_reason="time_stop",
    )
    assert of_type(out, TradeClosed) == [TradeClosed(market=A, pnl=D("2.87"))]


def test_a_fill_through_zero_closes_the_trade_and_opens_the_rest() -> None:
    pos, trade = apply_fill(None, market=A, signed_sz=D(1), px=D(10), fee=D(0), now=0.0, time_ms=0)
    pos, trade = apply_fill(pos, market=A, signed_sz=D(-3), px=D(8), fee=D("0.3"), now=1.0, time_ms=1)
    assert trade is not None and trade.pnl == -2 and trade.fees == D("0.1")
    assert pos == Position(
        market=A,
        size=D(-2),
        avg_entry_px=D(8),
        entry_time=1.0,
        opened_ms=1,
        fees=D("0.2"),
        entry_qty=D(2),
        entry_value=D(16),
    )


def test_fills_of_unconfigured_coins_are_ignored() -> None:
    book = new_book()
    assert book.on_user_fills(user_fills(fill("abc:OTHER")), 1.0) == 0
    assert book.positions == {}


# --- post replies, cross-checked against fills -------------------------------------------------------


def test_a_filled_reply_counts_as_exposure_until_its_fills_arrive() -> None:
    book = new_book()
    cloid = registered(book, sz="2")
    book.on_reply_filled(cloid, Filled(D("1.5"), D(10), oid=3), 1.0)
    assert not book.pending(A)
    assert book.size(A) == 0 and book.expected_size(A) == D("1.5")
    assert book.has_position(A) and book.notional(A, D(10)) == 15
    book.on_user_fills(user_fills(fill(sz="1.5", oid=3)), 2.0)  # matched by oid
    assert book.size(A) == D("1.5") and book.expected_size(A) == D("1.5")
    book.check(100.0)
    assert of_type(book.outbox.drain(), ReconcileRequested) == []


def test_a_filled_reply_measures_slippage_against_the_signal() -> None:
    book = new_book()
    buy = registered(book, px="10")
    book.on_reply_filled(buy, Filled(D(1), D("10.05"), oid=3), 1.0)
    sell = registered(book, B, px="10", is_buy=False)
    book.on_reply_filled(sell, Filled(D(1), D("10.02"), oid=4), 1.0)
    assert of_type(book.outbox.drain(), SlippageMeasured) == [
        SlippageMeasured(market=A, bps=D(50)),
        SlippageMeasured(market=B, bps=D(-20)),
    ]


def test_a_persisting_reply_fill_mismatch_requests_reconciliation_once() -> None:
    book = new_book(mismatch_grace_s=5.0)
    cloid = registered(book, sz="2")
    book.on_reply_filled(cloid, Filled(D(2), D(10), oid=3), 1.0)
    book.on_user_fills(user_fills(fill(sz="1", cloid=cloid)), 1.5)
    book.check(5.9)
    assert of_type(book.outbox.drain(), ReconcileRequested) == []
    book.check(6.0)
    book.check(7.0)
    assert len(of_type(book.outbox.drain(), ReconcileRequested)) == 1
    book.reconcile([asset_position(A, "2")], [], {}, 8.0)
    assert book.size(A) == 2 and book.expected_size(A) == 2


def test_a_reconcile_does_not_cover_a_reply_that_just_came_in() -> None:
    book = new_book(mismatch_grace_s=5.0)
    cloid = registered(book, sz="2")
    book.on_reply_filled(cloid, Filled(D(2), D(10), oid=3), 10.0)
    book.reconcile([], [], {}, 11.0, as_of_ms=500)  # may predate the execution
    assert book.expected_size(A) == 2
    book.on_user_fills(user_fills(fill(sz="2", cloid=cloid, time=600)), 12.0)
    assert book.size(A) == 2 and book.expected_size(A) == 2


def _resent_across_a_reconcile(book: PositionBook, truth: str) -> Cloid:
    """A short of 1 on A (and a long on B); a reduce-only buy of 1 goes out, its post fails (it may have
    executed), it is requeued, a reconciliation (state at 500 ms, A = `truth`) comes in, and it is sent
    again."""
    book.on_user_fills(user_fills(fill(sz="1", is_buy=False, time=100), fill(B, time=100)), 0.5)
    flatten = registered(book, is_buy=True, sz="1", reduce_only=True, now=1.0)
    book.requeued(flatten, 2.0, "requeued after disconnected")
    book.reconcile([asset_position(A, truth), asset_position(B, "1")], [], {}, 3.0, as_of_ms=500)
    book.outbox.drain()
    book.mark_sent(flatten, 4.0)
    return flatten


@pytest.mark.parametrize("executed_by", ["first send", "second send"])
def test_a_fill_of_an_order_sent_before_and_after_a_reconcile_is_exposure_until_the_next(
    executed_by: str,
) -> None:
    """Its fill stamped at the state's millisecond may be the first send's (in the state: applying it
    would count it twice) or the second's (not in it). It moves no position, the exposure covers both,
    and the next reconciliation decides."""
    book = new_book()
    truth = "0" if executed_by == "first send" else "-1"
    flatten = _resent_across_a_reconcile(book, truth)
    book.on_user_fills(user_fills(fill(sz="1", is_buy=True, cloid=flatten, time=500)), 5.0)
    assert book.size(A) == D(truth) and book.expected_size(A) == D(truth) + 1
    assert book.exposure(A) == 1  # the short (1 or 0) or flat: 1 covers both
    assert len(of_type(book.outbox.drain(), ReconcileRequested)) == 1
    book.reconcile([asset_position(B, "1")], [], {}, 6.0, as_of_ms=600)  # A is flat either way
    assert book.size(A) == 0 and book.expected_size(A) == 0


def test_an_order_first_sent_after_a_reconcile_applies_its_fill_of_the_same_millisecond() -> None:
    book = new_book()
    book.on_user_fills(user_fills(fill(sz="1", is_buy=False, time=100)), 0.5)
    book.reconcile([asset_position(A, "-1")], [], {}, 1.0, as_of_ms=500)
    flatten = registered(book, is_buy=True, sz="1", reduce_only=True, now=2.0)
    book.on_user_fills(user_fills(fill(sz="1", is_buy=True, cloid=flatten, time=500)), 3.0)
    assert book.size(A) == 0 and book.expected_size(A) == 0


def test_fills_beyond_the_reply_total_request_reconciliation_at_once() -> None:
    book = new_book()
    cloid = registered(book, sz="2")
    book.on_reply_filled(cloid, Filled(D(1), D(10), oid=3), 1.0)
    book.on_user_fills(user_fills(fill(sz="2", cloid=cloid)), 1.1)
    assert len(of_type(book.outbox.drain(), ReconcileRequested)) == 1


# --- snapshots ------------------------------------------------------------------------------------


def test_a_snapshot_is_never_applied_and_its_tids_never_apply_later() -> None:
    book = new_book()
    old = fill(sz="5")
    book.on_user_fills(user_fills(old, snapshot=True), 1.0)
    assert book.positions == {}
    book.on_user_fills(user_fills(old), 2.0)
    assert book.positions == {}


def test_a_snapshot_resolves_unknown_orders_by_cloid_and_by_oid() -> None:
    book = new_book()
    by_cloid, by_oid = registered(book, A), registered(book, B)
    book.on_reply_resting(by_oid, Resting(oid=77), 0.5)
    for cloid in (by_cloid, by_oid):
        book.mark_unknown(cloid, 1.0, "disconnected")
    book.on_user_fills(user_fills(fill(A, cloid=by_cloid), fill(B, oid=77), snapshot=True), 2.0)
    assert state(book, by_cloid) is OrderState.FILLED and state(book, by_oid) is OrderState.FILLED
    assert book.positions == {}
    # Their size is still exposure until reconciliation puts it into a position.
    assert book.has_position(A) and book.expected_size(B) == 1
    book.reconcile([asset_position(A, "1"), asset_position(B, "1")], [], {}, 3.0, as_of_ms=10)
    assert book.size(A) == 1 and book.expected_size(A) == 1


# --- order updates --------------------------------------------------------------------------------


def test_order_update_sz_is_the_remaining_size() -> None:
    book = new_book()
    cloid = registered(book, sz="3")
    book.on_order_updates(updates(status("open", cloid=cloid, sz="2", oid=41)), 1.0)
    order = book.order(cloid)
    assert order is not None
    assert order.state is OrderState.RESTING and order.exchange_remaining == 2 and order.oid == 41
    assert book.exposure(A) == 2
    book.on_order_updates(updates(status("filled", oid=41)), 2.0)  # found by oid
    assert state(book, cloid) is OrderState.FILLED


def test_a_filled_update_before_the_fills_counts_as_exposure() -> None:
    book = new_book()
    cloid = registered(book, sz="3")
    book.on_order_updates(updates(status("canceled", cloid=cloid, orig="3", sz="1")), 1.0)  # IOC: 2 traded
    assert state(book, cloid) is OrderState.CANCELED and not book.pending(A)
    assert book.has_position(A) and book.expected_size(A) == 2
    book.on_user_fills(user_fills(fill(sz="2", cloid=cloid)), 2.0)
    assert book.size(A) == 2 and book.exposure(A) == 2


def test_an_update_older_than_the_reconciled_state_is_already_in_it() -> None:
    book = new_book()
    cloid = registered(book, sz="2")
    book.mark_unknown(cloid, 1.0, "timeout")
    book.reconcile([asset_position(A, "2")], [], {}, 2.0, as_of_ms=500)  # status not answered
    book.on_order_updates(updates(status("filled", cloid=cloid, orig="2", stamp=400)), 3.0)
    assert book.expected_size(A) == 2 and book.exposure(A) == 2  # not 4: the fill is in the position


def test_a_live_fill_does_not_resolve_an_unknown_order() -> None:
    book = new_book()
    cloid = registered(book, sz="2")
    book.mark_unknown(cloid, 1.0, "timeout")
    book.on_user_fills(user_fills(fill(sz="0.5", cloid=cloid)), 2.0)
    assert state(book, cloid) is OrderState.UNKNOWN  # more of it may still be on the way
    assert book.size(A) == D("0.5") and book.exposure(A) == 2


def test_specific_statuses_map_through_their_family() -> None:
    book = new_book()
    ioc, margin = registered(book, A), registered(book, B)
    book.on_order_updates(
        updates(status("iocCancelRejected", cloid=ioc), status("marginCanceled", cloid=margin)), 1.0
    )
    assert state(book, ioc) is OrderState.REJECTED and state(book, margin) is OrderState.CANCELED
    assert of_type(book.outbox.drain(), OrderRejected) == [
        OrderRejected(market=A, message="iocCancelRejected")
    ]


def test_an_unknown_status_makes_the_order_unknown_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = new_book()
    first, second = registered(book, A), registered(book, B)
    with caplog.at_level(logging.WARNING, logger="hip3_trio.position.book"):
        book.on_order_updates(
            updates(status("vaporized", cloid=first), status("vaporized", cloid=second)), 1.0
        )
    assert state(book, first) is OrderState.UNKNOWN and state(book, second) is OrderState.UNKNOWN
    assert book.pending(A) and book.pending(B)
    assert sum("vaporized" in r.getMessage() for r in caplog.records) == 1
    assert len(of_type(book.outbox.drain(), ReconcileRequested)) == 2


def test_updates_for_orders_we_do_not_track_are_ignored() -> None:
    book = new_book()
    book.on_order_updates(updates(status("filled", cloid=new_cloid(), oid=999)), 1.0)
    assert book.orders() == () and book.outbox.drain() == []


# --- reconciliation ---------------------------------------------------------------------------------


def test_reconcile_replaces_positions_and_keeps_entry_time_of_continuing_ones() -> None:
    book = new_book()
    book.on_user_fills(user_fills(fill(A, sz="1"), fill(B, sz="2")), 5.0)
    result = book.reconcile([asset_position(A, "1.5", "11"), asset_position(C, "-1", "4")], [], {}, 9.0)
    assert isinstance(result, Reconciled)
    assert result.corrections == (
        PositionCorrected(market=A, old_size=D(1), new_size=D("1.5"), at=9.0),
        PositionCorrected(market=B, old_size=D(2), new_size=D(0), at=9.0),
        PositionCorrected(market=C, old_size=D(0), new_size=D(-1), at=9.0),
    )
    a, c = book.position(A), book.position(C)
    assert (
        a is not None and a.size == D("1.5") and a.entry_time == 5.0 and a.avg_entry_px == 11 and a.corrected
    )
    assert book.position(B) is None
    # A position that appears is never "opened now": with no fill or journal entry to date it, it is due.
    assert c is not None and c.size == -1 and c.entry_time == -math.inf and c.corrected


def test_reconcile_leaves_matching_positions_untouched() -> None:
    book = new_book()
    book.on_user_fills(user_fills(fill(A, sz="1", px="10")), 5.0)
    before = book.position(A)
    assert book.reconcile([asset_position(A, "1", "10.3")], [], {}, 9.0) == Reconciled((), (), ())
    assert book.position(A) is before


def test_reconcile_refuses_a_single_empty_answer_and_applies_a_confirming_one() -> None:
    book = new_book()
    book.on_user_fills(user_fills(fill(A, sz="1"), fill(B, sz="1")), 1.0)
    assert isinstance(book.reconcile([], [], {}, 2.0), ReconcileDeferred)
    assert book.size(A) == 1 and book.size(B) == 1
    assert isinstance(book.reconcile([asset_position(A, "1")], [], {}, 3.0), Reconciled)  # resets
    assert isinstance(book.reconcile([], [], {}, 4.0), ReconcileDeferred)
    assert isinstance(book.reconcile([], [], {}, 5.0), Reconciled)
    assert book.positions == {}


def test_reconcile_with_nothing_tracked_accepts_an_empty_answer() -> None:
    assert isinstance(new_book().reconcile([], [], {}, 1.0), Reconciled)


def test_reconcile_resolves_unknown_orders_from_statuses_and_open_orders() -> None:
    book = new_book()
    filled, canceled, absent, resting, silent = (registered(book, m) for m in (A, B, C, A, B))
    for cloid in (filled, canceled, absent, resting, silent):
        book.mark_unknown(cloid, 1.0, "disconnected")
    result = book.reconcile(
        [asset_position(A, "1")],
        [ws_order(A, cloid=resting, oid=55, sz="1")],
        {
            filled: status("filled", cloid=filled, oid=50),
            canceled: status("canceled", cloid=canceled),
            absent: None,
        },
        2.0,
    )
    assert isinstance(result, Reconciled)
    assert set(result.resolved) == {filled, canceled, absent, resting} and result.unresolved == (silent,)
    assert state(book, filled) is OrderState.FILLED
    assert state(book, canceled) is OrderState.CANCELED
    assert state(book, absent) is OrderState.RECONCILED
    assert state(book, resting) is OrderState.RESTING
    assert state(book, silent) is OrderState.UNKNOWN
    assert book.pending(A) and book.pending(B) and not book.pending(C)


def test_reconcile_closes_a_resting_order_that_is_no_longer_open() -> None:
    book = new_book()
    cloid = registered(book)
    book.on_reply_resting(cloid, Resting(oid=5), 1.0)
    book.reconcile([], [], {}, 2.0)
    assert state(book, cloid) is OrderState.RECONCILED and not book.pending(A)


def test_reconcile_as_of_keeps_newer_fills_and_skips_older_late_ones() -> None:
    book = new_book()
    book.on_user_fills(user_fills(fill(A, sz="1", time=100), fill(A, sz="2", time=300)), 1.0)
    late = fill(A, sz="4", time=150)  # executed before the state was taken, delivered after it
    book.reconcile([asset_position(A, "5")], [], {}, 2.0, as_of_ms=200)
    assert book.size(A) == 7  # 5 in the state (1 + 4) + the 2 applied after it
    book.on_user_fills(user_fills(late, fill(A, sz="1", time=250)), 3.0)
    assert book.size(A) == 8


# --- gate queries ---------------------------------------------------------------------------------


def test_notional_counts_positions_and_live_new_orders_but_not_reduce_only() -> None:
    book = new_book()
    book.on_user_fills(user_fills(fill(A, sz="2")), 1.0)
    registered(book, A, is_buy=False, sz="2", reduce_only=True)
    registered(book, B, sz="3")
    assert book.notional(A, D(10)) == 20
    assert book.notional(B, D(5)) == 15
    assert book.total_notional({A: D(10), B: D(5)}) == 35
    assert book.total_notional({A: D(10)}) is None  # B has exposure but no mark: fail closed
    assert book.exposed_markets() == {A, B}


def test_live_flatten_ignores_unknown_reduce_only_orders() -> None:
    book = new_book()
    cloid = registered(book, reduce_only=True)
    assert book.live_flatten(A) is not None
    book.mark_unknown(cloid, 1.0, "timeout")
    assert book.live_flatten(A) is None and book.pending(A)


# --- stateful: random interleavings against a small exchange model ---------------------------------

MARKS = {A: D(10), B: D(20), C: D(5)}
CAP_MARKET, CAP_TOTAL = D(50), D(100)
DEADLINE = 60.0
FILL_DELAY = (
    30.0  # the model delivers every live fill within this (a connected stream is not late by a minute)
)


class Flags:
    """Readiness and latch stubs: the model says when the engine is ready."""

    def __init__(self) -> None:
        self.ready = True
        self.latched = False


class BookMachine(RuleBasedStateMachine):
    """Drives the executor, scheduler, post table, time stop and book with random exchange behaviour.

    The exchange model executes IOC orders at their limit (fully, partly or not at all), enforces
    reduce-only against its true position, and produces fills that are delivered late, out of order,
    duplicated, lost on disconnect and replayed in snapshots.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.ms = 0
        self.nonce = 0
        self.next_oid = 1000
        self.flags = Flags()
        self.outbox = Outbox()
        # A small order memory, so settled orders are forgotten within one example.
        config = BookConfig(unknown_deadline_s=DEADLINE, mismatch_grace_s=5.0, order_memory=12)
        self.book = PositionBook(MARKETS, self.outbox, config)
        self.scheduler = BatchScheduler(BatchConfig(max_batch=3))
        self.posts: PostTable[PostResult] = PostTable(timeout=5.0)
        self.connected = True
        self.connected_at = 0.0
        self.executor = Executor(
            book=self.book,
            scheduler=self.scheduler,
            markets=SPECS,
            readiness=self.flags,
            latch=self.flags,
            marks=MARKS,
            config=ExecutorConfig(order_burst=1000, cloid_prefix=7),
            inflight=lambda: self.posts.inflight,
        )
        self.time_stop = TimeStop(
            book=self.book,
            executor=self.executor,
            marks=MARKS,
            config=TimeStopConfig(hold_s=5.0, flatten_fail_after_s=30.0),
        )
        # exchange model
        self.truth = dict.fromkeys(MARKETS, D(0))
        # cloid → (status, oid, orig size, remaining size, exchange time of the status)
        self.exchange_status: dict[Cloid, tuple[str, int, Decimal, Decimal, int]] = {}
        self.executed: list[Fill] = []
        self.undelivered: list[tuple[float, Fill]] = []
        self.delivered: dict[int, Fill] = {}
        # what the book should show: exchange truth at the last reconcile + distinct live fills after it
        self.counted = dict.fromkeys(MARKETS, D(0))
        self.reconciled_ms = -1

    # --- the exchange model ---------------------------------------------------------------------

    def execute(self, batch: Batch, data: st.DataObject) -> list[PostStatus]:
        statuses: list[PostStatus] = []
        for item in batch.order_items:
            order, cloid = item.order, item.cloid
            assert cloid is not None
            known = self.exchange_status.get(cloid)
            oid = known[1] if known is not None else self.next_oid
            self.next_oid += 1
            want = order.sz
            if order.reduce_only:
                pos = self.truth[item.market]
                if pos == 0 or (pos > 0) == order.is_buy:
                    self.ms += 1
                    self.exchange_status[cloid] = ("reduceOnlyRejected", oid, order.sz, order.sz, self.ms)
                    statuses.append(StatusError("Reduce only order would increase position."))
                    continue
                want = min(want, abs(pos))
            outcome = data.draw(st.sampled_from(["full", "partial", "nomatch", "margin"]))
            if outcome in ("nomatch", "margin"):
                name = "iocCancelRejected" if outcome == "nomatch" else "rejected"
                self.ms += 1
                self.exchange_status[cloid] = (name, oid, order.sz, order.sz, self.ms)
                message = (
                    "Order could not immediately match" if outcome == "nomatch" else "Insufficient margin"
                )
                statuses.append(StatusError(message))
                continue
            qty = want if outcome == "full" or want < D("0.02") else (want / 2).quantize(D("0.01"))
            pieces = (
                [qty] if qty < D("0.02") or not data.draw(st.booleans()) else [D("0.01"), qty - D("0.01")]
            )
            for piece in pieces:
                self.ms += 1
                f = fill(
                    item.market,
                    sz=str(piece),
                    px=str(order.limit_px),
                    is_buy=order.is_buy,
                    cloid=cloid,
                    oid=oid,
                    time=self.ms,
                )
                self.executed.append(f)
                self.undelivered.append((self.now, f))
            self.truth[item.market] += qty if order.is_buy else -qty
            left = order.sz - qty
            name = "filled" if left == 0 else "canceled"
            self.exchange_status[cloid] = (name, oid, order.sz, left, self.ms)
            statuses.append(Filled(qty, order.limit_px, oid))
        return statuses

    def update_for(self, cloid: Cloid, name: str) -> OrderUpdate:
        _, oid, orig, left, stamp = self.exchange_status[cloid]
        order = self.book.order(cloid)
        market, is_buy = (order.market, order.is_buy) if order is not None else (A, True)
        return status(
            name,
            market=market,
            cloid=cloid,
            oid=oid,
            is_buy=is_buy,
            orig=str(orig),
            sz=str(left),
            stamp=stamp,
        )

    def deliver(self, fills: list[Fill]) -> None:
        self.book.on_user_fills(user_fills(*fills), self.now)
        for f in fills:
            if f.tid not in self.delivered and f.time > self.reconciled_ms:
                self.counted[f.coin] += f.sz if f.is_buy else -f.sz
            self.delivered[f.tid] = f
        tids = {f.tid for f in fills}
        self.undelivered = [(t, f) for t, f in self.undelivered if f.tid not in tids]

    def route(self, entry: PostEntry[PostResult] | object) -> None:
        assert isinstance(entry, PostEntry)
        self.executor.on_post_outcome(entry, self.now)

    def do_reconcile(self, data: st.DataObject) -> Reconciled | ReconcileDeferred:
        statuses: dict[Cloid, OrderUpdate | None] = {}
        for order in self.book.unknown_orders():
            if not data.draw(st.booleans()):
                continue  # the answer did not cover it
            known = self.exchange_status.get(order.cloid)
            statuses[order.cloid] = None if known is None else self.update_for(order.cloid, known[0])
        had_positions = any(p.size != 0 for p in self.book.positions.values())
        answer = [asset_position(m, str(sz)) for m, sz in self.truth.items() if sz != 0]
        result = self.book.reconcile(answer, [], statuses, self.now, as_of_ms=self.ms)
        if isinstance(result, Reconciled):
            self.counted = dict(self.truth)
            self.reconciled_ms = self.ms
        else:
            assert not answer and had_positions
        return result

    # --- rules ----------------------------------------------------------------------------------

    @rule(market=st.sampled_from(MARKETS), is_buy=st.booleans(), usd=st.integers(10, 60))
    def submit(self, market: str, is_buy: bool, usd: int) -> None:
        mark = MARKS[market]
        size = (D(usd) / mark).quantize(D("0.01"))
        sig = Signal(
            market=market,
            is_buy=is_buy,
            price=mark,
            size=size,
            expected_edge_bps=D(10),
            cost_bps=D(9),
            fee_bps=D(1),
            oracle_px=mark,
            mark_px=mark,
            best_px=mark,
            mid_px=mark,
            book_time_ms=self.ms,
            oracle_time_ms=self.ms,
            time_ms=self.ms,
        )
        self.executor.submit_signal(sig, self.now)

    @precondition(lambda self: self.connected)
    @rule()
    def send(self) -> None:
        batch = self.scheduler.tick(self.posts.inflight)
        if batch is None:
            return
        self.nonce += 1
        entry = self.posts.create(batch, self.nonce, self.now)
        self.posts.mark_sent(entry.post_id, self.now)
        self.executor.on_batch_sent(batch, self.now)

    @precondition(lambda self: len(self.posts) > 0)
    @rule(data=st.data(), mode=st.sampled_from(["ok", "ok", "short", "action_err", "transport_err"]))
    def reply(self, data: st.DataObject, mode: str) -> None:
        entry = data.draw(st.sampled_from(self.posts.pending))
        payload: PostResult
        if mode in ("ok", "short"):
            statuses = self.execute(entry.batch, data)
            if mode == "short":
                statuses = statuses[: data.draw(st.integers(0, max(0, len(statuses) - 1)))]
            payload = ActionOk("order", tuple(statuses))
        elif mode == "action_err":
            payload = ActionErr("Invalid nonce")
        else:
            payload = TransportErr("429 Too Many Requests")
        self.route(self.posts.resolve(entry.post_id, payload, self.now))

    @precondition(lambda self: bool(self.undelivered))
    @rule(data=st.data())
    def deliver_fills(self, data: st.DataObject) -> None:
        pending = [f for _, f in self.undelivered]
        chosen = data.draw(st.lists(st.sampled_from(pending), min_size=1, max_size=4))
        if bool(self.delivered) and data.draw(st.booleans()):
            chosen.append(data.draw(st.sampled_from(list(self.delivered.values()))))  # a duplicate
        self.deliver(chosen)

    @precondition(lambda self: self.connected and bool(self.exchange_status))
    @rule(data=st.data(), weird=st.booleans())
    def order_update(self, data: st.DataObject, weird: bool) -> None:
        cloid = data.draw(st.sampled_from(sorted(self.exchange_status)))
        name = "vaporized" if weird else self.exchange_status[cloid][0]
        self.book.on_order_updates(updates(self.update_for(cloid, name)), self.now)

    @precondition(lambda self: self.connected)
    @rule(data=st.data())
    def reconcile_while_connected(self, data: st.DataObject) -> None:
        self.do_reconcile(data)

    @precondition(lambda self: self.connected and self.now - self.connected_at >= 10.0)
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        for entry in self.posts.drain_on_disconnect(self.now):
            if data.draw(st.booleans()):
                self.execute(entry.batch, data)
            self.route(entry)
        self.posts = PostTable(timeout=5.0)
        self.undelivered = []  # lost: they will only ever appear in the snapshot
        self.connected = False
        self.flags.ready = False

    @precondition(lambda self: not self.connected)
    @rule(data=st.data())
    def reconnect(self, data: st.DataObject) -> None:
        if self.executed:
            snapshot = data.draw(st.lists(st.sampled_from(self.executed), max_size=6))
            self.book.on_user_fills(user_fills(*snapshot, snapshot=True), self.now)
        if isinstance(self.do_reconcile(data), Reconciled):
            self.connected = True
            self.connected_at = self.now
            self.flags.ready = True

    @rule(dt=st.sampled_from([0.5, 1.0, 5.0, 20.0, 40.0]), data=st.data())
    def advance(self, dt: float, data: st.DataObject) -> None:
        self.now += dt
        aged = [f for t, f in self.undelivered if self.now - t >= FILL_DELAY]
        if aged:
            self.deliver(aged)
        for entry in self.posts.expire(self.now):
            if data.draw(st.booleans()):
                self.execute(entry.batch, data)
            self.route(entry)
        self.time_stop.check(self.now)

    @precondition(lambda self: not self.executor.stopped and self.now >= 150.0)
    @rule()
    def hard_stop(self) -> None:
        self.executor.hard_stop("test", self.now)

    # The busy paths get more weight: hypothesis picks among enabled rules uniformly.
    @rule(market=st.sampled_from(MARKETS), is_buy=st.booleans(), usd=st.integers(10, 30))
    def submit_small(self, market: str, is_buy: bool, usd: int) -> None:
        self.submit(market, is_buy, usd)

    @precondition(lambda self: self.connected)
    @rule()
    def send_ok(self) -> None:
        self.send()

    @precondition(lambda self: len(self.posts) > 0)
    @rule(data=st.data())
    def reply_ok(self, data: st.DataObject) -> None:
        self.reply(data, "ok")

    @rule(data=st.data())
    def advance_a_second(self, data: st.DataObject) -> None:
        self.advance(1.0, data)

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def pending_iff_a_non_terminal_order_exists(self) -> None:
        live = {o.market for o in self.book.orders() if not o.state.is_terminal}
        for market in MARKETS:
            assert self.book.pending(market) == (market in live)

    @invariant()
    def indexed_queries_match_a_scan_of_every_order(self) -> None:
        """The gates read an index of unsettled orders; it must answer exactly as a scan of all of them
        (same orders, same order)."""
        everything = self.book.orders()
        assert self.book.live_orders() == tuple(o for o in everything if not o.state.is_terminal)
        unknown = tuple(o for o in everything if o.state is OrderState.UNKNOWN)
        assert self.book.unknown_orders() == unknown
        for market in MARKETS:
            announced = sum((o.sign * o.unconfirmed_fill for o in everything if o.market == market), D(0))
            assert self.book.expected_size(market) == self.book.size(market) + announced

    @invariant()
    def no_order_holds_a_mark_without_a_reason(self) -> None:
        """Queued orders are in the scheduler, sent ones in a pending post, unknown ones are younger than
        the deadline — so no order can hold its market's pending mark forever."""
        in_queue = {i.cloid for i in (*self.scheduler.reduce_only, *self.scheduler.new_orders)}
        in_posts = {i.cloid for e in self.posts.pending for i in e.batch.order_items}
        for order in self.book.orders():
            if order.state is OrderState.QUEUED:
                assert order.cloid in in_queue
            elif order.state is OrderState.SENT:
                assert order.cloid in in_posts
            elif order.state is OrderState.UNKNOWN:
                assert self.now - order.changed_at < DEADLINE
            else:
                assert order.state.is_terminal
        # The other direction is looser: a requeued reduce-only order may meanwhile have been settled
        # or made unknown by exchange evidence (resending it is at worst a benign reject).
        assert all(c is not None and self.book.order(c) is not None for c in in_queue | in_posts)

    @invariant()
    def position_size_is_the_sum_of_distinct_fills(self) -> None:
        for market in MARKETS:
            assert self.book.size(market) == self.counted[market]

    @invariant()
    def nothing_exceeds_the_caps_at_mark(self) -> None:
        """The exchange's true positions stay within the caps, because whenever the engine is ready the
        book's exposure (what the gates read) is never below the truth: it may only over-count."""
        true_total = D(0)
        for market in MARKETS:
            true_notional = abs(self.truth[market]) * MARKS[market]
            assert true_notional <= CAP_MARKET
            true_total += true_notional
            if self.flags.ready:
                assert self.book.exposure(market) >= abs(self.truth[market])
        assert true_total <= CAP_TOTAL

    @invariant()
    def each_reject_is_reported_once(self) -> None:
        out = self.outbox.drain()
        rejected = [t for t in out if isinstance(t, OrderTransition) and t.new is OrderState.REJECTED]
        assert len(of_type(out, OrderRejected)) == len(rejected)


BookMachine.TestCase.settings = settings(
    max_examples=250, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_book_state_machine = BookMachine.TestCase
