"""Every fault switch does what it says, once, and the simulator stays usable afterwards."""

from __future__ import annotations

import json

import pytest
import trio
import trio_websocket
from eth_account.signers.local import LocalAccount
from trio.testing import MockClock

from hip3_trio.sim.server import Simulator

from .client import SimClient, connect, order_action, signed
from .conftest import BASE_MS


def _ask(sim: Simulator, coin: str = "xyz:COIN") -> float:
    ask = sim.exchange.markets[coin].best_ask()
    assert ask is not None
    return float(ask)


async def _until_closed(c: SimClient) -> trio_websocket.CloseReason:
    with pytest.raises(trio_websocket.ConnectionClosed) as info:
        while True:
            await c.raw()
    reason = info.value.reason
    assert reason is not None
    return reason


async def test_close_after_frames_drops_the_transport(autojump_clock: MockClock, sim: Simulator) -> None:
    sim.faults.close_after_frames = 3  # greeting, ack, first bbo
    async with connect(sim) as c:
        await c.subscribe({"type": "bbo", "coin": "BTC"})
        await c.wait_for("bbo")
        reason = await _until_closed(c)
    assert reason.code == 1006  # no close frame
    assert sim.faults.close_after_frames is None  # one-shot
    async with connect(sim) as c:  # the next connection is healthy
        assert (await c.info({"type": "perpDexs"}))[0] is None


async def test_close_with_code_1000(autojump_clock: MockClock, sim: Simulator) -> None:
    sim.faults.close_after_frames = 1
    sim.faults.close_code = 1000
    async with connect(sim) as c:
        reason = await _until_closed(c)
    assert reason.code == 1000


async def test_close_at_time_closes_every_connection(autojump_clock: MockClock, sim: Simulator) -> None:
    sim.faults.close_at_ms = BASE_MS + 5_000
    async with connect(sim) as a, connect(sim) as b:
        await a.send({"method": "ping"})
        await _until_closed(a)
        assert trio.current_time() == pytest.approx(5.0, abs=0.002)
        await _until_closed(b)


async def test_delayed_reply_after_the_action_executed(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    sim.faults.reply_delay_s = 2.5
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": wallet.address})
        post_id = await c.send_post(
            "action", signed(wallet, order_action(110000, True, _ask(sim), 1.0), BASE_MS)
        )
        update = await c.wait_for("orderUpdates")  # the event comes first; the reply is late
        assert update["data"][0]["status"] == "filled"
        assert trio.current_time() < 0.1
        reply = await c.wait_for("post", id=post_id)
        assert trio.current_time() == pytest.approx(2.5, abs=0.01)
    assert "filled" in reply["data"]["response"]["payload"]["response"]["data"]["statuses"][0]


async def test_never_answered_post_may_have_executed(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    sim.faults.drop_replies = 1
    async with connect(sim) as c:
        dropped = await c.send_post(
            "action", signed(wallet, order_action(110000, True, _ask(sim), 1.0), BASE_MS)
        )
        with trio.move_on_after(10):
            await c.wait_for("post", id=dropped)
            raise AssertionError("the dropped reply arrived")
        assert sim.exchange.accounts.users[wallet.address.lower()].positions["xyz:COIN"].szi == 1
        assert (await c.info({"type": "perpDexs"}))[0] is None  # only one reply was dropped


async def test_lost_post_never_executes_and_its_nonce_stays_free(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    sim.faults.lose_posts = 1
    async with connect(sim) as c:
        order = order_action(110000, True, _ask(sim), 1.0)
        lost = await c.send_post("action", signed(wallet, order, BASE_MS))
        with trio.move_on_after(10):
            await c.wait_for("post", id=lost)
            raise AssertionError("the lost post was answered")
        assert "xyz:COIN" not in sim.exchange.accounts.users[wallet.address.lower()].positions
        noop = await c.send_post("action", signed(wallet, {"type": "noop"}, BASE_MS))
        reply = await c.wait_for("post", id=noop)
    assert reply["data"]["response"]["payload"] == {"status": "ok", "response": {"type": "default"}}


async def test_duplicate_reply(autojump_clock: MockClock, sim: Simulator) -> None:
    sim.faults.duplicate_replies = 1
    async with connect(sim) as c:
        post_id = await c.send_post("info", {"type": "perpDexs"})
        first = await c.wait_for("post", id=post_id)
        second = await c.wait_for("post", id=post_id)
    assert first == second


async def test_garbage_and_truncated_frames(autojump_clock: MockClock, sim: Simulator) -> None:
    async with connect(sim) as c:
        sim.faults.garbage_frames = 1
        sim.faults.truncated_frames = 1
        await c.send({"method": "ping"})
        garbage = await c.raw()
        with pytest.raises(ValueError):
            json.loads(garbage)
        truncated = await c.raw()
        assert (
            isinstance(truncated, str) and truncated == '{"channel":"pong"}'[: len('{"channel":"pong"}') // 2]
        )
        await c.send({"method": "ping"})
        assert await c.frame() == {"channel": "pong"}  # healthy again


async def test_skip_order_updates_for_an_ioc(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    sim.faults.skip_ioc_order_updates = 1
    async with connect(sim) as c:
        await c.subscribe({"type": "orderUpdates", "user": wallet.address})
        first = await c.action(signed(wallet, order_action(110000, True, _ask(sim), 1.0), BASE_MS))
        assert "filled" in first["response"]["data"]["statuses"][0]
        second = await c.action(signed(wallet, order_action(110000, True, _ask(sim), 1.0), BASE_MS + 1))
        update = await c.wait_for("orderUpdates")
    assert [u["order"]["oid"] for u in update["data"]] == [
        second["response"]["data"]["statuses"][0]["filled"]["oid"]
    ]


async def test_clearinghouse_state_with_zero_positions_once(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    request = {"type": "clearinghouseState", "user": wallet.address, "dex": "xyz"}
    async with connect(sim) as c:
        await c.action(signed(wallet, order_action(110000, True, _ask(sim), 1.0), BASE_MS))
        sim.faults.empty_clearinghouse_once = True
        assert (await c.info(request))["assetPositions"] == []
        assert len((await c.info(request))["assetPositions"]) == 1


async def test_silent_market_data_stall(autojump_clock: MockClock, sim: Simulator) -> None:
    async with connect(sim) as c:
        await c.subscribe({"type": "activeAssetCtx", "coin": "BTC"})
        await c.wait_for("activeAssetCtx")
        sim.faults.stall_market_data = True
        with trio.move_on_after(20):
            await c.wait_for("activeAssetCtx")
            raise AssertionError("market data during a stall")
        assert (await c.info({"type": "perpDexs"}))[0] is None  # socket open, posts answered
        sim.faults.stall_market_data = False
        await c.wait_for("activeAssetCtx")
        assert trio.current_time() == pytest.approx(21.0, abs=0.01)


async def test_clock_skew(autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount) -> None:
    sim.faults.clock_skew_ms = -1_500
    async with connect(sim) as c:
        await c.subscribe({"type": "bbo", "coin": "ETH"})
        bbo = await c.wait_for("bbo")
    assert bbo["data"]["time"] == BASE_MS - 1_500
