"""The position book: our orders by cloid and our positions by market, kept honest by exchange evidence.

Orders move through `OrderState` (`queued → sent → resting / filled / rejected / canceled`, or `unknown`
until exchange evidence resolves it). A market is *pending* exactly while one of its orders is not
terminal — derived from the orders on every query, never a separate set that could drift, so every
terminal transition releases the mark exactly once by construction, and terminal is absorbing.

Positions change only through fills, deduplicated by `tid` in a bounded memory (oldest evicted, never
cleared wholesale). `userFills` snapshots are never applied: their tids are remembered so they can never
be applied later, and they only resolve unknown orders. A post reply's `filled {totalSz, avgPx}` settles
an order before its fills arrive; until they do, the difference counts as exposure for the gates (so a
fast reply cannot open a second position), and if it persists past a grace period reconciliation is
requested. `reconcile()` replaces the positions with the exchange's truth in one assignment.

Everything is synchronous and takes `now` (the engine's monotonic seconds) from the caller; outputs go to
the shared `Outbox`. Prices and sizes are `Decimal`.

Why one module of ~900 lines: the book is one state machine with one writer per piece of state
(`_put` for orders and their unsettled index, `_positions` swapped in one assignment) whose invariants
the stateful property test checks as a whole; its value types (`orders.py`, `positions.py`) and the
venue's fill-by-fill account (`ledger.py`) live beside it.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import attrs

from hip3_trio.position.ledger import EntryHint, FillLedger
from hip3_trio.position.orders import TrackedOrder, is_settled, refused_as_increase
from hip3_trio.position.positions import Position, apply_venue_fill, entry_px
from hip3_trio.position.records import (
    OrderRejected,
    OrderState,
    OrderTransition,
    Outbox,
    PositionCorrected,
    ReconcileRequested,
    SlippageMeasured,
    TradeClosed,
    UnknownOrderEscalated,
)
from hip3_trio.wire.actions import Cloid, OrderWire
from hip3_trio.wire.markets import dex_of
from hip3_trio.wire.messages import (
    AssetPosition,
    Fill,
    Filled,
    OrderUpdate,
    OrderUpdates,
    Resting,
    StatusKind,
    UserFills,
    WsOrder,
)

__all__ = ["BookConfig", "DexState", "PositionBook", "ReconcileDeferred", "Reconciled"]

log = logging.getLogger(__name__)

ZERO: Final = Decimal(0)
BPS: Final = Decimal(10_000)


@attrs.frozen(kw_only=True)
class BookConfig:
    """Memory bounds and deadlines. `tid_memory`: recent fill ids kept for deduplication;
    `order_memory`: orders kept (terminal ones are evicted oldest first beyond it);
    `unknown_deadline_s`: how long an unknown order may wait for evidence before it is escalated;
    `mismatch_grace_s`: how long a reply's fill total may differ from the fills seen."""

    tid_memory: int = attrs.field(default=5000, validator=attrs.validators.gt(0))
    order_memory: int = attrs.field(default=2000, validator=attrs.validators.gt(0))
    unknown_deadline_s: float = 60.0
    mismatch_grace_s: float = 5.0


@attrs.frozen
class DexState:
    """One dex's `clearinghouseState` as the venue answered it: the unit a reconciliation is judged in.

    The venue answers per dex, at its own time, so each dex carries its own boundary: `as_of_ms` is the
    state's exchange time (fills up to it are in `positions`), and `sends_before` is `PositionBook.sends`
    when the answer arrived — an order sent after that cannot be in this state, whatever its fill's
    timestamp says (None: every send so far may be).
    """

    dex: str
    positions: tuple[AssetPosition, ...]
    as_of_ms: int | None = None
    sends_before: int | None = None


@attrs.frozen
class Reconciled:
    """A reconciliation was applied: the corrections it made and the unknown orders it resolved."""

    corrections: tuple[PositionCorrected, ...]
    resolved: tuple[Cloid, ...]
    unresolved: tuple[Cloid, ...]


@attrs.frozen
class ReconcileDeferred:
    """A reconciliation was refused (nothing changed); ask again. `reason` says why."""

    reason: str


@attrs.frozen
class _Seen:
    """A remembered fill id; `signed_sz` is set only if the fill moved a position (for reconcile)."""

    market: str
    time_ms: int
    signed_sz: Decimal | None


@attrs.frozen
class BookStatistics:
    """A snapshot of the book's sizes. `stale_oids`: oid-map entries that no longer name their order's
    current oid (an order re-sent under its cloid) — pruned only with their order."""

    orders: int
    unsettled: int
    oids: int
    stale_oids: int
    seen_fills: int
    live_orders: int
    unknown_orders: int
    open_positions: int
    watermarks: int
    unknown_statuses: int
    in_doubt: int


class PositionBook:
    """Orders by cloid and positions by market, for the configured `markets` only.

    Fills and positions of other coins (another dex, a manual trade elsewhere) are ignored: this engine
    only owns its own markets.
    """

    def __init__(
        self,
        markets: Collection[str],
        outbox: Outbox | None = None,
        config: BookConfig | None = None,
        *,
        entry_hints: Mapping[Cloid, EntryHint] | None = None,
    ) -> None:
        self.markets = frozenset(markets)
        self.outbox = outbox if outbox is not None else Outbox()
        self.config = config if config is not None else BookConfig()
        self._orders: dict[Cloid, TrackedOrder] = {}
        # The index the hot path scans (gates, pending marks, exposure): orders not yet settled. Kept by
        # `_put`, the one place an order is stored; see `_is_settled`.
        self._unsettled: dict[Cloid, TrackedOrder] = {}
        self._by_oid: dict[int, Cloid] = {}
        self._positions: dict[str, Position] = {}
        self._seen: OrderedDict[int, _Seen] = OrderedDict()
        self._included_through_ms: dict[str, int] = {}
        self._sends = 0
        # Per market: `sends` as the last reconciled state of its dex was answered (see `DexState`).
        self._sends_at_reconcile: dict[str, int] = {}
        # Per dex: consecutive empty answers while we track positions there (a lone one is refused).
        self._empty_answers: dict[str, int] = {}
        # Per market: the position as the venue's own fills tell it (each fill's `startPosition`), with
        # its opening fill's time, fees and cloid: what a position learned by reconciliation is dated
        # and accounted from. Absent: the fills seen do not reach back to the position's opening.
        self._entry_hints: dict[Cloid, EntryHint] = dict(entry_hints or {})
        self._ledger = FillLedger(self._entry_hints)
        # Markets whose position exchange evidence contradicted, until the next reconciliation of them.
        self._doubted: set[str] = set()
        self._unknown_statuses_logged: set[str] = set()

    # --- queries -----------------------------------------------------------------------------------

    @property
    def sends(self) -> int:
        """How many times an order was sent so far: the boundary a reconciliation's query is taken at."""
        return self._sends

    def statistics(self) -> BookStatistics:
        """The sizes of what the book remembers (the soak's memory probes read these)."""
        stale = sum(
            1 for oid, cloid in self._by_oid.items() if (o := self._orders.get(cloid)) is None or o.oid != oid
        )
        return BookStatistics(
            orders=len(self._orders),
            unsettled=len(self._unsettled),
            oids=len(self._by_oid),
            stale_oids=stale,
            seen_fills=len(self._seen),
            live_orders=sum(1 for _ in self._live(None)),
            unknown_orders=len(self.unknown_orders()),
            open_positions=sum(1 for p in self._positions.values() if p.size != 0),
            watermarks=len(self._included_through_ms),
            unknown_statuses=len(self._unknown_statuses_logged),
            in_doubt=len(self._doubted),
        )

    def order(self, cloid: Cloid) -> TrackedOrder | None:
        return self._orders.get(cloid)

    def orders(self, market: str | None = None) -> tuple[TrackedOrder, ...]:
        """Tracked orders (optionally of one market), oldest first."""
        return tuple(o for o in self._orders.values() if market is None or o.market == market)

    def live_orders(self, market: str | None = None) -> tuple[TrackedOrder, ...]:
        """Non-terminal orders (optionally of one market): the ones that hold a pending mark."""
        return tuple(o for o in self._live(market))

    def position(self, market: str) -> Position | None:
        return self._positions.get(market)

    @property
    def positions(self) -> Mapping[str, Position]:
        """Open positions by market (a copy)."""
        return dict(self._positions)

    def size(self, market: str) -> Decimal:
        """The signed position from fills (0 when flat)."""
        pos = self._positions.get(market)
        return pos.size if pos is not None else ZERO

    def expected_size(self, market: str) -> Decimal:
        """The position once the fills that replies already announced have arrived."""
        pending_fills = sum(
            (o.sign * o.unconfirmed_fill for o in self._unsettled.values() if o.market == market), ZERO
        )
        return self.size(market) + pending_fills

    def has_position(self, market: str) -> bool:
        """True if a position is open, or a reply announced fills that have not arrived yet."""
        return self.size(market) != 0 or self.expected_size(market) != 0

    def pending(self, market: str) -> bool:
        """True while any order of `market` is not terminal (queued, sent, resting or unknown)."""
        return any(True for _ in self._live(market))

    def live_flatten(self, market: str) -> TrackedOrder | None:
        """The reduce-only order of `market` that is queued, sent or resting, if any.

        An unknown reduce-only order does not count: another reduce-only order can never increase the
        position, so the time stop may retry while the unknown one is being reconciled.
        """
        for o in self._live(market):
            if o.reduce_only and o.state is not OrderState.UNKNOWN:
                return o
        return None

    def unknown_orders(self) -> tuple[TrackedOrder, ...]:
        return tuple(o for o in self._unsettled.values() if o.state is OrderState.UNKNOWN)

    def exposure(self, market: str) -> Decimal:
        """Absolute size at risk: the larger of the position and the expected position, plus what live
        new (non-reduce-only) orders may still add. Reduce-only orders never add exposure."""
        held = max(abs(self.size(market)), abs(self.expected_size(market)))
        adding = sum((o.open_size for o in self._live(market) if not o.reduce_only), ZERO)
        return held + adding

    def notional(self, market: str, mark: Decimal) -> Decimal:
        """Exposure of `market` valued at `mark`."""
        return self.exposure(market) * mark

    def exposed_markets(self) -> frozenset[str]:
        """Markets with a position, announced fills or live new orders."""
        return frozenset(m for m in self.markets if self.exposure(m) != 0)

    def total_notional(self, marks: Mapping[str, Decimal]) -> Decimal | None:
        """Sum of `notional` over exposed markets, or None if any of them has no mark (fail closed)."""
        total = ZERO
        for market in self.exposed_markets():
            mark = marks.get(market)
            if mark is None:
                return None
            total += self.notional(market, mark)
        return total

    def remember_entries(self, hints: Mapping[Cloid, EntryHint]) -> None:
        """Entry orders the journal remembers from earlier runs (at start-up): what positions learned by
        reconciliation are dated and attributed with when their opening order is not tracked."""
        self._entry_hints.update(hints)

    def in_doubt(self, market: str) -> bool:
        """True while exchange evidence says the book is wrong about `market` (a fill that started from
        another position, a reduce-only order refused as increasing) and no reconciliation has answered
        since: a flatten sized from the book now would be sized from a wrong position."""
        return market in self._doubted

    # --- our side of the order lifecycle (called by the executor) ----------------------------------

    def register(
        self,
        market: str,
        order: OrderWire,
        now: float,
        *,
        expected_edge_bps: Decimal | None = None,
        signal_px: Decimal | None = None,
        reason: str = "",
    ) -> TrackedOrder:
        """Track a new order as `queued`; from now on its market is pending. Silent: the submitter
        journals the order once the scheduler accepted it (see `unregister` for the rollback)."""
        if order.cloid is None:
            raise ValueError("an order must carry a cloid to be tracked")
        if order.cloid in self._orders:
            raise ValueError(f"cloid {order.cloid} is already tracked")
        if market not in self.markets:
            raise ValueError(f"market {market!r} is not configured")
        self._prune()
        tracked = TrackedOrder(
            cloid=order.cloid,
            market=market,
            is_buy=order.is_buy,
            limit_px=order.limit_px,
            size=order.sz,
            reduce_only=order.reduce_only,
            state=OrderState.QUEUED,
            created_at=now,
            changed_at=now,
            expected_edge_bps=expected_edge_bps,
            signal_px=signal_px,
            reason=reason,
        )
        self._put(tracked)
        return tracked

    def unregister(self, cloid: Cloid) -> None:
        """Roll back a `register` whose order the scheduler refused: as if it had never existed."""
        order = self._orders.get(cloid)
        if order is None or order.state is not OrderState.QUEUED:
            raise ValueError(f"only a queued order can be unregistered, not {order!r:.80}")
        del self._orders[cloid]
        del self._unsettled[cloid]

    def mark_sent(self, cloid: Cloid, now: float) -> None:
        """`queued → sent`: its post may be on the wire."""
        order = self._orders.get(cloid)
        if order is not None and order.state is OrderState.QUEUED:
            self._sends += 1
            first = order.first_sent_seq or self._sends
            self._set_state(order, OrderState.SENT, now, first_sent_seq=first, sent_seq=self._sends)
        else:
            log.warning("mark_sent for %s in state %s", cloid, order.state.value if order else "untracked")

    def requeued(self, cloid: Cloid, now: float, detail: str) -> None:
        """`sent → queued`: a reduce-only order whose post failed is back in the scheduler's queue."""
        order = self._orders.get(cloid)
        if order is not None and order.state in (OrderState.SENT, OrderState.QUEUED):
            self._set_state(order, OrderState.QUEUED, now, detail)

    def release_unsent(self, cloid: Cloid, now: float, detail: str) -> None:
        """`queued/sent → canceled` for an order that certainly never reached the exchange."""
        order = self._orders.get(cloid)
        if order is not None:
            self._set_state(order, OrderState.CANCELED, now, detail)

    def mark_unknown(self, cloid: Cloid, now: float, detail: str) -> None:
        """The order's fate is unknown (timeout, disconnect, unreadable status): reconcile it."""
        order = self._orders.get(cloid)
        if order is None or order.state is OrderState.UNKNOWN:
            return
        if self._set_state(order, OrderState.UNKNOWN, now, detail).state is OrderState.UNKNOWN:
            self.outbox.emit(ReconcileRequested(reason=f"order {cloid} unknown: {detail}", at=now))

    def resolve_never_executed(self, cloid: Cloid, now: float, detail: str) -> None:
        """`unknown → canceled` on proof the order can never execute (its nonce was invalidated by an
        accepted noop). An order that left `unknown` meanwhile (an update or a fill) is left alone."""
        order = self._orders.get(cloid)
        if order is not None and order.state is OrderState.UNKNOWN:
            self._set_state(order, OrderState.CANCELED, now, detail)

    def on_reply_filled(self, cloid: Cloid, filled: Filled, now: float) -> None:
        """The post reply says the order filled `total_sz` at `avg_px`: it is settled.

        The fills will follow on `userFills`; until they match, the difference counts as exposure.
        """
        order = self._orders.get(cloid)
        if order is None:
            log.error("filled reply for untracked order %s: %s", cloid, filled)
            return
        order = self._note_oid(order, filled.oid)
        changes: dict[str, Any] = {
            "oid": filled.oid,
            "reply_total": filled.total_sz,
            "reply_avg_px": filled.avg_px,
            "settled_at": now,
        }
        if order.state is OrderState.REJECTED:
            log.error("order %s was rejected but its reply says filled %s", cloid, filled.total_sz)
            self.outbox.emit(ReconcileRequested(reason=f"order {cloid} rejected and filled", at=now))
        order = self._set_state(order, OrderState.FILLED, now, "post reply: filled", **changes)
        if not order.reduce_only and order.signal_px is not None and filled.total_sz > 0:
            adverse = filled.avg_px - order.signal_px if order.is_buy else order.signal_px - filled.avg_px
            self.outbox.emit(SlippageMeasured(market=order.market, bps=adverse / order.signal_px * BPS))
        self._check_overfill(order, now)

    def on_reply_resting(self, cloid: Cloid, resting: Resting, now: float) -> None:
        """The post reply says the order rests under `oid`."""
        order = self._orders.get(cloid)
        if order is None:
            log.error("resting reply for untracked order %s", cloid)
            return
        order = self._note_oid(order, resting.oid)
        self._set_state(order, OrderState.RESTING, now, "post reply: resting", oid=resting.oid)

    def on_reply_error(self, cloid: Cloid, message: str, now: float) -> None:
        """The exchange refused the order: rejected (an `OrderRejected` event goes to the risk monitor)."""
        order = self._orders.get(cloid)
        if order is not None:
            self._set_state(order, OrderState.REJECTED, now, message)

    # --- exchange streams --------------------------------------------------------------------------

    def on_order_updates(self, msg: OrderUpdates, now: float) -> None:
        """Apply `orderUpdates`: `sz` is the remaining size; an unknown status sends the order to
        reconciliation (logged once per status) instead of guessing."""
        for update in msg.updates:
            order = self._find(update.order.cloid, update.order.oid)
            if order is None:
                log.debug("order update for an order we do not track: %s", update.order.oid)
                continue
            order = self._note_oid(order, update.order.oid)
            self._apply_status(order, update, now, source="order update")

    def on_user_fills(self, msg: UserFills, now: float) -> int:
        """Apply new fills to positions; returns how many moved a position.

        Duplicates (by tid) are skipped. A snapshot is never applied: its tids are remembered and its
        fills only resolve unknown orders. Fills of unconfigured coins are remembered and ignored.
        """
        applied = 0
        new: list[tuple[Fill, TrackedOrder | None]] = []
        for fill in msg.fills:
            if fill.tid in self._seen:
                continue
            order = self._find(fill.cloid, fill.oid)
            in_state = self._in_reconciled_state(fill.coin, fill.time, order)
            covered = in_state is True
            # Sent before and after the state: the fill may be in it or not. It moves no position but
            # counts as exposure of its order (as a snapshot fill would) until a reconciliation decides.
            unsure = in_state is None and not msg.is_snapshot
            reflected = covered or not (msg.is_snapshot or unsure)  # it is (or now goes) into a position
            if order is not None:
                order = self._attribute(order, fill, now, reflected=reflected, snapshot=msg.is_snapshot)
            if unsure:
                log.warning("fill %s of a re-sent order may be in the reconciled state", fill.tid)
                self.outbox.emit(
                    ReconcileRequested(reason=f"fill {fill.tid}: sent before and after the state", at=now)
                )
            if msg.is_snapshot or covered or unsure or fill.coin not in self.markets:
                if covered and not msg.is_snapshot:
                    log.info("fill %s at %d is already in the reconciled position", fill.tid, fill.time)
                self._remember(fill.tid, _Seen(fill.coin, fill.time, None))
            else:
                self._check_start_position(fill, now)
                self._apply_to_position(fill, order, now)
                applied += 1
            if fill.coin in self.markets:
                new.append((fill, order))
        # The ledger follows each market in the venue's order (a snapshot's order is not specified).
        for fill, order in sorted(new, key=lambda pair: (pair[0].time, pair[0].tid)):
            self._ledger.on_fill(fill, order, now)
        return applied

    def _check_start_position(self, fill: Fill, now: float) -> None:
        """A live fill about to move a position says what the venue held before it (`startPosition`).
        If that is not what the book holds, the book is wrong: reconcile now, never guess."""
        held = self.size(fill.coin)
        if fill.start_position != held:
            self._doubted.add(fill.coin)
            log.warning(
                "fill %s on %s starts from %s but the book holds %s: reconciling",
                fill.tid,
                fill.coin,
                fill.start_position,
                held,
            )
            self.outbox.emit(
                ReconcileRequested(
                    reason=f"fill {fill.tid} on {fill.coin}: venue held {fill.start_position}, book {held}",
                    at=now,
                )
            )

    def reconcile(
        self,
        positions: Iterable[AssetPosition],
        open_orders: Iterable[WsOrder],
        order_statuses: Mapping[Cloid, OrderUpdate | None],
        now: float,
        *,
        as_of_ms: int | None = None,
    ) -> Reconciled | ReconcileDeferred:
        """`reconcile_dexes` for one answer covering every dex we trade, all as of `as_of_ms`, taken
        after every send so far (the single-snapshot form: tests and callers with one state)."""
        listed = tuple(positions)
        dexes = sorted({dex_of(market) for market in self.markets})
        states = [
            DexState(dex, tuple(p for p in listed if dex_of(p.coin) == dex), as_of_ms, self._sends)
            for dex in dexes
        ]
        return self.reconcile_dexes(states, open_orders, order_statuses, now)

    def reconcile_dexes(
        self,
        states: Sequence[DexState],
        open_orders: Iterable[WsOrder],
        order_statuses: Mapping[Cloid, OrderUpdate | None],
        now: float,
    ) -> Reconciled | ReconcileDeferred:
        """Replace positions with the exchange's truth in one step and resolve orders from its answers.

        `states`: `clearinghouseState(dex)` of each dex asked, each with its own boundary (`DexState`);
        markets of a dex not in `states` keep their positions. `open_orders`: `openOrders(dex)`;
        `order_statuses`: `orderStatus` by cloid for the unknown orders (None = the exchange does not know
        the order: it never executed). Fills up to a dex's `as_of_ms` are in its truth (applied ones are
        not re-added, late ones are not applied again), later ones are kept.

        Judged per dex, as the venue answers per dex: a first answer with no positions for a dex on which
        we track some is refused (the venue has been seen to answer empty intermittently) and the whole
        reconciliation is deferred; the next empty answer for that dex confirms it. Continuing positions
        keep their entry time; a position that appears is dated and accounted from the venue's own fills
        (its opening fill, `_ledger`), else from the journal's entry order (`EntryHint`), else it is due
        now — never "opened now".
        """
        answer: dict[str, AssetPosition] = {}
        lone_empty: list[str] = []
        for state in states:
            mine = {p.coin: p for p in state.positions if p.coin in self.markets and p.szi != 0}
            tracked = any(p.size != 0 for m, p in self._positions.items() if dex_of(m) == state.dex)
            if mine or not tracked:
                self._empty_answers.pop(state.dex, None)
            else:
                self._empty_answers[state.dex] = count = self._empty_answers.get(state.dex, 0) + 1
                if count < 2:
                    lone_empty.append(state.dex)
            answer |= mine
        if lone_empty:
            log.warning(
                "reconcile: empty positions answer for dex %s while tracking some; waiting for a second",
                ", ".join(repr(d) for d in lone_empty),
            )
            return ReconcileDeferred(
                f"empty positions answer for dex {', '.join(repr(d) for d in lone_empty)} "
                "needs a confirming second answer"
            )
        for state in states:
            self._empty_answers.pop(state.dex, None)
        by_market = {m: s for s in states for m in self.markets if dex_of(m) == s.dex}
        new_positions, corrections = self._reconciled_positions(answer, by_market, now)
        resolved, unresolved = self._reconcile_orders(open_orders, order_statuses, by_market, now)
        for order in list(self._unsettled.values()):
            dex_state = by_market.get(order.market)
            if dex_state and order.unconfirmed_fill and self._covered(order, now, dex_state.as_of_ms):
                self._put(attrs.evolve(order, confirmed=True))
        self._positions = new_positions  # the one step: never clear-then-refill
        self._doubted.difference_update(by_market)
        for market, state in by_market.items():
            if state.as_of_ms is None:
                continue
            boundary = state.sends_before
            self._sends_at_reconcile[market] = self._sends if boundary is None else boundary
            self._included_through_ms[market] = max(
                state.as_of_ms, self._included_through_ms.get(market, state.as_of_ms)
            )
        for correction in corrections:
            log.warning("reconcile: %s %s → %s", correction.market, correction.old_size, correction.new_size)
            self.outbox.emit(correction)
        return Reconciled(tuple(corrections), tuple(resolved), tuple(unresolved))

    def _in_reconciled_state(self, market: str, time_ms: int, order: TrackedOrder | None) -> bool | None:
        """Is an execution (of `order`, if ours) on `market` stamped `time_ms` already in the reconciled
        positions? Yes if it is not later than the state of the market's dex — unless the order was sent
        after that state was answered: such a state cannot hold its executions, not even one stamped in
        the very millisecond of the state (a flatten sent the moment a re-sync ends). None (cannot tell)
        for an order sent both before and after it (requeued, then sent again): its execution may
        predate the state (in it) or come from the later send (not in it)."""
        watermark = self._included_through_ms.get(market)
        if watermark is None or time_ms > watermark:
            return False
        boundary = self._sends_at_reconcile.get(market, 0)
        if order is None or order.sent_seq <= boundary:
            return True
        return None if order.first_sent_seq <= boundary else False

    def _covered(self, order: TrackedOrder, now: float, as_of_ms: int | None) -> bool:
        """Does the reconciled state hold what `order` is known to have filled? Yes if that evidence is
        timestamped at or before the state, or if a reply announced it longer than the grace period ago
        (its fills were lost, e.g. on a disconnect). A reply that just came in may describe an execution
        the state does not hold yet: it stays exposure until its fills arrive or the next reconcile."""
        if as_of_ms is not None and order.evidence_ms is not None and order.evidence_ms <= as_of_ms:
            return True
        return order.settled_at is not None and now - order.settled_at >= self.config.mismatch_grace_s

    def check(self, now: float) -> None:
        """Periodic housekeeping (about every second): escalate unknown orders past the deadline and
        request reconciliation for reply/fill mismatches that persisted past the grace period."""
        cfg = self.config
        for order in list(self._unsettled.values()):
            if order.state is OrderState.UNKNOWN and now - order.changed_at >= cfg.unknown_deadline_s:
                since = order.changed_at
                log.error(
                    "order %s on %s unknown for %.1f s: escalated", order.cloid, order.market, now - since
                )
                self._set_state(order, OrderState.ESCALATED, now, "unresolved past the deadline")
                self.outbox.emit(
                    UnknownOrderEscalated(cloid=order.cloid, market=order.market, unknown_since=since, at=now)
                )
            elif (
                order.unconfirmed_fill
                and not order.mismatch_reported
                and order.settled_at is not None
                and now - order.settled_at >= cfg.mismatch_grace_s
            ):
                self._report_mismatch(order, now, f"{order.unconfirmed_fill} announced filled, no fill seen")

    # --- internals ---------------------------------------------------------------------------------

    def _live(self, market: str | None) -> Iterator[TrackedOrder]:
        return (
            o
            for o in self._unsettled.values()
            if not o.state.is_terminal and (market is None or o.market == market)
        )

    def _find(self, cloid: str | None, oid: int | None) -> TrackedOrder | None:
        if cloid is not None:
            try:
                found = self._orders.get(Cloid(cloid))
            except ValueError:
                found = None
            if found is not None:
                return found
        key = self._by_oid.get(oid) if oid is not None else None
        return self._orders.get(key) if key is not None else None

    def _put(self, order: TrackedOrder) -> None:
        """Store `order`'s new version: the only write to `_orders`, so the `_unsettled` index cannot
        drift from it."""
        self._orders[order.cloid] = order
        if is_settled(order):
            self._unsettled.pop(order.cloid, None)
        else:
            self._unsettled[order.cloid] = order

    def _note_oid(self, order: TrackedOrder, oid: int) -> TrackedOrder:
        """Record the exchange's order id for `order`; returns the current version of the order."""
        self._by_oid[oid] = order.cloid
        current = self._orders[order.cloid]
        if current.oid != oid:
            current = attrs.evolve(current, oid=oid)
            self._put(current)
        return current

    def _set_state(
        self, order: TrackedOrder, state: OrderState, now: float, detail: str = "", **changes: Any
    ) -> TrackedOrder:
        """The one place an order changes state. Terminal is absorbing — except that an escalated order
        may still learn its real terminal fate (no mark changes: both are terminal). Changes that come
        with a refused transition (oid, reply totals) are still recorded."""
        old = order.state
        allowed = not old.is_terminal or (old is OrderState.ESCALATED and state.is_terminal)
        if not allowed or old is state:
            if not allowed:
                log.debug("order %s stays %s (ignoring %s: %s)", order.cloid, old.value, state.value, detail)
            updated = attrs.evolve(order, **changes) if changes else order
            self._put(updated)
            return updated
        updated = attrs.evolve(order, state=state, changed_at=now, detail=detail or order.detail, **changes)
        self._put(updated)
        self.outbox.emit(
            OrderTransition(
                cloid=order.cloid,
                market=order.market,
                old=old,
                new=state,
                at=now,
                detail=detail,
                oid=updated.oid,
                filled_sz=max(
                    updated.reply_total or ZERO, updated.executed_sz, updated.filled_sz + updated.snapshot_sz
                ),
                avg_px=updated.reply_avg_px,
            )
        )
        if state is OrderState.REJECTED:
            self.outbox.emit(OrderRejected(market=order.market, message=detail))
            if order.reduce_only and refused_as_increase(detail):
                # The venue holds no position this order reduces: the book is wrong about this market.
                self._doubted.add(order.market)
                log.warning(
                    "reduce-only order %s on %s refused (%s): reconciling", order.cloid, order.market, detail
                )
                self.outbox.emit(
                    ReconcileRequested(reason=f"reduce-only order {order.cloid} refused: {detail}", at=now)
                )
        return updated

    def _apply_status(self, order: TrackedOrder, update: OrderUpdate, now: float, *, source: str) -> None:
        kind = update.kind
        if kind is StatusKind.UNKNOWN:
            if update.status not in self._unknown_statuses_logged:
                self._unknown_statuses_logged.add(update.status)
                log.warning("unknown order status %r (order %s): reconciling", update.status, order.cloid)
            self.mark_unknown(order.cloid, now, f"{source}: unknown status {update.status!r}")
            return
        remaining = ZERO if kind is StatusKind.FILLED else update.order.sz
        orig = update.order.orig_sz
        executed = order.executed_sz if orig is None else max(order.executed_sz, orig - remaining)
        changes: dict[str, Any] = {"exchange_remaining": remaining, "executed_sz": executed}
        if executed > 0:
            changes["evidence_ms"] = max(update.status_timestamp, order.evidence_ms or 0)
            if order.settled_at is None:
                changes["settled_at"] = now
        if self._in_reconciled_state(order.market, update.status_timestamp, order) is True:
            changes["confirmed"] = True  # the reconciled position already holds what it executed
        detail = f"{source}: {update.status}"
        if kind in (StatusKind.OPEN, StatusKind.TRIGGERED):
            self._set_state(order, OrderState.RESTING, now, detail, **changes)
        elif kind is StatusKind.FILLED:
            self._set_state(order, OrderState.FILLED, now, detail, **changes)
        elif kind is StatusKind.CANCELED:
            self._set_state(order, OrderState.CANCELED, now, detail, **changes)
        else:
            self._set_state(order, OrderState.REJECTED, now, update.status, **changes)

    def _attribute(
        self, order: TrackedOrder, fill: Fill, now: float, *, reflected: bool, snapshot: bool
    ) -> TrackedOrder:
        """Count a new fill towards its order — as `filled_sz` if a position reflects it, else as
        `snapshot_sz` (still exposure until reconciled).

        A snapshot is complete for its period, so its fills resolve an unknown order as filled. A live
        fill does not: it proves the order traded but not how much, and the rest of its fills may still
        be on the way — the order stays unknown (its unfilled size still counted) until reconciliation.
        """
        current = self._note_oid(order, fill.oid)
        if reflected:
            order = attrs.evolve(current, filled_sz=current.filled_sz + fill.sz)
        else:
            order = attrs.evolve(
                current,
                snapshot_sz=current.snapshot_sz + fill.sz,
                settled_at=now if current.settled_at is None else current.settled_at,
                evidence_ms=max(fill.time, current.evidence_ms or 0),
            )
        self._put(order)
        unknown = order.state in (OrderState.UNKNOWN, OrderState.ESCALATED)
        resolves_unknown = snapshot and not reflected and unknown
        late_for_escalated = reflected and order.state is OrderState.ESCALATED
        all_filled = order.state is OrderState.RESTING and order.filled_sz + order.snapshot_sz >= order.size
        if resolves_unknown or late_for_escalated or all_filled:
            order = self._set_state(order, OrderState.FILLED, now, f"fill {fill.tid} seen")
        self._check_overfill(order, now)
        return order

    def _check_overfill(self, order: TrackedOrder, now: float) -> None:
        seen = order.filled_sz + order.snapshot_sz
        if order.reply_total is not None and seen > order.reply_total and not order.confirmed:
            self._report_mismatch(order, now, f"fills {seen} > reply {order.reply_total}")

    def _report_mismatch(self, order: TrackedOrder, now: float, what: str) -> None:
        if order.mismatch_reported:
            return
        log.warning("order %s on %s: %s", order.cloid, order.market, what)
        self._put(attrs.evolve(self._orders[order.cloid], mismatch_reported=True))
        self.outbox.emit(ReconcileRequested(reason=f"order {order.cloid}: {what}", at=now))

    def _apply_to_position(self, fill: Fill, order: TrackedOrder | None, now: float) -> None:
        signed = fill.sz if fill.is_buy else -fill.sz
        pos, trade = apply_venue_fill(self._positions.get(fill.coin), fill, now, order)
        if pos is None:
            self._positions.pop(fill.coin, None)
        else:
            self._positions[fill.coin] = pos
        self._remember(fill.tid, _Seen(fill.coin, fill.time, signed))
        if trade is not None:
            self.outbox.emit(trade)
            self.outbox.emit(TradeClosed(market=trade.market, pnl=trade.net_pnl))

    def _remember(self, tid: int, seen: _Seen) -> None:
        self._seen[tid] = seen
        while len(self._seen) > self.config.tid_memory:
            self._seen.popitem(last=False)

    def _applied_after(self, market: str, as_of_ms: int | None) -> Decimal:
        """Signed size of fills already applied to `market` that are newer than the exchange's state."""
        if as_of_ms is None:
            return ZERO
        return sum(
            (
                s.signed_sz
                for s in self._seen.values()
                if s.market == market and s.signed_sz is not None and s.time_ms > as_of_ms
            ),
            ZERO,
        )

    def _reconciled_positions(
        self, answer: Mapping[str, AssetPosition], states: Mapping[str, DexState], now: float
    ) -> tuple[dict[str, Position], list[PositionCorrected]]:
        new_positions = {m: p for m, p in self._positions.items() if m not in states}
        corrections: list[PositionCorrected] = []
        for market in sorted(states):
            as_of_ms = states[market].as_of_ms
            old = self._positions.get(market)
            old_size = old.size if old is not None else ZERO
            truth = answer.get(market)
            size = (truth.szi if truth is not None else ZERO) + self._applied_after(market, as_of_ms)
            if size == old_size:
                if old is not None:
                    new_positions[market] = old
                continue
            corrections.append(PositionCorrected(market=market, old_size=old_size, new_size=size, at=now))
            if size == 0:
                continue
            px = entry_px(truth, old)
            if old is not None and old.size != 0 and (old.size > 0) == (size > 0):
                new_positions[market] = attrs.evolve(old, size=size, avg_entry_px=px, corrected=True)
            else:
                new_positions[market] = self._learned_position(market, size, px, now, as_of_ms)
        return new_positions, corrections

    def _learned_position(
        self, market: str, size: Decimal, entry_px: Decimal, now: float, as_of_ms: int | None
    ) -> Position:
        """A position the book did not hold, as reconciliation finds it (after a restart, a lost entry
        reply, a wrong wipe): accounted from the venue's fills when they reach back to its opening (its
        age, entry fees and entry order, exact), else flagged `corrected` and dated by the journal's
        latest entry order on the market, else due at once. Its age runs from the opening, never from
        now: the time stop must not restart a 30 s clock for a position already held."""
        ledger = self._ledger.position(market)
        if ledger is not None and ledger.size == size and ledger.opened_ms is not None:
            return attrs.evolve(ledger, entry_time=_monotonic_at(ledger.opened_ms, now, as_of_ms))
        hint = max(
            (h for h in self._entry_hints.values() if h.market == market),
            key=lambda h: h.submitted_ms,
            default=None,
        )
        opened_ms = hint.submitted_ms if hint is not None else None
        log.warning(
            "reconcile: %s position %s not traceable to its opening fill; %s",
            market,
            size,
            f"dated by the journal's entry order at {opened_ms}" if hint else "treated as due now",
        )
        return Position(
            market=market,
            size=size,
            avg_entry_px=entry_px,
            entry_time=_monotonic_at(opened_ms, now, as_of_ms) if opened_ms is not None else -math.inf,
            opened_ms=opened_ms,
            entry_qty=abs(size),
            entry_value=abs(size) * entry_px,
            expected_edge_bps=hint.expected_edge_bps if hint is not None else None,
            corrected=True,
        )

    def _reconcile_orders(
        self,
        open_orders: Iterable[WsOrder],
        statuses: Mapping[Cloid, OrderUpdate | None],
        states: Mapping[str, DexState],
        now: float,
    ) -> tuple[list[Cloid], list[Cloid]]:
        open_list = list(open_orders)
        open_oids = {o.oid: o for o in open_list}
        open_cloids = {o.cloid: o for o in open_list if o.cloid is not None}
        resolved: list[Cloid] = []
        unresolved: list[Cloid] = []
        for order in list(self._orders.values()):
            if order.state not in (OrderState.UNKNOWN, OrderState.RESTING, OrderState.ESCALATED):
                continue
            was_unknown = order.state is OrderState.UNKNOWN
            listed = open_cloids.get(order.cloid.raw) or (open_oids.get(order.oid) if order.oid else None)
            if order.cloid in statuses:
                status = statuses[order.cloid]
                if status is None:
                    self._set_state(order, OrderState.RECONCILED, now, "reconcile: unknown to the exchange")
                else:
                    self._apply_status(
                        self._note_oid(order, status.order.oid), status, now, source="reconcile"
                    )
            elif listed is not None:
                self._set_state(
                    self._note_oid(order, listed.oid),
                    OrderState.RESTING,
                    now,
                    "reconcile: open",
                    exchange_remaining=listed.sz,
                )
            elif order.state is OrderState.RESTING and self._answered_after_send(order, states):
                self._set_state(order, OrderState.RECONCILED, now, "reconcile: no longer open")
            if was_unknown:
                (unresolved if self._orders[order.cloid].state is OrderState.UNKNOWN else resolved).append(
                    order.cloid
                )
        return resolved, unresolved

    @staticmethod
    def _answered_after_send(order: TrackedOrder, states: Mapping[str, DexState]) -> bool:
        """Was the order's dex asked after the order's latest send? Only then can its absence from the
        open orders mean it is no longer open (one sent during the queries may not be listed yet)."""
        state = states.get(order.market)
        return state is not None and (state.sends_before is None or order.sent_seq <= state.sends_before)

    def _prune(self) -> None:
        """Make room for one more order: forget the oldest settled terminal orders once `order_memory`
        is reached (down to 3/4 of it, so the scan is amortised). Only `register` grows the table, so
        only it prunes — no order disappears in the middle of another transition. Escalated orders and
        orders with unconfirmed fills are never forgotten."""
        limit = self.config.order_memory
        if len(self._orders) < limit:
            return
        target = limit * 3 // 4
        for cloid, order in list(self._orders.items()):
            if len(self._orders) <= target:
                break
            if is_settled(order) and order.state is not OrderState.ESCALATED:
                del self._orders[cloid]
        # An order can have had more than one oid (sent again under its cloid): drop every one of them.
        self._by_oid = {oid: cloid for oid, cloid in self._by_oid.items() if cloid in self._orders}


def _monotonic_at(time_ms: int, now: float, as_of_ms: int | None) -> float:
    """The monotonic time of exchange time `time_ms`, given that `now` is (about) `as_of_ms`; with no
    exchange time to measure from, -inf (as old as can be: due)."""
    if as_of_ms is None:
        return -math.inf
    return now - max(0, as_of_ms - time_ms) / 1000
