"""A rig for end-to-end engine tests: the real engine against the simulator over memory streams.

`run_rig(tmp_path, scenario, ...)` runs `run_engine` with a fresh state directory and lets `scenario`
(an async function of the rig) drive it: wait for READY, arm simulator faults, submit, and finally
`rig.stop.set()` for the orderly stop. Every frame the engine sends is recorded with its virtual time
and connection number, so tests can assert what went out, when and on which connection.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import Any

import attrs
import trio
from trio_websocket import wrap_client_stream

from hip3_trio.alerts import AlertsConfig, AlertSink
from hip3_trio.app import run_engine
from hip3_trio.cli import restore_from_journal
from hip3_trio.engine import Engine, EngineSettings
from hip3_trio.execution.executor import SubmitResult
from hip3_trio.execution.nonce import NonceManager
from hip3_trio.journal import Journal, JournalSink, Record, WriteRunner
from hip3_trio.recording.recorder import Recorder
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.sim import MarketModel, SimConfig, Simulator, open_simulator
from hip3_trio.strategy.detector import DetectorConfig, Signal
from hip3_trio.venue.session import ConnectionConfig, WsLike
from hip3_trio.webhook import AlertSender
from hip3_trio.wire.signing import Signer

BASE_MS = 1_700_000_000_000
MARKETS = ("xyz:COIN", "xyz:NVDA")


def quiet_settings(user: str, **changes: Any) -> EngineSettings:
    """Engine settings whose detector never signals: the test submits every order itself."""
    quiet = DetectorConfig(min_edge_bps=Decimal(10_000))
    return EngineSettings(markets=MARKETS, user=user, detector=quiet, **changes)


async def write_inline(write: Callable[[list[Record]], int], records: list[Record]) -> int:
    """Journal writes in the Trio thread: under the autojump clock a worker thread would let virtual
    time run ahead while the disk works, so timelines would depend on the disk's speed."""
    await trio.lowlevel.checkpoint()
    return write(records)


def sim_config(**market: Any) -> SimConfig:
    """A simulator that dislocates often, so signals come quickly."""
    model = MarketModel(dislocation_rate=market.pop("dislocation_rate", 0.5), **market)
    return SimConfig(seed=7, base_epoch_ms=BASE_MS, market=model)


@attrs.frozen
class Sent:
    """One frame the engine sent."""

    at: float
    connection: int
    frame: dict[str, Any]

    @property
    def action(self) -> dict[str, Any] | None:
        request = self.frame.get("request", {})
        return request.get("payload", {}).get("action") if request.get("type") == "action" else None

    @property
    def nonce(self) -> int | None:
        request = self.frame.get("request", {})
        return request.get("payload", {}).get("nonce") if request.get("type") == "action" else None


@attrs.frozen
class Received:
    """One frame the engine received (`frame` is None for a frame that is not a JSON object)."""

    at: float
    connection: int
    text: str

    @property
    def frame(self) -> dict[str, Any] | None:
        try:
            frame = json.loads(self.text)
        except ValueError:
            return None
        return frame if isinstance(frame, dict) else None

    @property
    def channel(self) -> str | None:
        frame = self.frame
        return frame.get("channel") if frame is not None else None


@attrs.define
class Rig:
    sim: Simulator
    engine: Engine
    journal: Journal
    state_dir: Path
    stop: trio.Event
    sent: list[Sent] = attrs.Factory(list)
    received: list[Received] = attrs.Factory(list)
    lines: list[str] = attrs.Factory(list)
    connections: int = 0
    ready_at: list[float] = attrs.Factory(list)
    # Awaited before each frame the engine sends goes out (the frame, already recorded): lets a test
    # make something happen at an exact point of the engine's conversation with the venue.
    before_send: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    def actions(self, kind: str | None = None) -> list[Sent]:
        """The actions sent, of `kind`; with no kind, the trading ones (not the start-up's
        `updateLeverage`, which `actions("updateLeverage")` lists)."""
        return [
            s
            for s in self.sent
            if s.action is not None
            and (s.action["type"] == kind if kind is not None else s.action["type"] != "updateLeverage")
        ]

    def orders(self, *, reduce_only: bool | None = None, after: float = -1.0) -> list[dict[str, Any]]:
        """Orders in the order actions sent (after virtual time `after`), optionally by reduce-only."""
        out = []
        for s in self.actions("order"):
            assert s.action is not None
            if s.at > after:
                out += [o for o in s.action["orders"] if reduce_only is None or o["r"] == reduce_only]
        return out

    async def wait_for(self, predicate: Callable[[], bool]) -> float:
        """Wait until `predicate()` (of engine state) holds; returns the virtual time it first held."""
        await self.engine.wait_until(predicate)
        return trio.current_time()

    async def wait_ready(self) -> float:
        return await self.wait_for(lambda: self.engine.core.ready)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.journal.query(sql)

    def entry_signal(self, market: str, *, is_buy: bool = True, usd: Decimal = Decimal(20)) -> Signal:
        """A taker signal for `market` at the simulator's current touch, worth about `usd`."""
        book = self.sim.exchange.markets[market]
        touch = book.best_ask() if is_buy else book.best_bid()
        assert touch is not None, f"{market} has no {'ask' if is_buy else 'bid'}"
        now_ms = self.engine.core.exchange_ms()
        return Signal(
            market=market,
            is_buy=is_buy,
            price=touch,
            size=(usd / touch).quantize(Decimal(1).scaleb(-book.spec.sz_decimals), rounding=ROUND_UP),
            expected_edge_bps=Decimal(20),
            cost_bps=Decimal(18),
            fee_bps=Decimal(4),
            oracle_px=book.oracle,
            mark_px=book.mark,
            best_px=touch,
            mid_px=touch,
            book_time_ms=now_ms,
            oracle_time_ms=now_ms,
            time_ms=now_ms,
        )

    def submit(self, signal: Signal) -> SubmitResult:
        """Submit `signal` as the strategy would (the executor's gates apply) and wake the sender."""
        result = self.engine.core.executor.submit_signal(signal, trio.current_time())
        if self.engine.link.session is not None:
            self.engine.link.session.wake_sender()
        return result

    def sim_positions(self) -> dict[str, Decimal]:
        """The simulator's own account positions in the engine's markets (non-zero only)."""
        assert self.sim.account is not None
        account = self.sim.exchange.accounts.users[self.sim.account]
        return {
            c: p.szi for c, p in account.positions.items() if c in self.engine.core.book.markets and p.szi
        }

    def positions(self) -> dict[str, Decimal]:
        """The engine's positions (non-zero only), comparable with `sim_positions`."""
        return {c: p.size for c, p in self.engine.core.book.positions.items() if p.size}


class _Recorder:
    """A WsLike that records what the engine sends."""

    def __init__(self, ws: Any, rig: Rig, connection: int) -> None:
        self._ws = ws
        self._rig = rig
        self._connection = connection

    async def get_message(self) -> str | bytes:
        message: str | bytes = await self._ws.get_message()
        text = message if isinstance(message, str) else message.decode(errors="replace")
        self._rig.received.append(Received(trio.current_time(), self._connection, text))
        return message

    async def send_message(self, message: str | bytes) -> None:
        frame = json.loads(message)
        self._rig.sent.append(Sent(trio.current_time(), self._connection, frame))
        if self._rig.before_send is not None:
            await self._rig.before_send(frame)
        await self._ws.send_message(message)

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        await self._ws.aclose(code, reason)


async def run_rig(
    tmp_path: Path,
    scenario: Callable[[Rig], Awaitable[None]],
    *,
    settings: EngineSettings | Callable[[str], EngineSettings] | None = None,
    config: SimConfig | None = None,
    connection: ConnectionConfig | None = None,
    duration: float | None = None,
    dry_run: bool = False,
    prepare: Callable[[Simulator, Path], None] | None = None,
    journal_write: WriteRunner = write_inline,
    sim: Simulator | None = None,
    alerts: AlertsConfig | None = None,
    recorder: Recorder | None = None,
) -> Rig:
    """Run the engine against a fresh simulator until `scenario` sets `rig.stop` (or `duration`).

    `settings` may be a function of the simulator's account address (see `quiet_settings`). With
    `sim`, the engine runs against that (open) simulator instead: a second run on the same state dir
    and venue is a restart. `connection` replaces the settings' connection config; either way the
    reconnect backoff is 1 s doubling to 4 s. `journal_write` runs each journal write (default
    `write_inline`; a test may make the disk fail). With `alerts` (a webhook), the engine's alerts are
    sent there, stamped with the engine's clock. With `recorder`, the engine records its market data there.
    """
    async with AsyncExitStack() as stack:
        if sim is None:
            sim = await stack.enter_async_context(open_simulator(config or sim_config(), listen=False))
        return await _run_rig(
            tmp_path,
            scenario,
            sim,
            settings,
            connection,
            duration,
            dry_run,
            prepare,
            journal_write,
            alerts,
            recorder,
        )


async def _run_rig(
    tmp_path: Path,
    scenario: Callable[[Rig], Awaitable[None]],
    sim: Simulator,
    settings: EngineSettings | Callable[[str], EngineSettings] | None,
    connection: ConnectionConfig | None,
    duration: float | None,
    dry_run: bool,
    prepare: Callable[[Simulator, Path], None] | None,
    journal_write: WriteRunner,
    alerts: AlertsConfig | None = None,
    recorder: Recorder | None = None,
) -> Rig:
    state_dir = tmp_path / "state"
    state_dir.mkdir(exist_ok=True)
    async with trio.open_nursery() as nursery:
        if prepare is not None:
            prepare(sim, state_dir)
        assert sim.account is not None and sim.account_key is not None

        base = sim.config.base_epoch_ms
        base_ms = base if base is not None else BASE_MS

        def clock_ms() -> int:  # the engine's wall clock agrees with the simulator's
            return base_ms + round(trio.current_time() * 1000)

        if callable(settings):
            settings = settings(sim.account)
        engine_settings = settings or EngineSettings(markets=MARKETS, user=sim.account)
        if dry_run:
            engine_settings = attrs.evolve(engine_settings, dry_run=True)
        engine_settings = attrs.evolve(
            engine_settings,
            connection=attrs.evolve(
                connection or engine_settings.connection, backoff_initial_s=1.0, backoff_max_s=4.0
            ),
        )
        sink, receive = JournalSink.open(clock_ms=clock_ms)
        alert_sink, alert_sender = AlertSink.off(), None
        if alerts is not None:
            alert_sink, alert_receive = AlertSink.open(alerts, env="sim", clock_ms=clock_ms, host="rig")
            alert_sender = AlertSender(alerts, alert_receive, alert_sink.stats)
        journal = Journal.open(state_dir)
        engine = Engine(
            engine_settings,
            signer=Signer.from_key(sim.account_key),
            nonces=NonceManager(clock_ms),
            hard_stop=HardStop.load(state_dir, clock_ms()),
            journal=sink,
            alerts=alert_sink,
        )
        restore_from_journal(engine, journal, state_dir)  # as the CLI does before trading
        rig = Rig(sim=sim, engine=engine, journal=journal, state_dir=state_dir, stop=trio.Event())

        @asynccontextmanager
        async def connect() -> AsyncIterator[WsLike]:
            rig.connections += 1
            stream = sim.connect_memory(nursery)
            ws = await wrap_client_stream(nursery, stream, "sim", "/ws")  # type: ignore[arg-type]
            try:
                yield _Recorder(ws, rig, rig.connections)
            finally:
                await ws.aclose()

        async def watch_ready() -> None:
            while True:
                await engine.wait_until(lambda: engine.core.readiness.ready)
                rig.ready_at.append(trio.current_time())
                generation = engine.core.readiness.generation
                await engine.wait_until(lambda g=generation: engine.core.readiness.generation != g)  # type: ignore[misc]

        nursery.start_soon(scenario, rig)
        nursery.start_soon(watch_ready)
        await run_engine(
            engine,
            connect,
            journal=journal,
            journal_receive=receive,
            duration=duration,
            stop=rig.stop,
            rng=random.Random(1),
            journal_write=journal_write,
            out=rig.lines.append,
            alerts=alert_sender,
            recorder=recorder,
        )
        nursery.cancel_scope.cancel()
    return rig
