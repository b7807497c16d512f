"""Errors shared across the engine's layers."""

from __future__ import annotations

__all__ = ["StartupError"]


class StartupError(ValueError):
    """The venue's answers make the configured run impossible (an unknown or delisted market, a
    leverage the venue will not set, a dex without the collateral for the caps, a collateral token
    other than USDC): the engine stops with a one-line error (exit status 2) instead of reconnecting."""
