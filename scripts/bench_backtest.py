"""Benchmark: recorded frames per second through a whole backtest, one core.

Usage: .venv/bin/python scripts/bench_backtest.py [--frames 300000] [--markets 2] [--repeat 3] [--seed 1]

Writes a synthetic recording (`hip3_trio.backtest.synthetic.random_walk`: bbo frames a few ms apart
around a drifting oracle, an oracle update in about twenty, a ~40 bps dislocation for 300 ms now and
then, one unused `trades` frame in ten) to a temporary directory, then times `run_grid` over it with
the default configuration and the default venue models (latency, blocks, competitors, impact): read
and gunzip the recording, skip unused frames, decode the rest, drive `TradingCore` and the venue
stand-in, summarise. Only the run is timed, not writing the recording.

Printed per repetition and as the median: frames/s by wall clock and by CPU time of this process
(`time.process_time`: what the figure would be on an idle core when other processes share the
machine), and the frames per phase: a pass that only reads the records, one that also decodes the
used frames, and the full run — so the cost of the core and the venue is the difference.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hip3_trio.backtest.command import run_grid
from hip3_trio.backtest.grid import expand_grid
from hip3_trio.backtest.source import iter_frames, load_setup
from hip3_trio.backtest.synthetic import RecordingBuilder, random_walk
from hip3_trio.config import Config
from hip3_trio.recording.format import iter_records


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--markets", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("hip3_trio").addHandler(logging.NullHandler())  # the core's shutdown warning
    markets = [f"xyz:M{i:02d}" for i in range(args.markets)]
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp)
        builder = RecordingBuilder(markets)
        random_walk(builder, markets, frames=args.frames, seed=args.seed)
        builder.write(recording)
        setup = load_setup(recording)
        points = expand_grid(Config(), [])
        phases: dict[str, Callable[[], object]] = {
            "read records": lambda: sum(1 for _ in iter_records(recording)),
            "read + decode used": lambda: sum(1 for _ in iter_frames(recording, markets)),
            "full backtest": lambda: run_grid(recording, points, setup, seed=args.seed),
        }
        (summary,) = run_grid(recording, points, setup, seed=args.seed)  # warm-up, and what it decided
        print(
            f"{args.frames} frames ({summary.result.frames.used} used), {args.markets} markets: "
            f"{summary.stats.trades} trades, {summary.result.venue['entries']} entries"
        )
        for name, work in phases.items():
            walls, cpus = [], []
            for _ in range(args.repeat):
                wall, cpu = _timed(work)
                walls.append(args.frames / wall)
                cpus.append(args.frames / cpu)
            print(
                f"{name:>20}: {statistics.median(walls):>10,.0f} frames/s wall, "
                f"{statistics.median(cpus):>10,.0f} frames/s CPU  "
                f"(wall runs: {', '.join(f'{w:,.0f}' for w in walls)})"
            )


if __name__ == "__main__":
    main()
