"""Where a signal's time goes between frame and socket: per-step timers around the engine's calls.

Wraps the functions on the signal-to-wire path (decode, the link's message step, detector, executor
gates, book, scheduler, signing, serialisation, post table; and the journaling that follows the send)
with `perf_counter_ns` timers, runs `bench_latency.engine_run` (in-process simulator), and for each
traced order reports how long each step took between the frame's arrival and the post being handed to
the socket. The wrappers add ~0.3 µs per call; read the figures as a breakdown, the totals come from
bench_latency.py.

    .venv/bin/python scripts/profile_signal_path.py --signals 150
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_latency

from hip3_trio import core as core_module
from hip3_trio.execution import batch as batch_module
from hip3_trio.execution import executor as executor_module
from hip3_trio.execution import posts as posts_module
from hip3_trio.position import book as book_module
from hip3_trio.strategy import detector as detector_module
from hip3_trio.venue import link as link_module
from hip3_trio.venue import session as session_module
from hip3_trio.venue.session import Session
from hip3_trio.venue.trace import LatencyTrace
from hip3_trio.wire import messages as messages_module

step_ns: defaultdict[str, int] = defaultdict(int)


def timed(owner: Any, name: str, label: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = perf_counter_ns()
        try:
            return original(*args, **kwargs)
        finally:
            step_ns[label] += perf_counter_ns() - start

    setattr(owner, name, wrapper)


def instrument() -> tuple[list[str], list[dict[str, int]]]:
    C, L = core_module.TradingCore, link_module.VenueLink
    X, B = executor_module.Executor, book_module.PositionBook
    steps: list[tuple[Any, str, str]] = [
        (messages_module, "decode_frame", "decode_frame"),
        (L, "on_message", "link.on_message (whole step)"),
        (detector_module.Detector, "on_book", "  detector"),
        (detector_module.Detector, "on_oracle", "  detector"),
        (X, "submit_signal", "  executor.submit_signal"),
        (X, "_price_size", "    _price_size (tick/lot)"),
        (X, "_check_caps", "    _check_caps"),
        (X, "_order", "    _order (with its cloid)"),
        (X, "_submitted", "    _submitted (event)"),
        (B, "register", "    book.register"),
        (B, "has_position", "    book.has_position"),
        (batch_module.BatchScheduler, "enqueue_new", "    scheduler.enqueue_new"),
        (C, "_drain", "  outbox drain (_drain)"),
        (C, "next_batch", "sender: next_batch"),
        (session_module, "action_to_wire", "sender: action_to_wire"),
        (L, "sign", "sender: sign"),
        (posts_module.PostTable, "create", "sender: posts.create"),
        (session_module._COMPACT_JSON, "encode", "sender: JSON encode"),
        (posts_module.PostTable, "mark_sent", "sender: posts.mark_sent"),
        (L, "on_batch_sent", "sender: host.on_batch_sent"),
        (C, "_flush_after_send", "after the send: journal + log the signal"),
    ]
    for owner, name, label in steps:
        timed(owner, name, label)
    rows: list[dict[str, int]] = []
    arrived, handed = LatencyTrace.frame_arrived, LatencyTrace.post_handed

    def frame_arrived(self: LatencyTrace) -> None:
        arrived(self)
        if not self._pending:  # no order waiting: this frame starts a fresh breakdown
            step_ns.clear()

    def post_handed(self: LatencyTrace, batch: Any) -> None:
        before = len(self.samples_ns)
        handed(self, batch)
        if len(self.samples_ns) > before:
            rows.append({**step_ns, "total (frame → socket)": self.samples_ns[-1]})
        step_ns.clear()

    LatencyTrace.frame_arrived = frame_arrived  # type: ignore[method-assign]
    LatencyTrace.post_handed = post_handed  # type: ignore[method-assign]
    return ["total (frame → socket)", *dict.fromkeys(label for _, _, label in steps)], rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=150)
    args = parser.parse_args()
    labels, rows = instrument()
    with tempfile.TemporaryDirectory() as state:
        trio.run(bench_latency.engine_run, args.signals, Session, Path(state))
    print(f"{'step (µs per traced order)':<34} {'p50':>7} {'p90':>7}")
    for label in labels:
        values = sorted(row.get(label, 0) for row in rows)
        p50, p90 = statistics.median(values) / 1000, values[int(len(values) * 0.9)] / 1000
        print(f"{label:<34} {p50:7.0f} {p90:7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
