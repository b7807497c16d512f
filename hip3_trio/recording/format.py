"""The recording format: what a recording directory holds and how to read it back.

A recording is a directory of files, one per UTC day of receive time, named ``YYYY-MM-DD.rec.gz``.
Each file is a concatenation of gzip members (a valid multi-member gzip file: ``zcat`` reads it); the
recorder appends one member per flush (at least once a second), so a crash loses at most the member it
was writing, and a reader drops a truncated member instead of failing. Files are append-only: a
restart on the same day appends new members to the same file, after the member a crash may have cut
short; a reader skips the cut member's bytes and resumes at the next member (the next gzip header
whose member decompresses with a valid CRC), so nothing written after a crash is lost to it.

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
from typing import Any, Final, Literal, NamedTuple

FORMAT_VERSION: Final = 1
SUFFIX: Final = ".rec.gz"

Kind = Literal["head", "ws", "info"]
KINDS: Final[frozenset[str]] = frozenset({"head", "ws", "info"})


class RecordingError(Exception):
    """A recording that cannot be read: a missing path, no recording files, a malformed line."""


class Record(NamedTuple):
    """One line of a recording (a named tuple: a backtest reads hundreds of thousands a second)."""

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
    """One record as a line (with its newline). A raw CR or LF in a JSON payload can only be whitespace
    (inside a JSON string they are escaped), so each becomes a space; other line separators (U+2028,
    NEL, ...) may stand unescaped inside JSON strings and are kept: lines are split on LF only."""
    if "\n" in payload or "\r" in payload:
        payload = payload.replace("\r", " ").replace("\n", " ")
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


class ReadStats:
    """What a read met besides records: complete members, and members dropped as truncated (a crash
    mid-write) with their bytes. Filled in by `iter_records` as it reads."""

    __slots__ = ("members", "truncated_bytes", "truncated_members")

    def __init__(self) -> None:
        self.members = self.truncated_members = self.truncated_bytes = 0


_GZIP_MAGIC: Final = b"\x1f\x8b\x08"
#: Input is fed to the decompressor in pieces this big, so what it copies past a member's end
#: (`unused_data`) is bounded: reading a file is linear in its size, not in size x members.
_CHUNK: Final = 64 * 1024


def _one_member(view: memoryview, pos: int) -> tuple[bytes, int] | None:
    """The decompressed member starting at ``pos`` and the offset after it; None if it is cut short or
    corrupt (the gzip trailer's CRC and length are checked by zlib)."""
    decomp = zlib.decompressobj(31)
    parts = []
    try:
        while not decomp.eof and pos < len(view):
            chunk = view[pos : pos + _CHUNK]
            parts.append(decomp.decompress(chunk))
            pos += len(chunk) - len(decomp.unused_data)
    except zlib.error:
        return None
    return (b"".join(parts), pos) if decomp.eof else None


def _member_texts(data: bytes, stats: ReadStats) -> Iterator[bytes]:
    """The decompressed content of each complete gzip member of ``data``. A member cut short by a crash
    (or corrupt) is counted and skipped: reading resumes at the next gzip header that starts a valid
    member, which is where a restarted recorder appended."""
    view = memoryview(data)
    pos = 0
    skipping = False  # inside a cut: a header-like run in its bytes does not count as another one
    while pos < len(data):
        member = _one_member(view, pos) if data.startswith(_GZIP_MAGIC, pos) else None
        if member is None:
            resume = data.find(_GZIP_MAGIC, pos + 1)
            end = len(data) if resume < 0 else resume
            stats.truncated_members += 0 if skipping else 1
            stats.truncated_bytes += end - pos
            skipping = True
            pos = end
            continue
        skipping = False
        text, pos = member
        stats.members += 1
        yield text


def _member_records(text: str, where: str) -> Iterator[Record]:
    """The records of one member's text (the hot loop of a backtest: checks inline, the error message,
    with the line's number, built only for a malformed line)."""
    kinds = KINDS
    for line in text.split("\n"):  # LF only: `splitlines` would also split inside JSON strings (U+2028)
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in kinds and parts[0].isdigit():
            yield Record(int(parts[0]), parts[1], parts[2])
        elif line:
            number = text.split("\n").index(line) + 1
            raise RecordingError(f"malformed recording line in {where} (member line {number}): {line[:80]!r}")


def iter_records(source: Path, stats: ReadStats | None = None) -> Iterator[Record]:
    """Every record of a recording (a directory or one file), in file then line order."""
    stats = stats if stats is not None else ReadStats()
    for path in recording_files(source):
        for text in _member_texts(path.read_bytes(), stats):
            yield from _member_records(text.decode(), path.name)
