"""The per-address action budget as the engine tracks it (PROTOCOL.md, Limits).

The venue allows 10,000 actions plus one per USDC traded; a batch of n orders or cancels spends n, a noop
or `updateLeverage` 1. Exhausted, it refuses every action whole with `Too many cumulative requests sent
(...)` and lets about one action through every ~10 s, flattens included.

`RequestBudget` is synchronous state, no `await`: the venue link reads `userRateLimit` at sync and every
minute (`on_read`) and counts every action it signs (`on_sent`); what is left is derived — the venue's
`nRequestsCap - nRequestsUsed` at the last read, minus what was signed since the request for that read
went out (an action signed while the answer was on its way is counted twice rather than never).

- Below `reserve` requests left (config ``[limits] request_reserve``), new entries are refused by the
  executor's `RequestBudget` gate: the reserve is for reduce-only orders and cancels.
- The venue's exhaustion error (`on_exhausted`) pauses sending for `trickle_s` (``[limits]
  request_trickle_s``); until a read shows requests left again, every action sent pauses the next for
  `trickle_s` too, so flattens go at most one action per interval, as the venue lets them through.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["EXHAUSTED_FRAGMENT", "RequestBudget", "action_weight", "is_budget_exhausted"]

EXHAUSTED_FRAGMENT: Final = "too many cumulative requests sent"


def is_budget_exhausted(message: str) -> bool:
    """True if `message` is the venue's "action budget exhausted" refusal (the whole action refused)."""
    return EXHAUSTED_FRAGMENT in message.lower()


def action_weight(action: dict[str, object]) -> int:
    """How many requests an action spends: n for a batch of n orders or cancels, else 1."""
    for key in ("orders", "cancels"):
        items = action.get(key)
        if isinstance(items, list):
            return max(1, len(items))
    return 1


class RequestBudget:
    """What is left of the address's action budget, and the pause after an exhaustion (see the module)."""

    def __init__(self, *, reserve: int = 500, trickle_s: float = 10.0) -> None:
        self.reserve = reserve
        self.trickle_s = trickle_s
        self.cap: int | None = None  # nRequestsCap at the last read (None: never read)
        self.sent = 0  # every request counted since the start
        self.exhaustions = 0
        self.exhausted = False  # refused by the venue, and no read since showed requests left
        self.paused_until = -math.inf
        self._used_at_read = 0
        self._sent_at_read = 0

    @property
    def used(self) -> int | None:
        """Requests used by the address: the venue's count at the last read plus what we sent since."""
        if self.cap is None:
            return None
        return self._used_at_read + self.sent - self._sent_at_read

    @property
    def remaining(self) -> int | None:
        """Requests left before the venue refuses actions (None until the first read)."""
        used = self.used
        return None if self.cap is None or used is None else self.cap - used

    @property
    def entries_allowed(self) -> bool:
        """A new entry may go out: not exhausted, and it leaves the reserve intact (unknown: allowed)."""
        remaining = self.remaining
        return not self.exhausted and (remaining is None or remaining > self.reserve)

    def may_send(self, now: float) -> bool:
        """Not within the pause after an exhaustion (or after a send while exhausted)."""
        return now >= self.paused_until

    def on_read(self, *, used: int, cap: int, sent_at_ask: int) -> None:
        """A `userRateLimit` answer; `sent_at_ask` is `sent` when the request went out."""
        self.cap = cap
        self._used_at_read = used
        self._sent_at_read = sent_at_ask
        remaining = cap - used
        if self.exhausted and remaining > 0:
            self.exhausted = False

    def on_sent(self, weight: int, now: float) -> None:
        """An action of `weight` requests was signed to go out now."""
        self.sent += weight
        if self.exhausted:
            self.paused_until = max(self.paused_until, now + self.trickle_s)

    def on_exhausted(self, now: float) -> None:
        """The venue refused an action whole: budget exhausted. Pause for the trickle interval."""
        self.exhaustions += 1
        self.exhausted = True
        self.paused_until = max(self.paused_until, now + self.trickle_s)
