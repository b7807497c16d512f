"""The simulator verifies signatures independently and agrees with the official SDK."""

from __future__ import annotations

import copy
import re
from decimal import Decimal

import trio
from eth_account.signers.local import LocalAccount
from hyperliquid.utils.signing import recover_agent_or_user_from_l1_action
from trio.testing import MockClock

from hip3_trio.sim.config import SimConfig
from hip3_trio.sim.server import Simulator
from hip3_trio.sim.verify import AGENT_TYPE_HASH, DOMAIN_SEPARATOR, canonical_action

from .client import connect, order_action, signed
from .conftest import BASE_MS

UNKNOWN = re.compile(r"^User or API Wallet (0x[0-9a-f]{40}) does not exist\.$")


def test_eip712_constants_match_the_protocol_notes() -> None:
    assert DOMAIN_SEPARATOR.hex() == "d79297fcdf2ffcd4ae223d01edaa2ba214ff8f401d7c9300d995d17c82aa4040"
    assert AGENT_TYPE_HASH.hex() == "26f05c2f7239b6983075e58321292d77b3aa173d19b27257ac96ab362570f508"


def test_canonical_action_reorders_keys_and_normalises_numbers() -> None:
    raw = {
        "grouping": "na",
        "orders": [
            {"t": {"limit": {"tif": "Ioc"}}, "s": "1.50", "p": "105.0", "b": True, "a": 110000, "r": False}
        ],
        "type": "order",
    }
    assert canonical_action(raw) == {
        "type": "order",
        "orders": [
            {"a": 110000, "b": True, "p": "105", "s": "1.5", "r": False, "t": {"limit": {"tif": "Ioc"}}}
        ],
        "grouping": "na",
    }
    assert list(canonical_action(raw)) == ["type", "orders", "grouping"]
    assert list(canonical_action(raw)["orders"][0]) == ["a", "b", "p", "s", "r", "t"]


async def _best_ask(sim: Simulator, coin: str) -> float:
    ask = sim.exchange.markets[coin].best_ask()
    assert ask is not None
    return float(ask)


async def test_sdk_signed_order_is_accepted_and_filled(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    ask = await _best_ask(sim, "xyz:COIN")
    async with connect(sim) as c:
        result = await c.action(signed(wallet, order_action(110000, True, ask, 1.0), BASE_MS))
    assert result["status"] == "ok"
    (status,) = result["response"]["data"]["statuses"]
    assert status["filled"]["totalSz"] == "1"
    assert float(status["filled"]["avgPx"]) == ask  # one level deep: filled at the best ask
    assert isinstance(status["filled"]["oid"], int)
    assert sim.exchange.accounts.users[wallet.address.lower()].positions["xyz:COIN"].szi == 1


async def test_agent_signs_for_its_master(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount, agent_wallet: LocalAccount
) -> None:
    sim.approve_agent(agent_wallet.address, wallet.address)
    ask = await _best_ask(sim, "BTC")
    async with connect(sim) as c:
        result = await c.action(signed(agent_wallet, order_action(0, True, ask, 0.001), BASE_MS))
    assert "filled" in result["response"]["data"]["statuses"][0]
    master = sim.exchange.accounts.users[wallet.address.lower()]
    assert master.positions["BTC"].szi == Decimal("0.001")
    assert sim.exchange.nonces.count(agent_wallet.address.lower()) == 1  # nonces are per signer
    assert sim.exchange.nonces.count(wallet.address.lower()) == 0


async def test_tampered_action_recovers_another_signer(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    payload = signed(wallet, order_action(110000, True, 250.0, 1.0), BASE_MS)
    tampered = copy.deepcopy(payload)
    tampered["action"]["orders"][0]["s"] = "2"
    async with connect(sim) as c:
        result = await c.action(tampered)
    assert result["status"] == "err"
    match = UNKNOWN.match(result["response"])
    assert match, result
    expected = recover_agent_or_user_from_l1_action(
        tampered["action"], payload["signature"], None, BASE_MS, None, False
    )
    assert match.group(1) == expected.lower() != wallet.address.lower()
    assert sim.exchange.accounts.users[wallet.address.lower()].positions == {}


async def test_trailing_zero_price_is_refused_like_the_venue(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    action = order_action(110000, True, 250.0, 1.0)
    action["orders"][0]["p"] = "250.0"  # the SDK would send "250"; sign the non-normalised string
    payload = signed(wallet, action, BASE_MS)
    async with connect(sim) as c:
        result = await c.action(payload)
    assert result["status"] == "err"
    match = UNKNOWN.match(result["response"])
    assert match and match.group(1) != wallet.address.lower()
    # The venue hashes "250": the address in the message is the signer of the normalised action.
    normalised = copy.deepcopy(action)
    normalised["orders"][0]["p"] = "250"
    expected = recover_agent_or_user_from_l1_action(
        normalised, payload["signature"], None, BASE_MS, None, False
    )
    assert match.group(1) == expected.lower()


async def test_wrong_key_order_is_refused(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    action = order_action(110000, True, 250.0, 1.0)
    reordered = {"type": "order", "grouping": "na", "orders": action["orders"]}
    async with connect(sim) as c:
        result = await c.action(signed(wallet, reordered, BASE_MS))
    assert result["status"] == "err" and UNKNOWN.match(result["response"])


async def test_mainnet_signature_is_refused_by_a_testnet_venue(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    async with connect(sim) as c:
        result = await c.action(signed(wallet, {"type": "noop"}, BASE_MS, mainnet=True))
    assert result["status"] == "err" and UNKNOWN.match(result["response"])


async def test_mainnet_venue_accepts_mainnet_signatures(
    autojump_clock: MockClock, nursery: trio.Nursery, wallet: LocalAccount
) -> None:
    sim = Simulator.create(SimConfig(network="mainnet", base_epoch_ms=BASE_MS))
    sim.add_account(wallet.address)
    await nursery.start(sim.run)
    async with connect(sim) as c:
        ok = await c.action(signed(wallet, {"type": "noop"}, BASE_MS, mainnet=True))
        bad = await c.action(signed(wallet, {"type": "noop"}, BASE_MS + 1, mainnet=False))
    assert ok == {"status": "ok", "response": {"type": "default"}}
    assert bad["status"] == "err"


async def test_unknown_user_gets_the_venue_message(
    autojump_clock: MockClock, sim: Simulator, agent_wallet: LocalAccount
) -> None:
    async with connect(sim) as c:
        result = await c.action(signed(agent_wallet, {"type": "noop"}, BASE_MS))
    assert result == {
        "status": "err",
        "response": f"User or API Wallet {agent_wallet.address.lower()} does not exist.",
    }


async def test_vault_address_is_part_of_the_hash(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    vault = "0x" + "ab" * 20
    sim.add_vault(vault, wallet.address)
    ask = await _best_ask(sim, "ETH")
    async with connect(sim) as c:
        result = await c.action(signed(wallet, order_action(1, True, ask, 0.01), BASE_MS, vault=vault))
        assert "filled" in result["response"]["data"]["statuses"][0]
        unregistered = "0x" + "cd" * 20
        refused = await c.action(signed(wallet, {"type": "noop"}, BASE_MS + 1, vault=unregistered))
    assert sim.exchange.accounts.users[vault].positions["ETH"].szi == Decimal("0.01")
    assert refused == {"status": "err", "response": f"Vault not registered: {unregistered}"}


async def test_expires_after(autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount) -> None:
    async with connect(sim) as c:
        ok = await c.action(signed(wallet, {"type": "noop"}, BASE_MS, expires_after=BASE_MS + 10_000))
        await trio.sleep(20)
        late = await c.action(signed(wallet, {"type": "noop"}, BASE_MS + 1, expires_after=BASE_MS + 10_000))
    assert ok["status"] == "ok"
    assert late == {"status": "err", "response": "Action already expired"}


async def test_undeserialisable_action_is_a_transport_error(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    payload = signed(wallet, {"type": "noop"}, BASE_MS)
    payload["action"] = {"type": "order", "orders": [{"a": 0, "b": True, "p": 5, "s": "1", "r": False}]}
    async with connect(sim) as c:
        response = await c.post("action", payload)
    assert response == {
        "type": "error",
        "payload": "Failed to deserialize the JSON body into the target type",
    }


async def test_user_role_answers_user_agent_vault_and_missing(
    sim: Simulator, wallet: LocalAccount, agent_wallet: LocalAccount, autojump_clock: MockClock
) -> None:
    """``userRole`` (docs:info-endpoint, TS-SDK userRole.ts): the role of an address, an agent's master."""
    sim.approve_agent(agent_wallet.address, wallet.address)
    vault = "0x" + "ab" * 20
    sim.add_vault(vault, wallet.address)
    async with connect(sim) as c:
        assert await c.info({"type": "userRole", "user": wallet.address}) == {"role": "user"}
        assert await c.info({"type": "userRole", "user": agent_wallet.address}) == {
            "role": "agent",
            "data": {"user": wallet.address.lower()},
        }
        assert await c.info({"type": "userRole", "user": vault}) == {"role": "vault"}
        assert await c.info({"type": "userRole", "user": "0x" + "cd" * 20}) == {"role": "missing"}


async def test_an_expired_named_agent_is_refused_like_an_unknown_signer() -> None:
    """A named API wallet signs until its validUntil; after it, its orders are refused."""
    from hip3_trio.sim.accounts import AccountBook

    book = AccountBook(initial_balance=Decimal(100), dexes=("",))
    book.approve_agent("0xa", "0xm", name="bot", valid_until_ms=1000)
    assert book.master_of("0xa", 999) == "0xm"
    assert book.master_of("0xa", 1000) is None
    assert book.extra_agents("0xm") == [{"name": "bot", "address": "0xa", "validUntil": 1000}]
    book.approve_agent("0xb", "0xm")
    assert book.master_of("0xb", 10**15) == "0xm"
    assert len(book.extra_agents("0xm")) == 1
