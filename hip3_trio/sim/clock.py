"""The simulator's wall clock, derived from Trio's clock so it is deterministic under a mock clock.

``now_ms()`` is ``base_epoch_ms + (trio.current_time() - origin) * 1000 + skew``. The origin is taken
the first time the clock is read inside a Trio run, so under pytest-trio's ``autojump_clock`` the
simulator's epoch-ms timeline is exact and repeatable; with the real clock it tracks wall time. The
skew is read from the fault switches on every call, so a test can shift the venue's clock mid-run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
import trio


def _no_skew() -> int:
    return 0


@attrs.define
class SimClock:
    """Epoch milliseconds as the venue would stamp them (block time)."""

    base_epoch_ms: int | None = None
    skew_ms: Callable[[], int] = _no_skew
    _origin: float | None = None

    def now_ms(self) -> int:
        """Current venue time in epoch milliseconds (includes the configured skew)."""
        if self._origin is None:
            self._origin = trio.current_time()
            if self.base_epoch_ms is None:
                self.base_epoch_ms = int(time.time() * 1000)
        assert self.base_epoch_ms is not None
        elapsed_ms = round((trio.current_time() - self._origin) * 1000)
        return self.base_epoch_ms + elapsed_ms + self.skew_ms()

    def start_ms(self) -> int:
        """The venue time (epoch ms, without skew) at the clock's origin: when the simulator started."""
        if self._origin is None:
            self.now_ms()
        assert self.base_epoch_ms is not None
        return self.base_epoch_ms

    def elapsed_s(self) -> float:
        """Seconds on the Trio clock (monotonic, no skew): for intervals such as the budget's trickle."""
        return trio.current_time()

    def trio_time_at(self, epoch_ms: int) -> float:
        """The Trio clock value at which ``now_ms()`` reaches ``epoch_ms`` (for sleeping until it)."""
        now = self.now_ms()
        return trio.current_time() + (epoch_ms - now) / 1000.0
