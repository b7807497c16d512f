"""Risk limits across restarts (issue 13, item 7): the monitor's counters are rebuilt from the journal.

The PLAN counts the automatic-stop limits "over the whole test, not per process", so an engine restarted
by runit must carry on where the last run left off (since the hard stop was last cleared), and trip
exactly where one uninterrupted run would have.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal as D
from pathlib import Path

import pytest
import trio
import trio.testing

from hip3_trio.cli import restore_risk_counters
from hip3_trio.journal import EventRecord, Journal, TradeRecord
from hip3_trio.ops import hardstop_cmd
from hip3_trio.position.records import ClosedTrade
from hip3_trio.risk.hard_stop import DEFAULT_FILENAME, HardStop
from hip3_trio.risk.history import EventRow, TradeRow, risk_event_record, risk_history
from hip3_trio.risk.monitor import (
    HOUR_MS,
    FlattenFailed,
    OrderRejected,
    RiskConfig,
    RiskMonitor,
    SlippageMeasured,
    TradeClosed,
)
from tests.engine_rig import Rig, run_rig

M = "xyz:COIN"
T0 = 1_700_000_000_000
MARGIN = "Insufficient margin to place order."
IOC_MISS = "Order could not immediately match against any resting orders. asset=110000"
STREAK = "6 consecutive losing trades > 5"


def fresh_monitor(tmp_path: Path) -> RiskMonitor:
    return RiskMonitor(RiskConfig(), HardStop.load(tmp_path, 0))


def event_row(time_ms: int, kind: str, **detail: object) -> EventRow:
    return (time_ms, kind, json.dumps(detail))


# --- the rebuild: journal rows -> the monitor's counters --------------------------------------------


def test_rows_rebuild_every_counter(tmp_path: Path) -> None:
    trades: list[TradeRow] = [(T0 + 1000, M, -1.5), (T0 + 2000, M, -2.25), (T0 + 3000, M, 0.5)]
    trades.append((T0 + 4000, M, -1.0))
    events = [
        event_row(T0 + 1500, "reject", market=M, message=MARGIN),
        event_row(T0 + 1600, "reject", market=M, message=IOC_MISS),  # benign: not counted
        event_row(T0 + 1700, "connect"),  # not a risk event
        event_row(T0 + 1800, "hard_stop", reason="earlier"),  # nor is this
        event_row(T0 + 2500, "flatten_failed", market=M, detail="not flat"),
        event_row(T0 + 2600, "flatten_failed", market=M, detail="not flat"),
        event_row(T0 + 3100, "slippage", market=M, bps="60"),
        event_row(T0 + 3200, "slippage", market=M, bps="40"),  # resets the streak
        event_row(T0 + 3300, "slippage", market=M, bps="70.5"),
        event_row(T0 + 3400, "slippage", market=M, bps="80"),
        (T0 + 3500, "reject", "not json"),  # unreadable: counted as non-benign (the safe side)
    ]
    history = risk_history(trades, events)
    times = [t for t, _ in history]
    assert times == sorted(times) and len(history) == 4 + 2 + 2 + 4 + 1

    monitor = fresh_monitor(tmp_path)
    assert monitor.restore(history) is None
    assert monitor.realized_pnl == D("-4.25")
    assert monitor.consecutive_losses == 1
    assert monitor.flatten_failures == 2
    assert monitor.slippage_streak == 2
    assert monitor.rejects_in_window(T0 + 4000) == 2
    assert monitor.rejects_in_window(T0 + 1500 + HOUR_MS) == 1  # the rolling hour keeps its times
    assert not monitor.hard_stop.latched


def test_rows_that_already_cross_a_limit_latch_at_start_with_the_crossing_event(tmp_path: Path) -> None:
    trades: list[TradeRow] = [(T0 + i * 1000, M, -1.0) for i in range(1, 8)]
    monitor = fresh_monitor(tmp_path)
    assert monitor.restore(risk_history(trades, [])) == STREAK
    record = monitor.hard_stop.record
    assert record is not None and (record.reason, record.time_ms) == (STREAK, T0 + 6000)
    assert monitor.consecutive_losses == 7


def test_rejects_count_in_the_rolling_hour_of_their_own_times(tmp_path: Path) -> None:
    spread = [event_row(T0 + i * HOUR_MS // 10, "reject", market=M, message=MARGIN) for i in range(11)]
    monitor = fresh_monitor(tmp_path)
    assert monitor.restore(risk_history([], spread)) is None  # 11 rejects, but never 11 in one hour
    dense = [event_row(T0 + i * 1000, "reject", market=M, message=MARGIN) for i in range(11)]
    monitor = fresh_monitor(tmp_path / "dense")
    reason = monitor.restore(risk_history([], dense))
    assert reason is not None and reason.startswith("11 non-benign order rejects")


def test_each_table_keeps_its_own_order_when_merged(tmp_path: Path) -> None:
    # A loss then a win, routed and journaled in that order although the win's exit fill is stamped
    # earlier: the streak ends at 0 as it did live (sorting by time would leave it at 1).
    trades: list[TradeRow] = [(T0 + 10, M, -1.0), (T0, M, 2.0)]
    monitor = fresh_monitor(tmp_path)
    monitor.restore(risk_history(trades, [event_row(T0, "flatten_failed", market=M)]))
    assert (monitor.consecutive_losses, monitor.flatten_failures) == (0, 1)


def test_flatten_failures_and_slippage_read_back_as_journaled() -> None:
    events = (FlattenFailed(market=M, detail="not flat 30 s"), SlippageMeasured(market=M, bps=D("61.25")))
    for event in events:
        record = risk_event_record(event, T0)
        assert risk_history([], [(record.time_ms, record.kind, record.detail_json)]) == [(T0, event)]


# --- restarts through real journal files ------------------------------------------------------------


class Run:
    """One engine process, as far as risk goes: the latch loaded and the monitor rebuilt from the journal by
    the CLI's own start-up step; each risk event journaled and counted as the engine does it."""

    def __init__(self, state_dir: Path, config: RiskConfig | None = None) -> None:
        self.journal = Journal.open(state_dir)
        self.monitor = RiskMonitor(config or RiskConfig(), HardStop.load(state_dir, 0))
        restore_risk_counters(self.monitor, self.journal, state_dir)

    def trade(self, time_ms: int, pnl: str) -> str | None:
        self.journal.write([_trade_record(time_ms, D(pnl))])
        return self.monitor.on_event(TradeClosed(market=M, pnl=D(pnl)), time_ms)

    def flatten_failed(self, time_ms: int) -> str | None:
        event = FlattenFailed(market=M, detail="not flat")
        self.journal.write([risk_event_record(event, time_ms)])
        return self.monitor.on_event(event, time_ms)

    def reject(self, time_ms: int, message: str = MARGIN) -> str | None:
        detail = {"market": M, "message": message}  # as the engine journals it
        self.journal.write([EventRecord(time_ms=time_ms, kind="reject", detail=detail)])
        return self.monitor.on_event(OrderRejected(market=M, message=message), time_ms)

    def close(self) -> None:
        self.journal.close()


def _trade_record(time_ms: int, pnl: D) -> TradeRecord:
    return TradeRecord(
        market=M,
        side="buy",
        size=D(1),
        entry_time_ms=time_ms - 1000,
        entry_px=D(100),
        exit_time_ms=time_ms,
        exit_px=D(100) + pnl,
        expected_edge_bps=None,
        realised_edge_bps=pnl * 100,
        slippage_bps=None,
        time_to_flat_ms=1000,
        pnl=pnl,
        fees=D(0),
    )


def trades(run: Run, pnls: Sequence[str], start_ms: int) -> list[str | None]:
    return [run.trade(start_ms + i * 1000, pnl) for i, pnl in enumerate(pnls)]


def test_restart_mid_streak_trips_at_the_sixth_loss_like_one_uninterrupted_run(tmp_path: Path) -> None:
    whole = Run(tmp_path / "whole")
    uninterrupted = trades(whole, ["-1"] * 6, T0)
    assert uninterrupted == [None] * 5 + [STREAK]

    first = Run(tmp_path / "restarted")
    before = trades(first, ["-1"] * 4, T0)
    first.close()
    second = Run(tmp_path / "restarted")
    assert second.monitor.consecutive_losses == 4 and not second.monitor.hard_stop.latched
    after = trades(second, ["-1"] * 2, T0 + 4000)
    assert before + after == uninterrupted
    assert second.monitor.hard_stop.record == whole.monitor.hard_stop.record


def test_restart_carries_the_cumulative_loss(tmp_path: Path) -> None:
    pnls = ["-8", "-8", "1", "-5", "-0.01"]  # -20.00 is within the budget, -20.01 is not
    whole = Run(tmp_path / "whole")
    uninterrupted = trades(whole, pnls, T0)
    assert uninterrupted == [None] * 4 + ["cumulative loss $20.01 > $20"]

    first = Run(tmp_path / "restarted")
    before = trades(first, pnls[:3], T0)
    first.close()
    second = Run(tmp_path / "restarted")
    assert second.monitor.realized_pnl == D(-15)
    assert before + trades(second, pnls[3:], T0 + 3000) == uninterrupted


def test_flatten_failures_and_rejects_carry_over_a_restart(tmp_path: Path) -> None:
    first = Run(tmp_path)
    assert [first.flatten_failed(T0 + i) for i in range(3)] == [None] * 3
    assert [first.reject(T0 + 10 + i) for i in range(10)] == [None] * 10
    first.reject(T0 + 20, IOC_MISS)  # benign
    first.close()
    second = Run(tmp_path)
    reason = second.reject(T0 + 100)
    assert reason is not None and reason.startswith("11 non-benign order rejects")
    assert second.flatten_failed(T0 + 200) == f"4 flatten failures > 3 (last: {M})"


def test_records_before_the_hard_stop_was_cleared_do_not_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Run(tmp_path)
    assert trades(first, ["-1"] * 6, T0)[-1] == STREAK
    first.flatten_failed(T0 + 7000)
    first.close()
    cleared_at = T0 + 60_000
    monkeypatch.setattr(hardstop_cmd, "_now_ms", lambda: cleared_at)
    assert hardstop_cmd.clear(tmp_path, by="op", yes=True, out=lambda _line: None) == 0

    second = Run(tmp_path)
    monitor = second.monitor
    assert not monitor.hard_stop.latched
    assert (monitor.realized_pnl, monitor.consecutive_losses, monitor.flatten_failures) == (D(0), 0, 0)
    assert trades(second, ["-1"] * 6, cleared_at + 1000) == [None] * 5 + [STREAK]
    second.close()

    # Latched again, the latch file no longer records the clear: the journal's hard_stop_cleared does.
    third = Run(tmp_path)
    assert third.monitor.consecutive_losses == 6


def test_a_budget_used_up_before_the_restart_latches_at_start(tmp_path: Path) -> None:
    first = Run(tmp_path)
    assert trades(first, ["-15", "-6"], T0) == [None, "cumulative loss $21 > $20"]
    first.close()
    # The latch is gone but was never cleared (a failed write, a file removed by hand): the journal
    # still says the budget is spent, so the engine starts stopped, for the same reason.
    (tmp_path / DEFAULT_FILENAME).unlink()
    second = Run(tmp_path)
    record = second.monitor.hard_stop.record
    assert record is not None and (record.reason, record.time_ms) == ("cumulative loss $21 > $20", T0 + 1000)
    assert HardStop.load(tmp_path, 0).latched  # and it is persisted again


# --- end to end: the engine journals, restarts, and carries on --------------------------------------


def close_trade(rig: Rig, pnl: str) -> None:
    """A round trip closes on the engine the way the position book reports one: the journal's trade and
    the risk monitor's `TradeClosed`, routed in one engine step."""
    now_ms = rig.engine.core.exchange_ms()
    trade = ClosedTrade(
        market=M,
        is_long=True,
        size=D(1),
        entry_px=D(100),
        exit_px=D(100) + D(pnl),
        pnl=D(pnl),
        fees=D(0),
        opened_at=trio.current_time(),
        closed_at=trio.current_time(),
        opened_ms=now_ms - 1_000,
        closed_ms=now_ms,
        expected_edge_bps=None,
    )
    rig.engine.core.outbox.emit(trade)
    rig.engine.core.outbox.emit(TradeClosed(market=M, pnl=trade.net_pnl))
    rig.engine.core.tick(trio.current_time())


def emit(rig: Rig, *events: FlattenFailed | SlippageMeasured) -> None:
    for event in events:
        rig.engine.core.outbox.emit(event)
    rig.engine.core.tick(trio.current_time())


async def test_engine_restarted_mid_streak_trips_at_the_sixth_loss_like_an_uninterrupted_run(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async def first_run(rig: Rig) -> None:
        await rig.wait_ready()
        for _ in range(4):
            close_trade(rig, "-1")
            await trio.sleep(1)
        emit(rig, *[FlattenFailed(market=M, detail="test")] * 3)
        emit(rig, *[SlippageMeasured(market=M, bps=D(60))] * 2)
        assert not rig.engine.core.hard_stop_latch.latched
        rig.stop.set()

    await run_rig(tmp_path, first_run, dry_run=True)

    reasons: list[str | None] = []

    async def second_run(rig: Rig) -> None:
        await rig.wait_ready()
        monitor = rig.engine.core.monitor
        # Carried over from the first run, not zero.
        assert (monitor.realized_pnl, monitor.consecutive_losses) == (D(-4), 4)
        assert (monitor.flatten_failures, monitor.slippage_streak) == (3, 2)
        close_trade(rig, "-1")
        first = rig.engine.core.hard_stop_latch.record
        reasons.append(first.reason if first is not None else None)
        await trio.sleep(1)
        close_trade(rig, "-1")
        record = rig.engine.core.hard_stop_latch.record
        reasons.append(record.reason if record is not None else None)
        rig.stop.set()

    rig = await run_rig(tmp_path, second_run, dry_run=True)
    assert reasons == [None, "6 consecutive losing trades > 5"]
    latch = HardStop.load(rig.state_dir, 0)
    assert latch.record is not None and latch.record.reason == "6 consecutive losing trades > 5"
