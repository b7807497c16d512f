"""The recording format: lines, members, files per UTC day, and a reader that survives a crash."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from hip3_trio.recording.format import (
    ReadStats,
    RecordingError,
    compress_member,
    encode_json,
    encode_line,
    file_name_for,
    iter_records,
)

DAY_US = 1_795_000_000_000_000  # 2026-11-18T...Z


def test_file_name_is_the_utc_day() -> None:
    assert file_name_for(0) == "1970-01-01.rec.gz"
    assert file_name_for(86_400_000_000 - 1) == "1970-01-01.rec.gz"
    assert file_name_for(86_400_000_000) == "1970-01-02.rec.gz"


def test_lines_round_trip_and_raw_newlines_become_spaces(tmp_path: Path) -> None:
    path = tmp_path / file_name_for(DAY_US)
    lines = [
        encode_json(DAY_US, "head", {"format": 1, "env": "sim", "markets": ["xyz:COIN"]}),
        encode_line(DAY_US + 5, "ws", '{"channel":"bbo",\n"data":{}}'),
        encode_json(DAY_US + 9, "info", {"req": {"type": "perpDexs"}, "resp": [None]}),
    ]
    path.write_bytes(compress_member(lines[:2]) + compress_member(lines[2:]))
    records = list(iter_records(tmp_path))
    assert [(r.recv_us, r.kind) for r in records] == [
        (DAY_US, "head"),
        (DAY_US + 5, "ws"),
        (DAY_US + 9, "info"),
    ]
    assert records[1].json() == {"channel": "bbo", "data": {}}
    assert records[2].json()["req"] == {"type": "perpDexs"}


def test_a_truncated_last_member_is_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / file_name_for(DAY_US)
    whole = compress_member([encode_line(DAY_US, "ws", "{}")])
    partial = compress_member([encode_line(DAY_US + 1, "ws", "{}")])[:-7]
    path.write_bytes(whole + partial)
    stats = ReadStats()
    assert [r.recv_us for r in iter_records(path, stats)] == [DAY_US]
    assert (stats.members, stats.truncated_members, stats.truncated_bytes) == (1, 1, len(partial))


def test_files_are_read_in_day_order(tmp_path: Path) -> None:
    for day in (2, 0, 1):
        t = DAY_US + day * 86_400_000_000
        (tmp_path / file_name_for(t)).write_bytes(compress_member([encode_line(t, "ws", "{}")]))
    (tmp_path / "notes.txt").write_text("not a recording")
    assert [r.recv_us for r in iter_records(tmp_path)] == [DAY_US + d * 86_400_000_000 for d in range(3)]


def test_bad_sources_and_lines_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no recording at"):
        list(iter_records(tmp_path / "missing"))
    with pytest.raises(RecordingError, match="holds no recording files"):
        list(iter_records(tmp_path))
    path = tmp_path / file_name_for(DAY_US)
    path.write_bytes(compress_member(["12x ws {}\n"]))
    with pytest.raises(RecordingError, match="malformed recording line in"):
        list(iter_records(tmp_path))


def test_a_member_cut_by_a_crash_is_skipped_and_reading_resumes_after_it(tmp_path: Path) -> None:
    """A restart on the same day appends after the member the crash cut short: nothing after is lost."""
    path = tmp_path / file_name_for(DAY_US)
    before = compress_member([encode_line(DAY_US, "ws", "{}")])
    cut = compress_member([encode_line(DAY_US + 1, "ws", '{"lost":1}')])[:-9]
    after = [compress_member([encode_line(DAY_US + t, "ws", "{}")]) for t in (2, 3)]
    path.write_bytes(before + cut + b"".join(after))
    stats = ReadStats()
    assert [r.recv_us for r in iter_records(path, stats)] == [DAY_US, DAY_US + 2, DAY_US + 3]
    assert (stats.members, stats.truncated_members, stats.truncated_bytes) == (3, 1, len(cut))


def test_reading_is_linear_in_the_members(tmp_path: Path) -> None:
    """Many small members (one a second for a day) read without copying the rest of the file each time."""
    path = tmp_path / file_name_for(DAY_US)
    noise = random.Random(1).randbytes(300).hex()  # incompressible: a 10 MB file
    member = compress_member([encode_line(DAY_US, "ws", f'{{"n":"{noise}"}}')])
    path.write_bytes(member * 20_000)
    stats = ReadStats()
    assert sum(1 for _ in iter_records(path, stats)) == 20_000
    assert stats.members == 20_000


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x1c"])
def test_a_line_separator_inside_a_json_string_is_kept(tmp_path: Path, separator: str) -> None:
    """Frames are recorded as received: a JSON string may hold U+2028, NEL, ... unescaped. Lines are
    split on LF only, so such a frame reads back whole (found in review: `splitlines` cut it)."""
    text = '{"channel":"bbo","data":{"coin":"xyz:A' + separator + 'B"}}'
    path = tmp_path / file_name_for(DAY_US)
    path.write_bytes(compress_member([encode_line(DAY_US, "ws", text), encode_line(DAY_US + 1, "ws", "{}")]))
    assert [r.payload for r in iter_records(path)] == [text, "{}"]


def test_raw_cr_and_lf_in_a_payload_become_spaces(tmp_path: Path) -> None:
    path = tmp_path / file_name_for(DAY_US)
    path.write_bytes(compress_member([encode_line(DAY_US, "ws", '{"a":\r1,\r\n"b":\n2}')]))
    (record,) = iter_records(path)
    assert record.payload == '{"a": 1,  "b": 2}' and record.json() == {"a": 1, "b": 2}
