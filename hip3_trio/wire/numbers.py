"""Prices and sizes as the exchange accepts them: tick, lot, minimum value and wire strings.

Everything is `Decimal`; a float anywhere here is a bug, so floats are refused outright. Rounding
direction is always the caller's explicit choice: a buy limit that is silently floored below the
intended price changes the trade, and a reduce-only size that rounds up past the position flips it.

The exchange's price rule for perps: at most 5 significant figures and at most `6 - szDecimals`
decimals (spot: `8 - szDecimals`); an integer price is always allowed, whatever its digits.
Sizes are multiples of the lot `10^-szDecimals`. Wire strings are normalised (no exponent, no
trailing zeros) because the exchange re-encodes the action before hashing it: `"105.0"` signs a
different hash than the exchange verifies and recovers a signer that does not exist.
"""

from __future__ import annotations

import enum
import re
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

__all__ = [
    "DEFAULT_MIN_NOTIONAL",
    "MAX_SIG_FIGS",
    "BelowMinNotional",
    "InvalidNumber",
    "OrderTooSmall",
    "Rounding",
    "check_min_notional",
    "clamp_reduce_only_size",
    "from_wire",
    "is_valid_price",
    "is_valid_size",
    "lot",
    "max_price_decimals",
    "round_price",
    "round_size",
    "to_wire",
]

MAX_SIG_FIGS = 5
PERP_MAX_DECIMALS = 6
SPOT_MAX_DECIMALS = 8
DEFAULT_MIN_NOTIONAL = Decimal(10)
_ONE = Decimal(1)
_WIRE_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_MAX_WIRE_DIGITS = 40  # beyond any price or size; bounds the work a hostile frame can cause


class InvalidNumber(ValueError):
    """A price or size that cannot be put on the wire (negative, zero, NaN, infinite, float, ...)."""


class OrderTooSmall(InvalidNumber):
    """A size that rounds to zero lots, or a price that rounds to zero ticks."""


class BelowMinNotional(InvalidNumber):
    """An order whose value (price x size) is under the exchange minimum."""


class Rounding(enum.Enum):
    """Which way a price may move when it is snapped to a valid tick."""

    UP = "up"
    DOWN = "down"

    @classmethod
    def for_order(cls, *, is_buy: bool, aggressive: bool) -> Rounding:
        """Aggressive crosses further (buy up, sell down); passive stays behind (buy down, sell up)."""
        return cls.UP if is_buy == aggressive else cls.DOWN


def _checked(value: Decimal | int, what: str, *, allow_zero: bool = False) -> Decimal:
    """Return `value` as a finite Decimal, refusing floats, NaN, infinities and negatives."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise InvalidNumber(f"{what} must be a Decimal or int, not {type(value).__name__} ({value!r})")
    dec = Decimal(value)
    if not dec.is_finite():
        raise InvalidNumber(f"{what} must be finite, got {dec}")
    if dec < 0 or (dec == 0 and not allow_zero):
        raise InvalidNumber(f"{what} must be {'non-negative' if allow_zero else 'positive'}, got {dec}")
    return dec


def _check_sz_decimals(sz_decimals: int, *, spot: bool) -> None:
    limit = SPOT_MAX_DECIMALS if spot else PERP_MAX_DECIMALS
    if isinstance(sz_decimals, bool) or not isinstance(sz_decimals, int) or not 0 <= sz_decimals <= limit:
        raise InvalidNumber(f"szDecimals must be an int in 0..{limit}, got {sz_decimals!r}")


def max_price_decimals(sz_decimals: int, *, spot: bool = False) -> int:
    """Decimals a price may carry: `6 - szDecimals` for perps, `8 - szDecimals` for spot."""
    _check_sz_decimals(sz_decimals, spot=spot)
    return (SPOT_MAX_DECIMALS if spot else PERP_MAX_DECIMALS) - sz_decimals


def lot(sz_decimals: int) -> Decimal:
    """The size increment `10^-szDecimals`."""
    _check_sz_decimals(sz_decimals, spot=True)
    return Decimal(1).scaleb(-sz_decimals)


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _sig_figs(value: Decimal) -> int:
    return len(value.normalize().as_tuple().digits)


def is_valid_price(px: Decimal, sz_decimals: int, *, spot: bool = False) -> bool:
    """True if the exchange accepts `px` as a limit price for an asset with `sz_decimals`."""
    if not isinstance(px, Decimal) or not px.is_finite() or px <= 0:
        return False
    if px == px.to_integral_value():
        return True
    return _sig_figs(px) <= MAX_SIG_FIGS and _decimals(px) <= max_price_decimals(sz_decimals, spot=spot)


def round_price(px: Decimal | int, sz_decimals: int, rounding: Rounding, *, spot: bool = False) -> Decimal:
    """Snap `px` to the nearest valid price in the direction `rounding`.

    A valid input comes back unchanged (normalised). Raises `OrderTooSmall` if rounding down leaves
    nothing (a price below the smallest tick) and `InvalidNumber` for anything not a positive number.
    """
    value = _checked(px, "price")
    max_dec = max_price_decimals(sz_decimals, spot=spot)
    if value == value.to_integral_value():
        return value.normalize()
    # Decimals allowed by the 5-significant-figure rule, from the leading digit's position.
    sig_decimals = MAX_SIG_FIGS - 1 - value.adjusted()
    decimals = max(0, min(max_dec, sig_decimals))
    quantum = _ONE.scaleb(-decimals)
    mode = ROUND_CEILING if rounding is Rounding.UP else ROUND_FLOOR
    result = value.quantize(quantum, rounding=mode)
    if result <= 0:
        raise OrderTooSmall(f"price {value} rounds {rounding.value} to zero at {decimals} decimals")
    return result.normalize()


def is_valid_size(sz: Decimal, sz_decimals: int) -> bool:
    """True if `sz` is a positive whole number of lots."""
    if not isinstance(sz, Decimal) or not sz.is_finite() or sz <= 0:
        return False
    return sz % lot(sz_decimals) == 0


def round_size(sz: Decimal | int, sz_decimals: int) -> Decimal:
    """Floor `sz` to the lot; a size that floors to zero raises `OrderTooSmall`, never returns 0."""
    value = _checked(sz, "size")
    result = value.quantize(lot(sz_decimals), rounding=ROUND_FLOOR)
    if result <= 0:
        raise OrderTooSmall(f"size {value} is below one lot ({lot(sz_decimals)})")
    return result.normalize()


def clamp_reduce_only_size(desired: Decimal | int, position: Decimal | int, sz_decimals: int) -> Decimal:
    """The size of a reduce-only order: at most the live position, floored to the lot, never zero.

    `position` is the absolute size of the live position. Flooring (never rounding up) guarantees a
    reduce-only order can never ask for more than is open.
    """
    want = _checked(desired, "reduce-only size")
    have = _checked(position, "position size", allow_zero=True)
    if have == 0:
        raise OrderTooSmall("no position to reduce")
    return round_size(min(want, have), sz_decimals)


def check_min_notional(px: Decimal, sz: Decimal, minimum: Decimal = DEFAULT_MIN_NOTIONAL) -> Decimal:
    """Return the order value `px * sz`, raising `BelowMinNotional` if it is under `minimum`."""
    value = _checked(px, "price") * _checked(sz, "size")
    if value < minimum:
        raise BelowMinNotional(
            f"order value ${value.normalize():f} ({sz} @ {px}) is below the ${minimum} minimum"
        )
    return value


def to_wire(value: Decimal | int) -> str:
    """The exchange's string form of a number: no exponent, no trailing zeros, no `-0`.

    `Decimal("1.2345E+5")` → `"123450"`, `Decimal("105.00")` → `"105"`, `Decimal("1E-5")` → `"0.00001"`.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise InvalidNumber(f"wire numbers must be Decimal or int, not {type(value).__name__} ({value!r})")
    dec = Decimal(value)
    if not dec.is_finite():
        raise InvalidNumber(f"wire numbers must be finite, got {dec}")
    if dec == 0:
        return "0"
    return f"{dec.normalize():f}"


def from_wire(text: str, what: str = "number") -> Decimal:
    """Parse a wire decimal string strictly: plain digits with an optional sign and fraction.

    `Decimal()` alone would also take `" 1"`, `"1_000"`, `"1e400"` and `"NaN"`; none of those is a
    number the exchange sends, so each is refused with a message naming `what`.
    """
    if not isinstance(text, str):
        raise InvalidNumber(f"{what} must be a decimal string, got {type(text).__name__} ({text!r:.40})")
    if len(text) > _MAX_WIRE_DIGITS or _WIRE_DECIMAL.fullmatch(text) is None:
        raise InvalidNumber(f"{what} is not a plain decimal string: {text!r:.40}")
    return Decimal(text)
