"""A run's figures, per grid point: trades, fill rate, net edge per trade (mean, 95 % interval), PnL and
maximum drawdown — with the report's own definitions (`hip3_trio.ops.figures`), so a backtest and a
micro test's journal are judged alike:

- net edge per trade: PnL (net of fees both legs, slippage in the prices) in bps of entry notional;
  its mean, and the percentile-bootstrap 95 % interval of the mean (`bootstrap_mean_interval`, drawn
  with the run's seed, so the same run gives the same interval);
- fill rate: entry orders that filled (any size) / entry orders that reached the venue;
- PnL: the sum of the trades' net PnL (fees are also shown alone);
- maximum drawdown: the largest fall of cumulative PnL from its running peak (starting at 0), trades
  taken in the order they closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from hip3_trio.backtest.runner import RunResult
from hip3_trio.journal import TradeRecord
from hip3_trio.ops.figures import MarketStats, market_stats
from hip3_trio.ops.rows import TradeRow

__all__ = ["PointSummary", "max_drawdown", "summarize", "trade_row"]


def trade_row(t: TradeRecord) -> TradeRow:
    """A trade record as the report's row (floats, as the journal stores them)."""
    return TradeRow(
        market=t.market,
        entry_time_ms=t.entry_time_ms,
        exit_time_ms=t.exit_time_ms,
        size=float(t.size),
        entry_px=float(t.entry_px),
        expected_edge_bps=None if t.expected_edge_bps is None else float(t.expected_edge_bps),
        realised_edge_bps=float(t.realised_edge_bps),
        slippage_bps=None if t.slippage_bps is None else float(t.slippage_bps),
        time_to_flat_ms=t.time_to_flat_ms,
        pnl=float(t.pnl),
        fees=float(t.fees),
        reconstructed=t.reconstructed,
        exit_reason=t.exit_reason,
    )


def max_drawdown(pnls: Sequence[float]) -> float:
    """The largest fall of the running sum of `pnls` below its running peak (the peak starts at 0)."""
    peak = total = worst = 0.0
    for pnl in pnls:
        total += pnl
        peak = max(peak, total)
        worst = max(worst, peak - total)
    return worst


@attrs.frozen(kw_only=True)
class PointSummary:
    """The figures of one grid point."""

    params: dict[str, str]
    result: RunResult
    stats: MarketStats
    max_drawdown: float

    @property
    def fill_rate(self) -> float | None:
        venue = self.result.venue
        return venue["entries_filled"] / venue["entries"] if venue["entries"] else None

    def to_json(self) -> dict[str, Any]:
        s, r, interval = self.stats, self.result, self.stats.net_edge_interval
        return {
            "params": self.params,
            "trades": s.trades,
            "fill_rate": self.fill_rate,
            "net_edge_bps": {
                "mean": s.net_edge_bps.mean,
                "low": None if interval is None else interval.low,
                "high": None if interval is None else interval.high,
                "confidence": None if interval is None else interval.confidence,
            },
            "pnl": s.pnl_total,
            "fees": s.fees_total,
            "max_drawdown": self.max_drawdown,
            "signals": r.signals,
            "signals_acted": r.signals_acted,
            **r.venue,
            "exit_reasons": dict(s.exit_reasons),
            "open_positions": r.open_positions,
            "hard_stop": r.hard_stop,
        }

    def line(self) -> str:
        s, interval = self.stats, self.stats.net_edge_interval
        rate = "-" if self.fill_rate is None else f"{self.fill_rate:.0%}"
        mean = "-" if s.net_edge_bps.mean is None else f"{s.net_edge_bps.mean:+.1f}"
        ci = "" if interval is None else f" [{interval.low:+.1f}, {interval.high:+.1f}]"
        params = " ".join(f"{k}={v}" for k, v in self.params.items()) or "(config)"
        extra = f"  hard stop: {self.result.hard_stop}" if self.result.hard_stop else ""
        if self.result.open_positions:
            extra += f"  open at end: {', '.join(f'{c} {z}' for c, z in self.result.open_positions.items())}"
        return (
            f"{params}: trades {s.trades}, fill rate {rate} ({self.result.venue['entries_filled']}/"
            f"{self.result.venue['entries']}), net edge {mean} bps{ci}, pnl {s.pnl_total:+.4f} "
            f"(fees {s.fees_total:.4f}), max drawdown {self.max_drawdown:.4f}{extra}"
        )


def summarize(params: dict[str, str], result: RunResult, *, seed: int) -> PointSummary:
    """The figures of one run (the interval drawn with `seed`)."""
    rows = sorted((trade_row(t) for t in result.trades), key=lambda r: r.exit_time_ms)
    stats = market_stats("overall", rows, (), seed=seed)
    return PointSummary(
        params=params, result=result, stats=stats, max_drawdown=max_drawdown([r.pnl for r in rows])
    )
