"""Price-time matching of a taker against one market's book.

The book has two kinds of liquidity: synthetic levels (the market model's makers, regenerated on each
oracle update, consumed by takers; with impact on, what is consumed stays missing until it refills, see
``markets``) and users' resting orders. A taker walks the opposite
side from the best price while the price is within its limit, never trading against its own orders
(the simulator's self-trade prevention simply skips them). Resting user orders are also taken by the
market itself when a rebuilt synthetic book crosses them — that is how a GTC order gets filled.
"""

from __future__ import annotations

from decimal import Decimal

import attrs

from .markets import Level, Market, RestingOrder


@attrs.frozen
class Match:
    """One execution of a taker: price, size and the resting user order hit (None = synthetic)."""

    px: Decimal
    sz: Decimal
    maker: RestingOrder | None


def _crosses(is_buy: bool, limit_px: Decimal, px: Decimal) -> bool:
    return px <= limit_px if is_buy else px >= limit_px


def would_cross(market: Market, is_buy: bool, limit_px: Decimal, user: str) -> bool:
    """True if an order at this price would trade immediately (what ALO refuses)."""
    top = market.top(not is_buy)
    if top is not None and _crosses(is_buy, limit_px, top.px):
        return True
    return any(
        o.is_buy != is_buy and o.user != user and _crosses(is_buy, limit_px, o.limit_px)
        for o in market.resting
    )


def take(market: Market, is_buy: bool, limit_px: Decimal, size: Decimal, user: str) -> list[Match]:
    """Match a taker against the book, consuming liquidity. Synchronous; returns the executions."""
    levels: list[Level] = market.asks if is_buy else market.bids
    candidates: list[tuple[Decimal, int, Level | RestingOrder]] = []
    for i, lvl in enumerate(levels):
        if lvl.sz > 0 and _crosses(is_buy, limit_px, lvl.px):
            candidates.append((lvl.px, i, lvl))
    for j, order in enumerate(market.resting):
        if order.is_buy != is_buy and order.user != user and _crosses(is_buy, limit_px, order.limit_px):
            candidates.append((order.limit_px, len(levels) + j, order))
    candidates.sort(key=lambda c: (c[0] if is_buy else -c[0], c[1]))
    matches: list[Match] = []
    remaining = size
    for px, _, source in candidates:
        if remaining <= 0:
            break
        fill = min(remaining, source.sz)
        source.sz -= fill
        remaining -= fill
        matches.append(Match(px=px, sz=fill, maker=source if isinstance(source, RestingOrder) else None))
    if market.depletion is None:  # with impact, emptied levels stay to refill
        levels[:] = [lvl for lvl in levels if lvl.sz > 0]
    market.resting[:] = [o for o in market.resting if o.sz > 0]
    return matches


def crossed_resting(market: Market) -> list[RestingOrder]:
    """User orders the synthetic book now crosses; the market takes them in full at their price."""
    top_ask, top_bid = market.top(False), market.top(True)
    best_ask = top_ask.px if top_ask is not None else None
    best_bid = top_bid.px if top_bid is not None else None

    def crossed(order: RestingOrder) -> bool:
        if order.is_buy:
            return best_ask is not None and order.limit_px >= best_ask
        return best_bid is not None and order.limit_px <= best_bid

    return [order for order in market.resting if crossed(order)]
