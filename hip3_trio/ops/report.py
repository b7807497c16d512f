"""The micro-test report: ``python -m hip3_trio report [--state-dir DIR] [--since WHEN] [--plot FILE.png]
[--json] [--check] [--checklist testnet]``.

It reads the journal (``<state_dir>/journal.sqlite3``) read-only and prints, per market and overall, what
the micro test exists to measure, then the go/no-go verdict for moving on from it; or, with
``--checklist testnet``, the plan's testnet checklist (`hip3_trio.ops.checklist`). The engine may be
writing at the same time: the file is opened with a ``mode=ro`` URI (this tool can never write to the
journal, and never creates one — a missing journal is an error, exit 2), and all rows are read inside one
read transaction, so under WAL they are one consistent snapshot and the writer is never blocked.

Structure: `load_rows` (SQLite → plain rows, `hip3_trio.ops.rows`) → `compute_report` (pure: rows →
`Report`, with the figures of `hip3_trio.ops.figures` and the verdict of `hip3_trio.ops.verdict`) →
`format_report` (text lines), `report_json` (``--json``) and `write_plot` (PNG, matplotlib imported
lazily) → `main`. The definitions of every figure are in `hip3_trio.ops.figures`, the window
(``--since``) in `hip3_trio.ops.rows`, the verdict's rules in `hip3_trio.ops.verdict`.

Hard stops: events of kind ``hard_stop`` in the window, listed with their reason when the event has one.

Exit codes: 0 the report was printed (whatever the verdict) — with ``--check``, 0 only on ``GO`` and 1 on
any other decision; with ``--checklist``, 0 only if every item passes, else 1; 2 bad arguments, a
missing or unusable journal, or ``--plot`` without matplotlib (``pip install 'hip3-trio[plot]'``) or an
unwritable plot file. Everything, errors included, is written through ``out``, except argparse's own
usage errors (stderr) and ``--help`` (stdout). ``--json`` prints one JSON document and nothing else
(errors stay ``error: …`` lines, exit 2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from hip3_trio.config import ConfigError
from hip3_trio.journal import JournalUnavailable, journal_path, open_journal_read_only
from hip3_trio.ops.checklist import CHECKLISTS, checklist_json, evaluate_testnet, format_checklist
from hip3_trio.ops.figures import (
    ACCEPTED_STATES,
    EXCLUDED_STATES,
    REJECTED_STATES,
    TIMED_OUT_STATES,
    Distribution,
    FillCounts,
    FlattenCounts,
    Interval,
    MarketStats,
    fill_counts,
    flatten_counts,
    market_stats,
    percentile,
)
from hip3_trio.ops.options import add_state_dir_options, config_of, state_dir_of
from hip3_trio.ops.plot import PLOT_INSTALL_HINT, PlotUnavailable, load_pyplot, write_plot
from hip3_trio.ops.rows import (
    EventRow,
    FillRow,
    JournalRows,
    OrderRow,
    TradeRow,
    format_time_ms,
    in_window,
    read_rows,
)
from hip3_trio.ops.verdict import (
    GO,
    HARD_STOP_KIND,
    Criterion,
    Verdict,
    VerdictThresholds,
    decide,
    serious_problems,
)

__all__ = [
    "ACCEPTED_STATES",
    "EXCLUDED_STATES",
    "PLOT_INSTALL_HINT",
    "REJECTED_STATES",
    "TIMED_OUT_STATES",
    "Criterion",
    "Distribution",
    "EventRow",
    "FillCounts",
    "FillRow",
    "FlattenCounts",
    "Interval",
    "JournalRows",
    "MarketStats",
    "OrderRow",
    "PlotUnavailable",
    "Report",
    "TradeRow",
    "Verdict",
    "VerdictThresholds",
    "build_parser",
    "compute_report",
    "fill_counts",
    "flatten_counts",
    "format_report",
    "format_time_ms",
    "load_pyplot",
    "load_rows",
    "main",
    "market_stats",
    "parse_since",
    "percentile",
    "report_json",
    "write_plot",
]

PROG: Final = "python -m hip3_trio report"
OVERALL: Final = "overall"


# --- the report ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Report:
    """The whole report: per-market and overall figures, hard stops, plot series and the verdict."""

    since_ms: int | None
    markets: tuple[MarketStats, ...]
    overall: MarketStats
    hard_stops: tuple[EventRow, ...]
    cumulative_pnl: tuple[tuple[int, float], ...]  # (exit time ms, cumulative PnL) in exit order
    slippages_bps: tuple[float, ...]
    verdict: Verdict
    # Per market, (exit time ms, the market's cumulative PnL) in exit order.
    cumulative_pnl_by_market: tuple[tuple[str, tuple[tuple[int, float], ...]], ...] = ()
    net_edges_bps: tuple[float, ...] = ()

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        """The verdict's criteria."""
        return self.verdict.criteria

    @property
    def go(self) -> bool:
        """True when the decision is GO."""
        return self.verdict.decision == GO


def _cumulative(trades: Iterable[TradeRow]) -> tuple[tuple[int, float], ...]:
    series: list[tuple[int, float]] = []
    total = 0.0
    for trade in sorted(trades, key=lambda t: t.exit_time_ms):
        total += trade.pnl
        series.append((trade.exit_time_ms, total))
    return tuple(series)


def compute_report(
    rows: JournalRows, *, since_ms: int | None = None, thresholds: VerdictThresholds | None = None
) -> Report:
    """The report for `rows`, restricted to the window starting at `since_ms` (None: everything), with
    the verdict under `thresholds` (None: the defaults)."""
    t = thresholds if thresholds is not None else VerdictThresholds()
    window = in_window(rows, since_ms)
    trades, orders, fills = window.trades, window.orders, window.fills

    def stats(name: str, market: str | None) -> MarketStats:
        return market_stats(
            name,
            [x for x in trades if market in (None, x.market)],
            [x for x in orders if market in (None, x.market)],
            [x for x in fills if market in (None, x.market)],
            confidence=t.confidence,
            resamples=t.bootstrap_resamples,
            seed=t.bootstrap_seed,
        )

    names = sorted({x.market for x in trades} | {x.market for x in orders})
    markets = tuple(stats(name, name) for name in names)
    overall = stats(OVERALL, None)
    problems = serious_problems(trades, window.events, deadline_ms=t.flatten_deadline_ms)
    hard_stops = tuple(e for e in window.events if e.kind == HARD_STOP_KIND)
    return Report(
        since_ms=since_ms,
        markets=markets,
        overall=overall,
        hard_stops=tuple(sorted(hard_stops, key=lambda e: e.time_ms)),
        cumulative_pnl=_cumulative(trades),
        slippages_bps=tuple(x.slippage_bps for x in trades if x.slippage_bps is not None),
        verdict=decide(overall, problems, t),
        cumulative_pnl_by_market=tuple(
            (name, _cumulative(x for x in trades if x.market == name)) for name in names
        ),
        net_edges_bps=tuple(v for v in (x.net_edge_bps for x in trades) if v is not None),
    )


# --- loading -----------------------------------------------------------------------------------------


def load_rows(path: Path) -> JournalRows:
    """Read the rows the report needs from the journal at `path`, as one consistent snapshot.

    Read-only; safe while the engine writes. Raises `JournalUnavailable`.
    """
    conn = open_journal_read_only(path)
    try:
        conn.execute("BEGIN")  # one read transaction: every table from the same snapshot
        try:
            return read_rows(conn)
        finally:
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise JournalUnavailable(f"cannot read the journal {path}: {exc}") from exc
    finally:
        conn.close()


# --- text ----------------------------------------------------------------------------------------------


def _fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _fmt_bps(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} bps"


def _fmt_usd(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f} USD"


def _fmt_secs(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms / 1000:.3f} s"


def _parts(*parts: tuple[str, str]) -> str:
    """ "mean 1.00, median 2.00 bps" from (label, value) pairs; "n/a" when no value is known."""
    known = [(label, value) for label, value in parts if value != "n/a"]
    return ", ".join(f"{label} {value}" for label, value in known) if known else "n/a"


def _bps_parts(d: Distribution, *names: str) -> str:
    values = {"mean": d.mean, "median": d.median, "sd": d.sd, "p90": d.p90, "max": d.max}
    text = _parts(*((name, "n/a" if values[name] is None else f"{values[name]:.2f}") for name in names))
    return text if text == "n/a" else text + " bps"


def _market_lines(stats: MarketStats) -> list[str]:
    e, f, ttf = stats.entries, stats.flattens, stats.time_to_flat_ms
    span = (
        f" ({format_time_ms(stats.first_trade_ms)} to {format_time_ms(stats.last_trade_ms)})"
        if stats.first_trade_ms is not None and stats.last_trade_ms is not None
        else ""
    )
    interval = stats.net_edge_interval
    rows = [
        ("trades", f"{stats.trades}{span}"),
        ("pnl", _parts(("total", _fmt_usd(stats.pnl_total)), ("per trade", _fmt_usd(stats.pnl.mean)))),
        (
            "fees",
            f"{_fmt_usd(stats.fees_total)} on the trades; {_fmt_usd(stats.fills_fees_total)} on all "
            f"{stats.fills} fills",
        ),
        ("net edge after fees", _bps_parts(stats.net_edge_bps, "mean", "median", "sd")),
        (
            "net edge interval",
            "n/a (under 2 trades)"
            if interval is None
            else f"[{interval.low:.2f}, {interval.high:.2f}] bps ({interval.confidence * 100:g}% bootstrap "
            f"of the mean, {interval.resamples} resamples, seed {interval.seed})",
        ),
        ("expected edge (mean)", _fmt_bps(stats.expected_edge_bps.mean)),
        ("realised edge (mean)", _fmt_bps(stats.realised_edge_bps.mean)),
        ("slippage", _bps_parts(stats.slippage_bps, "mean", "median", "p90")),
        (
            "time to flat",
            _parts(
                ("median", _fmt_secs(ttf.median)), ("p90", _fmt_secs(ttf.p90)), ("max", _fmt_secs(ttf.max))
            ),
        ),
        ("exit reasons", ", ".join(f"{r} {n}" for r, n in stats.exit_reasons) or "n/a"),
        (
            "entry fill rate",
            f"{_fmt_pct(e.rate)} ({e.accepted} accepted, {e.rejected} rejected, "
            f"{e.timed_out} timed out; {e.excluded} excluded)",
        ),
        ("flatten success", f"{_fmt_pct(f.rate)} ({f.filled} of {f.resolved} reduce-only filled)"),
    ]
    if stats.reconstructed:
        rows.append(
            ("reconstructed trades", f"{stats.reconstructed} (entry not found after a restart: approximate)")
        )
    return [stats.market] + [f"  {label:<24}{value}" for label, value in rows]


def _hard_stop_lines(events: Sequence[EventRow]) -> list[str]:
    lines = [f"hard stops: {len(events)}"]
    for event in events:
        reason = event.detail.get("reason")
        text = reason if isinstance(reason, str) else json.dumps(dict(event.detail), sort_keys=True)
        lines.append(f"  {format_time_ms(event.time_ms)}  {text}")
    return lines


def _verdict_lines(verdict: Verdict) -> list[str]:
    lines = [
        "verdict (leave the micro test?)",
        f"  {'criterion':<32}{'from n':>6}{'value':>14}  {'threshold':<16}",
    ]
    for c in verdict.criteria:
        lines.append(
            f"  {c.name:<32}{c.from_trades:>6}{c.shown:>14}  {c.threshold_shown:<16}"
            f"{'PASS' if c.passed else 'FAIL'}"
        )
        if c.note and not c.passed:
            lines.append(f"      {c.note}")
    lines.append(f"verdict: {verdict.decision} — {verdict.reason}")
    return lines


def format_report(report: Report, *, source: Path | None = None) -> list[str]:
    """The report as text lines: header, each market, overall, hard stops, verdict (the last line)."""
    window = "everything" if report.since_ms is None else f"since {format_time_ms(report.since_ms)}"
    lines = [f"hip3-trio report — {window}" + (f" — {source}" if source is not None else ""), ""]
    if report.overall.trades == 0:
        lines += ["no trades yet", ""]
    if report.markets:
        for stats in report.markets:
            lines += [*_market_lines(stats), ""]
        lines += [*_market_lines(report.overall), ""]
    lines += [*_hard_stop_lines(report.hard_stops), ""]
    lines += _verdict_lines(report.verdict)
    return lines


# --- JSON --------------------------------------------------------------------------------------------


def _time_json(ms: int | None) -> dict[str, Any] | None:
    return None if ms is None else {"ms": ms, "utc": format_time_ms(ms)}


def _dist_json(d: Distribution) -> dict[str, Any]:
    return attrs.asdict(d)


def _stats_json(s: MarketStats) -> dict[str, Any]:
    interval = s.net_edge_interval
    return {
        "market": s.market,
        "trades": s.trades,
        "first_trade": _time_json(s.first_trade_ms),
        "last_trade": _time_json(s.last_trade_ms),
        "pnl_usd": {"total": s.pnl_total, "per_trade": _dist_json(s.pnl)},
        "fees_usd": {"trades": s.fees_total, "fills": s.fills_fees_total, "fill_count": s.fills},
        "net_edge_bps": {
            **_dist_json(s.net_edge_bps),
            "interval": None if interval is None else attrs.asdict(interval),
        },
        "expected_edge_bps": _dist_json(s.expected_edge_bps),
        "realised_edge_bps": _dist_json(s.realised_edge_bps),
        "slippage_bps": _dist_json(s.slippage_bps),
        "time_to_flat_ms": _dist_json(s.time_to_flat_ms),
        "exit_reasons": dict(s.exit_reasons),
        "fill_rate": {**attrs.asdict(s.entries), "resolved": s.entries.resolved, "rate": s.entries.rate},
        "flatten_success": {**attrs.asdict(s.flattens), "rate": s.flattens.rate},
        "reconstructed": s.reconstructed,
    }


def report_json(report: Report, *, source: Path | None = None, plot: Path | None = None) -> dict[str, Any]:
    """Every figure of the report and the verdict, as a JSON-ready dict."""
    v = report.verdict
    return {
        "source": None if source is None else str(source),
        "since": _time_json(report.since_ms),
        "markets": [_stats_json(s) for s in report.markets],
        "overall": _stats_json(report.overall),
        "hard_stops": [{"time": _time_json(e.time_ms), "detail": dict(e.detail)} for e in report.hard_stops],
        "verdict": {
            "decision": v.decision,
            "reason": v.reason,
            "trades": v.trades,
            "criteria": [attrs.asdict(c) for c in v.criteria],
            "thresholds": attrs.asdict(v.thresholds),
            "problems": attrs.asdict(v.problems),
        },
        "plot": None if plot is None else str(plot),
    }


def _dumps(doc: dict[str, Any]) -> str:
    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(doc), indent=2, sort_keys=False, default=str)


# --- command line ----------------------------------------------------------------------------------


def parse_since(text: str) -> int:
    """``--since``: epoch milliseconds (digits only) or an ISO 8601 date/date-time (naive = UTC) → ms."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO date/time or epoch milliseconds: {text!r} (e.g. 2025-01-31, "
            "2025-01-31T12:00:00Z, 1738324800000)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def build_parser() -> argparse.ArgumentParser:
    """The ``report`` subcommand's arguments."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Print the micro test's figures from the journal and the go/no-go verdict."
    )
    add_state_dir_options(parser)
    parser.add_argument(
        "--since",
        metavar="WHEN",
        type=parse_since,
        default=None,
        help="only trades entered, orders submitted, fills and events at or after WHEN "
        "(ISO date/time, UTC if naive; or epoch ms)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        type=Path,
        default=None,
        help=f"also draw a PNG (needs {PLOT_INSTALL_HINT})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document (every figure and the verdict)"
    )
    parser.add_argument("--check", action="store_true", help="exit 0 only on GO, 1 on any other decision")
    parser.add_argument(
        "--checklist",
        choices=CHECKLISTS,
        default=None,
        help="print the plan's checklist instead (PASS / FAIL / NOT SEEN with the journal's evidence); "
        "exit 0 only if every item passes",
    )
    return parser


def _exit_code(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


def main(
    argv: Sequence[str],
    *,
    out: Callable[[str], None] = print,
    thresholds: VerdictThresholds | None = None,
) -> int:
    """Run ``python -m hip3_trio report`` with `argv` (the arguments after ``report``); the exit code.

    `thresholds`: the verdict's (None: the ``--config`` file's ``[verdict]``, else the plan's defaults).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
        if args.checklist is not None and args.plot is not None:
            parser.error("--plot draws the report, not a checklist: use one or the other")
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return _exit_code(exc)
    try:
        t = thresholds if thresholds is not None else config_of(args).verdict
        path = journal_path(state_dir_of(args))
    except ConfigError as exc:
        out(f"error: {exc}")
        return 2
    try:
        pyplot = load_pyplot() if args.plot is not None else None
        rows = load_rows(path)
    except (JournalUnavailable, PlotUnavailable) as exc:
        out(f"error: {exc}")
        return 2
    if args.checklist is not None:
        checklist = evaluate_testnet(rows, since_ms=args.since, flatten_deadline_ms=t.flatten_deadline_ms)
        if args.json:
            out(_dumps({"source": str(path), **checklist_json(checklist)}))
        else:
            window = "everything" if args.since is None else f"since {format_time_ms(args.since)}"
            for line in format_checklist(
                checklist, header=f"hip3-trio {args.checklist} checklist — {window} — {path}"
            ):
                out(line)
        return 0 if checklist.passed else 1
    report = compute_report(rows, since_ms=args.since, thresholds=t)
    if not args.json:
        for line in format_report(report, source=path):
            out(line)
    if pyplot is not None:
        try:
            write_plot(report, args.plot, pyplot)
        except OSError as exc:
            out(f"error: cannot write the plot {args.plot}: {exc}")
            return 2
        if not args.json:
            out(f"plot written to {args.plot}")
    if args.json:
        out(_dumps(report_json(report, source=path, plot=args.plot)))
    if args.check:
        return 0 if report.go else 1
    return 0
