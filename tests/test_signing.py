"""L1 action signing: the SDK's vectors reproduce exactly, and our signer agrees with the SDK's.

Two kinds of evidence:

- Fixed vectors (tests/data/vectors, copied from ../shared/vectors): every action hash and signature
  the official SDK produced (its own upstream tests, and orders/cancels/vaults/expiresAfter/HIP-3
  generated with hyperliquid-python-sdk 0.24.0) reproduces byte for byte.
- A differential property test: hypothesis builds an order/cancel/cancelByCloid with our typed model,
  and the same request goes through the SDK's own `Exchange.bulk_orders` / `bulk_cancel` /
  `bulk_cancel_by_cloid` (offline: the post is captured, never sent). The wire dict, its msgpack
  bytes, the action hash and the signature must all be identical.
"""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import msgpack
import pytest
from Crypto.Hash import keccak
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_hash.auto import keccak as eth_keccak
from eth_keys.main import KeyAPI
from eth_utils.address import to_checksum_address
from hyperliquid.exchange import Exchange
from hyperliquid.utils import signing as sdk_signing
from hyperliquid.utils.constants import MAINNET_API_URL, TESTNET_API_URL
from hyperliquid.utils.types import Cloid as SdkCloid
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hip3_trio.wire.actions import (
    Action,
    BuilderInfo,
    CancelAction,
    CancelByCloidAction,
    CancelByCloidWire,
    CancelWire,
    Cloid,
    LimitOrderType,
    NoopAction,
    OrderAction,
    OrderWire,
    ScheduleCancelAction,
    TriggerOrderType,
    action_to_wire,
)
from hip3_trio.wire.keys import SECP256K1_ORDER, SignerAddressMismatchError
from hip3_trio.wire.numbers import OrderTooSmall, Rounding, round_price, to_wire
from hip3_trio.wire.signing import (
    AGENT_TYPEHASH,
    DOMAIN_SEPARATOR,
    Signature,
    Signer,
    action_hash,
    keccak256,
    l1_digest,
    pack_action,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
VECTOR_DIR = Path(__file__).resolve().parent / "data" / "vectors"
SHARED_VECTOR_DIR = REPO_ROOT.parent / "shared" / "vectors"
VECTOR_FILES = ("sdk_upstream.json", "sdk_generated.json")
KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
KEY_ADDRESS = "0x14791697260E4c9A71f18484C9f997B308e59325"


# --------------------------------------------------------------------------------------- vectors


def _vector_dir() -> Path:
    """The in-repo copy (CI needs no sibling checkout); the shared dir only if the copy is absent."""
    return VECTOR_DIR if VECTOR_DIR.is_dir() else SHARED_VECTOR_DIR


def _load_vectors() -> list[Any]:
    params = []
    for name in VECTOR_FILES:
        for index, vector in enumerate(json.loads((_vector_dir() / name).read_text())):
            params.append(pytest.param(vector, id=f"{name.removesuffix('.json')}[{index}]:{vector['name']}"))
    return params


VECTORS = _load_vectors()


def _sign_vector(vector: dict[str, Any]) -> Signature:
    return Signer.from_key(vector["private_key"]).sign_l1_action(
        vector["action"],
        vector["nonce"],
        vault_address=vector["vault_address"],
        expires_after=vector["expires_after"],
        is_mainnet=vector["is_mainnet"],
    )


def _as_ints(sig: dict[str, Any]) -> tuple[int, int, int]:
    return int(sig["r"], 16), int(sig["s"], 16), sig["v"]


def test_vector_files_are_present_and_complete() -> None:
    assert len(VECTORS) == 28 + 19


def test_vector_copies_match_shared_originals() -> None:
    if not SHARED_VECTOR_DIR.is_dir():
        pytest.skip("../shared/vectors is not checked out next to the repo")
    for name in VECTOR_FILES:
        assert (VECTOR_DIR / name).read_bytes() == (SHARED_VECTOR_DIR / name).read_bytes(), name


@pytest.mark.parametrize("vector", VECTORS)
def test_vector_action_hash(vector: dict[str, Any]) -> None:
    got = action_hash(vector["action"], vector["nonce"], vector["vault_address"], vector["expires_after"])
    assert "0x" + got.hex() == vector["action_hash_hex"]


@pytest.mark.parametrize("vector", VECTORS)
def test_vector_signature(vector: dict[str, Any]) -> None:
    assert _as_ints(dict(_sign_vector(vector))) == _as_ints(vector["expected_signature"])


@pytest.mark.parametrize("vector", VECTORS)
def test_vector_signature_strings_are_formatted_like_the_sdk(vector: dict[str, Any]) -> None:
    """r and s are `hex(int)`: not zero-padded (several vectors have a leading zero nibble)."""
    assert _sign_vector(vector) == vector["expected_signature"]


def test_some_vector_exercises_unpadded_hex() -> None:
    """Guard for the test above: it only means something if a vector has a short r or s."""
    lengths = [len(p.values[0]["expected_signature"][part]) for p in VECTORS for part in ("r", "s")]
    assert min(lengths) < len("0x") + 64


@pytest.mark.parametrize("vector", [p for p in VECTORS if "msgpack_hex" in p.values[0]])
def test_vector_msgpack_bytes(vector: dict[str, Any]) -> None:
    assert pack_action(vector["action"]).hex() == vector["msgpack_hex"]


@pytest.mark.parametrize("vector", [p for p in VECTORS if "hash_preimage_hex" in p.values[0]])
def test_vector_hash_preimage(vector: dict[str, Any]) -> None:
    preimage = bytes.fromhex(vector["hash_preimage_hex"])
    assert preimage.startswith(pack_action(vector["action"]))
    assert keccak256(preimage) == action_hash(
        vector["action"], vector["nonce"], vector["vault_address"], vector["expires_after"]
    )


@pytest.mark.parametrize("vector", [p for p in VECTORS if "eip712_digest_hex" in p.values[0]])
def test_vector_eip712_digest(vector: dict[str, Any]) -> None:
    connection_id = bytes.fromhex(vector["action_hash_hex"][2:])
    assert (
        "0x" + l1_digest(connection_id, is_mainnet=vector["is_mainnet"]).hex() == vector["eip712_digest_hex"]
    )


@pytest.mark.parametrize("vector", [p for p in VECTORS if "signer_address" in p.values[0]])
def test_vector_signer_address(vector: dict[str, Any]) -> None:
    assert Signer.from_key(vector["private_key"]).address == vector["signer_address"]


@pytest.mark.parametrize("vector", VECTORS)
def test_vector_signature_recovers_the_signer(vector: dict[str, Any]) -> None:
    """Independent of the SDK: eth-keys recovers our address from our (digest, v, r, s)."""
    signer = Signer.from_key(vector["private_key"])
    sig = _sign_vector(vector)
    digest = l1_digest(
        action_hash(vector["action"], vector["nonce"], vector["vault_address"], vector["expires_after"]),
        is_mainnet=vector["is_mainnet"],
    )
    r, s, v = _as_ints(dict(sig))
    recovered = KeyAPI.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
    assert recovered.to_checksum_address() == signer.address


# ------------------------------------------------------------------ typed model against the vectors


def _typed_order_type(wire: dict[str, Any]) -> LimitOrderType | TriggerOrderType:
    if "limit" in wire:
        return LimitOrderType(wire["limit"]["tif"])
    trig = wire["trigger"]
    return TriggerOrderType(
        is_market=trig["isMarket"], trigger_px=Decimal(trig["triggerPx"]), tpsl=trig["tpsl"]
    )


def _typed_from_wire(wire: dict[str, Any]) -> Action | None:
    """Our typed action for a vector's wire dict, or None for types the model does not cover."""
    kind = wire["type"]
    if kind == "order":
        builder = wire.get("builder")
        return OrderAction(
            orders=[
                OrderWire(
                    asset=o["a"],
                    is_buy=o["b"],
                    limit_px=Decimal(o["p"]),
                    sz=Decimal(o["s"]),
                    reduce_only=o["r"],
                    order_type=_typed_order_type(o["t"]),
                    cloid=Cloid(o["c"]) if "c" in o else None,
                )
                for o in wire["orders"]
            ],
            grouping=wire["grouping"],
            builder=BuilderInfo(builder["b"], builder["f"]) if builder else None,
        )
    if kind == "cancel":
        return CancelAction(cancels=[CancelWire(c["a"], c["o"]) for c in wire["cancels"]])
    if kind == "cancelByCloid":
        return CancelByCloidAction(
            cancels=[CancelByCloidWire(c["asset"], Cloid(c["cloid"])) for c in wire["cancels"]]
        )
    if kind == "noop":
        return NoopAction()
    if kind == "scheduleCancel":
        return ScheduleCancelAction(time=wire.get("time"))
    return None


def _numbers_are_normalised(wire: dict[str, Any]) -> bool:
    """False for vectors with `"2000.0"`-style strings, which our Decimal model never produces."""
    orders = wire.get("orders", [])
    strings = [o[k] for o in orders for k in ("p", "s")]
    strings += [o["t"]["trigger"]["triggerPx"] for o in orders if "trigger" in o["t"]]
    return all(to_wire(Decimal(x)) == x for x in strings)


def _is_typed_vector(vector: dict[str, Any]) -> bool:
    return _typed_from_wire(vector["action"]) is not None and _numbers_are_normalised(vector["action"])


TYPED_VECTORS = [p for p in VECTORS if _is_typed_vector(p.values[0])]


def test_typed_vectors_cover_every_typed_action_kind() -> None:
    kinds = {p.values[0]["action"]["type"] for p in TYPED_VECTORS}
    assert kinds == {"order", "cancel", "cancelByCloid", "noop", "scheduleCancel"}


@pytest.mark.parametrize("vector", TYPED_VECTORS)
def test_typed_action_reproduces_vector(vector: dict[str, Any]) -> None:
    typed = _typed_from_wire(vector["action"])
    assert typed is not None
    assert pack_action(typed) == msgpack.packb(vector["action"])
    typed_vector = dict(vector, action=typed)
    assert _as_ints(dict(_sign_vector(typed_vector))) == _as_ints(vector["expected_signature"])


# ------------------------------------------------------------------------------ EIP-712 constants


def test_constants_match_eth_account_encoding() -> None:
    """eth-account's full EIP-712 encoder yields our domain separator, struct hash and digest."""
    connection_id = keccak256(b"any action")
    for is_mainnet, source in ((True, "a"), (False, "b")):
        payload = sdk_signing.l1_payload(sdk_signing.construct_phantom_agent(connection_id, is_mainnet))
        signable = encode_typed_data(full_message=payload)
        assert signable.header == DOMAIN_SEPARATOR
        assert signable.body == keccak256(AGENT_TYPEHASH + keccak256(source.encode()) + connection_id)
        assert _hash_eip191_message(signable) == l1_digest(connection_id, is_mainnet=is_mainnet)


def test_networks_sign_different_digests() -> None:
    connection_id = keccak256(b"x")
    assert l1_digest(connection_id, is_mainnet=True) != l1_digest(connection_id, is_mainnet=False)


# ------------------------------------------------------------------------------- inputs and errors


def test_typed_and_dict_forms_sign_identically() -> None:
    typed = OrderAction(
        orders=[OrderWire(110000, True, Decimal("23.456"), Decimal("12.5"), False, LimitOrderType("Ioc"))]
    )
    signer = Signer.from_key(KEY)
    assert signer.sign_l1_action(typed, 7, is_mainnet=True) == signer.sign_l1_action(
        action_to_wire(typed), 7, is_mainnet=True
    )


def test_vault_address_case_and_prefix_do_not_change_the_hash() -> None:
    vault = "0x1719884eb866cb12b2287399b15f7db5e7d775ea"
    expected = action_hash(NoopAction(), 1, vault)
    assert action_hash(NoopAction(), 1, to_checksum_address(vault)) == expected
    assert action_hash(NoopAction(), 1, vault[2:]) == expected
    assert action_hash(NoopAction(), 1, None) != expected


@pytest.mark.parametrize("vault", ["0x1234", "0x" + "zz" * 20, "0x" + "11" * 21, "", "0x" + "11 " * 20])
def test_bad_vault_address_is_refused(vault: str) -> None:
    with pytest.raises(ValueError, match="vault_address"):
        action_hash(NoopAction(), 1, vault)


@pytest.mark.parametrize("nonce", [-1, 1 << 64, True])
def test_nonce_out_of_u64_is_refused(nonce: int) -> None:
    with pytest.raises(ValueError, match="nonce"):
        action_hash(NoopAction(), nonce)


def test_expires_after_out_of_u64_is_refused() -> None:
    with pytest.raises(ValueError, match="expires_after"):
        action_hash(NoopAction(), 1, None, -5)


def test_expires_after_zero_is_still_appended() -> None:
    """`0` is a value, not "unset": only None omits the expiresAfter suffix."""
    assert action_hash(NoopAction(), 1, None, 0) != action_hash(NoopAction(), 1, None, None)


# ---------------------------------------------------------------------------- the Signer and its key


def test_signer_address_is_checksummed() -> None:
    assert Signer.from_key(KEY).address == KEY_ADDRESS


def test_signer_repr_and_str_show_only_the_address() -> None:
    signer = Signer.from_key(KEY)
    for text in (repr(signer), str(signer), f"{signer}"):
        assert KEY_ADDRESS in text
        assert KEY[2:] not in text and KEY[2:12] not in text


@pytest.mark.parametrize("length", [0, 1, 31, 32, 135, 136, 137, 272, 1000])
def test_keccak_by_direct_calls_matches_pycryptodome_and_eth_hash(length: int) -> None:
    """`keccak256` calls pycryptodome's C functions on a reused state: every length around the 136-byte
    block, twice in a row (the state is reset), gives the reference digest."""
    data = bytes(range(256)) * 4
    data = data[:length]
    expected = keccak.new(data=data, digest_bits=256).digest()
    assert keccak256(data) == expected == keccak256(data) == eth_keccak(data)


def test_keccak_states_are_per_thread() -> None:
    """ctypes releases the GIL around each C call: threads hashing at once must not share a state."""
    inputs = [bytes([i]) * (50 + i) for i in range(8)]
    results: dict[int, list[bytes]] = {}

    def work(i: int) -> None:
        results[i] = [keccak256(inputs[i]) for _ in range(300)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, digests in results.items():
        assert set(digests) == {keccak.new(data=inputs[i], digest_bits=256).digest()}


def test_signer_cannot_be_pickled() -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Signer.from_key(KEY))


def test_signer_load_from_env_checks_the_configured_address() -> None:
    env = {"HIP3_PRIVATE_KEY": KEY}
    assert Signer.load(env=env, expected_address=KEY_ADDRESS.lower()).address == KEY_ADDRESS
    other = "0x" + "11" * 20
    with pytest.raises(SignerAddressMismatchError) as info:
        Signer.load(env=env, expected_address=other)
    assert KEY_ADDRESS in str(info.value) and other in str(info.value)


# ------------------------------------------------------------------ differential test against the SDK

ASSETS = st.one_of(
    st.integers(0, 300),  # core perps
    st.integers(10_000, 10_999),  # spot
    st.builds(lambda dex, i: 100_000 + dex * 10_000 + i, st.integers(1, 30), st.integers(0, 9_999)),  # HIP-3
)
PRIVATE_KEYS = st.integers(1, SECP256K1_ORDER - 1).map(lambda k: f"0x{k:064x}")
ADDRESSES = st.binary(min_size=20, max_size=20).flatmap(
    lambda b: st.sampled_from(["0x" + b.hex(), to_checksum_address(b)])
)
CLOIDS = st.integers(0, (1 << 128) - 1)
NONCES = st.integers(0, (1 << 64) - 1)
U64_OR_NONE = st.none() | NONCES


@st.composite
def prices(draw: st.DrawFn, sz_decimals: int) -> Decimal:
    """A valid price: up to 6 digits at a random scale, snapped by `round_price` in a random direction.

    Kept below 1e7 so the SDK's float path (`f"{x:.8f}"`) renders the same decimal exactly.
    """
    raw = Decimal(draw(st.integers(1, 999_999))).scaleb(draw(st.integers(-9, 0)))
    try:
        return round_price(raw, sz_decimals, draw(st.sampled_from(Rounding)))
    except OrderTooSmall:
        return Decimal(1)


@st.composite
def order_specs(draw: st.DrawFn) -> dict[str, Any]:
    sz_decimals = draw(st.integers(0, 5))
    kind = draw(st.sampled_from(["Ioc", "Gtc", "Alo", "trigger"]))
    return {
        "asset": draw(ASSETS),
        "is_buy": draw(st.booleans()),
        "px": draw(prices(sz_decimals)),
        "sz": Decimal(draw(st.integers(1, 10_000_000))).scaleb(-sz_decimals).normalize(),
        "reduce_only": draw(st.booleans()),
        "tif": kind if kind != "trigger" else None,
        "trigger": (draw(st.booleans()), draw(prices(sz_decimals)), draw(st.sampled_from(["tp", "sl"])))
        if kind == "trigger"
        else None,
        "cloid": draw(st.none() | CLOIDS),
    }


def _our_order(spec: dict[str, Any]) -> OrderWire:
    if spec["trigger"] is None:
        order_type: LimitOrderType | TriggerOrderType = LimitOrderType(spec["tif"])
    else:
        is_market, trigger_px, tpsl = spec["trigger"]
        order_type = TriggerOrderType(is_market=is_market, trigger_px=trigger_px, tpsl=tpsl)
    return OrderWire(
        asset=spec["asset"],
        is_buy=spec["is_buy"],
        limit_px=spec["px"],
        sz=spec["sz"],
        reduce_only=spec["reduce_only"],
        order_type=order_type,
        cloid=None if spec["cloid"] is None else Cloid.from_int(spec["cloid"]),
    )


def _sdk_order_request(spec: dict[str, Any]) -> dict[str, Any]:
    """The same order as the SDK takes it: floats (exactly rendered, see `prices`) and its own Cloid."""
    if spec["trigger"] is None:
        order_type: dict[str, Any] = {"limit": {"tif": spec["tif"]}}
    else:
        is_market, trigger_px, tpsl = spec["trigger"]
        order_type = {"trigger": {"triggerPx": float(trigger_px), "isMarket": is_market, "tpsl": tpsl}}
    request: dict[str, Any] = {
        "coin": _coin(spec["asset"]),
        "is_buy": spec["is_buy"],
        "sz": float(spec["sz"]),
        "limit_px": float(spec["px"]),
        "order_type": order_type,
        "reduce_only": spec["reduce_only"],
    }
    if spec["cloid"] is not None:
        request["cloid"] = SdkCloid.from_int(spec["cloid"])
    return request


def _coin(asset: int) -> str:
    return f"COIN{asset}"


class SdkOracle:
    """The SDK's own `Exchange`, offline: whatever it would post is captured instead of sent."""

    def __init__(self) -> None:
        self._exchanges = {
            is_mainnet: Exchange(
                Account.create(),
                base_url=MAINNET_API_URL if is_mainnet else TESTNET_API_URL,
                meta={"universe": []},
                spot_meta={"universe": [], "tokens": []},
            )
            for is_mainnet in (True, False)
        }
        for exchange in self._exchanges.values():
            exchange._post_action = self._capture
            exchange.post = exchange.info.post = _no_network
        self._posted: list[tuple[dict[str, Any], dict[str, Any], int]] = []

    def _capture(self, action: dict[str, Any], signature: dict[str, Any], nonce: int) -> None:
        self._posted.append((action, signature, nonce))

    def run(
        self,
        call: Callable[[Exchange], object],
        *,
        key: str,
        assets: list[int],
        nonce: int,
        vault: str | None,
        expires_after: int | None,
        is_mainnet: bool,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run `call(exchange)` with this key/vault/expiry and the nonce as "now"; the posted action."""
        exchange = self._exchanges[is_mainnet]
        exchange.wallet = Account.from_key(key)
        exchange.vault_address = vault
        exchange.set_expires_after(expires_after)
        for asset in assets:
            exchange.info.coin_to_asset[_coin(asset)] = asset
            exchange.info.name_to_coin[_coin(asset)] = _coin(asset)
        self._posted.clear()
        with mock.patch("hyperliquid.exchange.get_timestamp_ms", return_value=nonce):
            call(exchange)
        [(action, signature, posted_nonce)] = self._posted
        assert posted_nonce == nonce
        return action, signature


def _no_network(*_: object, **__: object) -> None:
    raise AssertionError("the SDK oracle tried to reach the network")


@pytest.fixture(scope="module")
def sdk() -> Iterator[SdkOracle]:
    yield SdkOracle()


DIFFERENTIAL = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _label(assets: list[int], vault: str | None, expires_after: int | None, is_mainnet: bool) -> None:
    """Record what an example covered (`--hypothesis-show-statistics` shows the mix)."""
    event("mainnet" if is_mainnet else "testnet")
    event("vault" if vault is not None else "no vault")
    event("expiresAfter" if expires_after is not None else "no expiresAfter")
    if any(a >= 100_000 for a in assets):
        event("HIP-3 asset")


def _check_against_sdk(
    sdk: SdkOracle,
    ours: Action,
    call: Callable[[Exchange], object],
    *,
    key: str,
    assets: list[int],
    nonce: int,
    vault: str | None,
    expires_after: int | None,
    is_mainnet: bool,
) -> None:
    _label(assets, vault, expires_after, is_mainnet)
    sdk_action, sdk_sig = sdk.run(
        call,
        key=key,
        assets=assets,
        nonce=nonce,
        vault=vault,
        expires_after=expires_after,
        is_mainnet=is_mainnet,
    )
    assert action_to_wire(ours) == sdk_action
    assert pack_action(ours) == msgpack.packb(sdk_action)  # same bytes, so same key order too
    assert action_hash(ours, nonce, vault, expires_after) == sdk_signing.action_hash(
        sdk_action, vault, nonce, expires_after
    )
    sig = Signer.from_key(key).sign_l1_action(
        ours, nonce, vault_address=vault, expires_after=expires_after, is_mainnet=is_mainnet
    )
    assert _as_ints(dict(sig)) == _as_ints(sdk_sig)
    assert sig == sdk_sig


@settings(DIFFERENTIAL, max_examples=300)
@given(
    specs=st.lists(order_specs(), min_size=1, max_size=4),
    grouping=st.sampled_from(["na", "normalTpsl", "positionTpsl"]),
    builder=st.none() | st.tuples(ADDRESSES, st.integers(0, 1000)),
    key=PRIVATE_KEYS,
    nonce=NONCES,
    vault=st.none() | ADDRESSES,
    expires_after=U64_OR_NONE,
    is_mainnet=st.booleans(),
)
def test_orders_match_sdk(
    sdk: SdkOracle,
    specs: list[dict[str, Any]],
    grouping: Any,
    builder: tuple[str, int] | None,
    key: str,
    nonce: int,
    vault: str | None,
    expires_after: int | None,
    is_mainnet: bool,
) -> None:
    ours = OrderAction(
        orders=[_our_order(s) for s in specs],
        grouping=grouping,
        builder=None if builder is None else BuilderInfo(*builder),
    )
    sdk_builder = None if builder is None else {"b": builder[0], "f": builder[1]}
    event("builder" if builder is not None else "no builder")
    event("trigger order" if any(s["trigger"] for s in specs) else "limit orders only")
    event("cloid" if any(s["cloid"] is not None for s in specs) else "no cloid")
    _check_against_sdk(
        sdk,
        ours,
        lambda ex: ex.bulk_orders([_sdk_order_request(s) for s in specs], sdk_builder, grouping),
        key=key,
        assets=[s["asset"] for s in specs],
        nonce=nonce,
        vault=vault,
        expires_after=expires_after,
        is_mainnet=is_mainnet,
    )


@DIFFERENTIAL
@given(
    cancels=st.lists(st.tuples(ASSETS, NONCES), min_size=1, max_size=4),
    key=PRIVATE_KEYS,
    nonce=NONCES,
    vault=st.none() | ADDRESSES,
    expires_after=U64_OR_NONE,
    is_mainnet=st.booleans(),
)
def test_cancels_match_sdk(
    sdk: SdkOracle,
    cancels: list[tuple[int, int]],
    key: str,
    nonce: int,
    vault: str | None,
    expires_after: int | None,
    is_mainnet: bool,
) -> None:
    ours = CancelAction(cancels=[CancelWire(asset, oid) for asset, oid in cancels])
    _check_against_sdk(
        sdk,
        ours,
        lambda ex: ex.bulk_cancel([{"coin": _coin(asset), "oid": oid} for asset, oid in cancels]),
        key=key,
        assets=[asset for asset, _ in cancels],
        nonce=nonce,
        vault=vault,
        expires_after=expires_after,
        is_mainnet=is_mainnet,
    )


@DIFFERENTIAL
@given(
    cancels=st.lists(st.tuples(ASSETS, CLOIDS), min_size=1, max_size=4),
    key=PRIVATE_KEYS,
    nonce=NONCES,
    vault=st.none() | ADDRESSES,
    expires_after=U64_OR_NONE,
    is_mainnet=st.booleans(),
)
def test_cancels_by_cloid_match_sdk(
    sdk: SdkOracle,
    cancels: list[tuple[int, int]],
    key: str,
    nonce: int,
    vault: str | None,
    expires_after: int | None,
    is_mainnet: bool,
) -> None:
    ours = CancelByCloidAction(cancels=[CancelByCloidWire(asset, Cloid.from_int(c)) for asset, c in cancels])
    _check_against_sdk(
        sdk,
        ours,
        lambda ex: ex.bulk_cancel_by_cloid(
            [{"coin": _coin(asset), "cloid": SdkCloid.from_int(c)} for asset, c in cancels]
        ),
        key=key,
        assets=[asset for asset, _ in cancels],
        nonce=nonce,
        vault=vault,
        expires_after=expires_after,
        is_mainnet=is_mainnet,
    )


@DIFFERENTIAL
@given(
    asset=st.sampled_from([4, 110000, 110001, 120003]),
    leverage=st.integers(1, 50),
    is_mainnet=st.booleans(),
)
def test_update_leverage_matches_the_sdk(sdk: SdkOracle, asset: int, leverage: int, is_mainnet: bool) -> None:
    from hip3_trio.wire.actions import UpdateLeverageAction

    _check_against_sdk(
        sdk,
        UpdateLeverageAction(asset, leverage=leverage),
        lambda exchange: exchange.update_leverage(leverage, _coin(asset), is_cross=False),
        key=KEY,
        assets=[asset],
        nonce=1_700_000_000_123,
        vault=None,
        expires_after=None,
        is_mainnet=is_mainnet,
    )
