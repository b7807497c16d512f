"""HardStop: first reason kept, atomic persistence, survives restart, operator clear, fails safe."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from hip3_trio.risk.hard_stop import DEFAULT_FILENAME, ClearedRecord, HardStop, StopRecord


def latch_file(state_dir: Path) -> Path:
    return state_dir / DEFAULT_FILENAME


def test_fresh_state_dir_is_not_latched(tmp_path: Path) -> None:
    stop = HardStop.load(tmp_path, now_ms=1)
    assert not stop.latched
    assert stop.record is None
    assert not latch_file(tmp_path).exists()


def test_load_creates_a_missing_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b"
    assert not HardStop.load(state, now_ms=1).latched
    assert state.is_dir()


def test_trigger_latches_and_keeps_the_first_reason(tmp_path: Path) -> None:
    stop = HardStop.load(tmp_path, now_ms=0)
    assert stop.trigger("cumulative loss", 100) is True
    assert stop.trigger("flatten failures", 200) is False
    assert stop.latched
    assert stop.record == StopRecord("cumulative loss", 100)


def test_a_restarted_engine_stays_stopped_with_the_same_reason(tmp_path: Path) -> None:
    HardStop.load(tmp_path, now_ms=0).trigger("5 losses in a row", 1234)
    again = HardStop.load(tmp_path, now_ms=99_999)
    assert again.latched
    assert again.record == StopRecord("5 losses in a row", 1234)


def test_the_file_records_the_first_reason_only(tmp_path: Path) -> None:
    stop = HardStop.load(tmp_path, now_ms=0)
    stop.trigger("first", 1)
    stop.trigger("second", 2)
    doc = json.loads(latch_file(tmp_path).read_text())
    assert doc["latched"] is True
    assert (doc["reason"], doc["time_ms"]) == ("first", 1)


def test_clear_records_who_and_when_and_unlatches_across_restart(tmp_path: Path) -> None:
    stop = HardStop.load(tmp_path, now_ms=0)
    stop.trigger("rejects", 10)
    cleared = stop.clear("alice", 500)
    assert cleared == ClearedRecord("rejects", 10, "alice", 500)
    assert not stop.latched
    assert not HardStop.load(tmp_path, now_ms=600).latched
    doc = json.loads(latch_file(tmp_path).read_text())
    assert doc["latched"] is False
    assert doc["last_cleared"]["cleared_by"] == "alice"
    assert doc["last_cleared"]["cleared_at_ms"] == 500


def test_clear_when_not_latched_returns_none_and_writes_nothing(tmp_path: Path) -> None:
    stop = HardStop.load(tmp_path, now_ms=0)
    assert stop.clear("alice", 1) is None
    assert not latch_file(tmp_path).exists()


def test_clear_needs_an_operator_name(tmp_path: Path) -> None:
    stop = HardStop.load(tmp_path, now_ms=0)
    stop.trigger("x", 1)
    with pytest.raises(ValueError):
        stop.clear("  ", 2)
    assert stop.latched


def test_a_new_trigger_after_clear_latches_the_new_reason(tmp_path: Path) -> None:
    stop = HardStop.load(tmp_path, now_ms=0)
    stop.trigger("old", 1)
    stop.clear("bob", 2)
    assert stop.trigger("new", 3) is True
    assert HardStop.load(tmp_path, now_ms=4).record == StopRecord("new", 3)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'{"version": 1}',
        b'{"version": 1, "latched": "false"}',
        b'{"version": 1, "latched": 0}',
        b'{"version": 2, "latched": false}',
        b'{"version": 1, "latched": true}',
        b'{"version": 1, "latched": true, "reason": "x", "time_ms": true}',
        b'{"version": 1, "latched": true, "reason": 5, "time_ms": 1}',
    ],
)
def test_a_corrupt_file_fails_safe_as_latched(tmp_path: Path, content: bytes) -> None:
    latch_file(tmp_path).write_bytes(content)
    stop = HardStop.load(tmp_path, now_ms=777)
    assert stop.latched
    assert stop.record is not None
    assert "unreadable" in stop.record.reason
    assert stop.record.time_ms == 777
    assert latch_file(tmp_path).read_bytes() == content  # left as evidence, not rewritten


def test_an_unreadable_path_fails_safe_as_latched(tmp_path: Path) -> None:
    latch_file(tmp_path).mkdir()  # reading a directory raises IsADirectoryError
    assert HardStop.load(tmp_path, now_ms=1).latched


def test_a_corrupt_file_is_never_silently_cleared(tmp_path: Path) -> None:
    latch_file(tmp_path).write_text("garbage")
    stop = HardStop.load(tmp_path, now_ms=1)
    assert stop.trigger("loss", 2) is False  # the unreadable reason stays first
    assert stop.record is not None and "unreadable" in stop.record.reason
    assert HardStop.load(tmp_path, now_ms=3).latched
    stop.clear("carol", 4)
    assert not HardStop.load(tmp_path, now_ms=5).latched


def test_writes_leave_no_temp_files_and_fsync_file_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    stop = HardStop.load(tmp_path, now_ms=0)
    stop.trigger("x", 1)
    assert synced == [False, True]  # the file's data, then the directory entry
    stop.clear("dave", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [DEFAULT_FILENAME]


def test_a_failed_write_keeps_the_old_file_and_the_latch_in_memory_then_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = HardStop.load(tmp_path, now_ms=0)
    stop.trigger("first", 1)
    stop.clear("erin", 2)
    before = latch_file(tmp_path).read_bytes()

    def broken_replace(src: str, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    assert stop.trigger("second", 3) is True  # no exception: the latch must hold regardless
    assert stop.latched
    assert not stop.persisted
    assert latch_file(tmp_path).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [DEFAULT_FILENAME]  # temp file removed

    monkeypatch.undo()
    stop.trigger("third", 4)  # retry writes the FIRST reason
    assert stop.persisted
    assert HardStop.load(tmp_path, now_ms=5).record == StopRecord("second", 3)


def test_a_failed_clear_raises_and_stays_latched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stop = HardStop.load(tmp_path, now_ms=0)
    stop.trigger("x", 1)

    def broken_replace(src: str, dst: object) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        stop.clear("frank", 2)
    assert stop.latched
    monkeypatch.undo()
    assert HardStop.load(tmp_path, now_ms=3).latched


# --- poll: a latch written by another process (`hardstop trip`) ------------------------------------------


def test_poll_adopts_a_latch_another_process_wrote_with_its_reason_and_time(tmp_path: Path) -> None:
    engine = HardStop.load(tmp_path, now_ms=0)
    assert engine.poll(1) is None  # no file yet
    HardStop.load(tmp_path, now_ms=0).trigger("operator alice: serious log", 50)  # another process
    assert engine.poll(100) == StopRecord("operator alice: serious log", 50)
    assert engine.latched and engine.persisted
    assert engine.poll(200) is None  # adopted once
    assert engine.trigger("later", 300) is False  # keeps the operator's reason; nothing rewritten
    assert HardStop.load(tmp_path, now_ms=400).record == StopRecord("operator alice: serious log", 50)


def test_poll_reads_the_file_only_when_it_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = HardStop.load(tmp_path, now_ms=0)
    other.trigger("x", 1)
    other.clear("bob", 2)  # the file exists, not latched
    engine = HardStop.load(tmp_path, now_ms=0)
    reads: list[Path] = []
    read_text = Path.read_text

    def counting_read(self: Path, *args: object, **kwargs: object) -> str:
        reads.append(self)
        return read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", counting_read)
    for t in range(10):
        assert engine.poll(t) is None
    assert len(reads) == 1  # the first look; then only stat
    other.trigger("y", 20)  # replaced: a new inode, whatever the mtime
    assert engine.poll(21) == StopRecord("y", 20)
    assert len(reads) == 2


def test_poll_does_not_adopt_a_clear(tmp_path: Path) -> None:
    engine = HardStop.load(tmp_path, now_ms=0)
    engine.trigger("risk limit", 1)
    HardStop.load(tmp_path, now_ms=2).clear("carol", 3)
    assert engine.poll(4) is None
    assert engine.record == StopRecord("risk limit", 1)  # held until the engine restarts


def test_poll_logs_an_io_error_once_and_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine = HardStop.load(tmp_path, now_ms=0)

    def broken_stat(self: Path, **kwargs: object) -> os.stat_result:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "stat", broken_stat)
    for t in range(5):
        assert engine.poll(t) is None
    assert not engine.latched
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "cannot check the hard-stop file" in errors[0].getMessage()
    monkeypatch.undo()
    HardStop.load(tmp_path, now_ms=0).trigger("after the error", 9)
    assert engine.poll(10) == StopRecord("after the error", 9)


def test_poll_treats_a_garbled_file_as_latched(tmp_path: Path) -> None:
    engine = HardStop.load(tmp_path, now_ms=0)
    latch_file(tmp_path).write_bytes(b"\xff{latched")
    record = engine.poll(7)
    assert record is not None and record.time_ms == 7 and "unreadable" in record.reason
    assert engine.latched
