"""The testnet checklist (PLAN.md, T#1..T#10) from the journal: ``report --checklist testnet``.

Each item is PASS, FAIL or NOT SEEN, with the journal evidence (counts, times, the cloid or event that
shows it). NOT SEEN means the journal holds nothing that shows the item either way (the run did not
exercise it, or an older engine did not journal what it needs): the operator has to make it happen —
e.g. a deliberate burst for T#8 — and run the checklist again. The checklist passes only when all ten
items PASS. ``--since`` applies: only rows in the window count (fills are looked up by cloid in the
whole journal, since an order's fills may be stamped a little after it).

What each item reads (kinds are ``events.kind``):

- T#1 connect and subscribe: a ``connect`` followed by a ``reconcile`` before the next ``connect``. The
  engine reconciles only once the ``orderUpdates`` subscription is acknowledged and the ``userFills``
  snapshot has arrived, so that pair is a completed subscription. FAIL: connects, none completed.
- T#2 signature accepted: an order the venue answered for (filled, or acknowledged without an
  action-level error). FAIL: any order error or ``reject`` message matching `SIGNATURE_ERROR`.
- T#3 IOC accepted: an entry order (``reason = 'entry'``) filled or partly filled. FAIL: entries
  resolved, none filled.
- T#4 fills received: every filled (or partly filled) order has a ``fills`` row with its cloid.
  FAIL: one without.
- T#5 positions tracked correctly: a ``reconcile`` with result ``Reconciled`` after the first fill, and
  no ``position_corrected`` outside a process's first reconciliation (after a restart the book starts
  empty and learns open positions there: shown, not a failure). FAIL: any other correction.
- T#6 flatten works: a reduce-only order filled. FAIL: a ``flatten_failed`` event, or reduce-only
  orders resolved and none filled.
- T#7 the time stop flattens on its own: a trade closed with ``exit_reason = 'time_stop'``, each within
  the flatten deadline. FAIL: one past it, or time-stop orders resolved without any such trade.
- T#8 no nonce collisions in a burst: an ``inflight_peak`` with ``peak`` >= `BURST_MIN_INFLIGHT` (that
  many posts, each with its own nonce, awaiting their replies together) and no nonce error. FAIL: a
  ``nonce_error`` event, or an order error / ``reject`` / ``venue_error`` message mentioning a nonce.
- T#9 inflight within the limit: ``inflight_peak`` events, every ``peak`` <= its ``limit``.
- T#10 retry after a reject: a rejected order followed by a filled order in its market; every rejected
  reduce-only order followed by a filled reduce-only order or a closed trade in its market (the plan:
  "a rejected flatten is retried"). FAIL: a rejected flatten after which the position never closed.

The two event kinds T#8 and T#9 need (journaled by the venue link; a journal without them leaves both
items NOT SEEN):

- `INFLIGHT_PEAK_KIND` (``inflight_peak``), detail ``{"minute_ms": int, "peak": int, "limit": int}``:
  for each exchange minute in which posts were sent, the highest number of posts awaiting a reply and
  the inflight limit in force; journaled when the next minute's first post goes out (or at disconnect),
  so the minute is ``minute_ms``, not the event's time (used when ``minute_ms`` is missing).
- `NONCE_ERROR_KIND` (``nonce_error``), detail ``{"nonce": int, "message": str}``: a post the venue
  refused because of its nonce (the nonce sent, the reply's message).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal, TypeAlias

import attrs

from hip3_trio.ops.figures import ACCEPTED_STATES, ENTRY_REASON, EXCLUDED_STATES, percentile
from hip3_trio.ops.rows import EventRow, FillRow, JournalRows, OrderRow, format_time_ms, in_window
from hip3_trio.ops.verdict import FLATTEN_FAILED_KIND

__all__ = [
    "BURST_MIN_INFLIGHT",
    "CHECKLISTS",
    "FAIL",
    "INFLIGHT_PEAK_KIND",
    "NONCE_ERROR",
    "NONCE_ERROR_KIND",
    "NOT_SEEN",
    "PASS",
    "SIGNATURE_ERROR",
    "Checklist",
    "Item",
    "Status",
    "checklist_json",
    "evaluate_testnet",
    "format_checklist",
]

Status: TypeAlias = Literal["PASS", "FAIL", "NOT SEEN"]
PASS: Final = "PASS"
FAIL: Final = "FAIL"
NOT_SEEN: Final = "NOT SEEN"
CHECKLISTS: Final = ("testnet",)

#: Per exchange minute with posts: ``{"minute_ms": int, "peak": int, "limit": int}`` (see the docstring).
INFLIGHT_PEAK_KIND: Final = "inflight_peak"
#: When the venue refuses a post for its nonce: ``{"nonce": int, "message": str}``.
NONCE_ERROR_KIND: Final = "nonce_error"
#: Posts in flight together that make a burst for T#8.
BURST_MIN_INFLIGHT: Final = 3

CONNECT_KIND: Final = "connect"
RECONCILE_KIND: Final = "reconcile"
RECONCILED_RESULT: Final = "Reconciled"
POSITION_CORRECTED_KIND: Final = "position_corrected"
REJECT_KIND: Final = "reject"
VENUE_ERROR_KIND: Final = "venue_error"
TIME_STOP_REASON: Final = "time_stop"
ACTION_ERROR_PREFIX: Final = "action error"  # a whole action refused (executor.on_post_outcome)

#: The venue's words for an action whose signature it does not accept.
SIGNATURE_ERROR: Final = re.compile(r"signature|user or api wallet .* does not exist", re.IGNORECASE)
#: The venue's words for a refused nonce ("Invalid nonce: duplicate nonce N", "… nonce too low …").
NONCE_ERROR: Final = re.compile(r"nonce", re.IGNORECASE)


@attrs.frozen(kw_only=True)
class Item:
    """One checklist item: its plan number, what it checks, the outcome and the evidence lines."""

    number: str  # "T#1"
    name: str
    status: Status
    evidence: tuple[str, ...]


@attrs.frozen(kw_only=True)
class Checklist:
    """A whole checklist; `passed` when every item passes."""

    name: str
    since_ms: int | None
    items: tuple[Item, ...]

    @property
    def passed(self) -> bool:
        return all(item.status == PASS for item in self.items)


# --- helpers ------------------------------------------------------------------------------------------


def _t(ms: int | None) -> str:
    return "?" if ms is None else format_time_ms(ms)


def _int(detail: Any, key: str) -> int | None:
    value = detail.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _order(o: OrderRow) -> str:
    return f"{o.cloid or '?'} on {o.market} at {_t(o.time_ms)}"


@attrs.frozen
class _Error:
    time_ms: int | None
    market: str
    message: str
    cloid: str | None = None

    def __str__(self) -> str:
        who = f"{self.cloid} on {self.market}" if self.cloid else self.market
        return f"{who} at {_t(self.time_ms)}: {self.message}"


def _errors(pattern: re.Pattern[str], orders: Iterable[OrderRow], events: Iterable[EventRow]) -> list[_Error]:
    """Order errors, then ``reject``/``venue_error`` messages not already seen on an order, matching
    `pattern` (a reject is journaled both as the order's error and as a ``reject`` event)."""
    found = [
        _Error(o.time_ms, o.market, o.error, o.cloid) for o in orders if o.error and pattern.search(o.error)
    ]
    seen = {(e.market, e.message) for e in found}
    for event in events:
        if event.kind == REJECT_KIND:
            message = str(event.detail.get("message", ""))
        elif event.kind == VENUE_ERROR_KIND:
            message = str(event.detail.get("m", event.detail.get("message", "")))
        else:
            continue
        market = str(event.detail.get("market", "-"))
        if pattern.search(message) and (market, message) not in seen:
            found.append(_Error(event.time_ms, market, message))
    return found


def _first(errors: Sequence[_Error], what: str) -> list[str]:
    lines = [f"{len(errors)} {what}; first: {errors[0]}"]
    if len(errors) > 1:
        lines.append(f"last: {errors[-1]}")
    return lines


# --- the items ------------------------------------------------------------------------------------------


def _connect(rows: JournalRows) -> tuple[Status, list[str]]:
    connects = [e for e in rows.events if e.kind == CONNECT_KIND]
    if not connects:
        return NOT_SEEN, ["no connect event in the window"]
    synced: list[tuple[EventRow, EventRow]] = []
    pending: EventRow | None = None
    for e in rows.events:
        if e.kind == CONNECT_KIND:
            pending = e
        elif e.kind == RECONCILE_KIND and pending is not None:
            synced.append((pending, e))
            pending = None
    if not synced:
        lines = [
            f"{len(connects)} connects, none reached its first reconcile (orderUpdates ack and userFills "
            f"snapshot not both seen); last connect at {_t(connects[-1].time_ms)}"
        ]
        venue = [e for e in rows.events if e.kind == VENUE_ERROR_KIND]
        if venue:
            lines.append(f"{len(venue)} venue errors; first: {dict(venue[0].detail)}")
        return FAIL, lines
    connect, reconcile = synced[0]
    return PASS, [
        f"{len(connects)} connects, {len(synced)} subscribed and reconciled",
        f"first: connect at {_t(connect.time_ms)}, reconcile ({reconcile.detail.get('result', '?')}) "
        f"{(reconcile.time_ms - connect.time_ms) / 1000:.3f} s later",
    ]


def _accepted_by_venue(o: OrderRow) -> bool:
    if o.final_state in ACCEPTED_STATES or o.filled_sz > 0:
        return True
    return o.acked_ms is not None and not (o.error or "").startswith(ACTION_ERROR_PREFIX)


def _signature(rows: JournalRows) -> tuple[Status, list[str]]:
    refused = _errors(SIGNATURE_ERROR, rows.orders, rows.events)
    accepted = [o for o in rows.orders if _accepted_by_venue(o)]
    if refused:
        return FAIL, [*_first(refused, "signature errors"), f"{len(accepted)} orders accepted"]
    if not accepted:
        return NOT_SEEN, ["no order answered by the venue"]
    filled = [o for o in accepted if o.final_state in ACCEPTED_STATES]
    label, first = ("first filled", filled[0]) if filled else ("first", accepted[0])
    return PASS, [
        f"{len(accepted)} orders answered by the venue, no signature error",
        f"{label}: {_order(first)} ({first.final_state or 'acked'})",
    ]


def _ioc(rows: JournalRows) -> tuple[Status, list[str]]:
    entries = [
        o
        for o in rows.orders
        if o.reason == ENTRY_REASON and o.final_state is not None and o.final_state not in EXCLUDED_STATES
    ]
    filled = [o for o in entries if o.final_state in ACCEPTED_STATES]
    if not entries:
        return NOT_SEEN, ["no entry IOC resolved by the venue"]
    if not filled:
        lines = [f"{len(entries)} entry IOCs resolved, none filled"]
        errors = [o for o in entries if o.error]
        if errors:
            lines.append(f"first error: {_order(errors[0])}: {errors[0].error}")
        return FAIL, lines
    partial = sum(o.final_state == "partial" for o in filled)
    return PASS, [
        f"{len(filled)} of {len(entries)} resolved entry IOCs filled ({partial} partly)",
        f"first: {_order(filled[0])}",
    ]


def _fills(rows: JournalRows, all_fills: Sequence[FillRow]) -> tuple[Status, list[str]]:
    filled = [o for o in rows.orders if o.cloid and (o.final_state in ACCEPTED_STATES or o.filled_sz > 0)]
    if not filled:
        return NOT_SEEN, [f"no filled order ({len(rows.fills)} fills in the window)"]
    by_cloid: dict[str, list[FillRow]] = {}
    for f in all_fills:
        if f.cloid:
            by_cloid.setdefault(f.cloid, []).append(f)
    missing = [o for o in filled if o.cloid not in by_cloid]
    if missing:
        return FAIL, [
            f"{len(missing)} of {len(filled)} filled orders have no fill on userFills",
            f"first: {_order(missing[0])}",
        ]
    first = by_cloid[str(filled[0].cloid)][0]
    return PASS, [
        f"all {len(filled)} filled orders have their fills ({len(rows.fills)} fills in the window)",
        f"first: tid {first.tid} for {filled[0].cloid} on {first.market} at {_t(first.time_ms)}",
    ]


def _positions(rows: JournalRows) -> tuple[Status, list[str]]:
    startup: list[EventRow] = []
    wrong: list[EventRow] = []
    first_of_process = False  # the latest reconcile is a process's first (after its connect n=1)
    awaiting_first = False
    for e in rows.events:
        if e.kind == CONNECT_KIND:
            awaiting_first = _int(e.detail, "n") == 1
        elif e.kind == RECONCILE_KIND:
            first_of_process, awaiting_first = awaiting_first, False
        elif e.kind == POSITION_CORRECTED_KIND:
            (startup if first_of_process else wrong).append(e)

    def corrected(e: EventRow) -> str:
        d = e.detail
        return f"{d.get('market', '?')} {d.get('old', '?')} -> {d.get('new', '?')} at {_t(e.time_ms)}"

    note = (
        [f"{len(startup)} positions learned at a start-up reconciliation; first: {corrected(startup[0])}"]
        if startup
        else []
    )
    if wrong:
        return FAIL, [
            f"{len(wrong)} position corrections by reconciliation; first: {corrected(wrong[0])}",
            *note,
        ]
    if not rows.fills:
        return NOT_SEEN, ["no fill in the window: no position to track", *note]
    first_fill = rows.fills[0].time_ms
    checked = [
        e
        for e in rows.events
        if e.kind == RECONCILE_KIND
        and e.time_ms >= first_fill
        and e.detail.get("result") == RECONCILED_RESULT
    ]
    if not checked:
        return NOT_SEEN, [f"no reconciliation after the first fill at {_t(first_fill)}", *note]
    return PASS, [
        f"{len(checked)} reconciliations after the first fill ({_t(first_fill)}) found the book right",
        *note,
    ]


def _flatten(rows: JournalRows) -> tuple[Status, list[str]]:
    resolved = [o for o in rows.orders if o.reduce_only and o.final_state not in (None, "dry_run")]
    filled = [o for o in resolved if o.final_state == "filled"]
    failed = [e for e in rows.events if e.kind == FLATTEN_FAILED_KIND]
    if failed:
        e = failed[0]
        return FAIL, [
            f"{len(failed)} flatten_failed events; first on {e.detail.get('market', '?')} "
            f"at {_t(e.time_ms)}: {e.detail.get('detail', '')}",
            f"{len(filled)} of {len(resolved)} reduce-only IOCs filled",
        ]
    if not resolved:
        return NOT_SEEN, ["no reduce-only order resolved"]
    if not filled:
        return FAIL, [f"{len(resolved)} reduce-only IOCs resolved, none filled; first: {_order(resolved[0])}"]
    reasons = sorted({o.reason or "?" for o in filled})
    return PASS, [
        f"{len(filled)} of {len(resolved)} reduce-only IOCs filled ({', '.join(reasons)})",
        f"first: {_order(filled[0])}",
    ]


def _time_stop(rows: JournalRows, deadline_ms: int) -> tuple[Status, list[str]]:
    trades = [t for t in rows.trades if t.exit_reason == TIME_STOP_REASON]
    orders = [
        o for o in rows.orders if o.reason == TIME_STOP_REASON and o.final_state not in (None, "dry_run")
    ]
    if not trades and not orders:
        return NOT_SEEN, ["no time-stop order or trade"]
    late = [t for t in trades if t.time_to_flat_ms > deadline_ms]
    if late:
        t = late[0]
        return FAIL, [
            f"{len(late)} of {len(trades)} time-stop trades flat later than {deadline_ms / 1000:g} s "
            f"after entry; first: {t.market} entered {_t(t.entry_time_ms)}, "
            f"flat after {t.time_to_flat_ms / 1000:.1f} s"
        ]
    if not trades:
        return FAIL, [
            f"{len(orders)} time-stop orders resolved, no trade closed by one; first: {_order(orders[0])}"
        ]
    ttf = [float(t.time_to_flat_ms) for t in trades]
    return PASS, [
        f"{len(trades)} positions closed by the time stop, time to flat median "
        f"{percentile(ttf, 0.5) / 1000:.1f} s, max {max(ttf) / 1000:.1f} s "
        f"(deadline {deadline_ms / 1000:g} s)",
        f"first: {trades[0].market} exit {trades[0].exit_cloid or '?'} at {_t(trades[0].exit_time_ms)}",
    ]


@attrs.frozen
class _Peak:
    minute_ms: int
    peak: int
    limit: int | None


def _peaks(rows: JournalRows) -> list[_Peak]:
    peaks = []
    for e in rows.events:
        if e.kind == INFLIGHT_PEAK_KIND:
            peak = _int(e.detail, "peak")
            if peak is not None:
                minute = _int(e.detail, "minute_ms")
                peaks.append(_Peak(e.time_ms if minute is None else minute, peak, _int(e.detail, "limit")))
    return peaks


def _nonces(rows: JournalRows) -> tuple[Status, list[str]]:
    events = [e for e in rows.events if e.kind == NONCE_ERROR_KIND]
    errors = [
        _Error(e.time_ms, f"nonce {e.detail.get('nonce', '?')}", str(e.detail.get("message", "")))
        for e in events
    ]
    errors += _errors(NONCE_ERROR, rows.orders, rows.events)
    if errors:
        return FAIL, _first(errors, f"nonce errors ({len(events)} {NONCE_ERROR_KIND} events)")
    peaks = _peaks(rows)
    bursts = [p for p in peaks if p.peak >= BURST_MIN_INFLIGHT]
    if not bursts:
        if not peaks:
            return NOT_SEEN, [f"no {INFLIGHT_PEAK_KIND} event: no burst to judge (no nonce error either)"]
        top = max(p.peak for p in peaks)
        return NOT_SEEN, [f"no burst: highest inflight peak {top} < {BURST_MIN_INFLIGHT} (no nonce error)"]
    largest = max(bursts, key=lambda p: p.peak)
    return PASS, [
        f"{len(bursts)} minutes with a burst (>= {BURST_MIN_INFLIGHT} posts in flight), no nonce error",
        f"largest: {largest.peak} posts in flight in the minute from {_t(largest.minute_ms)}",
    ]


def _inflight(rows: JournalRows) -> tuple[Status, list[str]]:
    peaks = _peaks(rows)
    if not peaks:
        return NOT_SEEN, [
            f"no {INFLIGHT_PEAK_KIND} event (no post sent, or an engine that does not journal it)"
        ]
    over = [p for p in peaks if p.limit is not None and p.peak > p.limit]
    if over:
        first = over[0]
        return FAIL, [
            f"{len(over)} minutes over the limit; first: {first.peak} > {first.limit} in the minute from "
            f"{_t(first.minute_ms)}"
        ]
    top = max(peaks, key=lambda p: p.peak)
    limit = "?" if top.limit is None else top.limit
    return PASS, [
        f"{len(peaks)} minutes, highest peak {top.peak} of limit {limit} "
        f"in the minute from {_t(top.minute_ms)}"
    ]


def _retry(rows: JournalRows) -> tuple[Status, list[str]]:
    orders = sorted(
        (o for o in rows.orders if o.time_ms is not None), key=lambda o: (o.time_ms, o.cloid or "")
    )
    rejected = [(i, o) for i, o in enumerate(orders) if o.final_state == "rejected"]
    if not rejected:
        return NOT_SEEN, ["no rejected order"]
    stuck: list[OrderRow] = []
    recovered: list[tuple[OrderRow, OrderRow | None]] = []
    for i, r in rejected:
        later = [o for o in orders[i + 1 :] if o.market == r.market]
        if r.reduce_only:
            retry = next((o for o in later if o.reduce_only and o.final_state == "filled"), None)
            closed = any(
                t.market == r.market and r.time_ms is not None and t.exit_time_ms >= r.time_ms
                for t in rows.trades
            )
            if retry is None and not closed:
                stuck.append(r)
            else:
                recovered.append((r, retry))
        else:
            retry = next((o for o in later if o.final_state in ACCEPTED_STATES), None)
            if retry is not None:
                recovered.append((r, retry))
    if stuck:
        return FAIL, [
            f"{len(stuck)} rejected flattens not followed by a filled flatten or a closed trade; "
            f"first: {_order(stuck[0])}: {stuck[0].error or ''}".rstrip(": ")
        ]
    if not recovered:
        return NOT_SEEN, [f"{len(rejected)} rejected orders, none followed by a filled order in its market"]
    r, retry = recovered[0]
    after = f"then {_order(retry)} filled" if retry is not None else "then the position closed"
    return PASS, [
        f"{len(rejected)} rejected orders; {len(recovered)} followed by a fill in their market",
        f"first: {_order(r)} rejected ({r.error or 'no message'}); {after}",
    ]


_ITEMS: Final[tuple[tuple[str, str], ...]] = (
    ("T#1", "connect and subscribe"),
    ("T#2", "signature accepted"),
    ("T#3", "IOC accepted"),
    ("T#4", "fills received"),
    ("T#5", "positions tracked correctly"),
    ("T#6", "flatten works"),
    ("T#7", "time stop flattens on its own"),
    ("T#8", "no nonce collision in a burst"),
    ("T#9", "inflight within the limit"),
    ("T#10", "retry after a reject"),
)


def evaluate_testnet(
    rows: JournalRows, *, since_ms: int | None = None, flatten_deadline_ms: int = 60_000
) -> Checklist:
    """The plan's testnet checklist on `rows` (all of the journal), judged on the window from `since_ms`."""
    window = in_window(rows, since_ms)
    checks: tuple[Callable[[], tuple[Status, list[str]]], ...] = (
        lambda: _connect(window),
        lambda: _signature(window),
        lambda: _ioc(window),
        lambda: _fills(window, rows.fills),
        lambda: _positions(window),
        lambda: _flatten(window),
        lambda: _time_stop(window, flatten_deadline_ms),
        lambda: _nonces(window),
        lambda: _inflight(window),
        lambda: _retry(window),
    )
    items = []
    for (number, name), check in zip(_ITEMS, checks, strict=True):
        status, evidence = check()
        items.append(Item(number=number, name=name, status=status, evidence=tuple(evidence)))
    return Checklist(name="testnet", since_ms=since_ms, items=tuple(items))


def format_checklist(checklist: Checklist, *, header: str) -> list[str]:
    """The checklist as text: the header, each item with its status and evidence, then the summary."""
    lines = [header, ""]
    for item in checklist.items:
        lines.append(f"{item.number:<5} {item.name:<32} {item.status}")
        lines += [f"        {line}" for line in item.evidence]
    counts = {status: sum(i.status == status for i in checklist.items) for status in (PASS, FAIL, NOT_SEEN)}
    lines += [
        "",
        f"checklist {checklist.name}: {counts[PASS]} PASS, {counts[FAIL]} FAIL, "
        f"{counts[NOT_SEEN]} NOT SEEN — " + ("passed" if checklist.passed else "not passed"),
    ]
    return lines


def checklist_json(checklist: Checklist) -> dict[str, Any]:
    """The checklist as a JSON-ready dict."""
    return {
        "checklist": checklist.name,
        "since_ms": checklist.since_ms,
        "passed": checklist.passed,
        "items": [
            {"number": i.number, "name": i.name, "status": i.status, "evidence": list(i.evidence)}
            for i in checklist.items
        ],
    }
