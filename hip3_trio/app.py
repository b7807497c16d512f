"""The engine's task tree and its orderly stop.

    engine (root nursery)
    ├── journal        record channel → SQLite (outlives everything else: it flushes last); a record
    │                  lost to a write error latches the hard stop (`Engine.trip_hard_stop`)
    └── trading nursery
        ├── connection     reconnect loop → one Session per connection (reader, heartbeat, sender,
        │                  post timer, sync) with the `Engine` as its host
        ├── time stop      every second: time stop, hard-stop latch, book housekeeping
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
the nonce mark, close the journal channel (the journal task writes what is queued and returns) and
print the summary.
"""

from __future__ import annotations

import logging
import math
import random
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
import trio_websocket

from hip3_trio.config import Config
from hip3_trio.engine import Engine, EngineSettings, EngineStatistics
from hip3_trio.execution.batch import SchedulerConfig
from hip3_trio.execution.executor import ExecutorConfig
from hip3_trio.journal import Journal, JournalStats, Record, WriteRunner, run_journal, write_in_thread
from hip3_trio.position import time_stop
from hip3_trio.risk.monitor import RiskConfig
from hip3_trio.strategy.detector import DetectorConfig
from hip3_trio.venue.session import Backoff, Connect, Session, SessionConfig, WsLike, run_connection

__all__ = [
    "engine_settings",
    "run_engine",
    "session_settings",
    "websocket_connector",
]

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 16 * 1024 * 1024


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def engine_settings(
    config: Config, *, user: str, dry_run: bool, is_mainnet: bool, cloid_prefix: int
) -> EngineSettings:
    """Map the config file's sections onto the engine's parts (renames, seconds → milliseconds)."""
    d, lim, ts, risk, batch = config.detector, config.limits, config.time_stop, config.risk, config.batch
    return EngineSettings(
        markets=tuple(mc.coin for mc in config.markets),
        user=user,
        vault_address=config.vault_address,
        is_mainnet=is_mainnet,
        dry_run=dry_run,
        detector=DetectorConfig(
            taker_fee_bps=d.taker_fee_bps,
            slippage_bps=d.slippage_bps,
            min_edge_bps=d.min_edge_bps,
            min_edge_bps_by_market={
                mc.coin: mc.min_edge_bps for mc in config.markets if mc.min_edge_bps is not None
            },
            alpha=d.alpha,
            max_notional_usd=d.max_notional_usd,
            liquidity_floor_usd=d.liquidity_floor_usd,
            liquidity_full_usd=d.liquidity_full_usd,
            max_oracle_age_ms=_ms(d.stale_oracle_s),
            max_book_age_ms=_ms(d.stale_book_s),
            cooldown_ms=_ms(d.cooldown_s),
            min_notional_usd=d.min_notional_usd,
        ),
        executor=ExecutorConfig(
            max_position_per_market_usd=lim.max_position_per_market_usd,
            max_position_total_usd=lim.max_position_total_usd,
            order_rate_per_s=lim.order_rate_per_s,
            order_burst=lim.order_burst,
            min_notional_usd=d.min_notional_usd,
            cloid_prefix=cloid_prefix,
        ),
        scheduler=SchedulerConfig(
            cancel_capacity=batch.cancel_capacity,
            reduce_only_capacity=batch.reduce_only_capacity,
            new_order_capacity=batch.new_order_capacity,
            max_batch=batch.max_batch,
            inflight_limit=batch.inflight_limit,
            inflight_watermark=batch.inflight_watermark,
        ),
        time_stop=time_stop.TimeStopConfig(
            hold_s=ts.hold_s,
            flatten_slippage_bps=ts.flatten_slippage_bps,
            flatten_max_slippage_bps=ts.flatten_max_slippage_bps,
            flatten_fail_after_s=ts.flatten_fail_after_s,
        ),
        risk=RiskConfig(
            max_cumulative_loss_usd=risk.max_loss_usd,
            max_consecutive_losses=risk.max_consecutive_losses,
            max_flatten_failures=risk.max_flatten_failures,
            max_rejects_per_window=risk.max_rejects_per_hour,
            max_slippage_bps=risk.slippage_bps_limit,
            slippage_streak=risk.slippage_strikes,
        ),
        flatten_on_exit=ts.flatten_on_exit,
        exit_deadline_s=ts.exit_deadline_s,
        sync_timeout_s=config.connection.info_timeout_s * 1.5,
        reconcile_every_s=config.connection.reconcile_every_s,
        clock_recheck_s=config.connection.clock_recheck_s,
    )


def session_settings(config: Config) -> tuple[SessionConfig, Backoff]:
    """The session's timing and the reconnect backoff from the config's batch and connection sections."""
    conn, batch = config.connection, config.batch
    session = SessionConfig(
        ping_after_idle=conn.ping_after_idle_s,
        pong_timeout=conn.pong_timeout_s,
        md_stall=conn.md_stall_s,
        post_timeout=batch.post_timeout_s,
        info_timeout=conn.info_timeout_s,
        batch_interval=batch.interval_ms / 1000,
        inflight_limit=batch.inflight_limit,
    )
    backoff = Backoff(base=conn.backoff_initial_s, cap=conn.backoff_max_s, healthy_after=conn.healthy_after_s)
    return session, backoff


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


async def _status_loop(engine: Engine, every: float, out: Callable[[str], None], started: float) -> None:
    while True:
        await trio.sleep(every)
        out(engine.status_line(trio.current_time() - started))


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
    session_config: SessionConfig | None = None,
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
    handle_signals: bool = False,
    stop: trio.Event | None = None,
    metrics_port: int | None = None,
    session_class: type[Session] = Session,
    journal_write: WriteRunner = write_in_thread,
    out: Callable[[str], None] = print,
) -> EngineStatistics:
    """Run the engine until `duration` elapses, `stop` is set or a signal arrives; then stop in order.

    Returns the engine's stats after the journal has been flushed.
    """
    started = trio.current_time()
    stop = stop if stop is not None else trio.Event()
    reasons: list[str] = []

    def request_stop(reason: str) -> None:
        if reasons:
            log.warning("%s: already stopping (%s)", reason, reasons[0])
            return
        reasons.append(reason)
        stop.set()

    journal_stats = JournalStats()
    async with trio.open_nursery() as root:
        root.start_soon(
            lambda: run_journal(
                journal_receive,
                journal,
                stats=journal_stats,
                run_write=journal_write,
                on_failure=engine.trip_hard_stop,  # cannot record trades: must not trade
            )
        )
        try:
            async with trio.open_nursery() as trading:
                trading.start_soon(
                    lambda: run_connection(
                        connect,
                        lambda ws: session_class(ws, engine.link, session_config, trace=engine.link.trace),
                        backoff=backoff,
                        rng=rng,
                        urgent=engine.core.holds_positions,
                    )
                )
                trading.start_soon(_time_stop_loop, engine)
                trading.start_soon(_status_loop, engine, status_every, out, started)
                if handle_signals:
                    trading.start_soon(_watch_signals, request_stop)
                if metrics_port is not None:
                    from hip3_trio.metrics import serve_metrics

                    await trading.start(serve_metrics, engine, metrics_port)
                with trio.move_on_after(duration if duration is not None else math.inf):
                    await stop.wait()
                engine.begin_shutdown(
                    reasons[0] if reasons else ("stop requested" if stop.is_set() else "duration reached")
                )
                with trio.move_on_after(engine.settings.exit_deadline_s) as waited:
                    await engine.wait_settled()
                if waited.cancelled_caught:
                    log.error(
                        "exit deadline (%.0f s) passed before everything settled: %s",
                        engine.settings.exit_deadline_s,
                        engine.status_line(trio.current_time() - started),
                    )
                trading.cancel_scope.cancel()
        finally:
            engine.save_state()
            engine.core.journal.close()
    out(engine.summary())
    out(
        f"  journal written {journal_stats.written}, failed {journal_stats.failed}, "
        f"lost on exit {journal_stats.lost_on_exit}, duplicate tids {journal_stats.tid_conflicts}"
    )
    return engine.statistics()
