"""Signal-to-wire latency: the engine against the simulator, side by side with references.

For each traced order: from the arrival of the frame that triggered its signal (`perf_counter_ns` right
after the reader's `get_message` returns) to the moment its post frame is handed to the socket (right
before `send_message`). Real time, real localhost WebSocket. Reports p50/p99/max for:

  (a) the default sender (sends at once when idle, then at most one post per batch interval), with the
      simulator in this process (it shares the Trio loop) and in a child process (`--sim`);
  (b) a fixed 100 ms tick sender (the original plan): a post goes out only on the next tick;
  (c) the official SDK's in-process order path: `Exchange.order` (wire + sign + serialize) with its HTTP
      post replaced by `json.dumps` — and ours measured the same way (queue → batch → wire → sign →
      json), both back to back (warm CPU caches) and each after the idle gap the engine sees between
      two signals (cold caches: how a sparse taker's every order starts).

    .venv/bin/python scripts/bench_latency.py --signals 1000 --cold 300
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import trio

from hip3_trio.app import run_engine, websocket_connector
from hip3_trio.engine import Engine, EngineSettings
from hip3_trio.execution.batch import BatchScheduler, OrderItem
from hip3_trio.execution.executor import ExecutorConfig
from hip3_trio.execution.nonce import NonceManager
from hip3_trio.execution.time_stop import TimeStopConfig
from hip3_trio.journal import Journal, JournalSink
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.risk.monitor import RiskConfig
from hip3_trio.sim import MarketModel, SimConfig, open_simulator
from hip3_trio.sim.realism import Realism
from hip3_trio.strategy.detector import DetectorConfig
from hip3_trio.venue.session import Session
from hip3_trio.venue.trace import LatencyTrace
from hip3_trio.wire.actions import Cloid, LimitOrderType, OrderWire, action_to_wire
from hip3_trio.wire.signing import Signer

# One market, an oracle update every 250 ms: a signal finds the sender idle (its entry and flatten posts
# of the previous round trip are more than one 100 ms batch interval old), which is the regime a sparse
# dislocation taker lives in. Bursts are batched by design and are not what this measures.
MARKETS = ("xyz:COIN",)
ORACLE_INTERVAL_S = 0.25
CAP_USD = Decimal(5000)
KEY = "0x" + "42" * 32


class FixedTickSession(Session):
    """The plan's sender: wakes every `tick` seconds and sends at most one post per tick."""

    tick = 0.1

    async def _sender(self) -> None:
        next_tick = trio.current_time()
        while True:
            next_tick += self.tick
            await trio.sleep_until(next_tick)
            if self._pending_noops:
                await self._send_noop(self._pending_noops.pop(0))
                continue
            if self.inflight >= self.batch.inflight_limit:
                continue
            batch = self.host.next_batch(self.inflight)
            if batch is not None:
                await self._send_batch(batch)


@attrs.frozen
class Venue:
    """Where the simulator the engine trades runs: its URL and the funded account's address and key."""

    url: str
    account: str
    key: str


@asynccontextmanager
async def in_process_simulator() -> AsyncIterator[Venue]:
    """The simulator in this process: it shares the Trio loop (and the CPU caches) with the engine."""
    model = MarketModel(oracle_interval_s=ORACLE_INTERVAL_S, dislocation_rate=0.9, dislocation_updates=1)
    # The instant venue: this measures the engine's own path, comparable with the earlier rows (the
    # realism models' delivery tasks would share this Trio loop).
    async with open_simulator(SimConfig(seed=11, market=model, realism=Realism.off())) as sim:
        assert sim.url and sim.account and sim.account_key
        yield Venue(sim.url, sim.account, sim.account_key)


@asynccontextmanager
async def child_process_simulator() -> AsyncIterator[Venue]:
    """The same simulator in a child process (`python -m hip3_trio.sim`): the engine has the loop to
    itself, as against the real venue."""
    argv = [
        sys.executable, "-m", "hip3_trio.sim", "--port", "0", "--seed", "11",
        "--oracle-interval", str(ORACLE_INTERVAL_S), "--dislocation-rate", "0.9",
        "--dislocation-updates", "1",
        # The instant venue, as in-process (see there).
        "--latency-ms", "0", "--block-ms", "0", "--competitors", "off", "--refill-s", "0",
    ]  # fmt: skip
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220 - read once, at start
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        account = child.stdout.readline().split()[1]
        key = child.stdout.readline().split()[1]
        yield Venue(url, account, key)
    finally:
        child.terminate()
        child.wait(10)


async def engine_run(
    signals: int, session_class: type[Session], state_dir: Path, venue_kind: str = "in-process"
) -> list[int]:
    """Trade the simulator until `signals` orders were traced; returns their latencies (ns)."""
    opened = in_process_simulator() if venue_kind == "in-process" else child_process_simulator()
    async with opened as venue:
        big = Decimal(10) ** 9
        settings = EngineSettings(
            markets=MARKETS,
            user=venue.account,
            detector=DetectorConfig(cooldown_s=0.24, stale_book_s=60.0, stale_oracle_s=60.0),
            executor=ExecutorConfig(
                # Far above what one signal trades, and within what the simulator's funded dex covers at
                # the start-up balance check (caps / leverage <= its 10,000 USD).
                max_position_per_market_usd=CAP_USD,
                max_position_total_usd=CAP_USD,
                order_rate_per_s=10_000,
                order_burst=10_000,
                cloid_prefix=int(time.time() * 1000),
            ),
            time_stop=TimeStopConfig(
                hold_s=0.05, check_interval_s=0.02, flatten_on_exit=True, exit_deadline_s=5
            ),
            risk=RiskConfig(
                max_loss_usd=big,
                max_consecutive_losses=10**9,
                max_rejects_per_hour=10**9,
                slippage_bps_limit=big,
            ),
        )
        sink, receive = JournalSink.open(capacity=100_000)
        engine = Engine(
            settings,
            signer=Signer.from_key(venue.key),
            nonces=NonceManager(),
            hard_stop=HardStop.load(state_dir, 0),
            journal=sink,
        )
        trace = LatencyTrace()
        engine.trace_latency(trace)
        stop = trio.Event()

        async def until_enough() -> None:
            await engine.wait_until(lambda: len(trace.samples_ns) >= signals)
            stop.set()

        with Journal.open(state_dir) as journal:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(until_enough)
                await run_engine(
                    engine,
                    websocket_connector(venue.url),
                    journal=journal,
                    journal_receive=receive,
                    stop=stop,
                    session_class=session_class,
                    out=lambda line: None,
                )
                nursery.cancel_scope.cancel()
        return trace.samples_ns[:signals]


def sdk_order() -> Callable[[int], object]:
    """One order through the SDK's `Exchange.order`, its HTTP post replaced by the JSON serialisation."""
    from eth_account import Account
    from hyperliquid.exchange import Exchange
    from hyperliquid.utils.constants import TESTNET_API_URL
    from hyperliquid.utils.types import Cloid as SdkCloid

    exchange = Exchange(
        Account.from_key(KEY),
        base_url=TESTNET_API_URL,
        meta={"universe": []},
        spot_meta={"universe": [], "tokens": []},
    )
    exchange.info.coin_to_asset["xyz:COIN"] = 110000
    exchange.info.name_to_coin["xyz:COIN"] = "xyz:COIN"
    exchange.post = lambda path, payload=None: json.dumps(payload)

    def order(i: int) -> object:
        return exchange.order(
            "xyz:COIN", True, 0.1, 249.85, {"limit": {"tif": "Ioc"}}, cloid=SdkCloid.from_int(i + 1)
        )

    return order


def our_order() -> Callable[[int], object]:
    """Ours measured like the SDK: queue an order, take the batch, wire it, sign, serialise the post."""
    signer = Signer.from_key(KEY)
    scheduler = BatchScheduler()

    def order(i: int) -> object:
        cloid = Cloid.from_int(i + 1)
        px, sz = Decimal("249.85"), Decimal("0.1")
        wire = OrderWire(110000, True, px, sz, False, LimitOrderType("Ioc"), cloid)
        scheduler.enqueue_new(OrderItem("xyz:COIN", wire), 0)
        batch = scheduler.tick(0)
        assert batch is not None
        action: dict[str, Any] = action_to_wire(batch.action())
        nonce = 1_700_000_000_000 + i
        signature = signer.sign_l1_action(action, nonce, is_mainnet=False)
        payload = {"action": action, "nonce": nonce, "signature": signature}
        frame = {"method": "post", "id": i, "request": {"type": "action", "payload": payload}}
        return json.dumps(frame, separators=(",", ":"))

    return order


def in_process_paths(n: int, idle_s: float) -> tuple[list[int], list[int]]:
    """(SDK, ours) durations (ns), `n` orders each, alternating; each call after `idle_s` of sleep.

    Back to back (`idle_s` 0) the code and data stay in the CPU caches. After an idle gap as long as
    the engine's between two signals, both start cold, as a sparse taker's every order does.
    """
    contenders = (sdk_order(), our_order())
    for order in contenders:
        for i in range(20):  # imports, first-call caches
            order(i)
    out: tuple[list[int], list[int]] = ([], [])
    for i in range(n):
        for order, samples in zip(contenders, out, strict=True):
            if idle_s:
                time.sleep(idle_s)
            start = time.perf_counter_ns()
            order(i)
            samples.append(time.perf_counter_ns() - start)
    return out


def summarise(name: str, samples: list[int]) -> tuple[str, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) / 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000
    top = ordered[-1] / 1000
    line = f"{name:<52} n={len(ordered):>5}  p50 {p50:8.1f} µs  p99 {p99:8.1f} µs  max {top:8.1f} µs"
    return line, p50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=1000, help="traced orders per engine run")
    parser.add_argument(
        "--sim",
        choices=("in-process", "child", "both"),
        default="both",
        help="where the simulator runs for the default-sender run (the fixed tick always in-process)",
    )
    parser.add_argument("--cold", type=int, default=300, help="orders per contender after an idle gap")
    parser.add_argument("--skip-tick", action="store_true", help="leave out the (slow) fixed-tick run")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}; {args.signals} traced orders per engine run")
    rows: dict[str, tuple[str, float]] = {}
    kinds = ("in-process", "child") if args.sim == "both" else (args.sim,)
    for kind in kinds:
        with tempfile.TemporaryDirectory() as state:
            samples = trio.run(engine_run, args.signals, Session, Path(state), kind)
        rows[f"a-{kind}"] = summarise(f"(a) engine, default sender, sim {kind}", samples)
    if not args.skip_tick:
        with tempfile.TemporaryDirectory() as state:
            samples = trio.run(engine_run, args.signals, FixedTickSession, Path(state), "in-process")
        rows["b"] = summarise("(b) engine, fixed 100 ms tick, sim in-process", samples)
    sdk_hot, ours_hot = in_process_paths(args.signals, 0.0)
    rows["c-hot"] = summarise("(c) SDK Exchange.order, back to back", sdk_hot)
    rows["o-hot"] = summarise("    ours, same path, back to back", ours_hot)
    sdk_cold, ours_cold = in_process_paths(args.cold, ORACLE_INTERVAL_S)
    rows["c-cold"] = summarise(f"(c) SDK Exchange.order, each after {ORACLE_INTERVAL_S} s idle", sdk_cold)
    rows["o-cold"] = summarise(f"    ours, same path, each after {ORACLE_INTERVAL_S} s idle", ours_cold)
    for line, _ in rows.values():
        print(line)
    a50 = rows[f"a-{kinds[0]}"][1]
    ratios = [f"SDK / ours, same path: {rows['c-hot'][1] / rows['o-hot'][1]:.1f}x back to back, "
              f"{rows['c-cold'][1] / rows['o-cold'][1]:.1f}x cold"]  # fmt: skip
    for kind in kinds:
        ratios.append(f"SDK cold / engine ({kind}): {rows['c-cold'][1] / rows[f'a-{kind}'][1]:.2f}x")
    if "b" in rows:
        ratios.append(f"fixed tick / default ({kinds[0]}) p50: {rows['b'][1] / a50:.0f}x")
    print("; ".join(ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
