"""The dry-run engine against the simulator over memory streams, under the autojump clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from trio_websocket import wrap_client_stream

from hip3_trio.app import DryRunHost, run_engine, summary
from hip3_trio.cli import parse_args
from hip3_trio.sim import SimConfig, open_simulator
from hip3_trio.strategy.detector import DetectorConfig
from hip3_trio.venue.session import SessionConfig, WsLike

BASE_MS = 1_700_000_000_000


async def run_dry(wanted: tuple[str, ...], duration: float) -> tuple[DryRunHost, list[tuple[float, str]]]:
    config = SimConfig(seed=7, base_epoch_ms=BASE_MS)
    async with open_simulator(config, listen=False) as sim, trio.open_nursery() as nursery:

        @asynccontextmanager
        async def connect() -> AsyncIterator[WsLike]:
            stream = sim.connect_memory(nursery)
            ws = await wrap_client_stream(nursery, stream, "sim", "/ws")  # type: ignore[arg-type]
            try:
                yield ws
            finally:
                await ws.aclose()

        host = DryRunHost(
            wanted=wanted,
            detector_config=DetectorConfig(),
            clock_ms=lambda: BASE_MS + int(trio.current_time() * 1000),
        )
        lines: list[tuple[float, str]] = []
        start = trio.current_time()
        await run_engine(
            connect,
            host,
            duration=duration,
            status_every=5,
            session_config=SessionConfig(md_stall=1000),
            out=lambda line: lines.append((trio.current_time() - start, line)),
        )
        nursery.cancel_scope.cancel()
    return host, lines


async def test_dry_run_maps_markets_streams_data_and_reports(autojump_clock: trio.testing.MockClock) -> None:
    host, lines = await run_dry(("xyz:COIN", "xyz:NVDA"), duration=60)
    assert host.markets is not None
    assert {c: (s.asset, s.sz_decimals) for c, s in host.markets.by_coin.items()} == {
        "xyz:COIN": (110000, 2),
        "xyz:NVDA": (110001, 3),
    }
    assert host.stats.connects == 1
    assert host.stats.frames["SubscriptionAck"] == 4
    assert host.stats.frames["Bbo"] > 0 and host.stats.frames["ActiveAssetCtx"] > 0
    assert [round(t) for t, _ in lines] == list(range(5, 60, 5))
    assert "dry run" in summary(host.stats)


async def test_unknown_configured_market_stops_the_engine_with_a_clear_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="xyz:NOPE"), flatten_subgroups=True):
        await run_dry(("xyz:COIN", "xyz:NOPE"), duration=30)


def test_cli_defaults_to_sim_and_refuses_mainnet() -> None:
    assert parse_args([]).env == "sim"
    with pytest.raises(SystemExit):
        parse_args(["--env", "mainnet"])
    with pytest.raises(SystemExit):
        parse_args(["--duration", "0"])
