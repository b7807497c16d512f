"""Journal mapping: pure functions from the trading core's inputs and outputs to journal records.

The core (`hip3_trio.core`) decides; the journal (`hip3_trio.journal`) stores; this module is the one
place that says which row a signal, an order, a transition, a fill, a trade or an event becomes. Every
function is pure: the exchange time (`time_ms`) and, where the row depends on it, the book's view of the
order are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from hip3_trio.journal import (
    EventRecord,
    FillRecord,
    OrderFinalState,
    OrderRecord,
    OrderUpdateRecord,
    SignalRecord,
    TradeRecord,
    side_of,
)
from hip3_trio.position.orders import TrackedOrder
from hip3_trio.position.records import ClosedTrade, OrderState, OrderSubmitted, OrderTransition
from hip3_trio.strategy.detector import BPS, Signal
from hip3_trio.wire import messages as m

__all__ = [
    "event",
    "fill_records",
    "final_state",
    "order_record",
    "order_update_record",
    "signal_record",
    "trade_record",
]

#: The order states that end an order's life without an execution the venue may still report.
_RELEASED: Final = (OrderState.CANCELED, OrderState.RECONCILED)


def event(kind: str, time_ms: int, **detail: object) -> EventRecord:
    """An `events` row: something that happened (connect, reject, hard_stop, reconcile, ...)."""
    return EventRecord(time_ms=time_ms, kind=kind, detail=dict(detail))


def signal_record(signal: Signal, *, refused: str | None = None, cloid: str | None = None) -> SignalRecord:
    """A detector signal, acted on (`cloid` of its order) or refused (`refused` names the gate)."""
    return SignalRecord(
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
        cost_bps=signal.cost_bps,
        fee_bps=signal.fee_bps,
    )


def order_record(submitted: OrderSubmitted, time_ms: int) -> OrderRecord:
    """An order's intent, when the scheduler accepted it."""
    return OrderRecord(
        cloid=str(submitted.cloid),
        market=submitted.market,
        side=side_of(submitted.is_buy),
        price=submitted.price,
        size=submitted.size,
        reduce_only=submitted.reduce_only,
        reason=submitted.reason,
        submitted_ms=time_ms,
    )


def final_state(t: OrderTransition, order: TrackedOrder | None) -> OrderFinalState | None:
    """The journal's final state for transition `t` of `order` (the book's current view of it, None if
    it is no longer remembered), or None while the order is not final.

    `filled`/`partial` by filled size against the order's size; `rejected`; `unknown` (escalated, or
    unknown at exit); a released order is `timeout` if it was unknown (proven never executed by a noop),
    `not_sent` if it never reached the venue, else `canceled`.
    """
    filled = t.filled_sz > 0
    full = order is not None and t.filled_sz >= order.size
    if t.new is OrderState.FILLED:
        return "filled" if full or order is None else "partial"
    if t.new is OrderState.REJECTED:
        return "rejected"
    if t.new in (OrderState.UNKNOWN, OrderState.ESCALATED):
        return "unknown"
    if t.new in _RELEASED:
        if filled:
            return "filled" if full else "partial"
        if t.old is OrderState.UNKNOWN:
            return "timeout"
        if t.old in (OrderState.QUEUED, OrderState.SENT):
            return "not_sent"
        return "canceled"
    return None


def order_update_record(
    t: OrderTransition, order: TrackedOrder | None, time_ms: int
) -> OrderUpdateRecord | None:
    """An order's state change as the `orders` row update (None: nothing to record). The row is
    updated when the venue first answers for the order (acked) and when it reaches its final state."""
    acked = t.old in (OrderState.SENT, OrderState.UNKNOWN) and t.new not in (
        OrderState.QUEUED,
        OrderState.UNKNOWN,
    )
    final = final_state(t, order)
    if final is None and not acked:
        return None
    return OrderUpdateRecord(
        cloid=str(t.cloid),
        market=t.market,
        time_ms=time_ms,
        acked_ms=time_ms if acked else None,
        final_state=final,
        filled_sz=t.filled_sz,
        avg_px=t.avg_px,
        oid=t.oid,
        error=(t.detail or None) if t.new is OrderState.REJECTED else None,  # a reject may come unexplained
    )


def fill_records(fills: Iterable[m.Fill], markets: frozenset[str]) -> list[FillRecord]:
    """The fills of `markets` as `fills` rows (snapshot fills too: the journal ignores a known tid)."""
    return [
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
        for fill in fills
        if fill.coin in markets
    ]


def trade_record(t: ClosedTrade) -> TradeRecord:
    """A closed round trip as a `trades` row: edges in bps of the entry price, time to flat from the
    opening fill (0 when the opening is unknown), `reconstructed` when reconciliation had to make it up."""
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
