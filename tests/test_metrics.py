"""Prometheus metrics: derived from engine state at scrape time, served on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hip3_trio.engine import Engine, EngineSettings, LatencyHistogram, reject_reason
from hip3_trio.execution.nonce import NonceManager
from hip3_trio.journal import JournalSink
from hip3_trio.metrics import registry_for, serve_metrics
from hip3_trio.risk.hard_stop import HardStop
from tests.engine_rig import Rig, run_rig


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_reflect_a_trading_engine(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    scraped: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]] = []

    async def scenario(rig: Rig) -> None:
        await rig.wait_ready()
        await rig.wait_for(lambda: any(p.size != 0 for p in rig.engine.book.positions.values()))
        scraped.append(samples(generate_latest(registry_for(rig.engine)).decode()))
        rig.stop.set()

    rig = await run_rig(tmp_path, scenario)
    got = scraped[0]
    assert got[("hip3_connected", ())] == 1
    assert got[("hip3_ready", (("flag", "trading"),))] == 1
    assert got[("hip3_connects_total", ())] == 1
    assert got[("hip3_orders_total", ())] >= 1
    assert got[("hip3_post_latency_seconds_count", ())] >= 1
    held = [m for m in rig.engine.book.markets if got[("hip3_position", (("market", m),))] != 0]
    assert held and all(got[("hip3_notional_usd", (("market", m),))] > 0 for m in held)
    assert got[("hip3_hard_stop", ())] == 0


def test_latency_histogram_buckets_are_cumulative() -> None:
    h = LatencyHistogram(bounds=(0.01, 0.1, float("inf")))
    for value in (0.005, 0.05, 0.05, 3.0):
        h.observe(value)
    assert h.cumulative() == [(0.01, 1), (0.1, 3), (float("inf"), 4)]
    assert h.total == 3.105


def test_reject_reasons_are_low_cardinality() -> None:
    a = reject_reason("Order could not immediately match against any resting orders. asset=110000")
    b = reject_reason("Order could not immediately match against any resting orders. asset=110001")
    assert a == b == "Order could not immediately match against any resting orders"
    assert reject_reason("Invalid nonce: duplicate nonce 1700000000123") == "Invalid nonce: duplicate nonce #"


async def test_metrics_endpoint_serves_on_loopback(tmp_path: Path) -> None:
    sink, _receive = JournalSink.open()
    engine = Engine(
        EngineSettings(markets=("xyz:COIN",), user="0x" + "1" * 40, dry_run=True),
        signer=None,
        nonces=NonceManager(),
        hard_stop=HardStop.load(tmp_path, 0),
        journal=sink,
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_metrics, engine, 0)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
        nursery.cancel_scope.cancel()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    got = samples(body.decode())
    assert got[("hip3_connected", ())] == 0
    assert got[("hip3_ready", (("flag", "trading"),))] == 0
    assert got[("hip3_inflight_posts", ())] == 0
