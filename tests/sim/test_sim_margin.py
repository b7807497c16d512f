"""Margin: isolated-only HIP-3 assets, `updateLeverage`, per-dex balances, `activeAssetData`, the
insufficient-margin reject; plus the metadata that says so (`onlyIsolated`, `marginMode`, `isDelisted`,
`collateralToken`) and the cancel statuses the venue produces on its own.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import trio
from eth_account.signers.local import LocalAccount
from trio.testing import MockClock

from hip3_trio.sim.config import SimConfig
from hip3_trio.sim.server import Simulator

from .client import Trader, book, connect
from .conftest import BASE_MS

COIN = 110000


def _leverage(asset: int, value: int, *, cross: bool = False) -> dict[str, Any]:
    return {"type": "updateLeverage", "asset": asset, "isCross": cross, "leverage": value}


def _err(text: str) -> dict[str, Any]:
    return {"status": "err", "response": text}


async def test_meta_carries_margin_flags_delisting_and_collateral(
    autojump_clock: MockClock, sim: Simulator
) -> None:
    async with connect(sim) as c:
        xyz = await c.info({"type": "meta", "dex": "xyz"})
        abc = await c.info({"type": "meta", "dex": "abc"})
        main = await c.info({"type": "meta"})
    flags = ("onlyIsolated", "marginMode", "isDelisted")
    assert [(a["name"], *(a.get(f) for f in flags)) for a in xyz["universe"]] == [
        ("xyz:COIN", True, "noCross", None),
        ("xyz:NVDA", True, "noCross", None),
        ("xyz:GOLD", True, "noCross", None),
        ("xyz:OLD", True, "noCross", True),
    ]
    assert [(a["name"], a.get("marginMode")) for a in abc["universe"]] == [
        ("abc:TSLA", "strictIsolated"),
        ("abc:EUR", None),
    ]
    assert all(a.get("onlyIsolated") for a in abc["universe"])
    assert all(set(a) == {"szDecimals", "name", "maxLeverage", "marginTableId"} for a in main["universe"])
    assert xyz["collateralToken"] == abc["collateralToken"] == main["collateralToken"] == 0
    assert [t[0] for t in xyz["marginTables"]] == [10, 20]


async def test_a_delisted_market_refuses_orders(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    market = sim.exchange.markets["xyz:OLD"]
    assert market.spec.asset == 110003 and market.best_bid() is None and market.best_ask() is None
    async with connect(sim) as c:
        status = await Trader(c, wallet).order(110003, True, 50.0, 1.0)
    assert status == {"error": "Trading is halted. asset=110003"}


async def test_update_leverage_sets_isolated_leverage_shown_everywhere(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    _, ask = book(sim, "xyz:COIN")
    async with connect(sim) as c:
        t = Trader(c, wallet)
        assert await t.send(_leverage(COIN, 3)) == {"status": "ok", "response": {"type": "default"}}
        data = await c.info({"type": "activeAssetData", "user": wallet.address, "coin": "xyz:COIN"})
        assert data["leverage"] == {"type": "isolated", "value": 3, "rawUsd": "0"}
        assert data["user"] == wallet.address.lower() and data["coin"] == "xyz:COIN"
        await t.order(COIN, True, ask, 4.0)
        state = await c.info({"type": "clearinghouseState", "user": wallet.address, "dex": "xyz"})
    (entry,) = state["assetPositions"]
    position = entry["position"]
    entry_ntl = Decimal(str(ask)) * 4
    margin = entry_ntl / 3
    assert position["leverage"]["type"] == "isolated" and position["leverage"]["value"] == 3
    assert Decimal(position["leverage"]["rawUsd"]) == (margin - entry_ntl).quantize(Decimal("0.000001"))
    mark = sim.exchange.markets["xyz:COIN"].mark
    upnl = (mark - Decimal(str(ask))) * 4
    assert Decimal(position["marginUsed"]) == (margin + upnl).quantize(Decimal("0.000001"))
    # The isolated margin is set aside from the xyz balance; the abc balance is untouched.
    account = sim.exchange.accounts.users[wallet.address.lower()]
    fee = account.fills[-1].fee
    assert sim.exchange.available_margin(account.address, "xyz") == Decimal(10000) - fee - margin
    assert sim.exchange.available_margin(account.address, "abc") == Decimal(10000)


async def test_update_leverage_is_refused_as_the_venue_refuses_it(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    async with connect(sim) as c:
        t = Trader(c, wallet)
        assert await t.send(_leverage(COIN, 2, cross=True)) == _err(
            "Cross margin is not allowed for this asset."
        )
        assert await t.send(_leverage(COIN, 11)) == _err("Invalid leverage value")  # maxLeverage 10
        assert await t.send(_leverage(COIN, 0)) == _err("Invalid leverage value")
        assert await t.send(_leverage(COIN, 10)) == {"status": "ok", "response": {"type": "default"}}
        # The main dex allows cross; switching type with an open position is refused.
        _, eth_ask = book(sim, "ETH")
        assert await t.send(_leverage(1, 5, cross=True)) == {"status": "ok", "response": {"type": "default"}}
        await t.order(1, True, eth_ask, 0.01)
        assert await t.send(_leverage(1, 5)) == _err("Cannot switch leverage type with open position.")
        # Lowering an open isolated position's leverage below what its margin carries is refused.
        _, ask = book(sim, "xyz:COIN")
        await t.order(COIN, True, ask, 4.0)
        assert await t.send(_leverage(COIN, 1)) == _err(
            "Isolated position does not have sufficient margin available to decrease leverage. "
            "To decrease leverage, add margin to the position."
        )
        data = await c.info({"type": "activeAssetData", "user": wallet.address, "coin": "xyz:COIN"})
    assert data["leverage"]["value"] == 10


async def test_default_leverage_is_the_max_unless_configured(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    # Never set with updateLeverage: UNVERIFIED on the venue (PROTOCOL.md open point 6); the default
    # is the asset's maxLeverage, isolated on HIP-3 and cross where cross is allowed.
    async with connect(sim) as c:
        coin = await c.info({"type": "activeAssetData", "user": wallet.address, "coin": "xyz:COIN"})
        gold = await c.info({"type": "activeAssetData", "user": wallet.address, "coin": "xyz:GOLD"})
        btc = await c.info({"type": "activeAssetData", "user": wallet.address, "coin": "BTC"})
    assert coin["leverage"] == {"type": "isolated", "value": 10, "rawUsd": "0"}
    assert gold["leverage"]["value"] == 20
    assert btc["leverage"] == {"type": "cross", "value": 40}
    mark = sim.exchange.markets["xyz:COIN"].mark
    assert coin["availableToTrade"] == ["10000", "10000"] and Decimal(coin["markPx"]) == mark
    expected = (Decimal(10000) * 10 / mark).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    assert [Decimal(s) for s in coin["maxTradeSzs"]] == [expected, expected]


async def test_default_leverage_switch(autojump_clock: MockClock, wallet: LocalAccount) -> None:
    sim = Simulator.create(SimConfig(seed=7, base_epoch_ms=BASE_MS, default_leverage=3))
    sim.add_account(wallet.address)
    sim.exchange.accounts.users[wallet.address.lower()].balances["xyz"] = Decimal(100)
    _, ask = book(sim, "xyz:COIN")
    async with connect(sim) as c:
        data = await c.info({"type": "activeAssetData", "user": wallet.address, "coin": "xyz:COIN"})
        assert data["leverage"] == {"type": "isolated", "value": 3, "rawUsd": "0"}
        # At 3x, $100 carries $300 of notional: 1.3 COIN (~$325) needs more than the dex holds.
        status = await Trader(c, wallet).order(COIN, True, ask, 1.3)
    assert status == {"error": "Insufficient margin to place order. asset=110000"}


async def test_insufficient_margin_is_rejected_per_dex(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    # The xyz balance is $100; at 2x an order may carry $200 of notional, positions' isolated margin
    # and resting orders included; the abc balance does not help the xyz dex.
    account = sim.exchange.accounts.users[wallet.address.lower()]
    account.balances["xyz"] = Decimal(100)
    _, ask = book(sim, "xyz:COIN")
    bid_nvda, _ = book(sim, "xyz:NVDA")
    async with connect(sim) as c:
        t = Trader(c, wallet)
        await c.subscribe({"type": "orderUpdates", "user": wallet.address})
        for asset in (COIN, 110001):
            await t.send(_leverage(asset, 2))
        first = await t.order(COIN, True, ask, 0.3)  # ~ $75: $37.5 margin
        assert "filled" in first
        resting = await t.order(110001, True, round(bid_nvda * 0.95, 2), 0.5, "Gtc")  # ~ $85: $42.7
        assert "resting" in resting
        refused = await t.order(COIN, True, ask, 0.3)  # another $37.5: over the $100
        assert refused == {"error": "Insufficient margin to place order. asset=110000"}
        update = await c.wait_for("orderUpdates")
        while update["data"][0]["status"] != "perpMarginRejected":
            update = await c.wait_for("orderUpdates")
        oid = update["data"][0]["order"]["oid"]
        status = await c.info({"type": "orderStatus", "user": wallet.address, "oid": oid})
        assert status["order"]["status"] == "perpMarginRejected"
        # Closing is never refused for margin; cancelling the bid frees its margin for the order.
        cancel = await t.send({"type": "cancel", "cancels": [{"a": 110001, "o": resting["resting"]["oid"]}]})
        assert cancel["response"]["data"]["statuses"] == ["success"]
        assert "filled" in await t.order(COIN, True, ask, 0.3)


async def test_internal_cancel_and_scheduled_cancel_statuses(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    bid, _ = book(sim, "xyz:COIN")
    async with connect(sim) as c:
        t = Trader(c, wallet)
        await c.subscribe({"type": "orderUpdates", "user": wallet.address})
        placed = await t.order(COIN, True, round(bid * 0.9, 2), 1.0, "Gtc")
        await c.wait_for("orderUpdates")
        assert sim.internal_cancel() == 1
        update = await c.wait_for("orderUpdates")
        assert update["data"][0]["status"] == "internalCancel"
        status = await c.info(
            {"type": "orderStatus", "user": wallet.address, "oid": placed["resting"]["oid"]}
        )
        assert status["order"]["status"] == "internalCancel"
        assert await c.info({"type": "openOrders", "user": wallet.address, "dex": "xyz"}) == []
        await t.order(COIN, True, round(bid * 0.9, 2), 1.0, "Gtc")
        await c.wait_for("orderUpdates")
        await t.send({"type": "scheduleCancel", "time": sim.clock.now_ms() + 5_000})
        update = await c.wait_for("orderUpdates")
        assert update["data"][0]["status"] == "scheduledCancel"


@pytest.mark.parametrize("coin", ["xyz:COIN", "abc:TSLA"])
async def test_clearinghouse_push_shows_isolated_positions(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount, coin: str
) -> None:
    dex, asset = coin.split(":")[0], {"xyz:COIN": COIN, "abc:TSLA": 120000}[coin]
    _, ask = book(sim, coin)
    async with connect(sim) as c:
        await c.subscribe({"type": "clearinghouseState", "user": wallet.address, "dex": dex})
        await c.wait_for("clearinghouseState")
        await Trader(c, wallet).order(asset, True, ask, 1.0)
        with trio.fail_after(1):
            push = await c.wait_for("clearinghouseState")
    (entry,) = push["data"]["clearinghouseState"]["assetPositions"]
    assert entry["position"]["leverage"]["type"] == "isolated"
