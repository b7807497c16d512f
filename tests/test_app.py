"""The command line and the config → engine mapping."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from hip3_trio.app import engine_settings
from hip3_trio.cli import main, parse_args
from hip3_trio.config import parse_config
from hip3_trio.execution.nonce import NONCE_FILENAME, save_high_water, wall_clock_ms
from hip3_trio.journal import JOURNAL_FILENAME
from hip3_trio.risk.hard_stop import HardStop


def test_cli_defaults_to_sim_and_validates_numbers() -> None:
    args = parse_args([])
    assert args.env == "sim" and args.dry_run is False and args.state_dir is None
    with pytest.raises(SystemExit):
        parse_args(["--duration", "0"])


def test_mainnet_without_opt_in_is_a_clear_start_up_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('account_address = "0x' + "ab" * 20 + '"\nmarkets = [{coin = "xyz:COIN"}]\n')
    assert main(["--env", "mainnet", "--config", str(config), "--state-dir", str(tmp_path)]) == 2
    assert "allow_mainnet" in capsys.readouterr().err


def test_testnet_without_a_key_is_a_clear_start_up_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HIP3_PRIVATE_KEY", raising=False)
    config = tmp_path / "c.toml"
    config.write_text('account_address = "0x' + "ab" * 20 + '"\nmarkets = [{coin = "xyz:COIN"}]\n')
    code = main(["--env", "testnet", "--config", str(config), "--state-dir", str(tmp_path / "s")])
    assert code == 2
    assert "HIP3_PRIVATE_KEY" in capsys.readouterr().err


def test_a_damaged_journal_refuses_to_start_with_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "s"
    state.mkdir()
    (state / JOURNAL_FILENAME).write_bytes(b"not an SQLite file\n" * 100)
    assert main(["--env", "sim", "--state-dir", str(state), "--duration", "5"]) == 3
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("hip3-trio: ")
    assert "not a database" in captured.err and "Traceback" not in captured.err
    assert "simulator listening" not in captured.out  # refused before anything started


def test_config_sections_reach_the_engine_with_the_derived_values() -> None:
    config = parse_config(
        """
        markets = [{coin = "xyz:COIN", min_edge_bps = 7}, {coin = "xyz:NVDA"}]
        [detector]
        stale_book_s = 1.5
        cooldown_s = 4
        max_notional_usd = 15
        min_notional_usd = 12
        [limits]
        max_position_per_market_usd = 20
        max_position_total_usd = 30
        [time_stop]
        hold_s = 12
        flatten_on_exit = false
        [risk]
        max_loss_usd = 5
        [batch]
        interval_ms = 250
        post_timeout_s = 3
        """,
        "sim",
    )
    s = engine_settings(config, user="0x" + "1" * 40, dry_run=True, is_mainnet=False, cloid_prefix=9)
    assert s.markets == ("xyz:COIN", "xyz:NVDA")
    assert s.detector.max_book_age_ms == 1500 and s.detector.cooldown_ms == 4000
    assert s.detector.min_edge_bps_by_market == {"xyz:COIN": Decimal(7)}
    assert s.executor.max_position_per_market_usd == Decimal(20)
    assert s.executor.max_position_total_usd == Decimal(30)
    assert s.executor.cloid_prefix == 9
    assert s.executor.min_notional_usd == s.detector.min_notional_usd == Decimal(12)
    assert s.time_stop.hold_s == 12 and s.time_stop.flatten_on_exit is False
    assert s.risk.max_loss_usd == Decimal(5)
    assert s.scheduler.interval_ms == 250 and s.scheduler.post_timeout_s == 3
    assert s.connection.backoff_initial_s == 1.0 and s.connection.backoff_max_s == 60.0


def test_the_engine_runs_the_preflight_and_refuses_to_trade_on_a_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17: the engine runs `check`'s preflight before its first READY; a FAIL (here a nonce mark
    two days ahead of the venue, which would have every nonce refused) ends the start: one line, exit 3."""
    state = tmp_path / "s"
    state.mkdir()
    save_high_water(state / NONCE_FILENAME, wall_clock_ms() + 2 * 24 * 3600 * 1000)
    assert main(["--env", "sim", "--state-dir", str(state), "--duration", "5"]) == 3
    captured = capsys.readouterr()
    last = captured.err.splitlines()[-1]  # the table went to the log first
    assert last.startswith("hip3-trio: preflight FAIL") and "nonce mark" in last
    assert "Traceback" not in captured.err


def test_a_latched_hard_stop_does_not_block_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A latched hard stop is what the engine runs to handle (watch and flatten): the preflight's FAIL for
    it does not stop the engine."""
    state = tmp_path / "s"
    state.mkdir()
    HardStop.load(state, wall_clock_ms()).trigger("test", wall_clock_ms())
    assert main(["--env", "sim", "--state-dir", str(state), "--duration", "3"]) == 0
    assert "hard stop LATCHED: test" in capsys.readouterr().out  # it ran, latched, to its summary


def test_an_unreachable_venue_at_the_preflight_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'account_address = "0x{"1" * 40}"\nmarkets = ["xyz:COIN"]\n')
    monkeypatch.setenv("HIP3_PRIVATE_KEY", "0x" + "4" * 64)
    argv = ["--env", "testnet", "--config", str(config), "--ws-url", "ws://127.0.0.1:9/ws"]
    assert main([*argv, "--dry-run", "--duration", "3", "--state-dir", str(tmp_path / "s")]) == 3
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(
        "hip3-trio: preflight: cannot reach the venue at ws://127.0.0.1:9/ws"
    )
    assert "Traceback" not in err
