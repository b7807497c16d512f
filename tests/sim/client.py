"""A tiny WebSocket client for the simulator's tests, plus SDK-based signing helpers.

Signing goes through the official Python SDK (``hyperliquid.utils.signing``) so the simulator's
independent verifier is checked against the reference implementation.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
import trio_websocket
from eth_account.signers.local import LocalAccount
from hyperliquid.utils.signing import (
    OrderRequest,
    order_request_to_order_wire,
    order_wires_to_order_action,
    sign_l1_action,
)
from hyperliquid.utils.types import Cloid

from hip3_trio.sim.server import Simulator


@attrs.define(eq=False)
class SimClient:
    """Sends requests and collects frames; frames not asked for yet wait in ``backlog``."""

    ws: trio_websocket.WebSocketConnection
    greeting: str = ""
    backlog: list[dict[str, Any]] = attrs.Factory(list)
    next_id: int = 1

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(message))

    async def raw(self) -> str | bytes:
        return await self.ws.get_message()

    async def frame(self) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        text = await self.ws.get_message()
        msg: dict[str, Any] = json.loads(text)
        return msg

    async def wait_for(self, channel: str, **match: Any) -> dict[str, Any]:
        """The next frame on ``channel`` whose data matches ``match``; others go to the backlog."""
        for i, waiting in enumerate(self.backlog):
            if _matches(waiting, channel, match):
                return self.backlog.pop(i)
        while True:
            msg: dict[str, Any] = json.loads(await self.ws.get_message())
            if _matches(msg, channel, match):
                return msg
            self.backlog.append(msg)

    def drain(self, channel: str) -> list[dict[str, Any]]:
        """Remove and return the backlog frames on ``channel``."""
        hits = [m for m in self.backlog if m.get("channel") == channel]
        self.backlog = [m for m in self.backlog if m.get("channel") != channel]
        return hits

    async def send_post(self, kind: str, payload: Any) -> int:
        post_id = self.next_id
        self.next_id += 1
        await self.send({"method": "post", "id": post_id, "request": {"type": kind, "payload": payload}})
        return post_id

    async def post(self, kind: str, payload: Any) -> dict[str, Any]:
        """Post and return ``response`` of the reply with the same id."""
        post_id = await self.send_post(kind, payload)
        reply = await self.wait_for("post", id=post_id)
        response: dict[str, Any] = reply["data"]["response"]
        return response

    async def info(self, payload: dict[str, Any]) -> Any:
        response = await self.post("info", payload)
        assert response["type"] == "info", response
        assert response["payload"]["type"] == payload["type"]
        return response["payload"]["data"]

    async def action(self, payload: dict[str, Any]) -> dict[str, Any]:
        response = await self.post("action", payload)
        assert response["type"] == "action", response
        result: dict[str, Any] = response["payload"]
        return result

    async def subscribe(self, subscription: dict[str, Any]) -> dict[str, Any]:
        await self.send({"method": "subscribe", "subscription": subscription})
        ack = await self.wait_for("subscriptionResponse")
        assert ack["data"]["method"] == "subscribe"
        return ack


class Trader:
    """Signs actions for one wallet with increasing nonces and posts them."""

    def __init__(self, client: SimClient, wallet: LocalAccount, nonce: int = 1_700_000_000_000) -> None:
        self.c, self.wallet, self.nonce = client, wallet, nonce

    def sign(self, action: dict[str, Any], *, expires_after: int | None = None) -> dict[str, Any]:
        """The next nonce's signed payload (not sent)."""
        self.nonce += 1
        return signed(self.wallet, action, self.nonce, expires_after=expires_after)

    async def send(self, action: dict[str, Any], *, expires_after: int | None = None) -> dict[str, Any]:
        return await self.c.action(self.sign(action, expires_after=expires_after))

    async def order(self, *args: Any, **kwargs: Any) -> Any:
        """Place one order; the status of that order."""
        result = await self.send(order_action(*args, **kwargs))
        assert result["status"] == "ok", result
        return result["response"]["data"]["statuses"][0]


def book(sim: Simulator, coin: str) -> tuple[float, float]:
    """The best bid and ask of a simulator market."""
    m = sim.exchange.markets[coin]
    bid, ask = m.best_bid(), m.best_ask()
    assert bid is not None and ask is not None
    return float(bid), float(ask)


def _matches(msg: dict[str, Any], channel: str, match: dict[str, Any]) -> bool:
    if msg.get("channel") != channel:
        return False
    data = msg.get("data")
    return all(isinstance(data, dict) and data.get(k) == v for k, v in match.items())


@asynccontextmanager
async def connect(sim: Simulator) -> AsyncIterator[SimClient]:
    """A client over an in-memory stream; the greeting has been read."""
    async with trio.open_nursery() as nursery:
        stream = sim.connect_memory(nursery)
        ws = await trio_websocket.wrap_client_stream(nursery, stream, "sim", "/ws")  # type: ignore[arg-type]
        client = SimClient(ws=ws)
        greeting = await ws.get_message()
        assert isinstance(greeting, str)
        client.greeting = greeting
        yield client
        nursery.cancel_scope.cancel()


def signed(
    wallet: LocalAccount,
    action: dict[str, Any],
    nonce: int,
    *,
    mainnet: bool = False,
    vault: str | None = None,
    expires_after: int | None = None,
) -> dict[str, Any]:
    """An /exchange payload signed by the SDK."""
    signature = sign_l1_action(wallet, action, vault, nonce, expires_after, mainnet)
    payload: dict[str, Any] = {"action": action, "nonce": nonce, "signature": signature}
    if vault is not None:
        payload["vaultAddress"] = vault
    if expires_after is not None:
        payload["expiresAfter"] = expires_after
    return payload


def order_action(
    asset: int,
    is_buy: bool,
    px: float,
    sz: float,
    tif: str = "Ioc",
    *,
    reduce_only: bool = False,
    cloid: str | None = None,
) -> dict[str, Any]:
    """An order action built with the SDK's wire helpers."""
    request: OrderRequest = {
        "coin": "",
        "is_buy": is_buy,
        "sz": sz,
        "limit_px": px,
        "order_type": {"limit": {"tif": tif}},
        "reduce_only": reduce_only,
    }
    if cloid is not None:
        request["cloid"] = Cloid(cloid)
    action: dict[str, Any] = order_wires_to_order_action([order_request_to_order_wire(request, asset)])
    return action
