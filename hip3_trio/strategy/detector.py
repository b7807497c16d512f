"""The oracle-dislocation detector: when the book trades through the oracle, take the dislocated price.

A HIP-3 deployer pushes a new oracle price about every 3 s; between updates the book can move away from
it. When the best ask sits below the oracle (or the best bid above it) by more than the round-trip cost
— the taker fee of the entry and of the exit + expected slippage on both legs + a minimum edge — the
detector emits a `Signal` to take that price with a small IOC order:

    buy edge  = (oracle − best ask) / oracle × 10⁴ bps
    sell edge = (best bid − oracle) / oracle × 10⁴ bps

Size = min(alpha × liquidity factor × top-of-book size, max notional / mid), floored to the lot, where
the liquidity factor rises linearly from 0 at $500 of touched top-of-book notional to 1 at $5000: a thin
touch is more likely to be a stale quote or gone by the time the order lands, so it gets less size.

The taker fee of each market comes from the venue (`set_fees`, after every sync: hip3_trio/fees.py), or
from the config's `taker_fee_bps` override for every market. A market with no known fee never signals
(`Skip.NO_FEE`: fail closed). There is no signal on a stale oracle or book, on a crossed/locked or
one-sided book, below the exchange's minimum order value, or within the cooldown of the previous signal
for the same (market, side). Every non-signal comes back as a `Skip` reason so the strategy task can
count why it did not trade.

Pure logic: no I/O, no clock — time is passed in as `now_ms` (the same clock as the inputs' `time_ms`,
i.e. exchange time; the caller applies any server offset). All numbers are `Decimal`; floats are refused
at construction so a float can never reach a price or a size.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import attrs

from hip3_trio.validators import NOT_IN_FILE, Invalid, finite_decimal, ge, gt, le, optional
from hip3_trio.wire.numbers import (
    DEFAULT_MIN_NOTIONAL,
    InvalidNumber,
    check_min_notional,
    lot,
    round_size,
)

__all__ = [
    "BPS",
    "BookTop",
    "Detector",
    "DetectorConfig",
    "OracleCtx",
    "Signal",
    "Skip",
    "edge_bps",
    "liquidity_factor",
    "signal_size",
]

BPS: Final = Decimal(10_000)
_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)


# `_positive` and `_optional_positive` run for every bbo and oracle frame: a valid value is accepted in
# one call, and only an invalid one goes through the nested checks that word the error.


def _positive(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, Decimal) and value.is_finite() and value > 0:
        return
    finite_decimal(inst, attribute, value)
    raise ValueError(f"{attribute.name} must be positive, got {value}")


def _optional_positive(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or (isinstance(value, Decimal) and value.is_finite() and value > 0):
        return
    _positive(inst, attribute, value)


def _int_ms(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"{attribute.name} must be a non-negative int (ms), got {value!r}")


@attrs.frozen
class BookTop:
    """Best bid and ask of one market at exchange time `time_ms`; a missing side is `None`.

    A side's price and size come together or not at all.
    """

    market: str
    bid_px: Decimal | None = attrs.field(validator=_optional_positive)
    bid_sz: Decimal | None = attrs.field(validator=_optional_positive)
    ask_px: Decimal | None = attrs.field(validator=_optional_positive)
    ask_sz: Decimal | None = attrs.field(validator=_optional_positive)
    time_ms: int = attrs.field(validator=_int_ms)

    def __attrs_post_init__(self) -> None:
        if (self.bid_px is None) != (self.bid_sz is None) or (self.ask_px is None) != (self.ask_sz is None):
            raise ValueError(f"{self.market}: a book side needs both price and size, or neither")


@attrs.frozen
class OracleCtx:
    """The oracle and mark price of one market, stamped with the time it was received/published."""

    market: str
    oracle_px: Decimal = attrs.field(validator=_positive)
    mark_px: Decimal = attrs.field(validator=_positive)
    time_ms: int = attrs.field(validator=_int_ms)


@attrs.frozen(kw_only=True)
class Signal:
    """A decision to take `size` at `price` (the touched best price) on `market`.

    `price` is the order's limit; today it is always `best_px`, kept separate so a later pricing policy
    can differ from the observed touch without losing what was observed. The timestamps let metrics
    measure signal latency and the age of the inputs the decision was made on.
    """

    market: str
    is_buy: bool
    price: Decimal
    size: Decimal
    expected_edge_bps: Decimal
    # The whole threshold the edge had to beat (round trip), and the one-leg taker fee inside it.
    cost_bps: Decimal
    fee_bps: Decimal
    oracle_px: Decimal
    mark_px: Decimal
    best_px: Decimal
    mid_px: Decimal
    book_time_ms: int
    oracle_time_ms: int
    time_ms: int

    @property
    def notional(self) -> Decimal:
        """The order value at the limit price."""
        return self.price * self.size


class Skip(enum.Enum):
    """Why an evaluation produced no signal."""

    UNKNOWN_MARKET = "unknown_market"  # no sz_decimals spec for the market
    MARKET_MISMATCH = "market_mismatch"  # book and oracle of different markets
    NO_DATA = "no_data"  # book or oracle not seen yet
    NO_FEE = "no_fee"  # no taker fee known for the market (none from the venue, no override)
    STALE_ORACLE = "stale_oracle"
    STALE_BOOK = "stale_book"
    ONE_SIDED = "one_sided"
    CROSSED = "crossed"  # bid >= ask (locked counts: the book is not trustworthy)
    NO_EDGE = "no_edge"
    TOO_SMALL = "too_small"  # size floors to zero lots
    BELOW_MIN_NOTIONAL = "below_min_notional"
    COOLDOWN = "cooldown"


def _by_market(value: Mapping[str, Decimal]) -> Mapping[str, Decimal]:
    return dict(value)


def _sz_decimals(value: Mapping[str, int]) -> Mapping[str, int]:
    return dict(value)


@attrs.frozen(kw_only=True)
class DetectorConfig:
    """Signal thresholds and sizing: the config file's ``[detector]`` section.

    Defaults for alpha/stale limits/liquidity band come from the issue; slippage, minimum edge, max
    notional and cooldown are placeholders to be set per deployment. Durations are seconds, as in the
    file; the detector compares exchange-ms timestamps, so each is also kept in ms (`max_oracle_age_ms`,
    `max_book_age_ms`, `cooldown_ms`), computed once here rather than on every evaluation.
    """

    # One leg's taker fee for every market; None (the default) = each market's fee from the venue.
    taker_fee_bps: Decimal | None = attrs.field(default=None, validator=optional(finite_decimal, ge(0)))
    # Expected slippage taking the touch, per leg; the signal threshold is the round trip:
    # 2 x taker fee + 2 x slippage + min edge.
    slippage_bps: Decimal = attrs.field(default=Decimal(2), validator=[finite_decimal, ge(0)])
    min_edge_bps: Decimal = attrs.field(default=Decimal(3), validator=[finite_decimal, ge(0)])
    # Per-market replacements of min_edge_bps, from the file's [[markets]] table (not a [detector] key).
    min_edge_bps_by_market: Mapping[str, Decimal] = attrs.field(
        factory=dict, converter=_by_market, metadata=NOT_IN_FILE
    )
    # Fraction of the touched top-of-book size to take.
    # The plan's Phase B SIZE_ALPHA: take 5 % of the touched size.
    alpha: Decimal = attrs.field(default=Decimal("0.05"), validator=[finite_decimal, gt(0), le(1)])
    # Cap per entry order, valued at mid.
    max_notional_usd: Decimal = attrs.field(default=Decimal(25), validator=[finite_decimal, gt(0)])
    # The venue's minimum order value (the executor checks its rounded orders against it too).
    min_notional_usd: Decimal = attrs.field(default=DEFAULT_MIN_NOTIONAL, validator=[finite_decimal, gt(0)])
    # Touched notional at or below the floor sizes to zero, at or above full gets the whole alpha.
    liquidity_floor_usd: Decimal = attrs.field(default=Decimal(500), validator=[finite_decimal, ge(0)])
    liquidity_full_usd: Decimal = attrs.field(default=Decimal(5000), validator=[finite_decimal, gt(0)])
    stale_oracle_s: float = attrs.field(default=8.0, validator=gt(0))
    stale_book_s: float = attrs.field(default=2.0, validator=gt(0))
    # Per (market, side), after a signal.
    cooldown_s: float = attrs.field(default=10.0, validator=ge(0))
    max_oracle_age_ms: int = attrs.field(init=False, repr=False, eq=False)
    max_book_age_ms: int = attrs.field(init=False, repr=False, eq=False)
    cooldown_ms: int = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.liquidity_full_usd <= self.liquidity_floor_usd:
            raise Invalid(
                f"liquidity_full_usd ({self.liquidity_full_usd}) must be above "
                f"liquidity_floor_usd ({self.liquidity_floor_usd})"
            )
        for market, bps in self.min_edge_bps_by_market.items():
            if not isinstance(bps, Decimal) or not bps.is_finite() or bps < 0:
                raise TypeError(f"min edge override for {market} must be a non-negative Decimal, got {bps!r}")
        object.__setattr__(self, "max_oracle_age_ms", round(self.stale_oracle_s * 1000))
        object.__setattr__(self, "max_book_age_ms", round(self.stale_book_s * 1000))
        object.__setattr__(self, "cooldown_ms", round(self.cooldown_s * 1000))

    def threshold_bps(self, market: str, fee_bps: Decimal) -> Decimal:
        """The edge a signal needs on `market` with a one-leg taker fee of `fee_bps`: the round trip,
        entry fee + exit fee + slippage on both legs + the (per-market) minimum edge."""
        min_edge = self.min_edge_bps_by_market.get(market, self.min_edge_bps)
        return 2 * fee_bps + 2 * self.slippage_bps + min_edge


def edge_bps(*, is_buy: bool, oracle_px: Decimal, best_px: Decimal) -> Decimal:
    """Edge of taking `best_px` against the oracle, in bps; positive means the touch is through the oracle."""
    diff = oracle_px - best_px if is_buy else best_px - oracle_px
    return diff / oracle_px * BPS


def liquidity_factor(top_notional: Decimal, floor_usd: Decimal, full_usd: Decimal) -> Decimal:
    """0 at or below `floor_usd`, 1 at or above `full_usd`, linear in between."""
    if top_notional <= floor_usd:
        return _ZERO
    if top_notional >= full_usd:
        return _ONE
    return (top_notional - floor_usd) / (full_usd - floor_usd)


def signal_size(
    *, top_px: Decimal, top_sz: Decimal, mid_px: Decimal, sz_decimals: int, config: DetectorConfig
) -> Decimal | None:
    """min(alpha × liquidity factor × top size, max notional / mid), floored to the lot; None if < 1 lot."""
    factor = liquidity_factor(top_px * top_sz, config.liquidity_floor_usd, config.liquidity_full_usd)
    raw = min(config.alpha * factor * top_sz, config.max_notional_usd / mid_px)
    if raw < lot(sz_decimals):
        return None
    return round_size(raw, sz_decimals)


@attrs.frozen
class DetectorStatistics:
    """The detector's remembered inputs: books, oracles and (market, side) cooldowns."""

    books: int
    oracles: int
    cooldowns: int


@attrs.define(on_setattr=attrs.setters.NO_OP)  # per-frame `_live_ms` writes: no hook
class Detector:
    """Evaluates book/oracle pairs into signals; owns the latest inputs and the per-(market, side) cooldown.

    `sz_decimals` maps each configured market to its lot precision (from `meta(dex)`). All methods are
    synchronous, so under Trio each evaluation (including the cooldown mark) is atomic.
    """

    config: DetectorConfig
    sz_decimals: Mapping[str, int] = attrs.field(converter=_sz_decimals)
    _books: dict[str, BookTop] = attrs.field(factory=dict, init=False)
    _oracles: dict[str, OracleCtx] = attrs.field(factory=dict, init=False)
    _last_signal_ms: dict[tuple[str, bool], int] = attrs.field(factory=dict, init=False)
    _live_ms: int | None = attrs.field(default=None, init=False)
    # market → (one-leg fee, round-trip threshold), from the override or `set_fees`.
    _costs: dict[str, tuple[Decimal, Decimal]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        self.set_fees({})

    def set_fees(self, fees_bps: Mapping[str, Decimal | None]) -> None:
        """The venue's one-leg taker fee per market (None = unknown), after a sync. The config's
        `taker_fee_bps`, when set, replaces it for every market; a market with neither cannot signal."""
        override = self.config.taker_fee_bps
        costs: dict[str, tuple[Decimal, Decimal]] = {}
        for market in self.sz_decimals:
            fee = override if override is not None else fees_bps.get(market)
            if fee is not None:
                costs[market] = (fee, self.config.threshold_bps(market, fee))
        self._costs = costs

    def costs(self, market: str) -> tuple[Decimal, Decimal] | None:
        """(one-leg taker fee, round-trip threshold) in bps for `market`, or None if no fee is known."""
        return self._costs.get(market)

    def book(self, market: str) -> BookTop | None:
        """The latest best bid/ask of `market` on this connection (None before its first `bbo`)."""
        return self._books.get(market)

    def statistics(self) -> DetectorStatistics:
        return DetectorStatistics(len(self._books), len(self._oracles), len(self._last_signal_ms))

    def on_stream_alive(self, now_ms: int) -> None:
        """The market-data stream delivered a frame at `now_ms`: every stored book is current as of then.

        The venue pushes `bbo` only when the best bid/ask changes, so a quiet book sends nothing for
        seconds while still being exactly right — and an oracle move against an unchanged book is the
        very dislocation this strategy trades. A book's age is therefore measured from the later of its
        own timestamp and the last sign of life of the stream it arrives on.
        """
        self._live_ms = now_ms

    def on_stream_lost(self) -> None:
        """The connection ended: forget its books (a new connection brings fresh ones)."""
        self._live_ms = None
        self._books.clear()

    def on_book(self, book: BookTop, now_ms: int) -> Signal | Skip:
        """Record a new best bid/ask and evaluate it against the latest oracle of that market."""
        self._books[book.market] = book
        oracle = self._oracles.get(book.market)
        return Skip.NO_DATA if oracle is None else self.evaluate(book, oracle, now_ms)

    def on_oracle(self, oracle: OracleCtx, now_ms: int) -> Signal | Skip:
        """Record a new oracle/mark and evaluate it against the latest book of that market.

        An oracle's age runs from when its price last *changed*, not from the latest push: the venue
        pushes `activeAssetCtx` for the mark and funding too, so a deployer oracle that stopped updating
        would otherwise look fresh forever — and a stale oracle against a live book is a false
        dislocation."""
        previous = self._oracles.get(oracle.market)
        if previous is not None and previous.oracle_px == oracle.oracle_px:
            oracle = OracleCtx(oracle.market, oracle.oracle_px, oracle.mark_px, previous.time_ms)
        self._oracles[oracle.market] = oracle
        book = self._books.get(oracle.market)
        return Skip.NO_DATA if book is None else self.evaluate(book, oracle, now_ms)

    def evaluate(self, book: BookTop, oracle: OracleCtx, now_ms: int) -> Signal | Skip:
        """Apply every rule to one book/oracle pair; a returned Signal starts its (market, side) cooldown."""
        market = book.market
        cfg = self.config
        if oracle.market != market:
            return Skip.MARKET_MISMATCH
        sz_decimals = self.sz_decimals.get(market)
        if sz_decimals is None:
            return Skip.UNKNOWN_MARKET
        costs = self._costs.get(market)
        if costs is None:
            return Skip.NO_FEE
        fee_bps, cost_bps = costs
        if now_ms - oracle.time_ms > cfg.max_oracle_age_ms:
            return Skip.STALE_ORACLE
        live_ms = self._live_ms
        book_ms = book.time_ms if live_ms is None or live_ms < book.time_ms else live_ms
        if now_ms - book_ms > cfg.max_book_age_ms:
            return Skip.STALE_BOOK
        if book.bid_px is None or book.bid_sz is None or book.ask_px is None or book.ask_sz is None:
            return Skip.ONE_SIDED
        if book.bid_px >= book.ask_px:
            return Skip.CROSSED

        buy_edge = edge_bps(is_buy=True, oracle_px=oracle.oracle_px, best_px=book.ask_px)
        sell_edge = edge_bps(is_buy=False, oracle_px=oracle.oracle_px, best_px=book.bid_px)
        # An uncrossed book cannot have both edges positive, so at most one side qualifies.
        is_buy = buy_edge >= sell_edge
        edge = buy_edge if is_buy else sell_edge
        if edge < cost_bps:
            return Skip.NO_EDGE
        last = self._last_signal_ms.get((market, is_buy))
        if last is not None and now_ms - last < cfg.cooldown_ms:
            return Skip.COOLDOWN

        best_px, top_sz = (book.ask_px, book.ask_sz) if is_buy else (book.bid_px, book.bid_sz)
        mid_px = (book.bid_px + book.ask_px) / 2
        size = signal_size(top_px=best_px, top_sz=top_sz, mid_px=mid_px, sz_decimals=sz_decimals, config=cfg)
        if size is None:
            return Skip.TOO_SMALL
        try:
            check_min_notional(best_px, size, cfg.min_notional_usd)
        except InvalidNumber:
            return Skip.BELOW_MIN_NOTIONAL

        self._last_signal_ms[(market, is_buy)] = now_ms
        return Signal(
            market=market,
            is_buy=is_buy,
            price=best_px,
            size=size,
            expected_edge_bps=edge,
            cost_bps=cost_bps,
            fee_bps=fee_bps,
            oracle_px=oracle.oracle_px,
            mark_px=oracle.mark_px,
            best_px=best_px,
            mid_px=mid_px,
            book_time_ms=book.time_ms,
            oracle_time_ms=oracle.time_ms,
            time_ms=now_ms,
        )
