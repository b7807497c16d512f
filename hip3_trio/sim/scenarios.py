"""Named fault scenarios: the misbehaviours a fault drill or a soak arms, one call each.

Each scenario flips the switches of one ``Simulator``'s ``Faults`` (and may drop connections); the
counters are consumed by traffic, the lasting ones (a market-data stall, slow replies) stay on until
``clear_lasting``. Shared by the engine's fault tests and ``scripts/soak.py`` so both drill the same
faults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from .faults import Faults
from .server import Simulator

__all__ = ["SCENARIOS", "armed", "clear_lasting"]


def _drop(sim: Simulator) -> None:
    sim.close_all()


def _duplicates(sim: Simulator) -> None:
    sim.faults.duplicate_replies = 3


def _stall(sim: Simulator) -> None:
    sim.faults.stall_market_data = True


def _no_replies(sim: Simulator) -> None:
    sim.faults.drop_replies = 2
    sim.faults.skip_ioc_order_updates = 2


def _lost_posts(sim: Simulator) -> None:
    sim.faults.lose_posts = 2


def _bad_frames(sim: Simulator) -> None:
    sim.faults.garbage_frames = 2
    sim.faults.truncated_frames = 2


def _empty_resync(sim: Simulator) -> None:
    sim.faults.empty_clearinghouse_once = True
    sim.close_all()


def _empty_one_dex(sim: Simulator) -> None:
    """One dex answers empty at the re-sync while another still holds positions: the answer of the
    dex asked first (in the engine's sorted order) of those where the account holds a position."""
    account = sim.exchange.accounts.users.get(sim.account or "")
    positions = account.positions.items() if account is not None else ()
    held = sorted({coin.partition(":")[0] for coin, p in positions if p.szi})
    sim.faults.empty_clearinghouse_dex = held[0] if held else "xyz"
    sim.close_all()


def _missing_updates(sim: Simulator) -> None:
    sim.faults.skip_ioc_order_updates = 3


def _slow_then_drop(sim: Simulator) -> None:
    sim.faults.reply_delay_s = 2.0


def _very_slow_then_drop(sim: Simulator) -> None:
    # Slower than a 5 s post timeout: posts time out, noops go out and are answered late too.
    sim.faults.reply_delay_s = 6.5


def _clean_close(sim: Simulator) -> None:
    sim.close_all(1000)


#: Scenario name → how to arm it.
SCENARIOS: Final[Mapping[str, Callable[[Simulator], None]]] = {
    "drop": _drop,
    "duplicates": _duplicates,
    "stall": _stall,
    "no_replies": _no_replies,
    "lost_posts": _lost_posts,
    "bad_frames": _bad_frames,
    "empty_resync": _empty_resync,
    "empty_one_dex": _empty_one_dex,
    "missing_updates": _missing_updates,
    "slow_then_drop": _slow_then_drop,
    "very_slow_drop": _very_slow_then_drop,
    "clean_close": _clean_close,
}


def clear_lasting(sim: Simulator) -> None:
    """End the faults that stay on until cleared: a stall ends; slow replies end with a drop."""
    sim.faults.stall_market_data = False
    sim.faults.silent_markets = ()
    if sim.faults.reply_delay_s:
        sim.close_all()
        sim.faults.reply_delay_s = 0.0


def armed(faults: Faults) -> dict[str, Any]:
    """The switches still armed (counters not yet consumed by traffic, lasting switches on)."""
    switches = attrs.asdict(faults, filter=lambda a, _: a.name != "listener")
    return {name: value for name, value in switches.items() if value}
