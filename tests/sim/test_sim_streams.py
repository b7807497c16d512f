"""Subscriptions: acks, initial pushes, orderUpdates without snapshot, userFills snapshot then live."""

from __future__ import annotations

import trio
from eth_account.signers.local import LocalAccount
from trio.testing import MockClock

from hip3_trio.sim.server import Simulator

from .client import connect, order_action, signed
from .conftest import BASE_MS


def _ask(sim: Simulator, coin: str) -> float:
    ask = sim.exchange.markets[coin].best_ask()
    assert ask is not None
    return float(ask)


async def test_greeting_ping_and_malformed(autojump_clock: MockClock, sim: Simulator) -> None:
    async with connect(sim) as c:
        assert c.greeting == "Websocket connection established."
        await c.send({"method": "ping"})
        assert await c.frame() == {"channel": "pong"}
        await c.ws.send_message("{not json")
        assert await c.frame() == {
            "channel": "error",
            "data": "Error parsing JSON into valid websocket request: {not json",
        }
        await c.send({"method": "subscribe", "subscription": {"type": "nope"}})
        error = await c.frame()
        assert error["channel"] == "error" and error["data"].startswith("Error parsing JSON")
        await c.send({"method": "post", "request": {"type": "info", "payload": {"type": "meta"}}})  # no id
        assert (await c.frame())["channel"] == "error"
        # The socket is still healthy.
        assert (await c.info({"type": "meta"}))["universe"][0]["name"] == "BTC"


async def test_acks_echo_the_subscription(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    mixed = wallet.address  # checksummed; the echo lowercases it
    async with connect(sim) as c:
        ack = await c.subscribe({"type": "orderUpdates", "user": mixed})
        assert ack == {
            "channel": "subscriptionResponse",
            "data": {"method": "subscribe", "subscription": {"type": "orderUpdates", "user": mixed.lower()}},
        }
        ack = await c.subscribe({"type": "clearinghouseState", "user": mixed, "dex": "xyz"})
        assert ack["data"]["subscription"] == {
            "type": "clearinghouseState",
            "user": mixed.lower(),
            "dex": "xyz",
        }
        await c.send({"method": "subscribe", "subscription": {"type": "orderUpdates", "user": mixed}})
        dup = await c.wait_for("error")
        assert dup["data"].startswith("Already subscribed")
        await c.send({"method": "unsubscribe", "subscription": {"type": "orderUpdates", "user": mixed}})
        unsub = await c.wait_for("subscriptionResponse")
        assert unsub["data"]["method"] == "unsubscribe"


async def test_market_data_pushes(autojump_clock: MockClock, sim: Simulator) -> None:
    async with connect(sim) as c:
        await c.subscribe({"type": "bbo", "coin": "xyz:COIN"})
        first = await c.wait_for("bbo")
        assert first["data"]["coin"] == "xyz:COIN" and first["data"]["time"] == BASE_MS
        bid, ask = first["data"]["bbo"]
        assert set(bid) == {"px", "sz", "n"} and float(bid["px"]) < float(ask["px"])
        await c.subscribe({"type": "activeAssetCtx", "coin": "xyz:COIN"})
        ctx = await c.wait_for("activeAssetCtx")
        assert set(ctx["data"]["ctx"]) >= {
            "oraclePx",
            "markPx",
            "midPx",
            "funding",
            "openInterest",
            "prevDayPx",
        }
        ctx = await c.wait_for("activeAssetCtx")  # the next oracle update
        assert trio.current_time() == 3.0
        await c.subscribe({"type": "l2Book", "coin": "BTC"})
        book = await c.wait_for("l2Book")
        bids, asks = book["data"]["levels"]
        assert len(bids) == 10 and len(asks) == 10
        assert [float(x["px"]) for x in bids] == sorted((float(x["px"]) for x in bids), reverse=True)


async def test_order_updates_array_without_snapshot(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    async with connect(sim) as c:
        await c.action(signed(wallet, order_action(110000, True, _ask(sim, "xyz:COIN"), 1.0), BASE_MS))
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": wallet.address})
        with trio.move_on_after(1):
            msg = await c.wait_for("orderUpdates")
            raise AssertionError(f"orderUpdates sent a snapshot: {msg}")
        result = await c.action(
            signed(wallet, order_action(110000, True, _ask(sim, "xyz:COIN"), 1.0), BASE_MS + 1)
        )
        update = await c.wait_for("orderUpdates")
    assert isinstance(update["data"], list)
    (item,) = update["data"]
    assert item["status"] == "filled"
    assert item["order"]["oid"] == result["response"]["data"]["statuses"][0]["filled"]["oid"]
    assert set(item["order"]) >= {"coin", "side", "limitPx", "sz", "oid", "timestamp", "origSz"}
    assert item["order"]["side"] == "B" and item["order"]["sz"] == "0" and item["order"]["origSz"] == "1"


async def test_user_fills_snapshot_then_live(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    async with connect(sim) as c:
        await c.action(signed(wallet, order_action(110000, True, _ask(sim, "xyz:COIN"), 1.0), BASE_MS))
        await c.subscribe({"type": "userFills", "user": wallet.address})
        snapshot = await c.wait_for("userFills")
        assert snapshot["data"]["isSnapshot"] is True
        assert snapshot["data"]["user"] == wallet.address.lower()
        assert [f["coin"] for f in snapshot["data"]["fills"]] == ["xyz:COIN"]
        await c.action(signed(wallet, order_action(1, True, _ask(sim, "ETH"), 0.01), BASE_MS + 1))
        live = await c.wait_for("userFills")
    assert "isSnapshot" not in live["data"]
    assert [f["coin"] for f in live["data"]["fills"]] == ["ETH"]


async def test_account_pushes_carry_the_dex(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    async with connect(sim) as c:
        await c.subscribe({"type": "clearinghouseState", "user": wallet.address, "dex": "xyz"})
        initial = await c.wait_for("clearinghouseState")
        assert (
            initial["data"]["dex"] == "xyz" and initial["data"]["clearinghouseState"]["assetPositions"] == []
        )
        await c.subscribe({"type": "openOrders", "user": wallet.address, "dex": "xyz"})
        assert (await c.wait_for("openOrders"))["data"]["orders"] == []
        await c.action(signed(wallet, order_action(110000, True, _ask(sim, "xyz:COIN"), 1.0), BASE_MS))
        pushed = await c.wait_for("clearinghouseState")
    positions = pushed["data"]["clearinghouseState"]["assetPositions"]
    assert [p["position"]["coin"] for p in positions] == ["xyz:COIN"]
