"""Nonces for signed L1 actions: strictly increasing, close to the exchange's clock, restart-safe.

The exchange keeps each signer's 100 highest nonces; a new nonce must exceed the smallest of them, must
never have been used, and must lie within (T - 2 days, T + 1 day) of block time T. So the counter is
`max(last + 1, approx_server_time_ms)`: strictly increasing even for many calls in one millisecond or
after the local clock steps back, and otherwise tracking the server's clock.

`NonceManager` is pure state: the wall clock is injected and every method is synchronous (atomic under
Trio). The high-water mark can be saved to and loaded from a small state file (`save_high_water`,
`load_high_water`) so a restarted process never reuses a nonce its predecessor signed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from hip3_trio.atomic import write_atomic

__all__ = [
    "NONCE_FILENAME",
    "InSync",
    "NonceManager",
    "NonceStateError",
    "SyncResult",
    "TimeDrift",
    "TimeDriftWarning",
    "load_high_water",
    "save_high_water",
    "wall_clock_ms",
]

#: The nonce high-water mark's file in the state directory.
NONCE_FILENAME = "nonce.json"

log = logging.getLogger(__name__)

DEFAULT_WARN_DRIFT_MS = 2_000
DEFAULT_MAX_DRIFT_MS = 5_000


def wall_clock_ms() -> int:
    """The local wall clock in integer milliseconds since the epoch (the default injected clock)."""
    return time.time_ns() // 1_000_000


@attrs.frozen
class InSync:
    """`sync_with_server` result: the local clock is within the warning threshold of the server's."""

    offset_ms: int


@attrs.frozen
class TimeDriftWarning:
    """`sync_with_server` result: drift above the warning threshold but still tradable."""

    offset_ms: int
    warn_ms: int


@attrs.frozen(auto_exc=True)
class TimeDrift(Exception):
    """Drift between the local and the server clock above the hard limit.

    Returned (not raised) by `sync_with_server` so the caller decides; the engine refuses to trade until
    a later sync is back within the limit. It is an exception type so a caller that wants to can `raise` it.
    """

    offset_ms: int
    max_ms: int

    def __str__(self) -> str:
        return f"local clock differs from the server's by {self.offset_ms} ms (limit {self.max_ms} ms)"


SyncResult = InSync | TimeDriftWarning | TimeDrift


class NonceManager:
    """Issues strictly increasing nonces that track the server's clock.

    `offset_ms` (server - local) is learned from exchange timestamps via `sync_with_server`; until the
    first sync it is 0 and nonces follow the local clock. `high_water` is the last nonce issued (or the
    value restored at start-up), which is what must be persisted for restart safety.
    """

    def __init__(
        self,
        clock_ms: Callable[[], int] = wall_clock_ms,
        *,
        high_water: int = 0,
        warn_drift_ms: int = DEFAULT_WARN_DRIFT_MS,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
    ) -> None:
        if high_water < 0:
            raise ValueError(f"high_water must be >= 0, got {high_water}")
        if not 0 <= warn_drift_ms <= max_drift_ms:
            raise ValueError(f"need 0 <= warn_drift_ms <= max_drift_ms, got {warn_drift_ms}, {max_drift_ms}")
        self._clock_ms = clock_ms
        self._last = high_water
        self._offset_ms = 0
        self._warn_drift_ms = warn_drift_ms
        self._max_drift_ms = max_drift_ms

    @property
    def high_water(self) -> int:
        """The highest nonce issued or restored; `next()` always returns something greater."""
        return self._last

    @property
    def offset_ms(self) -> int:
        """server - local clock, in ms, as of the last sync (0 before any sync)."""
        return self._offset_ms

    def approx_server_time_ms(self) -> int:
        """The local clock corrected by the last known offset: our best estimate of the server's time."""
        return self._clock_ms() + self._offset_ms

    def next(self) -> int:
        """Issue a nonce: `max(high_water + 1, approx_server_time_ms())`, and record it as the high water."""
        nonce = max(self._last + 1, self.approx_server_time_ms())
        self._last = nonce
        return nonce

    def sync_with_server(self, server_time_ms: int) -> SyncResult:
        """Learn the clock offset from an exchange timestamp and fast-forward the counter to it.

        The offset is stored whatever its size (it is the best estimate we have), and the counter is moved
        to at least `server_time_ms`, so the next nonce is above the server's clock. The result says
        whether the drift is fine, worth a warning (> warn threshold) or too large to trade (> hard limit).
        """
        offset = server_time_ms - self._clock_ms()
        self._offset_ms = offset
        self._last = max(self._last, server_time_ms)
        drift = abs(offset)
        if drift > self._max_drift_ms:
            log.error("clock drift %d ms exceeds the limit of %d ms", offset, self._max_drift_ms)
            return TimeDrift(offset_ms=offset, max_ms=self._max_drift_ms)
        if drift > self._warn_drift_ms:
            log.warning("clock drift %d ms exceeds %d ms", offset, self._warn_drift_ms)
            return TimeDriftWarning(offset_ms=offset, warn_ms=self._warn_drift_ms)
        return InSync(offset_ms=offset)


class NonceStateError(ValueError):
    """The nonce state file exists but cannot be understood; refusing to guess a high-water mark."""


_STATE_KEY = "nonce_high_water"


def load_high_water(path: Path) -> int:
    """Read the persisted high-water mark; 0 if the file does not exist (a fresh state directory)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    try:
        value = json.loads(text)[_STATE_KEY]
    except (ValueError, TypeError, KeyError) as exc:
        raise NonceStateError(f"{path}: not a nonce state file ({exc})") from None
    if type(value) is not int or value < 0:
        raise NonceStateError(f"{path}: {_STATE_KEY} must be a non-negative integer, got {value!r}")
    return value


def save_high_water(path: Path, high_water: int) -> None:
    """Persist the high-water mark atomically and durably (`atomic.write_atomic`: temp file, fsync,
    `os.replace` over `path`, directory fsync): a crash at any point leaves the old file or the new one,
    never a torn one, and the rename itself survives a power loss.
    """
    if type(high_water) is not int or high_water < 0:
        raise ValueError(f"high_water must be a non-negative int, got {high_water!r}")
    write_atomic(path, (json.dumps({_STATE_KEY: high_water}) + "\n").encode("utf-8"))
