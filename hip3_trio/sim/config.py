"""Simulator settings: network, randomness, market model, fees, limits.

Defaults mirror the venue where it is known (100 posts in flight, 2000 messages a minute, 60 s idle
close, 100 stored nonces, oracle every ~3 s, taker 4.5 bps) and are chosen to give an
oracle-dislocation taker something to see (a dislocation on ~15 % of oracle updates).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import attrs

Network = Literal["mainnet", "testnet"]


@attrs.define
class MarketModel:
    """How prices move and how the book is built around them."""

    oracle_interval_s: float = 3.0
    # One-sigma oracle move per update, in basis points.
    oracle_vol_bps: float = 8.0
    # Probability per oracle update that the book dislocates from the oracle.
    dislocation_rate: float = 0.15
    # Typical size of a dislocation in basis points (actual size is 0.5x..1.5x this, random sign).
    dislocation_bps: float = 40.0
    # How many oracle updates a dislocation lasts.
    dislocation_updates: int = 2
    # Book shape: levels per side, spacing and half-spread in bps, USD notional per level range.
    book_levels: int = 10
    level_spacing_bps: float = 2.0
    half_spread_bps: float = 1.5
    level_notional_usd: tuple[float, float] = (2_000.0, 20_000.0)


@attrs.define
class SimConfig:
    """Everything that shapes a simulator run."""

    seed: int = 7
    network: Network = "testnet"
    # Venue epoch-ms at the first clock read; None = wall clock at start.
    base_epoch_ms: int | None = None
    market: MarketModel = attrs.Factory(MarketModel)
    taker_fee_bps: Decimal = Decimal("4.5")
    maker_fee_bps: Decimal = Decimal("1.5")
    # Cross leverage used for margin checks (capped by each asset's maxLeverage).
    leverage: int = 10
    # USDC credited to each dex balance of a funded account.
    initial_balance: Decimal = Decimal("10000")
    # Limits per connection.
    max_inflight_posts: int = 100
    max_messages_per_minute: int = 2000
    idle_timeout_s: float = 60.0
    max_subscriptions: int = 1000
    # Nonce rules.
    nonce_set_size: int = 100
    nonce_past_window_ms: int = 2 * 24 * 3600 * 1000
    nonce_future_window_ms: int = 24 * 3600 * 1000
    # Recent fills sent in the userFills snapshot and returned by the userFills info request.
    fills_snapshot_limit: int = 2000
    # Volume an account needs before scheduleCancel may set a time (0 disables the check).
    schedule_cancel_min_volume: Decimal = Decimal("0")
    # Prefix the venue puts before the unknown-signer message; some transports show "L1 error: ".
    signer_error_prefix: str = ""
    # Push orderUpdates for orders refused at the book (iocCancelRejected, badAloPxRejected,
    # reduceOnlyRejected, perpMarginRejected). Unverified against the venue; on by default so a client
    # meets updates for oids its post reply never named.
    push_rejections: bool = True
    # Outgoing frames buffered per connection before it is dropped as a slow consumer.
    outbox_size: int = 10_000

    @property
    def source(self) -> str:
        """The phantom agent ``source``: "a" on mainnet, "b" on testnet."""
        return "a" if self.network == "mainnet" else "b"
