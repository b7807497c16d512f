"""Warm against cold: the same signing steps back to back and each after an idle gap.

A sparse taker's order path runs once every few hundred milliseconds. On this machine (a 2-vCPU
Firecracker VM on a shared host) what it touches is no longer in the CPU caches and TLBs by then, and a
step that takes a few microseconds back to back takes tens to hundreds after the gap. This script shows
that directly on our signing steps, so the engine's signal-to-wire figures (bench_latency.py) can be read
against it.

    .venv/bin/python scripts/bench_cold.py --gap 0.25 --samples 40
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import msgpack

from hip3_trio.wire import signing

KEY = "0x" + "42" * 32
ACTION = {
    "type": "order",
    "orders": [
        {
            "a": 110000,
            "b": True,
            "p": "249.85",
            "s": "0.1",
            "r": False,
            "t": {"limit": {"tif": "Ioc"}},
            "c": "0x" + "00" * 15 + "01",
        }
    ],
    "grouping": "na",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gap", type=float, default=0.25, help="idle seconds before each cold call")
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    signer = signing.Signer.from_key(KEY)
    nonce = 1_700_000_000_000
    steps: dict[str, Callable[[], object]] = {
        "msgpack.packb(action)": lambda: msgpack.packb(ACTION),
        "keccak256 (100 bytes)": lambda: signing.keccak256(b"x" * 100),
        "action_hash": lambda: signing.action_hash(ACTION, nonce, None),
        "sign_digest (libsecp256k1)": lambda: signer.sign_digest(b"\x11" * 32),
        "sign_l1_action (all of it)": lambda: signer.sign_l1_action(ACTION, nonce, is_mainnet=False),
    }
    results: dict[float, dict[str, list[int]]] = {}
    for gap in (0.0, args.gap):
        samples: dict[str, list[int]] = {name: [] for name in steps}
        for _ in range(args.samples):
            for name, step in steps.items():
                if gap:
                    time.sleep(gap)
                start = time.perf_counter_ns()
                step()
                samples[name].append(time.perf_counter_ns() - start)
        results[gap] = samples
    print(f"{'step (median µs)':<30} {'back to back':>13} {f'after {args.gap} s idle':>18} {'ratio':>7}")
    for name in steps:
        warm = statistics.median(results[0.0][name]) / 1000
        cold = statistics.median(results[args.gap][name]) / 1000
        print(f"{name:<30} {warm:13.1f} {cold:18.1f} {cold / warm:6.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
