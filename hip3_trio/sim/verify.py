"""Independent signature check for L1 actions, written from the wire facts (not from the engine).

The venue never hashes the JSON it receives. It deserialises the action into its own types and
re-encodes it: keys in its canonical order, optional keys omitted when unset, prices and sizes
normalised, cloids lowercased. The signature is then checked against *that* encoding. A client that
signs anything else (a different key order, "105.0" for "105") produces a valid signature over other
bytes, which recovers some other address — hence the venue's "User or API Wallet 0x… does not exist."
This module rebuilds the action the same way, hashes it (msgpack + nonce + vault + expiresAfter,
keccak) and recovers the signer of the EIP-712 ``Agent(source, connectionId)`` message.
"""

from __future__ import annotations

import re
from typing import Any

import msgpack
from eth_account import Account
from eth_utils.crypto import keccak

from .numbers import BadDecimal, normalise_wire

EIP712_DOMAIN_TYPE = b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
AGENT_TYPE = b"Agent(string source,bytes32 connectionId)"
AGENT_TYPE_HASH: bytes = keccak(AGENT_TYPE)
DOMAIN_SEPARATOR: bytes = keccak(
    keccak(EIP712_DOMAIN_TYPE) + keccak(b"Exchange") + keccak(b"1") + (1337).to_bytes(32, "big") + bytes(32)
)

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_CLOID = re.compile(r"^0x[0-9a-fA-F]{32}$")
_TIFS = ("Alo", "Ioc", "Gtc")


class BadAction(ValueError):
    """The action does not deserialise into a known action type (the venue answers 422)."""


U64_LIMIT = 2**64


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < U64_LIMIT:
        raise BadAction(f"{what}: expected an unsigned 64-bit integer")
    return value


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise BadAction(f"{what}: expected a boolean")
    return value


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise BadAction(f"{what}: expected a string")
    return value


def _dec(value: object, what: str) -> str:
    try:
        return normalise_wire(value)
    except BadDecimal as exc:
        raise BadAction(f"{what}: {exc}") from exc


def _cloid(value: object) -> str:
    text = _str(value, "cloid")
    if not _CLOID.match(text):
        raise BadAction("cloid: expected 0x followed by 32 hex digits")
    return text.lower()


def _address(value: object, what: str) -> str:
    text = _str(value, what)
    if not _ADDRESS.match(text):
        raise BadAction(f"{what}: expected an address")
    return text.lower()


def _dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadAction(f"{what}: expected an object")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadAction(f"{what}: expected an array")
    return value


def _order_type(raw: object) -> dict[str, Any]:
    t = _dict(raw, "t")
    if "limit" in t:
        tif = _str(_dict(t["limit"], "limit").get("tif"), "tif")
        if tif not in _TIFS:
            raise BadAction(f"unknown tif {tif!r}")
        return {"limit": {"tif": tif}}
    if "trigger" in t:
        trig = _dict(t["trigger"], "trigger")
        tpsl = _str(trig.get("tpsl"), "tpsl")
        if tpsl not in ("tp", "sl"):
            raise BadAction(f"unknown tpsl {tpsl!r}")
        return {
            "trigger": {
                "isMarket": _bool(trig.get("isMarket"), "isMarket"),
                "triggerPx": _dec(trig.get("triggerPx"), "triggerPx"),
                "tpsl": tpsl,
            }
        }
    raise BadAction("order type must be limit or trigger")


def _order(raw: object) -> dict[str, Any]:
    o = _dict(raw, "order")
    out: dict[str, Any] = {
        "a": _int(o.get("a"), "a"),
        "b": _bool(o.get("b"), "b"),
        "p": _dec(o.get("p"), "p"),
        "s": _dec(o.get("s"), "s"),
        "r": _bool(o.get("r"), "r"),
        "t": _order_type(o.get("t")),
    }
    if o.get("c") is not None:
        out["c"] = _cloid(o["c"])
    return out


def _grouping(raw: object) -> Any:
    if raw in ("na", "normalTpsl", "positionTpsl"):
        return raw
    if isinstance(raw, dict) and set(raw) == {"p"}:
        return {"p": _int(raw["p"], "grouping.p")}
    raise BadAction("unknown grouping")


def canonical_action(raw: object) -> dict[str, Any]:
    """Rebuild an action in the venue's canonical key order, normalised, or raise ``BadAction``."""
    action = _dict(raw, "action")
    kind = action.get("type")
    if kind == "order":
        out: dict[str, Any] = {
            "type": "order",
            "orders": [_order(o) for o in _list(action.get("orders"), "orders")],
            "grouping": _grouping(action.get("grouping")),
        }
        if action.get("builder"):
            builder = _dict(action["builder"], "builder")
            out["builder"] = {"b": _address(builder.get("b"), "builder.b"), "f": _int(builder.get("f"), "f")}
        return out
    if kind == "cancel":
        cancels = [_dict(c, "cancel") for c in _list(action.get("cancels"), "cancels")]
        return {
            "type": "cancel",
            "cancels": [{"a": _int(c.get("a"), "a"), "o": _int(c.get("o"), "o")} for c in cancels],
        }
    if kind == "cancelByCloid":
        cancels = [_dict(c, "cancel") for c in _list(action.get("cancels"), "cancels")]
        return {
            "type": "cancelByCloid",
            "cancels": [
                {"asset": _int(c.get("asset"), "asset"), "cloid": _cloid(c.get("cloid"))} for c in cancels
            ],
        }
    if kind == "noop":
        return {"type": "noop"}
    if kind == "updateLeverage":
        return {
            "type": "updateLeverage",
            "asset": _int(action.get("asset"), "asset"),
            "isCross": _bool(action.get("isCross"), "isCross"),
            "leverage": _int(action.get("leverage"), "leverage"),
        }
    if kind == "scheduleCancel":
        out = {"type": "scheduleCancel"}
        if action.get("time") is not None:
            out["time"] = _int(action["time"], "time")
        return out
    raise BadAction(f"unknown action type {kind!r}")


def action_hash(action: dict[str, Any], nonce: int, vault: str | None, expires_after: int | None) -> bytes:
    """keccak(msgpack(action) ‖ nonce ‖ vault tag ‖ expiresAfter tag): the ``connectionId``."""
    data = msgpack.packb(action)
    data += nonce.to_bytes(8, "big")
    if vault is None:
        data += b"\x00"
    else:
        data += b"\x01" + bytes.fromhex(vault[2:])
    if expires_after is not None:
        data += b"\x00" + expires_after.to_bytes(8, "big")
    digest: bytes = keccak(data)
    return digest


def agent_digest(connection_id: bytes, source: str) -> bytes:
    """The EIP-712 digest of ``Agent(source, connectionId)`` under the Exchange domain."""
    struct_hash = keccak(AGENT_TYPE_HASH + keccak(source.encode()) + connection_id)
    digest: bytes = keccak(b"\x19\x01" + DOMAIN_SEPARATOR + struct_hash)
    return digest


def parse_signature(raw: object) -> tuple[int, int, int]:
    """Signature ``{"r","s","v"}`` → (v, r, s); r and s need not be zero-padded."""
    sig = _dict(raw, "signature")
    try:
        r = int(_str(sig.get("r"), "r"), 16)
        s = int(_str(sig.get("s"), "s"), 16)
    except ValueError as exc:
        raise BadAction("signature: r and s must be hex") from exc
    v = _int(sig.get("v"), "v")
    if v in (0, 1):
        v += 27
    if v not in (27, 28):
        raise BadAction("signature: v must be 27 or 28")
    return v, r, s


def recover_signer(
    action: dict[str, Any],
    nonce: int,
    signature: tuple[int, int, int],
    source: str,
    vault: str | None = None,
    expires_after: int | None = None,
) -> str:
    """Recover the lowercase address that signed this (canonical) action, or raise ``BadAction``."""
    digest = agent_digest(action_hash(action, nonce, vault, expires_after), source)
    try:
        address: str = Account._recover_hash(digest, vrs=signature)
    except Exception as exc:  # eth-keys raises several types for an unrecoverable signature
        raise BadAction("signature: cannot recover a signer") from exc
    return address.lower()
