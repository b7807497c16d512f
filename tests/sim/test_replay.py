"""Replay: the simulator serves a recording as its venue — its frames at recorded timing / speed, its
metadata, and orders matched against the recorded book at that instant."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from eth_account.signers.local import LocalAccount

from hip3_trio.recording.format import compress_member, encode_json, encode_line, file_name_for
from hip3_trio.sim import __main__ as sim_cli
from hip3_trio.sim.matching import take
from hip3_trio.sim.realism import BlockModel, ImpactModel, LatencyModel
from hip3_trio.sim.replay import (
    LEAD_IN_S,
    Frame,
    Replay,
    ReplayOptions,
    _dexes,
    load_recording,
    open_replay,
    sim_config,
)
from hip3_trio.sim.server import Simulator

from .client import SimClient, Trader, connect

START_US = 1_795_000_000_000_000
START_MS = START_US // 1000
VENUE_MS = 1_800_000_000_000  # the replay's venue clock at start: not the recording's
PERP_DEXS = [None, {"name": "xyz", "fullName": "XYZ", "deployer": "0x" + "8" * 40, "deployerFeeScale": "1.0"}]
# xyz lists OLD first, so COIN is asset 110001; szDecimals differ from the simulator's own xyz.
META = {
    "universe": [
        {"name": "xyz:OLD", "szDecimals": 1, "maxLeverage": 5, "onlyIsolated": True, "isDelisted": True},
        {
            "name": "xyz:COIN",
            "szDecimals": 3,
            "maxLeverage": 10,
            "onlyIsolated": True,
            "marginMode": "noCross",
        },
    ],
    "marginTables": [],
    "collateralToken": 0,
}
USER_FEES = {"userCrossRate": "0.0004", "userAddRate": "0.0001", "activeReferralDiscount": "0.0"}


def level(px: str, sz: str) -> dict[str, Any]:
    return {"px": px, "sz": sz, "n": 1}


def frames() -> list[tuple[int, dict[str, Any]]]:
    """(offset us, frame): a context, a two-level book and its bbo, then a new top of book."""
    coin = "xyz:COIN"
    ctx = {"oraclePx": "250.0", "markPx": "250.0", "prevDayPx": "249.0", "funding": "0.0"}
    return [
        (0, {"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": ctx}}),
        (
            100_000,
            {
                "channel": "l2Book",
                "data": {
                    "coin": coin,
                    "time": START_MS + 100,
                    "levels": [
                        [level("249.9", "1.0"), level("249.8", "2.0")],
                        [level("250.1", "0.05"), level("250.2", "1.0")],
                    ],
                },
            },
        ),
        (
            150_000,
            {
                "channel": "bbo",
                "data": {
                    "coin": coin,
                    "time": START_MS + 150,
                    "bbo": [level("249.9", "1.0"), level("250.1", "0.05")],
                },
            },
        ),
        (
            2_150_000,
            {
                "channel": "bbo",
                "data": {
                    "coin": coin,
                    "time": START_MS + 2150,
                    "bbo": [level("249.95", "0.5"), level("250.05", "0.2")],
                },
            },
        ),
        (
            4_000_000,
            {"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": ctx | {"oraclePx": "250.5"}}},
        ),
    ]


def write_recording(directory: Path) -> list[dict[str, Any]]:
    """A recording as the recorder writes it; returns its frames."""
    lines = [
        encode_json(START_US, "head", {"format": 1, "env": "mainnet", "markets": ["xyz:COIN"]}),
        encode_json(START_US, "info", {"req": {"type": "perpDexs"}, "resp": PERP_DEXS}),
        encode_json(START_US, "info", {"req": {"type": "meta", "dex": "xyz"}, "resp": META}),
        encode_json(
            START_US, "info", {"req": {"type": "userFees", "user": "0x" + "1" * 40}, "resp": USER_FEES}
        ),
    ]
    lines += [encode_line(START_US + offset, "ws", json.dumps(frame)) for offset, frame in frames()]
    directory.mkdir(exist_ok=True)
    (directory / file_name_for(START_US)).write_bytes(compress_member(lines))
    return [frame for _, frame in frames()]


@asynccontextmanager
async def replaying(
    tmp_path: Path, wallet: LocalAccount, options: ReplayOptions
) -> AsyncIterator[tuple[Simulator, Replay, SimClient]]:
    write_recording(tmp_path / "rec")
    options = attrs.evolve(options, base_epoch_ms=VENUE_MS)
    async with open_replay(load_recording(tmp_path / "rec"), options, listen=False) as (sim, replay):
        sim.add_account(wallet.address)
        async with connect(sim) as client:
            yield sim, replay, client


async def subscribe_all(client: SimClient) -> None:
    for kind in ("activeAssetCtx", "l2Book", "bbo"):
        await client.subscribe({"type": kind, "coin": "xyz:COIN"})


@pytest.mark.parametrize("speed", [1.0, 4.0])
async def test_the_frames_served_are_the_recording_at_its_timing_over_speed(
    speed: float, tmp_path: Path, wallet: LocalAccount, autojump_clock: trio.testing.MockClock
) -> None:
    async with replaying(tmp_path, wallet, ReplayOptions.plain(speed)) as (_sim, replay, client):
        subscribed = trio.current_time()
        await subscribe_all(client)
        served: list[tuple[float, dict[str, Any]]] = []
        while len(served) < len(frames()):
            frame = await client.frame()
            if trio.current_time() > subscribed:  # not the snapshots the venue sends with each ack
                served.append((trio.current_time(), frame))
        assert replay.finished.is_set() and replay.served == len(frames())
    # As recorded, but for data.time: moved onto the venue clock (offsets from the start over the speed).
    start_ms = VENUE_MS + round((served[0][0] - subscribed) * 1000)
    expected = [replay.retimed(frame) for _, frame in frames()]
    assert [frame for _, frame in served] == expected
    times = [None, 100, 150, 2150, None]
    assert [f["data"].get("time") for f in expected] == [t and start_ms + round(t / speed) for t in times]
    first = served[0][0]
    assert first - subscribed == pytest.approx(LEAD_IN_S)
    assert [round(t - first, 6) for t, _ in served] == [offset / 1e6 / speed for offset, _ in frames()]


async def test_metadata_comes_from_the_recording(
    tmp_path: Path, wallet: LocalAccount, autojump_clock: trio.testing.MockClock
) -> None:
    async with replaying(tmp_path, wallet, ReplayOptions.plain()) as (sim, _, client):
        assert await client.info({"type": "perpDexs"}) == PERP_DEXS
        assert await client.info({"type": "meta", "dex": "xyz"}) == META
        assert await client.info({"type": "userFees", "user": wallet.address}) == USER_FEES
        spec = sim.exchange.markets["xyz:COIN"].spec
        assert (spec.asset, spec.sz_decimals, spec.max_leverage) == (110_001, 3, 10)
        assert sim.exchange.markets["xyz:OLD"].spec.delisted
        assert sim.exchange.config.taker_rate == Decimal("0.0004")
        assert sim.exchange.clock.now_ms() == VENUE_MS


async def test_an_ioc_is_matched_against_the_recorded_book_at_that_instant(
    tmp_path: Path, wallet: LocalAccount, autojump_clock: trio.testing.MockClock
) -> None:
    options = ReplayOptions.plain()
    async with replaying(tmp_path, wallet, options) as (sim, replay, client):
        trader = Trader(client, wallet, nonce=VENUE_MS)
        await subscribe_all(client)
        while replay.served < 3:  # the l2Book and its bbo: two ask levels
            await client.frame()
        # 0.08 walks the recorded book: 0.05 at 250.1, the rest at the next level, 250.2.
        status = await trader.order(110_001, True, 250.2, 0.08)
        assert status["filled"]["totalSz"] == "0.08"
        fills = sim.exchange.accounts.users[wallet.address.lower()].fills
        assert [(f.px, f.sz) for f in fills] == [
            (Decimal("250.1"), Decimal("0.05")),
            (Decimal("250.2"), Decimal("0.03")),
        ]
        while replay.served < 4:  # the next recorded bbo: a new top of book
            await client.frame()
        status = await trader.order(110_001, True, 250.2, 0.1)
        assert status["filled"]["avgPx"] == "250.05"  # at the recorded top of that instant


async def test_impact_keeps_what_a_taker_consumed_in_later_recorded_books(
    tmp_path: Path, wallet: LocalAccount, autojump_clock: trio.testing.MockClock
) -> None:
    options = ReplayOptions(competition=ReplayOptions.plain().competition)  # impact on, no competitors
    async with replaying(tmp_path, wallet, options) as (sim, replay, client):
        trader = Trader(client, wallet, nonce=VENUE_MS)
        await subscribe_all(client)
        while replay.served < 2:  # the l2Book: 0.05 at 250.1
            await client.frame()
        await trader.order(110_001, True, 250.1, 0.05)
        while replay.served < 3:  # its bbo shows 0.05 at 250.1 again: still taken
            await client.frame()
        market = sim.exchange.markets["xyz:COIN"]
        assert market.best_ask() == Decimal("250.2")


def test_a_bad_replay_dir_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_cli.main(["--replay", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hip3_trio.sim: --replay: no recording at"), err
    (tmp_path / "empty").mkdir()
    assert sim_cli.main(["--replay", str(tmp_path / "empty")]) == 2
    assert "holds no recording files" in capsys.readouterr().err


def test_the_engine_refuses_a_bad_replay_with_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hip3_trio.cli import main

    argv = ["--state-dir", str(tmp_path / "state"), "--duration", "5"]
    assert main(["--env", "sim", "--replay", str(tmp_path / "missing"), *argv]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hip3-trio: ")]
    assert len(lines) == 1 and "--replay: no recording at" in lines[0]
    write_recording(tmp_path / "rec")
    assert main(["--env", "testnet", "--replay", str(tmp_path / "rec"), *argv]) == 2
    assert "--replay: needs --env sim" in capsys.readouterr().err


async def test_the_engine_trades_a_replay_like_any_simulator(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    from decimal import Decimal as D

    from hip3_trio.engine import EngineSettings
    from hip3_trio.strategy.detector import DetectorConfig

    from ..engine_rig import Rig, run_rig

    write_recording(tmp_path / "rec")
    options = ReplayOptions.plain()
    fills: list[Any] = []

    async def scenario(rig: Rig) -> None:
        await rig.wait_ready()
        await rig.wait_for(lambda: replay.served >= 3)
        rig.submit(rig.entry_signal("xyz:COIN", usd=D(12)))
        await rig.wait_for(lambda: rig.engine.core.statistics().fills > 0)
        fills.extend(sim.exchange.accounts.users[sim.account or ""].fills)
        rig.stop.set()

    def settings(user: str) -> EngineSettings:
        quiet = DetectorConfig(min_edge_bps=D(10_000))
        return EngineSettings(markets=("xyz:COIN",), user=user, detector=quiet)

    recording = load_recording(tmp_path / "rec")
    async with open_replay(recording, attrs.evolve(options, base_epoch_ms=VENUE_MS), listen=False) as (
        sim,
        replay,
    ):
        await run_rig(tmp_path, scenario, sim=sim, settings=settings)
    assert [(f.px, f.sz) for f in fills] == [(D("250.1"), D("0.048"))]  # the recorded top ask, 3 decimals


async def test_a_competitor_sweeps_a_recorded_dislocation_after_its_delay(
    tmp_path: Path, wallet: LocalAccount, autojump_clock: trio.testing.MockClock
) -> None:
    options = ReplayOptions(impact=ReplayOptions.plain().impact)  # competitors on, no impact
    async with replaying(tmp_path, wallet, options) as (sim, replay, client):
        await subscribe_all(client)
        while replay.served < 1:  # the oracle at 250.0
            await client.frame()
        asks = [level("249.0", "0.3"), level("249.5", "0.2"), level("250.1", "1.0")]  # 40 and 20 bps through
        book = {"coin": "xyz:COIN", "time": START_MS, "levels": [[level("248.9", "1.0")], asks]}
        replay.apply(Frame(0.0, "l2Book", "xyz:COIN", {"channel": "l2Book", "data": book}))
        market = sim.exchange.markets["xyz:COIN"]
        assert market.best_ask() == Decimal("249.0")  # shown first, as recorded
        await trio.sleep(1.0)  # longer than any competitor's delay here
        assert market.best_ask() == Decimal("250.1") and replay.competitor_fills == 1


@pytest.mark.parametrize("realistic", [False, True])
async def test_a_replayed_order_waits_for_its_block_after_the_latency(
    realistic: bool, tmp_path: Path, wallet: LocalAccount, autojump_clock: trio.testing.MockClock
) -> None:
    """The simulator's blocks and latency apply to a replay: the order reaches the venue 5 ms after it
    is sent, waits for the next block boundary (70 ms apart here), fills against the recorded book of
    that moment, and its reply takes 5 ms more. Without them (plain) the reply is instant."""
    options = ReplayOptions.plain()
    if realistic:
        options = attrs.evolve(options, blocks=BlockModel(70.0, 0.0), latency=LatencyModel(5.0))
    async with replaying(tmp_path, wallet, options) as (_, replay, client):
        trader = Trader(client, wallet, nonce=VENUE_MS)
        await subscribe_all(client)
        while replay.served < 3:
            await client.frame()
        sent = trio.current_time()
        status = await trader.order(110_001, True, 250.2, 0.08)
        took_ms = (trio.current_time() - sent) * 1000
    assert status["filled"]["totalSz"] == "0.08"  # the recorded book of that moment
    if realistic:
        assert 10.0 < took_ms <= 80.0 + 1e-6
    else:
        assert took_ms == 0.0


async def test_deep_level_depletion_is_counted_once(tmp_path: Path) -> None:
    """What a taker consumed from a recorded deep level is missing once from the bbo frames after it,
    not again at each of them (found in review: the recorded levels were mutated by the fills)."""
    write_recording(tmp_path)
    recording = load_recording(tmp_path)
    options = attrs.evolve(ReplayOptions.plain(), impact=ImpactModel(refill_s=1000.0))
    sim = Simulator.create(sim_config(recording, options), dexes=_dexes(recording))
    replay = Replay(sim, recording, options)
    market = sim.exchange.markets["xyz:COIN"]
    replay.apply(recording.frames[1])  # l2Book: asks 250.1 x 0.05, 250.2 x 1.0
    take(market, True, Decimal("250.2"), Decimal("0.55"), "someone")
    assert [(lvl.px, lvl.sz) for lvl in market.asks] == [(Decimal("250.2"), Decimal("0.5"))]
    for _ in range(3):  # bbo frames with the same top: the deep level stays at what is left
        replay.apply(recording.frames[2])
        assert {lvl.px: lvl.sz for lvl in market.asks}.get(Decimal("250.2")) == Decimal("0.5")
