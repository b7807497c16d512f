"""The venue link: the `SessionHost` between one connection's `Session` and the `TradingCore`.

A `Session` moves frames; the core decides; the link is the only part of the engine that awaits, so
every question about what the venue said *when* lives here:

- each decoded frame goes to the core method for its type (in the reader's own step, so a signal's
  order is queued before the next frame is read);
- it signs and envelopes the batches the core hands out (`next_batch`, `sign`, `next_nonce`);
- a timed-out order post → a noop with the same nonce (`Session.invalidate`); its answer settles the
  orders: accepted = they can never execute (`TradingCore.on_noop_accepted`), refused = the original
  landed (reconciled by `orderStatus`, which is held back for those orders until the noop answers);
- `sync` on every connect: markets, subscriptions, the fills snapshot, reconciliation (which also syncs
  the nonce clock to the exchange's), then READY; afterwards it stays on as the connection's reconcile
  loop — on the core's request, and at least every `reconcile_every_s`;
- the venue's action budget: `userRateLimit` at sync and every minute (`TradingCore.on_rate_limit`);
  every action it signs is counted (`TradingCore.on_action_signed`: a batch of n counts n);
- margin, once per run at the first sync: isolated leverage on every market (`updateLeverage`, confirmed
  in `activeAssetData`) and each dex's balance against the caps at that leverage; a failure is a
  `StartupError` (the engine stops, exit status 2), never a reconnect;
- after every core step (`after_step`) it wakes the reconcile loop if asked, the sender if there is
  work it may send, and everyone in `wait_until`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import attrs
import trio

from hip3_trio.core import TradingCore
from hip3_trio.execution.batch import Batch
from hip3_trio.execution.nonce import NonceManager, TimeDrift
from hip3_trio.execution.posts import PostEntry, Reply, Timeout
from hip3_trio.execution.request_budget import action_weight, is_budget_exhausted
from hip3_trio.journal_mapping import event
from hip3_trio.position.book import DexState, ReconcileDeferred
from hip3_trio.position.records import OrderState
from hip3_trio.venue.queries import StartupError, fetch_account_state, fetch_user_fees, load_markets
from hip3_trio.venue.session import ConnectionConfig, ConnectionLost, FrameTap, Session
from hip3_trio.venue.trace import LatencyTrace
from hip3_trio.wire import messages as m
from hip3_trio.wire.actions import Cloid, UpdateLeverageAction, action_to_wire
from hip3_trio.wire.markets import Markets
from hip3_trio.wire.signing import Signer

__all__ = ["LatencyHistogram", "LinkSettings", "LinkStatistics", "VenueLink"]

log = logging.getLogger(__name__)

#: Which core method takes each inbound message type (other types — pongs, strays — are only counted).
_ROUTES: Final[dict[type, Callable[[TradingCore, Any, float], None]]] = {
    m.Bbo: TradingCore.on_bbo,
    m.ActiveAssetCtx: TradingCore.on_asset_ctx,
    m.OrderUpdates: TradingCore.on_order_updates,
    m.UserFills: TradingCore.on_user_fills,
    m.SubscriptionAck: TradingCore.on_subscription_ack,
    m.ChannelError: TradingCore.on_channel_error,
}

#: How often the venue's action budget is read (`userRateLimit`), besides at every sync.
RATE_LIMIT_EVERY_S: Final = 60.0

LATENCY_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, float("inf"))


@attrs.frozen(kw_only=True)
class LinkSettings:
    """Who we trade as, and the connection's configuration (the file's ``[connection]``)."""

    user: str
    vault_address: str | None = None
    is_mainnet: bool = False
    connection: ConnectionConfig = attrs.Factory(ConnectionConfig)
    # Not in the config file: the pause that lets a burst of reconcile requests coalesce.
    reconcile_retry_s: float = 1.0

    @property
    def sync_timeout_s(self) -> float:
        """A connect's whole sync (several info requests and the snapshots) may take half again as long
        as one info request."""
        return self.connection.info_timeout_s * 1.5


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


@attrs.frozen(kw_only=True)
class LinkStatistics:
    """A snapshot of the link's counters and connection state."""

    connected: bool
    inflight: int
    connects: int
    disconnects: int
    frames: Mapping[str, int]
    reconciles: int
    noops_accepted: int
    noops_refused: int
    awaiting_noop: int
    post_latency_buckets: tuple[tuple[float, int], ...]
    post_latency_sum: float
    # The most posts in flight at once in the current exchange minute (0 before its first post), and
    # the scheduler's limit for it.
    inflight_peak: int
    inflight_limit: int


@attrs.define
class _Counters:
    """The link's counters. `statistics()` snapshots them by name: each field but `post_latency` is a
    `LinkStatistics` field of the same name."""

    connects: int = 0
    disconnects: int = 0
    frames: Counter[str] = attrs.Factory(Counter)
    reconciles: int = 0
    noops_accepted: int = 0
    noops_refused: int = 0
    post_latency: LatencyHistogram = attrs.Factory(LatencyHistogram)


class VenueLink:
    """The session host: one per engine, across connections (see the module docstring)."""

    def __init__(
        self,
        settings: LinkSettings,
        core: TradingCore,
        *,
        signer: Signer | None,
        nonces: NonceManager,
        save_nonce: Callable[[int], None] | None = None,
    ) -> None:
        if signer is None and not core.settings.dry_run:
            raise ValueError("an engine that sends orders needs a signer")
        self.settings = settings
        self.core = core
        self.signer = signer
        self.nonces = nonces
        self.session: Session | None = None
        self.trace: LatencyTrace | None = None  # signal-to-wire instrumentation (benchmarks only)
        # The recorder (--record): every session gets it as its tap; with `subscribe_depth` the sync
        # subscribes l2Book too, which the core ignores (for a replay's fills beyond the top level).
        self.tap: FrameTap | None = None
        self.subscribe_depth = False
        self._save_nonce_to = save_nonce
        self._counters = _Counters()
        self._awaiting_noop: set[Cloid] = set()
        self._reconcile_wanted = trio.Event()
        self._changes = trio.lowlevel.ParkingLot()
        self._peak_minute: int | None = None  # the exchange minute whose inflight peak is being kept
        self._peak = 0
        self._margin_ready = False  # leverage set and balances checked (once per run)
        self._rate_limit_due = -float("inf")
        core.listener = self

    # --- views -------------------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        """Posts on the wire of the current connection (derived from its post table)."""
        return self.session.inflight if self.session is not None else 0

    def statistics(self) -> LinkStatistics:
        c = self._counters
        return LinkStatistics(
            connected=self.session is not None,
            inflight=self.inflight,
            # every counter under its own name (the frames Counter copied as a plain dict)
            **attrs.asdict(c, filter=attrs.filters.exclude("post_latency")),
            awaiting_noop=len(self._awaiting_noop),
            post_latency_buckets=tuple(c.post_latency.cumulative()),
            post_latency_sum=c.post_latency.total,
            inflight_peak=self._peak if self._peak_minute == self.core.exchange_ms() // 60_000 else 0,
            inflight_limit=self.core.settings.scheduler.inflight_limit,
        )

    # --- the core's listener -----------------------------------------------------------------------

    def after_step(self, *, reconcile_wanted: bool) -> None:
        """After every core step: wake the reconcile loop if asked, the sender if it may send, waiters."""
        if reconcile_wanted:
            self._reconcile_wanted.set()
        if self.session is not None and len(self.core.scheduler) and self.core.can_reduce:
            self.session.wake_sender()
        self._changes.unpark_all()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds; it is re-checked after every engine step (no polling)."""
        while not predicate():
            await self._changes.park()

    # --- session host: frames ----------------------------------------------------------------------

    def on_message(self, session: Session, msg: m.InboundMessage, now: float) -> None:
        kind = type(msg)
        self._counters.frames[kind.__name__] += 1
        route = _ROUTES.get(kind)
        if route is not None:
            route(self.core, msg, now)

    # --- session host: posts -----------------------------------------------------------------------

    def next_batch(self, inflight: int) -> Batch | None:
        return self.core.next_batch(inflight, trio.current_time())

    def sign(
        self, action_wire: dict[str, Any], nonce: int, expires_after: int | None = None
    ) -> dict[str, Any]:
        if self.signer is None:
            raise RuntimeError("a dry run signs nothing")
        vault = self.settings.vault_address
        signature = self.signer.sign_l1_action(
            action_wire,
            nonce,
            vault_address=vault,
            expires_after=expires_after,
            is_mainnet=self.settings.is_mainnet,
        )
        payload: dict[str, Any] = {"action": action_wire, "nonce": nonce, "signature": signature}
        if vault is not None:
            payload["vaultAddress"] = vault
        if expires_after is not None:
            payload["expiresAfter"] = expires_after
        # Every signed action goes out (a batch, a noop, updateLeverage): it spends the address's budget.
        self.core.on_action_signed(action_weight(action_wire), trio.current_time())
        return payload

    def next_nonce(self) -> int:
        return self.nonces.next()

    def on_batch_sent(self, session: Session, entry: PostEntry[m.PostResult]) -> None:
        sent_at = entry.sent_at if entry.sent_at is not None else 0.0
        self._note_inflight(session.inflight)
        self.core.on_batch_sent(entry.batch, sent_at, trio.current_time())

    def _note_inflight(self, inflight: int) -> None:
        """Keep the exchange minute's peak of posts in flight; journal a minute's peak when the next
        minute's first post goes out (and at disconnect): the testnet checklist's "inflight within
        the limit" is judged from these `inflight_peak` events."""
        minute = self.core.exchange_ms() // 60_000
        if minute != self._peak_minute:
            self._journal_inflight_peak()
            self._peak_minute = minute
        self._peak = max(self._peak, inflight)

    def _journal_inflight_peak(self) -> None:
        if self._peak_minute is not None and self._peak > 0:
            self._record_event(
                "inflight_peak",
                minute_ms=self._peak_minute * 60_000,
                peak=self._peak,
                limit=self.core.settings.scheduler.inflight_limit,
            )
        self._peak_minute, self._peak = None, 0

    def on_batch_written(self, session: Session, entry: PostEntry[m.PostResult]) -> None:
        self.core.on_batch_written(trio.current_time())

    def on_post_resolved(self, session: Session, entry: PostEntry[m.PostResult]) -> None:
        now = trio.current_time()
        if isinstance(entry.outcome, Reply) and entry.sent_at is not None:
            self._counters.post_latency.observe(now - entry.sent_at)
        refused = entry.outcome.payload if isinstance(entry.outcome, Reply) else None
        if isinstance(refused, m.ActionErr) and "nonce" in refused.message.lower():
            # A batch refused for its nonce: never expected (noops are answered elsewhere).
            log.error("post %d refused for its nonce %d: %s", entry.post_id, entry.nonce, refused.message)
            self._record_event("nonce_error", nonce=entry.nonce, message=refused.message)
        self.core.on_post_outcome(entry, now)
        if isinstance(entry.outcome, Timeout) and entry.batch.kind != "cancel":
            book = self.core.book
            unknown = {
                item.cloid
                for item in entry.batch.order_items
                if item.cloid is not None
                and (order := book.order(item.cloid)) is not None
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

    def on_noop_outcome(
        self, session: Session, original: PostEntry[m.PostResult], result: m.PostResult
    ) -> None:
        now = trio.current_time()
        cloids = [item.cloid for item in original.batch.order_items if item.cloid is not None]
        self._awaiting_noop.difference_update(cloids)
        if isinstance(result, m.ActionOk):
            self._counters.noops_accepted += 1
            log.info("noop for nonce %d accepted: the timed-out post can never execute", original.nonce)
            self.core.on_noop_accepted(cloids, now)
        else:
            self._counters.noops_refused += 1
            landed = isinstance(result, m.ActionErr) and "nonce" in result.message.lower()
            log.info(
                "noop for nonce %d refused (%s): %s",
                original.nonce,
                result,
                "the original landed; reconciling by orderStatus" if landed else "outcome open; reconciling",
            )
            self.core.request_reconcile(f"noop for nonce {original.nonce} refused", now)

    def on_session_end(self, session: Session, drained: Sequence[PostEntry[m.PostResult]]) -> None:
        if self.session is session:
            self.session = None
        self._counters.disconnects += 1
        self._awaiting_noop.clear()
        self._journal_inflight_peak()
        self.core.on_disconnect(len(drained), session.bad_frames, trio.current_time())

    # --- session host: sync and the reconcile loop -------------------------------------------------

    async def sync(self, session: Session) -> None:
        """Markets, subscriptions, snapshot, reconciliation → READY; then reconcile on request."""
        core = self.core
        self.session = session
        generation = core.on_connect(trio.current_time())
        self._counters.connects += 1
        self._record_event("connect", n=self._counters.connects)
        if self._counters.connects > 1:  # a reconnect: too many within 10 minutes is an alert
            core.alerts.on_reconnect(trio.current_time())
        try:
            markets = await load_markets(session, core.settings.markets)
            core.on_markets(markets.by_coin)
        except StartupError as exc:
            if self._counters.connects > 1:
                # The venue changed a market under a running engine (delisted, gone, new ids): it stops
                # like at a start, but first latches the hard stop, so that neither a supervisor's restart
                # nor anyone trades on until an operator has looked — and the alert says why.
                core.trip_hard_stop(f"at a re-sync: {exc}", trio.current_time())
            raise
        await self.read_rate_limit(session)
        if not self._margin_ready:
            await self.prepare_margin(session, markets)
        user = self.settings.user
        # Costs (issue 15): the account's fee rate, turned into each market's taker fee by the core.
        core.on_fees(await fetch_user_fees(session, user))
        for coin in markets:
            await session.subscribe({"type": "bbo", "coin": coin})
            await session.subscribe({"type": "activeAssetCtx", "coin": coin})
            if self.subscribe_depth:
                await session.subscribe({"type": "l2Book", "coin": coin})
        await session.subscribe({"type": "orderUpdates", "user": user})
        await session.subscribe({"type": "userFills", "user": user})
        readiness = core.readiness
        with trio.move_on_after(self.settings.sync_timeout_s) as waited:
            await self.wait_until(lambda: readiness.orders_acked and readiness.fills_snapshot)
        if waited.cancelled_caught:
            raise ConnectionLost(f"sync: still missing {', '.join(readiness.missing())}")
        await self.reconcile(session)
        self.save_nonce()
        log.info(
            "synced (generation %d): %s; %s",
            generation,
            ", ".join(f"{c} asset {s.asset}" for c, s in markets.by_coin.items()),
            ("READY (hard stop latched: no new entries)" if core.hard_stop_latch.latched else "READY")
            if core.ready
            else "waiting for " + ", ".join(readiness.missing() or ["clock"]),
        )
        while True:
            # Reconcile on request (evidence that the book is wrong), and at least every
            # `reconcile_every_s` anyway; while the clock blocks trading, every `clock_recheck_s`.
            every = self.settings.connection.reconcile_every_s
            recheck = min(every, self.settings.connection.clock_recheck_s) if core.clock_blocked else every
            reconcile_at = trio.current_time() + recheck
            # Between reconciles, the action budget is read every RATE_LIMIT_EVERY_S.
            while not self._reconcile_wanted.is_set() and trio.current_time() < reconcile_at:
                with trio.move_on_at(min(reconcile_at, self._rate_limit_due)):
                    await self._reconcile_wanted.wait()
                if trio.current_time() >= self._rate_limit_due:
                    # Not a post beyond the inflight limit: wait for room (after any core step).
                    await self.wait_until(lambda: session.inflight < core.settings.scheduler.inflight_limit)
                    await self.read_rate_limit(session)
            await trio.sleep(self.settings.reconcile_retry_s)  # let a burst of requests coalesce
            await self.reconcile(session)

    async def reconcile(self, session: Session) -> None:
        """Query the exchange's truth and swap it into the book; retry a deferred (lone empty) answer."""
        core = self.core
        while True:
            self._reconcile_wanted = trio.Event()
            unknown = [o.cloid for o in core.book.unknown_orders() if o.cloid not in self._awaiting_noop]
            state = await fetch_account_state(
                session,
                user=self.settings.user,
                dexes={s.dex for s in core.specs.values()},
                unknown=unknown,
                sends=lambda: core.book.sends,
            )
            now = trio.current_time()
            clock_blocked = None
            if state.clock is not None:
                # The exchange's clock projected to now from its round trip, not the stamp itself: the
                # queries after it (open orders, order statuses) would otherwise count as drift.
                drift = self.nonces.sync_with_server(state.clock.server_now_ms(now))
                clock_blocked = isinstance(drift, TimeDrift)
            dexes = [
                DexState(a.state.dex, a.state.positions, a.state.time, a.sends_before) for a in state.dexes
            ]
            self._counters.reconciles += 1
            result = core.apply_reconcile(
                dexes,
                state.open_orders,
                state.statuses,
                now,
                unknown_queried=len(unknown),
                clock_blocked=clock_blocked,
            )
            if not isinstance(result, ReconcileDeferred):
                return
            await trio.sleep(self.settings.reconcile_retry_s)

    # --- the action budget and margin ------------------------------------------------------------

    async def read_rate_limit(self, session: Session) -> None:
        """Read `userRateLimit` (an info request: it spends no budget) into the core."""
        self._rate_limit_due = trio.current_time() + RATE_LIMIT_EVERY_S
        sent_at_ask = self.core.executor.requests.sent
        answer = await session.info({"type": "userRateLimit", "user": self.settings.user})
        try:
            used, cap = answer["nRequestsUsed"], answer["nRequestsCap"]
        except (TypeError, KeyError) as exc:
            raise ConnectionLost(f"malformed userRateLimit answer: {exc!r}") from exc
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (used, cap)):
            raise ConnectionLost(f"malformed userRateLimit answer: {answer!r:.120}")
        self.core.on_rate_limit(used=used, cap=cap, sent_at_ask=sent_at_ask, now=trio.current_time())

    async def prepare_margin(self, session: Session, markets: Markets) -> None:
        """Once per run: each dex's balance must carry the per-market caps at the leverage set, then
        isolated leverage on every market (`updateLeverage` unless `activeAssetData` already shows
        it), confirmed in `activeAssetData`. A dry run only checks (it signs nothing)."""
        limits = self.core.settings.executor
        user = self.settings.user
        leverage = {
            coin: min(limits.leverage, spec.max_leverage or limits.leverage)
            for coin, spec in markets.by_coin.items()
        }
        for dex in markets.dexes:
            coins = [c for c, s in markets.by_coin.items() if s.dex == dex]
            needed = sum(limits.max_position_per_market_usd / leverage[c] for c in coins)
            raw = await session.info({"type": "clearinghouseState", "user": user, "dex": dex})
            try:
                state = m.decode_clearinghouse_state(raw, dex=dex, user=user)
            except m.ProtocolError as exc:
                raise ConnectionLost(f"malformed clearinghouseState: {exc}") from exc
            balance = state.account_value if state.account_value is not None else state.withdrawable
            balance = balance if balance is not None else Decimal(0)
            self._record_event("dex_balance", dex=dex, balance=balance, needed=needed)
            if balance < needed:
                raise StartupError(
                    f"dex {dex!r} holds {balance} USD of collateral but its caps need {needed:.2f} "
                    f"({len(coins)} market(s) x {limits.max_position_per_market_usd} USD at the "
                    f"leverage set): shortfall {needed - balance:.2f} USD; fund the dex or lower "
                    "limits.max_position_per_market_usd"
                )
        for coin, spec in markets.by_coin.items():
            wanted = leverage[coin]
            current = await self._leverage_of(session, coin)
            if current != ("isolated", wanted) and not self.core.settings.dry_run:
                action = action_to_wire(UpdateLeverageAction(spec.asset, leverage=wanted))
                result = await session.action(action)
                if result is None:
                    raise ConnectionLost(f"updateLeverage for {coin} got no answer")
                if isinstance(result, m.ActionErr) and is_budget_exhausted(result.message):
                    # Not a start-up error: flattens must still go out. Entries are refused while the
                    # budget is exhausted, and the leverage is set again at the next sync.
                    log.error(
                        "updateLeverage for %s refused, action budget exhausted: %s", coin, result.message
                    )
                    self.core.executor.requests.on_exhausted(trio.current_time())
                    self._record_event(
                        "request_budget_exhausted", action="updateLeverage", message=result.message
                    )
                    return
                if not isinstance(result, m.ActionOk):
                    raise StartupError(f"the venue refused isolated leverage {wanted} on {coin}: {result}")
                current = await self._leverage_of(session, coin)
                if current != ("isolated", wanted):
                    raise StartupError(
                        f"leverage on {coin} is {current} after updateLeverage, not isolated {wanted}"
                    )
            self._record_event("leverage", market=coin, type=current[0], value=current[1], wanted=wanted)
            log.info("%s: %s leverage %s (wanted isolated %d)", coin, current[0], current[1], wanted)
        self._margin_ready = True

    async def _leverage_of(self, session: Session, coin: str) -> tuple[str, int | None]:
        """`activeAssetData`'s leverage for `coin`: (type, value)."""
        answer = await session.info({"type": "activeAssetData", "user": self.settings.user, "coin": coin})
        leverage = answer.get("leverage") if isinstance(answer, dict) else None
        if not isinstance(leverage, dict) or not isinstance(leverage.get("type"), str):
            raise ConnectionLost(f"malformed activeAssetData answer for {coin}: {answer!r:.120}")
        value = leverage.get("value")
        return leverage["type"], value if isinstance(value, int) and not isinstance(value, bool) else None

    # --- persistence -------------------------------------------------------------------------------

    def save_nonce(self) -> None:
        """Persist the nonce high-water mark (after every sync and at exit)."""
        if self._save_nonce_to is None:
            return
        try:
            self._save_nonce_to(self.nonces.high_water)
        except OSError as exc:
            log.error("could not persist the nonce high-water mark: %s", exc)

    def _record_event(self, kind: str, **detail: object) -> None:
        self.core.journal.record(event(kind, self.core.exchange_ms(), **detail))
