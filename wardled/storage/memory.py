# -*- test-case-name: tests.test_storage_conformance -*-
"""
L{IStorage} in memory, with etcd's revision semantics, for unit tests.

It behaves like a fresh single-member etcd: the store revision starts at 1
and every write raises it by one; every past revision stays readable until
L{MemoryStorage.compact}; watches replay history from any kept revision and
then follow live writes. Unlike etcd it answers at once: every L{Deferred}
it returns has already fired, and watch callbacks run synchronously right
after the write that caused them, so tests of the layers above can use
C{SynchronousTestCase.successResultOf}.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from ._callbackwatch import CallbackWatch
from .interfaces import (
    DELETE,
    PUT,
    Compacted,
    Conflict,
    Event,
    FutureRevision,
    IStorage,
    IWatch,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    PrefixState,
    StorageError,
    WatchCallback,
    prefix_state_of,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

PROGRESS_INTERVAL = 1.0


@implementer(IStorage)
class MemoryStorage:
    """
    A revisioned key-value store held in a dict and an event log.

    @ivar revision: the store's current revision.
    @ivar compact_revision: the oldest revision still readable (0: never
        compacted).
    """

    def __init__(
        self,
        clock: IReactorTime | None = None,
        progress_interval: float = PROGRESS_INTERVAL,
    ) -> None:
        """
        @param clock: when given, every running watch gets a progress
            notification (an empty batch at the current revision) every
            C{progress_interval} seconds, as etcd sends with
            C{--experimental-watch-progress-notify-interval}; without a clock,
            call L{notify_progress} by hand.
        """
        self.revision = 1
        self.compact_revision = 0
        self._kvs: dict[str, KeyValue] = {}
        # One event per revision from _log_start on (a fresh store's revision
        # 1 has none): _log[i] happened at revision _log_start + i.
        self._log: list[Event] = []
        self._log_start = 2
        self._watches: list[_MemoryWatch] = []
        self._delivering = False
        self._clock = clock
        self._progress_interval = progress_interval
        self._progress_call: IDelayedCall | None = None

    # -- reads ---------------------------------------------------------------

    def get(self, key: str) -> Deferred[tuple[KeyValue | None, int]]:
        return succeed((self._kvs.get(key), self.revision))

    def list(
        self, prefix: str, start: str | None = None, limit: int = 0, revision: int = 0
    ) -> Deferred[ListResult]:
        try:
            kvs = self._state_at(revision) if revision else self._kvs
        except StorageError as error:
            return fail(error)
        first = prefix if start is None else max(prefix, start)
        lowest = _utf8(first)
        keys = sorted(
            (key for key in kvs if key.startswith(prefix) and _utf8(key) >= lowest),
            key=_utf8,
        )
        page = keys[:limit] if limit > 0 else keys
        return succeed(
            ListResult(
                kvs=[kvs[key] for key in page],
                revision=revision or self.revision,
                more=len(page) < len(keys),
                count=len(keys),
            )
        )

    def _state_at(self, revision: int) -> dict[str, KeyValue]:
        """
        The keys as they were at C{revision}: undo later events, newest first.
        """
        self._check_revision(revision)
        state = dict(self._kvs)
        for event in reversed(self._log[revision + 1 - self._log_start :]):
            if event.prev_kv is None:
                del state[event.kv.key]
            else:
                state[event.kv.key] = event.prev_kv
        return state

    def _check_revision(self, revision: int) -> None:
        if revision > self.revision:
            raise FutureRevision(revision, self.revision)
        if revision < self.compact_revision:
            raise Compacted(revision, self.compact_revision)

    def current_revision(self) -> Deferred[int]:
        return succeed(self.revision)

    def prefix_state(self, prefix: str, revision: int) -> Deferred[PrefixState]:
        return self.list(prefix, revision=revision).addCallback(prefix_state_of)

    def check_health(self) -> Deferred[None]:
        return succeed(None)

    # -- writes --------------------------------------------------------------

    def create(self, key: str, value: bytes) -> Deferred[int]:
        if key in self._kvs:
            return fail(KeyExists(key))
        revision = self.revision + 1
        return succeed(self._put(KeyValue(key, value, revision, revision), None))

    def update(self, key: str, value: bytes, mod_revision: int) -> Deferred[int]:
        try:
            current = self._expect(key, mod_revision)
        except StorageError as error:
            return fail(error)
        kv = KeyValue(key, value, current.create_revision, self.revision + 1)
        return succeed(self._put(kv, current))

    def delete(self, key: str, mod_revision: int) -> Deferred[int]:
        try:
            current = self._expect(key, mod_revision)
        except StorageError as error:
            return fail(error)
        del self._kvs[key]
        # etcd's DELETE events carry only the key and the delete's revision.
        tombstone = KeyValue(key, b"", 0, self.revision + 1)
        return succeed(self._record(Event(DELETE, tombstone, current)))

    def _expect(self, key: str, mod_revision: int) -> KeyValue:
        current = self._kvs.get(key)
        if current is None:
            raise KeyNotFound(key)
        if current.mod_revision != mod_revision:
            raise Conflict(key, current)
        return current

    def _put(self, kv: KeyValue, prev_kv: KeyValue | None) -> int:
        self._kvs[kv.key] = kv
        return self._record(Event(PUT, kv, prev_kv))

    def _record(self, event: Event) -> int:
        """
        Log the write at the next revision and tell the watches.
        """
        self.revision += 1
        self._log.append(event)
        self._pump()
        return self.revision

    def compact(self, revision: int) -> Deferred[None]:
        try:
            self._check_revision(revision)
            if revision == self.compact_revision:
                raise Compacted(revision, self.compact_revision)
        except StorageError as error:
            return fail(error)
        self._log = self._log[max(revision - self._log_start, 0) :]
        self._log_start = max(revision, self._log_start)
        self.compact_revision = revision
        return succeed(None)

    # -- watches -------------------------------------------------------------

    def watch(self, prefix: str, from_revision: int, callback: WatchCallback) -> IWatch:
        """
        Watch C{prefix}; a C{from_revision} of 0 means "from the next write".
        """
        start = from_revision if from_revision > 0 else self.revision + 1
        watch = _MemoryWatch(self, prefix, start, callback)
        if start < self.compact_revision:
            watch.finish(Compacted(start, self.compact_revision))
            return watch
        self._watches.append(watch)
        self._schedule_progress()
        self._pump()
        return watch

    def _events_from(self, revision: int) -> Iterator[Event]:
        """
        The logged events from C{revision} on, read while the log grows.
        """
        index = max(revision - self._log_start, 0)
        while index < len(self._log):
            yield self._log[index]
            index += 1

    def _pump(self) -> None:
        """
        Bring every watch up to the current revision; writes made by a
        callback are delivered after the current one, in order.
        """
        if self._delivering:
            return
        self._delivering = True
        try:
            while any(watch.behind() for watch in self._watches):
                for watch in list(self._watches):
                    watch.catch_up()
        finally:
            self._delivering = False

    def _forget(self, watch: _MemoryWatch) -> None:
        if watch in self._watches:
            self._watches.remove(watch)
        if not self._watches and self._progress_call is not None:
            if self._progress_call.active():
                self._progress_call.cancel()
            self._progress_call = None

    def notify_progress(self) -> None:
        """
        Send every caught-up watch an empty batch at the current revision.
        """
        for watch in list(self._watches):
            watch.progress(self.revision)

    def _schedule_progress(self) -> None:
        if self._clock is None or self._progress_call is not None:
            return
        self._progress_call = self._clock.callLater(
            self._progress_interval, self._periodic_progress
        )

    def _periodic_progress(self) -> None:
        self._progress_call = None
        self.notify_progress()
        if self._watches:
            self._schedule_progress()

    def close(self) -> Deferred[None]:
        """
        Stop every watch (the same shutdown hook as the etcd backend).
        """
        for watch in list(self._watches):
            watch.stop()
        return succeed(None)


def _utf8(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


@implementer(IWatch)
class _MemoryWatch(CallbackWatch):
    """
    One watch on a L{MemoryStorage}: the next revision it needs, and where
    to send it.
    """

    def __init__(
        self, store: MemoryStorage, prefix: str, start: int, callback: WatchCallback
    ) -> None:
        super().__init__(callback)
        self._store = store
        self._prefix = prefix
        self._next = start

    def _forget(self) -> None:
        self._store._forget(self)

    def behind(self) -> bool:
        return not self._finished and self._next <= self._store.revision

    def catch_up(self) -> None:
        """
        Deliver the events this watch has not seen, one revision at a time.
        """
        if self._next < self._store.compact_revision:
            self.finish(Compacted(self._next, self._store.compact_revision))
            return
        for event in self._store._events_from(self._next):
            if self._finished:
                return
            revision = event.kv.mod_revision
            self._next = revision + 1
            if event.kv.key.startswith(self._prefix):
                self._call([event], revision)
        if not self._finished:
            self._next = max(self._next, self._store.revision + 1)

    def progress(self, revision: int) -> None:
        if not self.behind():
            self._call([], revision)

