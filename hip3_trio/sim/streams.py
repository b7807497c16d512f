"""Subscriptions: parsing ``subscribe`` requests, the acks, and fan-out of pushes to connections.

A subscription is identified by a key such as ``("bbo", "xyz:COIN")`` or
``("clearinghouseState", user, dex)``. The hub maps keys to the connections subscribed to them and
delivers each push synchronously into their outboxes (no awaiting), so publishing is part of the
state change that caused it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

import attrs

SubKey = tuple[str, ...]
MARKET_DATA_CHANNELS = frozenset({"bbo", "l2Book", "activeAssetCtx"})
USER_CHANNELS = frozenset({"orderUpdates", "userFills"})
DEX_USER_CHANNELS = frozenset({"clearinghouseState", "openOrders"})
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class BadSubscription(ValueError):
    """A subscription the venue would refuse."""


class Subscriber(Protocol):
    """Something that accepts pushes (a connection)."""

    def push(self, key: SubKey, message: dict[str, Any]) -> None: ...


def parse_subscription(
    raw: object, coins: frozenset[str], dexes: frozenset[str]
) -> tuple[SubKey, dict[str, Any]]:
    """Validate a subscription; return its key and the echo the ack carries (user lowercased)."""
    if not isinstance(raw, dict):
        raise BadSubscription("subscription must be an object")
    kind = raw.get("type")
    if kind in MARKET_DATA_CHANNELS:
        coin = raw.get("coin")
        if not isinstance(coin, str) or coin not in coins:
            raise BadSubscription(f"unknown coin {coin!r}")
        echo = {"type": kind, "coin": coin}
        if kind == "l2Book":
            echo.update({"nSigFigs": raw.get("nSigFigs"), "mantissa": raw.get("mantissa")})
        return (kind, coin), echo
    user = raw.get("user")
    if kind in USER_CHANNELS or kind in DEX_USER_CHANNELS:
        if not isinstance(user, str) or not _ADDRESS.match(user):
            raise BadSubscription("user must be an address")
        user = user.lower()
        if kind in USER_CHANNELS:
            echo = {"type": kind, "user": user}
            if kind == "userFills" and raw.get("aggregateByTime") is not None:
                echo["aggregateByTime"] = bool(raw["aggregateByTime"])
            return (kind, user), echo
        dex = raw.get("dex", "")
        if dex is None:
            dex = ""
        if not isinstance(dex, str) or dex not in dexes:
            raise BadSubscription(f"unknown dex {dex!r}")
        return (kind, user, dex), {"type": kind, "user": user, "dex": dex}
    raise BadSubscription(f"unknown subscription type {kind!r}")


@attrs.define(eq=False)
class Hub:
    """Who is subscribed to what."""

    _subs: dict[SubKey, list[Subscriber]] = attrs.Factory(dict)
    # Told of every new subscription (a replay starts at the first market-data one).
    on_subscribe: Callable[[SubKey], None] | None = None

    def add(self, key: SubKey, subscriber: Subscriber) -> None:
        self._subs.setdefault(key, []).append(subscriber)
        if self.on_subscribe is not None:
            self.on_subscribe(key)

    def remove(self, key: SubKey, subscriber: Subscriber) -> None:
        subs = self._subs.get(key, [])
        if subscriber in subs:
            subs.remove(subscriber)
        if not subs:
            self._subs.pop(key, None)

    def remove_all(self, subscriber: Subscriber) -> None:
        for key in list(self._subs):
            self.remove(key, subscriber)

    def wanted(self, key: SubKey) -> bool:
        return bool(self._subs.get(key))

    def publish(self, key: SubKey, message: dict[str, Any]) -> None:
        """Deliver a push to every subscriber of ``key`` (synchronously)."""
        for subscriber in list(self._subs.get(key, ())):
            subscriber.push(key, message)
