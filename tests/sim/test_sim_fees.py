"""Fees as the venue charges them, and the metadata they come from (`perpDexs`, `meta`, `userFees`).

The rule (docs:fees, PROTOCOL.md Fees): `userCrossRate` x (1 - activeReferralDiscount) x the HIP-3
factor of the dex's deployerFeeScale s (s + 1 if s < 1, else 2s) x 0.1 on a growth-mode market.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import pytest
from eth_account.signers.local import LocalAccount
from trio.testing import MockClock

from hip3_trio.sim.config import SimConfig
from hip3_trio.sim.fees import FeeTier
from hip3_trio.sim.server import Simulator

from .client import Trader, book, connect
from .conftest import BASE_MS

USD = Decimal("0.000001")


def _fee(px: float, sz: str, rate: str) -> Decimal:
    return (Decimal(str(px)) * Decimal(sz) * Decimal(rate)).quantize(USD)


async def _take(sim: Simulator, wallet: LocalAccount, asset: int, coin: str, sz: str) -> dict[str, Any]:
    """Buy `sz` of `coin` at the ask with an IOC; the newest fill as userFills reports it."""
    _, ask = book(sim, coin)
    async with connect(sim) as c:
        status = await Trader(c, wallet).order(asset, True, ask, float(sz))
        assert status["filled"]["totalSz"] == sz
        fills = await c.info({"type": "userFills", "user": wallet.address})
    fill: dict[str, Any] = fills[0]
    assert Decimal(fill["px"]) == Decimal(str(ask)) and fill["crossed"] is True
    return fill


@pytest.mark.parametrize(
    ("scale", "rate"),
    [("0", "0.00045"), ("0.5", "0.000675"), ("1", "0.0009"), ("3", "0.0027")],
)
async def test_taker_fee_scales_with_the_deployer_fee_scale(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount, scale: str, rate: str
) -> None:
    # Tier 0 (4.5 bps) x (s + 1) below 1, x 2s from 1 on: 4.5, 6.75, 9 and 27 bps.
    sim.config.deployer_fee_scales["xyz"] = Decimal(scale)
    _, ask = book(sim, "xyz:COIN")
    fill = await _take(sim, wallet, 110000, "xyz:COIN", "2")
    assert Decimal(fill["fee"]) == _fee(ask, "2", rate)
    assert fill["feeToken"] == "USDC"
    account = sim.exchange.accounts.users[wallet.address.lower()]
    assert account.balances["xyz"] == Decimal(10000) - Decimal(fill["fee"])


async def test_default_fee_scales_are_published_on_perp_dexs(
    autojump_clock: MockClock, sim: Simulator
) -> None:
    async with connect(sim) as c:
        dexs = await c.info({"type": "perpDexs"})
        xyz_meta = await c.info({"type": "meta", "dex": "xyz"})
    assert [(d["name"], d["deployerFeeScale"]) for d in dexs[1:]] == [("xyz", "1"), ("abc", "0.5")]
    assert all(isinstance(d["lastDeployerFeeScaleChangeTime"], str) for d in dexs[1:])
    assert all("deployerFeeScale" not in a for a in xyz_meta["universe"])


@pytest.mark.parametrize("site", ["meta", "both"])
async def test_fee_scale_can_be_published_per_asset_in_meta(
    autojump_clock: MockClock, wallet: LocalAccount, site: Literal["meta", "both"]
) -> None:
    # Where the venue publishes deployerFeeScale is unverified (PROTOCOL.md open point 8): a switch.
    sim = Simulator.create(SimConfig(seed=7, base_epoch_ms=BASE_MS, fee_scale_published_in=site))
    sim.add_account(wallet.address)
    async with connect(sim) as c:
        dexs = await c.info({"type": "perpDexs"})
        abc = await c.info({"type": "meta", "dex": "abc"})
        main = await c.info({"type": "meta"})
    assert [a["deployerFeeScale"] for a in abc["universe"]] == ["0.5", "0.5"]
    assert all("deployerFeeScale" not in a for a in main["universe"])
    assert [("deployerFeeScale" in d) for d in dexs[1:]] == [site == "both"] * 2


async def test_growth_mode_cuts_the_fee_to_a_tenth(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    # abc:TSLA is in growth mode on a dex with s = 0.5: 4.5 bps x 1.5 x 0.1 = 0.675 bps.
    _, ask = book(sim, "abc:TSLA")
    fill = await _take(sim, wallet, 120000, "abc:TSLA", "1")
    assert Decimal(fill["fee"]) == _fee(ask, "1", "0.0000675")
    async with connect(sim) as c:
        universe = (await c.info({"type": "meta", "dex": "abc"}))["universe"]
    assert [(a["name"], a.get("growthMode")) for a in universe] == [
        ("abc:TSLA", "enabled"),
        ("abc:EUR", None),
    ]
    assert isinstance(universe[0]["lastGrowthModeChangeTime"], str)


async def test_the_main_dex_has_no_hip3_factor(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    _, ask = book(sim, "ETH")
    fill = await _take(sim, wallet, 1, "ETH", "0.01")
    assert Decimal(fill["fee"]) == _fee(ask, "0.01", "0.00045")


async def test_tier_and_discounts_apply_before_the_hip3_factor(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    # A tier at 4 bps with a 10 % staking discount reports userCrossRate 3.6 bps; a 4 % referral
    # discount applies on top; the xyz dex (s = 1) doubles it: 0.0004 x 0.9 x 0.96 x 2.
    account = sim.exchange.accounts.users[wallet.address.lower()]
    account.fee_tier = FeeTier(
        taker_rate=Decimal("0.0004"),
        maker_rate=Decimal("0.00012"),
        staking_discount=Decimal("0.1"),
        referral_discount=Decimal("0.04"),
    )
    async with connect(sim) as c:
        fees = await c.info({"type": "userFees", "user": wallet.address})
    assert (fees["userCrossRate"], fees["userAddRate"]) == ("0.00036", "0.000108")
    assert fees["activeReferralDiscount"] == "0.04"
    assert fees["activeStakingDiscount"] == {"bpsOfMaxSupply": "0.001", "discount": "0.1"}
    _, ask = book(sim, "xyz:COIN")
    fill = await _take(sim, wallet, 110000, "xyz:COIN", "2")
    assert Decimal(fill["fee"]) == _fee(ask, "2", "0.00069120")


async def test_user_fees_answers_in_the_venue_shape(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    _, ask = book(sim, "xyz:COIN")
    await _take(sim, wallet, 110000, "xyz:COIN", "2")
    async with connect(sim) as c:
        fees = await c.info({"type": "userFees", "user": wallet.address})
    assert set(fees) == {
        "dailyUserVlm",
        "feeSchedule",
        "userCrossRate",
        "userAddRate",
        "userSpotCrossRate",
        "userSpotAddRate",
        "activeReferralDiscount",
        "trial",
        "feeTrialEscrow",
        "nextTrialAvailableTimestamp",
        "stakingLink",
        "activeStakingDiscount",
    }
    assert (fees["userCrossRate"], fees["userAddRate"], fees["activeReferralDiscount"]) == (
        "0.00045",
        "0.00015",
        "0",
    )
    (today,) = fees["dailyUserVlm"]
    assert today["date"] == "2023-11-14"  # BASE_MS
    assert Decimal(today["userCross"]) == Decimal(str(ask)) * 2 and today["userAdd"] == "0"
    schedule = fees["feeSchedule"]
    assert (schedule["cross"], schedule["add"]) == ("0.00045", "0.00015")
    assert set(schedule["tiers"]) == {"vip", "mm"} and schedule["stakingDiscountTiers"]


async def test_new_accounts_take_their_fee_tier_from_the_config(
    autojump_clock: MockClock, wallet: LocalAccount
) -> None:
    config = SimConfig(
        seed=7, base_epoch_ms=BASE_MS, taker_rate=Decimal("0.00035"), referral_discount=Decimal("0.04")
    )
    sim = Simulator.create(config)
    sim.add_account(wallet.address)
    sim.config.deployer_fee_scales["xyz"] = Decimal(0)
    _, ask = book(sim, "xyz:COIN")
    fill = await _take(sim, wallet, 110000, "xyz:COIN", "2")
    assert Decimal(fill["fee"]) == _fee(ask, "2", "0.000336")


async def test_a_maker_rebate_is_not_scaled(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    # A negative add rate is a rebate: paid as is, not multiplied by the dex's factor (x 2 on xyz).
    account = sim.exchange.accounts.users[wallet.address.lower()]
    account.fee_tier = FeeTier(maker_rate=Decimal("-0.00001"))
    _, ask = book(sim, "xyz:COIN")
    async with connect(sim) as c:
        t = Trader(c, wallet)
        await c.subscribe({"type": "orderUpdates", "user": wallet.address})
        await t.order(110000, False, round(ask * 1.001, 2), 1.0, "Gtc")
        await c.wait_for("orderUpdates")
        market = sim.exchange.markets["xyz:COIN"]
        market.dislocation_bps, market.dislocation_left = 200.0, 5
        await c.wait_for("orderUpdates")
        fills = await c.info({"type": "userFills", "user": wallet.address})
    assert fills[0]["crossed"] is False
    assert Decimal(fills[0]["fee"]) == -(Decimal(fills[0]["px"]) * Decimal("0.00001")).quantize(USD)
    assert fills[0]["fee"].startswith("-")
