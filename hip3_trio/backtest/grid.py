"""Parameter grids: ``--grid detector.min_edge_bps=2,4,8`` over the configuration, checked like the file.

A grid key is a config path, ``section.key``, of a section the backtest runs — ``detector``, ``limits``
(alias ``executor``), ``time_stop``, ``risk``, ``batch`` — or ``venue``, the backtest's own venue models
(`VenueSettings`: latency, blocks, competitors, impact; their defaults are the simulator's,
`hip3_trio.sim.realism.Realism`). Each value is converted to the field's type (a decimal, a number, an
integer, ``true``/``false``, ``none`` where the field may be unset) and checked by the field's own
validators and the configuration's cross-section checks, so a grid point is a configuration the engine
would accept. Keys that are not file keys (``NOT_IN_FILE``) are refused like unknown keys.

Several ``--grid`` options multiply: every combination is one grid point, in the order given (the last
key varies fastest). A single value is simply an override. Any problem is a `GridError` with one line.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from types import NoneType, UnionType
from typing import Any, Final, get_args

import attrs

from hip3_trio.config import Config
from hip3_trio.sim.realism import BlockModel, CompetitionModel, ImpactModel, LatencyModel, Realism
from hip3_trio.validators import in_file

__all__ = ["GridError", "GridPoint", "VenueSettings", "expand_grid", "parse_grid"]

_DEFAULT: Final = Realism()


class GridError(ValueError):
    """A grid that cannot be run; the message is one line."""


@attrs.frozen(kw_only=True)
class VenueSettings:
    """The venue models of a backtest (grid section ``venue``); defaults are the simulator's."""

    latency_ms: float = _DEFAULT.latency.one_way_ms
    blocks: bool = _DEFAULT.blocks.enabled
    block_ms: float = _DEFAULT.blocks.interval_ms
    block_jitter_ms: float = _DEFAULT.blocks.jitter_ms
    competition: bool = _DEFAULT.competition.enabled
    competitor_median_ms: float = _DEFAULT.competition.median_ms
    competitor_sigma: float = _DEFAULT.competition.sigma
    competitor_min_edge_bps: float = _DEFAULT.competition.min_edge_bps
    impact: bool = _DEFAULT.impact.enabled
    refill_s: float = _DEFAULT.impact.refill_s

    def realism(self) -> Realism:
        """The models (their constructors check the values: a bad one raises ValueError)."""
        return Realism(
            blocks=BlockModel(interval_ms=self.block_ms, jitter_ms=self.block_jitter_ms, enabled=self.blocks),
            latency=LatencyModel(one_way_ms=self.latency_ms),
            competition=CompetitionModel(
                enabled=self.competition,
                median_ms=self.competitor_median_ms,
                sigma=self.competitor_sigma,
                min_edge_bps=self.competitor_min_edge_bps,
            ),
            impact=ImpactModel(enabled=self.impact, refill_s=self.refill_s),
        )


attrs.resolve_types(VenueSettings)

# Grid section → the `Config` field it sets (the file's `[limits]` configures the executor).
SECTIONS: Final[Mapping[str, str]] = {
    "detector": "detector",
    "limits": "limits",
    "executor": "limits",
    "time_stop": "time_stop",
    "risk": "risk",
    "batch": "batch",
}
VENUE: Final = "venue"


@attrs.frozen
class GridPoint:
    """One combination: the values as given (for the report) and the settings they make."""

    params: dict[str, str]
    config: Config
    venue: VenueSettings


def parse_grid(specs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``key=v1,v2`` options → (key, values), keys checked for shape and repetition (not yet for meaning)."""
    axes: list[tuple[str, list[str]]] = []
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = key.strip()
        values = [v.strip() for v in text.split(",")]
        if not sep or not key or "." not in key:
            raise GridError(f"--grid {spec!r}: expected SECTION.KEY=VALUE[,VALUE...]")
        if any(not v for v in values):
            raise GridError(f"--grid {spec!r}: an empty value")
        if any(key == k for k, _ in axes):
            raise GridError(f"--grid {key}: given twice; list all its values in one --grid")
        axes.append((key, values))
    return axes


def expand_grid(config: Config, axes: Sequence[tuple[str, list[str]]]) -> list[GridPoint]:
    """Every combination of the axes' values applied to `config` (and the default venue settings)."""
    points = []
    for combo in itertools.product(*(values for _, values in axes)):
        params = {key: value for (key, _), value in zip(axes, combo, strict=True)}
        current, venue = config, VenueSettings()
        for key, value in params.items():
            current, venue = _apply(current, venue, key, value)
        try:
            venue.realism()
        except (ValueError, TypeError) as exc:
            raise GridError(f"--grid venue: {exc}") from None
        points.append(GridPoint(params, current, venue))
    return points


def _apply(config: Config, venue: VenueSettings, key: str, text: str) -> tuple[Config, VenueSettings]:
    section, _, name = key.partition(".")
    if section == VENUE:
        return config, _set(venue, key, name, text)
    field = SECTIONS.get(section)
    if field is None:
        known = [*SECTIONS, VENUE]
        close = difflib.get_close_matches(section, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise GridError(f"--grid {key}: unknown section {section!r}{hint}; known: {', '.join(known)}")
    updated = _set(getattr(config, field), key, name, text)
    try:
        return attrs.evolve(config, **{field: updated}), venue
    except (ValueError, TypeError) as exc:
        raise GridError(f"--grid {key}={text}: {getattr(exc, 'reason', exc)}") from None


def _set(section: Any, key: str, name: str, text: str) -> Any:
    fields = {a.name: a for a in attrs.fields(type(section)) if in_file(a)}
    field = fields.get(name)
    if field is None:
        close = difflib.get_close_matches(name, list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise GridError(f"--grid {key}: unknown key{hint}; allowed: {', '.join(fields)}")
    try:
        value = _convert(text, field.type)
        return attrs.evolve(section, **{name: value})
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise GridError(f"--grid {key}={text}: {getattr(exc, 'reason', exc)}") from None


def _convert(text: str, kind: Any) -> Any:
    """`text` as a value of `kind` (Decimal, float, int, bool, or one of them or None)."""
    if isinstance(kind, UnionType) and NoneType in get_args(kind):
        if text.lower() == "none":
            return None
        (kind,) = (k for k in get_args(kind) if k is not NoneType)
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() == "true"
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if kind is float:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {text!r}")
        return number
    if kind is Decimal:
        try:
            decimal = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not decimal.is_finite():
            raise ValueError(f"expected a finite number, got {text!r}")
        return decimal
    raise ValueError(f"a key of type {kind} cannot be set from the command line")
