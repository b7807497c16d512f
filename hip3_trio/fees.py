"""Costs from the venue: the `userFees` answer and the taker fee one leg of a trade pays on a market.

The rule (docs:fees; PROTOCOL.md, Fees), per leg, in bps of notional:

    userCrossRate x (1 - activeReferralDiscount) x HIP-3 factor x (0.1 on a growth-mode market) x 10^4

`userCrossRate` is the account's perp taker rate after its volume tier and staking discount. The HIP-3
factor for the `deployerFeeScale` s of the market (`MarketSpec.fee_scale`: per asset in `meta(dex)`,
else per dex in `perpDexs`) is s + 1 when s < 1 and 2s otherwise; the main dex has none. A market of a
HIP-3 dex whose scale the venue does not publish has no known fee (None): the detector then does not
signal on it (fail closed) rather than assume a scale.

Worked numbers at tier 0 (4.5 bps): s = 0 → 4.5, s = 0.5 → 6.75, s = 1 → 9, s = 3 → 27; growth mode
divides by 10. A round trip (an IOC entry and a reduce-only IOC exit) pays it twice.

Pure logic; the decoder is as strict as wire/messages.py: a malformed answer is a `ProtocolError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

import attrs

from hip3_trio.errors import StartupError
from hip3_trio.wire.markets import MarketSpec
from hip3_trio.wire.messages import ProtocolError

__all__ = [
    "GROWTH_MODE_FACTOR",
    "USDC_TOKEN",
    "CollateralError",
    "UserFees",
    "check_collateral",
    "decode_user_fees",
    "hip3_factor",
    "market_fee_bps",
    "taker_fee_bps",
]

BPS: Final = Decimal(10_000)
GROWTH_MODE_FACTOR: Final = Decimal("0.1")
#: `collateralToken` of a dex whose collateral is USDC (the spot token index 0).
USDC_TOKEN: Final = 0


@attrs.frozen
class UserFees:
    """What `userFees` says about the account: its perp taker rate and active referral discount
    (fractions: 0.00045 = 4.5 bps; 0.04 = 4 %)."""

    cross_rate: Decimal
    referral_discount: Decimal


def _fraction(answer: Mapping[str, Any], key: str, *, low: Decimal, high: Decimal) -> Decimal:
    value = answer.get(key)
    if not isinstance(value, str):
        raise ProtocolError("userFees", f"{key} must be a decimal string, got {value!r:.40}")
    try:
        number = Decimal(value)
    except ArithmeticError:
        raise ProtocolError("userFees", f"{key} is not a number: {value!r:.40}") from None
    if not number.is_finite() or not low <= number <= high:
        raise ProtocolError("userFees", f"{key} {value!r:.40} is outside [{low}, {high}]")
    return number


def decode_user_fees(answer: Any) -> UserFees:
    """A `userFees` answer → `UserFees`. The taker rate must lie in [0, 1 %] and the discount in [0, 1]:
    anything else is not a fee the engine should trade on."""
    if not isinstance(answer, dict):
        raise ProtocolError("userFees", f"answer must be an object, got {type(answer).__name__}")
    return UserFees(
        cross_rate=_fraction(answer, "userCrossRate", low=Decimal(0), high=Decimal("0.01")),
        referral_discount=_fraction(answer, "activeReferralDiscount", low=Decimal(0), high=Decimal(1)),
    )


def hip3_factor(scale: Decimal) -> Decimal:
    """The HIP-3 fee multiplier for deployerFeeScale s: s + 1 if s < 1, else 2s."""
    return scale + 1 if scale < 1 else 2 * scale


def taker_fee_bps(
    fees: UserFees, *, hip3: bool, fee_scale: Decimal | None, growth_mode: bool
) -> Decimal | None:
    """One leg's taker fee in bps; None for a HIP-3 market without a published scale (unknown)."""
    rate = fees.cross_rate * (1 - fees.referral_discount)
    if hip3:
        if fee_scale is None:
            return None
        rate *= hip3_factor(fee_scale)
    if growth_mode:
        rate *= GROWTH_MODE_FACTOR
    return rate * BPS


def market_fee_bps(fees: UserFees, spec: MarketSpec) -> Decimal | None:
    """One leg's taker fee in bps on the market `spec` describes (None if unknown)."""
    return taker_fee_bps(fees, hip3=bool(spec.dex), fee_scale=spec.fee_scale, growth_mode=spec.growth_mode)


class CollateralError(StartupError):
    """A configured dex settles in a token other than USDC: a start-up refusal."""


def check_collateral(specs: Iterable[MarketSpec]) -> None:
    """Refuse markets whose dex's collateral is not USDC. Fees and PnL are kept in the dex's collateral
    and reported as USD: that is only true for USDC, and converting another token (a price feed) is not
    implemented, so summing it as USD would be wrong in silence. A `meta` without `collateralToken`
    (the main dex's older shape) counts as USDC."""
    for spec in specs:
        token = spec.collateral_token
        if token is not None and token != USDC_TOKEN:
            raise CollateralError(
                f"dex {spec.dex or '(main)'!r} settles in collateral token {token}, not USDC "
                f"(token {USDC_TOKEN}): converting its fees and PnL to USD is not supported; "
                "remove its markets from the config"
            )
