"""Replay: the simulator serves a recording (`hip3_trio.recording`) as its venue.

    python -m hip3_trio.sim --replay DIR [--speed X]        (DIR, or one of its day files)
    python -m hip3_trio --env sim --replay DIR [--replay-speed X]

What comes from the recording, and what stays the simulator's:

- **Metadata**: the dexes, markets, asset ids, size decimals and flags are built from the recorded
  ``perpDexs`` and ``meta`` answers, and those answers (and ``userFees``) are served verbatim
  (`Exchange.recorded_info`); the fee scales, growth-mode markets and the account's fee rates feed the
  simulator's own fee rules, which charge the fills. Accounts, margin, nonces and the action budget are
  the simulator's, unchanged.
- **Market data**: every recorded ``bbo``, ``activeAssetCtx`` and ``l2Book`` frame is published as it was
  recorded, at its recorded time scaled by 1/speed, counted from `LEAD_IN_S` after the first market-data
  subscription (so the client that subscribes first sees the recording from its first frame). The random
  walk does not run (`Simulator.market_driver`). The venue clock is the wall clock, and a frame's
  ``data.time`` (bbo, l2Book) is moved onto it (`Replay.retimed`: same offsets, over the speed), so an
  engine's clock-drift and staleness checks hold; everything else in a frame is as recorded.
- **Matching**: each frame also sets the market's state: the latest ``l2Book`` is the book (20 levels a
  side, as the venue sent it); a newer ``bbo`` replaces its top (levels it crosses drop out); without any
  ``l2Book`` the book is the bbo's top level alone. ``activeAssetCtx`` sets the oracle and mark. An order
  is matched by the simulator's own matching against that book, at that instant.
- **Impact** (`realism.ImpactModel`, `realism.Depletion`): what takers consumed from a level (read at the
  next recorded update, as the difference between what was shown and what is left) stays missing at that
  price in every later recorded book and comes back linearly over ``refill_s``. Without it, the next
  recorded frame would hand back liquidity we (or a competitor) had just taken.
- **Competition** (`realism.CompetitionModel`): when a recorded update shows levels priced through the
  oracle by ``min_edge_bps``, a competing taker sweeps them (`realism.sweep`) after its seeded lognormal
  delay, so the engine only gets a dislocation when it is faster.

Both models are on by default (`ReplayOptions`); ``--no-realism`` turns them off, and the simulator's
blocks and latency with them. The simulator's blocks and latency apply to a replay: an order arrives
after the one-way latency and executes at its block boundary against the recorded book of that moment
(its replies and pushes come back after the latency). Not yet: a replayed update is applied when its
recorded time comes, not at a block boundary, and the competitor here runs on its own timer rather than
in the simulator's block queue (`Simulator._queue`), so a competitor and our order in the same block are
ordered by time, not by the block's arrival order. GTC orders resting on the book are not filled by a later
recorded book crossing them (the engine sends IOC orders only).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, cast

import attrs
import trio

from hip3_trio.recording.format import RecordingError, iter_records

from .config import SimConfig, default_realism
from .info import recorded_key
from .markets import AssetDef, DexSpec, Level, MarginMode, Market
from .realism import (
    BlockModel,
    CompetitionModel,
    Depletion,
    ImpactModel,
    LatencyModel,
    Realism,
    competitor_levels,
    sweep,
)
from .server import Simulator

__all__ = ["LEAD_IN_S", "Frame", "Recording", "Replay", "ReplayOptions", "load_recording", "open_replay"]

log = logging.getLogger(__name__)

#: The replay starts this long after the first market-data subscription: time for the client to
#: subscribe the rest of its markets.
LEAD_IN_S: Final = 1.0
MARKET_DATA: Final = frozenset({"bbo", "activeAssetCtx", "l2Book"})


@attrs.frozen
class Frame:
    """One recorded market-data frame."""

    at_s: float  # recorded seconds after the first frame
    channel: str
    coin: str
    message: dict[str, Any]


@attrs.frozen
class Recording:
    """What a replay needs from a recording: its frames and its metadata answers."""

    frames: tuple[Frame, ...]
    info: Mapping[str, Any]  # `info.recorded_key` → the latest answer
    first_us: int
    markets: tuple[str, ...]  # the recording engine's markets (its latest head)

    def answer(self, request: Mapping[str, Any]) -> Any:
        return self.info.get(recorded_key(dict(request)))


def load_recording(source: Path) -> Recording:
    """Read a recording (a directory or one file). `RecordingError` when it is missing, unreadable, or
    lacks what a replay needs (market-data frames, the perpDexs and meta answers)."""
    frames: list[Frame] = []
    info: dict[str, Any] = {}
    first_us: int | None = None
    markets: tuple[str, ...] = ()
    for record in iter_records(source):
        if record.kind == "head":
            markets = tuple(record.json().get("markets", ()))
        elif record.kind == "info":
            answer = record.json()
            info[recorded_key(answer["req"])] = answer["resp"]
        elif record.kind == "ws":
            message = record.json()
            channel = message.get("channel")
            data = message.get("data")
            if channel not in MARKET_DATA or not isinstance(data, dict) or "coin" not in data:
                continue
            first_us = record.recv_us if first_us is None else first_us
            frames.append(Frame((record.recv_us - first_us) / 1e6, channel, data["coin"], message))
    if first_us is None:
        raise RecordingError(f"{source} holds no market-data frames to replay")
    if recorded_key({"type": "perpDexs"}) not in info:
        raise RecordingError(f"{source} holds no perpDexs answer (a recording starts with one)")
    return Recording(tuple(frames), info, first_us, markets)


def _dexes(recording: Recording) -> tuple[DexSpec, ...]:
    """The dexes and their assets as the recorded perpDexs and meta answers list them (asset ids follow
    from the order, as on the venue); a dex whose meta was not recorded has no assets."""
    dexes = []
    for entry in recording.answer({"type": "perpDexs"}):
        name = "" if entry is None else entry["name"]
        meta = recording.answer({"type": "meta", "dex": name}) or {"universe": []}
        assets = tuple(
            AssetDef(
                coin=u["name"].partition(":")[2] if name else u["name"],
                sz_decimals=u["szDecimals"],
                max_leverage=u["maxLeverage"],
                start_px="1",
                only_isolated=bool(u.get("onlyIsolated")),
                margin_mode=cast(MarginMode | None, u.get("marginMode")),
                delisted=bool(u.get("isDelisted")),
            )
            for u in meta["universe"]
        )
        info = entry or {}
        dexes.append(
            DexSpec(
                name=name,
                full_name=info.get("fullName", ""),
                deployer=info.get("deployer", ""),
                assets=assets,
                collateral_token=meta.get("collateralToken", 0),
            )
        )
    return tuple(dexes)


def sim_config(recording: Recording, options: ReplayOptions) -> SimConfig:
    """The simulator's settings from the recording: the dexes' fee scales, the growth-mode markets and
    the account's fee rates (so the fills cost what the engine expects). The venue clock is the wall
    clock (or `base_epoch_ms`), not the recording's: an engine checks the venue's clock against its own.
    The simulator's blocks and latency apply to a replay as to the random walk (an order waits for its
    block against the recorded book of that moment); its own competitors and impact do not (they work on
    the random walk's synthetic levels): the replay's models (`ReplayOptions`) take their place."""
    realism = default_realism()
    realism = attrs.evolve(
        realism,
        blocks=options.blocks or realism.blocks,
        latency=options.latency or realism.latency,
        competition=CompetitionModel(enabled=False),
        impact=ImpactModel(enabled=False),
    )
    config = SimConfig(seed=options.seed, base_epoch_ms=options.base_epoch_ms, realism=realism)
    for entry in recording.answer({"type": "perpDexs"})[1:]:
        if entry is not None and entry.get("deployerFeeScale") is not None:
            config.deployer_fee_scales[entry["name"]] = Decimal(entry["deployerFeeScale"])
    growth = [
        u["name"]
        for key, meta in recording.info.items()
        if json.loads(key).get("type") == "meta"
        for u in meta["universe"]
        if u.get("growthMode") == "enabled"
    ]
    config.growth_mode_markets = tuple(growth)
    fees = recording.answer({"type": "userFees"})
    if isinstance(fees, dict):
        config.taker_rate = Decimal(fees["userCrossRate"])
        config.maker_rate = Decimal(fees.get("userAddRate", config.maker_rate))
        config.referral_discount = Decimal(fees.get("activeReferralDiscount", "0"))
    return config


@attrs.frozen
class ReplayOptions:
    """How the recording is served: its speed, and the realism models on top of it."""

    speed: float = 1.0
    impact: ImpactModel = attrs.Factory(ImpactModel)
    competition: CompetitionModel = attrs.Factory(CompetitionModel)
    seed: int = 7
    base_epoch_ms: int | None = None  # the venue clock at start (None: the wall clock)
    # The simulator's block cadence and one-way latency for the replay; None: the simulator's default.
    blocks: BlockModel | None = None
    latency: LatencyModel | None = None

    @classmethod
    def with_realism(cls, speed: float, realism: Realism, seed: int = 7) -> ReplayOptions:
        """The replay of `speed` with the models of `realism` (the command lines' realism flags)."""
        return cls(
            speed,
            realism.impact,
            realism.competition,
            seed=seed,
            blocks=realism.blocks,
            latency=realism.latency,
        )

    @classmethod
    def plain(cls, speed: float = 1.0) -> ReplayOptions:
        """The recording as it was: no impact, no competitors, no blocks, no latency."""
        return cls(
            speed,
            ImpactModel(enabled=False),
            CompetitionModel(enabled=False),
            blocks=BlockModel(enabled=False),
            latency=LatencyModel(one_way_ms=0.0),
        )


class Replay:
    """Drives a simulator's markets from a recording (see the module docstring)."""

    def __init__(self, sim: Simulator, recording: Recording, options: ReplayOptions) -> None:
        if not options.speed > 0:
            raise ValueError(f"speed must be > 0, got {options.speed}")
        self.sim = sim
        self.recording = recording
        self.options = options
        self.served = 0
        self.competitor_fills = 0
        self.started = trio.Event()
        self.finished = trio.Event()
        self._subscribed = trio.Event()
        self._depletion = Depletion(options.impact)
        self._shown: dict[str, dict[tuple[bool, Decimal], Decimal]] = {}
        self._depth: dict[str, tuple[list[Level], list[Level]]] = {}
        self._rng = random.Random(f"hip3-trio-replay:{options.seed}:competitors")
        self._nursery: trio.Nursery | None = None
        self._venue_start_ms = 0
        exchange = sim.exchange
        exchange.recorded_info = dict(recording.info)
        for market in exchange.markets.values():
            market.bids, market.asks = [], []
        self._prime()
        sim.market_driver = self.run
        sim.hub.on_subscribe = self._on_subscribe

    def _prime(self) -> None:
        """Start each market at its first recorded prices (the oracle and mark, else the bbo's mid)."""
        primed: set[str] = set()
        for frame in self.recording.frames:
            market = self.sim.exchange.markets.get(frame.coin)
            if market is None or frame.coin in primed:
                continue
            if frame.channel == "activeAssetCtx":
                self._apply_ctx(market, frame.message["data"]["ctx"])
                primed.add(frame.coin)

    def _on_subscribe(self, key: tuple[str, ...]) -> None:
        if key[0] in MARKET_DATA:
            self._subscribed.set()

    async def run(self) -> None:
        """Publish the recorded frames at their times (the simulator's market driver)."""
        await self._subscribed.wait()
        await trio.sleep(LEAD_IN_S)
        start = trio.current_time()
        self._venue_start_ms = self.sim.clock.now_ms()
        self.started.set()
        log.info("replaying %d frames at %gx", len(self.recording.frames), self.options.speed)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for frame in self.recording.frames:
                await trio.sleep_until(start + frame.at_s / self.options.speed)
                self.apply(frame)
            log.info("replay finished: %d frames served", self.served)
            self.finished.set()

    def apply(self, frame: Frame) -> None:
        """One recorded frame: the market's state, then the frame itself to the subscribers."""
        market = self.sim.exchange.markets.get(frame.coin)
        data = frame.message["data"]
        if market is not None:
            if frame.channel == "activeAssetCtx":
                self._apply_ctx(market, data["ctx"])
            elif frame.channel == "l2Book":
                bids, asks = ([_level(x) for x in side] for side in data["levels"])
                self._depth[frame.coin] = (bids, asks)
                self._set_book(market, bids, asks)
            else:
                self._apply_bbo(market, data["bbo"])
            self._compete(market)
        self.sim.hub.publish((frame.channel, frame.coin), self.retimed(frame.message))
        self.served += 1

    def retimed(self, message: dict[str, Any]) -> dict[str, Any]:
        """The frame with its ``data.time`` (bbo, l2Book) moved onto the venue clock: the same offsets
        from the recording's start, over the speed. Everything else is as recorded."""
        data = message["data"]
        if not isinstance(data.get("time"), int):
            return message
        offset_ms = (data["time"] - self.recording.first_us / 1000) / self.options.speed
        return message | {"data": data | {"time": self._venue_start_ms + round(offset_ms)}}

    def _apply_ctx(self, market: Market, ctx: Mapping[str, Any]) -> None:
        market.oracle = Decimal(ctx["oraclePx"])
        market.mark = Decimal(ctx["markPx"])
        if ctx.get("prevDayPx") is not None:
            market.prev_day_px = Decimal(ctx["prevDayPx"])

    def _apply_bbo(self, market: Market, pair: list[Any]) -> None:
        deep_bids, deep_asks = self._depth.get(market.spec.name, ([], []))
        bid = _level(pair[0]) if pair[0] is not None else None
        ask = _level(pair[1]) if pair[1] is not None else None
        bids = ([bid] + [lvl for lvl in deep_bids if lvl.px < bid.px]) if bid is not None else []
        asks = ([ask] + [lvl for lvl in deep_asks if lvl.px > ask.px]) if ask is not None else []
        self._set_book(market, bids, asks)

    def _set_book(self, market: Market, bids: list[Level], asks: list[Level]) -> None:
        """Replace the book with recorded levels; what takers consumed since the last update is kept
        as depletion (impact), and each new level shows its recorded size less what is still missing."""
        now_ms = trio.current_time() * 1000.0
        shown = self._shown.setdefault(market.spec.name, {})
        sides = ((True, market.bids), (False, market.asks))
        left = {(is_bid, lvl.px): lvl.sz for is_bid, levels in sides for lvl in levels}
        for (is_bid, px), size in shown.items():  # a level taken whole is no longer in the book
            taken = size - left.get((is_bid, px), Decimal(0))
            self._depletion.consume(is_bid, px, taken, now_ms, market.oracle)
        shown.clear()
        # Fresh levels for the book: takers mutate what is installed, and the recorded levels (kept in
        # `_depth` for the bbo frames after them) must keep their recorded sizes, or what was consumed
        # would be taken off again at every later frame.
        visible = self._depletion.visible
        book: dict[bool, list[Level]] = {}
        for is_bid, levels in ((True, bids), (False, asks)):
            side = book[is_bid] = []
            for lvl in levels:
                size = visible(is_bid, lvl.px, lvl.sz, now_ms, market.oracle)
                shown[(is_bid, lvl.px)] = size
                if size > 0:
                    side.append(Level(lvl.px, size))
        market.bids, market.asks = book[True], book[False]

    def _compete(self, market: Market) -> None:
        """A competitor goes for the levels priced through the oracle (after its delay)."""
        model = self.options.competition
        if not model.enabled or self._nursery is None:
            return
        for is_buy, levels in ((True, market.asks), (False, market.bids)):
            wanted = competitor_levels(
                [(lvl.px, lvl.sz) for lvl in levels], is_buy, market.oracle, model.min_edge_bps
            )
            if wanted:
                delay_s = model.draw_delay_ms(self._rng) / 1000.0
                limit, size = wanted[-1][0], sum((sz for _, sz in wanted), Decimal(0))
                self._nursery.start_soon(self._take_later, market, is_buy, limit, size, delay_s)

    async def _take_later(
        self, market: Market, is_buy: bool, limit: Decimal, size: Decimal, delay: float
    ) -> None:
        await trio.sleep(delay)
        levels = market.asks if is_buy else market.bids
        fills = dict(sweep([(lvl.px, lvl.sz) for lvl in levels if lvl.sz > 0], is_buy, limit, size))
        for lvl in levels:
            lvl.sz -= fills.get(lvl.px, Decimal(0))
        levels[:] = [lvl for lvl in levels if lvl.sz > 0]
        if fills:
            self.competitor_fills += 1


def _level(raw: Mapping[str, Any]) -> Level:
    return Level(Decimal(raw["px"]), Decimal(raw["sz"]))


@asynccontextmanager
async def open_replay(
    recording: Recording,
    options: ReplayOptions | None = None,
    *,
    listen: bool = True,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[tuple[Simulator, Replay]]:
    """A simulator serving `recording` (`load_recording`), with a funded account (`sim.account`,
    `sim.account_key`), for the duration of the block; with `listen`, on TCP (`sim.url`)."""
    options = options or ReplayOptions()
    config = sim_config(recording, options)
    sim = Simulator.create(config, dexes=_dexes(recording))
    replay = Replay(sim, recording, options)
    sim.create_funded_account()
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        if listen:
            await nursery.start(sim.serve_tcp, host, port)
        yield sim, replay
        nursery.cancel_scope.cancel()
