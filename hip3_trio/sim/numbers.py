"""Decimal helpers for the simulator: parse, normalise and validate prices and sizes.

The venue treats every price and size as a decimal string and re-encodes it in a normalised form
(no exponent, no trailing zeros) before hashing an action. The simulator does the same, so a client
that signs "105.0" hashes different bytes from the ones the simulator hashes and recovers a different
signer — exactly the failure a real client sees. Tick and lot rules follow the perp rules: at most 5
significant figures (an integer price is always allowed), at most ``6 - szDecimals`` decimals, and a
size that is a multiple of ``10**-szDecimals``.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_UP, Decimal, InvalidOperation

MAX_PERP_DECIMALS = 6
MAX_SIG_FIGS = 5


class BadDecimal(ValueError):
    """A wire string that is not a plain finite decimal number."""


def parse_decimal(text: object) -> Decimal:
    """Parse a wire decimal string; reject non-strings, NaN, infinities and negatives."""
    if not isinstance(text, str) or not text:
        raise BadDecimal(f"expected a decimal string, got {text!r}")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise BadDecimal(f"not a decimal: {text!r}") from exc
    if not value.is_finite() or value < 0:
        raise BadDecimal(f"not a finite non-negative decimal: {text!r}")
    return value


def to_wire(value: Decimal) -> str:
    """Format a decimal the way the venue emits it: no exponent, no trailing zeros, "0" for zero."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def normalise_wire(text: object) -> str:
    """Re-encode a received decimal string the way the venue does before hashing."""
    return to_wire(parse_decimal(text))


def price_decimals(price: Decimal, sz_decimals: int) -> int:
    """How many decimals a price of this magnitude may carry for a perp with ``sz_decimals``."""
    int_digits = len(str(int(price))) if price >= 1 else 0
    return max(0, min(MAX_PERP_DECIMALS - sz_decimals, MAX_SIG_FIGS - int_digits))


def is_valid_price(price: Decimal, sz_decimals: int) -> bool:
    """True if the price respects the perp tick rules (integer prices always pass)."""
    if price <= 0:
        return False
    if price == price.to_integral_value():
        return True
    exponent = price.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    decimals = -exponent
    if decimals > MAX_PERP_DECIMALS - sz_decimals:
        return False
    digits = price.normalize().as_tuple().digits
    return len(digits) <= MAX_SIG_FIGS


def is_valid_size(size: Decimal, sz_decimals: int) -> bool:
    """True if the size is a positive multiple of the lot ``10**-sz_decimals``."""
    if size <= 0:
        return False
    lot = Decimal(1).scaleb(-sz_decimals)
    return (size % lot) == 0


def round_price(price: Decimal, sz_decimals: int, *, up: bool) -> Decimal:
    """Round a price onto the tick grid, up or down, keeping it valid."""
    decimals = price_decimals(price, sz_decimals)
    quantum = Decimal(1).scaleb(-decimals)
    rounded = price.quantize(quantum, rounding=ROUND_UP if up else ROUND_DOWN)
    if rounded >= 10**MAX_SIG_FIGS:
        # Above 5 integer digits only integers are valid; keep 5 significant figures anyway.
        step = Decimal(10) ** (len(str(int(rounded))) - MAX_SIG_FIGS)
        rounded = (rounded / step).quantize(Decimal(1), rounding=ROUND_UP if up else ROUND_DOWN) * step
    return rounded


def tick_of(price: Decimal, sz_decimals: int) -> Decimal:
    """The smallest price step at this magnitude."""
    if price >= 10**MAX_SIG_FIGS:
        return Decimal(10) ** (len(str(int(price))) - MAX_SIG_FIGS)
    return Decimal(1).scaleb(-price_decimals(price, sz_decimals))


def round_size(size: Decimal, sz_decimals: int) -> Decimal:
    """Floor a size to the lot grid."""
    return size.quantize(Decimal(1).scaleb(-sz_decimals), rounding=ROUND_DOWN)


def usd(value: Decimal) -> Decimal:
    """Round a USD amount to 6 decimals, as the venue reports balances and fees."""
    return value.quantize(Decimal("0.000001"))
