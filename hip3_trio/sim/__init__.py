"""A protocol-faithful local Hyperliquid-like exchange for rehearsal and tests.

In process::

    async with open_simulator(SimConfig(seed=7)) as sim:
        sim.url, sim.account, sim.account_key   # ws://127.0.0.1:PORT/ws, funded address, throwaway key
        sim.faults.drop_replies = 1             # arm a fault

Over an in-memory stream (tests)::

    sim = Simulator.create(SimConfig(base_epoch_ms=...)); sim.add_account(addr)
    await nursery.start(sim.run)
    stream = sim.connect_memory(nursery)        # client end; wrap with trio_websocket.wrap_client_stream

Standalone: ``python -m hip3_trio.sim --port 8765 --seed 7``.

The simulator never imports the engine: it verifies signatures, nonces and shapes on its own.
"""

from .config import MarketModel, SimConfig
from .faults import Faults
from .server import Simulator, open_simulator

__all__ = ["Faults", "MarketModel", "SimConfig", "Simulator", "open_simulator"]
