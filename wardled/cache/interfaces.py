# -*- test-case-name: tests.test_cache -*-
"""
The watch cache's contract: decoded objects, shared events, watchers.

One upstream etcd watch (over the group's key prefix) feeds a L{ICacher}:
every event is decoded once into a L{CachedObject}, applied to the in-memory
state and to a bounded history, and handed to every matching L{IWatcher} as
the same L{CacheEvent} object, whose encodings are memoised so that an event
is serialised once per (type, version, media type), never once per watcher.

The HTTP watch handler (L{wardled.api.watch}) drains watchers; the registry
serves lists and gets from L{ICacher} snapshots; admission reads Fischers
from it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

Object = dict[str, Any]

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


@attrs.frozen
class CachedObject:
    """
    One object as the cache holds it, decoded once from storage.

    @ivar obj: the internal form, with C{metadata.resourceVersion} set to
        C{revision}.  Shared by every reader: never mutate it (copy first).
    @ivar revision: the key's mod_revision (for a deleted object's last
        state: the revision of the delete).
    """

    key: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    revision: int
    obj: Object


@attrs.define(eq=False)
class CacheEvent:
    """
    One change at one revision, shared by every watcher that sees it.

    @ivar type: L{ADDED}, L{MODIFIED} or L{DELETED}.
    @ivar current: the object after the change; for L{DELETED}, its last
        state with C{revision} (and resourceVersion) of the delete.
    @ivar previous: the object before the change (None for L{ADDED}).
    """

    type: str
    revision: int
    current: CachedObject
    previous: CachedObject | None = None
    _encodings: dict[Hashable, bytes] = attrs.field(factory=dict, init=False, repr=False)

    def encoded(self, key: Hashable, encode: Callable[[], bytes]) -> bytes:
        """
        C{encode()}'s result, computed once per C{key} for this event (the
        key names the effective type, API version and media type).
        """
        cached = self._encodings.get(key)
        if cached is None:
            cached = self._encodings[key] = encode()
            ENCODE_COUNTER.count += 1
        return cached


@attrs.define
class _Counter:
    count: int = 0


# How many event encodings were computed process-wide: tests (and metrics)
# use it to prove fan-out serialises each event once, not once per watcher.
ENCODE_COUNTER = _Counter()


class TooOld(Exception):
    """
    A watch asked for history the cache no longer holds (HTTP: 410 Expired,
    C{too old resource version: N (M)}).
    """

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class TooLarge(Exception):
    """
    A read or watch asked for a revision the cache did not reach in time
    (HTTP: 504 C{Too large resource version: N, current: M}).
    """

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"Too large resource version: {requested}, current: {current}")
        self.requested = requested
        self.current = current


class NotReady(Exception):
    """
    The cache has not finished its first sync (or is rebuilding).
    """


class FellBehind(Exception):
    """
    A watcher's client did not take events fast enough: its queue of live
    events reached its capacity, so the cache ended it rather than wait (the
    client re-lists and watches again).
    """

    def __init__(self, pending: int, capacity: int) -> None:
        super().__init__(
            f"the watcher fell too far behind: {pending} events not taken "
            f"(capacity {capacity})"
        )
        self.pending = pending
        self.capacity = capacity


class IWatcher(Interface):
    """
    One client's subscription: a bounded FIFO of events the client has not
    taken yet.  The cacher appends without ever waiting; a watcher whose
    queue is full is ended (its client re-lists), so one slow client never
    holds up the others or grows memory without bound.
    """

    revision: int = Attribute(
        "The revision through which this watcher has been fed: every event "
        "up to it is in the queue or was taken.  A BOOKMARK sent when the "
        "queue is empty may carry it."
    )
    initial_events: int = Attribute(
        "How many synthetic ADDED events (the state at start_revision) open "
        "the queue; 0 when the watch started from a revision."
    )
    start_revision: int = Attribute(
        "The snapshot revision of the initial events, or the revision the "
        "watch started after: the RV of an initial-events-end BOOKMARK."
    )
    ended: Deferred[None] = Attribute(
        "Fires with None when stop() was called (or the cache shut down); "
        "fails with TooOld (history "
        "lost: compaction or rebuild), or with an Exception saying the "
        "watcher fell too far behind (L{FellBehind}).  Once ended, the "
        "queue is empty.  Each access may give a new Deferred (like "
        "Request.notifyFinish), so an end nobody waits for is never an "
        "unhandled error: keep the one you add callbacks to."
    )

    def take(limit: int) -> Sequence[tuple[str, CacheEvent]]:
        """
        Remove and return up to C{limit} queued (effective type, event)
        pairs, oldest first.  The effective type differs from the event's
        own when a predicate is set: an object that starts matching is
        L{ADDED}, one that stops matching is L{DELETED} (with its new state).
        """

    def pending() -> int:
        """
        How many events wait in the queue.
        """

    def set_wakeup(wakeup: Callable[[], None] | None) -> None:
        """
        Call C{wakeup()} (synchronously, from dispatch) whenever the queue
        goes from empty to non-empty, or the watcher ends.
        """

    def stop() -> None:
        """
        Unsubscribe; idempotent.
        """


class ICacher(Interface):
    """
    The cache of one resource (one key prefix).
    """

    ready: bool = Attribute("Whether the first sync finished (and no rebuild runs).")
    revision: int = Attribute(
        "The store revision the cache reflects (raised by events and by "
        "progress notifications)."
    )

    def wait_until_ready(timeout: float) -> Deferred[None]:
        """
        Fire once ready; fail with L{NotReady} after C{timeout} seconds.
        """

    def wait_for_revision(revision: int, timeout: float) -> Deferred[None]:
        """
        Fire once C{self.revision >= revision}; fail with L{TooLarge} after
        C{timeout} seconds.
        """

    def consistent_revision() -> Deferred[int]:
        """
        The storage's current revision, once the cache has caught up with it
        (a consistent read served from memory).

        @raise TooLarge: the cache did not catch up in time; callers fall
            back to reading storage directly.
        """

    def get(key: str) -> CachedObject | None:
        """
        The object at C{key} now.
        """

    def list(prefix: str) -> tuple[Sequence[CachedObject], int]:
        """
        The objects under C{prefix}, sorted by key, and the revision of that
        snapshot.
        """

    def watch(
        prefix: str,
        from_revision: int | None,
        *,
        capacity: int,
        predicate: Callable[[CachedObject], bool] | None = None,
    ) -> IWatcher:
        """
        Subscribe to changes under C{prefix}.

        @param from_revision: None: first a synthetic L{ADDED} for every
            current object (matching C{predicate}), then every later event;
            N: every event with revision > N, from history, then live.
        @param capacity: the most events the watcher may hold untaken.
        @param predicate: only objects it accepts are seen (with the
            ADDED/DELETED transitions described in L{IWatcher.take}).
        @raise TooOld: N is older than the history window.
        @raise NotReady: the cache has not synced yet or is rebuilding
            (wait with L{wait_until_ready} first).  A watch from an N the
            cache has not reached yet starts after N (its events up to N are
            skipped); use L{wait_for_revision} first to answer 504 instead.
        """
