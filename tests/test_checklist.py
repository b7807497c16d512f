"""The testnet checklist (PLAN.md T#1..T#10): every item in PASS, FAIL and NOT SEEN, from real journals.

`clean_run` is a journal in which every item passes; each test takes it, removes or adds the rows that
make one item fail or go unseen, and checks that item (and that the others did not move).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from hip3_trio.journal import (
    JOURNAL_FILENAME,
    EventRecord,
    FillRecord,
    Journal,
    OrderFinalState,
    OrderRecord,
    OrderUpdateRecord,
    Record,
    TradeRecord,
)
from hip3_trio.ops.checklist import (
    FAIL,
    INFLIGHT_PEAK_KIND,
    NONCE_ERROR_KIND,
    NOT_SEEN,
    PASS,
    Checklist,
    evaluate_testnet,
)
from hip3_trio.ops.report import load_rows, main

D = Decimal
COIN = "xyz:COIN"
T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
NO_MATCH = "Order could not immediately match against any resting orders. asset=110000"


def order(
    cloid: str,
    ms: int,
    state: OrderFinalState | None,
    *,
    reduce_only: bool = False,
    reason: str = "entry",
    error: str | None = None,
    market: str = COIN,
) -> list[Record]:
    """An order's intent and, unless `state` is None, the venue's answer 5 ms later."""
    records: list[Record] = [
        OrderRecord(
            cloid=cloid,
            market=market,
            side="sell" if reduce_only else "buy",
            price=D(100),
            size=D(1),
            reduce_only=reduce_only,
            reason=reason,
            submitted_ms=ms,
        )
    ]
    if state is not None:
        acked = ms + 5 if state in ("filled", "partial", "rejected", "canceled") else None
        filled = D(1) if state == "filled" else D("0.5") if state == "partial" else None
        records.append(
            OrderUpdateRecord(
                cloid=cloid,
                market=market,
                time_ms=ms + 5,
                acked_ms=acked,
                final_state=state,
                filled_sz=filled,
                error=error,
            )
        )
    return records


def fill(tid: int, cloid: str, ms: int, *, market: str = COIN) -> FillRecord:
    return FillRecord(
        tid=tid, time_ms=ms, market=market, side="buy", px=D(100), sz=D(1), fee=D("0.02"), cloid=cloid
    )


def trade(
    entry_ms: int, ttf_ms: int = 30_000, *, exit_reason: str = "time_stop", exit_cloid: str = "x1"
) -> TradeRecord:
    return TradeRecord(
        market=COIN,
        side="buy",
        size=D(1),
        entry_time_ms=entry_ms,
        entry_px=D(100),
        exit_time_ms=entry_ms + ttf_ms,
        exit_px=D(101),
        expected_edge_bps=D(30),
        realised_edge_bps=D(100),
        slippage_bps=D(0),
        time_to_flat_ms=ttf_ms,
        pnl=D("0.96"),
        fees=D("0.04"),
        entry_cloid="e1",
        exit_cloid=exit_cloid,
        exit_reason=exit_reason,
    )


def event(kind: str, ms: int, **detail: object) -> EventRecord:
    return EventRecord(time_ms=ms, kind=kind, detail=detail)


CONNECT = event("connect", T0, n=1)
FIRST_RECONCILE = event("reconcile", T0 + 10, result="Reconciled", unknown_queried=0)
REJECTED_ENTRY = order("e0", T0 + 500, "rejected", error=NO_MATCH)
ENTRY = order("e1", T0 + 1_000, "filled")
ENTRY_FILL = fill(1, "e1", T0 + 1_005)
LATER_RECONCILE = event("reconcile", T0 + 2_000, result="Reconciled", unknown_queried=0)
FLATTEN = order("x1", T0 + 31_000, "filled", reduce_only=True, reason="time_stop")
FLATTEN_FILL = fill(2, "x1", T0 + 31_005)
TRADE = trade(T0 + 1_005)
PEAK = event(INFLIGHT_PEAK_KIND, T0 + 60_100, minute_ms=T0, peak=4, limit=100)


def clean_run() -> list[Record]:
    """One connection, a rejected entry then a filled one, its fill, a reconciliation, a time-stop
    flatten and its fill, the round trip, and a minute with 4 posts in flight: all ten items pass."""
    return [
        CONNECT,
        FIRST_RECONCILE,
        *REJECTED_ENTRY,
        *ENTRY,
        ENTRY_FILL,
        LATER_RECONCILE,
        *FLATTEN,
        FLATTEN_FILL,
        TRADE,
        PEAK,
    ]


def without(records: list[Record], *remove: Record | list[Record]) -> list[Record]:
    gone = [r for item in remove for r in (item if isinstance(item, list) else [item])]
    return [r for r in records if not any(r is g for g in gone)]


def checklist_of(tmp_path: Path, records: Sequence[Record], since_ms: int | None = None) -> Checklist:
    with Journal.open(tmp_path) as journal:
        journal.write(records)
    return evaluate_testnet(load_rows(tmp_path / JOURNAL_FILENAME), since_ms=since_ms)


def item(checklist: Checklist, number: str) -> tuple[str, list[str]]:
    (found,) = [i for i in checklist.items if i.number == number]
    return found.status, list(found.evidence)


def others(checklist: Checklist, number: str) -> set[str]:
    return {i.status for i in checklist.items if i.number != number}


def test_a_clean_run_passes_every_item(tmp_path: Path) -> None:
    checklist = checklist_of(tmp_path, clean_run())
    assert [(i.number, i.name, i.status) for i in checklist.items] == [
        ("T#1", "connect and subscribe", PASS),
        ("T#2", "signature accepted", PASS),
        ("T#3", "IOC accepted", PASS),
        ("T#4", "fills received", PASS),
        ("T#5", "positions tracked correctly", PASS),
        ("T#6", "flatten works", PASS),
        ("T#7", "time stop flattens on its own", PASS),
        ("T#8", "no nonce collision in a burst", PASS),
        ("T#9", "inflight within the limit", PASS),
        ("T#10", "retry after a reject", PASS),
    ]
    assert checklist.passed
    evidence = {i.number: i.evidence for i in checklist.items}
    assert evidence["T#1"] == (
        "1 connects, 1 subscribed and reconciled",
        "first: connect at 2025-01-01T00:00:00.000Z, reconcile (Reconciled) 0.010 s later",
    )
    assert evidence["T#2"] == (
        "3 orders answered by the venue, no signature error",
        "first filled: e1 on xyz:COIN at 2025-01-01T00:00:01.000Z (filled)",
    )
    assert evidence["T#3"] == (
        "1 of 2 resolved entry IOCs filled (0 partly)",
        "first: e1 on xyz:COIN at 2025-01-01T00:00:01.000Z",
    )
    assert evidence["T#4"] == (
        "all 2 filled orders have their fills (2 fills in the window)",
        "first: tid 1 for e1 on xyz:COIN at 2025-01-01T00:00:01.005Z",
    )
    assert evidence["T#5"] == (
        "1 reconciliations after the first fill (2025-01-01T00:00:01.005Z) found the book right",
    )
    assert evidence["T#6"] == (
        "1 of 1 reduce-only IOCs filled (time_stop)",
        "first: x1 on xyz:COIN at 2025-01-01T00:00:31.000Z",
    )
    assert evidence["T#7"] == (
        "1 positions closed by the time stop, time to flat median 30.0 s, max 30.0 s (deadline 60 s)",
        "first: xyz:COIN exit x1 at 2025-01-01T00:00:31.005Z",
    )
    assert evidence["T#8"] == (
        "1 minutes with a burst (>= 3 posts in flight), no nonce error",
        "largest: 4 posts in flight in the minute from 2025-01-01T00:00:00.000Z",
    )
    assert evidence["T#9"] == (
        "1 minutes, highest peak 4 of limit 100 in the minute from 2025-01-01T00:00:00.000Z",
    )
    assert evidence["T#10"] == (
        "1 rejected orders; 1 followed by a fill in their market",
        f"first: e0 on xyz:COIN at 2025-01-01T00:00:00.500Z rejected ({NO_MATCH}); "
        "then e1 on xyz:COIN at 2025-01-01T00:00:01.000Z filled",
    )


def test_an_empty_journal_has_seen_nothing(tmp_path: Path) -> None:
    checklist = checklist_of(tmp_path, [])
    assert {i.status for i in checklist.items} == {NOT_SEEN}
    assert not checklist.passed


# --- T#1 connect and subscribe --------------------------------------------------------------------------


def test_t1_fails_when_no_connection_completed_its_subscriptions(tmp_path: Path) -> None:
    records = [
        event("connect", T0, n=1),
        event("venue_error", T0 + 5, m="Invalid subscription"),
        event("disconnect", T0 + 10_000, drained_posts=0, bad_frames=0),
        event("connect", T0 + 20_000, n=2),
        event("reconcile", T0 - 1_000, result="Reconciled"),  # before any connect: not its sync
    ]
    status, evidence = item(checklist_of(tmp_path, records), "T#1")
    assert status == FAIL
    assert evidence == [
        "2 connects, none reached its first reconcile (orderUpdates ack and userFills snapshot not both "
        "seen); last connect at 2025-01-01T00:00:20.000Z",
        "1 venue errors; first: {'m': 'Invalid subscription'}",
    ]


def test_t1_not_seen_without_a_connect(tmp_path: Path) -> None:
    checklist = checklist_of(tmp_path, without(clean_run(), CONNECT))
    assert item(checklist, "T#1") == (NOT_SEEN, ["no connect event in the window"])


# --- T#2 signature accepted -----------------------------------------------------------------------------


def test_t2_fails_on_a_signature_error(tmp_path: Path) -> None:
    refused = order(
        "s1", T0 + 700, "rejected", error="action error: User or API Wallet 0x1234 does not exist."
    )
    status, evidence = item(checklist_of(tmp_path, clean_run() + refused), "T#2")
    assert status == FAIL
    assert evidence == [
        "1 signature errors; first: s1 on xyz:COIN at 2025-01-01T00:00:00.700Z: "
        "action error: User or API Wallet 0x1234 does not exist.",
        "3 orders accepted",  # the action-level error is not an acceptance
    ]


def test_t2_fails_on_a_signature_reject_event_without_an_order_row(tmp_path: Path) -> None:
    records = [event("reject", T0, market=COIN, message="action error: invalid signature")]
    assert item(checklist_of(tmp_path, records), "T#2")[0] == FAIL


def test_t2_not_seen_when_no_order_reached_the_venue(tmp_path: Path) -> None:
    records = [CONNECT, *order("n1", T0, "not_sent"), *order("n2", T0 + 1, None)]
    assert item(checklist_of(tmp_path, records), "T#2") == (NOT_SEEN, ["no order answered by the venue"])


# --- T#3 IOC accepted -----------------------------------------------------------------------------------


def test_t3_fails_when_no_entry_filled(tmp_path: Path) -> None:
    records = [*REJECTED_ENTRY, *order("e2", T0 + 900, "canceled")]
    assert item(checklist_of(tmp_path, records), "T#3") == (
        FAIL,
        [
            "2 entry IOCs resolved, none filled",
            f"first error: e0 on xyz:COIN at 2025-01-01T00:00:00.500Z: {NO_MATCH}",
        ],
    )


def test_t3_not_seen_without_a_resolved_entry(tmp_path: Path) -> None:
    records = [*order("e1", T0, "dry_run"), *order("e2", T0, None), *FLATTEN]
    assert item(checklist_of(tmp_path, records), "T#3") == (NOT_SEEN, ["no entry IOC resolved by the venue"])


# --- T#4 fills received ---------------------------------------------------------------------------------


def test_t4_fails_when_a_filled_order_has_no_fill(tmp_path: Path) -> None:
    checklist = checklist_of(tmp_path, without(clean_run(), ENTRY_FILL))
    assert item(checklist, "T#4") == (
        FAIL,
        [
            "1 of 2 filled orders have no fill on userFills",
            "first: e1 on xyz:COIN at 2025-01-01T00:00:01.000Z",
        ],
    )


def test_t4_looks_fills_up_outside_the_window(tmp_path: Path) -> None:
    """An order in the window whose fill is stamped before it still has its fill."""
    records = [*order("e1", T0 + 1_000, "filled"), fill(1, "e1", T0 + 999)]
    assert item(checklist_of(tmp_path, records, since_ms=T0 + 1_000), "T#4")[0] == PASS


def test_t4_not_seen_without_a_filled_order(tmp_path: Path) -> None:
    records = [*REJECTED_ENTRY, fill(9, "elsewhere", T0)]
    assert item(checklist_of(tmp_path, records), "T#4") == (
        NOT_SEEN,
        ["no filled order (1 fills in the window)"],
    )


# --- T#5 positions tracked correctly --------------------------------------------------------------------


def test_t5_fails_on_a_correction_while_running(tmp_path: Path) -> None:
    correction = event("position_corrected", LATER_RECONCILE.time_ms, market=COIN, old="1", new="0")
    status, evidence = item(checklist_of(tmp_path, [*clean_run(), correction]), "T#5")
    assert status == FAIL
    assert evidence == [
        "1 position corrections by reconciliation; first: xyz:COIN 1 -> 0 at 2025-01-01T00:00:02.000Z"
    ]


def test_t5_a_position_learned_at_start_up_is_not_a_failure(tmp_path: Path) -> None:
    """After a restart the book starts empty: the first reconciliation of a process (after its connect
    n=1) learns the open position. A reconnect (n=2) that corrects the book is a failure."""
    learned = event("position_corrected", FIRST_RECONCILE.time_ms, market=COIN, old="0", new="1")
    records = clean_run()
    records.insert(records.index(FIRST_RECONCILE) + 1, learned)
    status, evidence = item(checklist_of(tmp_path, records), "T#5")
    assert status == PASS
    assert evidence[1] == (
        "1 positions learned at a start-up reconciliation; first: xyz:COIN 0 -> 1 at 2025-01-01T00:00:00.010Z"
    )

    reconnect = [
        event("connect", T0 + 40_000, n=2),
        event("reconcile", T0 + 40_010, result="Reconciled"),
        event("position_corrected", T0 + 40_010, market=COIN, old="0", new="1"),
    ]
    assert item(checklist_of(tmp_path / "again", [*clean_run(), *reconnect]), "T#5")[0] == FAIL


def test_t5_not_seen_without_a_reconciliation_after_a_fill(tmp_path: Path) -> None:
    checklist = checklist_of(tmp_path, without(clean_run(), LATER_RECONCILE))
    assert item(checklist, "T#5") == (
        NOT_SEEN,
        ["no reconciliation after the first fill at 2025-01-01T00:00:01.005Z"],
    )
    records = [CONNECT, FIRST_RECONCILE]
    assert item(checklist_of(tmp_path / "no-fills", records), "T#5") == (
        NOT_SEEN,
        ["no fill in the window: no position to track"],
    )


# --- T#6 flatten works ----------------------------------------------------------------------------------


def test_t6_fails_on_a_flatten_failure(tmp_path: Path) -> None:
    failed = event(
        "flatten_failed", T0 + 91_000, market=COIN, detail="not flat 60 s after the first flatten (size 1)"
    )
    status, evidence = item(checklist_of(tmp_path, [*clean_run(), failed]), "T#6")
    assert status == FAIL
    assert evidence[0] == (
        "1 flatten_failed events; first on xyz:COIN at 2025-01-01T00:01:31.000Z: "
        "not flat 60 s after the first flatten (size 1)"
    )


def test_t6_fails_when_no_reduce_only_order_filled(tmp_path: Path) -> None:
    records = [
        *order(
            "x1",
            T0,
            "rejected",
            reduce_only=True,
            reason="time_stop",
            error="Reduce only order would increase position",
        )
    ]
    records += order("x2", T0 + 1_000, "partial", reduce_only=True, reason="time_stop")
    assert item(checklist_of(tmp_path, records), "T#6") == (
        FAIL,
        ["2 reduce-only IOCs resolved, none filled; first: x1 on xyz:COIN at 2025-01-01T00:00:00.000Z"],
    )


def test_t6_not_seen_without_a_reduce_only_order(tmp_path: Path) -> None:
    records = [*ENTRY, *order("x1", T0, "dry_run", reduce_only=True)]
    assert item(checklist_of(tmp_path, records), "T#6") == (NOT_SEEN, ["no reduce-only order resolved"])


# --- T#7 time stop flattens on its own ------------------------------------------------------------------


def test_t7_fails_when_a_time_stop_came_too_late(tmp_path: Path) -> None:
    records = [*without(clean_run(), TRADE), trade(T0 + 1_005, ttf_ms=75_000)]
    assert item(checklist_of(tmp_path, records), "T#7") == (
        FAIL,
        [
            "1 of 1 time-stop trades flat later than 60 s after entry; first: xyz:COIN entered "
            "2025-01-01T00:00:01.005Z, flat after 75.0 s"
        ],
    )


def test_t7_fails_when_time_stop_orders_closed_no_trade(tmp_path: Path) -> None:
    records = without(clean_run(), TRADE)
    assert item(checklist_of(tmp_path, records), "T#7") == (
        FAIL,
        [
            "1 time-stop orders resolved, no trade closed by one; "
            "first: x1 on xyz:COIN at 2025-01-01T00:00:31.000Z"
        ],
    )


def test_t7_not_seen_without_a_time_stop(tmp_path: Path) -> None:
    records = [
        *without(clean_run(), FLATTEN, TRADE),
        *order("x1", T0 + 31_000, "filled", reduce_only=True, reason="flatten_all"),
        trade(T0 + 1_005, exit_reason="flatten_all"),
    ]
    checklist = checklist_of(tmp_path, records)
    assert item(checklist, "T#7") == (NOT_SEEN, ["no time-stop order or trade"])
    assert item(checklist, "T#6")[0] == PASS  # flatten-all flattens work all the same


# --- T#8 nonces -----------------------------------------------------------------------------------------


def test_t8_fails_on_a_nonce_error_event(tmp_path: Path) -> None:
    nonce = event(
        NONCE_ERROR_KIND,
        T0 + 3_000,
        nonce=1735689603000,
        message="Invalid nonce: duplicate nonce 1735689603000",
    )
    status, evidence = item(checklist_of(tmp_path, [*clean_run(), nonce]), "T#8")
    assert status == FAIL
    assert evidence == [
        "1 nonce errors (1 nonce_error events); first: nonce 1735689603000 at 2025-01-01T00:00:03.000Z: "
        "Invalid nonce: duplicate nonce 1735689603000"
    ]


def test_t8_fails_on_a_nonce_reject_in_an_order_error(tmp_path: Path) -> None:
    message = "action error: Invalid nonce: nonce too low 5 < 6"
    records = [
        *clean_run(),
        *order("e9", T0 + 4_000, "rejected", error=message),
        event("reject", T0 + 4_005, market=COIN, message=message),  # the same reject: counted once
    ]
    status, evidence = item(checklist_of(tmp_path, records), "T#8")
    assert status == FAIL
    assert evidence == [
        f"1 nonce errors (0 nonce_error events); first: e9 on xyz:COIN at 2025-01-01T00:00:04.000Z: {message}"
    ]


def test_t8_not_seen_without_a_burst(tmp_path: Path) -> None:
    checklist = checklist_of(tmp_path, without(clean_run(), PEAK))
    assert item(checklist, "T#8") == (
        NOT_SEEN,
        ["no inflight_peak event: no burst to judge (no nonce error either)"],
    )
    records = [
        *without(clean_run(), PEAK),
        event(INFLIGHT_PEAK_KIND, T0 + 60_000, peak=2, limit=100),  # no minute_ms: the time,
    ]
    assert item(checklist_of(tmp_path / "small", records), "T#8") == (
        NOT_SEEN,
        ["no burst: highest inflight peak 2 < 3 (no nonce error)"],
    )


# --- T#9 inflight ---------------------------------------------------------------------------------------


def test_t9_fails_over_the_limit(tmp_path: Path) -> None:
    over = event(INFLIGHT_PEAK_KIND, T0 + 120_000, peak=101, limit=100)  # no minute_ms: the time
    assert item(checklist_of(tmp_path, [*clean_run(), over]), "T#9") == (
        FAIL,
        ["1 minutes over the limit; first: 101 > 100 in the minute from 2025-01-01T00:02:00.000Z"],
    )


def test_t9_not_seen_without_inflight_peaks(tmp_path: Path) -> None:
    checklist = checklist_of(tmp_path, without(clean_run(), PEAK))
    assert item(checklist, "T#9") == (
        NOT_SEEN,
        ["no inflight_peak event (no post sent, or an engine that does not journal it)"],
    )
    assert others(checklist, "T#9") == {PASS, NOT_SEEN}  # T#8 needs the peaks too


# --- T#10 retry after a reject --------------------------------------------------------------------------


def test_t10_a_rejected_flatten_retried_passes(tmp_path: Path) -> None:
    records = [
        *without(clean_run(), REJECTED_ENTRY),
        *order("x0", T0 + 30_000, "rejected", reduce_only=True, reason="time_stop", error="Price too far"),
    ]
    status, evidence = item(checklist_of(tmp_path, records), "T#10")
    assert status == PASS
    assert evidence[1] == (
        "first: x0 on xyz:COIN at 2025-01-01T00:00:30.000Z rejected (Price too far); "
        "then x1 on xyz:COIN at 2025-01-01T00:00:31.000Z filled"
    )


def test_t10_fails_when_a_rejected_flatten_left_the_position(tmp_path: Path) -> None:
    records = [
        *clean_run(),
        *order("e5", T0 + 100_000, "filled"),
        *order("x5", T0 + 130_000, "rejected", reduce_only=True, reason="time_stop", error="Price too far"),
    ]
    assert item(checklist_of(tmp_path, records), "T#10") == (
        FAIL,
        [
            "1 rejected flattens not followed by a filled flatten or a closed trade; "
            "first: x5 on xyz:COIN at 2025-01-01T00:02:10.000Z: Price too far"
        ],
    )


def test_t10_not_seen_without_a_reject_or_anything_after_it(tmp_path: Path) -> None:
    checklist = checklist_of(tmp_path, without(clean_run(), REJECTED_ENTRY))
    assert item(checklist, "T#10") == (NOT_SEEN, ["no rejected order"])
    records = [*ENTRY, *order("e2", T0 + 5_000, "rejected", error=NO_MATCH)]
    assert item(checklist_of(tmp_path / "last", records), "T#10") == (
        NOT_SEEN,
        ["1 rejected orders, none followed by a filled order in its market"],
    )


# --- --since and the command line -----------------------------------------------------------------------


def test_since_leaves_earlier_failures_out(tmp_path: Path) -> None:
    early: list[Record] = [event(NONCE_ERROR_KIND, T0 - 5_000, message="Invalid nonce: duplicate nonce 1")]
    early += order("s1", T0 - 4_000, "rejected", error="action error: User or API Wallet 0x1 does not exist.")
    checklist = checklist_of(tmp_path, [*early, *clean_run()])
    assert [i.number for i in checklist.items if i.status == FAIL] == ["T#2", "T#8"]
    assert evaluate_testnet(load_rows(tmp_path / JOURNAL_FILENAME), since_ms=T0).passed


def run(argv: list[str]) -> tuple[int, str]:
    lines: list[str] = []
    code = main(argv, out=lines.append)
    return code, "\n".join(lines)


def test_the_command_exits_0_only_when_every_item_passes(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "clean") as journal:
        journal.write(clean_run())
    code, text = run(["--state-dir", str(tmp_path / "clean"), "--checklist", "testnet"])
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == f"hip3-trio testnet checklist — everything — {tmp_path / 'clean' / JOURNAL_FILENAME}"
    assert lines[2] == "T#1   connect and subscribe            PASS"
    assert lines[3].startswith("        1 connects")
    assert lines[-1] == "checklist testnet: 10 PASS, 0 FAIL, 0 NOT SEEN — passed"

    with Journal.open(tmp_path / "partial") as journal:
        journal.write(without(clean_run(), PEAK))
    code, text = run(
        ["--state-dir", str(tmp_path / "partial"), "--checklist", "testnet", "--since", "2025-01-01"]
    )
    assert code == 1
    assert text.splitlines()[0].startswith("hip3-trio testnet checklist — since 2025-01-01T00:00:00.000Z — ")
    assert text.splitlines()[-1] == "checklist testnet: 8 PASS, 0 FAIL, 2 NOT SEEN — not passed"

    code, text = run(["--state-dir", str(tmp_path / "partial"), "--checklist", "testnet", "--json"])
    assert code == 1
    doc = json.loads(text)
    assert doc["checklist"] == "testnet" and doc["passed"] is False and doc["since_ms"] is None
    assert [(i["number"], i["status"]) for i in doc["items"]][7:] == [
        ("T#8", NOT_SEEN),
        ("T#9", NOT_SEEN),
        ("T#10", PASS),
    ]
    assert doc["items"][0]["evidence"][0] == "1 connects, 1 subscribed and reconciled"


def test_the_checklist_is_not_plotted_and_needs_a_known_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Journal.open(tmp_path).close()
    code, _ = run(["--state-dir", str(tmp_path), "--checklist", "testnet", "--plot", str(tmp_path / "x.png")])
    assert code == 2
    assert "--plot draws the report, not a checklist" in capsys.readouterr().err
    code, _ = run(["--state-dir", str(tmp_path), "--checklist", "mainnet"])
    assert code == 2
    assert "invalid choice: 'mainnet'" in capsys.readouterr().err
