"""Validators for the configuration classes.

They run both when a class is built in code and when `hip3_trio.config` structures a field from the
TOML file: there the `Invalid.reason` is what the loader reports against the key path, e.g.
``limits.max_position_per_market_usd: must be > 0, got -5``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeAlias

import attrs

__all__ = [
    "Invalid",
    "Validator",
    "cross_check",
    "ge",
    "gt",
    "le",
    "lt",
    "optional",
]


class Invalid(ValueError):
    """A value that fails a check. `reason` is the message without the field name (the loader adds the
    key path)."""

    def __init__(self, reason: str, name: str | None = None) -> None:
        super().__init__(f"{name}: {reason}" if name else reason)
        self.reason = reason


Validator: TypeAlias = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _bound(op: str, bound: object, test: Callable[[Any], bool], note: str = "") -> Validator:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not test(value):
            raise Invalid(f"must be {op} {bound}{note}, got {value}", attribute.name)

    return check


def gt(bound: int | Decimal) -> Validator:
    return _bound(">", bound, lambda v: v > bound)


def ge(bound: int | Decimal) -> Validator:
    return _bound(">=", bound, lambda v: v >= bound)


def le(bound: int | Decimal, note: str = "") -> Validator:
    return _bound("<=", bound, lambda v: v <= bound, note)


def lt(bound: float, note: str = "") -> Validator:
    return _bound("<", bound, lambda v: v < bound, note)


def optional(*validators: Validator) -> Validator:
    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            for validator in validators:
                validator(inst, attribute, value)

    return check


def cross_check(*checks: tuple[bool, str]) -> None:
    """Raise one `Invalid` naming every failed cross-field check (`(failed, reason)` pairs)."""
    failed = [reason for bad, reason in checks if bad]
    if failed:
        raise Invalid("; ".join(failed))
