"""The engine: a `TradingCore` (every decision, synchronous) joined to a `VenueLink` (the session host,
the only part that awaits), plus what the app and the operator read of them.

    Engine
    ├── core   hip3_trio/core.py        book, scheduler, executor, time stop, risk, readiness, detector
    │                                   → journal records through hip3_trio/journal_mapping.py
    └── link   hip3_trio/venue/link.py  sync, the reconcile loop, noops, signing; wakes the sender

`Engine` builds both from one `EngineSettings`, and offers the orderly stop (`begin_shutdown`,
`wait_settled`, `save_state`), waiting on engine state (`wait_until`), one `statistics()` snapshot and
the status line and summary made from it. See docs/architecture.md for the task tree and the order path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

import attrs
import trio

from hip3_trio.alerts import AlertKind, AlertSink, AlertStats
from hip3_trio.core import CoreSettings, CoreStatistics, TradingCore
from hip3_trio.execution.nonce import NonceManager
from hip3_trio.journal import JournalSink, JournalStats
from hip3_trio.recording.recorder import Recorder, RecorderStatistics
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.venue.link import LinkSettings, LinkStatistics, VenueLink
from hip3_trio.venue.session import ConnectionConfig
from hip3_trio.venue.trace import LatencyTrace
from hip3_trio.wire.signing import Signer

__all__ = ["Engine", "EngineSettings", "EngineStatistics"]

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class EngineSettings(CoreSettings):
    """Everything one engine run needs besides its collaborators: the core's settings (markets, run mode,
    each part's section) and the venue link's (who we trade as, the connection).

    The sections are the config file's own classes, passed through by the app (`app.engine_settings`)
    together with what only the run knows: markets, user, vault, network, dry run, and the derived
    fields of the detector and executor configs. The session of each connection is configured by
    `connection` and `scheduler` (the file's ``[batch]``) as well.
    """

    user: str
    vault_address: str | None = None
    is_mainnet: bool = False
    connection: ConnectionConfig = attrs.Factory(ConnectionConfig)
    # Not in the config file: the pause that lets a burst of reconcile requests coalesce.
    reconcile_retry_s: float = 1.0

    def link(self) -> LinkSettings:
        """What the venue link is configured by."""
        return LinkSettings(
            user=self.user,
            vault_address=self.vault_address,
            is_mainnet=self.is_mainnet,
            connection=self.connection,
            reconcile_retry_s=self.reconcile_retry_s,
        )


@attrs.frozen(kw_only=True)
class EngineStatistics:
    """One snapshot of the engine: the core's, the link's, the journal's (sink and task) and the alerts'
    counters, taken together."""

    markets: tuple[str, ...]
    core: CoreStatistics
    link: LinkStatistics
    journal_sent: int  # records queued for the journal
    journal_dropped: int  # records the engine could not queue (journal full or gone)
    journal_written: int  # records the journal task committed (`JournalStats`)
    journal_failed: int  # records lost to a write error (each latches the hard stop)
    # Seconds since each configured market's latest bbo (inf: none yet).
    market_data_age_s: Mapping[str, float]
    alerts: AlertStats = attrs.Factory(AlertStats)
    recording: RecorderStatistics | None = None  # only with --record


class Engine:
    """The trading core and the venue link of one run (see the module docstring)."""

    def __init__(
        self,
        settings: EngineSettings,
        *,
        signer: Signer | None,
        nonces: NonceManager,
        hard_stop: HardStop,
        journal: JournalSink,
        save_nonce: Callable[[int], None] | None = None,
        alerts: AlertSink | None = None,
    ) -> None:
        self.settings = settings
        self.core = TradingCore(
            settings,
            hard_stop=hard_stop,
            journal=journal,
            exchange_ms=nonces.approx_server_time_ms,
            inflight=lambda: self.link.inflight,
            now=trio.current_time(),
            alerts=alerts,
        )
        self.link = VenueLink(settings.link(), self.core, signer=signer, nonces=nonces, save_nonce=save_nonce)
        # Filled by the journal task `app.run_engine` runs (`journal.run_journal`); read by `statistics`.
        self.journal_stats = JournalStats()
        self.recorder: Recorder | None = None

    def record_to(self, recorder: Recorder) -> None:
        """Record market data (--record): every session taps its frames and sync answers into
        `recorder`, and subscribes l2Book as well when the recorder wants depth."""
        self.recorder = recorder
        self.link.tap = recorder
        self.link.subscribe_depth = recorder.depth

    def trace_latency(self, trace: LatencyTrace) -> None:
        """Instrument the signal-to-wire path (benchmarks): queued in the core, sent by the session."""
        self.link.trace = trace
        self.core.on_order_queued = trace.order_queued

    # --- the app's controls --------------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds; it is re-checked after every engine step (no polling)."""
        await self.link.wait_until(predicate)

    def settled(self) -> bool:
        """Nothing in flight, queued or live, and flat when flattening on exit (`TradingCore.settled`)."""
        return self.core.settled(self.link.inflight)

    async def wait_settled(self) -> None:
        """Wait until `settled()`: replies in, nothing queued or live, flat if flattening on exit."""
        await self.wait_until(self.settled)

    def begin_shutdown(self, reason: str) -> None:
        """Stop new orders now; with `flatten_on_exit`, flatten every position through the time stop."""
        self.core.begin_shutdown(reason, trio.current_time())

    def trip_hard_stop(self, reason: str, *, alert: AlertKind = AlertKind.HARD_STOP) -> None:
        """Latch the hard stop from outside the trading path (`TradingCore.trip_hard_stop`)."""
        self.core.trip_hard_stop(reason, trio.current_time(), alert=alert)

    def poll_hard_stop(self) -> None:
        """Act on a latch another process wrote into the hard-stop file (``hardstop trip``), as on
        `trip_hard_stop` with the file's reason: no new entries, flatten everything. The look is cheap
        (`HardStop.poll`: a ``stat`` unless the file changed) and an I/O error there is only logged."""
        record = self.core.hard_stop_latch.poll(self.core.exchange_ms())
        if record is not None:
            self.trip_hard_stop(record.reason)

    def save_state(self) -> None:
        """Persist what must survive the process (the nonce high-water mark)."""
        self.link.save_nonce()

    # --- what the operator reads ---------------------------------------------------------------------

    def statistics(self) -> EngineStatistics:
        journal = self.core.journal
        core = self.core.statistics()
        now = trio.current_time()
        return EngineStatistics(
            markets=self.settings.markets,
            core=core,
            link=self.link.statistics(),
            journal_sent=journal.sent,
            journal_dropped=journal.dropped,
            journal_written=self.journal_stats.written,
            journal_failed=self.journal_stats.failed,
            market_data_age_s={
                m: now - core.market_data_at[m] if m in core.market_data_at else math.inf
                for m in self.settings.markets
            },
            alerts=attrs.evolve(self.core.alerts.stats),
            recording=self.recorder.statistics() if self.recorder is not None else None,
        )

    def _state_text(self, s: EngineStatistics) -> str:
        core = self.core
        if s.core.hard_stopped:
            record = core.hard_stop_latch.record
            return f"HARD STOP ({record.reason if record else 'latched'}): no new entries"
        if s.core.ready:
            return "READY"
        if not s.link.connected:
            return "DISCONNECTED"
        missing = core.readiness.missing() or (["clock drift"] if core.clock_blocked else [])
        return "SYNCING (" + ", ".join(missing[:3]) + (" …" if len(missing) > 3 else "") + ")"

    def status_line(self, elapsed: float) -> str:
        """One line an operator reads without the docs, each field named, groups split by ``|``:

        ``[  3600s] READY | inflight 0, queued 0 | positions none | pnl realised 1.23 unrealised 0.00 |
        signals 40, orders 12, fills 12, rejects 0, trades 6 | connects 3, disconnects 2``

        (PnL net of fees, in USD; positions signed, e.g. ``positions xyz:COIN +0.1``).
        """
        s = self.statistics()
        c, k = s.core, s.link
        positions = ", ".join(f"{mkt} {size:+}" for mkt, size in sorted(c.positions.items())) or "none"
        mode = " DRY-RUN" if self.settings.dry_run else ""
        return (
            f"[{elapsed:6.0f}s]{mode} {self._state_text(s)} | inflight {k.inflight}, queued {c.queued} | "
            f"positions {positions} | "
            f"pnl realised {c.realized_pnl:.2f} unrealised {c.unrealized_pnl:.2f} | "
            f"signals {c.signals}, orders {c.orders}, fills {c.fills}, rejects {c.rejects}, "
            f"trades {c.trades} | "
            f"connects {k.connects}, disconnects {k.disconnects}"
            + (f" | {self.recorder.summary()}" if self.recorder is not None else "")
        )

    def summary(self) -> str:
        """The final summary printed on exit."""
        s = self.statistics()
        c, k = s.core, s.link
        latch = self.core.hard_stop_latch
        record = latch.record
        latched = "clear" if not latch.latched else (f"LATCHED: {record.reason}" if record else "LATCHED")
        skips = dict(sorted(c.skips.items(), key=lambda kv: -kv[1])[:3])
        lines = [
            "summary" + (" (dry run: no orders were sent)" if self.settings.dry_run else ""),
            f"  connects {k.connects}, disconnects {k.disconnects}, reconciles {k.reconciles}",
            f"  signals {c.signals} (refused {dict(c.signals_refused)})",
            f"  top skip reasons {skips}",
            f"  orders {c.orders}, fills {c.fills}, rejects {c.rejects}, trades {c.trades}",
            f"  realized PnL {c.realized_pnl:.4f} net (fees {c.fees:.4f}), unrealized {c.unrealized_pnl:.4f}",
            f"  noops accepted {k.noops_accepted}, refused {k.noops_refused}",
            f"  open positions {({m: str(v) for m, v in c.positions.items()}) or 'none'}",
            f"  hard stop {latched}",
            f"  journal records {s.journal_sent}, dropped {s.journal_dropped}",
        ]
        if self.recorder is not None:
            lines.append(f"  {self.recorder.summary()}")
        return "\n".join(lines)
