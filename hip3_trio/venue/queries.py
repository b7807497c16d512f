"""The info requests the engine makes over the session: market metadata and the exchange's account truth.

Every answer is decoded strictly; a malformed one raises `InfoError` (like an unanswered request), so
the session treats it as a failed sync and reconnects rather than acting on half-read state.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import attrs
import trio

from hip3_trio.errors import StartupError
from hip3_trio.fees import UserFees, decode_user_fees
from hip3_trio.venue.session import InfoError, Session
from hip3_trio.wire import messages as m
from hip3_trio.wire.actions import Cloid
from hip3_trio.wire.markets import Markets, MarketSpec, parse_fee_scales, parse_meta, parse_perp_dexs

__all__ = [
    "AccountState",
    "ClockSample",
    "DelistedMarketError",
    "DexAnswer",
    "StartupError",
    "UnknownMarketError",
    "decode_order_status",
    "fetch_account_state",
    "fetch_user_fees",
    "load_markets",
]


class UnknownMarketError(StartupError):
    """A configured market (or its dex) is not listed by the venue: a start-up error, not a retry."""


class DelistedMarketError(StartupError):
    """A configured market is delisted (`meta` `isDelisted`): a start-up error, not a retry."""


async def load_markets(session: Session, wanted: Sequence[str]) -> Markets:
    """perpDexs + meta(dex) for the dexes of `wanted` → the configured markets with their asset ids."""
    try:
        perp_dexs = await session.info({"type": "perpDexs"})
        dex_index = parse_perp_dexs(perp_dexs)
        fee_scales = parse_fee_scales(perp_dexs)
        specs: list[MarketSpec] = []
        for dex in dict.fromkeys(coin.partition(":")[0] if ":" in coin else "" for coin in wanted):
            if dex not in dex_index:
                raise UnknownMarketError(f"dex {dex!r} is not listed by the venue's perpDexs")
            request: dict[str, Any] = {"type": "meta"} | ({"dex": dex} if dex else {})
            answer = await session.info(request)
            specs += parse_meta(answer, dex=dex, dex_index=dex_index[dex], fee_scale=fee_scales.get(dex))
    except (m.ProtocolError, TypeError, KeyError) as exc:
        raise InfoError(f"malformed market metadata: {exc}") from exc
    try:
        markets = Markets.select(specs, wanted)
    except ValueError as exc:
        raise UnknownMarketError(str(exc)) from exc
    delisted = [coin for coin, spec in markets.by_coin.items() if spec.delisted]
    if delisted:
        raise DelistedMarketError(
            f"configured market(s) delisted by the venue (meta isDelisted): {', '.join(delisted)}; "
            "remove them from the configuration"
        )
    return markets


async def fetch_user_fees(session: Session, user: str) -> UserFees:
    """`userFees` → the account's base taker rate and referral discount (every sync)."""
    try:
        return decode_user_fees(await session.info({"type": "userFees", "user": user}))
    except m.ProtocolError as exc:
        raise InfoError(f"malformed userFees: {exc}") from exc


def decode_order_status(answer: Any, *, user: str) -> m.OrderUpdate | None:
    """An `orderStatus` answer → the order's latest update, or None when the venue does not know it."""
    if not isinstance(answer, dict):
        raise m.ProtocolError("orderStatus", f"answer must be an object, got {type(answer).__name__}")
    status = answer.get("status")
    if status == "unknownOid":
        return None
    if status != "order":
        raise m.ProtocolError("orderStatus", f"unexpected status {status!r:.60}")
    inner = answer.get("order")
    if not isinstance(inner, dict) or not isinstance(inner.get("order"), dict):
        raise m.ProtocolError("orderStatus", "order.order must be an object")
    (order,) = m.decode_open_orders([inner["order"]], dex="", user=user, channel="orderStatus").orders
    text, stamp = inner.get("status"), inner.get("statusTimestamp")
    if not isinstance(text, str) or not isinstance(stamp, int) or isinstance(stamp, bool):
        raise m.ProtocolError("orderStatus", "order.status must be a string and statusTimestamp an integer")
    return m.OrderUpdate(order, text, stamp)


@attrs.frozen
class ClockSample:
    """An exchange timestamp and the local time (`trio.current_time()`) it corresponds to: the midpoint
    of the round trip that fetched it. The engine syncs its clock from this, never by comparing an
    exchange time with the moment it gets round to processing it — by then the sequential queries
    that followed (open orders, one orderStatus per unknown order) have aged the timestamp."""

    server_ms: int
    local_at: float

    def server_now_ms(self, now: float) -> int:
        """The exchange's clock at local time `now`, projected from this sample."""
        return self.server_ms + round((now - self.local_at) * 1000)


@attrs.frozen
class DexAnswer:
    """One dex's `clearinghouseState`, and the caller's send count (`sends()`) when it arrived."""

    state: m.ClearinghouseState
    sends_before: int | None


@attrs.frozen
class AccountState:
    """What the venue says about our account on the dexes we trade: one answer per dex, each with its
    own time and send boundary (the venue answers per dex, and so the book judges per dex)."""

    dexes: tuple[DexAnswer, ...]
    open_orders: tuple[m.WsOrder, ...]
    statuses: dict[Cloid, m.OrderUpdate | None]
    clock: ClockSample | None = None


async def fetch_account_state(
    session: Session,
    *,
    user: str,
    dexes: Collection[str],
    unknown: Collection[Cloid],
    sends: Callable[[], int] | None = None,
) -> AccountState:
    """clearinghouseState and openOrders for every dex (HIP-3 positions are only listed with `dex`),
    and orderStatus by cloid for each of `unknown`.

    `sends()` (the book's send count) is read the moment each dex's state arrives, with no await in
    between: an order sent after that cannot be in that state (`DexAnswer.sends_before`)."""
    states: list[DexAnswer] = []
    orders: list[m.WsOrder] = []
    statuses: dict[Cloid, m.OrderUpdate | None] = {}
    clock: ClockSample | None = None
    try:
        for dex in sorted(dexes):
            asked = trio.current_time()
            raw = await session.info({"type": "clearinghouseState", "user": user, "dex": dex})
            sent_before = sends() if sends is not None else None
            answered = trio.current_time()
            state = m.decode_clearinghouse_state(raw, dex=dex, user=user)
            states.append(DexAnswer(state, sent_before))
            if state.time is not None and clock is None:
                clock = ClockSample(state.time, (asked + answered) / 2)
            raw = await session.info({"type": "openOrders", "user": user, "dex": dex})
            orders += m.decode_open_orders(raw, dex=dex, user=user).orders
        for cloid in unknown:
            raw = await session.info({"type": "orderStatus", "user": user, "oid": cloid.raw})
            statuses[cloid] = decode_order_status(raw, user=user)
    except m.ProtocolError as exc:
        raise InfoError(f"malformed account state: {exc}") from exc
    return AccountState(tuple(states), tuple(orders), statuses, clock)
