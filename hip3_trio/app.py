"""The engine's task tree, as far as it is wired today: connection → session → market data → detector.

`run_engine` connects (reconnecting with backoff), and on every connect the session's sync loads the
venue's metadata (perpDexs + meta per dex → asset ids and lots; an unknown configured coin stops the
engine with a clear error), subscribes `bbo` + `activeAssetCtx` for each market, and from then on every
book and oracle update goes through the detector. Signals are counted and logged — the order path
(executor, position book, time stop, risk monitor, journal) is wired in the live-engine issue; until
then every run is a dry run and says so.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import attrs
import trio
import trio_websocket

from hip3_trio.execution.batch import Batch
from hip3_trio.execution.posts import PostEntry
from hip3_trio.strategy.detector import BookTop, Detector, DetectorConfig, OracleCtx, Signal, Skip
from hip3_trio.venue.markets import Markets, MarketSpec, parse_meta, parse_perp_dexs
from hip3_trio.venue.session import Connect, Session, SessionConfig, WsLike, run_connection
from hip3_trio.wire import messages as m

__all__ = ["DryRunHost", "EngineStats", "load_markets", "run_engine", "summary", "websocket_connector"]

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 16 * 1024 * 1024


def wall_ms() -> int:
    """Epoch milliseconds: the clock exchange timestamps are compared against."""
    return time.time_ns() // 1_000_000


async def load_markets(session: Session, wanted: Sequence[str]) -> Markets:
    """perpDexs + meta(dex) for the dexes of `wanted` → the configured markets with their asset ids."""
    dex_index = parse_perp_dexs(await session.info({"type": "perpDexs"}))
    specs: list[MarketSpec] = []
    for dex in dict.fromkeys(coin.partition(":")[0] if ":" in coin else "" for coin in wanted):
        if dex not in dex_index:
            raise ValueError(f"dex {dex!r} is not listed by the venue's perpDexs")
        request: dict[str, Any] = {"type": "meta"} | ({"dex": dex} if dex else {})
        specs += parse_meta(await session.info(request), dex=dex, dex_index=dex_index[dex])
    return Markets.select(specs, wanted)


@attrs.define
class EngineStats:
    """Counters for the status line and the final summary."""

    connects: int = 0
    disconnects: int = 0
    frames: Counter[str] = attrs.Factory(Counter)
    signals: Counter[str] = attrs.Factory(Counter)
    skips: Counter[str] = attrs.Factory(Counter)
    last_signal: Signal | None = None


@attrs.define
class DryRunHost:
    """A session host that watches markets and runs the detector, and never sends an order."""

    wanted: Sequence[str]
    detector_config: DetectorConfig
    stats: EngineStats = attrs.Factory(EngineStats)
    markets: Markets | None = None
    detector: Detector | None = None
    ready: trio.Event = attrs.Factory(trio.Event)
    clock_ms: Callable[[], int] = wall_ms

    def on_message(self, session: Session, msg: m.InboundMessage, now: float) -> None:
        self.stats.frames[type(msg).__name__] += 1
        if self.detector is None or self.markets is None:
            return
        now_ms = self.clock_ms()
        result: Signal | Skip | None = None
        if isinstance(msg, m.Bbo) and msg.coin in self.markets:
            bid, ask = msg.bid, msg.ask
            top = BookTop(
                msg.coin,
                bid.px if bid else None,
                bid.sz if bid else None,
                ask.px if ask else None,
                ask.sz if ask else None,
                msg.time,
            )
            result = self.detector.on_book(top, now_ms)
        elif isinstance(msg, m.ActiveAssetCtx) and msg.coin in self.markets:
            oracle = OracleCtx(msg.coin, msg.ctx.oracle_px, msg.ctx.mark_px, now_ms)
            result = self.detector.on_oracle(oracle, now_ms)
        elif isinstance(msg, m.ChannelError):
            log.warning("venue error: %s", msg.message)
        if isinstance(result, Signal):
            self.stats.signals[result.market] += 1
            self.stats.last_signal = result
            log.info(
                "signal %s %s %s @ %s edge %.1f bps (dry run: not sent)",
                result.market,
                "buy" if result.is_buy else "sell",
                result.size,
                result.price,
                result.expected_edge_bps,
            )
        elif isinstance(result, Skip):
            self.stats.skips[result.name] += 1

    def on_post_resolved(self, session: Session, entry: PostEntry[m.PostResult]) -> None:
        log.error("dry run resolved a post it never sent: %s", entry.post_id)

    def next_batch(self, inflight: int) -> Batch | None:
        return None

    def sign(self, action_wire: dict[str, Any], nonce: int) -> dict[str, Any]:
        raise RuntimeError("a dry run signs nothing")

    def next_nonce(self) -> int:
        raise RuntimeError("a dry run uses no nonces")

    def on_noop_outcome(
        self, session: Session, original: PostEntry[m.PostResult], result: m.PostResult
    ) -> None:
        log.error("dry run got a noop outcome it never asked for")

    def on_session_end(self, session: Session, drained: Sequence[PostEntry[m.PostResult]]) -> None:
        self.stats.disconnects += 1

    async def sync(self, session: Session) -> None:
        self.stats.connects += 1
        markets = await load_markets(session, self.wanted)
        if self.markets is not None and markets != self.markets:
            raise ValueError("the venue's asset ids changed between connections; refusing to continue")
        self.markets = markets
        if self.detector is None:
            self.detector = Detector(
                self.detector_config, {c: s.sz_decimals for c, s in markets.by_coin.items()}
            )
        for coin in markets:
            await session.subscribe({"type": "bbo", "coin": coin})
            await session.subscribe({"type": "activeAssetCtx", "coin": coin})
        log.info(
            "synced: %s",
            ", ".join(
                f"{c} (asset {s.asset}, szDecimals {s.sz_decimals})" for c, s in markets.by_coin.items()
            ),
        )
        self.ready.set()


def status_line(stats: EngineStats, elapsed: float) -> str:
    """One concise line: uptime, connection count, frames, signals."""
    frames = sum(stats.frames.values())
    signals = sum(stats.signals.values())
    return (
        f"[{elapsed:6.0f}s] connects={stats.connects} disconnects={stats.disconnects} frames={frames} "
        f"bbo={stats.frames['Bbo']} ctx={stats.frames['ActiveAssetCtx']} signals={signals} (dry run)"
    )


def websocket_connector(url: str) -> Connect:
    """A connect function for the supervisor: one trio-websocket connection to `url` per call."""

    @asynccontextmanager
    async def connect() -> AsyncIterator[WsLike]:
        async with trio_websocket.open_websocket_url(url, max_message_size=MAX_MESSAGE_SIZE) as ws:
            yield ws

    return connect


async def run_engine(
    connect: Connect,
    host: DryRunHost,
    *,
    duration: float | None,
    status_every: float = 5.0,
    session_config: SessionConfig | None = None,
    out: Callable[[str], None] = print,
) -> EngineStats:
    """Run the engine over `connect` until `duration` elapses (or forever), printing status lines."""
    started = trio.current_time()
    with trio.move_on_after(duration if duration is not None else float("inf")):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_connection, connect, lambda ws: Session(ws, host, session_config))
            while True:
                await trio.sleep(status_every)
                out(status_line(host.stats, trio.current_time() - started))
    return host.stats


def summary(stats: EngineStats) -> str:
    """The final summary printed on exit."""
    lines = [
        "summary (dry run: no orders were sent)",
        f"  connects {stats.connects}, disconnects {stats.disconnects}",
        f"  frames {dict(stats.frames)}",
        f"  signals by market {dict(stats.signals) or '{}'}",
        f"  top skip reasons {dict(stats.skips.most_common(4))}",
    ]
    if stats.last_signal is not None:
        s = stats.last_signal
        edge = s.expected_edge_bps.quantize(Decimal("0.1"))
        lines.append(
            f"  last signal {s.market} {'buy' if s.is_buy else 'sell'} {s.size} @ {s.price} ({edge} bps)"
        )
    return "\n".join(lines)
