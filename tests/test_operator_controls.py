"""Operator controls on a running engine (simulator rig, autojump clock): `hardstop trip` from another
process latches the file, and the engine acts on it within 2 s — no new entries, everything flattened —
and alerts (a real webhook on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from hip3_trio.alerts import AlertsConfig
from hip3_trio.execution.executor import HardStopped, SubmitResult
from hip3_trio.execution.time_stop import TimeStopConfig
from hip3_trio.ops import hardstop_cmd
from hip3_trio.risk.hard_stop import HardStop
from tests.engine_rig import BASE_MS, MARKETS, Rig, quiet_settings, run_rig
from tests.test_alerts import webhook_server


async def test_a_running_engine_acts_on_hardstop_trip_within_2_s(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    tripped: list[float] = []
    acted: list[float] = []
    flat_at: list[float] = []
    command: list[str] = []
    after: list[SubmitResult] = []

    async def scenario(rig: Rig) -> None:
        await rig.wait_ready()
        rig.submit(rig.entry_signal(MARKETS[0]))
        with trio.fail_after(10):
            await rig.wait_for(lambda: bool(rig.positions()) and bool(rig.sim_positions()))
        await trio.sleep(5.3)  # the position is held (300 s): only the trip can flatten it now
        argv = ["trip", "--reason", "serious log found", "--by", "ops", "--state-dir", str(rig.state_dir)]
        assert hardstop_cmd.main(argv, out=command.append) == 0  # as another process would
        tripped.append(trio.current_time())
        with trio.fail_after(2):
            await rig.wait_for(lambda: rig.engine.core.hard_stop_latch.latched)
            acted.append(trio.current_time())
            await rig.wait_for(lambda: not rig.positions() and not rig.sim_positions())
            flat_at.append(trio.current_time())
        after.append(rig.submit(rig.entry_signal(MARKETS[1])))
        with trio.fail_after(5):
            await hook.wait_for("hard_stop")  # a person hears of it
        await trio.sleep(30)
        rig.stop.set()

    hold = lambda user: quiet_settings(user, time_stop=TimeStopConfig(hold_s=300))  # noqa: E731
    async with webhook_server(200) as hook:
        alerts = AlertsConfig(webhook_url=hook.url, timeout_s=60)
        rig = await run_rig(tmp_path, scenario, settings=hold, alerts=alerts)

    assert acted[0] - tripped[0] <= 0.5  # the file is looked at every half second
    assert flat_at[0] - tripped[0] < 2.0  # flattened on the venue within 2 s
    assert rig.orders(reduce_only=True, after=tripped[0])
    assert rig.orders(reduce_only=False, after=tripped[0]) == []
    assert isinstance(after[0], HardStopped)
    # The engine adopted the operator's latch (reason and time kept) and journaled its own hard stop.
    record = HardStop.load(rig.state_dir, BASE_MS).record
    assert record is not None and record.reason == "operator ops: serious log found"
    reasons = [
        r
        for (r,) in rig.query("SELECT json_extract(detail, '$.reason') FROM events WHERE kind = 'hard_stop'")
    ]
    assert reasons == ["operator ops: serious log found"]
    assert rig.query("SELECT COUNT(*) FROM events WHERE kind = 'hard_stop_tripped'") == [(1,)]
    assert any("HARD STOP (operator ops: serious log found)" in line for line in rig.lines)
    assert hook.kinds() == ["engine_start", "hard_stop", "engine_stop"]
    assert "HARD STOP latched: operator ops: serious log found" in hook.bodies[1]["text"]
