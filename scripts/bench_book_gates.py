"""The book queries one signal's gates make, with the order memory full of settled orders.

`has_position`, `pending`, `notional` and `exposed_markets` for one market, timed with `order_memory`
settled (rejected) orders remembered — the state of a book late in a long session. With `--baseline`
an older `position/book.py` is timed side by side, in the same process.

    .venv/bin/python scripts/bench_book_gates.py
    git show 5ba0102:hip3_trio/position/book.py > /tmp/book_before.py   # before the unsettled index
    .venv/bin/python scripts/bench_book_gates.py --baseline /tmp/book_before.py
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import timeit
from decimal import Decimal
from pathlib import Path
from types import ModuleType

from hip3_trio.wire.actions import Cloid, LimitOrderType, OrderWire

MARKET = "xyz:COIN"


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("book_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def per_signal_us(book_module: ModuleType, remembered: int, number: int) -> float:
    book = book_module.PositionBook([MARKET], config=book_module.BookConfig(order_memory=remembered + 1))
    for i in range(remembered):
        cloid = Cloid.from_int(i + 1)
        order = OrderWire(1, True, Decimal(10), Decimal(1), False, LimitOrderType("Ioc"), cloid)
        book.register(MARKET, order, 0.0)
        book.mark_sent(cloid, 0.0)
        book.on_reply_error(cloid, "Order could not immediately match", 0.0)
    mark = Decimal(10)

    def gates() -> None:
        book.has_position(MARKET)
        book.pending(MARKET)
        book.notional(MARKET, mark)
        book.exposed_markets()

    return min(timeit.repeat(gates, number=number, repeat=5)) / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remembered", type=int, default=1999, help="settled orders in the book")
    parser.add_argument("--number", type=int, default=200)
    parser.add_argument("--baseline", type=Path, help="an older position/book.py to time alongside")
    args = parser.parse_args()
    rows = [("this tree", importlib.import_module("hip3_trio.position.book"))]
    if args.baseline is not None:
        rows.insert(0, (f"baseline {args.baseline}", load(args.baseline)))
    for name, module in rows:
        us = per_signal_us(module, args.remembered, args.number)
        print(f"{name:<40} {args.remembered} settled orders: {us:9.1f} µs per signal's book gates")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
