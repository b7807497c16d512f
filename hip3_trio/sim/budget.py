"""The per-address action budget (docs:rate-limits-and-user-limits; PROTOCOL.md, Limits).

Each address may send ``base`` (10,000) actions plus one per USDC it has traded since it was created;
a USDC traded on a growth-mode market earns only 0.1 (docs:fees). Info requests never touch it. A batch
of n orders or cancels spends n; every other action spends 1. Cancels have their own, higher cap,
``min(cap + 100000, 2 x cap)``, so open orders can still be cancelled once orders are refused.

An action that would take ``nRequestsUsed`` past its cap fails whole (``status: err``) with the venue's
text and spends nothing; about one action per ``trickle_s`` (10 s, docs) still gets through and spends
as usual, so ``nRequestsUsed`` can exceed the cap. Refusals neither spend budget nor restart that window
(probe). Modelling choices where no source is exact (UNVERIFIED):

- In both captured refusal texts the right-hand number is one below the ``nRequestsCap`` that
  ``userRateLimit`` reported at the time, and the left-hand one is ``nRequestsUsed`` + 1 for a single
  request. The simulator therefore refuses once ``used + n > cap - 1`` and prints exactly those two
  numbers (for a batch, ``used + n``).
- The trickle window runs from the last action the address got through against the same cap (the
  order cap or the cancel cap), so exhausting the budget and sending again at once is refused, while
  cheap cancels under their own cap do not starve a waiting order.
- ``cumVlm`` and the refusal's dollar figure are the whole volume traded; only the cap is growth-weighted.
"""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal

import attrs

from .numbers import to_wire

CapKind = Literal["order", "cancel"]
CANCEL_CAP_EXTRA = 100_000
EXPIRED_MULTIPLIER = 5  # an action dropped for a stale expiresAfter costs 5x (docs:exchange-endpoint)


@attrs.define
class RequestBudget:
    """One address's action budget."""

    base: int = 10_000
    used: int = 0
    # Volume that earns budget: notional, x 0.1 on growth-mode markets.
    earning_volume: Decimal = Decimal(0)
    # The whole notional traded (what `cumVlm` reports).
    cum_volume: Decimal = Decimal(0)
    surplus: int = 0
    # Trio time of the last action that got through, per cap.
    last_through: dict[str, float] = attrs.Factory(dict)

    @property
    def cap(self) -> int:
        """``nRequestsCap``."""
        return self.base + int(self.earning_volume.to_integral_value(rounding=ROUND_DOWN))

    def cap_of(self, kind: CapKind) -> int:
        cap = self.cap
        return min(cap + CANCEL_CAP_EXTRA, 2 * cap) if kind == "cancel" else cap

    def refusal(self, kind: CapKind, weight: int, now_s: float, trickle_s: float) -> str | None:
        """The venue's whole-action error if this action may not go through now, else None."""
        limit = self.cap_of(kind) - 1
        if self.used + weight <= limit:
            return None
        last = self.last_through.get(kind, -math.inf)
        if now_s - last >= trickle_s:
            return None  # the trickle: one action per window still gets through
        vlm = to_wire(self.cum_volume.quantize(Decimal("0.01"), rounding=ROUND_DOWN))
        return (
            f"Too many cumulative requests sent ({self.used + weight} > {limit}) for cumulative volume "
            f"traded ${vlm}. Place taker orders to free up 1 request per USDC traded."
        )

    def spend(self, kind: CapKind, weight: int, now_s: float) -> None:
        """Count an action that got through (``weight`` requests)."""
        self.used += weight
        self.last_through[kind] = now_s

    def charge(self, weight: int) -> None:
        """Count requests without an action getting through (a stale ``expiresAfter``)."""
        self.used += weight

    def traded(self, notional: Decimal, *, growth_mode: bool) -> None:
        """A fill of this notional: more volume, more budget."""
        self.cum_volume += notional
        self.earning_volume += notional * Decimal("0.1") if growth_mode else notional

    def to_wire(self) -> dict[str, Any]:
        """The ``userRateLimit`` answer (docs:info-endpoint, TS-SDK userRateLimit.ts)."""
        return {
            "cumVlm": to_wire(self.cum_volume.quantize(Decimal("0.01"), rounding=ROUND_DOWN)),
            "nRequestsUsed": self.used,
            "nRequestsCap": self.cap,
            "nRequestsSurplus": self.surplus,
        }


def action_weight(action: dict[str, Any]) -> tuple[CapKind, int]:
    """Which cap an action counts against and how many requests it spends."""
    kind = action["type"]
    if kind == "order":
        return "order", max(1, len(action["orders"]))
    if kind in ("cancel", "cancelByCloid"):
        return "cancel", max(1, len(action["cancels"]))
    return "order", 1
