"""The post table: every action post of one connection, from creation to its outcome.

An entry moves `created → sent → resolved` (or `created → resolved` when it never left). Resolved
carries an outcome: the decoded `Reply` (ok statuses, action error or transport error — the table does
not look inside), `Timeout`, `Disconnected` (was sent; it may have executed) or `NotSent` (never left).

**Inflight is derived**: the number of entries in state `sent`. There is no counter to drift from the
truth. Resolved entries leave the table and are returned to the caller, who routes each outcome exactly
once; a reply for an id that is unknown or already resolved comes back as a `StrayReply` instead of
being applied twice.

The table is per connection (post ids are only unique per connection) and pure: times are monotonic
seconds passed in by the caller, and every method is synchronous (one atomic transition under Trio).
Intended use by the sender: `create` → sign → `mark_sent` immediately before handing the frame to the
transport (no `await` in between), so `sent` means "may be on the wire". A transport that raises ends
the connection, and `drain_on_disconnect` resolves the post as `Disconnected` (it may have executed). A
post whose `mark_sent` returns `AlreadyResolved` (expired while still unsent) must not be sent.
"""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

import attrs

from hip3_trio.execution.batch import Batch

__all__ = [
    "AlreadyResolved",
    "Disconnected",
    "NotSent",
    "Outcome",
    "PostEntry",
    "PostState",
    "PostTable",
    "Reply",
    "StrayReason",
    "StrayReply",
    "Timeout",
]

R = TypeVar("R")

DEFAULT_POST_TIMEOUT = 5.0


class PostState(enum.Enum):
    CREATED = "created"
    SENT = "sent"
    RESOLVED = "resolved"


@attrs.frozen
class Reply(Generic[R]):
    """The exchange answered; `payload` is the decoded reply: ok statuses, action error or transport error."""

    payload: R


@attrs.frozen
class Timeout:
    """Sent, and no reply within the post timeout: the outcome is unknown (it may have executed)."""


@attrs.frozen
class Disconnected:
    """Sent, and the connection ended before a reply: the outcome is unknown (it may have executed)."""


@attrs.frozen
class NotSent:
    """Never handed to the transport: it certainly did not execute."""


Outcome = Reply[R] | Timeout | Disconnected | NotSent


@attrs.frozen
class PostEntry(Generic[R]):
    """One post: its batch and nonce, when it was created/sent/resolved, its state and outcome."""

    post_id: int
    batch: Batch
    nonce: int
    created_at: float
    state: PostState = PostState.CREATED
    sent_at: float | None = None
    resolved_at: float | None = None
    outcome: Outcome[R] | None = None


class StrayReason(enum.Enum):
    UNKNOWN_ID = "unknown_id"  # never allocated on this connection
    ALREADY_RESOLVED = "already_resolved"  # a duplicate, or a reply after timeout/disconnect


@attrs.frozen
class StrayReply(Generic[R]):
    """A reply that matched no pending post; reported to the caller, applied to nothing."""

    post_id: int
    reason: StrayReason
    payload: R


@attrs.frozen
class AlreadyResolved:
    """A `mark_sent` for a post that has already been resolved: nothing changed."""

    post_id: int


@attrs.frozen
class PostTableStatistics:
    """A snapshot of one connection's post table."""

    pending: int
    inflight: int


class PostTable(Generic[R]):
    """Pending posts of one connection by post id; `inflight` is the number in state `sent`.

    Post ids are allocated here, increasing from `first_id`. Only pending (created or sent) entries are
    stored; every id below the next one that is not pending has been resolved.
    """

    def __init__(self, *, timeout: float = DEFAULT_POST_TIMEOUT, first_id: int = 1) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.timeout = timeout
        self._first_id = first_id
        self._next_id = first_id
        self._pending: dict[int, PostEntry[R]] = {}

    # --- views -------------------------------------------------------------------------------------

    def statistics(self) -> PostTableStatistics:
        """Entries not yet resolved (created or sent) and, of those, sent (the derived inflight)."""
        return PostTableStatistics(pending=len(self._pending), inflight=self.inflight)

    @property
    def inflight(self) -> int:
        """Posts sent and not yet resolved — derived, never counted separately."""
        return sum(1 for e in self._pending.values() if e.state is PostState.SENT)

    @property
    def pending(self) -> tuple[PostEntry[R], ...]:
        """Unresolved entries (created or sent), oldest first."""
        return tuple(self._pending.values())

    def __len__(self) -> int:
        return len(self._pending)

    def get(self, post_id: int) -> PostEntry[R] | None:
        """The pending entry for `post_id`, or None if it is resolved or unknown."""
        return self._pending.get(post_id)

    def next_expiry(self) -> float | None:
        """When the earliest pending post will be due for `expire`, or None if nothing is pending."""
        starts = [self._expiry_start(e) for e in self._pending.values()]
        return min(starts) + self.timeout if starts else None

    # --- transitions -------------------------------------------------------------------------------

    def create(self, batch: Batch, nonce: int, now: float) -> PostEntry[R]:
        """Allocate the next post id for `batch` signed with `nonce`; the entry starts as `created`."""
        post_id = self._next_id
        self._next_id += 1
        entry: PostEntry[R] = PostEntry(post_id=post_id, batch=batch, nonce=nonce, created_at=now)
        self._pending[post_id] = entry
        return entry

    def mark_sent(self, post_id: int, now: float) -> PostEntry[R] | AlreadyResolved:
        """`created → sent`: the post is (about to be) on the wire and now counts as inflight."""
        entry = self._pending_or_resolved(post_id)
        if isinstance(entry, AlreadyResolved):
            return entry
        if entry.state is not PostState.CREATED:
            raise ValueError(f"post {post_id} is already {entry.state.value}")
        sent = attrs.evolve(entry, state=PostState.SENT, sent_at=now)
        self._pending[post_id] = sent
        return sent

    def resolve(self, post_id: int, payload: R, now: float) -> PostEntry[R] | StrayReply[R]:
        """Resolve a pending post with the exchange's reply, or report the reply as stray."""
        entry = self._pending.get(post_id)
        if entry is None:
            reason = StrayReason.ALREADY_RESOLVED if self._was_allocated(post_id) else StrayReason.UNKNOWN_ID
            return StrayReply(post_id=post_id, reason=reason, payload=payload)
        return self._resolve(entry, Reply(payload), now)

    def expire(self, now: float) -> tuple[PostEntry[R], ...]:
        """Resolve posts pending for at least `timeout`: sent ones as `Timeout`, unsent ones as `NotSent`.

        A sent post's age counts from when it was sent, an unsent one's from when it was created.
        """
        due = [e for e in self._pending.values() if now - self._expiry_start(e) >= self.timeout]
        return tuple(
            self._resolve(e, Timeout() if e.state is PostState.SENT else NotSent(), now) for e in due
        )

    def drain_on_disconnect(self, now: float) -> tuple[PostEntry[R], ...]:
        """Resolve everything pending: sent → `Disconnected`, created → `NotSent`. Oldest first."""
        entries = list(self._pending.values())
        return tuple(
            self._resolve(e, Disconnected() if e.state is PostState.SENT else NotSent(), now) for e in entries
        )

    # --- helpers -----------------------------------------------------------------------------------

    def _resolve(self, entry: PostEntry[R], outcome: Outcome[R], now: float) -> PostEntry[R]:
        del self._pending[entry.post_id]
        return attrs.evolve(entry, state=PostState.RESOLVED, resolved_at=now, outcome=outcome)

    def _pending_or_resolved(self, post_id: int) -> PostEntry[R] | AlreadyResolved:
        entry = self._pending.get(post_id)
        if entry is not None:
            return entry
        if self._was_allocated(post_id):
            return AlreadyResolved(post_id)
        raise KeyError(f"post {post_id} was never created on this connection")

    def _was_allocated(self, post_id: int) -> bool:
        return self._first_id <= post_id < self._next_id

    @staticmethod
    def _expiry_start(entry: PostEntry[R]) -> float:
        return entry.sent_at if entry.sent_at is not None else entry.created_at
