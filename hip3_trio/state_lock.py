"""One process per state directory: an advisory lock held for the life of the engine (or the probe).

The journal, the hard-stop latch and the nonce mark in a state directory belong to one running process.
Two engines on one directory (an operator's hand-started run beside the supervised service, a probe
while the engine trades) would trade the same account twice, race for nonces and interleave the
journal. `hold_state_dir` takes an exclusive ``flock`` on ``<state_dir>/engine.lock`` without waiting;
if another process holds it, the start ends with one line naming the holder (exit 3). The kernel
releases the lock when the holder exits, however it exits (SIGKILL, crash), so a supervisor's restart
never finds a stale lock; the file itself stays and only says who held it last.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from hip3_trio.errors import EnvironmentProblem

LOCK_FILENAME: Final = "engine.lock"


@contextmanager
def hold_state_dir(state_dir: Path, holder: str) -> Iterator[None]:
    """Hold `state_dir` for this process while the block runs; `EnvironmentProblem` if another holds it.

    `holder` (e.g. ``hip3-trio --env testnet``) is written into the lock file with the pid, for the
    message another process shows."""
    path = state_dir / LOCK_FILENAME
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise EnvironmentProblem(
            f"the lock file {path} cannot be opened ({exc.strerror or exc}); make the state directory "
            "writable by this user"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise EnvironmentProblem(
                f"the state directory {state_dir} is in use by {who}; stop that process first, or give "
                "this one its own --state-dir (the journal, latch and nonce mark belong to one process)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
