"""The recording format: what a recording directory holds and how to read it back.

A recording is a directory of files, one per UTC day of receive time, named ``YYYY-MM-DD.rec.gz``.
Each file is a concatenation of gzip members (a valid multi-member gzip file: ``zcat`` reads it); the
recorder appends one member per flush (at least once a second), so a crash loses at most the member it
was writing, and a reader drops a truncated last member instead of failing. Files are append-only: a
restart on the same day appends new members to the same file.

Each member holds whole lines; a line is one record::

    <recv_us> <kind> <payload>\\n

- ``recv_us``: the receive time in integer microseconds since the epoch (the engine's wall clock);
- ``kind``: ``head`` (a recorder started or opened a new file: payload is a JSON object with at least
  ``format``, ``env`` and ``markets``), ``ws`` (a market-data frame; payload is the frame text exactly as
  received, with any raw newline -- JSON whitespace only, a newline inside a JSON string is escaped --
  replaced by a space), or ``info`` (one info answer of a sync: payload is ``{"req": ..., "resp": ...}``);
- ``payload``: the rest of the line.

Every file starts with a ``head`` record followed by the latest ``info`` answers (``perpDexs``, ``meta``
per dex, ``userFees``), so each day's file is self-contained: a replay or backtest of one file knows the
markets, their asset ids, size decimals and fee scales.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, Literal

import attrs

FORMAT_VERSION: Final = 1
SUFFIX: Final = ".rec.gz"

Kind = Literal["head", "ws", "info"]
KINDS: Final[frozenset[str]] = frozenset({"head", "ws", "info"})


class RecordingError(Exception):
    """A recording that cannot be read: a missing path, no recording files, a malformed line."""


@attrs.frozen(slots=True)
class Record:
    """One line of a recording."""

    recv_us: int
    kind: str
    payload: str

    def json(self) -> Any:
        """The payload decoded as JSON."""
        return json.loads(self.payload)


def file_name_for(recv_us: int) -> str:
    """The file a record received at ``recv_us`` belongs to (its UTC day)."""
    day = dt.datetime.fromtimestamp(recv_us / 1_000_000, tz=dt.UTC).date()
    return f"{day.isoformat()}{SUFFIX}"


def encode_line(recv_us: int, kind: Kind, payload: str) -> str:
    """One record as a line (with its newline)."""
    if "\n" in payload:
        payload = payload.replace("\r\n", " ").replace("\n", " ")
    return f"{recv_us} {kind} {payload}\n"


def encode_json(recv_us: int, kind: Kind, value: Any) -> str:
    """One record whose payload is ``value`` as compact JSON."""
    return encode_line(recv_us, kind, json.dumps(value, separators=(",", ":")))


def compress_member(lines: Iterable[str]) -> bytes:
    """Whole lines as one complete gzip member, ready to append to a recording file."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    data = "".join(lines).encode()
    return compressor.compress(data) + compressor.flush()


def recording_files(source: Path) -> list[Path]:
    """The files of a recording: ``source`` itself if it is a file, else its ``*.rec.gz`` in day order."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise RecordingError(f"no recording at {source}")
    files = sorted(p for p in source.iterdir() if p.name.endswith(SUFFIX) and p.is_file())
    if not files:
        raise RecordingError(f"{source} holds no recording files (*{SUFFIX})")
    return files


@attrs.define
class ReadStats:
    """What a read met besides records: members dropped as truncated (a crash mid-write)."""

    members: int = 0
    truncated_members: int = 0
    truncated_bytes: int = 0


def _member_texts(data: bytes, stats: ReadStats) -> Iterator[bytes]:
    """The decompressed content of each complete gzip member of ``data``; a truncated last member is
    counted and dropped, a corrupt one likewise (nothing after it can be trusted to be aligned)."""
    while data:
        decomp = zlib.decompressobj(31)
        try:
            text = decomp.decompress(data)
        except zlib.error:
            stats.truncated_members += 1
            stats.truncated_bytes += len(data)
            return
        if not decomp.eof:
            stats.truncated_members += 1
            stats.truncated_bytes += len(data)
            return
        stats.members += 1
        yield text
        data = decomp.unused_data


def parse_line(line: str, where: str = "") -> Record:
    """One line as a record; a malformed line raises RecordingError naming ``where``."""
    parts = line.rstrip("\n").split(" ", 2)
    if len(parts) != 3 or parts[1] not in KINDS or not parts[0].isdigit():
        raise RecordingError(f"malformed recording line{where}: {line[:80]!r}")
    return Record(int(parts[0]), parts[1], parts[2])


def iter_records(source: Path, stats: ReadStats | None = None) -> Iterator[Record]:
    """Every record of a recording (a directory or one file), in file then line order."""
    stats = stats if stats is not None else ReadStats()
    for path in recording_files(source):
        for text in _member_texts(path.read_bytes(), stats):
            for number, line in enumerate(text.decode().splitlines(), 1):
                if line:
                    yield parse_line(line, f" in {path.name} (member line {number})")
