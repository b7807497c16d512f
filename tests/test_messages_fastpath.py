"""The hot-channel fast path of `decode_frame` decides exactly what the general path decides.

For `bbo` and `activeAssetCtx` frames, and for the JSON step in front of them, the fast path must give
the same value (same repr: a Decimal keeps its exact digits) for every frame the general path accepts,
and the same `ProtocolError(channel, reason)` for every frame it refuses. The reference is the module
itself with the fast path switched off, so these properties keep holding when either path changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hip3_trio.wire import messages as m

COIN = "xyz:COIN"
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Outcome = tuple[str, str] | tuple[str, str, str]


def outcome(fn: Callable[[Any], object], arg: Any) -> Outcome:
    """("ok", repr of the value) or ("error", channel, reason); any other exception fails the test."""
    try:
        return ("ok", repr(fn(arg)))
    except m.ProtocolError as exc:
        return ("error", exc.channel, exc.reason)


@contextmanager
def general_path_only() -> Iterator[None]:
    """`decode_frame` as it was before the fast path: `json.loads` and the cattrs decoders."""
    general = {
        "bbo": m._decode_bbo_general,
        "activeAssetCtx": m._decode_active_asset_ctx_general,
        "l2Book": m._decode_l2book_general,
    }
    with mock.patch.object(m, "_fast_object", lambda text: None), mock.patch.dict(m._DECODERS, general):
        yield


def reference_decode(text: str | bytes) -> Outcome:
    with general_path_only():
        return outcome(m.decode_frame, text)


# --- strategies --------------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_junk = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
valid_decimal = st.from_regex(r"-?[0-9]{1,12}(\.[0-9]{1,12})?", fullmatch=True)
bad_decimal = st.sampled_from(
    [
        "",
        "NaN",
        "-Infinity",
        "1e5",
        "1E-3",
        " 1",
        "1 ",
        "1_000",
        ".5",
        "5.",
        "+1",
        "--1",
        "0x10",
        "١٢",
        "9" * 41,
    ]
)
decimal_value = st.one_of(valid_decimal, valid_decimal, valid_decimal, bad_decimal, json_leaf)
int_value = st.one_of(st.integers(min_value=-(2**64), max_value=2**64), json_leaf)

MISSING = object()


def with_fields(
    fields: dict[str, st.SearchStrategy[Any]], *, optional: bool = True
) -> st.SearchStrategy[Any]:
    """Dicts with each field present (any value it may take) or, when `optional`, absent; plus extras."""
    entries = {
        key: st.one_of(strategy, st.just(MISSING)) if optional else strategy
        for key, strategy in fields.items()
    }
    extras = st.dictionaries(st.sampled_from(["extra", "newFieldTheVenueAdded"]), json_junk, max_size=1)
    return st.builds(
        lambda drawn, extra: {k: v for k, v in drawn.items() if v is not MISSING} | extra,
        st.fixed_dictionaries(entries),
        extras,
    )


level = st.one_of(
    with_fields({"px": decimal_value, "sz": decimal_value, "n": int_value}),
    with_fields({"px": valid_decimal, "sz": valid_decimal, "n": st.integers(0, 1000)}, optional=False),
    json_junk,
)
pair = st.one_of(
    st.lists(st.one_of(st.none(), level), min_size=2, max_size=2),
    st.lists(st.one_of(st.none(), level), max_size=3),
    json_junk,
)
bbo_data = st.one_of(
    with_fields({"coin": st.one_of(st.just(COIN), json_leaf), "time": int_value, "bbo": pair}),
    with_fields(
        {"coin": st.just(COIN), "time": st.integers(0, 2**63), "bbo": pair},
        optional=False,
    ),
    json_junk,
)
side = st.one_of(st.lists(level, max_size=4), json_junk)
l2_data = st.one_of(
    with_fields(
        {
            "coin": st.one_of(st.just(COIN), json_leaf),
            "time": int_value,
            "levels": st.one_of(st.lists(side, min_size=2, max_size=2), st.lists(side, max_size=3)),
        }
    ),
    with_fields(
        {
            "coin": st.just(COIN),
            "time": st.integers(0, 2**63),
            "levels": st.lists(side, min_size=2, max_size=2),
        },
        optional=False,
    ),
    json_junk,
)
CTX_DECIMALS = ("oraclePx", "markPx", "midPx", "funding", "openInterest", "prevDayPx", "dayNtlVlm", "premium")
impact_pxs = st.one_of(
    st.lists(decimal_value, max_size=3),
    st.lists(valid_decimal, min_size=2, max_size=2),
    valid_decimal,  # a string: cattrs would iterate it; the fast path must leave that to the general path
    json_junk,
)
asset_ctx = st.one_of(
    with_fields({key: decimal_value for key in CTX_DECIMALS} | {"impactPxs": impact_pxs}),
    with_fields(
        {key: st.one_of(valid_decimal, st.none()) for key in CTX_DECIMALS[2:]}
        | {"oraclePx": valid_decimal, "markPx": valid_decimal, "impactPxs": impact_pxs},
        optional=False,
    ),
    json_junk,
)
ctx_data = st.one_of(
    with_fields({"coin": st.one_of(st.just(COIN), json_leaf), "ctx": asset_ctx}),
    with_fields({"coin": st.just(COIN), "ctx": asset_ctx}, optional=False),
    json_junk,
)


# --- the channel decoders ----------------------------------------------------------------------

VALID_BBO = {"coin": COIN, "time": 5, "bbo": [{"px": "100.50", "sz": "3", "n": 2}, None]}
VALID_CTX = {
    "coin": COIN,
    "ctx": {
        "funding": "0.0000125",
        "openInterest": "12.3",
        "prevDayPx": "99",
        "dayNtlVlm": "1000.5",
        "premium": "-0.0001",
        "oraclePx": "100",
        "markPx": "100.1",
        "midPx": None,
        "impactPxs": ["100.0", "100.2"],
        "dayBaseVlm": "0",
    },
}


@SETTINGS
@given(bbo_data)
@example(VALID_BBO)
@example({"coin": COIN, "time": True, "bbo": [None, None]})
@example({"coin": COIN, "time": 1, "bbo": [{"px": "1", "sz": "1", "n": True}, None]})
@example({"coin": COIN, "time": 1, "bbo": [{"px": 1.5, "sz": "1", "n": 1}, None]})
def test_bbo_fast_path_equals_general_path(data: Any) -> None:
    assert outcome(m._decode_bbo, data) == outcome(m._decode_bbo_general, data)


@SETTINGS
@given(l2_data)
@example({"coin": COIN, "time": 7, "levels": [[{"px": "1.5", "sz": "2", "n": 1}], []]})
@example({"coin": COIN, "time": True, "levels": [[], []]})
@example({"coin": COIN, "time": 1, "levels": [[{"px": "1", "sz": "1", "n": True}], []]})
def test_l2book_fast_path_equals_general_path(data: Any) -> None:
    assert outcome(m._decode_l2book, data) == outcome(m._decode_l2book_general, data)


@SETTINGS
@given(ctx_data)
@example(VALID_CTX)
@example({"coin": COIN, "ctx": {"oraclePx": "1", "markPx": "1", "impactPxs": "12"}})
@example({"coin": COIN, "ctx": {"oraclePx": "1", "markPx": "1", "impactPxs": []}})
@example({"coin": COIN, "ctx": {"oraclePx": "1", "markPx": "1", "premium": "1e-5"}})
@example({"coin": COIN, "ctx": {"markPx": "1"}})
def test_active_asset_ctx_fast_path_equals_general_path(data: Any) -> None:
    assert outcome(m._decode_active_asset_ctx, data) == outcome(m._decode_active_asset_ctx_general, data)


def test_fast_path_takes_the_valid_frames() -> None:
    """The fast path is not vacuous: it builds well-formed hot frames itself, without cattrs."""
    with mock.patch.object(m, "_decode_bbo_general", side_effect=AssertionError("general path used")):
        bbo = m._decode_bbo(VALID_BBO)
    assert bbo == m.Bbo(COIN, 5, m.Level(Decimal("100.50"), Decimal("3"), 2), None)
    assert str(bbo.bid.px if bbo.bid else None) == "100.50"
    with mock.patch.object(m, "_decode_active_asset_ctx_general", side_effect=AssertionError("general")):
        ctx = m._decode_active_asset_ctx(VALID_CTX)
    assert ctx.ctx.impact_pxs == (Decimal("100.0"), Decimal("100.2")) and ctx.ctx.mid_px is None
    book = {"coin": COIN, "time": 7, "levels": [[{"px": "1.5", "sz": "2", "n": 1}], []]}
    with mock.patch.object(m, "_decode_l2book_general", side_effect=AssertionError("general path used")):
        l2 = m._decode_l2book(book)
    assert l2 == m.L2Book(COIN, 7, (m.Level(Decimal("1.5"), Decimal("2"), 1),), ())


# --- whole frames, including the JSON step -----------------------------------------------------

frame_text = st.one_of(
    st.builds(lambda d: json.dumps({"channel": "bbo", "data": d}), bbo_data),
    st.builds(
        lambda d: json.dumps({"channel": "activeAssetCtx", "data": d}, separators=(",", ":")), ctx_data
    ),
    st.builds(lambda d: json.dumps({"channel": "l2Book", "data": d}), l2_data),
    st.builds(
        lambda d: json.dumps({"channel": "bbo"} | ({} if d is MISSING else {"data": d})),
        st.one_of(json_junk, st.just(MISSING)),
    ),
    st.builds(json.dumps, json_junk),
)
affix = st.sampled_from(["", "", " ", "\n", "\t ", "\ufeff", "x", "}", "{}", "]"])


@SETTINGS
@given(frame_text, affix, affix, st.integers(min_value=0, max_value=400))
def test_decode_frame_fast_path_equals_general_path(text: str, prefix: str, suffix: str, cut: int) -> None:
    for candidate in (text, prefix + text + suffix, text[:cut]):
        assert outcome(m.decode_frame, candidate) == reference_decode(candidate)


SPECIAL_FRAMES = [
    m.GREETING,
    '{"channel":"pong"}',
    '{"channel":"bbo","data":{"coin":',
    "[1,2]",
    "1e999999",
    "9" * 5000,
    "{" * 100_000,
    '{"channel":"bbo","data":NaN}',
    '{"channel":"bbo","data":{"coin":"x","time":1,"bbo":[null,null]}} ',
    '{"channel":"bbo","data":{"coin":"x","time":1,"bbo":[null,null]}}x',
    '{"channel":"bbo","data":{"coin":"x","time":1,"bbo":[null,null]}}{}',
    ' {"channel":"bbo","data":{"coin":"x","time":1,"bbo":[null,null]}}',
    '\ufeff{"channel":"bbo","data":{"coin":"x","time":1,"bbo":[null,null]}}',
    '{"channel":"bbo","data":{"coin":"x","time":1,"bbo":[null,null]},"channel":"activeAssetCtx"}',
    '{"channel":"activeAssetCtx","data":{"coin":"x","ctx":{"oraclePx":"1","markPx":"2"}}}',
    '{"channel":"activeAssetCtx","data":{"coin":"\\ud800","ctx":{"oraclePx":"1","markPx":"2"}}}',
]


def test_decode_frame_special_frames_equal_general_path() -> None:
    for text in SPECIAL_FRAMES:
        assert outcome(m.decode_frame, text) == reference_decode(text), text[:80]
        encoded = text.encode("utf-8", "surrogatepass")
        assert outcome(m.decode_frame, encoded) == reference_decode(encoded), text[:80]


# --- the decimal memo --------------------------------------------------------------------------


def test_decimal_memo_is_bounded_and_holds_only_valid_strings() -> None:
    for i in range(m._DECIMAL_CACHE_MAX + 10):
        assert m._fast_decimal(f"{i}.5") == Decimal(f"{i}.5")
    assert 0 < len(m._DECIMAL_CACHE) <= m._DECIMAL_CACHE_MAX
    for bad in ["NaN", "1e5", " 1", "1.", "١", "9" * 41]:
        assert m._fast_decimal(bad) is None
        assert bad not in m._DECIMAL_CACHE
    for not_a_string in [None, 1, 1.5, True, ["1"], {"1": 1}]:
        assert m._fast_decimal(not_a_string) is None


def test_memoised_decimals_keep_their_exact_digits() -> None:
    first = m._fast_decimal("1.50")
    again = m._fast_decimal("1.50")
    other = m._fast_decimal("1.5")
    assert first is not None and other is not None
    assert again is first and str(first) == "1.50" and str(other) == "1.5"
