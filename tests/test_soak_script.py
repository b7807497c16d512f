"""`scripts/soak.py`, quickly: its simulator child's line protocol and its verdict arithmetic.

The soak itself trades in real time for 30 minutes (`.venv/bin/python scripts/soak.py`); these check
the parts that decide its exit code without running it: every fault of the rotation can be armed in the
child over stdin, and the memory / at-rest judgements say what they should on made-up samples.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "soak.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hip3_soak_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


soak = _load()


async def test_simulator_child_arms_every_fault_and_reports() -> None:
    command = [sys.executable, str(SCRIPT), "--serve-sim", "--seed", "3"]
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            process = await nursery.start(
                partial(
                    trio.run_process,
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    check=False,
                    start_new_session=True,
                )
            )
            child = soak.SimChild(process)
            info = await child.read_json()
            assert info["url"].startswith("ws://127.0.0.1:") and info["account"].startswith("0x")
            status = await child.request(cmd="status", tids=True)
            assert status["armed"] == {} and status["positions"] == {} and status["tids"] == []
            assert status["rss_kib"] > 0
            await child.request(cmd="fault", name="lost_posts")
            await child.request(cmd="fault", name="stall")
            armed = (await child.request(cmd="status"))["armed"]
            assert armed == {"lose_posts": 2, "stall_market_data": True}
            # clearing ends the lasting faults (stall, slow replies); counters wait for traffic
            assert (await child.request(cmd="clear"))["armed"] == {"lose_posts": 2}
            for name in soak.ROTATION:
                assert await child.request(cmd="fault", name=name) == {"ok": True}
                await child.request(cmd="clear")
            with pytest.raises(RuntimeError, match="unknown fault"):
                await child.request(cmd="fault", name="no_such_fault")
            await child.close()
            assert await process.wait() == 0


def test_memory_is_judged_after_the_warm_up() -> None:
    # warm-up growth (100 → 110) does not count; later growth does
    flat = soak.memory_verdict([100_000, 110_000, 111_000, 112_000, 112_000], 1, 5.0)
    assert flat.flat and flat.baseline_kib == 110_000 and flat.growth_pct == pytest.approx(200 / 110)
    growing = soak.memory_verdict([100_000, 100_000, 104_000, 106_000, 108_000], 1, 5.0)
    assert not growing.flat and growing.growth_pct == pytest.approx(8.0) and growing.slope_kib_per_min > 0
    assert not soak.memory_verdict([100_000, 101_000], 1, 5.0).flat  # nothing after the warm-up
    assert not soak.memory_verdict([100_000, None, 100_000], 0, 5.0).flat  # unreadable RSS


def _sample(minute: int | str, **sizes: int | None) -> Any:
    return soak.Sample(
        minute=minute,
        at_s=0.0,
        fault=None,
        left={},
        rss_kib=100_000,
        child_rss_kib=None,
        sim_orders=None,
        sim_fills=None,
        objects=0,
        tasks=0,
        sessions_alive=0,
        websockets_alive=0,
        trades=0,
        connects=0,
        orders=0,
        fills=0,
        sizes=sizes,
    )


def test_structures_must_be_empty_at_rest_and_within_their_caps() -> None:
    def never(_engine: Any, _receive: Any) -> None:
        return None

    probes = [
        soak.Probe("posts", "transient", never),
        soak.Probe("queue", "transient", never),
        soak.Probe("orders", "capped", never, 3),
        soak.Probe("oids", "uncapped", never),
        soak.Probe("gone", "transient", never),
    ]
    samples = [
        _sample(0, posts=0, queue=0, orders=0, oids=0, gone=0),
        _sample(1, posts=2, queue=0, orders=2, oids=1, gone=0),
        _sample(2, posts=1, queue=0, orders=4, oids=2, gone=0),
        _sample(3, posts=0, queue=1, orders=4, oids=3, gone=0),
    ]
    rest = _sample("rest", posts=0, queue=1, orders=4, oids=3, gone=None)
    lines, checks, warnings = soak.structure_report(probes, samples, rest, 1)
    failed = {c.name: c.detail for c in checks if not c.ok}
    assert failed.keys() == {"queue", "orders", "gone"}  # not empty; over its cap; probe missing
    assert "must be empty" in failed["queue"] and "cap 3" in failed["orders"] and "missing" in failed["gone"]
    assert warnings == ["oids grows without a cap: 1 → 3 after the warm-up"]
    assert any("NO CAP" in line for line in lines)
    row = soak.row(samples[1], samples[0], samples[1])
    assert len(row.split()) == len(soak.COLUMNS) and "base" in row


def test_the_soak_session_accepts_what_run_engine_passes_every_session() -> None:
    """`app.run_engine` builds each session with keyword arguments (`trace`, `tap`, ...): the soak's
    subclass must take every one of them (it broke when `tap` was added, found only by running it)."""
    import inspect

    from hip3_trio.venue.session import Session

    base = inspect.signature(Session.__init__).parameters
    sub = inspect.signature(soak.SoakSession.__init__).parameters
    assert list(sub) == list(base)
