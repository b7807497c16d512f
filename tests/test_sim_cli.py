"""`python -m hip3_trio.sim`'s flags reach the simulator's configuration (the benchmarks start it so)."""

from __future__ import annotations

from hip3_trio.sim.__main__ import build, parse_args


def test_market_model_flags_configure_the_simulator() -> None:
    args = parse_args(
        ["--oracle-interval", "0.25", "--dislocation-rate", "0.9", "--dislocation-updates", "1"]
    )
    market = build(args).config.market
    assert (market.oracle_interval_s, market.dislocation_rate, market.dislocation_updates) == (0.25, 0.9, 1)


def test_market_model_defaults_are_left_alone_without_flags() -> None:
    assert build(parse_args([])).config.market.dislocation_updates == 2
