"""RiskMonitor: each hard-stop trigger, benign rejects, the rolling window, and latching."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import event as event_note
from hypothesis import given
from hypothesis import strategies as st

from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.risk.monitor import (
    HOUR_MS,
    FlattenFailed,
    OrderRejected,
    RiskConfig,
    RiskEvent,
    RiskMonitor,
    SlippageMeasured,
    TradeClosed,
    is_benign_reject,
)

M = "xyz:COIN"
MARGIN = "Insufficient margin to place order."


def monitor(tmp_path: Path, config: RiskConfig | None = None, realized_pnl: D = D(0)) -> RiskMonitor:
    return RiskMonitor(config or RiskConfig(), HardStop.load(tmp_path, now_ms=0), realized_pnl=realized_pnl)


def feed(mon: RiskMonitor, events: Sequence[RiskEvent], now_ms: int = 0) -> list[str | None]:
    return [mon.on_event(e, now_ms) for e in events]


def trade(pnl: str) -> TradeClosed:
    return TradeClosed(market=M, pnl=D(pnl))


def reject(message: str = MARGIN) -> OrderRejected:
    return OrderRejected(market=M, message=message)


def slip(bps: str) -> SlippageMeasured:
    return SlippageMeasured(market=M, bps=D(bps))


# --- cumulative loss ---------------------------------------------------------------------------


def test_cumulative_loss_of_exactly_20_does_not_trigger_but_more_does(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    assert feed(mon, [trade("-10"), trade("-10")]) == [None, None]
    assert not mon.hard_stop.latched
    reason = mon.on_event(trade("-0.01"), 5)
    assert reason is not None and "cumulative loss" in reason
    assert mon.hard_stop.record is not None and mon.hard_stop.record.reason == reason


def test_wins_offset_losses_in_the_cumulative_total(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    assert feed(mon, [trade("-15"), trade("10"), trade("-14")]) == [None, None, None]
    assert mon.realized_pnl == D(-19)


def test_a_seeded_loss_counts_towards_the_limit(tmp_path: Path) -> None:
    mon = monitor(tmp_path, realized_pnl=D(-19))
    assert mon.on_event(trade("-2"), 0) is not None


# --- consecutive losses ------------------------------------------------------------------------


def test_more_than_5_consecutive_losses_trigger(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    assert feed(mon, [trade("-1")] * 5) == [None] * 5
    reason = mon.on_event(trade("-1"), 0)
    assert reason is not None and "consecutive" in reason


@pytest.mark.parametrize("breaker", ["0.5", "0"])
def test_a_non_losing_trade_resets_the_losing_streak(tmp_path: Path, breaker: str) -> None:
    mon = monitor(tmp_path)
    events = [trade("-1")] * 5 + [trade(breaker)] + [trade("-1")] * 5
    assert feed(mon, events) == [None] * 11
    assert mon.consecutive_losses == 5


# --- flatten failures --------------------------------------------------------------------------


def test_more_than_3_flatten_failures_trigger(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    assert feed(mon, [FlattenFailed(market=M)] * 3) == [None] * 3
    reason = mon.on_event(FlattenFailed(market="xyz:OTHER"), 0)
    assert reason is not None and "flatten" in reason and "xyz:OTHER" in reason


# --- rejects -----------------------------------------------------------------------------------


def test_more_than_10_non_benign_rejects_within_an_hour_trigger(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    assert [mon.on_event(reject(), t * 1000) for t in range(10)] == [None] * 10
    reason = mon.on_event(reject(), HOUR_MS - 1)
    assert reason is not None and "reject" in reason and MARGIN in reason


def test_rejects_older_than_the_window_roll_off(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    assert feed(mon, [reject()] * 10, now_ms=0) == [None] * 10
    assert mon.on_event(reject(), HOUR_MS) is None
    assert mon.rejects_in_window(HOUR_MS) == 1
    assert not mon.hard_stop.latched


BENIGN = [
    "Order could not immediately match against any resting orders.",
    "Order could not immediately match against any resting orders. asset=100090170",
    "Reduce only order would increase position.",
    "Order 0: Reduce only order would increase position.",
    "Order must have minimum value of $10.",
    "Order must have minimum value of $10. asset=4",
    "iocCancelRejected",
    "reduceOnlyRejected",
    "minTradeNtlRejected",
]

NOT_BENIGN = [
    MARGIN,
    "Price must be divisible by tick size.",
    "Order price too far from oracle",
    "User or API Wallet 0x0000000000000000000000000000000000000001 does not exist.",
    "Invalid nonce: duplicate nonce",
    "marginCanceled",
    "",
]


@pytest.mark.parametrize("message", BENIGN)
def test_benign_rejects_are_recognised(message: str) -> None:
    assert is_benign_reject(message)


@pytest.mark.parametrize("message", NOT_BENIGN)
def test_other_rejects_are_not_benign(message: str) -> None:
    assert not is_benign_reject(message)


def test_benign_rejects_never_count(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    assert feed(mon, [reject(m) for m in BENIGN * 5]) == [None] * (len(BENIGN) * 5)
    assert mon.rejects_in_window(0) == 0


# --- slippage ----------------------------------------------------------------------------------


def test_slippage_over_50_bps_three_times_in_a_row_triggers(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    assert feed(mon, [slip("50.1"), slip("60")]) == [None, None]
    reason = mon.on_event(slip("51"), 0)
    assert reason is not None and "slippage" in reason


def test_slippage_at_or_under_50_bps_breaks_the_streak(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    events = [slip("60"), slip("60"), slip("50"), slip("60"), slip("60"), slip("-80")]
    assert feed(mon, events) == [None] * 6
    assert not mon.hard_stop.latched


# --- latching and configuration ----------------------------------------------------------------


def test_no_trigger_returns_none_and_leaves_the_stop_clear(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    assert feed(mon, [trade("1"), FlattenFailed(market=M), reject(), slip("10")]) == [None] * 4
    assert not mon.hard_stop.latched


def test_the_hard_stop_keeps_the_first_trigger_while_later_ones_are_still_reported(tmp_path: Path) -> None:
    mon = monitor(tmp_path)
    first = mon.on_event(trade("-25"), 100)
    feed(mon, [FlattenFailed(market=M)] * 3)
    later = mon.on_event(FlattenFailed(market=M), 200)
    assert first is not None and later is not None and later != first
    assert mon.hard_stop.record is not None
    assert (mon.hard_stop.record.reason, mon.hard_stop.record.time_ms) == (first, 100)


def test_a_trigger_is_persisted_for_the_next_start(tmp_path: Path) -> None:
    reason = monitor(tmp_path).on_event(trade("-21"), 42)
    record = HardStop.load(tmp_path, now_ms=0).record
    assert record is not None and (record.reason, record.time_ms) == (reason, 42)


def test_limits_are_configurable(tmp_path: Path) -> None:
    cfg = RiskConfig(
        max_loss_usd=D("0.4"),
        max_consecutive_losses=1,
        max_flatten_failures=0,
        max_rejects_per_hour=0,
        slippage_bps_limit=D(5),
        slippage_strikes=1,
    )
    events: list[RiskEvent] = [trade("-0.5"), FlattenFailed(market=M), reject(), slip("6")]
    for event in events:
        assert monitor(tmp_path / type(event).__name__, cfg).on_event(event, 0) is not None
        assert monitor(tmp_path / "defaults" / type(event).__name__).on_event(event, 0) is None


# --- property: against a reference model ------------------------------------------------------

events_st: st.SearchStrategy[RiskEvent] = st.one_of(
    st.just(FlattenFailed(market=M)),
    st.builds(trade, st.decimals(min_value=D(-8), max_value=D(3), places=2).map(str)),
    st.builds(slip, st.sampled_from(["10", "50", "50.01", "120"])),
    st.builds(reject, st.sampled_from([MARGIN, MARGIN, BENIGN[0], BENIGN[3]])),
)


gaps = st.one_of(st.integers(min_value=0, max_value=600_000), st.just(HOUR_MS // 2))


@given(st.lists(st.tuples(events_st, gaps), min_size=20, max_size=80))
def test_triggers_match_a_reference_model(steps: list[tuple[RiskEvent, int]]) -> None:
    with tempfile.TemporaryDirectory() as state:
        mon = RiskMonitor(RiskConfig(), HardStop.load(Path(state), now_ms=0))
        total, losses, slips, flattens, now = D(0), 0, 0, 0, 0
        reject_times: list[int] = []
        for event, gap in steps:
            now += gap
            if isinstance(event, TradeClosed):
                total += event.pnl
                losses = losses + 1 if event.pnl < 0 else 0
                expected = -total > 20 or losses > 5
            elif isinstance(event, SlippageMeasured):
                slips = slips + 1 if event.bps > 50 else 0
                expected = slips >= 3
            elif isinstance(event, FlattenFailed):
                flattens += 1
                expected = flattens > 3
            else:
                if event.message == MARGIN:
                    reject_times.append(now)
                expected = event.message == MARGIN and sum(t > now - HOUR_MS for t in reject_times) > 10
            if expected:
                event_note(f"trigger by {type(event).__name__}")
            assert (mon.on_event(event, now) is not None) == expected


@given(
    st.lists(
        st.tuples(
            st.sampled_from([MARGIN, MARGIN, MARGIN, BENIGN[1]]), st.integers(min_value=0, max_value=900_000)
        ),
        max_size=60,
    )
)
def test_reject_window_matches_a_reference_model(steps: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as state:
        mon = RiskMonitor(RiskConfig(), HardStop.load(Path(state), now_ms=0))
        counted: list[int] = []
        now = 0
        for message, gap in steps:
            now += gap
            if message == MARGIN:
                counted.append(now)
            expected = message == MARGIN and sum(t > now - HOUR_MS for t in counted) > 10
            if expected:
                event_note("reject limit crossed")
            assert (mon.on_event(reject(message), now) is not None) == expected
