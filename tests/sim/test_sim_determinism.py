"""A seed fixes the market path; dislocations appear at the configured rate and size."""

from __future__ import annotations

from typing import Any

import trio
from trio.testing import MockClock

from hip3_trio.sim.config import MarketModel, SimConfig
from hip3_trio.sim.markets import DEFAULT_DEXES, Market, build_specs
from hip3_trio.sim.server import Simulator

from .client import connect
from .conftest import BASE_MS


async def _record(seed: int, seconds: float) -> list[dict[str, Any]]:
    async with trio.open_nursery() as nursery:
        sim = Simulator.create(SimConfig(seed=seed, base_epoch_ms=BASE_MS))
        await nursery.start(sim.run)
        frames: list[dict[str, Any]] = []
        async with connect(sim) as c:
            await c.subscribe({"type": "activeAssetCtx", "coin": "xyz:COIN"})
            await c.subscribe({"type": "l2Book", "coin": "xyz:NVDA"})
            with trio.move_on_after(seconds):
                while True:
                    frames.append(await c.frame())
        nursery.cancel_scope.cancel()
    return frames


async def test_same_seed_same_frames(autojump_clock: MockClock) -> None:
    a = await _record(7, 30)
    b = await _record(7, 30)
    c = await _record(8, 30)
    assert len(a) >= 20  # ten oracle updates, two streams
    assert a == b
    assert a != c


def _dislocations(model: MarketModel, steps: int) -> list[float]:
    spec = next(s for s in build_specs(DEFAULT_DEXES) if s.name == "xyz:COIN")
    market = Market.create(spec, model, seed=7)
    gaps = []
    for _ in range(steps):
        market.step()
        mid = market.mid()
        assert mid is not None
        gaps.append(float(abs(mid - market.oracle) / market.oracle) * 10_000)
    return gaps


def test_dislocation_rate_and_size() -> None:
    calm = _dislocations(MarketModel(dislocation_rate=0.0), 300)
    assert max(calm) < 5  # the book sits on the oracle: only spread and rounding
    busy = _dislocations(MarketModel(dislocation_rate=0.2, dislocation_bps=40.0, dislocation_updates=2), 300)
    dislocated = [g for g in busy if g > 15]
    assert 60 <= len(dislocated) <= 160  # ~ 0.2 * 2 updates each, of 300
    assert max(busy) < 40 * 1.5 + 5
