"""A recording as the backtest reads it: the venue's setup (markets, fees) and the market-data frames.

`load_setup` reads the ``head`` and ``info`` records (``perpDexs``, ``meta`` per dex, ``userFees``: the
recorder writes them at the start of every file, `hip3_trio.recording.format`) into the market specs the
engine would have built at its sync, with the same parsers (`hip3_trio.wire.markets`, `hip3_trio.fees`).

`iter_frames` yields the ``ws`` frames the strategy uses — ``bbo``, ``activeAssetCtx`` and ``l2Book`` of
the markets under test — decoded by the engine's own `decode_frame`. A frame of another channel or
another coin is skipped by looking at its text only (the recorder stores frames exactly as received,
``{"channel":"bbo","data":{"coin":"xyz:COIN",...``): no JSON is decoded for what is not used.

Everything a recording can get wrong is a `BacktestInputError` naming the file and the problem (the
command prints it as one line, exit 2).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import attrs

from hip3_trio.fees import UserFees, decode_user_fees
from hip3_trio.recording.format import Record, RecordingError, iter_records
from hip3_trio.wire import messages as m
from hip3_trio.wire.markets import (
    MarketsError,
    MarketSpec,
    dex_of,
    parse_fee_scales,
    parse_meta,
    parse_perp_dexs,
)

__all__ = ["DEFAULT_FEES", "BacktestInputError", "Frame", "FrameCounts", "Setup", "iter_frames", "load_setup"]

#: The venue's tier-0 taker rate, no discount: what a recording without a `userFees` answer is charged.
DEFAULT_FEES: Final = UserFees(cross_rate=Decimal("0.00045"), referral_discount=Decimal(0))

_USED_CHANNELS: Final = ("bbo", "activeAssetCtx", "l2Book")
_CHANNEL_HEAD: Final = '{"channel":"'

Frame = tuple[int, m.Bbo | m.ActiveAssetCtx | m.L2Book]
"""(receive time in µs, the decoded frame)."""


class BacktestInputError(Exception):
    """A recording (or a request about it) the backtest cannot use; the message is one line."""


@attrs.frozen
class Setup:
    """What the engine learns at its sync, as recorded: the specs of the markets under test, the
    account's fees (`fees_recorded` False: the recording had no `userFees`, tier 0 is assumed), and the
    first receive time (µs)."""

    specs: dict[str, MarketSpec]
    fees: UserFees
    fees_recorded: bool
    start_us: int


def _records(path: Path) -> Iterator[Record]:
    try:
        yield from iter_records(path)
    except RecordingError as exc:
        raise BacktestInputError(str(exc)) from None
    except OSError as exc:
        raise BacktestInputError(f"cannot read the recording {path}: {exc.strerror or exc}") from None


def load_setup(path: Path, markets: Sequence[str] = ()) -> Setup:
    """The setup of the recording at `path` for `markets` (empty: the markets its first ``head`` names).

    The latest ``perpDexs``, ``meta`` per dex and ``userFees`` answers before the first market-data frame
    are used (a recording's files each start with them)."""
    perp_dexs: Any = None
    metas: dict[str, Any] = {}
    fees: UserFees | None = None
    head_markets: list[str] = []
    start_us: int | None = None
    for record in _records(path):
        start_us = record.recv_us if start_us is None else start_us
        if record.kind == "ws":
            break
        value = _json(record)
        if record.kind == "head":
            if not head_markets and isinstance(value, dict) and isinstance(value.get("markets"), list):
                head_markets = [str(coin) for coin in value["markets"]]
            continue
        request = value.get("req") if isinstance(value, dict) else None
        kind = request.get("type") if isinstance(request, dict) else None
        if kind == "perpDexs":
            perp_dexs = value["resp"]
        elif kind == "meta":
            metas[str(request.get("dex", ""))] = value["resp"]  # type: ignore[union-attr]
        elif kind == "userFees":
            try:
                fees = decode_user_fees(value["resp"])
            except m.ProtocolError as exc:
                raise BacktestInputError(f"{path}: recorded userFees unusable: {exc}") from None
    if start_us is None:
        raise BacktestInputError(f"{path}: the recording holds no records")
    wanted = list(markets) or head_markets
    if not wanted:
        raise BacktestInputError(f"{path}: no markets: the recording's head names none and none were given")
    return Setup(_specs(path, perp_dexs, metas, wanted), fees or DEFAULT_FEES, fees is not None, start_us)


def _json(record: Record) -> Any:
    try:
        return record.json()
    except ValueError:
        raise BacktestInputError(f"malformed {record.kind} record at {record.recv_us}: not JSON") from None


def _specs(path: Path, perp_dexs: Any, metas: dict[str, Any], wanted: Sequence[str]) -> dict[str, MarketSpec]:
    if perp_dexs is None:
        raise BacktestInputError(f"{path}: the recording has no perpDexs answer before its first frame")
    try:
        dex_index = parse_perp_dexs(perp_dexs)
        scales = parse_fee_scales(perp_dexs)
        available: dict[str, MarketSpec] = {}
        for dex in dict.fromkeys(dex_of(coin) for coin in wanted):
            if dex not in metas or dex not in dex_index:
                raise BacktestInputError(f"{path}: no recorded meta for dex {dex!r} (market {wanted[0]!r} …)")
            specs = parse_meta(metas[dex], dex=dex, dex_index=dex_index[dex], fee_scale=scales.get(dex))
            available.update((spec.coin, spec) for spec in specs)
    except MarketsError as exc:
        raise BacktestInputError(f"{path}: recorded market metadata unusable: {exc}") from None
    missing = [coin for coin in wanted if coin not in available]
    if missing:
        raise BacktestInputError(f"{path}: markets not in the recorded meta: {', '.join(missing)}")
    return {coin: available[coin] for coin in wanted}


def _wanted_prefixes(markets: Sequence[str]) -> tuple[str, ...]:
    """The text a used frame starts with: the channel, then (as the venue writes it) the coin."""
    return tuple(
        f'{_CHANNEL_HEAD}{channel}","data":{{"coin":"{coin}"'
        for channel in _USED_CHANNELS
        for coin in markets
    )


@attrs.define
class FrameCounts:
    """What a pass over a recording read: every market-data frame, and those the strategy used."""

    read: int = 0
    used: int = 0


def iter_frames(path: Path, markets: Sequence[str], counts: FrameCounts | None = None) -> Iterator[Frame]:
    """The used market-data frames of the recording for `markets`, in recorded order.

    A frame whose text starts with a used channel and a wanted coin is decoded; one of another channel
    (in the venue's key order) costs one string comparison; one in another key order is decoded when it
    mentions a wanted coin at all. A frame of a used channel that does not decode is a
    `BacktestInputError`; anything else that does not decode is not ours to judge and is skipped.
    """
    counts = counts if counts is not None else FrameCounts()
    wanted = frozenset(markets)
    prefixes = _wanted_prefixes(markets)
    used_heads = tuple(f'{_CHANNEL_HEAD}{c}"' for c in _USED_CHANNELS)
    coin_keys = tuple(f'"coin":"{coin}"' for coin in markets)
    decode = m.decode_frame
    for record in _records(path):
        if record.kind != "ws":
            continue
        counts.read += 1
        text = record.payload
        if not text.startswith(prefixes) and (
            (text.startswith(_CHANNEL_HEAD) and not text.startswith(used_heads))
            or not any(key in text for key in coin_keys)
        ):
            continue
        try:
            msg = decode(text)
        except m.ProtocolError as exc:
            if exc.channel in _USED_CHANNELS:
                raise BacktestInputError(
                    f"recorded frame at {record.recv_us} does not decode: {exc}"
                ) from None
            continue
        if isinstance(msg, m.Bbo | m.ActiveAssetCtx | m.L2Book) and msg.coin in wanted:
            counts.used += 1
            yield record.recv_us, msg
