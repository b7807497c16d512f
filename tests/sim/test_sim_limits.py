"""Connection limits: posts in flight, messages per minute, idle close."""

from __future__ import annotations

import pytest
import trio
import trio_websocket
from trio.testing import MockClock

from hip3_trio.sim.server import Simulator

from .client import connect


async def test_inflight_posts_are_limited(autojump_clock: MockClock, sim: Simulator) -> None:
    # Over 100 posts in flight the venue answers on the `error` channel, naming the post, and never
    # sends a `post` reply for it.
    sim.faults.reply_delay_s = 1.0
    async with connect(sim) as c:
        ids = [await c.send_post("info", {"type": "perpDexs"}) for _ in range(101)]
        refused = await c.wait_for("error")
        assert refused == {"channel": "error", "data": f"too many pending post requests id={ids[-1]}"}
        assert trio.current_time() < 1.0
        replies = [await c.wait_for("post", id=i) for i in ids[:-1]]
        assert all(r["data"]["response"]["type"] == "info" for r in replies)
        assert trio.current_time() == pytest.approx(1.0, abs=0.01)
        with trio.move_on_after(5):
            await c.wait_for("post", id=ids[-1])
            raise AssertionError("the refused post was answered")
        # Room again once the replies went out.
        assert (await c.post("info", {"type": "perpDexs"}))["type"] == "info"


async def test_inflight_limit_is_summed_over_connections(autojump_clock: MockClock, sim: Simulator) -> None:
    # The venue counts posts in flight per IP: 60 on one connection and 40 on another fill it.
    sim.faults.reply_delay_s = 1.0
    async with connect(sim) as a, connect(sim) as b:
        first = [await a.send_post("info", {"type": "perpDexs"}) for _ in range(60)]
        second = [await b.send_post("info", {"type": "perpDexs"}) for _ in range(40)]
        refused = await b.send_post("info", {"type": "perpDexs"})
        assert (await b.wait_for("error"))["data"] == f"too many pending post requests id={refused}"
        assert trio.current_time() < 1.0
        for client, ids in ((a, first), (b, second)):
            for post_id in ids:
                assert (await client.wait_for("post", id=post_id))["data"]["response"]["type"] == "info"
        with trio.move_on_after(5):
            await b.wait_for("post", id=refused)
            raise AssertionError("the refused post was answered")


async def test_messages_per_minute(autojump_clock: MockClock, sim: Simulator) -> None:
    sim.config.max_messages_per_minute = 20
    async with connect(sim) as c:
        ids = [await c.send_post("info", {"type": "perpDexs"}) for _ in range(21)]
        last = await c.wait_for("post", id=ids[-1])
        assert last["data"]["response"] == {"type": "error", "payload": "429 Too Many Requests"}
        await c.send({"method": "ping"})
        assert (await c.wait_for("pong")) == {"channel": "pong"}  # pings still answered
        await trio.sleep(59)
        await c.send({"method": "ping"})  # keeps the connection alive; pings are never refused
        await trio.sleep(2)  # the burst has left the one-minute window
        assert (await c.post("info", {"type": "perpDexs"}))["type"] == "info"


async def test_idle_connection_is_closed_after_60s(autojump_clock: MockClock, sim: Simulator) -> None:
    async with connect(sim) as c:
        await trio.sleep(59)
        await c.send({"method": "ping"})
        assert (await c.wait_for("pong")) == {"channel": "pong"}
        with pytest.raises(trio_websocket.ConnectionClosed):
            while True:
                await c.frame()
        assert trio.current_time() == pytest.approx(119.0, abs=0.01)
