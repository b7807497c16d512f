"""The venue's fee rule for perp fills, and the ``userFees`` answer it starts from.

Sources (PROTOCOL.md, Fees): an account has one volume tier across perps, HIP-3 and spot (tier 0:
taker 0.045 %, maker 0.015 %, docs:fees). ``userFees`` reports ``userCrossRate`` (taker) and
``userAddRate`` (maker) after the tier and the staking discount; a fill then pays

    rate x (1 - activeReferralDiscount) x HIP-3 factor x (0.1 on a growth-mode market)

where the HIP-3 factor for the dex's ``deployerFeeScale`` s is s + 1 when s < 1 and 2s otherwise
(docs:fees, docs:hip-3-deployer-actions); the main dex has no factor. A maker rebate (a negative add
rate) is not scaled by s. ``fee`` on the fill is that rate times the fill's notional, in the dex's
collateral (``feeToken``), rounded to 6 decimals as the simulator reports all USD amounts.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import attrs

from .numbers import to_wire, usd

GROWTH_MODE_FACTOR = Decimal("0.1")
# Spot rates at tier 0 (as a live `userFees` answer shows them); the simulator has no spot market.
SPOT_CROSS_RATE = Decimal("0.0007")
SPOT_ADD_RATE = Decimal("0.0004")
# The venue's published schedule (docs:fees), reported in `feeSchedule` for shape; the simulator does
# not move accounts between tiers: an account's tier is its `FeeTier`.
_VIP_TIERS = (
    ("5000000", "0.0004", "0.00012", "0.0006", "0.0003"),
    ("25000000", "0.00035", "0.00008", "0.0005", "0.0002"),
    ("100000000", "0.0003", "0.00004", "0.0004", "0.0001"),
    ("500000000", "0.00028", "0", "0.00035", "0"),
    ("2000000000", "0.00026", "0", "0.0003", "0"),
    ("7000000000", "0.00024", "0", "0.00025", "0"),
)
_MM_TIERS = (("0.005", "-0.00001"), ("0.015", "-0.00002"), ("0.03", "-0.00003"))
_STAKING_TIERS = (
    ("0.0001", "0.05"),
    ("0.001", "0.1"),
    ("0.01", "0.15"),
    ("0.1", "0.2"),
    ("1", "0.3"),
    ("5", "0.4"),
)
_REFERRAL_DISCOUNT = "0.04"


@attrs.define
class FeeTier:
    """One account's fee standing: its tier's perp rates and its discounts (fractions)."""

    taker_rate: Decimal = Decimal("0.00045")
    maker_rate: Decimal = Decimal("0.00015")
    staking_discount: Decimal = Decimal(0)
    referral_discount: Decimal = Decimal(0)

    @property
    def user_cross_rate(self) -> Decimal:
        """``userCrossRate``: the tier's taker rate after the staking discount."""
        return self.taker_rate * (1 - self.staking_discount)

    @property
    def user_add_rate(self) -> Decimal:
        """``userAddRate``: the tier's maker rate after the staking discount (a rebate is not discounted)."""
        if self.maker_rate <= 0:
            return self.maker_rate
        return self.maker_rate * (1 - self.staking_discount)


def hip3_factor(scale: Decimal) -> Decimal:
    """The HIP-3 fee multiplier for deployerFeeScale s: s + 1 if s < 1, else 2s."""
    return scale + 1 if scale < 1 else 2 * scale


def fill_rate(tier: FeeTier, *, crossed: bool, fee_scale: Decimal | None, growth_mode: bool) -> Decimal:
    """The fraction of notional a fill pays (negative = rebate). ``fee_scale`` None = the main dex."""
    base = tier.user_cross_rate if crossed else tier.user_add_rate
    rate = base * (1 - tier.referral_discount)
    if rate < 0:
        return rate  # a maker rebate is not scaled by the deployer or growth mode
    if fee_scale is not None:
        rate *= hip3_factor(fee_scale)
    if growth_mode:
        rate *= GROWTH_MODE_FACTOR
    return rate


def fill_fee(notional: Decimal, rate: Decimal) -> Decimal:
    """The fee of one fill, rounded as the simulator reports USD amounts."""
    return usd(notional * rate)


def _rate(value: Decimal) -> str:
    return "-" + to_wire(-value) if value < 0 else to_wire(value)


def user_fees(tier: FeeTier, taker_volume: Decimal, maker_volume: Decimal, now_ms: int) -> dict[str, Any]:
    """The ``userFees`` answer (TS-SDK userFees.ts): today's volumes, the schedule, the rates."""
    day = datetime.datetime.fromtimestamp(now_ms / 1000, tz=datetime.UTC).date().isoformat()
    return {
        "dailyUserVlm": [
            {
                "date": day,
                "userCross": to_wire(usd(taker_volume)),
                "userAdd": to_wire(usd(maker_volume)),
                "exchange": to_wire(usd(taker_volume + maker_volume)),
            }
        ],
        "feeSchedule": {
            "cross": "0.00045",
            "add": "0.00015",
            "spotCross": to_wire(SPOT_CROSS_RATE),
            "spotAdd": to_wire(SPOT_ADD_RATE),
            "tiers": {
                "vip": [
                    {"ntlCutoff": c, "cross": x, "add": a, "spotCross": sx, "spotAdd": sa}
                    for c, x, a, sx, sa in _VIP_TIERS
                ],
                "mm": [{"makerFractionCutoff": c, "add": a} for c, a in _MM_TIERS],
            },
            "referralDiscount": _REFERRAL_DISCOUNT,
            "stakingDiscountTiers": [{"bpsOfMaxSupply": b, "discount": d} for b, d in _STAKING_TIERS],
        },
        "userCrossRate": _rate(tier.user_cross_rate),
        "userAddRate": _rate(tier.user_add_rate),
        "userSpotCrossRate": to_wire(SPOT_CROSS_RATE * (1 - tier.staking_discount)),
        "userSpotAddRate": to_wire(SPOT_ADD_RATE * (1 - tier.staking_discount)),
        "activeReferralDiscount": to_wire(tier.referral_discount),
        "trial": None,
        "feeTrialEscrow": "0",
        "nextTrialAvailableTimestamp": None,
        "stakingLink": None,
        "activeStakingDiscount": {
            "bpsOfMaxSupply": _staking_bps(tier.staking_discount),
            "discount": to_wire(tier.staking_discount),
        },
    }


def _staking_bps(discount: Decimal) -> str:
    """The smallest staking tier that grants ``discount`` ("0" without a discount)."""
    for bps, tier_discount in _STAKING_TIERS:
        if Decimal(tier_discount) >= discount > 0:
            return bps
    return "0"
