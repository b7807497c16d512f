"""The venue stand-in of a backtest: executes the core's posts against the recorded books.

Two clocks, both in ms since the recording's first record: *local* time is when the engine receives a
frame (the recording's receive time); *venue* time is when the venue acted. A frame received at local
r shows the venue at r − L, L being the one-way latency (`LatencyModel`). A post the core hands over at
local t arrives at the venue at t + L, waits for the next block boundary b (`BlockSchedule`), executes
there against the recorded book as it stood at b — the latest frame received by b + L — minus what any
taker consumed and has not refilled yet (`Depletion`), and its reply and fills reach the engine at
b + L. So an execution is simply processed at local b + L, after every frame received by then.

Competitors (`CompetitionModel`): whenever the recorded market shows levels priced through the oracle
by the model's minimum edge — an oracle change (`activeAssetCtx`) or a book update (`bbo`, `l2Book`)
that does — one competing IOC for those levels arrives `draw_delay_ms` after the venue showed it (venue
time r − L) and executes at its block, before ours when it arrives first. One competitor per market and
side is on its way at a time (a dislocation that stays in the book over many frames is one race, and a
new one once that competitor has executed). What they take is consumed like our own fills. In the
simulator dislocations only appear with an oracle update; on a recording the book can move through a
standing oracle too, so both trigger.

Fills: `sweep` over the visible levels (best first, up to the limit), each level one fill. Fees by
the venue's rule (`hip3_trio.fees.market_fee_bps`: the account's taker rate, the HIP-3 deployer scale
of the market's dex, growth mode), on every fill, rounded to 6 decimals like the simulator's. An
entry's post past its `expiresAfter` when its block executes is refused whole, as the venue does. IOC orders
never rest, so a cancel finds nothing.

The realism models are `hip3_trio.sim.realism`'s: the same objects as the simulator's, seeded from the
backtest's seed. Pure and synchronous: no I/O, no clock.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Final

import attrs

from hip3_trio.execution.batch import Batch, OrderItem
from hip3_trio.sim.accounts import fill_direction
from hip3_trio.sim.fees import fill_fee
from hip3_trio.sim.realism import BlockSchedule, Depletion, Realism, competitor_levels, sweep
from hip3_trio.wire import messages as m
from hip3_trio.wire.markets import MarketSpec

__all__ = ["VENUE_COUNTS", "BacktestVenue", "Execution", "book_side"]

BPS: Final = Decimal(10_000)
NO_MATCH: Final = "Order could not immediately match against any resting orders. asset={}"
REDUCE_ONLY_REFUSED: Final = "Reduce only order would increase position. asset={}"
EXPIRED: Final = "Action already expired"
NEVER_PLACED: Final = "Order was never placed, already canceled, or filled."
ZERO: Final = Decimal(0)

Levels = tuple[tuple[Decimal, Decimal], ...]


def _levels(levels: Sequence[m.Level]) -> Levels:
    return tuple((level.px, level.sz) for level in levels)


def book_side(bbo: m.Bbo | None, l2: m.L2Book | None, is_bid: bool) -> Levels:
    """One side of a market's recorded book, best first: the `l2Book` levels, behind the best level of
    a `bbo` received after them (`bbo` None: the l2Book is the newer, or there is no bbo)."""
    deep = () if l2 is None else _levels(l2.bids if is_bid else l2.asks)
    if bbo is None:
        return deep
    top = bbo.bid if is_bid else bbo.ask
    if top is None:
        return ()
    behind = tuple(lvl for lvl in deep if (lvl[0] < top.px if is_bid else lvl[0] > top.px))
    return ((top.px, top.sz), *behind)


@attrs.frozen
class _Order:
    """An IOC to execute: ours (`post_id`, `item`) or a competitor's (`item` None)."""

    market: str
    is_buy: bool
    limit_px: Decimal
    size: Decimal
    item: OrderItem | None = None


@attrs.frozen
class Execution:
    """One of our posts, executed: its reply and the fills it made, due at local `at_ms`."""

    post_id: int
    at_ms: float
    result: m.PostResult
    fills: tuple[m.Fill, ...]


VENUE_COUNTS: Final = (
    "entries",  # entry orders that reached the venue
    "entries_filled",  # ... and filled (any size)
    "flattens",  # reduce-only orders that reached the venue
    "flattens_filled",
    "expired_posts",  # posts refused whole: past their expiresAfter at their block
    "competitor_orders",
    "competitor_fills",  # competitor orders that took something
)
"""What the venue counts (`BacktestVenue.counts`; every name is present, from 0)."""


@attrs.define
class _Position:
    size: Decimal = ZERO
    avg_px: Decimal = ZERO


class BacktestVenue:
    """The venue of one backtest run (see the module docstring)."""

    def __init__(
        self,
        *,
        specs: Mapping[str, MarketSpec],
        fee_bps: Mapping[str, Decimal],
        realism: Realism,
        seed: int,
        origin_ms: int,
        user: str,
    ) -> None:
        self.specs = dict(specs)
        self.asset_of = {spec.asset: coin for coin, spec in specs.items()}
        self.fee_rate = {coin: bps / BPS for coin, bps in fee_bps.items()}
        self.latency_ms = realism.latency.one_way_ms
        self.competition = realism.competition
        self.blocks = BlockSchedule(realism.blocks, seed)
        self.depletion = Depletion(realism.impact)
        self.rng = random.Random(f"hip3-trio-backtest:competitors:{seed}")
        self.origin_ms = origin_ms
        self.user = user
        # The latest frames per market; a bbo older than the latest l2Book is dropped (`book_side`).
        self.bbos: dict[str, m.Bbo] = {}
        self.l2s: dict[str, m.L2Book] = {}
        self.oracles: dict[str, Decimal] = {}
        # Competitors: per market, the prices they take at or beyond (asks <= [0], bids >= [1]), and per
        # (market, competitor buys) the block of the competitor on its way.
        self._bounds: dict[str, tuple[Decimal, Decimal]] = {}
        self._hunting: dict[tuple[str, bool], float] = {}
        self.counts: dict[str, int] = dict.fromkeys(VENUE_COUNTS, 0)
        self._positions = {coin: _Position() for coin in specs}
        # (block, arrival, sequence, post id (-1: a competitor), the orders or a cancel batch)
        self._queue: list[tuple[float, float, int, int, tuple[_Order, ...] | Batch]] = []
        self._seq = 0
        self._oid = 0
        self._tid = 0

    # --- the recording --------------------------------------------------------------------------

    def on_bbo(self, msg: m.Bbo) -> None:
        """A recorded `bbo` (the runner writes `bbos` itself on its hot path; same effect)."""
        self.bbos[msg.coin] = msg

    def on_l2(self, msg: m.L2Book) -> None:
        """A recorded `l2Book`: its levels replace the book's (a later bbo goes in front of them)."""
        self.l2s[msg.coin] = msg
        self.bbos.pop(msg.coin, None)

    def on_asset_ctx(self, msg: m.ActiveAssetCtx, local_ms: float) -> None:
        """A new oracle: competitors go for what it shows dislocated (when they are on)."""
        coin, oracle = msg.coin, msg.ctx.oracle_px
        if self.oracles.get(coin) == oracle:
            return
        self.oracles[coin] = oracle
        if self.competition.enabled:
            edge = Decimal(repr(self.competition.min_edge_bps)) / BPS
            self._bounds[coin] = (oracle * (1 - edge), oracle * (1 + edge))
            self.compete(coin, local_ms)

    def on_book(self, coin: str, local_ms: float) -> bool:
        """A recorded book update (after `bbos`/`on_l2` took it): competitors go for what it shows
        through the oracle; True if one was sent. Two comparisons on the top of the book decide most
        frames."""
        bounds = self._bounds.get(coin)
        if bounds is None:
            return False
        bbo = self.bbos.get(coin)
        if bbo is not None:
            ask, bid = bbo.ask, bbo.bid
            if (ask is None or ask.px > bounds[0]) and (bid is None or bid.px < bounds[1]):
                return False
        return self.compete(coin, local_ms)

    def compete(self, coin: str, local_ms: float) -> bool:
        """Send a competitor for each side of `coin` showing levels through the oracle by the minimum
        edge, unless one for that side is still on its way; True if one was sent."""
        oracle = self.oracles.get(coin)
        if oracle is None or not self.competition.enabled:
            return False
        sent = False
        seen_at = local_ms - self.latency_ms
        for is_buy in (True, False):
            if self._hunting.get((coin, is_buy), -1.0) >= seen_at:
                continue  # its block has not come yet: the same race
            visible = self._visible(coin, is_bid=not is_buy, venue_ms=seen_at)
            taken = competitor_levels(visible, is_buy, oracle, self.competition.min_edge_bps)
            if taken:
                arrival = seen_at + self.competition.draw_delay_ms(self.rng)
                size = sum((sz for _, sz in taken), ZERO)
                block = self._push(arrival, -1, (_Order(coin, is_buy, taken[-1][0], size),))
                self._hunting[(coin, is_buy)] = block
                self.counts["competitor_orders"] += 1
                sent = True
        return sent

    # --- our posts --------------------------------------------------------------------------------

    def submit(self, post_id: int, batch: Batch, local_ms: float) -> None:
        """The core hands over `batch` (post `post_id`) at local `local_ms`."""
        arrival = local_ms + self.latency_ms
        if batch.kind == "cancel":
            self._push(arrival, post_id, batch)
            return
        orders = tuple(
            _Order(self.asset_of[i.order.asset], i.order.is_buy, i.order.limit_px, i.order.sz, i)
            for i in batch.order_items
        )
        expires = batch.expires_after
        if expires is not None and expires < self.origin_ms + self.blocks.next_boundary(arrival):
            # Judged when its block executes, as the simulator does (`sim/exchange.py`): a post that
            # arrives in time but whose block comes after its expiry is refused too.
            self.counts["expired_posts"] += 1
            orders = ()  # refused whole: executes nothing, answered with its block
        self._push(arrival, post_id, orders)

    def next_due_ms(self) -> float | None:
        """Local time of the next execution (its reply reaches the engine then), or None."""
        return self._queue[0][0] + self.latency_ms if self._queue else None

    def execute_next(self) -> Execution | None:
        """Execute the next queued action; ours comes back as an `Execution`, a competitor's as None."""
        block, _arrival, _seq, post_id, action = heapq.heappop(self._queue)
        at = block + self.latency_ms
        if isinstance(action, Batch):
            refused = tuple(m.StatusError(NEVER_PLACED) for _ in action.items)
            return Execution(post_id, at, m.ActionOk("cancel", refused), ())
        if post_id < 0:
            for order in action:
                if self._sweep(order, block):
                    self.counts["competitor_fills"] += 1
            return None
        if not action:
            return Execution(post_id, at, m.ActionErr(EXPIRED), ())
        results = [self._ours(order, block) for order in action]
        statuses = tuple(status for status, _ in results)
        fills = tuple(fill for _, order_fills in results for fill in order_fills)
        return Execution(post_id, at, m.ActionOk("order", statuses), fills)

    def asset_positions(self) -> list[m.AssetPosition]:
        """Our positions as the venue holds them (what `clearinghouseState` would answer)."""
        return [
            m.AssetPosition(coin, p.size, entry_px=p.avg_px)
            for coin, p in self._positions.items()
            if p.size != 0
        ]

    # --- execution --------------------------------------------------------------------------------

    def _push(self, arrival: float, post_id: int, action: tuple[_Order, ...] | Batch) -> float:
        block = self.blocks.next_boundary(arrival)
        self._seq += 1
        heapq.heappush(self._queue, (block, arrival, self._seq, post_id, action))
        return block

    def _visible(self, coin: str, *, is_bid: bool, venue_ms: float) -> list[tuple[Decimal, Decimal]]:
        visible, oracle = self.depletion.visible, self.oracles.get(coin)
        levels = book_side(self.bbos.get(coin), self.l2s.get(coin), is_bid)
        return [(px, visible(is_bid, px, sz, venue_ms, oracle)) for px, sz in levels]

    def _sweep(self, order: _Order, block: float) -> list[tuple[Decimal, Decimal]]:
        levels = self._visible(order.market, is_bid=not order.is_buy, venue_ms=block)
        executed = sweep(levels, order.is_buy, order.limit_px, order.size)
        for px, sz in executed:
            self.depletion.consume(not order.is_buy, px, sz, block, self.oracles.get(order.market))
        return executed

    def _ours(self, order: _Order, block: float) -> tuple[m.PostStatus, tuple[m.Fill, ...]]:
        item = order.item
        assert item is not None
        asset = item.order.asset
        position = self._positions[order.market]
        reduce_only = item.reduce_only
        if reduce_only:
            self.counts["flattens"] += 1
            if position.size == 0 or (position.size > 0) == order.is_buy:
                return m.StatusError(REDUCE_ONLY_REFUSED.format(asset)), ()
            order = attrs.evolve(order, size=min(order.size, abs(position.size)))
        else:
            self.counts["entries"] += 1
        executed = self._sweep(order, block)
        if not executed:
            return m.StatusError(NO_MATCH.format(asset)), ()
        if reduce_only:
            self.counts["flattens_filled"] += 1
        else:
            self.counts["entries_filled"] += 1
        self._oid += 1
        cloid = str(item.cloid) if item.cloid is not None else None
        fills = tuple(self._fill(order, px, sz, block, cloid) for px, sz in executed)
        total = sum((sz for _, sz in executed), ZERO)
        avg = sum((px * sz for px, sz in executed), ZERO) / total
        return m.Filled(total, avg, self._oid, cloid), fills

    def _fill(self, order: _Order, px: Decimal, sz: Decimal, block: float, cloid: str | None) -> m.Fill:
        position = self._positions[order.market]
        start = position.size
        signed = sz if order.is_buy else -sz
        closed = ZERO
        if start != 0 and (start > 0) != order.is_buy:  # reducing; a flip opens the rest at px
            closed = (px - position.avg_px) * min(sz, abs(start)) * (1 if start > 0 else -1)
            if sz > abs(start):
                position.avg_px = px
        else:
            position.avg_px = (position.avg_px * abs(start) + px * sz) / (abs(start) + sz)
        position.size = start + signed
        if position.size == 0:
            position.avg_px = ZERO
        self._tid += 1
        fee = fill_fee(px * sz, self.fee_rate.get(order.market, ZERO))
        return m.Fill(
            coin=order.market,
            px=px,
            sz=sz,
            side="B" if order.is_buy else "A",
            time=self.origin_ms + round(block),
            start_position=start,
            dir=fill_direction(start, order.is_buy, sz),
            closed_pnl=closed,
            hash="0x" + "0" * 64,
            oid=self._oid,
            crossed=True,
            fee=fee,
            tid=self._tid,
            fee_token="USDC",
            cloid=cloid,
        )
