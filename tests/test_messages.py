"""Inbound frames decode to typed values; malformed ones raise one ProtocolError; unknown stays explicit."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from hip3_trio.wire.messages import (
    ActionErr,
    ActionOk,
    ActiveAssetCtx,
    Bbo,
    ChannelError,
    ClearinghouseState,
    Filled,
    Greeting,
    InfoResult,
    L2Book,
    Level,
    OpenOrders,
    OrderUpdates,
    Pong,
    PostReply,
    ProtocolError,
    Resting,
    StatusError,
    StatusKind,
    SubscriptionAck,
    Success,
    TransportErr,
    UnknownChannel,
    UnknownPostStatus,
    UserFills,
    decode_clearinghouse_state,
    decode_frame,
    decode_open_orders,
    decode_user_fills,
)

D = Decimal
COIN = "xyz:COIN"
USER = "0x" + "ab" * 20
CLOID = "0x" + "12" * 16


def frame(channel: str, data: Any) -> str:
    return json.dumps({"channel": channel, "data": data})


ORDER = {
    "coin": COIN,
    "side": "B",
    "limitPx": "101.5",
    "sz": "0.0",
    "oid": 42,
    "timestamp": 1_700_000_000_000,
    "origSz": "0.2",
    "cloid": CLOID,
}
FILL = {
    "coin": COIN,
    "px": "101.4",
    "sz": "0.2",
    "side": "B",
    "time": 1_700_000_000_001,
    "startPosition": "0.0",
    "dir": "Open Long",
    "closedPnl": "0.0",
    "hash": "0x" + "00" * 32,
    "oid": 42,
    "crossed": True,
    "fee": "0.009126",
    "tid": 118906512037719,
    "feeToken": "USDC",
    "cloid": CLOID,
}
CH_STATE = {
    "assetPositions": [
        {
            "type": "oneWay",
            "position": {
                "coin": COIN,
                "szi": "-0.2",
                "leverage": {"type": "isolated", "value": 3},
                "entryPx": "101.4",
                "positionValue": "20.28",
                "unrealizedPnl": "0.01",
                "returnOnEquity": "0.001",
                "liquidationPx": None,
                "marginUsed": "6.76",
                "maxLeverage": 10,
                "cumFunding": {"allTime": "0", "sinceOpen": "0", "sinceChange": "0"},
            },
        }
    ],
    "marginSummary": {
        "accountValue": "1000.5",
        "totalNtlPos": "20.28",
        "totalRawUsd": "1000",
        "totalMarginUsed": "6.76",
    },
    "crossMarginSummary": {"accountValue": "1000.5"},
    "withdrawable": "990.1",
    "time": 1_700_000_000_500,
}


def test_greeting_and_pong() -> None:
    assert decode_frame("Websocket connection established.") == Greeting("Websocket connection established.")
    assert decode_frame('{"channel":"pong"}') == Pong()


def test_bbo_with_one_sided_book() -> None:
    msg = decode_frame(
        frame("bbo", {"coin": COIN, "time": 5, "bbo": [{"px": "100.5", "sz": "3", "n": 2}, None]})
    )
    assert msg == Bbo(COIN, 5, Level(D("100.5"), D("3"), 2), None)


def test_l2book() -> None:
    level = {"px": "1", "sz": "2", "n": 1}
    msg = decode_frame(frame("l2Book", {"coin": COIN, "time": 9, "levels": [[level, level], [level]]}))
    assert isinstance(msg, L2Book)
    assert len(msg.bids) == 2 and len(msg.asks) == 1


def test_active_asset_ctx_to_decimal() -> None:
    ctx = {
        "oraclePx": "100",
        "markPx": "100.1",
        "midPx": "100.05",
        "funding": "0.0000125",
        "openInterest": "12.3",
        "prevDayPx": "99",
        "dayNtlVlm": "1000.5",
        "premium": "0.0001",
        "impactPxs": ["100.0", "100.2"],
        "newFieldTheVenueAdded": 1,
    }
    msg = decode_frame(frame("activeAssetCtx", {"coin": COIN, "ctx": ctx}))
    assert isinstance(msg, ActiveAssetCtx)
    assert msg.ctx.oracle_px == D("100") and msg.ctx.mark_px == D("100.1")
    assert msg.ctx.impact_pxs == (D("100.0"), D("100.2"))


def test_order_updates_is_an_array_with_raw_and_classified_status() -> None:
    msg = decode_frame(frame("orderUpdates", [{"order": ORDER, "status": "filled", "statusTimestamp": 7}]))
    assert isinstance(msg, OrderUpdates)
    (update,) = msg.updates
    assert update.order.sz == D("0") and update.order.orig_sz == D("0.2") and update.order.cloid == CLOID
    assert update.kind is StatusKind.FILLED


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("open", StatusKind.OPEN),
        ("filled", StatusKind.FILLED),
        ("canceled", StatusKind.CANCELED),
        ("triggered", StatusKind.TRIGGERED),
        ("rejected", StatusKind.REJECTED),
        ("iocCancelRejected", StatusKind.REJECTED),
        ("reduceOnlyRejected", StatusKind.REJECTED),
        ("minTradeNtlRejected", StatusKind.REJECTED),
        ("marginCanceled", StatusKind.CANCELED),
        # Cancels without the `Canceled` ending (issue 15): classified by the venue's list, not by suffix.
        ("scheduledCancel", StatusKind.CANCELED),
        ("internalCancel", StatusKind.CANCELED),
        ("tooManyOpenOrdersRejected", StatusKind.REJECTED),
        # Not on the list, whatever its ending: reconciled, never guessed.
        ("somethingNewCanceled", StatusKind.UNKNOWN),
        ("somethingNew", StatusKind.UNKNOWN),
    ],
)
def test_status_classification(status: str, kind: StatusKind) -> None:
    assert StatusKind.classify(status) is kind


def test_unknown_order_status_decodes_instead_of_raising() -> None:
    msg = decode_frame(
        frame("orderUpdates", [{"order": ORDER, "status": "brandNewStatus", "statusTimestamp": 7}])
    )
    assert isinstance(msg, OrderUpdates)
    assert msg.updates[0].status == "brandNewStatus"
    assert msg.updates[0].kind is StatusKind.UNKNOWN
    assert not msg.updates[0].kind.is_terminal


def test_user_fills_snapshot_flag() -> None:
    snap = decode_frame(frame("userFills", {"isSnapshot": True, "user": USER, "fills": [FILL]}))
    live = decode_frame(frame("userFills", {"user": USER, "fills": [FILL]}))
    assert isinstance(snap, UserFills) and snap.is_snapshot
    assert isinstance(live, UserFills) and not live.is_snapshot
    assert live.fills[0].tid == 118906512037719 and live.fills[0].fee == D("0.009126")


def test_info_user_fills_is_a_bare_array() -> None:
    fills = decode_user_fills([FILL])
    assert fills.fills[0].oid == 42


def test_clearinghouse_state_push_and_info_shape() -> None:
    msg = decode_frame(
        frame("clearinghouseState", {"dex": "xyz", "user": USER, "clearinghouseState": CH_STATE})
    )
    assert isinstance(msg, ClearinghouseState)
    assert msg.dex == "xyz" and msg.positions[0].szi == D("-0.2") and msg.positions[0].liquidation_px is None
    assert msg.account_value == D("1000.5") and msg.withdrawable == D("990.1")
    assert decode_clearinghouse_state(CH_STATE, dex="xyz", user=USER) == msg


def test_open_orders() -> None:
    msg = decode_frame(frame("openOrders", {"dex": "xyz", "user": USER, "orders": [ORDER]}))
    assert isinstance(msg, OpenOrders) and msg.orders[0].oid == 42


def test_subscription_ack_and_error_channel() -> None:
    sub = {"type": "orderUpdates", "user": USER.lower()}
    assert decode_frame(
        frame("subscriptionResponse", {"method": "subscribe", "subscription": sub})
    ) == SubscriptionAck("subscribe", sub)
    assert decode_frame(frame("error", "Invalid subscription")) == ChannelError("Invalid subscription")


def test_unknown_channel_is_explicit() -> None:
    assert decode_frame(frame("notification", {"x": 1})) == UnknownChannel("notification", {"x": 1})


def _post(post_id: int, response: Any) -> str:
    return frame("post", {"id": post_id, "response": response})


def test_post_order_statuses_all_shapes() -> None:
    statuses = [
        {"filled": {"totalSz": "0.2", "avgPx": "101.4", "oid": 42}},
        {"resting": {"oid": 43, "cloid": CLOID}},
        {"error": "Order could not immediately match against any resting orders. asset=110000"},
        "waitingForFill",
        {"filled": {"totalSz": "abc", "avgPx": "1", "oid": 1}},
    ]
    payload = {"status": "ok", "response": {"type": "order", "data": {"statuses": statuses}}}
    msg = decode_frame(_post(3, {"type": "action", "payload": payload}))
    assert isinstance(msg, PostReply) and msg.id == 3
    assert msg.result == ActionOk(
        "order",
        (
            Filled(D("0.2"), D("101.4"), 42),
            Resting(43, CLOID),
            StatusError("Order could not immediately match against any resting orders. asset=110000"),
            UnknownPostStatus("waitingForFill"),
            UnknownPostStatus(statuses[4]),
        ),
    )


def test_post_cancel_and_default() -> None:
    cancel = {
        "status": "ok",
        "response": {"type": "cancel", "data": {"statuses": ["success", {"error": "gone"}]}},
    }
    msg = decode_frame(_post(1, {"type": "action", "payload": cancel}))
    assert isinstance(msg, PostReply)
    assert msg.result == ActionOk("cancel", (Success(), StatusError("gone")))
    noop = {"status": "ok", "response": {"type": "default"}}
    msg = decode_frame(_post(2, {"type": "action", "payload": noop}))
    assert isinstance(msg, PostReply) and msg.result == ActionOk("default", ())


def test_post_whole_action_error_transport_error_and_info() -> None:
    err = decode_frame(
        _post(4, {"type": "action", "payload": {"status": "err", "response": "Invalid nonce"}})
    )
    assert isinstance(err, PostReply) and err.result == ActionErr("Invalid nonce")
    transport = decode_frame(_post(5, {"type": "error", "payload": "429 Too Many Requests"}))
    assert isinstance(transport, PostReply) and transport.result == TransportErr("429 Too Many Requests")
    info = decode_frame(
        _post(6, {"type": "info", "payload": {"type": "perpDexs", "data": [None, {"name": "xyz"}]}})
    )
    assert isinstance(info, PostReply) and info.result == InfoResult("perpDexs", [None, {"name": "xyz"}])


MALFORMED = [
    ("truncated JSON", '{"channel":"bbo","data":{"coin":', "<unparsed>", "not JSON"),
    ("not an object", "[1,2]", "<unparsed>", "must be a JSON object"),
    ("no channel", '{"data":1}', "<unparsed>", "no channel"),
    ("plain text", "hello", "<unparsed>", "not JSON"),
    ("huge exponent", "1e999999", "<unparsed>", "must be a JSON object"),
    ("huge integer", "9" * 5000, "<unparsed>", "not JSON"),
    ("missing data", '{"channel":"bbo"}', "bbo", "data is missing"),
    (
        "price as float",
        frame("bbo", {"coin": COIN, "time": 1, "bbo": [{"px": 1.5, "sz": "1", "n": 1}, None]}),
        "bbo",
        "decimal",
    ),
    (
        "price NaN",
        frame("bbo", {"coin": COIN, "time": 1, "bbo": [{"px": "NaN", "sz": "1", "n": 1}, None]}),
        "bbo",
        "decimal",
    ),
    (
        "huge price",
        frame("bbo", {"coin": COIN, "time": 1, "bbo": [{"px": "9" * 60, "sz": "1", "n": 1}, None]}),
        "bbo",
        "decimal",
    ),
    ("bbo wrong arity", frame("bbo", {"coin": COIN, "time": 1, "bbo": [None]}), "bbo", "2 entries"),
    (
        "time as string",
        frame("bbo", {"coin": COIN, "time": "1", "bbo": [None, None]}),
        "bbo",
        "time must be int",
    ),
    ("null coin", frame("bbo", {"coin": None, "time": 1, "bbo": [None, None]}), "bbo", "coin must be str"),
    ("orderUpdates not array", frame("orderUpdates", {"order": ORDER}), "orderUpdates", "must be an array"),
    (
        "order missing oid",
        frame(
            "orderUpdates",
            [
                {
                    "order": {k: v for k, v in ORDER.items() if k != "oid"},
                    "status": "open",
                    "statusTimestamp": 1,
                }
            ],
        ),
        "orderUpdates",
        "oid",
    ),
    (
        "oid as bool",
        frame("orderUpdates", [{"order": ORDER | {"oid": True}, "status": "open", "statusTimestamp": 1}]),
        "orderUpdates",
        "bool",
    ),
    (
        "fill missing tid",
        frame("userFills", {"user": USER, "fills": [{k: v for k, v in FILL.items() if k != "tid"}]}),
        "userFills",
        "tid",
    ),
    (
        "isSnapshot not bool",
        frame("userFills", {"user": USER, "fills": [], "isSnapshot": "yes"}),
        "userFills",
        "isSnapshot",
    ),
    (
        "ctx missing oracle",
        frame("activeAssetCtx", {"coin": COIN, "ctx": {"markPx": "1"}}),
        "activeAssetCtx",
        "oracle_px",
    ),
    ("post id null", _post(None, {"type": "error", "payload": "x"}), "post", "id must be int"),  # type: ignore[arg-type]
    ("post unknown type", _post(1, {"type": "weird"}), "post", "not action, info or error"),
    (
        "post unknown payload status",
        _post(1, {"type": "action", "payload": {"status": "maybe"}}),
        "post",
        "neither ok nor err",
    ),
    (
        "statuses not array",
        _post(
            1,
            {
                "type": "action",
                "payload": {"status": "ok", "response": {"type": "order", "data": {"statuses": {}}}},
            },
        ),
        "post",
        "statuses must be an array",
    ),
    (
        "positions not array",
        frame(
            "clearinghouseState", {"dex": "xyz", "user": USER, "clearinghouseState": {"assetPositions": None}}
        ),
        "clearinghouseState",
        "assetPositions",
    ),
]


@pytest.mark.parametrize(("name", "text", "channel", "fragment"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_frames_raise_one_protocol_error(name: str, text: str, channel: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(text)
    assert info.value.channel == channel
    assert fragment in str(info.value)


def test_binary_non_utf8_frame() -> None:
    with pytest.raises(ProtocolError, match="not UTF-8"):
        decode_frame(b"\xff\xfe")


def test_open_orders_rows_without_orig_sz_decode_with_none() -> None:
    """The docs' `openOrders` rows carry neither `origSz` nor `cloid` (PROTOCOL.md): accepted, not refused."""
    row = {"coin": "xyz:COIN", "side": "A", "limitPx": "250.5", "sz": "0.4", "oid": 7, "timestamp": 1}
    (order,) = decode_open_orders([row], dex="xyz", user="0xabc").orders
    assert (order.orig_sz, order.cloid, order.sz) == (None, None, Decimal("0.4"))
