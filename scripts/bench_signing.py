"""Benchmark: signing a 1-order IOC action with hip3_trio versus the official SDK.

Usage: .venv/bin/python scripts/bench_signing.py [--n 20000] [--block 100]

The same action (one IOC order on a HIP-3 asset, with a cloid) is signed N times by each contender,
with a fresh nonce per signature as in live trading. Contenders alternate in blocks of `--block`
signatures so that both see the same machine conditions (frequency scaling, noisy neighbours);
every call is timed individually with `perf_counter_ns` and the median is reported.

Contenders:
- ours (typed): `Signer.sign_l1_action(OrderAction, ...)` — includes `action_to_wire`, i.e. the
  full cost from the engine's typed order to a signature;
- ours (wire dict): the same with the wire dict prebuilt;
- SDK: `hyperliquid.utils.signing.sign_l1_action(wallet, wire_dict, None, nonce, None, True)`.

Targets (issue 2): ours ≤ 50 µs median per action and ≥ 5x faster than the SDK.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from eth_account import Account
from hyperliquid.utils import signing as sdk_signing

from hip3_trio.wire.actions import Cloid, LimitOrderType, OrderAction, OrderWire, action_to_wire
from hip3_trio.wire.signing import Signer

KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
NONCE0 = 1_763_700_000_000
TARGET_US = 50.0
TARGET_RATIO = 5.0


def _action() -> OrderAction:
    return OrderAction(
        orders=[
            OrderWire(
                asset=110_000,  # first HIP-3 dex, asset 0
                is_buy=True,
                limit_px=Decimal("23.456"),
                sz=Decimal("12.5"),
                reduce_only=False,
                order_type=LimitOrderType("Ioc"),
                cloid=Cloid.from_int(0xDEADBEEF),
            )
        ]
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> str:
    names = [
        "coincurve",
        "eth-account",
        "eth-keys",
        "eth-hash",
        "pycryptodome",
        "msgpack",
        "hyperliquid-python-sdk",
    ]
    return ", ".join(f"{n} {importlib.metadata.version(n)}" for n in names)


def _eth_keys_backend() -> str:
    from eth_keys.main import KeyAPI

    backend = type(KeyAPI().backend).__name__
    try:
        import coincurve  # noqa: F401

        importable = "coincurve importable"
    except ImportError:
        importable = "coincurve NOT importable"
    return f"{backend} ({importable})"


def _keccak_micro(repeats: int = 200_000) -> dict[str, float]:
    """Why signing.py calls pycryptodome directly: µs per keccak of a 100-byte message."""
    from Crypto.Hash import keccak as crypto_keccak
    from eth_hash.auto import keccak as eth_keccak

    data = bytes(100)
    contenders: dict[str, Callable[[], object]] = {
        "eth_hash.auto.keccak": lambda: eth_keccak(data),
        "Crypto.Hash.keccak.new().digest()": lambda: crypto_keccak.new(data=data, digest_bits=256).digest(),
    }
    best = {name: float("inf") for name in contenders}
    for _ in range(5):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(repeats // 5):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / (repeats // 5) * 1e6)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="signatures per contender (default 20000)")
    parser.add_argument("--block", type=int, default=100, help="signatures per alternating block")
    args = parser.parse_args()

    signer = Signer.from_key(KEY)
    wallet = Account.from_key(KEY)
    typed = _action()
    wire = action_to_wire(typed)

    contenders: dict[str, Callable[[int], Any]] = {
        "ours (typed action)": lambda n: signer.sign_l1_action(typed, n, is_mainnet=True),
        "ours (wire dict)": lambda n: signer.sign_l1_action(wire, n, is_mainnet=True),
        "SDK sign_l1_action": lambda n: sdk_signing.sign_l1_action(wallet, wire, None, n, None, True),
    }
    # Same signature from every contender, or the comparison is meaningless.
    first = [fn(NONCE0) for fn in contenders.values()]
    assert all(sig == first[-1] for sig in first), first

    samples: dict[str, list[int]] = {name: [] for name in contenders}
    clock = time.perf_counter_ns
    for base in range(0, args.n, args.block):
        nonces = range(NONCE0 + base, NONCE0 + min(base + args.block, args.n))
        for name, fn in contenders.items():
            out = samples[name]
            for nonce in nonces:
                t0 = clock()
                fn(nonce)
                out.append(clock() - t0)

    medians = {name: statistics.median(ns) / 1000 for name, ns in samples.items()}
    p99 = {name: statistics.quantiles(ns, n=100)[98] / 1000 for name, ns in samples.items()}
    sdk = medians["SDK sign_l1_action"]

    print(f"date:     {dt.date.today().isoformat()}")
    print(f"machine:  {_cpu_model()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"python:   {sys.version.split()[0]} ({platform.python_implementation()})")
    print(f"versions: {_versions()}")
    print(f"SDK's eth-keys backend: {_eth_keys_backend()}")
    print(f"action:   1-order IOC, asset 110000 (HIP-3), cloid; N={args.n} each, blocks of {args.block}")
    print()
    print(f"{'contender':<24} {'median µs':>10} {'p99 µs':>10} {'SDK / this':>11}")
    for name in contenders:
        print(f"{name:<24} {medians[name]:>10.1f} {p99[name]:>10.1f} {sdk / medians[name]:>10.1f}x")
    print()
    keccak = _keccak_micro()
    for name, us in keccak.items():
        print(f"keccak (100 B) {name:<40} {us:.2f} µs")

    ours = medians["ours (typed action)"]
    ok = ours <= TARGET_US and sdk / ours >= TARGET_RATIO
    print()
    print(
        f"target (ours typed ≤ {TARGET_US:.0f} µs and ≥ {TARGET_RATIO:.0f}x faster than SDK): "
        f"{'MET' if ok else 'NOT MET'} ({ours:.1f} µs, {sdk / ours:.1f}x)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
