"""``report --plot FILE.png``: the report's figures as a PNG (matplotlib, the optional ``plot`` extra).

matplotlib is imported only when a plot is asked for (`load_pyplot`), on the non-interactive Agg
backend; without it ``--plot`` fails with the install hint (`PLOT_INSTALL_HINT`) and the rest of the
report works as before. Panels, top to bottom: cumulative PnL over all markets, then one per market (by
exit time, net of fees), the entry slippage histogram, and the distribution of the net edge per trade
with its mean and the verdict's interval of that mean.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from hip3_trio.ops.report import Report

__all__ = ["PLOT_INSTALL_HINT", "PlotUnavailable", "load_pyplot", "write_plot"]

PLOT_INSTALL_HINT: Final = "pip install 'hip3-trio[plot]'"


class PlotUnavailable(Exception):
    """``--plot`` was asked for but matplotlib is not installed."""


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


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def _pnl_panel(ax: Any, series: Sequence[tuple[int, float]], title: str) -> None:
    if series:
        times = [dt.datetime.fromtimestamp(t / 1000, tz=dt.UTC) for t, _ in series]
        ax.step(times, [v for _, v in series], where="post")
        ax.axhline(0.0, color="grey", linewidth=0.8)
    else:
        _empty(ax, "no trades yet")
    ax.set_title(title)
    ax.set_xlabel("exit time (UTC)")
    ax.set_ylabel("USD")


def _histogram(ax: Any, values: Sequence[float], empty: str, *, alpha: float = 1.0) -> bool:
    if not values:
        _empty(ax, empty)
        return False
    ax.hist(values, bins=min(50, max(5, len(values) // 5)), alpha=alpha)
    return True


def write_plot(report: Report, path: Path, pyplot: Any) -> None:
    """Draw into the PNG at `path`: cumulative PnL overall and one panel per market (by exit time),
    the entry slippage histogram, and the net-edge distribution with its mean and interval."""
    panels = 3 + len(report.markets)
    fig, axes = pyplot.subplots(panels, 1, figsize=(10, 3.2 * panels), squeeze=False)
    axes = [row[0] for row in axes]
    try:
        _pnl_panel(axes[0], report.cumulative_pnl, "cumulative PnL, all markets (USD, net of fees)")
        for ax, stats, (_, series) in zip(
            axes[1:], report.markets, report.cumulative_pnl_by_market, strict=False
        ):
            mean = stats.net_edge_bps.mean
            edge = "" if mean is None else f", net edge mean {mean:.2f} bps"
            _pnl_panel(ax, series, f"{stats.market}: cumulative PnL ({stats.trades} trades{edge})")
        slip_ax, edge_ax = axes[-2], axes[-1]
        _histogram(slip_ax, report.slippages_bps, "no slippage data")
        slip_ax.set_title("entry slippage (bps, adverse positive)")
        slip_ax.set_xlabel("bps")
        slip_ax.set_ylabel("trades")
        title = "net edge per trade (bps, after fees and slippage)"
        if _histogram(
            edge_ax, report.net_edges_bps, "no trades yet", alpha=0.6
        ):  # the interval shows through
            overall = report.overall
            if overall.net_edge_bps.mean is not None:
                edge_ax.axvline(overall.net_edge_bps.mean, color="black", label="mean")
            interval = overall.net_edge_interval
            if interval is not None:
                edge_ax.axvspan(
                    interval.low,
                    interval.high,
                    color="orange",
                    alpha=0.3,
                    zorder=0,
                    label=f"{interval.confidence * 100:g}% interval of the mean",
                )
                title += f": mean in [{interval.low:.2f}, {interval.high:.2f}]"
            edge_ax.axvline(0.0, color="grey", linewidth=0.8)
            edge_ax.legend(loc="upper right")
        edge_ax.set_title(title)
        edge_ax.set_xlabel("bps")
        edge_ax.set_ylabel("trades")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        pyplot.close(fig)
