"""`python -m hip3_trio.sim`'s flags reach the simulator's configuration (the benchmarks start it so);
the realism flags do the same on `python -m hip3_trio --env sim`, and bad values end in one line."""

from __future__ import annotations

import pytest

from hip3_trio.cli import parse_args as app_args
from hip3_trio.sim.__main__ import build, parse_args
from hip3_trio.sim.options import realism_from_args
from hip3_trio.sim.realism import Realism


def test_market_model_flags_configure_the_simulator() -> None:
    args = parse_args(
        ["--oracle-interval", "0.25", "--dislocation-rate", "0.9", "--dislocation-updates", "1"]
    )
    market = build(args).config.market
    assert (market.oracle_interval_s, market.dislocation_rate, market.dislocation_updates) == (0.25, 0.9, 1)


def test_market_model_defaults_are_left_alone_without_flags() -> None:
    assert build(parse_args([])).config.market.dislocation_updates == 2


def test_realism_defaults_are_the_realistic_models() -> None:
    assert build(parse_args([])).config.realism == Realism()


def test_realism_flags_configure_the_simulator() -> None:
    flags = "--latency-ms 2 --block-ms 35 --competitors off --competitor-median-ms 3 --refill-s 0"
    args = parse_args(flags.split())
    realism = build(args).config.realism
    assert realism.latency.one_way_ms == 2.0
    assert (realism.blocks.enabled, realism.blocks.interval_ms, realism.blocks.jitter_ms) == (
        True,
        35.0,
        10.0,
    )
    assert not realism.competition.enabled and realism.competition.median_ms == 3.0
    assert not realism.impact.enabled
    assert not build(parse_args(["--block-ms", "0"])).config.realism.blocks.enabled


def test_the_engine_command_passes_the_realism_flags_to_its_simulator() -> None:
    args = app_args(["--env", "sim", "--competitors", "off", "--latency-ms", "0"])
    realism = realism_from_args(args)
    assert not realism.competition.enabled and realism.latency.one_way_ms == 0.0
    assert realism.blocks == Realism().blocks


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--latency-ms", "-1"),
        ("--latency-ms", "nan"),
        ("--block-ms", "inf"),
        ("--competitor-median-ms", "0"),
        ("--refill-s", "soon"),
        ("--competitors", "maybe"),
    ],
)
def test_bad_realism_values_print_one_line_and_exit_2(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for parse in (parse_args, app_args):
        with pytest.raises(SystemExit) as stop:
            parse([flag, value])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and flag in err, err
