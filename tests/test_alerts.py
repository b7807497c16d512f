"""Alerts (issue 17, item 1): the sink, the sending task against a real HTTP server, the command, the
engine end to end.

The webhook is a real HTTP server on 127.0.0.1 in every test that sends: a small Trio server in the
test's own run, or (for `alerts test`, which calls `trio.run` itself) `http.server` in a thread.

Clocks, and why each test is deterministic:
- The sink's dedupe and reconnect window take an injected clock: those tests use no socket and no Trio
  clock at all.
- The sending task's tests run on Trio's real clock (pytest-trio's default) with pauses of
  milliseconds, and assert outcomes and counts, never durations: under the autojump clock, virtual time
  jumps whenever every task waits, including for a socket, so a real server's timing is not virtual.
- The end-to-end test runs the engine on the simulator under the autojump clock, as the other engine
  tests do, with the webhook as a Trio server in the same run on a loopback socket: loopback delivers
  each write into the peer's buffer before the writer waits again, so the exchange is ready at Trio's
  next I/O check and virtual time does not move for it; the alert timeout is large (60 s) so that even
  a jump taken while a connection is being set up cannot fail an attempt.
"""

from __future__ import annotations

import http.server
import json
import logging
import re
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from hip3_trio import webhook
from hip3_trio.alerts import Alert, AlertKind, AlertsConfig, AlertSink, redact_url
from hip3_trio.engine import Engine, EngineSettings
from hip3_trio.execution.nonce import NonceManager
from hip3_trio.execution.time_stop import TimeStopConfig
from hip3_trio.journal import JournalSink
from hip3_trio.ops import alerts_cmd
from hip3_trio.position.records import (
    FlattenFailed,
    OrderRejected,
    PositionCorrected,
    TradeClosed,
    UnknownOrderEscalated,
)
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.risk.monitor import RiskConfig
from hip3_trio.webhook import AlertSender
from hip3_trio.wire.actions import Cloid
from tests.engine_rig import MARKETS, Rig, quiet_settings, run_rig

SECRET = "T000/B000/s3cr3t"
FAST = AlertsConfig(retry_backoff_s=0.01, timeout_s=5.0)


# --- a real webhook on 127.0.0.1 -------------------------------------------------------------------


@attrs.define
class Hook:
    """A webhook server: records each POST (headers, JSON body) and answers with the scripted statuses
    in order (the last one repeats); with `hang`, it reads the request and never answers."""

    statuses: list[int]
    hang: bool = False
    port: int = 0
    requests: list[tuple[dict[str, str], dict[str, Any]]] = attrs.Factory(list)
    arrived: trio.lowlevel.ParkingLot = attrs.Factory(trio.lowlevel.ParkingLot)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/{SECRET}"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, body in self.requests]

    def kinds(self) -> list[str]:
        return [body["kind"] for body in self.bodies]

    async def wait_for(self, kind: str) -> None:
        while kind not in self.kinds():
            await self.arrived.park()


async def _serve_one(hook: Hook, stream: trio.SocketStream) -> None:
    async with stream:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers["content-length"]):
            body += await stream.receive_some(65536)
        hook.requests.append((headers, json.loads(body)))
        hook.arrived.unpark_all()
        if hook.hang:
            await trio.sleep_forever()
        status = hook.statuses.pop(0) if len(hook.statuses) > 1 else hook.statuses[0]
        await stream.send_all(
            f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )


@asynccontextmanager
async def webhook_server(*statuses: int, hang: bool = False) -> AsyncIterator[Hook]:
    hook = Hook(list(statuses or (200,)), hang=hang)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, partial(_serve_one, hook), 0, host="127.0.0.1")
        )
        hook.port = listeners[0].socket.getsockname()[1]
        yield hook
        nursery.cancel_scope.cancel()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class WatchedSender(AlertSender):
    """The sending task, telling the test after each alert it finished with, and when it ends."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.changed = trio.lowlevel.ParkingLot()
        self.done = trio.Event()

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self.done.set()

    async def _deliver(self, client: Any, alert: Alert, *, retries: int | None = None) -> None:
        try:
            await super()._deliver(client, alert, retries=retries)
        finally:
            self.changed.unpark_all()

    async def wait_counted(self, total: int) -> None:
        """Until `total` alerts are sent or failed."""
        with trio.fail_after(10):
            while self.stats.sent + self.stats.failed < total:
                await self.changed.park()


@asynccontextmanager
async def sender_beside_trading(config: AlertsConfig) -> AsyncIterator[tuple[AlertSink, WatchedSender]]:
    """A sink and its sending task in a nursery beside a stand-in trading task, as the app runs them.
    Anything escaping the task would cancel that nursery and fail the test; on leaving, the orderly stop
    (close, finish) lets the task send what is queued."""
    sink, receive = AlertSink.open(config, env="testnet", host="box")
    sender = WatchedSender(config, receive, sink.stats)
    trading_ticks: list[int] = []

    async def trading() -> None:
        while True:
            trading_ticks.append(1)
            await trio.sleep(0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trading)
        nursery.start_soon(sender.run)
        yield sink, sender
        sink.close()
        sender.finish()
        with trio.fail_after(10):
            await sender.done.wait()
        assert trading_ticks, "trading never ran"
        nursery.cancel_scope.cancel()


# --- payload ----------------------------------------------------------------------------------------


async def test_an_alert_is_a_json_post_with_text_for_slack_and_discord_and_its_fields() -> None:
    async with webhook_server(200) as hook:
        config = attrs.evolve(FAST, webhook_url=hook.url)
        async with sender_beside_trading(config) as (sink, sender):
            assert sink.alert(AlertKind.FLATTEN_FAILED, "xyz:COIN", "not flat 61 s after entry", age_s=61.5)
            await sender.wait_counted(1)
    ((headers, body),) = hook.requests
    assert headers["content-type"] == "application/json"
    text = "[hip3-trio testnet] flatten failed xyz:COIN: not flat 61 s after entry"
    assert body == {
        "text": text,
        "content": text,
        "kind": "flatten_failed",
        "severity": "critical",
        "market": "xyz:COIN",
        "detail": {"age_s": 61.5},
        "time": body["time"],
        "time_ms": body["time_ms"],
        "env": "testnet",
        "host": "box",
        "suppressed": 0,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", body["time"])
    assert sink.stats.sent == 1 and sink.stats.failed == 0


def test_payload_encodes_decimals_and_caps_the_text() -> None:
    alert = AlertSink(None, env="mainnet", host="h").build(
        AlertKind.POSITION_CORRECTED, "xyz:NVDA", "x" * 5000, old=Decimal("0.5"), new=Decimal(0)
    )
    body = json.loads(json.dumps(alert.payload(), default=str))
    assert body["detail"] == {"old": "0.5", "new": "0"}
    assert len(body["text"]) == 1900 and body["text"].endswith("…")
    assert body["severity"] == "warning"


def test_every_kind_has_a_severity_and_a_headline() -> None:
    for kind in AlertKind:
        assert kind.severity in {"critical", "warning", "info"}
        assert kind.headline


def test_the_webhook_url_is_logged_without_its_secret() -> None:
    assert redact_url(f"https://user:pw@hooks.example.org:8443/services/{SECRET}?x=1") == (
        "https://hooks.example.org:8443/…"
    )


# --- delivery: retries, failures, never trading -----------------------------------------------------


async def test_retries_then_success() -> None:
    async with webhook_server(500, 503, 429, 200) as hook:
        config = attrs.evolve(FAST, webhook_url=hook.url, retries=3)
        async with sender_beside_trading(config) as (sink, sender):
            sink.alert(AlertKind.HARD_STOP, None, "cumulative loss 21 > 20")
            await sender.wait_counted(1)
    assert hook.kinds() == ["hard_stop"] * 4
    assert (sink.stats.sent, sink.stats.failed) == (1, 0)


@pytest.mark.parametrize("down", ["500", "refused", "timeout"])
async def test_a_webhook_that_fails_is_counted_and_logged_and_trading_goes_on(
    down: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with webhook_server(500, hang=down == "timeout") as hook:
        url = hook.url if down != "refused" else f"http://127.0.0.1:{closed_port()}/services/{SECRET}"
        config = attrs.evolve(FAST, webhook_url=url, retries=2, timeout_s=0.3)
        async with sender_beside_trading(config) as (sink, sender):
            sink.alert(AlertKind.HARD_STOP, None, "first")
            sink.alert(AlertKind.FLATTEN_FAILED, "xyz:COIN", "second")
            await sender.wait_counted(2)
    assert (sink.stats.sent, sink.stats.failed) == (0, 2)
    if down != "refused":
        assert hook.kinds() == ["hard_stop"] * 3 + ["flatten_failed"] * 3  # 1 + 2 retries each
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all("NOT delivered" in e and "after 3 attempt(s)" in e for e in errors)
    expected = {"500": "HTTP 500", "refused": "ConnectError", "timeout": "no answer within 0.3 s"}[down]
    assert expected in errors[0]
    assert not any(SECRET in r.getMessage() for r in caplog.records)  # httpx's INFO line is silenced


async def test_a_client_error_answer_is_not_retried() -> None:
    async with (
        webhook_server(404) as hook,
        sender_beside_trading(attrs.evolve(FAST, webhook_url=hook.url)) as (sink, sender),
    ):
        sink.alert(AlertKind.TEST, None, "x")
        await sender.wait_counted(1)
    assert len(hook.requests) == 1 and sink.stats.failed == 1


async def test_a_bug_sending_one_alert_is_logged_with_its_traceback_and_the_next_is_sent(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = webhook.send_alert

    async def buggy(client: Any, alert: Alert, config: AlertsConfig, **kw: Any) -> webhook.SendResult:
        if alert.kind is AlertKind.TEST:
            raise TypeError("a bug")
        return await real(client, alert, config, **kw)

    monkeypatch.setattr(webhook, "send_alert", buggy)
    async with (
        webhook_server(200) as hook,
        sender_beside_trading(attrs.evolve(FAST, webhook_url=hook.url)) as (sink, sender),
    ):
        sink.alert(AlertKind.TEST, None, "boom")
        sink.alert(AlertKind.HARD_STOP, None, "after the bug")
        await sender.wait_counted(2)
    assert hook.kinds() == ["hard_stop"]
    assert (sink.stats.sent, sink.stats.failed) == (1, 1)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "failed with a bug" in record.getMessage() and record.exc_info is not None


async def test_a_bug_in_the_alert_task_itself_ends_that_task_not_trading(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: AlertSender, client: Any, alert: Alert, **kw: Any) -> None:
        raise RuntimeError("a bug in the loop")

    monkeypatch.setattr(AlertSender, "_deliver", broken)
    async with (
        webhook_server(200) as hook,
        sender_beside_trading(attrs.evolve(FAST, webhook_url=hook.url)) as (sink, sender),
    ):
        sink.alert(AlertKind.TEST, None, "x")
        with trio.fail_after(10):
            await sender.done.wait()
        assert not sink.alert(AlertKind.HARD_STOP, None, "later")  # the channel is closed: dropped
    assert hook.requests == []
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert "alerts are off, trading goes on" in record.getMessage()
    assert sink.stats.dropped == 2  # the one being sent, and the later one


async def test_the_engine_failing_still_gets_its_queued_alerts_out_once() -> None:
    """Cancelled from outside (the engine is going down with an error), the task gives what is queued
    one shielded attempt — the stop alert that says why."""
    async with webhook_server(200) as hook:
        config = attrs.evolve(FAST, webhook_url=hook.url)
        sink, receive = AlertSink.open(config, env="sim")
        sender = AlertSender(config, receive, sink.stats)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.run)
            await trio.sleep(0.01)
            sink.alert(AlertKind.ENGINE_STOP, None, "error: ValueError: boom")
            nursery.cancel_scope.cancel()
    assert hook.kinds() == ["engine_stop"]
    assert sink.stats.sent == 1


async def test_at_an_orderly_stop_what_cannot_be_sent_in_time_is_counted_as_dropped() -> None:
    async with webhook_server(hang=True) as hook:
        config = attrs.evolve(FAST, webhook_url=hook.url, timeout_s=0.2)
        sink, receive = AlertSink.open(config, env="sim")
        sender = AlertSender(config, receive, sink.stats)
        sink.alert(AlertKind.HARD_STOP, None, "one")
        sink.alert(AlertKind.ENGINE_STOP, None, "two")
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender.run)
                # The stop comes while the first POST hangs (on a loaded machine the client can take
                # longer than the 0.2 s deadline just to start, so the deadline starts from there).
                await hook.wait_for("hard_stop")
                sink.close()
                sender.finish()  # run returns by the finish deadline
    assert len(hook.requests) == 1
    assert (sink.stats.sent, sink.stats.failed, sink.stats.dropped) == (0, 0, 2)


# --- the producers' side: never blocks, dedupe, queue bound ------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def queued(receive: trio.MemoryReceiveChannel[Alert]) -> list[Alert]:
    out = []
    while True:
        try:
            out.append(receive.receive_nowait())
        except trio.WouldBlock:
            return out


def test_dedupe_per_kind_and_market_within_the_window() -> None:
    clock = FakeClock()
    sink, receive = AlertSink.open(AlertsConfig(dedupe_window_s=300), env="sim", clock=clock, host="h")
    assert sink.alert(AlertKind.FLATTEN_FAILED, "xyz:COIN", "a")
    clock.now = 100
    assert not sink.alert(AlertKind.FLATTEN_FAILED, "xyz:COIN", "b")  # same kind and market
    assert not sink.alert(AlertKind.FLATTEN_FAILED, "xyz:COIN", "c")
    assert sink.alert(AlertKind.FLATTEN_FAILED, "xyz:NVDA", "other market")
    assert sink.alert(AlertKind.POSITION_CORRECTED, "xyz:COIN", "other kind")
    clock.now = 300
    assert sink.alert(AlertKind.FLATTEN_FAILED, "xyz:COIN", "window over")
    alerts = queued(receive)
    assert [(a.market, a.text, a.suppressed) for a in alerts] == [
        ("xyz:COIN", "a", 0),
        ("xyz:NVDA", "other market", 0),
        ("xyz:COIN", "other kind", 0),
        ("xyz:COIN", "window over", 2),
    ]
    assert "(2 similar suppressed)" in alerts[-1].message
    assert (sink.stats.queued, sink.stats.deduplicated, sink.stats.dropped) == (4, 2, 0)


def test_a_full_queue_drops_and_counts_and_the_producer_never_blocks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`alert` is a plain function (no await, so it cannot block): with the queue full it returns at
    once, drops, counts and logs once per run of drops."""
    clock = FakeClock()
    sink, receive = AlertSink.open(AlertsConfig(queue_size=2), env="sim", clock=clock)
    results = [sink.alert(AlertKind.UNKNOWN_ORDER, f"xyz:M{i}", "x") for i in range(5)]
    assert results == [True, True, False, False, False]
    assert (sink.stats.queued, sink.stats.dropped) == (2, 3)
    assert len([r for r in caplog.records if "dropping alerts" in r.getMessage()]) == 1
    queued(receive)  # the task catches up
    assert sink.alert(AlertKind.UNKNOWN_ORDER, "xyz:M9", "room again")
    # A dropped alert does not start a dedupe window: the same one goes out once there is room.
    assert sink.alert(AlertKind.UNKNOWN_ORDER, "xyz:M2", "x")
    sink.close()
    assert not sink.alert(AlertKind.UNKNOWN_ORDER, "xyz:M3", "after close")
    assert sink.stats.dropped == 4


def test_alerts_off_does_nothing() -> None:
    sink = AlertSink.off()
    assert not sink.enabled
    assert not sink.alert(AlertKind.HARD_STOP, None, "x")
    assert not sink.on_reconnect(1.0)
    assert not sink.request_budget(0)
    sink.close()
    assert sink.stats == type(sink.stats)()


def test_more_than_n_reconnects_in_ten_minutes() -> None:
    sink, receive = AlertSink.open(
        AlertsConfig(max_reconnects_per_10min=2, dedupe_window_s=0), env="sim", clock=FakeClock()
    )
    assert not sink.on_reconnect(0.0)
    assert not sink.on_reconnect(100.0)
    assert sink.on_reconnect(599.0)  # three within 10 minutes
    assert not sink.on_reconnect(1300.0)  # the window has moved on: one
    (alert,) = queued(receive)
    assert alert.kind is AlertKind.RECONNECTS and alert.market is None
    assert alert.text == "3 reconnects in the last 10 minutes (more than 2)"
    assert alert.detail == {"reconnects": 3, "limit": 2}


def test_request_budget_low_and_exhausted() -> None:
    sink, receive = AlertSink.open(AlertsConfig(), env="sim", clock=FakeClock())
    assert sink.request_budget(150, 10_000)
    assert sink.request_budget(0, 10_000)
    low, exhausted = queued(receive)
    assert (low.kind, low.text) == (AlertKind.REQUEST_BUDGET_LOW, "150 of 10000 requests left")
    assert exhausted.kind is AlertKind.REQUEST_BUDGET_EXHAUSTED and exhausted.kind.severity == "critical"
    assert exhausted.detail == {"remaining": 0, "limit": 10_000}


# --- the core raises them ----------------------------------------------------------------------------


def engine_with_alerts(tmp_path: Path) -> tuple[Engine, trio.MemoryReceiveChannel[Alert]]:
    sink, receive = AlertSink.open(AlertsConfig(), env="sim", clock=FakeClock(), host="h")
    journal, _records = JournalSink.open()
    engine = Engine(
        EngineSettings(markets=MARKETS, user="0x" + "1" * 40, dry_run=True),
        signer=None,
        nonces=NonceManager(),
        hard_stop=HardStop.load(tmp_path, 0),
        journal=journal,
        alerts=sink,
    )
    return engine, receive


async def test_the_core_alerts_on_the_events_a_person_must_hear_about(tmp_path: Path) -> None:
    engine, receive = engine_with_alerts(tmp_path)
    core, coin, nvda = engine.core, MARKETS[0], MARKETS[1]
    refused = "Order 0: Reduce only order would increase position. asset=110000"
    for item in (
        OrderRejected(market=coin, message="Insufficient margin to place order."),  # no alert
        OrderRejected(market=coin, message=refused),
        FlattenFailed(market=nvda, detail="not flat 61 s after entry (size 0.1)", age_s=61.0),
        PositionCorrected(market=coin, old_size=Decimal("0.1"), new_size=Decimal(0), at=0.0),
        UnknownOrderEscalated(market=nvda, cloid=Cloid.from_int(7), unknown_since=0.0, at=1.0),
    ):
        core.outbox.emit(item)
    core.tick(trio.current_time())
    alerts = queued(receive)
    assert [(a.kind, a.market) for a in alerts] == [
        (AlertKind.REDUCE_ONLY_REFUSED, coin),
        (AlertKind.FLATTEN_FAILED, nvda),
        (AlertKind.POSITION_CORRECTED, coin),
        (AlertKind.UNKNOWN_ORDER, nvda),
    ]
    assert alerts[0].text == refused
    assert alerts[1].detail == {"age_s": 61.0}
    assert alerts[2].text == "0.1 -> 0 (the venue's position)"
    assert alerts[3].detail == {"cloid": str(Cloid.from_int(7))}

    core.outbox.emit(TradeClosed(market=coin, pnl=Decimal(-25)))
    core.tick(trio.current_time())
    (stop,) = queued(receive)
    assert (stop.kind, stop.market, stop.detail) == (AlertKind.HARD_STOP, None, {"event_market": coin})
    assert stop.text == "cumulative loss $25 > $20; no new entries, flattening every position"


async def test_trip_hard_stop_alerts_with_its_kind(tmp_path: Path) -> None:
    engine, receive = engine_with_alerts(tmp_path)
    engine.trip_hard_stop("journal write failed: OSError: disk full", alert=AlertKind.JOURNAL_FAILURE)
    engine.trip_hard_stop("operator: serious log found")
    assert [(a.kind, a.text) for a in queued(receive)] == [
        (
            AlertKind.JOURNAL_FAILURE,
            "journal write failed: OSError: disk full; no new entries, flattening every position",
        ),
        (AlertKind.HARD_STOP, "operator: serious log found; no new entries, flattening every position"),
    ]
    assert engine.statistics().alerts.queued == 2


# --- `python -m hip3_trio alerts test` ----------------------------------------------------------------


@contextmanager
def threaded_webhook(status: int) -> Iterator[list[dict[str, Any]]]:
    """`http.server` in a thread (the command runs its own `trio.run`); yields the bodies received."""
    bodies: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        bodies.append({"url": f"http://127.0.0.1:{server.server_address[1]}/services/{SECRET}"})
        yield bodies
    finally:
        server.shutdown()
        server.server_close()


def alerts_test(tmp_path: Path, url: str | None, *extra: str) -> tuple[int, list[str]]:
    config = tmp_path / "config.toml"
    config.write_text(
        "[alerts]\nretries = 1\nretry_backoff_s = 0.01\ntimeout_s = 5\n"
        + (f"webhook_url = '{url}'\n" if url else "")
    )
    lines: list[str] = []
    code = alerts_cmd.main(["test", "--config", str(config), *extra], out=lines.append)
    return code, lines


def test_alerts_test_sends_one_alert_and_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIP3_ALERT_WEBHOOK", raising=False)
    with threaded_webhook(204) as bodies:
        url = bodies.pop()["url"]
        code, lines = alerts_test(tmp_path, url, "--env", "testnet")
    assert code == 0
    assert lines == [
        f"test alert delivered to http://127.0.0.1:{url.split(':')[2].split('/')[0]}/… (attempt 1)"
    ]
    ((body),) = bodies
    assert body["kind"] == "test" and body["env"] == "testnet"
    assert body["text"].startswith("[hip3-trio testnet] test alert: ")


def test_alerts_test_exits_3_on_a_failing_or_unreachable_webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HIP3_ALERT_WEBHOOK", raising=False)
    with threaded_webhook(500) as bodies:
        url = bodies.pop()["url"]
        code, lines = alerts_test(tmp_path, url)
    assert code == 3 and len(bodies) == 2  # one retry
    assert len(lines) == 1 and "NOT delivered" in lines[0] and "HTTP 500" in lines[0]
    assert SECRET not in lines[0]
    code, lines = alerts_test(tmp_path, f"http://127.0.0.1:{closed_port()}/x")
    assert code == 3 and len(lines) == 1 and "ConnectError" in lines[0]


def test_alerts_test_without_a_webhook_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIP3_ALERT_WEBHOOK", raising=False)
    code, lines = alerts_test(tmp_path, None)
    assert code == 2
    assert lines == [
        "hip3-trio: no webhook configured: set HIP3_ALERT_WEBHOOK or [alerts] webhook_url in the config"
    ]
    monkeypatch.setenv("HIP3_ALERT_WEBHOOK", "not a url")
    code, lines = alerts_test(tmp_path, None)
    assert code == 2 and len(lines) == 1 and "HIP3_ALERT_WEBHOOK: must be an http" in lines[0]


def test_the_environment_variable_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with threaded_webhook(200) as bodies:
        url = bodies.pop()["url"]
        monkeypatch.setenv("HIP3_ALERT_WEBHOOK", url)
        code, _lines = alerts_test(tmp_path, f"http://127.0.0.1:{closed_port()}/file")
    assert code == 0 and len(bodies) == 1


def test_alerts_is_a_subcommand_of_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hip3_trio import cli

    monkeypatch.delenv("HIP3_ALERT_WEBHOOK", raising=False)
    assert cli.main(["alerts", "test", "--config", str(tmp_path / "missing.toml")]) == 2


# --- end to end: the engine on the simulator ------------------------------------------------------


async def test_a_hard_stop_reaches_the_webhook(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A tiny loss limit: the first round trip (bought at the ask, sold by the time stop at the bid, fees
    paid) latches the hard stop, and the webhook receives the alert — between the start and stop ones."""
    async with webhook_server(200) as hook:
        config = AlertsConfig(webhook_url=hook.url, timeout_s=60)

        def settings(user: str) -> EngineSettings:
            return quiet_settings(
                user, risk=RiskConfig(max_loss_usd=Decimal("0.0001")), time_stop=TimeStopConfig(hold_s=2)
            )

        async def scenario(rig: Rig) -> None:
            await rig.wait_ready()
            rig.submit(rig.entry_signal(MARKETS[0]))
            with trio.fail_after(60):
                await rig.wait_for(lambda: rig.engine.core.hard_stop_latch.latched)
                await hook.wait_for("hard_stop")
            rig.stop.set()

        rig = await run_rig(tmp_path, scenario, settings=settings, alerts=config)
    assert hook.kinds() == ["engine_start", "hard_stop", "engine_stop"]
    start, stop, end = hook.bodies
    assert stop["severity"] == "critical" and stop["env"] == "sim" and stop["market"] is None
    assert stop["text"].startswith("[hip3-trio sim] HARD STOP latched: cumulative loss")
    assert stop["detail"] == {"event_market": MARKETS[0]}
    assert "markets xyz:COIN, xyz:NVDA" in start["text"]
    assert "engine stopped: stop requested; trades 1" in end["text"] and "hard stop LATCHED" in end["text"]
    assert rig.engine.statistics().alerts.sent == 3
    assert "  alerts sent 3, failed 0, dropped 0, deduplicated 0" in rig.lines


async def test_a_failing_webhook_does_not_touch_trading(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The webhook answers 500 to everything: the engine trades, hard-stops, flattens and stops in order;
    the alerts are counted as failed."""
    async with webhook_server(500) as hook:
        config = AlertsConfig(webhook_url=hook.url, timeout_s=60, retries=1, retry_backoff_s=1)

        def settings(user: str) -> EngineSettings:
            return quiet_settings(
                user, risk=RiskConfig(max_loss_usd=Decimal("0.0001")), time_stop=TimeStopConfig(hold_s=2)
            )

        async def scenario(rig: Rig) -> None:
            await rig.wait_ready()
            rig.submit(rig.entry_signal(MARKETS[0]))
            with trio.fail_after(60):
                await rig.wait_for(lambda: rig.engine.core.hard_stop_latch.latched)
                await rig.wait_for(lambda: not rig.positions())
            await trio.sleep(30)
            rig.stop.set()

        rig = await run_rig(tmp_path, scenario, settings=settings, alerts=config)
    stats = rig.engine.statistics()
    assert stats.core.trades == 1 and not rig.sim_positions()
    assert stats.alerts.sent == 0 and stats.alerts.failed == 3
    assert hook.kinds() == ["engine_start"] * 2 + ["hard_stop"] * 2 + ["engine_stop"] * 2


async def test_frequent_reconnects_reach_the_webhook(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with webhook_server(200) as hook:
        config = AlertsConfig(webhook_url=hook.url, timeout_s=60, max_reconnects_per_10min=2)

        async def scenario(rig: Rig) -> None:
            await rig.wait_ready()
            for _ in range(3):  # three reconnects within a minute
                connections = rig.connections
                rig.sim.faults.close_at_ms = rig.sim.clock.now_ms() + 1000
                await rig.wait_for(lambda n=connections: rig.connections > n and rig.engine.core.ready)  # type: ignore[misc]
            with trio.fail_after(60):
                await hook.wait_for("reconnects")
            rig.stop.set()

        rig = await run_rig(tmp_path, scenario, settings=quiet_settings, alerts=config)
    assert hook.kinds() == ["engine_start", "reconnects", "engine_stop"]
    assert (
        hook.bodies[1]["text"]
        == "[hip3-trio sim] frequent reconnects: 3 reconnects in the last 10 minutes (more than 2)"
    )
    assert rig.engine.statistics().link.connects == 4
