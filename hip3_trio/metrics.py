"""Prometheus metrics: read from the engine's own state at scrape time, served by a Trio task.

Nothing here counts anything: every value is derived from the state its owner already keeps (the post
table's inflight, the scheduler's queues, the book's positions, the engine's stats), at the moment of the
scrape. The HTTP endpoint is a small Trio server on 127.0.0.1, so a scrape reads the state between two
engine steps — a consistent snapshot with no threads and no locks. Off unless `--metrics-port` is given.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial
from typing import Final

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hip3_trio.engine import Engine

__all__ = ["EngineCollector", "registry_for", "serve_metrics"]

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST: Final = 8192


class EngineCollector(Collector):
    """Turns one engine's state into metric families on every scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        e, s = self.engine, self.engine.stats
        yield _gauge("hip3_connected", "1 while a session is connected", 1 if e.session is not None else 0)
        yield _counter("hip3_connects", "Connections established", s.connects)
        yield _counter("hip3_disconnects", "Connections lost or closed", s.disconnects)
        ready = GaugeMetricFamily("hip3_ready", "READY-TRADING flags (1 = satisfied)", labels=["flag"])
        r = e.readiness
        for flag, value in (
            ("market_data", r.md_ready),
            ("order_stream", r.orders_acked),
            ("fills_snapshot", r.fills_snapshot),
            ("reconciled", r.reconciled),
            ("clock", not e.clock_blocked),
            ("trading", e.ready),
        ):
            ready.add_metric([flag], 1 if value else 0)
        yield ready
        yield _gauge("hip3_inflight_posts", "Posts on the wire awaiting a reply", e.inflight)
        queues = GaugeMetricFamily("hip3_queue_depth", "Queued items by queue", labels=["queue"])
        queues.add_metric(["cancel"], len(e.scheduler.cancels))
        queues.add_metric(["reduce_only"], len(e.scheduler.reduce_only))
        queues.add_metric(["new_order"], len(e.scheduler.new_orders))
        yield queues
        signals = CounterMetricFamily("hip3_signals", "Detector signals by outcome", labels=["outcome"])
        signals.add_metric(["acted"], s.signals - sum(s.signals_refused.values()))
        for reason, count in sorted(s.signals_refused.items()):
            signals.add_metric([reason], count)
        yield signals
        yield _counter("hip3_orders", "Orders submitted (entries and flattens)", s.orders)
        yield _counter("hip3_fills", "Fills applied to positions", s.fills)
        rejects = CounterMetricFamily("hip3_rejects", "Orders rejected by the venue", labels=["reason"])
        for reason, count in sorted(s.rejects_by_reason.items()):
            rejects.add_metric([reason], count)
        yield rejects
        yield _counter("hip3_trades", "Round trips closed", s.trades)
        latency = s.post_latency
        yield HistogramMetricFamily(
            "hip3_post_latency_seconds",
            "Post sent → reply received",
            buckets=[(_le(bound), count) for bound, count in latency.cumulative()],
            sum_value=latency.total,
        )
        position = GaugeMetricFamily("hip3_position", "Signed position size", labels=["market"])
        notional = GaugeMetricFamily("hip3_notional_usd", "Position notional at mark", labels=["market"])
        for market in sorted(e.book.markets):
            size = e.book.size(market)
            position.add_metric([market], float(size))
            mark = e.marks.get(market)
            notional.add_metric([market], float(abs(size) * mark) if mark is not None else 0.0)
        yield position
        yield notional
        pnl = GaugeMetricFamily("hip3_pnl_usd", "PnL in USD", labels=["kind"])
        pnl.add_metric(["realized"], float(s.realized_pnl))
        pnl.add_metric(["unrealized"], float(e.unrealized_pnl()))
        pnl.add_metric(["fees"], float(s.fees))
        yield pnl
        yield _gauge(
            "hip3_hard_stop", "1 while the hard stop is latched", 1 if e.hard_stop_latch.latched else 0
        )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def registry_for(engine: Engine) -> CollectorRegistry:
    """A registry holding only this engine's collector (no process/platform collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine))
    return registry


async def _handle(registry: CollectorRegistry, stream: trio.SocketStream) -> None:
    """Answer one HTTP request with the metrics (any path), then close."""
    async with stream:
        request = b""
        with trio.move_on_after(5):
            while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST:
                chunk = await stream.receive_some(1024)
                if not chunk:
                    return
                request += chunk
        if not request.startswith(b"GET "):
            await stream.send_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        body = generate_latest(registry)
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            await stream.send_all(head.encode() + body)
        except trio.BrokenResourceError:
            return


async def serve_metrics(
    engine: Engine,
    port: int,
    *,
    host: str = "127.0.0.1",
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the engine's metrics on http://host:port/ until cancelled; `started` with the bound port."""
    registry = registry_for(engine)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log.info("metrics on http://%s:%d/metrics", host, bound)
    task_status.started(bound)  # already listening: a connection made now waits in the backlog
    await trio.serve_listeners(partial(_handle, registry), listeners)
