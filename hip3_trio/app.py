"""The engine's task tree and its orderly stop.

    engine (root nursery)
    ├── journal        record channel → SQLite (outlives everything else: it flushes last); a record
    │                  lost to a write error latches the hard stop (`Engine.trip_hard_stop`)
    ├── alerts         alert channel → webhook POSTs (`webhook.AlertSender`; only with a webhook):
    │                  outlives trading, so the stop alert goes out; nothing in it can end trading
    ├── recorder       frame channel → the recording's day files (`recording.Recorder`; --record only):
    │                  the sessions' tap never waits for it, and its failure ends only itself
    └── trading nursery
        ├── connection     reconnect loop → one Session per connection (reader, heartbeat, sender,
        │                  post timer, sync) with the `Engine` as its host
        ├── time stop      every second: time stop, hard-stop latch, book housekeeping
        ├── hard-stop file every 0.5 s: a latch another process wrote (`hardstop trip`) stops trading
        ├── status         one line every few seconds
        ├── metrics        Prometheus scrape endpoint on 127.0.0.1 (--metrics-port only)
        └── signals        SIGTERM / SIGINT → the orderly stop (CLI runs only)

Market data → detector → executor and user events → position book run inside the session's reader
step rather than in tasks of their own (see docs/architecture.md, "Departures"): they are synchronous
and take microseconds, and a channel between them would be a buffer that must either block the reader
or drop events that may not be lost.

The orderly stop (duration reached, SIGTERM, SIGINT): no new orders; flatten every position if
configured; wait — with the connection still up — until replies are in and positions are flat, at most
the exit deadline; then cancel the trading nursery (the session's one recovery path runs), persist
the nonce mark, queue the stop alert and close the alert channel (the alert task sends what is
queued within its timeout), close the journal channel (the journal task writes what is queued and
returns) and print the summary. An engine start and stop are alerts; a stop by an error says so.
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import random
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio
import trio_websocket

from hip3_trio.alerts import AlertKind
from hip3_trio.config import Config
from hip3_trio.engine import Engine, EngineSettings, EngineStatistics
from hip3_trio.errors import EnvironmentProblem
from hip3_trio.journal import Journal, Record, WriteRunner, run_journal, write_in_thread
from hip3_trio.recording.recorder import Recorder
from hip3_trio.venue.session import Connect, Session, WsLike, run_connection
from hip3_trio.webhook import AlertSender

__all__ = [
    "engine_settings",
    "run_engine",
    "websocket_connector",
]

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: How often the engine looks at its hard-stop file for a latch written by another process (an operator's
#: ``hardstop trip``): it acts on one within this, plus one step.
HARD_STOP_POLL_S = 0.5


def engine_settings(
    config: Config, *, user: str, dry_run: bool, is_mainnet: bool, cloid_prefix: int
) -> EngineSettings:
    """The engine's settings for this run: the config file's sections as they are, plus what only the
    run knows (user, network, dry run, this process's cloid prefix) and what is derived from other
    keys (the per-market minimum edges of ``[[markets]]``, the detector's minimum order value for the
    executor)."""
    return EngineSettings(
        markets=config.coins,
        user=user,
        vault_address=config.vault_address,
        is_mainnet=is_mainnet,
        dry_run=dry_run,
        detector=attrs.evolve(config.detector, min_edge_bps_by_market=config.min_edge_bps_by_market),
        executor=attrs.evolve(
            config.limits, min_notional_usd=config.detector.min_notional_usd, cloid_prefix=cloid_prefix
        ),
        scheduler=config.batch,
        time_stop=config.time_stop,
        risk=config.risk,
        connection=config.connection,
    )


def websocket_connector(url: str) -> Connect:
    """A connect function for the supervisor: one trio-websocket connection to `url` per call.

    trio-websocket opens its TCP stream through `trio.open_tcp_stream`, which sets TCP_NODELAY on
    every socket it creates, so small post frames are not held back by Nagle's algorithm.
    """

    @asynccontextmanager
    async def connect() -> AsyncIterator[WsLike]:
        async with trio_websocket.open_websocket_url(url, max_message_size=MAX_MESSAGE_SIZE) as ws:
            yield ws

    return connect


async def _time_stop_loop(engine: Engine) -> None:
    core = engine.core
    interval = core.time_stop.config.check_interval_s
    while True:
        core.tick(trio.current_time())
        await trio.sleep(interval)


async def _hard_stop_file_loop(engine: Engine) -> None:
    """Off the order path, in its own task: the latch file's ``stat`` never delays a step that trades."""
    while True:
        await trio.sleep(HARD_STOP_POLL_S)
        engine.poll_hard_stop()


async def _status_loop(engine: Engine, every: float, out: Callable[[str], None], started: float) -> None:
    while True:
        await trio.sleep(every)
        out(engine.status_line(trio.current_time() - started))


async def _start_metrics(nursery: trio.Nursery, engine: Engine, port: int) -> None:
    """Serve the metrics in `nursery`; a port that cannot be listened on is an `EnvironmentProblem`."""
    from hip3_trio.metrics import serve_metrics

    try:
        await nursery.start(serve_metrics, engine, port)
    except OSError as exc:
        why = (
            "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror or exc})"
        )
        raise EnvironmentProblem(
            f"--metrics-port {port}: 127.0.0.1:{port} {why}; stop what listens there "
            f"(ss -ltnp 'sport = :{port}') or choose another port"
        ) from exc


async def _watch_signals(request_stop: Callable[[str], None]) -> None:
    """SIGTERM / SIGINT → the orderly stop. SIGHUP is received and ignored (logged): under a supervisor
    it means "reload", which this engine has nothing to do for, and it must never kill it unflushed."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as received:
        async for signum in received:
            if signum == signal.SIGHUP:
                log.warning("SIGHUP ignored (nothing to reload; SIGTERM stops the engine in order)")
                continue
            request_stop(signal.Signals(signum).name)


async def run_engine(
    engine: Engine,
    connect: Connect,
    *,
    journal: Journal,
    journal_receive: trio.MemoryReceiveChannel[Record],
    duration: float | None = None,
    status_every: float = 5.0,
    rng: random.Random | None = None,
    handle_signals: bool = False,
    stop: trio.Event | None = None,
    metrics_port: int | None = None,
    session_class: type[Session] = Session,
    journal_write: WriteRunner = write_in_thread,
    out: Callable[[str], None] = print,
    alerts: AlertSender | None = None,
    recorder: Recorder | None = None,
) -> EngineStatistics:
    """Run the engine until `duration` elapses, `stop` is set or a signal arrives; then stop in order.

    Each connection's session, and the reconnect backoff, are configured by the engine's settings
    (`connection`, and `scheduler` for the sender). `alerts` is the task that sends what the engine's
    `AlertSink` (`engine.core.alerts`) queues (`webhook.open_alerts` makes both). With `recorder`, every
    session records its market data and sync answers there (`Engine.record_to`); its writer runs in the
    root nursery and a failure of it is an alert, never a stop. Returns the engine's stats after the
    journal has been flushed.
    """
    settings = engine.settings
    started = trio.current_time()
    stop = stop if stop is not None else trio.Event()
    reasons: list[str] = []

    def stop_reason() -> str:
        return reasons[0] if reasons else ("stop requested" if stop.is_set() else "duration reached")

    def request_stop(reason: str) -> None:
        if reasons:
            log.warning("%s: already stopping (%s)", reason, reasons[0])
            return
        reasons.append(reason)
        stop.set()

    journal_stats = engine.journal_stats
    failure: list[BaseException] = []
    async with trio.open_nursery() as root:
        root.start_soon(
            lambda: run_journal(
                journal_receive,
                journal,
                stats=journal_stats,
                run_write=journal_write,
                # Cannot record trades: must not trade.
                on_failure=functools.partial(engine.trip_hard_stop, alert=AlertKind.JOURNAL_FAILURE),
            )
        )
        if alerts is not None:
            root.start_soon(alerts.run)
        if recorder is not None:
            engine.record_to(recorder)
            recorder.on_failure = functools.partial(_alert_recorder_failure, engine)
            root.start_soon(recorder.run)
        _alert_start(engine)
        try:
            async with trio.open_nursery() as trading:
                if metrics_port is not None:  # first: a port in use refuses the start before any connection
                    await _start_metrics(trading, engine, metrics_port)
                trading.start_soon(
                    lambda: run_connection(
                        connect,
                        lambda ws: session_class(
                            ws,
                            engine.link,
                            settings.connection,
                            settings.scheduler,
                            trace=engine.link.trace,
                            tap=engine.link.tap,
                        ),
                        connection=settings.connection,
                        rng=rng,
                        urgent=engine.core.holds_positions,
                    )
                )
                trading.start_soon(_time_stop_loop, engine)
                trading.start_soon(_hard_stop_file_loop, engine)
                trading.start_soon(_status_loop, engine, status_every, out, started)
                if handle_signals:
                    trading.start_soon(_watch_signals, request_stop)
                with trio.move_on_after(duration if duration is not None else math.inf):
                    await stop.wait()
                engine.begin_shutdown(stop_reason())
                with trio.move_on_after(settings.time_stop.exit_deadline_s) as waited:
                    await engine.wait_settled()
                if waited.cancelled_caught:
                    log.error(
                        "exit deadline (%.0f s) passed before everything settled: %s",
                        settings.time_stop.exit_deadline_s,
                        engine.status_line(trio.current_time() - started),
                    )
                trading.cancel_scope.cancel()
        except BaseException as exc:
            failure.append(exc)
            raise
        finally:
            engine.save_state()
            _alert_stop(engine, stop_reason(), failure[0] if failure else None)
            engine.core.alerts.close()
            if alerts is not None:
                alerts.finish()
            if recorder is not None:
                recorder.close()
            engine.core.journal.close()
    out(engine.summary())
    out(
        f"  journal written {journal_stats.written}, failed {journal_stats.failed}, "
        f"lost on exit {journal_stats.lost_on_exit}, duplicate tids {journal_stats.tid_conflicts}"
    )
    if alerts is not None:
        a = alerts.stats
        out(f"  alerts sent {a.sent}, failed {a.failed}, dropped {a.dropped}, deduplicated {a.deduplicated}")
    return engine.statistics()


def _alert_recorder_failure(engine: Engine, reason: str) -> None:
    engine.core.alerts.alert(AlertKind.RECORDER_FAILURE, None, f"recording stopped: {reason}")


def _alert_start(engine: Engine) -> None:
    settings, latch = engine.settings, engine.core.hard_stop_latch
    text = f"markets {', '.join(settings.markets)}, account {settings.user}"
    if settings.dry_run:
        text += ", DRY RUN"
    if latch.latched:
        text += f"; HARD STOP LATCHED ({latch.record.reason if latch.record else 'unreadable latch'})"
    engine.core.alerts.alert(AlertKind.ENGINE_START, None, text)


def _alert_stop(engine: Engine, reason: str, failure: BaseException | None) -> None:
    """The stop alert: why, and what it leaves behind. Never raises (it runs while stopping)."""
    try:
        _queue_stop_alert(engine, reason, failure)
    except Exception:
        log.exception("could not queue the stop alert")


def _queue_stop_alert(engine: Engine, reason: str, failure: BaseException | None) -> None:
    s = engine.statistics().core
    while isinstance(failure, BaseExceptionGroup) and failure.exceptions:
        failure = failure.exceptions[0]  # the first leaf names the cause
    why = f"error: {type(failure).__name__}: {failure}" if failure is not None else reason
    positions = ", ".join(f"{m} {size:+}" for m, size in sorted(s.positions.items())) or "none"
    latch = "LATCHED" if s.hard_stopped else "clear"
    text = (
        f"{why}; trades {s.trades}, realized PnL {s.realized_pnl:.2f}, open positions {positions}, "
        f"hard stop {latch}"
    )
    engine.core.alerts.alert(AlertKind.ENGINE_STOP, None, text, error=failure is not None)
