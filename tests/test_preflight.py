"""`check` (preflight) and `probe` against the simulator: all PASS, one FAIL of each kind, exit statuses."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import trio
import trio_websocket
from eth_account import Account

from hip3_trio.config import Config, parse_config
from hip3_trio.execution.nonce import load_high_water, save_high_water, wall_clock_ms
from hip3_trio.journal import JOURNAL_FILENAME
from hip3_trio.ops import check, probe
from hip3_trio.ops.check import CheckResult, exit_status, preflight
from hip3_trio.ops.venue_client import VenueClient
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.sim import SimConfig, open_simulator
from hip3_trio.sim.faults import Faults
from hip3_trio.sim.server import Simulator
from hip3_trio.state_lock import hold_state_dir

OTHER = str(Account.from_key("0x" + "33" * 32).address)


async def _preflight(
    sim: Simulator, config: Config, state_dir: Path, *, signer: str | None = None
) -> dict[str, CheckResult]:
    assert sim.account is not None
    async with trio.open_nursery() as nursery:
        stream = sim.connect_memory(nursery)
        ws = await trio_websocket.wrap_client_stream(nursery, stream, "sim", "/ws")  # type: ignore[arg-type]
        client = VenueClient(ws)
        await nursery.start(client.run)
        results = await preflight(
            client, config=config, user=sim.account, signer_address=signer or sim.account, state_dir=state_dir
        )
        nursery.cancel_scope.cancel()
    assert [r.name for r in results].count("clock offset") <= 1
    return {r.name: r for r in results}


async def _run(
    tmp_path: Path,
    toml: str = "",
    *,
    faults: Faults | None = None,
    signer: str | None = None,
    setup: object = None,
) -> dict[str, CheckResult]:
    config = parse_config(toml, "sim")
    async with open_simulator(SimConfig(seed=7), faults=faults, listen=False) as sim:
        if callable(setup):
            setup(sim)
        return await _preflight(sim, config, tmp_path, signer=signer)


def _fails(results: dict[str, CheckResult]) -> list[str]:
    return [name for name, r in results.items() if r.status == "FAIL"]


async def test_clean_simulator_passes_every_check(tmp_path: Path) -> None:
    results = await _run(tmp_path)
    assert {r.status for r in results.values()} == {"PASS"}, results
    assert set(results) >= {
        "key", "signer approved", "market xyz:COIN", "fee xyz:COIN", "balance xyz", "request budget",
        "clock offset", "state dir writable", "journal", "hard stop", "nonce mark",
    }  # fmt: skip
    assert exit_status(list(results.values())) == 0
    assert "taker 9 bps" in results["fee xyz:COIN"].value  # s = 1 on xyz: x 2


async def test_key_not_the_configured_signer_fails(tmp_path: Path) -> None:
    results = await _run(tmp_path, f'signer_address = "{OTHER}"')
    assert _fails(results) == ["key"]
    assert exit_status(list(results.values())) == 3


async def test_unapproved_agent_fails_and_approved_agent_passes(tmp_path: Path) -> None:
    results = await _run(tmp_path, signer=OTHER)
    assert _fails(results) == ["signer approved"]
    assert "not an API wallet" in results["signer approved"].value
    results = await _run(tmp_path, signer=OTHER, setup=lambda sim: sim.approve_agent(OTHER, sim.account))
    assert results["signer approved"].status == "PASS", results["signer approved"]


async def test_a_named_api_wallet_is_checked_for_expiry(tmp_path: Path) -> None:
    """extraAgents' validUntil: expired FAIL, under a week WARN, more PASS; unnamed: PASS, unknown."""
    now = wall_clock_ms()
    day = 24 * 3600 * 1000

    def approve(until: int | None, name: str | None = "bot") -> object:
        return lambda sim: sim.approve_agent(OTHER, sim.account, name=name, valid_until_ms=until)

    expired = await _run(tmp_path, signer=OTHER, setup=approve(now - 1000))
    assert _fails(expired) == ["API wallet expiry"]
    assert "expired; approve a new API wallet" in expired["API wallet expiry"].value
    soon = await _run(tmp_path, signer=OTHER, setup=approve(now + 2 * day))
    assert soon["API wallet expiry"].status == "WARN", soon["API wallet expiry"]
    assert "bot valid until" in soon["API wallet expiry"].value
    later = await _run(tmp_path, signer=OTHER, setup=approve(now + 30 * day))
    assert later["API wallet expiry"].status == "PASS"
    assert "days left" in later["API wallet expiry"].value
    unnamed = await _run(tmp_path, signer=OTHER, setup=approve(None, name=None))
    assert unnamed["API wallet expiry"].status == "PASS"
    assert "publishes no expiry" in unnamed["API wallet expiry"].value
    own_key = await _run(tmp_path)
    assert "API wallet expiry" not in own_key


async def test_unknown_and_delisted_markets_fail(tmp_path: Path) -> None:
    results = await _run(tmp_path, 'markets = ["xyz:COIN", "xyz:NOPE", "qqq:COIN", "xyz:OLD"]')
    assert _fails(results) == ["market xyz:NOPE", "market qqq:COIN", "market xyz:OLD"]
    assert "DELISTED" in results["market xyz:OLD"].value


async def test_unfunded_dex_fails(tmp_path: Path) -> None:
    def unfund(sim: Simulator) -> None:
        assert sim.account is not None
        sim.exchange.accounts.users[sim.account].balances["xyz"] = Decimal(0)

    results = await _run(tmp_path, setup=unfund)
    assert _fails(results) == ["balance xyz"]
    assert "unfunded" in results["balance xyz"].value


async def test_clock_skew_fails(tmp_path: Path) -> None:
    results = await _run(tmp_path, faults=Faults(clock_skew_ms=60_000))
    assert _fails(results) == ["clock offset"]


async def test_unwritable_state_dir_fails(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    results = await _run(not_a_dir)
    assert _fails(results) == ["state dir writable"]


async def test_corrupted_journal_fails(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILENAME).write_bytes(b"this is not a database" * 100)
    results = await _run(tmp_path)
    assert _fails(results) == ["journal"]


async def test_latched_hard_stop_fails(tmp_path: Path) -> None:
    HardStop.load(tmp_path, wall_clock_ms()).trigger("loss limit", wall_clock_ms())
    results = await _run(tmp_path)
    assert _fails(results) == ["hard stop"]
    assert "loss limit" in results["hard stop"].value


async def test_nonce_mark_ahead_of_the_venue_fails(tmp_path: Path) -> None:
    save_high_water(tmp_path / "nonce.json", wall_clock_ms() + 2 * 24 * 3600 * 1000)
    results = await _run(tmp_path)
    assert _fails(results) == ["nonce mark"]


def test_check_command_on_the_simulator(tmp_path: Path) -> None:
    lines: list[str] = []
    assert check.main(["--env", "sim", "--state-dir", str(tmp_path)], out=lines.append) == 0
    assert lines[-1] == "preflight: OK"
    assert all(line.startswith("PASS") for line in lines[1:-1]), lines
    HardStop.load(tmp_path, wall_clock_ms()).trigger("operator", wall_clock_ms())
    lines.clear()
    assert check.main(["--env", "sim", "--state-dir", str(tmp_path)], out=lines.append) == 3
    assert lines[-1] == "preflight: 1 FAIL"


def test_check_command_bad_config_is_exit_2(tmp_path: Path) -> None:
    lines: list[str] = []
    assert check.main(["--env", "testnet", "--config", str(tmp_path / "missing.toml")], out=lines.append) == 2
    assert check.main(["--env", "nowhere"], out=lines.append) == 2


def test_probe_on_the_simulator_reports_every_item(tmp_path: Path) -> None:
    lines: list[str] = []
    assert probe.main(["--env", "sim", "--state-dir", str(tmp_path)], out=lines.append) == 0
    text = "\n".join(lines)
    assert "signature accepted        : yes" in text
    assert "order outcome             : not filled: Order could not immediately match" in text
    assert "orderStatus by cloid      : found, status iocCancelRejected" in text
    assert "cloid accepted on HIP-3   : yes" in text
    assert "noop                      : accepted" in text
    assert "(spent 2)" in text
    assert lines[-1] == "probe: OK"
    mark = load_high_water(tmp_path / "nonce.json")
    assert mark > 0
    # A second run continues above the saved mark.
    lines.clear()
    assert probe.main(["--env", "sim", "--state-dir", str(tmp_path)], out=lines.append) == 0
    assert load_high_water(tmp_path / "nonce.json") > mark


def test_probe_refuses_a_state_dir_an_engine_holds(tmp_path: Path) -> None:
    """The probe signs with the state directory's nonce mark: never beside a running engine."""
    lines: list[str] = []
    with hold_state_dir(tmp_path, "hip3-trio --env sim"):
        assert probe.main(["--env", "sim", "--state-dir", str(tmp_path)], out=lines.append) == 3
    assert len(lines) == 1 and "is in use by hip3-trio --env sim" in lines[0], lines
    assert not (tmp_path / "nonce.json").exists()


@pytest.mark.parametrize("argv", [["--env", "mainnet"], ["--env", "sim", "--market", "xyz:NOPE"]])
def test_probe_refusals_are_exit_2(argv: list[str], tmp_path: Path) -> None:
    lines: list[str] = []
    assert probe.main([*argv, "--state-dir", str(tmp_path)], out=lines.append) == 2
    assert len(lines) == 1 and lines[0].startswith("hip3-trio: ")
