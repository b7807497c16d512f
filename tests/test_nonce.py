"""NonceManager: strictly increasing nonces that track the server clock, and the persisted high water."""

from __future__ import annotations

import itertools
import json
import logging
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hip3_trio.execution.nonce import (
    InSync,
    NonceManager,
    NonceStateError,
    TimeDrift,
    TimeDriftWarning,
    load_high_water,
    save_high_water,
)

T0 = 1_700_000_000_000  # a realistic epoch-ms wall clock
DAY_MS = 86_400_000


class FakeClock:
    """A settable wall clock in ms."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_first_nonce_is_at_least_the_clock() -> None:
    clock = FakeClock()
    assert NonceManager(clock).next() == T0


def test_nonces_are_monotonic() -> None:
    clock = FakeClock()
    mgr = NonceManager(clock)
    issued = []
    for step in (0, 1, 0, 7, 1000, 0, 3):
        clock.now += step
        issued.append(mgr.next())
    assert all(a < b for a, b in itertools.pairwise(issued))
    assert issued[-1] == clock.now  # with the clock ahead of the counter, the nonce is the clock


def test_many_rapid_calls_never_repeat() -> None:
    mgr = NonceManager(FakeClock())  # the clock never moves: 10k calls in "one millisecond"
    issued = [mgr.next() for _ in range(10_000)]
    assert len(set(issued)) == len(issued)
    assert issued == list(range(T0, T0 + 10_000))


def test_clock_going_backwards_never_lowers_the_counter() -> None:
    clock = FakeClock()
    mgr = NonceManager(clock)
    before = mgr.next()
    clock.now -= 60_000  # NTP steps the clock back a minute
    after = [mgr.next() for _ in range(3)]
    assert after == [before + 1, before + 2, before + 3]


def test_sync_fast_forwards_the_counter() -> None:
    clock = FakeClock()
    mgr = NonceManager(clock)
    mgr.next()
    server = T0 + 1_500  # the server is 1.5 s ahead of us
    assert mgr.sync_with_server(server) == InSync(offset_ms=1_500)
    assert mgr.high_water >= server
    assert mgr.next() > server
    # a sync with a server time behind the counter never lowers it
    top = mgr.high_water
    mgr.sync_with_server(T0)
    assert mgr.high_water == top
    assert mgr.next() > top


def test_next_tracks_the_server_time() -> None:
    clock = FakeClock()
    mgr = NonceManager(clock)
    mgr.sync_with_server(T0 - 1_200)  # our clock is 1.2 s fast
    clock.now += 10_000
    assert mgr.approx_server_time_ms() == T0 - 1_200 + 10_000
    assert mgr.next() == T0 - 1_200 + 10_000
    clock.now += 1
    assert mgr.next() == T0 - 1_200 + 10_001


@pytest.mark.parametrize("sign", [1, -1])
def test_drift_of_2001_ms_warns(sign: int, caplog: pytest.LogCaptureFixture) -> None:
    mgr = NonceManager(FakeClock())
    assert isinstance(mgr.sync_with_server(T0 + sign * 2_000), InSync)  # the threshold itself is fine
    with caplog.at_level(logging.WARNING, logger="hip3_trio.execution.nonce"):
        result = mgr.sync_with_server(T0 + sign * 2_001)
    assert result == TimeDriftWarning(offset_ms=sign * 2_001, warn_ms=2_000)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


@pytest.mark.parametrize("sign", [1, -1])
def test_drift_of_5001_ms_is_a_time_drift_error(sign: int, caplog: pytest.LogCaptureFixture) -> None:
    mgr = NonceManager(FakeClock())
    assert isinstance(mgr.sync_with_server(T0 + sign * 5_000), TimeDriftWarning)  # the limit itself
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hip3_trio.execution.nonce"):
        result = mgr.sync_with_server(T0 + sign * 5_001)
    assert isinstance(result, TimeDrift)  # an exception type, so the caller may raise it
    assert (result.offset_ms, result.max_ms) == (sign * 5_001, 5_000)
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    # the offset is still learned: nonces follow the server's clock, not ours
    assert mgr.next() >= T0 + sign * 5_001


def test_drift_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        NonceManager(FakeClock(), warn_drift_ms=6_000, max_drift_ms=5_000)
    with pytest.raises(ValueError):
        NonceManager(FakeClock(), high_water=-1)


# --- the persisted high-water mark -----------------------------------------------------------------


def test_high_water_round_trips_through_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "nonce.json"
    assert load_high_water(path) == 0  # a fresh state directory
    save_high_water(path, 123_456)
    assert load_high_water(path) == 123_456
    save_high_water(path, 123_457)
    assert load_high_water(path) == 123_457
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nonce.json"]  # no temp file left behind


def test_restart_in_the_same_millisecond_or_after_a_clock_step_back_never_reuses_a_nonce(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nonce.json"
    clock = FakeClock()
    first = NonceManager(clock)
    used = [first.next() for _ in range(5)]  # 5 nonces in one millisecond: T0 .. T0+4
    save_high_water(path, first.high_water)

    restarted = NonceManager(clock, high_water=load_high_water(path))  # same millisecond
    assert restarted.next() == used[-1] + 1

    clock.now -= 3_600_000  # the clock stepped back an hour across the restart
    again = NonceManager(clock, high_water=load_high_water(path))
    assert again.next() > used[-1]


def test_a_failed_save_leaves_the_previous_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nonce.json"
    save_high_water(path, 10)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_high_water(path, 11)
    monkeypatch.undo()
    assert load_high_water(path) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nonce.json"]


def test_save_writes_through_fsync_and_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_high_water(tmp_path / "nonce.json", 7)
    assert calls[:2] == ["fsync", "replace"]  # the data is on disk before it becomes visible


@pytest.mark.parametrize(
    "content",
    [
        "",
        "not json",
        "[]",
        "{}",
        '{"nonce_high_water": -1}',
        '{"nonce_high_water": "5"}',
        '{"nonce_high_water": 1.5}',
        '{"nonce_high_water": true}',
    ],
)
def test_a_corrupt_state_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "nonce.json"
    path.write_text(content)
    with pytest.raises(NonceStateError):
        load_high_water(path)


def test_state_file_format(tmp_path: Path) -> None:
    path = tmp_path / "nonce.json"
    save_high_water(path, 42)
    assert json.loads(path.read_text()) == {"nonce_high_water": 42}
    with pytest.raises(ValueError):
        save_high_water(path, -1)


# --- property ------------------------------------------------------------------------------------

small_step = st.integers(-20_000, 20_000)
big_step = st.integers(-3 * DAY_MS, 3 * DAY_MS)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("pass_time"), st.integers(0, 30_000)),
        st.tuples(st.just("step_clock"), st.one_of(small_step, small_step, big_step)),
        st.tuples(st.just("sync"), st.integers(0, 1_000)),  # block time lags real time a little
        st.tuples(st.just("next"), st.integers(1, 20)),
        st.tuples(st.just("restart"), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=operations)
def test_nonces_strictly_increase_and_stay_in_the_server_window(ops: list[tuple[str, int]]) -> None:
    """Over any clock moves, syncs, restarts and calls: nonces strictly increase, are never below the
    server-time estimate, and — while the estimate has stayed within the drift limit — lie within the
    exchange's window (T - 2 days, T + 1 day) of the true server time T (in fact within 5 s + calls)."""
    limit = 5_000
    server = T0  # the true server clock
    skew = 0  # local clock = server + skew
    clock = FakeClock()

    def sync_local() -> None:
        clock.now = server + skew

    mgr = NonceManager(clock)
    issued: list[int] = []
    overshot = False  # once an estimate ran ahead by more than the limit, the high water may be ahead too
    for op, arg in ops:
        if op == "pass_time":
            server += arg
        elif op == "step_clock":
            skew += arg
        elif op == "restart":
            mgr = NonceManager(clock, high_water=mgr.high_water)  # offset forgotten, high water persisted
        sync_local()
        if op == "sync":
            result = mgr.sync_with_server(server - arg)
            assert isinstance(result, TimeDrift) == (abs(skew + arg) > limit)
        elif op == "next":
            for _ in range(arg):
                estimate = mgr.approx_server_time_ms()
                error = estimate - server
                overshot = overshot or error > limit
                nonce = mgr.next()
                assert not issued or nonce > issued[-1]
                assert nonce >= estimate
                issued.append(nonce)
                if abs(error) <= limit and not overshot:
                    assert server - 2 * DAY_MS < nonce < server + DAY_MS
                    assert server - limit - 1_000 <= nonce <= server + limit + len(issued)
