"""The trading journal: every signal, order, fill, round trip and notable event, in SQLite.

The journal is the measurement this engine exists for (issue 7's report reads it with plain SQL), so it
is written to survive crashes and never to slow trading down.

Data flow
    producers (strategy, positions, risk, session)  --JournalSink.record(rec)-->  bounded memory channel
    --> `run_journal` task: takes whatever is queued as one batch --> `Journal.write(batch)` in a worker
    thread --> one SQLite transaction per batch.

Backpressure: drop and count. `JournalSink.record` is synchronous and uses `send_nowait` on a bounded
channel (default 10 000 records). When the channel is full the record is dropped and counted (in total
and per record type); the trading path never waits for the disk and memory stays bounded. When space
returns, the sink first journals a ``journal_dropped`` event with the counts, so a gap is visible in the
data itself. Dropping beats an unbounded buffer here because the venue, not the journal, is the source of
truth for orders and fills (they can be re-read with ``userFills``/``orderStatus``), while a stalled
reader would miss heartbeats and replies; at a few records a second, 10 000 slots is minutes of a
stalled disk.

Durability: WAL mode with ``synchronous = FULL``. Each batch is one transaction (``BEGIN IMMEDIATE`` …
``COMMIT``), so after any crash — process or machine — a batch is either entirely there or entirely
absent: never half-written rows. WAL makes the writer never block a concurrent reader (the report, an
operator's ``sqlite3`` shell). FULL rather than NORMAL because NORMAL in WAL mode may lose the last
committed batches on power loss or an OS crash (it is still atomic and safe against a process crash), and
the cost of FULL — one fsync of the WAL per batch — is paid in a worker thread, is amortised over the
whole batch, and at this write rate (a handful of records a second) is negligible. The journal should
never drop a fill the engine already acted on because the machine lost power.

Failures: the journal is the measurement, so the engine does not trade without one. `Journal.open`
refuses a file that fails ``PRAGMA quick_check`` or is not SQLite (`JournalError`, exit status 3). While
running, a record lost to a write error is reported (once) through `run_journal`'s ``on_failure``, which
the app wires to `Engine.trip_hard_stop`: the hard stop latches and every position is flattened. A write
error never escapes the journal task, so it cannot cancel trading before that flatten.

Readers outside the engine (the report, the operator's ``hardstop`` command) find the file with
`journal_path` and open it with `open_journal_read_only`: a ``mode=ro`` URI that never creates or writes
the database, refusing (`JournalUnavailable`) a missing file or a schema this version cannot read.

Threading: SQLite connections must not be used by two threads at once. The connection is opened with
``check_same_thread=False`` (which only lifts Python's thread-affinity check) and every use goes through
one `threading.Lock` inside `Journal`. In the engine, `run_journal` is the only writer and awaits each
``trio.to_thread.run_sync(journal.write, …)`` before starting the next, so writes are serialised anyway;
the lock makes `Journal.query` from another thread (tests, a status line) safe too. Writes use
``abandon_on_cancel=False``: a write that has started always finishes before the task moves on, so
cancellation never leaves a thread holding the connection.

Numbers: SQLite has no decimal type. Prices, sizes, USD amounts and bps are stored as REAL so plain SQL
can compare, sum and average them; an IEEE double holds 15 significant digits exactly, which covers venue
prices (5 significant figures), sizes (``szDecimals``) and the USD amounts of this micro test. The
engine's own accounting stays `Decimal` in memory; the journal is the analysis record. Times are INTEGER
epoch milliseconds; booleans are 0/1; sides are ``'buy'``/``'sell'``.

Schema (``PRAGMA user_version = 3``; older files are migrated on open, see ``_MIGRATIONS``)
- ``signals``: every detector signal, acted on or refused (``refused_reason`` = the gate that said no);
  ``cloid`` links an acted signal to its order; ``cost_bps`` is the whole threshold the signal had to
  beat (entry + exit taker fee, slippage both ways, minimum edge) and ``fee_bps`` one leg's taker fee
  in it (schema 3; NULL on older rows).
- ``orders``: one row per cloid. `OrderRecord` inserts the intent (side, price, size, reduce_only,
  ``reason`` = entry / time_stop / flatten_all / exit, ``submitted_ms``); `OrderUpdateRecord` upserts the
  outcome (``acked_ms``, ``final_state``, ``filled_sz``, ``avg_px``, ``oid``, ``error``). Both are
  idempotent and commute: an update that arrives for an order this process never submitted creates the
  row, and the intent fills in later. ``final_state`` is NULL while the order is open.
- ``fills``: unique by ``tid`` (``INSERT OR IGNORE``; a replayed snapshot fill is a no-op). The
  venue's tids are unique, so a tid seen again with *different* content is not a replay: the first row
  is kept and the conflict reported (a ``duplicate_tid`` event naming the differing columns, a warning,
  `Journal.tid_conflicts` and `JournalStats.tid_conflicts`) rather than dropped in silence.
- ``trades``: one round trip (entry → flat): entry/exit time and average price, size, expected edge (the
  signal's), realised edge (gross price move captured, bps of entry), slippage (entry fill vs the signal
  price, adverse positive), time to flat, fees and PnL (net of fees).
- ``events``: connect / disconnect / reject / hard_stop / hard_stop_cleared / reconcile / journal_dropped
  / duplicate_tid …, with a JSON ``detail``.

Examples for the report (issue 7)::

    -- fill rate of entries per market: filled (fully or partly) / all resolved entries
    SELECT market, AVG(final_state IN ('filled', 'partial')) FROM orders
     WHERE reason = 'entry' AND final_state IS NOT NULL GROUP BY market;
    -- expected vs realised edge, slippage, time to flat, PnL per market
    SELECT market, COUNT(*), AVG(expected_edge_bps), AVG(realised_edge_bps), AVG(slippage_bps),
           AVG(time_to_flat_ms), SUM(pnl), SUM(fees) FROM trades GROUP BY market;
    -- edge after fees and slippage, in bps of entry notional
    SELECT market, AVG(pnl / (entry_px * size) * 1e4) FROM trades GROUP BY market;
    -- flatten success: reduce-only orders that filled / all resolved reduce-only orders
    SELECT AVG(final_state = 'filled') FROM orders WHERE reduce_only = 1 AND final_state IS NOT NULL;

Why ~950 lines: the journal owns the file format end to end — schema and migrations, the record types
with their validators, the writer, the producers' sink, the writer task and the read-only helpers —
so a format change is one file's change.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias, get_args

import attrs
import trio

from hip3_trio.execution.nonce import wall_clock_ms
from hip3_trio.validators import finite_decimal, optional

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_FLUSH_DEADLINE_S",
    "DEFAULT_MAX_BATCH",
    "JOURNAL_FILENAME",
    "ORDER_FINAL_STATES",
    "SCHEMA_VERSION",
    "EventRecord",
    "FillRecord",
    "Journal",
    "JournalError",
    "JournalSink",
    "JournalStats",
    "JournalUnavailable",
    "OrderFinalState",
    "OrderRecord",
    "OrderUpdateRecord",
    "Record",
    "Side",
    "SignalRecord",
    "TradeRecord",
    "WriteRunner",
    "journal_path",
    "open_journal_read_only",
    "run_journal",
    "side_of",
    "write_in_thread",
]

log = logging.getLogger(__name__)

JOURNAL_FILENAME: Final = "journal.sqlite3"
#: Numbered schema changes: `_MIGRATIONS[n]` takes a journal from version n - 1 to n (version 1 is
#: `_SCHEMA`). Applied in order, from the file's `user_version`, in the same transaction as the stamp.
_MIGRATIONS: Final[Mapping[int, tuple[str, ...]]] = {
    # 2: a round trip whose entry could not be found (a position learned by reconciliation) is flagged.
    2: (
        "ALTER TABLE trades ADD COLUMN reconstructed INTEGER NOT NULL DEFAULT 0 "
        "CHECK (reconstructed IN (0, 1))",
    ),
    # 3: each signal's cost (issue 15): the round-trip threshold it had to beat and the one-leg taker
    # fee inside it, in bps (NULL on rows written before).
    3: (
        "ALTER TABLE signals ADD COLUMN cost_bps REAL",
        "ALTER TABLE signals ADD COLUMN fee_bps REAL",
    ),
}
SCHEMA_VERSION: Final = max(_MIGRATIONS)
DEFAULT_CAPACITY: Final = 10_000
DEFAULT_MAX_BATCH: Final = 500
DEFAULT_FLUSH_DEADLINE_S: Final = 5.0

Side: TypeAlias = Literal["buy", "sell"]
OrderFinalState: TypeAlias = Literal[
    "filled",  # fully filled
    "partial",  # partly filled, the rest canceled (IOC)
    "rejected",  # refused by the venue (including an IOC that found nothing to match)
    "canceled",  # canceled before any fill
    "timeout",  # no reply in time and reconciled as never executed
    "not_sent",  # never left the process (disconnect before send, shutdown)
    "unknown",  # the outcome could not be established
    "dry_run",  # --dry-run: would have been sent
]
ORDER_FINAL_STATES: Final[frozenset[str]] = frozenset(get_args(OrderFinalState))


class JournalError(Exception):
    """The journal database cannot be used (damaged, not a database, wrong journal mode, newer schema).

    The message is one line naming the file: the command line prints it and exits 3.
    """


class JournalUnavailable(Exception):
    """The journal cannot be read: missing, not a hip3-trio journal, a newer schema, or SQLite failed."""


def side_of(is_buy: bool) -> Side:
    """The journal's side for a buy/sell flag."""
    return "buy" if is_buy else "sell"


# --- record validation ------------------------------------------------------------------------------


def _ms(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative int (ms), got {value!r}")


def _int64(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63
    ):
        raise ValueError(f"{attribute.name} must be an int in [0, 2**63), got {value!r}")


def _text(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _side(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in ("buy", "sell"):
        raise ValueError(f"{attribute.name} must be 'buy' or 'sell', got {value!r}")


def _bool(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be a bool, got {value!r}")


def _final_state(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and value not in ORDER_FINAL_STATES:
        raise ValueError(f"{attribute.name} must be one of {sorted(ORDER_FINAL_STATES)}, got {value!r}")


_decimal = finite_decimal
_opt_decimal = optional(finite_decimal)
_opt_ms = optional(_ms)
_opt_text = optional(_text)


# --- records ----------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SignalRecord:
    """A detector signal and what became of it: acted on (``cloid`` set) or refused (``refused_reason``)."""

    time_ms: int = attrs.field(validator=_ms)
    market: str = attrs.field(validator=_text)
    side: Side = attrs.field(validator=_side)
    price: Decimal = attrs.field(validator=_decimal)
    size: Decimal = attrs.field(validator=_decimal)
    expected_edge_bps: Decimal = attrs.field(validator=_decimal)
    oracle_px: Decimal = attrs.field(validator=_decimal)
    best_px: Decimal = attrs.field(validator=_decimal)
    acted: bool = attrs.field(validator=_bool)
    refused_reason: str | None = attrs.field(default=None, validator=_opt_text)
    cloid: str | None = attrs.field(default=None, validator=_opt_text)
    cost_bps: Decimal | None = attrs.field(default=None, validator=_opt_decimal)
    fee_bps: Decimal | None = attrs.field(default=None, validator=_opt_decimal)

    def __attrs_post_init__(self) -> None:
        if self.acted == (self.refused_reason is not None):
            raise ValueError("a signal is either acted on or refused with a reason, not both or neither")


@attrs.frozen(kw_only=True)
class OrderRecord:
    """An order as submitted (inserted once per cloid; a repeat keeps the first)."""

    cloid: str = attrs.field(validator=_text)
    market: str = attrs.field(validator=_text)
    side: Side = attrs.field(validator=_side)
    price: Decimal = attrs.field(validator=_decimal)
    size: Decimal = attrs.field(validator=_decimal)
    reduce_only: bool = attrs.field(validator=_bool)
    # Why it was sent: "entry", "time_stop", "flatten_all", "exit", ...
    reason: str = attrs.field(validator=_text)
    submitted_ms: int = attrs.field(validator=_ms)


@attrs.frozen(kw_only=True)
class OrderUpdateRecord:
    """What became of an order. Fields left None keep their stored value (an ack, then the final state).

    The first ``acked_ms`` wins; ``final_state``/``filled_sz``/``avg_px``/``oid``/``error`` take the
    latest non-None value (an ``unknown`` order later reconciled becomes ``filled``).
    """

    cloid: str = attrs.field(validator=_text)
    market: str = attrs.field(validator=_text)
    time_ms: int = attrs.field(validator=_ms)
    acked_ms: int | None = attrs.field(default=None, validator=_opt_ms)
    final_state: OrderFinalState | None = attrs.field(default=None, validator=_final_state)
    filled_sz: Decimal | None = attrs.field(default=None, validator=_opt_decimal)
    avg_px: Decimal | None = attrs.field(default=None, validator=_opt_decimal)
    oid: int | None = attrs.field(default=None, validator=_int64)
    error: str | None = attrs.field(default=None, validator=_opt_text)


@attrs.frozen(kw_only=True)
class FillRecord:
    """One fill from ``userFills``/``orderUpdates``; unique by ``tid`` (the venue's trade id)."""

    tid: int = attrs.field(validator=_int64)
    time_ms: int = attrs.field(validator=_ms)
    market: str = attrs.field(validator=_text)
    side: Side = attrs.field(validator=_side)
    px: Decimal = attrs.field(validator=_decimal)
    sz: Decimal = attrs.field(validator=_decimal)
    fee: Decimal = attrs.field(validator=_decimal)
    closed_pnl: Decimal = attrs.field(default=Decimal(0), validator=_decimal)
    crossed: bool = attrs.field(default=True, validator=_bool)
    cloid: str | None = attrs.field(default=None, validator=_opt_text)
    oid: int | None = attrs.field(default=None, validator=_int64)


@attrs.frozen(kw_only=True)
class TradeRecord:
    """A round trip from entry to flat, with the metrics the report needs.

    ``side`` is the entry side (buy = long). ``realised_edge_bps`` is the gross price move captured in
    bps of the entry price (long: (exit − entry) / entry × 10⁴); ``slippage_bps`` is the entry fill
    against the signal price, adverse positive; ``pnl`` is net of ``fees``; ``time_to_flat_ms`` runs from
    the entry fill to the position being flat again.
    """

    market: str = attrs.field(validator=_text)
    side: Side = attrs.field(validator=_side)
    size: Decimal = attrs.field(validator=_decimal)
    entry_time_ms: int = attrs.field(validator=_ms)
    entry_px: Decimal = attrs.field(validator=_decimal)
    exit_time_ms: int = attrs.field(validator=_ms)
    exit_px: Decimal = attrs.field(validator=_decimal)
    expected_edge_bps: Decimal | None = attrs.field(validator=_opt_decimal)
    realised_edge_bps: Decimal = attrs.field(validator=_decimal)
    slippage_bps: Decimal | None = attrs.field(validator=_opt_decimal)
    time_to_flat_ms: int = attrs.field(validator=_ms)
    pnl: Decimal = attrs.field(validator=_decimal)
    fees: Decimal = attrs.field(validator=_decimal)
    entry_cloid: str | None = attrs.field(default=None, validator=_opt_text)
    exit_cloid: str | None = attrs.field(default=None, validator=_opt_text)
    # What flattened it: "time_stop", "flatten_all", "exit", ...
    exit_reason: str | None = attrs.field(default=None, validator=_opt_text)
    # Its entry could not be found (a position learned by reconciliation): figures are approximate.
    reconstructed: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))


@attrs.frozen(kw_only=True)
class EventRecord:
    """Something that happened: connect, disconnect, reject, hard_stop, hard_stop_cleared, reconcile, ...

    ``detail`` must be JSON-serialisable (Decimals and other scalars are written as strings); this is
    checked here, in the producer, so a bad event can never fail a whole journal batch.
    """

    time_ms: int = attrs.field(validator=_ms)
    kind: str = attrs.field(validator=_text)
    detail: Mapping[str, Any] = attrs.field(factory=dict)
    detail_json: str = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        text = json.dumps(dict(self.detail), sort_keys=True, default=str, separators=(",", ":"))
        object.__setattr__(self, "detail_json", text)


Record: TypeAlias = SignalRecord | OrderRecord | OrderUpdateRecord | FillRecord | TradeRecord | EventRecord


# --- the database -----------------------------------------------------------------------------------

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS signals (
    id                INTEGER PRIMARY KEY,
    time_ms           INTEGER NOT NULL,
    market            TEXT    NOT NULL,
    side              TEXT    NOT NULL CHECK (side IN ('buy', 'sell')),
    price             REAL    NOT NULL,
    size              REAL    NOT NULL,
    expected_edge_bps REAL    NOT NULL,
    oracle_px         REAL    NOT NULL,
    best_px           REAL    NOT NULL,
    acted             INTEGER NOT NULL CHECK (acted IN (0, 1)),
    refused_reason    TEXT,
    cloid             TEXT
);
CREATE INDEX IF NOT EXISTS signals_market_time ON signals (market, time_ms);

CREATE TABLE IF NOT EXISTS orders (
    cloid        TEXT PRIMARY KEY,
    market       TEXT    NOT NULL,
    side         TEXT    CHECK (side IN ('buy', 'sell')),
    price        REAL,
    size         REAL,
    reduce_only  INTEGER CHECK (reduce_only IN (0, 1)),
    reason       TEXT,
    submitted_ms INTEGER,
    acked_ms     INTEGER,
    final_state  TEXT,
    filled_sz    REAL    NOT NULL DEFAULT 0,
    avg_px       REAL,
    oid          INTEGER,
    error        TEXT,
    updated_ms   INTEGER
);
CREATE INDEX IF NOT EXISTS orders_market_submitted ON orders (market, submitted_ms);

CREATE TABLE IF NOT EXISTS fills (
    id         INTEGER PRIMARY KEY,
    tid        INTEGER NOT NULL UNIQUE,
    time_ms    INTEGER NOT NULL,
    market     TEXT    NOT NULL,
    side       TEXT    NOT NULL CHECK (side IN ('buy', 'sell')),
    px         REAL    NOT NULL,
    sz         REAL    NOT NULL,
    fee        REAL    NOT NULL,
    closed_pnl REAL    NOT NULL,
    crossed    INTEGER NOT NULL CHECK (crossed IN (0, 1)),
    cloid      TEXT,
    oid        INTEGER
);
CREATE INDEX IF NOT EXISTS fills_market_time ON fills (market, time_ms);
CREATE INDEX IF NOT EXISTS fills_cloid ON fills (cloid);

CREATE TABLE IF NOT EXISTS trades (
    id                INTEGER PRIMARY KEY,
    market            TEXT    NOT NULL,
    side              TEXT    NOT NULL CHECK (side IN ('buy', 'sell')),
    size              REAL    NOT NULL,
    entry_time_ms     INTEGER NOT NULL,
    entry_px          REAL    NOT NULL,
    exit_time_ms      INTEGER NOT NULL,
    exit_px           REAL    NOT NULL,
    expected_edge_bps REAL,
    realised_edge_bps REAL    NOT NULL,
    slippage_bps      REAL,
    time_to_flat_ms   INTEGER NOT NULL,
    pnl               REAL    NOT NULL,
    fees              REAL    NOT NULL,
    entry_cloid       TEXT,
    exit_cloid        TEXT,
    exit_reason       TEXT
);
CREATE INDEX IF NOT EXISTS trades_market_exit ON trades (market, exit_time_ms);

CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    detail  TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_kind_time ON events (kind, time_ms);
"""

_INSERT_SIGNAL: Final = """
INSERT INTO signals (time_ms, market, side, price, size, expected_edge_bps, oracle_px, best_px, acted,
                     refused_reason, cloid, cost_bps, fee_bps)
VALUES (:time_ms, :market, :side, :price, :size, :expected_edge_bps, :oracle_px, :best_px, :acted,
        :refused_reason, :cloid, :cost_bps, :fee_bps)
"""

# The intent of an order. A repeat keeps the first submission; a row created by an earlier update
# (an order this process only learned about by reconciliation) gets its missing intent filled in.
_UPSERT_ORDER: Final = """
INSERT INTO orders (cloid, market, side, price, size, reduce_only, reason, submitted_ms)
VALUES (:cloid, :market, :side, :price, :size, :reduce_only, :reason, :submitted_ms)
ON CONFLICT (cloid) DO UPDATE SET
    side = COALESCE(orders.side, excluded.side),
    price = COALESCE(orders.price, excluded.price),
    size = COALESCE(orders.size, excluded.size),
    reduce_only = COALESCE(orders.reduce_only, excluded.reduce_only),
    reason = COALESCE(orders.reason, excluded.reason),
    submitted_ms = COALESCE(orders.submitted_ms, excluded.submitted_ms)
"""

# The outcome of an order: None parameters keep what is stored, so applying an update twice is a no-op.
_UPSERT_ORDER_UPDATE: Final = """
INSERT INTO orders (cloid, market, acked_ms, final_state, filled_sz, avg_px, oid, error, updated_ms)
VALUES (:cloid, :market, :acked_ms, :final_state, COALESCE(:filled_sz, 0), :avg_px, :oid, :error, :time_ms)
ON CONFLICT (cloid) DO UPDATE SET
    acked_ms = COALESCE(orders.acked_ms, :acked_ms),
    final_state = COALESCE(:final_state, orders.final_state),
    filled_sz = COALESCE(:filled_sz, orders.filled_sz),
    avg_px = COALESCE(:avg_px, orders.avg_px),
    oid = COALESCE(:oid, orders.oid),
    error = COALESCE(:error, orders.error),
    updated_ms = MAX(COALESCE(orders.updated_ms, 0), :time_ms)
"""

_INSERT_FILL: Final = """
INSERT OR IGNORE INTO fills (tid, time_ms, market, side, px, sz, fee, closed_pnl, crossed, cloid, oid)
VALUES (:tid, :time_ms, :market, :side, :px, :sz, :fee, :closed_pnl, :crossed, :cloid, :oid)
"""

_INSERT_TRADE: Final = """
INSERT INTO trades (market, side, size, entry_time_ms, entry_px, exit_time_ms, exit_px, expected_edge_bps,
                    realised_edge_bps, slippage_bps, time_to_flat_ms, pnl, fees, entry_cloid, exit_cloid,
                    exit_reason, reconstructed)
VALUES (:market, :side, :size, :entry_time_ms, :entry_px, :exit_time_ms, :exit_px, :expected_edge_bps,
        :realised_edge_bps, :slippage_bps, :time_to_flat_ms, :pnl, :fees, :entry_cloid, :exit_cloid,
        :exit_reason, :reconstructed)
"""

_INSERT_EVENT: Final = "INSERT INTO events (time_ms, kind, detail) VALUES (:time_ms, :kind, :detail)"

# A fill's content: every column but its key, named as the record's fields.
_FILL_COLUMNS: Final = tuple(f.name for f in attrs.fields(FillRecord) if f.name != "tid")
_SELECT_FILL: Final = f"SELECT {', '.join(_FILL_COLUMNS)} FROM fills WHERE tid = ?"

_STATEMENTS: Final[Mapping[type, str]] = {
    SignalRecord: _INSERT_SIGNAL,
    OrderRecord: _UPSERT_ORDER,
    OrderUpdateRecord: _UPSERT_ORDER_UPDATE,
    FillRecord: _INSERT_FILL,
    TradeRecord: _INSERT_TRADE,
    EventRecord: _INSERT_EVENT,
}


def _sql_value(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)  # REAL column: exact for the <= 15 significant digits journaled here
    if isinstance(value, bool):
        return int(value)
    return value


def _params(record: Record) -> dict[str, object]:
    if isinstance(record, EventRecord):
        return {"time_ms": record.time_ms, "kind": record.kind, "detail": record.detail_json}
    return {name: _sql_value(value) for name, value in attrs.asdict(record, recurse=False).items()}


def _tid_conflict(
    conn: sqlite3.Connection, fill: FillRecord, params: Mapping[str, object]
) -> EventRecord | None:
    """For a fill whose tid is already stored: None if the stored row says the same (a replay), else a
    ``duplicate_tid`` event with each differing column as [stored, new], stamped with the new fill's time
    (the journal has no clock of its own)."""
    stored = conn.execute(_SELECT_FILL, (fill.tid,)).fetchone()
    differs = {
        column: [old, params[column]]
        for column, old in zip(_FILL_COLUMNS, stored, strict=True)
        if old != params[column]
    }
    if not differs:
        return None
    return EventRecord(
        time_ms=fill.time_ms, kind="duplicate_tid", detail={"tid": fill.tid, "differs": differs}
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """Raise `JournalError` unless ``PRAGMA quick_check`` finds the file sound.

    quick_check reads every page (O(file size), well under a second for a journal of tens of MB) and
    checks the b-tree structure, without the index-content cross-check of the slower integrity_check.
    A new, empty file passes. SQLite reports some damage as rows (several lines each, joined into one
    here) and some by raising `sqlite3.DatabaseError`, which `Journal.open` turns into `JournalError`.
    """
    problems = [_one_line(str(row[0])) for row in conn.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise _damaged(path, f"PRAGMA quick_check: {problems[0]}{more}")


def _damaged(path: Path, why: str) -> JournalError:
    return JournalError(
        f"the journal {path} is damaged ({why}); "
        "move it and its -wal/-shm files aside (keep them: they hold the trade records) to start a new one"
    )


class Journal:
    """The SQLite journal file. Open with `Journal.open`; write batches with `write`; `close` when done."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        # Fills whose tid was already stored with different content (committed writes only).
        self.tid_conflicts = 0

    @classmethod
    def open(
        cls,
        state_dir: str | Path,
        *,
        filename: str = JOURNAL_FILENAME,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> Journal:
        """Open (creating if needed) the journal in `state_dir`, in WAL mode, schema up to date.

        An existing file must pass SQLite's ``PRAGMA quick_check`` first: a damaged journal would lose
        the trade records this engine exists to measure, so it is refused (`JournalError`, one line)
        rather than written to. The file is left untouched as evidence; move it aside to start afresh.
        """
        directory = Path(state_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / filename
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
            _check_integrity(conn, path)
            cls._prepare(conn, synchronous)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.OperationalError):  # cannot open, locked, I/O error, ...
                raise JournalError(
                    f"the journal {path} cannot be used: {_one_line(str(exc))}; check that the file and "
                    f"{directory} are writable by this user, the disk is not full, and no other engine "
                    "holds the journal"
                ) from exc
            if isinstance(exc, sqlite3.DatabaseError):  # "file is not a database", "… malformed"
                raise _damaged(path, _one_line(str(exc))) from exc
            raise
        return cls(conn, path)

    @staticmethod
    def _prepare(conn: sqlite3.Connection, synchronous: str) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(f"the journal needs WAL mode but SQLite chose {mode!r} (network filesystem?)")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA busy_timeout = 5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"the journal has schema version {version}, newer than this engine's {SCHEMA_VERSION}"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version == 0:  # a new file: version 1's tables, then every migration like an old file
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            for number in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[number]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def write(self, records: Iterable[Record]) -> int:
        """Write `records` in one transaction: all of them or, on any error, none (then re-raise).

        Blocking (disk I/O, fsync): call it from a worker thread in async code (`run_journal` does).
        Returns the number of records written.
        """
        batch = list(records)
        if not batch:
            return 0
        conflicts: list[EventRecord] = []
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for record in batch:
                    statement = _STATEMENTS.get(type(record))
                    if statement is None:
                        raise TypeError(f"not a journal record: {type(record).__name__}")
                    params = _params(record)
                    inserted = conn.execute(statement, params).rowcount
                    if isinstance(record, FillRecord) and inserted == 0:
                        conflict = _tid_conflict(conn, record, params)
                        if conflict is not None:
                            conn.execute(_INSERT_EVENT, _params(conflict))
                            conflicts.append(conflict)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self.tid_conflicts += len(conflicts)
        for conflict in conflicts:
            log.warning(
                "journal: fill tid %s seen again with different content %s; the first is kept",
                conflict.detail["tid"],
                conflict.detail_json,
            )
        return len(batch)

    def query(self, sql: str, params: Sequence[object] | Mapping[str, object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement and return all rows (a convenience for tests and small tools)."""
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def close(self) -> None:
        """Close the connection (idempotent). Do not close while `run_journal` may still write."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- reading it from outside the engine (the report, the operator's hardstop command) ---------------


def journal_path(state_dir: Path) -> Path:
    """Where the engine keeps its journal in `state_dir`."""
    return state_dir / JOURNAL_FILENAME


def open_journal_read_only(path: Path) -> sqlite3.Connection:
    """Open an existing journal read-only (a ``mode=ro`` URI: never creates or writes the database).

    Raises `JournalUnavailable` when the file is missing or is not a journal this version can read.
    SQLite may still create the ``-wal``/``-shm`` side files WAL readers need; they are harmless.
    """
    if not path.is_file():
        raise JournalUnavailable(
            f"no journal at {path} (wrong --state-dir or $HIP3_STATE_DIR? the engine creates it on its "
            "first run)"
        )
    try:
        conn = sqlite3.connect(
            path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None, timeout=5.0
        )
    except sqlite3.Error as exc:
        raise JournalUnavailable(f"cannot open the journal {path}: {exc}") from exc
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        conn.close()
        raise JournalUnavailable(f"cannot read the journal {path}: {exc}") from exc
    if version < 1 or version > SCHEMA_VERSION:
        conn.close()
        raise JournalUnavailable(
            f"{path} is not a journal this version can read (schema version {version}, "
            f"expected 1..{SCHEMA_VERSION})"
        )
    return conn


# --- the producer side ------------------------------------------------------------------------------


@attrs.frozen
class JournalSinkStatistics:
    """A snapshot of the producers' handle: records queued, dropped (by type), drops not yet reported
    in the journal, and what waits in the channel for the writer."""

    sent: int
    dropped: int
    dropped_by_type: Mapping[str, int]
    unreported: int
    queued: int


@attrs.define
class JournalSink:
    """The producers' handle: `record` never blocks and never raises; a full journal drops and counts.

    Create with `JournalSink.open`, which also returns the receive channel for `run_journal`.
    """

    _send: trio.MemorySendChannel[Record]
    clock_ms: Callable[[], int] = wall_clock_ms
    sent: int = 0
    dropped: int = 0
    dropped_by_type: dict[str, int] = attrs.field(factory=dict)
    _unreported: dict[str, int] = attrs.field(factory=dict, init=False)

    @classmethod
    def open(
        cls, capacity: int = DEFAULT_CAPACITY, clock_ms: Callable[[], int] = wall_clock_ms
    ) -> tuple[JournalSink, trio.MemoryReceiveChannel[Record]]:
        """A sink and the channel `run_journal` drains, holding at most `capacity` records."""
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        send, receive = trio.open_memory_channel[Record](capacity)
        return cls(send, clock_ms=clock_ms), receive

    def record(self, record: Record) -> bool:
        """Queue `record` for the journal; False if it was dropped (journal full or gone)."""
        if self._unreported and not self._report_drops():
            self._drop(record)
            return False
        if self._try_send(record):
            return True
        self._drop(record)
        return False

    def statistics(self) -> JournalSinkStatistics:
        return JournalSinkStatistics(
            sent=self.sent,
            dropped=self.dropped,
            dropped_by_type=dict(self.dropped_by_type),
            unreported=sum(self._unreported.values()),
            queued=self._send.statistics().current_buffer_used,
        )

    def close(self) -> None:
        """No more records: `run_journal` writes what is queued and returns."""
        self._send.close()

    def _try_send(self, record: Record) -> bool:
        try:
            self._send.send_nowait(record)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        self.sent += 1
        return True

    def _drop(self, record: Record) -> None:
        name = type(record).__name__
        if not self._unreported:
            log.warning("journal channel full or closed: dropping records (counted)")
        self.dropped += 1
        self.dropped_by_type[name] = self.dropped_by_type.get(name, 0) + 1
        self._unreported[name] = self._unreported.get(name, 0) + 1

    def _report_drops(self) -> bool:
        """Journal the drops since the last report, if there is room now. True when reported."""
        counts = dict(sorted(self._unreported.items()))
        event = EventRecord(
            time_ms=self.clock_ms(),
            kind="journal_dropped",
            detail={"count": sum(counts.values()), "by_type": counts},
        )
        if not self._try_send(event):
            return False
        log.warning("journal resumed after dropping %d records: %s", sum(counts.values()), counts)
        self._unreported.clear()
        return True


# --- the journal task -------------------------------------------------------------------------------


@attrs.define
class JournalStats:
    """What the journal task did; read by the status line and the exit summary."""

    written: int = 0
    batches: int = 0
    failed: int = 0
    lost_on_exit: int = 0
    tid_conflicts: int = 0  # fills whose tid was already journaled with different content


def _drain_nowait(receive: trio.MemoryReceiveChannel[Record], into: list[Record], limit: int) -> None:
    while len(into) < limit:
        try:
            into.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return


WriteRunner: TypeAlias = Callable[[Callable[[list[Record]], int], list[Record]], Awaitable[int]]
"""How `run_journal` runs `Journal.write`: in a worker thread (the default), or inline in tests that use
Trio's autojump clock — a thread the clock cannot see would let virtual time jump ahead while the
disk works, making the timeline depend on the disk's speed."""


async def write_in_thread(write: Callable[[list[Record]], int], records: list[Record]) -> int:
    """The default `WriteRunner`: a worker thread, which finishes even if the caller is cancelled."""
    return await trio.to_thread.run_sync(write, records)


async def _write_batch(
    journal: Journal,
    batch: list[Record],
    stats: JournalStats,
    run_write: WriteRunner,
    lost: Callable[[Exception], None],
) -> None:
    """Write `batch` and empty it. If the batch fails, write its records one by one so a single bad
    record costs only itself (each failure is logged, counted in `JournalStats.failed` and passed to
    `lost`, never raised: the journal must not take trading down with it). Records still in `batch`
    when this is cancelled were not written."""
    try:
        await _write(journal, list(batch), stats, run_write)
    except Exception:
        log.exception("journal batch of %d records failed; retrying them one by one", len(batch))
    else:
        batch.clear()
        return
    while batch:
        record = batch[0]
        try:
            await _write(journal, [record], stats, run_write)
        except Exception as exc:
            stats.failed += 1
            log.exception("journal record failed and is lost: %r", record)
            lost(exc)
        del batch[0]


async def _write(
    journal: Journal, records: list[Record], stats: JournalStats, run_write: WriteRunner
) -> None:
    """One transaction; on success counts the records and any duplicate tids it met in `stats`."""
    conflicts = journal.tid_conflicts
    await run_write(journal.write, records)
    stats.written += len(records)
    stats.batches += 1
    stats.tid_conflicts += journal.tid_conflicts - conflicts


async def run_journal(
    receive: trio.MemoryReceiveChannel[Record],
    journal: Journal,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    flush_deadline_s: float = DEFAULT_FLUSH_DEADLINE_S,
    stats: JournalStats | None = None,
    run_write: WriteRunner = write_in_thread,
    on_failure: Callable[[str], None] | None = None,
) -> JournalStats:
    """Drain `receive` into `journal` until the senders close it; each batch is what was queued.

    Waits for one record, takes everything else already queued (up to `max_batch`), writes that as one
    transaction in a worker thread, repeats — so batches grow by themselves while the disk is slow and
    an idle journal writes each record at once. When cancelled, it still writes what it holds and what
    is queued in the channel, shielded, within `flush_deadline_s` (a write that has begun always
    completes); anything left after the deadline is counted in `lost_on_exit`. Closes `receive` on exit
    so later `JournalSink.record` calls count drops instead of filling a dead channel.

    A write error never leaves this task (it would cancel trading without a flatten). The first record
    lost to one is reported once to `on_failure` with ``"journal write failed: <error>"``: the engine
    latches its hard stop on it (a run whose trades cannot be recorded cannot be measured, so it must
    not trade). A batch that fails but whose records then all write one by one lost nothing and is only
    logged. Writing goes on after a failure, so the hard stop and the flatten are journaled if the disk
    recovers.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    stats = JournalStats() if stats is None else stats
    pending: list[Record] = []
    reported: list[str] = []

    def report_lost(exc: Exception) -> None:
        if reported:
            return
        reported.append(f"journal write failed: {type(exc).__name__}: {exc}")
        if on_failure is not None:
            on_failure(reported[0])

    try:
        while True:
            if not pending:
                try:
                    pending.append(await receive.receive())
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    break
            _drain_nowait(receive, pending, max_batch)
            await _write_batch(journal, pending, stats, run_write, report_lost)
    finally:
        with trio.move_on_after(flush_deadline_s, shield=True):
            while True:
                _drain_nowait(receive, pending, max_batch)
                if not pending:
                    break
                await _write_batch(journal, pending, stats, run_write, report_lost)
        lost = len(pending) + receive.statistics().current_buffer_used
        if lost:
            stats.lost_on_exit += lost
            log.error(
                "journal flush deadline (%.1f s) passed: %d records not written", flush_deadline_s, lost
            )
        receive.close()
    return stats
