"""``python -m hip3_trio backtest DIR [--config FILE] [--grid SECTION.KEY=V1,V2 ...] [--seed N] [--json]``.

Runs the engine's trading core over a recording (`hip3_trio.backtest.runner`) once per grid point and
prints, per point, the trades, fill rate, net edge per trade (mean and 95 % interval), PnL and maximum
drawdown (`hip3_trio.backtest.summary`); ``--json`` prints one JSON document instead. The same recording,
configuration, grid and seed give the same numbers.

Markets: the ``--config`` file's ``markets`` when it lists them, else those the recording's head names.

Exit status: 0 the backtest ran; 2 a bad command line, configuration, grid key or value, or a recording
that is missing or unusable — each one line on stderr (``hip3-trio backtest: …``), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, NoReturn

import attrs

from hip3_trio.app import engine_settings
from hip3_trio.backtest.grid import GridError, GridPoint, expand_grid, parse_grid
from hip3_trio.backtest.runner import USER, run_backtest
from hip3_trio.backtest.source import BacktestInputError, Setup, load_setup
from hip3_trio.backtest.summary import PointSummary, summarize
from hip3_trio.config import Config, ConfigError, load_config
from hip3_trio.errors import EXIT_CONFIG

__all__ = ["main", "run_grid"]

PROG: Final = "python -m hip3_trio backtest"
DEFAULT_SEED: Final = 1


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"hip3-trio backtest: {message} (see {PROG} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Backtest the engine's trading core over a recording.")
    parser.add_argument("recording", metavar="DIR", type=Path, help="a recording directory (or one file)")
    parser.add_argument("--config", metavar="FILE", type=Path, default=None, help="the engine's TOML config")
    parser.add_argument(
        "--grid",
        metavar="SECTION.KEY=V1,V2",
        action="append",
        default=[],
        help="run every value (repeat for a grid): detector.*, limits.* (or executor.*), time_stop.*, "
        "risk.*, batch.*, venue.* (latency_ms, blocks, competition, impact, ...)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the venue models (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def _config(path: Path | None) -> tuple[Config, bool]:
    """The config (as the engine reads it for the simulator) and whether the file lists markets."""
    if path is None:
        return Config(), False
    config = load_config(path, "sim")
    try:
        listed = "markets" in tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # load_config read it a moment ago
        listed = False
    return config, listed


@contextmanager
def _engine_logs_quiet() -> Iterator[None]:
    """The core's operational lines (each run's "shutting down ... flattening", a refused signal) are
    noise in a backtest, whose output is its figures: below ERROR they are dropped while the grid runs
    (an ERROR, a bug, still shows)."""
    logger = logging.getLogger("hip3_trio")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_grid(recording: Path, points: Sequence[GridPoint], setup: Setup, *, seed: int) -> list[PointSummary]:
    """Each grid point's run and figures."""
    with _engine_logs_quiet():
        return [_run_point(recording, point, setup, seed=seed) for point in points]


def _run_point(recording: Path, point: GridPoint, setup: Setup, *, seed: int) -> PointSummary:
    """One grid point's run and figures."""
    settings = attrs.evolve(
        engine_settings(point.config, user=USER, dry_run=False, is_mainnet=False, cloid_prefix=1),
        markets=tuple(setup.specs),
    )
    result = run_backtest(
        recording,
        setup,
        settings,
        realism=point.venue.realism(),
        seed=seed,
        exit_deadline_s=point.config.time_stop.exit_deadline_s,
    )
    return summarize(point.params, result, seed=seed)


def main(argv: Sequence[str], *, out: Callable[[str], None] = print) -> int:
    """Run the subcommand with `argv` (the arguments after ``backtest``); the exit status."""
    args = build_parser().parse_args(argv)
    try:
        config, listed = _config(args.config)
        axes = parse_grid(args.grid)
        points = expand_grid(config, axes)
        setup = load_setup(args.recording, config.coins if listed else ())
        summaries = run_grid(args.recording, points, setup, seed=args.seed)
    except (ConfigError, GridError, BacktestInputError) as exc:
        print(f"hip3-trio backtest: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        out(json.dumps(_document(args, setup, summaries), sort_keys=True))
        return 0
    frames = summaries[0].result.frames if summaries else None
    out(
        f"backtest of {args.recording}: markets {', '.join(setup.specs)}; "
        f"{frames.read if frames else 0} frames ({frames.used if frames else 0} used); seed {args.seed}; "
        f"fees {'as recorded' if setup.fees_recorded else 'tier 0 assumed (no userFees recorded)'}"
    )
    for summary in summaries:
        out(summary.line())
    return 0


def _document(args: argparse.Namespace, setup: Setup, summaries: Sequence[PointSummary]) -> dict[str, Any]:
    frames = summaries[0].result.frames if summaries else None
    return {
        "recording": str(args.recording),
        "seed": args.seed,
        "markets": list(setup.specs),
        "fees_recorded": setup.fees_recorded,
        "frames": {"read": frames.read if frames else 0, "used": frames.used if frames else 0},
        "points": [s.to_json() for s in summaries],
    }
