"""The hard stop: a latch that, once tripped, keeps the engine from opening positions until an operator
clears it — across restarts.

The latch keeps its FIRST reason: the first trigger is the root cause, later ones are usually
consequences of it. The state lives in a small JSON file in the state directory, written atomically
(`atomic.write_atomic`: temp file + fsync, `os.replace`, fsync of the directory) so a crash mid-write
leaves either the old or the new state, never a torn file. It is loaded at start-up, so an engine
restarted by runit after a hard stop comes back stopped.

Failing safe: a latch file that exists but cannot be read or parsed is treated as LATCHED (with a reason
naming the file), never as clear — only `clear()` by an operator un-latches. A missing file means the
engine has never been stopped.

`trigger()` and `clear()` do their file I/O synchronously, on purpose: the write is a few hundred bytes
and happens at most a handful of times in a process's life, and keeping it synchronous keeps the latch
transition atomic under Trio (no `await` between deciding to stop and being stopped). If persisting a
trigger fails, the in-memory latch still holds (the process stays stopped) and the write is retried on
the next trigger; a failed `clear()` raises and leaves the latch set.

Another process may latch the file while the engine runs (``python -m hip3_trio hardstop trip``): the
engine `poll()`s it every half second — one ``stat`` unless the file changed — and adopts a latch it
finds. A clear by another process is not adopted: a running engine keeps its latch until it restarts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Final

import attrs

from hip3_trio.atomic import write_atomic

__all__ = ["DEFAULT_FILENAME", "ClearedRecord", "HardStop", "StopRecord"]

DEFAULT_FILENAME: Final = "hard_stop.json"
_VERSION: Final = 1

log = logging.getLogger(__name__)


@attrs.frozen
class StopRecord:
    """Why and when (ms) the latch was tripped."""

    reason: str
    time_ms: int


@attrs.frozen
class ClearedRecord:
    """A latch that an operator cleared: the original stop plus who cleared it and when (ms)."""

    reason: str
    time_ms: int
    cleared_by: str
    cleared_at_ms: int


def _is_ms(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse(text: str) -> StopRecord | None:
    """The latch state in `text`; raises ValueError on anything but a well-formed document."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("version") != _VERSION:
        raise ValueError("not a version-1 hard-stop document")
    latched = doc.get("latched")
    if latched is False:
        return None
    if latched is not True:
        raise ValueError(f"'latched' must be true or false, got {latched!r:.40}")
    reason, time_ms = doc.get("reason"), doc.get("time_ms")
    if not isinstance(reason, str) or not _is_ms(time_ms):
        raise ValueError("a latched document needs a string 'reason' and an integer 'time_ms'")
    assert isinstance(time_ms, int)
    return StopRecord(reason, time_ms)


def _write_doc(path: Path, doc: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


@attrs.define
class HardStop:
    """The persisted latch. Build it with `HardStop.load(state_dir, now_ms)` at start-up."""

    path: Path
    _record: StopRecord | None = None
    _persisted: bool = True
    # What `poll` last read: the file's (mtime ns, size, inode), and the last I/O error it logged.
    _seen: tuple[int, int, int] | None = attrs.field(default=None, init=False)
    _poll_error: str | None = attrs.field(default=None, init=False)

    @classmethod
    def load(cls, state_dir: Path, now_ms: int, filename: str = DEFAULT_FILENAME) -> HardStop:
        """Read the latch from `state_dir`; an unreadable file loads as latched at `now_ms` (fail safe).

        The directory is created if missing. A corrupt file is left untouched on disk (it is evidence)
        until an operator's `clear()` replaces it.
        """
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / filename
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path)
        except (OSError, UnicodeError) as exc:
            return cls._unreadable(path, exc, now_ms)
        try:
            record = _parse(text)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return cls._unreadable(path, exc, now_ms)
        if record is not None:
            log.warning("hard stop is latched (since %d): %s", record.time_ms, record.reason)
        return cls(path, record)

    @classmethod
    def _unreadable(cls, path: Path, exc: Exception, now_ms: int) -> HardStop:
        reason = f"hard-stop file {path} is unreadable ({type(exc).__name__}: {exc}); treated as latched"
        log.error("%s", reason)
        return cls(path, StopRecord(reason, now_ms))

    @property
    def latched(self) -> bool:
        """True while the engine must not open positions."""
        return self._record is not None

    @property
    def record(self) -> StopRecord | None:
        """The first reason and its time, or None when clear."""
        return self._record

    @property
    def persisted(self) -> bool:
        """False if the latest latch could not be written to disk (it will survive only this process)."""
        return self._persisted

    def trigger(self, reason: str, now_ms: int) -> bool:
        """Latch with `reason` unless already latched; True if this call latched it. Writes the file
        synchronously. A write failure is logged, not raised: the in-memory latch must hold regardless."""
        newly = self._record is None
        if newly:
            self._record = StopRecord(reason, now_ms)
            self._persisted = False
            log.critical("HARD STOP: %s", reason)
        if not self._persisted:
            assert self._record is not None
            doc = {"version": _VERSION, "latched": True, **attrs.asdict(self._record)}
            try:
                _write_doc(self.path, doc)
            except OSError:
                log.exception("could not persist the hard stop to %s; it holds in memory only", self.path)
            else:
                self._persisted = True
        return newly

    def poll(self, now_ms: int) -> StopRecord | None:
        """Adopt a latch another process wrote into the file since the last look; the adopted record,
        or None (already latched here, the file unchanged, missing, or not latched).

        Cheap enough for every second: one ``stat``, and a read only when the file's mtime, size or
        inode changed (every write replaces the file, so the inode changes even within one mtime tick).
        An I/O error is logged once per distinct error and otherwise ignored (the next poll tries
        again): a stat that fails must never stop trading. A file that reads but does not parse is
        treated as latched, as at start-up (fail safe). The adopted record is the file's own (the
        operator's reason and time); nothing is written.
        """
        if self._record is not None:
            return None
        try:
            st = self.path.stat()
            if (st.st_mtime_ns, st.st_size, st.st_ino) == self._seen:
                return None
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._seen = None
            return None
        except OSError as exc:
            message = f"{type(exc).__name__}: {exc}"
            if message != self._poll_error:
                log.error("cannot check the hard-stop file %s (%s); trying again", self.path, message)
                self._poll_error = message
            return None
        except UnicodeError as exc:
            return self._adopt(self._unreadable(self.path, exc, now_ms).record)
        self._seen, self._poll_error = (st.st_mtime_ns, st.st_size, st.st_ino), None
        try:
            record = _parse(text)
        except ValueError as exc:
            return self._adopt(self._unreadable(self.path, exc, now_ms).record)
        return self._adopt(record)

    def _adopt(self, record: StopRecord | None) -> StopRecord | None:
        if record is not None:
            self._record, self._persisted = record, True
            log.critical("HARD STOP latched in %s by another process: %s", self.path, record.reason)
        return record

    def clear(self, by: str, now_ms: int) -> ClearedRecord | None:
        """Operator action: un-latch, recording who and when. Returns the cleared record for the journal,
        or None if nothing was latched. The file is written before the latch is released, so a failed
        write raises and the engine stays stopped."""
        if not by.strip():
            raise ValueError("clearing the hard stop needs the operator's name")
        if self._record is None:
            return None
        cleared = ClearedRecord(self._record.reason, self._record.time_ms, by, now_ms)
        _write_doc(self.path, {"version": _VERSION, "latched": False, "last_cleared": attrs.asdict(cleared)})
        self._record = None
        self._persisted = True
        log.warning("hard stop cleared by %s: %s", by, cleared.reason)
        return cleared
