"""Time stop and flatten: aged positions get a reduce-only IOC through the mark; one live flatten per
market; rejected or partial flattens are retried for the remainder; FlattenFailed after the deadline;
flatten-all for every position."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hip3_trio.execution.time_stop import BPS, TimeStop, TimeStopConfig
from hip3_trio.position.records import FlattenFailed, UnknownOrderEscalated
from hip3_trio.wire import messages as m
from hip3_trio.wire.actions import LimitOrderType, OrderWire
from hip3_trio.wire.markets import MarketSpec
from hip3_trio.wire.messages import Filled
from tests.test_executor import Rig, Touch, signal
from tests.test_fees import make_core
from tests.test_position_book import SPECS, A, B, C, D, asset_position, fill, of_type, user_fills


def setup(**config: object) -> tuple[Rig, TimeStop]:
    rig = Rig()
    stop = TimeStop(
        book=rig.book,
        executor=rig.executor,
        marks=rig.marks,
        touch=rig.touches.get,
        config=TimeStopConfig(**config),  # type: ignore[arg-type]
    )
    return rig, stop


def queued_markets(rig: Rig) -> list[str]:
    return [i.market for i in rig.scheduler.reduce_only]


def only_order(rig: Rig, market: str) -> OrderWire:
    (order,) = [i.order for i in rig.scheduler.reduce_only if i.market == market]
    return order


def test_a_position_is_flattened_once_it_is_older_than_the_hold_time() -> None:
    rig, stop = setup(hold_s=30.0)
    rig.book.on_user_fills(user_fills(fill(A, sz="2", px="10")), 100.0)
    assert stop.check(129.9) == []
    (sent,) = stop.check(130.0)
    order = sent.order
    assert order == OrderWire(
        asset=SPECS[A].asset,
        is_buy=False,
        limit_px=D("9.95"),
        sz=D(2),
        reduce_only=True,
        order_type=LimitOrderType("Ioc"),
        cloid=order.cloid,
    )
    assert only_order(rig, A) == order
    tracked = rig.book.order(sent.cloid)
    assert tracked is not None and tracked.reason == "time_stop"


def test_flatten_prices_are_mark_through_by_the_slippage_and_rounded_aggressively() -> None:
    rig, stop = setup(hold_s=1.0, flatten_slippage_bps=Decimal(50))
    rig.marks[A] = D("10.0009")  # long → sell at 9.9508955 → floored to 9.9508
    rig.marks[B] = D("20.0001")  # short → buy at 20.1001005 → raised to 20.101
    rig.book.on_user_fills(user_fills(fill(A, sz="1"), fill(B, sz="1", is_buy=False)), 0.0)
    stop.check(1.0)
    assert only_order(rig, A).limit_px == D("9.9508") and not only_order(rig, A).is_buy
    assert only_order(rig, B).limit_px == D("20.101") and only_order(rig, B).is_buy


@pytest.mark.parametrize(
    ("touch_a", "touch_b", "sell_a", "buy_b"),
    [
        # The book dropped 2 % below a lagging mark (competitors swept the dislocation): a long's sell
        # priced 50 bps under the mark (9.95) cannot match a 9.80 bid; it is priced 50 bps through the bid
        # instead, and a short's buy 50 bps through an ask above its mark.
        (Touch(D("9.80"), D("9.81")), Touch(D("20.39"), D("20.40")), "9.751", "20.502"),
        # A bid above the mark: the mark is the more aggressive reference; a side with no level (a
        # one-sided book) prices from the mark, as before.
        (Touch(D("10.05"), D("10.06")), Touch(D("19.90"), None), "9.95", "20.1"),
    ],
    ids=["book-moved-through-the-mark", "touch-on-the-far-side-or-empty"],
)
def test_a_flatten_starts_from_the_more_aggressive_of_the_mark_and_the_touch(
    touch_a: Touch, touch_b: Touch, sell_a: str, buy_b: str
) -> None:
    rig, stop = setup(hold_s=1.0, flatten_slippage_bps=Decimal(50))
    rig.touches[A], rig.touches[B] = touch_a, touch_b
    rig.book.on_user_fills(user_fills(fill(A, sz="1"), fill(B, sz="1", is_buy=False)), 0.0)
    stop.check(1.0)
    assert only_order(rig, A).limit_px == D(sell_a) and not only_order(rig, A).is_buy
    assert only_order(rig, B).limit_px == D(buy_b) and only_order(rig, B).is_buy


def test_the_touch_never_takes_a_flatten_beyond_the_maximum_through_the_mark() -> None:
    # An empty-looking bid 30 % under the mark (a thin HIP-3 book after a sweep): the flatten goes no
    # further than flatten_max_slippage_bps (500) through the mark, whatever the book shows.
    rig, stop = setup(hold_s=1.0, flatten_slippage_bps=Decimal(50))
    rig.touches[A] = Touch(D("7.00"), D("10.0"))
    rig.book.on_user_fills(user_fills(fill(A, sz="1")), 0.0)
    stop.check(1.0)
    assert only_order(rig, A).limit_px == D("9.5")


def test_the_size_is_clamped_to_the_position_and_never_rounded_up() -> None:
    rig, stop = setup(hold_s=1.0)
    rig.book.reconcile([asset_position(A, "1.239"), asset_position(C, "-0.006")], [], {}, 0.0)
    stop.check(1.0)
    assert only_order(rig, A).sz == D("1.23")
    assert queued_markets(rig) == [A]  # below one lot: nothing to send


def test_one_live_flatten_per_market() -> None:
    rig, stop = setup(hold_s=1.0)
    rig.book.on_user_fills(user_fills(fill(A, sz="2")), 0.0)
    assert len(stop.check(1.0)) == 1
    assert stop.check(2.0) == []
    rig.send()  # sent: still live
    assert stop.check(3.0) == []
    assert len(rig.book.live_orders(A)) == 1


def test_a_rejected_flatten_is_retried_on_the_next_check() -> None:
    rig, stop = setup(hold_s=1.0)
    rig.book.on_user_fills(user_fills(fill(A, sz="2")), 0.0)
    (first,) = stop.check(1.0)
    rig.book.on_reply_error(first.cloid, "Order could not immediately match against any resting orders.", 1.5)
    (again,) = stop.check(2.0)
    assert again.order.sz == 2 and again.cloid != first.cloid


def test_a_partial_flatten_is_retried_for_the_remainder() -> None:
    rig, stop = setup(hold_s=1.0)
    rig.book.on_user_fills(user_fills(fill(A, sz="2")), 0.0)
    (first,) = stop.check(1.0)
    rig.book.on_reply_filled(first.cloid, Filled(D("1.5"), D("9.95"), 5), 1.5)
    (rest,) = stop.check(2.0)  # the reply's fills have not arrived: what remains is 0.5
    assert rest.order.sz == D("0.5")
    rig.book.on_user_fills(user_fills(fill(A, sz="1.5", is_buy=False, oid=5)), 2.5)
    assert rig.book.size(A) == D("0.5")
    assert stop.check(3.0) == []  # the remainder's flatten is still live


def test_a_flatten_announced_filled_waits_for_its_fills() -> None:
    rig, stop = setup(hold_s=1.0)
    rig.book.on_user_fills(user_fills(fill(A, sz="2")), 0.0)
    (first,) = stop.check(1.0)
    rig.book.on_reply_filled(first.cloid, Filled(D(2), D("9.95"), 5), 1.5)
    assert stop.check(2.0) == []
    rig.book.on_user_fills(user_fills(fill(A, sz="2", is_buy=False, oid=5)), 2.5)
    assert rig.book.position(A) is None
    stop.check(3.0)
    assert stop.flattening(A) is None


def test_flatten_failed_after_the_deadline_and_retries_continue() -> None:
    rig, stop = setup(hold_s=30.0, flatten_fail_after_s=60.0)
    rig.book.on_user_fills(user_fills(fill(A, sz="2")), 0.0)
    for second in range(30, 211):
        for sent in stop.check(float(second)):
            rig.book.on_reply_error(sent.cloid, "Order could not immediately match", float(second))
    failures = of_type(rig.book.outbox.drain(), FlattenFailed)
    assert [f.market for f in failures] == [A, A, A]
    # The plan's deadline runs from entry (0 s), not from the first flatten (30 s): at 60, 120, 180 s.
    assert [f.age_s for f in failures] == [60.0, 120.0, 180.0]
    assert stop.flattening(A) == 30.0
    assert len(stop.check(211.0)) == 1  # and it keeps trying


def test_flatten_all_flattens_young_positions_through_the_same_path() -> None:
    rig, stop = setup(hold_s=30.0)
    rig.book.on_user_fills(user_fills(fill(A, sz="2"), fill(B, sz="1", is_buy=False)), 0.0)
    sent = stop.flatten_all(1.0)
    assert sorted(s.market for s in sent) == [A, B]
    assert all(s.order.reduce_only for s in sent)
    assert {o.reason for o in rig.book.live_orders()} == {"flatten_all"}


def test_a_latched_hard_stop_drops_queued_entries_and_flattens_everything() -> None:
    rig, stop = setup(hold_s=30.0)
    rig.book.on_user_fills(user_fills(fill(A, sz="2")), 0.0)
    entry = rig.submit(signal(B, price="20")).cloid
    rig.flags.latched = True  # latched by the risk monitor, or loaded latched after a restart
    assert [s.market for s in stop.check(1.0)] == [A]
    assert rig.scheduler.new_orders == () and not rig.book.pending(B)
    tracked = rig.book.order(entry)
    assert tracked is not None and tracked.detail == "dropped by hard stop: hard stop latched"
    assert not rig.executor.enforce_latch(2.0)  # once


def test_no_mark_no_flatten_but_the_deadline_still_runs() -> None:
    rig, stop = setup(hold_s=1.0, flatten_fail_after_s=60.0)
    rig.book.on_user_fills(user_fills(fill(A, sz="2")), 0.0)
    del rig.marks[A]
    assert stop.check(1.0) == [] and stop.check(61.0) == []
    assert len(of_type(rig.book.outbox.drain(), FlattenFailed)) == 1
    rig.marks[A] = D(10)
    assert len(stop.check(62.0)) == 1


def test_check_runs_the_book_housekeeping() -> None:
    rig, stop = setup()
    cloid = rig.submit().cloid
    rig.book.mark_unknown(cloid, 0.0, "timeout")
    stop.check(60.0)
    assert of_type(rig.book.outbox.drain(), UnknownOrderEscalated)


def test_the_core_keeps_each_markets_touch_for_flattens_and_forgets_them_with_the_connection(
    tmp_path: Path,
) -> None:
    core = make_core(tmp_path)
    core.on_markets({"xyz:COIN": MarketSpec(coin="xyz:COIN", asset=110_000, sz_decimals=2, dex="xyz")})
    core.on_bbo(m.Bbo("xyz:COIN", 5, m.Level(D("100.5"), D(3), 2), None), 1.0)
    core.on_bbo(m.Bbo("xyz:OTHER", 5, m.Level(D("7"), D(3), 2), m.Level(D("8"), D(3), 2)), 1.0)
    touch = core.time_stop.touch("xyz:COIN")
    assert touch is not None and (touch.bid_px, touch.ask_px) == (D("100.5"), None)
    assert core.time_stop.touch("xyz:OTHER") is None  # an unknown market is not kept
    core.on_disconnect(0, 0, 2.0)
    assert core.time_stop.touch("xyz:COIN") is None  # until the new connection's bbo, the mark


_PX = st.decimals(min_value=D("0.01"), max_value=D(100_000), places=4)


@given(
    mark=_PX,
    bid=st.one_of(st.none(), _PX),
    ask=st.one_of(st.none(), _PX),
    step=st.integers(1, 500),
    attempts=st.integers(0, 20),
)
def test_a_flatten_limit_is_never_kinder_than_the_mark_nor_past_the_cap(
    mark: Decimal, bid: Decimal | None, ask: Decimal | None, step: int, attempts: int
) -> None:
    """For a sell (a long's flatten, which takes the bid) and a buy (a short's, which takes the ask): at
    least `slippage` through the mark, at least `slippage` through its touch when that is on the far side
    of the mark, and never beyond the cap through the mark."""
    rig, stop = setup(flatten_slippage_bps=Decimal(step), flatten_max_slippage_bps=Decimal(500))
    slippage = stop.slippage_bps(attempts)
    cap = Decimal(500)
    rig.touches[A] = Touch(bid, ask)
    _, sell = stop.limit_price(A, mark, is_buy=False, slippage_bps=slippage)
    _, buy = stop.limit_price(A, mark, is_buy=True, slippage_bps=slippage)
    floor, ceiling = mark * (BPS - cap) / BPS, mark * (BPS + cap) / BPS
    assert floor <= sell <= mark * (BPS - slippage) / BPS
    assert mark * (BPS + slippage) / BPS <= buy <= ceiling
    through_bid = mark if bid is None or bid >= mark else bid
    through_ask = mark if ask is None or ask <= mark else ask
    assert sell == max(through_bid * (BPS - slippage) / BPS, floor)
    assert buy == min(through_ask * (BPS + slippage) / BPS, ceiling)
