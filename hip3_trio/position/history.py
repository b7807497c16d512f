"""What the journal remembers of our entry orders: the evidence a restarted engine dates and accounts
positions with when the venue's fills alone do not reach back to their opening (see
`PositionBook._learned_position`).

A read-only query at start-up, never on the trading path.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Final

from hip3_trio.journal import Journal
from hip3_trio.position.ledger import EntryHint
from hip3_trio.wire.actions import Cloid

__all__ = ["read_entry_hints"]

log = logging.getLogger(__name__)

#: How many of the latest entry orders to remember: far more than can be open at once.
ENTRY_HINTS: Final = 500

_ENTRIES: Final = """
SELECT o.cloid, o.market, o.submitted_ms, s.expected_edge_bps, s.price
FROM orders AS o LEFT JOIN signals AS s ON s.cloid = o.cloid AND s.acted = 1
WHERE o.reduce_only = 0 AND o.submitted_ms IS NOT NULL
ORDER BY o.submitted_ms DESC
LIMIT ?
"""


def read_entry_hints(journal: Journal, limit: int = ENTRY_HINTS) -> dict[Cloid, EntryHint]:
    """The latest `limit` entry orders journaled, by cloid, with their signal's expected edge and price."""
    hints: dict[Cloid, EntryHint] = {}
    for cloid, market, submitted_ms, edge, price in journal.query(_ENTRIES, (limit,)):
        try:
            key = Cloid(cloid)
        except ValueError:
            log.warning("journal: order row with a malformed cloid %r ignored", cloid)
            continue
        hints[key] = EntryHint(
            market=market,
            submitted_ms=int(submitted_ms),
            expected_edge_bps=_decimal(edge),
            signal_px=_decimal(price),
        )
    return hints


def _decimal(value: float | None) -> Decimal | None:
    """A REAL column as Decimal, through its shortest repr (20.0 → 20.0, 0.1 → 0.1, not binary noise)."""
    return None if value is None else Decimal(repr(value))
