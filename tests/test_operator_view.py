"""What an operator reads: the status line spells its fields, an orderly stop logs no reconnect-looking
warning (a real loss still does), and the metrics an alerting rule needs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import trio
import trio.testing

from hip3_trio.execution.time_stop import TimeStopConfig
from tests.engine_rig import MARKETS, Rig, quiet_settings, run_rig

STATUS = re.compile(
    r"\[ *\d+s\]( DRY-RUN)? (?P<state>READY|SYNCING \(.*\)|DISCONNECTED|HARD STOP \(.*\): no new entries)"
    r" \| inflight \d+, queued \d+ \| positions (?P<positions>none|.+)"
    r" \| pnl realised -?\d+\.\d\d unrealised -?\d+\.\d\d"
    r" \| signals \d+, orders \d+, fills \d+, rejects \d+, trades \d+"
    r" \| connects \d+, disconnects \d+"
)


async def test_the_status_line_spells_its_fields(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    lines: list[str] = []

    async def scenario(rig: Rig) -> None:
        await rig.wait_ready()
        lines.append(rig.engine.status_line(12.0))
        rig.submit(rig.entry_signal(MARKETS[0]))
        await rig.wait_for(lambda: bool(rig.positions()))
        lines.append(rig.engine.status_line(13.0))
        rig.stop.set()

    hold = lambda user: quiet_settings(user, time_stop=TimeStopConfig(hold_s=300))  # noqa: E731
    await run_rig(tmp_path, scenario, settings=hold)
    flat, held = (STATUS.fullmatch(line) for line in lines)
    assert flat is not None and held is not None, lines
    assert lines[0] == (
        "[    12s] READY | inflight 0, queued 0 | positions none | pnl realised 0.00 unrealised 0.00 | "
        "signals 0, orders 0, fills 0, rejects 0, trades 0 | connects 1, disconnects 0"
    )
    assert re.fullmatch(r"xyz:COIN \+\d+(\.\d+)?", held["positions"]), lines[1]


async def test_an_orderly_stop_logs_no_reconnect_warning_but_a_lost_connection_does(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(rig: Rig) -> None:
        await rig.wait_ready()
        rig.sim.faults.close_after_frames = 1  # the next frame the venue sends: the connection drops
        await rig.wait_for(lambda: rig.engine.statistics().link.disconnects == 1)
        await rig.wait_ready()
        await trio.sleep(2)
        rig.stop.set()

    caplog.set_level(logging.INFO, logger="hip3_trio")
    rig = await run_rig(tmp_path, scenario)
    assert rig.engine.statistics().link.disconnects == 2  # the loss, then the orderly stop's close
    readiness = [r for r in caplog.records if r.name == "hip3_trio.position.readiness"]
    warnings = [r.getMessage() for r in readiness if r.levelno >= logging.WARNING]
    assert warnings == ["not ready: the connection ended; trading waits for a new connection and its sync"]
    assert "connection closed for the orderly stop" in [r.getMessage() for r in readiness]
