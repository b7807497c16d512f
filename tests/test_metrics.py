"""Prometheus metrics: derived from engine state at scrape time, served on 127.0.0.1."""

from __future__ import annotations

import errno
import logging
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hip3_trio import metrics
from hip3_trio.core import reject_reason
from hip3_trio.engine import Engine, EngineSettings
from hip3_trio.execution.nonce import NonceManager
from hip3_trio.journal import JournalSink
from hip3_trio.metrics import CLIENT_DEADLINE, EngineCollector, registry_for, serve_metrics
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.venue.link import LatencyHistogram
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
        await rig.wait_for(lambda: any(p.size != 0 for p in rig.engine.core.book.positions.values()))
        scraped.append(samples(generate_latest(registry_for(rig.engine)).decode()))
        rig.stop.set()

    rig = await run_rig(tmp_path, scenario)
    got = scraped[0]
    assert got[("hip3_connected", ())] == 1
    assert got[("hip3_ready", (("flag", "trading"),))] == 1
    assert got[("hip3_connects_total", ())] == 1
    assert got[("hip3_orders_total", ())] >= 1
    assert got[("hip3_post_latency_seconds_count", ())] >= 1
    held = [m for m in rig.engine.core.book.markets if got[("hip3_position", (("market", m),))] != 0]
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
    for outcome in ("sent", "failed", "dropped", "deduplicated"):  # alerts off: all zero
        assert got[("hip3_alerts_total", (("outcome", outcome),))] == 0


# --- one client's trouble ends that client only --------------------------------------------------


@pytest.fixture
async def engine(tmp_path: Path) -> Engine:
    sink, _receive = JournalSink.open()
    return Engine(
        EngineSettings(markets=("xyz:COIN",), user="0x" + "1" * 40, dry_run=True),
        signer=None,
        nonces=NonceManager(),
        hard_stop=HardStop.load(tmp_path, 0),
        journal=sink,
    )


@asynccontextmanager
async def metrics_beside_trading(engine: Engine) -> AsyncIterator[int]:
    """The metrics server in a nursery beside a stand-in trading task, as `app.run_engine` runs it.

    Anything escaping the server cancels that nursery and surfaces here as the test's failure."""
    async with trio.open_nursery() as trading:
        trading.start_soon(trio.sleep_forever)
        port: int = await trading.start(serve_metrics, engine, 0)
        yield port
        trading.cancel_scope.cancel()


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def scrape(port: int) -> bytes:
    """One well-behaved scrape; returns the whole answer."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        return await read_all(stream)


def reset(stream: trio.SocketStream) -> None:
    """Close with SO_LINGER (1, 0): the kernel sends a TCP RST, so the peer sees ECONNRESET."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def test_a_client_reset_mid_request_ends_that_client_only(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hip3_trio.metrics")
    async with metrics_beside_trading(engine) as port:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(b"GET /metrics HTTP/1.1\r\n")  # half a request: no blank line yet
        await trio.testing.wait_all_tasks_blocked()  # the server has read it and waits for the rest
        reset(client)
        await trio.testing.wait_all_tasks_blocked()
        assert (await scrape(port)).startswith(b"HTTP/1.1 200 OK")  # the server still serves
    assert any("reset" in r.getMessage().lower() for r in caplog.records)  # it really saw the RST


async def test_a_client_reset_before_its_answer_ends_that_client_only(engine: Engine) -> None:
    async with metrics_beside_trading(engine) as port:
        for request in (b"GET /metrics HTTP/1.1\r\n\r\n", b"POST /metrics HTTP/1.1\r\n\r\n"):
            client = await trio.open_tcp_stream("127.0.0.1", port)
            await client.send_all(request)
            reset(client)  # gone before the server writes its answer (200, or 405 for the POST)
            await trio.testing.wait_all_tasks_blocked()
        assert (await scrape(port)).startswith(b"HTTP/1.1 200 OK")


async def test_a_client_that_sends_half_a_request_and_vanishes_gets_no_answer(engine: Engine) -> None:
    async with metrics_beside_trading(engine) as port:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(b"GET /metr")
        await client.send_eof()  # and nothing more
        assert await read_all(client) == b""
        await client.aclose()
        assert (await scrape(port)).startswith(b"HTTP/1.1 200 OK")


async def test_a_silent_client_is_dropped_at_the_deadline_while_others_are_served(
    autojump_clock: trio.testing.MockClock, engine: Engine
) -> None:
    assert CLIENT_DEADLINE == 5.0
    async with metrics_beside_trading(engine) as port:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        await client.send_all(b"GET /metrics HTTP/1.1\r\n")  # half a request, then silence
        await trio.sleep(1)
        assert (await scrape(port)).startswith(b"HTTP/1.1 200 OK")  # not held up by the silent one
        assert trio.current_time() == 1.0
        assert await read_all(client) == b""  # closed without an answer to the partial request
        assert trio.current_time() == 5.0
        await client.aclose()


async def test_a_client_that_does_not_read_its_answer_is_dropped_at_the_deadline(
    autojump_clock: trio.testing.MockClock, engine: Engine
) -> None:
    """A lockstep stream: the server's write waits until the client reads, which it never does."""
    client, server = trio.testing.lockstep_stream_pair()
    ended: list[float] = []

    async def handler() -> None:
        await metrics._handle(registry_for(engine), server)
        ended.append(trio.current_time())

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handler)
            await client.send_all(b"GET /metrics HTTP/1.1\r\n\r\n")
    assert ended == [5.0]


async def test_a_bug_in_rendering_is_logged_with_its_traceback_and_ends_that_client_only(
    engine: Engine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: EngineCollector) -> None:
        raise ZeroDivisionError("a bug in a metric")

    async with metrics_beside_trading(engine) as port:
        monkeypatch.setattr(EngineCollector, "collect", broken)
        assert await scrape(port) == b""  # no answer: the connection is closed
        (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
        monkeypatch.undo()
        assert (await scrape(port)).startswith(b"HTTP/1.1 200 OK")


async def test_a_failing_listener_ends_the_metrics_server_not_trading(
    engine: Engine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_accept(self: trio.SocketListener) -> trio.SocketStream:
        raise OSError(errno.EINVAL, "accept failed")

    monkeypatch.setattr(trio.SocketListener, "accept", broken_accept)
    async with metrics_beside_trading(engine):
        await trio.testing.wait_all_tasks_blocked()  # the server has met the error and ended
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None
