"""Suite-wide fixtures.

The simulator's default realism (blocks, latency, competing takers, impact) is for users; the tests that
predate it assert exact instant timings and fills against the simulator, so every `SimConfig` built
without an explicit `realism` gets `Realism.off()` here, in one place. Tests of the realism models pass
`realism=` themselves.
"""

from __future__ import annotations

import pytest

from hip3_trio.sim import config as sim_config
from hip3_trio.sim.realism import Realism


@pytest.fixture(autouse=True)
def _instant_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_config, "DEFAULT_REALISM", Realism.off())
