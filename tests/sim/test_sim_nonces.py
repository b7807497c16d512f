"""The venue's nonce rules: 100 highest per signer, no reuse, a (T - 2 days, T + 1 day) window."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from trio.testing import MockClock

from hip3_trio.sim.nonces import NonceBook
from hip3_trio.sim.server import Simulator

from .client import connect, signed
from .conftest import BASE_MS

DAY = 24 * 3600 * 1000


def test_duplicate_is_refused() -> None:
    book = NonceBook()
    assert book.check("s", 1000, 1000) is None
    book.consume("s", 1000)
    assert book.check("s", 1000, 1000) == "Invalid nonce: duplicate nonce 1000"
    assert book.check("other", 1000, 1000) is None  # per signer


def test_only_the_100_highest_are_kept() -> None:
    book = NonceBook()
    now = 10 * DAY
    for n in range(now, now + 150):
        book.consume("s", n)
    assert book.count("s") == 100
    assert book.smallest("s") == now + 50
    assert book.check("s", now + 49, now) == f"Invalid nonce: nonce too low {now + 49} < {now + 50}"
    assert book.check("s", now + 50, now) == f"Invalid nonce: duplicate nonce {now + 50}"
    assert book.check("s", now + 1000, now) is None
    # A gap below the highest is still usable while it is above the smallest stored nonce.
    book2 = NonceBook()
    for n in (now, now + 10):
        book2.consume("s", n)
    assert book2.check("s", now + 5, now) is None


def test_time_window() -> None:
    book = NonceBook()
    now = 10 * DAY
    assert (
        book.check("s", now - 2 * DAY, now)
        == f"Invalid nonce: nonce too low {now - 2 * DAY} < {now - 2 * DAY}"
    )
    assert book.check("s", now - 2 * DAY + 1, now) is None
    assert book.check("s", now + DAY - 1, now) is None
    assert book.check("s", now + DAY, now) == f"Invalid nonce: nonce too high {now + DAY} > {now + DAY}"


async def test_nonce_rules_over_the_wire(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    noop = {"type": "noop"}
    async with connect(sim) as c:
        assert (await c.action(signed(wallet, noop, BASE_MS)))["status"] == "ok"
        assert await c.action(signed(wallet, noop, BASE_MS)) == {
            "status": "err",
            "response": f"Invalid nonce: duplicate nonce {BASE_MS}",
        }
        stale = BASE_MS - 2 * DAY - 5
        result = await c.action(signed(wallet, noop, stale))
        assert result["status"] == "err" and result["response"].startswith(
            f"Invalid nonce: nonce too low {stale} < "
        )
        future = BASE_MS + DAY + 5
        result = await c.action(signed(wallet, noop, future))
        assert result["status"] == "err" and result["response"].startswith(
            f"Invalid nonce: nonce too high {future} > "
        )
        for n in range(1, 101):
            assert (await c.action(signed(wallet, noop, BASE_MS + n)))["status"] == "ok"
        # 100 stored now: BASE_MS+1 .. BASE_MS+100; BASE_MS itself fell out and is now too low.
        assert await c.action(signed(wallet, noop, BASE_MS)) == {
            "status": "err",
            "response": f"Invalid nonce: nonce too low {BASE_MS} < {BASE_MS + 1}",
        }


async def test_a_refused_order_still_burns_its_nonce(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    from .client import order_action

    async with connect(sim) as c:
        tiny = await c.action(signed(wallet, order_action(110000, True, 250.0, 0.01), BASE_MS))
        assert tiny["response"]["data"]["statuses"] == [
            {"error": "Order must have minimum value of $10. asset=110000"}
        ]
        again = await c.action(signed(wallet, {"type": "noop"}, BASE_MS))
    assert again["response"] == f"Invalid nonce: duplicate nonce {BASE_MS}"


async def test_window_follows_the_skewed_venue_clock(
    autojump_clock: MockClock, sim: Simulator, wallet: LocalAccount
) -> None:
    sim.faults.clock_skew_ms = 3 * DAY  # the venue's clock runs three days ahead
    async with connect(sim) as c:
        result = await c.action(signed(wallet, {"type": "noop"}, BASE_MS))
    assert result["status"] == "err" and result["response"].startswith(
        f"Invalid nonce: nonce too low {BASE_MS} < "
    )
