"""`hardstop status|clear`: exit codes, the --yes guard, the journaled clear, who cleared it last."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hip3_trio.journal import JOURNAL_FILENAME, Journal
from hip3_trio.ops import hardstop_cmd
from hip3_trio.ops.hardstop_cmd import main
from hip3_trio.ops.report import format_time_ms
from hip3_trio.risk.hard_stop import DEFAULT_FILENAME, HardStop

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z


def run(*argv: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = main(list(argv), out=lines.append)
    return code, lines


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def latch(state: Path, reason: str = "cumulative loss", at: int = T0) -> None:
    assert HardStop.load(state, now_ms=at).trigger(reason, at)


def cleared_events(state: Path) -> list[tuple[int, dict[str, object]]]:
    with Journal.open(state) as journal:
        rows = journal.query(
            "SELECT time_ms, detail FROM events WHERE kind = 'hard_stop_cleared' ORDER BY id"
        )
    return [(t, json.loads(d)) for t, d in rows]


def test_status_when_not_latched(tmp_path: Path) -> None:
    code, lines = run("status", "--state-dir", str(tmp_path))
    assert code == 0
    assert lines == ["hard stop: not latched", f"state: {tmp_path / DEFAULT_FILENAME}"]


def test_status_when_latched(tmp_path: Path) -> None:
    latch(tmp_path)
    code, lines = run("status", "--state-dir", str(tmp_path))
    assert code == 1
    assert lines[:3] == [
        "hard stop: LATCHED — the engine will not open positions",
        "  reason: cumulative loss",
        f"  since:  2025-01-01T00:00:00.000Z ({T0})",
    ]


def test_status_of_an_unreadable_latch_file_is_latched(tmp_path: Path) -> None:
    (tmp_path / DEFAULT_FILENAME).write_text("{not json")
    code, lines = run("status", "--state-dir", str(tmp_path))
    assert code == 1
    assert "unreadable" in lines[1]


def test_a_missing_state_dir_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    state = tmp_path / "typo"
    for argv in (("status",), ("clear", "--yes")):
        code, lines = run(*argv, "--state-dir", str(state))
        assert code == 2
        assert lines == [
            f"error: state directory {state} does not exist (wrong --state-dir or $HIP3_STATE_DIR?)"
        ]
    assert not state.exists()


def test_clear_without_yes_is_refused_and_the_latch_kept(tmp_path: Path) -> None:
    latch(tmp_path)
    code, lines = run("clear", "--state-dir", str(tmp_path), "--by", "alice")
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("error: refusing to clear the hard stop without --yes.")
    assert HardStop.load(tmp_path, now_ms()).latched
    assert not (tmp_path / JOURNAL_FILENAME).exists()


def test_clear_releases_the_latch_and_journals_who_and_when(tmp_path: Path) -> None:
    latch(tmp_path)
    before = now_ms()
    code, lines = run("clear", "--yes", "--by", "alice", "--state-dir", str(tmp_path))
    after = now_ms()
    assert code == 0
    assert lines[0].startswith("hard stop cleared by alice at ")
    assert lines[1] == f"  it had stopped at 2025-01-01T00:00:00.000Z ({T0}): cumulative loss"
    assert lines[-1] == "journaled as hard_stop_cleared; restart the engine for it to take effect"

    assert not HardStop.load(tmp_path, now_ms()).latched
    [(time_ms, detail)] = cleared_events(tmp_path)
    assert before <= time_ms <= after
    assert detail == {
        "cleared_by": "alice",
        "cleared_at_ms": time_ms,
        "reason": "cumulative loss",
        "stopped_at_ms": T0,
    }

    code, lines = run("status", "--state-dir", str(tmp_path))
    assert code == 0
    assert lines[0] == "hard stop: not latched"
    assert lines[1].startswith(f"last cleared by alice at {format_time_ms(time_ms)}")
    assert lines[2] == f"  it had stopped at 2025-01-01T00:00:00.000Z ({T0}): cumulative loss"


def test_who_defaults_to_user_at_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "bob")
    monkeypatch.setattr("socket.gethostname", lambda: "box")
    latch(tmp_path)
    code, _ = run("clear", "--yes", "--state-dir", str(tmp_path))
    assert code == 0
    [(_, detail)] = cleared_events(tmp_path)
    assert detail["cleared_by"] == "bob@box"


def test_an_unnamed_user_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise OSError("no username")

    monkeypatch.setattr("getpass.getuser", no_user)
    monkeypatch.setattr("socket.gethostname", lambda: "box")
    assert hardstop_cmd.default_operator() == "unknown@box"


def test_a_blank_name_is_refused(tmp_path: Path) -> None:
    latch(tmp_path)
    code, lines = run("clear", "--yes", "--by", "  ", "--state-dir", str(tmp_path))
    assert code == 2
    assert lines == ["error: --by needs the operator's name"]
    assert HardStop.load(tmp_path, now_ms()).latched


def test_clear_when_not_latched_does_nothing(tmp_path: Path) -> None:
    code, lines = run("clear", "--yes", "--by", "alice", "--state-dir", str(tmp_path))
    assert code == 0
    assert lines == ["hard stop: not latched; nothing to clear"]
    assert not (tmp_path / JOURNAL_FILENAME).exists()
    assert not (tmp_path / DEFAULT_FILENAME).exists()


def test_an_unreadable_latch_can_be_cleared(tmp_path: Path) -> None:
    (tmp_path / DEFAULT_FILENAME).write_text("{not json")
    code, _ = run("clear", "--yes", "--by", "alice", "--state-dir", str(tmp_path))
    assert code == 0
    assert not HardStop.load(tmp_path, now_ms()).latched


def test_a_journal_failure_after_the_clear_exits_1(tmp_path: Path) -> None:
    latch(tmp_path)
    (tmp_path / JOURNAL_FILENAME).mkdir()  # SQLite cannot open a directory
    code, lines = run("clear", "--yes", "--by", "alice", "--state-dir", str(tmp_path))
    assert code == 1
    assert lines[-1].startswith("error: the latch is cleared, but the hard_stop_cleared event could not be")
    assert not HardStop.load(tmp_path, now_ms()).latched
    code, lines = run("status", "--state-dir", str(tmp_path))  # the latch file still says who
    assert (code, lines[1][:24]) == (0, "last cleared by alice at")


def test_status_when_latched_again_shows_the_journaled_clear(tmp_path: Path) -> None:
    latch(tmp_path, "flatten failures", T0)
    assert run("clear", "--yes", "--by", "alice", "--state-dir", str(tmp_path))[0] == 0
    latch(tmp_path, "loss streak", T0 + 1000)  # the latched file no longer holds last_cleared
    code, lines = run("status", "--state-dir", str(tmp_path))
    assert code == 1
    assert lines[1] == "  reason: loss streak"
    assert lines[3].startswith("last cleared by alice at ")
    assert lines[4] == f"  it had stopped at 2025-01-01T00:00:00.000Z ({T0}): flatten failures"


def test_state_dir_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIP3_STATE_DIR", str(tmp_path))
    latch(tmp_path)
    assert run("status")[0] == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run()[0] == 2
    assert run("reset")[0] == 2
    assert "python -m hip3_trio hardstop" in capsys.readouterr().err
    assert main(["--help"]) == 0


# --- trip ------------------------------------------------------------------------------------------------


def tripped_events(state: Path) -> list[tuple[int, dict[str, object]]]:
    with Journal.open(state) as journal:
        rows = journal.query(
            "SELECT time_ms, detail FROM events WHERE kind = 'hard_stop_tripped' ORDER BY id"
        )
    return [(t, json.loads(d)) for t, d in rows]


def test_trip_latches_now_and_journals_who_when_and_why(tmp_path: Path) -> None:
    before = now_ms()
    code, lines = run("trip", "--reason", "serious log found", "--by", "alice", "--state-dir", str(tmp_path))
    assert code == 0
    assert lines[0].startswith("hard stop LATCHED by alice at ") and lines[0].endswith(": serious log found")
    record = HardStop.load(tmp_path, now_ms()).record
    assert record is not None and record.reason == "operator alice: serious log found"
    assert before <= record.time_ms <= now_ms()
    ((time_ms, detail),) = tripped_events(tmp_path)
    assert time_ms == record.time_ms
    assert detail == {"tripped_by": "alice", "tripped_at_ms": record.time_ms, "reason": "serious log found"}
    code, lines = run("status", "--state-dir", str(tmp_path))
    assert (code, lines[1]) == (1, "  reason: operator alice: serious log found")


def test_trip_when_already_latched_keeps_the_first_reason(tmp_path: Path) -> None:
    latch(tmp_path, "cumulative loss")
    code, lines = run("trip", "--reason", "again", "--by", "bob", "--state-dir", str(tmp_path))
    assert code == 0
    assert lines[0] == f"hard stop: already LATCHED since 2025-01-01T00:00:00.000Z ({T0}): cumulative loss"
    record = HardStop.load(tmp_path, now_ms()).record
    assert record is not None and record.reason == "cumulative loss"
    assert not (tmp_path / JOURNAL_FILENAME).exists()


def test_trip_defaults_the_operator_to_user_at_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardstop_cmd, "default_operator", lambda: "carol@box")
    assert run("trip", "--reason", "r", "--state-dir", str(tmp_path))[0] == 0
    assert tripped_events(tmp_path)[0][1]["tripped_by"] == "carol@box"


@pytest.mark.parametrize("argv", [["--reason", " "], ["--reason", "r", "--by", " "], []], ids=str)
def test_trip_needs_a_reason_and_a_name(tmp_path: Path, argv: list[str]) -> None:
    assert run("trip", *argv, "--state-dir", str(tmp_path))[0] == 2
    assert not HardStop.load(tmp_path, now_ms()).latched


def test_trip_refuses_a_missing_state_dir(tmp_path: Path) -> None:
    code, lines = run("trip", "--reason", "r", "--state-dir", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in lines[0]
    assert not (tmp_path / "nope").exists()


def test_trip_that_cannot_write_the_latch_says_so_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_replace(src: str, dst: object) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr("os.replace", broken_replace)
    code, lines = run("trip", "--reason", "r", "--by", "dan", "--state-dir", str(tmp_path))
    assert code == 2 and "NOT latched" in lines[-1]
    monkeypatch.undo()
    assert not HardStop.load(tmp_path, now_ms()).latched


def test_a_journal_failure_after_the_trip_exits_1(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILENAME).mkdir()  # SQLite cannot open a directory
    code, lines = run("trip", "--reason", "r", "--by", "erin", "--state-dir", str(tmp_path))
    assert code == 1
    assert lines[-1].startswith("error: the latch is set, but the hard_stop_tripped event could not be")
    assert HardStop.load(tmp_path, now_ms()).latched
