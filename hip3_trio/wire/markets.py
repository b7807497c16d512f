"""Market metadata: from `perpDexs` and `meta(dex)` answers to asset ids, tick and lot per coin.

HIP-3 asset ids are `100000 + perp_dex_index * 10000 + index_in_meta`, where the dex index is the
position in the `perpDexs` list (entry 0 is `null`, the main dex) and the meta index is the position
in that dex's `meta` universe — not the order of any other list. A wrong mapping sends an order to a
different market, so every step here refuses to guess: a missing dex, a duplicate coin or a coin the
config names but the venue does not list is a `MarketsError` at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import attrs

from hip3_trio.wire.numbers import Rounding, lot, round_price, round_size

__all__ = [
    "MarketSpec",
    "Markets",
    "MarketsError",
    "asset_id",
    "dex_of",
    "parse_meta",
    "parse_perp_dexs",
]

HIP3_BASE: Final = 100_000
DEX_STRIDE: Final = 10_000


class MarketsError(ValueError):
    """Metadata that cannot be mapped safely to asset ids."""


@attrs.frozen
class MarketSpec:
    """One tradable perp: its coin name, asset id, lot decimals and dex."""

    coin: str
    asset: int
    sz_decimals: int
    dex: str
    max_leverage: int | None = None
    # Margin (meta `isDelisted`): a delisted market is refused at start-up (`venue.queries`).
    delisted: bool = False

    @property
    def lot(self) -> Decimal:
        return lot(self.sz_decimals)

    def price(self, px: Decimal, rounding: Rounding) -> Decimal:
        """`px` snapped to this market's tick in the given direction."""
        return round_price(px, self.sz_decimals, rounding)

    def size(self, sz: Decimal) -> Decimal:
        """`sz` floored to this market's lot (never zero: raises OrderTooSmall)."""
        return round_size(sz, self.sz_decimals)


def asset_id(dex_index: int, index_in_meta: int) -> int:
    """The asset id of the `index_in_meta`-th coin of the `dex_index`-th perp dex (0 = main dex)."""
    if dex_index < 0 or index_in_meta < 0:
        raise MarketsError(f"negative index: dex {dex_index}, meta {index_in_meta}")
    if dex_index == 0:
        return index_in_meta
    if index_in_meta >= DEX_STRIDE:
        raise MarketsError(f"meta index {index_in_meta} does not fit the HIP-3 id scheme")
    return HIP3_BASE + dex_index * DEX_STRIDE + index_in_meta


def dex_of(coin: str) -> str:
    """The dex a coin belongs to: the prefix before `:` (`xyz:COIN` → `xyz`), or `""` for the main dex."""
    prefix, sep, _ = coin.partition(":")
    return prefix if sep else ""


def parse_perp_dexs(answer: Any) -> dict[str, int]:
    """Map dex name → index from a `perpDexs` answer (`[null, {"name": ...}, ...]`)."""
    if not isinstance(answer, list) or not answer:
        raise MarketsError(f"perpDexs answer must be a non-empty list, got {type(answer).__name__}")
    if answer[0] is not None:
        raise MarketsError("perpDexs entry 0 must be null (the main dex)")
    indices: dict[str, int] = {"": 0}
    for index, entry in enumerate(answer[1:], start=1):
        if entry is None:
            continue
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise MarketsError(f"perpDexs entry {index} has no name: {entry!r:.80}")
        if name in indices:
            raise MarketsError(f"perpDexs lists dex {name!r} twice")
        indices[name] = index
    return indices


def parse_meta(answer: Any, *, dex: str, dex_index: int) -> list[MarketSpec]:
    """Market specs from a `meta` answer for `dex`, ids from each coin's position in `universe`."""
    universe = answer.get("universe") if isinstance(answer, dict) else None
    if not isinstance(universe, list):
        raise MarketsError(f"meta for dex {dex!r} has no universe list")
    specs = []
    seen: set[str] = set()
    for index, entry in enumerate(universe):
        if not isinstance(entry, dict):
            raise MarketsError(f"meta {dex!r} universe[{index}] is not an object")
        name, sz_decimals = entry.get("name"), entry.get("szDecimals")
        if not isinstance(name, str) or not isinstance(sz_decimals, int) or isinstance(sz_decimals, bool):
            raise MarketsError(f"meta {dex!r} universe[{index}] lacks name/szDecimals: {entry!r:.80}")
        if dex_of(name) != dex:
            raise MarketsError(f"meta {dex!r} universe[{index}] names {name!r}, which is not on dex {dex!r}")
        if name in seen:
            raise MarketsError(f"meta {dex!r} lists {name!r} twice")
        seen.add(name)
        leverage = entry.get("maxLeverage")
        specs.append(
            MarketSpec(
                coin=name,
                asset=asset_id(dex_index, index),
                sz_decimals=sz_decimals,
                dex=dex,
                max_leverage=leverage if isinstance(leverage, int) else None,
                delisted=entry.get("isDelisted") is True,
            )
        )
    return specs


@attrs.frozen
class Markets:
    """The configured markets, by coin and by asset id."""

    by_coin: Mapping[str, MarketSpec]

    @classmethod
    def select(cls, available: Iterable[MarketSpec], wanted: Sequence[str]) -> Markets:
        """Keep the `wanted` coins; any wanted coin the venue does not list is a start-up error."""
        index = {spec.coin: spec for spec in available}
        missing = [coin for coin in wanted if coin not in index]
        if missing:
            raise MarketsError(f"configured markets not listed by the venue: {', '.join(missing)}")
        return cls({coin: index[coin] for coin in wanted})

    @property
    def by_asset(self) -> dict[int, MarketSpec]:
        return {spec.asset: spec for spec in self.by_coin.values()}

    @property
    def dexes(self) -> list[str]:
        """The dexes the configured markets live on, each once, in config order."""
        return list(dict.fromkeys(spec.dex for spec in self.by_coin.values()))

    def __getitem__(self, coin: str) -> MarketSpec:
        return self.by_coin[coin]

    def __contains__(self, coin: object) -> bool:
        return coin in self.by_coin

    def __iter__(self) -> Any:
        return iter(self.by_coin)

    def __len__(self) -> int:
        return len(self.by_coin)
