"""The typed action model unstructures to the exact wire dicts, byte-identical to the SDK's."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgpack
import pytest
from hyperliquid.utils.signing import (
    order_request_to_order_wire,
    order_wires_to_order_action,
)
from hyperliquid.utils.types import Cloid as SdkCloid

from hip3_trio.wire.actions import (
    BuilderInfo,
    CancelAction,
    CancelByCloidAction,
    CancelByCloidWire,
    CancelWire,
    Cloid,
    LimitOrderType,
    NoopAction,
    OrderAction,
    OrderWire,
    ScheduleCancelAction,
    TriggerOrderType,
    action_to_wire,
)

D = Decimal
CLOID = "0x1234567890abcdef1234567890abcdef"
HIP3_ASSET = 100000 + 1 * 10000 + 2


def test_order_wire_key_order_and_types() -> None:
    action = OrderAction(
        [OrderWire(HIP3_ASSET, True, D("105.00"), D("0.50"), False, LimitOrderType("Ioc"), Cloid(CLOID))]
    )
    wire = action_to_wire(action)
    assert list(wire) == ["type", "orders", "grouping"]
    assert list(wire["orders"][0]) == ["a", "b", "p", "s", "r", "t", "c"]
    assert wire == {
        "type": "order",
        "orders": [
            {
                "a": 110002,
                "b": True,
                "p": "105",
                "s": "0.5",
                "r": False,
                "t": {"limit": {"tif": "Ioc"}},
                "c": CLOID,
            }
        ],
        "grouping": "na",
    }


def test_optional_keys_are_omitted_when_unset() -> None:
    wire = action_to_wire(OrderAction([OrderWire(1, False, D("1"), D("1"), True, LimitOrderType("Gtc"))]))
    assert "c" not in wire["orders"][0]
    assert "builder" not in wire
    assert action_to_wire(ScheduleCancelAction()) == {"type": "scheduleCancel"}
    assert action_to_wire(ScheduleCancelAction(1_700_000_005_000)) == {
        "type": "scheduleCancel",
        "time": 1_700_000_005_000,
    }


def test_builder_is_lowercased_and_last() -> None:
    builder = BuilderInfo("0x" + "AB" * 20, 10)
    wire = action_to_wire(
        OrderAction([OrderWire(1, True, D("1"), D("1"), False, LimitOrderType("Alo"))], builder=builder)
    )
    assert list(wire) == ["type", "orders", "grouping", "builder"]
    assert wire["builder"] == {"b": "0x" + "ab" * 20, "f": 10}


def test_trigger_order_wire() -> None:
    order = OrderWire(3, False, D("2000.0"), D("0.1"), True, TriggerOrderType(True, D("2100.50"), "sl"))
    wire = action_to_wire(OrderAction([order]))["orders"][0]
    assert wire["t"] == {"trigger": {"isMarket": True, "triggerPx": "2100.5", "tpsl": "sl"}}
    assert list(wire["t"]["trigger"]) == ["isMarket", "triggerPx", "tpsl"]


def test_cancel_shapes() -> None:
    assert action_to_wire(CancelAction([CancelWire(HIP3_ASSET, 77)])) == {
        "type": "cancel",
        "cancels": [{"a": HIP3_ASSET, "o": 77}],
    }
    assert action_to_wire(CancelByCloidAction([CancelByCloidWire(HIP3_ASSET, Cloid(CLOID))])) == {
        "type": "cancelByCloid",
        "cancels": [{"asset": HIP3_ASSET, "cloid": CLOID}],
    }
    assert action_to_wire(NoopAction()) == {"type": "noop"}


@pytest.mark.parametrize(
    "bad",
    ["0x1234", "0x" + "G" * 32, "0X" + "a" * 32, "0x" + "A" * 32, "1234567890abcdef1234567890abcdef", 5],
)
def test_cloid_validation(bad: Any) -> None:
    with pytest.raises(ValueError, match="cloid must be"):
        Cloid(bad)


def test_cloid_from_int() -> None:
    assert Cloid.from_int(255).raw == "0x000000000000000000000000000000ff"
    with pytest.raises(ValueError):
        Cloid.from_int(1 << 128)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"asset": -1},
        {"asset": True},
        {"limit_px": D("0")},
        {"limit_px": D("NaN")},
        {"sz": D("-1")},
        {"sz": 1.5},
    ],
)
def test_order_wire_validates_numbers(kwargs: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "asset": 1,
        "is_buy": True,
        "limit_px": D("1"),
        "sz": D("1"),
        "reduce_only": False,
        "order_type": LimitOrderType("Ioc"),
    }
    with pytest.raises(ValueError):
        OrderWire(**(base | kwargs))


@pytest.mark.parametrize(
    ("px", "sz", "tif", "reduce_only", "cloid", "asset"),
    [
        (D("105"), D("0.5"), "Ioc", False, CLOID, HIP3_ASSET),
        (D("0.00012"), D("12345"), "Gtc", True, None, 0),
        (D("123456"), D("1"), "Alo", False, "0x" + "0" * 32, 120009),
        (D("50000.5"), D("0.0001"), "Ioc", True, "0x" + "f" * 32, 5),
    ],
)
def test_msgpack_bytes_match_the_sdk(
    px: Decimal, sz: Decimal, tif: Any, reduce_only: bool, cloid: str | None, asset: int
) -> None:
    ours = OrderAction(
        [OrderWire(asset, True, px, sz, reduce_only, LimitOrderType(tif), Cloid(cloid) if cloid else None)]
    )
    request: Any = {
        "coin": "ignored",
        "is_buy": True,
        "sz": float(sz),
        "limit_px": float(px),
        "order_type": {"limit": {"tif": tif}},
        "reduce_only": reduce_only,
    }
    if cloid:
        request["cloid"] = SdkCloid.from_str(cloid)
    sdk = order_wires_to_order_action([order_request_to_order_wire(request, asset)])
    assert msgpack.packb(action_to_wire(ours)) == msgpack.packb(sdk)
