"""Benchmark: market-data frames per second through decoder → detector, one core.

Usage: .venv/bin/python scripts/bench_feed.py [--markets 40] [--frames 200000] [--repeat 5] [--seed 1]

The frames are JSON text exactly as the venue (and `hip3_trio.sim`) sends them, compact separators:

    {"channel":"bbo","data":{"coin":"xyz:M07","time":...,"bbo":[{"px":..,"sz":..,"n":..},{...}]}}
    {"channel":"activeAssetCtx","data":{"coin":"xyz:M07","ctx":{"funding":..,"openInterest":..,
        "prevDayPx":..,"dayNtlVlm":..,"premium":..,"oraclePx":..,"markPx":..,"midPx":..,
        "impactPxs":[..,..],"dayBaseVlm":..}}}

mixed about 2 bbo per activeAssetCtx over `--markets` markets named xyz:M00, xyz:M01, ... Each market's
oracle walks a tick at a time and its book sits around the oracle (no edge); about 1 bbo in 200 is
dislocated through the oracle by 12–40 bps, so most frames end in a `Skip` and a few in a `Signal`
(the default `DetectorConfig`: threshold 9.5 bps, 10 s cooldown). The frames are stamped on a synthetic
exchange clock advancing 1 ms per frame, which is also the `now_ms` handed to the detector.

Per frame the pipeline is the market-data part of what the engine host does today
(`hip3_trio.core.TradingCore.on_bbo` / `on_asset_ctx`): `decode_frame(text)`, then for a configured
market `Detector.on_stream_alive(now_ms)`, and a `Bbo` becomes a `BookTop` for `Detector.on_book`, an
`ActiveAssetCtx` an `OracleCtx` (stamped on receipt) for `Detector.on_oracle`. The host's own
bookkeeping around it (readiness, marks, stats, journal) is not part of this benchmark.

Sections, timed in turn within every repetition (each over all frames, a fresh `Detector` each time):
- `json.loads` of the frames: the floor any JSON decoder has to pay;
- `orjson.loads`, if orjson is importable (a reference only);
- `decode_frame` alone;
- adapt alone: decoded messages → `BookTop` / `OracleCtx` (their attrs validators run here);
- detector alone: prebuilt inputs → `on_book` / `on_oracle`;
- the full pipeline: text → decode → adapt → detector.
Each section is warmed up first; the reported figure is the median over `--repeat` repetitions of
(section time / frames), timed with `perf_counter_ns` around the whole loop. The "alone" sections
keep no results (a list of 200k decoded messages would make the collector's cost, not the decoder's,
the figure). The garbage collector stays on, as in the engine; the prebuilt feed is moved out of its
reach (`gc.freeze()`) and a collection runs before each section.

`--baseline FILE` also times `decode_frame` and the full pipeline with another version of
`hip3_trio/wire/messages.py`, interleaved with the current one in the same process (same machine
conditions), after checking that it decodes every frame to the same values and decides the same.

Target (issue 8): the full pipeline ≥ 20,000 frames/s for 40 markets on one core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from hip3_trio.core import book_top
from hip3_trio.sim.accounts import signed_wire
from hip3_trio.strategy.detector import BookTop, Detector, DetectorConfig, OracleCtx, Signal, Skip
from hip3_trio.wire import messages as m
from hip3_trio.wire.numbers import to_wire

TARGET_FPS = 20_000
T0_MS = 1_763_700_000_000
SZ_DECIMALS = 2
TICK = Decimal("0.01")  # prices 20..900 with 2 decimals: always within 5 significant figures
DISLOCATE_EVERY = 200  # about one bbo in this many is dislocated through the oracle
Result = Signal | Skip | None


# --- the feed ----------------------------------------------------------------------------------


@attrs.define
class _Market:
    coin: str
    oracle_ticks: int
    open_interest: Decimal
    prev_day_px: Decimal
    day_volume: Decimal


def _px(ticks: int) -> str:
    return to_wire(TICK * ticks)


def _level(ticks: int, rng: random.Random, *, big: bool = False) -> dict[str, Any]:
    # Top-of-book notional around $300–$20,000 (liquidity factor 0 → 1); a dislocated touch is deep.
    low = 5_000 if big else 300
    notional = rng.uniform(low, 20_000)
    sz = Decimal(int(notional / float(TICK * ticks) * 100)) / 100
    return {"px": _px(ticks), "sz": to_wire(max(sz, Decimal("0.01"))), "n": rng.randint(1, 12)}


def _bbo(mk: _Market, now_ms: int, rng: random.Random) -> dict[str, Any]:
    oracle = mk.oracle_ticks
    if rng.randrange(DISLOCATE_EVERY) == 0:
        # The book trades through the oracle: ask below it (buy) or bid above it (sell), 12–40 bps.
        through = max(2, oracle * rng.randint(12, 40) // 10_000)
        spread = rng.randint(1, 3)
        if rng.random() < 0.5:
            ask = oracle - through
            bid_lvl, ask_lvl = _level(ask - spread, rng), _level(ask, rng, big=True)
        else:
            bid = oracle + through
            bid_lvl, ask_lvl = _level(bid, rng, big=True), _level(bid + spread, rng)
    else:
        # Around the oracle, never through it by more than a tick: no edge.
        mid2 = 2 * oracle + rng.randint(-1, 1)
        half = rng.randint(1, 4)
        bid_lvl, ask_lvl = _level((mid2 - 2 * half) // 2, rng), _level((mid2 + 2 * half + 1) // 2, rng)
    time_ms = now_ms - rng.randint(0, 40)
    return {"channel": "bbo", "data": {"coin": mk.coin, "time": time_ms, "bbo": [bid_lvl, ask_lvl]}}


def _ctx(mk: _Market, rng: random.Random) -> dict[str, Any]:
    mk.oracle_ticks += rng.randint(-1, 1)
    oracle = mk.oracle_ticks
    mark = oracle + rng.randint(-2, 2)
    premium = (Decimal(mark - oracle) / oracle).quantize(Decimal("0.00000001"))
    mk.day_volume += Decimal(rng.randint(0, 5000))
    ctx = {
        "funding": "0.0000125",
        "openInterest": to_wire(mk.open_interest),
        "prevDayPx": to_wire(mk.prev_day_px),
        "dayNtlVlm": to_wire(mk.day_volume),
        "premium": signed_wire(premium),
        "oraclePx": _px(oracle),
        "markPx": _px(mark),
        "midPx": to_wire(TICK * oracle + TICK / 2),
        "impactPxs": [_px(oracle - 2), _px(oracle + 2)],
        "dayBaseVlm": to_wire((mk.day_volume / (TICK * oracle)).quantize(Decimal("0.01"))),
    }
    return {"channel": "activeAssetCtx", "data": {"coin": mk.coin, "ctx": ctx}}


def build_feed(n_markets: int, n_frames: int, seed: int) -> tuple[list[str], list[int], list[str]]:
    """`n_frames` venue frames over `n_markets` markets, their receipt clock, and the market names.

    Every market gets one activeAssetCtx first (as after subscribing), then a random mix of about
    two bbo per activeAssetCtx.
    """
    rng = random.Random(seed)
    markets = []
    for i in range(n_markets):
        ticks = rng.randint(2_000, 90_000)
        markets.append(
            _Market(
                coin=f"xyz:M{i:02d}",
                oracle_ticks=ticks,
                open_interest=Decimal(rng.randint(1_000, 900_000)) / 100,
                prev_day_px=TICK * (ticks + rng.randint(-500, 500)),
                day_volume=Decimal(rng.randint(10_000, 5_000_000)),
            )
        )
    frames: list[str] = []
    nows: list[int] = []
    for i in range(n_frames):
        now_ms = T0_MS + i
        if i < n_markets:
            mk = markets[i]
            message = _ctx(mk, rng)
        else:
            mk = markets[rng.randrange(n_markets)]
            message = _bbo(mk, now_ms, rng) if rng.random() < 2 / 3 else _ctx(mk, rng)
        frames.append(json.dumps(message, separators=(",", ":")))
        nows.append(now_ms)
    return frames, nows, [mk.coin for mk in markets]


# --- the pipeline (the adaptation of Engine._on_bbo / Engine._on_asset_ctx) -----------------------


def adapt(msg: m.InboundMessage, markets: frozenset[str], now_ms: int) -> BookTop | OracleCtx | None:
    if isinstance(msg, m.Bbo) and msg.coin in markets:
        return book_top(msg)
    if isinstance(msg, m.ActiveAssetCtx) and msg.coin in markets:
        return OracleCtx(msg.coin, msg.ctx.oracle_px, msg.ctx.mark_px, now_ms)
    return None


def new_detector(coins: Sequence[str]) -> Detector:
    return Detector(DetectorConfig(), {coin: SZ_DECIMALS for coin in coins})


def run_pipeline(
    frames: Sequence[str],
    nows: Sequence[int],
    detector: Detector,
    markets: frozenset[str],
    messages: ModuleType = m,
) -> list[Result]:
    decode = messages.decode_frame
    bbo_cls, ctx_cls = messages.Bbo, messages.ActiveAssetCtx
    on_book, on_oracle, alive = detector.on_book, detector.on_oracle, detector.on_stream_alive
    results: list[Result] = []
    append = results.append
    for text, now_ms in zip(frames, nows, strict=True):
        msg = decode(text)
        result: Result = None
        if isinstance(msg, bbo_cls) and msg.coin in markets:
            alive(now_ms)
            result = on_book(book_top(msg), now_ms)
        elif isinstance(msg, ctx_cls) and msg.coin in markets:
            alive(now_ms)
            result = on_oracle(OracleCtx(msg.coin, msg.ctx.oracle_px, msg.ctx.mark_px, now_ms), now_ms)
        append(result)
    return results


def run_json(frames: Sequence[str], loads: Callable[[str], Any]) -> None:
    for text in frames:
        loads(text)


def run_decode(frames: Sequence[str], messages: ModuleType = m) -> None:
    decode = messages.decode_frame
    for text in frames:
        decode(text)


def run_adapt(msgs: Sequence[m.InboundMessage], nows: Sequence[int], markets: frozenset[str]) -> None:
    for msg, now_ms in zip(msgs, nows, strict=True):
        adapt(msg, markets, now_ms)


def run_detector(
    inputs: Sequence[BookTop | OracleCtx | None], nows: Sequence[int], detector: Detector
) -> list[Result]:
    on_book, on_oracle, alive = detector.on_book, detector.on_oracle, detector.on_stream_alive
    results: list[Result] = []
    append = results.append
    for item, now_ms in zip(inputs, nows, strict=True):
        if isinstance(item, BookTop):
            alive(now_ms)
            append(on_book(item, now_ms))
        elif item is not None:
            alive(now_ms)
            append(on_oracle(item, now_ms))
        else:
            append(None)
    return results


# --- measurement -------------------------------------------------------------------------------


def _timed(fn: Callable[[], object]) -> int:
    gc.collect()
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def load_baseline(path: Path) -> ModuleType:
    """Another version of `hip3_trio/wire/messages.py` (e.g. from `git show REV:...`), as its own module."""
    spec = importlib.util.spec_from_file_location("_baseline_messages", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # attrs and cattrs look classes' modules up here
    spec.loader.exec_module(module)
    return module


def _summary(results: Sequence[Result]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for r in results:
        counts["(not a detector input)" if r is None else "Signal" if isinstance(r, Signal) else r.name] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--markets", type=int, default=40, help="number of markets (default 40)")
    parser.add_argument("--frames", type=int, default=200_000, help="frames per repetition (default 200000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions; the median is reported")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic feed")
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU (default: no pin)")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another messages.py to time side by side (decode_frame and the full pipeline), e.g. "
        "`git show HEAD~1:hip3_trio/wire/messages.py > /tmp/messages_old.py`",
    )
    args = parser.parse_args()
    if args.markets < 1 or args.frames < args.markets or args.repeat < 1:
        parser.error("need --markets ≥ 1, --frames ≥ --markets and --repeat ≥ 1")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    frames, nows, coins = build_feed(args.markets, args.frames, args.seed)
    markets = frozenset(coins)
    n = len(frames)
    kinds = Counter(text[12 : text.index('"', 12)] for text in frames)
    avg_len = sum(map(len, frames)) / n

    orjson_loads: Callable[[str], Any] | None
    try:
        orjson_loads = importlib.import_module("orjson").loads
    except ImportError:
        orjson_loads = None

    # Untimed: decoded messages and detector inputs for the "alone" sections, and a correctness check
    # that the split sections and the full pipeline decide exactly the same.
    msgs = [m.decode_frame(text) for text in frames]
    inputs = [adapt(msg, markets, now_ms) for msg, now_ms in zip(msgs, nows, strict=True)]
    reference = run_pipeline(frames, nows, new_detector(coins), markets)
    assert run_detector(inputs, nows, new_detector(coins)) == reference
    outcome = _summary(reference)
    baseline = None if args.baseline is None else load_baseline(args.baseline)
    if baseline is not None:
        # Same decoded values (by repr: the classes are the baseline's own) and same decisions.
        assert all(repr(baseline.decode_frame(t)) == repr(msg) for t, msg in zip(frames, msgs, strict=True))
        assert run_pipeline(frames, nows, new_detector(coins), markets, baseline) == reference

    sections: dict[str, Callable[[], object]] = {
        "json.loads (floor)": lambda: run_json(frames, json.loads),
    }
    if orjson_loads is not None:
        loads = orjson_loads
        sections["orjson.loads (reference)"] = lambda: run_json(frames, loads)
    sections |= {
        "decode_frame alone": lambda: run_decode(frames),
        "adapt alone (BookTop/OracleCtx)": lambda: run_adapt(msgs, nows, markets),
        "detector alone (alive + on_book/oracle)": lambda: run_detector(inputs, nows, new_detector(coins)),
        "full pipeline": lambda: run_pipeline(frames, nows, new_detector(coins), markets),
    }
    if baseline is not None:
        old = baseline
        sections |= {
            "baseline: decode_frame alone": lambda: run_decode(frames, old),
            "baseline: full pipeline": lambda: run_pipeline(frames, nows, new_detector(coins), markets, old),
        }
    warm = min(n, 20_000)
    warm_ups: list[Callable[[], object]] = [
        lambda: run_json(frames[:warm], json.loads),
        lambda: run_decode(frames[:warm]),
        lambda: run_adapt(msgs[:warm], nows[:warm], markets),
        lambda: run_detector(inputs[:warm], nows[:warm], new_detector(coins)),
        lambda: run_pipeline(frames[:warm], nows[:warm], new_detector(coins), markets),
    ]
    if baseline is not None:
        old_ = baseline
        warm_ups.append(lambda: run_pipeline(frames[:warm], nows[:warm], new_detector(coins), markets, old_))
    for warm_up in warm_ups:
        warm_up()

    # The feed and the prebuilt inputs are long-lived: keep them out of every collection, as the
    # engine's long-lived state mostly is, so that the sections pay only for their own garbage.
    gc.collect()
    gc.freeze()
    samples: dict[str, list[float]] = {name: [] for name in sections}
    for _ in range(args.repeat):
        for name, fn in sections.items():
            samples[name].append(_timed(fn) / n / 1000)
    us = {name: statistics.median(v) for name, v in samples.items()}
    spread = {name: (min(v), max(v)) for name, v in samples.items()}

    print(f"date:     {dt.date.today().isoformat()}")
    print(f"machine:  {_cpu_model()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"python:   {sys.version.split()[0]} ({platform.python_implementation()})")
    print(
        "versions: "
        + ", ".join(f"{p} {_version(p)}" for p in ("attrs", "cattrs", "orjson"))
        + f"; pinned to CPU {args.cpu}" * (args.cpu is not None)
    )
    print(
        f"feed:     {n} frames over {args.markets} markets ({dict(kinds)}), avg {avg_len:.0f} chars; "
        f"median of {args.repeat} repetitions"
    )
    print(f"outcome:  {dict(outcome.most_common())}")
    print()
    print(f"{'section':<40} {'µs/frame':>9} {'min–max µs':>13} {'frames/s':>10}")
    for name, value in us.items():
        lo, hi = spread[name]
        print(f"{name:<40} {value:>9.2f} {f'{lo:.2f}–{hi:.2f}':>13} {1e6 / value:>10,.0f}")
    full = us["full pipeline"]
    print()
    print(
        f"decode_frame / json.loads: {us['decode_frame alone'] / us['json.loads (floor)']:.1f}x; "
        f"decode share of the pipeline: {us['decode_frame alone'] / full:.0%}"
    )
    if baseline is not None:
        old_decode, new_decode = us["baseline: decode_frame alone"], us["decode_frame alone"]
        old_full = us["baseline: full pipeline"]
        print(
            f"baseline {args.baseline}: decode_frame {old_decode:.2f} → {new_decode:.2f} µs "
            f"({old_decode / new_decode:.2f}x), full pipeline {old_full:.2f} → {full:.2f} µs "
            f"({old_full / full:.2f}x)"
        )
    ok = 1e6 / full >= TARGET_FPS
    print(
        f"target (full pipeline ≥ {TARGET_FPS:,} frames/s): {'MET' if ok else 'NOT MET'} "
        f"({1e6 / full:,.0f} frames/s, {full:.2f} µs/frame)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
