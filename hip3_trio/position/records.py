"""What the trading state tells other tasks: risk events and journal records, collected in an `Outbox`.

The book, the executor and the time stop are pure and synchronous, so they cannot send on channels.
Each appends what happened to one shared `Outbox`; the task that called in drains it right after the
call and forwards each item — risk events (`TradeClosed`, `FlattenFailed`, `OrderRejected`,
`SlippageMeasured`, from `risk.monitor`) to the risk monitor, everything to the journal. An item is
appended exactly once, at the transition that caused it, so draining after every call loses nothing and
forwards nothing twice.
"""

from __future__ import annotations

import enum
from decimal import Decimal

import attrs

from hip3_trio.risk.monitor import FlattenFailed, OrderRejected, RiskEvent, SlippageMeasured, TradeClosed
from hip3_trio.wire.actions import Cloid

__all__ = [
    "ClosedTrade",
    "FlattenAllRequested",
    "FlattenFailed",
    "OrderRejected",
    "OrderState",
    "OrderSubmitted",
    "OrderTransition",
    "Outbox",
    "Output",
    "PositionCorrected",
    "ReconcileRequested",
    "RequestBudgetExhausted",
    "SlippageMeasured",
    "TradeClosed",
    "UnknownOrderEscalated",
]


class OrderState(enum.Enum):
    """An order's place in its lifecycle.

    `queued → sent → resting / filled / rejected / canceled`; a post whose outcome is unknown (timeout,
    disconnect) makes the order `unknown` until exchange evidence (reconciliation, fills, an order update)
    resolves it. `reconciled` closes an order whose exact fate reconciliation could not name (the
    exchange no longer lists it; its exposure is in the reconciled positions); `escalated` closes an
    unknown order nothing resolved within the deadline — reported, kept, never silently dropped.
    """

    QUEUED = "queued"
    SENT = "sent"
    RESTING = "resting"
    UNKNOWN = "unknown"
    FILLED = "filled"
    REJECTED = "rejected"
    CANCELED = "canceled"
    RECONCILED = "reconciled"
    ESCALATED = "escalated"

    @property
    def is_terminal(self) -> bool:
        """True once the order can hold nothing any more: it no longer marks its market pending."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {OrderState.FILLED, OrderState.REJECTED, OrderState.CANCELED, OrderState.RECONCILED, OrderState.ESCALATED}
)


@attrs.frozen(kw_only=True)
class OrderSubmitted:
    """An order was accepted by the scheduler (journal `orders` intent). `reason` is why it was sent:
    `entry` (a signal), `time_stop`, `flatten_all`, ..."""

    cloid: Cloid
    market: str
    is_buy: bool
    price: Decimal
    size: Decimal
    reduce_only: bool
    reason: str
    at: float


@attrs.frozen(kw_only=True)
class OrderTransition:
    """An order changed state (journal `orders` outcome). `detail` says why (an exchange message,
    'hard stop', ...); `filled_sz`/`avg_px`/`oid` are what is known of its execution at that point."""

    cloid: Cloid
    market: str
    old: OrderState
    new: OrderState
    at: float
    detail: str = ""
    oid: int | None = None
    filled_sz: Decimal = Decimal(0)
    avg_px: Decimal | None = None


@attrs.frozen(kw_only=True)
class ClosedTrade:
    """One round trip, flat → position → flat, measured from its fills (journal).

    `pnl` is gross realised PnL; `net_pnl = pnl - fees` is what `TradeClosed` reports to the risk
    monitor. Times are the engine's monotonic seconds (`opened_at`, `closed_at`) and the exchange's fill
    times in ms. `expected_edge_bps` is the originating signal's edge and `slippage_bps` the average
    entry price against the signal's price (adverse positive), when the opening fill was ours;
    `entry_cloid`/`exit_cloid` the orders of the opening and the closing fill, `exit_reason` the latter's
    reason. `corrected`: reconciliation changed the position during the trip, so the numbers are
    approximate.
    """

    market: str
    is_long: bool
    size: Decimal
    entry_px: Decimal
    exit_px: Decimal
    pnl: Decimal
    fees: Decimal
    opened_at: float
    closed_at: float
    opened_ms: int | None
    closed_ms: int
    expected_edge_bps: Decimal | None
    slippage_bps: Decimal | None = None
    entry_cloid: Cloid | None = None
    exit_cloid: Cloid | None = None
    exit_reason: str | None = None
    corrected: bool = False

    @property
    def net_pnl(self) -> Decimal:
        return self.pnl - self.fees


@attrs.frozen(kw_only=True)
class PositionCorrected:
    """Reconciliation changed a tracked position to the exchange's truth (journal, and worth an alert)."""

    market: str
    old_size: Decimal
    new_size: Decimal
    at: float


@attrs.frozen(kw_only=True)
class ReconcileRequested:
    """The book cannot trust its view any more (unknown order, persisting fill mismatch): query the
    exchange (`orderStatus` by cloid, `openOrders`, `clearinghouseState`) and call `reconcile`."""

    reason: str
    at: float


@attrs.frozen(kw_only=True)
class RequestBudgetExhausted:
    """The venue refused an action whole because the address's action budget is exhausted
    (`Too many cumulative requests sent (...)`): not a reject of its orders (nothing was spent); sending
    pauses for the venue's trickle interval and its orders are requeued or released."""

    message: str
    kind: str  # the batch's kind: "order" or "cancel"
    items: int
    at: float


@attrs.frozen(kw_only=True)
class UnknownOrderEscalated:
    """An unknown order nothing resolved within the deadline. It no longer marks its market pending
    (an IOC cannot be live that long; its exposure is in the reconciled positions) but is kept and
    reported: the caller should treat it as a risk event."""

    cloid: Cloid
    market: str
    unknown_since: float
    at: float


@attrs.frozen(kw_only=True)
class FlattenAllRequested:
    """The executor stopped trading; every position must be flattened (the time stop does it)."""

    reason: str
    at: float


Output = (
    RiskEvent
    | OrderSubmitted
    | OrderTransition
    | ClosedTrade
    | PositionCorrected
    | ReconcileRequested
    | UnknownOrderEscalated
    | FlattenAllRequested
    | RequestBudgetExhausted
)

_RISK_EVENTS = (TradeClosed, FlattenFailed, OrderRejected, SlippageMeasured)


class Outbox:
    """An append-only list of outputs that the calling task drains after each synchronous call."""

    def __init__(self) -> None:
        self._items: list[Output] = []

    def emit(self, item: Output) -> None:
        """Append one output."""
        self._items.append(item)

    def drain(self) -> list[Output]:
        """Everything emitted since the last drain, oldest first; the outbox is empty afterwards."""
        items, self._items = self._items, []
        return items

    def peek(self) -> tuple[Output, ...]:
        """What is waiting, without draining it (for tests and logs)."""
        return tuple(self._items)

    @staticmethod
    def is_risk_event(item: Output) -> bool:
        """True for the events the risk monitor consumes (`RiskMonitor.on_event`)."""
        return isinstance(item, _RISK_EVENTS)

    def __len__(self) -> int:
        return len(self._items)
