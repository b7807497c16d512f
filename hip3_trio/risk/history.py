"""The risk monitor's history in the journal: how risk events are recorded, and how they are read back at
start-up so that the risk limits count across restarts.

The PLAN counts the automatic stops (cumulative loss, losses in a row, flatten failures) "over the whole
test (not per process)", and a crash loop under runit must not reset the budget. `RiskMonitor` counts in
memory; at start-up, before trading, the engine reads every risk event journaled since the hard stop was
last cleared (`read_risk_history`) and replays them with `RiskMonitor.restore`. Restoring runs the same
`on_event` step that a live event takes, so each limit is defined in one place and a restarted engine
trips exactly where an uninterrupted run would have.

Where each risk event is in the journal:

- `TradeClosed`: the ``trades`` table. The position book emits the journal's `ClosedTrade` and the
  monitor's `TradeClosed` together; ``pnl`` is the same net-of-fees amount and ``exit_time_ms`` the time.
- `OrderRejected`: ``events`` rows of kind ``reject``, detail ``market`` and ``message`` (the engine
  journals these itself).
- `FlattenFailed` and `SlippageMeasured`: ``events`` rows of kind ``flatten_failed`` (``market``,
  ``detail``) and ``slippage`` (``market``, ``bps``), written by `risk_event_record`.

Order: each table is read in insertion order, which is the order the engine routed the events, and the
two are merged by time. Only the order within one kind changes a counter (the streaks, the reject
window). Across kinds the order decides only which limit is reported first when two are crossed.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeAlias

from hip3_trio.journal import EventRecord, Journal
from hip3_trio.risk.monitor import FlattenFailed, OrderRejected, RiskEvent, SlippageMeasured, TradeClosed

__all__ = [
    "FLATTEN_FAILED_KIND",
    "REJECT_KIND",
    "SLIPPAGE_KIND",
    "EventRow",
    "TimedRiskEvent",
    "TradeRow",
    "read_risk_history",
    "risk_event_record",
    "risk_history",
]

log = logging.getLogger(__name__)

REJECT_KIND: Final = "reject"
FLATTEN_FAILED_KIND: Final = "flatten_failed"
SLIPPAGE_KIND: Final = "slippage"

TradeRow: TypeAlias = tuple[int, str, float]
"""A ``trades`` row as `read_risk_history` selects it: (exit_time_ms, market, pnl)."""
EventRow: TypeAlias = tuple[int, str, str]
"""An ``events`` row as `read_risk_history` selects it: (time_ms, kind, detail JSON)."""
TimedRiskEvent: TypeAlias = tuple[int, RiskEvent]
"""A risk event and its time in ms (the exchange clock), as `RiskMonitor.restore` replays it."""


def risk_event_record(event: FlattenFailed | SlippageMeasured, time_ms: int) -> EventRecord:
    """The journal event for `event`. `risk_history` reads it back as the same event."""
    if isinstance(event, FlattenFailed):
        detail: dict[str, object] = {"market": event.market, "detail": event.detail}
        if event.age_s is not None:
            detail["age_s"] = round(event.age_s, 3)
        return EventRecord(time_ms=time_ms, kind=FLATTEN_FAILED_KIND, detail=detail)
    return EventRecord(time_ms=time_ms, kind=SLIPPAGE_KIND, detail={"market": event.market, "bps": event.bps})


def _detail(text: str) -> dict[str, Any]:
    try:
        detail = json.loads(text)
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _event(kind: str, detail_json: str) -> RiskEvent | None:
    """The risk event in one ``events`` row (None for other kinds). A reject whose detail cannot be read
    counts as a non-benign reject (the safe side); a slippage row without a readable ``bps`` is skipped,
    because it says nothing about the streak."""
    detail = _detail(detail_json)
    market = str(detail.get("market", "?"))
    if kind == REJECT_KIND:
        return OrderRejected(market=market, message=str(detail.get("message", "")))
    if kind == FLATTEN_FAILED_KIND:
        return FlattenFailed(market=market, detail=str(detail.get("detail", "")))
    if kind == SLIPPAGE_KIND:
        try:
            bps = Decimal(str(detail["bps"]))
        except (KeyError, InvalidOperation):
            bps = Decimal("NaN")
        if not bps.is_finite():
            log.error("journaled slippage event without a readable bps: %s", detail_json)
            return None
        return SlippageMeasured(market=market, bps=bps)
    return None


def _usd(value: float) -> Decimal:
    """The amount journaled in a REAL column: `repr` is the shortest decimal that round-trips, which is
    the journaled amount (<= 15 significant digits); whole amounts lose the float's ".0" so that the
    reasons read as they do live ("$21", not "$21.0")."""
    amount = Decimal(repr(value))
    return amount.quantize(Decimal(1)) if amount == amount.to_integral_value() else amount


def _trades(rows: Iterable[TradeRow]) -> Iterator[TimedRiskEvent]:
    for time_ms, market, pnl in rows:
        yield time_ms, TradeClosed(market=market, pnl=_usd(pnl))


def _events(rows: Iterable[EventRow]) -> Iterator[TimedRiskEvent]:
    for time_ms, kind, detail_json in rows:
        event = _event(kind, detail_json)
        if event is not None:
            yield time_ms, event


def risk_history(trades: Iterable[TradeRow], events: Iterable[EventRow]) -> list[TimedRiskEvent]:
    """The risk events in journal rows, each table in its own (insertion) order, merged by time.

    Pure: no I/O. Rows of other event kinds are ignored.
    """
    return list(heapq.merge(_trades(trades), _events(events), key=lambda timed: timed[0]))


def read_risk_history(journal: Journal, *, since_ms: int | None) -> list[TimedRiskEvent]:
    """Every risk event journaled after `since_ms` (None: since the journal began). Only reads."""
    since = -1 if since_ms is None else since_ms
    trades = journal.query(
        "SELECT exit_time_ms, market, pnl FROM trades WHERE exit_time_ms > ? ORDER BY id", (since,)
    )
    events = journal.query(
        "SELECT time_ms, kind, detail FROM events WHERE kind IN (?, ?, ?) AND time_ms > ? ORDER BY id",
        (REJECT_KIND, FLATTEN_FAILED_KIND, SLIPPAGE_KIND, since),
    )
    return risk_history(trades, events)
