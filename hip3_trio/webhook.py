"""The alert task: POSTs each queued `Alert` as JSON to the configured webhook, over httpx.

httpx runs on Trio natively: its transport, httpcore, asks sniffio which event loop runs it and, under
Trio, uses its Trio backend (``trio.open_tcp_stream``, ``trio.SSLStream``); no asyncio, no thread.

Delivery of one alert: up to `1 + retries` attempts, each with one deadline (`timeout_s`) for the
whole exchange; a connection error, a timeout or an HTTP 5xx, 408 or 429 answer is retried after a
pause (`retry_backoff_s`, doubling); any 2xx is success; any other answer (400, 403, 404: a wrong URL
or payload) fails at once. An alert that is not delivered is counted (`AlertStats.failed`) and logged;
the task goes on with the next.

This task runs beside the trading nursery (`app.run_engine`), and nothing in it may end trading:
- a transport or HTTP failure is an outcome, counted and logged on one line;
- anything else raised while sending one alert is a bug: logged at ERROR with its traceback, counted
  as failed, and the task goes on with the next alert; a bug outside that (in the loop itself) ends
  the task, logged the same way, and the engine trades on without alerts (`AlertSink` then counts
  every alert as dropped);
- cancellation is not caught, except to give what is queued (the stop alert of an engine that is
  failing) one last attempt within `timeout_s`, shielded.
At an orderly stop the app closes the sink and calls `finish`: the task sends what is queued within
`timeout_s`, then returns; what is left is counted as dropped.

The webhook URL is a secret (Slack and Discord put the token in the path): it is logged only as
`redact_url` shows it, and httpx's own request log line (INFO, full URL) is raised to WARNING.
"""

from __future__ import annotations

import json
import logging
from typing import Final

import attrs
import httpx
import trio

from hip3_trio.alerts import Alert, AlertKind, AlertsConfig, AlertSink, AlertStats, redact_url

__all__ = ["AlertSender", "SendResult", "open_alerts", "send_alert"]

log = logging.getLogger(__name__)

# httpx logs every request at INFO with its full URL, which holds the webhook's token.
logging.getLogger("httpx").setLevel(logging.WARNING)

RETRYABLE_STATUS: Final = frozenset({408, 429})
HEADERS: Final = {"Content-Type": "application/json", "User-Agent": "hip3-trio-alerts"}


@attrs.frozen
class SendResult:
    """The outcome of one alert's delivery: `ok`, and the last failure's description if not."""

    ok: bool
    attempts: int
    error: str | None = None


def _client(config: AlertsConfig) -> httpx.AsyncClient:
    # httpx's own timeouts per operation, and our deadline over the whole attempt (a trickling answer).
    return httpx.AsyncClient(timeout=httpx.Timeout(config.timeout_s), headers=HEADERS)


async def _attempt(client: httpx.AsyncClient, url: str, body: bytes, timeout_s: float) -> tuple[str, bool]:
    """One POST: ("", False) on a 2xx answer, else (what went wrong, whether to retry)."""
    with trio.move_on_after(timeout_s) as deadline:
        try:
            response = await client.post(url, content=body)
        except httpx.HTTPError as exc:  # connect, read/write, timeout, protocol, decoding errors
            return f"{type(exc).__name__}: {exc or 'no detail'}", True
    if deadline.cancelled_caught:
        return f"no answer within {timeout_s:g} s", True
    status = response.status_code
    if 200 <= status < 300:
        return "", False
    return f"HTTP {status} {response.reason_phrase}", status >= 500 or status in RETRYABLE_STATUS


async def send_alert(
    client: httpx.AsyncClient, alert: Alert, config: AlertsConfig, *, retries: int | None = None
) -> SendResult:
    """Deliver `alert` to `config.webhook_url` with retries (see the module docstring)."""
    url = config.webhook_url
    if url is None:
        raise ValueError("no webhook configured")
    body = json.dumps(alert.payload(), default=str).encode()
    tries = 1 + (config.retries if retries is None else retries)
    pause = config.retry_backoff_s
    error = ""
    for attempt in range(1, tries + 1):
        error, retry = await _attempt(client, url, body, config.timeout_s)
        if not error:
            return SendResult(True, attempt)
        if not retry or attempt == tries:
            return SendResult(False, attempt, error)
        log.warning(
            "alert %s to %s: attempt %d of %d failed (%s); again in %.1f s",
            alert.kind,
            redact_url(url),
            attempt,
            tries,
            error,
            pause,
        )
        await trio.sleep(pause)
        pause *= 2
    raise AssertionError("unreachable")  # pragma: no cover


class AlertSender:
    """The alert task of one run: `run` drains the sink's channel (see the module docstring)."""

    def __init__(
        self, config: AlertsConfig, receive: trio.MemoryReceiveChannel[Alert], stats: AlertStats
    ) -> None:
        if config.webhook_url is None:
            raise ValueError("an alert sender needs a webhook_url")
        self.config = config
        self.stats = stats
        self._receive = receive
        self._scope = trio.CancelScope()
        self._sending: Alert | None = None  # the alert being delivered (lost if the task ends now)

    def finish(self) -> None:
        """The orderly stop (after `AlertSink.close`): send what is queued within `timeout_s`."""
        self._scope.deadline = min(self._scope.deadline, trio.current_time() + self.config.timeout_s)

    async def run(self) -> None:
        """Send every queued alert until the sink is closed (then return) or the task is cancelled."""
        target = redact_url(self.config.webhook_url or "")
        log.info("alerts on: POST to %s", target)
        try:
            async with _client(self.config) as client:
                with self._scope:
                    try:
                        async for alert in self._receive:
                            self._sending = alert
                            await self._deliver(client, alert)
                    except trio.Cancelled:
                        if not self._scope.cancel_called:  # the engine is failing: last chance
                            with trio.move_on_after(self.config.timeout_s, shield=True):
                                await self._flush(client)
                        raise
        except Exception:
            log.exception("alerts: the alert task failed (a bug); alerts are off, trading goes on")
        finally:
            self._count_lost()

    async def _flush(self, client: httpx.AsyncClient) -> None:
        """One attempt each for the alert that was interrupted and for everything queued."""
        interrupted, self._sending = self._sending, None
        if interrupted is not None:
            await self._deliver(client, interrupted, retries=0)
        while True:
            try:
                alert = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            await self._deliver(client, alert, retries=0)

    async def _deliver(self, client: httpx.AsyncClient, alert: Alert, *, retries: int | None = None) -> None:
        target = redact_url(self.config.webhook_url or "")
        self._sending = alert
        try:
            result = await send_alert(client, alert, self.config, retries=retries)
        except Exception:
            self._sending = None
            self.stats.failed += 1
            log.exception(
                "alerts: sending %s failed with a bug; that alert is lost, trading goes on", alert.kind
            )
            return
        self._sending = None
        if result.ok:
            self.stats.sent += 1
            log.info("alert %s sent to %s", _name(alert), target)
        else:
            self.stats.failed += 1
            log.error(
                "alert %s NOT delivered to %s after %d attempt(s): %s (%s)",
                _name(alert),
                target,
                result.attempts,
                result.error,
                alert.text,
            )

    def _count_lost(self) -> None:
        """What is still queued when the task ends is lost: counted as dropped; later alerts, too."""
        lost = 0 if self._sending is None else 1
        self._sending = None
        while True:
            try:
                self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            lost += 1
        self._receive.close()
        if lost:
            self.stats.dropped += lost
            log.error("alerts: %d alert(s) still queued or being sent at exit were not sent", lost)


def _name(alert: Alert) -> str:
    return f"{alert.kind} {alert.market}" if alert.market else str(alert.kind)


def open_alerts(config: AlertsConfig, *, env: str) -> tuple[AlertSink, AlertSender | None]:
    """The run's sink and its sending task (None, and a sink that discards, when alerts are off)."""
    if not config.enabled:
        return AlertSink.off(), None
    sink, receive = AlertSink.open(config, env=env)
    return sink, AlertSender(config, receive, sink.stats)


async def send_test_alert(config: AlertsConfig, *, env: str) -> SendResult:
    """One `test` alert, with the configured retries (``python -m hip3_trio alerts test``)."""
    alert = AlertSink(None, env=env).build(
        AlertKind.TEST, None, "sent by `python -m hip3_trio alerts test`: alerts reach you"
    )
    async with _client(config) as client:
        return await send_alert(client, alert, config)
