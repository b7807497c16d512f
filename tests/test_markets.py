"""perpDexs/meta answers map to the right HIP-3 asset ids; anything ambiguous is refused."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hip3_trio.wire.markets import Markets, MarketsError, asset_id, dex_of, parse_meta, parse_perp_dexs
from hip3_trio.wire.numbers import Rounding

PERP_DEXS: list[Any] = [None, {"name": "xyz", "fullName": "XYZ"}, {"name": "abc"}]
META_XYZ = {
    "universe": [
        {"name": "xyz:COIN", "szDecimals": 2, "maxLeverage": 10},
        {"name": "xyz:NVDA", "szDecimals": 3, "maxLeverage": 20},
        {"name": "xyz:GOLD", "szDecimals": 4},
    ]
}


def test_asset_id_rule() -> None:
    assert asset_id(0, 3) == 3
    assert asset_id(1, 0) == 110000
    assert asset_id(2, 5) == 120005
    with pytest.raises(MarketsError):
        asset_id(1, 10_000)


def test_dex_of() -> None:
    assert dex_of("xyz:COIN") == "xyz"
    assert dex_of("BTC") == ""


def test_perp_dexs_indices_follow_list_position() -> None:
    assert parse_perp_dexs(PERP_DEXS) == {"": 0, "xyz": 1, "abc": 2}


@pytest.mark.parametrize(
    "bad",
    [[], [{"name": "xyz"}], [None, {"nope": 1}], [None, {"name": "x"}, {"name": "x"}], {"x": 1}],
)
def test_perp_dexs_refuses_ambiguous_answers(bad: Any) -> None:
    with pytest.raises(MarketsError):
        parse_perp_dexs(bad)


def test_meta_ids_use_the_universe_index() -> None:
    specs = parse_meta(META_XYZ, dex="xyz", dex_index=1)
    assert [(s.coin, s.asset, s.sz_decimals) for s in specs] == [
        ("xyz:COIN", 110000, 2),
        ("xyz:NVDA", 110001, 3),
        ("xyz:GOLD", 110002, 4),
    ]
    assert specs[0].max_leverage == 10 and specs[2].max_leverage is None


def test_meta_refuses_coins_of_another_dex_and_duplicates() -> None:
    with pytest.raises(MarketsError, match="not on dex"):
        parse_meta({"universe": [{"name": "COIN", "szDecimals": 2}]}, dex="xyz", dex_index=1)
    with pytest.raises(MarketsError, match="twice"):
        parse_meta({"universe": [{"name": "xyz:A", "szDecimals": 2}] * 2}, dex="xyz", dex_index=1)
    with pytest.raises(MarketsError, match="szDecimals"):
        parse_meta({"universe": [{"name": "xyz:A"}]}, dex="xyz", dex_index=1)


def test_select_refuses_unknown_configured_coins() -> None:
    specs = parse_meta(META_XYZ, dex="xyz", dex_index=1)
    markets = Markets.select(specs, ["xyz:NVDA", "xyz:COIN"])
    assert list(markets) == ["xyz:NVDA", "xyz:COIN"]
    assert markets.by_asset[110000].coin == "xyz:COIN"
    assert markets.dexes == ["xyz"]
    with pytest.raises(MarketsError, match="xyz:TSLA"):
        Markets.select(specs, ["xyz:COIN", "xyz:TSLA"])


def test_spec_rounds_to_its_tick_and_lot() -> None:
    spec = parse_meta(META_XYZ, dex="xyz", dex_index=1)[1]  # szDecimals 3 → 3 price decimals
    assert spec.price(Decimal("12.34567"), Rounding.UP) == Decimal("12.346")
    assert spec.size(Decimal("1.23456")) == Decimal("1.234")
