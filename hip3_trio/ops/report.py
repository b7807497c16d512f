"""The micro-test report: ``python -m hip3_trio report [--state-dir DIR] [--since WHEN] [--plot FILE.png]``.

It reads the journal (``<state_dir>/journal.sqlite3``) read-only and prints, per market and overall, what
the micro test exists to measure, then the go/no-go verdict for moving on from it. The engine may be
writing at the same time: the file is opened with a ``mode=ro`` URI (this tool can never write to the
journal, and never creates one — a missing journal is an error, exit 2), and all rows are read inside one
read transaction, so under WAL they are one consistent snapshot and the writer is never blocked.

Structure: `load_rows` (SQLite → plain rows) → `compute_report` (pure: rows → `Report`, testable without
SQLite) → `format_report` (text lines) and `write_plot` (PNG, matplotlib imported lazily) → `main`.

Definitions (the figures are only as good as these, so they are exact):

- Window (``--since``, an ISO date/time — naive means UTC — or epoch milliseconds): a trade is in the
  window when its *entry* time is at or after it (a round trip belongs to the run that opened it); an order
  when its submission time is (for a row known only from an update, its last update time; a row with
  neither time is only in an unbounded report); an event when its time is.
- Trades: rows of the ``trades`` table, one per round trip (entry → flat).
- Entry fill rate = accepted / (accepted + rejected + timed out), over orders with ``reason = 'entry'``,
  by ``final_state``: *accepted* = ``filled`` or ``partial`` (any fill counts: the position was opened);
  *rejected* = ``rejected`` (including an IOC that found nothing to match) or ``canceled`` (no fill);
  *timed out* = ``timeout`` or ``unknown``. *Excluded* (shown, not in the rate): still open (NULL),
  ``not_sent`` (never reached the venue, so it says nothing about filling there) and ``dry_run``. This
  differs from the example query in `hip3_trio.journal` only by leaving ``not_sent``/``dry_run`` out.
- Flatten success = reduce-only orders with ``final_state = 'filled'`` / resolved reduce-only orders
  (``final_state`` set and not ``dry_run``). A ``partial`` fill, a reject, cancel, timeout, unknown or
  ``not_sent`` is a failure: each one left (part of) a position open.
- Expected edge: the signal's, per trade (trades without one are left out of that mean). Realised edge:
  the gross price move captured, bps of the entry price. Net edge: ``pnl / |entry_px × size| × 10⁴``, the
  trade's PnL — net of fees, with slippage already in the entry price — in bps of entry notional; its mean
  is the verdict's "edge after fees and slippage".
- Slippage: entry fill against the signal price, bps, adverse positive (trades without one left out).
  Time to flat: entry fill to flat again. PnL per trade: mean of ``pnl``; cumulative: its sum, also plotted
  in exit-time order. Fees: sum of ``fees``.
- Percentiles (median = p50, p90): linear interpolation between closest ranks — Hyndman & Fan type 7, the
  default of numpy and Excel's PERCENTILE.INC. For sorted values x₀ … xₙ₋₁, h = (n − 1)·p and the value is
  x⌊h⌋ + (h − ⌊h⌋)·(x⌊h⌋₊₁ − x⌊h⌋); one value is its own every percentile.
- Hard stops: events of kind ``hard_stop`` in the window, listed with their reason when the event has one.
- Verdict (on the overall figures): trades ≥ 100; mean net edge > 0 bps; entry fill rate > 80 %; flatten
  success > 95 %. A figure that cannot be computed (no trades, no resolved orders) FAILS its criterion.
  GO only when every criterion passes — an empty journal is "no trades yet" and NO-GO.

Exit codes: 0 the report was printed (whatever the verdict); 2 bad arguments, a missing or unusable
journal, or ``--plot`` without matplotlib (``pip install 'hip3-trio[plot]'``) or an unwritable plot file.
Everything, errors included, is written through ``out``, except argparse's own usage errors
(stderr) and ``--help`` (stdout).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from hip3_trio.config import Config, resolve_state_dir
from hip3_trio.journal import JournalUnavailable, journal_path, open_journal_read_only

__all__ = [
    "ACCEPTED_STATES",
    "EXCLUDED_STATES",
    "MIN_FILL_RATE",
    "MIN_FLATTEN_SUCCESS",
    "MIN_TRADES",
    "PLOT_INSTALL_HINT",
    "REJECTED_STATES",
    "TIMED_OUT_STATES",
    "Criterion",
    "Distribution",
    "EventRow",
    "FillCounts",
    "FlattenCounts",
    "JournalRows",
    "MarketStats",
    "OrderRow",
    "PlotUnavailable",
    "Report",
    "TradeRow",
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
    "verdict",
    "write_plot",
]

PROG: Final = "python -m hip3_trio report"
PLOT_INSTALL_HINT: Final = "pip install 'hip3-trio[plot]'"

MIN_TRADES: Final = 100
MIN_NET_EDGE_BPS: Final = 0.0
MIN_FILL_RATE: Final = 0.80
MIN_FLATTEN_SUCCESS: Final = 0.95

ENTRY_REASON: Final = "entry"
HARD_STOP_KIND: Final = "hard_stop"
ACCEPTED_STATES: Final = frozenset({"filled", "partial"})
REJECTED_STATES: Final = frozenset({"rejected", "canceled"})
TIMED_OUT_STATES: Final = frozenset({"timeout", "unknown"})
EXCLUDED_STATES: Final = frozenset({"not_sent", "dry_run"})  # and NULL: still open
FLATTEN_FILLED_STATE: Final = "filled"

OVERALL: Final = "overall"


class PlotUnavailable(Exception):
    """``--plot`` was asked for but matplotlib is not installed."""


# --- rows: what the report reads from the journal ---------------------------------------------------


@attrs.frozen(kw_only=True)
class TradeRow:
    """One round trip, as the ``trades`` table holds it (REAL columns as floats)."""

    market: str
    entry_time_ms: int
    exit_time_ms: int
    size: float
    entry_px: float
    expected_edge_bps: float | None
    realised_edge_bps: float
    slippage_bps: float | None
    time_to_flat_ms: int
    pnl: float
    fees: float
    reconstructed: bool = False

    @property
    def net_edge_bps(self) -> float | None:
        """PnL (net of fees, slippage included) in bps of entry notional; None for a zero notional."""
        notional = abs(self.entry_px * self.size)
        return self.pnl / notional * 1e4 if notional > 0 else None


@attrs.frozen(kw_only=True)
class OrderRow:
    """One order's intent and outcome. Intent fields are None for a row known only from an update."""

    market: str
    reason: str | None
    reduce_only: bool | None
    final_state: str | None
    time_ms: int | None  # submitted_ms, else the last update's time


@attrs.frozen(kw_only=True)
class EventRow:
    """One journaled event with its decoded JSON detail."""

    time_ms: int
    kind: str
    detail: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class JournalRows:
    """Everything `compute_report` needs, unfiltered."""

    trades: tuple[TradeRow, ...] = ()
    orders: tuple[OrderRow, ...] = ()
    events: tuple[EventRow, ...] = ()


# --- statistics --------------------------------------------------------------------------------------


def percentile(values: Iterable[float], p: float) -> float:
    """The `p` quantile (0 ≤ p ≤ 1) of `values` by linear interpolation between closest ranks (type 7).

    Raises ValueError for no values or `p` outside [0, 1].
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    h = (len(ordered) - 1) * p
    low = math.floor(h)
    if low + 1 >= len(ordered):
        return ordered[-1]
    return ordered[low] + (h - low) * (ordered[low + 1] - ordered[low])


@attrs.frozen(kw_only=True)
class Distribution:
    """Count, mean, median and p90 of some values; the statistics are None when there are none."""

    count: int = 0
    mean: float | None = None
    median: float | None = None
    p90: float | None = None

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Distribution:
        """The distribution of the non-None `values`."""
        present = [v for v in values if v is not None]
        if not present:
            return cls()
        return cls(
            count=len(present),
            mean=math.fsum(present) / len(present),
            median=percentile(present, 0.5),
            p90=percentile(present, 0.9),
        )


@attrs.frozen(kw_only=True)
class FillCounts:
    """Entry orders by outcome class (see the module docstring)."""

    accepted: int = 0
    rejected: int = 0
    timed_out: int = 0
    excluded: int = 0

    @property
    def resolved(self) -> int:
        """The fill rate's denominator."""
        return self.accepted + self.rejected + self.timed_out

    @property
    def rate(self) -> float | None:
        """accepted / resolved; None when nothing resolved."""
        return self.accepted / self.resolved if self.resolved else None


@attrs.frozen(kw_only=True)
class FlattenCounts:
    """Resolved reduce-only orders and how many of them filled completely."""

    filled: int = 0
    resolved: int = 0

    @property
    def rate(self) -> float | None:
        """filled / resolved; None when nothing resolved."""
        return self.filled / self.resolved if self.resolved else None


@attrs.frozen(kw_only=True)
class MarketStats:
    """The figures for one market, or for all of them (`market` = "overall")."""

    market: str
    trades: int
    entries: FillCounts
    flattens: FlattenCounts
    expected_edge_bps: Distribution
    realised_edge_bps: Distribution
    net_edge_bps: Distribution
    slippage_bps: Distribution
    time_to_flat_ms: Distribution
    pnl: Distribution
    pnl_total: float
    fees_total: float
    reconstructed: int = 0


@attrs.frozen(kw_only=True)
class Criterion:
    """One go/no-go criterion: what it asks, the measured value (None = not computable) and the outcome."""

    name: str
    value: float | None
    passed: bool
    shown: str  # the value as printed


@attrs.frozen(kw_only=True)
class Report:
    """The whole report: per-market and overall figures, hard stops, plot series and the verdict."""

    since_ms: int | None
    markets: tuple[MarketStats, ...]
    overall: MarketStats
    hard_stops: tuple[EventRow, ...]
    cumulative_pnl: tuple[tuple[int, float], ...]  # (exit time ms, cumulative PnL) in exit order
    slippages_bps: tuple[float, ...]
    criteria: tuple[Criterion, ...]

    @property
    def go(self) -> bool:
        """True when every criterion passes."""
        return all(c.passed for c in self.criteria)


def _classify_entry(state: str | None) -> str:
    if state in ACCEPTED_STATES:
        return "accepted"
    if state in REJECTED_STATES:
        return "rejected"
    if state in TIMED_OUT_STATES:
        return "timed_out"
    return "excluded"  # NULL (open), not_sent, dry_run, or a state this version does not know


def fill_counts(orders: Iterable[OrderRow]) -> FillCounts:
    """Classify the entry orders among `orders`."""
    counts = {"accepted": 0, "rejected": 0, "timed_out": 0, "excluded": 0}
    for order in orders:
        if order.reason == ENTRY_REASON:
            counts[_classify_entry(order.final_state)] += 1
    return FillCounts(**counts)


def flatten_counts(orders: Iterable[OrderRow]) -> FlattenCounts:
    """Count the resolved reduce-only orders among `orders` and those that filled completely."""
    resolved = [
        o for o in orders if o.reduce_only and o.final_state is not None and o.final_state != "dry_run"
    ]
    return FlattenCounts(
        filled=sum(o.final_state == FLATTEN_FILLED_STATE for o in resolved), resolved=len(resolved)
    )


def market_stats(market: str, trades: Sequence[TradeRow], orders: Sequence[OrderRow]) -> MarketStats:
    """The figures for `trades` and `orders` (already restricted to one market, or all of them)."""
    return MarketStats(
        market=market,
        trades=len(trades),
        entries=fill_counts(orders),
        flattens=flatten_counts(orders),
        expected_edge_bps=Distribution.of(t.expected_edge_bps for t in trades),
        realised_edge_bps=Distribution.of(t.realised_edge_bps for t in trades),
        net_edge_bps=Distribution.of(t.net_edge_bps for t in trades),
        slippage_bps=Distribution.of(t.slippage_bps for t in trades),
        time_to_flat_ms=Distribution.of(float(t.time_to_flat_ms) for t in trades),
        pnl=Distribution.of(t.pnl for t in trades),
        pnl_total=math.fsum(t.pnl for t in trades),
        fees_total=math.fsum(t.fees for t in trades),
        reconstructed=sum(t.reconstructed for t in trades),
    )


def _in_window(time_ms: int | None, since_ms: int | None) -> bool:
    if since_ms is None:
        return True
    return time_ms is not None and time_ms >= since_ms


def _fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _fmt_bps(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} bps"


def verdict(overall: MarketStats) -> tuple[Criterion, ...]:
    """The go/no-go criteria for leaving the micro test, judged on the overall figures."""
    net, fill, flat = overall.net_edge_bps.mean, overall.entries.rate, overall.flattens.rate
    return (
        Criterion(
            name=f"trades >= {MIN_TRADES}",
            value=float(overall.trades),
            passed=overall.trades >= MIN_TRADES,
            shown=str(overall.trades),
        ),
        Criterion(
            name=f"edge after fees and slippage > {MIN_NET_EDGE_BPS:g} bps",
            value=net,
            passed=net is not None and net > MIN_NET_EDGE_BPS,
            shown=_fmt_bps(net),
        ),
        Criterion(
            name=f"entry fill rate > {MIN_FILL_RATE:.0%}",
            value=fill,
            passed=fill is not None and fill > MIN_FILL_RATE,
            shown=_fmt_pct(fill),
        ),
        Criterion(
            name=f"flatten success > {MIN_FLATTEN_SUCCESS:.0%}",
            value=flat,
            passed=flat is not None and flat > MIN_FLATTEN_SUCCESS,
            shown=_fmt_pct(flat),
        ),
    )


def _cumulative(trades: Iterable[TradeRow]) -> tuple[tuple[int, float], ...]:
    series: list[tuple[int, float]] = []
    total = 0.0
    for trade in sorted(trades, key=lambda t: t.exit_time_ms):
        total += trade.pnl
        series.append((trade.exit_time_ms, total))
    return tuple(series)


def compute_report(rows: JournalRows, *, since_ms: int | None = None) -> Report:
    """The report for `rows`, restricted to the window starting at `since_ms` (None: everything)."""
    trades = [t for t in rows.trades if _in_window(t.entry_time_ms, since_ms)]
    orders = [o for o in rows.orders if _in_window(o.time_ms, since_ms)]
    hard_stops = tuple(e for e in rows.events if e.kind == HARD_STOP_KIND and _in_window(e.time_ms, since_ms))
    names = sorted({t.market for t in trades} | {o.market for o in orders})
    markets = tuple(
        market_stats(name, [t for t in trades if t.market == name], [o for o in orders if o.market == name])
        for name in names
    )
    overall = market_stats(OVERALL, trades, orders)
    return Report(
        since_ms=since_ms,
        markets=markets,
        overall=overall,
        hard_stops=tuple(sorted(hard_stops, key=lambda e: e.time_ms)),
        cumulative_pnl=_cumulative(trades),
        slippages_bps=tuple(t.slippage_bps for t in trades if t.slippage_bps is not None),
        criteria=verdict(overall),
    )


# --- loading -----------------------------------------------------------------------------------------


_TRADES_SQL: Final = """
SELECT market, entry_time_ms, exit_time_ms, size, entry_px, expected_edge_bps, realised_edge_bps,
       slippage_bps, time_to_flat_ms, pnl, fees, {reconstructed}
  FROM trades ORDER BY exit_time_ms, id
"""
_ORDERS_SQL: Final = """
SELECT market, reason, reduce_only, final_state, COALESCE(submitted_ms, updated_ms)
  FROM orders ORDER BY COALESCE(submitted_ms, updated_ms), cloid
"""
_EVENTS_SQL: Final = "SELECT time_ms, kind, detail FROM events WHERE kind = ? ORDER BY time_ms, id"


def _detail(text: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"detail": text}
    return value if isinstance(value, dict) else {"detail": value}


def _column_or(conn: sqlite3.Connection, table: str, column: str, default: str = "0") -> str:
    """`column` if `table` has it, else the literal `default`: a read-only report cannot migrate an
    older journal, so it reads the columns a migration added as their default."""
    names = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    return column if column in names else default


def _read_rows(conn: sqlite3.Connection) -> JournalRows:
    trades = tuple(
        TradeRow(
            market=r[0],
            entry_time_ms=r[1],
            exit_time_ms=r[2],
            size=r[3],
            entry_px=r[4],
            expected_edge_bps=r[5],
            realised_edge_bps=r[6],
            slippage_bps=r[7],
            time_to_flat_ms=r[8],
            pnl=r[9],
            fees=r[10],
            reconstructed=bool(r[11]),
        )
        for r in conn.execute(_TRADES_SQL.format(reconstructed=_column_or(conn, "trades", "reconstructed")))
    )
    orders = tuple(
        OrderRow(
            market=r[0],
            reason=r[1],
            reduce_only=None if r[2] is None else bool(r[2]),
            final_state=r[3],
            time_ms=r[4],
        )
        for r in conn.execute(_ORDERS_SQL)
    )
    events = tuple(
        EventRow(time_ms=r[0], kind=r[1], detail=_detail(r[2]))
        for r in conn.execute(_EVENTS_SQL, (HARD_STOP_KIND,))
    )
    return JournalRows(trades=trades, orders=orders, events=events)


def load_rows(path: Path) -> JournalRows:
    """Read the rows the report needs from the journal at `path`, as one consistent snapshot.

    Read-only; safe while the engine writes. Raises `JournalUnavailable`.
    """
    conn = open_journal_read_only(path)
    try:
        conn.execute("BEGIN")  # one read transaction: trades, orders and events from the same snapshot
        try:
            return _read_rows(conn)
        finally:
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise JournalUnavailable(f"cannot read the journal {path}: {exc}") from exc
    finally:
        conn.close()


# --- text ----------------------------------------------------------------------------------------------


def format_time_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC, e.g. ``2025-01-02T03:04:05.678Z``."""
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fmt_usd(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f} USD"


def _fmt_secs(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms / 1000:.3f} s"


def _pair(a: str, b: str) -> str:
    return a if a == b == "n/a" else f"{a} / {b}"


def _market_lines(stats: MarketStats) -> list[str]:
    e, f = stats.entries, stats.flattens
    rows = [
        ("trades", str(stats.trades)),
        (
            "entry fill rate",
            f"{_fmt_pct(e.rate)} ({e.accepted} accepted, {e.rejected} rejected, "
            f"{e.timed_out} timed out; {e.excluded} excluded)",
        ),
        ("expected edge (mean)", _fmt_bps(stats.expected_edge_bps.mean)),
        ("realised edge (mean)", _fmt_bps(stats.realised_edge_bps.mean)),
        ("net edge after fees (mean)", _fmt_bps(stats.net_edge_bps.mean)),
        (
            "slippage median / p90",
            _pair(_fmt_bps(stats.slippage_bps.median), _fmt_bps(stats.slippage_bps.p90)),
        ),
        (
            "time to flat median / p90",
            _pair(_fmt_secs(stats.time_to_flat_ms.median), _fmt_secs(stats.time_to_flat_ms.p90)),
        ),
        ("pnl per trade (mean)", _fmt_usd(stats.pnl.mean)),
        ("pnl cumulative", _fmt_usd(stats.pnl_total)),
        ("fees", _fmt_usd(stats.fees_total)),
        ("flatten success", f"{_fmt_pct(f.rate)} ({f.filled} of {f.resolved} reduce-only filled)"),
    ]
    if stats.reconstructed:
        rows.append(
            ("reconstructed trades", f"{stats.reconstructed} (entry not found after a restart: approximate)")
        )
    return [stats.market] + [f"  {label:<28}{value}" for label, value in rows]


def _hard_stop_lines(events: Sequence[EventRow]) -> list[str]:
    lines = [f"hard stops: {len(events)}"]
    for event in events:
        reason = event.detail.get("reason")
        text = reason if isinstance(reason, str) else json.dumps(dict(event.detail), sort_keys=True)
        lines.append(f"  {format_time_ms(event.time_ms)}  {text}")
    return lines


def _verdict_lines(report: Report) -> list[str]:
    lines = ["verdict (leave the micro test?)"]
    for c in report.criteria:
        lines.append(f"  {c.name:<42}{c.shown:>14}  {'PASS' if c.passed else 'FAIL'}")
    lines.append("GO" if report.go else "NO-GO")
    return lines


def format_report(report: Report, *, source: Path | None = None) -> list[str]:
    """The report as text lines: header, each market, overall, hard stops, verdict."""
    window = "everything" if report.since_ms is None else f"since {format_time_ms(report.since_ms)}"
    lines = [f"hip3-trio report — {window}" + (f" — {source}" if source is not None else ""), ""]
    if report.overall.trades == 0:
        lines += ["no trades yet", ""]
    if report.markets:
        for stats in report.markets:
            lines += [*_market_lines(stats), ""]
        lines += [*_market_lines(report.overall), ""]
    lines += [*_hard_stop_lines(report.hard_stops), ""]
    lines += _verdict_lines(report)
    return lines


# --- plot -------------------------------------------------------------------------------------------


def load_pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend, imported only when a plot is asked for.

    Raises `PlotUnavailable`, with the install hint, when matplotlib is missing.
    """
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError as exc:
        raise PlotUnavailable(
            f"--plot needs matplotlib, which is not installed: {PLOT_INSTALL_HINT}"
        ) from exc
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def write_plot(report: Report, path: Path, pyplot: Any) -> None:
    """Draw cumulative PnL (by exit time) and a histogram of entry slippage into the PNG at `path`."""
    fig, (pnl_ax, slip_ax) = pyplot.subplots(2, 1, figsize=(10, 8))
    try:
        if report.cumulative_pnl:
            times = [dt.datetime.fromtimestamp(t / 1000, tz=dt.UTC) for t, _ in report.cumulative_pnl]
            pnl_ax.step(times, [v for _, v in report.cumulative_pnl], where="post")
            pnl_ax.axhline(0.0, color="grey", linewidth=0.8)
        else:
            pnl_ax.text(0.5, 0.5, "no trades yet", ha="center", va="center", transform=pnl_ax.transAxes)
        pnl_ax.set_title("cumulative PnL (USD, net of fees)")
        pnl_ax.set_xlabel("exit time (UTC)")
        if report.slippages_bps:
            slip_ax.hist(report.slippages_bps, bins=min(50, max(5, len(report.slippages_bps) // 5)))
        else:
            slip_ax.text(0.5, 0.5, "no slippage data", ha="center", va="center", transform=slip_ax.transAxes)
        slip_ax.set_title("entry slippage (bps, adverse positive)")
        slip_ax.set_xlabel("bps")
        slip_ax.set_ylabel("trades")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        pyplot.close(fig)


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
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        default=None,
        help="state directory (default: $HIP3_STATE_DIR or ./hip3-state)",
    )
    parser.add_argument(
        "--since",
        metavar="WHEN",
        type=parse_since,
        default=None,
        help="only trades entered, orders submitted and events at or after WHEN "
        "(ISO date/time, UTC if naive; or epoch ms)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        type=Path,
        default=None,
        help=f"also draw a PNG (needs {PLOT_INSTALL_HINT})",
    )
    return parser


def _exit_code(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


def main(argv: Sequence[str], *, out: Callable[[str], None] = print) -> int:
    """Run ``python -m hip3_trio report`` with `argv` (the arguments after ``report``); the exit code."""
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return _exit_code(exc)
    path = journal_path(resolve_state_dir(Config(), args.state_dir))
    try:
        pyplot = load_pyplot() if args.plot is not None else None
        rows = load_rows(path)
    except (JournalUnavailable, PlotUnavailable) as exc:
        out(f"error: {exc}")
        return 2
    report = compute_report(rows, since_ms=args.since)
    for line in format_report(report, source=path):
        out(line)
    if pyplot is not None:
        try:
            write_plot(report, args.plot, pyplot)
        except OSError as exc:
            out(f"error: cannot write the plot {args.plot}: {exc}")
            return 2
        out(f"plot written to {args.plot}")
    return 0
