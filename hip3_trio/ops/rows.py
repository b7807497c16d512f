"""The journal rows the operator tools read, as plain frozen records, and the SQL that selects them.

`read_rows` turns an open (read-only) journal connection into `JournalRows`; everything downstream —
the figures (`hip3_trio.ops.figures`), the verdict (`hip3_trio.ops.verdict`), the testnet checklist
(`hip3_trio.ops.checklist`) — is pure and testable without SQLite. `in_window` applies ``--since``.

Window (``--since``): a trade is in the window when its *entry* time is at or after the start (a round
trip belongs to the run that opened it); an order when its submission time is (for a row known only
from an update, its last update time; a row with neither time is only in an unbounded window); a fill
and an event when their time is.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = [
    "EventRow",
    "FillRow",
    "JournalRows",
    "OrderRow",
    "TradeRow",
    "format_time_ms",
    "in_window",
    "read_rows",
    "time_in_window",
]


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
    exit_reason: str | None = None
    entry_cloid: str | None = None
    exit_cloid: str | None = None

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
    cloid: str | None = None
    acked_ms: int | None = None
    filled_sz: float = 0.0
    error: str | None = None


@attrs.frozen(kw_only=True)
class FillRow:
    """One fill (``fills`` table): the venue's trade id, when, where, which order, and its fee."""

    tid: int
    time_ms: int
    market: str
    cloid: str | None = None
    fee: float = 0.0


@attrs.frozen(kw_only=True)
class EventRow:
    """One journaled event with its decoded JSON detail."""

    time_ms: int
    kind: str
    detail: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class JournalRows:
    """Everything the report and the checklist read, each table in journal order (events by time)."""

    trades: tuple[TradeRow, ...] = ()
    orders: tuple[OrderRow, ...] = ()
    events: tuple[EventRow, ...] = ()
    fills: tuple[FillRow, ...] = ()


def format_time_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC, e.g. ``2025-01-02T03:04:05.678Z``."""
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def time_in_window(time_ms: int | None, since_ms: int | None) -> bool:
    """Whether a row stamped `time_ms` is in the window starting at `since_ms` (None: everything)."""
    if since_ms is None:
        return True
    return time_ms is not None and time_ms >= since_ms


def in_window(rows: JournalRows, since_ms: int | None) -> JournalRows:
    """The rows in the window starting at `since_ms` (None: all of them); see the module docstring."""
    if since_ms is None:
        return rows
    return JournalRows(
        trades=tuple(t for t in rows.trades if time_in_window(t.entry_time_ms, since_ms)),
        orders=tuple(o for o in rows.orders if time_in_window(o.time_ms, since_ms)),
        events=tuple(e for e in rows.events if time_in_window(e.time_ms, since_ms)),
        fills=tuple(f for f in rows.fills if time_in_window(f.time_ms, since_ms)),
    )


_TRADES_SQL: Final = """
SELECT market, entry_time_ms, exit_time_ms, size, entry_px, expected_edge_bps, realised_edge_bps,
       slippage_bps, time_to_flat_ms, pnl, fees, {reconstructed}, exit_reason, entry_cloid, exit_cloid
  FROM trades ORDER BY exit_time_ms, id
"""
_ORDERS_SQL: Final = """
SELECT market, reason, reduce_only, final_state, COALESCE(submitted_ms, updated_ms), cloid, acked_ms,
       filled_sz, error
  FROM orders ORDER BY COALESCE(submitted_ms, updated_ms), cloid
"""
# Per-trade `slippage` events duplicate the trades table: not read.
_EVENTS_SQL: Final = "SELECT time_ms, kind, detail FROM events WHERE kind != 'slippage' ORDER BY time_ms, id"
_FILLS_SQL: Final = "SELECT tid, time_ms, market, cloid, fee FROM fills ORDER BY time_ms, id"


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


def read_rows(conn: sqlite3.Connection) -> JournalRows:
    """Every row the operator tools need, read with `conn` (the caller holds the read transaction)."""
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
            exit_reason=r[12],
            entry_cloid=r[13],
            exit_cloid=r[14],
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
            cloid=r[5],
            acked_ms=r[6],
            filled_sz=r[7] or 0.0,
            error=r[8],
        )
        for r in conn.execute(_ORDERS_SQL)
    )
    events = tuple(EventRow(time_ms=r[0], kind=r[1], detail=_detail(r[2])) for r in conn.execute(_EVENTS_SQL))
    fills = tuple(
        FillRow(tid=r[0], time_ms=r[1], market=r[2], cloid=r[3], fee=r[4]) for r in conn.execute(_FILLS_SQL)
    )
    return JournalRows(trades=trades, orders=orders, events=events, fills=fills)
