"""`report` and `hardstop` find the state directory as the engine does: --state-dir, else the --config
file's paths.state_dir, else $HIP3_STATE_DIR, else ./hip3-state."""

from __future__ import annotations

from pathlib import Path

import pytest

from hip3_trio.config import ConfigError, state_dir_for
from hip3_trio.journal import JOURNAL_FILENAME, Journal
from hip3_trio.ops import hardstop_cmd, report
from hip3_trio.risk.hard_stop import HardStop

T0 = 1_735_689_600_000


def config_file(tmp_path: Path, state_dir: Path | None, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    paths = f"[paths]\nstate_dir = '{state_dir}'\n" if state_dir is not None else ""
    path.write_text(extra + paths)
    return path


def run(main: object, *argv: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = main(list(argv), out=lines.append)  # type: ignore[operator]
    return code, lines


@pytest.fixture
def two_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """$HIP3_STATE_DIR names one state dir, the config file's paths.state_dir another."""
    from_env, from_config = tmp_path / "env-state", tmp_path / "config-state"
    for directory in (from_env, from_config):
        directory.mkdir()
        Journal.open(directory).close()
    monkeypatch.setenv("HIP3_STATE_DIR", str(from_env))
    return from_env, from_config


def test_state_dir_for_follows_the_engine_precedence(tmp_path: Path) -> None:
    config = config_file(tmp_path, tmp_path / "configured")
    env = {"HIP3_STATE_DIR": "/var/lib/hip3"}
    assert state_dir_for("/cli", config, env) == Path("/cli")
    assert state_dir_for(None, config, env) == tmp_path / "configured"
    assert state_dir_for(None, None, env) == Path("/var/lib/hip3")
    assert state_dir_for(None, config_file(tmp_path, None), {}) == Path("hip3-state")


def test_state_dir_for_checks_the_file_but_not_the_network(tmp_path: Path) -> None:
    # A mainnet config without allow_mainnet names its state dir all the same ...
    config = config_file(tmp_path, tmp_path / "s", extra='account_address = "0x' + "ab" * 20 + '"\n')
    assert state_dir_for(None, config, {}) == tmp_path / "s"
    # ... but a file the engine would refuse is an error, never a silent default.
    with pytest.raises(ConfigError, match="limitz"):
        state_dir_for(None, config_file(tmp_path, tmp_path / "s", extra="[limitz]\n"), {})
    with pytest.raises(ConfigError, match="not found"):
        state_dir_for(None, tmp_path / "missing.toml", {})


def test_report_reads_the_journal_the_config_names(two_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    from_env, from_config = two_dirs
    code, lines = run(report.main, "--config", str(config_file(tmp_path, from_config)))
    assert code == 0
    assert lines[0].endswith(str(from_config / JOURNAL_FILENAME))
    code, lines = run(report.main)
    assert code == 0 and lines[0].endswith(str(from_env / JOURNAL_FILENAME))
    # --state-dir wins over the config, as it does for the engine.
    code, lines = run(
        report.main, "--config", str(config_file(tmp_path, from_config)), "--state-dir", str(from_env)
    )
    assert code == 0 and lines[0].endswith(str(from_env / JOURNAL_FILENAME))


def test_hardstop_reads_and_clears_the_latch_the_config_names(
    two_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    _, from_config = two_dirs
    HardStop.load(from_config, T0).trigger("cumulative loss", T0)
    config = str(config_file(tmp_path, from_config))
    assert run(hardstop_cmd.main, "status")[0] == 0  # $HIP3_STATE_DIR: another, clear latch
    assert run(hardstop_cmd.main, "status", "--config", config)[0] == 1
    assert run(hardstop_cmd.main, "clear", "--yes", "--by", "alice", "--config", config)[0] == 0
    assert not HardStop.load(from_config, T0).latched


@pytest.mark.parametrize("main", [report.main, hardstop_cmd.main], ids=["report", "hardstop"])
def test_a_config_the_engine_would_refuse_is_an_error(
    main: object, two_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    bad = config_file(tmp_path, two_dirs[1], extra="[limitz]\n")
    argv = ["--config", str(bad)] if main is report.main else ["status", "--config", str(bad)]
    code, lines = run(main, *argv)
    assert code == 2
    assert lines[0].startswith("error: invalid configuration") and "limitz" in lines[0]
