"""Orders, cancels and account effects: statuses and error strings in the venue's shapes."""

from __future__ import annotations

from decimal import Decimal

import pytest
import trio
from eth_account.signers.local import LocalAccount
from trio.testing import MockClock

from hip3_trio.sim.config import SimConfig
from hip3_trio.sim.server import Simulator

from .client import Trader, book, connect
from .conftest import BASE_MS

CLOID = "0x" + "00" * 15 + "2a"


def _book(sim: Simulator, coin: str) -> tuple[float, float]:
    return book(sim, coin)


async def test_ioc_fills_and_updates_position_fee_and_pnl(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    bid, ask = _book(sim, "xyz:COIN")
    async with connect(sim) as c:
        t = Trader(c, wallet)
        buy = await t.order(110000, True, ask, 2.0, cloid=CLOID)
        assert buy == {
            "filled": {
                "totalSz": "2",
                "avgPx": str(Decimal(str(ask)).normalize()),
                "oid": buy["filled"]["oid"],
                "cloid": CLOID,
            }
        }
        sell = await t.order(110000, False, bid, 2.0, reduce_only=True)
        assert sell["filled"]["totalSz"] == "2"
        fills = await c.info({"type": "userFills", "user": wallet.address})
    account = sim.exchange.accounts.users[wallet.address.lower()]
    pos = account.positions["xyz:COIN"]
    assert pos.szi == 0
    expected_pnl = (Decimal(str(bid)) - Decimal(str(ask))) * 2
    assert pos.realised_pnl == expected_pnl
    # Tier-0 taker 0.045 % x 2 on the xyz dex (deployerFeeScale 1: x 2s).
    fee_buy = (Decimal(str(ask)) * 2 * Decimal("0.0009")).quantize(Decimal("0.000001"))
    fee_sell = (Decimal(str(bid)) * 2 * Decimal("0.0009")).quantize(Decimal("0.000001"))
    assert account.balances["xyz"] == Decimal(10000) + expected_pnl - fee_buy - fee_sell
    assert account.balances[""] == Decimal(10000)  # per-dex balances: the main dex is untouched
    newest, oldest = fills
    assert oldest["dir"] == "Open Long" and oldest["startPosition"] == "0" and oldest["cloid"] == CLOID
    assert newest["dir"] == "Close Long" and newest["startPosition"] == "2" and newest["side"] == "A"
    assert Decimal(newest["closedPnl"]) == expected_pnl and Decimal(newest["fee"]) == fee_sell
    assert newest["crossed"] is True and newest["feeToken"] == "USDC" and newest["time"] == BASE_MS
    assert set(newest) >= {
        "coin",
        "px",
        "sz",
        "side",
        "time",
        "startPosition",
        "dir",
        "closedPnl",
        "hash",
        "oid",
        "crossed",
        "fee",
        "tid",
        "feeToken",
    }


async def _round_trip_ids(sim: Simulator, wallet: LocalAccount) -> tuple[list[int], list[int]]:
    """Buy and sell back 2 xyz:COIN: the two orders' oids and the two fills' tids, oldest first."""
    bid, ask = _book(sim, "xyz:COIN")
    async with connect(sim) as c:
        t = Trader(c, wallet)
        t.nonce = sim.clock.now_ms()
        buy = await t.order(110000, True, ask, 2.0)
        sell = await t.order(110000, False, bid, 2.0, reduce_only=True)
        fills = await c.info({"type": "userFills", "user": wallet.address})
    return [buy["filled"]["oid"], sell["filled"]["oid"]], [f["tid"] for f in reversed(fills)]


async def test_order_and_trade_ids_count_up_from_the_start_time(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    # The venue's ids never repeat, so neither may the simulator's across runs: a run that starts later
    # starts its ids above every id of an earlier one (unless that one issued 1000 ids a millisecond).
    oids, tids = await _round_trip_ids(sim, wallet)
    assert oids == tids == [BASE_MS * 1000, BASE_MS * 1000 + 1]


async def test_without_a_base_time_ids_start_from_the_wall_clock(
    autojump_clock: MockClock, wallet: LocalAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command line's simulator (`--env sim`) has no base time: the wall clock at its start.
    monkeypatch.setattr("time.time", lambda: 1_800_000_000.25)
    sim = Simulator.create(SimConfig(seed=7))
    sim.add_account(wallet.address)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        oids, tids = await _round_trip_ids(sim, wallet)
        nursery.cancel_scope.cancel()
    assert oids == tids == [1_800_000_000_250_000, 1_800_000_000_250_001]


async def test_ioc_that_cannot_match(autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount) -> None:
    bid, _ = _book(sim, "xyz:NVDA")
    async with connect(sim) as c:
        status = await Trader(c, wallet).order(110001, True, round(bid * 0.99, 2), 1.0)
    assert status == {"error": "Order could not immediately match against any resting orders. asset=110001"}


async def test_validation_errors(autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount) -> None:
    async with connect(sim) as c:
        t = Trader(c, wallet)
        # xyz:NVDA has szDecimals 3: price may carry at most 2 decimals at 180 (5 significant figures).
        assert await t.order(110001, True, 180.123, 1.0) == {
            "error": "Price must be divisible by tick size. asset=110001"
        }
        assert await t.order(110001, True, 180.12, 1.0001) == {"error": "Order has invalid size."}
        assert await t.order(110001, True, 180.12, 0.05) == {
            "error": "Order must have minimum value of $10. asset=110001"
        }
        assert await t.order(110000, False, 250.0, 1.0, reduce_only=True) == {
            "error": "Reduce only order would increase position. asset=110000"
        }
        assert await t.order(0, True, 100000.0, 5.0) == {
            "error": "Insufficient margin to place order. asset=0"
        }


async def test_asset_ids_follow_perp_dexs_and_meta(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    async with connect(sim) as c:
        dexs = await c.info({"type": "perpDexs"})
        assert dexs[0] is None and [d["name"] for d in dexs[1:]] == ["xyz", "abc"]
        seen: dict[str, tuple[int, int]] = {}
        for dex_index, dex in enumerate(["", "xyz", "abc"]):
            universe = (await c.info({"type": "meta", "dex": dex} if dex else {"type": "meta"}))["universe"]
            for i, asset in enumerate(universe):
                aid = i if dex_index == 0 else 100_000 + dex_index * 10_000 + i
                seen[asset["name"]] = (aid, asset["szDecimals"])
        assert seen["BTC"] == (0, 5) and seen["ETH"] == (1, 4)
        assert (
            seen["xyz:COIN"] == (110000, 2)
            and seen["xyz:NVDA"] == (110001, 3)
            and seen["xyz:GOLD"] == (110002, 4)
        )
        assert seen["abc:TSLA"] == (120000, 2)
        _, ask = _book(sim, "xyz:GOLD")
        await Trader(c, wallet).order(110002, True, ask, 0.01)
    assert set(sim.exchange.accounts.users[wallet.address.lower()].positions) == {"xyz:GOLD"}


async def test_gtc_rests_and_cancels(autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount) -> None:
    bid, _ = _book(sim, "xyz:COIN")
    low = round(bid * 0.95, 2)
    async with connect(sim) as c:
        t = Trader(c, wallet)
        rest = await t.order(110000, True, low, 1.0, "Gtc", cloid=CLOID)
        oid = rest["resting"]["oid"]
        assert rest == {"resting": {"oid": oid, "cloid": CLOID}}
        orders = await c.info({"type": "openOrders", "user": wallet.address, "dex": "xyz"})
        assert [o["oid"] for o in orders] == [oid]
        assert await c.info({"type": "openOrders", "user": wallet.address}) == []  # main dex: invisible
        status = await c.info({"type": "orderStatus", "user": wallet.address, "oid": CLOID})
        assert status["status"] == "order" and status["order"]["status"] == "open"
        cancel = await t.send({"type": "cancel", "cancels": [{"a": 110000, "o": oid}]})
        assert cancel == {"status": "ok", "response": {"type": "cancel", "data": {"statuses": ["success"]}}}
        again = await t.send({"type": "cancelByCloid", "cancels": [{"asset": 110000, "cloid": CLOID}]})
        assert again["response"]["data"]["statuses"] == [
            {"error": "Order was never placed, already canceled, or filled. asset=110000"}
        ]
        status = await c.info({"type": "orderStatus", "user": wallet.address, "oid": oid})
        assert status["order"]["status"] == "canceled"
        assert await c.info({"type": "orderStatus", "user": wallet.address, "oid": 1}) == {
            "status": "unknownOid"
        }


async def test_cancel_by_cloid(autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount) -> None:
    bid, _ = _book(sim, "xyz:COIN")
    async with connect(sim) as c:
        t = Trader(c, wallet)
        await t.order(110000, True, round(bid * 0.95, 2), 1.0, "Gtc", cloid=CLOID)
        result = await t.send({"type": "cancelByCloid", "cancels": [{"asset": 110000, "cloid": CLOID}]})
    assert result["response"]["data"]["statuses"] == ["success"]


async def test_alo_that_would_cross_is_refused(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    bid, ask = _book(sim, "xyz:COIN")
    async with connect(sim) as c:
        status = await Trader(c, wallet).order(110000, True, ask, 1.0, "Alo")
    assert status == {
        "error": f"Post only order would have immediately matched, bbo was {bid:g}@{ask:g}. asset=110000"
    }


async def test_resting_order_is_filled_when_the_market_moves(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    _, ask = _book(sim, "xyz:COIN")
    async with connect(sim) as c:
        t = Trader(c, wallet)
        await c.subscribe({"type": "orderUpdates", "user": wallet.address})
        resting = await t.order(110000, False, round(ask * 1.001, 2), 1.0, "Gtc")
        assert (await c.wait_for("orderUpdates"))["data"][0]["status"] == "open"
        # Force the book 2 % above the oracle from the next oracle update (t = 3 s) on.
        market = sim.exchange.markets["xyz:COIN"]
        market.dislocation_bps, market.dislocation_left = 200.0, 5
        msg = await c.wait_for("orderUpdates")
        assert msg["data"][0]["status"] == "filled"
        assert msg["data"][0]["order"]["oid"] == resting["resting"]["oid"]
        assert msg["data"][0]["statusTimestamp"] == BASE_MS + 3000
        fills = await c.info({"type": "userFills", "user": wallet.address})
    assert fills[0]["crossed"] is False and fills[0]["dir"] == "Open Short"
    # Tier-0 maker 0.015 % x 2 on the xyz dex (deployerFeeScale 1).
    assert Decimal(fills[0]["fee"]) == (Decimal(fills[0]["px"]) * Decimal("0.0003")).quantize(
        Decimal("0.000001")
    )


async def test_schedule_cancel_fires_at_its_time(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    bid, _ = _book(sim, "xyz:COIN")
    async with connect(sim) as c:
        t = Trader(c, wallet)
        await c.subscribe({"type": "orderUpdates", "user": wallet.address})
        await t.order(110000, True, round(bid * 0.9, 2), 1.0, "Gtc")
        await c.wait_for("orderUpdates")
        early = await t.send({"type": "scheduleCancel", "time": BASE_MS + 4_000})
        assert early["status"] == "err"
        ok = await t.send({"type": "scheduleCancel", "time": BASE_MS + 10_000})
        assert ok == {"status": "ok", "response": {"type": "default"}}
        update = await c.wait_for("orderUpdates")
        assert update["data"][0]["status"] == "scheduledCancel"
        assert update["data"][0]["statusTimestamp"] == BASE_MS + 10_000
        assert abs(trio.current_time() - 10.0) < 0.001


async def test_noop(autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount) -> None:
    async with connect(sim) as c:
        assert await Trader(c, wallet).send({"type": "noop"}) == {
            "status": "ok",
            "response": {"type": "default"},
        }


async def test_clearinghouse_state_needs_the_dex(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    _, ask = _book(sim, "xyz:COIN")
    async with connect(sim) as c:
        await Trader(c, wallet).order(110000, True, ask, 1.0)
        main = await c.info({"type": "clearinghouseState", "user": wallet.address})
        xyz = await c.info({"type": "clearinghouseState", "user": wallet.address, "dex": "xyz"})
    assert main["assetPositions"] == []
    (entry,) = xyz["assetPositions"]
    assert entry["type"] == "oneWay"
    assert entry["position"]["coin"] == "xyz:COIN" and entry["position"]["szi"] == "1"
    assert Decimal(entry["position"]["entryPx"]) == Decimal(str(ask))
    assert xyz["time"] == BASE_MS


async def test_rejections_are_recorded_and_optionally_pushed(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    bid, _ = _book(sim, "xyz:COIN")
    async with connect(sim) as c:
        t = Trader(c, wallet)
        await c.subscribe({"type": "orderUpdates", "user": wallet.address})
        await t.order(110000, True, round(bid * 0.99, 2), 1.0, cloid=CLOID)
        pushed = await c.wait_for("orderUpdates")
        assert pushed["data"][0]["status"] == "iocCancelRejected"
        status = await c.info({"type": "orderStatus", "user": wallet.address, "oid": CLOID})
        assert status["order"]["status"] == "iocCancelRejected"
        sim.config.push_rejections = False
        await t.order(110000, True, round(bid * 0.99, 2), 1.0)
        await t.order(999, True, 1.0, 100.0)  # unknown asset: refused before the book
        with trio.move_on_after(1):
            await c.wait_for("orderUpdates")
            raise AssertionError("rejection pushed although push_rejections is off")
