"""The venue's nonce rules, per signer (the API wallet when an agent signs).

The venue keeps the 100 highest nonces each signer has used. A new nonce must be larger than the
smallest of them, must never have been used, and must lie within (T − 2 days, T + 1 day) of the block
time T. The error strings are the venue's ("Invalid nonce: duplicate nonce N", "… nonce too low N < M",
"… nonce too high N > M"). A nonce is consumed once the signature and the nonce check pass, whatever
the action then does — a refused order still burns its nonce.
"""

from __future__ import annotations

import bisect

import attrs


@attrs.define
class NonceBook:
    """The stored nonces of every signer."""

    set_size: int = 100
    past_window_ms: int = 2 * 24 * 3600 * 1000
    future_window_ms: int = 24 * 3600 * 1000
    _used: dict[str, list[int]] = attrs.Factory(dict)

    def check(self, signer: str, nonce: int, now_ms: int) -> str | None:
        """The venue's error for this nonce, or None if it would be accepted. Changes nothing."""
        low = now_ms - self.past_window_ms
        high = now_ms + self.future_window_ms
        if nonce <= low:
            return f"Invalid nonce: nonce too low {nonce} < {low}"
        if nonce >= high:
            return f"Invalid nonce: nonce too high {nonce} > {high}"
        used = self._used.get(signer, [])
        index = bisect.bisect_left(used, nonce)
        if index < len(used) and used[index] == nonce:
            return f"Invalid nonce: duplicate nonce {nonce}"
        if len(used) >= self.set_size and nonce < used[0]:
            return f"Invalid nonce: nonce too low {nonce} < {used[0]}"
        return None

    def consume(self, signer: str, nonce: int) -> None:
        """Record a nonce as used, keeping only the highest ``set_size``."""
        used = self._used.setdefault(signer, [])
        bisect.insort(used, nonce)
        if len(used) > self.set_size:
            del used[: len(used) - self.set_size]

    def smallest(self, signer: str) -> int | None:
        """The smallest stored nonce for the signer (the floor once the set is full)."""
        used = self._used.get(signer)
        return used[0] if used else None

    def count(self, signer: str) -> int:
        return len(self._used.get(signer, []))
