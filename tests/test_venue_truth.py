"""The book always agrees with the venue (issue 13, items 1-6): the engine against the simulator with
markets on two dexes, under the faults that used to leave its view of positions wrong.

Each test runs the real engine over memory streams under the autojump clock (`tests/engine_rig.py`),
trades `xyz:COIN` and `abc:TSLA` (two dexes: the venue answers `clearinghouseState` per dex, and the
engine asks `abc` first, then `xyz`), injects one fault and checks the book against the simulator's own
account — at every engine step where it matters, not only at the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from hip3_trio.engine import EngineSettings
from hip3_trio.errors import StartupError
from hip3_trio.execution.executor import Submitted
from hip3_trio.execution.time_stop import TimeStopConfig
from hip3_trio.journal import JOURNAL_FILENAME
from hip3_trio.ops.report import compute_report, format_report, load_rows
from hip3_trio.position.records import ReconcileRequested
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.sim import open_simulator
from hip3_trio.sim.scenarios import SCENARIOS
from hip3_trio.strategy.detector import DetectorConfig
from hip3_trio.venue.session import ConnectionConfig
from hip3_trio.wire.actions import Cloid
from tests.engine_rig import Rig, run_rig, sim_config

COIN, TSLA = "xyz:COIN", "abc:TSLA"
TWO_DEXES = (COIN, TSLA)
HOLD = 30.0


def settings(**changes: Any) -> Callable[[str], EngineSettings]:
    """A silent strategy (tests submit every entry) on markets of two dexes, holding `HOLD` s."""
    time_stop = changes.pop("time_stop", TimeStopConfig(hold_s=HOLD))
    quiet = DetectorConfig(min_edge_bps=Decimal(10_000))
    return lambda user: EngineSettings(
        markets=TWO_DEXES, user=user, detector=quiet, time_stop=time_stop, **changes
    )


def enter(rig: Rig, market: str, *, is_buy: bool = True) -> Cloid:
    result = rig.submit(rig.entry_signal(market, is_buy=is_buy))
    assert isinstance(result, Submitted), result
    return result.cloid


async def hold(rig: Rig, market: str) -> Decimal:
    """Enter `market` at the touch and wait until the book holds the position; returns its size."""
    enter(rig, market)
    await rig.wait_for(lambda: rig.engine.core.book.size(market) != 0)
    return rig.engine.core.book.size(market)


def sends(rig: Rig, *, reduce_only: bool, market: str | None = None) -> list[tuple[float, dict[str, Any]]]:
    """(time, order wire) of every order sent, by reduce-only flag (and asset of `market`)."""
    asset = rig.engine.core.specs[market].asset if market is not None else None
    out = []
    for s in rig.actions("order"):
        assert s.action is not None
        for o in s.action["orders"]:
            if o["r"] == reduce_only and (asset is None or o["a"] == asset):
                out.append((s.at, o))
    return out


def clearinghouse_queries(rig: Rig, connection: int | None = None) -> list[tuple[float, str]]:
    """(time, dex) of every clearinghouseState query (on `connection`, if given)."""
    out = []
    for s in rig.sent:
        if connection is not None and s.connection != connection:
            continue
        request = s.frame.get("request", {})
        payload = request.get("payload", {}) if request.get("type") == "info" else {}
        if payload.get("type") == "clearinghouseState":
            out.append((s.at, payload["dex"]))
    return out


def venue_position(rig: Rig, market: str) -> Decimal:
    return rig.sim_positions().get(market, Decimal(0))


def shift_venue_position(rig: Rig, market: str, size: Decimal) -> None:
    """Make the venue hold `size` in `market` without telling the engine: the stand-in for a fill the
    engine never saw (the reported drift), so only exchange evidence can reveal it."""
    assert rig.sim.account is not None
    account = rig.sim.exchange.accounts.users[rig.sim.account]
    account.position(market).szi = size


async def run_two_dexes(
    tmp_path: Path, scenario: Callable[[Rig], Awaitable[None]], *, reconcile_every_s: float | None = None
) -> Rig:
    """The engine on both dexes against a simulator with no dislocations (tests submit every entry)."""
    changes: dict[str, Any] = {}
    if reconcile_every_s is not None:
        changes["connection"] = ConnectionConfig(reconcile_every_s=reconcile_every_s)
    return await run_rig(
        tmp_path, scenario, settings=settings(**changes), config=sim_config(dislocation_rate=0.0)
    )


async def watch(rig: Rig, check: Callable[[], None]) -> None:
    """Run `check` after every engine step until cancelled."""

    def step() -> bool:
        check()
        return False

    await rig.engine.wait_until(step)


# --- 1. a lone empty answer is judged per dex ---------------------------------------------------------


async def test_one_dex_answering_empty_does_not_wipe_its_positions_while_another_dex_holds_some(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}
    tsla_sizes: list[Decimal] = []

    async def scenario(rig: Rig) -> None:
        engine = rig.engine
        with trio.fail_after(60):
            await rig.wait_ready()
            enter(rig, COIN)
            enter(rig, TSLA)
            await rig.wait_for(lambda: engine.core.book.size(COIN) != 0 and engine.core.book.size(TSLA) != 0)
            seen["before"] = rig.positions()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch, rig, lambda: tsla_sizes.append(engine.core.book.size(TSLA)))
                SCENARIOS["empty_one_dex"](rig.sim)  # abc (asked first) answers empty, xyz holds COIN
                await rig.wait_for(lambda: engine.link.session is None)
                await rig.wait_for(lambda: engine.core.ready)
                nursery.cancel_scope.cancel()
            seen["after"] = (rig.positions(), rig.sim_positions())
            seen["new_entries"] = len(sends(rig, reduce_only=False))
        rig.stop.set()

    rig = await run_two_dexes(tmp_path, scenario)
    assert rig.sim.faults.empty_clearinghouse_dex is None  # the fault met the re-sync
    # abc's position was never wiped, not even for one step, and no second entry doubled it.
    assert tsla_sizes and set(tsla_sizes) == {seen["before"][TSLA]}
    assert seen["after"] == (seen["before"], seen["before"])
    assert seen["new_entries"] == 2
    # abc's empty answer deferred the reconcile: both dexes asked again one retry later, READY only then.
    resync = clearinghouse_queries(rig, connection=2)
    assert [dex for _, dex in resync] == ["abc", "xyz", "abc", "xyz"]
    assert resync[2][0] == resync[0][0] + EngineSettings(markets=(), user="").reconcile_retry_s
    assert rig.ready_at[1] == resync[3][0]
    assert rig.query("SELECT COUNT(*) FROM events WHERE kind = 'position_corrected'") == [(0,)]


# --- 2. each dex carries its own reconcile boundary ---------------------------------------------------


async def test_a_fill_between_two_dexes_queries_is_counted_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """abc is asked first, xyz a second later; a COIN (xyz) fill lands in between, arrives live and is
    in xyz's answer. One boundary for both dexes (the older, abc's) counted it twice."""
    seen: dict[str, Any] = {}
    armed = {"on": False}
    sizes: list[tuple[Decimal, Decimal]] = []

    async def before_send(frame: dict[str, Any]) -> None:
        payload = frame.get("request", {}).get("payload", {})
        if armed["on"] and payload.get("type") == "clearinghouseState" and payload.get("dex") == "xyz":
            armed["on"] = False
            await trio.sleep(1.0)  # abc's state is a second old when the COIN order fills
            enter(rig_box[0], COIN)
            await rig_box[0].wait_for(lambda: rig_box[0].engine.core.book.size(COIN) != 0)
            seen["filled_at"] = trio.current_time()

    rig_box: list[Rig] = []

    async def scenario(rig: Rig) -> None:
        rig_box.append(rig)
        engine = rig.engine
        rig.before_send = before_send
        with trio.fail_after(60):
            await rig.wait_ready()
            await hold(rig, TSLA)
            reconciles = engine.statistics().link.reconciles
            armed["on"] = True  # the next reconcile meets the fill
            engine.core.outbox.emit(ReconcileRequested(reason="test", at=trio.current_time()))
            engine.core.tick(trio.current_time())  # drains the outbox: wakes the reconcile
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    watch, rig, lambda: sizes.append((engine.core.book.size(COIN), venue_position(rig, COIN)))
                )
                await rig.wait_for(lambda: engine.statistics().link.reconciles > reconciles)
                nursery.cancel_scope.cancel()
            seen["after"] = (rig.positions(), rig.sim_positions())
        rig.stop.set()

    rig = await run_two_dexes(tmp_path, scenario, reconcile_every_s=1000.0)
    assert "filled_at" in seen
    book, venue = seen["after"]
    assert book == venue and book[COIN] != 0
    # The book never held more COIN than the venue: the fill moved it once.
    assert all(abs(b) <= abs(v) or v == 0 for b, v in sizes)
    assert rig.query("SELECT COUNT(*) FROM events WHERE kind = 'position_corrected'") == [(0,)]


# --- 3. evidence that the book is wrong reconciles at once; and on a timer ------------------------------


async def test_reconcile_runs_every_reconcile_every_s_without_any_request(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async def scenario(rig: Rig) -> None:
        await rig.wait_ready()
        await trio.sleep(35)
        rig.stop.set()

    rig = await run_two_dexes(tmp_path, scenario, reconcile_every_s=10.0)
    # The first is the start-up balance check (`VenueLink.prepare_margin`), right before the sync's.
    abc_asks = [at for at, dex in clearinghouse_queries(rig) if dex == "abc"][1:]
    ready = rig.ready_at[0]
    # The sync's own reconcile, then one every 10 s (plus the 1 s coalescing pause each time).
    assert abc_asks[0] <= ready
    assert [round(at - ready, 6) for at in abc_asks[1:]] == [11.0, 22.0, 33.0]


async def test_a_fill_starting_from_another_position_than_the_books_reconciles_at_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The venue holds more than the book knows (a fill the engine never saw): the next live fill's
    `startPosition` shows it, the book is reconciled at once, and the time stop flattens the rest."""
    seen: dict[str, Any] = {}

    async def scenario(rig: Rig) -> None:
        engine = rig.engine
        with trio.fail_after(120):
            await rig.wait_ready()
            await hold(rig, COIN)
            size = engine.core.book.size(COIN)
            shift_venue_position(rig, COIN, 2 * size)  # the venue holds twice what the book knows
            seen["size"] = size
            # The time stop's flatten sells `size`; its fill starts from 2 x size: reconcile → flat.
            await rig.wait_for(lambda: not rig.sim_positions() and not rig.positions())
            seen["flat_at"] = trio.current_time()
        rig.stop.set()

    rig = await run_two_dexes(tmp_path, scenario, reconcile_every_s=1000.0)
    flattens = sends(rig, reduce_only=True, market=COIN)
    entry_at = sends(rig, reduce_only=False, market=COIN)[0][0]
    assert len(flattens) == 2  # the book's size, then — after the reconcile — the rest
    assert Decimal(flattens[0][1]["s"]) == Decimal(flattens[1][1]["s"]) == seen["size"]
    # Reconciled at once (one coalescing pause), not at the next reconnect or timer.
    assert flattens[1][0] - flattens[0][0] <= 2.0
    assert seen["flat_at"] - entry_at < HOLD + 5
    corrected = rig.query("SELECT detail FROM events WHERE kind = 'position_corrected'")
    assert len(corrected) == 1


async def test_a_reduce_only_order_refused_as_increasing_reconciles_and_flattens_the_real_side(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The book believes long while the venue is short: the time stop's reduce-only sell is refused as
    "would increase position"; that refusal reconciles at once and the flatten buys back the short."""
    seen: dict[str, Any] = {}

    async def scenario(rig: Rig) -> None:
        engine = rig.engine
        with trio.fail_after(120):
            await rig.wait_ready()
            await hold(rig, COIN)
            seen["short"] = -engine.core.book.size(COIN)
            shift_venue_position(rig, COIN, seen["short"])
            await rig.wait_for(lambda: not rig.sim_positions() and not rig.positions())
        rig.stop.set()

    rig = await run_two_dexes(tmp_path, scenario, reconcile_every_s=1000.0)
    flattens = sends(rig, reduce_only=True, market=COIN)
    assert [o["b"] for _, o in flattens] == [False, True]  # refused sell, then the buy that flattens
    assert Decimal(flattens[1][1]["s"]) == -seen["short"]
    assert flattens[1][0] - flattens[0][0] <= 2.0
    rejects = rig.query("SELECT detail FROM events WHERE kind = 'reject'")
    assert len(rejects) == 1 and "would increase position" in rejects[0][0]


# --- 4 and 5. a restart with a position open ----------------------------------------------------------


async def test_a_restart_keeps_the_positions_age_and_journals_the_whole_round_trip(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Run 1 opens a position and stops without flattening (a crash, as far as the venue is concerned);
    run 2 learns it by reconciliation. It must flatten at entry + hold, not at restart + hold, and the
    trade it journals must have run 1's entry: time, fees, cloid and the signal's expected edge."""
    seen: dict[str, Any] = {}

    async def run_1(rig: Rig) -> None:
        engine = rig.engine
        await rig.wait_ready()
        signal = rig.entry_signal(TSLA)
        engine.core.on_signal(signal, trio.current_time())  # as the strategy would: journals the signal
        await rig.wait_for(lambda: engine.core.book.size(TSLA) != 0)
        seen["entry_at"] = trio.current_time()
        seen["expected_edge"] = signal.expected_edge_bps
        await trio.sleep(10)
        rig.stop.set()

    async def run_2(rig: Rig) -> None:
        await rig.wait_ready()
        seen["ready_2"] = trio.current_time()
        await rig.wait_for(lambda: not rig.positions() and not rig.sim_positions())
        rig.stop.set()

    no_flatten = {"time_stop": TimeStopConfig(hold_s=HOLD, flatten_on_exit=False)}
    async with open_simulator(sim_config(dislocation_rate=0.0), listen=False) as sim:
        first = await run_rig(tmp_path, run_1, sim=sim, settings=settings(**no_flatten))
        assert venue_position(first, TSLA) != 0
        rig = await run_rig(tmp_path, run_2, sim=sim, settings=settings())
    (flatten_at, _), *_ = sends(rig, reduce_only=True, market=TSLA)
    # Due at entry + hold, found by the once-a-second check: never restart + hold.
    assert seen["entry_at"] + HOLD <= flatten_at <= seen["entry_at"] + HOLD + 1.0
    assert flatten_at < seen["ready_2"] + HOLD
    fills = rig.query("SELECT time_ms, fee, cloid FROM fills WHERE market = 'abc:TSLA' ORDER BY time_ms")
    trades = rig.query(
        "SELECT entry_time_ms, exit_time_ms, time_to_flat_ms, fees, entry_cloid, expected_edge_bps "
        "FROM trades WHERE market = 'abc:TSLA'"
    )
    assert len(trades) == 1 and len(fills) == 2
    entry_ms, exit_ms, to_flat, fees, entry_cloid, edge = trades[0]
    assert entry_ms == fills[0][0] and exit_ms == fills[1][0] and to_flat == exit_ms - entry_ms
    assert fees == pytest.approx(fills[0][1] + fills[1][1])  # both legs' fees, not only the exit's
    assert entry_cloid == fills[0][2]
    assert edge == pytest.approx(float(seen["expected_edge"]))
    assert rig.query("SELECT reconstructed FROM trades") == [(0,)]  # exact: from the venue's fills


async def test_a_restart_whose_entry_fill_is_gone_dates_it_by_the_journal_and_flags_the_trade(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The venue's fills snapshot no longer reaches back to the opening fill: the journal's entry order
    dates the position (never "now"), and the round trip is journaled as reconstructed, as the report
    says."""
    seen: dict[str, Any] = {}

    async def run_1(rig: Rig) -> None:
        await rig.wait_ready()
        enter(rig, TSLA)
        seen["submitted_at"] = trio.current_time()
        await rig.wait_for(lambda: rig.engine.core.book.size(TSLA) != 0)
        await trio.sleep(10)
        rig.stop.set()

    async def run_2(rig: Rig) -> None:
        await rig.wait_ready()
        await rig.wait_for(lambda: not rig.positions() and not rig.sim_positions())
        rig.stop.set()

    config = attrs.evolve(sim_config(dislocation_rate=0.0), fills_snapshot_limit=0)
    async with open_simulator(config, listen=False) as sim:
        await run_rig(
            tmp_path,
            run_1,
            sim=sim,
            settings=settings(time_stop=TimeStopConfig(hold_s=HOLD, flatten_on_exit=False)),
        )
        rig = await run_rig(tmp_path, run_2, sim=sim, settings=settings())
    (flatten_at, _), *_ = sends(rig, reduce_only=True, market=TSLA)
    assert seen["submitted_at"] + HOLD <= flatten_at <= seen["submitted_at"] + HOLD + 1.0
    assert rig.query("SELECT reconstructed FROM trades") == [(1,)]
    lines = format_report(compute_report(load_rows(rig.state_dir / JOURNAL_FILENAME)))
    assert any("reconstructed trades" in line and "1 (entry not found" in line for line in lines)


# --- 6. flattening when market data is bad ------------------------------------------------------------


async def test_a_position_is_flattened_while_another_market_has_no_data(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """After a reconnect, abc:TSLA stays silent (no bbo, no asset context): the engine is not READY for
    new orders, but COIN's due position is flattened as soon as positions are reconciled."""
    seen: dict[str, Any] = {}

    async def scenario(rig: Rig) -> None:
        engine = rig.engine
        with trio.fail_after(120):
            await rig.wait_ready()
            await hold(rig, COIN)
            seen["entry_at"] = trio.current_time()
            rig.sim.faults.silent_markets = (TSLA,)
            rig.sim.close_all()
            await rig.wait_for(lambda: not rig.sim_positions() and not rig.positions())
            seen["flat_at"] = trio.current_time()
            seen["ready"] = engine.core.ready
            rig.sim.faults.silent_markets = ()
        rig.stop.set()

    rig = await run_two_dexes(tmp_path, scenario)
    assert seen["ready"] is False  # flattened while still not READY for new orders
    (flatten_at, _), *_ = sends(rig, reduce_only=True, market=COIN)
    assert seen["entry_at"] + HOLD <= flatten_at <= seen["entry_at"] + HOLD + 1.0


async def test_a_missed_flatten_is_sent_again_one_step_wider_not_repeated(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """Market data stalls (the engine's mark freezes) while the venue's price falls 1.2 %: the first
    flatten, 50 bps through the frozen mark, cannot match; each retry is 50 bps wider until one fills."""
    seen: dict[str, Any] = {}

    async def scenario(rig: Rig) -> None:
        engine = rig.engine
        with trio.fail_after(120):
            await rig.wait_ready()
            await hold(rig, COIN)
            seen["mark"] = engine.core.marks[COIN]
            rig.sim.faults.stall_market_data = True
            market = rig.sim.exchange.markets[COIN]
            market.oracle = market.oracle * Decimal("0.988")
            market.rebuild_book()
            await rig.wait_for(lambda: not rig.sim_positions() and not rig.positions())
            rig.sim.faults.stall_market_data = False
        rig.stop.set()

    rig = await run_rig(
        tmp_path,
        scenario,
        settings=settings(),
        config=sim_config(dislocation_rate=0.0, oracle_vol_bps=0.0),
        connection=ConnectionConfig(md_stall_s=1000.0),
    )
    mark = seen["mark"]
    prices = [Decimal(o["p"]) for _, o in sends(rig, reduce_only=True, market=COIN)]
    assert len(prices) >= 3 and len(set(prices)) == len(prices)  # never the same price twice
    assert all(later < earlier for earlier, later in itertools.pairwise(prices))  # sells: each lower
    steps = [(mark - px) / mark * 10_000 for px in prices]
    assert [round(step / 50) for step in steps] == list(range(1, len(prices) + 1))
    rejects = rig.query("SELECT detail FROM events WHERE kind = 'reject'")
    assert len(rejects) == len(prices) - 1
    assert all("could not immediately match" in r for (r,) in rejects)


async def test_a_market_delisted_under_a_running_engine_latches_the_hard_stop_before_it_stops(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A re-sync that finds a configured market delisted ends the engine like a start would (one line,
    exit 2), but first latches the persisted hard stop, so a supervisor's restart does not trade on."""

    async def scenario(rig: Rig) -> None:
        await rig.wait_ready()
        exchange = rig.sim.exchange
        index = next(i for i, s in enumerate(exchange.specs) if s.name == TSLA)
        exchange.specs[index] = attrs.evolve(exchange.specs[index], delisted=True)
        rig.sim.close_all()
        await trio.sleep_forever()

    with pytest.RaisesGroup(pytest.RaisesExc(StartupError, match="delisted"), flatten_subgroups=True):
        await run_two_dexes(tmp_path, scenario)
    latch = HardStop.load(tmp_path / "state", 0)
    assert latch.latched and latch.record is not None and latch.record.reason.startswith("at a re-sync:")
