"""Outgoing L1 actions as typed values, and their exact wire form.

The wire dict of an action is what gets msgpack-hashed and signed, so its key order and which keys are
present are part of the signature: `{"a","b","p","s","r","t","c"?}` for an order, optional keys omitted
when unset (PROTOCOL.md, "Key order inside actions"). `action_to_wire` produces exactly that dict with a
cattrs converter whose hooks are generated once from the attrs field order below — so the field order
of each class IS the wire key order (`type` first); do not reorder fields.

Prices and sizes are `Decimal` here and become normalised strings on the wire (`numbers.to_wire`), so
an action built from valid numbers always hashes the way the exchange re-encodes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Final, Literal

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from hip3_trio.wire.numbers import to_wire

__all__ = [
    "Action",
    "BuilderInfo",
    "CancelAction",
    "CancelByCloidAction",
    "CancelByCloidWire",
    "CancelWire",
    "Cloid",
    "LimitOrderType",
    "NoopAction",
    "OrderAction",
    "OrderWire",
    "ScheduleCancelAction",
    "Tif",
    "TriggerOrderType",
    "UpdateLeverageAction",
    "action_to_wire",
]

Tif = Literal["Ioc", "Gtc", "Alo"]
Grouping = Literal["na", "normalTpsl", "positionTpsl"]

_CLOID_RE: Final = re.compile(r"0x[0-9a-f]{32}")
_ADDRESS_RE: Final = re.compile(r"0x[0-9a-f]{40}")


def _check_cloid(_: object, __: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or _CLOID_RE.fullmatch(value) is None:
        raise ValueError(f"cloid must be '0x' + 32 lowercase hex digits, got {value!r:.60}")


@attrs.frozen(order=True)
class Cloid:
    """A client order id: `0x` + 32 lowercase hex digits, the only form the exchange accepts."""

    raw: str = attrs.field(validator=_check_cloid)

    @classmethod
    def from_int(cls, value: int) -> Cloid:
        """The cloid whose 128-bit value is `value` (for deterministic, collision-free allocation)."""
        if not 0 <= value < 1 << 128:
            raise ValueError(f"cloid value must fit in 128 bits, got {value}")
        return cls(f"0x{value:032x}")

    def __str__(self) -> str:
        return self.raw


def _positive_decimal(_: object, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive finite Decimal, got {value!r}")


def _non_negative_int(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative int, got {value!r}")


@attrs.frozen
class LimitOrderType:
    """`{"limit": {"tif": ...}}`: Ioc takes and never rests, Gtc rests, Alo is post-only."""

    tif: Tif


@attrs.frozen
class TriggerOrderType:
    """`{"trigger": {"isMarket", "triggerPx", "tpsl"}}`: a take-profit or stop-loss trigger."""

    is_market: bool
    trigger_px: Decimal = attrs.field(validator=_positive_decimal)
    tpsl: Literal["tp", "sl"]


@attrs.frozen
class OrderWire:
    """One order inside an order action. Field order is the wire key order a, b, p, s, r, t, c."""

    asset: int = attrs.field(validator=_non_negative_int)
    is_buy: bool
    limit_px: Decimal = attrs.field(validator=_positive_decimal)
    sz: Decimal = attrs.field(validator=_positive_decimal)
    reduce_only: bool
    order_type: LimitOrderType | TriggerOrderType
    cloid: Cloid | None = None


def _lower(value: str) -> str:
    return value.lower()


@attrs.frozen
class BuilderInfo:
    """A builder fee: `b` the builder address (lowercase), `f` the fee in tenths of a basis point."""

    builder: str = attrs.field(converter=_lower)
    fee: int = attrs.field(validator=_non_negative_int)

    @builder.validator
    def _check_builder(self, _: attrs.Attribute[str], value: str) -> None:
        if _ADDRESS_RE.fullmatch(value) is None:
            raise ValueError(f"builder must be a 0x-prefixed 20-byte hex address, got {value!r:.60}")


def _orders(orders: Iterable[OrderWire]) -> tuple[OrderWire, ...]:
    return tuple(orders)


@attrs.frozen
class OrderAction:
    """`{"type":"order","orders":[...],"grouping":"na","builder"?}`."""

    type: Literal["order"] = attrs.field(default="order", init=False)

    orders: tuple[OrderWire, ...] = attrs.field(converter=_orders)
    grouping: Grouping = "na"
    builder: BuilderInfo | None = None


@attrs.frozen
class CancelWire:
    """`{"a": asset, "o": oid}`."""

    asset: int = attrs.field(validator=_non_negative_int)
    oid: int = attrs.field(validator=_non_negative_int)


def _cancels(cancels: Iterable[CancelWire]) -> tuple[CancelWire, ...]:
    return tuple(cancels)


@attrs.frozen
class CancelAction:
    """`{"type":"cancel","cancels":[{"a","o"}]}`."""

    type: Literal["cancel"] = attrs.field(default="cancel", init=False)

    cancels: tuple[CancelWire, ...] = attrs.field(converter=_cancels)


@attrs.frozen
class CancelByCloidWire:
    """`{"asset": asset, "cloid": cloid}` — note the long key names, unlike CancelWire."""

    asset: int = attrs.field(validator=_non_negative_int)
    cloid: Cloid


def _cancels_by_cloid(cancels: Iterable[CancelByCloidWire]) -> tuple[CancelByCloidWire, ...]:
    return tuple(cancels)


@attrs.frozen
class CancelByCloidAction:
    """`{"type":"cancelByCloid","cancels":[{"asset","cloid"}]}`."""

    type: Literal["cancelByCloid"] = attrs.field(default="cancelByCloid", init=False)

    cancels: tuple[CancelByCloidWire, ...] = attrs.field(converter=_cancels_by_cloid)


@attrs.frozen
class NoopAction:
    """`{"type":"noop"}`: signed with a pending action's nonce, it invalidates that action."""

    type: Literal["noop"] = attrs.field(default="noop", init=False)


@attrs.frozen
class ScheduleCancelAction:
    """`{"type":"scheduleCancel","time"?}`: the dead man's switch; no `time` clears it."""

    type: Literal["scheduleCancel"] = attrs.field(default="scheduleCancel", init=False)

    time: int | None = attrs.field(default=None)


def _positive_int(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive int, got {value!r}")


@attrs.frozen
class UpdateLeverageAction:
    """`{"type":"updateLeverage","asset","isCross","leverage"}` (the SDK's `update_leverage`). HIP-3
    assets are isolated only: `is_cross` defaults to False."""

    type: Literal["updateLeverage"] = attrs.field(default="updateLeverage", init=False)

    asset: int = attrs.field(validator=_non_negative_int)
    is_cross: bool = False
    leverage: int = attrs.field(default=1, validator=_positive_int, kw_only=True)


Action = (
    OrderAction
    | CancelAction
    | CancelByCloidAction
    | NoopAction
    | ScheduleCancelAction
    | UpdateLeverageAction
)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(unstruct_collection_overrides={tuple: list})
    conv.register_unstructure_hook(Decimal, to_wire)
    conv.register_unstructure_hook(Cloid, lambda c: c.raw)
    conv.register_unstructure_hook(LimitOrderType, lambda t: {"limit": {"tif": t.tif}})
    conv.register_unstructure_hook(
        TriggerOrderType,
        lambda t: {"trigger": {"isMarket": t.is_market, "triggerPx": to_wire(t.trigger_px), "tpsl": t.tpsl}},
    )

    def hook(cls: type, **overrides: Any) -> None:
        fn: Any = make_dict_unstructure_fn(cls, conv, _cattrs_include_init_false=True, **overrides)
        conv.register_unstructure_hook(cls, fn)

    hook(
        OrderWire,
        asset=override(rename="a"),
        is_buy=override(rename="b"),
        limit_px=override(rename="p"),
        sz=override(rename="s"),
        reduce_only=override(rename="r"),
        order_type=override(rename="t"),
        cloid=override(rename="c", omit_if_default=True),
    )
    hook(BuilderInfo, builder=override(rename="b"), fee=override(rename="f"))
    hook(CancelWire, asset=override(rename="a"), oid=override(rename="o"))
    hook(CancelByCloidWire)
    hook(OrderAction, builder=override(omit_if_default=True))
    hook(CancelAction)
    hook(CancelByCloidAction)
    hook(NoopAction)
    hook(ScheduleCancelAction, time=override(omit_if_default=True))
    hook(UpdateLeverageAction, is_cross=override(rename="isCross"))
    return conv


_CONVERTER: Final = _make_converter()


def action_to_wire(action: Action) -> dict[str, Any]:
    """The exact dict the exchange hashes for `action`: key order and omitted keys as on the wire."""
    wire: dict[str, Any] = _CONVERTER.unstructure(action)
    return wire
