"""Soak: the real engine trading the simulator in real time, with a fault every minute.

Runs the engine (`hip3_trio.app.run_engine` over a real localhost WebSocket) for `--minutes` minutes
(default 30) against the simulator, which runs in a *child process* (`soak.py --serve-sim`): the
simulator keeps every order and fill it ever made, so in the engine's process its growth would pollute
the engine's RSS. The parent tells the child which fault to arm over a line protocol on its stdin.

Every minute, at 17 s, one fault of a fixed rotation is armed on the simulator (socket drop, duplicate
replies, market-data stall, missing replies, lost posts, garbage frames, empty re-sync, one dex empty at
re-sync, missing order updates, slow replies, replies slower than the post timeout, clean close; the
names in `hip3_trio/sim/scenarios.py`); 20 s later the lasting ones
are cleared (a stall ends, slow replies end with a drop). At each minute's end the parent runs
`gc.collect()`, then samples its own RSS (`/proc/self/status` VmRSS), the simulator child's RSS (for
information only), the number of gc-tracked objects, live Trio tasks and live sessions, and the size of
every structure of the engine that grows with traffic (post table, control posts, pending noops,
awaiting-noop set, scheduler queues, the book's orders/oid map/seen fill ids/positions, detector and
readiness state, marks, outbox, journal queue, stats label counters, risk reject window, ...).

After the last minute the engine stops in order (flatten, wait until settled) and everything is sampled
once more "at rest". The verdict:

- memory is flat: after a warm-up of the first `--warmup` minutes (default 3), the parent's RSS never
  grows more than `--max-growth-pct` (default 5 %) above its value at the end of the warm-up;
- at rest, every transient structure is empty (nothing in flight, queued, live, unknown, awaiting a
  noop, unflushed; no session or extra task left alive; flat at the engine and at the venue; every
  journal record written), and every structure with a cap stayed within it during the whole run;
- no round trip took longer than the hold plus 15 s, and the engine's positions equal the venue's (flat);
- it traded: at least one round trip went through the faults (a soak that never traded proves nothing).

Exit code 0 when all hold, 1 otherwise (also when interrupted with Ctrl-C, which stops the engine in
order first). `--json PATH` writes the samples (rewritten after every minute).

    .venv/bin/python scripts/soak.py                       # the full 30-minute soak
    .venv/bin/python scripts/soak.py --minutes 3 --warmup 1 --json /tmp/soak.json
    .venv/bin/python scripts/soak.py --minutes 3 --minute-s 20 --warmup 1   # a quick smoke run

`--minute-s` shortens the fault period for smoke runs: fault times, the fault hold and the session's
market-data stall limit scale with it ("minute" then means one period).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Final

import attrs
import trio

from hip3_trio.app import run_engine, websocket_connector
from hip3_trio.engine import Engine, EngineSettings
from hip3_trio.execution.batch import BatchConfig
from hip3_trio.execution.executor import ExecutorConfig
from hip3_trio.execution.nonce import NonceManager
from hip3_trio.execution.time_stop import TimeStopConfig
from hip3_trio.journal import Journal, JournalSink, Record, write_in_thread
from hip3_trio.position.book import BookConfig
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.risk.monitor import RiskConfig
from hip3_trio.sim import MarketModel, SimConfig, Simulator
from hip3_trio.sim.realism import CompetitionModel, Realism
from hip3_trio.sim.scenarios import SCENARIOS, armed, clear_lasting
from hip3_trio.strategy.detector import DetectorConfig, DetectorStatistics, Skip
from hip3_trio.venue.session import (
    ConnectionConfig,
    FrameTap,
    Session,
    SessionHost,
    SessionStatistics,
    WsLike,
)
from hip3_trio.venue.trace import LatencyTrace
from hip3_trio.wire import messages as wire_messages
from hip3_trio.wire.signing import Signer

# Markets on two dexes: the venue answers positions per dex, and the engine must judge them per dex.
MARKETS: Final = ("xyz:COIN", "abc:TSLA")
# Within each minute (as fractions of it, so --minute-s scales them): arm the fault at 17 s, clear the
# lasting ones 20 s later. The session's market-data stall limit is half the hold (10 s in a real
# minute), so a stall is detected — twice — before it is cleared.
FIRE_AT: Final = 17 / 60
HOLD: Final = 20 / 60
# How long a position is held before the time stop flattens it: short, so round trips are frequent.
HOLD_POSITION_S: Final = 5.0
# No round trip may take longer than the hold plus this, whatever the faults (issue 13).
HOLD_MARGIN_S: Final = 15.0
# Generous bound for label-keyed counters (frame types, skip reasons, reject reasons, ...).
LABEL_CAP: Final = 64
CHILD_REPLY_TIMEOUT_S: Final = 15.0
READY_TIMEOUT_S: Final = 60.0
SCRIPT: Final = Path(__file__).resolve()

log = logging.getLogger("soak")


# --- the faults (run in the simulator child) ---------------------------------------------------------


ROTATION: Final = tuple(SCENARIOS)


# --- small helpers -------------------------------------------------------------------------------------


def rss_kib(pid: int | str = "self") -> int | None:
    """Resident set size in KiB from /proc/PID/status (Linux), or None if unreadable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


class LineReader:
    """Newline-delimited lines from a Trio receive stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def readline(self) -> bytes | None:
        """The next line without its newline; None at end of stream."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return None
            self._buffer += chunk


# --- the simulator child (--serve-sim) ------------------------------------------------------------------


def handle_command(sim: Simulator, command: Mapping[str, Any]) -> dict[str, Any]:
    """One request from the parent → one reply."""
    cmd = command.get("cmd")
    if cmd == "fault":
        name = str(command.get("name"))
        if name not in SCENARIOS:
            return {"error": f"unknown fault {name!r}"}
        SCENARIOS[name](sim)
        return {"ok": True}
    if cmd == "clear":
        clear_lasting(sim)
        return {"ok": True, "armed": armed(sim.faults)}
    if cmd == "status":
        assert sim.account is not None
        account = sim.exchange.accounts.users[sim.account]
        reply: dict[str, Any] = {
            "rss_kib": rss_kib(),
            "orders": len(sim.exchange.orders),
            "fills": len(account.fills),
            "connections": len(sim.connections),
            "positions": {coin: str(p.szi) for coin, p in account.positions.items() if p.szi},
            "armed": armed(sim.faults),
        }
        if command.get("tids"):
            reply["tids"] = [f.tid for f in account.fills]
        return reply
    return {"error": f"unknown command {cmd!r}"}


async def serve_sim(seed: int, oracle_interval: float, dislocation_rate: float) -> None:
    """The child: a simulator on 127.0.0.1:0; first stdout line is JSON (url, account, key); then one
    JSON reply line per JSON command line on stdin, until stdin closes."""
    model = MarketModel(oracle_interval_s=oracle_interval, dislocation_rate=dislocation_rate)
    # The realistic venue (blocks, latency, impact) without competing takers: the soak proves the engine
    # survives faults, and a round trip that competitors took first proves nothing about that.
    realism = attrs.evolve(Realism(), competition=CompetitionModel(enabled=False))
    sim = Simulator.create(SimConfig(seed=seed, market=model, realism=realism))
    account, key = sim.create_funded_account()
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        url = await nursery.start(sim.serve_tcp, "127.0.0.1", 0)
        print(json.dumps({"url": url, "account": account, "account_key": key}), flush=True)
        reader = LineReader(stdin)
        while (line := await reader.readline()) is not None:
            if not line.strip():
                continue
            try:
                reply = handle_command(sim, json.loads(line))
            except Exception as exc:  # a bad command must not take the venue down mid-soak
                reply = {"error": repr(exc)}
            print(json.dumps(reply), flush=True)
        nursery.cancel_scope.cancel()
    await stdin.aclose()


class SimChild:
    """The parent's handle on the simulator child: one reply line per request line."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._lines = LineReader(process.stdout)
        self._lock = trio.Lock()

    async def read_json(self) -> dict[str, Any]:
        with trio.fail_after(CHILD_REPLY_TIMEOUT_S):
            line = await self._lines.readline()
        if line is None:
            raise RuntimeError(f"the simulator process ended (exit code {self.process.poll()})")
        reply = json.loads(line)
        if not isinstance(reply, dict) or "error" in reply:
            raise RuntimeError(f"simulator child: {reply!r}")
        return reply

    async def request(self, **command: Any) -> dict[str, Any]:
        async with self._lock:
            await self._stdin.send_all(json.dumps(command).encode() + b"\n")
            return await self.read_json()

    async def close(self) -> None:
        """Close its stdin: it stops serving and exits."""
        await self._stdin.aclose()


# --- what is sampled --------------------------------------------------------------------------------


class SoakSession(Session):
    """A `Session` that registers itself, so the soak can count the sessions still alive (a leak keeps
    old ones reachable) and check each one's post table and control posts are empty after recovery."""

    alive: ClassVar[weakref.WeakSet[Session]] = weakref.WeakSet()
    ended: ClassVar[int] = 0
    residue: ClassVar[int] = 0  # posts + control posts left in ended sessions (recover() empties them)

    def __init__(
        self,
        ws: WsLike,
        host: SessionHost,
        connection: ConnectionConfig | None = None,
        batch: BatchConfig | None = None,
        *,
        trace: LatencyTrace | None = None,
        tap: FrameTap | None = None,
    ) -> None:
        super().__init__(ws, host, connection, batch, trace=trace, tap=tap)
        SoakSession.alive.add(self)

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            SoakSession.ended += 1
            stats = self.statistics()
            SoakSession.residue += stats.posts.pending + stats.control_posts


def _session(engine: Engine) -> SessionStatistics | None:
    """The current connection's snapshot; None when disconnected (its structures are then gone)."""
    session = engine.link.session
    return session.statistics() if session is not None else None


def _detector(engine: Engine) -> DetectorStatistics | None:
    """The detector's snapshot; None before the first sync created it."""
    detector = engine.core.detector
    return detector.statistics() if detector is not None else None


@attrs.frozen
class Probe:
    """One sampled structure. `kind`: transient (must be empty at rest), capped (grows with traffic up
    to a configured cap: must stay ≤ cap), keyed (one entry per market or label: ≤ cap), windowed
    (trimmed by age; informational), uncapped (nothing bounds it: reported as a warning if it grows)."""

    name: str
    kind: str
    read: Callable[[Engine, trio.MemoryReceiveChannel[Record]], int | None]
    cap: int | None = None


def probes(engine: Engine) -> list[Probe]:
    """Every sampled structure, read only through the owners' `statistics()` snapshots."""
    markets = len(engine.settings.markets)
    caps = engine.settings.book
    core = engine.core
    stats, book_stats, journal_stats = engine.statistics, core.book.statistics, core.journal.statistics
    stop_stats = core.time_stop.statistics

    def session(read: Callable[[SessionStatistics], int]) -> Callable[[Engine, Any], int | None]:
        return lambda e, _r: 0 if (s := _session(e)) is None else read(s)

    def detector(read: Callable[[DetectorStatistics], int]) -> Callable[[Engine, Any], int | None]:
        return lambda e, _r: 0 if (d := _detector(e)) is None else read(d)

    return [
        Probe("session.posts", "transient", session(lambda s: s.posts.pending)),
        Probe("session.inflight", "transient", lambda e, _r: stats().link.inflight),
        Probe("session.control", "transient", session(lambda s: s.control_posts)),
        Probe("session.pending_noops", "transient", session(lambda s: s.pending_noops)),
        Probe("engine.awaiting_noop", "transient", lambda e, _r: stats().link.awaiting_noop),
        Probe("scheduler.cancels", "transient", lambda _e, _r: core.scheduler.statistics().cancels),
        Probe("scheduler.reduce_only", "transient", lambda _e, _r: core.scheduler.statistics().reduce_only),
        Probe("scheduler.new_orders", "transient", lambda _e, _r: core.scheduler.statistics().new_orders),
        Probe("book.live_orders", "transient", lambda _e, _r: book_stats().live_orders),
        Probe("book.unknown_orders", "transient", lambda _e, _r: book_stats().unknown_orders),
        Probe("book.positions", "transient", lambda _e, _r: book_stats().open_positions),
        Probe("engine.outbox", "transient", lambda _e, _r: len(core.outbox)),
        Probe("journal.queue", "transient", lambda _e, r: r.statistics().current_buffer_used),
        Probe("journal.unreported_drops", "transient", lambda _e, _r: journal_stats().unreported),
        Probe("book.orders", "capped", lambda _e, _r: book_stats().orders, caps.order_memory),
        Probe("book.by_oid", "capped", lambda _e, _r: book_stats().oids, caps.order_memory),
        Probe("book.seen_tids", "capped", lambda _e, _r: book_stats().seen_fills, caps.tid_memory),
        Probe(
            "wire.decimal_memo",
            "capped",
            lambda _e, _r: wire_messages.decimal_memo_size(),
            wire_messages.DECIMAL_MEMO_MAX,
        ),
        Probe("engine.marks", "keyed", lambda e, _r: len(stats().core.marks), markets),
        Probe("engine.specs", "keyed", lambda _e, _r: len(core.specs), markets),
        Probe("detector.books", "keyed", detector(lambda d: d.books), markets),
        Probe("detector.oracles", "keyed", detector(lambda d: d.oracles), markets),
        Probe("detector.last_signal", "keyed", detector(lambda d: d.cooldowns), 2 * markets),
        Probe("readiness.bbo", "keyed", lambda _e, _r: core.readiness.statistics().bbo, markets),
        Probe("readiness.ctx", "keyed", lambda _e, _r: core.readiness.statistics().ctx, markets),
        Probe("book.included_through", "keyed", lambda _e, _r: book_stats().watermarks, markets),
        Probe(
            "book.unknown_statuses",
            "keyed",
            lambda _e, _r: book_stats().unknown_statuses,
            LABEL_CAP,
        ),
        Probe("time_stop.flattening", "keyed", lambda _e, _r: stop_stats().flattening, markets),
        Probe("time_stop.failed_at", "keyed", lambda _e, _r: stop_stats().failed, markets),
        Probe("stats.frames", "keyed", lambda e, _r: len(stats().link.frames), LABEL_CAP),
        Probe("stats.skips", "keyed", lambda e, _r: len(stats().core.skips), len(Skip)),
        Probe(
            "stats.signals_refused",
            "keyed",
            lambda e, _r: len(stats().core.signals_refused),
            LABEL_CAP,
        ),
        Probe(
            "stats.rejects_by_reason",
            "keyed",
            lambda e, _r: len(stats().core.rejects_by_reason),
            LABEL_CAP,
        ),
        Probe(
            "stats.latency_buckets",
            "keyed",
            lambda e, _r: len(stats().link.post_latency_buckets),
            LABEL_CAP,
        ),
        Probe(
            "journal.dropped_by_type",
            "keyed",
            lambda _e, _r: len(journal_stats().dropped_by_type),
            LABEL_CAP,
        ),
        Probe("book.stale_oids", "uncapped", lambda _e, _r: book_stats().stale_oids),
        Probe(
            "risk.reject_times",
            "windowed",
            lambda e, _r: core.monitor.headroom(e.core.exchange_ms()).rejects_last_hour,
        ),
    ]


def count_tasks() -> int:
    """Live Trio tasks, walking the task tree from the root."""
    root = trio.lowlevel.current_root_task()
    count, stack = 0, [root] if root is not None else []
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def object_census() -> tuple[int, Counter[str]]:
    """gc-tracked objects (containers and class instances; not ints, strs or Decimals): how many, and
    how many by type — weak references also by the type of their referent ("weakref→Type")."""
    census: Counter[str] = Counter()
    objects = gc.get_objects()
    for obj in objects:
        census[type(obj).__qualname__] += 1
        if type(obj) is weakref.ReferenceType:
            census[f"weakref→{type(obj()).__qualname__}"] += 1
    return len(objects), census


@attrs.define
class Sample:
    minute: int | str
    at_s: float
    fault: str | None
    left: dict[str, Any]
    rss_kib: int | None
    child_rss_kib: int | None
    sim_orders: int | None
    sim_fills: int | None
    objects: int
    tasks: int
    sessions_alive: int
    websockets_alive: int
    trades: int
    connects: int
    orders: int
    fills: int
    sizes: dict[str, int | None]


#: `--tracemalloc`: a snapshot per sample, by minute ("rest" last).
TRACED: dict[str, tracemalloc.Snapshot] = {}


def traced_growth(start: str, end: str, top: int = 12) -> list[str]:
    """The source lines whose live allocations grew most between two samples."""
    if start not in TRACED or end not in TRACED:
        return []
    stats = TRACED[end].compare_to(TRACED[start], "lineno")
    return [
        f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {stat.traceback}"
        for stat in sorted(stats, key=lambda st: st.size_diff, reverse=True)[:top]
    ]


class Sampler:
    """Takes a `Sample`: `gc.collect()`, then RSS, then the rest; keeps the latest object census."""

    def __init__(
        self,
        engine: Engine,
        receive: trio.MemoryReceiveChannel[Record],
        child: SimChild,
        started: float,
    ) -> None:
        self.engine = engine
        self.receive = receive
        self.child = child
        self.started = started
        self.probes = probes(engine)
        self.census: Counter[str] = Counter()

    async def sample(self, minute: int | str, fault: str | None, left: dict[str, Any]) -> Sample:
        status = await self.child.request(cmd="status")
        gc.collect()
        rss = rss_kib()  # before the census, whose object list would count
        if tracemalloc.is_tracing():
            TRACED[str(minute)] = tracemalloc.take_snapshot()
        objects, self.census = object_census()
        engine = self.engine
        s, k = engine.statistics().core, engine.statistics().link
        return Sample(
            minute=minute,
            at_s=round(trio.current_time() - self.started, 1),
            fault=fault,
            left=left,
            rss_kib=rss,
            child_rss_kib=rss_kib(self.child.process.pid),
            sim_orders=status.get("orders"),
            sim_fills=status.get("fills"),
            objects=objects,
            tasks=count_tasks(),
            sessions_alive=len(SoakSession.alive),
            websockets_alive=self.census.get("WebSocketConnection", 0),
            trades=s.trades,
            connects=k.connects,
            orders=s.orders,
            fills=s.fills,
            sizes={p.name: p.read(engine, self.receive) for p in self.probes},
        )


# --- the table --------------------------------------------------------------------------------------

COLUMNS: Final = (
    # header, width (values: see `row`; None prints as "–")
    ("min", 4),
    ("fault", 15),
    ("left", 10),
    ("RSS MiB", 8),
    ("Δ% base", 8),
    ("sim MiB", 8),
    ("objects", 8),
    ("tasks", 5),
    ("sess", 4),
    ("ws", 3),
    ("posts", 5),
    ("ctl", 3),
    ("noop", 4),
    ("await", 5),
    ("queue", 5),
    ("live", 4),
    ("unkn", 4),
    ("pos", 3),
    ("orders", 6),
    ("by_oid", 6),
    ("stale", 5),
    ("tids", 5),
    ("jq", 3),
    ("trades", 6),
    ("conn", 4),
)
LEGEND: Final = (
    "fault = armed in that minute; left = its switches not yet consumed when cleared; Δ% base = RSS vs "
    "the end of the warm-up; sim = simulator child (information only); objects = gc-tracked objects; "
    "sess/ws = sessions / websockets alive; posts, ctl, noop = current session's post table, control "
    "posts, pending noops; await = awaiting-noop cloids; queue = scheduler (cancel + reduce-only + new); "
    "live, unkn = book's non-terminal / unknown orders; pos = open positions; orders, by_oid, tids = the "
    "book's order memory, oid map and seen fill ids (capped); stale = oid-map entries no prune removes; "
    "jq = journal channel; trades, conn = per minute."
)


def _mib(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:.1f}"


def _sum(sizes: Mapping[str, int | None], *names: str) -> int | None:
    values = [sizes.get(n) for n in names]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def row(sample: Sample, previous: Sample | None, baseline: Sample | None) -> str:
    z = sample.sizes
    if sample is baseline:
        delta = "base"
    elif baseline is None or baseline.rss_kib is None or sample.rss_kib is None:
        delta = "warm-up" if isinstance(sample.minute, int) else "–"
    else:
        delta = f"{(sample.rss_kib - baseline.rss_kib) / baseline.rss_kib * 100:+.1f}"
    left = ",".join(f"{k}={v}" for k, v in sample.left.items()) or "-"
    values: list[object] = [
        sample.minute,
        sample.fault or "-",
        left[:10],
        _mib(sample.rss_kib),
        delta,
        _mib(sample.child_rss_kib),
        sample.objects,
        sample.tasks,
        sample.sessions_alive,
        sample.websockets_alive,
        z.get("session.posts"),
        z.get("session.control"),
        z.get("session.pending_noops"),
        z.get("engine.awaiting_noop"),
        _sum(z, "scheduler.cancels", "scheduler.reduce_only", "scheduler.new_orders"),
        z.get("book.live_orders"),
        z.get("book.unknown_orders"),
        z.get("book.positions"),
        z.get("book.orders"),
        z.get("book.by_oid"),
        z.get("book.stale_oids"),
        z.get("book.seen_tids"),
        z.get("journal.queue"),
        sample.trades - (previous.trades if previous else 0),
        sample.connects - (previous.connects if previous else 0),
    ]
    cells = []
    for (header, width), value in zip(COLUMNS, values, strict=True):
        text = "–" if value is None else str(value)
        cells.append(text.ljust(width) if header in ("fault", "left") else text.rjust(width))
    return " ".join(cells)


def header() -> str:
    cells = [h.ljust(w) if h in ("fault", "left") else h.rjust(w) for h, w in COLUMNS]
    return " ".join(cells)


# --- the verdict ------------------------------------------------------------------------------------


@attrs.frozen
class MemoryVerdict:
    flat: bool
    warmup: int
    baseline_kib: int | None
    max_after_kib: int | None
    growth_pct: float | None
    last_growth_pct: float | None
    slope_kib_per_min: float | None
    text: str


def memory_verdict(rss: Sequence[int | None], warmup: int, max_growth_pct: float) -> MemoryVerdict:
    """RSS samples 0..N (sample k at the end of minute k; 0 at READY). Warm-up = minutes 1..`warmup`:
    the baseline is sample `warmup`; flat means no later sample is `max_growth_pct` % above it."""
    if warmup >= len(rss) - 1:
        return MemoryVerdict(
            False, warmup, None, None, None, None, None, "not enough samples after the warm-up to judge"
        )
    base, after = rss[warmup], list(rss[warmup + 1 :])
    if base is None or any(v is None for v in after):
        return MemoryVerdict(
            False, warmup, base, None, None, None, None, "RSS unreadable (needs Linux /proc)"
        )
    values = [v for v in after if v is not None]
    top, last = max(values), values[-1]
    growth = (top - base) / base * 100
    last_growth = (last - base) / base * 100
    xs = list(range(warmup, len(rss)))
    ys = [base, *values]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    flat = growth < max_growth_pct
    text = (
        f"RSS after warm-up: max {growth:+.2f} %, last {last_growth:+.2f} % vs {base / 1024:.1f} MiB at the "
        f"end of minute {warmup}; trend {slope:+.1f} KiB/min — "
        + ("FLAT" if flat else "GROWING")
        + f" (target < {max_growth_pct:g} %)"
    )
    return MemoryVerdict(flat, warmup, base, top, growth, last_growth, slope, text)


@attrs.frozen
class Check:
    """One at-rest check; an unjudged one is printed as a note and does not decide the verdict."""

    name: str
    ok: bool
    detail: str
    judged: bool = True


def structure_report(
    probe_list: Sequence[Probe], samples: Sequence[Sample], rest: Sample, warmup: int
) -> tuple[list[str], list[Check], list[str]]:
    """One line per structure (warm-up end, max after, at rest, cap, trend), the checks they imply and
    warnings (uncapped structures that grew)."""
    lines: list[str] = []
    checks: list[Check] = []
    warnings: list[str] = []
    notes: list[str] = []
    base = samples[min(warmup, len(samples) - 1)]
    after = samples[warmup + 1 :] or samples[-1:]
    lines.append(
        f"  {'structure':<26} {'kind':<9} {'warm-up':>8} {'max':>8} {'at rest':>8} {'cap':>6}  trend"
    )
    for probe in probe_list:
        every = [s.sizes.get(probe.name) for s in [*samples, rest]]
        at_base, at_rest = base.sizes.get(probe.name), rest.sizes.get(probe.name)
        later = [s.sizes.get(probe.name) for s in after]
        if any(v is None for v in every):
            lines.append(f"  {probe.name:<26} {probe.kind:<9} probe missing (renamed in hip3_trio?)")
            checks.append(Check(probe.name, False, "probe missing: update scripts/soak.py"))
            continue
        values = [v for v in every if v is not None]
        later_values = [v for v in later if v is not None]
        top = max(values)
        trail = [at_base or 0, *later_values]
        rising = trail[-1] > trail[0] and all(b >= a for a, b in itertools.pairwise(trail))
        if probe.kind == "transient":
            trend = "empty at rest" if at_rest == 0 else "NOT EMPTY AT REST"
        elif probe.cap is not None and top > probe.cap:
            trend = "OVER ITS BOUND"
        elif probe.kind == "keyed":
            trend = f"bounded by its keys ({top} of ≤ {probe.cap})"
        elif probe.kind == "windowed":
            trend = "trimmed by age (1 h window)"
        elif probe.kind == "capped" and probe.cap is not None and top >= probe.cap * 3 // 4:
            trend = f"reached its cap (pruned down from {top})"
        elif rising:
            trend = "GROWS with traffic" + (
                f", capped at {probe.cap}" if probe.cap is not None else ", NO CAP"
            )
            if probe.kind == "uncapped":
                warnings.append(f"{probe.name} grows without a cap: {at_base} → {at_rest} after the warm-up")
        elif top == 0:
            trend = "always empty"
        else:
            trend = "flat"
        cap = "-" if probe.cap is None else str(probe.cap)
        lines.append(
            f"  {probe.name:<26} {probe.kind:<9} {at_base:>8} {max(later_values, default=0):>8} "
            f"{at_rest:>8} {cap:>6}  {trend}"
        )
        if probe.kind == "transient" and at_rest != 0:
            checks.append(Check(probe.name, False, f"{at_rest} at rest (must be empty)"))
        if probe.cap is not None and top > probe.cap:
            checks.append(Check(probe.name, False, f"reached {top} > cap {probe.cap}"))
        if probe.kind == "capped" and probe.cap is not None and top < probe.cap * 3 // 4:
            notes.append(
                f"{probe.name} peaked at {top}, below its cap {probe.cap}: its pruning was not exercised "
                "(see --order-memory / --tid-memory)"
            )
    lines.extend(f"  note: {note}" for note in notes)
    return lines, checks, warnings


# --- the soak ---------------------------------------------------------------------------------------


@attrs.define
class Run:
    """Everything the soak produced, for the report and --json."""

    args: dict[str, Any]
    warmup: int
    child_pid: int | None = None
    samples: list[Sample] = attrs.Factory(list)
    rest: Sample | None = None
    rest_checks: list[Check] = attrs.Factory(list)
    status_lines: deque[str] = attrs.Factory(lambda: deque(maxlen=40))
    interrupted: bool = False
    error: str | None = None
    probes: list[Probe] = attrs.Factory(list)
    baseline_census: Counter[str] | None = None
    rest_census: Counter[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "args": self.args,
            "warmup_minutes": self.warmup,
            "child_pid": self.child_pid,
            "samples": [attrs.asdict(s) for s in self.samples],
            "rest": attrs.asdict(self.rest) if self.rest is not None else None,
            "rest_checks": [attrs.asdict(c) for c in self.rest_checks],
            "interrupted": self.interrupted,
            "error": self.error,
        }


def write_json(path: Path | None, run: Run, verdict: dict[str, Any] | None = None) -> None:
    if path is None:
        return
    data = run.to_json()
    if verdict is not None:
        data["verdict"] = verdict
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def engine_for(
    sim_info: Mapping[str, str], state_dir: Path, book: BookConfig, connection: ConnectionConfig
) -> tuple[Engine, trio.MemoryReceiveChannel[Record]]:
    """The engine, as `scripts/bench_latency.py` builds it: normal detector and position caps (so it
    trades like it would live), risk limits loosened so losses and fault-induced rejects never latch
    the hard stop (that would end trading for the rest of the soak), a short hold for frequent round
    trips, the book's memory bounds from the command line (the engine's defaults unless asked), and
    `connection` (the soak's stall limit and reconnect backoff)."""
    big = Decimal(10) ** 9
    settings = EngineSettings(
        markets=MARKETS,
        user=sim_info["account"],
        detector=DetectorConfig(),
        executor=ExecutorConfig(cloid_prefix=int(time.time() * 1000)),
        time_stop=TimeStopConfig(hold_s=HOLD_POSITION_S, flatten_on_exit=True, exit_deadline_s=20.0),
        risk=RiskConfig(
            max_loss_usd=big,
            max_consecutive_losses=10**9,
            max_flatten_failures=10**9,
            max_rejects_per_hour=10**9,
            slippage_bps_limit=big,
        ),
        book=book,
        connection=connection,
        # The sender as the soak always ran it: no minimum gap between posts.
        scheduler=BatchConfig(interval_ms=0),
    )
    sink, receive = JournalSink.open()
    engine = Engine(
        settings,
        signer=Signer.from_key(sim_info["account_key"]),
        nonces=NonceManager(),
        hard_stop=HardStop.load(state_dir, int(time.time() * 1000)),
        journal=sink,
    )
    return engine, receive


async def soak(args: argparse.Namespace, run: Run, state_dir: Path, out: Callable[[str], None]) -> None:
    minute_s: float = args.minute_s
    minutes: int = args.minutes
    json_path: Path | None = args.json
    command = [
        sys.executable,
        str(SCRIPT),
        "--serve-sim",
        "--seed",
        str(args.seed),
        "--oracle-interval",
        str(args.oracle_interval),
        "--dislocation-rate",
        str(args.dislocation_rate),
    ]
    async with trio.open_nursery() as nursery:
        # The child's lifetime belongs to this nursery: cancelling it terminates the process. Its own
        # session, so a terminal's Ctrl-C reaches only us (the engine then stops in order, venue up).
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                check=False,
                start_new_session=True,
            )
        )
        run.child_pid = process.pid
        child = SimChild(process)
        info = await child.read_json()
        out(f"simulator: pid {process.pid}, {info['url']}, account {info['account']}")
        out("")
        out(header())
        book = BookConfig(order_memory=args.order_memory, tid_memory=args.tid_memory)
        hold = HOLD * minute_s
        connection = ConnectionConfig(md_stall_s=max(1.0, hold / 2), backoff_initial_s=1.0, backoff_max_s=4.0)
        engine, receive = engine_for(info, state_dir, book, connection)
        written = [0]

        async def counting_write(write: Callable[[list[Record]], int], records: list[Record]) -> int:
            result = await write_in_thread(write, records)
            written[0] += len(records)
            return result

        tasks_before = count_tasks()
        stop = trio.Event()
        with Journal.open(state_dir) as journal:
            sampler = Sampler(engine, receive, child, trio.current_time())
            run.probes = sampler.probes

            async def drive() -> None:
                with trio.move_on_after(READY_TIMEOUT_S):
                    await engine.wait_until(lambda: engine.core.ready)
                if not engine.core.ready:
                    run.error = f"the engine was not READY within {READY_TIMEOUT_S:.0f} s"
                    stop.set()
                    return
                start = trio.current_time()
                sampler.started = start
                first = await sampler.sample(0, None, {})
                run.samples.append(first)
                if run.warmup == 0:
                    run.baseline_census = sampler.census
                out(row(first, None, first if run.warmup == 0 else None))
                for k in range(minutes):
                    name = ROTATION[k % len(ROTATION)]
                    await trio.sleep_until(start + minute_s * (k + FIRE_AT))
                    await child.request(cmd="fault", name=name)
                    log.warning("soak: minute %d: fault %s armed", k + 1, name)
                    await trio.sleep(hold)
                    left = (await child.request(cmd="clear"))["armed"]
                    await trio.sleep_until(start + minute_s * (k + 1))
                    sample = await sampler.sample(k + 1, name, left)
                    if k + 1 == run.warmup:
                        run.baseline_census = sampler.census
                    run.samples.append(sample)
                    baseline = run.samples[run.warmup] if k + 1 >= run.warmup else None
                    out(row(sample, run.samples[-2], baseline))
                    await trio.to_thread.run_sync(write_json, json_path, run)
                stop.set()

            async with trio.open_nursery() as inner:
                inner.start_soon(drive)
                await run_engine(
                    engine,
                    websocket_connector(info["url"]),
                    journal=journal,
                    journal_receive=receive,
                    status_every=minute_s,
                    handle_signals=True,
                    stop=stop,
                    session_class=SoakSession,
                    journal_write=counting_write,
                    out=run.status_lines.append,
                )
                if not stop.is_set() or len(run.samples) < minutes + 1:
                    run.interrupted = run.error is None
                inner.cancel_scope.cancel()

            # --- at rest: the orderly stop is done, the journal flushed ---------------------------
            status = await child.request(cmd="status", tids=True)
            rest = await sampler.sample("rest", None, status.get("armed", {}))
            run.rest = rest
            run.rest_census = sampler.census
            baseline = run.samples[run.warmup] if len(run.samples) > run.warmup else None
            out(row(rest, run.samples[-1] if run.samples else None, baseline))
            journal_tids = sorted(tid for (tid,) in journal.query("SELECT tid FROM fills"))
            states = dict(
                journal.query("SELECT COALESCE(final_state, 'NULL'), COUNT(*) FROM orders GROUP BY 1")
            )
            ((longest_ms,),) = journal.query("SELECT COALESCE(MAX(time_to_flat_ms), 0) FROM trades")
        venue_tids = sorted(status.get("tids", []))
        stats = engine.statistics()
        run.rest_checks = [
            Check(
                "engine.link.session is None", engine.link.session is None, f"session={engine.link.session!r}"
            ),
            Check("engine.settled()", engine.settled(), ""),
            Check("no sessions alive", rest.sessions_alive == 0, f"{rest.sessions_alive} alive"),
            Check("no websockets alive", rest.websockets_alive == 0, f"{rest.websockets_alive} alive"),
            Check(
                "ended sessions left no posts",
                SoakSession.residue == 0,
                f"{SoakSession.residue} posts/control posts left over {SoakSession.ended} sessions",
            ),
            Check(
                "trio tasks back to before the engine",
                rest.tasks == tasks_before,
                f"{rest.tasks} now, {tasks_before} before",
            ),
            Check("venue flat", not status.get("positions"), f"venue positions {status.get('positions')}"),
            Check(
                "engine flat, as the venue",
                not any(p.size for p in engine.core.book.positions.values()),
                f"engine positions {engine.core.book.positions}",
            ),
            Check(
                f"no position held longer than hold + {HOLD_MARGIN_S:.0f} s",
                longest_ms <= (HOLD_POSITION_S + HOLD_MARGIN_S) * 1000,
                f"longest round trip {longest_ms / 1000:.1f} s (hold {HOLD_POSITION_S:.0f} s)",
            ),
            Check(
                "hard stop never latched (risk limits are loosened: a latch means something broke)",
                not engine.core.hard_stop_latch.latched,
                str(engine.core.hard_stop_latch.record or ""),
            ),
            Check(
                "every fault met traffic (armed switches consumed)",
                not status.get("armed"),
                f"still armed {status.get('armed')}",
                judged=False,
            ),
            Check(
                "journal: every record written",
                written[0] == stats.journal_sent and stats.journal_dropped == 0,
                f"queued {stats.journal_sent}, written {written[0]}, dropped {stats.journal_dropped}",
            ),
            Check(
                "journal: no order left open or unknown",
                "NULL" not in states and "unknown" not in states,
                f"final states {states}",
            ),
            Check(
                "journal: every venue fill exactly once",
                journal_tids == venue_tids and len(set(venue_tids)) == len(venue_tids),
                f"{len(journal_tids)} journaled, {len(venue_tids)} at the venue",
            ),
        ]
        with trio.move_on_after(5):
            await child.close()
            await process.wait()
        nursery.cancel_scope.cancel()  # terminates the child if it has not exited


# --- output ---------------------------------------------------------------------------------------


def report(run: Run, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """Print the verdict; returns the exit code."""
    samples, rest = run.samples, run.rest
    out("")
    if run.error is not None:
        out(f"ERROR: {run.error}")
    if not samples or rest is None:
        out("VERDICT: FAIL — no samples")
        return 1
    out("engine status (last lines):")
    for line in list(run.status_lines)[-12:]:
        out("  " + line)
    memory = memory_verdict([s.rss_kib for s in samples], run.warmup, args.max_growth_pct)
    out("")
    out(
        f"memory: warm-up = minutes 1..{run.warmup} (baseline: RSS at the end of minute {run.warmup}); "
        "RSS of the engine process after gc.collect()"
    )
    out("  " + memory.text)
    child = [s.child_rss_kib for s in [*samples, rest] if s.child_rss_kib is not None]
    if child:
        out(
            f"  simulator child (not judged): {child[0] / 1024:.1f} → {child[-1] / 1024:.1f} MiB, "
            f"{samples[-1].sim_orders} orders and {samples[-1].sim_fills} fills kept"
        )
    base_objects = samples[min(run.warmup, len(samples) - 1)].objects
    out(
        f"  gc-tracked objects: {base_objects} at the end of the warm-up, {samples[-1].objects} at the "
        f"last minute, {rest.objects} at rest"
    )
    if run.baseline_census is not None and run.rest_census is not None:
        before, after = run.baseline_census, run.rest_census
        grew = sorted(((after[k] - before.get(k, 0), k) for k in after), reverse=True)[:8]
        grew_text = ", ".join(f"{k} {d:+}" for d, k in grew if d > 0) or "none"
        out(f"  object types grown from the end of the warm-up to rest: {grew_text}")

    lines, structure_checks, warnings = structure_report(run.probes, samples, rest, run.warmup)
    out("")
    out("structures (warm-up = value at the end of the warm-up; max = highest after it):")
    for line in lines:
        out(line)

    out("")
    out("at rest (after the orderly stop):")
    all_checks = [*run.rest_checks, *structure_checks]
    for check in run.rest_checks:
        mark = "ok  " if check.ok else ("FAIL" if check.judged else "note")
        out(f"  {mark} {check.name}" + (f" — {check.detail}" if check.detail else ""))
    for check in structure_checks:
        out(f"  FAIL {check.name} — {check.detail}")
    rest_ok = all(c.ok for c in all_checks if c.judged)

    traded = rest.trades > 0
    out("")
    out(
        f"trading: {rest.trades} round trips, {rest.orders} orders, {rest.fills} fills, "
        f"{rest.connects} connects over {len(samples) - 1} minutes"
    )
    ok = memory.flat and rest_ok and traded and not run.interrupted and run.error is None
    for warning in warnings:
        out(f"WARNING: {warning} (not judged; see the structures table)")
    out("")
    out(
        "VERDICT: "
        + ("PASS" if ok else "FAIL")
        + f" — memory {'flat' if memory.flat else 'NOT flat'}; structures at rest "
        + ("empty/bounded" if rest_ok else "NOT at resting size")
        + f"; {'traded' if traded else 'DID NOT TRADE'}"
        + ("; INTERRUPTED" if run.interrupted else "")
    )
    write_json(
        args.json,
        run,
        {
            "pass": ok,
            "memory": attrs.asdict(memory),
            "rest_ok": rest_ok,
            "traded": traded,
            "warnings": warnings,
            "failed_checks": [attrs.asdict(c) for c in all_checks if not c.ok and c.judged],
        },
    )
    return 0 if ok else 1


@contextmanager
def state_directory(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="hip3-soak-") as tmp:
        yield Path(tmp)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=int, default=30, help="how many fault minutes (default 30)")
    p.add_argument("--minute-s", type=float, default=60.0, help="length of a 'minute' in s (smoke runs)")
    p.add_argument(
        "--warmup", type=int, default=3, help="warm-up minutes before the RSS baseline (default 3)"
    )
    p.add_argument("--max-growth-pct", type=float, default=5.0, help="RSS growth allowed after warm-up")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the samples here")
    p.add_argument("--state-dir", type=Path, default=None, help="keep journal and log here (default: temp)")
    p.add_argument("--log-level", default="INFO", help="engine log level for the log file (default INFO)")
    p.add_argument(
        "--order-memory",
        type=int,
        default=BookConfig().order_memory,
        help="BookConfig.order_memory (default: the engine's); small values exercise the book's pruning",
    )
    p.add_argument(
        "--tid-memory", type=int, default=BookConfig().tid_memory, help="BookConfig.tid_memory (likewise)"
    )
    p.add_argument("--seed", type=int, default=7, help="simulator seed")
    p.add_argument("--oracle-interval", type=float, default=1.0, help="simulator oracle interval, s")
    p.add_argument("--dislocation-rate", type=float, default=0.12, help="dislocations per oracle update")
    p.add_argument(
        "--tracemalloc",
        action="store_true",
        help="attribute growth: trace allocations and print the top lines grown from warm-up to rest "
        "(slower, and its own bookkeeping counts in RSS: judge memory on a run without it)",
    )
    p.add_argument("--serve-sim", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.minutes < 1 or args.minute_s <= 0 or args.warmup < 0:
        p.error("--minutes must be >= 1, --minute-s > 0, --warmup >= 0")
    return args


def setup_logging(state_dir: Path, level: str) -> list[logging.Handler]:
    """The engine's log to `state_dir/soak.log`; errors also to stderr. Returns the handlers added."""
    path = state_dir / "soak.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level.upper())
    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.ERROR)
    errors.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(min(handler.level, logging.ERROR))
    logging.getLogger("trio-websocket").setLevel(max(handler.level, logging.INFO))  # per-frame chatter
    root.addHandler(handler)
    root.addHandler(errors)
    return [handler, errors]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_sim:
        logging.basicConfig(level=logging.ERROR)
        with suppress(KeyboardInterrupt):
            trio.run(serve_sim, args.seed, args.oracle_interval, args.dislocation_rate)
        return 0
    if rss_kib() is None:
        print("soak: needs Linux (/proc/self/status) to read RSS", file=sys.stderr)
        return 2

    def out(line: str) -> None:
        print(line, flush=True)

    warmup = min(args.warmup, args.minutes - 1)
    run = Run(args={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, warmup=warmup)
    if args.state_dir is not None and args.state_dir.exists() and any(args.state_dir.iterdir()):
        print(
            f"soak: --state-dir {args.state_dir} is not empty (its journal would mix runs)", file=sys.stderr
        )
        return 2
    with state_directory(args.state_dir) as state_dir:
        handlers = setup_logging(state_dir, args.log_level)
        out(
            f"soak: {args.minutes} minutes of {args.minute_s:g} s, a fault at {FIRE_AT * args.minute_s:.0f} "
            f"s of each (held {HOLD * args.minute_s:.0f} s), markets {', '.join(MARKETS)}; warm-up: "
            f"minutes 1..{warmup}" + (f" (--warmup {args.warmup} clamped)" if warmup != args.warmup else "")
        )
        out(f"  rotation: {', '.join(ROTATION)}")
        out(f"  state and engine log: {state_dir}" + ("" if args.state_dir else " (temporary)"))
        out("  samples after gc.collect(); RSS = VmRSS of this (engine) process; the simulator is a child")
        out("  " + LEGEND)
        if args.tracemalloc:
            tracemalloc.start()
        try:
            trio.run(soak, args, run, state_dir, out)
        except KeyboardInterrupt:
            run.interrupted = True
            out("interrupted")
        code = report(run, args, out)
        if args.tracemalloc:
            out(f"tracemalloc: allocations grown from the end of minute {warmup} to rest (top lines):")
            for line in traced_growth(str(warmup), "rest"):
                out("  " + line)
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
        if args.state_dir is not None:
            out(f"journal (journal.sqlite3) and engine log (soak.log) kept in {state_dir}")
        return code


if __name__ == "__main__":
    raise SystemExit(main())
