# -*- test-case-name: tests.test_cache -*-
"""
One client's subscription to a L{wardled.cache.cacher.Cacher}: a bounded
queue the cache appends to without ever waiting.

The cache hands every new event to every watcher of its resource; the
watcher drops what is outside its key prefix or rejected by its predicate
(turning predicate transitions into ADDED/DELETED), and queues the rest for
the HTTP watch handler, which drains it with L{CacheWatcher.take} whenever
its transport can take more.  A watcher whose client does not keep up is
ended with L{FellBehind} instead of being waited for (the Kubernetes
cacher's "slow watchers are cut" rule), so one stalled client can neither
hold up the others nor grow memory without bound.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from .interfaces import (
    ADDED,
    DELETED,
    MODIFIED,
    CachedObject,
    CacheEvent,
    FellBehind,
    IWatcher,
)

Predicate = Callable[[CachedObject], bool]


class WatchSource(Protocol):
    """
    What a watcher needs from its cache.
    """

    @property
    def revision(self) -> int: ...

    def unsubscribe(self, watcher: CacheWatcher) -> None: ...

    def added_event(self, obj: CachedObject) -> CacheEvent: ...


def effective_type(event: CacheEvent, predicate: Predicate | None) -> str | None:
    """
    The type a watcher with C{predicate} sees C{event} as, or None when it
    does not see it: an object that starts matching is L{ADDED}, one that
    stops matching is L{DELETED} (with its new state), and a deletion is seen
    only if the deleted object matched.
    """
    if predicate is None:
        return event.type
    if event.type == DELETED:
        return DELETED if predicate(event.current) else None
    matches_now = predicate(event.current)
    matched_before = event.previous is not None and predicate(event.previous)
    if matches_now:
        return MODIFIED if matched_before else ADDED
    return DELETED if matched_before else None


@implementer(IWatcher)
class CacheWatcher:
    """
    A bounded FIFO of (effective type, event) pairs for one client.

    The queue opens with the watch's initial events: the synthetic
    L{ADDED}s of a watch from the current state (kept as a list of objects
    and turned into shared events as they are taken) or the history replayed
    for a watch from a revision.  Those are not counted against
    C{capacity}; only live events are, so a watch over a large collection is
    not ended for the size of its first page.

    @ivar start_revision: see L{IWatcher.start_revision}.
    @ivar initial_events: see L{IWatcher.initial_events}.
    @ivar end_reason: None while running or after L{stop}; else the
        exception L{ended} failed with.
    """

    log = Logger()

    def __init__(
        self,
        source: WatchSource,
        prefix: str,
        *,
        after: int,
        capacity: int,
        predicate: Predicate | None = None,
        initial: Sequence[CachedObject] = (),
        backlog: Iterable[CacheEvent] = (),
    ) -> None:
        """
        @param source: the cache this watcher subscribes to.
        @param prefix: only keys under it are seen.
        @param after: the revision the watch starts after; events at or
            before it are never queued.
        @param capacity: the most live events the queue may hold untaken.
        @param predicate: only objects it accepts are seen.
        @param initial: objects to open the queue with, as synthetic ADDEDs
            (already filtered by C{predicate}).
        @param backlog: history to replay before live events (filtered
            here, like live ones).
        """
        if capacity < 1:
            raise ValueError(
                f"a watcher needs a capacity of at least 1, not {capacity}"
            )
        self.start_revision = after
        self.initial_events = len(initial)
        self.finished = False
        self.end_reason: Exception | None = None
        self._source = source
        self._prefix = prefix
        self._after = after
        self._fed = after
        self._capacity = capacity
        self._predicate = predicate
        self._initial: Sequence[CachedObject] = initial
        self._initial_taken = 0
        self._queue: deque[tuple[str, CacheEvent]] = deque()
        for event in backlog:
            self._offer(event)
        self._backlog = len(self._queue)
        self._wakeup: Callable[[], None] | None = None
        self._end_waiters: list[Deferred[None]] = []

    # -- IWatcher ---------------------------------------------------------

    @property
    def revision(self) -> int:
        if self.finished:
            return self._fed
        return max(self._fed, self._source.revision)

    @property
    def ended(self) -> Deferred[None]:
        """
        A new Deferred on each access (as C{Request.notifyFinish} gives),
        so that an end nobody asked about is never an unhandled error.
        """
        if not self.finished:
            waiter: Deferred[None] = Deferred(self._end_waiters.remove)
            self._end_waiters.append(waiter)
            return waiter
        done: Deferred[None] = Deferred()
        if self.end_reason is None:
            done.callback(None)
        else:
            done.errback(self.end_reason)
        return done

    def take(self, limit: int) -> Sequence[tuple[str, CacheEvent]]:
        taken: list[tuple[str, CacheEvent]] = []
        self._take_initial(taken, limit)
        queue = self._queue
        while queue and len(taken) < limit:
            taken.append(queue.popleft())
            if self._backlog:
                self._backlog -= 1
        return taken

    def _take_initial(self, taken: list[tuple[str, CacheEvent]], limit: int) -> None:
        initial = self._initial
        start = self._initial_taken
        end = min(len(initial), start + limit - len(taken))
        if end <= start:
            return
        added = self._source.added_event
        taken.extend([(ADDED, added(obj)) for obj in initial[start:end]])
        self._initial_taken = end
        if end == len(initial):
            self._initial = ()
            self._initial_taken = 0

    def pending(self) -> int:
        return len(self._initial) - self._initial_taken + len(self._queue)

    def set_wakeup(self, wakeup: Callable[[], None] | None) -> None:
        """
        See L{IWatcher.set_wakeup}.  Setting it does not call it: the caller
        drains what is already pending itself.  It is called when the cache
        ends the watcher, not when L{stop} does.
        """
        self._wakeup = wakeup

    def stop(self) -> None:
        self._end(None, wake=False)

    # -- fed by the cache ---------------------------------------------------

    def dispatch(self, event: CacheEvent) -> None:
        """
        Queue C{event} if this watcher sees it, without waiting; end the
        watcher if its queue of live events is full.
        """
        if self.finished or event.revision <= self._after:
            return
        self._fed = max(self._fed, event.revision)
        was_empty = not self.pending()
        if not self._offer(event, limit=self._capacity + self._backlog):
            return
        if was_empty:
            self._wake()

    def _offer(self, event: CacheEvent, limit: int | None = None) -> bool:
        """
        Queue C{event} if it is under the prefix and the predicate lets it
        through; say whether it was queued.
        """
        if not event.current.key.startswith(self._prefix):
            return False
        seen_as = effective_type(event, self._predicate)
        if seen_as is None:
            return False
        if limit is not None and len(self._queue) >= limit:
            self.end(FellBehind(len(self._queue) - self._backlog, self._capacity))
            return False
        self._queue.append((seen_as, event))
        return True

    def end(self, reason: Exception | None) -> None:
        """
        End the watcher from the cache's side: C{ended} fires (or fails with
        C{reason}), the queue is dropped and the wakeup is called.
        """
        self._end(reason, wake=True)

    def _end(self, reason: Exception | None, wake: bool) -> None:
        if self.finished:
            return
        self._fed = self.revision
        self.finished = True
        self.end_reason = reason
        self._initial = ()
        self._initial_taken = 0
        self._queue.clear()
        self._backlog = 0
        self._source.unsubscribe(self)
        waiters, self._end_waiters = self._end_waiters, []
        for waiter in waiters:
            if reason is None:
                waiter.callback(None)
            else:
                waiter.errback(reason)
        if wake:
            self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is None:
            return
        try:
            wakeup()
        except Exception:  # noqa: BLE001 - one client must not stop the fan-out
            self.log.failure("watch wakeup failed for {prefix}", prefix=self._prefix)

    def __repr__(self) -> str:
        state = "ended" if self.finished else f"{self.pending()} pending"
        return f"<CacheWatcher {self._prefix!r} after {self._after}: {state}>"
