"""A position and the running account of its round trip: `Position` and `apply_fill`, the one rule for
how a fill moves a position (average in, realise out, close and reopen through zero)."""

from __future__ import annotations

from decimal import Decimal
from typing import Final

import attrs

from hip3_trio.position.orders import TrackedOrder
from hip3_trio.position.records import ClosedTrade
from hip3_trio.wire.actions import Cloid
from hip3_trio.wire.messages import AssetPosition, Fill

__all__ = ["Position", "apply_fill", "apply_venue_fill", "entry_px", "open_position"]

ZERO: Final = Decimal(0)
BPS: Final = Decimal(10_000)


@attrs.frozen(kw_only=True)
class Position:
    """A signed position and the running account of its round trip.

    `entry_time` (monotonic s) is when it opened from flat — what the time stop measures. The
    `entry_*`/`exit_*` sums give the round trip's average entry and exit prices; `expected_edge_bps`,
    `signal_px` and `entry_cloid` come from the order whose fill opened it. `corrected` marks a position
    that reconciliation had to change, whose trade record is therefore approximate.
    """

    market: str
    size: Decimal
    avg_entry_px: Decimal
    entry_time: float
    opened_ms: int | None = None
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    entry_qty: Decimal = ZERO
    entry_value: Decimal = ZERO
    exit_qty: Decimal = ZERO
    exit_value: Decimal = ZERO
    expected_edge_bps: Decimal | None = None
    signal_px: Decimal | None = None
    entry_cloid: Cloid | None = None
    corrected: bool = False


def open_position(
    market: str,
    signed_sz: Decimal,
    px: Decimal,
    fee: Decimal,
    now: float,
    time_ms: int,
    origin: TrackedOrder | None,
) -> Position:
    qty = abs(signed_sz)
    return Position(
        market=market,
        size=signed_sz,
        avg_entry_px=px,
        entry_time=now,
        opened_ms=time_ms,
        fees=fee,
        entry_qty=qty,
        entry_value=px * qty,
        expected_edge_bps=origin.expected_edge_bps if origin is not None else None,
        signal_px=origin.signal_px if origin is not None else None,
        entry_cloid=origin.cloid if origin is not None else None,
    )


def _slippage_bps(pos: Position, entry_px: Decimal) -> Decimal | None:
    """Average entry against the signal's price, in bps; positive = worse than the signal."""
    if pos.signal_px is None:
        return None
    adverse = entry_px - pos.signal_px if pos.size > 0 else pos.signal_px - entry_px
    return adverse / pos.signal_px * BPS


def apply_fill(
    pos: Position | None,
    *,
    market: str,
    signed_sz: Decimal,
    px: Decimal,
    fee: Decimal,
    now: float,
    time_ms: int,
    order: TrackedOrder | None = None,
) -> tuple[Position | None, ClosedTrade | None]:
    """The position after one fill (of `order`, when it is ours), and the round trip it closed (if it
    went flat or flipped).

    Adding to a position averages the entry price; reducing realises `(px - entry) × qty` in the
    position's direction; a fill through zero closes the trade and opens the remainder at `px` (the fee
    is split pro rata between the two). The order that opens a position is its origin: its signal's
    expected edge and price go into the trade record.
    """
    qty = abs(signed_sz)
    if pos is None or pos.size == 0:
        return open_position(market, signed_sz, px, fee, now, time_ms, order), None
    if (pos.size > 0) == (signed_sz > 0):
        new_size = pos.size + signed_sz
        avg = (pos.avg_entry_px * abs(pos.size) + px * qty) / abs(new_size)
        grown = attrs.evolve(
            pos,
            size=new_size,
            avg_entry_px=avg,
            fees=pos.fees + fee,
            entry_qty=pos.entry_qty + qty,
            entry_value=pos.entry_value + px * qty,
        )
        return grown, None
    closing = min(qty, abs(pos.size))
    direction = Decimal(1) if pos.size > 0 else Decimal(-1)
    close_fee = fee if closing == qty else fee * closing / qty
    reduced = attrs.evolve(
        pos,
        size=pos.size - direction * closing,
        realized_pnl=pos.realized_pnl + (px - pos.avg_entry_px) * closing * direction,
        fees=pos.fees + close_fee,
        exit_qty=pos.exit_qty + closing,
        exit_value=pos.exit_value + px * closing,
    )
    if reduced.size != 0:
        return reduced, None
    entry_px = reduced.entry_value / reduced.entry_qty if reduced.entry_qty else reduced.avg_entry_px
    trade = ClosedTrade(
        market=market,
        is_long=direction > 0,
        size=reduced.entry_qty,
        entry_px=entry_px,
        exit_px=reduced.exit_value / reduced.exit_qty,
        pnl=reduced.realized_pnl,
        fees=reduced.fees,
        opened_at=reduced.entry_time,
        closed_at=now,
        opened_ms=reduced.opened_ms,
        closed_ms=time_ms,
        expected_edge_bps=reduced.expected_edge_bps,
        slippage_bps=_slippage_bps(pos, entry_px),
        entry_cloid=reduced.entry_cloid,
        exit_cloid=order.cloid if order is not None else None,
        exit_reason=order.reason if order is not None else None,
        corrected=reduced.corrected,
    )
    rest = qty - closing
    if rest == 0:
        return None, trade
    return open_position(market, -direction * rest, px, fee - close_fee, now, time_ms, order), trade


def apply_venue_fill(
    pos: Position | None, fill: Fill, now: float, order: TrackedOrder | None
) -> tuple[Position | None, ClosedTrade | None]:
    """`apply_fill` for one of the venue's fills (of `order`, when it is ours)."""
    return apply_fill(
        pos,
        market=fill.coin,
        signed_sz=fill.sz if fill.is_buy else -fill.sz,
        px=fill.px,
        fee=fill.fee,
        now=now,
        time_ms=fill.time,
        order=order,
    )


def entry_px(truth: AssetPosition | None, old: Position | None) -> Decimal:
    """The exchange's entry price, else its value / size, else what we had."""
    if truth is not None and truth.entry_px is not None:
        return truth.entry_px
    if truth is not None and truth.position_value is not None and truth.szi != 0:
        return abs(truth.position_value / truth.szi)
    if old is not None:
        return old.avg_entry_px
    return ZERO
