"""Supervision under runit: the service directory in scripts/runit/hip3-trio, run by the real `runsv`.

The engine runs against its in-process simulator (`HIP3_ENV=sim`, no key) from a copy of the service
directory in tmp_path, with its log (svlogd's `current`) and state dir in tmp_path too. Checked:

- a SIGKILLed engine is restarted by runsv and reaches READY again; ./finish logs the signal (and
  `sv hup|alarm|1|2`, signals the engine has no handler for, do not kill it);
- `sv down` (SIGTERM) is the orderly stop: the engine logs it, exits 0 within its exit deadline,
  ./finish logs the exit status and the journal has its `shutdown` event;
- with the hard stop latched in the state dir, a started engine stays stopped (status HARD STOP, the
  detector's signals refused as HardStopped, no entry order in the journal) until an operator runs
  `hardstop clear --yes` and restarts it (`sv restart`): then its status says READY.

These use real processes and wall-clock time, which is the point of a supervision test; every wait is
bounded and polls with short sleeps, and runsv (with the engine and svlogd under it) is always torn
down. The run script's own checks and command line are tested without runsv (a stand-in "python").
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hip3_trio.config import Config
from hip3_trio.journal import JournalUnavailable, journal_path, open_journal_read_only
from hip3_trio.risk.hard_stop import HardStop

REPO = Path(__file__).resolve().parent.parent
SERVICE_SRC = REPO / "scripts" / "runit" / "hip3-trio"
SCRIPTS = ("run", "finish", "log/run")
RUNIT_TOOLS = ("runsv", "sv", "svlogd", "chpst")
MISSING_TOOLS = [tool for tool in RUNIT_TOOLS if shutil.which(tool) is None]
needs_runit = pytest.mark.skipif(
    bool(MISSING_TOOLS),
    reason=f"runit is not installed ({', '.join(MISSING_TOOLS)} not on PATH); "
    "`apt-get install runit` (.ci/run installs it)",
)

EXIT_DEADLINE_S = Config().time_stop.exit_deadline_s  # what the engine allows itself on SIGTERM
SV_WAIT_S = 30  # sv -w: longer than the exit deadline, so `sv down` waits for the orderly stop
START_TIMEOUT_S = 20.0  # from (re)start to READY; observed ~1 s
SIM_SEED = 7  # with this seed the simulator's first dislocation (a signal) comes ~6 s after start

T = TypeVar("T")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_status(record: dict[str, Any], text: str) -> bool:
    return record.get("logger") == "hip3_trio.status" and text in str(record.get("msg", ""))


def is_ready_status(record: dict[str, Any]) -> bool:
    """A status line saying READY (not the "synced ...; READY" line, which a latched engine logs too)."""
    return is_status(record, "] READY ") or is_status(record, "] DRY-RUN READY ")


def is_finish(record: dict[str, Any]) -> bool:
    return record.get("logger") == "hip3_trio.runit.finish"


class Service:
    """A copy of the service directory under tmp_path, supervised by a `runsv` this test started."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "sv" / "hip3-trio"
        self.log_dir = root / "log"
        self.state_dir = root / "state"
        self.runsv: subprocess.Popen[bytes] | None = None
        self.pids: set[int] = set()  # every engine / svlogd pid seen, killed at teardown if alive
        shutil.copytree(SERVICE_SRC, self.dir, ignore=shutil.ignore_patterns("supervise", "env"))
        env = self.dir / "env"
        shutil.copytree(SERVICE_SRC / "env.example", env)  # HIP3_CONFIG etc. empty: unset
        self.set_env(
            HIP3_ENV="sim",
            HIP3_PYTHON=sys.executable,
            HIP3_STATE_DIR=str(self.state_dir),
            HIP3_LOG_DIR=str(self.log_dir),
            HIP3_USER="",
            HIP3_ARGS=f"--status-every 1 --seed {SIM_SEED}",
        )
        env.chmod(0o700)

    def set_env(self, **values: str) -> None:
        for name, value in values.items():
            (self.dir / "env" / name).write_text(value + "\n" if value else "")

    # --- processes ------------------------------------------------------------------------------

    def start(self) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("HIP3_", "SVDIR", "SVWAIT"))}
        self.runsv = subprocess.Popen(
            ["runsv", str(self.dir)],
            env=environ,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # ^C on pytest must not reach the engine behind runsv's back
        )

    def sv(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sv", "-w", str(SV_WAIT_S), *command, str(self.dir)],
            capture_output=True,
            text=True,
            timeout=SV_WAIT_S + 10,
            check=False,
        )

    def _read_pid(self, supervise: Path) -> int | None:
        try:
            text = (supervise / "pid").read_text().strip()
        except OSError:
            return None
        if not text.isdigit():
            return None
        pid = int(text)
        self.pids.add(pid)
        return pid

    def pid(self) -> int | None:
        """The engine's pid as runsv records it (None while down)."""
        return self._read_pid(self.dir / "supervise")

    def teardown(self) -> None:
        self._read_pid(self.dir / "log" / "supervise")
        self.pid()
        if self.runsv is None:
            return
        try:
            if self.runsv.poll() is None:
                self.sv("exit")  # stop the engine (SIGTERM) and the logger, then runsv exits
                self.runsv.wait(timeout=SV_WAIT_S)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if self.runsv.poll() is None:
                self.runsv.kill()
                self.runsv.wait(timeout=10)
            for pid in self.pids:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)

    # --- the log --------------------------------------------------------------------------------

    @property
    def current(self) -> Path:
        return self.log_dir / "current"

    def mark(self) -> int:
        """The log's length now: records after this offset are the ones still to come."""
        try:
            return self.current.stat().st_size
        except FileNotFoundError:
            return 0

    def records(self, since: int = 0) -> list[dict[str, Any]]:
        """The log's lines after `since`, svlogd's timestamp cut off: JSON lines parsed, others as msg."""
        try:
            data = self.current.read_bytes()[since:]
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        for raw in data.decode(errors="replace").splitlines():
            _, _, line = raw.partition(" ")
            try:
                doc = json.loads(line)
            except ValueError:
                doc = None
            out.append(doc if isinstance(doc, dict) else {"logger": None, "msg": line})
        return out

    def tail(self, lines: int = 25) -> str:
        return "\n".join(json.dumps(r)[:300] for r in self.records()[-lines:])

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float) -> T:
        """Poll `check` every 0.1 s until it returns something truthy; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n--- log ---\n{self.tail()}")
            time.sleep(0.1)

    def wait_for_record(
        self, what: str, match: Callable[[dict[str, Any]], bool], since: int, timeout: float
    ) -> dict[str, Any]:
        return self.wait_for(what, lambda: next((r for r in self.records(since) if match(r)), None), timeout)

    # --- the state dir --------------------------------------------------------------------------

    def journal(self, sql: str) -> list[tuple[Any, ...]] | None:
        """Rows of `sql` on the engine's journal, read-only; None while there is no journal yet."""
        try:
            conn = open_journal_read_only(journal_path(self.state_dir))
        except JournalUnavailable:
            return None
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def hardstop(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hip3_trio", "hardstop", *args, "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path)
    try:
        yield svc
    finally:
        svc.teardown()


def start_ready(svc: Service) -> int:
    """Start runsv and wait for the engine's READY status line; the engine's pid."""
    svc.start()
    svc.wait_for_record("the first READY status line", is_ready_status, 0, START_TIMEOUT_S)
    pid = svc.wait_for("the engine's pid", svc.pid, 5)
    return pid


# --- supervision (real runsv) -------------------------------------------------------------------------


@needs_runit
def test_a_killed_engine_is_restarted_and_becomes_ready_again(service: Service) -> None:
    old = start_ready(service)
    cmdline = Path(f"/proc/{old}/cmdline")
    if cmdline.exists():  # the supervised pid is the engine itself (run → chpst → python, all exec'd)
        assert b"hip3_trio" in cmdline.read_bytes()
    # sv hup / alarm / 1 / 2 send signals the engine does not handle; the run script has them ignored.
    for command in ("hup", "alarm", "1", "2"):
        assert service.sv(command).returncode == 0
    time.sleep(0.5)
    assert service.pid() == old and alive(old)
    assert not any(is_finish(r) for r in service.records())

    since = service.mark()
    killed_at = time.time()
    os.kill(old, signal.SIGKILL)

    finish = service.wait_for_record("./finish to log the kill", is_finish, since, 10)
    assert (finish["exit_code"], finish["signal"]) == (-1, signal.SIGKILL.value)
    assert "SIGKILL" in finish["msg"]
    new = service.wait_for("a new engine pid", lambda: (p := service.pid()) != old and p, 10)
    synced = service.wait_for_record(
        "READY after the restart",
        lambda r: r.get("logger") == "hip3_trio.venue.link" and "READY" in str(r.get("msg")),
        since,
        START_TIMEOUT_S,
    )
    service.wait_for_record("a READY status line after the restart", is_ready_status, since, 5)
    print(f"SIGKILL → READY again: {synced['t'] - killed_at:.2f} s (pid {old} → {new})")
    assert not alive(old)

    def connects() -> int:
        rows = service.journal("SELECT count(*) FROM events WHERE kind = 'connect'")
        return 0 if rows is None else int(rows[0][0])

    # The journal survived the kill: the restarted engine appends to it.
    service.wait_for("the restarted engine's connect event", lambda: connects() >= 2, 5)


@needs_runit
def test_sv_down_is_the_orderly_stop(service: Service) -> None:
    pid = start_ready(service)
    since = service.mark()
    started = time.monotonic()
    result = service.sv("down")
    took = time.monotonic() - started
    print(f"sv down (SIGTERM) → down: {took:.2f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: down:"), result.stdout
    assert took < EXIT_DEADLINE_S + 5

    finish = service.wait_for_record("./finish to log the exit", is_finish, since, 5)
    assert (finish["exit_code"], finish["signal"]) == (0, 0)
    records = service.records(since)
    messages = [str(r.get("msg")) for r in records]
    assert any(m.startswith("shutting down (SIGTERM)") for m in messages), messages
    assert any(m.startswith("summary") for m in messages), messages
    assert not alive(pid)
    assert service.pid() is None  # and it stays down: runsv does not restart a service that is down
    shutdown = service.journal("SELECT detail FROM events WHERE kind = 'shutdown'")
    assert shutdown is not None and [json.loads(d) for (d,) in shutdown] == [{"reason": "SIGTERM"}]


@needs_runit
def test_a_latched_hard_stop_holds_across_start_until_cleared_and_restarted(service: Service) -> None:
    at = now_ms()
    assert HardStop.load(service.state_dir, at).trigger("test", at)
    service.start()

    service.wait_for_record(
        "a HARD STOP status line", lambda r: is_status(r, "HARD STOP (test)"), 0, START_TIMEOUT_S
    )
    status = service.hardstop("status")
    assert status.returncode == 1, status.stdout
    assert "LATCHED" in status.stdout

    # Let the detector find an opportunity: it must be refused, and no entry order may go out.
    refused = service.wait_for(
        "a signal refused as HardStopped",
        lambda: service.journal("SELECT acted, refused_reason FROM signals"),
        25,
    )
    assert set(refused) == {(0, "HardStopped")}
    entries = service.journal("SELECT cloid FROM orders WHERE reason = 'entry'")
    assert entries == []
    records = service.records()
    assert not any(is_ready_status(r) for r in records)
    assert sum(is_status(r, "HARD STOP (test)") for r in records) >= 3

    # Restarted (as runsv would after a crash), it comes back stopped: the latch is on disk.
    since = service.mark()
    assert service.sv("restart").returncode == 0
    service.wait_for_record(
        "HARD STOP after a restart", lambda r: is_status(r, "HARD STOP (test)"), since, START_TIMEOUT_S
    )
    assert not any(is_ready_status(r) for r in service.records(since))

    cleared = service.hardstop("clear", "--yes", "--by", "test_runit")
    assert cleared.returncode == 0, cleared.stdout
    assert service.hardstop("status").returncode == 0
    since = service.mark()
    started = time.monotonic()
    restarted = service.sv("restart")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    service.wait_for_record("a READY status line after the clear", is_ready_status, since, START_TIMEOUT_S)
    print(f"sv restart → READY: {time.monotonic() - started:.2f} s")
    after = service.records(since)
    assert not any(is_status(r, "HARD STOP") for r in after)
    assert service.journal("SELECT count(*) FROM events WHERE kind = 'hard_stop_cleared'") == [(1,)]


# --- the scripts themselves (no runsv needed) ------------------------------------------------------


def test_the_scripts_are_executable_posix_sh() -> None:
    for name in SCRIPTS:
        path = SERVICE_SRC / name
        assert os.access(path, os.X_OK), f"{name} is not executable: chmod +x {path}"
        assert path.read_text().startswith("#!/bin/sh\n")
        subprocess.run(["sh", "-n", str(path)], check=True)
    assert not (SERVICE_SRC / "env").exists(), "env/ holds secrets: ship env.example/ only"
    assert not (SERVICE_SRC / "env.example" / "HIP3_PRIVATE_KEY").exists()
    config = (SERVICE_SRC / "log" / "config").read_text().split()
    assert any(line.startswith("s") for line in config) and any(line.startswith("n") for line in config)


def fake_python(path: Path) -> Path:
    """A stand-in for the venv's python that prints its arguments and whether it got the key."""
    path.write_text('#!/bin/sh\necho "ARGS $*"\necho "KEY ${HIP3_PRIVATE_KEY:+set}"\necho "ENV $HIP3_ENV"\n')
    path.chmod(0o755)
    return path


def run_script(service_dir: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HIP3_")}
    return subprocess.run(
        ["./run"], cwd=service_dir, env=environ, capture_output=True, text=True, timeout=10, check=False
    )


@pytest.fixture
def service_copy(tmp_path: Path) -> Path:
    target = tmp_path / "hip3-trio"
    shutil.copytree(SERVICE_SRC, target)
    shutil.copytree(SERVICE_SRC / "env.example", target / "env")
    (target / "env" / "HIP3_PYTHON").write_text(str(fake_python(tmp_path / "python")) + "\n")
    (target / "env" / "HIP3_STATE_DIR").write_text(str(tmp_path / "state") + "\n")
    (target / "env" / "HIP3_USER").write_text("")
    return target


@pytest.mark.skipif(shutil.which("chpst") is None, reason="runit is not installed (no chpst)")
def test_run_builds_the_command_line_from_env(service_copy: Path, tmp_path: Path) -> None:
    env = service_copy / "env"
    result = run_script(service_copy)  # env.example as shipped: no config, no extra args
    assert result.returncode == 0, result.stdout
    assert (
        f"ARGS -m hip3_trio --env sim --state-dir {tmp_path / 'state'} --log-format json\n" in result.stdout
    )
    assert "KEY \n" in result.stdout

    config = tmp_path / "hip3 config.toml"  # a blank in the path survives
    config.write_text("")
    (env / "HIP3_CONFIG").write_text(f"{config}  \n")  # trailing blanks are dropped, as chpst does
    (env / "HIP3_ENV").write_text("testnet\n")
    (env / "HIP3_ARGS").write_text("--status-every 10  --dry-run *\n")  # split, never globbed
    key = env / "HIP3_PRIVATE_KEY"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    result = run_script(service_copy)
    assert result.returncode == 0, result.stdout
    assert (
        f"ARGS -m hip3_trio --env testnet --state-dir {tmp_path / 'state'} --log-format json "
        f"--config {config} --status-every 10 --dry-run *\n"
    ) in result.stdout
    assert "KEY set\n" in result.stdout and "ENV testnet\n" in result.stdout
    assert "ab" * 32 not in result.stdout


@pytest.mark.parametrize(
    ("setup", "complaint"),
    [
        (lambda env: (env / "HIP3_ENV").write_text("prod\n"), "HIP3_ENV must be sim, testnet or mainnet"),
        (lambda env: (env / "HIP3_PYTHON").unlink(), "HIP3_PYTHON is not set"),
        (lambda env: (env / "HIP3_PYTHON").write_text("/nonexistent/python\n"), "is not an executable"),
        (lambda env: (env / "HIP3_STATE_DIR").write_text(""), "HIP3_STATE_DIR is not set"),
        (lambda env: (env / "HIP3_CONFIG").write_text("/nonexistent.toml\n"), "not a readable file"),
        (lambda env: shutil.rmtree(env), "no ./env directory"),
    ],
)
def test_run_refuses_a_bad_env(service_copy: Path, setup: Callable[[Path], object], complaint: str) -> None:
    setup(service_copy / "env")
    result = run_script(service_copy)
    assert result.returncode == 111
    assert complaint in result.stdout  # run sends stderr to stdout: everything lands in the log


def test_run_refuses_a_key_file_others_can_read(service_copy: Path) -> None:
    key = service_copy / "env" / "HIP3_PRIVATE_KEY"
    key.write_text("ab" * 32 + "\n")
    for mode in (0o644, 0o640, 0o604, 0o620):
        key.chmod(mode)
        result = run_script(service_copy)
        assert result.returncode == 111, oct(mode)
        assert "chmod 0600 env/HIP3_PRIVATE_KEY" in result.stdout
        assert "ab" * 32 not in result.stdout


@pytest.mark.parametrize(
    ("args", "level", "text"),
    [
        (("0", "0"), "INFO", "engine exited 0 (orderly stop)"),
        (("-1", "9"), "ERROR", "engine killed by signal 9 (SIGKILL)"),
        (("-1", "15"), "ERROR", "engine killed by signal 15 (SIGTERM)"),
        (("1", "0"), "ERROR", "engine exited 1"),
        (("2", "0"), "ERROR", "engine exited 2 (configuration error, see the line above); retrying in 0 s"),
        (("3", "0"), "ERROR", "engine exited 3 (environment problem: port in use, state dir or journal"),
        (("111", "0"), "ERROR", "engine exited 111 (configuration error"),
    ],
)
def test_finish_logs_one_json_line(args: tuple[str, str], level: str, text: str) -> None:
    env = {**os.environ, "HIP3_FINISH_PAUSE_S": "0"}
    result = subprocess.run(
        ["./finish", *args], cwd=SERVICE_SRC, capture_output=True, text=True, timeout=10, check=True, env=env
    )
    doc = json.loads(result.stdout)
    assert doc["level"] == level and doc["logger"] == "hip3_trio.runit.finish"
    assert doc["msg"].startswith(text)
    assert (doc["exit_code"], doc["signal"]) == (int(args[0]), int(args[1]))
    assert abs(doc["t"] - time.time()) < 5


@pytest.mark.parametrize("code", ["2", "3", "111"])
def test_finish_backs_off_after_a_start_up_refusal(code: str) -> None:
    """2 (configuration), 3 (environment) and run's 111 don't fix themselves: finish waits before runsv
    restarts the engine, instead of a restart every second."""
    env = {**os.environ, "HIP3_FINISH_PAUSE_S": "1"}
    started = time.monotonic()
    subprocess.run(
        ["./finish", code, "0"], cwd=SERVICE_SRC, capture_output=True, timeout=10, check=True, env=env
    )
    assert time.monotonic() - started >= 1.0
    started = time.monotonic()
    subprocess.run(
        ["./finish", "1", "0"], cwd=SERVICE_SRC, capture_output=True, timeout=10, check=True, env=env
    )
    assert time.monotonic() - started < 1.0  # a crash (a bug) is restarted at once
