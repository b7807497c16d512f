"""The batch scheduler: what goes into the next post.

Three bounded FIFO queues with strict priority cancel > reduce-only > new order. One tick is one post
is one action, and orders and cancels are different action types, so a tick yields either a cancel
batch or an order batch (reduce-only first, then new orders), or nothing.

Inflight (posts sent and not yet answered) is *given* by the caller, who derives it from the post table;
the scheduler never counts posts, so there is no second counter to drift. Back-pressure from inflight:

- below the high watermark everything flows;
- at or above it new orders are still accepted (`QueuedDegraded`) but not sent; reduce-only orders and
  cancels are sent — they reduce risk;
- at the limit a tick yields nothing at all, new orders are refused (`InflightFull`), reduce-only orders
  and cancels are still queued.

Every method is synchronous, so each is one atomic transition under Trio. Expected refusals are result
values; exceptions are for programming errors (e.g. a reduce-only order offered as a new order).
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Iterable
from typing import ClassVar, Final, Literal

import attrs

from hip3_trio.validators import ge, gt, le, not_above
from hip3_trio.wire.actions import (
    CancelAction,
    CancelByCloidAction,
    CancelByCloidWire,
    CancelWire,
    Cloid,
    OrderAction,
    OrderWire,
)

__all__ = [
    "VENUE_MAX_INFLIGHT_POSTS",
    "Batch",
    "BatchConfig",
    "BatchKind",
    "BatchScheduler",
    "CancelItem",
    "EnqueueResult",
    "InflightFull",
    "OrderItem",
    "QueueFull",
    "QueueKind",
    "Queued",
    "QueuedDegraded",
    "QueuedReplaced",
    "Requeued",
]

log = logging.getLogger(__name__)


class QueueKind(enum.Enum):
    """The three queues, in priority order."""

    CANCEL = "cancel"
    REDUCE_ONLY = "reduce_only"
    NEW_ORDER = "new_order"


BatchKind = Literal["order", "cancel"]


@attrs.frozen
class OrderItem:
    """An order waiting to be sent, with the market it belongs to (reduce-only and cloid come from it)."""

    market: str
    order: OrderWire
    # Exchange ms after which the venue must drop the post carrying it (entries only; None: never).
    expires_at_ms: int | None = None

    @property
    def reduce_only(self) -> bool:
        return self.order.reduce_only

    @property
    def cloid(self) -> Cloid | None:
        return self.order.cloid


@attrs.frozen
class CancelItem:
    """A cancel waiting to be sent, by exchange order id or by client order id."""

    market: str
    cancel: CancelWire | CancelByCloidWire


@attrs.frozen
class Batch:
    """The content of one post: 1..max_batch items of one action type.

    An order batch holds orders (reduce-only first); a cancel batch holds cancels of a single type
    (by oid or by cloid — they are different actions). `action()` builds the unsigned action.
    """

    kind: BatchKind
    items: tuple[OrderItem, ...] | tuple[CancelItem, ...]

    def __attrs_post_init__(self) -> None:
        if not self.items:
            raise ValueError("a batch holds at least one item")
        if self.kind == "order":
            if not all(isinstance(i, OrderItem) for i in self.items):
                raise TypeError("an order batch holds only OrderItems")
        elif self.kind == "cancel":
            if not all(isinstance(i, CancelItem) for i in self.items):
                raise TypeError("a cancel batch holds only CancelItems")
            cancel_types = {type(i.cancel) for i in self.items if isinstance(i, CancelItem)}
            if len(cancel_types) != 1:
                raise TypeError("a cancel batch holds cancels of one type (by oid or by cloid)")
        else:
            raise ValueError(f"unknown batch kind {self.kind!r}")

    @property
    def order_items(self) -> tuple[OrderItem, ...]:
        """The items of an order batch (empty for a cancel batch)."""
        # `__attrs_post_init__` checked that an order batch holds only OrderItems: no filtering needed.
        return self.items if self.kind == "order" else ()  # type: ignore[return-value]

    @property
    def cancel_items(self) -> tuple[CancelItem, ...]:
        """The items of a cancel batch (empty for an order batch)."""
        return self.items if self.kind == "cancel" else ()  # type: ignore[return-value]

    @property
    def expires_after(self) -> int | None:
        """The post's `expiresAfter`: the earliest expiry of its entries, or None if none expires. A
        flatten that shares a post with an entry shares its expiry; if the post expires, the venue
        executes none of it and the flatten is sent again like any refused one."""
        expiries = [i.expires_at_ms for i in self.order_items if i.expires_at_ms is not None]
        return min(expiries) if expiries else None

    def action(self) -> OrderAction | CancelAction | CancelByCloidAction:
        """The unsigned wire action for this batch, items in batch order."""
        if self.kind == "order":
            return OrderAction(orders=tuple(i.order for i in self.order_items))
        cancels = [i.cancel for i in self.cancel_items]
        by_oid = tuple(c for c in cancels if isinstance(c, CancelWire))
        if by_oid:
            return CancelAction(cancels=by_oid)
        return CancelByCloidAction(cancels=tuple(c for c in cancels if isinstance(c, CancelByCloidWire)))


VENUE_MAX_INFLIGHT_POSTS: Final = 100
"""The venue's limit of posts awaiting a reply, per connection."""


@attrs.frozen(kw_only=True)
class BatchConfig:
    """Order batching, the bounded queues and post timing: the config file's ``[batch]`` section.

    The scheduler uses the capacities, the batch size and the inflight limit and watermark (in posts);
    the session's sender uses the interval, the inflight limit and the post timeout.
    """

    # Minimum gap between two posts while busy; an idle engine sends at once.
    interval_ms: int = attrs.field(default=100, validator=[ge(0), le(10_000)])
    max_batch: int = attrs.field(default=50, validator=ge(1))
    cancel_capacity: int = attrs.field(default=200, validator=ge(1))
    reduce_only_capacity: int = attrs.field(default=500, validator=ge(1))
    new_order_capacity: int = attrs.field(default=1000, validator=ge(1))
    inflight_limit: int = attrs.field(
        default=VENUE_MAX_INFLIGHT_POSTS,
        validator=[ge(1), le(VENUE_MAX_INFLIGHT_POSTS, " (the venue's limit per connection)")],
    )
    # From this many posts in flight new orders are still queued but held (degraded).
    inflight_watermark: int = attrs.field(default=80, validator=ge(1))
    # A sent post unanswered this long is resolved as a timeout.
    post_timeout_s: float = attrs.field(default=5.0, validator=gt(0))

    def __attrs_post_init__(self) -> None:
        not_above(self, "inflight_watermark", "inflight_limit")

    def capacity(self, queue: QueueKind) -> int:
        return {
            QueueKind.CANCEL: self.cancel_capacity,
            QueueKind.REDUCE_ONLY: self.reduce_only_capacity,
            QueueKind.NEW_ORDER: self.new_order_capacity,
        }[queue]


# --- enqueue results -------------------------------------------------------------------------------


@attrs.frozen
class Accepted:
    """Base of the results that took the item (`accepted` is True); the executor's results share it."""

    accepted: ClassVar[bool] = True


@attrs.frozen
class Refused:
    """Base of the results that refused the item (`accepted` is False); the executor's results share it."""

    accepted: ClassVar[bool] = False


@attrs.frozen
class Queued(Accepted):
    """Accepted, and will be sent as soon as priority and inflight allow."""

    queue: QueueKind


@attrs.frozen
class QueuedDegraded(Accepted):
    """A new order accepted while inflight is at/above the watermark: it waits until inflight drops."""

    inflight: int
    watermark: int


@attrs.frozen
class QueuedReplaced(Accepted):
    """A reduce-only order took the place of the one already queued for its market (the newer wins).

    `replaced` will never be sent; the caller releases whatever it tracked for it.
    """

    replaced: OrderItem


@attrs.frozen
class InflightFull(Refused):
    """A new order refused: inflight is at the limit."""

    inflight: int
    limit: int


@attrs.frozen
class QueueFull(Refused):
    """Refused: the queue is at capacity."""

    queue: QueueKind
    capacity: int


EnqueueResult = Queued | QueuedDegraded | QueuedReplaced | InflightFull | QueueFull


@attrs.frozen
class Requeued:
    """What `requeue_front` did not put back.

    `handed_back`: new orders of the failed batches — never re-sent silently; the caller decides (their
    outcome may be unknown). `superseded`: reduce-only orders whose market already has a newer one
    queued (or a newer one in the same requeue) — sending both could flatten a position twice.
    """

    handed_back: tuple[OrderItem, ...] = ()
    superseded: tuple[OrderItem, ...] = ()


@attrs.frozen
class SchedulerStatistics:
    """A snapshot of the scheduler's three queues."""

    cancels: int
    reduce_only: int
    new_orders: int


class BatchScheduler:
    """Three bounded priority queues; `tick(inflight)` takes the next batch to send.

    Capacities bound admission: an enqueue is refused when its queue is full. `requeue_front` may take
    a queue past its capacity by the requeued items, because dropping a reduce-only order or a cancel
    that was already accepted is worse than a temporary overshoot.
    """

    def __init__(self, config: BatchConfig | None = None) -> None:
        self.config = config if config is not None else BatchConfig()
        self._cancels: deque[CancelItem] = deque()
        self._reduce_only: deque[OrderItem] = deque()
        self._new_orders: deque[OrderItem] = deque()

    # --- views -------------------------------------------------------------------------------------

    def statistics(self) -> SchedulerStatistics:
        return SchedulerStatistics(len(self._cancels), len(self._reduce_only), len(self._new_orders))

    @property
    def cancels(self) -> tuple[CancelItem, ...]:
        """Queued cancels, next to be sent first."""
        return tuple(self._cancels)

    @property
    def reduce_only(self) -> tuple[OrderItem, ...]:
        """Queued reduce-only orders, next to be sent first (at most one per market)."""
        return tuple(self._reduce_only)

    @property
    def new_orders(self) -> tuple[OrderItem, ...]:
        """Queued new orders, next to be sent first."""
        return tuple(self._new_orders)

    def __len__(self) -> int:
        return len(self._cancels) + len(self._reduce_only) + len(self._new_orders)

    # --- admission ---------------------------------------------------------------------------------

    def enqueue_cancel(self, item: CancelItem) -> Queued | QueueFull:
        """Queue a cancel; refused only when the cancel queue is full (logged as critical)."""
        if len(self._cancels) >= self.config.cancel_capacity:
            log.critical("cancel queue full (%d); refusing cancel for %s", len(self._cancels), item.market)
            return QueueFull(QueueKind.CANCEL, self.config.cancel_capacity)
        self._cancels.append(item)
        return Queued(QueueKind.CANCEL)

    def enqueue_reduce_only(self, item: OrderItem) -> Queued | QueuedReplaced | QueueFull:
        """Queue a reduce-only order; one already queued for the market is replaced in place.

        Replacing keeps the older one's place in the queue and needs no room, so it is never refused.
        """
        if not item.reduce_only:
            raise ValueError(f"not a reduce-only order: {item!r}")
        for index, queued in enumerate(self._reduce_only):
            if queued.market == item.market:
                self._reduce_only[index] = item
                return QueuedReplaced(replaced=queued)
        if len(self._reduce_only) >= self.config.reduce_only_capacity:
            log.critical(
                "reduce-only queue full (%d); refusing reduce-only order for %s",
                len(self._reduce_only),
                item.market,
            )
            return QueueFull(QueueKind.REDUCE_ONLY, self.config.reduce_only_capacity)
        self._reduce_only.append(item)
        return Queued(QueueKind.REDUCE_ONLY)

    def enqueue_new(
        self, item: OrderItem, inflight: int
    ) -> Queued | QueuedDegraded | InflightFull | QueueFull:
        """Queue a new (risk-increasing) order, subject to the inflight limit and the queue bound."""
        if item.reduce_only:
            raise ValueError(f"a reduce-only order is not a new order: {item!r}")
        if inflight >= self.config.inflight_limit:
            return InflightFull(inflight=inflight, limit=self.config.inflight_limit)
        if len(self._new_orders) >= self.config.new_order_capacity:
            return QueueFull(QueueKind.NEW_ORDER, self.config.new_order_capacity)
        self._new_orders.append(item)
        if inflight >= self.config.inflight_watermark:
            return QueuedDegraded(inflight=inflight, watermark=self.config.inflight_watermark)
        return Queued(QueueKind.NEW_ORDER)

    # --- taking work -------------------------------------------------------------------------------

    def tick(self, inflight: int, *, reducing_only: bool = False) -> Batch | None:
        """Take the next batch to send, or None. Does not change inflight: the caller's post does.

        Cancels first (the leading run of one cancel type); otherwise reduce-only orders, then — only
        below the watermark, and not `reducing_only` — new orders, up to `max_batch` items. Nothing at
        the inflight limit.
        """
        limit = self.config.max_batch
        if inflight >= self.config.inflight_limit:
            return None
        if self._cancels:
            cancel_type = type(self._cancels[0].cancel)
            cancels: list[CancelItem] = []
            while self._cancels and len(cancels) < limit and type(self._cancels[0].cancel) is cancel_type:
                cancels.append(self._cancels.popleft())
            return Batch("cancel", tuple(cancels))
        orders: list[OrderItem] = []
        while self._reduce_only and len(orders) < limit:
            orders.append(self._reduce_only.popleft())
        if inflight < self.config.inflight_watermark and not reducing_only:
            while self._new_orders and len(orders) < limit:
                orders.append(self._new_orders.popleft())
        return Batch("order", tuple(orders)) if orders else None

    def requeue_front(self, *batches: Batch) -> Requeued:
        """Put back the reduce-only orders and cancels of batches that failed, ahead of everything queued.

        Pass the batches oldest first; their items return to the front in that original order. New
        orders are handed back, never re-sent silently. A requeued reduce-only order whose market has a
        newer one (queued, or later in this requeue) is superseded, so one position is flattened once.
        """
        cancels: list[CancelItem] = []
        reduce_only: list[OrderItem] = []
        handed_back: list[OrderItem] = []
        for batch in batches:
            cancels.extend(batch.cancel_items)
            for item in batch.order_items:
                (reduce_only if item.reduce_only else handed_back).append(item)
        kept, superseded = self._newest_per_market(reduce_only, {i.market for i in self._reduce_only})
        self._cancels.extendleft(reversed(cancels))
        self._reduce_only.extendleft(reversed(kept))
        return Requeued(handed_back=tuple(handed_back), superseded=tuple(superseded))

    @staticmethod
    def _newest_per_market(
        items: Iterable[OrderItem], taken: set[str]
    ) -> tuple[list[OrderItem], list[OrderItem]]:
        """Split `items` (oldest first) into the newest per market not in `taken`, and the rest."""
        kept: list[OrderItem] = []
        superseded: list[OrderItem] = []
        seen = set(taken)
        for item in reversed(list(items)):
            if item.market in seen:
                superseded.append(item)
            else:
                seen.add(item.market)
                kept.append(item)
        kept.reverse()
        superseded.reverse()
        return kept, superseded

    def drop_new_orders(self) -> tuple[OrderItem, ...]:
        """Empty the new-order queue (hard stop) and return what was dropped, oldest first."""
        dropped = tuple(self._new_orders)
        self._new_orders.clear()
        return dropped
