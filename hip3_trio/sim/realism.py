"""Seeded, pure models that make the simulator (and a backtest over recorded books) no kinder than the venue.

Four models, each with a switch, bundled in `Realism` (`Realism.off()` = the old instant simulator):

**Blocks** (`BlockModel`, `BlockSchedule`). The venue executes actions in blocks, not on arrival: HyperCore
"produces a block roughly every 70 ms" (Alchemy, hypercore/concepts/blocks-and-finality; the official
docs give only the end-to-end figure: a co-located order's request-to-committed-response latency has a
median of 0.2 s, p99 0.9 s, docs:hyperliquid-l1/l1-overview). Default: 70 ms apart, each gap drawn
uniformly from 70 ± 20 ms (no published distribution; ± 20 ms keeps the median at 70 ms and makes
"which block did my order land in" vary, as it does live). Within a block, actions are sorted
(docs:hypercore/order-book):

1. actions that do not send a GTC or IOC order to any book (noop, leverage, scheduleCancel, and
   **order actions whose orders are all ALO**: post-only orders go first, not after cancels);
2. cancels;
3. actions that send at least one GTC or IOC order;

"within each category, actions are sorted in the order they were proposed by the block proposer",
which the simulator models as arrival order at the venue. `action_class` computes the category.

**Latency** (`LatencyModel`). One-way network delay applied to every frame each way (client → venue
posts, venue → client pushes and replies). Default 5 ms: a client a few hops from the API servers, not
co-located. A round trip therefore costs 10 ms before any block wait.

**Competition** (`CompetitionModel`). Other takers watch the same books. When an oracle update shows
liquidity priced through the oracle by at least `min_edge_bps` (asks below, bids above), one competing
taker sends an IOC for all of it, arriving at the venue `draw_delay_ms` after the update's block: a
lognormal delay with median `median_ms` and shape `sigma` (the delay includes their network). Their
orders go through the same block ordering as ours, so whoever arrives first in the block takes the
liquidity. Defaults: median 8 ms, sigma 0.5, min edge 10 bps. A 5 ms client sees the update 5 ms after
the block and lands 5 ms after it sends, so it needs the competitor to take longer than ~10 ms plus its
own reaction: P(delay > 10 ms) = P(z > ln(10/8)/0.5 = 0.45) ≈ 33 %, less with any processing time, so a
5 ms client wins a minority of dislocations (about a quarter to a third) and a slower one almost none.
10 bps of edge covers a professional's round trip (a top-tier taker pays a few bps per leg on HIP-3)
with margin, below this engine's own threshold (~25 bps on xyz), so every dislocation this engine
would trade is also wanted by the competitor.

**Impact** (`ImpactModel`, `Depletion`). What any taker consumes from a price level stays consumed and
comes back linearly over `refill_s` (default 5 s): a level swept at t is back to its full size at
t + refill_s. Keyed by (side, price), so a rebuilt or re-recorded book at the same price is still thin.
5 s: longer than the 3 s oracle interval, so a level swept just before an update is still thin after
it; short enough that makers on a thin HIP-3 book have requoted within a few updates. **Except a stale
quote**: liquidity taken at a price through the oracle by `stale_bps` (default 10, the competitors' own
threshold) does not come back while the price stays that far through: the maker whose stale quote was
picked off does not post it again at the same price, it requotes around the oracle. Its refill starts
when a look finds the price fair again. Without this rule a slow taker that lost the race still filled
from the "refill" of the swept dislocated level: two 5-minute runs with competitors on, same seed, gave
an entry fill rate of 57 % (12 of 21) with the plain 5 s refill and 8 % (2 of 25) with no refill at all
(`--refill-s 600`): most "wins" were refills of stale quotes (docs/benchmarks.md).

`sweep` fills a taker against a list of (px, sz) levels (best first) without mutating them: the same
fill rule for the simulator and for a backtest over recorded books.

Everything here is pure: no Trio, no I/O, no clock. Times are milliseconds on any monotonic timeline the
caller chooses (the simulator uses Trio's clock; a backtest the recording's timestamps). Randomness
comes from a `random.Random` the caller seeds, so the same seed gives the same blocks and delays.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Mapping, Sequence
from decimal import ROUND_UP, Decimal
from typing import Any, Final

import attrs

__all__ = [
    "BLOCK_CANCEL",
    "BLOCK_FIRST",
    "BLOCK_TAKER",
    "BlockModel",
    "BlockSchedule",
    "CompetitionModel",
    "Depletion",
    "ImpactModel",
    "LatencyModel",
    "Realism",
    "action_class",
    "competitor_levels",
    "sweep",
]

# The three categories of actions within a block (docs:hypercore/order-book), in processing order.
BLOCK_FIRST: Final = 0  # no GTC/IOC order to any book (noop, leverage, ALO-only orders, ...)
BLOCK_CANCEL: Final = 1  # cancel, cancelByCloid
BLOCK_TAKER: Final = 2  # at least one GTC or IOC order
_CANCELS: Final = frozenset({"cancel", "cancelByCloid"})
_BPS: Final = Decimal(10_000)
# Held depletion at a stale price not looked at for this long is forgotten (the book has moved on).
_HELD_FORGOTTEN_MS: Final = 60_000.0
# Keep this much block history behind the latest query (BlockSchedule prunes older boundaries).
_HISTORY_MS: Final = 60_000.0


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


# -- blocks --------------------------------------------------------------------------------------


@attrs.frozen
class BlockModel:
    """Block cadence: gaps uniform in ``interval_ms ± jitter_ms`` (at least 1 ms); disabled = every
    action is executed the moment it arrives (its own block)."""

    interval_ms: float = attrs.field(default=70.0, validator=_positive)
    jitter_ms: float = attrs.field(default=20.0, validator=_non_negative)
    enabled: bool = True

    def __attrs_post_init__(self) -> None:
        if self.jitter_ms >= self.interval_ms:
            raise ValueError(f"jitter_ms ({self.jitter_ms}) must be below interval_ms ({self.interval_ms})")


@attrs.define
class BlockSchedule:
    """The block boundaries of one run: 0 < b0 < b1 < ..., drawn from ``random.Random(seed)``.

    ``next_boundary(t)`` is the first boundary at or after ``t`` (ms); the same seed gives the same
    boundaries whatever the queries. Boundaries more than a minute behind the present are dropped (a
    long run stays small); asking for one of those raises ``ValueError``. The present is the query's
    ``now_ms``, or the query itself for a caller whose queries only move forward: a caller that plans
    ahead (the simulator's block loop asks for the block of an oracle update minutes away, then for an
    action's block now) passes its ``now_ms``.
    """

    model: BlockModel
    seed: int
    _rng: random.Random = attrs.field(init=False)
    _bounds: list[float] = attrs.field(init=False, factory=list)
    _dropped_until: float = attrs.field(init=False, default=-math.inf)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(f"hip3-trio-realism:blocks:{self.seed}")

    def _gap(self) -> float:
        m = self.model
        return max(1.0, m.interval_ms + self._rng.uniform(-m.jitter_ms, m.jitter_ms))

    def next_boundary(self, t_ms: float, *, now_ms: float | None = None) -> float:
        """The first block boundary at or after ``t_ms`` (``t_ms`` itself when blocks are disabled)."""
        if not self.model.enabled:
            return t_ms
        if t_ms <= self._dropped_until:
            raise ValueError(f"block boundaries before {self._dropped_until} ms were dropped")
        while not self._bounds or self._bounds[-1] < t_ms:
            last = self._bounds[-1] if self._bounds else 0.0
            self._bounds.append(last + self._gap())
        i = bisect.bisect_left(self._bounds, t_ms)
        present = t_ms if now_ms is None else min(now_ms, t_ms)
        keep_from = bisect.bisect_left(self._bounds, present - _HISTORY_MS)
        if keep_from > 0:
            self._dropped_until = self._bounds[keep_from - 1]
            del self._bounds[:keep_from]
            i -= keep_from
        return self._bounds[i]


def action_class(action: object) -> int:
    """The block category of a (raw, unverified) action: `BLOCK_FIRST`, `BLOCK_CANCEL` or `BLOCK_TAKER`.

    An order action with any GTC or IOC order is a taker action; ALO-only order actions and every other
    non-cancel action come first. Anything malformed counts as first (it will be refused anyway)."""
    if not isinstance(action, Mapping):
        return BLOCK_FIRST
    kind = action.get("type")
    if kind in _CANCELS:
        return BLOCK_CANCEL
    if kind != "order" or not isinstance(orders := action.get("orders"), list):
        return BLOCK_FIRST
    for order in orders:
        t = order.get("t") if isinstance(order, Mapping) else None
        limit = t.get("limit") if isinstance(t, Mapping) else None
        if isinstance(limit, Mapping) and limit.get("tif") in ("Gtc", "Ioc"):
            return BLOCK_TAKER
    return BLOCK_FIRST


# -- latency -------------------------------------------------------------------------------------


@attrs.frozen
class LatencyModel:
    """One-way network delay in ms, applied to every frame in each direction (0 = none)."""

    one_way_ms: float = attrs.field(default=5.0, validator=_non_negative)


# -- competition ---------------------------------------------------------------------------------


@attrs.frozen
class CompetitionModel:
    """Competing takers: a lognormal arrival delay after a dislocation becomes visible, and the edge
    (vs the oracle, in bps) a level must offer for them to take it."""

    enabled: bool = True
    median_ms: float = attrs.field(default=8.0, validator=_positive)
    sigma: float = attrs.field(default=0.5, validator=_non_negative)
    min_edge_bps: float = attrs.field(default=10.0, validator=_non_negative)

    def draw_delay_ms(self, rng: random.Random) -> float:
        """One competitor's delay (ms) from the dislocation's block to its arrival at the venue."""
        return self.median_ms * math.exp(rng.gauss(0.0, self.sigma))


def competitor_levels(
    levels: Sequence[tuple[Decimal, Decimal]], is_buy: bool, oracle: Decimal, min_edge_bps: float
) -> list[tuple[Decimal, Decimal]]:
    """The levels of one side (best first) a competitor takes: priced through ``oracle`` by at least
    ``min_edge_bps``. ``is_buy``: the competitor buys, so ``levels`` are asks (px <= oracle × (1 − e));
    otherwise they are bids (px >= oracle × (1 + e)). Empty levels are skipped."""
    edge = Decimal(repr(min_edge_bps)) / _BPS
    bound = oracle * (1 - edge) if is_buy else oracle * (1 + edge)
    return [(px, sz) for px, sz in levels if sz > 0 and (px <= bound if is_buy else px >= bound)]


# -- impact --------------------------------------------------------------------------------------


@attrs.frozen
class ImpactModel:
    """Consumed liquidity comes back linearly over ``refill_s`` seconds (disabled = never depleted),
    except at a price through the oracle by at least ``stale_bps``: the maker whose stale quote was
    taken there does not post it again, so it stays consumed while the price stays that far through
    (its refill starts when the oracle moves to it). None: every price refills."""

    enabled: bool = True
    refill_s: float = attrs.field(default=5.0, validator=_positive)
    stale_bps: float | None = attrs.field(
        default=10.0,
        validator=attrs.validators.optional(_non_negative),  # type: ignore[arg-type]
    )


@attrs.define
class Depletion:
    """What takers consumed per (side, price), recovering linearly over the model's refill time.

    ``is_bid`` names the side of the book the liquidity sat on (a buyer consumes asks: ``is_bid=False``).
    Disabled, nothing is ever depleted. Given the oracle (``consume``/``visible``), what was taken at a
    stale price (`stale`) is *held*: fully missing, with no refill, until a look at it finds the price no
    longer stale; its refill starts then."""

    model: ImpactModel
    _taken: dict[tuple[bool, Decimal], list[tuple[float, Decimal]]] = attrs.field(init=False, factory=dict)
    # Held at stale prices: (when last found stale, the size missing).
    _held: dict[tuple[bool, Decimal], tuple[float, Decimal]] = attrs.field(init=False, factory=dict)

    def consume(
        self, is_bid: bool, px: Decimal, sz: Decimal, now_ms: float, oracle: Decimal | None = None
    ) -> None:
        """Record ``sz`` taken from the level at ``px`` at ``now_ms``: held if the price is stale against
        ``oracle``. Forgets fully refilled prices, and held ones not looked at for a minute (the book has
        moved on), so a long run keeps little."""
        if not self.model.enabled or sz <= 0:
            return
        refill_ms = self.model.refill_s * 1000.0
        for key in [k for k, records in self._taken.items() if now_ms - records[-1][0] >= refill_ms]:
            del self._taken[key]
        for key in [k for k, (t, _) in self._held.items() if now_ms - t >= _HELD_FORGOTTEN_MS]:
            del self._held[key]
        key = (is_bid, px)
        if oracle is not None and self.stale(is_bid, px, oracle):
            self._held[key] = (now_ms, self.outstanding(is_bid, px, now_ms) + sz)
            self._taken.pop(key, None)
        else:
            self._taken.setdefault(key, []).append((now_ms, sz))

    def __len__(self) -> int:
        """How many prices still have consumption on record."""
        return len(self._taken.keys() | self._held.keys())

    def refilling(self, now_ms: float) -> bool:
        """Some taken liquidity is still coming back at ``now_ms``: what `visible` shows changes with
        time alone (held liquidity does not: it comes back when the price stops being stale)."""
        refill_ms = self.model.refill_s * 1000.0
        return any(now_ms - records[-1][0] < refill_ms for records in self._taken.values())

    def outstanding(self, is_bid: bool, px: Decimal, now_ms: float) -> Decimal:
        """How much of the level at ``px`` is still missing at ``now_ms`` (expired records are dropped)."""
        key = (is_bid, px)
        held = self._held.get(key)
        missing = held[1] if held is not None else Decimal(0)
        records = self._taken.get(key)
        if not records:
            return missing
        refill_ms = self.model.refill_s * 1000.0
        live = [(t, sz) for t, sz in records if now_ms - t < refill_ms]
        if not live:
            del self._taken[key]
            return missing
        records[:] = live
        for t, sz in live:
            left = 1.0 - max(0.0, now_ms - t) / refill_ms
            # Rounded up to the size's precision: never show more than the model allows.
            missing += (sz * Decimal(repr(left))).quantize(sz, rounding=ROUND_UP) if left < 1.0 else sz
        return missing

    def visible(
        self, is_bid: bool, px: Decimal, base_sz: Decimal, now_ms: float, oracle: Decimal | None = None
    ) -> Decimal:
        """The size a level of undisturbed size ``base_sz`` shows at ``now_ms`` (never below 0). With
        the ``oracle``: at a stale price what is missing is held; at a price no longer stale, what was
        held starts to refill now."""
        if oracle is not None:
            key = (is_bid, px)
            if self.stale(is_bid, px, oracle):
                if key in self._taken or key in self._held:
                    self._held[key] = (now_ms, self.outstanding(is_bid, px, now_ms))
                    self._taken.pop(key, None)
            elif (held := self._held.pop(key, None)) is not None:
                self._taken.setdefault(key, []).append((now_ms, held[1]))
        return max(Decimal(0), base_sz - self.outstanding(is_bid, px, now_ms))

    def stale(self, is_bid: bool, px: Decimal, oracle: Decimal) -> bool:
        """Whether a level is priced through ``oracle`` by the model's ``stale_bps`` (a bid above it, an
        ask below it): a stale quote, which its maker does not post again once taken."""
        bps = self.model.stale_bps
        if bps is None:
            return False
        edge = oracle * Decimal(repr(bps)) / _BPS
        return px >= oracle + edge if is_bid else px <= oracle - edge


# -- the fill rule -------------------------------------------------------------------------------


def sweep(
    levels: Sequence[tuple[Decimal, Decimal]], is_buy: bool, limit_px: Decimal, size: Decimal
) -> list[tuple[Decimal, Decimal]]:
    """Fill a taker of ``size`` against ``levels`` (the opposite side, best first) up to ``limit_px``:
    the (px, sz) executions, best first. Pure: the levels are not changed."""
    fills: list[tuple[Decimal, Decimal]] = []
    remaining = size
    for px, sz in levels:
        if remaining <= 0 or (px > limit_px if is_buy else px < limit_px):
            break
        take = min(remaining, sz)
        if take > 0:
            fills.append((px, take))
            remaining -= take
    return fills


# -- the bundle ----------------------------------------------------------------------------------


@attrs.frozen
class Realism:
    """The four models together. The defaults are the realistic ones (a user's simulator);
    `Realism.off()` is the old instant simulator (tests that assert exact instant timings)."""

    blocks: BlockModel = attrs.Factory(BlockModel)
    latency: LatencyModel = attrs.Factory(LatencyModel)
    competition: CompetitionModel = attrs.Factory(CompetitionModel)
    impact: ImpactModel = attrs.Factory(ImpactModel)

    @classmethod
    def off(cls) -> Realism:
        """No blocks, no latency, no competitors, no impact."""
        return cls(
            blocks=BlockModel(enabled=False),
            latency=LatencyModel(one_way_ms=0.0),
            competition=CompetitionModel(enabled=False),
            impact=ImpactModel(enabled=False),
        )
