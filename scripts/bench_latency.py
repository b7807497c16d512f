"""Signal-to-wire latency: the engine against the in-process simulator, side by side with references.

For each traced order: from the arrival of the frame that triggered its signal (`perf_counter_ns` right
after the reader's `get_message` returns) to the moment its post frame is handed to the socket (right
before `send_message`). Real time, real localhost WebSocket, one process (the simulator shares the Trio
loop, so its work can delay ours — noted with the figures). Reports p50/p99/max for:

  (a) the default sender: sends at once when idle, then at most one post per batch interval;
  (b) a fixed 100 ms tick sender (the original plan): a post goes out only on the next tick;
  (c) the official SDK's in-process order path: `Exchange.order` (wire + sign + serialize) with its HTTP
      post replaced by `json.dumps` — and ours measured the same way (submit → tick → wire → sign → json).

    .venv/bin/python scripts/bench_latency.py --signals 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from hip3_trio.app import run_engine, websocket_connector
from hip3_trio.engine import Engine, EngineSettings
from hip3_trio.execution.batch import BatchScheduler, OrderItem
from hip3_trio.execution.executor import ExecutorConfig
from hip3_trio.execution.nonce import NonceManager
from hip3_trio.journal import Journal, JournalSink
from hip3_trio.position.time_stop import TimeStopConfig
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.risk.monitor import RiskConfig
from hip3_trio.sim import MarketModel, SimConfig, open_simulator
from hip3_trio.strategy.detector import DetectorConfig
from hip3_trio.venue.session import Session, SessionConfig
from hip3_trio.venue.trace import LatencyTrace
from hip3_trio.wire.actions import Cloid, LimitOrderType, OrderWire, action_to_wire
from hip3_trio.wire.signing import Signer

# One market, an oracle update every 250 ms: a signal finds the sender idle (its entry and flatten posts
# of the previous round trip are more than one 100 ms batch interval old), which is the regime a sparse
# dislocation taker lives in. Bursts are batched by design and are not what this measures.
MARKETS = ("xyz:COIN",)
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
            if self.inflight >= self.config.inflight_limit:
                continue
            batch = self.host.next_batch(self.inflight)
            if batch is not None:
                await self._send_batch(batch)


async def engine_run(signals: int, session_class: type[Session], state_dir: Path) -> list[int]:
    """Trade the simulator until `signals` orders were traced; returns their latencies (ns)."""
    model = MarketModel(oracle_interval_s=0.25, dislocation_rate=0.9, dislocation_updates=1)
    async with open_simulator(SimConfig(seed=11, market=model)) as sim:
        assert sim.url and sim.account and sim.account_key
        big = Decimal(10) ** 9
        settings = EngineSettings(
            markets=MARKETS,
            user=sim.account,
            detector=DetectorConfig(cooldown_ms=240, max_book_age_ms=60_000, max_oracle_age_ms=60_000),
            executor=ExecutorConfig(
                max_position_per_market_usd=big,
                max_position_total_usd=big,
                order_rate_per_s=10_000,
                order_burst=10_000,
                cloid_prefix=int(time.time() * 1000),
            ),
            time_stop=TimeStopConfig(hold_s=0.05, check_interval_s=0.02),
            risk=RiskConfig(
                max_cumulative_loss_usd=big,
                max_consecutive_losses=10**9,
                max_rejects_per_window=10**9,
                max_slippage_bps=big,
            ),
            flatten_on_exit=True,
            exit_deadline_s=5,
        )
        sink, receive = JournalSink.open(capacity=100_000)
        engine = Engine(
            settings,
            signer=Signer.from_key(sim.account_key),
            nonces=NonceManager(),
            hard_stop=HardStop.load(state_dir, 0),
            journal=sink,
        )
        trace = engine.trace = LatencyTrace()
        stop = trio.Event()

        async def until_enough() -> None:
            await engine.wait_until(lambda: len(trace.samples_ns) >= signals)
            stop.set()

        with Journal.open(state_dir) as journal:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(until_enough)
                await run_engine(
                    engine,
                    websocket_connector(sim.url),
                    journal=journal,
                    journal_receive=receive,
                    session_config=SessionConfig(batch_interval=0.1),
                    stop=stop,
                    session_class=session_class,
                    out=lambda line: None,
                )
                nursery.cancel_scope.cancel()
        return trace.samples_ns[:signals]


def sdk_path(n: int) -> list[int]:
    """The SDK's `Exchange.order` in process, its HTTP post replaced by the JSON serialisation."""
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
    exchange.post = lambda path, payload=None: json.dumps(payload)  # type: ignore[method-assign]
    out = []
    for i in range(n):
        start = time.perf_counter_ns()
        exchange.order(
            "xyz:COIN", True, 0.1, 249.85, {"limit": {"tif": "Ioc"}}, cloid=SdkCloid.from_int(i + 1)
        )
        out.append(time.perf_counter_ns() - start)
    return out


def our_path(n: int) -> list[int]:
    """Ours measured like the SDK: queue an order, take the batch, wire it, sign, serialise the post."""
    signer = Signer.from_key(KEY)
    scheduler = BatchScheduler()
    nonce = 1_700_000_000_000
    out = []
    for i in range(n):
        start = time.perf_counter_ns()
        cloid = Cloid.from_int(i + 1)
        px, sz = Decimal("249.85"), Decimal("0.1")
        order = OrderWire(110000, True, px, sz, False, LimitOrderType("Ioc"), cloid)
        scheduler.enqueue_new(OrderItem("xyz:COIN", order), 0)
        batch = scheduler.tick(0)
        assert batch is not None
        action: dict[str, Any] = action_to_wire(batch.action())
        nonce += 1
        signature = signer.sign_l1_action(action, nonce, is_mainnet=False)
        payload = {"action": action, "nonce": nonce, "signature": signature}
        json.dumps({"method": "post", "id": i, "request": {"type": "action", "payload": payload}})
        out.append(time.perf_counter_ns() - start)
    return out


def summarise(name: str, samples: list[int]) -> tuple[str, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) / 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000
    top = ordered[-1] / 1000
    line = f"{name:<48} n={len(ordered):>5}  p50 {p50:9.1f} µs  p99 {p99:9.1f} µs  max {top:9.1f} µs"
    return line, p50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=1000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}; {args.signals} traced orders per engine run")
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        default = trio.run(engine_run, args.signals, Session, Path(a))
        tick = trio.run(engine_run, args.signals, FixedTickSession, Path(b))
    sdk = sdk_path(args.signals)
    ours = our_path(args.signals)
    rows = [
        summarise("(a) engine, default sender (frame → socket)", default),
        summarise("(b) engine, fixed 100 ms tick (frame → socket)", tick),
        summarise("(c) SDK Exchange.order in process", sdk),
        summarise("    ours, same in-process path", ours),
    ]
    for line, _ in rows:
        print(line)
    (_, a50), (_, b50), (_, c50), (_, o50) = rows
    print(
        f"fixed tick / default p50: {b50 / a50:.0f}x;  SDK in-process / engine default p50: "
        f"{c50 / a50:.2f}x;  SDK / ours (same path): {c50 / o50:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
