"""The connection session: correlation, timeouts, heartbeat, stall, recovery and reconnect backoff.

Runs real trio-websocket framing over `trio.testing.memory_stream_pair()` under the autojump clock;
the venue side is a scripted peer in the test, the engine side a recording fake host.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
    wrap_server_stream,
)

from hip3_trio.execution.batch import Batch, BatchConfig, OrderItem
from hip3_trio.execution.posts import Disconnected, PostEntry, Reply, Timeout
from hip3_trio.venue.session import (
    ConnectionConfig,
    ConnectionLost,
    Session,
    run_connection,
)
from hip3_trio.wire import messages as m
from hip3_trio.wire.actions import Cloid, LimitOrderType, OrderWire


def make_batch(n: int = 1) -> Batch:
    order = OrderWire(
        110000, True, Decimal("100"), Decimal("0.1"), False, LimitOrderType("Ioc"), Cloid.from_int(n)
    )
    return Batch(kind="order", items=(OrderItem("xyz:COIN", order),))


@attrs.define
class FakeHost:
    batches: list[Batch] = attrs.Factory(list)
    resolved: list[PostEntry[m.PostResult]] = attrs.Factory(list)
    messages: list[m.InboundMessage] = attrs.Factory(list)
    noop_outcomes: list[tuple[int, m.PostResult]] = attrs.Factory(list)
    ended: list[int] = attrs.Factory(list)
    nonce: int = 1_700_000_000_000
    synced: trio.Event = attrs.Factory(trio.Event)

    def on_message(self, session: Session, msg: m.InboundMessage, now: float) -> None:
        self.messages.append(msg)

    def on_batch_written(self, session: Session, entry: PostEntry[m.PostResult]) -> None:
        pass

    def on_batch_sent(self, session: Session, entry: PostEntry[m.PostResult]) -> None:
        pass

    def on_post_resolved(self, session: Session, entry: PostEntry[m.PostResult]) -> None:
        self.resolved.append(entry)

    def next_batch(self, inflight: int) -> Batch | None:
        return self.batches.pop(0) if self.batches else None

    def sign(
        self, action_wire: dict[str, Any], nonce: int, expires_after: int | None = None
    ) -> dict[str, Any]:
        return {"action": action_wire, "nonce": nonce, "signature": {"r": "0x1", "s": "0x2", "v": 27}}

    def next_nonce(self) -> int:
        self.nonce += 1
        return self.nonce

    def on_noop_outcome(
        self, session: Session, original: PostEntry[m.PostResult], result: m.PostResult
    ) -> None:
        self.noop_outcomes.append((original.nonce, result))

    def on_session_end(self, session: Session, drained: Sequence[PostEntry[m.PostResult]]) -> None:
        self.ended.append(len(drained))

    async def sync(self, session: Session) -> None:
        self.synced.set()


@asynccontextmanager
async def ws_pair() -> AsyncIterator[tuple[WebSocketConnection, WebSocketConnection]]:
    """A client and a server WebSocket joined by an in-memory stream."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        accepted_send, accepted = trio.open_memory_channel[WebSocketConnection](1)

        async def accept() -> None:
            request = await wrap_server_stream(nursery, server_stream)
            await accepted_send.send(await request.accept())

        nursery.start_soon(accept)
        client = await wrap_client_stream(nursery, client_stream, "venue.test", "/ws")  # type: ignore[arg-type]
        yield client, await accepted.receive()
        nursery.cancel_scope.cancel()


def post_reply(post_id: int, statuses: list[Any]) -> str:
    payload = {"status": "ok", "response": {"type": "order", "data": {"statuses": statuses}}}
    return json.dumps(
        {"channel": "post", "data": {"id": post_id, "response": {"type": "action", "payload": payload}}}
    )


FILLED = {"filled": {"totalSz": "0.1", "avgPx": "100", "oid": 7}}


async def run_until_lost(session: Session) -> ConnectionLost:
    with pytest.raises(ConnectionLost) as info:
        await session.run()
    return info.value


async def test_post_is_sent_signed_and_its_reply_correlated_by_id() -> None:
    host = FakeHost(batches=[make_batch()])
    async with ws_pair() as (client, server), trio.open_nursery() as nursery:
        session = Session(client, host)
        nursery.start_soon(session.run)
        frame = json.loads(await server.get_message())
        assert frame["method"] == "post" and frame["request"]["type"] == "action"
        payload = frame["request"]["payload"]
        assert payload["nonce"] == 1_700_000_000_001
        assert payload["action"]["orders"][0]["c"] == Cloid.from_int(1).raw
        assert session.inflight == 1
        await server.send_message(post_reply(frame["id"], [FILLED]))
        await trio.testing.wait_all_tasks_blocked()
        assert session.inflight == 0
        (entry,) = host.resolved
        assert isinstance(entry.outcome, Reply)
        assert entry.outcome.payload == m.ActionOk("order", (m.Filled(Decimal("0.1"), Decimal("100"), 7),))
        nursery.cancel_scope.cancel()


async def test_unanswered_post_times_out_after_exactly_5_s(autojump_clock: trio.testing.MockClock) -> None:
    host = FakeHost(batches=[make_batch()])
    async with ws_pair() as (client, server), trio.open_nursery() as nursery:
        session = Session(client, host, ConnectionConfig(md_stall_s=1000))
        nursery.start_soon(session.run)
        await server.get_message()
        sent_at = trio.current_time()
        await trio.sleep_until(sent_at + 4.999)
        assert host.resolved == []
        await trio.sleep_until(sent_at + 5.001)
        (entry,) = host.resolved
        assert isinstance(entry.outcome, Timeout)
        assert entry.resolved_at is not None and entry.resolved_at - sent_at == pytest.approx(5.0, abs=1e-6)
        assert session.inflight == 0
        nursery.cancel_scope.cancel()


async def test_a_post_refused_on_the_error_channel_is_settled_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """`too many pending post requests id=N` (the venue's `error` channel, no post reply follows): post N
    is settled at once as never executed, not after the 5 s post timeout (issue 15)."""
    host = FakeHost(batches=[make_batch()])
    async with ws_pair() as (client, server), trio.open_nursery() as nursery:
        session = Session(client, host, ConnectionConfig(md_stall_s=1000))
        nursery.start_soon(session.run)
        request = json.loads(await server.get_message())
        sent_at = trio.current_time()
        text = f"too many pending post requests id={request['id']}"
        await server.send_message(json.dumps({"channel": "error", "data": text}))
        await trio.sleep(0.001)
        (entry,) = host.resolved
        assert entry.outcome == Reply(m.TransportErr(text)) and entry.resolved_at == sent_at
        assert session.inflight == 0
        assert host.messages == [m.ChannelError(text)]  # the host still hears of it (journal, log)
        nursery.cancel_scope.cancel()


async def test_duplicate_and_stray_replies_are_applied_once() -> None:
    host = FakeHost(batches=[make_batch()])
    async with ws_pair() as (client, server), trio.open_nursery() as nursery:
        session = Session(client, host)
        nursery.start_soon(session.run)
        frame = json.loads(await server.get_message())
        await server.send_message(post_reply(frame["id"], [FILLED]))
        await server.send_message(post_reply(frame["id"], [FILLED]))
        await server.send_message(post_reply(999, [FILLED]))
        await trio.testing.wait_all_tasks_blocked()
        assert len(host.resolved) == 1
        assert session.stray_replies == 2
        nursery.cancel_scope.cancel()


async def test_garbage_frames_are_counted_and_the_session_lives_on() -> None:
    host = FakeHost()
    async with ws_pair() as (client, server), trio.open_nursery() as nursery:
        session = Session(client, host)
        nursery.start_soon(session.run)
        await server.send_message("Websocket connection established.")
        await server.send_message('{"channel":"bbo","data":{"coin":')
        await server.send_message("\x00\x01garbage")
        await server.send_message('{"channel":"bbo","data":{"coin":"xyz:COIN","time":1,"bbo":[null,null]}}')
        await trio.testing.wait_all_tasks_blocked()
        assert session.bad_frames == 2
        assert [type(x) for x in host.messages] == [m.Greeting, m.Bbo]
        nursery.cancel_scope.cancel()


async def test_socket_drop_recovers_inflight_posts_exactly_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    host = FakeHost(batches=[make_batch(1), make_batch(2)])
    async with ws_pair() as (client, server):
        session = Session(client, host)
        async with trio.open_nursery() as nursery:

            async def venue() -> None:
                await server.get_message()
                await server.get_message()
                await server.aclose()

            nursery.start_soon(venue)
            lost = await run_until_lost(session)
        assert "receive failed" in str(lost) or "send failed" in str(lost)
        assert [type(e.outcome) for e in host.resolved] == [Disconnected, Disconnected]
        assert host.ended == [2]
        assert session.inflight == 0
        session.recover()  # a second call changes nothing
        assert host.ended == [2]


def causes(exc: BaseException) -> list[BaseException]:
    """Every exception in `exc`'s cause chain, with the members of any group in it."""
    out: list[BaseException] = []
    todo = [exc.__cause__]
    while todo:
        cause = todo.pop()
        if cause is None or any(cause is seen for seen in out):
            continue
        out.append(cause)
        todo.append(cause.__cause__)
        if isinstance(cause, BaseExceptionGroup):
            todo.extend(cause.exceptions)
    return out


@pytest.mark.parametrize("how", ["socket closed", "no pong"])
async def test_the_connection_lost_is_not_inside_its_own_cause(
    autojump_clock: trio.testing.MockClock, how: str
) -> None:
    """`run()` turns the session's group into one ConnectionLost that keeps the failure's own cause (the
    transport error, or none) and is not itself in its cause chain (raising a leaf `from` the group
    that contains it made the chain loop back to it)."""
    host = FakeHost()
    async with ws_pair() as (client, server), trio.open_nursery() as nursery:
        session = Session(client, host, ConnectionConfig(md_stall_s=1000))
        if how == "socket closed":
            nursery.start_soon(server.aclose)
        lost = await run_until_lost(session)
    chain = causes(lost)
    assert not any(cause is lost for cause in chain)
    if how == "socket closed":
        assert "receive failed" in str(lost)
        assert isinstance(lost.__cause__, ConnectionClosed)
    else:
        assert "no pong" in str(lost)
        assert lost.__cause__ is None


async def test_idle_connection_pings_after_50_s_and_a_missing_pong_ends_it_at_60_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    host = FakeHost()
    async with ws_pair() as (client, server), trio.open_nursery() as nursery:
        session = Session(client, host, ConnectionConfig(md_stall_s=1000))
        start = trio.current_time()
        pinged_at: list[float] = []

        async def venue() -> None:
            frame = await server.get_message()
            pinged_at.append(trio.current_time())
            assert json.loads(frame) == {"method": "ping"}

        nursery.start_soon(venue)
        lost = await run_until_lost(session)
        assert "no pong" in str(lost)
        assert pinged_at == [pytest.approx(start + 50)]
        assert trio.current_time() - start == pytest.approx(60)


async def test_pong_keeps_the_connection(autojump_clock: trio.testing.MockClock) -> None:
    host = FakeHost()
    async with ws_pair() as (client, server), trio.open_nursery() as nursery:
        session = Session(client, host, ConnectionConfig(md_stall_s=1000))
        nursery.start_soon(session.run)
        for _ in range(3):
            assert json.loads(await server.get_message()) == {"method": "ping"}
            await server.send_message('{"channel":"pong"}')
        assert trio.current_time() == pytest.approx(150)
        nursery.cancel_scope.cancel()


async def test_market_data_stall_ends_the_session(autojump_clock: trio.testing.MockClock) -> None:
    host = FakeHost()
    async with ws_pair() as (client, server), trio.open_nursery() as nursery:
        session = Session(client, host, ConnectionConfig(md_stall_s=20, ping_after_idle_s=59))
        start = trio.current_time()
        bbo = '{"channel":"bbo","data":{"coin":"xyz:COIN","time":1,"bbo":[null,null]}}'

        async def venue() -> None:
            await trio.sleep(15)
            await server.send_message(bbo)  # pushes the stall deadline to 35 s

        nursery.start_soon(venue)
        lost = await run_until_lost(session)
        assert "no market data" in str(lost)
        assert trio.current_time() - start == pytest.approx(35)


async def test_sender_respects_the_inflight_limit() -> None:
    host = FakeHost(batches=[make_batch(i) for i in range(5)])
    async with ws_pair() as (client, server), trio.open_nursery() as nursery:
        session = Session(client, host, batch=BatchConfig(inflight_limit=3, inflight_watermark=3))
        nursery.start_soon(session.run)
        ids = [json.loads(await server.get_message())["id"] for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()
        assert session.inflight == 3 and len(host.batches) == 2
        await server.send_message(post_reply(ids[0], [FILLED]))
        json.loads(await server.get_message())
        await trio.testing.wait_all_tasks_blocked()
        assert session.inflight == 3 and len(host.batches) == 1
        nursery.cancel_scope.cancel()


async def test_noop_reuses_the_original_nonce_and_reports_its_outcome() -> None:
    host = FakeHost(batches=[make_batch()])
    async with ws_pair() as (client, server), trio.open_nursery() as nursery:
        session = Session(client, host)
        nursery.start_soon(session.run)
        original = json.loads(await server.get_message())
        entry = session.posts.get(original["id"])
        assert entry is not None
        session.invalidate(entry)
        noop = json.loads(await server.get_message())
        assert noop["request"]["payload"]["action"] == {"type": "noop"}
        assert noop["request"]["payload"]["nonce"] == original["request"]["payload"]["nonce"]
        err = {"status": "err", "response": "Invalid nonce: duplicate nonce"}
        await server.send_message(
            json.dumps(
                {
                    "channel": "post",
                    "data": {"id": noop["id"], "response": {"type": "action", "payload": err}},
                }
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        assert host.noop_outcomes == [(entry.nonce, m.ActionErr("Invalid nonce: duplicate nonce"))]
        nursery.cancel_scope.cancel()


async def test_info_request_returns_its_data() -> None:
    host = FakeHost()
    async with ws_pair() as (client, server), trio.open_nursery() as nursery:
        session = Session(client, host)
        nursery.start_soon(session.run)
        result: list[Any] = []

        async def ask() -> None:
            result.append(await session.info({"type": "perpDexs"}))

        nursery.start_soon(ask)
        frame = json.loads(await server.get_message())
        assert frame["request"] == {"type": "info", "payload": {"type": "perpDexs"}}
        info = {"type": "info", "payload": {"type": "perpDexs", "data": [None, {"name": "xyz"}]}}
        await server.send_message(
            json.dumps({"channel": "post", "data": {"id": frame["id"], "response": info}})
        )
        await trio.testing.wait_all_tasks_blocked()
        assert result == [[None, {"name": "xyz"}]]
        nursery.cancel_scope.cancel()


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    backoff = ConnectionConfig(backoff_initial_s=1, backoff_max_s=60)
    rng = random.Random(1)
    for attempt, ceiling in [(0, 1), (1, 2), (3, 8), (6, 60), (20, 60)]:
        for _ in range(50):
            assert ceiling / 2 <= backoff.reconnect_delay(attempt, rng) <= ceiling


@pytest.mark.parametrize("urgent", [False, True], ids=["flat", "position-open"])
async def test_while_urgent_the_backoff_never_exceeds_its_base(
    autojump_clock: trio.testing.MockClock, urgent: bool
) -> None:
    """Sessions that keep dying (a market-data stall every time) grow the backoff to its cap — unless a
    position is open: then every reconnect comes within `base`."""
    delays: list[float] = []

    class Dying:
        async def run(self) -> None:
            await trio.sleep(10)
            raise ConnectionLost("no market data for 10.0 s")

    @asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        yield object()

    await run_connection(
        connect,
        lambda _: Dying(),  # type: ignore[arg-type, return-value]
        connection=ConnectionConfig(backoff_initial_s=1, backoff_max_s=30, healthy_after_s=60),
        rng=random.Random(0),
        on_disconnect=lambda error, delay: delays.append(delay),
        sessions=6,
        urgent=lambda: urgent,
    )
    if urgent:
        assert all(0.5 <= d <= 1 for d in delays)
    else:
        assert max(delays) > 15


async def test_supervisor_reconnects_with_backoff_and_resets_after_a_healthy_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Sessions 1-2 die at once (backoff grows); session 3 lives 100 s (reset); session 4 dies."""
    lifetimes = [0.0, 0.0, 100.0, 0.0]
    delays: list[float] = []
    starts: list[float] = []

    @asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        starts.append(trio.current_time())
        yield object()

    class DyingSession:
        def __init__(self, lifetime: float) -> None:
            self.lifetime = lifetime

        async def run(self) -> None:
            await trio.sleep(self.lifetime)
            raise ConnectionLost("gone")

    def make_session(_: Any) -> Any:
        return DyingSession(lifetimes[len(starts) - 1])

    await run_connection(
        connect,
        make_session,
        connection=ConnectionConfig(backoff_initial_s=1, backoff_max_s=60, healthy_after_s=60),
        rng=random.Random(0),
        on_disconnect=lambda error, delay: delays.append(delay),
        sessions=4,
    )
    assert len(starts) == 4
    assert 0.5 <= delays[0] <= 1 and 1 <= delays[1] <= 2
    assert 0.5 <= delays[2] <= 1  # reset after the healthy session
    assert 1 <= delays[3] <= 2


async def test_supervisor_does_not_swallow_programming_errors() -> None:
    @asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        yield object()

    class Broken:
        async def run(self) -> None:
            raise KeyError("bug")

    with pytest.raises(KeyError):
        await run_connection(connect, lambda _: Broken(), sessions=1)  # type: ignore[arg-type, return-value]


# --- what is retried: transport failures only; our own bugs stop the engine ------------------------


@attrs.define
class FailingWs:
    """A WsLike whose send or receive raises `error`; the other side idles like a quiet socket."""

    send_error: BaseException | None = None
    receive_error: BaseException | None = None

    async def get_message(self) -> str | bytes:
        if self.receive_error is not None:
            raise self.receive_error
        await trio.sleep_forever()

    async def send_message(self, message: str | bytes) -> None:
        if self.send_error is not None:
            raise self.send_error

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        pass


def leaf_types(exc: BaseException) -> list[type[BaseException]]:
    if isinstance(exc, BaseExceptionGroup):
        return [t for sub in exc.exceptions for t in leaf_types(sub)]
    return [type(exc)]


#: What the transport raises when the connection is gone (trio-websocket turns its stream's
#: BrokenResourceError/ClosedResourceError into ConnectionClosed; a plain trio stream raises
#: BrokenResourceError; a socket call an OSError).
TRANSPORT_FAILURES: list[Callable[[], BaseException]] = [
    lambda: ConnectionClosed(CloseReason(1006, None)),
    lambda: trio.BrokenResourceError("peer reset"),
    lambda: ConnectionResetError(104, "Connection reset by peer"),
]

#: Our own bugs: a wrong argument, a stream used after *we* closed it (Trio: ClosedResourceError).
PROGRAMMING_ERRORS: list[type[Exception]] = [
    TypeError,
    ValueError,
    AttributeError,
    KeyError,
    trio.ClosedResourceError,
]


@asynccontextmanager
async def counting(connects: list[float], ws: Callable[[], Any]) -> AsyncIterator[Any]:
    connects.append(trio.current_time())
    yield ws()


@pytest.mark.parametrize("where", ["send", "receive"])
@pytest.mark.parametrize("error", PROGRAMMING_ERRORS, ids=lambda t: t.__name__)
async def test_a_programming_error_at_the_socket_stops_the_engine_instead_of_reconnecting(
    autojump_clock: trio.testing.MockClock, where: str, error: type[Exception]
) -> None:
    connects: list[float] = []
    ws = lambda: FailingWs(**{f"{where}_error": error("our bug")})  # noqa: E731
    host = FakeHost(batches=[make_batch()] if where == "send" else [])
    with pytest.raises(BaseException) as info:  # the exact shape is asserted below
        await run_connection(
            lambda: counting(connects, ws), lambda w: Session(w, host), rng=random.Random(0), sessions=3
        )
    assert leaf_types(info.value) == [error]
    assert connects == [0.0]  # no reconnect
    assert host.ended == [1 if where == "send" else 0]  # the session still recovered, exactly once


@pytest.mark.parametrize("where", ["send", "receive"])
@pytest.mark.parametrize("make_error", TRANSPORT_FAILURES, ids=lambda f: type(f()).__name__)
async def test_a_transport_failure_at_the_socket_reconnects_with_backoff(
    autojump_clock: trio.testing.MockClock, where: str, make_error: Callable[[], BaseException]
) -> None:
    connects: list[float] = []
    ended: list[tuple[BaseException | None, float]] = []
    ws = lambda: FailingWs(**{f"{where}_error": make_error()})  # noqa: E731
    host = FakeHost(batches=[make_batch(n) for n in range(3)])
    await run_connection(
        lambda: counting(connects, ws),
        lambda w: Session(w, host),
        connection=ConnectionConfig(backoff_initial_s=1, backoff_max_s=60),
        rng=random.Random(0),
        on_disconnect=lambda error, delay: ended.append((error, delay)),
        sessions=3,
    )
    assert all(isinstance(error, ConnectionLost) for error, _ in ended)
    d0, d1, _ = (delay for _, delay in ended)
    assert 0.5 <= d0 <= 1 and 1 <= d1 <= 2
    assert connects == [0.0, d0, d0 + d1]


@pytest.mark.parametrize(
    "make_error, retried",
    [
        (lambda: HandshakeError(), True),
        (lambda: ConnectionRejected(503, (), None), True),
        (lambda: ConnectionTimeout(), True),
        (lambda: ConnectionRefusedError(111, "Connection refused"), True),
        (lambda: trio.ClosedResourceError(), False),
        (lambda: TypeError("bug"), False),
    ],
    ids=lambda v: type(v()).__name__ if callable(v) else str(v),
)
async def test_connect_failures_are_retried_and_bugs_are_not(
    autojump_clock: trio.testing.MockClock, make_error: Callable[[], BaseException], retried: bool
) -> None:
    attempts: list[float] = []

    @asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        attempts.append(trio.current_time())
        raise make_error()
        yield  # pragma: no cover

    run = run_connection(connect, lambda w: Session(w, FakeHost()), rng=random.Random(0), sessions=2)
    if retried:
        await run
        assert len(attempts) == 2
    else:
        with pytest.raises(type(make_error())):
            await run
        assert attempts == [0.0]


class ScriptedWs:
    """A socket without framing: frames in through a channel, sends recorded with their time and task."""

    def __init__(self) -> None:
        self.inbound, self._receive = trio.open_memory_channel[str](10)
        self.sent: list[tuple[float, str, dict[str, Any]]] = []

    async def get_message(self) -> str:
        return await self._receive.receive()

    async def send_message(self, message: str | bytes) -> None:
        task = trio.lowlevel.current_task().name.rsplit(".", 1)[-1]
        self.sent.append((trio.current_time(), task, json.loads(message)))
        await trio.lowlevel.checkpoint()

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        return None


@attrs.define
class QueueingHost(FakeHost):
    """Every frame queues one order batch and wakes the sender, as the engine does for a signal."""

    queued: int = 0

    def on_message(self, session: Session, msg: m.InboundMessage, now: float) -> None:
        super().on_message(session, msg, now)
        self.queued += 1
        self.batches.append(make_batch(self.queued))
        session.wake_sender()


async def test_the_reader_sends_an_idle_senders_post_and_the_sender_paces_from_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A frame that queues work for an idle sender has its post sent by the reader, in the same step (no
    round of the scheduler to the sender task); the sender still keeps the 100 ms interval from that
    post, and sends what arrives meanwhile at exactly +100 ms."""
    ws, host = ScriptedWs(), QueueingHost()
    frame = json.dumps({"channel": "anything", "data": 1})
    async with trio.open_nursery() as nursery:
        session = Session(ws, host, batch=BatchConfig(interval_ms=100))
        nursery.start_soon(session.run)
        await trio.sleep(1)  # the sender is idle
        await ws.inbound.send(frame)
        await ws.inbound.send(frame)  # queued right behind: the sender is pacing now
        await trio.sleep(1)
        await ws.inbound.send(frame)  # idle again: the reader sends at once
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    sent = [(at, task, f["request"]["payload"]["action"]["orders"][0]["c"]) for at, task, f in ws.sent]
    assert sent == [
        (1.0, "_reader", Cloid.from_int(1).raw),
        (pytest.approx(1.1), "_sender", Cloid.from_int(2).raw),
        (2.0, "_reader", Cloid.from_int(3).raw),
    ]
