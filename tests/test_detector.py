"""The oracle-dislocation detector: edge, threshold, sizing, staleness, book shape and cooldown."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from hip3_trio.strategy.detector import (
    BookTop,
    Detector,
    DetectorConfig,
    OracleCtx,
    Signal,
    Skip,
    edge_bps,
    liquidity_factor,
    signal_size,
)
from hip3_trio.wire.numbers import lot

M = "xyz:COIN"
OTHER = "xyz:OTHER"
NOW = 1_000_000
SPECS = {M: 5, OTHER: 5}
# One leg's taker fee the tests' venue charges: the round trip 2 x 1.25 + 2 x 2 (slippage) + 3 (min edge)
# = 9.5 bps with the default config, so the 12 bps vectors signal.
FEE = D("1.25")


def book(
    bid: str | None = "49930",
    ask: str | None = "49940",
    bid_sz: str = "1",
    ask_sz: str = "1",
    time_ms: int = NOW,
    market: str = M,
) -> BookTop:
    return BookTop(
        market,
        None if bid is None else D(bid),
        None if bid is None else D(bid_sz),
        None if ask is None else D(ask),
        None if ask is None else D(ask_sz),
        time_ms,
    )


def oracle(px: str = "50000", time_ms: int = NOW, market: str = M) -> OracleCtx:
    return OracleCtx(market, D(px), D(px), time_ms)


def detector(**overrides: object) -> Detector:
    return with_fees(Detector(DetectorConfig(**overrides), SPECS))  # type: ignore[arg-type]


def with_fees(det: Detector, fee: D = FEE) -> Detector:
    """`det` after the venue's fees arrived: `fee` bps a leg on every market it knows."""
    det.set_fees(dict.fromkeys(det.sz_decimals, fee))
    return det


def signal(result: Signal | Skip) -> Signal:
    assert isinstance(result, Signal), result
    return result


# --- the vectors -----------------------------------------------------------------------


def test_vector_buy_edge_oracle_50000_ask_49940_is_12_bps() -> None:
    assert edge_bps(is_buy=True, oracle_px=D(50000), best_px=D(49940)) == 12


def test_vector_size_top_1_mid_50000_alpha_01_max_1000_is_002() -> None:
    cfg = DetectorConfig(alpha=D("0.1"), max_notional_usd=D(1000))
    assert signal_size(top_px=D(50000), top_sz=D(1), mid_px=D(50000), sz_decimals=5, config=cfg) == D("0.02")


def test_vector_liquidity_factor_at_2750_is_half() -> None:
    assert liquidity_factor(D(2750), D(500), D(5000)) == D("0.5")


def test_vector_through_evaluate_gives_a_12_bps_buy_at_the_ask() -> None:
    s = signal(detector().evaluate(book(), oracle(), NOW))
    assert s.is_buy
    assert s.expected_edge_bps == 12
    assert s.price == s.best_px == D(49940)
    assert s.oracle_px == D(50000)
    assert (s.fee_bps, s.cost_bps) == (FEE, D("9.5"))


# --- edge and threshold ------------------------------------------------------------------------


def test_sell_edge_is_bid_over_oracle_and_takes_the_bid() -> None:
    s = signal(detector().evaluate(book(bid="50060", ask="50070"), oracle(), NOW))
    assert not s.is_buy
    assert s.expected_edge_bps == 12
    assert s.price == s.best_px == D(50060)


def test_liquidity_factor_clamps_to_0_and_1() -> None:
    assert liquidity_factor(D(100), D(500), D(5000)) == 0
    assert liquidity_factor(D(500), D(500), D(5000)) == 0
    assert liquidity_factor(D(5000), D(500), D(5000)) == 1
    assert liquidity_factor(D(10**9), D(500), D(5000)) == 1


def test_threshold_is_the_round_trip_two_fees_two_slippages_plus_min_edge() -> None:
    # Issue 15: an IOC entry and a reduce-only IOC exit each pay the taker fee and the slippage.
    cfg = DetectorConfig(slippage_bps=D(2), min_edge_bps=D(3))
    assert cfg.threshold_bps(M, D("4.5")) == D("16")
    assert cfg.threshold_bps(M, D(9)) == D(25)  # xyz at s = 1, tier 0: 18 bps of fees alone


def test_the_venue_fee_sets_each_markets_threshold() -> None:
    det = Detector(DetectorConfig(), SPECS)
    det.set_fees({M: D(9), OTHER: D("0.675")})
    assert det.costs(M) == (D(9), D(25))
    assert det.costs(OTHER) == (D("0.675"), D("8.35"))
    s = signal(det.evaluate(book(market=OTHER), oracle(market=OTHER), NOW))  # 12 bps >= 8.35
    assert (s.fee_bps, s.cost_bps) == (D("0.675"), D("8.35"))
    assert det.evaluate(book(), oracle(), NOW) is Skip.NO_EDGE  # 12 bps < 25


def test_no_fee_known_for_a_market_means_no_signal() -> None:
    det = Detector(DetectorConfig(), SPECS)
    assert det.evaluate(book(), oracle(), NOW) is Skip.NO_FEE  # nothing from the venue yet
    det.set_fees({M: None, OTHER: FEE})  # the venue publishes no scale for M
    assert det.evaluate(book(), oracle(), NOW) is Skip.NO_FEE
    assert isinstance(det.evaluate(book(market=OTHER), oracle(market=OTHER), NOW), Signal)


def test_the_configured_fee_overrides_the_venue_for_every_market() -> None:
    det = Detector(DetectorConfig(taker_fee_bps=D(1)), SPECS)
    assert det.costs(M) == (D(1), D(9))  # before any venue fee
    det.set_fees({M: D(9)})
    assert det.costs(M) == det.costs(OTHER) == (D(1), D(9))
    s = signal(det.evaluate(book(), oracle(), NOW))
    assert (s.fee_bps, s.cost_bps) == (D(1), D(9))


def test_edge_exactly_at_threshold_signals_and_just_below_does_not() -> None:
    # threshold 9.5 bps: ask 49952.5 is exactly 9.5 bps under 50000; 49952.55 is 9.49 bps.
    assert isinstance(detector().evaluate(book(bid="49900", ask="49952.5"), oracle(), NOW), Signal)
    assert detector().evaluate(book(bid="49900", ask="49952.55"), oracle(), NOW) is Skip.NO_EDGE


def test_book_inside_the_oracle_has_no_edge() -> None:
    assert detector().evaluate(book(bid="49990", ask="50010"), oracle(), NOW) is Skip.NO_EDGE


def test_per_market_min_edge_override_applies_only_to_that_market() -> None:
    det = detector(min_edge_bps_by_market={M: D(10)})  # M needs 16.5 bps; OTHER keeps 9.5
    assert det.costs(M) == (FEE, D("16.5"))
    assert det.evaluate(book(), oracle(), NOW) is Skip.NO_EDGE
    assert isinstance(det.evaluate(book(market=OTHER), oracle(market=OTHER), NOW), Signal)


# --- freshness and book shape ------------------------------------------------------------------


def test_oracle_older_than_8s_is_stale() -> None:
    assert detector().evaluate(book(), oracle(time_ms=NOW - 8001), NOW) is Skip.STALE_ORACLE
    assert isinstance(detector().evaluate(book(), oracle(time_ms=NOW - 8000), NOW), Signal)


def test_book_older_than_2s_is_stale() -> None:
    assert detector().evaluate(book(time_ms=NOW - 2001), oracle(), NOW) is Skip.STALE_BOOK
    assert isinstance(detector().evaluate(book(time_ms=NOW - 2000), oracle(), NOW), Signal)


@pytest.mark.parametrize(("bid", "ask"), [(None, "49940"), ("49930", None), (None, None)])
def test_one_sided_book_gives_no_signal(bid: str | None, ask: str | None) -> None:
    assert detector().evaluate(book(bid=bid, ask=ask), oracle(), NOW) is Skip.ONE_SIDED


@pytest.mark.parametrize(("bid", "ask"), [("49950", "49940"), ("49940", "49940")])
def test_crossed_or_locked_book_gives_no_signal(bid: str, ask: str) -> None:
    assert detector().evaluate(book(bid=bid, ask=ask), oracle(), NOW) is Skip.CROSSED


def test_unknown_market_and_mismatched_inputs_give_no_signal() -> None:
    det = detector()
    assert det.evaluate(book(market="xyz:NEW"), oracle(market="xyz:NEW"), NOW) is Skip.UNKNOWN_MARKET
    assert det.evaluate(book(), oracle(market=OTHER), NOW) is Skip.MARKET_MISMATCH


# --- sizing ------------------------------------------------------------------------------------


def test_size_is_floored_to_the_lot_never_rounded_up() -> None:
    cfg = DetectorConfig(max_notional_usd=D("1399.5"))  # 1399.5 / 50000 = 0.02799
    assert signal_size(top_px=D(50000), top_sz=D(1), mid_px=D(50000), sz_decimals=3, config=cfg) == D("0.027")


def test_size_is_alpha_times_liquidity_factor_times_top_size_when_that_binds() -> None:
    # touch notional 20 × 137.5 = $2750 → factor 0.5; 0.1 × 0.5 × 20 = 1.0 < 1000/137.5
    cfg = DetectorConfig(max_notional_usd=D(1000), alpha=D("0.1"))
    size = signal_size(top_px=D("137.5"), top_sz=D(20), mid_px=D("137.5"), sz_decimals=2, config=cfg)
    assert size == D(1)


def test_size_is_capped_by_max_notional_over_mid() -> None:
    s = signal(detector(max_notional_usd=D(25)).evaluate(book(), oracle(), NOW))
    assert s.mid_px == D(49935)
    assert s.size == D("0.0005")  # 25 / 49935 = 0.000500651 floored to 5 decimals
    assert s.size * s.mid_px <= 25


def test_touch_below_500_dollars_gives_no_size() -> None:
    # 0.01 × 49940 = $499.40 of touch: liquidity factor 0
    assert detector().evaluate(book(ask_sz="0.01"), oracle(), NOW) is Skip.TOO_SMALL


def test_size_under_one_lot_gives_no_signal() -> None:
    det = with_fees(Detector(DetectorConfig(max_notional_usd=D(25)), {M: 0}))  # 25 / 49935 < 1 unit
    assert det.evaluate(book(), oracle(), NOW) is Skip.TOO_SMALL


def test_order_value_under_10_dollars_gives_no_signal() -> None:
    assert detector(max_notional_usd=D(5)).evaluate(book(), oracle(), NOW) is Skip.BELOW_MIN_NOTIONAL
    assert isinstance(detector(max_notional_usd=D(11)).evaluate(book(), oracle(), NOW), Signal)


# --- cooldown ----------------------------------------------------------------------------------


def test_one_signal_per_market_and_side_per_cooldown() -> None:
    det = detector(cooldown_s=10.0)
    assert isinstance(det.evaluate(book(), oracle(), NOW), Signal)
    assert det.evaluate(book(time_ms=NOW + 9_999), oracle(time_ms=NOW + 9_999), NOW + 9_999) is Skip.COOLDOWN
    later = NOW + 10_000
    assert isinstance(det.evaluate(book(time_ms=later), oracle(time_ms=later), later), Signal)


def test_cooldown_does_not_block_the_other_side_or_other_markets() -> None:
    det = detector()
    assert signal(det.evaluate(book(), oracle(), NOW)).is_buy
    assert not signal(det.evaluate(book(bid="50060", ask="50070"), oracle(), NOW + 1)).is_buy
    assert isinstance(det.evaluate(book(market=OTHER), oracle(market=OTHER), NOW + 1), Signal)


def test_a_skipped_evaluation_does_not_start_the_cooldown() -> None:
    det = detector()
    assert det.evaluate(book(ask_sz="0.01"), oracle(), NOW) is Skip.TOO_SMALL
    assert isinstance(det.evaluate(book(), oracle(), NOW), Signal)


# --- stream interface, signal contents, input validation ---------------------------------------


def test_on_book_and_on_oracle_wait_for_both_then_use_the_latest() -> None:
    det = detector()
    assert det.on_book(book(bid="49990", ask="50010"), NOW) is Skip.NO_DATA
    assert det.on_oracle(oracle(), NOW) is Skip.NO_EDGE
    s = signal(det.on_book(book(), NOW + 5))
    assert s.price == D(49940)
    assert s.time_ms == NOW + 5


def test_signal_carries_prices_and_timestamps_for_metrics() -> None:
    ctx = OracleCtx(M, D(50000), D(49990), NOW - 3000)
    s = signal(detector().evaluate(book(time_ms=NOW - 100), ctx, NOW))
    assert (s.market, s.oracle_px, s.mark_px) == (M, D(50000), D(49990))
    assert (s.book_time_ms, s.oracle_time_ms, s.time_ms) == (NOW - 100, NOW - 3000, NOW)
    assert s.notional == s.price * s.size


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError):
        BookTop(M, 1.0, D(1), D(2), D(1), NOW)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        OracleCtx(M, D(1), 1.0, NOW)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DetectorConfig(alpha=0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DetectorConfig(min_edge_bps_by_market={M: 1.0})  # type: ignore[dict-item]


def test_half_a_book_side_is_refused() -> None:
    with pytest.raises(ValueError, match="both price and size"):
        BookTop(M, D(1), None, D(2), D(1), NOW)


def test_config_refuses_inconsistent_values() -> None:
    with pytest.raises(ValueError):
        DetectorConfig(alpha=D("1.5"))
    with pytest.raises(ValueError):
        DetectorConfig(liquidity_floor_usd=D(5000), liquidity_full_usd=D(500))


# --- properties --------------------------------------------------------------------------------


def scaled(digits: int, places: tuple[int, int]) -> st.SearchStrategy[D]:
    """Positive decimals spread over orders of magnitude: an integer mantissa shifted by `places`."""
    return st.builds(
        lambda m, p: D(m).scaleb(-p),
        st.integers(min_value=1, max_value=10**digits - 1),
        st.integers(min_value=places[0], max_value=places[1]),
    )


@settings(max_examples=300)
@given(
    bid=scaled(5, (-1, 2)),
    spread_bps=st.decimals(min_value=D("0.1"), max_value=D(20), places=1),
    offset_bps=st.decimals(min_value=D(-60), max_value=D(60), places=1),
    bid_sz=scaled(6, (0, 3)),
    ask_sz=scaled(6, (0, 3)),
    sz_decimals=st.integers(min_value=0, max_value=5),
    alpha=st.decimals(min_value=D("0.01"), max_value=D(1), places=2),
    max_notional=st.decimals(min_value=D(1), max_value=D(5000), places=2),
)
def test_any_signal_is_a_whole_number_of_lots_within_every_limit(
    bid: D,
    spread_bps: D,
    offset_bps: D,
    bid_sz: D,
    ask_sz: D,
    sz_decimals: int,
    alpha: D,
    max_notional: D,
) -> None:
    ask = bid * (1 + spread_bps / 10_000)
    oracle_px = (bid + ask) / 2 * (1 + offset_bps / 10_000)
    cfg = DetectorConfig(alpha=alpha, max_notional_usd=max_notional)
    det = with_fees(Detector(cfg, {M: sz_decimals}))
    result = det.evaluate(
        BookTop(M, bid, bid_sz, ask, ask_sz, NOW), OracleCtx(M, oracle_px, oracle_px, NOW), NOW
    )
    event(result.name if isinstance(result, Skip) else "signal")
    if not isinstance(result, Signal):
        return
    top_sz = ask_sz if result.is_buy else bid_sz
    assert result.price == (ask if result.is_buy else bid)
    assert result.size > 0
    assert result.size % lot(sz_decimals) == 0
    assert result.size * result.mid_px <= max_notional
    assert result.size <= alpha * top_sz
    assert result.size * result.price >= cfg.min_notional_usd
    assert result.expected_edge_bps >= result.cost_bps == cfg.threshold_bps(M, FEE)


@given(
    bid=st.decimals(min_value=D(100), max_value=D(50_000), places=2),
    spread=st.decimals(min_value=D("0.01"), max_value=D(50), places=2),
    oracle_px=st.decimals(min_value=D(90), max_value=D(55_000), places=2),
    min_edge=st.decimals(min_value=D(0), max_value=D(50), places=1),
)
def test_with_ample_liquidity_a_signal_comes_exactly_when_edge_reaches_the_threshold(
    bid: D, spread: D, oracle_px: D, min_edge: D
) -> None:
    ask = bid + spread
    cfg = DetectorConfig(min_edge_bps=min_edge, max_notional_usd=D(1000))
    det = with_fees(Detector(cfg, {M: 3}))
    result = det.evaluate(
        BookTop(M, bid, D(1000), ask, D(1000), NOW), OracleCtx(M, oracle_px, oracle_px, NOW), NOW
    )
    best_edge = max(
        edge_bps(is_buy=True, oracle_px=oracle_px, best_px=ask),
        edge_bps(is_buy=False, oracle_px=oracle_px, best_px=bid),
    )
    qualifies = best_edge >= cfg.threshold_bps(M, FEE)
    event(f"qualifies={qualifies}")
    assert isinstance(result, Signal) == qualifies
    if isinstance(result, Signal):
        assert result.expected_edge_bps == best_edge
    else:
        assert result is Skip.NO_EDGE


def test_an_oracle_that_stops_changing_goes_stale_however_often_it_is_pushed() -> None:
    """The oracle's age is the time since `oraclePx` last changed (issue 15): pushes of the same price
    (the mark or funding moved) do not refresh it."""
    det = detector(stale_oracle_s=8.0)
    det.on_book(book(time_ms=NOW), NOW)
    assert det.on_oracle(oracle("50000", time_ms=NOW), NOW) is not Skip.STALE_ORACLE
    for t in range(NOW + 1_000, NOW + 10_000, 1_000):
        det.on_stream_alive(t)
        det.on_book(book(time_ms=t), t)
        result = det.on_oracle(oracle("50000", time_ms=t), t)
    assert result is Skip.STALE_ORACLE  # 9 s after the last change, though pushed every second
    det.on_book(book(time_ms=NOW + 10_000), NOW + 10_000)
    assert det.on_oracle(oracle("50001", time_ms=NOW + 10_000), NOW + 10_000) is not Skip.STALE_ORACLE
