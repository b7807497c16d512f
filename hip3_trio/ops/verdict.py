"""The go/no-go verdict of the micro test, as PLAN.md's Phase B defines it and stricter.

Decided on the overall figures (`hip3_trio.ops.figures`) and the journal's events, in this order:

1. ``INSUFFICIENT-DATA`` under `VerdictThresholds.review_trades` (10) trades;
2. ``BACK-TO-OBSERVATION`` (back to Phase A) at >= `observation_trades` (50) trades when the upper
   bound of the net edge's interval is below `min_net_edge_bps` (0): the edge is negative with confidence;
3. ``REVIEW-PARAMETERS`` at >= `review_trades` (10) trades when the mean net edge is below
   `min_net_edge_bps`;
4. ``GO`` when every criterion passes: >= `go_trades` (100) trades, the interval's lower bound above
   `min_net_edge_bps`, entry fill rate > `min_fill_rate` (80 %), flatten success > `min_flatten_success`
   (95 %), and no serious missed stop (below);
5. ``NO-GO`` otherwise (including 10–99 trades with a non-negative mean: not yet enough to go).

The plan's "mean net edge > 0 over >= 100 trades" passes about half the time for a strategy with no edge
at all (observed per-trade spread ~39 bps); the lower bound of a 95 % interval passes about 2.5 % of the
time. A figure that cannot be computed (no trades, no resolved orders, an interval under 2 trades)
fails its criterion.

Serious missed stops (Phase C's "no serious missed stop"), each zero-tolerance:

- *position held past the flatten-failure deadline*: a trade whose time to flat exceeds
  `flatten_deadline_ms` (the plan: 60 s after entry), or a ``flatten_failed`` event (detail ``market``,
  ``detail`` and, from engines that journal it, ``age_s``; `hip3_trio.risk.history.risk_event_record`).
  An event inside a trade of its market (entry ≤ event ≤ exit) is the same incident as that trade; an
  event outside any trade is a position that was still open (or whose entry is not in the window) and
  counts on its own;
- *escalated unknown order*: ``unknown_escalated`` events (an order whose outcome stayed unknown past its
  deadline);
- *journal record lost*: a ``hard_stop`` whose reason starts with ``journal write failed`` (a write
  error lost at least one record) and ``journal_dropped`` events (records dropped when the journal's
  channel was full; detail ``count``);
- *hard stop*: any ``hard_stop`` event.

`VerdictThresholds` carries the defaults above; the command line will read them from the config file
(not wired yet: `hip3_trio.config` is being reworked).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, TypeAlias

import attrs

from hip3_trio.ops.figures import MarketStats
from hip3_trio.ops.rows import EventRow, TradeRow, format_time_ms
from hip3_trio.validators import Invalid

__all__ = [
    "BACK_TO_OBSERVATION",
    "DECISIONS",
    "ESCALATED_KIND",
    "FLATTEN_FAILED_KIND",
    "GO",
    "HARD_STOP_KIND",
    "INSUFFICIENT_DATA",
    "JOURNAL_DROPPED_KIND",
    "JOURNAL_WRITE_FAILED",
    "NO_GO",
    "REVIEW_PARAMETERS",
    "Criterion",
    "Decision",
    "SeriousProblems",
    "Verdict",
    "VerdictThresholds",
    "decide",
    "serious_problems",
]

Decision: TypeAlias = Literal["GO", "NO-GO", "REVIEW-PARAMETERS", "BACK-TO-OBSERVATION", "INSUFFICIENT-DATA"]
GO: Final = "GO"
NO_GO: Final = "NO-GO"
REVIEW_PARAMETERS: Final = "REVIEW-PARAMETERS"
BACK_TO_OBSERVATION: Final = "BACK-TO-OBSERVATION"
INSUFFICIENT_DATA: Final = "INSUFFICIENT-DATA"
DECISIONS: Final[tuple[Decision, ...]] = (
    GO,
    NO_GO,
    REVIEW_PARAMETERS,
    BACK_TO_OBSERVATION,
    INSUFFICIENT_DATA,
)

HARD_STOP_KIND: Final = "hard_stop"
FLATTEN_FAILED_KIND: Final = "flatten_failed"  # = hip3_trio.risk.history.FLATTEN_FAILED_KIND
ESCALATED_KIND: Final = "unknown_escalated"
JOURNAL_DROPPED_KIND: Final = "journal_dropped"
JOURNAL_WRITE_FAILED: Final = "journal write failed"  # the hard stop reason run_journal reports


def _positive_int(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid(f"must be an int >= 1, got {value!r}", attribute.name)


def _fraction(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise Invalid(f"must be in [0, 1), got {value!r}", attribute.name)


def _open_fraction(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 < value < 1.0:
        raise Invalid(f"must be in (0, 1), got {value!r}", attribute.name)


@attrs.frozen(kw_only=True)
class VerdictThresholds:
    """The verdict's thresholds, with the plan's defaults (see the module docstring)."""

    review_trades: int = attrs.field(default=10, validator=_positive_int)
    observation_trades: int = attrs.field(default=50, validator=_positive_int)
    go_trades: int = attrs.field(default=100, validator=_positive_int)
    min_net_edge_bps: float = 0.0
    confidence: float = attrs.field(default=0.95, validator=_open_fraction)
    bootstrap_resamples: int = attrs.field(default=5000, validator=_positive_int)
    bootstrap_seed: int = 1
    min_fill_rate: float = attrs.field(default=0.80, validator=_fraction)
    min_flatten_success: float = attrs.field(default=0.95, validator=_fraction)
    flatten_deadline_ms: int = attrs.field(default=60_000, validator=_positive_int)

    def __attrs_post_init__(self) -> None:
        if not self.review_trades <= self.observation_trades <= self.go_trades:
            raise Invalid(
                "the checkpoints must be in order: review_trades <= observation_trades <= go_trades, got "
                f"{self.review_trades}, {self.observation_trades}, {self.go_trades}"
            )


@attrs.frozen(kw_only=True)
class Criterion:
    """One criterion: the measured value (None = not computable), the test, and the outcome.

    ``value op threshold`` passes; `from_trades` is the trade count from which it decides.
    """

    name: str
    value: float | None
    op: Literal[">=", ">", "="]
    threshold: float
    passed: bool
    shown: str  # the value as printed
    threshold_shown: str  # "op threshold" as printed
    from_trades: int
    note: str = ""  # evidence: what the value counts


@attrs.frozen(kw_only=True)
class SeriousProblems:
    """The journal's evidence of serious missed stops, as short lines each."""

    held_past_deadline: tuple[str, ...] = ()
    escalated: tuple[str, ...] = ()
    records_lost: tuple[str, ...] = ()
    hard_stops: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Verdict:
    """The decision, why, and every criterion behind it."""

    decision: Decision
    reason: str
    trades: int
    criteria: tuple[Criterion, ...]
    thresholds: VerdictThresholds
    problems: SeriousProblems


def _reason_of(event: EventRow) -> str:
    reason = event.detail.get("reason")
    return reason if isinstance(reason, str) else ""


def serious_problems(
    trades: Sequence[TradeRow], events: Sequence[EventRow], *, deadline_ms: int
) -> SeriousProblems:
    """Collect the serious missed stops in `trades` and `events` (already restricted to the window)."""
    held: dict[int, str] = {}
    for i, t in enumerate(trades):
        if t.time_to_flat_ms > deadline_ms:
            held[i] = (
                f"{t.market} held {t.time_to_flat_ms / 1000:.1f} s from {format_time_ms(t.entry_time_ms)} "
                f"(deadline {deadline_ms / 1000:g} s after entry)"
            )
    open_failures: list[str] = []
    for e in events:
        if e.kind != FLATTEN_FAILED_KIND:
            continue
        market = str(e.detail.get("market", "?"))
        text = (
            f"flatten_failed on {market} at {format_time_ms(e.time_ms)}: {e.detail.get('detail', '')}".rstrip(
                ": "
            )
        )
        inside = [
            i
            for i, t in enumerate(trades)
            if t.market == market and t.entry_time_ms <= e.time_ms <= t.exit_time_ms
        ]
        if inside:
            held.setdefault(inside[0], text)
        else:
            open_failures.append(text + " (no closed trade around it)")
    lost: list[str] = []
    hard: list[str] = []
    for e in events:
        if e.kind == HARD_STOP_KIND:
            reason = _reason_of(e)
            hard.append(f"{format_time_ms(e.time_ms)} {reason or dict(e.detail)}")
            if reason.startswith(JOURNAL_WRITE_FAILED):
                lost.append(f"{format_time_ms(e.time_ms)} {reason}")
        elif e.kind == JOURNAL_DROPPED_KIND:
            lost.append(
                f"{format_time_ms(e.time_ms)} {e.detail.get('count', '?')} records dropped (journal full)"
            )
    escalated = tuple(
        f"{format_time_ms(e.time_ms)} {e.detail.get('cloid', '?')} on {e.detail.get('market', '?')}"
        for e in events
        if e.kind == ESCALATED_KIND
    )
    return SeriousProblems(
        held_past_deadline=tuple(held[i] for i in sorted(held)) + tuple(open_failures),
        escalated=escalated,
        records_lost=tuple(lost),
        hard_stops=tuple(hard),
    )


def _bps(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} bps"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _passes(value: float | None, op: str, threshold: float) -> bool:
    if value is None:
        return False
    if op == ">=":
        return value >= threshold
    if op == ">":
        return value > threshold
    return value == threshold


def _criterion(
    name: str,
    value: float | None,
    op: Literal[">=", ">", "="],
    threshold: float,
    *,
    shown: str,
    threshold_shown: str,
    from_trades: int,
    note: str = "",
) -> Criterion:
    return Criterion(
        name=name,
        value=value,
        op=op,
        threshold=threshold,
        passed=_passes(value, op, threshold),
        shown=shown,
        threshold_shown=f"{op} {threshold_shown}",
        from_trades=from_trades,
        note=note,
    )


def _count(name: str, lines: Sequence[str], go_trades: int, unit: str = "") -> Criterion:
    return _criterion(
        name,
        float(len(lines)),
        "=",
        0.0,
        shown=str(len(lines)),
        threshold_shown="0" + unit,
        from_trades=go_trades,
        note="; ".join(lines[:3]) + (f"; … {len(lines) - 3} more" if len(lines) > 3 else ""),
    )


def criteria(
    overall: MarketStats, problems: SeriousProblems, thresholds: VerdictThresholds
) -> tuple[Criterion, ...]:
    """Every criterion, in the order they are printed."""
    t = thresholds
    interval = overall.net_edge_interval
    low = None if interval is None else interval.low
    high = None if interval is None else interval.high
    pct = f"{t.confidence * 100:g}%"

    def edge(name: str, value: float | None, op: Literal[">=", ">"], from_trades: int) -> Criterion:
        """A net-edge figure (bps) against the minimum net edge."""
        return _criterion(
            name,
            value,
            op,
            t.min_net_edge_bps,
            shown=_bps(value),
            threshold_shown=f"{t.min_net_edge_bps:g} bps",
            from_trades=from_trades,
        )

    def rate(name: str, value: float | None, threshold: float, note: str) -> Criterion:
        """A rate (shown in %) that must exceed `threshold`; counted from the go checkpoint."""
        return _criterion(
            name,
            value,
            ">",
            threshold,
            shown=_pct(value),
            threshold_shown=f"{threshold * 100:g}%",
            from_trades=t.go_trades,
            note=note,
        )

    return (
        _criterion(
            "trades",
            float(overall.trades),
            ">=",
            float(t.go_trades),
            shown=str(overall.trades),
            threshold_shown=str(t.go_trades),
            from_trades=t.go_trades,
        ),
        edge("net edge mean", overall.net_edge_bps.mean, ">=", t.review_trades),
        edge(f"net edge {pct} upper bound", high, ">=", t.observation_trades),
        edge(f"net edge {pct} lower bound", low, ">", t.go_trades),
        rate(
            "entry fill rate",
            overall.entries.rate,
            t.min_fill_rate,
            f"{overall.entries.accepted} of {overall.entries.resolved} resolved entries",
        ),
        rate(
            "flatten success",
            overall.flattens.rate,
            t.min_flatten_success,
            f"{overall.flattens.filled} of {overall.flattens.resolved} reduce-only filled",
        ),
        _count(
            "held past the flatten deadline",
            problems.held_past_deadline,
            t.go_trades,
            f" (> {t.flatten_deadline_ms / 1000:g} s)",
        ),
        _count("escalated unknown orders", problems.escalated, t.go_trades),
        _count("journal records lost", problems.records_lost, t.go_trades),
        _count("hard stops", problems.hard_stops, t.go_trades),
    )


def decide(
    overall: MarketStats, problems: SeriousProblems, thresholds: VerdictThresholds | None = None
) -> Verdict:
    """The verdict on the overall figures and the serious problems (see the module docstring)."""
    t = thresholds if thresholds is not None else VerdictThresholds()
    checks = criteria(overall, problems, t)
    n = overall.trades
    mean = overall.net_edge_bps.mean
    interval = overall.net_edge_interval
    decision: Decision
    if n < t.review_trades:
        decision, reason = INSUFFICIENT_DATA, f"{n} trades; the first checkpoint is at {t.review_trades}"
    elif n >= t.observation_trades and interval is not None and interval.high < t.min_net_edge_bps:
        decision = BACK_TO_OBSERVATION
        reason = (
            f"{n} trades and the net edge's {t.confidence * 100:g}% upper bound "
            f"{interval.high:.2f} bps is below {t.min_net_edge_bps:g} bps: back to Phase A"
        )
    elif mean is not None and mean < t.min_net_edge_bps:
        decision = REVIEW_PARAMETERS
        reason = f"{n} trades and the mean net edge {mean:.2f} bps is below {t.min_net_edge_bps:g} bps"
    elif all(c.passed for c in checks):
        decision, reason = GO, "every criterion passes"
    else:
        decision = NO_GO
        reason = "failing: " + ", ".join(c.name for c in checks if not c.passed)
    return Verdict(
        decision=decision, reason=reason, trades=n, criteria=checks, thresholds=t, problems=problems
    )
