"""Alerts: what reaches a person when the engine needs one (issue 17), the producers' side.

The engine runs unattended for a week; the plan asks for an alert on the hard stop, a flatten failure,
a refused reduce-only order, and more. This module defines the alert kinds, their payload, the
``[alerts]`` config section and the producers' handle, `AlertSink`; `hip3_trio.webhook` sends them
(its own task, httpx, retries).

`AlertSink.alert(kind, market, text, **detail)` is synchronous and never blocks or raises, like
`JournalSink.record`: the trading core calls it inside its steps. It drops an alert of the same
(kind, market) as one queued within `dedupe_window_s` (counted as deduplicated, and the next one that
goes out says how many were suppressed), and an alert that finds the bounded queue full (counted as
dropped, logged). `AlertSink.off()` — the default everywhere, and what a run without a webhook gets —
does nothing.

Who calls what (each a one-line call where the event is already handled):

| kind | raised by |
|---|---|
| `hard_stop` | `TradingCore._route` (a risk limit's reason), `TradingCore.trip_hard_stop` |
| `journal_failure` | `TradingCore.trip_hard_stop(..., alert=JOURNAL_FAILURE)`, the journal task's callback |
| `flatten_failed`, `reduce_only_refused`, `position_corrected`, `unknown_order` | `TradingCore._route` |
| `reconnects` | `VenueLink.sync` → `AlertSink.on_reconnect` (more than N in 10 minutes) |
| `request_budget_low`, `request_budget_exhausted` | `TradingCore` (below the reserve; exhausted) |
| `recorder_failure` | `app.run_engine` (the recorder's callback: disk full, permission) |
| `engine_start`, `engine_stop` | `app.run_engine` |
| `test` | ``python -m hip3_trio alerts test`` |
"""

from __future__ import annotations

import enum
import logging
import socket
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import trio

from hip3_trio.execution.nonce import wall_clock_ms
from hip3_trio.validators import Invalid, ge, gt

__all__ = [
    "RECONNECT_WINDOW_S",
    "WEBHOOK_ENV_VAR",
    "Alert",
    "AlertKind",
    "AlertSink",
    "AlertStats",
    "AlertsConfig",
    "redact_url",
]

log = logging.getLogger(__name__)

WEBHOOK_ENV_VAR: Final = "HIP3_ALERT_WEBHOOK"
"""The webhook URL from the environment; it wins over ``[alerts] webhook_url`` (`config.resolve_alerts`)."""

RECONNECT_WINDOW_S: Final = 600.0
"""`reconnects` counts the reconnects of the last 10 minutes."""

#: Slack shows at most 40,000 characters of `text`, Discord 2,000 of `content`: keep under both.
MAX_TEXT: Final = 1900


class AlertKind(enum.StrEnum):
    """What happened. The value is the payload's `kind`."""

    HARD_STOP = "hard_stop"
    FLATTEN_FAILED = "flatten_failed"
    REDUCE_ONLY_REFUSED = "reduce_only_refused"
    JOURNAL_FAILURE = "journal_failure"
    POSITION_CORRECTED = "position_corrected"
    UNKNOWN_ORDER = "unknown_order"
    REQUEST_BUDGET_LOW = "request_budget_low"
    REQUEST_BUDGET_EXHAUSTED = "request_budget_exhausted"
    RECONNECTS = "reconnects"
    RECORDER_FAILURE = "recorder_failure"
    ENGINE_START = "engine_start"
    ENGINE_STOP = "engine_stop"
    TEST = "test"

    @property
    def severity(self) -> str:
        """``critical`` (trading stopped or money at risk), ``warning`` (look today) or ``info``."""
        return _SEVERITY[self]

    @property
    def headline(self) -> str:
        return _HEADLINES[self]


_SEVERITY: Final = {
    AlertKind.HARD_STOP: "critical",
    AlertKind.FLATTEN_FAILED: "critical",
    AlertKind.JOURNAL_FAILURE: "critical",
    AlertKind.REQUEST_BUDGET_EXHAUSTED: "critical",
    AlertKind.REDUCE_ONLY_REFUSED: "warning",
    AlertKind.POSITION_CORRECTED: "warning",
    AlertKind.UNKNOWN_ORDER: "warning",
    AlertKind.REQUEST_BUDGET_LOW: "warning",
    AlertKind.RECONNECTS: "warning",
    AlertKind.RECORDER_FAILURE: "warning",
    AlertKind.ENGINE_START: "info",
    AlertKind.ENGINE_STOP: "info",
    AlertKind.TEST: "info",
}

_HEADLINES: Final = {
    AlertKind.HARD_STOP: "HARD STOP latched",
    AlertKind.FLATTEN_FAILED: "flatten failed",
    AlertKind.JOURNAL_FAILURE: "journal failure, hard stop latched",
    AlertKind.REQUEST_BUDGET_EXHAUSTED: "request budget exhausted",
    AlertKind.REDUCE_ONLY_REFUSED: "reduce-only order refused",
    AlertKind.POSITION_CORRECTED: "position corrected by reconcile",
    AlertKind.UNKNOWN_ORDER: "unknown order escalated",
    AlertKind.REQUEST_BUDGET_LOW: "request budget low",
    AlertKind.RECONNECTS: "frequent reconnects",
    AlertKind.RECORDER_FAILURE: "recording stopped (trading goes on)",
    AlertKind.ENGINE_START: "engine started",
    AlertKind.ENGINE_STOP: "engine stopped",
    AlertKind.TEST: "test alert",
}


# --- the config section -----------------------------------------------------------------------------


def http_url(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An http:// or https:// URL with a host. The value is not echoed: a webhook URL is a secret."""
    if value is None:
        return
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("must be an http:// or https:// URL with a host (value not shown)", attribute.name)


@attrs.frozen(kw_only=True)
class AlertsConfig:
    """Where alerts go and how hard we try: the config file's ``[alerts]`` section.

    No `webhook_url` (and no ``HIP3_ALERT_WEBHOOK``) = alerts off. Durations in seconds."""

    # The endpoint that receives a JSON POST per alert (Slack or Discord incoming webhook, or your own).
    webhook_url: str | None = attrs.field(default=None, validator=http_url)
    # An alert of the same kind and market as one sent within this window is suppressed (0 = never).
    dedupe_window_s: float = attrs.field(default=300.0, validator=ge(0))
    # Alerts waiting to be sent; when full, new ones are dropped (counted, logged).
    queue_size: int = attrs.field(default=100, validator=ge(1))
    # Further attempts after a failed one (connection error, timeout, HTTP 5xx/408/429) ...
    retries: int = attrs.field(default=3, validator=ge(0))
    # ... after a pause that starts here and doubles.
    retry_backoff_s: float = attrs.field(default=2.0, validator=gt(0))
    # One attempt's whole deadline (connect, send, answer); also what the stop alert gets at exit.
    timeout_s: float = attrs.field(default=10.0, validator=gt(0))
    # Alert when there are more than this many reconnects within 10 minutes.
    max_reconnects_per_10min: int = attrs.field(default=5, validator=ge(0))

    @property
    def enabled(self) -> bool:
        return self.webhook_url is not None


def redact_url(url: str) -> str:
    """The URL without its path, query or credentials (a webhook's path is its secret): for logs."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{parts.hostname}{port}/…"


# --- the alert --------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Alert:
    """One alert as queued. `detail` values are JSON-encoded with `str` for anything else (Decimal)."""

    kind: AlertKind
    market: str | None
    text: str
    detail: Mapping[str, object]
    time_ms: int
    env: str
    host: str
    suppressed: int = 0

    @property
    def message(self) -> str:
        """The human line: ``[hip3-trio testnet] HARD STOP latched: cumulative loss 20.5 > 20``."""
        where = f" {self.market}" if self.market else ""
        more = f" ({self.suppressed} similar suppressed)" if self.suppressed else ""
        line = f"[hip3-trio {self.env}] {self.kind.headline}{where}: {self.text}{more}"
        return line if len(line) <= MAX_TEXT else line[: MAX_TEXT - 1] + "…"

    def payload(self) -> dict[str, object]:
        """The JSON body: `text` (Slack, Discord's /slack endpoint) and `content` (Discord) carry the
        line; the other fields are for whoever processes the alert."""
        message = self.message
        return {
            "text": message,
            "content": message,
            "kind": self.kind.value,
            "severity": self.kind.severity,
            "market": self.market,
            "detail": dict(self.detail),
            "time": datetime.fromtimestamp(self.time_ms / 1000, UTC).isoformat(timespec="milliseconds"),
            "time_ms": self.time_ms,
            "env": self.env,
            "host": self.host,
            "suppressed": self.suppressed,
        }


@attrs.define
class AlertStats:
    """Counters shared by the sink (queued, deduplicated, dropped) and the sending task (sent, failed)."""

    queued: int = 0
    deduplicated: int = 0
    dropped: int = 0
    sent: int = 0
    failed: int = 0


# --- the producers' handle --------------------------------------------------------------------------


class AlertSink:
    """Queue alerts without blocking (see the module docstring). Create with `open` or `off`."""

    def __init__(
        self,
        send: trio.MemorySendChannel[Alert] | None,
        *,
        env: str = "",
        config: AlertsConfig | None = None,
        clock: Callable[[], float] = trio.current_time,
        clock_ms: Callable[[], int] = wall_clock_ms,
        host: str | None = None,
    ) -> None:
        self._send = send
        self.env = env
        self.config = config if config is not None else AlertsConfig()
        self.stats = AlertStats()
        self._clock = clock
        self._clock_ms = clock_ms
        self._host = host if host is not None else socket.gethostname()
        self._last: dict[tuple[AlertKind, str | None], float] = {}
        self._suppressed: Counter[tuple[AlertKind, str | None]] = Counter()
        self._reconnects: deque[float] = deque()
        self._dropping = False

    @classmethod
    def open(
        cls,
        config: AlertsConfig,
        *,
        env: str,
        clock: Callable[[], float] = trio.current_time,
        clock_ms: Callable[[], int] = wall_clock_ms,
        host: str | None = None,
    ) -> tuple[AlertSink, trio.MemoryReceiveChannel[Alert]]:
        """A sink and the channel the sending task drains (`config.queue_size` alerts at most)."""
        send, receive = trio.open_memory_channel[Alert](config.queue_size)
        sink = cls(send, env=env, config=config, clock=clock, clock_ms=clock_ms, host=host)
        return sink, receive

    @classmethod
    def off(cls) -> AlertSink:
        """A sink that discards everything (alerts not configured; tests)."""
        return cls(None, host="")

    @property
    def enabled(self) -> bool:
        return self._send is not None

    def alert(self, kind: AlertKind, market: str | None, text: str, **detail: object) -> bool:
        """Queue an alert; False if it was suppressed (same kind and market within the window), dropped
        (queue full or closed) or alerts are off. Never blocks, never raises."""
        if self._send is None:
            return False
        key = (kind, market)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.config.dedupe_window_s:
            self._suppressed[key] += 1
            self.stats.deduplicated += 1
            log.debug("alert %s %s suppressed (one went out %.0f s ago)", kind, market or "", now - last)
            return False
        alert = self.build(kind, market, text, suppressed=self._suppressed.get(key, 0), **detail)
        try:
            self._send.send_nowait(alert)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.stats.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.warning("alert queue full or closed: dropping alerts (counted); dropped %s", kind)
            return False
        if self._dropping:
            self._dropping = False
            log.warning("alert queue accepting again after %d dropped in all", self.stats.dropped)
        self._last[key] = now
        self._suppressed.pop(key, None)
        self.stats.queued += 1
        return True

    def build(
        self, kind: AlertKind, market: str | None, text: str, *, suppressed: int = 0, **detail: object
    ) -> Alert:
        """An alert stamped now, for this run's env and host (not queued)."""
        return Alert(
            kind=kind,
            market=market,
            text=text,
            detail=detail,
            time_ms=self._clock_ms(),
            env=self.env,
            host=self._host,
            suppressed=suppressed,
        )

    def on_reconnect(self, now: float) -> bool:
        """A connection after the first: alert once there are more than `max_reconnects_per_10min`
        within `RECONNECT_WINDOW_S` (then deduplicated like any alert)."""
        if self._send is None:
            return False
        window = self._reconnects
        window.append(now)
        while window and window[0] <= now - RECONNECT_WINDOW_S:
            window.popleft()
        limit = self.config.max_reconnects_per_10min
        if len(window) <= limit:
            return False
        return self.alert(
            AlertKind.RECONNECTS,
            None,
            f"{len(window)} reconnects in the last 10 minutes (more than {limit})",
            reconnects=len(window),
            limit=limit,
        )

    def request_budget(self, remaining: int, limit: int | None = None, market: str | None = None) -> bool:
        """The venue's request budget is low (`remaining` > 0) or exhausted (`remaining` <= 0); the
        caller decides what "low" is (`TradingCore`: below `[limits] request_reserve`)."""
        of = f" of {limit}" if limit is not None else ""
        if remaining <= 0:
            text = f"no requests left{of}: new orders are refused until the budget refills"
            return self.alert(
                AlertKind.REQUEST_BUDGET_EXHAUSTED, market, text, remaining=remaining, limit=limit
            )
        text = f"{remaining}{of} requests left"
        return self.alert(AlertKind.REQUEST_BUDGET_LOW, market, text, remaining=remaining, limit=limit)

    def close(self) -> None:
        """No more alerts: the sending task sends what is queued (within its deadline) and returns."""
        if self._send is not None:
            self._send.close()
