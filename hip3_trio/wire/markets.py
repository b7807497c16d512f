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
    "parse_fee_scales",
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
    # Costs and margin flags from the venue (issue 15; read at every sync). `fee_scale` is the
    # deployerFeeScale s of the asset (from meta) or else of its dex (from perpDexs); None on the main
    # dex, or where the venue publishes none. `collateral_token` is meta's spot token index (0 = USDC);
    # None when meta does not say.
    fee_scale: Decimal | None = None
    growth_mode: bool = False
    only_isolated: bool = False
    margin_mode: str | None = None
    delisted: bool = False
    collateral_token: int | None = None

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


def _fee_scale(value: object, where: str) -> Decimal:
    """A `deployerFeeScale` (a decimal string on the wire): finite, in [0, 10) (3 outside growth mode)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MarketsError(f"{where} deployerFeeScale must be a decimal string, got {value!r:.40}")
    try:
        scale = Decimal(value)
    except ArithmeticError:
        raise MarketsError(f"{where} deployerFeeScale is not a number: {value!r:.40}") from None
    if not scale.is_finite() or not 0 <= scale < 10:
        raise MarketsError(f"{where} deployerFeeScale {value!r:.40} is outside [0, 10)")
    return scale


def parse_fee_scales(answer: Any) -> dict[str, Decimal]:
    """Dex name → `deployerFeeScale` from a `perpDexs` answer, for the entries that carry one.

    PROTOCOL.md (Fees): the scale is typed on the `perpDexs` entry but may be published per asset in
    `meta(dex)` instead (UNVERIFIED which is live): read both; `parse_meta`'s per-asset value wins."""
    scales: dict[str, Decimal] = {}
    for entry in answer[1:] if isinstance(answer, list) else ():
        if isinstance(entry, dict) and "deployerFeeScale" in entry:
            name = entry.get("name")
            scales[str(name)] = _fee_scale(entry["deployerFeeScale"], f"perpDexs {name!r}")
    return scales


def _flag(entry: Mapping[str, Any], key: str, where: str) -> bool:
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise MarketsError(f"{where} {key} must be a boolean, got {value!r:.40}")
    return value


def _text_or_none(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise MarketsError(f"{where} {key} must be a string, got {value!r:.40}")
    return value


def parse_meta(
    answer: Any, *, dex: str, dex_index: int, fee_scale: Decimal | None = None
) -> list[MarketSpec]:
    """Market specs from a `meta` answer for `dex`, ids from each coin's position in `universe`.

    `fee_scale` is the dex's `deployerFeeScale` from `perpDexs` (if any); an asset's own
    `deployerFeeScale` in `meta` replaces it. The main dex has no HIP-3 factor: its scale is None."""
    universe = answer.get("universe") if isinstance(answer, dict) else None
    if not isinstance(universe, list):
        raise MarketsError(f"meta for dex {dex!r} has no universe list")
    collateral = answer.get("collateralToken")
    if collateral is not None and (isinstance(collateral, bool) or not isinstance(collateral, int)):
        raise MarketsError(f"meta {dex!r} collateralToken must be an integer, got {collateral!r:.40}")
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
        where = f"meta {dex!r} {name}"
        scale = fee_scale
        if "deployerFeeScale" in entry:
            scale = _fee_scale(entry["deployerFeeScale"], where)
        growth = _text_or_none(entry, "growthMode", where)
        specs.append(
            MarketSpec(
                coin=name,
                asset=asset_id(dex_index, index),
                sz_decimals=sz_decimals,
                dex=dex,
                max_leverage=leverage if isinstance(leverage, int) else None,
                fee_scale=scale if dex else None,
                growth_mode=growth == "enabled",
                only_isolated=_flag(entry, "onlyIsolated", where),
                margin_mode=_text_or_none(entry, "marginMode", where),
                delisted=_flag(entry, "isDelisted", where),
                collateral_token=collateral,
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
