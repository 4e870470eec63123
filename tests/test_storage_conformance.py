# -*- test-case-name: tests.test_storage_conformance -*-
"""
One conformance suite for every L{IStorage} backend.

The tests are written against the interface only and run twice: on
L{MemoryStorage} in a C{SynchronousTestCase} (every Deferred has fired when
the call returns) and on L{EtcdStorage} against a real etcd under the real
reactor. Each test is a coroutine wrapped by L{storage_test}; the backend's
runner either demands a result now or hands the Deferred to trial.

Every test uses its own key prefix, so the etcd-backed tests can share one
etcd per class.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from tests.etcdserver import EtcdServer
from wardled.storage.etcd import EtcdStorage
from wardled.storage.interfaces import (
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
    PrefixState,
)
from wardled.storage.memory import MemoryStorage
from wardled.storage.sqlite import SqliteStorage

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object

_E = TypeVar("_E", bound=Exception)
StorageTest = Callable[[Any], Coroutine[Deferred[Any], Any, None]]


def storage_test(test: StorageTest) -> Callable[[Any], Deferred[None] | None]:
    """
    Run a coroutine test through the test case's L{_Runner.run_storage_test}.
    """

    @functools.wraps(test)
    def run(self: _Runner) -> Deferred[None] | None:
        return self.run_storage_test(Deferred.fromCoroutine(test(self)))

    return run


class _Runner(_Base):
    """
    What the conformance mixins need from a concrete test case.
    """

    storage: IStorage
    prefix: str

    if TYPE_CHECKING:
        # Provided by the concrete test case (after the mixins in its bases).

        def make_storage(self) -> IStorage: ...

        def run_storage_test(self, test: Deferred[None]) -> Deferred[None] | None: ...

        def watch_established(self, recorder: Recorder) -> Deferred[Any]: ...

    def setUp(self) -> None:
        self.storage = self.make_storage()
        name = self.id().rsplit(".", 1)[-1]
        self.prefix = f"/conformance/{name}/{uuid.uuid4().hex[:8]}/"

    async def assert_fails(self, waiting: Deferred[Any], kind: type[_E]) -> _E:
        """
        Await C{waiting} and return the exception it failed with, which must
        be a C{kind}.
        """
        try:
            result = await waiting
        except kind as error:
            return error
        raise self.failureException(f"expected {kind.__name__}, got {result!r}")


class Recorder:
    """
    A watch callback that keeps what it is given and checks the watch
    contract as it goes (revisions never go back, no revision twice).
    """

    def __init__(self) -> None:
        self.batches: list[tuple[list[Event], int]] = []
        self.events: list[Event] = []
        self.problems: list[str] = []
        self._waiting: list[tuple[int, Deferred[list[Event]]]] = []

    def __call__(self, events: Sequence[Event], revision: int) -> None:
        seen = self.events[-1].kv.mod_revision if self.events else 0
        if self.batches and revision < self.batches[-1][1]:
            self.problems.append(f"revision went back to {revision}")
        for event in events:
            if event.kv.mod_revision <= seen:
                self.problems.append(f"revision {event.kv.mod_revision} again")
            seen = event.kv.mod_revision
        if events and events[-1].kv.mod_revision != revision:
            self.problems.append(f"batch up to {seen} reported as {revision}")
        self.batches.append((list(events), revision))
        self.events.extend(events)
        for waiter in list(self._waiting):
            self._check(waiter)

    def wait_for_batches(self, count: int) -> Deferred[list[Event]]:
        """
        Fire with the events once at least C{count} batches (progress
        notifications included) have arrived.
        """
        waiter: tuple[int, Deferred[list[Event]]] = (-count, Deferred())
        self._waiting.append(waiter)
        self._check(waiter)
        return waiter[1]

    def wait_for(self, count: int) -> Deferred[list[Event]]:
        """
        Fire with the events once at least C{count} have arrived.
        """
        waiter: tuple[int, Deferred[list[Event]]] = (count, Deferred())
        self._waiting.append(waiter)
        self._check(waiter)
        return waiter[1]

    def _check(self, waiter: tuple[int, Deferred[list[Event]]]) -> None:
        count, waiting = waiter
        if count < 0 and len(self.batches) >= -count or 0 <= count <= len(self.events):
            self._waiting.remove(waiter)
            waiting.callback(list(self.events))


def _summary(events: Sequence[Event]) -> list[tuple[str, str, bytes, int]]:
    return [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in events]


class StorageConformanceMixin(_Runner):
    """
    Reads, compare-and-swap writes, revisions and compaction.
    """

    def test_provides_interface(self) -> None:
        self.assertTrue(verifyObject(IStorage, self.storage))

    @storage_test
    async def test_create_then_get(self) -> None:
        before = await self.storage.current_revision()
        key = self.prefix + "one"
        revision = await self.storage.create(key, b"v1")
        self.assertGreater(revision, before)
        kv, read_at = await self.storage.get(key)
        self.assertEqual(kv, KeyValue(key, b"v1", revision, revision))
        self.assertGreaterEqual(read_at, revision)

    @storage_test
    async def test_get_missing(self) -> None:
        revision = await self.storage.create(self.prefix + "other", b"x")
        kv, read_at = await self.storage.get(self.prefix + "missing")
        self.assertIsNone(kv)
        self.assertGreaterEqual(read_at, revision)

    @storage_test
    async def test_create_existing(self) -> None:
        key = self.prefix + "one"
        revision = await self.storage.create(key, b"v1")
        error = await self.assert_fails(self.storage.create(key, b"v2"), KeyExists)
        self.assertEqual(error.key, key)
        kv, _ = await self.storage.get(key)
        self.assertEqual(kv, KeyValue(key, b"v1", revision, revision))

    @storage_test
    async def test_empty_value(self) -> None:
        key = self.prefix + "empty"
        revision = await self.storage.create(key, b"")
        kv, _ = await self.storage.get(key)
        self.assertEqual(kv, KeyValue(key, b"", revision, revision))

    @storage_test
    async def test_update(self) -> None:
        key = self.prefix + "one"
        created = await self.storage.create(key, b"v1")
        updated = await self.storage.update(key, b"v2", created)
        self.assertGreater(updated, created)
        kv, _ = await self.storage.get(key)
        self.assertEqual(kv, KeyValue(key, b"v2", created, updated))

    @storage_test
    async def test_update_conflict(self) -> None:
        key = self.prefix + "one"
        created = await self.storage.create(key, b"v1")
        updated = await self.storage.update(key, b"v2", created)
        error = await self.assert_fails(
            self.storage.update(key, b"v3", created), Conflict
        )
        self.assertEqual(error.key, key)
        self.assertEqual(error.current, KeyValue(key, b"v2", created, updated))

    @storage_test
    async def test_update_missing(self) -> None:
        key = self.prefix + "missing"
        error = await self.assert_fails(self.storage.update(key, b"v", 1), KeyNotFound)
        self.assertEqual(error.key, key)
        kv, _ = await self.storage.get(key)
        self.assertIsNone(kv)

    @storage_test
    async def test_delete(self) -> None:
        key = self.prefix + "one"
        created = await self.storage.create(key, b"v1")
        deleted = await self.storage.delete(key, created)
        self.assertGreater(deleted, created)
        kv, read_at = await self.storage.get(key)
        self.assertIsNone(kv)
        self.assertGreaterEqual(read_at, deleted)

    @storage_test
    async def test_delete_conflict(self) -> None:
        key = self.prefix + "one"
        created = await self.storage.create(key, b"v1")
        updated = await self.storage.update(key, b"v2", created)
        error = await self.assert_fails(self.storage.delete(key, created), Conflict)
        self.assertEqual(error.current, KeyValue(key, b"v2", created, updated))
        kv, _ = await self.storage.get(key)
        self.assertEqual(kv, error.current)

    @storage_test
    async def test_delete_missing(self) -> None:
        key = self.prefix + "missing"
        error = await self.assert_fails(self.storage.delete(key, 5), KeyNotFound)
        self.assertEqual(error.key, key)

    @storage_test
    async def test_create_after_delete(self) -> None:
        key = self.prefix + "one"
        first = await self.storage.create(key, b"v1")
        await self.storage.delete(key, first)
        again = await self.storage.create(key, b"v2")
        kv, _ = await self.storage.get(key)
        self.assertEqual(kv, KeyValue(key, b"v2", again, again))

    async def _create_all(self, names: Sequence[str]) -> dict[str, int]:
        revisions = {}
        for name in names:
            revisions[name] = await self.storage.create(
                self.prefix + name, name.encode()
            )
        return revisions

    @storage_test
    async def test_list_order_and_prefix(self) -> None:
        await self._create_all(["a/b/2", "a/bc", "a/b/1", "a/b", "a/b/3/x", "a/a"])
        result = await self.storage.list(self.prefix + "a/b/")
        keys = [kv.key[len(self.prefix) :] for kv in result.kvs]
        self.assertEqual(keys, ["a/b/1", "a/b/2", "a/b/3/x"])
        self.assertEqual(
            [kv.value for kv in result.kvs], [b"a/b/1", b"a/b/2", b"a/b/3/x"]
        )
        self.assertFalse(result.more)
        self.assertEqual(result.count, 3)

    @storage_test
    async def test_list_revision(self) -> None:
        created = await self._create_all(["x"])
        result = await self.storage.list(self.prefix)
        current = await self.storage.current_revision()
        self.assertGreaterEqual(result.revision, created["x"])
        self.assertLessEqual(result.revision, current)

    @storage_test
    async def test_list_empty(self) -> None:
        result = await self.storage.list(self.prefix + "nothing/")
        self.assertEqual((list(result.kvs), result.more, result.count), ([], False, 0))

    @storage_test
    async def test_list_limit(self) -> None:
        await self._create_all(["e", "d", "c", "b", "a"])
        first = await self.storage.list(self.prefix, limit=2)
        self.assertEqual([kv.value for kv in first.kvs], [b"a", b"b"])
        self.assertTrue(first.more)
        self.assertEqual(first.count, 5)
        everything = await self.storage.list(self.prefix, limit=5)
        self.assertEqual(len(everything.kvs), 5)
        self.assertFalse(everything.more)
        self.assertEqual(everything.count, 5)

    @storage_test
    async def test_list_continue(self) -> None:
        """
        Paging: the next page starts just after the last key of the previous
        one, at the revision of the first page.
        """
        await self._create_all(["a", "b", "c", "d", "e"])
        first = await self.storage.list(self.prefix, limit=2)
        await self.storage.create(self.prefix + "bb", b"late")
        after = first.kvs[-1].key + "\0"
        second = await self.storage.list(
            self.prefix, start=after, limit=2, revision=first.revision
        )
        self.assertEqual([kv.value for kv in second.kvs], [b"c", b"d"])
        self.assertTrue(second.more)
        self.assertEqual(second.count, 3)
        self.assertEqual(second.revision, first.revision)
        last = await self.storage.list(
            self.prefix, start=second.kvs[-1].key + "\0", revision=first.revision
        )
        self.assertEqual([kv.value for kv in last.kvs], [b"e"])
        self.assertFalse(last.more)

    @storage_test
    async def test_list_start_inclusive(self) -> None:
        await self._create_all(["a", "b", "c"])
        result = await self.storage.list(self.prefix, start=self.prefix + "b")
        self.assertEqual([kv.value for kv in result.kvs], [b"b", b"c"])
        self.assertEqual(result.count, 2)

    @storage_test
    async def test_list_start_before_prefix(self) -> None:
        """
        A start key below the prefix does not widen the range.
        """
        await self.storage.create(self.prefix[:-1], b"outside")
        await self._create_all(["a"])
        result = await self.storage.list(self.prefix, start="/")
        self.assertEqual([kv.value for kv in result.kvs], [b"a"])

    @storage_test
    async def test_list_at_old_revision(self) -> None:
        revisions = await self._create_all(["a", "b"])
        a, b = self.prefix + "a", self.prefix + "b"
        updated = await self.storage.update(a, b"a2", revisions["a"])
        await self.storage.delete(b, revisions["b"])
        await self.storage.create(self.prefix + "c", b"c")
        old = await self.storage.list(self.prefix, revision=revisions["b"])
        self.assertEqual(
            list(old.kvs),
            [
                KeyValue(a, b"a", revisions["a"], revisions["a"]),
                KeyValue(b, b"b", revisions["b"], revisions["b"]),
            ],
        )
        self.assertEqual(old.revision, revisions["b"])
        middle = await self.storage.list(self.prefix, revision=updated)
        self.assertEqual([kv.value for kv in middle.kvs], [b"a2", b"b"])
        self.assertEqual(middle.count, 2)
        earliest = await self.storage.list(self.prefix, revision=revisions["a"])
        self.assertEqual([kv.value for kv in earliest.kvs], [b"a"])

    @storage_test
    async def test_list_compacted(self) -> None:
        revisions = await self._create_all(["a", "b", "c"])
        await self.storage.compact(revisions["b"])
        error = await self.assert_fails(
            self.storage.list(self.prefix, revision=revisions["a"]), Compacted
        )
        self.assertEqual(error.requested, revisions["a"])
        kept = await self.storage.list(self.prefix, revision=revisions["b"])
        self.assertEqual([kv.value for kv in kept.kvs], [b"a", b"b"])
        latest = await self.storage.list(self.prefix)
        self.assertEqual([kv.value for kv in latest.kvs], [b"a", b"b", b"c"])

    @storage_test
    async def test_compact_twice(self) -> None:
        revisions = await self._create_all(["a", "b"])
        await self.storage.compact(revisions["b"])
        await self.assert_fails(self.storage.compact(revisions["a"]), Compacted)

    @storage_test
    async def test_list_future_revision(self) -> None:
        revisions = await self._create_all(["a"])
        current = await self.storage.current_revision()
        error = await self.assert_fails(
            self.storage.list(self.prefix, revision=current + 1000), FutureRevision
        )
        self.assertEqual(error.requested, current + 1000)
        self.assertGreaterEqual(error.current, revisions["a"])
        self.assertLess(error.current, current + 1000)

    @storage_test
    async def test_compact_future_revision(self) -> None:
        current = await self.storage.current_revision()
        error = await self.assert_fails(
            self.storage.compact(current + 1000), FutureRevision
        )
        self.assertEqual(error.requested, current + 1000)

    @storage_test
    async def test_prefix_state(self) -> None:
        """
        How many keys a prefix holds at a revision and the newest of their
        mod_revisions: only writes under the prefix change it.
        """
        empty = await self.storage.current_revision()
        self.assertEqual(
            await self.storage.prefix_state(self.prefix, empty), PrefixState(0, 0)
        )
        revisions = await self._create_all(["a", "b", "c"])
        updated = await self.storage.update(self.prefix + "a", b"a2", revisions["a"])
        elsewhere = await self.storage.create(self.prefix.rstrip("/") + "-other/x", b"")
        self.assertEqual(
            await self.storage.prefix_state(self.prefix, elsewhere), PrefixState(3, updated)
        )
        self.assertEqual(
            await self.storage.prefix_state(self.prefix, revisions["b"]),
            PrefixState(2, revisions["b"]),
        )
        deleted = await self.storage.delete(self.prefix + "c", revisions["c"])
        self.assertEqual(
            await self.storage.prefix_state(self.prefix, deleted), PrefixState(2, updated)
        )
        current = await self.storage.current_revision()
        await self.assert_fails(
            self.storage.prefix_state(self.prefix, current + 1000), FutureRevision
        )

    @storage_test
    async def test_current_revision(self) -> None:
        first = await self.storage.current_revision()
        self.assertGreaterEqual(first, 1)
        written = await self.storage.create(self.prefix + "a", b"")
        second = await self.storage.current_revision()
        self.assertGreater(written, first)
        self.assertGreaterEqual(second, written)
        again = await self.storage.create(self.prefix + "b", b"")
        self.assertGreater(again, written)

    @storage_test
    async def test_check_health(self) -> None:
        """
        A reachable backend is healthy (check_health fails otherwise).
        """
        await self.storage.check_health()


class WatchConformanceMixin(_Runner):
    """
    Watches: history replay, live events, compaction and stopping.
    """

    def start_watch(self, prefix: str, from_revision: int) -> tuple[IWatch, Recorder]:
        recorder = Recorder()
        watch = self.storage.watch(prefix, from_revision, recorder)
        self.addCleanup(watch.stop)
        return watch, recorder

    @storage_test
    async def test_watch_replays_then_follows(self) -> None:
        a, b = self.prefix + "a", self.prefix + "b"
        first = await self.storage.create(a, b"a1")
        second = await self.storage.update(a, b"a2", first)
        third = await self.storage.create(b, b"b1")
        await self.storage.create(self.prefix[:-1] + "-outside", b"no")
        watch, recorder = self.start_watch(self.prefix, first)
        self.assertTrue(verifyObject(IWatch, watch))
        history = await recorder.wait_for(3)
        self.assertEqual(
            _summary(history),
            [(PUT, a, b"a1", first), (PUT, a, b"a2", second), (PUT, b, b"b1", third)],
        )
        self.assertIsNone(history[0].prev_kv)
        self.assertEqual(history[1].prev_kv, KeyValue(a, b"a1", first, first))
        live = await self.storage.update(b, b"b2", third)
        events = await recorder.wait_for(4)
        self.assertEqual(_summary(events[3:]), [(PUT, b, b"b2", live)])
        self.assertEqual(events[3].kv.create_revision, third)
        self.assertEqual(recorder.problems, [])

    @storage_test
    async def test_watch_from_middle(self) -> None:
        a = self.prefix + "a"
        first = await self.storage.create(a, b"a1")
        second = await self.storage.update(a, b"a2", first)
        _, recorder = self.start_watch(self.prefix, second)
        events = await recorder.wait_for(1)
        self.assertEqual(_summary(events), [(PUT, a, b"a2", second)])
        self.assertEqual(events[0].prev_kv, KeyValue(a, b"a1", first, first))

    @storage_test
    async def test_watch_delete(self) -> None:
        key = self.prefix + "a"
        created = await self.storage.create(key, b"v")
        _, recorder = self.start_watch(self.prefix, created + 1)
        deleted = await self.storage.delete(key, created)
        events = await recorder.wait_for(1)
        self.assertEqual(events[0].type, DELETE)
        self.assertEqual(events[0].kv.key, key)
        self.assertEqual(events[0].kv.value, b"")
        self.assertEqual(events[0].kv.mod_revision, deleted)
        self.assertEqual(events[0].prev_kv, KeyValue(key, b"v", created, created))

    @storage_test
    async def test_watch_from_now(self) -> None:
        """
        From revision 0 a watch sees only writes made after it is set up.
        """
        before = await self.storage.create(self.prefix + "old", b"old")
        _, recorder = self.start_watch(self.prefix, 0)
        await self.watch_established(recorder)
        after = await self.storage.create(self.prefix + "new", b"new")
        events = await recorder.wait_for(1)
        self.assertEqual(_summary(events), [(PUT, self.prefix + "new", b"new", after)])
        self.assertGreater(after, before)

    @storage_test
    async def test_watch_prefix_isolation(self) -> None:
        start = await self.storage.current_revision() + 1
        _, recorder = self.start_watch(self.prefix + "a/", start)
        await self.storage.create(self.prefix + "ab", b"no")
        await self.storage.create(self.prefix + "a", b"no")
        inside = await self.storage.create(self.prefix + "a/x", b"yes")
        events = await recorder.wait_for(1)
        self.assertEqual(_summary(events), [(PUT, self.prefix + "a/x", b"yes", inside)])

    @storage_test
    async def test_watch_compacted(self) -> None:
        first = await self.storage.create(self.prefix + "a", b"a")
        second = await self.storage.create(self.prefix + "b", b"b")
        await self.storage.compact(second)
        watch, recorder = self.start_watch(self.prefix, first)
        error = await self.assert_fails(watch.done, Compacted)
        self.assertEqual(error.requested, first)
        self.assertGreaterEqual(error.compact_revision, second)
        self.assertEqual(recorder.events, [])

    @storage_test
    async def test_watch_stop(self) -> None:
        """
        A stopped watch fires C{done} with None, stopping again does nothing,
        and it gets no more events (a second watch shows the write happened).
        """
        start = await self.storage.current_revision() + 1
        watch, stopped = self.start_watch(self.prefix, start)
        _, running = self.start_watch(self.prefix, start)
        outcome: list[object] = []
        watch.done.addCallback(outcome.append)
        watch.stop()
        await watch.done
        self.assertEqual(outcome, [None])
        watch.stop()
        written = await self.storage.create(self.prefix + "a", b"a")
        events = await running.wait_for(1)
        self.assertEqual(events[0].kv.mod_revision, written)
        self.assertEqual(stopped.batches, [])

    @storage_test
    async def test_watch_many_revisions(self) -> None:
        """
        A longer history arrives complete, in order, once.
        """
        key = self.prefix + "counter"
        first = revision = await self.storage.create(key, b"0")
        for count in range(1, 30):
            revision = await self.storage.update(key, str(count).encode(), revision)
        _, recorder = self.start_watch(self.prefix, first)
        events = await recorder.wait_for(30)
        self.assertEqual(
            [e.kv.value for e in events], [str(n).encode() for n in range(30)]
        )
        self.assertEqual(events[-1].kv.mod_revision, revision)
        self.assertEqual(recorder.problems, [])


class _SynchronousRunner(SynchronousTestCase):
    def run_storage_test(self, test: Deferred[None]) -> Deferred[None] | None:
        self.successResultOf(test)
        return None

    def watch_established(self, recorder: Recorder) -> Deferred[None]:
        return succeed(None)


class MemoryStorageConformanceTests(
    StorageConformanceMixin, WatchConformanceMixin, _SynchronousRunner
):
    def make_storage(self) -> IStorage:
        storage = MemoryStorage()
        self.addCleanup(storage.close)
        return storage


# One etcd per class; pytest calls tearDownClass, and the exit hook covers
# runners that do not.
class _EtcdRunner(TestCase):
    timeout = 60
    etcd: EtcdServer | None = None

    @classmethod
    def etcd_server(cls) -> EtcdServer:
        if cls.etcd is None:
            cls.etcd = EtcdServer.start()
            atexit.register(cls.etcd.stop)
        return cls.etcd

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.etcd is not None:
            cls.etcd.stop()
            cls.etcd = None

    def run_storage_test(self, test: Deferred[None]) -> Deferred[None] | None:
        return test

    def watch_established(self, recorder: Recorder) -> Deferred[list[Event]]:
        """
        etcd registers a watch some time after the request: wait for its
        first progress notification (sent every second by our test etcd).
        """
        return recorder.wait_for_batches(1)


class EtcdStorageConformanceTests(
    StorageConformanceMixin, WatchConformanceMixin, _EtcdRunner
):
    def make_storage(self) -> IStorage:
        storage = EtcdStorage(reactor, [self.etcd_server().url], request_timeout=5.0)
        self.addCleanup(storage.close)
        return storage


class MemoryStorageTests(SynchronousTestCase):
    """
    What only the in-memory backend promises: answers and watch callbacks
    happen synchronously, and progress notifications follow its clock.
    """

    def test_fresh_store_is_at_revision_one(self) -> None:
        self.assertEqual(self.successResultOf(MemoryStorage().current_revision()), 1)

    def test_callbacks_are_synchronous(self) -> None:
        storage = MemoryStorage()
        recorder = Recorder()
        storage.watch("/a/", 0, recorder)
        revision = self.successResultOf(storage.create("/a/x", b"1"))
        self.assertEqual(_summary(recorder.events), [(PUT, "/a/x", b"1", revision)])

    def test_write_from_callback(self) -> None:
        """
        A write made inside a callback reaches every watch after the write
        that caused it.
        """
        storage = MemoryStorage()
        first, second = Recorder(), Recorder()

        def reacting(events: Sequence[Event], revision: int) -> None:
            first(events, revision)
            if events and events[0].kv.key == "/a/x":
                storage.create("/a/y", b"2")

        storage.watch("/a/", 0, reacting)
        storage.watch("/a/", 0, second)
        storage.create("/a/x", b"1")
        expected = [(PUT, "/a/x", b"1", 2), (PUT, "/a/y", b"2", 3)]
        self.assertEqual(_summary(first.events), expected)
        self.assertEqual(_summary(second.events), expected)

    def test_failing_callback_ends_watch(self) -> None:
        storage = MemoryStorage()

        def failing(events: Sequence[Event], revision: int) -> None:
            raise ZeroDivisionError()

        watch = storage.watch("/a/", 0, failing)
        self.successResultOf(storage.create("/a/x", b"1"))
        self.failureResultOf(watch.done, ZeroDivisionError)

    def test_progress_with_clock(self) -> None:
        clock = Clock()
        storage = MemoryStorage(clock, progress_interval=2.0)
        recorder = Recorder()
        watch = storage.watch("/a/", 0, recorder)
        storage.create("/b/x", b"elsewhere")
        clock.advance(2.0)
        self.assertEqual(recorder.batches, [([], 2)])
        watch.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_notify_progress(self) -> None:
        storage = MemoryStorage()
        recorder = Recorder()
        storage.watch("/a/", 0, recorder)
        storage.create("/b/x", b"elsewhere")
        storage.notify_progress()
        self.assertEqual(recorder.batches, [([], 2)])

    def test_close_stops_watches(self) -> None:
        storage = MemoryStorage()
        watch = storage.watch("/a/", 0, Recorder())
        self.successResultOf(storage.close())
        self.assertIsNone(self.successResultOf(watch.done))


class _SqliteRunner(TestCase):
    timeout = 30

    def run_storage_test(self, test: Deferred[None]) -> Deferred[None] | None:
        return test

    def watch_established(self, recorder: Recorder) -> Deferred[None]:
        """
        A watch from now starts at the revision its storage has seen.
        """
        return succeed(None)


class SqliteStorageConformanceTests(
    StorageConformanceMixin, WatchConformanceMixin, _SqliteRunner
):
    def make_storage(self) -> IStorage:
        data_dir = tempfile.mkdtemp(prefix="wardled-sqlite-")
        self.addCleanup(shutil.rmtree, data_dir, ignore_errors=True)
        storage = SqliteStorage.open(reactor, data_dir)
        self.addCleanup(storage.close)
        return storage
