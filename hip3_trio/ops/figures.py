"""The report's figures: per-market and overall statistics of the journal's round trips and orders.

Pure functions over `hip3_trio.ops.rows` rows (no SQLite, no printing). Definitions — the figures are
only as good as these, so they are exact:

- Trades: rows of the ``trades`` table, one per round trip (entry → flat). First and last trade time:
  the earliest entry and the latest exit among them.
- Entry fill rate = accepted / (accepted + rejected + timed out), over orders with ``reason = 'entry'``,
  by ``final_state``: *accepted* = ``filled`` or ``partial`` (any fill counts: the position was opened);
  *rejected* = ``rejected`` (including an IOC that found nothing to match) or ``canceled`` (no fill);
  *timed out* = ``timeout`` or ``unknown``. *Excluded* (shown, not in the rate): still open (NULL),
  ``not_sent`` (never reached the venue, so it says nothing about filling there) and ``dry_run``.
- Flatten success = reduce-only orders with ``final_state = 'filled'`` / resolved reduce-only orders
  (``final_state`` set and not ``dry_run``). A ``partial`` fill, a reject, cancel, timeout, unknown or
  ``not_sent`` is a failure: each one left (part of) a position open.
- Expected edge: the signal's, per trade (trades without one are left out). Realised edge: the gross
  price move captured, bps of the entry price. Net edge: ``pnl / |entry_px × size| × 10⁴``, the trade's
  PnL — net of fees, with slippage already in the entry price — in bps of entry notional; its mean, and
  the interval around that mean, are the verdict's "edge after fees and slippage".
- Net edge interval: a percentile bootstrap of the mean — `resamples` resamples with replacement of the
  trades' net edges (sorted first, so the interval depends only on the values, not on their order),
  drawn by ``random.Random(seed)``, so the same journal always gives the same interval; the interval is
  the (1 − c)/2 and (1 + c)/2 percentiles of the resampled means for confidence c. None under 2 trades.
- Slippage: entry fill against the signal price, bps, adverse positive (trades without one left out).
  Time to flat: entry fill to flat again. PnL per trade: mean of ``pnl``; cumulative: its sum.
  Fees: the sum of the trades' ``fees`` (as charged on their fills); beside it, the fees of every fill
  in the window (``fills.fee``), which also covers fills of positions not (yet) closed.
- Exit reasons: the trades' ``exit_reason`` (the closing order's reason), ``(none)`` when unknown.
- sd: the sample standard deviation (n − 1). Percentiles (median = p50, p90): linear interpolation
  between closest ranks — Hyndman & Fan type 7, numpy's default. For sorted values x₀ … xₙ₋₁,
  h = (n − 1)·p and the value is x⌊h⌋ + (h − ⌊h⌋)·(x⌊h⌋₊₁ − x⌊h⌋); one value is its own every percentile.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from hip3_trio.ops.rows import FillRow, OrderRow, TradeRow

__all__ = [
    "ACCEPTED_STATES",
    "ENTRY_REASON",
    "EXCLUDED_STATES",
    "FLATTEN_FILLED_STATE",
    "NO_EXIT_REASON",
    "REJECTED_STATES",
    "TIMED_OUT_STATES",
    "Distribution",
    "FillCounts",
    "FlattenCounts",
    "Interval",
    "MarketStats",
    "bootstrap_mean_interval",
    "fill_counts",
    "flatten_counts",
    "market_stats",
    "percentile",
]

ENTRY_REASON: Final = "entry"
ACCEPTED_STATES: Final = frozenset({"filled", "partial"})
REJECTED_STATES: Final = frozenset({"rejected", "canceled"})
TIMED_OUT_STATES: Final = frozenset({"timeout", "unknown"})
EXCLUDED_STATES: Final = frozenset({"not_sent", "dry_run"})  # and NULL: still open
FLATTEN_FILLED_STATE: Final = "filled"
NO_EXIT_REASON: Final = "(none)"


def _percentile_sorted(ordered: Sequence[float], p: float) -> float:
    h = (len(ordered) - 1) * p
    low = math.floor(h)
    if low + 1 >= len(ordered):
        return ordered[-1]
    return ordered[low] + (h - low) * (ordered[low + 1] - ordered[low])


def percentile(values: Iterable[float], p: float) -> float:
    """The `p` quantile (0 ≤ p ≤ 1) of `values` by linear interpolation between closest ranks (type 7).

    Raises ValueError for no values or `p` outside [0, 1].
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    return _percentile_sorted(ordered, p)


@attrs.frozen(kw_only=True)
class Interval:
    """A bootstrap confidence interval of a mean, with how it was drawn (to reproduce it)."""

    low: float
    high: float
    confidence: float
    resamples: int
    seed: int


def bootstrap_mean_interval(
    values: Iterable[float], *, confidence: float = 0.95, resamples: int = 5000, seed: int = 1
) -> Interval | None:
    """The percentile-bootstrap interval of the mean of `values` (None for fewer than 2 values).

    Deterministic: the values are sorted, then resampled by ``random.Random(seed)``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    ordered = sorted(values)
    n = len(ordered)
    if n < 2:
        return None
    rng = random.Random(seed)
    means = sorted(math.fsum(rng.choices(ordered, k=n)) / n for _ in range(resamples))
    tail = (1.0 - confidence) / 2
    return Interval(
        low=_percentile_sorted(means, tail),
        high=_percentile_sorted(means, 1.0 - tail),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )


@attrs.frozen(kw_only=True)
class Distribution:
    """Count, mean, median, sd, p90 and max of some values; None where they cannot be computed
    (no values; sd under two)."""

    count: int = 0
    mean: float | None = None
    median: float | None = None
    sd: float | None = None
    p90: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Distribution:
        """The distribution of the non-None `values`."""
        present = sorted(v for v in values if v is not None)
        if not present:
            return cls()
        return cls(
            count=len(present),
            mean=math.fsum(present) / len(present),
            median=_percentile_sorted(present, 0.5),
            sd=statistics.stdev(present) if len(present) > 1 else None,
            p90=_percentile_sorted(present, 0.9),
            max=present[-1],
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
    net_edge_interval: Interval | None = None
    exit_reasons: tuple[tuple[str, int], ...] = ()  # most frequent first
    first_trade_ms: int | None = None  # earliest entry
    last_trade_ms: int | None = None  # latest exit
    fills: int = 0
    fills_fees_total: float = 0.0


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


def _exit_reasons(trades: Iterable[TradeRow]) -> tuple[tuple[str, int], ...]:
    counts = Counter(t.exit_reason or NO_EXIT_REASON for t in trades)
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def market_stats(
    market: str,
    trades: Sequence[TradeRow],
    orders: Sequence[OrderRow],
    fills: Sequence[FillRow] = (),
    *,
    confidence: float = 0.95,
    resamples: int = 5000,
    seed: int = 1,
) -> MarketStats:
    """The figures for `trades`, `orders` and `fills` (already restricted to one market, or all of them);
    the net edge interval is drawn with `confidence`, `resamples` and `seed`."""
    net = [v for v in (t.net_edge_bps for t in trades) if v is not None]
    return MarketStats(
        market=market,
        trades=len(trades),
        entries=fill_counts(orders),
        flattens=flatten_counts(orders),
        expected_edge_bps=Distribution.of(t.expected_edge_bps for t in trades),
        realised_edge_bps=Distribution.of(t.realised_edge_bps for t in trades),
        net_edge_bps=Distribution.of(net),
        slippage_bps=Distribution.of(t.slippage_bps for t in trades),
        time_to_flat_ms=Distribution.of(float(t.time_to_flat_ms) for t in trades),
        pnl=Distribution.of(t.pnl for t in trades),
        pnl_total=math.fsum(t.pnl for t in trades),
        fees_total=math.fsum(t.fees for t in trades),
        reconstructed=sum(t.reconstructed for t in trades),
        net_edge_interval=bootstrap_mean_interval(net, confidence=confidence, resamples=resamples, seed=seed),
        exit_reasons=_exit_reasons(trades),
        first_trade_ms=min((t.entry_time_ms for t in trades), default=None),
        last_trade_ms=max((t.exit_time_ms for t in trades), default=None),
        fills=len(fills),
        fills_fees_total=math.fsum(f.fee for f in fills),
    )
