"""Loading the signing key without ever showing it.

The private key comes from the environment variable `HIP3_PRIVATE_KEY` or from a key file that only
its owner can access (mode 0600). It is held in a `SecretKey`, whose `repr`/`str` are redacted and
which refuses to be pickled, so it cannot end up in a log line, a traceback or a crash dump by
accident. Every error raised here describes *what* is wrong (length, position of a bad character,
file mode) and never includes the key text, not even a fragment of it.

At start-up, `verify_signer_address` compares the address derived from the key with the one the
operator configured: signing with the wrong key would have every action rejected (or, worse,
accepted for the wrong account), so a mismatch stops the engine and names both addresses.
"""

from __future__ import annotations

import hmac
import os
import re
import stat
from collections.abc import Mapping
from typing import Final, NoReturn, final

from eth_account import Account

__all__ = [
    "ENV_VAR",
    "InsecureKeyFileError",
    "InvalidKeyError",
    "KeyConfigError",
    "MissingKeyError",
    "SecretKey",
    "SignerAddressMismatchError",
    "derive_address",
    "load_secret_key",
    "read_key_file",
    "verify_signer_address",
]

ENV_VAR: Final = "HIP3_PRIVATE_KEY"
"""The environment variable that may hold the hex private key."""

SECP256K1_ORDER: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""A private key is an integer in [1, SECP256K1_ORDER - 1]."""

_HEX64: Final = re.compile(r"[0-9a-fA-F]{64}")
_HEX_CHARS: Final = frozenset("0123456789abcdefABCDEF")
_MAX_KEY_FILE_BYTES: Final = 1024  # a hex key and some whitespace; anything larger is not a key file


class KeyConfigError(Exception):
    """The signing key or signer address cannot be used; raised at start-up, never mid-session."""


class MissingKeyError(KeyConfigError):
    """No private key was configured, or the configured key file does not exist."""


class InsecureKeyFileError(KeyConfigError):
    """The key file is accessible to group or other; it must be mode 0600 (or stricter)."""


class InvalidKeyError(KeyConfigError):
    """The key text is not 32 bytes of hex, or not a valid secp256k1 private key."""


class SignerAddressMismatchError(KeyConfigError):
    """The address derived from the key differs from the configured signer address."""


@final
class SecretKey:
    """A 32-byte secp256k1 private key whose text representations are redacted.

    Use `reveal()` only at the point where the raw bytes are handed to a signing library.
    Equality is constant-time; instances are unhashable and cannot be pickled.
    """

    __slots__ = ("_raw",)

    _raw: bytes

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes) or len(raw) != 32:
            length = len(raw) if isinstance(raw, bytes) else type(raw).__name__
            raise InvalidKeyError(f"private key must be exactly 32 bytes, got {length}")
        if not 0 < int.from_bytes(raw, "big") < SECP256K1_ORDER:
            raise InvalidKeyError(
                "private key is not a valid secp256k1 key (zero or not below the curve order)"
            )
        object.__setattr__(self, "_raw", raw)

    @classmethod
    def from_hex(cls, text: str, *, origin: str = "private key") -> SecretKey:
        """Parse 64 hex digits, with or without `0x`, surrounding whitespace ignored.

        `origin` (e.g. "environment variable HIP3_PRIVATE_KEY") starts every error message so the
        operator knows which source to fix; the messages state lengths and positions, never characters.
        """
        body = text.strip()
        if body[:2] in ("0x", "0X"):
            body = body[2:]
        if _HEX64.fullmatch(body) is None:
            _raise_bad_hex(body, origin)
        raw = bytes.fromhex(body)
        if not 0 < int.from_bytes(raw, "big") < SECP256K1_ORDER:
            raise InvalidKeyError(f"{origin}: not a valid secp256k1 key (zero or not below the curve order)")
        return cls(raw)

    def reveal(self) -> bytes:
        """The raw 32 key bytes, for the signing library and nothing else."""
        return self._raw

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("SecretKey is immutable")

    def __repr__(self) -> str:
        return "SecretKey(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return hmac.compare_digest(self._raw, other._raw)

    __hash__ = None  # type: ignore[assignment]  # equal keys must not become dict keys / set members

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretKey cannot be pickled or copied into another process")


def _raise_bad_hex(body: str, origin: str) -> NoReturn:
    """Explain why `body` is not 64 hex digits without quoting any of it."""
    expected = "must be 64 hex digits (32 bytes), optionally prefixed with 0x"
    bad = next((i for i, ch in enumerate(body) if ch not in _HEX_CHARS), None)
    if bad is not None:
        raise InvalidKeyError(f"{origin}: {expected}; it has a non-hex character at position {bad}")
    hint = " (that is the length of an address, not a private key)" if len(body) == 40 else ""
    raise InvalidKeyError(f"{origin}: {expected}; it has {len(body)} hex digits{hint}")


def read_key_file(path: str | os.PathLike[str]) -> SecretKey:
    """Read a hex private key from `path`, refusing a file that group or other can access.

    The mode is checked on the opened descriptor, so the file that was checked is the file read.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise MissingKeyError(f"key file {name} does not exist") from None
    except OSError as exc:
        raise KeyConfigError(f"cannot open key file {name}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidKeyError(f"key file {name} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise InsecureKeyFileError(
                f"key file {name} has mode {mode:04o}: group/other can access it; "
                f"run `chmod 600 {name}` (owner read/write only)"
            )
        data = os.read(fd, _MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise InvalidKeyError(
            f"key file {name} is larger than {_MAX_KEY_FILE_BYTES} bytes; expected a hex key"
        )
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidKeyError(f"key file {name} is not ASCII text; expected a hex key") from None
    return SecretKey.from_hex(text, origin=f"key file {name}")


def load_secret_key(
    *, key_file: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> SecretKey:
    """The private key from `key_file` if given, else from the `HIP3_PRIVATE_KEY` environment variable.

    `env` defaults to `os.environ` (tests pass a dict). A blank variable counts as unset. Configuring
    both sources is refused: with two keys around it is unclear which account would trade.
    """
    environ = os.environ if env is None else env
    env_text = environ.get(ENV_VAR, "")
    has_env = bool(env_text.strip())
    if key_file is not None and has_env:
        raise KeyConfigError(
            f"both the environment variable {ENV_VAR} and the key file {os.fspath(key_file)} are set; "
            "configure exactly one"
        )
    if key_file is not None:
        return read_key_file(key_file)
    if has_env:
        return SecretKey.from_hex(env_text, origin=f"environment variable {ENV_VAR}")
    raise MissingKeyError(
        f"no private key configured: set the environment variable {ENV_VAR} "
        "or configure a key file (the key_file option; the file must be mode 0600)"
    )


def derive_address(secret: SecretKey) -> str:
    """The EIP-55 checksummed address of `secret` (what the exchange recovers from our signatures)."""
    address: str = Account.from_key(secret.reveal()).address
    return address


def verify_signer_address(derived: str, configured: str | None) -> None:
    """Refuse to start when the configured signer address is not the key's address.

    Addresses compare case-insensitively (checksummed and lowercase forms are the same address).
    `configured=None` means no address was configured, so there is nothing to check.
    """
    if configured is None:
        return
    if derived.strip().lower() != configured.strip().lower():
        raise SignerAddressMismatchError(
            f"the private key belongs to {derived}, but the configured signer address is {configured}; "
            "fix the key or the configured address"
        )
