"""Costs from the venue (issue 15): the `userFees` decoder, the fee rule and the metadata it reads."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import attrs
import pytest

from hip3_trio.core import CoreSettings, TradingCore
from hip3_trio.fees import (
    CollateralError,
    UserFees,
    check_collateral,
    decode_user_fees,
    market_fee_bps,
    taker_fee_bps,
)
from hip3_trio.journal import JournalSink
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.wire.markets import MarketsError, MarketSpec, parse_fee_scales, parse_meta
from hip3_trio.wire.messages import ProtocolError

TIER0 = UserFees(cross_rate=D("0.00045"), referral_discount=D(0))


def fee(s: str | None, *, growth: bool = False, fees: UserFees = TIER0, hip3: bool = True) -> D | None:
    return taker_fee_bps(fees, hip3=hip3, fee_scale=None if s is None else D(s), growth_mode=growth)


# PROTOCOL.md's worked numbers (tier 0, no discounts): the golden set.
@pytest.mark.parametrize(
    ("scale", "growth", "bps"),
    [
        ("0", False, "4.5"),
        ("0.5", False, "6.75"),
        ("1", False, "9"),
        ("3", False, "27"),
        ("0", True, "0.45"),
        ("1", True, "0.9"),
        ("0.5", True, "0.675"),
    ],
)
def test_the_fee_rule_gives_the_worked_numbers(scale: str, growth: bool, bps: str) -> None:
    assert fee(scale, growth=growth) == D(bps)


def test_the_round_trip_of_the_worked_numbers_is_two_legs() -> None:
    legs = [fee(s) for s in ("0", "0.5", "1", "3")]
    assert [2 * leg for leg in legs if leg is not None] == [9, D("13.5"), 18, 54]


def test_a_tier_and_a_referral_discount_lower_the_base_rate() -> None:
    tier1 = UserFees(cross_rate=D("0.0004"), referral_discount=D("0.04"))  # 4 bps, 4 % referral
    assert fee("1", fees=tier1) == D("0.0004") * D("0.96") * 2 * 10_000 == D("7.68")


def test_the_main_dex_has_no_hip3_factor() -> None:
    assert fee(None, hip3=False) == D("4.5")
    main = MarketSpec(coin="BTC", asset=0, sz_decimals=5, dex="")
    assert market_fee_bps(TIER0, main) == D("4.5")


def test_a_hip3_market_without_a_published_scale_has_no_fee() -> None:
    assert fee(None) is None
    assert market_fee_bps(TIER0, MarketSpec(coin="xyz:COIN", asset=110000, sz_decimals=2, dex="xyz")) is None


# --- userFees ---------------------------------------------------------------------------------------


def test_user_fees_decodes_the_rate_and_the_referral_discount() -> None:
    answer = {"userCrossRate": "0.000315", "userAddRate": "0.000105", "activeReferralDiscount": "0.04"}
    assert decode_user_fees(answer) == UserFees(D("0.000315"), D("0.04"))


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ([], "answer must be an object"),
        ({"activeReferralDiscount": "0"}, "userCrossRate must be a decimal string"),
        ({"userCrossRate": 0.00045, "activeReferralDiscount": "0"}, "userCrossRate must be a decimal"),
        ({"userCrossRate": "abc", "activeReferralDiscount": "0"}, "userCrossRate is not a number"),
        ({"userCrossRate": "-0.0001", "activeReferralDiscount": "0"}, "outside"),
        ({"userCrossRate": "0.00045"}, "activeReferralDiscount must be a decimal string"),
        ({"userCrossRate": "0.00045", "activeReferralDiscount": "1.5"}, "outside"),
        ({"userCrossRate": "NaN", "activeReferralDiscount": "0"}, "outside"),
    ],
)
def test_a_malformed_user_fees_answer_is_a_clear_error(answer: Any, match: str) -> None:
    with pytest.raises(ProtocolError, match=f"malformed userFees frame: .*{match}"):
        decode_user_fees(answer)


# --- metadata ---------------------------------------------------------------------------------------

PERP_DEXS = [None, {"name": "xyz", "deployerFeeScale": "1"}, {"name": "abc", "deployerFeeScale": "0.5"}]


def meta(*entries: dict[str, Any], collateral: int | None = 0) -> dict[str, Any]:
    answer: dict[str, Any] = {"universe": list(entries)}
    if collateral is not None:
        answer["collateralToken"] = collateral
    return answer


def test_fee_scales_are_read_per_dex_from_perp_dexs() -> None:
    assert parse_fee_scales(PERP_DEXS) == {"xyz": D(1), "abc": D("0.5")}
    assert parse_fee_scales([None, {"name": "xyz"}]) == {}


def test_meta_flags_and_the_dex_scale_land_in_the_spec() -> None:
    tsla, eur = parse_meta(
        meta(
            {
                "name": "abc:TSLA",
                "szDecimals": 2,
                "maxLeverage": 10,
                "onlyIsolated": True,
                "marginMode": "strictIsolated",
                "growthMode": "enabled",
            },
            {"name": "abc:EUR", "szDecimals": 1, "isDelisted": True, "growthMode": "disabled"},
        ),
        dex="abc",
        dex_index=2,
        fee_scale=D("0.5"),
    )
    assert (tsla.fee_scale, tsla.growth_mode, tsla.only_isolated, tsla.margin_mode) == (
        D("0.5"),
        True,
        True,
        "strictIsolated",
    )
    assert (tsla.delisted, tsla.collateral_token) == (False, 0)
    assert (eur.growth_mode, eur.delisted, eur.only_isolated, eur.margin_mode) == (False, True, False, None)
    assert market_fee_bps(TIER0, tsla) == D("0.675")
    assert market_fee_bps(TIER0, eur) == D("6.75")


def test_an_assets_own_scale_in_meta_wins_over_the_dex_scale() -> None:
    (coin,) = parse_meta(
        meta({"name": "xyz:COIN", "szDecimals": 2, "deployerFeeScale": "3"}),
        dex="xyz",
        dex_index=1,
        fee_scale=D(1),
    )
    assert coin.fee_scale == D(3) and market_fee_bps(TIER0, coin) == D(27)


def test_the_main_dex_never_carries_a_scale() -> None:
    (btc,) = parse_meta(meta({"name": "BTC", "szDecimals": 5}, collateral=None), dex="", dex_index=0)
    assert btc.fee_scale is None and btc.collateral_token is None


@pytest.mark.parametrize(
    ("entry", "extra", "match"),
    [
        ({"deployerFeeScale": "x"}, {}, "deployerFeeScale is not a number"),
        ({"deployerFeeScale": "12"}, {}, r"outside \[0, 10\)"),
        ({"deployerFeeScale": 1.0}, {}, "must be a decimal string"),
        ({"onlyIsolated": "yes"}, {}, "onlyIsolated must be a boolean"),
        ({"isDelisted": 1}, {}, "isDelisted must be a boolean"),
        ({"growthMode": True}, {}, "growthMode must be a string"),
        ({}, {"collateralToken": "0"}, "collateralToken must be an integer"),
    ],
)
def test_malformed_cost_metadata_is_a_markets_error(
    entry: dict[str, Any], extra: dict[str, Any], match: str
) -> None:
    answer = meta({"name": "xyz:COIN", "szDecimals": 2} | entry) | extra
    with pytest.raises(MarketsError, match=match):
        parse_meta(answer, dex="xyz", dex_index=1)


# --- collateral -------------------------------------------------------------------------------------


def spec(coin: str, token: int | None) -> MarketSpec:
    return MarketSpec(
        coin=coin, asset=110000, sz_decimals=2, dex=coin.partition(":")[0], collateral_token=token
    )


def test_usdc_collateral_passes_and_another_token_is_refused_naming_the_dex() -> None:
    check_collateral([spec("xyz:COIN", 0), spec("abc:TSLA", None)])
    with pytest.raises(CollateralError, match=r"^dex 'abc' settles in collateral token 7, not USDC") as info:
        check_collateral([spec("xyz:COIN", 0), spec("abc:TSLA", 7)])
    assert "\n" not in str(info.value)


def make_core(tmp_path: Path) -> TradingCore:
    sink, _ = JournalSink.open(clock_ms=lambda: 0)
    return TradingCore(
        CoreSettings(markets=("xyz:COIN",)),
        hard_stop=HardStop.load(tmp_path, 0),
        journal=sink,
        exchange_ms=lambda: 0,
        inflight=lambda: 0,
        now=0.0,
    )


def test_the_core_sets_each_markets_fee_on_the_detector_and_refuses_other_collateral(tmp_path: Path) -> None:
    core = make_core(tmp_path)
    core.on_markets({"xyz:COIN": attrs.evolve(spec("xyz:COIN", 0), fee_scale=D(1))})
    assert core.detector is not None and core.detector.costs("xyz:COIN") is None  # no userFees yet
    core.on_fees(TIER0)
    assert core.fees_bps == {"xyz:COIN": D(9)}
    assert core.detector.costs("xyz:COIN") == (D(9), D(25))
    # A later sync's growth mode is taken up; the asset id is unchanged, so it is not a refusal.
    core.on_markets({"xyz:COIN": attrs.evolve(spec("xyz:COIN", 0), fee_scale=D(1), growth_mode=True)})
    assert core.detector.costs("xyz:COIN") == (D("0.9"), D("8.8"))
    with pytest.raises(CollateralError):
        core.on_markets({"xyz:COIN": spec("xyz:COIN", 3)})
