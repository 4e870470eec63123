# -*- test-case-name: tests.test_cache -*-
"""
The cache of one resource: its current objects, a bounded history of its
recent events and the watchers subscribed to it.

A L{wardled.cache.multiplexer.WatchMultiplexer} feeds it from the one
upstream watch of the API group: L{Cacher.reset} with a fresh list,
L{Cacher.apply} for each storage event under the resource's prefix, and
L{Cacher.advance} once a batch (or a progress notification) brings the store
to a new revision.  Each storage event is decoded once into a
L{CacheEvent} that every watcher shares; lists, gets, consistent reads and
admission are served from the in-memory state.  Once given a codec
(L{Cacher.use_codec}) the cache holds each object compactly, as its
response JSON (L{wardled.cache.compact}).
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from wardled.storage.interfaces import DELETE, Event, KeyValue

from .compact import Packer
from .interfaces import (
    ADDED,
    DELETED,
    MODIFIED,
    CachedObject,
    CacheEvent,
    ICacher,
    IObjectCodec,
    NotReady,
    TooLarge,
    TooOld,
)
from .probe import CoalescingProbe
from .waiters import ConditionWaiters, RevisionWaiters
from .watcher import CacheWatcher, Predicate

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

# Turns a key, its stored bytes and its mod_revision into a cached object.
Decode = Callable[[str, bytes, int], CachedObject]

DEFAULT_HISTORY_SIZE = 10_000
DEFAULT_CONSISTENT_TIMEOUT = 1.0


def restamped(
    last: CachedObject, revision: int, packer: Packer | None = None
) -> CachedObject:
    """
    C{last} as a deleted object: its last state with the delete's revision
    (copies of its dicts; the shared original is left alone), packed by
    C{packer} if given.
    """
    obj = dict(last.obj)
    metadata = dict(obj.get("metadata") or {})
    metadata["resourceVersion"] = str(revision)
    obj["metadata"] = metadata
    loose = CachedObject(last.key, last.namespace, last.name, last.labels, revision, obj)
    return loose if packer is None else packer.pack(loose, remember=True)


@implementer(ICacher)
class Cacher:
    """
    One resource's objects, history and watchers.

    @ivar resource_prefix: every key of the resource starts with it.
    @ivar ready: see L{ICacher.ready}.
    @ivar revision: see L{ICacher.revision}.
    """

    log = Logger()

    def __init__(
        self,
        resource_prefix: str,
        decode: Decode,
        clock: IReactorTime,
        current_revision: Callable[[], Deferred[int]],
        history_size: int = DEFAULT_HISTORY_SIZE,
        consistent_timeout: float = DEFAULT_CONSISTENT_TIMEOUT,
        on_behind: Callable[[int], object] | None = None,
    ) -> None:
        """
        @param decode: turns a stored key into a L{CachedObject}.
        @param clock: schedules the deadlines of waits.
        @param current_revision: the storage's current revision (for
            L{consistent_revision}); concurrent reads share its calls
            through a L{CoalescingProbe} (pass one to share it between
            caches).
        @param history_size: how many recent events a watch may resume from.
        @param consistent_timeout: how long L{consistent_revision} waits for
            the cache to catch up before failing with L{TooLarge}.
        @param on_behind: told the storage's revision when a consistent read
            finds the cache behind it (writes elsewhere in the store may have
            raised it: see L{WatchMultiplexer.catch_up}).
        """
        if history_size < 1:
            raise ValueError(f"history_size must be at least 1, not {history_size}")
        self.resource_prefix = resource_prefix
        self.ready = False
        self.revision = 0
        self._decode = decode
        self._current_revision = (
            current_revision
            if isinstance(current_revision, CoalescingProbe)
            else CoalescingProbe(current_revision)
        )
        self._consistent_timeout = consistent_timeout
        self._on_behind = on_behind
        self._objects: dict[str, CachedObject] = {}
        self._keys: list[str] = []
        self._history: deque[CacheEvent] = deque(maxlen=history_size)
        self._history_dropped = False
        self._synced_revision = 0
        self._added: dict[str, CacheEvent] = {}
        self._subscribers: set[CacheWatcher] = set()
        self._dispatch_order: tuple[CacheWatcher, ...] | None = ()
        self._revision_waiters = RevisionWaiters(clock)
        self._ready_waiters = ConditionWaiters(clock)
        self._packer: Packer | None = None

    def __repr__(self) -> str:
        return (
            f"<Cacher {self.resource_prefix!r} at {self.revision}: "
            f"{len(self._objects)} objects, {len(self._subscribers)} watchers>"
        )

    # -- storage form ---------------------------------------------------------

    def use_codec(self, codec: IObjectCodec) -> None:
        """
        See L{ICacher.use_codec}; a codec equal to the one in use changes
        nothing.
        """
        if self._packer is not None and self._packer.codec == codec:
            return
        self._packer = packer = Packer(codec)
        self._objects = {
            key: packer.pack(cached) for key, cached in self._objects.items()
        }
        self._added.clear()

    @property
    def packer(self) -> Packer | None:
        """
        What packs the objects (None: they are held loose).
        """
        return self._packer

    # -- reads --------------------------------------------------------------

    def get(self, key: str) -> CachedObject | None:
        return self._objects.get(key)

    def list(self, prefix: str) -> tuple[Sequence[CachedObject], int]:
        return list(self._under(prefix)), self.revision

    def _under(self, prefix: str) -> Iterator[CachedObject]:
        """
        The objects whose key starts with C{prefix}, in key order.
        """
        keys = self._keys
        for index in range(bisect.bisect_left(keys, prefix), len(keys)):
            key = keys[index]
            if not key.startswith(prefix):
                return
            yield self._objects[key]

    @property
    def size(self) -> int:
        """
        How many objects the cache holds.
        """
        return len(self._objects)

    @property
    def watcher_count(self) -> int:
        """
        How many watchers are subscribed.
        """
        return len(self._subscribers)

    @property
    def oldest_revision(self) -> int:
        """
        The oldest revision a watch may start after: events after it are all
        in the history (the C{M} of C{too old resource version: N (M)}).
        """
        if self._history_dropped:
            return self._history[0].revision - 1
        return self._synced_revision

    # -- waits --------------------------------------------------------------

    def wait_until_ready(self, timeout: float) -> Deferred[None]:
        if self.ready:
            return succeed(None)
        return self._ready_waiters.wait(timeout, self._not_ready)

    def _not_ready(self) -> NotReady:
        return NotReady(f"the cache of {self.resource_prefix} is not ready")

    def wait_for_revision(self, revision: int, timeout: float) -> Deferred[None]:
        return self._revision_waiters.wait(
            revision,
            self.revision,
            timeout,
            lambda: TooLarge(revision, self.revision),
        )

    def consistent_revision(self) -> Deferred[int]:
        return self._current_revision().addCallback(self._caught_up)

    def _caught_up(self, revision: int) -> int | Deferred[int]:
        # Mostly the cache has seen the probed revision already: no wait.
        if self.revision >= revision:
            return revision
        waiting = self.wait_for_revision(revision, self._consistent_timeout)
        if self._on_behind is not None:
            self._on_behind(revision)
        return waiting.addCallback(lambda _: revision)

    @property
    def pending_waits(self) -> int:
        """
        How many waits (for readiness or a revision) are pending.
        """
        return len(self._revision_waiters) + len(self._ready_waiters)

    # -- watches ------------------------------------------------------------

    def watch(
        self,
        prefix: str,
        from_revision: int | None,
        *,
        capacity: int,
        predicate: Predicate | None = None,
    ) -> CacheWatcher:
        if not self.ready:
            raise self._not_ready()
        if from_revision is None:
            initial = [
                obj
                for obj in self._under(prefix)
                if predicate is None or predicate(obj)
            ]
            watcher = CacheWatcher(
                self,
                prefix,
                after=self.revision,
                capacity=capacity,
                predicate=predicate,
                initial=initial,
            )
        else:
            watcher = CacheWatcher(
                self,
                prefix,
                after=from_revision,
                capacity=capacity,
                predicate=predicate,
                backlog=self._events_after(from_revision),
            )
        self._subscribers.add(watcher)
        self._dispatch_order = None
        return watcher

    def _events_after(self, revision: int) -> Sequence[CacheEvent]:
        """
        The history after C{revision}, oldest first.

        @raise TooOld: events after C{revision} were dropped.
        """
        oldest = self.oldest_revision
        if revision < oldest:
            raise TooOld(revision, oldest)
        newest_first = itertools.takewhile(
            lambda event: event.revision > revision, reversed(self._history)
        )
        return [*newest_first][::-1]

    def unsubscribe(self, watcher: CacheWatcher) -> None:
        """
        Forget C{watcher} (called by the watcher when it ends).
        """
        if watcher in self._subscribers:
            self._subscribers.discard(watcher)
            self._dispatch_order = None

    def added_event(self, obj: CachedObject) -> CacheEvent:
        """
        The synthetic L{ADDED} event of C{obj}, shared by every watch that
        starts from the state holding it (so its encodings are shared too).
        """
        event = self._added.get(obj.key)
        if event is not None and event.current is obj:
            return event
        event = CacheEvent(ADDED, obj.revision, obj)
        if self._objects.get(obj.key) is obj:
            self._added[obj.key] = event
        return event

    # -- fed by the multiplexer ----------------------------------------------

    def reset(self, kvs: Iterable[KeyValue], revision: int) -> None:
        """
        Replace the state with C{kvs}, listed at C{revision}; forget the
        history (watches may resume only from C{revision} on) and become
        ready.
        """
        objects: dict[str, CachedObject] = {}
        for kv in kvs:
            decoded = self._decoded(kv)
            if decoded is not None:
                objects[kv.key] = decoded
        self._objects = objects
        self._keys = sorted(objects)
        self._added.clear()
        self._history.clear()
        self._history_dropped = False
        self._synced_revision = revision
        self.revision = revision
        self.ready = True
        self._revision_waiters.advance(revision)
        self._ready_waiters.fire()

    def apply(self, event: Event) -> None:
        """
        Apply one storage event under the resource's prefix: update the
        state, record the change and hand it to every watcher.
        """
        if event.type == DELETE:
            change = self._deleted(event)
        else:
            change = self._put(event)
        if change is None:
            return
        history = self._history
        if len(history) == history.maxlen:
            self._history_dropped = True
        history.append(change)
        for watcher in self._watchers():
            watcher.dispatch(change)

    def _watchers(self) -> tuple[CacheWatcher, ...]:
        order = self._dispatch_order
        if order is None:
            order = self._dispatch_order = tuple(self._subscribers)
        return order

    def _put(self, event: Event) -> CacheEvent | None:
        current = self._decoded(event.kv, remember=True)
        if current is None:
            return None
        key = current.key
        previous = self._objects.get(key)
        if previous is None:
            bisect.insort(self._keys, key)
        self._objects[key] = current
        self._added.pop(key, None)
        kind = ADDED if previous is None else MODIFIED
        return CacheEvent(kind, current.revision, current, previous)

    def _deleted(self, event: Event) -> CacheEvent | None:
        key = event.kv.key
        last = self._objects.pop(key, None)
        if last is None:
            # Unknown here (its PUT did not decode): the stored last state
            # is the best there is.
            last = self._decoded(event.prev_kv) if event.prev_kv else None
            if last is None:
                return None
        else:
            del self._keys[bisect.bisect_left(self._keys, key)]
            self._added.pop(key, None)
        revision = event.kv.mod_revision
        return CacheEvent(
            DELETED, revision, restamped(last, revision, self._packer), last
        )

    def _decoded(self, kv: KeyValue, remember: bool = False) -> CachedObject | None:
        """
        C{kv} as the cache holds it, or None when it does not decode.

        @param remember: see L{Packer.pack}.
        """
        try:
            decoded = self._decode(kv.key, kv.value, kv.mod_revision)
            packer = self._packer
            return decoded if packer is None else packer.pack(decoded, remember)
        except Exception:  # noqa: BLE001 - one bad key must not stop the cache
            self.log.failure(
                "cannot decode {key} at revision {revision}; skipped",
                key=kv.key,
                revision=kv.mod_revision,
            )
            return None

    def advance(self, revision: int) -> None:
        """
        The store reached C{revision} and every event up to it was applied.
        """
        if revision > self.revision:
            self.revision = revision
            self._revision_waiters.advance(revision)

    def expire(self, oldest: int) -> None:
        """
        History is lost (compaction, a failed upstream watch): become not
        ready and end every watcher with L{TooOld}, so its client re-lists.
        """
        self.ready = False
        for watcher in tuple(self._subscribers):
            watcher.end(TooOld(watcher.revision, oldest))

    def close(self) -> None:
        """
        Shut down: end every watcher and fail every pending wait.
        """
        self.ready = False
        for watcher in tuple(self._subscribers):
            watcher.end(None)
        self._revision_waiters.fail_all(self._not_ready)
        self._ready_waiters.fail_all(self._not_ready)
