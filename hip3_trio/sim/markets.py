"""Market metadata (perp dexs, universes, asset ids) and per-market price state.

Metadata follows HIP-3: ``perpDexs`` is ``[null, xyz, abc]``; a HIP-3 universe carries prefixed names
("xyz:COIN"); asset id = ``100000 + dex_index * 10000 + index_in_meta`` (the main dex uses the bare
index). The markets have different ``szDecimals`` so a client that maps ids or decimals wrongly
sends a visibly wrong order. HIP-3 assets are isolated-only (``onlyIsolated`` and ``marginMode`` in
``meta``, docs:perpetuals); ``xyz:OLD`` is delisted (``isDelisted``): it keeps its place in the universe
(asset ids never shift) but has no book, its prices never move and orders on it are refused.

Each market runs a seeded oracle random walk (one step per oracle update), a mark that follows the
book but moves at most 1 % per update, and a synthetic book around a centre that usually sits on the
oracle but sometimes dislocates from it for a few updates — the signal an oracle-dislocation taker
trades. Every market has its own ``random.Random`` seeded from the run seed and the coin, so trading
activity never perturbs the price path.

Impact (``realism.ImpactModel``): each synthetic level keeps its undisturbed ``base`` size; with a
``depletion`` tracker, what takers consumed at a price stays missing across rebuilds and comes back over
the refill time (``refill``), so an oracle update no longer erases impact. Emptied levels stay in the
lists (size 0) until they refill; every reader skips them. Without a tracker (impact off) a rebuild
restores every level, as before.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Literal

import attrs

from .config import MarketModel
from .numbers import round_price, round_size, tick_of
from .realism import Depletion

MarginMode = Literal["strictIsolated", "noCross"]


@attrs.frozen
class AssetDef:
    """One perp of a dex as deployed: what ``meta`` says about it, plus the sim's starting price.

    ``only_isolated`` is the older flag, ``margin_mode`` the newer one ("strictIsolated": isolated and
    margin cannot be taken out of an open position; "noCross": isolated only); neither = cross allowed.
    """

    coin: str
    sz_decimals: int
    max_leverage: int
    start_px: str
    only_isolated: bool = False
    margin_mode: MarginMode | None = None
    delisted: bool = False


@attrs.frozen
class AssetSpec:
    """One perp as ``meta`` describes it, plus the sim's starting price."""

    name: str
    asset: int
    sz_decimals: int
    max_leverage: int
    dex: str
    start_px: Decimal
    only_isolated: bool = False
    margin_mode: MarginMode | None = None
    delisted: bool = False

    @property
    def isolated_only(self) -> bool:
        """True if cross margin is not allowed on this asset."""
        return self.only_isolated or self.margin_mode is not None


@attrs.frozen
class DexSpec:
    """One entry of ``perpDexs`` (the main dex is the null entry at index 0)."""

    name: str
    full_name: str
    deployer: str
    assets: tuple[AssetDef, ...]
    # The dex's collateral: `meta(dex)`'s `collateralToken` (a spot token index) and the name fills
    # report as `feeToken`. USDC (token 0) on every default dex.
    collateral_token: int = 0
    collateral_name: str = "USDC"


MAIN_DEX = DexSpec(
    name="",
    full_name="",
    deployer="",
    assets=(AssetDef("BTC", 5, 40, "100000"), AssetDef("ETH", 4, 25, "3500")),
)
XYZ_DEX = DexSpec(
    name="xyz",
    full_name="XYZ Markets",
    deployer="0x88806a71d74ad0a510b350545c9ae490912f0888",
    assets=(
        AssetDef("COIN", 2, 10, "250", only_isolated=True, margin_mode="noCross"),
        AssetDef("NVDA", 3, 10, "180", only_isolated=True, margin_mode="noCross"),
        AssetDef("GOLD", 4, 20, "2400", only_isolated=True, margin_mode="noCross"),
        AssetDef("OLD", 2, 10, "50", only_isolated=True, margin_mode="noCross", delisted=True),
    ),
)
ABC_DEX = DexSpec(
    name="abc",
    full_name="ABC Perps",
    deployer="0x0abc0000000000000000000000000000000000ab",
    assets=(
        AssetDef("TSLA", 2, 10, "300", only_isolated=True, margin_mode="strictIsolated"),
        AssetDef("EUR", 1, 20, "1.08", only_isolated=True),
    ),
)
DEFAULT_DEXES: tuple[DexSpec, ...] = (MAIN_DEX, XYZ_DEX, ABC_DEX)


def asset_id(dex_index: int, index_in_meta: int) -> int:
    """The venue's asset id rule."""
    if dex_index == 0:
        return index_in_meta
    return 100_000 + dex_index * 10_000 + index_in_meta


def build_specs(dexes: tuple[DexSpec, ...]) -> list[AssetSpec]:
    """Every asset of every dex, with prefixed names and ids from the rule."""
    specs: list[AssetSpec] = []
    for dex_index, dex in enumerate(dexes):
        for index, a in enumerate(dex.assets):
            name = f"{dex.name}:{a.coin}" if dex.name else a.coin
            specs.append(
                AssetSpec(
                    name=name,
                    asset=asset_id(dex_index, index),
                    sz_decimals=a.sz_decimals,
                    max_leverage=a.max_leverage,
                    dex=dex.name,
                    start_px=Decimal(a.start_px),
                    only_isolated=a.only_isolated,
                    margin_mode=a.margin_mode,
                    delisted=a.delisted,
                )
            )
    return specs


@attrs.define
class Level:
    """Synthetic liquidity at one price: ``sz`` shown now, ``base`` before any taker consumed it."""

    px: Decimal
    sz: Decimal
    base: Decimal = attrs.field(default=attrs.Factory(lambda self: self.sz, takes_self=True))


@attrs.define
class RestingOrder:
    """A user's order on the book (GTC or ALO remainder)."""

    oid: int
    user: str
    coin: str
    asset: int
    is_buy: bool
    limit_px: Decimal
    sz: Decimal
    orig_sz: Decimal
    timestamp: int
    tif: str
    reduce_only: bool
    cloid: str | None = None


def _d(value: float) -> Decimal:
    return Decimal(repr(value))


@attrs.define
class Market:
    """Price state and book of one perp."""

    spec: AssetSpec
    model: MarketModel
    rng: random.Random
    oracle: Decimal
    mark: Decimal
    prev_day_px: Decimal
    dislocation_bps: float = 0.0
    dislocation_left: int = 0
    bids: list[Level] = attrs.Factory(list)
    asks: list[Level] = attrs.Factory(list)
    resting: list[RestingOrder] = attrs.Factory(list)
    day_volume: Decimal = Decimal(0)
    open_interest: Decimal = Decimal(0)
    # What takers consumed from the synthetic levels (None: impact off, a rebuild restores everything).
    depletion: Depletion | None = None

    @classmethod
    def create(cls, spec: AssetSpec, model: MarketModel, seed: int) -> Market:
        market = cls(
            spec=spec,
            model=model,
            rng=random.Random(f"hip3-trio-sim:{seed}:{spec.name}"),
            oracle=spec.start_px,
            mark=spec.start_px,
            prev_day_px=spec.start_px,
        )
        market.rebuild_book()
        return market

    # -- state changes (synchronous) -------------------------------------------------------------

    def step(self) -> None:
        """One oracle update: move the oracle, maybe start or end a dislocation, rebuild the book.

        A delisted market has no book and its prices stay where they are."""
        if self.spec.delisted:
            return
        move = self.rng.gauss(0.0, self.model.oracle_vol_bps / 10_000)
        raw = self.oracle * (1 + _d(move))
        self.oracle = round_price(raw, self.spec.sz_decimals, up=move > 0)
        if self.dislocation_left > 0:
            self.dislocation_left -= 1
            if self.dislocation_left == 0:
                self.dislocation_bps = 0.0
        elif self.rng.random() < self.model.dislocation_rate:
            sign = 1.0 if self.rng.random() < 0.5 else -1.0
            self.dislocation_bps = sign * self.model.dislocation_bps * self.rng.uniform(0.5, 1.5)
            self.dislocation_left = self.model.dislocation_updates
        self.rebuild_book()

    def rebuild_book(self) -> None:
        """Replace the synthetic liquidity around the (possibly dislocated) centre; update the mark."""
        if self.spec.delisted:
            self.bids, self.asks = [], []
            return
        szd = self.spec.sz_decimals
        centre = self.oracle * (1 + _d(self.dislocation_bps / 10_000))
        half = _d(self.model.half_spread_bps / 10_000)
        best_bid = round_price(centre * (1 - half), szd, up=False)
        best_ask = round_price(centre * (1 + half), szd, up=True)
        if best_ask <= best_bid:
            best_ask = best_bid + tick_of(best_bid, szd)
        spacing = _d(self.model.level_spacing_bps / 10_000)
        self.bids = []
        self.asks = []
        bid, ask = best_bid, best_ask
        low, high = self.model.level_notional_usd
        for i in range(self.model.book_levels):
            if i:
                nxt = round_price(bid * (1 - spacing), szd, up=False)
                bid = min(nxt, bid - tick_of(bid, szd))
                nxt = round_price(ask * (1 + spacing), szd, up=True)
                ask = max(nxt, ask + tick_of(ask, szd))
            if bid > 0:
                self.bids.append(Level(bid, self._level_size(bid, low, high)))
            self.asks.append(Level(ask, self._level_size(ask, low, high)))
        self._update_mark()

    def refill(self, now_ms: float) -> None:
        """Show each synthetic level at its base size less what is still depleted at ``now_ms``."""
        if self.depletion is None:
            return
        for is_bid, levels in ((True, self.bids), (False, self.asks)):
            for lvl in levels:
                lvl.sz = self.depletion.visible(is_bid, lvl.px, lvl.base, now_ms, self.oracle)

    def _level_size(self, px: Decimal, low: float, high: float) -> Decimal:
        notional = _d(self.rng.uniform(low, high))
        lot = Decimal(1).scaleb(-self.spec.sz_decimals)
        return max(round_size(notional / px, self.spec.sz_decimals), lot)

    def _update_mark(self) -> None:
        bid, ask = self.best_bid(), self.best_ask()
        candidates = sorted(x for x in (self.oracle, bid, ask) if x is not None)
        target = candidates[len(candidates) // 2]
        cap = self.mark * Decimal("0.01")
        target = min(max(target, self.mark - cap), self.mark + cap)
        self.mark = round_price(target, self.spec.sz_decimals, up=False)

    # -- reads ----------------------------------------------------------------------------------

    def top(self, is_bid: bool) -> Level | None:
        """The best synthetic level of a side that still shows size."""
        return next((lvl for lvl in (self.bids if is_bid else self.asks) if lvl.sz > 0), None)

    def best_bid(self) -> Decimal | None:
        top = self.top(True)
        prices = [top.px] if top else []
        prices += [o.limit_px for o in self.resting if o.is_buy]
        return max(prices) if prices else None

    def best_ask(self) -> Decimal | None:
        top = self.top(False)
        prices = [top.px] if top else []
        prices += [o.limit_px for o in self.resting if not o.is_buy]
        return min(prices) if prices else None

    def mid(self) -> Decimal | None:
        bid, ask = self.best_bid(), self.best_ask()
        if bid is None or ask is None:
            return None
        return (bid + ask) / 2

    def l2_levels(self, is_buy: bool, depth: int = 20) -> list[tuple[Decimal, Decimal, int]]:
        """Aggregated (px, sz, n) levels of one side, best first: synthetic plus user orders."""
        agg: dict[Decimal, tuple[Decimal, int]] = {}
        for lvl in self.bids if is_buy else self.asks:
            if lvl.sz > 0:
                sz, n = agg.get(lvl.px, (Decimal(0), 0))
                agg[lvl.px] = (sz + lvl.sz, n + 1)
        for order in self.resting:
            if order.is_buy == is_buy:
                sz, n = agg.get(order.limit_px, (Decimal(0), 0))
                agg[order.limit_px] = (sz + order.sz, n + 1)
        prices = sorted(agg, reverse=is_buy)[:depth]
        return [(px, agg[px][0], agg[px][1]) for px in prices]
