"""One client WebSocket connection: the venue's framing, limits, subscriptions, posts and faults.

The connection owns a nursery whose lifetime is the connection: a reader (client frames → sync
handling), a writer (the single task that puts frames on the wire, where frame-level faults apply),
an idle watchdog, and one short task per delayed post reply. Handling a client frame is synchronous:
it may execute an action, queue the reply and publish events, but never awaits. Anything that ends
the connection calls ``request_close``; ``run`` then closes the transport (abruptly, or with a close
frame) and cancels the nursery.

Latency (``realism.LatencyModel``): every frame is delayed by the one-way latency in each direction: a
client frame is handled that long after it was read (a delivery task keeps their order), an outgoing
frame leaves the writer that long after it was queued. With blocks on (``realism.BlockModel``) an action
post is queued for its block (``Simulator.submit``) and counts as in flight until its reply is queued.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .info import handle_info
from .streams import MARKET_DATA_CHANNELS, BadSubscription, SubKey, parse_subscription
from .views import bbo_data, ctx_data, l2_data, order_wire

if TYPE_CHECKING:
    from .server import Simulator

logger = logging.getLogger(__name__)
GREETING = "Websocket connection established."
PARSE_ERROR = "Error parsing JSON into valid websocket request: "
TOO_MANY = "429 Too Many Requests"
# Over the posts-in-flight limit (summed over all connections, as the venue counts per IP) the venue
# answers on the `error` channel, naming the refused post, and never sends a `post` reply for it
# (PROTOCOL.md, the `error` channel; TS-SDK _dispatcher.ts settles the post from this text).
TOO_MANY_PENDING = "too many pending post requests id={}"
GARBAGE = "\x00\x01garbage{{{ not json"
_ABRUPT = -1


@attrs.define(eq=False)
class Connection:
    """Server side of one client connection."""

    sim: Simulator
    ws: WebSocketConnection
    stream: trio.abc.Stream
    # Outgoing frames with the Trio time at which they may leave (queued + one-way latency).
    _outbox: trio.MemorySendChannel[tuple[float, str]] = attrs.field(init=False)
    _outbox_recv: trio.MemoryReceiveChannel[tuple[float, str]] = attrs.field(init=False)
    # Client frames in transit (latency on): the Trio time at which each reaches the venue.
    _inbox: trio.MemorySendChannel[tuple[float, str | bytes]] = attrs.field(init=False)
    _inbox_recv: trio.MemoryReceiveChannel[tuple[float, str | bytes]] = attrs.field(init=False)
    _tasks: trio.Nursery | None = None
    subscriptions: dict[SubKey, dict[str, Any]] = attrs.Factory(dict)
    inflight: int = 0
    frames_sent: int = 0
    _recent: deque[float] = attrs.Factory(deque)
    _last_client_msg: float = 0.0
    _close_code: int | None = None
    _closing: trio.Event = attrs.Factory(trio.Event)
    _latency_s: float = 0.0

    def __attrs_post_init__(self) -> None:
        self._outbox, self._outbox_recv = trio.open_memory_channel[tuple[float, str]](
            self.sim.config.outbox_size
        )
        self._inbox, self._inbox_recv = trio.open_memory_channel[tuple[float, str | bytes]](math.inf)
        self._latency_s = self.sim.config.realism.latency.one_way_ms / 1000.0

    # -- lifetime --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until the client leaves or something closes the connection."""
        self._last_client_msg = trio.current_time()
        self._enqueue_text(GREETING)
        try:
            async with trio.open_nursery() as tasks:
                self._tasks = tasks
                tasks.start_soon(self._writer)
                tasks.start_soon(self._reader)
                if self._latency_s > 0:
                    tasks.start_soon(self._deliver)
                tasks.start_soon(self._idle_watchdog)
                await self._closing.wait()
                tasks.cancel_scope.cancel()
        finally:
            self.sim.hub.remove_all(self)
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._close_transport()

    def request_close(self, code: int | None = None) -> None:
        """End the connection: ``None`` drops the transport, an int sends a close frame first."""
        if not self._closing.is_set():
            self._close_code = _ABRUPT if code is None else code
            self._closing.set()

    async def _close_transport(self) -> None:
        if self._close_code is not None and self._close_code != _ABRUPT:
            with trio.move_on_after(2):
                await self.ws.aclose(self._close_code)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.aclose()

    # -- tasks -----------------------------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            try:
                message = await self.ws.get_message()
            except ConnectionClosed:
                self.request_close(None)
                return
            if self._latency_s > 0:
                self._inbox.send_nowait((trio.current_time() + self._latency_s, message))
                continue
            self._last_client_msg = trio.current_time()
            self.handle(message)

    async def _deliver(self) -> None:
        """Hand client frames to ``handle`` once their one-way latency has passed, in order."""
        async for due, message in self._inbox_recv:
            await trio.sleep_until(due)
            self._last_client_msg = trio.current_time()
            self.handle(message)

    async def _writer(self) -> None:
        faults = self.sim.faults
        async for due, text in self._outbox_recv:
            if due > trio.current_time():
                await trio.sleep_until(due)
            while faults.take("garbage_frames"):
                await self._send(GARBAGE)
            if text != GREETING and faults.take("truncated_frames"):
                text = text[: len(text) // 2]
            await self._send(text)

    async def _send(self, text: str) -> None:
        try:
            await self.ws.send_message(text)
        except ConnectionClosed:
            self.request_close(None)
            return
        self.frames_sent += 1
        limit = self.sim.faults.close_after_frames
        if limit is not None and self.frames_sent >= limit:
            self.sim.faults.close_after_frames = None
            self.request_close(self.sim.faults.close_code)

    async def _idle_watchdog(self) -> None:
        timeout = self.sim.config.idle_timeout_s
        while True:
            deadline = self._last_client_msg + timeout
            if trio.current_time() >= deadline:
                self.request_close(1000)
                return
            await trio.sleep_until(deadline)

    async def _reply_later(self, text: str, copies: int, delay: float) -> None:
        await trio.sleep(delay)
        self.inflight -= 1
        for _ in range(copies):
            self._enqueue_text(text)

    # -- outgoing --------------------------------------------------------------------------------

    def _enqueue_text(self, text: str) -> None:
        try:
            self._outbox.send_nowait((trio.current_time() + self._latency_s, text))
        except trio.WouldBlock:
            self.request_close(None)  # a consumer this slow is dropped, as the venue does
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _enqueue(self, message: dict[str, Any]) -> None:
        self._enqueue_text(json.dumps(message, separators=(",", ":")))

    def push(self, key: SubKey, message: dict[str, Any]) -> None:
        """A subscription push from the hub (market data is dropped during a stall)."""
        faults = self.sim.faults
        if key[0] in MARKET_DATA_CHANNELS and (faults.stall_market_data or key[1] in faults.silent_markets):
            return
        self._enqueue(message)

    def _error(self, text: str) -> None:
        self._enqueue({"channel": "error", "data": text})

    # -- incoming (synchronous) ------------------------------------------------------------------

    def handle(self, message: str | bytes) -> None:
        """Handle one client frame. Synchronous: state changes and queued replies, no awaiting.

        A bug in the simulator answers this frame with an error instead of killing the server.
        """
        try:
            self._handle(message)
        except Exception:
            logger.exception("simulator failed on a client frame")
            self._error("Internal server error")

    def _handle(self, message: str | bytes) -> None:
        now = trio.current_time()
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - 60.0:
            self._recent.popleft()
        over_limit = len(self._recent) > self.sim.config.max_messages_per_minute
        text = message.decode(errors="replace") if isinstance(message, bytes) else message
        try:
            request = json.loads(text)
        except ValueError:
            self._error(PARSE_ERROR + text)
            return
        if not isinstance(request, dict):
            self._error(PARSE_ERROR + text)
            return
        method = request.get("method")
        if method == "ping":
            self._enqueue({"channel": "pong"})
        elif over_limit:
            if method == "post" and isinstance(request.get("id"), int):
                self._reply(request["id"], "error", TOO_MANY, count_inflight=False)
            else:
                self._error(TOO_MANY)
        elif method in ("subscribe", "unsubscribe"):
            self._subscription(method, request.get("subscription"), text)
        elif method == "post":
            self._post(request, text)
        else:
            self._error(PARSE_ERROR + text)

    def _subscription(self, method: str, raw: object, text: str) -> None:
        ex = self.sim.exchange
        try:
            key, echo = parse_subscription(raw, frozenset(ex.markets), ex.dex_names())
        except BadSubscription:
            self._error(PARSE_ERROR + text)
            return
        if method == "unsubscribe":
            if key not in self.subscriptions:
                self._error("Already unsubscribed: " + json.dumps(raw, separators=(",", ":")))
                return
            del self.subscriptions[key]
            self.sim.hub.remove(key, self)
            self._enqueue(
                {"channel": "subscriptionResponse", "data": {"method": "unsubscribe", "subscription": echo}}
            )
            return
        if key in self.subscriptions:
            self._error("Already subscribed: " + json.dumps(raw, separators=(",", ":")))
            return
        if len(self.subscriptions) >= self.sim.config.max_subscriptions:
            self._error("Cannot track more than 1000 total subscriptions")
            return
        self.subscriptions[key] = echo
        self.sim.hub.add(key, self)
        self._enqueue(
            {"channel": "subscriptionResponse", "data": {"method": "subscribe", "subscription": echo}}
        )
        self._initial_push(key)

    def _initial_push(self, key: SubKey) -> None:
        """What the venue sends right after the ack (nothing for orderUpdates)."""
        ex = self.sim.exchange
        now = ex.clock.now_ms()
        kind = key[0]
        if kind in MARKET_DATA_CHANNELS:
            market = ex.markets[key[1]]
            if kind == "bbo":
                self.push(key, {"channel": "bbo", "data": bbo_data(market, now)})
            elif kind == "l2Book":
                self.push(key, {"channel": "l2Book", "data": l2_data(market, now)})
            else:
                self.push(key, {"channel": "activeAssetCtx", "data": ctx_data(market)})
        elif kind == "userFills":
            account = ex.accounts.users.get(key[1])
            fills = account.recent_fills(ex.config.fills_snapshot_limit) if account else []
            data = {"isSnapshot": True, "user": key[1], "fills": [f.to_wire() for f in fills]}
            self.push(key, {"channel": "userFills", "data": data})
        elif kind == "clearinghouseState":
            user, dex = key[1], key[2]
            state = ex.clearinghouse_state(user, dex)
            self.push(key, {"channel": kind, "data": {"dex": dex, "user": user, "clearinghouseState": state}})
        elif kind == "openOrders":
            user, dex = key[1], key[2]
            orders = [order_wire(r) for r in ex.open_orders(user, dex)]
            self.push(key, {"channel": kind, "data": {"dex": dex, "user": user, "orders": orders}})

    def _post(self, request: dict[str, Any], text: str) -> None:
        post_id = request.get("id")
        body = request.get("request")
        if isinstance(post_id, bool) or not isinstance(post_id, int) or not isinstance(body, dict):
            self._error(PARSE_ERROR + text)
            return
        if body.get("type") not in ("info", "action"):
            self._error(PARSE_ERROR + text)
            return
        if self.sim.inflight_posts() >= self.sim.config.max_inflight_posts:
            self._error(TOO_MANY_PENDING.format(post_id))
            return
        if body["type"] == "action" and self.sim.faults.take("lose_posts"):
            return  # lost in transit: the venue never saw it
        if body["type"] == "action" and self.sim.config.realism.blocks.enabled:
            self.inflight += 1  # in flight until its block answers it
            self.sim.submit(self, post_id, body.get("payload"))
            return
        ex = self.sim.exchange
        payload = body.get("payload")
        if body["type"] == "info":
            self._answer(post_id, lambda: handle_info(ex, payload))
        else:
            self._answer(post_id, lambda: ex.execute(payload))
        ex.flush()

    def execute_action(self, post_id: int, payload: object) -> None:
        """Execute a queued action post in its block and queue the reply (the block loop flushes)."""
        self.inflight -= 1
        self._answer(post_id, lambda: self.sim.exchange.execute(payload))

    def _answer(self, post_id: int, run: Callable[[], tuple[str, Any]]) -> None:
        """Reply to a post with what ``run`` returns; a simulator bug answers a 500, not a dead server."""
        try:
            kind, payload = run()
        except Exception:
            logger.exception("simulator failed on a post")
            kind, payload = "error", "500 Internal Server Error"
        self._reply(post_id, kind, payload, count_inflight=True)

    def _reply(self, post_id: int, kind: str, payload: Any, *, count_inflight: bool) -> None:
        faults = self.sim.faults
        text = json.dumps(
            {"channel": "post", "data": {"id": post_id, "response": {"type": kind, "payload": payload}}},
            separators=(",", ":"),
        )
        if count_inflight and faults.take("drop_replies"):
            return
        copies = 2 if count_inflight and faults.take("duplicate_replies") else 1
        delay = faults.reply_delay_s if count_inflight else 0.0
        if delay > 0 and self._tasks is not None:
            self.inflight += 1
            self._tasks.start_soon(self._reply_later, text, copies, delay)
            return
        for _ in range(copies):
            self._enqueue_text(text)
