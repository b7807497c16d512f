"""Journal: schema, WAL, idempotent fills and order upserts, atomic batches, the task, drop counting."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
import trio

from hip3_trio.journal import (
    _MIGRATIONS,
    JOURNAL_FILENAME,
    SCHEMA_VERSION,
    EventRecord,
    FillRecord,
    Journal,
    JournalError,
    JournalSink,
    JournalStats,
    OrderRecord,
    OrderUpdateRecord,
    Record,
    SignalRecord,
    TradeRecord,
    run_journal,
)
from hip3_trio.journal import _SCHEMA as SCHEMA_V1
from hip3_trio.ops.report import load_rows

D = Decimal
TABLES = ("signals", "orders", "fills", "trades", "events")
# Makes inserting an event of kind 'boom' fail inside SQLite, mid-transaction.
BOOM_TRIGGER = """
CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.kind = 'boom'
BEGIN SELECT RAISE(ABORT, 'boom'); END
"""


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path) as j:
        yield j


def count(journal: Journal, table: str) -> int:
    return int(journal.query(f"SELECT COUNT(*) FROM {table}")[0][0])


def counts(journal: Journal) -> dict[str, int]:
    return {table: count(journal, table) for table in TABLES}


def event(i: int, kind: str = "tick") -> EventRecord:
    return EventRecord(time_ms=i, kind=kind, detail={"i": i})


def signal(*, acted: bool = True, market: str = "xyz:COIN") -> SignalRecord:
    return SignalRecord(
        time_ms=1_000,
        market=market,
        side="buy",
        price=D("249.5"),
        size=D("0.1"),
        expected_edge_bps=D("12.5"),
        oracle_px=D("250.12"),
        best_px=D("249.5"),
        acted=acted,
        refused_reason=None if acted else "max_position_per_market",
        cloid="0xc1" if acted else None,
        cost_bps=D("25"),
        fee_bps=D("9"),
    )


def order(cloid: str = "0xc1", *, price: str = "249.5", reduce_only: bool = False) -> OrderRecord:
    return OrderRecord(
        cloid=cloid,
        market="xyz:COIN",
        side="buy",
        price=D(price),
        size=D("0.1"),
        reduce_only=reduce_only,
        reason="time_stop" if reduce_only else "entry",
        submitted_ms=1_001,
    )


def fill(tid: int = 7, cloid: str = "0xc1") -> FillRecord:
    return FillRecord(
        tid=tid,
        time_ms=1_010,
        market="xyz:COIN",
        side="buy",
        px=D("249.5"),
        sz=D("0.1"),
        fee=D("0.011228"),
        cloid=cloid,
    )


def trade(market: str = "xyz:COIN", pnl: str = "0.25") -> TradeRecord:
    return TradeRecord(
        market=market,
        side="buy",
        size=D("0.1"),
        entry_time_ms=1_010,
        entry_px=D("249.5"),
        exit_time_ms=31_020,
        exit_px=D("252"),
        expected_edge_bps=D("12.5"),
        realised_edge_bps=D("100.2"),
        slippage_bps=D("0"),
        time_to_flat_ms=30_010,
        pnl=D(pnl),
        fees=D("0.0225"),
        entry_cloid="0xc1",
        exit_cloid="0xc2",
        exit_reason="time_stop",
    )


# --- schema and pragmas -----------------------------------------------------------------------------


def test_tables_are_created_with_the_report_columns(journal: Journal) -> None:
    names = {row[0] for row in journal.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(TABLES) <= names
    columns = {row[1] for row in journal.query("PRAGMA table_info(trades)")}
    assert {
        "market",
        "entry_time_ms",
        "exit_time_ms",
        "entry_px",
        "exit_px",
        "expected_edge_bps",
        "realised_edge_bps",
        "slippage_bps",
        "time_to_flat_ms",
        "pnl",
        "fees",
    } <= columns
    order_columns = {row[1] for row in journal.query("PRAGMA table_info(orders)")}
    assert {
        "cloid",
        "reduce_only",
        "reason",
        "submitted_ms",
        "acked_ms",
        "final_state",
        "filled_sz",
        "avg_px",
    } <= (order_columns)
    assert journal.query("PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert journal.path.name == JOURNAL_FILENAME


def test_wal_mode_and_full_sync(journal: Journal) -> None:
    assert journal.query("PRAGMA journal_mode") == [("wal",)]
    assert journal.query("PRAGMA synchronous") == [(2,)]  # FULL
    journal.write([event(1)])
    assert journal.path.with_name(JOURNAL_FILENAME + "-wal").exists()


def test_reopening_an_existing_journal_keeps_its_rows(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as first:
        first.write([event(1), fill(1), order()])
    with Journal.open(tmp_path) as second:
        assert counts(second) == {"signals": 0, "orders": 1, "fills": 1, "trades": 0, "events": 1}
        second.write([event(2), fill(1), fill(2)])
        assert counts(second)["events"] == 2 and counts(second)["fills"] == 2


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as j:
        j.query("PRAGMA user_version = 99")
    with pytest.raises(JournalError, match="schema version 99"):
        Journal.open(tmp_path)


def corrupt_a_middle_page(path: Path, offset: int, data: bytes) -> None:
    """Overwrite `data` at `offset` within the page in the middle of the (closed) SQLite file."""
    with sqlite3.connect(path) as conn:
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    conn.close()
    pages = path.stat().st_size // page_size
    assert pages > 10, "the journal should span many pages"
    with path.open("r+b") as f:
        f.seek(pages // 2 * page_size + offset)
        f.write(data)


@pytest.mark.parametrize(
    ("offset", "data"),
    [
        (0, b"\xff" * 16),  # the page header: SQLite raises "database disk image is malformed"
        (12, b"\x00\x01"),  # a cell pointer: quick_check reports the page, over several lines
    ],
    ids=["page header", "cell pointer"],
)
def test_a_corrupted_page_refuses_to_open_with_one_line(tmp_path: Path, offset: int, data: bytes) -> None:
    with Journal.open(tmp_path) as j:
        j.write([EventRecord(time_ms=i, kind="tick", detail={"pad": "x" * 200}) for i in range(2000)])
    path = tmp_path / JOURNAL_FILENAME
    corrupt_a_middle_page(path, offset, data)
    before = path.read_bytes()
    with pytest.raises(JournalError) as raised:
        Journal.open(tmp_path)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message and "damaged" in message
    assert path.read_bytes() == before  # the evidence is left as it was


def test_a_file_that_is_not_sqlite_refuses_to_open_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILENAME
    path.write_text("these are not the trade records you are looking for\n" * 200)
    with pytest.raises(JournalError, match="not a database") as raised:
        Journal.open(tmp_path)
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)
    assert path.read_text().startswith("these are not")


# --- rows -------------------------------------------------------------------------------------------


def test_all_record_types_round_trip_as_plain_sql_values(journal: Journal) -> None:
    journal.write([signal(), signal(acted=False), order(), fill(), trade(), event(5, "connect")])
    assert journal.query(
        "SELECT market, side, price, oracle_px, acted, refused_reason, cloid, cost_bps, fee_bps FROM signals"
    ) == [
        ("xyz:COIN", "buy", 249.5, 250.12, 1, None, "0xc1", 25.0, 9.0),
        ("xyz:COIN", "buy", 249.5, 250.12, 0, "max_position_per_market", None, 25.0, 9.0),
    ]
    assert journal.query("SELECT tid, px, sz, fee, crossed, cloid FROM fills") == [
        (7, 249.5, 0.1, 0.011228, 1, "0xc1")
    ]
    assert journal.query("SELECT pnl, fees, time_to_flat_ms, exit_reason FROM trades") == [
        (0.25, 0.0225, 30_010, "time_stop")
    ]
    assert journal.query("SELECT kind, detail FROM events") == [("connect", '{"i":5}')]


def test_fill_tid_is_idempotent(journal: Journal) -> None:
    journal.write([fill(7), fill(7)])
    journal.write([fill(7)])
    assert count(journal, "fills") == 1
    journal.write([fill(8)])
    assert journal.query("SELECT tid FROM fills ORDER BY tid") == [(7,), (8,)]


def test_a_duplicate_tid_with_different_content_is_reported_and_counted(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    journal.write([fill(7), fill(7)])
    journal.write([fill(7)])  # a replayed fill: normal, silent
    assert journal.tid_conflicts == 0 and count(journal, "events") == 0
    other = attrs.evolve(fill(7), px=D("251"), cloid="0xc9")  # another trade under the same tid
    with caplog.at_level(logging.WARNING, logger="hip3_trio.journal"):
        journal.write([other, other])
    assert journal.query("SELECT px, cloid FROM fills") == [(249.5, "0xc1")]  # the first is kept
    detail = '{"differs":{"cloid":["0xc1","0xc9"],"px":[249.5,251.0]},"tid":7}'
    assert journal.query("SELECT time_ms, kind, detail FROM events") == [(1_010, "duplicate_tid", detail)] * 2
    assert journal.tid_conflicts == 2
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert "tid 7" in caplog.records[0].getMessage()


async def test_run_journal_counts_duplicate_tids_with_different_content(journal: Journal) -> None:
    sink, receive = JournalSink.open(capacity=100)
    for record in (fill(7), fill(7), attrs.evolve(fill(7), sz=D("0.2")), fill(8)):
        sink.record(record)
    sink.close()
    stats = await run_journal(receive, journal)
    assert (stats.written, stats.failed, stats.tid_conflicts) == (4, 0, 1)


def test_order_upsert_ack_then_final_state(journal: Journal) -> None:
    journal.write([order()])
    journal.write([OrderUpdateRecord(cloid="0xc1", market="xyz:COIN", time_ms=1_005, acked_ms=1_005, oid=42)])
    final = OrderUpdateRecord(
        cloid="0xc1",
        market="xyz:COIN",
        time_ms=1_010,
        final_state="filled",
        filled_sz=D("0.1"),
        avg_px=D("249.5"),
    )
    journal.write([final])
    select = (
        "SELECT price, reason, submitted_ms, acked_ms, final_state, filled_sz, avg_px, oid, updated_ms"
        " FROM orders"
    )
    expected = [(249.5, "entry", 1_001, 1_005, "filled", 0.1, 249.5, 42, 1_010)]
    assert journal.query(select) == expected
    # Re-applying the same records (or a late duplicate submission) changes nothing.
    journal.write([final, order(price="300")])
    assert journal.query(select) == expected


def test_order_update_before_the_insert_creates_the_row_and_the_intent_fills_in(journal: Journal) -> None:
    journal.write([OrderUpdateRecord(cloid="0xc9", market="xyz:COIN", time_ms=5, final_state="unknown")])
    assert journal.query("SELECT market, side, final_state, filled_sz FROM orders") == [
        ("xyz:COIN", None, "unknown", 0)
    ]
    journal.write(
        [
            order("0xc9", reduce_only=True),
            OrderUpdateRecord(
                cloid="0xc9", market="xyz:COIN", time_ms=9, final_state="filled", filled_sz=D("0.1")
            ),
        ]
    )
    assert journal.query(
        "SELECT side, reduce_only, reason, final_state, filled_sz, updated_ms FROM orders"
    ) == [("buy", 1, "time_stop", "filled", 0.1, 9)]


def test_report_metrics_are_plain_sql(journal: Journal) -> None:
    """Issue 7's numbers come straight out of SQL (sanity-check the queries in the module docstring)."""
    journal.write(
        [
            order("0xa"),
            order("0xb"),
            order("0xc"),
            order("0xd", reduce_only=True),
            OrderUpdateRecord(
                cloid="0xa", market="xyz:COIN", time_ms=2, final_state="filled", filled_sz=D("0.1")
            ),
            OrderUpdateRecord(
                cloid="0xb", market="xyz:COIN", time_ms=2, final_state="partial", filled_sz=D("0.05")
            ),
            OrderUpdateRecord(
                cloid="0xc", market="xyz:COIN", time_ms=2, final_state="rejected", error="no match"
            ),
            OrderUpdateRecord(
                cloid="0xd", market="xyz:COIN", time_ms=3, final_state="filled", filled_sz=D("0.1")
            ),
            trade(pnl="0.25"),
            trade(pnl="-0.05"),
        ]
    )
    fill_rate = journal.query(
        "SELECT market, AVG(final_state IN ('filled', 'partial')) FROM orders"
        " WHERE reason = 'entry' AND final_state IS NOT NULL GROUP BY market"
    )
    assert fill_rate == [("xyz:COIN", pytest.approx(2 / 3))]
    ((trades, pnl, net_edge_bps),) = journal.query(
        "SELECT COUNT(*), SUM(pnl), AVG(pnl / (entry_px * size) * 1e4) FROM trades WHERE pnl > 0 OR pnl <= 0"
    )
    assert trades == 2 and pnl == pytest.approx(0.20)
    assert net_edge_bps == pytest.approx(0.10 / 24.95 * 1e4)
    assert journal.query("SELECT COUNT(*) FROM trades WHERE pnl < 0") == [(1,)]  # REAL compares numerically
    flatten = journal.query("SELECT AVG(final_state = 'filled') FROM orders WHERE reduce_only = 1")
    assert flatten == [(1.0,)]


# --- atomic batches ---------------------------------------------------------------------------------


def test_a_failing_statement_mid_batch_leaves_no_rows(journal: Journal) -> None:
    journal.query(BOOM_TRIGGER)
    batch: list[Record] = [signal(), order(), fill(), trade(), event(1), event(2, "boom"), event(3)]
    with pytest.raises(sqlite3.IntegrityError, match="boom"):
        journal.write(batch)
    assert counts(journal) == dict.fromkeys(TABLES, 0)
    # The connection is usable afterwards (the transaction was rolled back, not left open).
    journal.write([event(4)])
    assert counts(journal)["events"] == 1


def test_a_non_record_mid_batch_leaves_no_rows(journal: Journal) -> None:
    with pytest.raises(TypeError, match="not a journal record"):
        journal.write([event(1), fill(), object(), event(2)])  # type: ignore[list-item]
    assert counts(journal) == dict.fromkeys(TABLES, 0)


CRASH_SCRIPT = """
import os, sys
from hip3_trio import journal as jm

j = jm.Journal.open(sys.argv[1])
j.write([jm.EventRecord(time_ms=0, kind="committed")])
real_params = jm._params
written = []

def params_then_die(record):
    written.append(record)
    if len(written) == 3:  # two statements of this batch are already executed
        os._exit(17)
    return real_params(record)

jm._params = params_then_die
j.write([jm.EventRecord(time_ms=i, kind="torn") for i in range(1, 6)])
"""


def test_a_process_killed_mid_batch_leaves_no_half_written_rows(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(tmp_path)], capture_output=True, timeout=30
    )
    assert result.returncode == 17, result.stderr.decode()
    with Journal.open(tmp_path) as reopened:
        assert reopened.query("SELECT kind FROM events") == [("committed",)]


# --- the journal task -------------------------------------------------------------------------------


async def test_run_journal_drains_in_batches_until_the_channel_closes(journal: Journal) -> None:
    sink, receive = JournalSink.open(capacity=100)
    for i in range(10):
        assert sink.record(event(i))
    sink.close()
    stats = await run_journal(receive, journal, max_batch=4)
    assert (stats.written, stats.batches, stats.failed, stats.lost_on_exit) == (10, 3, 0, 0)
    assert journal.query("SELECT time_ms FROM events ORDER BY id") == [(i,) for i in range(10)]


async def test_run_journal_writes_each_record_without_waiting_for_more(journal: Journal) -> None:
    sink, receive = JournalSink.open(capacity=100)
    done_send, done_receive = trio.open_memory_channel[int](10)
    real_write = journal.write

    def notifying_write(records: Iterable[Record]) -> int:  # runs in the worker thread
        written = real_write(records)
        trio.from_thread.run_sync(done_send.send_nowait, written)
        return written

    journal.write = notifying_write  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_journal, receive, journal)
        with trio.fail_after(5):
            sink.record(event(1))
            assert await done_receive.receive() == 1
            assert count(journal, "events") == 1
            sink.record(fill())
            assert await done_receive.receive() == 1
            assert count(journal, "fills") == 1
        sink.close()


async def test_cancellation_flushes_what_was_received_and_queued(journal: Journal) -> None:
    sink, receive = JournalSink.open(capacity=100)
    for i in range(5):
        sink.record(event(i))
    with trio.CancelScope() as scope:
        scope.cancel()
        await run_journal(receive, journal)  # cancelled at its first checkpoint
    assert journal.query("SELECT time_ms FROM events ORDER BY id") == [(i,) for i in range(5)]
    # The task closed its end: later records are counted as dropped, not silently queued forever.
    assert not sink.record(event(99))
    assert sink.dropped == 1


async def test_cancellation_during_a_write_finishes_it_then_flushes_the_rest(journal: Journal) -> None:
    sink, receive = JournalSink.open(capacity=100)
    entered = trio.Event()
    release = threading.Event()
    real_write = journal.write
    calls: list[int] = []

    def gated_write(records: Iterable[Record]) -> int:  # runs in the worker thread
        records = list(records)
        calls.append(len(records))
        if len(calls) == 1:
            trio.from_thread.run_sync(entered.set)
            assert release.wait(timeout=10)
        return real_write(records)

    journal.write = gated_write  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_journal, receive, journal)
        sink.record(event(0))
        with trio.fail_after(5):
            await entered.wait()
        for i in range(1, 6):
            sink.record(event(i))  # queued while the first write is stuck on the disk
        nursery.cancel_scope.cancel()
        release.set()
    assert journal.query("SELECT time_ms FROM events ORDER BY id") == [(i,) for i in range(6)]
    assert calls == [1, 5]  # the interrupted write completed once; the rest went in one shielded batch


async def test_flush_deadline_bounds_the_shutdown_and_counts_the_loss(journal: Journal) -> None:
    sink, receive = JournalSink.open(capacity=100)
    for i in range(3):
        sink.record(event(i))
    stats = JournalStats()
    with trio.CancelScope() as scope:
        scope.cancel()
        await run_journal(receive, journal, flush_deadline_s=0, stats=stats)
    assert (stats.written, stats.lost_on_exit) == (0, 3)
    assert count(journal, "events") == 0


async def test_a_poison_record_costs_only_itself(journal: Journal) -> None:
    journal.query(BOOM_TRIGGER)
    sink, receive = JournalSink.open(capacity=100)
    for record in (event(1), event(2, "boom"), fill(), event(3)):
        sink.record(record)
    sink.close()
    stats = await run_journal(receive, journal)
    assert (stats.written, stats.failed) == (3, 1)
    assert journal.query("SELECT time_ms FROM events ORDER BY id") == [(1,), (3,)]
    assert count(journal, "fills") == 1


async def test_a_lost_record_reports_the_failure_once(journal: Journal) -> None:
    journal.query(BOOM_TRIGGER)
    failures: list[str] = []
    sink, receive = JournalSink.open(capacity=100)
    for record in (event(1), event(2, "boom"), event(3), event(4, "boom"), event(5)):
        sink.record(record)
    sink.close()
    stats = await run_journal(receive, journal, on_failure=failures.append)
    assert failures == ["journal write failed: IntegrityError: boom"]
    assert (stats.written, stats.failed) == (3, 2)  # it went on writing after the failure


async def test_a_batch_that_then_writes_record_by_record_lost_nothing_and_reports_nothing(
    journal: Journal,
) -> None:
    calls: list[int] = []

    async def fails_once(write: Callable[[list[Record]], int], records: list[Record]) -> int:
        calls.append(len(records))
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return write(records)

    failures: list[str] = []
    sink, receive = JournalSink.open(capacity=100)
    for i in range(3):
        sink.record(event(i))
    sink.close()
    stats = await run_journal(receive, journal, run_write=fails_once, on_failure=failures.append)
    assert calls == [3, 1, 1, 1] and failures == []
    assert (stats.written, stats.failed) == (3, 0)


# --- backpressure -----------------------------------------------------------------------------------


async def test_a_full_channel_drops_and_counts_without_blocking(journal: Journal) -> None:
    sink, receive = JournalSink.open(capacity=3, clock_ms=lambda: 77)
    results = [sink.record(r) for r in (event(1), event(2), fill(1), fill(2), event(3), order())]
    assert results == [True, True, True, False, False, False]
    assert sink.dropped == 3
    assert sink.dropped_by_type == {"FillRecord": 1, "EventRecord": 1, "OrderRecord": 1}
    # Nothing is reported while the channel is still full.
    assert not sink.record(event(4))
    assert sink.dropped == 4
    # Make room: the next record is preceded by one event that accounts for the gap.
    assert [receive.receive_nowait() for _ in range(3)] == [event(1), event(2), fill(1)]
    assert sink.record(event(5))
    gap = receive.receive_nowait()
    assert isinstance(gap, EventRecord) and gap.kind == "journal_dropped" and gap.time_ms == 77
    assert gap.detail == {"count": 4, "by_type": {"EventRecord": 2, "FillRecord": 1, "OrderRecord": 1}}
    assert receive.receive_nowait() == event(5)
    # The gap event is journaled like any other.
    journal.write([gap])
    assert journal.query("SELECT detail FROM events WHERE kind = 'journal_dropped'") == [
        ('{"by_type":{"EventRecord":2,"FillRecord":1,"OrderRecord":1},"count":4}',)
    ]


def test_a_closed_sink_counts_instead_of_raising() -> None:
    sink, _receive = JournalSink.open(capacity=10)
    sink.close()
    assert not sink.record(event(1))
    assert sink.dropped == 1


# --- record validation ------------------------------------------------------------------------------


def test_records_are_validated_in_the_producer() -> None:
    with pytest.raises(TypeError, match="price must be a finite Decimal"):
        OrderRecord(
            cloid="0x1",
            market="xyz:COIN",
            side="buy",
            price=249.5,  # type: ignore[arg-type]
            size=D(1),
            reduce_only=False,
            reason="entry",
            submitted_ms=1,
        )
    with pytest.raises(ValueError, match="side must be 'buy' or 'sell'"):
        FillRecord(tid=1, time_ms=1, market="xyz:COIN", side="B", px=D(1), sz=D(1), fee=D(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="acted on or refused"):
        SignalRecord(
            time_ms=1,
            market="xyz:COIN",
            side="sell",
            price=D(1),
            size=D(1),
            expected_edge_bps=D(1),
            oracle_px=D(1),
            best_px=D(1),
            acted=False,
        )
    with pytest.raises(ValueError, match="final_state must be one of"):
        OrderUpdateRecord(cloid="0x1", market="xyz:COIN", time_ms=1, final_state="done")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tid must be an int"):
        fill(tid=2**64 - 1)
    with pytest.raises(TypeError):
        EventRecord(time_ms=1, kind="x", detail={("not", "a str"): 1})  # type: ignore[dict-item]


# --- schema migrations ---------------------------------------------------------------------------------


def write_v1_journal(path: Path) -> None:
    """A journal exactly as the schema-1 engine left it: its tables, one trade, `user_version` 1."""
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(
        "INSERT INTO trades (market, side, size, entry_time_ms, entry_px, exit_time_ms, exit_px, "
        "realised_edge_bps, time_to_flat_ms, pnl, fees) "
        "VALUES ('xyz:COIN', 'buy', 1, 1000, 10, 2000, 10.1, 100, 1000, 0.09, 0.01)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.close()


def test_a_schema_1_journal_is_migrated_on_open_and_keeps_its_rows(tmp_path: Path) -> None:
    write_v1_journal(tmp_path / JOURNAL_FILENAME)
    with Journal.open(tmp_path) as journal:
        assert journal.query("PRAGMA user_version") == [(SCHEMA_VERSION,)] == [(3,)]
        assert journal.query("SELECT market, pnl, reconstructed FROM trades") == [("xyz:COIN", 0.09, 0)]
        journal.write([attrs.evolve(trade(), reconstructed=True)])
        assert journal.query("SELECT reconstructed FROM trades ORDER BY id") == [(0,), (1,)]
    with Journal.open(tmp_path) as journal:  # opening a current journal again changes nothing
        assert journal.query("SELECT COUNT(*) FROM trades") == [(2,)]


def write_v2_journal(path: Path) -> None:
    """A journal as the schema-2 engine left it: schema 1 plus migration 2, one signal, `user_version` 2."""
    write_v1_journal(path)
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in _MIGRATIONS[2]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO signals (time_ms, market, side, price, size, expected_edge_bps, oracle_px, best_px, "
        "acted, cloid) VALUES (1000, 'xyz:COIN', 'buy', 249.5, 0.1, 12.5, 250.12, 249.5, 1, '0xc1')"
    )
    conn.execute("PRAGMA user_version = 2")
    conn.close()


def test_a_schema_2_journal_gains_the_signal_costs_and_keeps_its_rows(tmp_path: Path) -> None:
    write_v2_journal(tmp_path / JOURNAL_FILENAME)
    with Journal.open(tmp_path) as journal:
        assert journal.query("PRAGMA user_version") == [(3,)]
        assert journal.query("SELECT market, cost_bps, fee_bps FROM signals") == [("xyz:COIN", None, None)]
        assert journal.query("SELECT COUNT(*) FROM trades") == [(1,)]
        journal.write([signal()])
        assert journal.query("SELECT cost_bps, fee_bps FROM signals ORDER BY id") == [
            (None, None),
            (25.0, 9.0),
        ]


def test_a_failed_migration_leaves_the_journal_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILENAME
    write_v1_journal(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("ALTER TABLE trades ADD COLUMN reconstructed INTEGER")  # the migration cannot apply
    conn.close()
    with pytest.raises(JournalError, match="duplicate column name"):
        Journal.open(tmp_path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    conn.close()


def test_the_report_reads_a_schema_1_journal_without_migrating_it(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILENAME
    write_v1_journal(path)
    (row,) = load_rows(path).trades
    assert row.market == "xyz:COIN" and row.reconstructed is False
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    conn.close()
