"""The engine: the `SessionHost` that joins market data, orders, positions, risk and the journal.

A `Session` moves frames; the `Engine` decides. Every session callback is a synchronous step:

- market data → readiness, marks, the detector → a signal → `Executor.submit_signal` (or, in a dry
  run, a journaled would-be order) — in the reader's own step, so a signal's order is queued before
  the next frame is read;
- user events (`orderUpdates`, `userFills`) → the `PositionBook`, in wire order with the post replies
  that the session resolves in place;
- every resolved post → `Executor.on_post_outcome`; a timed-out order post → a noop with the same
  nonce (`Session.invalidate`), whose answer settles the orders: accepted = they can never execute
  (released), refused as a used nonce = the original landed (reconciled by `orderStatus`);
- after each step the shared `Outbox` is drained: risk events go to the `RiskMonitor` (a crossed limit
  latches the persisted `HardStop` and stops the executor), everything goes to the journal, a
  flatten-all request goes to the `TimeStop`, a reconcile request wakes the sync task.

`sync` runs on every connect: markets, subscriptions, the fills snapshot, reconciliation (which also
syncs the nonce clock to the exchange's), then READY; afterwards it stays on as the reconcile loop of the
connection. Nothing is sent before READY — not even a flatten, whose size must come from reconciled
positions.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Final

import attrs
import trio

from hip3_trio.execution.batch import Batch, BatchConfig, BatchScheduler
from hip3_trio.execution.executor import Executor, ExecutorConfig, SubmitResult
from hip3_trio.execution.nonce import NonceManager, TimeDrift
from hip3_trio.execution.posts import PostEntry, Reply, Timeout
from hip3_trio.journal import (
    EventRecord,
    FillRecord,
    JournalSink,
    OrderFinalState,
    OrderRecord,
    OrderUpdateRecord,
    Record,
    SignalRecord,
    TradeRecord,
    side_of,
)
from hip3_trio.position.book import BookConfig, DexState, PositionBook, ReconcileDeferred
from hip3_trio.position.readiness import Readiness
from hip3_trio.position.records import (
    ClosedTrade,
    FlattenAllRequested,
    FlattenFailed,
    OrderRejected,
    OrderState,
    OrderSubmitted,
    OrderTransition,
    Outbox,
    Output,
    PositionCorrected,
    ReconcileRequested,
    SlippageMeasured,
    UnknownOrderEscalated,
)
from hip3_trio.position.time_stop import TimeStop, TimeStopConfig
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.risk.history import risk_event_record
from hip3_trio.risk.monitor import RiskConfig, RiskMonitor
from hip3_trio.strategy.detector import BPS, BookTop, Detector, DetectorConfig, OracleCtx, Signal, Skip
from hip3_trio.venue.markets import MarketSpec
from hip3_trio.venue.queries import fetch_account_state, load_markets
from hip3_trio.venue.session import ConnectionConfig, ConnectionLost, Session
from hip3_trio.venue.trace import LatencyTrace
from hip3_trio.wire import messages as m
from hip3_trio.wire.actions import Cloid
from hip3_trio.wire.signing import Signer

__all__ = ["Engine", "EngineSettings", "EngineStats"]

log = logging.getLogger(__name__)

ZERO: Final = Decimal(0)


@attrs.frozen(kw_only=True)
class EngineSettings:
    """Everything one engine run needs besides its collaborators.

    The sections are the config file's own classes, passed through by the app (`app.engine_settings`)
    together with what only the run knows: markets, user, vault, network, dry run, and the derived
    fields of the detector and executor configs. The session of each connection is configured by
    `connection` and `scheduler` (the file's ``[batch]``) as well.
    """

    markets: tuple[str, ...]
    user: str
    vault_address: str | None = None
    is_mainnet: bool = False
    dry_run: bool = False
    detector: DetectorConfig = attrs.Factory(DetectorConfig)
    executor: ExecutorConfig = attrs.Factory(ExecutorConfig)
    scheduler: BatchConfig = attrs.Factory(BatchConfig)
    time_stop: TimeStopConfig = attrs.Factory(TimeStopConfig)
    risk: RiskConfig = attrs.Factory(RiskConfig)
    book: BookConfig = attrs.Factory(BookConfig)
    connection: ConnectionConfig = attrs.Factory(ConnectionConfig)
    # Not in the config file: the pause that lets a burst of reconcile requests coalesce.
    reconcile_retry_s: float = 1.0

    # The engine reads these under their own names; each value lives in one section above.

    @property
    def flatten_on_exit(self) -> bool:
        return self.time_stop.flatten_on_exit

    @property
    def exit_deadline_s(self) -> float:
        return self.time_stop.exit_deadline_s

    @property
    def sync_timeout_s(self) -> float:
        """A connect's whole sync (several info requests and the snapshots) may take half again as long
        as one info request."""
        return self.connection.info_timeout_s * 1.5

    @property
    def reconcile_every_s(self) -> float:
        return self.connection.reconcile_every_s

    @property
    def clock_recheck_s(self) -> float:
        return self.connection.clock_recheck_s


LATENCY_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, float("inf"))


@attrs.define
class LatencyHistogram:
    """Post latencies in fixed buckets (seconds): bounded memory, read by the metrics endpoint."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = attrs.Factory(lambda self: [0] * len(self.bounds), takes_self=True)
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.total += seconds
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[i] += 1
                return

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations ≤ bound) for every bucket, as Prometheus wants them."""
        running, out = 0, []
        for bound, count in zip(self.bounds, self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


def reject_reason(message: str) -> str:
    """A low-cardinality label for a reject: the message up to its first number or sentence end."""
    head = message.split(". ")[0].split(" asset=")[0]
    return re.sub(r"\d+(\.\d+)?", "#", head)[:60] or "unknown"


@attrs.define
class EngineStats:
    """Counters for the status line and the final summary (derived state lives in its owners)."""

    connects: int = 0
    disconnects: int = 0
    frames: Counter[str] = attrs.Factory(Counter)
    signals: int = 0
    signals_refused: Counter[str] = attrs.Factory(Counter)
    skips: Counter[str] = attrs.Factory(Counter)
    orders: int = 0
    fills: int = 0
    rejects: int = 0
    rejects_by_reason: Counter[str] = attrs.Factory(Counter)
    post_latency: LatencyHistogram = attrs.Factory(LatencyHistogram)
    trades: int = 0
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    noops_accepted: int = 0
    noops_refused: int = 0
    reconciles: int = 0


class Engine:
    """One engine: owns the trading state and implements the session host (see the module docstring)."""

    def __init__(
        self,
        settings: EngineSettings,
        *,
        signer: Signer | None,
        nonces: NonceManager,
        hard_stop: HardStop,
        journal: JournalSink,
        save_nonce: Callable[[int], None] | None = None,
    ) -> None:
        if signer is None and not settings.dry_run:
            raise ValueError("an engine that sends orders needs a signer")
        self.settings = settings
        self.signer = signer
        self.nonces = nonces
        self.hard_stop_latch = hard_stop
        self.journal = journal
        self._save_nonce_to = save_nonce
        self.stats = EngineStats()
        self.outbox = Outbox()
        self.specs: dict[str, MarketSpec] = {}
        self.marks: dict[str, Decimal] = {}
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
            inflight=lambda: self.inflight,
            now=trio.current_time(),
        )
        self.time_stop = TimeStop(
            book=self.book, executor=self.executor, marks=self.marks, config=settings.time_stop
        )
        self.monitor = RiskMonitor(settings.risk, hard_stop)
        self.detector: Detector | None = None
        self.session: Session | None = None
        self.trace: LatencyTrace | None = None  # signal-to-wire instrumentation (benchmarks only)
        self.clock_blocked = False
        self.stopping = False
        self._generation = 0
        self._awaiting_noop: set[Cloid] = set()
        self._reconcile_wanted = trio.Event()
        self._changes = trio.lowlevel.ParkingLot()

    # --- views -------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """READY-TRADING: connected, readiness complete, and the clock within the drift limit."""
        return self.session is not None and self.readiness.ready and not self.clock_blocked

    @property
    def can_reduce(self) -> bool:
        """Cancels and reduce-only orders may go out: connected, positions reconciled on this connection
        and the clock within the drift limit — without waiting for every market's data, so a position
        is never left unflattened because an unrelated market is quiet (new orders need `ready`)."""
        return self.session is not None and self.readiness.positions_known and not self.clock_blocked

    def exchange_ms(self) -> int:
        """Our best estimate of the exchange's clock (local clock + the offset learned at sync)."""
        return self.nonces.approx_server_time_ms()

    @property
    def inflight(self) -> int:
        """Posts on the wire of the current connection (derived from its post table)."""
        return self.session.inflight if self.session is not None else 0

    def unrealized_pnl(self) -> Decimal:
        """Open positions marked to the latest mark price (markets without a mark count zero)."""
        total = ZERO
        for market, pos in self.book.positions.items():
            mark = self.marks.get(market)
            if mark is not None and pos.size != 0:
                total += (mark - pos.avg_entry_px) * pos.size
        return total

    def holds_positions(self) -> bool:
        """A position is open (or announced by a reply): reconnecting is urgent, backoff or not."""
        return any(self.book.has_position(market) for market in self.book.markets)

    def settled(self) -> bool:
        """Nothing in flight, queued or live — and, when flattening on exit, no open position, not even
        one a reply announced whose fills are still on their way (the time stop flattens it once they
        arrive; counting only applied fills would stop with the venue holding it)."""
        if self.inflight or len(self.scheduler) or self.book.live_orders():
            return False
        return not self.holds_positions() or not self.settings.flatten_on_exit

    # --- session host: market data and user events ---------------------------------------------------

    def on_message(self, session: Session, msg: m.InboundMessage, now: float) -> None:
        self.stats.frames[type(msg).__name__] += 1
        if isinstance(msg, m.Bbo):
            self._on_bbo(msg, now)
        elif isinstance(msg, m.ActiveAssetCtx):
            self._on_asset_ctx(msg, now)
        elif isinstance(msg, m.OrderUpdates):
            self.book.on_order_updates(msg, now)
        elif isinstance(msg, m.UserFills):
            self._on_user_fills(msg, now)
        elif isinstance(msg, m.SubscriptionAck):
            if msg.subscription.get("type") == "orderUpdates":
                self.readiness.on_order_stream_acked(self._generation)
        elif isinstance(msg, m.ChannelError):
            log.warning("venue error: %s", msg.message)
            self._record(
                EventRecord(time_ms=self.exchange_ms(), kind="venue_error", detail={"m": msg.message})
            )
        self._after(now)

    def _on_bbo(self, msg: m.Bbo, now: float) -> None:
        if msg.coin not in self.book.markets:
            return
        self.readiness.on_bbo(msg.coin, self._generation)
        if self.detector is None:
            return
        now_ms = self.exchange_ms()
        self.detector.on_stream_alive(now_ms)
        self._on_detector(self.detector.on_book(book_top(msg), now_ms), now)

    def _on_asset_ctx(self, msg: m.ActiveAssetCtx, now: float) -> None:
        if msg.coin not in self.book.markets:
            return
        self.marks[msg.coin] = msg.ctx.mark_px
        self.readiness.on_asset_ctx(msg.coin, self._generation)
        if self.detector is None:
            return
        now_ms = self.exchange_ms()  # activeAssetCtx carries no timestamp: stamped on receipt
        self.detector.on_stream_alive(now_ms)
        oracle = OracleCtx(msg.coin, msg.ctx.oracle_px, msg.ctx.mark_px, now_ms)
        self._on_detector(self.detector.on_oracle(oracle, now_ms), now)

    def _on_detector(self, result: Signal | Skip, now: float) -> None:
        if isinstance(result, Skip):
            self.stats.skips[result.name] += 1
            return
        self.stats.signals += 1
        if self.settings.dry_run:
            self._journal_signal(result, refused="dry_run")
            log.info("signal %s (dry run: not sent)", _describe_signal(result))
            return
        if self.stopping:
            self._journal_signal(result, refused="shutting_down")
            return
        submitted: SubmitResult = self.executor.submit_signal(result, now)
        if submitted.accepted:
            cloid = getattr(submitted, "cloid", None)
            if self.trace is not None and cloid is not None:
                self.trace.order_queued(cloid)
            self._journal_signal(result, cloid=str(cloid) if cloid is not None else None)
            log.info("signal %s → order %s", _describe_signal(result), cloid)
        else:
            name = type(submitted).__name__
            self.stats.signals_refused[name] += 1
            self._journal_signal(result, refused=name)
            log.debug("signal %s refused: %s", _describe_signal(result), submitted)

    def _journal_signal(
        self, signal: Signal, *, refused: str | None = None, cloid: str | None = None
    ) -> None:
        self._record(
            SignalRecord(
                time_ms=signal.time_ms,
                market=signal.market,
                side=side_of(signal.is_buy),
                price=signal.price,
                size=signal.size,
                expected_edge_bps=signal.expected_edge_bps,
                oracle_px=signal.oracle_px,
                best_px=signal.best_px,
                acted=refused is None,
                refused_reason=refused,
                cloid=cloid,
            )
        )

    def _on_user_fills(self, msg: m.UserFills, now: float) -> None:
        for fill in msg.fills:
            if fill.coin in self.book.markets:
                self._record(
                    FillRecord(
                        tid=fill.tid,
                        time_ms=fill.time,
                        market=fill.coin,
                        side=side_of(fill.is_buy),
                        px=fill.px,
                        sz=fill.sz,
                        fee=fill.fee,
                        closed_pnl=fill.closed_pnl,
                        crossed=fill.crossed,
                        cloid=fill.cloid,
                        oid=fill.oid,
                    )
                )
        self.stats.fills += self.book.on_user_fills(msg, now)
        if msg.is_snapshot:
            self.readiness.on_fills_snapshot(self._generation)

    # --- session host: posts -----------------------------------------------------------------------

    def next_batch(self, inflight: int) -> Batch | None:
        if self.settings.dry_run or not self.can_reduce:
            return None
        return self.scheduler.tick(inflight, reducing_only=not self.ready)

    def sign(self, action_wire: dict[str, Any], nonce: int) -> dict[str, Any]:
        if self.signer is None:
            raise RuntimeError("a dry run signs nothing")
        vault = self.settings.vault_address
        signature = self.signer.sign_l1_action(
            action_wire, nonce, vault_address=vault, is_mainnet=self.settings.is_mainnet
        )
        payload: dict[str, Any] = {"action": action_wire, "nonce": nonce, "signature": signature}
        if vault is not None:
            payload["vaultAddress"] = vault
        return payload

    def next_nonce(self) -> int:
        return self.nonces.next()

    def on_batch_sent(self, session: Session, entry: PostEntry[m.PostResult]) -> None:
        self.executor.on_batch_sent(entry.batch, entry.sent_at if entry.sent_at is not None else 0.0)
        self._after(trio.current_time())

    def on_post_resolved(self, session: Session, entry: PostEntry[m.PostResult]) -> None:
        now = trio.current_time()
        if isinstance(entry.outcome, Reply) and entry.sent_at is not None:
            self.stats.post_latency.observe(now - entry.sent_at)
        self.executor.on_post_outcome(entry, now)
        if isinstance(entry.outcome, Timeout) and entry.batch.kind != "cancel":
            unknown = {
                item.cloid
                for item in entry.batch.order_items
                if item.cloid is not None
                and (order := self.book.order(item.cloid)) is not None
                and order.state is OrderState.UNKNOWN
            }
            if unknown:
                # Hold orderStatus for these until the noop answers: "not found" now could be a post
                # that is still on its way, so only the noop can tell "never" from "not yet".
                self._awaiting_noop |= unknown
                session.invalidate(entry)
                log.warning(
                    "post %d timed out: invalidating nonce %d with a noop", entry.post_id, entry.nonce
                )
        self._after(now)

    def on_noop_outcome(
        self, session: Session, original: PostEntry[m.PostResult], result: m.PostResult
    ) -> None:
        now = trio.current_time()
        cloids = [item.cloid for item in original.batch.order_items if item.cloid is not None]
        self._awaiting_noop.difference_update(cloids)
        if isinstance(result, m.ActionOk):
            self.stats.noops_accepted += 1
            log.info("noop for nonce %d accepted: the timed-out post can never execute", original.nonce)
            for cloid in cloids:
                self.book.resolve_never_executed(
                    cloid, now, "noop accepted: nonce invalidated, never executed"
                )
        else:
            self.stats.noops_refused += 1
            landed = isinstance(result, m.ActionErr) and "nonce" in result.message.lower()
            log.info(
                "noop for nonce %d refused (%s): %s",
                original.nonce,
                result,
                "the original landed; reconciling by orderStatus" if landed else "outcome open; reconciling",
            )
            self._reconcile_wanted.set()
        self._after(now)

    def on_session_end(self, session: Session, drained: Sequence[PostEntry[m.PostResult]]) -> None:
        now = trio.current_time()
        if self.session is session:
            self.session = None
        self.stats.disconnects += 1
        self._generation = self.readiness.new_connection()
        self._awaiting_noop.clear()
        if self.detector is not None:
            self.detector.on_stream_lost()
        self._record(
            EventRecord(
                time_ms=self.exchange_ms(),
                kind="disconnect",
                detail={"drained_posts": len(drained), "bad_frames": session.bad_frames},
            )
        )
        self._after(now)

    # --- session host: sync and the reconcile loop -------------------------------------------------

    async def sync(self, session: Session) -> None:
        """Markets, subscriptions, snapshot, reconciliation → READY; then reconcile on request."""
        self._generation = generation = self.readiness.new_connection()
        self.session = session
        self.stats.connects += 1
        self._record(
            EventRecord(time_ms=self.exchange_ms(), kind="connect", detail={"n": self.stats.connects})
        )
        markets = await load_markets(session, self.settings.markets)
        if self.specs and markets.by_coin != self.specs:
            raise ValueError("the venue's asset ids changed between connections; refusing to continue")
        self.specs.update(markets.by_coin)
        if self.detector is None:
            self.detector = Detector(
                self.settings.detector, {c: s.sz_decimals for c, s in markets.by_coin.items()}
            )
        user = self.settings.user
        for coin in markets:
            await session.subscribe({"type": "bbo", "coin": coin})
            await session.subscribe({"type": "activeAssetCtx", "coin": coin})
        await session.subscribe({"type": "orderUpdates", "user": user})
        await session.subscribe({"type": "userFills", "user": user})
        with trio.move_on_after(self.settings.sync_timeout_s) as waited:
            await self.wait_until(lambda: self.readiness.orders_acked and self.readiness.fills_snapshot)
        if waited.cancelled_caught:
            raise ConnectionLost(f"sync: still missing {', '.join(self.readiness.missing())}")
        await self.reconcile(session)
        self.readiness.on_reconciled(generation)
        self._save_nonce()
        log.info(
            "synced (generation %d): %s; %s",
            generation,
            ", ".join(f"{c} asset {s.asset}" for c, s in markets.by_coin.items()),
            ("READY (hard stop latched: no new entries)" if self.hard_stop_latch.latched else "READY")
            if self.ready
            else "waiting for " + ", ".join(self.readiness.missing() or ["clock"]),
        )
        self._after(trio.current_time())
        while True:
            # Reconcile on request (evidence that the book is wrong), and at least every
            # `reconcile_every_s` anyway; while the clock blocks trading, every `clock_recheck_s`.
            every = self.settings.reconcile_every_s
            recheck = min(every, self.settings.clock_recheck_s) if self.clock_blocked else every
            with trio.move_on_after(recheck):
                await self._reconcile_wanted.wait()
            await trio.sleep(self.settings.reconcile_retry_s)  # let a burst of requests coalesce
            await self.reconcile(session)

    async def reconcile(self, session: Session) -> None:
        """Query the exchange's truth and swap it into the book; retry a deferred (lone empty) answer."""
        while True:
            self._reconcile_wanted = trio.Event()
            unknown = [o.cloid for o in self.book.unknown_orders() if o.cloid not in self._awaiting_noop]
            state = await fetch_account_state(
                session,
                user=self.settings.user,
                dexes={s.dex for s in self.specs.values()},
                unknown=unknown,
                sends=lambda: self.book.sends,
            )
            now = trio.current_time()
            if state.clock is not None:
                # The exchange's clock projected to now from its round trip, not the stamp itself: the
                # queries after it (open orders, order statuses) would otherwise count as drift.
                drift = self.nonces.sync_with_server(state.clock.server_now_ms(now))
                if self.clock_blocked and not isinstance(drift, TimeDrift):
                    log.warning("clock back within the drift limit (%s): trading unblocked", drift)
                self.clock_blocked = isinstance(drift, TimeDrift)
            dexes = [
                DexState(a.state.dex, a.state.positions, a.state.time, a.sends_before) for a in state.dexes
            ]
            result = self.book.reconcile_dexes(dexes, state.open_orders, state.statuses, now)
            self.stats.reconciles += 1
            self._record(
                EventRecord(
                    time_ms=self.exchange_ms(),
                    kind="reconcile",
                    detail={"result": type(result).__name__, "unknown_queried": len(unknown)},
                )
            )
            self._after(now)
            if not isinstance(result, ReconcileDeferred):
                return
            await trio.sleep(self.settings.reconcile_retry_s)

    # --- shutdown ----------------------------------------------------------------------------------

    def begin_shutdown(self, reason: str) -> None:
        """Stop new orders now; with `flatten_on_exit`, flatten every position through the time stop."""
        if self.stopping:
            return
        self.stopping = True
        now = trio.current_time()
        log.warning(
            "shutting down (%s): no new orders%s",
            reason,
            ", flattening" if self.settings.flatten_on_exit else "",
        )
        self._record(EventRecord(time_ms=self.exchange_ms(), kind="shutdown", detail={"reason": reason}))
        self.executor.stop_new_orders(f"shutdown: {reason}", now, flatten=self.settings.flatten_on_exit)
        self._after(now)

    def trip_hard_stop(self, reason: str) -> None:
        """Latch the persisted hard stop for a failure outside the trading path, and flatten everything.

        For the tasks beside the engine that find it can no longer run safely: the journal task calls
        it when a record is lost to a write error (cannot measure, must not trade). Same effect as a
        risk limit in `_route`: the latch keeps its first reason and survives restarts, the executor
        refuses new entries, drops queued ones and requests flatten-all.
        """
        now = trio.current_time()
        now_ms = self.exchange_ms()
        self.hard_stop_latch.trigger(reason, now_ms)
        self._record(EventRecord(time_ms=now_ms, kind="hard_stop", detail={"reason": reason}))
        self.executor.hard_stop(reason, now)
        self._after(now)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds; it is re-checked after every engine step (no polling)."""
        while not predicate():
            await self._changes.park()

    async def wait_settled(self) -> None:
        """Wait until `settled()`: replies in, nothing queued or live, flat if flattening on exit."""
        await self.wait_until(self.settled)

    def save_state(self) -> None:
        """Persist what must survive the process (the nonce high-water mark)."""
        self._save_nonce()

    # --- the outbox --------------------------------------------------------------------------------

    def run_time_stop_check(self, now: float) -> None:
        """One time-stop pass (called every second by the time-stop task)."""
        self.time_stop.check(now)
        self._after(now)

    def _after(self, now: float) -> None:
        """After every state change: route what it emitted, then let the sender and waiters look."""
        while items := self.outbox.drain():
            for item in items:
                self._route(item, now)
        if self.session is not None and len(self.scheduler) and self.can_reduce:
            self.session.wake_sender()
        self._changes.unpark_all()

    def _route(self, item: Output, now: float) -> None:
        if self.outbox.is_risk_event(item):
            reason = self.monitor.on_event(item, self.exchange_ms())  # type: ignore[arg-type]
            if isinstance(item, OrderRejected):
                self.stats.rejects += 1
                self.stats.rejects_by_reason[reject_reason(item.message)] += 1
                self._record(
                    EventRecord(
                        time_ms=self.exchange_ms(),
                        kind="reject",
                        detail={"market": item.market, "message": item.message},
                    )
                )
            elif isinstance(item, FlattenFailed | SlippageMeasured):  # for the restart (risk/history.py)
                self._record(risk_event_record(item, self.exchange_ms()))
            if reason is not None:
                self._record(
                    EventRecord(time_ms=self.exchange_ms(), kind="hard_stop", detail={"reason": reason})
                )
                self.executor.hard_stop(reason, now)
        elif isinstance(item, OrderSubmitted):
            self.stats.orders += 1
            self._record(
                OrderRecord(
                    cloid=str(item.cloid),
                    market=item.market,
                    side=side_of(item.is_buy),
                    price=item.price,
                    size=item.size,
                    reduce_only=item.reduce_only,
                    reason=item.reason,
                    submitted_ms=self.exchange_ms(),
                )
            )
        elif isinstance(item, OrderTransition):
            record = self._order_update(item)
            if record is not None:
                self._record(record)
        elif isinstance(item, ClosedTrade):
            self.stats.trades += 1
            self.stats.realized_pnl += item.net_pnl
            self.stats.fees += item.fees
            self._record(_trade_record(item))
        elif isinstance(item, FlattenAllRequested):
            self._record(
                EventRecord(time_ms=self.exchange_ms(), kind="flatten_all", detail={"reason": item.reason})
            )
            self.time_stop.flatten_all(now)
        elif isinstance(item, ReconcileRequested):
            self._reconcile_wanted.set()
        elif isinstance(item, PositionCorrected):
            self._record(
                EventRecord(
                    time_ms=self.exchange_ms(),
                    kind="position_corrected",
                    detail={"market": item.market, "old": item.old_size, "new": item.new_size},
                )
            )
        elif isinstance(item, UnknownOrderEscalated):
            log.error("order %s on %s stayed unknown past the deadline", item.cloid, item.market)
            self._record(
                EventRecord(
                    time_ms=self.exchange_ms(),
                    kind="unknown_escalated",
                    detail={"cloid": str(item.cloid), "market": item.market},
                )
            )

    def _order_update(self, t: OrderTransition) -> OrderUpdateRecord | None:
        """An order's state change as the journal's `orders` row update (None: nothing to record)."""
        acked = t.old in (OrderState.SENT, OrderState.UNKNOWN) and t.new not in (
            OrderState.QUEUED,
            OrderState.UNKNOWN,
        )
        final = self._final_state(t)
        if final is None and not acked:
            return None
        return OrderUpdateRecord(
            cloid=str(t.cloid),
            market=t.market,
            time_ms=self.exchange_ms(),
            acked_ms=self.exchange_ms() if acked else None,
            final_state=final,
            filled_sz=t.filled_sz,
            avg_px=t.avg_px,
            oid=t.oid,
            error=t.detail if t.new is OrderState.REJECTED else None,
        )

    def _final_state(self, t: OrderTransition) -> OrderFinalState | None:
        order = self.book.order(t.cloid)
        filled = t.filled_sz > 0
        full = order is not None and t.filled_sz >= order.size
        if t.new is OrderState.FILLED:
            return "filled" if full or order is None else "partial"
        if t.new is OrderState.REJECTED:
            return "rejected"
        if t.new in (OrderState.UNKNOWN, OrderState.ESCALATED):
            return "unknown"
        if t.new in (OrderState.CANCELED, OrderState.RECONCILED):
            if filled:
                return "filled" if full else "partial"
            if t.old is OrderState.UNKNOWN:
                return "timeout"
            if t.old in (OrderState.QUEUED, OrderState.SENT):
                return "not_sent"
            return "canceled"
        return None

    def _record(self, record: Record) -> None:
        self.journal.record(record)

    def _save_nonce(self) -> None:
        if self._save_nonce_to is None:
            return
        try:
            self._save_nonce_to(self.nonces.high_water)
        except OSError as exc:
            log.error("could not persist the nonce high-water mark: %s", exc)

    # --- reporting ---------------------------------------------------------------------------------

    def status_line(self, elapsed: float) -> str:
        """One concise line: connection, READY, inflight, positions, PnL, counts."""
        if self.hard_stop_latch.latched:
            record = self.hard_stop_latch.record
            state = f"HARD STOP ({record.reason if record else 'latched'}): no new entries"
        elif self.ready:
            state = "READY"
        elif self.session is None:
            state = "DISCONNECTED"
        else:
            missing = self.readiness.missing() or (["clock drift"] if self.clock_blocked else [])
            state = "SYNCING (" + ", ".join(missing[:3]) + (" …" if len(missing) > 3 else "") + ")"
        positions = ", ".join(
            f"{mkt} {pos.size:+}" for mkt, pos in sorted(self.book.positions.items()) if pos.size != 0
        )
        s = self.stats
        mode = " DRY-RUN" if self.settings.dry_run else ""
        return (
            f"[{elapsed:6.0f}s]{mode} {state} inflight={self.inflight} queued={len(self.scheduler)} "
            f"pos=[{positions}] pnl={s.realized_pnl:.2f}/{self.unrealized_pnl():.2f}u "
            f"signals={s.signals} orders={s.orders} fills={s.fills} rejects={s.rejects} trades={s.trades} "
            f"conn={s.connects}/{s.disconnects}"
        )

    def _latch_text(self) -> str:
        record = self.hard_stop_latch.record
        if not self.hard_stop_latch.latched:
            return "clear"
        return f"LATCHED: {record.reason}" if record is not None else "LATCHED"

    def summary(self) -> str:
        """The final summary printed on exit."""
        s = self.stats
        open_positions = {m: str(p.size) for m, p in self.book.positions.items() if p.size != 0}
        lines = [
            "summary" + (" (dry run: no orders were sent)" if self.settings.dry_run else ""),
            f"  connects {s.connects}, disconnects {s.disconnects}, reconciles {s.reconciles}",
            f"  signals {s.signals} (refused {dict(s.signals_refused)})",
            f"  top skip reasons {dict(s.skips.most_common(3))}",
            f"  orders {s.orders}, fills {s.fills}, rejects {s.rejects}, trades {s.trades}",
            f"  realized PnL {s.realized_pnl:.4f} net (fees {s.fees:.4f}), "
            f"unrealized {self.unrealized_pnl():.4f}",
            f"  noops accepted {s.noops_accepted}, refused {s.noops_refused}",
            f"  open positions {open_positions or 'none'}",
            f"  hard stop {self._latch_text()}",
            f"  journal records {self.journal.sent}, dropped {self.journal.dropped}",
        ]
        return "\n".join(lines)


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


def _trade_record(t: ClosedTrade) -> TradeRecord:
    move = t.exit_px - t.entry_px if t.is_long else t.entry_px - t.exit_px
    opened = t.opened_ms if t.opened_ms is not None else t.closed_ms
    return TradeRecord(
        market=t.market,
        side=side_of(t.is_long),
        size=abs(t.size),
        entry_time_ms=opened,
        entry_px=t.entry_px,
        exit_time_ms=t.closed_ms,
        exit_px=t.exit_px,
        expected_edge_bps=t.expected_edge_bps,
        realised_edge_bps=move / t.entry_px * BPS,
        slippage_bps=t.slippage_bps,
        time_to_flat_ms=max(0, t.closed_ms - opened),
        pnl=t.net_pnl,
        fees=t.fees,
        entry_cloid=str(t.entry_cloid) if t.entry_cloid is not None else None,
        exit_cloid=str(t.exit_cloid) if t.exit_cloid is not None else None,
        exit_reason=t.exit_reason,
        reconstructed=t.corrected,
    )
