"""The venue's action budget and margin, engine side: the reserve gate, the exhaustion pause, the
start-up leverage/balance/delisted checks, and a tiny-budget run on the simulator."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from hip3_trio.engine import EngineSettings
from hip3_trio.execution.executor import ExecutorConfig, RequestBudget
from hip3_trio.execution.request_budget import RequestBudget as Budget
from hip3_trio.execution.request_budget import action_weight, is_budget_exhausted
from hip3_trio.execution.time_stop import TimeStopConfig
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.risk.monitor import OrderRejected, RiskConfig, RiskMonitor, is_benign_reject
from hip3_trio.venue.queries import DelistedMarketError, StartupError
from hip3_trio.wire.actions import UpdateLeverageAction, action_to_wire

from .engine_rig import Rig, quiet_settings, run_rig, sim_config

EXHAUSTED = (
    "Too many cumulative requests sent (10001 > 9999) for cumulative volume traded $0. "
    "Place taker orders to free up 1 request per USDC traded."
)


# --- the budget as the engine counts it -------------------------------------------------------------


def test_remaining_is_the_venue_read_minus_what_was_sent_since_the_ask() -> None:
    budget = Budget(reserve=500)
    assert budget.remaining is None and budget.entries_allowed  # never read: not refused
    budget.on_sent(3, now=0.0)  # before the ask
    sent_at_ask = budget.sent
    budget.on_sent(2, now=0.1)  # while the answer was on its way: counted (maybe twice), never lost
    budget.on_read(used=9_000, cap=10_000, sent_at_ask=sent_at_ask)
    assert budget.remaining == 1_000 - 2
    budget.on_sent(497, now=1.0)
    assert budget.remaining == 501 and budget.entries_allowed
    budget.on_sent(1, now=1.0)
    assert budget.remaining == 500 and not budget.entries_allowed  # an entry must leave the reserve


def test_action_weight_counts_every_order_and_cancel() -> None:
    assert action_weight({"type": "order", "orders": [{}, {}, {}]}) == 3
    assert action_weight({"type": "cancelByCloid", "cancels": [{}, {}]}) == 2
    assert action_weight({"type": "noop"}) == 1
    assert action_weight(action_to_wire(UpdateLeverageAction(110000, leverage=2))) == 1


def test_exhaustion_pauses_for_the_trickle_and_then_one_action_per_interval() -> None:
    budget = Budget(reserve=5, trickle_s=10.0)
    budget.on_read(used=100, cap=10_000, sent_at_ask=0)
    budget.on_exhausted(now=3.0)
    assert budget.exhausted and not budget.entries_allowed and budget.exhaustions == 1
    assert not budget.may_send(12.999) and budget.may_send(13.0)
    budget.on_sent(1, now=13.0)  # the trickle: the next action waits another interval
    assert not budget.may_send(22.999) and budget.may_send(23.0)
    budget.on_read(used=9_000, cap=10_000, sent_at_ask=budget.sent)  # room again
    assert not budget.exhausted and budget.entries_allowed
    budget.on_sent(1, now=23.0)
    assert budget.may_send(23.0)


def test_the_exhaustion_text_is_recognised_and_never_counts_towards_the_hard_stop(tmp_path: Path) -> None:
    assert is_budget_exhausted(EXHAUSTED) and is_benign_reject(EXHAUSTED)
    assert not is_budget_exhausted("Insufficient margin to place order. asset=110000")
    monitor = RiskMonitor(RiskConfig(max_rejects_per_hour=0), HardStop(tmp_path / "latch"))
    assert monitor.on_event(OrderRejected(market="xyz:COIN", message=EXHAUSTED), 1) is None
    assert monitor.rejects_in_window(1) == 0


def test_config_keys_and_defaults() -> None:
    config = ExecutorConfig()
    assert (config.request_reserve, config.request_trickle_s, config.leverage) == (500, 10.0, 2)


def test_update_leverage_wire_shape() -> None:
    assert action_to_wire(UpdateLeverageAction(110001, leverage=3)) == {
        "type": "updateLeverage",
        "asset": 110001,
        "isCross": False,
        "leverage": 3,
    }
    with pytest.raises(ValueError):
        UpdateLeverageAction(110001, leverage=0)


# --- end to end on the simulator --------------------------------------------------------------------


def _settings(reserve: int = 500, **limits: object) -> Callable[[str], EngineSettings]:
    def settings(user: str) -> EngineSettings:
        executor = ExecutorConfig(request_reserve=reserve, **limits)  # type: ignore[arg-type]
        return quiet_settings(user, executor=executor)

    return settings


async def test_start_sets_isolated_leverage_and_reads_the_budget(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async def scenario(rig: Rig) -> None:
        await rig.wait_ready()
        rig.stop.set()

    rig = await run_rig(tmp_path, scenario, settings=_settings(leverage=3))
    leverage = [s.action for s in rig.actions("updateLeverage")]
    assert leverage == [
        {"type": "updateLeverage", "asset": 110000, "isCross": False, "leverage": 3},
        {"type": "updateLeverage", "asset": 110001, "isCross": False, "leverage": 3},
    ]
    assert rig.sim.account is not None
    account = rig.sim.exchange.accounts.users[rig.sim.account]
    assert account.budget.used == 2  # two updateLeverage actions, nothing else
    assert rig.engine.statistics().core.requests_remaining == 10_000 - 2
    events = rig.query("SELECT kind FROM events WHERE kind IN ('leverage', 'dex_balance', 'request_budget')")
    assert sorted({k for (k,) in events}) == ["dex_balance", "leverage", "request_budget"]


async def test_a_delisted_market_refuses_to_start(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async def scenario(rig: Rig) -> None:
        await trio.sleep_forever()

    def settings(user: str) -> EngineSettings:
        return EngineSettings(markets=("xyz:COIN", "xyz:OLD"), user=user)

    with pytest.RaisesGroup(pytest.RaisesExc(DelistedMarketError, match="xyz:OLD"), flatten_subgroups=True):
        await run_rig(tmp_path, scenario, settings=settings)


async def test_an_unfunded_dex_refuses_to_start_naming_the_dex_and_the_shortfall(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async def scenario(rig: Rig) -> None:
        await trio.sleep_forever()

    config = attrs.evolve(sim_config(), initial_balance=Decimal(40))
    # Two markets x $50 at 2x need $50 on xyz; it holds $40.
    with pytest.RaisesGroup(
        pytest.RaisesExc(StartupError, match=r"dex 'xyz' holds 40 .* shortfall 10\.00"),
        flatten_subgroups=True,
    ):
        await run_rig(tmp_path, scenario, settings=_settings(), config=config)


async def test_a_run_with_a_tiny_budget_keeps_flattening_while_refusing_entries(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # 20 requests left, a reserve of 5: two entries pass; then the address's budget is used up (another
    # client): the flattens are refused whole, pause 10 s, and go through the venue's trickle.
    config = attrs.evolve(sim_config(), initial_requests_used=9_980)
    refused: list[object] = []
    flattened_at: list[float] = []

    async def scenario(rig: Rig) -> None:
        await rig.wait_ready()
        for market in ("xyz:COIN", "xyz:NVDA"):
            assert rig.submit(rig.entry_signal(market)).accepted
        await rig.wait_for(lambda: len(rig.positions()) == 2)
        assert rig.sim.account is not None
        budget = rig.sim.exchange.accounts.users[rig.sim.account].budget
        budget.used = budget.cap  # exhausted by someone else
        await rig.wait_for(lambda: rig.engine.core.executor.requests.exhaustions > 0)
        await rig.wait_for(lambda: not rig.positions())
        flattened_at.append(trio.current_time())
        # Flat, and the budget still exhausted: a new entry is refused by the gate (and journaled).
        refused.append(rig.submit(rig.entry_signal("xyz:COIN")))
        rig.engine.core.on_signal(rig.entry_signal("xyz:NVDA"), trio.current_time())
        rig.stop.set()

    settings = _settings(reserve=5)

    def with_hold(user: str) -> EngineSettings:
        base = settings(user)
        return attrs.evolve(base, time_stop=TimeStopConfig(hold_s=5.0))

    rig = await run_rig(tmp_path, scenario, settings=with_hold, config=config)
    (result,) = refused
    assert isinstance(result, RequestBudget)
    stats = rig.engine.statistics().core
    assert not stats.hard_stopped and stats.rejects == 0
    assert stats.request_budget_exhaustions >= 1
    flattens = [s for s in rig.actions("order") if all(o["r"] for o in s.action["orders"])]  # type: ignore[index]
    exhausted = rig.query("SELECT time_ms FROM events WHERE kind = 'request_budget_exhausted'")
    assert len(exhausted) == stats.request_budget_exhaustions
    gaps = [b.at - a.at for a, b in itertools.pairwise(flattens)]
    assert gaps and all(gap >= 10.0 for gap in gaps)
    # Positions opened by t = 0 + fills; held 5 s; the flatten batch (both markets) at 5 s is refused
    # whole; 10 s later it goes through the venue's trickle and both are flat.
    assert [round(s.at, 3) for s in flattens] == [5.0, 15.0] and flattened_at == [15.0]
    assert stats.signals_refused == {"RequestBudget": 1}
    assert rig.query("SELECT refused_reason FROM signals WHERE acted = 0") == [("RequestBudget",)]
    assert rig.sim_positions() == {}
