"""PostTable: created → sent → resolved, inflight derived from the entries, strays never applied twice."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hip3_trio.execution.batch import Batch, OrderItem
from hip3_trio.execution.posts import (
    AlreadyResolved,
    Disconnected,
    NotSent,
    PostEntry,
    PostState,
    PostTable,
    Reply,
    StrayReason,
    StrayReply,
    Timeout,
)
from hip3_trio.wire.actions import Cloid, LimitOrderType, OrderWire

_ids = itertools.count(1)


def batch() -> Batch:
    """A one-order batch with a unique cloid."""
    wire = OrderWire(
        asset=110_000,
        is_buy=False,
        limit_px=Decimal("101.5"),
        sz=Decimal("0.1"),
        reduce_only=False,
        order_type=LimitOrderType("Ioc"),
        cloid=Cloid.from_int(next(_ids)),
    )
    return Batch("order", (OrderItem("xyz:COIN", wire),))


OK_REPLY = {"status": "ok", "response": {"type": "order", "data": {"statuses": [{"filled": {"oid": 1}}]}}}


def test_normal_flow_created_sent_replied() -> None:
    table: PostTable[object] = PostTable()
    b = batch()
    entry = table.create(b, nonce=1_000, now=10.0)
    assert (entry.post_id, entry.state, entry.batch, entry.nonce) == (1, PostState.CREATED, b, 1_000)
    assert table.inflight == 0
    sent = table.mark_sent(entry.post_id, now=10.01)
    assert isinstance(sent, PostEntry) and sent.state is PostState.SENT and sent.sent_at == 10.01
    assert table.inflight == 1
    done = table.resolve(entry.post_id, OK_REPLY, now=10.2)
    assert isinstance(done, PostEntry)
    assert done.state is PostState.RESOLVED
    assert done.outcome == Reply(OK_REPLY)
    assert (done.created_at, done.sent_at, done.resolved_at) == (10.0, 10.01, 10.2)
    assert table.inflight == 0 and len(table) == 0


def test_a_sent_post_times_out_after_five_seconds_and_a_late_reply_is_stray() -> None:
    table: PostTable[object] = PostTable()
    entry = table.create(batch(), nonce=1, now=0.0)
    table.mark_sent(entry.post_id, now=1.0)
    assert table.next_expiry() == 6.0  # counted from when it was sent
    assert table.expire(now=5.999) == ()
    (expired,) = table.expire(now=6.0)
    assert expired.post_id == entry.post_id and expired.outcome == Timeout()
    assert table.inflight == 0
    late = table.resolve(entry.post_id, OK_REPLY, now=7.0)
    assert late == StrayReply(entry.post_id, StrayReason.ALREADY_RESOLVED, OK_REPLY)


def test_an_unsent_post_expires_as_not_sent_and_may_then_not_be_sent() -> None:
    table: PostTable[object] = PostTable(timeout=5.0)
    entry = table.create(batch(), nonce=1, now=0.0)
    assert table.expire(now=4.9) == ()
    (expired,) = table.expire(now=5.0)
    assert expired.outcome == NotSent() and expired.sent_at is None
    assert table.mark_sent(entry.post_id, now=5.1) == AlreadyResolved(entry.post_id)
    assert table.inflight == 0


def test_disconnect_resolves_everything_sent_as_disconnected_unsent_as_not_sent() -> None:
    table: PostTable[object] = PostTable()
    a = table.create(batch(), nonce=1, now=0.0)
    b = table.create(batch(), nonce=2, now=0.1)
    c = table.create(batch(), nonce=3, now=0.2)
    table.mark_sent(a.post_id, now=0.0)
    table.mark_sent(c.post_id, now=0.2)
    assert table.inflight == 2
    drained = table.drain_on_disconnect(now=1.0)
    assert [(e.post_id, e.outcome) for e in drained] == [
        (a.post_id, Disconnected()),
        (b.post_id, NotSent()),
        (c.post_id, Disconnected()),
    ]
    assert all(e.state is PostState.RESOLVED and e.resolved_at == 1.0 for e in drained)
    assert table.inflight == 0 and len(table) == 0 and table.next_expiry() is None
    assert table.drain_on_disconnect(now=2.0) == ()
    assert isinstance(table.resolve(a.post_id, OK_REPLY, now=2.0), StrayReply)


def test_a_rejected_reply_is_stored_opaquely() -> None:
    table: PostTable[object] = PostTable()
    entry = table.create(batch(), nonce=1, now=0.0)
    table.mark_sent(entry.post_id, now=0.0)
    rejected = {"status": "err", "response": "Invalid nonce: duplicate nonce"}
    done = table.resolve(entry.post_id, rejected, now=0.3)
    assert isinstance(done, PostEntry) and isinstance(done.outcome, Reply)
    assert done.outcome.payload is rejected  # the table does not interpret replies


def test_replies_are_correlated_by_post_id() -> None:
    table: PostTable[str] = PostTable(first_id=41)
    first = table.create(batch(), nonce=100, now=0.0)
    second = table.create(batch(), nonce=101, now=0.0)
    assert (first.post_id, second.post_id) == (41, 42)  # allocated per connection, increasing
    for entry in (first, second):
        table.mark_sent(entry.post_id, now=0.0)
    done = table.resolve(42, "second's reply", now=0.5)
    assert isinstance(done, PostEntry)
    assert (done.post_id, done.nonce, done.batch) == (42, 101, second.batch)
    assert table.get(41) is not None and table.get(41) == table.pending[0]
    assert table.get(42) is None
    assert table.inflight == 1
    assert table.resolve(43, "nobody's", now=0.6) == StrayReply(43, StrayReason.UNKNOWN_ID, "nobody's")
    assert table.resolve(40, "nobody's", now=0.6) == StrayReply(40, StrayReason.UNKNOWN_ID, "nobody's")


def test_state_transitions() -> None:
    table: PostTable[str] = PostTable()
    entry = table.create(batch(), nonce=1, now=0.0)
    table.mark_sent(entry.post_id, now=0.0)
    with pytest.raises(ValueError):
        table.mark_sent(entry.post_id, now=0.1)  # sent twice is a programming error
    with pytest.raises(KeyError):
        table.mark_sent(99, now=0.1)  # never created
    first = table.resolve(entry.post_id, "reply", now=0.2)
    assert isinstance(first, PostEntry) and first.state is PostState.RESOLVED
    duplicate = table.resolve(entry.post_id, "reply", now=0.3)
    assert duplicate == StrayReply(entry.post_id, StrayReason.ALREADY_RESOLVED, "reply")
    assert table.mark_sent(entry.post_id, now=0.4) == AlreadyResolved(entry.post_id)


def test_a_reply_racing_ahead_of_mark_sent_resolves_the_post() -> None:
    table: PostTable[str] = PostTable()
    entry = table.create(batch(), nonce=1, now=0.0)
    done = table.resolve(entry.post_id, "fast reply", now=0.01)
    assert isinstance(done, PostEntry) and done.outcome == Reply("fast reply")
    assert table.mark_sent(entry.post_id, now=0.02) == AlreadyResolved(entry.post_id)
    assert table.inflight == 0


def test_invariant_sent_minus_resolved_equals_inflight() -> None:
    table: PostTable[str] = PostTable()
    sent = resolved_after_send = 0
    ids = [table.create(batch(), nonce=n, now=0.0).post_id for n in range(6)]
    for post_id in ids[:5]:
        table.mark_sent(post_id, now=1.0)
        sent += 1
        assert sent - resolved_after_send == table.inflight
    table.resolve(ids[0], "r", now=2.0)
    table.resolve(ids[0], "dup", now=2.0)  # a duplicate changes nothing
    table.resolve(ids[1], "e", now=2.0)
    resolved_after_send += 2
    assert sent - resolved_after_send == table.inflight == 3
    resolved_after_send += sum(1 for e in table.expire(now=6.5) if e.sent_at is not None)
    assert sent - resolved_after_send == table.inflight == 0
    assert [e.post_id for e in table.pending] == []


def test_next_expiry_is_the_earliest_deadline() -> None:
    table: PostTable[str] = PostTable(timeout=5.0)
    assert table.next_expiry() is None
    a = table.create(batch(), nonce=1, now=3.0)
    table.create(batch(), nonce=2, now=2.0)
    table.mark_sent(a.post_id, now=4.0)
    assert table.next_expiry() == 7.0  # the unsent one, created at 2.0


# --- stateful: the inflight invariant under any interleaving --------------------------------------


class PostTableMachine(RuleBasedStateMachine):
    """Random interleavings of create / mark_sent / send failure / replies (incl. duplicate and stray) /
    expiry / disconnect. Each post resolves exactly once; inflight == sent - resolved-after-send."""

    def __init__(self) -> None:
        super().__init__()
        self.table: PostTable[int] = PostTable(timeout=5.0)
        self.now = 0.0
        self.model: dict[int, PostState] = {}  # the state every allocated id should be in
        self.sent_count = 0
        self.resolved_after_send = 0
        self.resolved_ids: list[int] = []

    def ids_in(self, state: PostState) -> list[int]:
        return [i for i, s in self.model.items() if s is state]

    def record(self, entry: PostEntry[int], was: PostState) -> None:
        assert entry.state is PostState.RESOLVED and entry.outcome is not None
        assert self.model[entry.post_id] is was
        if was is PostState.SENT:
            self.resolved_after_send += 1
            assert entry.sent_at is not None
        else:
            assert entry.sent_at is None
            assert not isinstance(entry.outcome, Timeout | Disconnected)  # those only for sent posts
        self.model[entry.post_id] = PostState.RESOLVED
        self.resolved_ids.append(entry.post_id)

    @rule(dt=st.floats(0, 6, allow_nan=False))
    def pass_time(self, dt: float) -> None:
        self.now += dt

    @rule()
    def create(self) -> None:
        entry = self.table.create(batch(), nonce=len(self.model), now=self.now)
        assert entry.post_id not in self.model
        assert all(entry.post_id > i for i in self.model)
        self.model[entry.post_id] = PostState.CREATED

    @precondition(lambda self: self.ids_in(PostState.CREATED))
    @rule(pick=st.integers(0, 100))
    def mark_sent(self, pick: int) -> None:
        created = self.ids_in(PostState.CREATED)
        post_id = created[pick % len(created)]
        entry = self.table.mark_sent(post_id, now=self.now)
        assert isinstance(entry, PostEntry) and entry.state is PostState.SENT
        self.model[post_id] = PostState.SENT
        self.sent_count += 1

    @rule(post_id=st.integers(-2, 40), payload=st.integers())
    def reply(self, post_id: int, payload: int) -> None:
        """A reply for any id: pending, already resolved (duplicate/late) or never allocated (stray)."""
        was = self.model.get(post_id)
        result = self.table.resolve(post_id, payload, now=self.now)
        if was is None:
            assert result == StrayReply(post_id, StrayReason.UNKNOWN_ID, payload)
        elif was is PostState.RESOLVED:
            assert result == StrayReply(post_id, StrayReason.ALREADY_RESOLVED, payload)
        else:
            assert isinstance(result, PostEntry) and result.outcome == Reply(payload)
            self.record(result, was)

    @rule()
    def expire(self) -> None:
        before = {e.post_id: e for e in self.table.pending}
        expired = self.table.expire(now=self.now)
        for entry in expired:
            old = before[entry.post_id]
            start = old.sent_at if old.sent_at is not None else old.created_at
            assert self.now - start >= 5.0
            assert entry.outcome == (Timeout() if old.state is PostState.SENT else NotSent())
            self.record(entry, old.state)
        for entry in self.table.pending:  # everything left is younger than the timeout
            start = entry.sent_at if entry.sent_at is not None else entry.created_at
            assert self.now - start < 5.0

    @rule()
    def disconnect(self) -> None:
        pending = set(self.ids_in(PostState.CREATED)) | set(self.ids_in(PostState.SENT))
        drained = self.table.drain_on_disconnect(now=self.now)
        assert {e.post_id for e in drained} == pending
        for entry in drained:
            was = self.model[entry.post_id]
            assert entry.outcome == (Disconnected() if was is PostState.SENT else NotSent())
            self.record(entry, was)

    @invariant()
    def inflight_is_sent_minus_resolved(self) -> None:
        assert self.table.inflight == self.sent_count - self.resolved_after_send
        assert self.table.inflight == len(self.ids_in(PostState.SENT))

    @invariant()
    def each_post_resolves_exactly_once(self) -> None:
        assert len(self.resolved_ids) == len(set(self.resolved_ids))
        assert {e.post_id: e.state for e in self.table.pending} == {
            i: s for i, s in self.model.items() if s is not PostState.RESOLVED
        }


PostTableMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
TestPostTableMachine = PostTableMachine.TestCase
