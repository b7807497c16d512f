"""The micro-test report: exact figures from a real journal, the verdict, --since, read-only, the plot."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from hip3_trio.journal import (
    JOURNAL_FILENAME,
    EventRecord,
    Journal,
    JournalUnavailable,
    OrderFinalState,
    OrderRecord,
    OrderUpdateRecord,
    Record,
    SignalRecord,
    TradeRecord,
    open_journal_read_only,
)
from hip3_trio.ops.report import (
    EventRow,
    FillRow,
    JournalRows,
    OrderRow,
    Report,
    TradeRow,
    compute_report,
    format_report,
    load_rows,
    main,
    parse_since,
    percentile,
    write_plot,
)

D = Decimal
COIN, NVDA = "xyz:COIN", "xyz:NVDA"
T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
DAY = 86_400_000


# --- building journals -------------------------------------------------------------------------------


def trade(
    market: str = COIN,
    *,
    entry_ms: int = T0,
    pnl: str = "0.5",
    entry_px: str = "100",
    size: str = "1",
    expected: str | None = "10",
    realised: str = "5",
    slippage: str | None = "1",
    ttf_ms: int = 1000,
    fees: str = "0.01",
) -> TradeRecord:
    return TradeRecord(
        market=market,
        side="buy",
        size=D(size),
        entry_time_ms=entry_ms,
        entry_px=D(entry_px),
        exit_time_ms=entry_ms + ttf_ms,
        exit_px=D(entry_px),
        expected_edge_bps=None if expected is None else D(expected),
        realised_edge_bps=D(realised),
        slippage_bps=None if slippage is None else D(slippage),
        time_to_flat_ms=ttf_ms,
        pnl=D(pnl),
        fees=D(fees),
    )


def order(
    cloid: str, market: str, final_state: OrderFinalState | None, *, reduce_only: bool = False, ms: int = T0
) -> list[Record]:
    """An order's intent and, unless `final_state` is None (still open), its outcome."""
    records: list[Record] = [
        OrderRecord(
            cloid=cloid,
            market=market,
            side="sell" if reduce_only else "buy",
            price=D("100"),
            size=D("1"),
            reduce_only=reduce_only,
            reason="time_stop" if reduce_only else "entry",
            submitted_ms=ms,
        )
    ]
    if final_state is not None:
        records.append(OrderUpdateRecord(cloid=cloid, market=market, time_ms=ms + 5, final_state=final_state))
    return records


def sample_records() -> list[Record]:
    """COIN: 4 trades, entries 4 accepted / 2 rejected / 2 timed out / 3 excluded, flattens 2 of 3.
    NVDA: 1 trade, 1 filled entry, flattens 1 of 2. Plus an update-only order, a signal, events."""
    records: list[Record] = [
        trade(pnl="0.5", realised="5", slippage="1", ttf_ms=1000),
        trade(pnl="-0.25", realised="6", slippage="2", ttf_ms=2000),
        trade(pnl="1.0", realised="7", slippage="3", ttf_ms=3000),
        trade(pnl="0.25", realised="8", slippage="4", ttf_ms=10_000, expected=None),
        trade(NVDA, pnl="-0.5", entry_px="50", size="2", realised="-10", slippage=None, ttf_ms=500),
        SignalRecord(
            time_ms=T0,
            market=COIN,
            side="buy",
            price=D("100"),
            size=D("1"),
            expected_edge_bps=D("10"),
            oracle_px=D("100.1"),
            best_px=D("100"),
            acted=True,
            cloid="e1",
        ),
        EventRecord(time_ms=T0 + 10, kind="hard_stop", detail={"reason": "cumulative loss"}),
        EventRecord(time_ms=T0 + 20, kind="hard_stop_cleared", detail={"cleared_by": "a@b"}),
        EventRecord(time_ms=T0 + 30, kind="connect"),
        # Known only from an update (reconciliation): no reason, no reduce_only — counted nowhere.
        OrderUpdateRecord(cloid="ghost", market=COIN, time_ms=T0, final_state="filled"),
    ]
    coin_entries: list[tuple[str, OrderFinalState | None]] = [
        ("e1", "filled"),
        ("e2", "filled"),
        ("e3", "filled"),
        ("e4", "partial"),
        ("e5", "rejected"),
        ("e6", "canceled"),
        ("e7", "timeout"),
        ("e8", "unknown"),
        ("e9", "not_sent"),
        ("e10", "dry_run"),
        ("e11", None),
    ]
    for cloid, state in coin_entries:
        records += order(cloid, COIN, state)
    coin_flattens: list[tuple[str, OrderFinalState | None]] = [
        ("x1", "filled"),
        ("x2", "filled"),
        ("x3", "partial"),
        ("x4", "dry_run"),
        ("x5", None),
    ]
    for cloid, state in coin_flattens:
        records += order(cloid, COIN, state, reduce_only=True)
    records += order("n1", NVDA, "filled")
    records += order("x6", NVDA, "filled", reduce_only=True)
    records += order("x7", NVDA, "not_sent", reduce_only=True)
    return records


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    with Journal.open(tmp_path) as journal:
        journal.write(sample_records())
    return tmp_path


def run(argv: list[str]) -> tuple[int, str]:
    lines: list[str] = []
    code = main(argv, out=lines.append)
    return code, "\n".join(lines)


# --- percentiles -------------------------------------------------------------------------------------


def test_percentile_interpolates_linearly_between_closest_ranks() -> None:
    values = [float(v) for v in range(10, 0, -1)]  # unsorted on purpose
    assert percentile(values, 0.5) == pytest.approx(5.5)
    assert percentile(values, 0.9) == pytest.approx(9.1)
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 10.0
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.9) == pytest.approx(3.7)


def test_percentile_refuses_no_values_and_a_bad_p() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match="p must be"):
        percentile([1.0], 1.5)


# --- figures from a real journal -------------------------------------------------------------------


def test_per_market_figures_are_exact(state_dir: Path) -> None:
    report = compute_report(load_rows(state_dir / JOURNAL_FILENAME))
    assert [m.market for m in report.markets] == [COIN, NVDA]
    coin, nvda = report.markets

    assert coin.trades == 4
    assert (coin.entries.accepted, coin.entries.rejected, coin.entries.timed_out) == (4, 2, 2)
    assert coin.entries.excluded == 3  # not_sent, dry_run, still open
    assert coin.entries.rate == 0.5
    assert (coin.flattens.filled, coin.flattens.resolved) == (2, 3)  # partial fails; dry_run, open excluded
    assert coin.expected_edge_bps.count == 3
    assert coin.expected_edge_bps.mean == pytest.approx(10.0)
    assert coin.realised_edge_bps.mean == pytest.approx(6.5)
    assert coin.net_edge_bps.mean == pytest.approx(37.5)  # 50, -25, 100, 25 bps of $100
    assert coin.slippage_bps.median == pytest.approx(2.5)
    assert coin.slippage_bps.p90 == pytest.approx(3.7)
    assert coin.time_to_flat_ms.median == pytest.approx(2500.0)
    assert coin.time_to_flat_ms.p90 == pytest.approx(7900.0)
    assert coin.pnl.mean == pytest.approx(0.375)
    assert coin.pnl_total == pytest.approx(1.5)
    assert coin.fees_total == pytest.approx(0.04)

    assert nvda.trades == 1
    assert nvda.entries.rate == 1.0
    assert (nvda.flattens.filled, nvda.flattens.resolved) == (1, 2)  # not_sent is a failed flatten
    assert nvda.net_edge_bps.mean == pytest.approx(-50.0)  # -0.5 on 2 x $50
    assert nvda.slippage_bps.count == 0
    assert nvda.slippage_bps.median is None


def test_overall_figures_and_series(state_dir: Path) -> None:
    report = compute_report(load_rows(state_dir / JOURNAL_FILENAME))
    overall = report.overall
    assert overall.trades == 5
    assert overall.entries.rate == pytest.approx(5 / 9)
    assert overall.flattens.rate == pytest.approx(3 / 5)
    assert overall.net_edge_bps.mean == pytest.approx(20.0)
    assert overall.slippage_bps.count == 4
    assert overall.time_to_flat_ms.median == pytest.approx(2000.0)
    assert overall.time_to_flat_ms.p90 == pytest.approx(7200.0)  # 500, 1000, 2000, 3000, 10000
    assert overall.pnl.mean == pytest.approx(0.2)
    assert overall.pnl_total == pytest.approx(1.0)
    assert overall.fees_total == pytest.approx(0.05)
    # Cumulative PnL in exit order: NVDA exits first (500 ms), then COIN's 1000, 2000, 3000, 10000 ms.
    assert [t for t, _ in report.cumulative_pnl] == [T0 + 500, T0 + 1000, T0 + 2000, T0 + 3000, T0 + 10_000]
    assert [v for _, v in report.cumulative_pnl] == pytest.approx([-0.5, 0.0, -0.25, 0.75, 1.0])
    assert sorted(report.slippages_bps) == [1.0, 2.0, 3.0, 4.0]
    assert [(e.time_ms, e.detail["reason"]) for e in report.hard_stops] == [(T0 + 10, "cumulative loss")]


def test_verdict_lists_each_criterion(state_dir: Path) -> None:
    report = compute_report(load_rows(state_dir / JOURNAL_FILENAME))
    assert [(c.name, c.shown, c.threshold_shown, c.from_trades, c.passed) for c in report.criteria] == [
        ("trades", "5", ">= 100", 100, False),
        ("net edge mean", "20.00 bps", ">= 0 bps", 10, True),
        ("net edge 95% upper bound", "65.00 bps", ">= 0 bps", 50, True),
        ("net edge 95% lower bound", "-25.00 bps", "> 0 bps", 100, False),
        ("entry fill rate", "55.56%", "> 80%", 100, False),
        ("flatten success", "60.00%", "> 95%", 100, False),
        ("held past the flatten deadline", "0", "= 0 (> 60 s)", 100, True),
        ("escalated unknown orders", "0", "= 0", 100, True),
        ("journal records lost", "0", "= 0", 100, True),
        ("hard stops", "1", "= 0", 100, False),
    ]
    assert report.verdict.decision == "INSUFFICIENT-DATA"
    assert not report.go


def test_text_output(state_dir: Path) -> None:
    code, text = run(["--state-dir", str(state_dir)])
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == f"hip3-trio report — everything — {state_dir / JOURNAL_FILENAME}"
    assert "no trades yet" not in text
    start = lines.index(COIN)
    assert lines[start : start + 14] == [
        COIN,
        "  trades                  4 (2025-01-01T00:00:00.000Z to 2025-01-01T00:00:10.000Z)",
        "  pnl                     total 1.5000 USD, per trade 0.3750 USD",
        "  fees                    0.0400 USD on the trades; 0.0000 USD on all 0 fills",
        "  net edge after fees     mean 37.50, median 37.50, sd 52.04 bps",
        "  net edge interval       [-6.25, 81.25] bps (95% bootstrap of the mean, 5000 resamples, seed 1)",
        "  expected edge (mean)    10.00 bps",
        "  realised edge (mean)    6.50 bps",
        "  slippage                mean 2.50, median 2.50, p90 3.70 bps",
        "  time to flat            median 2.500 s, p90 7.900 s, max 10.000 s",
        "  exit reasons            (none) 4",
        "  entry fill rate         50.00% (4 accepted, 2 rejected, 2 timed out; 3 excluded)",
        "  flatten success         66.67% (2 of 3 reduce-only filled)",
        "",
    ]
    assert "  slippage                n/a" in lines  # NVDA has no slippage figures
    assert "  net edge interval       n/a (under 2 trades)" in lines  # nor an interval
    assert "overall" in lines
    assert "hard stops: 1" in lines
    assert "  2025-01-01T00:00:00.010Z  cumulative loss" in lines
    verdict = lines[lines.index("verdict (leave the micro test?)") :]
    assert verdict[1].split() == ["criterion", "from", "n", "value", "threshold"]
    statuses = [line.split()[-1] for line in verdict if line.split()[-1] in ("PASS", "FAIL")]
    assert statuses == ["FAIL", "PASS", "PASS", "FAIL", "FAIL", "FAIL", "PASS", "PASS", "PASS", "FAIL"]
    assert "  entry fill rate                    100        55.56%  > 80%           FAIL" in verdict
    assert "      5 of 9 resolved entries" in verdict  # a failing criterion's evidence
    assert verdict[-1] == "verdict: INSUFFICIENT-DATA — 5 trades; the first checkpoint is at 10"


def test_mean_slippage_shows_what_the_median_hides() -> None:
    """Issue 16: one trade with 38 bps of price improvement made the mean -4.2 bps while the median
    (all the report showed) was 0.00."""
    slips = [-38.0] + [0.0] * 8
    rows = JournalRows(trades=tuple(attrs.evolve(trade_row(i), slippage_bps=v) for i, v in enumerate(slips)))
    stats = compute_report(rows).overall
    assert stats.slippage_bps.mean == pytest.approx(-4.222, abs=1e-3)
    assert stats.slippage_bps.median == 0.0
    assert "  slippage                mean -4.22, median 0.00, p90 0.00 bps" in format_report(
        compute_report(rows)
    )


def test_spread_extremes_exit_reasons_time_range_and_fill_fees() -> None:
    def closed(i: int, pnl: float, reason: str, ttf_ms: int) -> TradeRow:
        row = trade_row(i, pnl=pnl)
        return attrs.evolve(
            row, exit_reason=reason, time_to_flat_ms=ttf_ms, exit_time_ms=row.entry_time_ms + ttf_ms
        )

    trades = (
        closed(0, 0.1, "time_stop", 30_000),
        closed(5, 0.3, "time_stop", 31_000),
        closed(9, -0.1, "flatten_all", 45_000),
    )
    fills = (
        FillRow(tid=1, time_ms=T0, market=COIN, cloid="e1", fee=0.02),
        FillRow(tid=2, time_ms=T0, market=COIN),
    )
    stats = compute_report(JournalRows(trades=trades, fills=fills)).overall
    assert stats.net_edge_bps.mean == pytest.approx(10.0)
    assert stats.net_edge_bps.sd == pytest.approx(20.0)  # sample sd of 10, 30, -10 bps
    assert stats.net_edge_bps.max == pytest.approx(30.0)
    assert stats.time_to_flat_ms.max == 45_000
    assert stats.exit_reasons == (("time_stop", 2), ("flatten_all", 1))
    assert (stats.first_trade_ms, stats.last_trade_ms) == (T0, T0 + 9 + 45_000)
    assert stats.fills == 2 and stats.fills_fees_total == pytest.approx(0.02)
    one = compute_report(JournalRows(trades=trades[:1])).overall
    assert one.net_edge_bps.sd is None and one.net_edge_interval is None


def test_the_interval_is_the_same_on_every_run(state_dir: Path) -> None:
    first = compute_report(load_rows(state_dir / JOURNAL_FILENAME)).overall.net_edge_interval
    again = compute_report(load_rows(state_dir / JOURNAL_FILENAME)).overall.net_edge_interval
    assert first is not None and first == again


def test_json_has_every_figure_and_the_verdict(state_dir: Path) -> None:
    code, text = run(["--state-dir", str(state_dir), "--json"])
    assert code == 0
    doc = json.loads(text)  # one document, nothing else
    assert list(doc) == ["source", "since", "markets", "overall", "hard_stops", "verdict", "plot"]
    assert doc["source"] == str(state_dir / JOURNAL_FILENAME)
    assert (doc["since"], doc["plot"]) == (None, None)
    assert [m["market"] for m in doc["markets"]] == [COIN, NVDA]
    coin = doc["markets"][0]
    assert list(coin) == [
        "market",
        "trades",
        "first_trade",
        "last_trade",
        "pnl_usd",
        "fees_usd",
        "net_edge_bps",
        "expected_edge_bps",
        "realised_edge_bps",
        "slippage_bps",
        "time_to_flat_ms",
        "exit_reasons",
        "fill_rate",
        "flatten_success",
        "reconstructed",
    ]
    assert coin["first_trade"] == {"ms": T0, "utc": "2025-01-01T00:00:00.000Z"}
    assert coin["pnl_usd"]["total"] == pytest.approx(1.5)
    assert coin["fees_usd"] == {"trades": pytest.approx(0.04), "fills": 0.0, "fill_count": 0}
    assert set(coin["net_edge_bps"]) == {"count", "mean", "median", "sd", "p90", "max", "interval"}
    assert coin["net_edge_bps"]["interval"] == {
        "low": -6.25,
        "high": 81.25,
        "confidence": 0.95,
        "resamples": 5000,
        "seed": 1,
    }
    assert set(coin["slippage_bps"]) == {"count", "mean", "median", "sd", "p90", "max"}
    assert coin["exit_reasons"] == {"(none)": 4}
    assert coin["fill_rate"] == {
        "accepted": 4,
        "rejected": 2,
        "timed_out": 2,
        "excluded": 3,
        "resolved": 8,
        "rate": 0.5,
    }
    assert coin["flatten_success"] == {"filled": 2, "resolved": 3, "rate": pytest.approx(2 / 3)}
    assert doc["overall"]["market"] == "overall" and doc["overall"]["trades"] == 5
    assert doc["hard_stops"] == [
        {"time": {"ms": T0 + 10, "utc": "2025-01-01T00:00:00.010Z"}, "detail": {"reason": "cumulative loss"}}
    ]
    verdict = doc["verdict"]
    assert list(verdict) == ["decision", "reason", "trades", "criteria", "thresholds", "problems"]
    assert verdict["decision"] == "INSUFFICIENT-DATA"
    assert verdict["criteria"][4] == {
        "name": "entry fill rate",
        "value": pytest.approx(5 / 9),
        "op": ">",
        "threshold": 0.8,
        "passed": False,
        "shown": "55.56%",
        "threshold_shown": "> 80%",
        "from_trades": 100,
        "note": "5 of 9 resolved entries",
    }
    assert verdict["thresholds"]["go_trades"] == 100
    assert verdict["problems"]["hard_stops"] == ["2025-01-01T00:00:00.010Z cumulative loss"]


def test_json_of_an_empty_journal_has_nulls_not_errors(tmp_path: Path) -> None:
    Journal.open(tmp_path).close()
    code, text = run(["--state-dir", str(tmp_path), "--json", "--since", "2025-01-01"])
    assert code == 0
    doc = json.loads(text)
    assert doc["since"] == {"ms": T0, "utc": "2025-01-01T00:00:00.000Z"}
    assert doc["markets"] == []
    assert doc["overall"]["net_edge_bps"]["mean"] is None
    assert doc["overall"]["net_edge_bps"]["interval"] is None
    assert doc["overall"]["fill_rate"]["rate"] is None


# --- the verdict's thresholds (pure, no SQLite) -----------------------------------------------------


def trade_row(i: int, pnl: float = 0.01) -> TradeRow:
    return TradeRow(
        market=COIN,
        entry_time_ms=T0 + i,
        exit_time_ms=T0 + i + 1000,
        size=1.0,
        entry_px=100.0,
        expected_edge_bps=10.0,
        realised_edge_bps=5.0,
        slippage_bps=1.0,
        time_to_flat_ms=1000,
        pnl=pnl,
        fees=0.01,
    )


def orders(reduce_only: bool, filled: int, failed: int) -> list[OrderRow]:
    def row(state: str) -> OrderRow:
        return OrderRow(
            market=COIN,
            reason="exit" if reduce_only else "entry",
            reduce_only=reduce_only,
            final_state=state,
            time_ms=T0,
        )

    return [row("filled")] * filled + [row("rejected")] * failed


def passed(report: Report) -> dict[str, bool]:
    return {c.name: c.passed for c in report.criteria}


def test_go_when_every_criterion_passes() -> None:
    rows = JournalRows(
        trades=tuple(trade_row(i) for i in range(100)),
        orders=tuple(orders(False, 81, 19) + orders(True, 96, 4)),
    )
    report = compute_report(rows)
    assert all(passed(report).values())
    assert report.go
    assert format_report(report)[-1] == "verdict: GO — every criterion passes"


def test_thresholds_are_strict_where_the_issue_says_greater_than() -> None:
    def failing(
        trades: int, entry_filled: int, entry_failed: int, flat_filled: int, flat_failed: int
    ) -> list[str]:
        rows = JournalRows(
            trades=tuple(trade_row(i) for i in range(trades)),
            orders=tuple(orders(False, entry_filled, entry_failed) + orders(True, flat_filled, flat_failed)),
        )
        report = compute_report(rows)
        assert report.verdict.decision == "NO-GO"
        return [name for name, ok in passed(report).items() if not ok]

    assert failing(99, 81, 19, 96, 4) == ["trades"]  # 99 < 100 trades
    assert failing(100, 80, 20, 96, 4) == ["entry fill rate"]  # exactly 80% is not > 80%
    assert failing(100, 81, 19, 95, 5) == ["flatten success"]  # exactly 95% is not > 95%


def test_zero_net_edge_is_not_a_go() -> None:
    rows = JournalRows(trades=(trade_row(0, pnl=0.5), trade_row(1, pnl=-0.5)))
    report = compute_report(rows)
    mean, lower = report.criteria[1], report.criteria[3]
    assert mean.value == pytest.approx(0.0)
    assert mean.passed  # not negative: no parameter review
    assert lower.value is not None and lower.value < 0
    assert not lower.passed


def test_undefined_figures_fail_their_criterion() -> None:
    report = compute_report(JournalRows())
    assert [(c.value, c.shown, c.passed) for c in report.criteria] == [
        (0.0, "0", False),
        (None, "n/a", False),
        (None, "n/a", False),
        (None, "n/a", False),
        (None, "n/a", False),
        (None, "n/a", False),
        (0.0, "0", True),
        (0.0, "0", True),
        (0.0, "0", True),
        (0.0, "0", True),
    ]
    assert report.verdict.decision == "INSUFFICIENT-DATA"
    assert not report.go


# --- --since -----------------------------------------------------------------------------------------


@pytest.fixture
def two_days(tmp_path: Path) -> Path:
    """Day 1: a losing trade, a rejected entry, a hard stop. Day 2: two winning trades, filled entries."""
    records: list[Record] = [
        trade(entry_ms=T0, pnl="-1"),
        trade(entry_ms=T0 + DAY, pnl="0.5"),
        trade(entry_ms=T0 + DAY + 60_000, pnl="0.25"),
        EventRecord(time_ms=T0 + 5, kind="hard_stop", detail={"reason": "loss"}),
    ]
    records += order("a", COIN, "rejected", ms=T0)
    records += order("b", COIN, "filled", ms=T0 + DAY)
    records += order("c", COIN, "filled", ms=T0 + DAY + 60_000)
    with Journal.open(tmp_path) as journal:
        journal.write(records)
    return tmp_path


def test_since_restricts_trades_orders_and_events(two_days: Path) -> None:
    rows = load_rows(two_days / JOURNAL_FILENAME)
    everything = compute_report(rows)
    assert everything.overall.trades == 3 and everything.overall.entries.rate == pytest.approx(2 / 3)
    assert everything.overall.pnl_total == pytest.approx(-0.25)
    assert len(everything.hard_stops) == 1

    day2 = compute_report(rows, since_ms=T0 + DAY)
    assert day2.overall.trades == 2
    assert day2.overall.entries.rate == 1.0
    assert day2.overall.pnl_total == pytest.approx(0.75)
    assert day2.hard_stops == ()


@pytest.mark.parametrize(
    "since", ["2025-01-02", "2025-01-02T00:00:00Z", "2025-01-02T01:00:00+01:00", str(T0 + DAY)]
)
def test_since_on_the_command_line(two_days: Path, since: str) -> None:
    code, text = run(["--state-dir", str(two_days), "--since", since])
    assert code == 0
    assert text.splitlines()[0].startswith("hip3-trio report — since 2025-01-02T00:00:00.000Z")
    assert "  trades                  2 (2025-01-02T00:00:00.000Z to 2025-01-02T00:01:01.000Z)" in text
    assert "hard stops: 0" in text


def test_parse_since() -> None:
    assert parse_since("2025-01-01") == T0
    assert parse_since("2025-01-01T00:00:00.250") == T0 + 250  # naive is UTC
    assert parse_since(" 1735689600000 ") == T0


def test_a_bad_since_is_a_usage_error(two_days: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(["--state-dir", str(two_days), "--since", "yesterday"])
    assert code == 2
    assert "not an ISO date/time or epoch milliseconds" in capsys.readouterr().err


# --- empty, missing, concurrent ------------------------------------------------------------------------


def test_an_empty_journal_reports_no_trades_and_no_go(tmp_path: Path) -> None:
    Journal.open(tmp_path).close()
    code, text = run(["--state-dir", str(tmp_path)])
    assert code == 0
    lines = text.splitlines()
    assert "no trades yet" in lines
    assert "hard stops: 0" in lines
    assert lines[-1] == "verdict: INSUFFICIENT-DATA — 0 trades; the first checkpoint is at 10"
    assert text.count("FAIL") == 6


def test_a_missing_journal_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "nowhere"
    code, text = run(["--state-dir", str(state)])
    assert code == 2
    assert text.startswith(f"error: no journal at {state / JOURNAL_FILENAME}")
    assert not state.exists()

    Path(tmp_path / "empty").mkdir()
    code, _ = run(["--state-dir", str(tmp_path / "empty")])
    assert code == 2
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_file_that_is_not_a_journal_is_an_error(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / JOURNAL_FILENAME).close()  # an empty SQLite file, schema version 0
    code, text = run(["--state-dir", str(tmp_path)])
    assert code == 2
    assert "not a journal this version can read (schema version 0" in text
    (tmp_path / JOURNAL_FILENAME).write_text("not sqlite at all")
    with pytest.raises(JournalUnavailable):
        load_rows(tmp_path / JOURNAL_FILENAME)


def test_reads_while_the_engine_writes_and_never_writes(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as engine:
        engine.write([trade(entry_ms=T0)])
        assert compute_report(load_rows(tmp_path / JOURNAL_FILENAME)).overall.trades == 1
        engine.write([trade(entry_ms=T0 + 1)])  # the writer is not blocked by the reader
        assert compute_report(load_rows(tmp_path / JOURNAL_FILENAME)).overall.trades == 2
        conn = open_journal_read_only(tmp_path / JOURNAL_FILENAME)
        try:
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                conn.execute("DELETE FROM trades")
        finally:
            conn.close()
        assert engine.query("SELECT COUNT(*) FROM trades") == [(2,)]


def test_state_dir_comes_from_the_environment(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIP3_STATE_DIR", str(state_dir))
    code, text = run([])
    assert code == 0
    assert "  trades                  5 (2025-01-01T00:00:00.000Z to 2025-01-01T00:00:10.000Z)" in text


def test_help_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "python -m hip3_trio report" in capsys.readouterr().out


# --- the plot ----------------------------------------------------------------------------------------


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make `import matplotlib` fail as if it were not installed."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    yield


@pytest.mark.usefixtures("no_matplotlib")
def test_plot_without_matplotlib_says_how_to_install_it(state_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    code, text = run(["--state-dir", str(state_dir), "--plot", str(png)])
    assert code == 2
    assert text == ("error: --plot needs matplotlib, which is not installed: pip install 'hip3-trio[plot]'")
    assert not png.exists()


@pytest.mark.parametrize("empty", [False, True])
def test_plot_writes_a_png(tmp_path: Path, empty: bool) -> None:
    pytest.importorskip("matplotlib")
    state = tmp_path / "state"
    with Journal.open(state) as journal:
        journal.write([] if empty else sample_records())
    png = tmp_path / "report.png"
    code, text = run(["--state-dir", str(state), "--plot", str(png)])
    assert code == 0
    assert text.splitlines()[-1] == f"plot written to {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_with_json_prints_only_the_document(state_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "report.png"
    code, text = run(["--state-dir", str(state_dir), "--plot", str(png), "--json"])
    assert code == 0
    assert json.loads(text)["plot"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plot_has_a_panel_per_market_and_the_net_edge_interval(state_dir: Path, tmp_path: Path) -> None:
    pyplot = pytest.importorskip("matplotlib.pyplot")
    report = compute_report(load_rows(state_dir / JOURNAL_FILENAME))
    figures: list[object] = []
    real_subplots = pyplot.subplots

    def subplots(*args: object, **kwargs: object) -> object:
        fig, axes = real_subplots(*args, **kwargs)
        figures.append(fig)
        return fig, axes

    class Recording:
        def __getattr__(self, name: str) -> object:
            return subplots if name == "subplots" else getattr(pyplot, name)

    write_plot(report, tmp_path / "p.png", Recording())
    (fig,) = figures
    titles = [ax.get_title() for ax in fig.axes]  # type: ignore[attr-defined]
    assert titles[0] == "cumulative PnL, all markets (USD, net of fees)"
    assert titles[1] == f"{COIN}: cumulative PnL (4 trades, net edge mean 37.50 bps)"
    assert titles[2] == f"{NVDA}: cumulative PnL (1 trades, net edge mean -50.00 bps)"
    assert titles[3] == "entry slippage (bps, adverse positive)"
    assert titles[4] == "net edge per trade (bps, after fees and slippage): mean in [-25.00, 65.00]"
    legend = fig.axes[4].get_legend()  # type: ignore[attr-defined]
    assert [t.get_text() for t in legend.get_texts()] == ["mean", "95% interval of the mean"]


def test_hard_stop_without_a_reason_shows_its_detail() -> None:
    rows = JournalRows(
        events=(EventRow(time_ms=T0, kind="hard_stop", detail={"limit": "loss", "usd": "20"}),)
    )
    lines = format_report(compute_report(rows))
    assert '  2025-01-01T00:00:00.000Z  {"limit": "loss", "usd": "20"}' in lines


def test_the_verdict_takes_its_thresholds_from_the_config_file(state_dir: Path, tmp_path: Path) -> None:
    """`report --config FILE` uses the file's `[verdict]` (issue 16: thresholds live in config)."""
    config = tmp_path / "c.toml"
    verdict = "[verdict]\ngo_trades = 500\nmin_fill_rate = 0.5\n"
    config.write_text(f'[paths]\nstate_dir = "{state_dir}"\n{verdict}')
    _, text = run(["--config", str(config), "--json"])
    thresholds = json.loads(text)["verdict"]["thresholds"]
    assert (thresholds["go_trades"], thresholds["min_fill_rate"]) == (500, 0.5)
    _, default_text = run(["--state-dir", str(state_dir), "--json"])
    assert json.loads(default_text)["verdict"]["thresholds"]["go_trades"] == 100
