"""Key loading: the sources, the file-mode guard, the parsing, and that the secret never shows."""

from __future__ import annotations

import copy
import logging
import os
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hip3_trio.wire.keys import (
    ENV_VAR,
    SECP256K1_ORDER,
    InsecureKeyFileError,
    InvalidKeyError,
    KeyConfigError,
    MissingKeyError,
    SecretKey,
    SignerAddressMismatchError,
    derive_address,
    load_secret_key,
    read_key_file,
    verify_signer_address,
)

KEY_HEX = "0123456789012345678901234567890123456789012345678901234567890123"
KEY_BYTES = bytes.fromhex(KEY_HEX)
KEY_ADDRESS = "0x14791697260E4c9A71f18484C9f997B308e59325"  # from the SDK-generated vectors
OTHER_ADDRESS = "0x1719884eb866cb12b2287399b15f7db5e7d775ea"


def assert_no_leak(text: str, secret: str, window: int = 8) -> None:
    """No `window`-long run of the secret's characters appears in `text` (a shorter secret is not checked)."""
    body = secret.strip().removeprefix("0x")
    for i in range(len(body) - window + 1):
        assert body[i : i + window] not in text, f"secret fragment {i} leaked into: {text}"


def write_key_file(path: Path, content: str, mode: int) -> Path:
    path.write_text(content)
    os.chmod(path, mode)
    return path


# ---------------------------------------------------------------------------------- environment


@pytest.mark.parametrize(
    "text",
    [KEY_HEX, "0x" + KEY_HEX, "0X" + KEY_HEX, f"  0x{KEY_HEX}\n", f"\t{KEY_HEX.upper()} \r\n"],
    ids=["bare", "0x", "0X", "whitespace", "uppercase"],
)
def test_env_var_forms_all_load_the_same_key(text: str) -> None:
    assert load_secret_key(env={ENV_VAR: text}).reveal() == KEY_BYTES


def test_missing_key_names_env_var_and_key_file_option() -> None:
    with pytest.raises(MissingKeyError) as info:
        load_secret_key(env={})
    assert ENV_VAR in str(info.value)
    assert "key_file" in str(info.value)


def test_blank_env_var_counts_as_missing() -> None:
    with pytest.raises(MissingKeyError, match=ENV_VAR):
        load_secret_key(env={ENV_VAR: "  \n"})


def test_env_var_is_read_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, KEY_HEX)
    assert load_secret_key().reveal() == KEY_BYTES


def test_env_var_error_names_the_env_var_and_does_not_leak() -> None:
    bad = KEY_HEX[:-1]
    with pytest.raises(InvalidKeyError) as info:
        load_secret_key(env={ENV_VAR: bad})
    assert ENV_VAR in str(info.value)
    assert_no_leak(str(info.value), bad)


def test_both_sources_configured_is_refused(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "key", KEY_HEX, 0o600)
    with pytest.raises(KeyConfigError) as info:
        load_secret_key(key_file=path, env={ENV_VAR: KEY_HEX})
    assert ENV_VAR in str(info.value) and str(path) in str(info.value)


# ------------------------------------------------------------------------------------- key files


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_key_file_loads(tmp_path: Path, mode: int) -> None:
    path = write_key_file(tmp_path / "key", f"0x{KEY_HEX}\n", mode)
    assert load_secret_key(key_file=path, env={}).reveal() == KEY_BYTES
    assert read_key_file(str(path)).reveal() == KEY_BYTES


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660, 0o601])
def test_key_file_accessible_to_group_or_other_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_key_file(tmp_path / "key", KEY_HEX, mode)
    with pytest.raises(InsecureKeyFileError) as info:
        load_secret_key(key_file=path, env={})
    message = str(info.value)
    assert str(path) in message
    assert f"{mode:04o}" in message
    assert "chmod 600" in message
    assert_no_leak(message, KEY_HEX)


def test_missing_key_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(MissingKeyError, match=str(path)):
        read_key_file(path)


def test_key_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidKeyError, match="not a regular file"):
        read_key_file(tmp_path)


def test_bad_key_file_content_names_the_path_and_does_not_leak(tmp_path: Path) -> None:
    content = "0x" + KEY_HEX[:40]
    path = write_key_file(tmp_path / "key", content, 0o600)
    with pytest.raises(InvalidKeyError) as info:
        read_key_file(path)
    assert str(path) in str(info.value)
    assert "address" in str(info.value)  # 40 hex digits: the hint that this is an address, not a key
    assert_no_leak(str(info.value), content)


def test_non_ascii_key_file_is_refused_without_echo(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(KEY_HEX[:60].encode() + "é".encode() + b"\n")
    os.chmod(path, 0o600)
    with pytest.raises(InvalidKeyError, match="not ASCII") as info:
        read_key_file(path)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert_no_leak(str(info.value), KEY_HEX[:60])


def test_oversized_key_file_is_refused(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "key", KEY_HEX + " " * 2000, 0o600)
    with pytest.raises(InvalidKeyError, match="larger than"):
        read_key_file(path)


# ------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (KEY_HEX[:-2], "62 hex digits"),
        (KEY_HEX + "00", "66 hex digits"),
        ("", "0 hex digits"),
        ("0x", "0 hex digits"),
        (KEY_HEX[:40], "address"),
        (KEY_HEX[:30] + "zz" + KEY_HEX[32:], "position 30"),
        (KEY_HEX[:30] + " " + KEY_HEX[31:], "position 30"),
        ("0x0x" + KEY_HEX[4:], "position 1"),
    ],
    ids=["short", "long", "empty", "only-0x", "address-length", "non-hex", "inner-space", "double-0x"],
)
def test_bad_hex_is_explained_without_the_key_text(text: str, expected: str) -> None:
    with pytest.raises(InvalidKeyError) as info:
        SecretKey.from_hex(text)
    message = str(info.value)
    assert expected in message
    assert "64 hex digits" in message
    assert_no_leak(message, text)
    assert_no_leak(repr(info.value), text)
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize("value", [0, SECP256K1_ORDER, (1 << 256) - 1], ids=["zero", "order", "max"])
def test_out_of_range_key_is_refused(value: int) -> None:
    text = f"{value:064x}"
    with pytest.raises(InvalidKeyError, match="secp256k1") as info:
        SecretKey.from_hex(text)
    assert_no_leak(str(info.value), text)
    with pytest.raises(InvalidKeyError, match="secp256k1"):
        SecretKey(value.to_bytes(32, "big"))


def test_raw_key_must_be_32_bytes() -> None:
    with pytest.raises(InvalidKeyError, match="32 bytes"):
        SecretKey(KEY_BYTES[:31])


@settings(max_examples=200, deadline=None)
@given(
    key=st.integers(1, SECP256K1_ORDER - 1),
    prefix=st.sampled_from(["", "0x", "0X"]),
    upper=st.booleans(),
    left=st.text(" \t\r\n", max_size=3),
    right=st.text(" \t\r\n", max_size=3),
)
def test_any_valid_key_text_parses(key: int, prefix: str, upper: bool, left: str, right: str) -> None:
    body = f"{key:064x}"
    text = left + prefix + (body.upper() if upper else body) + right
    assert SecretKey.from_hex(text).reveal() == key.to_bytes(32, "big")


# Key-like text: hex digits with a few non-hex characters mixed in. (Unrestricted text finds
# inputs such as "position" that are words of the error message itself, which is no leak.)
KEYISH = st.text(alphabet="0123456789abcdefABCDEFxXgG!-_ ", min_size=8, max_size=80)


@settings(max_examples=200, deadline=None)
@given(text=KEYISH)
def test_rejected_text_never_appears_in_the_error(text: str) -> None:
    try:
        SecretKey.from_hex(text)
    except InvalidKeyError as exc:
        stripped = text.strip().removeprefix("0x").removeprefix("0X")
        if len(stripped) >= 8:
            assert_no_leak(str(exc), stripped)


# ------------------------------------------------------------------------------------- redaction


def test_secret_key_repr_str_and_format_are_redacted() -> None:
    secret = SecretKey.from_hex(KEY_HEX)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert "redacted" in text
        assert_no_leak(text, KEY_HEX)


def test_secret_key_is_redacted_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    secret = SecretKey.from_hex(KEY_HEX)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("loaded %s / %r", secret, secret)
    assert "redacted" in caplog.text
    assert_no_leak(caplog.text, KEY_HEX)


def test_secret_key_cannot_be_pickled_or_copied() -> None:
    secret = SecretKey.from_hex(KEY_HEX)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        copy.copy(secret)


def test_secret_key_is_immutable_unhashable_and_compares_by_value() -> None:
    secret = SecretKey.from_hex(KEY_HEX)
    with pytest.raises(AttributeError):
        secret._raw = bytes(32)
    with pytest.raises(TypeError):
        hash(secret)
    assert secret == SecretKey(KEY_BYTES)
    assert secret != SecretKey((1).to_bytes(32, "big"))
    assert secret != KEY_BYTES


# ------------------------------------------------------------------------------- signer address


def test_derived_address_is_checksummed() -> None:
    assert derive_address(SecretKey.from_hex(KEY_HEX)) == KEY_ADDRESS


@pytest.mark.parametrize(
    "configured", [KEY_ADDRESS, KEY_ADDRESS.lower(), KEY_ADDRESS.upper().replace("0X", "0x")]
)
def test_matching_signer_address_passes_in_any_case(configured: str) -> None:
    verify_signer_address(KEY_ADDRESS, configured)


def test_no_configured_signer_address_passes() -> None:
    verify_signer_address(KEY_ADDRESS, None)


def test_mismatched_signer_address_names_both() -> None:
    with pytest.raises(SignerAddressMismatchError) as info:
        verify_signer_address(KEY_ADDRESS, OTHER_ADDRESS)
    assert KEY_ADDRESS in str(info.value)
    assert OTHER_ADDRESS in str(info.value)
    assert isinstance(info.value, KeyConfigError)
