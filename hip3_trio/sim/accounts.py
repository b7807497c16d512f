"""Accounts: funded users, their approved API wallets, per-dex balances, positions and fills.

In standard account mode each perp dex has its own collateral balance, so a HIP-3 position draws on the
``xyz`` balance, not the main one (docs:account-abstraction-modes). Positions keep the signed size, the
average entry price and the realised PnL; a fill reports ``startPosition``, ``dir`` and ``closedPnl``
(before fees) as the venue does. Fees are charged to the dex balance in its collateral (``feeToken``).

Margin: each asset has a leverage setting per user (``updateLeverage``; never set = the configured
default). An isolated position holds its own margin, allocated from the dex balance when it opens or
grows (notional / leverage) and released pro rata as it shrinks; its unrealised PnL stays inside it.
A cross position (main dex only: HIP-3 assets are isolated-only) is margined at the mark and its PnL
counts towards the dex's free margin. Each account also carries its fee tier and its action budget.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs

from .budget import RequestBudget
from .fees import FeeTier
from .numbers import to_wire, usd


@attrs.frozen
class Leverage:
    """A leverage setting: cross or isolated, and the multiplier."""

    is_cross: bool
    value: int

    def to_wire(self, raw_usd: Decimal | None = None) -> dict[str, Any]:
        """``{"type", "value"}``, plus ``rawUsd`` for isolated (TS-SDK activeAssetData.ts)."""
        if self.is_cross:
            return {"type": "cross", "value": self.value}
        return {"type": "isolated", "value": self.value, "rawUsd": signed_wire(usd(raw_usd or Decimal(0)))}


@attrs.define
class Position:
    """A one-way position in one coin."""

    szi: Decimal = Decimal(0)
    entry_px: Decimal = Decimal(0)
    realised_pnl: Decimal = Decimal(0)
    # Margin held by an isolated position (0 for cross: its margin is computed at the mark).
    margin: Decimal = Decimal(0)


@attrs.frozen
class FillRecord:
    """One fill as ``userFills`` reports it."""

    coin: str
    px: Decimal
    sz: Decimal
    is_buy: bool
    time: int
    start_position: Decimal
    dir: str
    closed_pnl: Decimal
    hash: str
    oid: int
    crossed: bool
    fee: Decimal
    tid: int
    cloid: str | None
    fee_token: str = "USDC"

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "coin": self.coin,
            "px": to_wire(self.px),
            "sz": to_wire(self.sz),
            "side": "B" if self.is_buy else "A",
            "time": self.time,
            "startPosition": _signed(self.start_position),
            "dir": self.dir,
            "closedPnl": _signed(self.closed_pnl),
            "hash": self.hash,
            "oid": self.oid,
            "crossed": self.crossed,
            "fee": _signed(self.fee),
            "tid": self.tid,
            "feeToken": self.fee_token,
        }
        if self.cloid is not None:
            out["cloid"] = self.cloid
        return out


def _signed(value: Decimal) -> str:
    return to_wire(value) if value >= 0 else "-" + to_wire(-value)


def signed_wire(value: Decimal) -> str:
    """A signed decimal in wire form ("-0.5", "0")."""
    return _signed(value)


def fill_direction(start: Decimal, is_buy: bool, size: Decimal) -> str:
    """The venue's ``dir`` for a fill: Open/Close Long/Short, or a flip."""
    end = start + size if is_buy else start - size
    if start == 0 or (start > 0 and is_buy) or (start < 0 and not is_buy):
        return "Open Long" if is_buy else "Open Short"
    if start > 0 and end < 0:
        return "Long > Short"
    if start < 0 and end > 0:
        return "Short > Long"
    return "Close Long" if start > 0 else "Close Short"


@attrs.define
class Account:
    """A funded user."""

    address: str
    balances: dict[str, Decimal] = attrs.Factory(dict)
    positions: dict[str, Position] = attrs.Factory(dict)
    fills: list[FillRecord] = attrs.Factory(list)
    scheduled_cancel_ms: int | None = None
    fee_tier: FeeTier = attrs.Factory(FeeTier)
    budget: RequestBudget = attrs.Factory(RequestBudget)
    # Leverage set with updateLeverage, per coin.
    leverage: dict[str, Leverage] = attrs.Factory(dict)
    taker_volume: Decimal = Decimal(0)
    maker_volume: Decimal = Decimal(0)

    @property
    def volume(self) -> Decimal:
        """Cumulative notional traded since the address was created."""
        return self.budget.cum_volume

    def recent_fills(self, limit: int) -> list[FillRecord]:
        """The latest `limit` fills, oldest first (what the venue's snapshot and info answer hold)."""
        return self.fills[len(self.fills) - limit :] if limit > 0 else []

    def position(self, coin: str) -> Position:
        return self.positions.setdefault(coin, Position())

    def apply_fill(
        self,
        dex: str,
        coin: str,
        is_buy: bool,
        px: Decimal,
        sz: Decimal,
        fee: Decimal,
        leverage: Leverage,
    ) -> Decimal:
        """Update position, margin and balance for one fill; return the realised (closed) PnL."""
        pos = self.position(coin)
        signed = sz if is_buy else -sz
        closed = Decimal(0)
        isolated = not leverage.is_cross
        if pos.szi == 0 or (pos.szi > 0) == is_buy:
            total = abs(pos.szi) + sz
            pos.entry_px = (abs(pos.szi) * pos.entry_px + sz * px) / total
            pos.szi += signed
            if isolated:
                pos.margin += px * sz / leverage.value
        else:
            before = abs(pos.szi)
            closing = min(sz, before)
            direction = Decimal(1) if pos.szi > 0 else Decimal(-1)
            closed = usd((px - pos.entry_px) * closing * direction)
            pos.szi += signed
            pos.margin -= pos.margin * closing / before
            if pos.szi == 0:
                pos.entry_px = Decimal(0)
                pos.margin = Decimal(0)
            elif (pos.szi > 0) != (direction > 0):
                pos.entry_px = px
                pos.margin = px * abs(pos.szi) / leverage.value if isolated else Decimal(0)
        pos.realised_pnl += closed
        self.balances[dex] = self.balances.get(dex, Decimal(0)) + closed - fee
        return closed


@attrs.define
class AccountBook:
    """All users, their agents and vaults."""

    initial_balance: Decimal
    dexes: tuple[str, ...]
    # What a new account starts with: its fee tier and its action budget.
    fee_tier: FeeTier = attrs.Factory(FeeTier)
    budget: RequestBudget = attrs.Factory(RequestBudget)
    users: dict[str, Account] = attrs.Factory(dict)
    agents: dict[str, str] = attrs.Factory(dict)  # agent -> master
    # Named agents (what `extraAgents` lists): agent -> (name, validUntil ms). An unnamed agent is not
    # listed and never expires here.
    named_agents: dict[str, tuple[str, int]] = attrs.Factory(dict)
    vaults: dict[str, str] = attrs.Factory(dict)  # vault -> leader

    def add_user(self, address: str, balance: Decimal | None = None) -> Account:
        """Create (or return) a funded user with ``balance`` of collateral on every dex."""
        address = address.lower()
        if address in self.users:
            return self.users[address]
        amount = self.initial_balance if balance is None else balance
        account = Account(
            address=address,
            balances={dex: amount for dex in self.dexes},
            fee_tier=attrs.evolve(self.fee_tier),
            budget=attrs.evolve(self.budget, last_through={}),
        )
        self.users[address] = account
        return account

    def approve_agent(
        self, agent: str, master: str, *, name: str | None = None, valid_until_ms: int | None = None
    ) -> None:
        """Let ``agent`` sign for ``master`` (the master must exist); a named agent's approval ends at
        ``valid_until_ms`` (docs:nonces-and-api-wallets: an API wallet is approved until a time)."""
        master = master.lower()
        if master not in self.users:
            self.add_user(master)
        self.agents[agent.lower()] = master
        if name is not None:
            self.named_agents[agent.lower()] = (name, valid_until_ms if valid_until_ms is not None else 2**53)

    def extra_agents(self, master: str) -> list[dict[str, object]]:
        """The ``extraAgents`` answer: ``master``'s named agents with their ``validUntil``."""
        return [
            {"name": name, "address": agent, "validUntil": until}
            for agent, (name, until) in sorted(self.named_agents.items())
            if self.agents.get(agent) == master
        ]

    def add_vault(self, vault: str, leader: str) -> Account:
        """A vault (or sub-account) that ``leader`` trades by sending ``vaultAddress``."""
        self.vaults[vault.lower()] = leader.lower()
        return self.add_user(vault)

    def master_of(self, signer: str, now_ms: int) -> str | None:
        """The account a signer acts for: itself if a user, its master if an agent approved at
        ``now_ms``. An expired agent is refused like an unknown signer (UNVERIFIED: the venue's exact
        message for an expired API wallet is not documented)."""
        if signer in self.users:
            return signer
        named = self.named_agents.get(signer)
        if named is not None and named[1] <= now_ms:
            return None
        return self.agents.get(signer)
