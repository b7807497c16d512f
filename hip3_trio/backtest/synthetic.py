"""Recordings made by hand: for the backtest's tests and its benchmark (no live recording needed).

`RecordingBuilder` writes a recording in the recorder's format (`hip3_trio.recording.format`): a
``head``, the ``info`` answers of a sync (``perpDexs`` with each dex's ``deployerFeeScale``, ``meta``
per dex, ``userFees``), then ``ws`` frames shaped as the venue sends them (``bbo``,
``activeAssetCtx``, ``l2Book``, and any other text). Times are ms after the builder's start.

`random_walk` fills a builder with a seeded market: a book that drifts around an oracle updated every
3 s, with a dislocation now and then, and unused frames (trades) mixed in, as a live recording would
hold them — what `scripts/bench_backtest.py` measures throughput on.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from hip3_trio.recording.format import compress_member, encode_json, encode_line, file_name_for
from hip3_trio.wire.markets import dex_of

__all__ = ["RecordingBuilder", "random_walk"]

Px = Decimal | str


def _level(px: Px, sz: Px) -> dict[str, Any]:
    return {"px": str(px), "sz": str(sz), "n": 1}


def _frame(channel: str, data: Any) -> str:
    return json.dumps({"channel": channel, "data": data}, separators=(",", ":"))


class RecordingBuilder:
    """Lines of one recording, written by `write` as one file of gzip members."""

    def __init__(
        self,
        markets: Sequence[str],
        *,
        start_us: int = 1_795_000_000_000_000,
        fee_scales: Mapping[str, str] | None = None,
        growth: Sequence[str] = (),
        sz_decimals: int = 2,
        user_fees: Mapping[str, str] | None = None,
    ) -> None:
        """`fee_scales`: each dex's ``deployerFeeScale`` (default "1"); `growth`: coins in growth mode;
        `user_fees`: the ``userFees`` answer (None: tier 0, no discount; {} : leave it out)."""
        self.start_us = start_us
        self.lines: list[str] = []
        dexes = list(dict.fromkeys(dex_of(c) for c in markets))
        scales = dict(fee_scales or {})
        self._record(0, "head", {"format": 1, "env": "testnet", "markets": list(markets)})
        perp_dexs: list[Any] = [None] + [
            {"name": dex, "deployerFeeScale": scales.get(dex, "1")} for dex in dexes if dex
        ]
        self._record(0, "info", {"req": {"type": "perpDexs"}, "resp": perp_dexs})
        for dex in dexes:
            universe = [
                {"name": c, "szDecimals": sz_decimals, "maxLeverage": 10}
                | ({"growthMode": "enabled"} if c in growth else {})
                for c in markets
                if dex_of(c) == dex
            ]
            self._record(0, "info", {"req": {"type": "meta", "dex": dex}, "resp": {"universe": universe}})
        fees = {"userCrossRate": "0.00045", "activeReferralDiscount": "0"} if user_fees is None else user_fees
        if fees:
            self._record(
                0, "info", {"req": {"type": "userFees", "user": "0x" + "b" * 40}, "resp": dict(fees)}
            )

    def _record(self, at_ms: float, kind: Any, value: Any) -> None:
        self.lines.append(encode_json(self.start_us + round(at_ms * 1000), kind, value))

    def raw(self, at_ms: float, text: str) -> None:
        """Any frame text, received at `at_ms`."""
        self.lines.append(encode_line(self.start_us + round(at_ms * 1000), "ws", text))

    def bbo(self, at_ms: float, coin: str, bid: tuple[Px, Px] | None, ask: tuple[Px, Px] | None) -> None:
        """A `bbo` frame received at `at_ms`, stamped by the venue at the same ms."""
        time = (self.start_us + round(at_ms * 1000)) // 1000
        pair = [None if bid is None else _level(*bid), None if ask is None else _level(*ask)]
        self.raw(at_ms, _frame("bbo", {"coin": coin, "time": time, "bbo": pair}))

    def ctx(self, at_ms: float, coin: str, oracle: Px, mark: Px | None = None) -> None:
        """An `activeAssetCtx` frame with this oracle (and mark: the oracle's by default)."""
        ctx = {"oraclePx": str(oracle), "markPx": str(mark if mark is not None else oracle), "funding": "0"}
        self.raw(at_ms, _frame("activeAssetCtx", {"coin": coin, "ctx": ctx}))

    def l2(
        self, at_ms: float, coin: str, bids: Sequence[tuple[Px, Px]], asks: Sequence[tuple[Px, Px]]
    ) -> None:
        """An `l2Book` frame, levels best first."""
        time = (self.start_us + round(at_ms * 1000)) // 1000
        levels = [[_level(*lvl) for lvl in bids], [_level(*lvl) for lvl in asks]]
        self.raw(at_ms, _frame("l2Book", {"coin": coin, "time": time, "levels": levels}))

    def write(self, directory: Path, *, member_lines: int = 5000) -> Path:
        """The recording as one day file in `directory` (created), `member_lines` lines per member."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / file_name_for(self.start_us)
        with path.open("wb") as out:
            for i in range(0, len(self.lines), member_lines):
                out.write(compress_member(self.lines[i : i + member_lines]))
        return path


def random_walk(builder: RecordingBuilder, markets: Sequence[str], *, frames: int, seed: int) -> None:
    """Add `frames` frames to `builder`: bbo frames a few ms apart around a drifting oracle, an oracle
    update in about twenty, a ~40 bps dislocation lasting 300 ms now and then, and one unused `trades`
    frame in ten."""
    rng = random.Random(seed)
    oracle = dict.fromkeys(markets, 100.0)
    dislocated: dict[str, tuple[float, float]] = {}  # coin → (until ms, signed offset)
    t = 1.0
    for i in range(frames):
        t += rng.uniform(0.5, 3.0)
        coin = markets[i % len(markets)]
        if i % 10 == 9:
            builder.raw(t, _frame("trades", [{"coin": coin, "px": "100.0", "sz": "1", "time": int(t)}]))
            continue
        if i % 300 == 0 or rng.random() < 0.05:
            oracle[coin] *= 1 + rng.gauss(0, 0.0005)
            builder.ctx(t, coin, f"{oracle[coin]:.3f}")
            continue
        mid = oracle[coin] * (1 + rng.gauss(0, 0.0002))
        if rng.random() < 0.0005:  # a dislocation of ~40 bps for 300 ms
            dislocated[coin] = (t + 300, rng.choice((-1, 1)) * 0.004)
        until, offset = dislocated.get(coin, (0.0, 0.0))
        if t < until:
            mid = oracle[coin] * (1 + offset)
        half = oracle[coin] * 0.0002
        builder.bbo(t, coin, (f"{mid - half:.3f}", "100"), (f"{mid + half:.3f}", "100"))
