"""The simulator-realism flags, shared by ``python -m hip3_trio.sim`` and ``python -m hip3_trio --env sim``.

    --latency-ms MS            one-way network latency on every frame each way (default 5; 0 = none)
    --block-ms MS              median block interval (default 70, jitter ±2/7 of it; 0 = no blocks)
    --competitors on|off       competing takers on dislocations (default on)
    --competitor-median-ms MS  their median arrival delay after the dislocation's block (default 8)
    --refill-s S               consumed liquidity comes back over this many seconds (default 5; 0 = no impact)

Defaults and their reasons are in ``realism.py``. A bad value (negative, ``nan``, ``inf``, not a number)
is refused by argparse's ``type`` check: the caller's parser prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from .realism import BlockModel, CompetitionModel, ImpactModel, LatencyModel, Realism

__all__ = ["add_realism_arguments", "realism_from_args"]
_DEFAULT = Realism()
# The default block jitter as a share of the interval (20 ms of 70 ms), kept when --block-ms changes it.
_JITTER_SHARE = _DEFAULT.blocks.jitter_ms / _DEFAULT.blocks.interval_ms


def _number(allow_zero: bool, unit: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise argparse.ArgumentTypeError(f"must be a number of {unit} {bound}, got {text!r}")
        return value

    return parse


def add_realism_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the realism flags (defaults: the realistic models of ``realism.py``)."""
    group = parser.add_argument_group("simulator realism (see hip3_trio/sim/realism.py)")
    ms, ms_positive, seconds = (
        _number(True, "milliseconds"),
        _number(False, "milliseconds"),
        _number(True, "seconds"),
    )
    numbers: tuple[tuple[str, Callable[[str], float], float, str], ...] = (
        (
            "--latency-ms",
            ms,
            _DEFAULT.latency.one_way_ms,
            "one-way network latency on every post and push (0 = none)",
        ),
        (
            "--block-ms",
            ms,
            _DEFAULT.blocks.interval_ms,
            "median block interval; actions run at block boundaries in the venue's order (0 = on arrival)",
        ),
        (
            "--competitor-median-ms",
            ms_positive,
            _DEFAULT.competition.median_ms,
            "competitors' median delay from a dislocation's block to their arrival",
        ),
        (
            "--refill-s",
            seconds,
            _DEFAULT.impact.refill_s,
            "consumed liquidity comes back linearly over this time (0 = no impact)",
        ),
    )
    for flag, parse, default, text in numbers:
        group.add_argument(flag, type=parse, default=default, help=f"{text}; default %(default)s")
    group.add_argument(
        "--competitors",
        choices=("on", "off"),
        default="on",
        help="competing takers race for dislocated liquidity (default on)",
    )


def realism_from_args(args: argparse.Namespace) -> Realism:
    """The models the parsed realism flags describe."""
    blocks = (
        BlockModel(interval_ms=args.block_ms, jitter_ms=args.block_ms * _JITTER_SHARE)
        if args.block_ms > 0
        else BlockModel(enabled=False)
    )
    return Realism(
        blocks=blocks,
        latency=LatencyModel(one_way_ms=args.latency_ms),
        competition=CompetitionModel(enabled=args.competitors == "on", median_ms=args.competitor_median_ms),
        impact=ImpactModel(refill_s=args.refill_s) if args.refill_s > 0 else ImpactModel(enabled=False),
    )
