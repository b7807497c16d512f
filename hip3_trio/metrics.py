"""Prometheus metrics: read from the engine's own state at scrape time, served by a Trio task.

Nothing here counts anything: every value is derived from the state its owner already keeps (the post
table's inflight, the scheduler's queues, the book's positions, the engine's stats), at the moment of the
scrape. The HTTP endpoint is a small Trio server on 127.0.0.1, so a scrape reads the state between two
engine steps — a consistent snapshot with no threads and no locks. Off unless `--metrics-port` is given.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal
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

from hip3_trio.engine import Engine, EngineStatistics
from hip3_trio.recording.recorder import RecorderStatistics

__all__ = ["EngineCollector", "registry_for", "serve_metrics"]

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST: Final = 8192
#: One client's whole exchange (request, rendering, answer) must fit in this many seconds.
CLIENT_DEADLINE: Final = 5.0


class EngineCollector(Collector):
    """Turns one engine's state into metric families on every scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        snapshot = self.engine.statistics()
        s, k = snapshot.core, snapshot.link
        yield _gauge("hip3_connected", "1 while a session is connected", 1 if k.connected else 0)
        yield _counter("hip3_connects", "Connections established", k.connects)
        yield _counter("hip3_disconnects", "Connections lost or closed", k.disconnects)
        ready = GaugeMetricFamily("hip3_ready", "READY-TRADING flags (1 = satisfied)", labels=["flag"])
        for flag, value in s.readiness.items():
            ready.add_metric([flag], 1 if value else 0)
        yield ready
        yield _gauge("hip3_inflight_posts", "Posts on the wire awaiting a reply", k.inflight)
        queues = GaugeMetricFamily("hip3_queue_depth", "Queued items by queue", labels=["queue"])
        for queue, depth in s.queues.items():
            queues.add_metric([queue], depth)
        yield queues
        signals = CounterMetricFamily("hip3_signals", "Detector signals by outcome", labels=["outcome"])
        signals.add_metric(["acted"], s.signals_acted)
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
        yield HistogramMetricFamily(
            "hip3_post_latency_seconds",
            "Post sent → reply received",
            buckets=[(_le(bound), count) for bound, count in k.post_latency_buckets],
            sum_value=k.post_latency_sum,
        )
        position = GaugeMetricFamily("hip3_position", "Signed position size", labels=["market"])
        notional = GaugeMetricFamily("hip3_notional_usd", "Position notional at mark", labels=["market"])
        for market in sorted(snapshot.markets):
            size = s.positions.get(market, Decimal(0))
            position.add_metric([market], float(size))
            mark = s.marks.get(market)
            notional.add_metric([market], float(abs(size) * mark) if mark is not None else 0.0)
        yield position
        yield notional
        pnl = GaugeMetricFamily("hip3_pnl_usd", "PnL in USD", labels=["kind"])
        pnl.add_metric(["realized"], float(s.realized_pnl))
        pnl.add_metric(["unrealized"], float(s.unrealized_pnl))
        pnl.add_metric(["fees"], float(s.fees))
        yield pnl
        yield _gauge("hip3_hard_stop", "1 while the hard stop is latched", 1 if s.hard_stopped else 0)
        alerts = CounterMetricFamily(
            "hip3_alerts", "Alerts by outcome (dropped: queue full or lost at exit)", labels=["outcome"]
        )
        a = snapshot.alerts
        for outcome, count in (
            ("sent", a.sent),
            ("failed", a.failed),
            ("dropped", a.dropped),
            ("deduplicated", a.deduplicated),
        ):
            alerts.add_metric([outcome], count)
        yield alerts
        yield from _operator_families(snapshot)
        if snapshot.recording is not None:
            yield from _recording_families(snapshot.recording)


def _operator_families(snapshot: EngineStatistics) -> Iterator[Metric]:
    """What the alerting rules in docs/operations.md read: journal health, risk headroom, market data
    age and PnL per market, peak inflight, the request budget."""
    s, k = snapshot.core, snapshot.link
    yield _counter("hip3_journal_records_written", "Journal records committed", snapshot.journal_written)
    yield _counter(
        "hip3_journal_records_dropped",
        "Journal records dropped before the journal (its queue full or closed)",
        snapshot.journal_dropped,
    )
    yield _counter(
        "hip3_journal_records_failed", "Journal records lost to a write error", snapshot.journal_failed
    )
    r = s.risk
    yield _gauge(
        "hip3_risk_loss_budget_left_usd",
        "Loss the hard stop still allows: max_loss_usd + realised PnL since the last clear",
        float(r.loss_budget_left_usd),
    )
    yield _gauge("hip3_risk_loss_streak", "Losing trades in a row (since the last clear)", r.loss_streak)
    yield _gauge("hip3_risk_flatten_failures", "Flatten failures since the last clear", r.flatten_failures)
    yield _gauge("hip3_risk_rejects_last_hour", "Non-benign rejects in the last hour", r.rejects_last_hour)
    limits = GaugeMetricFamily(
        "hip3_risk_limit", "Hard-stop limits (each trips when its counter goes above it)", labels=["limit"]
    )
    limits.add_metric(["max_loss_usd"], float(r.max_loss_usd))
    limits.add_metric(["max_consecutive_losses"], r.max_consecutive_losses)
    limits.add_metric(["max_flatten_failures"], r.max_flatten_failures)
    limits.add_metric(["max_rejects_per_hour"], r.max_rejects_per_hour)
    yield limits
    age = GaugeMetricFamily(
        "hip3_market_data_age_seconds",
        "Seconds since the market's latest bbo (+Inf: none yet)",
        labels=["market"],
    )
    pnl = GaugeMetricFamily(
        "hip3_market_pnl_usd", "PnL per market in USD (realised net of fees)", labels=["market", "kind"]
    )
    for market in sorted(snapshot.markets):
        age.add_metric([market], snapshot.market_data_age_s.get(market, float("inf")))
        pnl.add_metric([market, "realized"], float(s.realized_pnl_by_market.get(market, Decimal(0))))
        pnl.add_metric([market, "unrealized"], float(s.unrealized_pnl_by_market.get(market, Decimal(0))))
    yield age
    yield pnl
    yield _gauge(
        "hip3_inflight_peak_posts",
        "Most posts in flight at once in the current exchange minute",
        k.inflight_peak,
    )
    yield _gauge("hip3_inflight_limit", "The scheduler's limit on posts in flight", k.inflight_limit)
    if s.requests_remaining is not None:  # unknown until the first userRateLimit read
        yield _gauge("hip3_requests_remaining", "The venue's action budget left", s.requests_remaining)
    yield _gauge(
        "hip3_request_reserve", "Requests kept for reduce-only orders and cancels", s.request_reserve
    )
    yield _counter("hip3_requests_sent", "Requests (actions' weights) signed and sent", s.requests_sent)
    yield _counter(
        "hip3_request_budget_exhaustions",
        "Actions the venue refused whole as over the budget",
        s.request_budget_exhaustions,
    )


def _recording_families(r: RecorderStatistics) -> Iterator[Metric]:
    """The recorder's (--record only): an operator alerts on drops, a failure or a stale last flush."""
    yield _counter("hip3_recording_frames", "Market-data frames written to the recording", r.frames)
    yield _counter(
        "hip3_recording_dropped", "Records the recorder could not queue (writer stalled, stopped)", r.dropped
    )
    yield _counter("hip3_recording_bytes", "Compressed bytes appended to the recording", r.bytes)
    yield _counter("hip3_recording_files", "Recording files started (one per run and UTC day)", r.files)
    if r.last_flush_us is not None:
        yield _gauge(
            "hip3_recording_last_flush_timestamp_seconds",
            "Wall-clock time of the recorder's last completed flush",
            r.last_flush_us / 1e6,
        )
    yield _gauge("hip3_recording_failed", "1 once the recorder has stopped on an error", 1 if r.failed else 0)


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


async def _handle(registry: CollectorRegistry, stream: trio.abc.Stream) -> None:
    """Serve one client: answer one HTTP request with the metrics (any path), then close.

    The server runs in the trading nursery, so nothing one client does may escape this task:
    - The whole exchange (read the request, render, write the answer) has one deadline,
      `CLIENT_DEADLINE`: a silent, trickling or non-reading client is dropped then, and a request
      still incomplete at the deadline gets no answer.
    - Transport failures (the client reset or vanished: `trio.BrokenResourceError`, `OSError`) end
      this client, logged on one line.
    - Anything else is a bug (in rendering, or in this code — e.g. `trio.ClosedResourceError`, a stream
      used after we closed it). A bug normally stops the engine, but metrics are auxiliary and stopping
      would exit with positions open: it is logged at ERROR with its traceback and ends this client
      only. It recurs on every scrape, so it stays loud.
    Cancellation (the server stopping) is not caught.
    """
    async with stream:
        try:
            with trio.move_on_after(CLIENT_DEADLINE) as deadline:
                await _answer(registry, stream)
            if deadline.cancelled_caught:
                log.info("metrics client dropped: no complete exchange within %.0f s", CLIENT_DEADLINE)
        except (trio.BrokenResourceError, OSError) as exc:
            log.info("metrics client gone: %s", exc)
        except Exception:
            log.exception("metrics: serving a scrape failed (a bug); that client is dropped, trading goes on")


async def _answer(registry: CollectorRegistry, stream: trio.abc.Stream) -> None:
    request = b""
    while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST:
        chunk = await stream.receive_some(1024)
        if not chunk:
            return  # the client went away before finishing its request
        request += chunk
    if not request.startswith(b"GET "):
        await stream.send_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        return
    body = generate_latest(registry)
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    await stream.send_all(head.encode() + body)


async def serve_metrics(
    engine: Engine,
    port: int,
    *,
    host: str = "127.0.0.1",
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the engine's metrics on http://host:port/ until cancelled; `started` with the bound port.

    Failing to listen is an error of the caller (it happens before `started`). Once serving, no error
    leaves this task: each client's trouble ends that client (see `_handle`), and should the listener
    itself fail, the error is logged with its traceback and the task returns — the engine trades on
    without metrics rather than stopping with positions open.
    """
    registry = registry_for(engine)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log.info("metrics on http://%s:%d/metrics", host, bound)
    task_status.started(bound)  # already listening: a connection made now waits in the backlog
    try:
        await trio.serve_listeners(partial(_handle, registry), listeners)
    except Exception:
        log.exception("metrics server failed and is off; the engine trades on without it")
