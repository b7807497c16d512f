"""The trading core: every decision the engine makes, as synchronous steps with no `await`.

`TradingCore` owns the trading state — the position book, the batch scheduler, the executor and its
gates, the time stop, the risk monitor and the persisted hard-stop latch, readiness, the detector, the
latest marks and the market specs — and has one method per input:

| input | method |
|---|---|
| `bbo` / `activeAssetCtx` | `on_bbo` / `on_asset_ctx` (readiness, marks, the detector → the gates) |
| `orderUpdates` / `userFills` | `on_order_updates` / `on_user_fills` (→ the book) |
| subscription ack, `error` channel | `on_subscription_ack`, `on_channel_error` |
| a batch marked sent / resolved | `on_batch_sent` / `on_post_outcome` (→ the executor) |
| a noop's answer | `on_noop_accepted` (the timed-out orders can never execute) |
| connect / disconnect | `on_connect` / `on_disconnect` |
| the venue's account state | `apply_reconcile` |
| the clock (every second) | `tick` (the time stop, the latch, book housekeeping) |
| the orderly stop, an outside failure | `begin_shutdown`, `trip_hard_stop` |

Each step ends in `_drain` (`on_batch_sent` leaves it to `on_batch_written`, after the post's frame
has gone to the socket): the shared `Outbox` is emptied — risk events to the `RiskMonitor` (a crossed
limit latches the hard stop and stops the executor in the same step), every output to the journal
through `journal_mapping`, a flatten-all request to the `TimeStop` — and the `CoreListener` (the venue
link) is told whether a reconcile is wanted, so it can wake its reconcile loop, the sender and waiters.
The outputs a person must hear about (a hard stop, a flatten failure, a refused reduce-only order, a
corrected position, an escalated unknown order) also go to `alerts` (`hip3_trio.alerts.AlertSink`:
queued without blocking, sent by a task of its own).
Because no step awaits, each is atomic under Trio, and a test can drive the core directly, end to end.

Why one module of ~550 lines: it is the engine's single decision point — one method per input and
the outbox routing they all end in; splitting it would spread one atomic step over several files.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Final, Protocol

import attrs

from hip3_trio import journal_mapping as jm
from hip3_trio.alerts import AlertKind, AlertSink
from hip3_trio.errors import StartupError
from hip3_trio.execution.batch import Batch, BatchConfig, BatchScheduler
from hip3_trio.execution.executor import Executor, ExecutorConfig, SubmitResult
from hip3_trio.execution.posts import PostEntry
from hip3_trio.execution.time_stop import TimeStop, TimeStopConfig
from hip3_trio.fees import UserFees, check_collateral, market_fee_bps
from hip3_trio.journal import JournalSink, Record
from hip3_trio.position.book import BookConfig, DexState, PositionBook, Reconciled, ReconcileDeferred
from hip3_trio.position.orders import refused_as_increase
from hip3_trio.position.readiness import Readiness
from hip3_trio.position.records import (
    ClosedTrade,
    FlattenAllRequested,
    FlattenFailed,
    OrderRejected,
    OrderSubmitted,
    OrderTransition,
    Outbox,
    Output,
    PositionCorrected,
    ReconcileRequested,
    RequestBudgetExhausted,
    SlippageMeasured,
    UnknownOrderEscalated,
)
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.risk.history import risk_event_record
from hip3_trio.risk.monitor import RiskConfig, RiskHeadroom, RiskMonitor
from hip3_trio.strategy.detector import BookTop, Detector, DetectorConfig, OracleCtx, Signal, Skip
from hip3_trio.wire import messages as m
from hip3_trio.wire.actions import Cloid
from hip3_trio.wire.markets import MarketSpec

__all__ = ["CoreListener", "CoreSettings", "CoreStatistics", "TradingCore", "book_top", "reject_reason"]

log = logging.getLogger(__name__)

ZERO: Final = Decimal(0)


@attrs.frozen(kw_only=True)
class CoreSettings:
    """What the trading core needs besides its collaborators: the markets, the run mode and the
    configuration of each part it owns."""

    markets: tuple[str, ...]
    dry_run: bool = False
    detector: DetectorConfig = attrs.Factory(DetectorConfig)
    executor: ExecutorConfig = attrs.Factory(ExecutorConfig)
    scheduler: BatchConfig = attrs.Factory(BatchConfig)
    time_stop: TimeStopConfig = attrs.Factory(TimeStopConfig)
    risk: RiskConfig = attrs.Factory(RiskConfig)
    book: BookConfig = attrs.Factory(BookConfig)


class CoreListener(Protocol):
    """Who hears about the core's steps (the venue link). Called once at the end of every step."""

    def after_step(self, *, reconcile_wanted: bool) -> None:
        """The step is done: wake the reconcile loop if asked, the sender if there is work, waiters."""


@attrs.frozen(kw_only=True)
class CoreStatistics:
    """A snapshot of the core's counters and state, for the status line, metrics, the soak and tests."""

    signals: int
    signals_acted: int
    signals_refused: Mapping[str, int]
    skips: Mapping[str, int]
    orders: int
    fills: int
    rejects: int
    rejects_by_reason: Mapping[str, int]
    trades: int
    realized_pnl: Decimal
    fees: Decimal
    unrealized_pnl: Decimal
    positions: Mapping[str, Decimal]
    marks: Mapping[str, Decimal]
    ready: bool
    readiness: Mapping[str, bool]
    hard_stopped: bool
    queued: int
    queues: Mapping[str, int]
    live_orders: int
    unknown_orders: int
    # Per market: realised PnL net of fees (this process), unrealised at the latest mark, and when
    # (`trio.current_time()`) its latest bbo arrived (markets without one yet are absent).
    realized_pnl_by_market: Mapping[str, Decimal]
    unrealized_pnl_by_market: Mapping[str, Decimal]
    market_data_at: Mapping[str, float]
    # The hard-stop limits' counters (since the last clear, earlier runs included) and the limits.
    risk: RiskHeadroom
    # The venue's action budget (`execution.request_budget`): requests left (None until read), counted
    # requests sent, and how many actions the venue refused whole as exhausted.
    requests_remaining: int | None = None
    requests_sent: int = 0
    request_budget_exhaustions: int = 0
    request_reserve: int = 0  # below this many requests left, new entries are refused


@attrs.define
class _Counters:
    """The core's own counters (only the core writes them). `statistics()` snapshots them by name, so
    each field is a `CoreStatistics` field of the same name."""

    signals: int = 0
    signals_acted: int = 0
    signals_refused: Counter[str] = attrs.Factory(Counter)
    skips: Counter[str] = attrs.Factory(Counter)
    orders: int = 0
    fills: int = 0
    rejects: int = 0
    rejects_by_reason: Counter[str] = attrs.Factory(Counter)
    trades: int = 0
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    realized_pnl_by_market: dict[str, Decimal] = attrs.Factory(dict)


class _NoListener:
    def after_step(self, *, reconcile_wanted: bool) -> None:
        return None


class TradingCore:
    """The engine's decisions (see the module docstring). Every public method is one synchronous step."""

    def __init__(
        self,
        settings: CoreSettings,
        *,
        hard_stop: HardStop,
        journal: JournalSink,
        exchange_ms: Callable[[], int],
        inflight: Callable[[], int],
        now: float,
        listener: CoreListener | None = None,
        alerts: AlertSink | None = None,
    ) -> None:
        self.settings = settings
        self.hard_stop_latch = hard_stop
        self.journal = journal
        self.alerts = alerts if alerts is not None else AlertSink.off()
        self.exchange_ms = exchange_ms
        self.listener: CoreListener = listener if listener is not None else _NoListener()
        self.outbox = Outbox()
        self.specs: dict[str, MarketSpec] = {}
        self.marks: dict[str, Decimal] = {}
        self.market_data_at: dict[str, float] = {}  # the latest bbo's arrival per market (statistics)
        self.book = PositionBook(settings.markets, self.outbox, settings.book)
        self.scheduler = BatchScheduler(settings.scheduler)
        self.readiness = Readiness(settings.markets)
        self.executor = Executor(
            book=self.book,
            scheduler=self.scheduler,
            markets=self.specs,
            readiness=self,
            latch=hard_stop,
            marks=self.marks,
            config=settings.executor,
            inflight=inflight,
            now=now,
        )
        self.time_stop = TimeStop(
            book=self.book,
            executor=self.executor,
            marks=self.marks,
            touch=self._touch,
            config=settings.time_stop,
        )
        self.monitor = RiskMonitor(settings.risk, hard_stop)
        self.detector: Detector | None = None
        self.user_fees: UserFees | None = None  # the venue's `userFees`, at the latest sync
        self.fees_bps: dict[str, Decimal | None] = {}  # one leg's taker fee per market, from the venue
        self.connected = False
        self.clock_blocked = False
        self.stopping = False
        self.on_order_queued: Callable[[Cloid], None] | None = None  # latency tracing (benchmarks)
        self._counters = _Counters()
        self._reconcile_wanted = False
        # The signal path does the least before its post leaves: in the step that queued a signal's
        # order (`_hot`), its journal records and log line wait here until the post is written.
        self._hot = False
        self._after_send: list[Callable[[], None]] = []
        self._budget_low_alerted = False

    # --- views -------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """READY-TRADING: connected, readiness complete, and the clock within the drift limit."""
        return self.connected and self.readiness.ready and not self.clock_blocked

    @property
    def can_reduce(self) -> bool:
        """Cancels and reduce-only orders may go out: connected, positions reconciled on this connection
        and the clock within the drift limit — without waiting for every market's data, so a position
        is never left unflattened because an unrelated market is quiet (new orders need `ready`)."""
        return self.connected and self.readiness.positions_known and not self.clock_blocked

    @property
    def generation(self) -> int:
        """The current connection generation (readiness marks of older ones are ignored)."""
        return self.readiness.generation

    def unrealized_pnl(self) -> Decimal:
        """Open positions marked to the latest mark price (markets without a mark count zero)."""
        return sum(self.unrealized_pnl_by_market().values(), ZERO)

    def unrealized_pnl_by_market(self) -> dict[str, Decimal]:
        """Each open position marked to its market's latest mark (positions without a mark left out)."""
        out = {}
        for market, pos in self.book.positions.items():
            mark = self.marks.get(market)
            if mark is not None and pos.size != 0:
                out[market] = (mark - pos.avg_entry_px) * pos.size
        return out

    def holds_positions(self) -> bool:
        """A position is open (or announced by a reply): reconnecting is urgent, backoff or not."""
        return any(self.book.has_position(market) for market in self.book.markets)

    def settled(self, inflight: int) -> bool:
        """Nothing in flight, queued or live — and, when flattening on exit, no open position, not even
        one a reply announced whose fills are still on their way (the time stop flattens it once they
        arrive; counting only applied fills would stop with the venue holding it)."""
        if inflight or len(self.scheduler) or self.book.live_orders():
            return False
        return not self.holds_positions() or not self.settings.time_stop.flatten_on_exit

    def statistics(self) -> CoreStatistics:
        c = self._counters
        unrealized = self.unrealized_pnl_by_market()
        return CoreStatistics(
            **attrs.asdict(c),  # every counter under its own name, the Counters copied as plain dicts
            unrealized_pnl=sum(unrealized.values(), ZERO),
            positions={mkt: pos.size for mkt, pos in self.book.positions.items() if pos.size != 0},
            marks=dict(self.marks),
            ready=self.ready,
            readiness={
                "market_data": self.readiness.md_ready,
                "order_stream": self.readiness.orders_acked,
                "fills_snapshot": self.readiness.fills_snapshot,
                "reconciled": self.readiness.reconciled,
                "clock": not self.clock_blocked,
                "trading": self.ready,
            },
            hard_stopped=self.hard_stop_latch.latched,
            queued=len(self.scheduler),
            queues={
                "cancel": len(self.scheduler.cancels),
                "reduce_only": len(self.scheduler.reduce_only),
                "new_order": len(self.scheduler.new_orders),
            },
            live_orders=len(self.book.live_orders()),
            unknown_orders=len(self.book.unknown_orders()),
            unrealized_pnl_by_market=unrealized,
            market_data_at=dict(self.market_data_at),
            risk=self.monitor.headroom(self.exchange_ms()),
            requests_remaining=self.executor.requests.remaining,
            requests_sent=self.executor.requests.sent,
            request_budget_exhaustions=self.executor.requests.exhaustions,
            request_reserve=self.settings.executor.request_reserve,
        )

    # --- market data -------------------------------------------------------------------------------

    def on_markets(self, specs: Mapping[str, MarketSpec]) -> None:
        """The venue's metadata for the configured markets (every sync). Asset ids must not change;
        costs (fee scale, growth mode) may, and are taken up. A dex whose collateral is not USDC is
        refused (`CollateralError`)."""
        if self.specs and {c: _identity(s) for c, s in specs.items()} != {
            c: _identity(s) for c, s in self.specs.items()
        }:
            raise StartupError("the venue's asset ids changed between connections; refusing to continue")
        check_collateral(specs.values())
        self.specs.update(specs)
        if self.detector is None:
            self.detector = Detector(self.settings.detector, {c: s.sz_decimals for c, s in specs.items()})
        self._apply_fees()

    def on_fees(self, fees: UserFees) -> None:
        """The account's `userFees` (every sync, after the markets): each market's taker fee from it."""
        self.user_fees = fees
        self._apply_fees()
        log.info(
            "taker fee a leg from the venue: %s",
            ", ".join(
                f"{c} {'unknown' if f is None else f'{f.normalize():f} bps'}"
                for c, f in self.fees_bps.items()
            ),
        )

    def _apply_fees(self) -> None:
        fees = self.user_fees
        self.fees_bps = {
            coin: market_fee_bps(fees, spec) if fees is not None else None
            for coin, spec in self.specs.items()
        }
        if self.detector is not None:
            self.detector.set_fees(self.fees_bps)

    def on_bbo(self, msg: m.Bbo, now: float) -> None:
        if msg.coin in self.book.markets:
            self.market_data_at[msg.coin] = now
            self.readiness.on_bbo(msg.coin, self.generation)
            if self.detector is not None:
                now_ms = self.exchange_ms()
                self.detector.on_stream_alive(now_ms)
                self._on_detector(self.detector.on_book(book_top(msg), now_ms), now)
        self._drain(now)

    def on_asset_ctx(self, msg: m.ActiveAssetCtx, now: float) -> None:
        if msg.coin in self.book.markets:
            self.marks[msg.coin] = msg.ctx.mark_px
            self.readiness.on_asset_ctx(msg.coin, self.generation)
            if self.detector is not None:
                now_ms = self.exchange_ms()  # activeAssetCtx carries no timestamp: stamped on receipt
                self.detector.on_stream_alive(now_ms)
                oracle = OracleCtx(msg.coin, msg.ctx.oracle_px, msg.ctx.mark_px, now_ms)
                self._on_detector(self.detector.on_oracle(oracle, now_ms), now)
        self._drain(now)

    def on_signal(self, result: Signal | Skip, now: float) -> None:
        """A detector result, as the strategy produces it (also how tests inject a signal)."""
        self._on_detector(result, now)
        self._drain(now)

    def _on_detector(self, result: Signal | Skip, now: float) -> None:
        c = self._counters
        if isinstance(result, Skip):
            c.skips[result.name] += 1
            return
        c.signals += 1
        if self.settings.dry_run:
            self._record(jm.signal_record(result, refused="dry_run"))
            log.info("signal %s (dry run: not sent)", _describe_signal(result))
            return
        if self.stopping:
            self._record(jm.signal_record(result, refused="shutting_down"))
            return
        submitted: SubmitResult = self.executor.submit_signal(result, now)
        if submitted.accepted:
            c.signals_acted += 1
            cloid = getattr(submitted, "cloid", None)
            if self.on_order_queued is not None and cloid is not None:
                self.on_order_queued(cloid)
            self._hot = True

            def journal_signal(signal: Signal = result, cloid: Cloid | None = cloid) -> None:
                self._record(jm.signal_record(signal, cloid=str(cloid) if cloid is not None else None))
                log.info("signal %s → order %s", _describe_signal(signal), cloid)

            self._after_send.append(journal_signal)
        else:
            name = type(submitted).__name__
            c.signals_refused[name] += 1
            self._record(jm.signal_record(result, refused=name))
            log.debug("signal %s refused: %s", _describe_signal(result), submitted)

    # --- user events and the venue's answers -------------------------------------------------------

    def on_order_updates(self, msg: m.OrderUpdates, now: float) -> None:
        self.book.on_order_updates(msg, now)
        self._drain(now)

    def on_user_fills(self, msg: m.UserFills, now: float) -> None:
        for record in jm.fill_records(msg.fills, self.book.markets):
            self._record(record)
        self._counters.fills += self.book.on_user_fills(msg, now)
        if msg.is_snapshot:
            self.readiness.on_fills_snapshot(self.generation)
        self._drain(now)

    def on_subscription_ack(self, msg: m.SubscriptionAck, now: float) -> None:
        if msg.subscription.get("type") == "orderUpdates":
            self.readiness.on_order_stream_acked(self.generation)
        self._drain(now)

    def on_channel_error(self, msg: m.ChannelError, now: float) -> None:
        log.warning("venue error: %s", msg.message)
        self._record_event("venue_error", m=msg.message)
        self._drain(now)

    def next_batch(self, inflight: int, now: float) -> Batch | None:
        """The next batch to send: everything when READY, only cancels and reduce-only orders while
        positions are known but some market's data is missing, nothing otherwise (or in a dry run), and
        nothing within the pause after the venue's "budget exhausted" (its trickle interval)."""
        if self.settings.dry_run or not self.can_reduce or not self.executor.requests.may_send(now):
            return None
        return self.scheduler.tick(inflight, reducing_only=not self.ready)

    def on_batch_sent(self, batch: Batch, sent_at: float, now: float) -> None:
        """The batch's post was marked sent, right before its frame goes to the socket: its orders are
        `sent` now, and the step's outputs (their transitions) are routed once the frame is written
        (`on_batch_written`, which ends in `_drain`) — or, if the send fails, by the step that resolves
        the post. Any step that runs in between routes them with its own outputs, in order."""
        self.executor.on_batch_sent(batch, sent_at)

    def on_batch_written(self, now: float) -> None:
        """A batch's frame was handed to the transport: what the signal's step held back goes now, and
        the outputs of `on_batch_sent`."""
        self._flush_after_send()
        self._drain(now)

    def on_post_outcome(self, entry: PostEntry[m.PostResult], now: float) -> None:
        self.executor.on_post_outcome(entry, now)
        self._drain(now)

    # --- the venue's action budget ------------------------------------------------------------------

    def on_rate_limit(self, *, used: int, cap: int, sent_at_ask: int, now: float) -> None:
        """A `userRateLimit` answer (at sync and every minute); `sent_at_ask`: `requests.sent` when it
        was asked."""
        requests = self.executor.requests
        requests.on_read(used=used, cap=cap, sent_at_ask=sent_at_ask)
        self._record_event("request_budget", used=used, cap=cap, remaining=requests.remaining)
        self._check_request_budget()
        self._drain(now)

    def on_action_signed(self, weight: int, now: float) -> None:
        """An action of `weight` requests is going out (orders, cancels, a noop, updateLeverage)."""
        self.executor.requests.on_sent(weight, now)
        self._check_request_budget()

    def _check_request_budget(self) -> None:
        """Alert once each time what is left crosses below the reserve (entries are refused from then)."""
        requests = self.executor.requests
        remaining = requests.remaining
        if remaining is None or remaining > requests.reserve:
            self._budget_low_alerted = False
        elif not self._budget_low_alerted:
            self._budget_low_alerted = True
            log.warning(
                "action budget: %d requests left (reserve %d): new entries refused",
                remaining,
                requests.reserve,
            )
            self.alerts.request_budget(remaining, limit=requests.cap)

    def on_noop_accepted(self, cloids: Iterable[Cloid], now: float) -> None:
        """A noop with a timed-out post's nonce was accepted: that post can never execute."""
        for cloid in cloids:
            self.book.resolve_never_executed(cloid, now, "noop accepted: nonce invalidated, never executed")
        self._drain(now)

    def request_reconcile(self, reason: str, now: float) -> None:
        """Ask the venue link for a reconciliation (e.g. a refused noop: the original post landed)."""
        self.outbox.emit(ReconcileRequested(reason=reason, at=now))
        self._drain(now)

    def on_connect(self, now: float) -> int:
        """A new connection: readiness starts a new generation (returned)."""
        generation = self.readiness.new_connection()
        self.connected = True
        self._drain(now)
        return generation

    def on_disconnect(self, drained: int, bad_frames: int, now: float) -> None:
        """The connection is gone (its posts were already routed): a new generation, books forgotten."""
        self._flush_after_send()
        self.connected = False
        self.readiness.new_connection(orderly=self.stopping)  # the orderly stop closes it: no warning
        if self.detector is not None:
            self.detector.on_stream_lost()
        self._record_event("disconnect", drained_posts=drained, bad_frames=bad_frames)
        self._drain(now)

    def apply_reconcile(
        self,
        states: Sequence[DexState],
        open_orders: Iterable[m.WsOrder],
        statuses: Mapping[Cloid, m.OrderUpdate | None],
        now: float,
        *,
        unknown_queried: int,
        clock_blocked: bool | None = None,
    ) -> Reconciled | ReconcileDeferred:
        """Swap the venue's account state into the book (`PositionBook.reconcile_dexes`); a reconciled
        connection may reduce positions. `clock_blocked` is the drift check of the same answer."""
        if clock_blocked is not None:
            if self.clock_blocked and not clock_blocked:
                log.warning("clock back within the drift limit: trading unblocked")
            self.clock_blocked = clock_blocked
        self._reconcile_wanted = False
        result = self.book.reconcile_dexes(states, open_orders, statuses, now)
        self._record_event("reconcile", result=type(result).__name__, unknown_queried=unknown_queried)
        if isinstance(result, Reconciled):
            self.readiness.on_reconciled(self.generation)
        self._drain(now)
        return result

    # --- the clock and the stop --------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """One time-stop pass (every second): book housekeeping, the latch, due flattens; and anything a
        signal held back whose order never went out (refused by the venue link, dropped by a stop)."""
        self._flush_after_send()
        self.time_stop.check(now)
        self._drain(now)

    def begin_shutdown(self, reason: str, now: float) -> None:
        """Stop new orders now; with `flatten_on_exit`, flatten every position through the time stop."""
        if self.stopping:
            return
        self.stopping = True
        self._flush_after_send()
        flatten = self.settings.time_stop.flatten_on_exit
        log.warning("shutting down (%s): no new orders%s", reason, ", flattening" if flatten else "")
        self._record_event("shutdown", reason=reason)
        self.executor.stop_new_orders(f"shutdown: {reason}", now, flatten=flatten)
        self._drain(now)

    def trip_hard_stop(self, reason: str, now: float, *, alert: AlertKind = AlertKind.HARD_STOP) -> None:
        """Latch the persisted hard stop for a failure outside the trading path, and flatten everything.

        For the tasks beside the engine that find it can no longer run safely: the journal task calls
        it when a record is lost to a write error (cannot measure, must not trade). Same effect as a
        risk limit: the latch keeps its first reason and survives restarts, the executor refuses new
        entries, drops queued ones and requests flatten-all. `alert` is the kind of alert it raises.
        """
        now_ms = self.exchange_ms()
        self.hard_stop_latch.trigger(reason, now_ms)
        self._record(jm.event("hard_stop", now_ms, reason=reason))
        self.alerts.alert(alert, None, f"{reason}; no new entries, flattening every position")
        self.executor.hard_stop(reason, now)
        self._drain(now)

    # --- the outbox --------------------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        """After every state change: route what it emitted, then tell the listener."""
        while items := self.outbox.drain():
            for item in items:
                self._route(item, now)
        self._hot = False
        wanted, self._reconcile_wanted = self._reconcile_wanted, False
        self.listener.after_step(reconcile_wanted=wanted)

    def _flush_after_send(self) -> None:
        """Journal and log what a signal's step held back (see `_after_send`)."""
        held, self._after_send = self._after_send, []
        for work in held:
            work()

    def _route(self, item: Output, now: float) -> None:
        c = self._counters
        if self.outbox.is_risk_event(item):
            reason = self.monitor.on_event(item, self.exchange_ms())  # type: ignore[arg-type]
            if isinstance(item, OrderRejected):
                c.rejects += 1
                c.rejects_by_reason[reject_reason(item.message)] += 1
                self._record_event("reject", market=item.market, message=item.message)
                if refused_as_increase(item.message):
                    self.alerts.alert(AlertKind.REDUCE_ONLY_REFUSED, item.market, item.message)
            elif isinstance(item, FlattenFailed | SlippageMeasured):  # for the restart (risk/history.py)
                self._record(risk_event_record(item, self.exchange_ms()))
                if isinstance(item, FlattenFailed):
                    self.alerts.alert(AlertKind.FLATTEN_FAILED, item.market, item.detail, age_s=item.age_s)
            if reason is not None:
                self._record_event("hard_stop", reason=reason)
                text = f"{reason}; no new entries, flattening every position"
                self.alerts.alert(AlertKind.HARD_STOP, None, text, event_market=getattr(item, "market", None))
                self.executor.hard_stop(reason, now)
        elif isinstance(item, OrderSubmitted):
            c.orders += 1
            journal_order = functools.partial(self._record_order, item, self.exchange_ms())
            if self._hot:
                self._after_send.append(journal_order)
            else:
                journal_order()
        elif isinstance(item, OrderTransition):
            update = jm.order_update_record(item, self.book.order(item.cloid), self.exchange_ms())
            if update is not None:
                self._record(update)
        elif isinstance(item, ClosedTrade):
            c.trades += 1
            c.realized_pnl += item.net_pnl
            c.realized_pnl_by_market[item.market] = (
                c.realized_pnl_by_market.get(item.market, ZERO) + item.net_pnl
            )
            c.fees += item.fees
            self._record(jm.trade_record(item))
        elif isinstance(item, FlattenAllRequested):
            self._record_event("flatten_all", reason=item.reason)
            self.time_stop.flatten_all(now)
        elif isinstance(item, ReconcileRequested):
            self._reconcile_wanted = True
        elif isinstance(item, PositionCorrected):
            self._record_event("position_corrected", market=item.market, old=item.old_size, new=item.new_size)
            text = f"{item.old_size} -> {item.new_size} (the venue's position)"
            self.alerts.alert(
                AlertKind.POSITION_CORRECTED, item.market, text, old=item.old_size, new=item.new_size
            )
        elif isinstance(item, RequestBudgetExhausted):
            requests = self.executor.requests
            log.warning(
                "action budget exhausted (%s batch of %d refused whole): pausing %.0f s: %s",
                item.kind,
                item.items,
                requests.trickle_s,
                item.message,
            )
            self._record_event(
                "request_budget_exhausted",
                action=item.kind,
                items=item.items,
                pause_s=requests.trickle_s,
                n=requests.exhaustions,
                message=item.message,
            )
            self.alerts.request_budget(0, limit=requests.cap)
        elif isinstance(item, UnknownOrderEscalated):
            log.error("order %s on %s stayed unknown past the deadline", item.cloid, item.market)
            self._record_event("unknown_escalated", cloid=str(item.cloid), market=item.market)
            text = f"order {item.cloid} stayed unknown past the deadline (kept; see the journal)"
            self.alerts.alert(AlertKind.UNKNOWN_ORDER, item.market, text, cloid=str(item.cloid))

    def _touch(self, market: str) -> BookTop | None:
        """A market's best bid/ask for the time stop's flatten price: the detector's, from this
        connection's `bbo` (forgotten with the connection: until the new one's, flattens use the mark)."""
        return self.detector.book(market) if self.detector is not None else None

    def _record(self, record: Record) -> None:
        self.journal.record(record)

    def _record_event(self, kind: str, **detail: object) -> None:
        """Journal an `events` row of `kind`, stamped with exchange time."""
        self._record(jm.event(kind, self.exchange_ms(), **detail))

    def _record_order(self, submitted: OrderSubmitted, time_ms: int) -> None:
        self._record(jm.order_record(submitted, time_ms))


def reject_reason(message: str) -> str:
    """A low-cardinality label for a reject: the message up to its first number or sentence end."""
    head = message.split(". ")[0].split(" asset=")[0]
    return re.sub(r"\d+(\.\d+)?", "#", head)[:60] or "unknown"


def _identity(spec: MarketSpec) -> tuple[int, int, str]:
    """What must not change between connections: the asset id (and the lot and dex that go with it)."""
    return spec.asset, spec.sz_decimals, spec.dex


def book_top(msg: m.Bbo) -> BookTop:
    """A `bbo` push as the detector's input (a missing side stays None)."""
    bid, ask = msg.bid, msg.ask
    return BookTop(
        msg.coin,
        bid.px if bid else None,
        bid.sz if bid else None,
        ask.px if ask else None,
        ask.sz if ask else None,
        msg.time,
    )


def _describe_signal(s: Signal) -> str:
    edge = s.expected_edge_bps.quantize(Decimal("0.1"))
    return f"{s.market} {'buy' if s.is_buy else 'sell'} {s.size} @ {s.price} ({edge} bps)"
