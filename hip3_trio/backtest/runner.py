"""One backtest run: the real `TradingCore` over a recording, against the venue stand-in, in recorded time.

The loop merges three time-ordered streams on the local clock (ms since the recording's first record):
the recorded frames, the venue's executions (`BacktestVenue.next_due_ms`: a post's reply and fills
reach the engine then) and the time stop's tick (every `time_stop.check_interval_s`, as the engine's
task runs it). A frame is applied before an execution due at the same instant (the venue's book at a
block is the latest frame received by then). The core's clock is the recording's: its monotonic
`now` is local seconds, its exchange clock the receive time in ms.

It starts the core as the venue link's sync would — markets and fees from the recording's info
answers, a connection, the order-stream ack, an empty fills snapshot and an empty reconciliation — and
then hands it every frame (`on_bbo`, `on_asset_ctx`), exactly as `VenueLink.on_message` does. After
every step the batches the core wants to send go to the venue at that instant (`next_batch`,
`on_batch_sent`, `on_batch_written`), and each execution comes back as the post's reply
(`on_post_outcome`) and its fills (`on_user_fills`). A reconciliation the core asks for is answered from
the venue's positions. At the end of the recording the run stops as the engine does
(`begin_shutdown`: with `flatten_on_exit`, every position is flattened against the last books) and
runs the venue and the time stop on for `time_stop.exit_deadline_s`.

Trades are the core's own closed round trips (`ClosedTrade`, taken from its journal records), so the
PnL and fees are computed by the engine's position book from the venue's fills.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Final

import attrs
import trio

from hip3_trio.backtest.source import Frame, FrameCounts, Setup, iter_frames
from hip3_trio.backtest.venue import BacktestVenue, Execution
from hip3_trio.core import CoreSettings, TradingCore
from hip3_trio.execution.posts import PostEntry, PostState, Reply
from hip3_trio.fees import market_fee_bps
from hip3_trio.journal import JournalSink, Record, TradeRecord
from hip3_trio.position.book import DexState
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.sim.realism import Realism
from hip3_trio.wire import messages as m

__all__ = ["RunResult", "run_backtest"]

USER: Final = "0x" + "b" * 40  # the backtest's account (never signs anything)
_NONCE_BASE: Final = 1


@attrs.define
class _Journal(JournalSink):
    """The core's journal in a backtest: keeps the closed trades, drops every other record."""

    trades: list[TradeRecord] = attrs.Factory(list)

    def record(self, record: Record) -> bool:
        if isinstance(record, TradeRecord):
            self.trades.append(record)
        return True


@attrs.frozen(kw_only=True)
class RunResult:
    """What one run produced: the closed trades (as journal rows), what the venue saw, how many frames
    were read and used, the core's signal counts, and how it ended."""

    trades: tuple[TradeRecord, ...]
    venue: dict[str, int]  # `venue.VENUE_COUNTS`
    frames: FrameCounts
    signals: int
    signals_acted: int
    hard_stop: str | None
    open_positions: dict[str, str]


class _Listener:
    def __init__(self) -> None:
        self.reconcile_wanted = False

    def after_step(self, *, reconcile_wanted: bool) -> None:
        self.reconcile_wanted |= reconcile_wanted


class _Run:
    """The state of one run's event loop (see the module docstring)."""

    def __init__(self, settings: CoreSettings, setup: Setup, realism: Realism, seed: int, state_dir: Path):
        self.origin_us = setup.start_us
        self.origin_ms = setup.start_us // 1000
        self.local_ms = 0.0
        self.listener = _Listener()
        send, _receive = trio.open_memory_channel[Record](0)
        self.journal = _Journal(send)
        self.core = TradingCore(
            settings,
            hard_stop=HardStop(state_dir / "hard_stop.json"),
            journal=self.journal,
            exchange_ms=self.exchange_ms,
            inflight=self.inflight,
            now=0.0,
            listener=self.listener,
        )
        self.core.on_markets(setup.specs)
        self.core.on_fees(setup.fees)
        override = settings.detector.taker_fee_bps
        fee_bps: dict[str, Decimal] = {}
        for coin, spec in setup.specs.items():  # the venue charges its rule; unknown: the override, or 0
            fee = market_fee_bps(setup.fees, spec)
            fee_bps[coin] = fee if fee is not None else override if override is not None else Decimal(0)
        self.venue = BacktestVenue(
            specs=setup.specs,
            fee_bps=fee_bps,
            realism=realism,
            seed=seed,
            origin_ms=self.origin_ms,
            user=USER,
        )
        self.posts: dict[int, PostEntry[m.PostResult]] = {}
        self.next_post = 0
        self.tick_every_ms = settings.time_stop.check_interval_s * 1000
        self.next_tick_ms = self.tick_every_ms
        self.next_event_ms = self.next_tick_ms  # the earliest execution or tick (local ms)
        self._start()

    # --- the core's clocks -----------------------------------------------------------------------

    def exchange_ms(self) -> int:
        return self.origin_ms + int(self.local_ms)

    def inflight(self) -> int:
        return len(self.posts)

    @property
    def now(self) -> float:
        return self.local_ms / 1000

    # --- the sync ---------------------------------------------------------------------------------

    def _start(self) -> None:
        core, now = self.core, self.now
        core.on_connect(now)
        core.on_subscription_ack(m.SubscriptionAck("subscribe", {"type": "orderUpdates", "user": USER}), now)
        core.on_user_fills(m.UserFills(USER, (), is_snapshot=True), now)
        self._reconcile()

    def _reconcile(self) -> None:
        self.listener.reconcile_wanted = False
        positions = self.venue.asset_positions()
        dexes = dict.fromkeys(spec.dex for spec in self.core.specs.values())
        states = [
            DexState(
                dex, tuple(p for p in positions if self.core.specs[p.coin].dex == dex), self.exchange_ms()
            )
            for dex in dexes
        ]
        self.core.apply_reconcile(states, (), {}, self.now, unknown_queried=0, clock_blocked=False)

    # --- the loop ---------------------------------------------------------------------------------

    def run(self, frames: Iterator[Frame], exit_deadline_s: float) -> None:
        core, venue, origin_us = self.core, self.venue, self.origin_us
        on_bbo, on_asset_ctx, bbos, listener = core.on_bbo, core.on_asset_ctx, venue.bbos, self.listener
        on_book = venue.on_book
        queued = core.scheduler.__len__
        for recv_us, msg in frames:
            at = (recv_us - origin_us) / 1000
            if at > self.next_event_ms:  # most frames: nothing is due before them
                self.advance(at, inclusive=False)
            self.local_ms = at
            if type(msg) is m.Bbo:
                bbos[msg.coin] = msg  # = venue.on_bbo(msg)
                if on_book(msg.coin, at):  # a competitor was sent
                    self._note_due()
                on_bbo(msg, at / 1000)
            elif type(msg) is m.ActiveAssetCtx:
                venue.on_asset_ctx(msg, at)  # competitors may send orders
                self._note_due()
                on_asset_ctx(msg, at / 1000)
            else:
                venue.on_l2(msg)  # type: ignore[arg-type]
                if on_book(msg.coin, at):
                    self._note_due()
            if queued() or listener.reconcile_wanted:
                self.pump()
        core.begin_shutdown("end of the recording", self.now)
        self.pump()
        self.advance(self.local_ms + exit_deadline_s * 1000, inclusive=True)

    def advance(self, until_ms: float, *, inclusive: bool) -> None:
        """Run the venue's executions and the ticks due before `until_ms` (or at it, `inclusive`)."""
        venue = self.venue
        while True:
            due = venue.next_due_ms()
            due = math.inf if due is None else due
            tick = self.next_tick_ms
            first = min(due, tick)
            if first > until_ms or (first == until_ms and not inclusive):
                self.next_event_ms = first
                return
            self.local_ms = max(self.local_ms, first)
            if due <= tick:
                execution = venue.execute_next()
                if execution is not None:
                    self.deliver(execution)
            else:
                self.next_tick_ms += self.tick_every_ms
                self.core.tick(self.now)
            self.pump()

    def deliver(self, execution: Execution) -> None:
        now = self.now
        entry = self.posts.pop(execution.post_id)
        resolved = attrs.evolve(
            entry, state=PostState.RESOLVED, resolved_at=now, outcome=Reply(execution.result)
        )
        self.core.on_post_outcome(resolved, now)
        if execution.fills:
            self.core.on_user_fills(m.UserFills(USER, execution.fills), now)

    def pump(self) -> None:
        """Send what the core wants sent now; answer a reconciliation it asked for."""
        core, now = self.core, self.now
        if self.listener.reconcile_wanted:
            self._reconcile()
        while len(core.scheduler):
            batch = core.next_batch(len(self.posts), now)
            if batch is None:
                return
            self.next_post += 1
            entry = PostEntry[m.PostResult](
                self.next_post, batch, _NONCE_BASE + self.next_post, now, PostState.SENT, sent_at=now
            )
            self.posts[entry.post_id] = entry
            core.on_batch_sent(batch, now, now)
            self.venue.submit(entry.post_id, batch, self.local_ms)
            core.on_batch_written(now)
            self._note_due()

    def _note_due(self) -> None:
        """The venue may have queued an execution: bring `next_event_ms` forward to it."""
        due = self.venue.next_due_ms()
        if due is not None and due < self.next_event_ms:
            self.next_event_ms = due

    def result(self, counts: FrameCounts) -> RunResult:
        stats = self.core.statistics()
        latch = self.core.hard_stop_latch.record
        return RunResult(
            trades=tuple(self.journal.trades),
            venue=dict(self.venue.counts),
            frames=counts,
            signals=stats.signals,
            signals_acted=stats.signals_acted,
            hard_stop=latch.reason if latch is not None else None,
            open_positions={coin: str(size) for coin, size in stats.positions.items()},
        )


def run_backtest(
    path: Path,
    setup: Setup,
    settings: CoreSettings,
    *,
    realism: Realism,
    seed: int,
    exit_deadline_s: float,
    frames: Callable[[Path, Sequence[str], FrameCounts], Iterator[Frame]] = iter_frames,
) -> RunResult:
    """Run the core of `settings` over the recording at `path` (see the module docstring)."""
    counts = FrameCounts()
    with tempfile.TemporaryDirectory(prefix="hip3-backtest-") as state_dir:
        run = _Run(settings, setup, realism, seed, Path(state_dir))
        run.run(frames(path, settings.markets, counts), exit_deadline_s)
        return run.result(counts)
