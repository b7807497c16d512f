"""Signing L1 actions (orders, cancels, noop, scheduleCancel, ...) exactly as the exchange verifies them.

The scheme (PROTOCOL.md, "Signing L1 actions"):

1. `connectionId = keccak(msgpack(action) + nonce(8 bytes BE) + vault marker [+ expiresAfter])`;
2. the EIP-712 struct `Agent(string source, bytes32 connectionId)`, `source` "a" on mainnet and "b" on
   testnet, in the fixed domain `Exchange/1/1337/0x0`;
3. a recoverable secp256k1 signature `{"r", "s", "v"}` of the EIP-712 digest.

The SDK rebuilds and re-encodes the whole typed-data document for every order (several hundred µs);
here the EIP-712 pieces that never change are constants, so signing is three keccaks and one
libsecp256k1 call (coincurve), deterministic (RFC 6979) and byte-exact with the SDK. The constants are
recomputed from their definitions at import and the module refuses to load
if they disagree with the published values.

Keccak is pycryptodome's C code (the backend eth-hash uses too). Its Python wrapper builds a hash object,
a smart pointer and a buffer per call, and an order path that runs once every few hundred milliseconds
runs that wrapper cold: ~140 µs a keccak on the test VM. With pycryptodome's ctypes backend, `keccak256`
calls the same three C functions directly on one reusable state per thread (reset, absorb, digest): the
same bytes in ~70 µs cold (see docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, TypedDict

import coincurve
import msgpack
from Crypto.Hash import keccak as _keccak_mod

from hip3_trio.wire.actions import Action, action_to_wire
from hip3_trio.wire.keys import (
    SecretKey,
    derive_address,
    load_secret_key,
    verify_signer_address,
)

__all__ = [
    "AGENT_TYPEHASH",
    "DOMAIN_SEPARATOR",
    "Signature",
    "Signer",
    "WireAction",
    "action_hash",
    "keccak256",
    "l1_digest",
    "pack_action",
]

WireAction = dict[str, Any]
"""An action already in wire form: the exact dict that is msgpack-encoded and posted."""


class Signature(TypedDict):
    """`{"r": "0x…", "s": "0x…", "v": 27|28}`; r and s as `hex(int)`, i.e. not zero-padded, like the SDK."""

    r: str
    s: str
    v: int


def _keccak256_wrapped(data: bytes) -> bytes:
    """Keccak-256 through pycryptodome's hash object (any of its backends)."""
    digest: bytes = _keccak_mod.new(data=data, digest_bits=256).digest()
    return digest


class _KeccakState:
    """One pycryptodome keccak-256 state and output buffer, reused by one thread (ctypes backend only).

    ctypes releases the GIL around each C call, so a state shared by threads could interleave: each
    thread gets its own (`_KECCAK_STATES`), freed with the thread's locals."""

    __slots__ = ("_destroy", "out", "state")

    def __init__(self) -> None:
        self._destroy = _KECCAK_C.keccak_destroy  # held: module globals may be gone when this is freed
        self.state = ctypes.c_void_p()
        # capacity 64 bytes (= 2 x the 32-byte digest), 24 rounds: what `keccak.new(digest_bits=256)` uses.
        if _KECCAK_C.keccak_init(ctypes.byref(self.state), 64, 24):
            raise RuntimeError("keccak_init failed")
        self.out = ctypes.create_string_buffer(32)

    def __del__(self) -> None:
        if self.state:
            self._destroy(self.state)


def _keccak_c() -> Any:
    """pycryptodome's keccak library with prototypes set, or None if it is not loaded through ctypes."""
    lib = getattr(_keccak_mod, "_raw_keccak_lib", None)
    if not isinstance(lib, ctypes.CDLL) or not hasattr(lib, "keccak_reset"):
        return None
    c = ctypes.CDLL(lib._name)  # our own handle: prototypes set here do not touch pycryptodome's
    c.keccak_init.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint8]
    c.keccak_destroy.argtypes = [ctypes.c_void_p]
    c.keccak_reset.argtypes = [ctypes.c_void_p]
    c.keccak_absorb.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    c.keccak_digest.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint8]
    return c


_KECCAK_C: Final = _keccak_c()
_KECCAK_STATES: Final = threading.local()


def _keccak256_direct(data: bytes) -> bytes:
    """Keccak-256 by pycryptodome's C functions on this thread's state (see the module docstring)."""
    try:
        k: _KeccakState = _KECCAK_STATES.k
    except AttributeError:
        k = _KECCAK_STATES.k = _KeccakState()
    state, out = k.state, k.out
    if (
        _KECCAK_C.keccak_reset(state)
        or _KECCAK_C.keccak_absorb(state, data, len(data))
        or _KECCAK_C.keccak_digest(state, out, 32, 0x01)  # 0x01: keccak padding, not SHA-3's 0x06
    ):
        raise RuntimeError("keccak failed")
    return out.raw


def _pick_keccak() -> Callable[[bytes], bytes]:
    """The direct calls when available and they agree with pycryptodome's own object, else the object."""
    probe = b"hip3-trio keccak probe" * 10  # longer than one 136-byte block
    if _KECCAK_C is not None and _keccak256_direct(probe) == _keccak256_wrapped(probe):
        return _keccak256_direct
    return _keccak256_wrapped


keccak256: Final = _pick_keccak()
"""Keccak-256 (the Ethereum hash, not NIST SHA3-256): `keccak256(data) -> 32 bytes`."""


DOMAIN_SEPARATOR: Final = bytes.fromhex("d79297fcdf2ffcd4ae223d01edaa2ba214ff8f401d7c9300d995d17c82aa4040")
"""EIP-712 domain separator of `{name: "Exchange", version: "1", chainId: 1337, verifyingContract: 0x0}`."""

AGENT_TYPEHASH: Final = bytes.fromhex("26f05c2f7239b6983075e58321292d77b3aa173d19b27257ac96ab362570f508")
"""`keccak("Agent(string source,bytes32 connectionId)")`."""


def _recompute_domain_separator() -> bytes:
    type_hash = keccak256(
        b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    return keccak256(
        type_hash
        + keccak256(b"Exchange")
        + keccak256(b"1")
        + (1337).to_bytes(32, "big")
        + bytes(32)  # verifyingContract 0x0, left-padded to 32 bytes
    )


def _check_constants() -> None:
    """Refuse to run with EIP-712 constants that do not follow from their definitions."""
    if _recompute_domain_separator() != DOMAIN_SEPARATOR:
        raise RuntimeError("EIP-712 domain separator constant does not match its definition")
    if keccak256(b"Agent(string source,bytes32 connectionId)") != AGENT_TYPEHASH:
        raise RuntimeError("Agent type hash constant does not match its definition")


_check_constants()

_DIGEST_PREFIX: Final = b"\x19\x01" + DOMAIN_SEPARATOR
# hashStruct(Agent) = keccak(typehash + keccak(source) + connectionId): the first 64 bytes are fixed
# per network, so they are precomputed.
_STRUCT_PREFIX_MAINNET: Final = AGENT_TYPEHASH + keccak256(b"a")
_STRUCT_PREFIX_TESTNET: Final = AGENT_TYPEHASH + keccak256(b"b")
_NO_VAULT: Final = b"\x00"
_MAX_U64: Final = (1 << 64) - 1
_HEX40: Final = re.compile(r"[0-9a-fA-F]{40}")


def pack_action(action: Action | WireAction) -> bytes:
    """The msgpack bytes of an action's wire form (msgpack defaults, as the SDK and the exchange use).

    A typed action is converted with `action_to_wire`; a dict is taken as already in wire form.
    """
    wire = action if isinstance(action, dict) else action_to_wire(action)
    packed: bytes = _PACKER.pack(wire)
    return packed


# `msgpack.packb(x)` is `Packer().pack(x)`: one packer, built once, saves building one per action (~10 µs
# of a cold order path here). Sharing it is safe: `pack` runs in C without releasing the GIL, calls back
# into Python for none of the plain types an action holds, and empties its buffer after each call.
_PACKER: Final = msgpack.Packer()


def _vault_bytes(vault_address: str) -> bytes:
    """The 20 address bytes; `0x` optional and any letter case, like the SDK's `address_to_bytes`."""
    text = vault_address[2:] if vault_address[:2] in ("0x", "0X") else vault_address
    if _HEX40.fullmatch(text) is None:
        raise ValueError(f"vault_address must be a 20-byte hex address, got {vault_address!r:.60}")
    return bytes.fromhex(text)


def _u64(value: int, what: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_U64:
        raise ValueError(f"{what} must be an int in [0, 2**64), got {value!r}")
    return value.to_bytes(8, "big")


def action_hash(
    action: Action | WireAction,
    nonce: int,
    vault_address: str | None = None,
    expires_after: int | None = None,
) -> bytes:
    """The 32-byte `connectionId`: keccak of msgpack(action) + nonce + vault marker [+ expiresAfter]."""
    data = pack_action(action) + _u64(nonce, "nonce")
    data += _NO_VAULT if vault_address is None else b"\x01" + _vault_bytes(vault_address)
    if expires_after is not None:
        data += b"\x00" + _u64(expires_after, "expires_after")
    return keccak256(data)


def l1_digest(connection_id: bytes, *, is_mainnet: bool) -> bytes:
    """The EIP-712 digest of `Agent{source, connectionId}`: what the secp256k1 key actually signs."""
    prefix = _STRUCT_PREFIX_MAINNET if is_mainnet else _STRUCT_PREFIX_TESTNET
    return keccak256(_DIGEST_PREFIX + keccak256(prefix + connection_id))


class Signer:
    """Signs L1 actions with one private key; holds the key (in libsecp256k1 form), never shows it.

    `address` is the EIP-55 checksummed address (the form eth-account derives); compare addresses
    case-insensitively. `repr` shows only the address.

    Signatures are deterministic (RFC 6979, libsecp256k1, constant-time C): the SDK's, bit for bit. A
    random-nonce variant with the curve multiplication done ahead was measured (~150 µs less per cold
    order) and not taken: it puts hand-written, non-constant-time ECDSA arithmetic and the key as a Python
    integer on the money path, and makes the production signatures untestable against the SDK's vectors,
    for 0.15 ms against ~70 ms blocks (docs/benchmarks.md).
    """

    __slots__ = ("_address", "_key")

    def __init__(self, secret: SecretKey) -> None:
        self._key = coincurve.PrivateKey(secret.reveal())
        self._address: str = derive_address(secret)

    @classmethod
    def from_key(cls, hex_private_key: str) -> Signer:
        """A signer for a hex private key (64 hex digits, `0x` optional, whitespace ignored)."""
        return cls(SecretKey.from_hex(hex_private_key))

    @classmethod
    def load(
        cls,
        *,
        key_file: str | os.PathLike[str] | None = None,
        expected_address: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Signer:
        """Start-up entry point: load the key (key file or `HIP3_PRIVATE_KEY`) and check its address.

        Raises a `keys.KeyConfigError` subclass naming the problem (and both addresses on a mismatch).
        """
        signer = cls(load_secret_key(key_file=key_file, env=env))
        verify_signer_address(signer.address, expected_address)
        return signer

    @property
    def address(self) -> str:
        """The signer's EIP-55 checksummed address."""
        return self._address

    def sign_l1_action(
        self,
        action: Action | WireAction,
        nonce: int,
        *,
        vault_address: str | None = None,
        expires_after: int | None = None,
        is_mainnet: bool,
    ) -> Signature:
        """Sign `action` (typed, or a dict in wire form) for `nonce`, as the SDK's `sign_l1_action` does."""
        digest = l1_digest(action_hash(action, nonce, vault_address, expires_after), is_mainnet=is_mainnet)
        return self.sign_digest(digest)

    def sign_digest(self, digest: bytes) -> Signature:
        """Sign a 32-byte digest as is (no further hashing); `v` is 27 + the recovery id."""
        sig: bytes = self._key.sign_recoverable(digest, hasher=None)
        return {
            "r": hex(int.from_bytes(sig[:32], "big")),
            "s": hex(int.from_bytes(sig[32:64], "big")),
            "v": 27 + sig[64],
        }

    def __repr__(self) -> str:
        return f"Signer(address={self._address})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("Signer holds a private key and cannot be pickled")
