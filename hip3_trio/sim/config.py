"""Simulator settings: network, randomness, market model, fees, margin, limits.

Defaults mirror the venue where it is known (100 posts in flight, 2000 messages a minute, 60 s idle
close, 100 stored nonces, oracle every ~3 s, tier-0 taker 4.5 bps, an action budget of 10,000 plus one
per USDC traded with one action per 10 s once exhausted) and are chosen to give an oracle-dislocation
taker something to see (a dislocation on ~15 % of oracle updates). Every venue fact has its source in
the shared PROTOCOL.md crib sheet; where the venue's behaviour is unknown the field is a switch.

`SimConfig.realism` (blocks, latency, competing takers, impact; `realism.py` documents each default and
why) defaults to `DEFAULT_REALISM`, the realistic models: a simulator kinder than the venue hides losses.
The test suite swaps `DEFAULT_REALISM` for `Realism.off()` in one fixture (tests/conftest.py) so tests
written against the old instant venue keep their exact timings; a test of the models passes `realism`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import attrs

from .realism import Realism

Network = Literal["mainnet", "testnet"]
# Where `deployerFeeScale` is published (PROTOCOL.md open point 8, UNVERIFIED): typed on the `perpDexs`
# entry (TS-SDK perpDexs.ts), but a third-party report finds it per asset in `meta(dex)` only.
FeeScaleSite = Literal["perpDexs", "meta", "both"]


# What a `SimConfig` without an explicit `realism` gets (read at construction, so the test suite can
# swap it in one place).
DEFAULT_REALISM = Realism()


def default_realism() -> Realism:
    """The realism models of a `SimConfig` that names none: `DEFAULT_REALISM` as it is now."""
    return DEFAULT_REALISM


def _default_fee_scales() -> dict[str, Decimal]:
    return {"xyz": Decimal("1"), "abc": Decimal("0.5")}


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
    # Blocks, latency, competitors, impact (realism.py); `Realism.off()` = the old instant venue.
    realism: Realism = attrs.Factory(default_realism)

    # -- fees (docs:fees) ---------------------------------------------------------------------------
    # A new account's perp rates at its volume tier, before discounts (tier 0: 0.045 % / 0.015 %). The
    # simulator does not move accounts between tiers; set these (or an account's `fee_tier`) instead.
    taker_rate: Decimal = Decimal("0.00045")
    maker_rate: Decimal = Decimal("0.00015")
    # A new account's staking discount (folded into `userCrossRate`/`userAddRate`) and referral discount
    # (`activeReferralDiscount`, applied on top), as fractions.
    staking_discount: Decimal = Decimal(0)
    referral_discount: Decimal = Decimal(0)
    # HIP-3 deployer fee scale s per dex: fees x (s + 1) if s < 1, else x 2s. Read live, so a test may
    # change it between fills.
    deployer_fee_scales: dict[str, Decimal] = attrs.Factory(_default_fee_scales)
    fee_scale_published_in: FeeScaleSite = "perpDexs"
    # Markets whose `meta` entry says `growthMode: "enabled"`: fees x 0.1, budget 0.1 per USDC traded.
    growth_mode_markets: tuple[str, ...] = ("abc:TSLA",)

    # -- margin (docs:perpetuals, docs:hip-3-builder-deployed-perpetuals) ---------------------------
    # Leverage of an asset whose leverage was never set with `updateLeverage`. UNVERIFIED (PROTOCOL.md
    # open point 6); the docs' `activeAssetData` example shows the asset's maxLeverage, so None means
    # "the asset's maxLeverage"; an int is used as is (capped at the asset's maximum).
    default_leverage: int | None = None
    # USDC credited to each dex balance of a funded account.
    initial_balance: Decimal = Decimal("10000")

    # -- the per-address action budget (docs:rate-limits-and-user-limits) -----------------------------
    # Budget = `request_budget_base` + 1 per USDC traded (0.1 on growth-mode markets).
    request_budget_base: int = 10_000
    # What a new account has already spent and traded, so a run can start near exhaustion.
    initial_requests_used: int = 0
    initial_cum_volume: Decimal = Decimal(0)
    # Once exhausted, one action per this many seconds still gets through.
    request_trickle_s: float = 10.0

    # -- limits per IP (all connections of this simulator) and per connection -----------------------
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
