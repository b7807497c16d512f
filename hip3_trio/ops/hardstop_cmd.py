"""Operator control of the hard stop: ``python -m hip3_trio hardstop {status,trip,clear} [--state-dir DIR]
[--config FILE]``.

``status`` prints whether the latch in ``<state_dir>/hard_stop.json`` holds, its (first) reason and time,
and who last cleared it, when that is recorded — in the latch file after a clear, else in the journal's
latest ``hard_stop_cleared`` event (read-only). Exit code: 0 not latched, 1 latched (so scripts and
health checks can test it), 2 error.

``clear --yes [--by NAME]`` releases the latch through `HardStop.clear` (the file is rewritten atomically,
recording who and when) and then journals an ``EventRecord(kind="hard_stop_cleared")`` with detail
``cleared_by``, ``cleared_at_ms``, ``reason`` and ``stopped_at_ms``. Without ``--yes`` it refuses (exit 2)
and leaves the latch alone: clearing lets the engine open positions again, so it must be deliberate. The
operator defaults to ``user@host`` (`getpass.getuser`, `socket.gethostname`). Exit code: 0 cleared (or
nothing was latched); 1 cleared, but the journal event could not be written (the latch file still records
who and when); 2 refused or failed, latch unchanged.

``trip --reason TEXT [--by NAME]`` latches it now ("a serious log line: stop at once"): the latch file is
written through `HardStop.trigger` with the reason ``operator NAME: TEXT``, then an
``EventRecord(kind="hard_stop_tripped")`` is journaled with detail ``tripped_by``, ``tripped_at_ms`` and
``reason``. A running engine on that state directory sees the file change within half a second
(`HardStop.poll`) and acts as on any hard stop: no new entries, every position flattened; a stopped one
comes back latched. A latch already set keeps its first reason: nothing is written (exit 0). Exit code:
0 latched; 1 latched, but the journal event could not be written; 2 refused or the latch file could not
be written (the engine was not stopped).

The latch is loaded by the engine at start-up, and a latch another process writes is adopted while it
runs; a clear is not: an engine that is already running keeps its in-memory latch until it is restarted,
so clear it, then restart the engine.

All commands refuse a state directory that does not exist (exit 2) rather than report "not latched" for a
mistyped ``--state-dir`` (`HardStop.load` would create it). The state directory is found as the engine
finds it: ``--state-dir``, else the ``--config`` file's ``paths.state_dir``, else ``$HIP3_STATE_DIR``, else
``./hip3-state`` (`hip3_trio.ops.options`); a config file the engine would refuse is an error (exit 2).
Everything, errors included, is written through ``out``, except argparse's own usage errors (stderr) and
``--help``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from hip3_trio.config import ConfigError
from hip3_trio.journal import (
    EventRecord,
    Journal,
    JournalError,
    JournalUnavailable,
    journal_path,
    open_journal_read_only,
)
from hip3_trio.ops.options import add_state_dir_options, run_command, state_dir_of
from hip3_trio.ops.report import format_time_ms
from hip3_trio.risk.hard_stop import DEFAULT_FILENAME, ClearedRecord, HardStop

__all__ = [
    "CLEARED_EVENT_KIND",
    "TRIPPED_EVENT_KIND",
    "build_parser",
    "default_operator",
    "last_cleared",
    "main",
]

PROG: Final = "python -m hip3_trio hardstop"
CLEARED_EVENT_KIND: Final = "hard_stop_cleared"
TRIPPED_EVENT_KIND: Final = "hard_stop_tripped"

EXIT_OK: Final = 0
EXIT_LATCHED: Final = 1
EXIT_NOT_JOURNALED: Final = 1
EXIT_ERROR: Final = 2


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def default_operator() -> str:
    """``user@host`` of whoever runs the command (``unknown`` for a user the system cannot name)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no $USER/$LOGNAME and no passwd entry (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _cleared_from_dict(doc: object) -> ClearedRecord | None:
    if not isinstance(doc, dict):
        return None
    reason, time_ms = doc.get("reason"), doc.get("time_ms", doc.get("stopped_at_ms"))
    by, at = doc.get("cleared_by"), doc.get("cleared_at_ms")
    if not (isinstance(reason, str) and isinstance(by, str) and isinstance(time_ms, int)):
        return None
    if not isinstance(at, int):
        return None
    return ClearedRecord(reason, time_ms, by, at)


def _cleared_from_file(state_dir: Path) -> ClearedRecord | None:
    """The ``last_cleared`` entry `HardStop.clear` writes into an un-latched file (None if absent)."""
    try:
        doc = json.loads((state_dir / DEFAULT_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _cleared_from_dict(doc.get("last_cleared")) if isinstance(doc, dict) else None


def _cleared_from_journal(state_dir: Path) -> ClearedRecord | None:
    """The latest ``hard_stop_cleared`` event in the journal, read-only (None if none or no journal)."""
    try:
        conn = open_journal_read_only(journal_path(state_dir))
    except JournalUnavailable:
        return None
    try:
        row = conn.execute(
            "SELECT detail FROM events WHERE kind = ? ORDER BY time_ms DESC, id DESC LIMIT 1",
            (CLEARED_EVENT_KIND,),
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if row is None:
        return None
    try:
        return _cleared_from_dict(json.loads(row[0]))
    except ValueError:
        return None


def last_cleared(state_dir: Path) -> ClearedRecord | None:
    """Who last cleared the latch in `state_dir`, and when, if anything recorded it."""
    return _cleared_from_file(state_dir) or _cleared_from_journal(state_dir)


def _when(ms: int) -> str:
    return f"{format_time_ms(ms)} ({ms})"


def _missing_dir(state_dir: Path, out: Callable[[str], None]) -> bool:
    if state_dir.is_dir():
        return False
    out(f"error: state directory {state_dir} does not exist (wrong --state-dir or $HIP3_STATE_DIR?)")
    return True


def status(state_dir: Path, out: Callable[[str], None]) -> int:
    """Print the latch in `state_dir`; 0 when clear, 1 when latched, 2 when the directory is missing."""
    if _missing_dir(state_dir, out):
        return EXIT_ERROR
    stop = HardStop.load(state_dir, _now_ms())
    record = stop.record
    if record is None:
        out("hard stop: not latched")
    else:
        out("hard stop: LATCHED — the engine will not open positions")
        out(f"  reason: {record.reason}")
        out(f"  since:  {_when(record.time_ms)}")
    cleared = last_cleared(state_dir)
    if cleared is not None:
        out(f"last cleared by {cleared.cleared_by} at {_when(cleared.cleared_at_ms)}")
        out(f"  it had stopped at {_when(cleared.time_ms)}: {cleared.reason}")
    out(f"state: {stop.path}")
    return EXIT_LATCHED if record is not None else EXIT_OK


def _cleared_event(cleared: ClearedRecord) -> EventRecord:
    return EventRecord(
        time_ms=cleared.cleared_at_ms,
        kind=CLEARED_EVENT_KIND,
        detail={
            "cleared_by": cleared.cleared_by,
            "cleared_at_ms": cleared.cleared_at_ms,
            "reason": cleared.reason,
            "stopped_at_ms": cleared.time_ms,
        },
    )


def clear(state_dir: Path, *, by: str, yes: bool, out: Callable[[str], None]) -> int:
    """Clear the latch in `state_dir` as operator `by` and journal it; see the module docstring's codes."""
    if not yes:
        out(
            "error: refusing to clear the hard stop without --yes. Clearing lets the engine open positions "
            "again once it restarts: check why it stopped (hardstop status), then rerun with --yes."
        )
        return EXIT_ERROR
    if not _operator_ready(state_dir, by, out):
        return EXIT_ERROR
    now = _now_ms()
    stop = HardStop.load(state_dir, now)
    try:
        cleared = stop.clear(by.strip(), now)
    except OSError as exc:
        out(f"error: could not write {stop.path}: {exc}; the hard stop is still latched")
        return EXIT_ERROR
    if cleared is None:
        out("hard stop: not latched; nothing to clear")
        return EXIT_OK
    out(f"hard stop cleared by {cleared.cleared_by} at {_when(cleared.cleared_at_ms)}")
    out(f"  it had stopped at {_when(cleared.time_ms)}: {cleared.reason}")
    return _journal(
        state_dir, _cleared_event(cleared), "cleared", out, then="; restart the engine for it to take effect"
    )


def _operator_ready(state_dir: Path, by: str, out: Callable[[str], None]) -> bool:
    """An operator action needs the operator's name and an existing state directory (else one line)."""
    if not by.strip():
        out("error: --by needs the operator's name")
        return False
    return not _missing_dir(state_dir, out)


def _journal(
    state_dir: Path, event: EventRecord, latch: str, out: Callable[[str], None], then: str = ""
) -> int:
    """Journal `event` after the latch was `latch` ("set", "cleared"): EXIT_OK, or EXIT_NOT_JOURNALED and
    one line saying the latch changed all the same."""
    try:
        with Journal.open(state_dir) as journal:
            journal.write([event])
    except (JournalError, sqlite3.Error, OSError) as exc:
        out(f"error: the latch is {latch}, but the {event.kind} event could not be journaled: {exc}")
        return EXIT_NOT_JOURNALED
    out(f"journaled as {event.kind}{then}")
    return EXIT_OK


def trip(state_dir: Path, *, reason: str, by: str, out: Callable[[str], None]) -> int:
    """Latch the hard stop in `state_dir` now, as operator `by`, and journal it; see the module docstring."""
    if not reason.strip():
        out("error: --reason needs the reason for stopping (it is what the engine and `status` show)")
        return EXIT_ERROR
    if not _operator_ready(state_dir, by, out):
        return EXIT_ERROR
    now = _now_ms()
    stop = HardStop.load(state_dir, now)
    if stop.record is not None:
        out(f"hard stop: already LATCHED since {_when(stop.record.time_ms)}: {stop.record.reason}")
        out("  nothing changed (the latch keeps its first reason)")
        return EXIT_OK
    stop.trigger(f"operator {by.strip()}: {reason.strip()}", now)
    if not stop.persisted:
        out(f"error: could not write {stop.path}; the hard stop is NOT latched (check the directory's owner)")
        return EXIT_ERROR
    out(f"hard stop LATCHED by {by.strip()} at {_when(now)}: {reason.strip()}")
    out("  a running engine on this state directory stops opening positions and flattens within a second;")
    out("  it stays stopped across restarts until `hardstop clear --yes`")
    event = EventRecord(
        time_ms=now,
        kind=TRIPPED_EVENT_KIND,
        detail={"tripped_by": by.strip(), "tripped_at_ms": now, "reason": reason.strip()},
    )
    return _journal(state_dir, event, "set", out)


def build_parser() -> argparse.ArgumentParser:
    """The ``hardstop`` subcommand's arguments."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Show, trip or clear the persisted hard-stop latch."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{status,trip,clear}")
    state_dir = argparse.ArgumentParser(add_help=False)
    add_state_dir_options(state_dir)
    commands.add_parser(
        "status",
        parents=[state_dir],
        help="print the latch (exit 0 clear, 1 latched)",
        description="Print the latch, its reason and time, and who cleared it last. Exit 0 clear, 1 latched.",
    )
    trip_cmd = commands.add_parser(
        "trip",
        parents=[state_dir],
        help="latch it now (a running engine flattens and stops opening positions)",
        description="Latch the hard stop now and journal who did it, when and why. A running engine on "
        "this state directory acts on it within a second: no new entries, every position flattened.",
    )
    trip_cmd.add_argument(
        "--reason", metavar="TEXT", required=True, help="why (shown by the engine and status)"
    )
    trip_cmd.add_argument("--by", metavar="NAME", default=None, help="operator name (default: user@host)")
    clear_cmd = commands.add_parser(
        "clear",
        parents=[state_dir],
        help="clear the latch (needs --yes)",
        description="Clear the latch and journal who cleared it and when.",
    )
    clear_cmd.add_argument("--yes", action="store_true", help="really clear it")
    clear_cmd.add_argument("--by", metavar="NAME", default=None, help="operator name (default: user@host)")
    return parser


def main(argv: Sequence[str], *, out: Callable[[str], None] = print) -> int:
    """Run ``python -m hip3_trio hardstop`` with `argv` (the arguments after ``hardstop``); the exit code."""
    return run_command(build_parser(), argv, lambda args: _hardstop(args, out))


def _hardstop(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """``hardstop`` on its parsed arguments."""
    try:
        state_dir = state_dir_of(args)
    except ConfigError as exc:
        out(f"error: {exc}")
        return EXIT_ERROR
    if args.command == "status":
        return status(state_dir, out)
    by = default_operator() if args.by is None else args.by
    if args.command == "trip":
        return trip(state_dir, reason=args.reason, by=by, out=out)
    return clear(state_dir, by=by, yes=args.yes, out=out)
