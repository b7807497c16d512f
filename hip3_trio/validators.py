"""Validators for the configuration classes, and the mark of a field that is not a config-file key.

Each part of the engine is configured by one frozen attrs class that lives next to the code it
configures (`DetectorConfig`, `ExecutorConfig`, `BatchConfig`, ...), and `hip3_trio.config` structures
the TOML file's sections straight into those classes. So each field has one default and one set of
validators, and they run both when a class is built in code and when the loader structures the field:
there the `Invalid.reason` is what the loader reports against the key path, e.g.
``limits.max_position_per_market_usd: must be > 0, got -5``.

A field marked `NOT_IN_FILE` is not a key of the file: the loader refuses it like any unknown key, and
whoever builds the engine's settings derives it (a per-process cloid prefix, the per-market overrides
of the ``[[markets]]`` table) or leaves its default (a tuning knob for tests and benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, TypeAlias

import attrs

__all__ = [
    "NOT_IN_FILE",
    "Invalid",
    "Validator",
    "cross_check",
    "finite_decimal",
    "ge",
    "gt",
    "in_file",
    "le",
    "lt",
    "not_above",
    "optional",
]

_FILE_KEY: Final = "hip3_trio.file_key"

NOT_IN_FILE: Final[Mapping[str, bool]] = MappingProxyType({_FILE_KEY: False})
"""attrs field metadata: the field is set in code only, never from the config file."""


def in_file(attribute: attrs.Attribute[Any]) -> bool:
    """True if `attribute` is a key of the config file (an `__init__` argument not marked NOT_IN_FILE)."""
    return attribute.init and attribute.metadata.get(_FILE_KEY, True)


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


def finite_decimal(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Money, prices and basis points are finite `Decimal`s: a float never reaches a threshold or a limit.

    A `TypeError`, not an `Invalid`: only code can get this wrong (the loader parses numbers itself)."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise TypeError(f"{attribute.name} must be a finite Decimal, got {value!r}")


def cross_check(*checks: tuple[bool, str]) -> None:
    """Raise one `Invalid` naming every failed cross-field check (`(failed, reason)` pairs)."""
    failed = [reason for bad, reason in checks if bad]
    if failed:
        raise Invalid("; ".join(failed))


def not_above(inst: Any, low: str, high: str) -> None:
    """Raise `Invalid` if field `low` of `inst` exceeds its field `high`: a pair of limits that only make
    sense in that order (a watermark under its limit, a first backoff under the longest)."""
    low_value, high_value = getattr(inst, low), getattr(inst, high)
    if low_value > high_value:
        raise Invalid(f"{low} ({low_value}) must not exceed {high} ({high_value})")
