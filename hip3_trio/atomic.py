"""Replace a small state file atomically and durably (the nonce high-water mark, the hard-stop latch).

`write_atomic(path, data)` writes `data` to a new temp file in `path`'s directory, fsyncs it,
`os.replace`s it over `path`, then fsyncs the directory. A crash at any point leaves either the old file
or the new one whole, never a torn one; once it returns, the new file also survives a power loss (the
rename lives in the directory, hence the directory fsync). Both state files need exactly this, so it is
written once.

On a failure before the replace, the temp file is removed and the error raised: the old file is as it
was. A failed directory fsync is raised too (the new file is in place but may not survive a power
loss), so a caller never believes a write durable that may not be. Synchronous on purpose: the files
are a few hundred bytes, written rarely, and callers keep their state transitions free of `await`.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "unwritable_dir", "write_atomic"]


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash at any point leaves the old or the new file whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a rename, a new file's name) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unwritable_dir(directory: Path) -> str | None:
    """Create `directory` if missing and prove this user can write there (a temp file, removed); None if
    so, else what is wrong, e.g. "is not writable (Permission denied)" or "cannot be used (...)". The
    start-up checks of the state directory and of `--record DIR` word their one-line errors with it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory, prefix=".hip3-write-test-"):
            pass
    except OSError as exc:
        writable = exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS)
        return f"{'cannot be used' if writable else 'is not writable'} ({exc.strerror or exc})"
    return None
