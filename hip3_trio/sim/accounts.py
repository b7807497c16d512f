"""Accounts: funded users, their approved API wallets, per-dex balances, positions and fills.

In standard account mode each perp dex has its own USDC balance, so a HIP-3 position draws on the
``xyz`` balance, not the main one. Positions keep the signed size, the average entry price and the
realised PnL; a fill reports ``startPosition``, ``dir`` and ``closedPnl`` (before fees) as the venue
does. Fees are charged to the dex balance in USDC.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs

from .numbers import to_wire, usd


@attrs.define
class Position:
    """A one-way position in one coin."""

    szi: Decimal = Decimal(0)
    entry_px: Decimal = Decimal(0)
    realised_pnl: Decimal = Decimal(0)


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
            "feeToken": "USDC",
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
    volume: Decimal = Decimal(0)
    scheduled_cancel_ms: int | None = None

    def recent_fills(self, limit: int) -> list[FillRecord]:
        """The latest `limit` fills, oldest first (what the venue's snapshot and info answer hold)."""
        return self.fills[len(self.fills) - limit :] if limit > 0 else []

    def position(self, coin: str) -> Position:
        return self.positions.setdefault(coin, Position())

    def apply_fill(
        self, dex: str, coin: str, is_buy: bool, px: Decimal, sz: Decimal, fee: Decimal
    ) -> Decimal:
        """Update position, balance and volume for one fill; return the realised (closed) PnL."""
        pos = self.position(coin)
        signed = sz if is_buy else -sz
        closed = Decimal(0)
        if pos.szi == 0 or (pos.szi > 0) == is_buy:
            total = abs(pos.szi) + sz
            pos.entry_px = (abs(pos.szi) * pos.entry_px + sz * px) / total
            pos.szi += signed
        else:
            closing = min(sz, abs(pos.szi))
            direction = Decimal(1) if pos.szi > 0 else Decimal(-1)
            closed = usd((px - pos.entry_px) * closing * direction)
            pos.szi += signed
            if pos.szi == 0:
                pos.entry_px = Decimal(0)
            elif (pos.szi > 0) != (direction > 0):
                pos.entry_px = px
        pos.realised_pnl += closed
        self.balances[dex] = self.balances.get(dex, Decimal(0)) + closed - fee
        self.volume += px * sz
        return closed


@attrs.define
class AccountBook:
    """All users, their agents and vaults."""

    initial_balance: Decimal
    dexes: tuple[str, ...]
    users: dict[str, Account] = attrs.Factory(dict)
    agents: dict[str, str] = attrs.Factory(dict)  # agent -> master
    vaults: dict[str, str] = attrs.Factory(dict)  # vault -> leader

    def add_user(self, address: str, balance: Decimal | None = None) -> Account:
        """Create (or return) a funded user with ``balance`` USDC on every dex."""
        address = address.lower()
        if address in self.users:
            return self.users[address]
        amount = self.initial_balance if balance is None else balance
        account = Account(address=address, balances={dex: amount for dex in self.dexes})
        self.users[address] = account
        return account

    def approve_agent(self, agent: str, master: str) -> None:
        """Let ``agent`` sign for ``master`` (the master must exist)."""
        master = master.lower()
        if master not in self.users:
            self.add_user(master)
        self.agents[agent.lower()] = master

    def add_vault(self, vault: str, leader: str) -> Account:
        """A vault (or sub-account) that ``leader`` trades by sending ``vaultAddress``."""
        self.vaults[vault.lower()] = leader.lower()
        return self.add_user(vault)

    def master_of(self, signer: str) -> str | None:
        """The account a signer acts for: itself if a user, its master if an approved agent."""
        if signer in self.users:
            return signer
        return self.agents.get(signer)
