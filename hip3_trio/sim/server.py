"""The simulator as a running peer: background time, connections over any Trio stream, TCP listener.

``Simulator`` owns the exchange state, the fault switches and two background tasks (``run``): the
oracle ticker and a timer for scheduled cancels and ``close_at_ms``. ``serve_stream`` speaks the venue
protocol over any ``trio.abc.Stream`` — a TCP stream or one end of
``trio.testing.memory_stream_pair()`` — so tests run the real protocol under the autojump clock.
``serve_tcp`` listens on 127.0.0.1 and hands each accepted stream to ``serve_stream``.

Realism (``config.realism``, models in ``realism.py``): with blocks on, action posts wait in a queue
and one task (``_blocks``) executes them at the next block boundary, in the venue's order within a
block (the oracle update first when one is due, then non-GTC/IOC actions, cancels, GTC/IOC actions;
arrival order within each), replies to each and publishes the block's events once. With competitors
on, every oracle update that shows liquidity priced through the oracle queues one competing IOC per
side, arriving after a seeded random delay; it joins the same queue, so whoever lands first in the
block wins. The connection applies the one-way latency to every frame each way. With blocks off,
actions execute on arrival as before (competitors then execute at their arrival time).
``open_simulator`` does all of it in one ``async with`` for in-process use (``--env sim``).

The TCP path uses ``trio.serve_tcp`` + ``trio_websocket.wrap_server_stream`` rather than
``trio_websocket.serve_websocket`` so both paths share one code path and the simulator keeps the raw
stream, which it needs to drop a connection without a close frame (the abrupt-close fault).
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import partial

import attrs
import trio
import trio.testing
from eth_account import Account
from eth_utils.crypto import keccak
from trio_websocket import ConnectionClosed, HandshakeError, wrap_server_stream

from .clock import SimClock
from .config import SimConfig
from .connection import Connection
from .exchange import Exchange
from .faults import Faults
from .markets import DEFAULT_DEXES, DexSpec
from .realism import BLOCK_TAKER, BlockSchedule, action_class
from .streams import Hub

# Block boundaries are float ms; the Trio clock lands on them within this.
_EPSILON_MS = 1e-6


def seeded_key(seed: int) -> str:
    """A throwaway private key derived from the seed, so a seeded run is reproducible end to end."""
    return "0x" + keccak(f"hip3-trio-sim account {seed}".encode()).hex()


@attrs.define(eq=False)
class Pending:
    """An action waiting for its block: ours (a post on ``conn``) or a competitor's IOC."""

    arrival_ms: float
    category: int
    run: Callable[[], None]
    seq: int = 0


@attrs.define(eq=False)
class Simulator:
    """A local Hyperliquid-like exchange."""

    config: SimConfig
    faults: Faults
    clock: SimClock
    hub: Hub
    exchange: Exchange
    connections: set[Connection] = attrs.Factory(set)
    url: str | None = None
    account: str | None = None
    account_key: str | None = None
    _poke: trio.Event = attrs.Factory(trio.Event)
    # What moves the markets: None = the random walk (`_ticker`); a replay sets its own (`sim/replay.py`).
    market_driver: Callable[[], Awaitable[None]] | None = None
    # Realism: the block schedule, actions waiting for their block, the competitors' random delays.
    blocks: BlockSchedule = attrs.field(init=False)
    pending: list[Pending] = attrs.Factory(list)
    _seq: int = 0
    _competitor_rng: random.Random = attrs.field(init=False)
    _block_poke: trio.Event = attrs.Factory(trio.Event)
    # Competitor orders executed, and how many of them got a fill: for tests and reports.
    competitor_orders: int = 0
    competitor_fills: int = 0

    def __attrs_post_init__(self) -> None:
        self.blocks = BlockSchedule(self.config.realism.blocks, self.config.seed)
        self._competitor_rng = random.Random(f"hip3-trio-sim:{self.config.seed}:competitors")

    @classmethod
    def create(
        cls,
        config: SimConfig | None = None,
        faults: Faults | None = None,
        *,
        dexes: tuple[DexSpec, ...] = DEFAULT_DEXES,
    ) -> Simulator:
        config = config or SimConfig()
        faults = faults or Faults()
        clock = SimClock(base_epoch_ms=config.base_epoch_ms, skew_ms=lambda: faults.clock_skew_ms)
        hub = Hub()
        exchange = Exchange.create(config, clock, faults, hub, dexes)
        sim = cls(config=config, faults=faults, clock=clock, hub=hub, exchange=exchange)
        faults.listener = sim._wake_timers
        exchange.on_schedule_change = sim._wake_timers
        return sim

    # -- accounts --------------------------------------------------------------------------------

    def add_account(self, address: str, balance: Decimal | None = None) -> str:
        """Fund ``address`` (every dex gets ``balance`` or the configured initial balance)."""
        account = self.exchange.accounts.add_user(address, balance)
        if self.account is None:
            self.account = account.address
        return account.address

    def approve_agent(
        self, agent: str, master: str, *, name: str | None = None, valid_until_ms: int | None = None
    ) -> None:
        """Approve an API wallet for ``master`` (funding the master if it is new); a named one is
        listed by ``extraAgents`` and expires at ``valid_until_ms``."""
        self.exchange.accounts.approve_agent(agent, master, name=name, valid_until_ms=valid_until_ms)
        if self.account is None:
            self.account = master.lower()

    def add_vault(self, vault: str, leader: str) -> None:
        """Register a vault / sub-account that ``leader`` (or its agent) trades via ``vaultAddress``."""
        self.exchange.accounts.add_vault(vault, leader)

    def create_funded_account(self) -> tuple[str, str]:
        """A funded account with a seed-derived throwaway key; becomes the default account."""
        key = seeded_key(self.config.seed)
        address = str(Account.from_key(key).address).lower()
        self.exchange.accounts.add_user(address)
        self.account, self.account_key = address, key
        return address, key

    # -- background time -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drive the markets and timers until cancelled."""
        self.clock.now_ms()  # fix the clock origin: venue time starts now
        realism = self.config.realism
        async with trio.open_nursery() as nursery:
            if self.market_driver is not None:
                # A replay moves the markets (its recorded frames, with its own competition model);
                # actions still wait for their block, without the random walk's oracle updates.
                nursery.start_soon(self.market_driver)
                if realism.blocks.enabled:
                    nursery.start_soon(self._blocks)
            elif realism.blocks.enabled:
                nursery.start_soon(self._blocks)  # oracle updates happen in blocks too
            else:
                nursery.start_soon(self._ticker)
                if realism.competition.enabled:
                    nursery.start_soon(self._blocks)
            nursery.start_soon(self._timers)
            task_status.started()

    async def _ticker(self) -> None:
        interval = self.config.market.oracle_interval_s
        next_at = trio.current_time() + interval
        while True:
            await trio.sleep_until(next_at)
            self._tick()
            next_at += interval

    def _tick(self) -> None:
        """One oracle update; competitors go for the liquidity it shows priced through the oracle."""
        self.exchange.tick()
        model = self.config.realism.competition
        if not model.enabled:
            return
        now = self.exchange.elapsed_ms()
        for target in self.exchange.competitor_targets():
            delay = model.draw_delay_ms(self._competitor_rng)
            self._queue(Pending(now + delay, BLOCK_TAKER, partial(self._compete, *target)))

    def _compete(self, coin: str, is_buy: bool, limit_px: Decimal, size: Decimal) -> None:
        self.competitor_orders += 1
        if self.exchange.compete(coin, is_buy, limit_px, size) > 0:
            self.competitor_fills += 1

    def _queue(self, item: Pending) -> None:
        self._seq += 1
        item.seq = self._seq
        self.pending.append(item)
        self._block_poke.set()

    def submit(self, conn: Connection, post_id: int, payload: object) -> None:
        """Queue an action post for its block (blocks on). Synchronous."""
        action = payload.get("action") if isinstance(payload, dict) else None
        run = partial(conn.execute_action, post_id, payload)
        self._queue(Pending(self.exchange.elapsed_ms(), action_class(action), run))

    async def _blocks(self) -> None:
        """Execute queued actions (and oracle updates, blocks on) at block boundaries, in block order."""
        start_ms = self.exchange.elapsed_ms()
        interval_ms = self.config.market.oracle_interval_s * 1000.0
        realism = self.config.realism
        random_walk = realism.blocks.enabled and self.market_driver is None
        # Refilled liquidity is published at block boundaries, as the venue publishes a block's changes
        # (`Exchange.publish_requotes`); with blocks off (no boundaries to wait for) it stays silent until
        # the next push, as the instant venue always was. Not in a replay: its recorded frames are the
        # book's changes.
        requotes = random_walk and realism.impact.enabled
        next_tick = start_ms + interval_ms if random_walk else math.inf
        last_block = -math.inf  # an action arriving on a boundary already executed waits for the next
        while True:
            self._block_poke = trio.Event()
            refill = [self.exchange.elapsed_ms()] if requotes and self.exchange.refilling() else []
            due = min([p.arrival_ms for p in self.pending] + [next_tick] + refill)
            boundary = math.inf
            if due < math.inf:
                first = max(due, last_block + _EPSILON_MS) - start_ms
                now = self.exchange.elapsed_ms() - start_ms
                boundary = self.blocks.next_boundary(first, now_ms=now) + start_ms
            with trio.move_on_at(boundary / 1000.0):
                await self._block_poke.wait()
            if self.exchange.elapsed_ms() < boundary - _EPSILON_MS:
                continue  # woken by a new action: plan again
            while next_tick <= boundary + _EPSILON_MS:
                self._tick()
                next_tick += interval_ms
            self._run_block(boundary)
            if requotes:
                self.exchange.publish_requotes()
            last_block = boundary

    def _run_block(self, boundary: float) -> None:
        """Execute every action that arrived by ``boundary``: by category, then arrival."""
        batch = [p for p in self.pending if p.arrival_ms <= boundary + _EPSILON_MS]
        if not batch:
            return
        self.pending = [p for p in self.pending if p.arrival_ms > boundary + _EPSILON_MS]
        batch.sort(key=lambda p: (p.category, p.arrival_ms, p.seq))
        for item in batch:
            item.run()
        self.exchange.flush()

    def _wake_timers(self) -> None:
        self._poke.set()

    async def _timers(self) -> None:
        """Fire scheduled cancels and ``faults.close_at_ms`` at their venue times."""
        while True:
            self._poke = trio.Event()
            wake = [
                t
                for t in (self.exchange.next_scheduled_cancel_ms(), self.faults.close_at_ms)
                if t is not None
            ]
            deadline = self.clock.trio_time_at(min(wake)) + 0.0005 if wake else math.inf
            with trio.move_on_at(deadline):
                await self._poke.wait()
            now = self.clock.now_ms()
            close_at = self.faults.close_at_ms
            if close_at is not None and close_at <= now:
                self.faults.close_at_ms = None
                self.close_all(self.faults.close_code)
            due = self.exchange.next_scheduled_cancel_ms()
            if due is not None and due <= now:
                self.exchange.run_scheduled_cancels()

    def inflight_posts(self) -> int:
        """Posts received and not yet answered, summed over all connections (the venue counts per IP)."""
        return sum(conn.inflight for conn in self.connections)

    def internal_cancel(self, user: str | None = None) -> int:
        """Cancel every open order of ``user`` (default: the default account) with the venue's
        ``internalCancel`` status, as the venue does for reasons of its own; returns how many."""
        address = (user or self.account or "").lower()
        return self.exchange.cancel_open_orders(address, "internalCancel")

    def close_all(self, code: int | None = None) -> None:
        """Close every open connection (``None`` = drop without a close frame)."""
        for conn in list(self.connections):
            conn.request_close(code)

    # -- connections -----------------------------------------------------------------------------

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one WebSocket client over ``stream``; returns when the connection ends."""
        async with trio.open_nursery() as nursery:  # its cancel scope is the connection's lifetime
            try:
                request = await wrap_server_stream(nursery, stream)
                ws = await request.accept()
            except (ConnectionClosed, HandshakeError, trio.BrokenResourceError, trio.ClosedResourceError):
                await trio.aclose_forcefully(stream)
                nursery.cancel_scope.cancel()
                return
            conn = Connection(sim=self, ws=ws, stream=stream)
            self.connections.add(conn)
            try:
                await conn.run()
            finally:
                self.connections.discard(conn)
                nursery.cancel_scope.cancel()

    def connect_memory(self, nursery: trio.Nursery) -> trio.abc.Stream:
        """Serve a new in-memory connection in ``nursery``; return the client's end of the stream."""
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(self.serve_stream, server)
        return client

    async def serve_tcp(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0 = any free port); report and store ``ws://host:port/ws``."""
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, self.serve_stream, port, host=host))
            bound = listeners[0].socket.getsockname()[1]
            self.url = f"ws://{host}:{bound}/ws"
            task_status.started(self.url)


@asynccontextmanager
async def open_simulator(
    config: SimConfig | None = None,
    *,
    faults: Faults | None = None,
    accounts: Iterable[str] = (),
    agents: Iterable[tuple[str, str]] = (),
    listen: bool = True,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[Simulator]:
    """Run a simulator for the duration of the block.

    With no ``accounts`` or ``agents`` a funded account with a throwaway key is created
    (``sim.account`` / ``sim.account_key``). With ``listen`` the simulator serves TCP and ``sim.url`` is
    set; without it, connect through ``sim.connect_memory(nursery)``.
    """
    sim = Simulator.create(config, faults)
    for address in accounts:
        sim.add_account(address)
    for agent, master in agents:
        sim.approve_agent(agent, master)
    if sim.account is None:
        sim.create_funded_account()
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        if listen:
            await nursery.start(sim.serve_tcp, host, port)
        yield sim
        nursery.cancel_scope.cancel()
