"""The simulator over a real TCP socket, in process and as ``python -m hip3_trio.sim``.

These run on the real clock (no ``autojump_clock``): they only do quick request/response exchanges.
"""

from __future__ import annotations

import json
import subprocess
import sys

import trio
import trio_websocket
from eth_account import Account

from hip3_trio.sim.server import open_simulator

from .client import order_action, signed


async def test_open_simulator_serves_tcp() -> None:
    async with open_simulator() as sim:
        assert sim.url is not None and sim.url.startswith("ws://127.0.0.1:") and sim.url.endswith("/ws")
        assert sim.account is not None and sim.account_key is not None
        wallet = Account.from_key(sim.account_key)
        assert wallet.address.lower() == sim.account
        async with trio_websocket.open_websocket_url(sim.url) as ws:
            assert await ws.get_message() == "Websocket connection established."
            ask = sim.exchange.markets["xyz:COIN"].best_ask()
            assert ask is not None
            payload = signed(wallet, order_action(110000, True, float(ask), 1.0), sim.clock.now_ms())
            request = {"method": "post", "id": 1, "request": {"type": "action", "payload": payload}}
            await ws.send_message(json.dumps(request))
            while True:
                msg = json.loads(await ws.get_message())
                if msg.get("channel") == "post":
                    break
        statuses = msg["data"]["response"]["payload"]["response"]["data"]["statuses"]
        assert "filled" in statuses[0]


async def test_command_line_prints_url_first() -> None:
    args = [sys.executable, "-m", "hip3_trio.sim", "--port", "0", "--seed", "7"]
    proc = await trio.lowlevel.open_process(args, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        out = b""
        with trio.fail_after(10):
            while out.count(b"\n") < 3:
                out += await proc.stdout.receive_some()
        url, account_line, key_line = out.decode().splitlines()[:3]
        account, key = account_line.split(), key_line.split()
        assert url.startswith("ws://127.0.0.1:") and url.endswith("/ws")
        assert account[0] == "account" and key[0] == "key"
        assert Account.from_key(key[1]).address.lower() == account[1]
        async with trio_websocket.open_websocket_url(url) as ws:
            assert await ws.get_message() == "Websocket connection established."
            await ws.send_message(json.dumps({"method": "ping"}))
            with trio.fail_after(5):
                assert json.loads(await ws.get_message()) == {"channel": "pong"}
    finally:
        proc.terminate()
        with trio.move_on_after(5):
            await proc.wait()
