"""Signal-to-wire latency instrumentation: off (None) by default, three `perf_counter_ns` reads when on.

The reader stamps each frame's arrival; the engine ties an order it queued to the frame being
processed (the one that triggered the signal — the reader handles a frame in one synchronous step);
the sender reports the moment an order's post frame is handed to the socket. Used by
`scripts/bench_latency.py`; when no trace is attached every hook is a single `is not None` test.
"""

from __future__ import annotations

from time import perf_counter_ns

from hip3_trio.execution.batch import Batch
from hip3_trio.wire.actions import Cloid

__all__ = ["LatencyTrace"]


class LatencyTrace:
    """Collects frame-arrival → post-handed-to-socket durations (ns), one per traced order."""

    def __init__(self) -> None:
        self.frame_ns = 0
        self.samples_ns: list[int] = []
        self._pending: dict[Cloid, int] = {}

    def frame_arrived(self) -> None:
        self.frame_ns = perf_counter_ns()

    def order_queued(self, cloid: Cloid) -> None:
        self._pending[cloid] = self.frame_ns

    def post_handed(self, batch: Batch) -> None:
        now = perf_counter_ns()
        for item in batch.order_items:
            if item.cloid is not None and (start := self._pending.pop(item.cloid, None)) is not None:
                self.samples_ns.append(now - start)
