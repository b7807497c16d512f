"""The recorder: every market-data frame the engine receives, and the sync's metadata answers, on disk.

Two halves, like the journal's (`journal.JournalSink` / `run_journal`):

- the tap (`Recorder.frame`, `Recorder.info`), called synchronously by the session: the reader, after
  a market-data frame's step (`venue/session.py` ``_reader``), and ``Session.info`` for every answer.
  A frame costs one wall-clock read and one ``send_nowait`` of ``(recv_us, "ws", text)`` onto a bounded
  memory channel; when the channel is full (the writer is stalled) the frame is dropped and counted,
  never waited for. Info answers are kept only for ``perpDexs``, ``meta`` and ``userFees``
  (`RECORDED_INFO`): the markets, their asset ids and size decimals, and the fee rates.
- the writer (`Recorder.run`), a task of the engine's root nursery (`app.run_engine`): it takes what is
  queued, and at most `flush_every_s` (1 s) after the first record it holds it compresses them into one
  gzip member and appends it to the day's file, flushes and fsyncs it — in a worker thread, so neither
  compression nor the disk ever holds the Trio thread. A record whose receive time is in a new UTC day
  starts that day's file with a ``head`` record and the latest info answers (`format.py` is the
  format's one definition).

Durability: each flush is ``write`` + ``flush`` + ``fsync`` of one complete member (and an fsync of the
directory when it creates a file), so a crash of the process or of the machine loses at most what was
received in the last `flush_every_s` and not yet written; a member cut short by the crash is dropped by
the reader (`format.iter_records`). One fsync a second is the cost, on the writer's thread.

A failure of the recorder (disk full, permission, a bug) ends the recorder alone: one log line, the
`on_failure` callback (the engine's alert), `RecorderStatistics.failed` (the metrics), and the tap counts
every later frame as dropped. Trading never waits for it and never stops because of it.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from hip3_trio.atomic import fsync_dir, unwritable_dir
from hip3_trio.errors import EnvironmentProblem
from hip3_trio.recording.format import (
    FORMAT_VERSION,
    Kind,
    compress_member,
    encode_json,
    encode_line,
    file_name_for,
)

__all__ = [
    "DEFAULT_CAPACITY",
    "RECORDED_INFO",
    "Recorder",
    "RecorderStatistics",
    "prepare_record_dir",
    "wall_clock_us",
]

log = logging.getLogger(__name__)

#: The info answers a recording keeps: what a replay or backtest needs to know the markets and fees.
RECORDED_INFO: Final = frozenset({"perpDexs", "meta", "userFees"})
#: Records queued for the writer at most (3 to 17 MB of frames): a stalled disk costs frames, not memory.
DEFAULT_CAPACITY: Final = 10_000
#: The writer writes what it holds at most this long after the first of it arrived.
FLUSH_EVERY_S: Final = 1.0
#: ... and sooner when it holds this many bytes of lines.
MAX_MEMBER_BYTES: Final = 4 * 1024 * 1024
#: After `Recorder.close`, the writer has this long to write what is queued.
CLOSE_DEADLINE_S: Final = 5.0

_Item = tuple[int, Kind, str | bytes]
BlockingRunner = Callable[[Callable[[], int]], Awaitable[int]]
"""How the writer runs a blocking write (compress, append, fsync): in a worker thread (the default), or
inline in tests under the autojump clock (a thread the clock cannot see lets virtual time run ahead)."""


def wall_clock_us() -> int:
    """The receive time stamp: microseconds since the epoch, from the wall clock."""
    return time.time_ns() // 1000


async def run_in_thread(write: Callable[[], int]) -> int:
    """The default `BlockingRunner`. Abandoned on cancel, so a disk that hangs cannot hold up a stop."""
    return await trio.to_thread.run_sync(write, abandon_on_cancel=True)


def prepare_record_dir(directory: Path) -> None:
    """Create the recording directory if missing and prove this user can write there, before anything
    starts (``--record DIR``). `EnvironmentProblem` (exit 3) if not."""
    problem = unwritable_dir(directory)
    if problem is not None:
        raise EnvironmentProblem(
            f"--record {directory}: the directory {problem}; give a directory this user can write, or "
            "create it (install -d -m 0750 DIR)"
        )


@attrs.frozen(kw_only=True)
class RecorderStatistics:
    """A snapshot of the recorder: what it took, dropped and wrote, and whether it failed."""

    frames: int  # market-data frames written
    infos: int  # info answers written (restated ones at the start of a file included)
    dropped: int  # records the tap could not queue (writer stalled, failed or stopped)
    queued: int  # records taken by the tap and not written yet (queued, or held for the next flush)
    bytes: int  # compressed bytes appended
    members: int  # gzip members appended (one per flush)
    files: int  # files started (a head written): one per run and per UTC day
    last_flush_us: int | None  # the wall-clock time of the last completed flush
    failed: str | None  # why the recorder stopped, if it did


@attrs.define
class _Segment:
    """Lines bound for one file."""

    path: Path
    lines: list[str] = attrs.Factory(list)
    frames: int = 0
    infos: int = 0


class Recorder:
    """The tap and the writer of one recording directory (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        *,
        env: str,
        markets: Sequence[str],
        depth: bool = True,
        clock_us: Callable[[], int] = wall_clock_us,
        capacity: int = DEFAULT_CAPACITY,
        flush_every_s: float = FLUSH_EVERY_S,
        max_member_bytes: int = MAX_MEMBER_BYTES,
        run_write: BlockingRunner = run_in_thread,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.directory = directory
        self.env = env
        self.markets = tuple(markets)
        #: Subscribe `l2Book` as well, so a replay can fill beyond the top level (`VenueLink.sync`).
        self.depth = depth
        self.clock_us = clock_us
        self.flush_every_s = flush_every_s
        self.max_member_bytes = max_member_bytes
        self.run_write = run_write
        self.on_failure = on_failure
        self._send, self._receive = trio.open_memory_channel[_Item](capacity)
        self._scope: trio.CancelScope | None = None
        # Writer side: the latest answer per request (restated at the start of every file), the file
        # being written and what waits for the next flush.
        self._info: dict[str, str] = {}
        self._file: Path | None = None
        self._pending: list[_Segment] = []
        self._pending_bytes = 0
        self.dropped = 0
        self.frames = 0
        self.infos = 0
        self.bytes = 0
        self.members = 0
        self.files = 0
        self.last_flush_us: int | None = None
        self.failed: str | None = None

    # --- the tap (synchronous, never blocks, never raises) ------------------------------------------

    def now_us(self) -> int:
        """The receive time stamp for a frame arriving now (the injected wall clock)."""
        return self.clock_us()

    def frame(self, recv_us: int, text: str | bytes) -> None:
        """A market-data frame as received at `recv_us`: queued for the writer, or dropped and counted."""
        try:
            self._send.send_nowait((recv_us, "ws", text))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.dropped += 1

    def info(self, request: Mapping[str, Any], answer: Any) -> None:
        """An info answer; kept if its request is one of `RECORDED_INFO`."""
        if request.get("type") not in RECORDED_INFO:
            return
        payload = json.dumps({"req": dict(request), "resp": answer}, separators=(",", ":"))
        try:
            self._send.send_nowait((self.clock_us(), "info", payload))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.dropped += 1

    def statistics(self) -> RecorderStatistics:
        return RecorderStatistics(
            frames=self.frames,
            infos=self.infos,
            dropped=self.dropped,
            queued=self._send.statistics().current_buffer_used
            + sum(s.frames + s.infos for s in self._pending),
            bytes=self.bytes,
            members=self.members,
            files=self.files,
            last_flush_us=self.last_flush_us,
            failed=self.failed,
        )

    def summary(self) -> str:
        """One line for the status line's tail and the exit summary."""
        s = self.statistics()
        text = f"recorded {s.frames} frames, dropped {s.dropped}, {s.bytes} bytes in {s.files} file(s)"
        return text + (f", FAILED: {s.failed}" if s.failed else "")

    def close(self) -> None:
        """No more records: the writer writes what is queued (within `CLOSE_DEADLINE_S`) and returns."""
        self._send.close()
        if self._scope is not None:
            self._scope.deadline = min(self._scope.deadline, trio.current_time() + CLOSE_DEADLINE_S)

    # --- the writer ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Write until `close`; a failure ends this task alone (logged, counted, `on_failure`)."""
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                await self._write_loop()
            except OSError as exc:
                self._fail(f"{exc.strerror or exc} ({self._file or self.directory})")
            except Exception as exc:  # a bug: loud, but trading goes on without the recording
                log.exception("recorder failed (a bug)")
                self._fail(f"{type(exc).__name__}: {exc}")
        if scope.cancelled_caught:
            log.error("recorder stopped at its deadline with %d records unwritten", self.statistics().queued)
        self._receive.close()

    def _fail(self, reason: str) -> None:
        self.failed = reason
        self._receive.close()  # later frames are counted as dropped at the tap
        log.error("recording to %s stopped: %s; trading goes on without it", self.directory, reason)
        if self.on_failure is not None:
            self.on_failure(reason)

    async def _write_loop(self) -> None:
        deadline = math.inf
        while True:
            with trio.move_on_at(deadline):
                try:
                    item = await self._receive.receive()
                except trio.EndOfChannel:
                    await self._flush()
                    return
                self._add(item)
                while self._pending_bytes < self.max_member_bytes:
                    try:
                        item = self._receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    self._add(item)
            now = trio.current_time()
            if now >= deadline or self._pending_bytes >= self.max_member_bytes:
                await self._flush()
                deadline = math.inf
            elif deadline == math.inf:
                deadline = now + self.flush_every_s

    def _add(self, item: _Item) -> None:
        recv_us, kind, payload = item
        path = self.directory / file_name_for(recv_us)
        if self._file is not None and path.name < self._file.name:
            # Stamped just before midnight but queued behind one stamped after it (a frame is queued
            # after its step, an info answer at once): it goes on in the new day's file, in queue order,
            # rather than back and forth between two files.
            path = self._file
        if path != self._file:
            self._start_file(path, recv_us, "start" if self._file is None else "rotate")
        elif not self._pending:
            self._pending.append(_Segment(path))
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8", errors="replace")
        line = encode_line(recv_us, kind, payload)
        segment = self._pending[-1]
        if kind == "info":
            self._info[json.dumps(json.loads(payload)["req"], sort_keys=True)] = payload
            segment.infos += 1
        else:
            segment.frames += 1
        segment.lines.append(line)
        self._pending_bytes += len(line)

    def _start_file(self, path: Path, recv_us: int, reason: str) -> None:
        """A new file (or this run's first member of an existing day's file): a head and the latest info
        answers first, so each file is self-contained. Restated answers carry the head's time."""
        self._file = path
        self.files += 1
        head = {"format": FORMAT_VERSION, "env": self.env, "markets": list(self.markets)}
        head |= {"reason": reason, "depth": self.depth}
        lines = [encode_json(recv_us, "head", head)]
        lines += [encode_line(recv_us, "info", payload) for payload in self._info.values()]
        self._pending.append(_Segment(path, lines, infos=len(self._info)))
        self._pending_bytes += sum(map(len, lines))

    async def _flush(self) -> None:
        """Append each pending segment to its file as one member (flushed and fsynced)."""
        while self._pending:
            segment = self._pending[0]
            written = await self.run_write(functools.partial(_append, segment.path, segment.lines))
            self._pending.pop(0)
            self.frames += segment.frames
            self.infos += segment.infos
            self.bytes += written
            self.members += 1
            self.last_flush_us = self.clock_us()
        self._pending_bytes = 0


def _append(path: Path, lines: list[str]) -> int:
    """Compress `lines` into one member, append it and make it durable (and the file's name, when this
    created the file); returns the bytes appended."""
    data = compress_member(lines)
    created = not path.exists()
    with path.open("ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if created:
        fsync_dir(path.parent)
    return len(data)
