"""The micro-test report: exact figures from a real journal, the verdict, --since, read-only, the plot."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

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
    JournalRows,
    OrderRow,
    TradeRow,
    compute_report,
    format_report,
    load_rows,
    main,
    parse_since,
    percentile,
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
    assert [(c.name, c.shown, c.passed) for c in report.criteria] == [
        ("trades >= 100", "5", False),
        ("edge after fees and slippage > 0 bps", "20.00 bps", True),
        ("entry fill rate > 80%", "55.56%", False),
        ("flatten success > 95%", "60.00%", False),
    ]
    assert not report.go


def test_text_output(state_dir: Path) -> None:
    code, text = run(["--state-dir", str(state_dir)])
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == f"hip3-trio report — everything — {state_dir / JOURNAL_FILENAME}"
    assert "no trades yet" not in text
    start = lines.index(COIN)
    assert lines[start : start + 12] == [
        COIN,
        "  trades                      4",
        "  entry fill rate             50.00% (4 accepted, 2 rejected, 2 timed out; 3 excluded)",
        "  expected edge (mean)        10.00 bps",
        "  realised edge (mean)        6.50 bps",
        "  net edge after fees (mean)  37.50 bps",
        "  slippage median / p90       2.50 bps / 3.70 bps",
        "  time to flat median / p90   2.500 s / 7.900 s",
        "  pnl per trade (mean)        0.3750 USD",
        "  pnl cumulative              1.5000 USD",
        "  fees                        0.0400 USD",
        "  flatten success             66.67% (2 of 3 reduce-only filled)",
    ]
    assert "  slippage median / p90       n/a" in lines  # NVDA has no slippage figures
    assert "overall" in lines
    assert "hard stops: 1" in lines
    assert "  2025-01-01T00:00:00.010Z  cumulative loss" in lines
    verdict = lines[lines.index("verdict (leave the micro test?)") :]
    assert [line.split()[-1] for line in verdict[1:5]] == ["FAIL", "PASS", "FAIL", "FAIL"]
    assert "55.56%" in verdict[3]
    assert verdict[-1] == "NO-GO"


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


def verdict_of(
    trades: int, entry_filled: int, entry_failed: int, flat_filled: int, flat_failed: int
) -> list[bool]:
    rows = JournalRows(
        trades=tuple(trade_row(i) for i in range(trades)),
        orders=tuple(orders(False, entry_filled, entry_failed) + orders(True, flat_filled, flat_failed)),
    )
    return [c.passed for c in compute_report(rows).criteria]


def test_go_when_every_criterion_passes() -> None:
    rows = JournalRows(
        trades=tuple(trade_row(i) for i in range(100)),
        orders=tuple(orders(False, 81, 19) + orders(True, 96, 4)),
    )
    report = compute_report(rows)
    assert [c.passed for c in report.criteria] == [True, True, True, True]
    assert report.go
    assert format_report(report)[-1] == "GO"


def test_thresholds_are_strict_where_the_issue_says_greater_than() -> None:
    assert verdict_of(99, 81, 19, 96, 4) == [False, True, True, True]  # 99 < 100 trades
    assert verdict_of(100, 80, 20, 96, 4) == [True, True, False, True]  # exactly 80% is not > 80%
    assert verdict_of(100, 81, 19, 95, 5) == [True, True, True, False]  # exactly 95% is not > 95%


def test_zero_net_edge_fails() -> None:
    rows = JournalRows(trades=(trade_row(0, pnl=0.5), trade_row(1, pnl=-0.5)))
    net = compute_report(rows).criteria[1]
    assert net.value == pytest.approx(0.0)
    assert not net.passed


def test_undefined_figures_fail_their_criterion() -> None:
    report = compute_report(JournalRows())
    assert [(c.value, c.shown, c.passed) for c in report.criteria] == [
        (0.0, "0", False),
        (None, "n/a", False),
        (None, "n/a", False),
        (None, "n/a", False),
    ]
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
    assert (everything.overall.trades, everything.overall.entries.rate) == (3, pytest.approx(2 / 3))
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
    assert "  trades                      2" in text.splitlines()
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
    assert lines[-1] == "NO-GO"
    assert text.count("FAIL") == 4


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
    assert "  trades                      5" in text.splitlines()


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


def test_hard_stop_without_a_reason_shows_its_detail() -> None:
    rows = JournalRows(
        events=(EventRow(time_ms=T0, kind="hard_stop", detail={"limit": "loss", "usd": "20"}),)
    )
    lines = format_report(compute_report(rows))
    assert '  2025-01-01T00:00:00.000Z  {"limit": "loss", "usd": "20"}' in lines
