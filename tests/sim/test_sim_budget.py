"""The per-address action budget (docs:rate-limits-and-user-limits, PROTOCOL.md Limits).

10,000 actions plus one per USDC traded (0.1 on growth-mode markets); a batch of n spends n; cancels
have a higher cap; an action refused whole spends nothing; once exhausted the whole action fails with
the venue's text while one action per 10 s still gets through.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import trio
from eth_account import Account
from eth_account.signers.local import LocalAccount
from trio.testing import MockClock

from hip3_trio.sim.__main__ import build, parse_args
from hip3_trio.sim.config import SimConfig
from hip3_trio.sim.server import Simulator

from .client import SimClient, Trader, book, connect, order_action, signed
from .conftest import BASE_MS

NOOP = {"type": "noop"}


def _exhausted(used: int, vlm: str = "0", limit: int = 9_999) -> str:
    return (
        f"Too many cumulative requests sent ({used} > {limit}) for cumulative volume traded ${vlm}. "
        "Place taker orders to free up 1 request per USDC traded."
    )


async def _rate_limit(c: SimClient, wallet: LocalAccount) -> dict[str, Any]:
    answer: dict[str, Any] = await c.info({"type": "userRateLimit", "user": wallet.address})
    return answer


async def _started(nursery: trio.Nursery, wallet: LocalAccount, **config: Any) -> Simulator:
    sim = Simulator.create(SimConfig(seed=7, base_epoch_ms=BASE_MS, **config))
    sim.add_account(wallet.address)
    await nursery.start(sim.run)
    return sim


def _far_bid_orders(sim: Simulator, n: int) -> dict[str, Any]:
    """A batch of n resting xyz:COIN bids far below the book."""
    bid, _ = book(sim, "xyz:COIN")
    action = order_action(110000, True, round(bid * 0.9, 2), 1.0, "Gtc")
    action["orders"] = action["orders"] * n
    return action


async def test_user_rate_limit_answers_in_the_venue_shape(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    async with connect(sim) as c:
        assert await _rate_limit(c, wallet) == {
            "cumVlm": "0",
            "nRequestsUsed": 0,
            "nRequestsCap": 10_000,
            "nRequestsSurplus": 0,
        }


async def test_actions_spend_one_per_order_or_cancel_and_info_spends_nothing(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    async with connect(sim) as c:
        t = Trader(c, wallet)
        placed = await t.send(_far_bid_orders(sim, 3))
        oids = [s["resting"]["oid"] for s in placed["response"]["data"]["statuses"]]
        assert (await _rate_limit(c, wallet))["nRequestsUsed"] == 3
        # Two cancels, one of them of an unknown order: an erroring cancel still costs 1.
        cancels = [{"a": 110000, "o": oids[0]}, {"a": 110000, "o": 1}]
        result = await t.send({"type": "cancel", "cancels": cancels})
        assert result["response"]["data"]["statuses"][1] == {
            "error": "Order was never placed, already canceled, or filled. asset=110000"
        }
        await t.send(NOOP)
        await t.send({"type": "updateLeverage", "asset": 110000, "isCross": False, "leverage": 2})
        for _ in range(5):
            await c.info({"type": "openOrders", "user": wallet.address, "dex": "xyz"})
        assert (await _rate_limit(c, wallet))["nRequestsUsed"] == 3 + 2 + 1 + 1


async def test_actions_refused_whole_cost_nothing(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    async with connect(sim) as c:
        t = Trader(c, wallet)
        payload = t.sign(NOOP)
        assert (await c.action(payload))["status"] == "ok"
        duplicate = await c.action(payload)
        assert duplicate == {"status": "err", "response": f"Invalid nonce: duplicate nonce {t.nonce}"}
        stranger = signed(Account.from_key("0x" + "33" * 32), NOOP, t.nonce + 1)
        assert (await c.action(stranger))["status"] == "err"
        assert (await _rate_limit(c, wallet))["nRequestsUsed"] == 1


async def test_volume_raises_the_cap_and_growth_mode_earns_a_tenth(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    _, coin_ask = book(sim, "xyz:COIN")
    _, tsla_ask = book(sim, "abc:TSLA")
    async with connect(sim) as c:
        t = Trader(c, wallet)
        await t.order(110000, True, coin_ask, 20.0)  # ~ $5,000 on xyz:COIN
        await t.order(120000, True, tsla_ask, 10.0)  # ~ $3,000 on abc:TSLA, in growth mode
        limits = await _rate_limit(c, wallet)
    coin, tsla = Decimal(str(coin_ask)) * 20, Decimal(str(tsla_ask)) * 10
    assert Decimal(limits["cumVlm"]) == coin + tsla
    assert limits["nRequestsCap"] == 10_000 + int(coin + tsla / 10)
    assert limits["nRequestsUsed"] == 2


async def test_exhausted_budget_refuses_the_whole_action_with_the_venues_text(
    autojump_clock: MockClock, nursery: trio.Nursery, wallet: LocalAccount
) -> None:
    # 9,998 used of 10,000: the refusal's right-hand number is one below nRequestsCap (as in the
    # venue's captured texts), so one more action goes through and the next is refused.
    sim = await _started(nursery, wallet, initial_requests_used=9_998)
    async with connect(sim) as c:
        t = Trader(c, wallet)
        assert (await t.send(NOOP))["status"] == "ok"
        assert await t.send(NOOP) == {"status": "err", "response": _exhausted(10_000)}
        # A batch of 3 is refused whole, its left-hand number counting all three; nothing was placed.
        batch = await t.send(_far_bid_orders(sim, 3))
        assert batch == {"status": "err", "response": _exhausted(10_002)}
        assert await c.info({"type": "openOrders", "user": wallet.address, "dex": "xyz"}) == []
        limits = await _rate_limit(c, wallet)
    assert (limits["nRequestsUsed"], limits["nRequestsCap"]) == (9_999, 10_000)


async def test_a_budget_refusal_leaves_the_nonce_unused(
    autojump_clock: MockClock, nursery: trio.Nursery, wallet: LocalAccount
) -> None:
    sim = await _started(nursery, wallet, initial_requests_used=9_999)
    async with connect(sim) as c:
        t = Trader(c, wallet)
        assert (await t.send(NOOP))["status"] == "ok"  # the trickle's first pass
        payload = t.sign(NOOP)
        assert (await c.action(payload))["status"] == "err"
        await trio.sleep(10)
        assert await c.action(payload) == {"status": "ok", "response": {"type": "default"}}


async def test_exhausted_one_action_per_ten_seconds_gets_through(
    autojump_clock: MockClock, nursery: trio.Nursery, wallet: LocalAccount
) -> None:
    # Retrying every second: passes at 0, 10, 20 and 30 s exactly; refusals neither spend budget nor
    # restart the window; each pass spends as usual, past the cap.
    sim = await _started(nursery, wallet, initial_requests_used=10_000)
    passed: list[float] = []
    refused = 0
    async with connect(sim) as c:
        t = Trader(c, wallet)
        start = trio.current_time()
        while trio.current_time() - start < 35:
            if (await t.send(NOOP))["status"] == "ok":
                passed.append(trio.current_time() - start)
            else:
                refused += 1
            await trio.sleep(1)
        limits = await _rate_limit(c, wallet)
    assert passed == [0.0, 10.0, 20.0, 30.0]
    assert refused == 35 - 4
    assert limits["nRequestsUsed"] == 10_004


async def test_the_trickle_interval_is_configurable(
    autojump_clock: MockClock, nursery: trio.Nursery, wallet: LocalAccount
) -> None:
    sim = await _started(nursery, wallet, initial_requests_used=10_000, request_trickle_s=2.5)
    async with connect(sim) as c:
        t = Trader(c, wallet)
        assert (await t.send(NOOP))["status"] == "ok"
        await trio.sleep(2.499)
        assert (await t.send(NOOP))["status"] == "err"
        await trio.sleep(0.001)
        assert (await t.send(NOOP))["status"] == "ok"


async def test_cancels_have_their_own_higher_cap(
    autojump_clock: MockClock, nursery: trio.Nursery, wallet: LocalAccount
) -> None:
    # Orders exhausted at 10,000 used; cancels may go on to min(cap + 100000, 2 x cap) = 20,000.
    sim = await _started(nursery, wallet, initial_requests_used=9_000)
    async with connect(sim) as c:
        t = Trader(c, wallet)
        placed = await t.send(_far_bid_orders(sim, 2))
        oids = [s["resting"]["oid"] for s in placed["response"]["data"]["statuses"]]
        sim.exchange.accounts.users[wallet.address.lower()].budget.used = 10_500
        await trio.sleep(10)
        assert (await t.send(NOOP))["status"] == "ok"  # the trickle
        assert (await t.send(NOOP))["status"] == "err"
        for oid in oids:
            result = await t.send({"type": "cancel", "cancels": [{"a": 110000, "o": oid}]})
            assert result["response"]["data"]["statuses"] == ["success"]
        sim.exchange.accounts.users[wallet.address.lower()].budget.used = 19_999
        refused = await t.send({"type": "cancel", "cancels": [{"a": 110000, "o": 1}]})
        assert refused == {"status": "err", "response": _exhausted(20_000, limit=19_999)}


async def test_a_stale_expires_after_drops_the_action_and_costs_five_times(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    async with connect(sim) as c:
        t = Trader(c, wallet)
        await trio.sleep(5)
        now = sim.clock.now_ms()
        payload = t.sign(_far_bid_orders(sim, 2), expires_after=now - 1)
        assert await c.action(payload) == {"status": "err", "response": "Action already expired"}
        assert await c.info({"type": "openOrders", "user": wallet.address, "dex": "xyz"}) == []
        assert (await _rate_limit(c, wallet))["nRequestsUsed"] == 5 * 2
        # Its nonce is spent: the same payload again is a duplicate (refused whole: free).
        again = await c.action(payload)
        assert again == {"status": "err", "response": f"Invalid nonce: duplicate nonce {t.nonce}"}
        assert (await _rate_limit(c, wallet))["nRequestsUsed"] == 5 * 2
        # An action still within its expiresAfter executes and costs its normal weight.
        fresh = await t.send(_far_bid_orders(sim, 2), expires_after=now + 3_000)
        assert fresh["status"] == "ok" and len(fresh["response"]["data"]["statuses"]) == 2
        assert (await _rate_limit(c, wallet))["nRequestsUsed"] == 5 * 2 + 2


def test_the_command_line_can_start_near_exhaustion() -> None:
    config = build(
        parse_args(["--requests-used", "9990", "--cum-volume", "2500.5", "--request-trickle", "11"])
    ).config
    assert (config.initial_requests_used, config.initial_cum_volume, config.request_trickle_s) == (
        9_990,
        Decimal("2500.5"),
        11.0,
    )
    sim = build(parse_args(["--requests-used", "9990", "--cum-volume", "2500.5"]))
    address = sim.add_account("0x" + "ab" * 20)
    budget = sim.exchange.accounts.users[address].budget
    assert (budget.used, budget.cap) == (9_990, 12_500)
