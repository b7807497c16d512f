"""One WebSocket connection to the venue, and the supervisor that keeps reconnecting.

A `Session` owns everything that lives exactly as long as one connection: the post table (post ids
are only unique per connection), the control posts (info requests and nonce-invalidating noops), and
the tasks reader, heartbeat, sender, post timer and sync. They run in one nursery whose cancel scope
IS the connection's lifetime: any of them raising (socket closed, heartbeat miss, protocol failure)
cancels the rest. Then `recover()` runs exactly once — the only code that touches the post table on
disconnect — resolving every pending post as disconnected / not sent and handing each to the host.

The engine side is a `SessionHost`: the session calls it synchronously for every decoded message and
every resolved post, and asks it for the next batch to send. The session itself decides nothing about
orders; it moves frames, correlates replies, keeps time and reports.

Why ~530 lines: one connection's five tasks, its post and control tables and the reconnect supervisor
share the connection's lifetime (its cancel scope) and its one recovery path.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Protocol

import attrs
import trio
from trio_websocket import ConnectionClosed, HandshakeError

from hip3_trio.execution.batch import Batch, BatchConfig
from hip3_trio.execution.posts import PostEntry, PostTable, PostTableStatistics
from hip3_trio.validators import Invalid, gt, lt, not_above
from hip3_trio.venue.trace import LatencyTrace
from hip3_trio.wire import messages as m
from hip3_trio.wire.actions import NoopAction, action_to_wire

__all__ = [
    "ConnectionConfig",
    "ConnectionLost",
    "FrameTap",
    "InfoError",
    "Session",
    "SessionHost",
    "WsLike",
    "is_connection_failure",
    "run_connection",
]

log = logging.getLogger(__name__)

#: Control posts (info requests, noops) use ids from here up, so they never collide with batch posts.
CONTROL_ID_BASE: Final = 1_000_000_000
#: The `error` channel's refusal of a post (PROTOCOL.md, the `error` channel): no post reply follows.
_REFUSED_POST: Final = re.compile(r"too many pending post requests id=(\d+)")
#: `json.dumps(..., separators=(",", ":"))` without building an encoder for every frame.
_COMPACT_JSON: Final = json.JSONEncoder(separators=(",", ":"))


class ConnectionLost(Exception):
    """The session must end: the socket failed, a heartbeat was missed or market data stalled."""


#: The one list of what means "the connection is gone, try again". Only these become `ConnectionLost`
#: at the socket and are retried by `run_connection`; anything else is a bug and stops the engine.
#: - `ConnectionClosed`: what trio-websocket's get_message/send_message raise once the socket is gone
#:   (it turns its stream's BrokenResourceError/ClosedResourceError into this itself);
#: - `HandshakeError` (with ConnectionRejected, ConnectionTimeout, DisconnectionTimeout): opening or
#:   closing failed; open_websocket wraps the OSError of a refused or unresolvable connect in it;
#: - `trio.BrokenResourceError`: a plain Trio stream whose peer reset or vanished;
#: - `OSError`: a socket call's own failure, from a transport or connect function that does not wrap it.
#: Not `trio.ClosedResourceError`: per Trio it means *we* used a stream after closing it — our bug.
_TRANSPORT_FAILURES: Final = (ConnectionClosed, HandshakeError, trio.BrokenResourceError, OSError)


class InfoError(Exception):
    """An info request over the WebSocket was refused or not answered in time."""


class WsLike(Protocol):
    """The part of trio-websocket's `WebSocketConnection` the session uses (memory streams in tests)."""

    async def get_message(self) -> str | bytes: ...

    async def send_message(self, message: str | bytes) -> None: ...

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None: ...


class FrameTap(Protocol):
    """Who records the session's market data (`recording.Recorder`): called synchronously, it never
    blocks or raises (it queues, or drops and counts)."""

    def now_us(self) -> int:
        """The wall-clock receive stamp (epoch microseconds) for a frame arriving now."""

    def frame(self, recv_us: int, text: str | bytes) -> None:
        """A market-data frame (bbo, activeAssetCtx, l2Book) exactly as received at `recv_us`."""

    def info(self, request: Mapping[str, Any], answer: Any) -> None:
        """An info request's answer (the tap keeps the ones it wants)."""


#: The frames a `FrameTap` gets (and whose arrival keeps the market-data stall timer quiet).
_MARKET_DATA: Final = (m.Bbo, m.ActiveAssetCtx, m.L2Book)


class SessionHost(Protocol):
    """What the engine provides to a session. Every method is synchronous: one atomic step."""

    def on_message(self, session: Session, msg: m.InboundMessage, now: float) -> None:
        """A decoded frame other than a post reply (market data, user events, acks, errors)."""

    def on_batch_sent(self, session: Session, entry: PostEntry[m.PostResult]) -> None:
        """A batch post was just marked `sent` (it may be on the wire from now on)."""

    def on_batch_written(self, session: Session, entry: PostEntry[m.PostResult]) -> None:
        """The batch's frame was handed to the transport: work that must not delay a send goes now."""

    def on_post_resolved(self, session: Session, entry: PostEntry[m.PostResult]) -> None:
        """A batch post reached its outcome: reply, timeout, disconnect or not sent."""

    def next_batch(self, inflight: int) -> Batch | None:
        """The next batch to send given the session's inflight posts, or None."""

    def sign(
        self, action_wire: dict[str, Any], nonce: int, expires_after: int | None = None
    ) -> dict[str, Any]:
        """The post payload for `action_wire` signed with `nonce` (action, nonce, signature, vault, and
        `expiresAfter` when given)."""

    def next_nonce(self) -> int:
        """A fresh nonce."""

    def on_noop_outcome(
        self, session: Session, original: PostEntry[m.PostResult], result: m.PostResult
    ) -> None:
        """The answer to a noop that tried to invalidate `original`'s nonce."""

    def on_session_end(self, session: Session, drained: Sequence[PostEntry[m.PostResult]]) -> None:
        """The connection is gone; `drained` were already routed through on_post_resolved."""

    async def sync(self, session: Session) -> None:
        """Subscribe, load state, reconcile and declare READY; returns when done (or raises)."""


VENUE_IDLE_CLOSE_S: Final = 60.0
"""The venue closes a socket idle this long."""

CLOSE_TIMEOUT_S: Final = 2.0
"""How long closing the socket may take after the session ended (shielded)."""


def _ws_url(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not (isinstance(value, str) and value.startswith(("ws://", "wss://"))):
        raise Invalid(f"must be a ws:// or wss:// URL, got {value!r}", attribute.name)


@attrs.frozen(kw_only=True)
class ConnectionConfig:
    """WebSocket liveness, reconnection and the engine's reconcile cadence: the config file's
    ``[connection]`` section (seconds). The session's sender takes its timing from `BatchConfig`."""

    # None = the environment's endpoint (the CLI's --ws-url overrides both).
    ws_url: str | None = attrs.field(default=None, validator=_ws_url)
    ping_after_idle_s: float = attrs.field(
        default=50.0, validator=[gt(0), lt(VENUE_IDLE_CLOSE_S, " (the venue closes idle sockets at 60 s)")]
    )
    pong_timeout_s: float = attrs.field(default=10.0, validator=gt(0))
    # No market data for this long on an open socket ends the session (a silent stall).
    md_stall_s: float = attrs.field(default=30.0, validator=gt(0))
    # An info request unanswered this long fails (a connect's whole sync may take half again as long).
    info_timeout_s: float = attrs.field(default=10.0, validator=gt(0))
    # Reconnect backoff: doubles from backoff_initial_s up to backoff_max_s, with jitter.
    backoff_initial_s: float = attrs.field(default=1.0, validator=gt(0))
    backoff_max_s: float = attrs.field(default=60.0, validator=gt(0))
    # A session that stayed up this long resets the backoff.
    healthy_after_s: float = attrs.field(default=60.0, validator=gt(0))
    # Positions and orders are reconciled with the venue on every connect, on evidence that the book is
    # wrong, and at least this often.
    reconcile_every_s: float = attrs.field(default=60.0, validator=gt(0))
    # While the clock is beyond the drift limit (trading blocked), re-check it this often.
    clock_recheck_s: float = attrs.field(default=10.0, validator=gt(0))

    def __attrs_post_init__(self) -> None:
        not_above(self, "backoff_initial_s", "backoff_max_s")

    def reconnect_delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before reconnect `attempt` (0 first): the ceiling doubles from `backoff_initial_s`
        up to `backoff_max_s`, and the wait is drawn from its upper half (jitter)."""
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2.0**attempt)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@attrs.define
class _ControlPost:
    """An info request or a noop, awaiting its reply outside the batch post table."""

    done: trio.Event = attrs.field(factory=trio.Event)
    result: m.PostResult | None = None
    invalidates: PostEntry[m.PostResult] | None = None
    expires_at: float | None = None  # a noop's deadline (info requests time out in `info`)


@attrs.frozen
class SessionStatistics:
    """A snapshot of one connection (`Session.statistics`)."""

    posts: PostTableStatistics
    control_posts: int
    pending_noops: int
    inflight: int
    frames_in: int
    bad_frames: int
    stray_replies: int


class Session:
    """One connection's tasks and per-connection state. Use `run()` once."""

    def __init__(
        self,
        ws: WsLike,
        host: SessionHost,
        connection: ConnectionConfig | None = None,
        batch: BatchConfig | None = None,
        *,
        trace: LatencyTrace | None = None,
        tap: FrameTap | None = None,
    ) -> None:
        self.ws = ws
        self.trace = trace
        self.tap = tap
        self.host = host
        self.connection = connection if connection is not None else ConnectionConfig()
        self.batch = batch if batch is not None else BatchConfig()
        self.posts: PostTable[m.PostResult] = PostTable(timeout=self.batch.post_timeout_s)
        self._control: dict[int, _ControlPost] = {}
        self._next_control_id = CONTROL_ID_BASE
        self._work = trio.lowlevel.ParkingLot()
        self._posted = trio.lowlevel.ParkingLot()
        self._pong = trio.Event()
        self._pending_noops: list[PostEntry[m.PostResult]] = []
        now = trio.current_time()
        self.last_sent = now
        self.last_market_data = now
        self.frames_in = 0
        self.bad_frames = 0
        self.stray_replies = 0
        self._recovered = False
        self._sender_woken = False
        self._sender_idle = False  # the sender is parked with nothing to send (not pacing)
        self._in_reader_step = False  # the reader is dispatching a frame (a synchronous step)
        self._reader_sends = False  # that step queued work for the idle sender: the reader sends it
        self._reader_sent = False  # the reader sent a post while the sender was idle

    # --- views -------------------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        """Posts this connection has on the wire: batch posts in state `sent` plus control posts."""
        return self.posts.inflight + len(self._control)

    def statistics(self) -> SessionStatistics:
        """A snapshot of this connection: its post table, control posts, noops waiting to go out, and
        frame counters."""
        return SessionStatistics(
            posts=self.posts.statistics(),
            control_posts=len(self._control),
            pending_noops=len(self._pending_noops),
            inflight=self.inflight,
            frames_in=self.frames_in,
            bad_frames=self.bad_frames,
            stray_replies=self.stray_replies,
        )

    # --- lifetime ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the session until the connection ends: by raising ConnectionLost, or by cancellation.

        Anything else a task raises (a bug, including one at the socket) propagates, to stop the engine.
        """
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader)
                nursery.start_soon(self._heartbeat)
                nursery.start_soon(self._sender)
                nursery.start_soon(self._post_timer)
                nursery.start_soon(self._sync)
        except BaseExceptionGroup as group:
            lost, rest = group.split(ConnectionLost)
            if rest is not None or lost is None:
                raise
            leaf = _first_leaf(lost)
            # A new exception, not the leaf `from` the group: the group contains the leaf, which would put
            # it inside its own cause chain and lose its real cause (the transport error, if any). The
            # group stays reachable as the (suppressed) `__context__`.
            raise ConnectionLost(*leaf.args).with_traceback(leaf.__traceback__) from leaf.__cause__
        finally:
            self.recover()
            with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                await self.ws.aclose()

    def recover(self) -> None:
        """The one cleanup path: resolve every pending post as disconnected/not sent, exactly once."""
        if self._recovered:
            return
        self._recovered = True
        drained = self.posts.drain_on_disconnect(trio.current_time())
        for entry in drained:
            self.host.on_post_resolved(self, entry)
        for control in self._control.values():
            control.done.set()  # waiters see result None: unanswered
        self._control.clear()
        self.host.on_session_end(self, drained)

    def wake_sender(self) -> None:
        """Work was queued or inflight room freed: let the sender look again. Within the reader's step,
        an idle sender is not woken: the reader sends in its place right after the step (`_reader`) —
        unless the reader already did and the sender has not yet run to pace from that post."""
        if self._in_reader_step and self._sender_idle and not self._reader_sent:
            self._reader_sends = True
            return
        self._sender_woken = bool(self._work.unpark_all()) or self._sender_woken

    # --- requests ----------------------------------------------------------------------------------

    async def info(self, request: dict[str, Any]) -> Any:
        """Send an info request as a post and return its `data`; raises InfoError if refused/unanswered."""
        post_id, control = self._new_control()
        frame = {"method": "post", "id": post_id, "request": {"type": "info", "payload": request}}
        try:
            await self._send(_COMPACT_JSON.encode(frame))
            with trio.move_on_after(self.connection.info_timeout_s):
                await control.done.wait()
        finally:
            self._control.pop(post_id, None)  # answered, timed out or cancelled: no longer inflight
        result = control.result
        if isinstance(result, m.InfoResult):
            if self.tap is not None:
                self.tap.info(request, result.data)
            return result.data
        if result is None:
            raise InfoError(f"info {request.get('type')!r} got no answer")
        raise InfoError(f"info {request.get('type')!r} refused: {result}")

    async def action(self, action: dict[str, Any]) -> m.PostResult | None:
        """Sign and send one action outside the batch path (`updateLeverage` at start-up) and return
        the venue's answer, or None when it stays unanswered within the post timeout."""
        payload = self.host.sign(action, self.host.next_nonce())
        post_id, control = self._new_control()
        frame = {"method": "post", "id": post_id, "request": {"type": "action", "payload": payload}}
        try:
            await self._send(_COMPACT_JSON.encode(frame))
            with trio.move_on_after(self.batch.post_timeout_s):
                await control.done.wait()
        finally:
            self._control.pop(post_id, None)
        return control.result

    async def subscribe(self, subscription: dict[str, Any]) -> None:
        """Send a subscribe request; its ack arrives as a SubscriptionAck message to the host."""
        await self._send(json.dumps({"method": "subscribe", "subscription": subscription}))

    def invalidate(self, original: PostEntry[m.PostResult]) -> None:
        """Queue a noop signed with `original`'s nonce: if accepted, the original can never execute."""
        self._pending_noops.append(original)
        self.wake_sender()

    def _new_control(self, invalidates: PostEntry[m.PostResult] | None = None) -> tuple[int, _ControlPost]:
        post_id = self._next_control_id
        self._next_control_id += 1
        control = _ControlPost(invalidates=invalidates)
        self._control[post_id] = control
        return post_id, control

    async def _send(self, text: str) -> None:
        try:
            await self.ws.send_message(text)
        except _TRANSPORT_FAILURES as exc:  # anything else is a bug: it propagates and stops the engine
            raise ConnectionLost(f"send failed: {exc!r}") from exc
        self.last_sent = trio.current_time()

    # --- tasks -------------------------------------------------------------------------------------

    async def _sync(self) -> None:
        try:
            await self.host.sync(self)
        except InfoError as exc:
            raise ConnectionLost(f"sync failed: {exc}") from exc

    async def _reader(self) -> None:
        while True:
            try:
                text = await self.ws.get_message()
            except _TRANSPORT_FAILURES as exc:  # anything else is a bug: it propagates
                raise ConnectionLost(f"receive failed: {exc!r}") from exc
            if self.trace is not None:
                self.trace.frame_arrived()
            tap = self.tap
            recv_us = tap.now_us() if tap is not None else 0
            self.frames_in += 1
            try:
                msg = m.decode_frame(text)
            except m.ProtocolError as exc:
                self.bad_frames += 1
                log.warning("undecodable frame #%d: %s", self.bad_frames, exc)
                continue
            self._sender_woken = False  # from here on: woken by this frame's step
            self._in_reader_step = True
            try:
                self._dispatch(msg, trio.current_time())
            finally:
                self._in_reader_step = False
            if self._reader_sends:
                # The step queued work for an idle sender (a signal's order), which would only send it
                # at once: the reader sends it itself, instead of through a round of the scheduler (a
                # task switch that cost more than the rest of a cold signal path's sending). Then the
                # sender is woken, to keep the batch interval from this post and send what is left.
                self._reader_sends = False
                try:
                    await self._send_next(by_reader=True)
                finally:
                    self._work.unpark_all()
            elif self._sender_woken:
                # The step queued work for a sender that was waiting for inflight room: let it run
                # before the next frame. Trio may run the tasks of one batch in either order; this
                # checkpoint puts the reader's next frame after the sender.
                await trio.lowlevel.checkpoint()
            if tap is not None and isinstance(msg, _MARKET_DATA):
                tap.frame(recv_us, text)  # after the step and its post: recording never delays an order

    def _dispatch(self, msg: m.InboundMessage, now: float) -> None:
        if isinstance(msg, m.PostReply):
            self._on_post_reply(msg, now)
            return
        if isinstance(msg, m.Pong):
            self._pong.set()
            return
        if isinstance(msg, _MARKET_DATA):
            self.last_market_data = now
        elif isinstance(msg, m.ChannelError) and (refused := _REFUSED_POST.search(msg.message)):
            # The venue refused post N (too many in flight) and will never answer it: settle it now as
            # never executed, as the reply to it would have, instead of waiting out the post timeout.
            self._on_post_reply(m.PostReply(int(refused.group(1)), m.TransportErr(msg.message)), now)
        self.host.on_message(self, msg, now)

    def _on_post_reply(self, reply: m.PostReply, now: float) -> None:
        control = self._control.get(reply.id)
        if control is not None:
            control.result = reply.result
            control.done.set()
            if control.invalidates is not None:
                del self._control[reply.id]
                self.host.on_noop_outcome(self, control.invalidates, reply.result)
            self.wake_sender()
            return
        if reply.id >= CONTROL_ID_BASE:
            self.stray_replies += 1
            log.info("stray control reply %d (late or duplicate)", reply.id)
            return
        resolved = self.posts.resolve(reply.id, reply.result, now)
        if isinstance(resolved, PostEntry):
            self.host.on_post_resolved(self, resolved)
            self.wake_sender()
        else:
            self.stray_replies += 1
            log.info("stray post reply %d: %s", reply.id, resolved.reason.value)

    async def _heartbeat(self) -> None:
        cfg = self.connection
        while True:
            now = trio.current_time()
            ping_due = self.last_sent + cfg.ping_after_idle_s
            stall_due = self.last_market_data + cfg.md_stall_s
            if now >= stall_due:
                raise ConnectionLost(f"no market data for {now - self.last_market_data:.1f} s")
            if now >= ping_due:
                self._pong = trio.Event()
                await self._send('{"method":"ping"}')
                with trio.move_on_after(cfg.pong_timeout_s) as waited:
                    await self._pong.wait()
                if waited.cancelled_caught:
                    raise ConnectionLost(f"no pong within {cfg.pong_timeout_s} s")
                continue
            await trio.sleep_until(min(ping_due, stall_due))

    async def _sender(self) -> None:
        interval = self.batch.interval_ms / 1000
        while True:
            if self.inflight >= self.batch.inflight_limit:
                await self._work.park()
                continue
            if not await self._send_next():
                # Idle: nothing to send. A reader step that queues work while the sender is parked here
                # sends the first post itself (see `_reader`); the interval then runs from that post.
                self._sender_idle = True
                try:
                    await self._work.park()
                finally:
                    self._sender_idle = False
                if not self._reader_sent:
                    continue
                self._reader_sent = False
            if interval > 0:
                await trio.sleep(interval)

    async def _send_next(self, *, by_reader: bool = False) -> bool:
        """Send the next post (a pending noop first, else the next batch); False if there is none."""
        inflight = self.inflight
        if inflight >= self.batch.inflight_limit:
            return False
        if self._pending_noops:
            self._reader_sent |= by_reader
            await self._send_noop(self._pending_noops.pop(0))
            return True
        batch = self.host.next_batch(inflight)
        if batch is None:
            return False
        self._reader_sent |= by_reader
        await self._send_batch(batch)
        return True

    async def _send_batch(self, batch: Batch) -> None:
        action = action_to_wire(batch.action())
        nonce = self.host.next_nonce()
        payload = self.host.sign(action, nonce, batch.expires_after)
        now = trio.current_time()
        entry = self.posts.create(batch, nonce, now)
        text = _COMPACT_JSON.encode(
            {"method": "post", "id": entry.post_id, "request": {"type": "action", "payload": payload}}
        )
        # `sent` means "may be on the wire": marked before the await, so a send that fails or is
        # cancelled half-way is an unknown outcome (reconciled), never a silent "not sent".
        self.posts.mark_sent(entry.post_id, now)
        self.host.on_batch_sent(self, entry)
        if self.trace is not None:
            self.trace.post_handed(batch)
        try:
            await self._send(text)
        finally:
            self._posted.unpark_all()  # the post timer takes up the new post's deadline (after the send)
        self.host.on_batch_written(self, entry)

    async def _send_noop(self, original: PostEntry[m.PostResult]) -> None:
        payload = self.host.sign(action_to_wire(NoopAction()), original.nonce)
        post_id, control = self._new_control(invalidates=original)
        control.expires_at = trio.current_time() + self.batch.post_timeout_s
        self._posted.unpark_all()
        frame = {"method": "post", "id": post_id, "request": {"type": "action", "payload": payload}}
        await self._send(_COMPACT_JSON.encode(frame))

    async def _post_timer(self) -> None:
        while True:
            noops = [c.expires_at for c in self._control.values() if c.expires_at is not None]
            due = min([d for d in (self.posts.next_expiry(), *noops) if d is not None], default=None)
            if due is None:
                await self._posted.park()
                continue
            await trio.sleep_until(due)
            now = trio.current_time()
            for entry in self.posts.expire(now):
                self.host.on_post_resolved(self, entry)
            self._retry_unanswered_noops(now)
            self.wake_sender()

    def _retry_unanswered_noops(self, now: float) -> None:
        """A noop lost like the post it invalidates would hold that post's orders unresolved (and its
        inflight slot) for the rest of the connection: send it again, with the same nonce. A late
        answer to the first is then a stray; whichever copy the venue takes decides."""
        for post_id, control in list(self._control.items()):
            original, due = control.invalidates, control.expires_at
            if original is not None and due is not None and due <= now:
                del self._control[post_id]
                log.warning(
                    "noop %d for nonce %d unanswered after %.1f s: sending it again",
                    post_id,
                    original.nonce,
                    self.batch.post_timeout_s,
                )
                self._pending_noops.append(original)


# --- the connection supervisor ---------------------------------------------------------------------


Connect = Callable[[], AbstractAsyncContextManager[WsLike]]


async def run_connection(
    connect: Connect,
    make_session: Callable[[WsLike], Session],
    *,
    connection: ConnectionConfig | None = None,
    rng: random.Random | None = None,
    on_disconnect: Callable[[BaseException | None, float], None] | None = None,
    sessions: int | None = None,
    urgent: Callable[[], bool] | None = None,
) -> None:
    """Connect, run one session, reconnect with backoff forever (or `sessions` times, for tests).

    The backoff is `connection`'s (`ConnectionConfig.reconnect_delay`). The attempt count resets after
    a session that stayed up for `healthy_after_s`, so one blip after a long healthy run retries
    quickly. While `urgent()` holds (the engine holds a position that only a connection can flatten)
    the delay never exceeds `backoff_initial_s`: a venue whose market data keeps stalling must not grow
    the backoff past the time stop.
    """
    cfg = connection if connection is not None else ConnectionConfig()
    rng = rng or random.Random()
    attempt = 0
    count = 0
    while sessions is None or count < sessions:
        count += 1
        started = trio.current_time()
        error: BaseException | None = None
        try:
            async with connect() as ws:
                await make_session(ws).run()
        except BaseException as exc:
            if not is_connection_failure(exc):
                raise
            error = exc
        uptime = trio.current_time() - started
        if uptime >= cfg.healthy_after_s:
            attempt = 0
        delay = cfg.reconnect_delay(attempt, rng)
        if urgent is not None and urgent():
            delay = min(delay, cfg.backoff_initial_s)
        attempt += 1
        log.warning("connection ended after %.1f s (%s); reconnecting in %.1f s", uptime, error, delay)
        if on_disconnect is not None:
            on_disconnect(error, delay)
        await trio.sleep(delay)


def is_connection_failure(exc: BaseException) -> bool:
    """True if `exc` (or every leaf of a group) means "the connection is gone, try again":
    `ConnectionLost` from a session, or a `_TRANSPORT_FAILURES` error from connecting or closing."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_connection_failure(leaf) for leaf in exc.exceptions)
    return isinstance(exc, (ConnectionLost, *_TRANSPORT_FAILURES))


def _first_leaf(group: BaseExceptionGroup[ConnectionLost]) -> ConnectionLost:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, ConnectionLost)
    return leaf
