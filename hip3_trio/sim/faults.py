"""Fault switches: the ways the simulator misbehaves on purpose, as the real venue sometimes does.

One ``Faults`` object belongs to a ``Simulator`` and is read by every connection. Counter switches are
*armed* by setting them and are consumed as they fire (``drop_replies = 2`` swallows the next two post
replies), so a client that reconnects after a fault is not caught in the same fault forever. Boolean
switches (``stall_market_data``) stay on until cleared. Everything is plain data: tests flip switches
directly, the CLI sets them from flags.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


def _nothing() -> None:
    return None


def _notify(instance: Faults, attribute: attrs.Attribute[Any], value: Any) -> Any:
    """Tell the simulator a switch changed, so timers (close_at_ms, clock skew) re-plan."""
    instance.listener()
    return value


@attrs.define(on_setattr=_notify)
class Faults:
    """Injectable faults. Counters fire once per unit and decrement; ``None`` means off."""

    # Close the next connection after it has sent this many frames (greeting included). One-shot.
    close_after_frames: int | None = None
    # Close every open connection when venue time reaches this epoch-ms. One-shot.
    close_at_ms: int | None = None
    # How those closes happen: None = drop the transport without a close frame (client sees 1006);
    # an int = send a close frame with that code (e.g. 1000) first.
    close_code: int | None = None
    # Delay every post reply by this many seconds (the action executes at once; only the reply waits).
    reply_delay_s: float = 0.0
    # Lose the next N action posts in transit: never executed, never answered (info posts unaffected).
    lose_posts: int = 0
    # Execute the next N posts but never answer them.
    drop_replies: int = 0
    # Answer the next N posts twice.
    duplicate_replies: int = 0
    # Send N frames that are not JSON at all, before the next outgoing frame.
    garbage_frames: int = 0
    # Send the next N outgoing JSON frames cut in half (truncated JSON) instead of whole.
    truncated_frames: int = 0
    # Suppress the orderUpdates of the next N IOC orders (the post reply still reports them).
    skip_ioc_order_updates: int = 0
    # Answer the next clearinghouseState info request (or push) with zero positions.
    empty_clearinghouse_once: bool = False
    # Answer the next clearinghouseState info request for this dex with zero positions (the others as
    # usual): the venue answers per dex, and has been seen to answer one dex empty. One-shot.
    empty_clearinghouse_dex: str | None = None
    # Stop pushing bbo / l2Book / activeAssetCtx while the socket stays open and healthy.
    stall_market_data: bool = False
    # Never push market data for these coins (a quiet or broken market among healthy ones). Lasting.
    silent_markets: tuple[str, ...] = ()
    # Shift the venue clock (timestamps, nonce window) by this many milliseconds.
    clock_skew_ms: int = 0
    # Called after any switch changes (set by the Simulator); not a fault.
    listener: Callable[[], None] = attrs.field(
        default=_nothing, on_setattr=attrs.setters.NO_OP, repr=False, eq=False
    )

    def take(self, name: str) -> bool:
        """Consume one unit of a counter switch; True if the fault fires now."""
        value = getattr(self, name)
        if isinstance(value, bool):
            if value:
                setattr(self, name, False)
            return value
        if value > 0:
            setattr(self, name, value - 1)
            return True
        return False
