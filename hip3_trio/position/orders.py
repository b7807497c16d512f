"""Our orders as the position book tracks them: `TrackedOrder`, one frozen version per state change, and
the small rules about an order that the book and its index share (settled, refused as increasing)."""

from __future__ import annotations

from decimal import Decimal
from typing import Final

import attrs

from hip3_trio.position.records import OrderState
from hip3_trio.wire.actions import Cloid

__all__ = ["TrackedOrder", "is_settled", "refused_as_increase"]

ZERO: Final = Decimal(0)


@attrs.frozen(kw_only=True)
class TrackedOrder:
    """One of our orders as the book knows it. Sizes are absolute; `is_buy` gives the direction.

    `filled_sz` sums the distinct live fills attributed to it (the ones that moved a position);
    `snapshot_sz` the fills that did not (snapshot fills, and live fills that a reconciliation may
    already hold, see `_in_reconciled_state`); `reply_total`/`reply_avg_px` come
    from the post reply; `exchange_remaining` is the venue's remaining size and `executed_sz` its
    `origSz - sz` (order updates, order status, open orders); `evidence_ms` the latest exchange time of
    that timestamped evidence (snapshot fills, statuses). `confirmed` means a reconciliation already
    covers its fills in the positions. `first_sent_seq` and `sent_seq` number its first and latest send
    among the book's sends (they differ once a requeued reduce-only order went out again under its
    cloid): a reconciliation taken before its first send cannot hold its executions, one taken after
    its latest send holds every execution not later than its state.
    """

    cloid: Cloid
    market: str
    is_buy: bool
    limit_px: Decimal
    size: Decimal
    reduce_only: bool
    state: OrderState
    created_at: float
    changed_at: float
    oid: int | None = None
    filled_sz: Decimal = ZERO
    snapshot_sz: Decimal = ZERO
    exchange_remaining: Decimal | None = None
    executed_sz: Decimal = ZERO
    evidence_ms: int | None = None
    reply_total: Decimal | None = None
    reply_avg_px: Decimal | None = None
    settled_at: float | None = None
    confirmed: bool = False
    mismatch_reported: bool = False
    first_sent_seq: int = 0
    sent_seq: int = 0
    expected_edge_bps: Decimal | None = None
    signal_px: Decimal | None = None
    reason: str = ""
    detail: str = ""

    @property
    def sign(self) -> Decimal:
        return Decimal(1) if self.is_buy else Decimal(-1)

    @property
    def open_size(self) -> Decimal:
        """Size that may still fill: 0 once terminal, else what neither fills nor the venue ruled out."""
        if self.state.is_terminal:
            return ZERO
        left = self.size - self.filled_sz - self.snapshot_sz
        if self.exchange_remaining is not None:
            left = min(left, self.exchange_remaining)
        return max(left, ZERO)

    @property
    def unconfirmed_fill(self) -> Decimal:
        """Size known to have filled (post reply, order update, snapshot fills) that no position shows
        yet, until the live fills arrive or a reconciliation covers it. The streams are not ordered
        relative to each other, so whichever evidence comes first already counts as exposure."""
        if self.confirmed:
            return ZERO
        announced = max(self.reply_total or ZERO, self.executed_sz, self.filled_sz + self.snapshot_sz)
        return announced - self.filled_sz


#: How the venue refuses a reduce-only order that would not reduce its position: the post reply's
#: error text and the order status (PROTOCOL.md, order statuses), matched in lower case.
INCREASE_REFUSALS: Final = ("reduce only order would increase position", "reduceonlyrejected")


def refused_as_increase(detail: str) -> bool:
    text = detail.lower()
    return any(fragment in text for fragment in INCREASE_REFUSALS)


def is_settled(order: TrackedOrder) -> bool:
    """Terminal with nothing unconfirmed: the order no longer counts towards pending marks, exposure,
    reconciliation or the periodic check. Only a settled order may be forgotten (`PositionBook._prune`),
    and only `PositionBook._put` decides membership of the index."""
    return order.state.is_terminal and not order.unconfirmed_fill
