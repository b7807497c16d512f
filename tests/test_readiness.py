"""Readiness: four conditions per connection generation, reset on disconnect."""

from __future__ import annotations

import pytest

from hip3_trio.execution.executor import NotReady, Submitted
from hip3_trio.position.readiness import Readiness
from tests.test_executor import Rig, signal
from tests.test_position_book import MARKETS, A, B


def all_but(readiness: Readiness, skip: str) -> None:
    """Mark every condition except `skip` on the current generation."""
    for market in MARKETS:
        if skip != f"bbo {market}":
            readiness.on_bbo(market)
        if skip != f"ctx {market}":
            readiness.on_asset_ctx(market)
    if skip != "orders":
        readiness.on_order_stream_acked()
    if skip != "fills":
        readiness.on_fills_snapshot()
    if skip != "reconciled":
        readiness.on_reconciled()


@pytest.mark.parametrize("skip", [f"bbo {B}", f"ctx {A}", "orders", "fills", "reconciled"])
def test_every_condition_is_needed(skip: str) -> None:
    readiness = Readiness(MARKETS)
    readiness.new_connection()
    all_but(readiness, skip)
    assert not readiness.ready
    assert len(readiness.missing()) == 1


def test_md_ready_needs_bbo_and_ctx_for_every_configured_market() -> None:
    readiness = Readiness(MARKETS)
    for market in MARKETS:
        readiness.on_bbo(market)
    readiness.on_asset_ctx("abc:OTHER")  # not ours: ignored
    assert not readiness.md_ready
    for market in MARKETS:
        readiness.on_asset_ctx(market)
    assert readiness.md_ready and not readiness.ready


def test_all_four_make_it_ready_and_a_disconnect_resets_everything() -> None:
    readiness = Readiness(MARKETS)
    first = readiness.new_connection()
    all_but(readiness, "")
    assert readiness.ready and readiness.missing() == []
    second = readiness.on_disconnect()
    assert second == first + 1 == readiness.generation
    assert not readiness.ready and not readiness.md_ready
    assert len(readiness.missing()) == 2 * len(MARKETS) + 3


def test_marks_from_an_old_generation_are_ignored() -> None:
    readiness = Readiness(MARKETS)
    old = readiness.new_connection()
    readiness.new_connection()
    for market in MARKETS:
        readiness.on_bbo(market, old)
        readiness.on_asset_ctx(market, old)
    readiness.on_order_stream_acked(old)
    readiness.on_fills_snapshot(old)
    readiness.on_reconciled(old)
    assert len(readiness.missing()) == 2 * len(MARKETS) + 3


def test_the_not_ready_gate_reads_readiness() -> None:
    rig = Rig()
    readiness = Readiness(MARKETS)
    rig.executor.readiness = readiness
    assert isinstance(rig.executor.submit_signal(signal(), 0.0), NotReady)
    all_but(readiness, "")
    assert isinstance(rig.executor.submit_signal(signal(), 0.0), Submitted)
    readiness.on_disconnect()
    assert isinstance(rig.executor.submit_signal(signal(B, price="20"), 0.0), NotReady)
