"""A small one-connection venue client for the operator commands (`check`, `probe`).

It posts info requests and signed actions over one WebSocket and correlates the replies by post id;
nothing else (no subscriptions, no reconnects, no heartbeat: a command lasts seconds, the venue closes
a socket only after 60 s of silence). Its `info` has the same contract as `Session.info` (the answer's
`data`, or `InfoError`), so `check.preflight` runs unchanged on either.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import trio
import trio_websocket

from hip3_trio.config import Config, ConfigError
from hip3_trio.venue.session import InfoError, WsLike
from hip3_trio.wire.keys import KeyConfigError
from hip3_trio.wire.signing import Signer

__all__ = ["Endpoint", "VenueClient", "open_venue_client", "venue_endpoint", "websocket_url_connector"]

Connect = Callable[[], AbstractAsyncContextManager[WsLike]]


class VenueClient:
    """Posts over one connection; `run` (started in a nursery) reads and dispatches the replies."""

    def __init__(self, ws: WsLike, *, timeout_s: float = 10.0) -> None:
        self.ws = ws
        self.timeout_s = timeout_s
        self._next_id = 1
        self._waiting: dict[int, trio.MemorySendChannel[Any]] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            text = await self.ws.get_message()
            try:
                frame = json.loads(text)
            except ValueError:
                continue  # the greeting ("Websocket connection established.") is plain text
            if not isinstance(frame, dict) or frame.get("channel") != "post":
                continue
            data = frame.get("data")
            if not isinstance(data, dict):
                continue
            send = self._waiting.pop(data.get("id"), None)  # type: ignore[arg-type]
            if send is not None:
                send.send_nowait(data.get("response"))

    async def post(self, kind: str, payload: Any) -> Any:
        """Post one request; the reply's `response` (raises `InfoError` if none comes in time)."""
        post_id = self._next_id
        self._next_id += 1
        send, receive = trio.open_memory_channel[Any](1)
        self._waiting[post_id] = send
        frame = {"method": "post", "id": post_id, "request": {"type": kind, "payload": payload}}
        try:
            await self.ws.send_message(json.dumps(frame, separators=(",", ":")))
            with trio.move_on_after(self.timeout_s):
                return await receive.receive()
        finally:
            self._waiting.pop(post_id, None)
        raise InfoError(f"{kind} post got no answer within {self.timeout_s} s")

    async def info(self, request: dict[str, Any]) -> Any:
        """An info request's `data` (as `Session.info`); raises `InfoError` if refused or unanswered."""
        response = await self.post("info", request)
        if isinstance(response, dict) and response.get("type") == "info":
            payload = response.get("payload")
            if isinstance(payload, dict) and "data" in payload:
                return payload["data"]
        raise InfoError(f"info {request.get('type')!r} refused: {json.dumps(response)[:200]}")

    async def action(self, payload: dict[str, Any]) -> Any:
        """Post a signed action; the reply's payload (`{"status": "ok"|"err", "response": ...}`), or the
        transport-level error as ``{"status": "transportError", "response": <text>}``."""
        response = await self.post("action", payload)
        if isinstance(response, dict) and response.get("type") == "action":
            return response.get("payload")
        if isinstance(response, dict) and response.get("type") == "error":
            return {"status": "transportError", "response": response.get("payload")}
        return {"status": "unexpected", "response": response}


def websocket_url_connector(url: str) -> Connect:
    """One trio-websocket connection to `url` per call."""

    @asynccontextmanager
    async def connect() -> AsyncIterator[WsLike]:
        async with trio_websocket.open_websocket_url(url) as ws:
            yield ws

    return connect


@asynccontextmanager
async def open_venue_client(connect: Connect, *, timeout_s: float = 10.0) -> AsyncIterator[VenueClient]:
    """Connect, read replies in the background, close on exit."""
    async with connect() as ws, trio.open_nursery() as nursery:
        client = VenueClient(ws, timeout_s=timeout_s)
        await nursery.start(client.run)
        yield client
        nursery.cancel_scope.cancel()


@attrs.frozen
class Endpoint:
    """Where an operator command talks to and as whom: `user` is the account traded (the vault when
    trading for one); `signer` the loaded key (None: `key_problem` says why)."""

    url: str
    connect: Connect
    user: str
    signer: Signer | None
    key_problem: str | None = None


@asynccontextmanager
async def venue_endpoint(env: str, ws_url: str | None, seed: int, config: Config) -> AsyncIterator[Endpoint]:
    """The endpoint for `env`; for ``sim`` (without `ws_url`) the built-in simulator, started on
    127.0.0.1 for the block, trading its funded account with its throwaway key. Raises `ConfigError`
    when the url or the account cannot be determined."""
    from hip3_trio.cli import URLS

    if env == "sim" and ws_url is None:
        from hip3_trio.sim import SimConfig, open_simulator

        async with open_simulator(SimConfig(seed=seed)) as sim:
            assert sim.url is not None and sim.account is not None and sim.account_key is not None
            sim_url = sim.url
            signer = Signer.from_key(sim.account_key)
            yield Endpoint(sim_url, websocket_url_connector(sim_url), sim.account, signer)
        return
    url = ws_url or config.connection.ws_url or URLS.get(env)
    if url is None:
        raise ConfigError(["--ws-url: --env sim with an external endpoint needs the url"], "command line")
    user = config.vault_address or config.account_address
    if user is None:
        raise ConfigError([f"account_address: required for --env {env}"], "command line")
    try:
        loaded: Signer | None = Signer.load(key_file=config.key_file)
        problem = None
    except KeyConfigError as exc:
        loaded, problem = None, str(exc)
    yield Endpoint(url, websocket_url_connector(url), user.lower(), loaded, problem)
