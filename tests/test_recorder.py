"""The recorder: the tap never waits, the writer flushes every second, rotates at UTC midnight, survives
a crash mid-write, and its failure ends only itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from hip3_trio.errors import EnvironmentProblem
from hip3_trio.recording.format import ReadStats, Record, file_name_for, iter_records, recording_files
from hip3_trio.recording.recorder import Recorder, prepare_record_dir

MIDNIGHT_US = 1_795_046_400_000_000  # 2026-11-18T00:00:00Z
PERP_DEXS = [None, {"name": "xyz", "deployerFeeScale": "1.0"}]
META = {"universe": [{"name": "xyz:COIN", "szDecimals": 2}]}


async def write_inline(write: Callable[[], int]) -> int:
    """The recorder's writes in the Trio thread: under the autojump clock a worker thread would let
    virtual time run ahead while the disk works."""
    await trio.lowlevel.checkpoint()
    return write()


def bbo(i: int) -> str:
    return json.dumps({"channel": "bbo", "data": {"coin": "xyz:COIN", "time": i, "bbo": [None, None]}})


def wall_clock(start_us: int) -> Callable[[], int]:
    """A wall clock that reads `start_us` now and follows Trio's (virtual) clock."""
    t0 = trio.current_time()
    return lambda: start_us + round((trio.current_time() - t0) * 1_000_000)


def recorder(tmp_path: Path, clock: Callable[[], int], **changes: object) -> Recorder:
    options: dict[str, object] = {"clock_us": clock, "run_write": write_inline} | changes
    return Recorder(tmp_path, env="sim", markets=["xyz:COIN"], **options)  # type: ignore[arg-type]


def frames_of(records: list[Record]) -> list[int]:
    return [r.json()["data"]["time"] for r in records if r.kind == "ws"]


async def test_rotation_at_utc_midnight_starts_the_new_file_with_head_and_info(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = wall_clock(MIDNIGHT_US - 1_500_000)  # 1.5 s before midnight
    rec = recorder(tmp_path, clock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rec.run)
        rec.info({"type": "perpDexs"}, PERP_DEXS)
        rec.info({"type": "meta", "dex": "xyz"}, META)
        rec.info({"type": "clearinghouseState", "user": "0x1", "dex": "xyz"}, {})  # not kept
        for i in range(6):  # at -1.5, -1.0, -0.5, 0.0, +0.5, +1.0 s
            rec.frame(clock(), bbo(i))
            await trio.sleep(0.5)
        rec.close()
    day1, day2 = tmp_path / file_name_for(MIDNIGHT_US - 1), tmp_path / file_name_for(MIDNIGHT_US)
    assert recording_files(tmp_path) == [day1, day2]
    first, second = list(iter_records(day1)), list(iter_records(day2))
    assert [r.kind for r in first] == ["head", "info", "info", "ws", "ws", "ws"]
    assert frames_of(first) == [0, 1, 2]
    assert first[0].json() | {"markets": None} == {
        "format": 1,
        "env": "sim",
        "markets": None,
        "reason": "start",
        "depth": True,
    }
    assert [r.kind for r in second] == ["head", "info", "info", "ws", "ws", "ws"]
    assert second[0].json()["reason"] == "rotate"
    assert [r.json()["req"] for r in second[1:3]] == [{"type": "perpDexs"}, {"type": "meta", "dex": "xyz"}]
    assert second[1].json()["resp"] == PERP_DEXS
    # The restated answers carry the head's time: the new day's first record, midnight.
    assert {r.recv_us for r in second[:3]} == {MIDNIGHT_US}
    assert frames_of(second) == [3, 4, 5]
    assert rec.statistics().files == 2


async def test_the_writer_flushes_one_second_after_the_first_record(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = wall_clock(MIDNIGHT_US + 10_000_000)
    rec = recorder(tmp_path, clock)
    path = tmp_path / file_name_for(MIDNIGHT_US)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rec.run)
        start = trio.current_time()
        rec.frame(clock(), bbo(0))
        await trio.sleep(0.4)
        rec.frame(clock(), bbo(1))
        await trio.sleep(0.599)
        assert not path.exists() and rec.statistics().members == 0
        await trio.sleep(0.001)
        await trio.testing.wait_all_tasks_blocked()
        assert frames_of(list(iter_records(path))) == [0, 1]
        s = rec.statistics()
        assert (s.frames, s.members, s.last_flush_us) == (2, 1, MIDNIGHT_US + 11_000_000)
        assert trio.current_time() - start == pytest.approx(1.0)
        rec.close()


async def test_a_crash_mid_write_loses_at_most_the_last_second(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The process dies while appending a member: a reader gets every record of the members before it,
    and a restart appends after the cut member without losing anything more."""
    clock = wall_clock(MIDNIGHT_US + 10_000_000)
    crashes: list[int] = []

    async def dies_on_the_fourth_write(write: Callable[[], int]) -> int:
        if rec.statistics().members == 3:
            crashes.append(clock())
            # What a kill leaves: part of the member on disk, the rest never written.
            path = tmp_path / file_name_for(MIDNIGHT_US)
            whole = path.read_bytes()
            write()
            data = path.read_bytes()
            path.write_bytes(data[: len(whole) + (len(data) - len(whole)) // 2])
            raise OSError(5, "killed")
        return await write_inline(write)

    rec = recorder(tmp_path, clock, run_write=dies_on_the_fourth_write)
    sent: list[tuple[int, int]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rec.run)
        for i in range(50):  # one frame every 0.1 s: 5 s of frames
            sent.append((clock(), i))
            rec.frame(clock(), bbo(i))
            await trio.sleep(0.1)
        rec.close()
    (crashed_at,) = crashes
    stats = ReadStats()
    got = frames_of(list(iter_records(tmp_path, stats)))
    assert stats.truncated_members == 1
    assert got == list(range(len(got))) and len(got) >= 20  # a prefix: nothing in the middle lost
    lost = [stamp for stamp, i in sent if i >= len(got) and stamp < crashed_at]
    assert lost and min(lost) >= crashed_at - 1_000_000  # what the crash lost came in its last second

    # The restart appends to the same day's file, after the cut member: the reader gets it all.
    again = recorder(tmp_path, clock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(again.run)
        again.frame(clock(), bbo(100))
        again.close()
    assert frames_of(list(iter_records(tmp_path))) == [*got, 100]


async def test_a_stalled_writer_never_makes_the_tap_wait_and_drops_are_counted(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    release = trio.Event()

    async def stalled(write: Callable[[], int]) -> int:
        await release.wait()
        return write()

    rec = recorder(tmp_path, wall_clock(MIDNIGHT_US), run_write=stalled, capacity=10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rec.run)
        rec.frame(rec.now_us(), bbo(0))
        await trio.sleep(1.5)  # the writer took frame 0 and is stuck flushing it
        before = trio.current_time()
        for i in range(1, 101):
            rec.frame(rec.now_us(), bbo(i))  # synchronous: returns at once, no checkpoint
        assert trio.current_time() == before
        s = rec.statistics()
        assert (s.dropped, s.queued) == (90, 11)  # 10 in the channel, frame 0 held by the writer
        release.set()
        rec.close()
    assert frames_of(list(iter_records(tmp_path))) == list(range(11))
    assert rec.statistics().dropped == 90


async def test_a_write_failure_ends_the_recorder_with_one_line_and_the_callback(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[str] = []

    async def disk_full(write: Callable[[], int]) -> int:
        raise OSError(28, "No space left on device")

    rec = recorder(tmp_path, wall_clock(MIDNIGHT_US), run_write=disk_full, on_failure=failures.append)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rec.run)
        rec.frame(rec.now_us(), bbo(0))
        await trio.sleep(2)
        rec.frame(rec.now_us(), bbo(1))  # after the failure: counted as dropped
    assert len(failures) == 1 and "No space left on device" in failures[0]
    assert rec.statistics().failed == failures[0] and rec.statistics().dropped == 1
    errors = [r for r in caplog.records if r.name == "hip3_trio.recording.recorder"]
    assert len(errors) == 1 and "trading goes on" in errors[0].getMessage()
    assert "FAILED" in rec.summary()


def test_a_record_dir_that_cannot_be_written_is_an_environment_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EnvironmentProblem, match=r"--record .*file/rec: the directory cannot be used"):
        prepare_record_dir(blocker / "rec")
    prepare_record_dir(tmp_path / "new" / "rec")
    assert list((tmp_path / "new" / "rec").iterdir()) == []


async def test_a_frame_queued_after_midnight_does_not_reopen_yesterdays_file(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A frame is queued after its step, an info answer when it comes: around midnight the queue can hold
    yesterday's frame behind today's info. It stays in today's file (two heads, not four; found in review)."""
    clock = wall_clock(MIDNIGHT_US + 1_000)  # info answers are stamped +1 ms
    rec = recorder(tmp_path, clock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rec.run)
        rec.frame(MIDNIGHT_US - 2_000, bbo(0))
        rec.info({"type": "perpDexs"}, PERP_DEXS)
        rec.frame(MIDNIGHT_US - 1_000, bbo(1))  # received before midnight, queued after the info
        rec.frame(MIDNIGHT_US + 2_000, bbo(2))
        await trio.sleep(2)
        rec.close()
    day1, day2 = tmp_path / file_name_for(MIDNIGHT_US - 1), tmp_path / file_name_for(MIDNIGHT_US)
    first, second = list(iter_records(day1)), list(iter_records(day2))
    assert [r.kind for r in first] == ["head", "ws"] and frames_of(first) == [0]
    assert [r.kind for r in second] == ["head", "info", "ws", "ws"] and frames_of(second) == [1, 2]
