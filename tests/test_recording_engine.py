"""The engine records against the simulator: what it received, as received, with the sync's answers;
a recorder that stalls or fails costs recorded frames, never a frame the engine trades on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import trio
from prometheus_client import generate_latest

from hip3_trio.metrics import registry_for
from hip3_trio.recording.format import iter_records
from hip3_trio.recording.recorder import Recorder, prepare_record_dir

from .engine_rig import BASE_MS, MARKETS, Rig, run_rig
from .test_metrics import samples
from .test_recorder import write_inline


def clock_us() -> int:
    """The engine's wall clock in the rig (it agrees with the simulator's)."""
    return BASE_MS * 1000 + round(trio.current_time() * 1_000_000)


def make_recorder(directory: Path, **changes: object) -> Recorder:
    prepare_record_dir(directory)  # as the CLI does
    options: dict[str, object] = {"clock_us": clock_us, "run_write": write_inline} | changes
    return Recorder(directory, env="sim", markets=MARKETS, **options)  # type: ignore[arg-type]


async def run_for(seconds: float, rig: Rig) -> None:
    await rig.wait_ready()
    await trio.sleep(seconds)
    rig.stop.set()


async def test_the_recording_holds_every_market_data_frame_the_engine_received(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    recorder = make_recorder(tmp_path / "rec")
    scraped: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]] = []

    async def scenario(rig: Rig) -> None:
        await run_for(20, rig)
        scraped.append(samples(generate_latest(registry_for(rig.engine)).decode()))
        assert "| recorded " in rig.engine.status_line(20)

    rig = await run_rig(tmp_path, scenario, recorder=recorder)
    records = list(iter_records(tmp_path / "rec"))
    recorded = [r.payload for r in records if r.kind == "ws"]
    received = [r.text for r in rig.received if r.channel in ("bbo", "activeAssetCtx", "l2Book")]
    assert recorded == received
    channels = {r.json()["channel"] for r in records if r.kind == "ws"}
    assert channels == {"bbo", "activeAssetCtx", "l2Book"}  # recording subscribes the depth too
    bbo_times = [r.recv_us for r in records if r.kind == "ws" and '"channel":"bbo"' in r.payload]
    assert bbo_times == [BASE_MS * 1000 + round(x.at * 1e6) for x in rig.received if x.channel == "bbo"]
    # The file starts with the head and the first sync's answers, in the order they were asked.
    head, *infos = records[:4]
    assert head.kind == "head" and head.json()["markets"] == list(MARKETS) and head.json()["depth"] is True
    assert [r.json()["req"]["type"] for r in infos] == ["perpDexs", "meta", "userFees"]
    assert infos[1].json()["resp"]["universe"][0]["name"] == "xyz:COIN"
    # The core ignored the l2Book frames; it traded on the rest as always.
    assert rig.ready_at
    s = rig.engine.statistics().recording
    assert s is not None and (s.frames, s.dropped, s.failed) == (len(recorded), 0, None)
    assert any("recorded" in line for line in rig.lines)  # the summary says what was recorded
    metrics = scraped[0]
    assert metrics[("hip3_recording_frames_total", ())] > 0
    assert metrics[("hip3_recording_dropped_total", ())] == 0
    assert metrics[("hip3_recording_failed", ())] == 0
    assert metrics[("hip3_recording_last_flush_timestamp_seconds", ())] > BASE_MS / 1000


async def test_a_stalled_recorder_costs_recorded_frames_never_a_frame_the_engine_reads(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def stalled(write: Callable[[], int]) -> int:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    recorder = make_recorder(tmp_path / "rec", run_write=stalled, capacity=5)

    async def scenario(rig: Rig) -> None:
        await run_for(20, rig)
        engine_frames = rig.engine.statistics().link.frames
        market_data = sum(engine_frames.get(kind, 0) for kind in ("Bbo", "ActiveAssetCtx", "L2Book"))
        received = [r for r in rig.received if r.channel in ("bbo", "activeAssetCtx", "l2Book")]
        assert market_data == len(received) > 20  # the engine read every frame
        s = recorder.statistics()
        # Every frame and the 3 sync answers were queued, held or dropped; none was waited for.
        assert (s.frames, s.infos, s.members) == (0, 0, 0)
        assert s.dropped > 0 and s.dropped + s.queued == market_data + 3

    rig = await run_rig(tmp_path, scenario, recorder=recorder)
    assert rig.ready_at


async def test_a_failed_recorder_alerts_and_trading_goes_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def disk_full(write: Callable[[], int]) -> int:
        raise OSError(28, "No space left on device")

    recorder = make_recorder(tmp_path / "rec", run_write=disk_full)
    alerts: list[str] = []

    async def scenario(rig: Rig) -> None:
        alert = rig.engine.core.alerts.alert

        def spy(kind: object, *args: object, **kwargs: object) -> None:
            alerts.append(str(kind))
            alert(kind, *args, **kwargs)  # type: ignore[arg-type]

        rig.engine.core.alerts.alert = spy  # type: ignore[method-assign,assignment]
        await run_for(10, rig)

    rig = await run_rig(tmp_path, scenario, recorder=recorder)
    assert "recorder_failure" in alerts
    assert rig.engine.statistics().recording is not None
    assert rig.ready_at  # READY, and stayed up to the orderly stop
    assert any("FAILED" in line for line in rig.lines)
