"""The pure realism models (hip3_trio/sim/realism.py): blocks, ordering classes, competitor delays and
levels, depletion and refill, the sweep fill rule. No Trio: the same models serve a backtest."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal

import pytest

from hip3_trio.sim.realism import (
    BLOCK_CANCEL,
    BLOCK_FIRST,
    BLOCK_TAKER,
    BlockModel,
    BlockSchedule,
    CompetitionModel,
    Depletion,
    ImpactModel,
    LatencyModel,
    Realism,
    action_class,
    competitor_levels,
    sweep,
)

D = Decimal


def test_block_schedule_without_jitter_is_a_grid() -> None:
    schedule = BlockSchedule(BlockModel(interval_ms=70.0, jitter_ms=0.0), seed=1)
    assert schedule.next_boundary(0.0) == 70.0
    assert schedule.next_boundary(70.0) == 70.0
    assert schedule.next_boundary(70.5) == 140.0
    assert schedule.next_boundary(1000.0) == 1050.0


def test_block_schedule_is_seeded_and_jittered_within_bounds() -> None:
    model = BlockModel()
    a, b, c = BlockSchedule(model, 7), BlockSchedule(model, 7), BlockSchedule(model, 8)
    times = [i * 13.0 for i in range(2000)]
    bounds_a = [a.next_boundary(t) for t in times]
    # Same seed, same boundaries, whatever the queries (b asks only every tenth time).
    assert [b.next_boundary(t) for t in times[::10]] == bounds_a[::10]
    assert [c.next_boundary(t) for t in times] != bounds_a
    distinct = sorted(set(bounds_a))
    gaps = [y - x for x, y in itertools.pairwise(distinct)]
    assert all(50.0 <= g <= 90.0 for g in gaps)
    assert 65.0 < sorted(gaps)[len(gaps) // 2] < 75.0


def test_block_schedule_disabled_executes_on_arrival_and_prunes_history() -> None:
    assert BlockSchedule(BlockModel(enabled=False), 1).next_boundary(12.3) == 12.3
    schedule = BlockSchedule(BlockModel(jitter_ms=0.0), 1)
    schedule.next_boundary(200_000.0)
    with pytest.raises(ValueError, match="dropped"):
        schedule.next_boundary(10.0)


def test_block_model_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="interval_ms"):
        BlockModel(interval_ms=0.0)
    with pytest.raises(ValueError, match="jitter_ms"):
        BlockModel(interval_ms=10.0, jitter_ms=10.0)
    with pytest.raises(ValueError, match="one_way_ms"):
        LatencyModel(one_way_ms=-1.0)
    with pytest.raises(ValueError, match="refill_s"):
        ImpactModel(refill_s=float("nan"))


def _order(tif: str) -> dict[str, object]:
    return {"a": 1, "b": True, "p": "1", "s": "1", "r": False, "t": {"limit": {"tif": tif}}}


def test_action_class_follows_the_docs_categories() -> None:
    assert action_class({"type": "noop"}) == BLOCK_FIRST
    assert action_class({"type": "updateLeverage"}) == BLOCK_FIRST
    assert action_class({"type": "order", "orders": [_order("Alo"), _order("Alo")]}) == BLOCK_FIRST
    assert action_class({"type": "cancel", "cancels": []}) == BLOCK_CANCEL
    assert action_class({"type": "cancelByCloid", "cancels": []}) == BLOCK_CANCEL
    assert action_class({"type": "order", "orders": [_order("Alo"), _order("Ioc")]}) == BLOCK_TAKER
    assert action_class({"type": "order", "orders": [_order("Gtc")]}) == BLOCK_TAKER
    assert action_class("garbage") == BLOCK_FIRST
    assert action_class({"type": "order", "orders": ["x"]}) == BLOCK_FIRST


def test_competitor_delay_median_and_seed() -> None:
    model = CompetitionModel(median_ms=8.0, sigma=0.5)
    assert model.draw_delay_ms(random.Random(3)) == model.draw_delay_ms(random.Random(3))
    rng = random.Random(11)
    sample = sorted(model.draw_delay_ms(rng) for _ in range(4001))
    assert 7.5 < sample[2000] < 8.5
    # The documented default: a 5 ms client (10 ms round trip) is beaten most of the time.
    faster = sum(1 for d in sample if d > 10.0) / len(sample)
    assert 0.25 < faster < 0.40


def test_competitor_levels_take_only_liquidity_through_the_oracle() -> None:
    asks = [(D("99.8"), D("1")), (D("99.9"), D("0")), (D("99.95"), D("2")), (D("100.1"), D("3"))]
    # 10 bps below 100 is 99.9: 99.8 qualifies, 99.9 is empty, 99.95 is too close.
    assert competitor_levels(asks, True, D("100"), 10.0) == [(D("99.8"), D("1"))]
    bids = [(D("100.3"), D("1")), (D("100.1"), D("2")), (D("100.05"), D("1"))]
    assert competitor_levels(bids, False, D("100"), 10.0) == [(D("100.3"), D("1")), (D("100.1"), D("2"))]


def test_depletion_refills_linearly_over_refill_s() -> None:
    dep = Depletion(ImpactModel(refill_s=5.0))
    dep.consume(False, D("100"), D("4.00"), now_ms=1000.0)
    assert dep.visible(False, D("100"), D("10.00"), 1000.0) == D("6.00")
    assert dep.visible(False, D("100"), D("10.00"), 3500.0) == D("8.00")  # half back
    assert dep.visible(True, D("100"), D("10.00"), 3500.0) == D("10.00")  # the other side untouched
    assert dep.visible(False, D("101"), D("10.00"), 3500.0) == D("10.00")
    assert dep.visible(False, D("100"), D("10.00"), 5999.0) == D("9.99")  # rounded towards less
    assert dep.visible(False, D("100"), D("10.00"), 6000.0) == D("10.00")
    dep.consume(False, D("100"), D("30"), 7000.0)
    assert dep.visible(False, D("100"), D("10.00"), 7000.0) == D(0)


def test_depletion_forgets_prices_that_have_refilled() -> None:
    dep = Depletion(ImpactModel(refill_s=1.0))
    for i in range(100):
        dep.consume(True, D(100 + i), D(1), now_ms=i * 500.0)
    assert len(dep) == 2  # only the last second of consumption is kept


def test_depletion_disabled_never_depletes() -> None:
    dep = Depletion(ImpactModel(enabled=False))
    dep.consume(False, D("100"), D("4"), 0.0)
    assert dep.visible(False, D("100"), D("10"), 0.0) == D("10")


def test_sweep_walks_levels_to_the_limit_without_mutating() -> None:
    asks = [(D("100"), D("1")), (D("101"), D("2")), (D("102"), D("5"))]
    assert sweep(asks, True, D("101"), D("5")) == [(D("100"), D("1")), (D("101"), D("2"))]
    assert sweep(asks, True, D("105"), D("2.5")) == [(D("100"), D("1")), (D("101"), D("1.5"))]
    assert sweep(asks, True, D("99"), D("1")) == []
    bids = [(D("100"), D("1")), (D("99"), D("2"))]
    assert sweep(bids, False, D("99"), D("10")) == [(D("100"), D("1")), (D("99"), D("2"))]
    assert asks[1] == (D("101"), D("2"))


def test_realism_off_and_defaults() -> None:
    off = Realism.off()
    assert not off.blocks.enabled and off.latency.one_way_ms == 0.0
    assert not off.competition.enabled and not off.impact.enabled
    on = Realism()
    assert on.blocks.interval_ms == 70.0 and on.latency.one_way_ms == 5.0
    assert on.competition.enabled and on.impact.refill_s == 5.0


def test_a_stale_level_taken_stays_taken_while_it_stays_through_the_oracle() -> None:
    """A maker whose quote 20 bps through the oracle was taken does not post it again: that price does
    not refill while it stays through the oracle by `stale_bps`; once the oracle moves to it, it refills
    over `refill_s` from then. Without the oracle (or with stale_bps None) it refills as before."""
    d = Depletion(ImpactModel(refill_s=1.0))
    ask, oracle = Decimal("99.80"), Decimal("100")  # an ask 20 bps under the oracle
    d.consume(False, ask, Decimal("5.0"), 0.0, oracle)
    assert d.visible(False, ask, Decimal("5"), 500.0, oracle) == Decimal("0")
    assert d.visible(False, ask, Decimal("5"), 5_000.0, oracle) == Decimal("0")  # still stale: no refill
    moved = Decimal("99.85")  # the oracle moved: the ask is 5 bps under it, a fair quote again
    assert d.visible(False, ask, Decimal("5"), 5_500.0, moved) == Decimal("0")  # refills from now
    assert d.visible(False, ask, Decimal("5"), 6_000.0, moved) == Decimal("2.5")  # half refilled
    assert d.visible(False, ask, Decimal("5"), 6_500.0, moved) == Decimal("5")
    plain = Depletion(ImpactModel(refill_s=1.0, stale_bps=None))
    plain.consume(False, ask, Decimal("5.0"), 0.0, oracle)
    assert plain.visible(False, ask, Decimal("5"), 500.0, oracle) == Decimal("2.5")
    assert d.stale(True, Decimal("100.10"), oracle) and not d.stale(True, Decimal("100.05"), oracle)


def test_a_level_that_turns_stale_after_a_take_stops_refilling_there() -> None:
    """Taken at a fair price, the level refills; once the oracle moves so that it is stale, what is still
    missing stays missing (no jump back to the full take), until it is fair again."""
    d = Depletion(ImpactModel(refill_s=1.0))
    bid, fair, away = Decimal("100"), Decimal("100"), Decimal("99.5")  # then the bid is 50 bps above
    d.consume(True, bid, Decimal("4.0"), 0.0, fair)
    assert d.visible(True, bid, Decimal("4"), 250.0, fair) == Decimal("1")  # a quarter back
    assert d.visible(True, bid, Decimal("4"), 250.0, away) == Decimal("1")  # held at what was missing
    assert d.visible(True, bid, Decimal("4"), 9_000.0, away) == Decimal("1")
    assert d.visible(True, bid, Decimal("4"), 9_500.0, fair) == Decimal("1")  # fair again: refills from now
    assert d.visible(True, bid, Decimal("4"), 10_000.0, fair) == Decimal("2.5")
    assert len(d) == 1


def test_a_look_ahead_does_not_drop_the_present() -> None:
    # The simulator's block loop asks for the block of an oracle update far ahead, then, woken by an
    # action, for the block of now: with its `now_ms`, the look-ahead keeps the present's boundaries.
    schedule = BlockSchedule(BlockModel(jitter_ms=0.0), 1)
    assert schedule.next_boundary(100_000.0, now_ms=5.0) == 100_030.0
    assert schedule.next_boundary(10.0, now_ms=10.0) == 70.0


def test_depletion_is_refilling_until_its_last_take_has_come_back() -> None:
    depletion = Depletion(ImpactModel(refill_s=5.0))
    assert not depletion.refilling(0.0)
    depletion.consume(False, D("100"), D("2"), 1_000.0)
    assert depletion.refilling(1_000.0) and depletion.refilling(5_999.0)
    assert not depletion.refilling(6_000.0)  # fully back: the block loop stops waking for it
    depletion.consume(False, D("100.5"), D("1"), 7_000.0, oracle=D("101"))  # held at a stale price
    assert not depletion.refilling(7_000.0)  # held liquidity does not change with time alone
