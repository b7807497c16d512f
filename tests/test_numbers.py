"""Tick/lot rounding and wire strings: golden cases from PROTOCOL.md plus properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hip3_trio.wire.numbers import (
    BelowMinNotional,
    InvalidNumber,
    OrderTooSmall,
    Rounding,
    check_min_notional,
    clamp_reduce_only_size,
    from_wire,
    is_valid_price,
    is_valid_size,
    lot,
    max_price_decimals,
    round_price,
    round_size,
    to_wire,
)

D = Decimal
UP, DOWN = Rounding.UP, Rounding.DOWN


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (D("105"), "105"),
        (D("105.00"), "105"),
        (D("0.00001"), "0.00001"),
        (D("1E-5"), "0.00001"),
        (D("123450"), "123450"),
        (D("1.2345E+5"), "123450"),
        (D("0.1000"), "0.1"),
        (D("-0.0"), "0"),
        (D("0"), "0"),
        (7, "7"),
        (D("50000.5"), "50000.5"),
        (D("-2.50"), "-2.5"),
    ],
)
def test_to_wire_normalises_without_exponent_or_trailing_zeros(value: Decimal, wire: str) -> None:
    assert to_wire(value) == wire


@pytest.mark.parametrize("bad", [1.5, D("NaN"), D("Infinity"), D("-Infinity"), "1", True, None])
def test_to_wire_refuses_floats_and_non_finite(bad: object) -> None:
    with pytest.raises(InvalidNumber):
        to_wire(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("px", "sz_decimals", "rounding", "expected"),
    [
        # 5 significant figures
        (D("1.23456"), 0, DOWN, D("1.2345")),
        (D("1.23456"), 0, UP, D("1.2346")),
        (D("12345.6"), 0, DOWN, D("12345")),
        (D("12345.6"), 0, UP, D("12346")),
        # integer prices are always allowed, even above 5 significant figures
        (D("123456"), 0, DOWN, D("123456")),
        (D("123456.7"), 0, DOWN, D("123456")),
        (D("123456.7"), 0, UP, D("123457")),
        (D("1234567.89"), 3, UP, D("1234568")),
        # at most 6 - szDecimals decimals
        (D("0.0123456"), 0, DOWN, D("0.012345")),
        (D("0.0123456"), 1, DOWN, D("0.01234")),
        (D("0.0123456"), 2, UP, D("0.0124")),
        (D("0.0123456"), 4, DOWN, D("0.01")),
        (D("1.55"), 5, DOWN, D("1.5")),
        (D("1.55"), 5, UP, D("1.6")),
        (D("1.5"), 6, DOWN, D("1")),
        (D("1.5"), 6, UP, D("2")),
        # tiny prices
        (D("0.000012345"), 0, DOWN, D("0.000012")),
        (D("0.000012345"), 0, UP, D("0.000013")),
        (D("0.0000001"), 0, UP, D("0.000001")),
        # crossing a power of ten while rounding up stays valid
        (D("9.99995"), 1, UP, D("10")),
        (D("99999.5"), 0, UP, D("100000")),
        # valid input is unchanged in either direction
        (D("105.00"), 2, UP, D("105")),
        (D("50000"), 4, DOWN, D("50000")),
        (D("0.5"), 3, DOWN, D("0.5")),
    ],
)
def test_round_price_golden(px: Decimal, sz_decimals: int, rounding: Rounding, expected: Decimal) -> None:
    result = round_price(px, sz_decimals, rounding)
    assert result == expected
    assert is_valid_price(result, sz_decimals)


def test_round_price_spot_allows_8_minus_sz_decimals() -> None:
    assert max_price_decimals(0, spot=True) == 8
    assert round_price(D("0.00001234"), 0, DOWN, spot=True) == D("0.00001234")
    assert round_price(D("0.0000123456"), 0, DOWN, spot=True) == D("0.00001234")


def test_price_rounding_to_zero_is_an_error_not_zero() -> None:
    with pytest.raises(OrderTooSmall, match="rounds down to zero"):
        round_price(D("0.0000001"), 0, DOWN)


@pytest.mark.parametrize("bad", [D("-1"), D("0"), D("NaN"), D("sNaN"), D("Infinity"), 1.5, "100", None])
def test_round_price_rejects_bad_input_clearly(bad: object) -> None:
    with pytest.raises(InvalidNumber, match="price"):
        round_price(bad, 2, UP)  # type: ignore[arg-type]


@pytest.mark.parametrize("sz_decimals", [-1, 7, 1.0, True])
def test_bad_sz_decimals_rejected(sz_decimals: object) -> None:
    with pytest.raises(InvalidNumber, match="szDecimals"):
        round_price(D("1"), sz_decimals, UP)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("is_buy", "aggressive", "expected"),
    [(True, True, UP), (False, True, DOWN), (True, False, DOWN), (False, False, UP)],
)
def test_rounding_for_order_direction(is_buy: bool, aggressive: bool, expected: Rounding) -> None:
    assert Rounding.for_order(is_buy=is_buy, aggressive=aggressive) is expected


@pytest.mark.parametrize(
    ("sz", "sz_decimals", "expected"),
    [
        (D("1.23456"), 0, D("1")),
        (D("1.23456"), 2, D("1.23")),
        (D("1.23456"), 5, D("1.23456")),
        (D("0.019999"), 2, D("0.01")),
        (D("100"), 3, D("100")),
        (D("12.5"), 1, D("12.5")),
    ],
)
def test_round_size_floors_to_the_lot(sz: Decimal, sz_decimals: int, expected: Decimal) -> None:
    assert round_size(sz, sz_decimals) == expected
    assert to_wire(round_size(sz, sz_decimals)) == to_wire(expected)


def test_size_below_one_lot_is_order_too_small() -> None:
    with pytest.raises(OrderTooSmall, match="below one lot"):
        round_size(D("0.009"), 2)


def test_lot_values() -> None:
    assert [lot(n) for n in range(6)] == [D("1"), D("0.1"), D("0.01"), D("0.001"), D("0.0001"), D("0.00001")]


def test_reduce_only_size_never_exceeds_position_or_rounds_to_zero() -> None:
    assert clamp_reduce_only_size(D("5"), D("1.234"), 2) == D("1.23")
    assert clamp_reduce_only_size(D("0.5"), D("1.234"), 2) == D("0.5")
    with pytest.raises(OrderTooSmall):
        clamp_reduce_only_size(D("1"), D("0.004"), 2)
    with pytest.raises(OrderTooSmall, match="no position"):
        clamp_reduce_only_size(D("1"), D("0"), 2)


def test_min_notional_check() -> None:
    assert check_min_notional(D("100"), D("0.1")) == D("10.0")
    with pytest.raises(BelowMinNotional, match=r"\$9.99 .* below the \$10 minimum"):
        check_min_notional(D("99.9"), D("0.1"))


@pytest.mark.parametrize(
    "text",
    ["1e5", "NaN", "inf", " 1", "1_000", "", "1.", ".5", "+1", "0x10", "9" * 41, "1.2.3"],
)
def test_from_wire_is_strict(text: str) -> None:
    with pytest.raises(InvalidNumber, match="plain decimal"):
        from_wire(text, "plain decimal")


def test_from_wire_accepts_plain_decimals() -> None:
    assert from_wire("-0.5") == D("-0.5")
    assert from_wire("123450") == D("123450")
    with pytest.raises(InvalidNumber, match="must be a decimal string"):
        from_wire(1.5)  # type: ignore[arg-type]


# --- properties --------------------------------------------------------------------------------

prices = st.decimals(min_value=D("0.000001"), max_value=D("10000000"), allow_nan=False, places=8)


@given(px=prices, sz_decimals=st.integers(0, 6), up=st.booleans())
def test_rounded_price_is_valid_and_on_the_requested_side(px: Decimal, sz_decimals: int, up: bool) -> None:
    rounding = UP if up else DOWN
    try:
        result = round_price(px, sz_decimals, rounding)
    except OrderTooSmall:
        assert not up
        return
    assert is_valid_price(result, sz_decimals)
    assert result >= px if up else result <= px
    assert D(to_wire(result)) == result


@given(px=prices, sz_decimals=st.integers(0, 6))
def test_valid_prices_are_fixed_points(px: Decimal, sz_decimals: int) -> None:
    if is_valid_price(px, sz_decimals):
        assert round_price(px, sz_decimals, UP) == px == round_price(px, sz_decimals, DOWN)


@given(px=prices, sz_decimals=st.integers(0, 6))
def test_rounded_price_is_the_nearest_valid_one(px: Decimal, sz_decimals: int) -> None:
    """No valid price lies strictly between the input and its rounding (checked one tick inward)."""
    up = round_price(px, sz_decimals, UP)
    if up != px:
        decimals = max(0, -up.normalize().as_tuple().exponent)  # type: ignore[operator]
        inward = up - D(1).scaleb(-decimals)
        assert inward < px or not is_valid_price(inward, sz_decimals)


@given(
    sz=st.decimals(min_value=D("0.000001"), max_value=D("1000000"), allow_nan=False, places=7),
    sz_decimals=st.integers(0, 5),
)
def test_rounded_size_is_whole_lots_and_never_above_input(sz: Decimal, sz_decimals: int) -> None:
    try:
        result = round_size(sz, sz_decimals)
    except OrderTooSmall:
        assert sz < lot(sz_decimals)
        return
    assert is_valid_size(result, sz_decimals)
    assert result <= sz < result + lot(sz_decimals)
