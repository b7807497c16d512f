"""Fixtures for the simulator's tests: a running simulator and SDK wallets.

pytest-trio only runs a test on a mock clock when the test itself takes the clock fixture, so every
async test here takes ``autojump_clock`` as an argument.
"""

from __future__ import annotations

import pytest
import trio
from eth_account import Account
from eth_account.signers.local import LocalAccount

from hip3_trio.sim.config import SimConfig
from hip3_trio.sim.server import Simulator

BASE_MS = 1_700_000_000_000


@pytest.fixture
def wallet() -> LocalAccount:
    acct: LocalAccount = Account.from_key("0x" + "11" * 32)
    return acct


@pytest.fixture
def agent_wallet() -> LocalAccount:
    acct: LocalAccount = Account.from_key("0x" + "22" * 32)
    return acct


@pytest.fixture
async def sim(nursery: trio.Nursery, wallet: LocalAccount) -> Simulator:
    """A running simulator (testnet, seed 7, venue time BASE_MS at start) with ``wallet`` funded."""
    simulator = Simulator.create(SimConfig(seed=7, base_epoch_ms=BASE_MS))
    simulator.add_account(wallet.address)
    await nursery.start(simulator.run)
    return simulator
