"""Every start-up failure is one line, ``hip3-trio: <cause>; <fix>``, on stderr, with exit status 2 for a
bad config or command line and 3 for an environment problem; never a traceback (that is for bugs).

Each case runs the real command line in-process (`cli.main`), against the built-in simulator where the
failure needs a venue.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hip3_trio.cli import main, startup_refusal
from hip3_trio.errors import EnvironmentProblem
from hip3_trio.journal import JOURNAL_FILENAME, Journal
from hip3_trio.state_lock import LOCK_FILENAME, hold_state_dir
from hip3_trio.venue.queries import UnknownMarketError


def refusal(capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``hip3-trio: …`` line on stderr (log lines may come before it), with no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("hip3-trio: ")]
    assert len(lines) == 1, err
    assert err.rstrip("\n").endswith(lines[0]), err  # the last thing printed
    return lines[0]


def sim(tmp_path: Path, *argv: str) -> list[str]:
    return ["--env", "sim", "--state-dir", str(tmp_path / "state"), "--duration", "30", *argv]


# --- exit 2: the configuration or the command line ---------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--duration", "nan"], ["--duration", "nan", "positive"]),
        (["--duration", "-1"], ["--duration", "-1", "positive"]),
        (["--duration", "inf"], ["--duration", "inf", "positive"]),
        (["--duration", "soon"], ["--duration", "soon"]),
        (["--status-every", "nan"], ["--status-every", "nan"]),
        (["--metrics-port", "70000"], ["--metrics-port", "70000"]),
        (["--bogus"], ["--bogus", "--help"]),
    ],
    ids=["duration-nan", "duration-negative", "duration-inf", "duration-text", "status-nan", "port", "flag"],
)
def test_a_bad_command_line_is_one_line_and_exit_2(
    argv: list[str], words: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--env", "sim", "--state-dir", str(tmp_path), *argv])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("hip3-trio: "), captured.err
    assert all(word in captured.err for word in words), captured.err
    assert not (tmp_path / JOURNAL_FILENAME).exists()  # refused before anything started


def test_a_malformed_market_flag_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(sim(tmp_path, "--market", "FOO")) == 2
    line = refusal(capsys)
    assert "--market" in line and "'FOO'" in line and "dex:COIN" in line


def test_a_repeated_market_flag_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(sim(tmp_path, "--market", "xyz:COIN", "--market", "xyz:COIN")) == 2
    assert "more than once" in refusal(capsys)


@pytest.mark.parametrize(
    ("how", "market"),
    [("config", "xyz:FOO"), ("flag", "xyz:FOO"), ("config", "nodex:COIN")],
    ids=["config-coin", "flag-coin", "config-dex"],
)
def test_a_market_the_venue_does_not_list_is_one_line_and_exit_2(
    how: str, market: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if how == "config":
        config = tmp_path / "c.toml"
        config.write_text(f'markets = [{{coin = "{market}"}}]\n')
        argv = sim(tmp_path, "--config", str(config))
    else:
        argv = sim(tmp_path, "--market", market)
    assert main(argv) == 2  # found by the preflight before the first READY
    line = refusal(capsys)
    assert market in line and "not listed" in line and "[[markets]]" in line


# --- exit 3: the environment --------------------------------------------------------------------------


def test_a_metrics_port_in_use_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(sim(tmp_path, "--metrics-port", str(port))) == 3
    line = refusal(capsys)
    assert f"--metrics-port {port}" in line and "in use" in line and "another port" in line


@pytest.mark.parametrize("make", ["file", "under-a-file"])
def test_a_state_dir_that_cannot_be_a_directory_is_one_line_and_exit_3(
    make: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state").write_text("not a directory")
    state = tmp_path / "state" if make == "file" else tmp_path / "state" / "sub"
    assert main(["--env", "sim", "--state-dir", str(state), "--duration", "30"]) == 3
    line = refusal(capsys)
    assert f"state directory {state}" in line and "--state-dir" in line


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` (a directory or a file) read-only for this process: by its mode bits for an ordinary user;
    as root (who ignores them) by a read-only bind mount, or the test is skipped."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("root needs mount(8) for a read-only path")
    try:
        subprocess.run([mount, "--bind", str(path), str(path)], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot bind-mount as root here: {exc.stderr.decode().strip()}")
    try:
        subprocess.run([mount, "-o", "remount,bind,ro", str(path)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_state_dir_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with read_only(state):
        assert main(["--env", "sim", "--state-dir", str(state), "--duration", "30"]) == 3
    line = refusal(capsys)
    assert f"state directory {state} is not writable" in line and "--state-dir" in line


def test_a_read_only_journal_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    Journal.open(state).close()
    with read_only(state / JOURNAL_FILENAME):
        assert main(["--env", "sim", "--state-dir", str(state), "--duration", "30"]) == 3
    line = refusal(capsys)
    assert f"the journal {state / JOURNAL_FILENAME} cannot be used" in line and "writable" in line


def test_a_damaged_journal_is_one_line_and_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / JOURNAL_FILENAME).write_bytes(b"\x00garbage" * 512)
    assert main(["--env", "sim", "--state-dir", str(state), "--duration", "30"]) == 3
    assert "is damaged" in refusal(capsys)


@pytest.mark.parametrize("make", ["file", "read-only"])
def test_a_record_dir_that_cannot_be_written_is_one_line_and_exit_3(
    make: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "rec"
    if make == "file":
        record.write_text("not a directory")
        assert main(sim(tmp_path, "--record", str(record))) == 3
    else:
        record.mkdir()
        with read_only(record):
            assert main(sim(tmp_path, "--record", str(record))) == 3
    line = refusal(capsys)
    assert f"--record {record}: the directory" in line
    assert not (tmp_path / "state" / JOURNAL_FILENAME).exists()  # refused before anything started


def test_an_unreadable_nonce_file_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    (state / "nonce.json").mkdir(parents=True)
    assert main(["--env", "sim", "--state-dir", str(state), "--duration", "30"]) == 3
    assert "nonce.json" in refusal(capsys)


def test_a_market_the_venue_stops_listing_after_the_preflight_is_still_exit_2() -> None:
    """At a later sync (a reconnect), the venue link raises `UnknownMarketError` inside the task tree."""
    inner = BaseExceptionGroup(
        "trading", [UnknownMarketError("configured markets not listed by the venue: xyz:FOO")]
    )
    refused = startup_refusal(BaseExceptionGroup("engine", [inner]))
    assert refused is not None and refused[0] == 2
    assert refused[1].startswith("configured markets not listed by the venue: xyz:FOO; fix the markets")
    assert startup_refusal(BaseExceptionGroup("engine", [inner, RuntimeError("a bug")])) is None


# --- one process per state directory -------------------------------------------------------------------


def test_a_state_dir_held_by_another_engine_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second engine on a running engine's state directory refuses to start (it would trade the account
    twice and race for nonces); nothing of the first one's is touched."""
    state = tmp_path / "state"
    with hold_state_dir(state, "hip3-trio --env testnet"):
        assert main(sim(tmp_path)) == 3
        line = refusal(capsys)
        assert f"the state directory {state} is in use by hip3-trio --env testnet (pid {os.getpid()})" in line
        assert "--state-dir" in line
        assert not (state / JOURNAL_FILENAME).exists()
    assert (state / LOCK_FILENAME).read_text() == f"hip3-trio --env testnet (pid {os.getpid()})\n"


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    """The kernel drops the lock when its holder dies, even by SIGKILL: a supervisor's restart starts."""
    state = tmp_path / "state"
    code = (
        "import sys; from pathlib import Path; from hip3_trio.state_lock import hold_state_dir\n"
        "with hold_state_dir(Path(sys.argv[1]), 'child'):\n"
        "    print('held', flush=True); sys.stdin.read()  # holds until killed\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(state)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        with pytest.raises(EnvironmentProblem, match="in use by child"), hold_state_dir(state, "second"):
            pass
    finally:
        child.kill()
        child.wait()
    with hold_state_dir(state, "second"):
        assert (state / LOCK_FILENAME).read_text().startswith("second (pid ")
