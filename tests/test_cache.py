# -*- test-case-name: tests.test_cache -*-
"""
Tests for L{wardled.cache}: the multiplexer over L{MemoryStorage}, the
per-resource caches it feeds and their watchers, on a L{Clock}.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from wardled.cache.cacher import Cacher, restamped
from wardled.cache.interfaces import (
    ADDED,
    DELETED,
    ENCODE_COUNTER,
    MODIFIED,
    CachedObject,
    CacheEvent,
    FellBehind,
    ICacher,
    IWatcher,
    NotReady,
    TooLarge,
    TooOld,
)
from wardled.cache.multiplexer import (
    CATCH_UP_DELAY,
    CATCH_UP_INTERVAL,
    WatchMultiplexer,
    backoff_delay,
)
from wardled.cache.watcher import CacheWatcher
from wardled.storage.interfaces import (
    Compacted,
    IWatch,
    ListResult,
    StorageError,
    Unavailable,
    WatchCallback,
)
from wardled.storage.memory import MemoryStorage

GROUP = "/registry/wardle.example.com/"
FLUNDERS = GROUP + "wardle.example.com/flunders/"
FISCHERS = GROUP + "wardle.example.com/fischers/"


def decode(key: str, value: bytes, revision: int) -> CachedObject:
    """
    A stored test object: JSON with C{metadata.name}, C{namespace},
    C{labels}.
    """
    obj = json.loads(value)
    metadata = obj.setdefault("metadata", {})
    metadata["resourceVersion"] = str(revision)
    return CachedObject(
        key=key,
        namespace=metadata.get("namespace", ""),
        name=metadata["name"],
        labels=metadata.get("labels", {}),
        revision=revision,
        obj=obj,
    )


def flunder(namespace: str, name: str, **labels: str) -> bytes:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = labels
    return json.dumps({"metadata": metadata, "spec": {}}).encode()


def red(obj: CachedObject) -> bool:
    return obj.labels.get("color") == "red"


def seen(pairs: Sequence[tuple[str, CacheEvent]]) -> list[tuple[str, str, int]]:
    """
    (effective type, name, revision) of taken events.
    """
    return [(kind, event.current.name, event.revision) for kind, event in pairs]


class RecordingStorage(MemoryStorage):
    """
    A L{MemoryStorage} whose watches can be failed from the test, and whose
    lists can be made to fail.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.watches: list[Any] = []
        self.list_failures: list[StorageError] = []
        self.lists = 0

    def watch(self, prefix: str, from_revision: int, callback: WatchCallback) -> IWatch:
        watch = super().watch(prefix, from_revision, callback)
        self.watches.append(watch)
        return watch

    def list(
        self, prefix: str, start: str | None = None, limit: int = 0, revision: int = 0
    ) -> Deferred[ListResult]:
        self.lists += 1
        if self.list_failures:
            failed: Deferred[ListResult] = Deferred()
            failed.errback(self.list_failures.pop(0))
            return failed
        return super().list(prefix, start, limit, revision)


class CacheTestCase(SynchronousTestCase):
    """
    A started multiplexer over a L{RecordingStorage} on a L{Clock}, with
    caches for flunders and fischers.
    """

    history_size = 100
    start = True

    def setUp(self) -> None:
        self.clock = Clock()
        self.storage = RecordingStorage()
        self.mux = WatchMultiplexer(self.storage, GROUP, self.clock, page_size=2)
        self.flunders = self.mux.register(FLUNDERS, decode, self.history_size)
        self.fischers = self.mux.register(FISCHERS, decode, self.history_size)
        self.addCleanup(self.stop)
        if self.start:
            self.mux.startService()

    def stop(self) -> None:
        if self.mux.running:
            self.successResultOf(self.mux.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def create(self, namespace: str, name: str, **labels: str) -> int:
        key = f"{FLUNDERS}{namespace}/{name}"
        return self.successResultOf(
            self.storage.create(key, flunder(namespace, name, **labels))
        )

    def update(self, namespace: str, name: str, revision: int, **labels: str) -> int:
        key = f"{FLUNDERS}{namespace}/{name}"
        return self.successResultOf(
            self.storage.update(key, flunder(namespace, name, **labels), revision)
        )

    def delete(self, namespace: str, name: str, revision: int) -> int:
        key = f"{FLUNDERS}{namespace}/{name}"
        return self.successResultOf(self.storage.delete(key, revision))

    def watch(
        self,
        from_revision: int | None = None,
        prefix: str = FLUNDERS,
        capacity: int = 100,
        predicate: Callable[[CachedObject], bool] | None = None,
    ) -> CacheWatcher:
        watcher = self.flunders.watch(
            prefix, from_revision, capacity=capacity, predicate=predicate
        )
        self.addCleanup(watcher.stop)
        return watcher


class SyncTests(CacheTestCase):
    """
    The first list, readiness and reads from memory.
    """

    start = False

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(ICacher, self.flunders))
        self.mux.startService()
        self.assertTrue(verifyObject(IWatcher, self.watch()))

    def test_initial_sync(self) -> None:
        """
        The caches hold what was stored before the start (listed in pages),
        each its own resource's keys, at the store's revision.
        """
        created = [self.create("ns", name) for name in ("c", "a", "b")]
        fischer = self.successResultOf(
            self.storage.create(FISCHERS + "f", flunder("", "f"))
        )
        self.successResultOf(self.storage.create(GROUP + "other/x", b"{}"))
        self.assertFalse(self.flunders.ready)
        self.mux.startService()
        self.assertTrue(self.mux.ready)
        self.assertEqual(self.mux.syncs, 1)
        self.assertGreater(self.storage.lists, 1)
        objects, revision = self.flunders.list(FLUNDERS)
        self.assertEqual(revision, self.storage.revision)
        self.assertEqual([obj.name for obj in objects], ["a", "b", "c"])
        self.assertEqual(
            [obj.revision for obj in objects], [created[1], created[2], created[0]]
        )
        fischers, _ = self.fischers.list(FISCHERS)
        self.assertEqual(
            [(obj.name, obj.revision) for obj in fischers], [("f", fischer)]
        )
        found = self.flunders.get(FLUNDERS + "ns/a")
        assert found is not None
        self.assertEqual(found.obj["metadata"]["resourceVersion"], str(created[1]))
        self.assertIsNone(self.flunders.get(FLUNDERS + "ns/zzz"))

    def test_not_ready_before_start(self) -> None:
        """
        Before the first sync a watch is refused and readiness waits.
        """
        self.assertRaises(NotReady, self.flunders.watch, FLUNDERS, None, capacity=10)
        waiting = self.flunders.wait_until_ready(5.0)
        self.assertNoResult(waiting)
        self.mux.startService()
        self.assertIsNone(self.successResultOf(waiting))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertIsNone(self.successResultOf(self.flunders.wait_until_ready(5.0)))

    def test_ready_timeout(self) -> None:
        waiting = self.fischers.wait_until_ready(10.0)
        self.clock.advance(9.9)
        self.assertNoResult(waiting)
        self.clock.advance(0.1)
        self.failureResultOf(waiting, NotReady)
        self.assertEqual(self.fischers.pending_waits, 0)

    def test_list_failure_retries_with_backoff(self) -> None:
        """
        A failing first list is retried at once, then after growing delays.
        """
        self.storage.list_failures = [Unavailable("down")] * 3
        self.mux.startService()
        self.assertEqual(self.storage.lists, 2)
        self.assertFalse(self.flunders.ready)
        self.clock.advance(0.09)
        self.assertEqual(self.storage.lists, 2)
        self.clock.advance(0.02)
        self.assertEqual(self.storage.lists, 3)
        self.clock.advance(0.18)
        self.assertFalse(self.flunders.ready)
        self.clock.advance(0.02)
        self.assertTrue(self.flunders.ready)

    def test_register_after_start(self) -> None:
        self.mux.startService()
        self.assertRaises(RuntimeError, self.mux.register, FLUNDERS + "x/", decode)

    def test_register_outside_prefix(self) -> None:
        self.assertRaises(ValueError, self.mux.register, "/elsewhere/", decode)

    def test_backoff_delay(self) -> None:
        self.assertEqual(
            [backoff_delay(n, 0.5, 3.0) for n in range(6)],
            [0.0, 0.5, 1.0, 2.0, 3.0, 3.0],
        )


class ListTests(CacheTestCase):
    def test_sorted_and_namespaced(self) -> None:
        for namespace, name in [("b", "y"), ("a", "z"), ("b", "x"), ("ab", "w")]:
            self.create(namespace, name)
        everything, _ = self.flunders.list(FLUNDERS)
        self.assertEqual(
            [(o.namespace, o.name) for o in everything],
            [("a", "z"), ("ab", "w"), ("b", "x"), ("b", "y")],
        )
        in_a, revision = self.flunders.list(FLUNDERS + "a/")
        self.assertEqual([o.name for o in in_a], ["z"])
        self.assertEqual(revision, self.storage.revision)
        in_b, _ = self.flunders.list(FLUNDERS + "b/")
        self.assertEqual([o.name for o in in_b], ["x", "y"])
        self.assertEqual(self.flunders.list(FLUNDERS + "c/")[0], [])

    def test_list_follows_changes(self) -> None:
        first = self.create("ns", "b")
        self.create("ns", "a")
        self.delete("ns", "b", first)
        self.create("ns", "c")
        objects, revision = self.flunders.list(FLUNDERS)
        self.assertEqual([o.name for o in objects], ["a", "c"])
        self.assertEqual(revision, self.storage.revision)
        self.assertEqual(self.flunders.size, 2)


class EventTests(CacheTestCase):
    """
    Storage writes become shared events with previous and current states.
    """

    def test_from_now(self) -> None:
        """
        A watch from the current state opens with a synthetic ADDED per
        object, then sees ADDED, MODIFIED and DELETED with the right
        revisions and states.
        """
        existing = self.create("ns", "old")
        watcher = self.watch()
        self.assertEqual(watcher.initial_events, 1)
        self.assertEqual(watcher.start_revision, existing)
        created = self.create("ns", "a", color="red")
        updated = self.update("ns", "a", created, color="blue")
        deleted = self.delete("ns", "a", updated)
        taken = watcher.take(10)
        self.assertEqual(
            seen(taken),
            [
                (ADDED, "old", existing),
                (ADDED, "a", created),
                (MODIFIED, "a", updated),
                (DELETED, "a", deleted),
            ],
        )
        _, added = taken[1]
        _, modified = taken[2]
        _, removed = taken[3]
        self.assertIsNone(added.previous)
        self.assertIs(modified.previous, added.current)
        self.assertEqual(modified.current.labels, {"color": "blue"})
        self.assertIs(removed.previous, modified.current)
        self.assertEqual(removed.current.revision, deleted)
        self.assertEqual(
            removed.current.obj["metadata"]["resourceVersion"], str(deleted)
        )
        self.assertEqual(removed.current.labels, {"color": "blue"})
        # The shared last state was copied, not stamped in place.
        self.assertEqual(
            modified.current.obj["metadata"]["resourceVersion"], str(updated)
        )
        self.assertEqual(watcher.revision, deleted)
        self.assertEqual(watcher.pending(), 0)

    def test_restamped_copies(self) -> None:
        last = decode("k", flunder("ns", "n"), 4)
        stamped = restamped(last, 9)
        self.assertEqual(
            (stamped.revision, stamped.obj["metadata"]["resourceVersion"]), (9, "9")
        )
        self.assertEqual(last.obj["metadata"]["resourceVersion"], "4")
        self.assertEqual(stamped.obj["spec"], last.obj["spec"])

    def test_take_limit_and_wakeup(self) -> None:
        """
        The wakeup is called when the queue goes from empty to non-empty,
        and take() hands out at most its limit, oldest first.
        """
        watcher = self.watch()
        wakeups: list[int] = []
        watcher.set_wakeup(lambda: wakeups.append(watcher.pending()))
        first = self.create("ns", "a")
        second = self.create("ns", "b")
        self.assertEqual(wakeups, [1])
        self.assertEqual(watcher.pending(), 2)
        self.assertEqual(seen(watcher.take(1)), [(ADDED, "a", first)])
        self.assertEqual(seen(watcher.take(5)), [(ADDED, "b", second)])
        self.assertEqual(watcher.take(5), [])
        self.create("ns", "c")
        self.assertEqual(wakeups, [1, 1])

    def test_failing_wakeup(self) -> None:
        """
        A wakeup that raises is logged; the other watchers still get the
        event.
        """
        broken = self.watch()

        def explode() -> None:
            raise RuntimeError("client bug")

        broken.set_wakeup(explode)
        healthy = self.watch()
        self.create("ns", "a")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(healthy.pending(), 1)
        self.assertEqual(broken.pending(), 1)

    def test_prefix(self) -> None:
        """
        A namespace watch sees its namespace only, but its revision follows
        every event.
        """
        watcher = self.watch(prefix=FLUNDERS + "a/")
        mine = self.create("a", "x")
        later = self.create("b", "x")
        self.assertEqual(seen(watcher.take(10)), [(ADDED, "x", mine)])
        self.assertEqual(watcher.revision, later)

    def test_progress_raises_revision(self) -> None:
        """
        Writes elsewhere in the store reach the caches by progress
        notifications; a watcher's revision follows.
        """
        watcher = self.watch()
        start = watcher.revision
        self.successResultOf(self.storage.create("/elsewhere/x", b"{}"))
        self.assertEqual(self.flunders.revision, start)
        self.storage.notify_progress()
        self.assertEqual(self.flunders.revision, self.storage.revision)
        self.assertEqual(self.fischers.revision, self.storage.revision)
        self.assertEqual(watcher.revision, self.storage.revision)
        self.assertEqual(watcher.pending(), 0)

    def test_other_resource_raises_revision(self) -> None:
        """
        A Fischer write raises the flunder cache's revision too: the whole
        group passes through one watch.
        """
        written = self.successResultOf(
            self.storage.create(FISCHERS + "f", flunder("", "f"))
        )
        self.assertEqual(self.flunders.revision, written)
        self.assertEqual(self.fischers.get(FISCHERS + "f").name, "f")  # type: ignore[union-attr]

    def test_undecodable(self) -> None:
        """
        A key that does not decode is logged and skipped; its delete is
        still reported from the stored last state when that decodes.
        """
        watcher = self.watch()
        key = FLUNDERS + "ns/bad"
        broken = self.successResultOf(self.storage.create(key, b"not json"))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertIsNone(self.flunders.get(key))
        self.assertEqual(self.flunders.revision, broken)
        self.assertEqual(watcher.pending(), 0)
        self.successResultOf(self.storage.delete(key, broken))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(watcher.pending(), 0)


class HistoryTests(CacheTestCase):
    """
    Watches that resume from a revision.
    """

    history_size = 5

    def test_catch_up(self) -> None:
        """
        A watch from N replays every event after N in order, none twice,
        then follows live events.
        """
        a = self.create("ns", "a")
        b = self.create("ns", "b")
        a2 = self.update("ns", "a", a)
        watcher = self.watch(from_revision=b)
        self.assertEqual(watcher.initial_events, 0)
        self.assertEqual(watcher.start_revision, b)
        c = self.create("ns", "c")
        self.assertEqual(seen(watcher.take(10)), [(MODIFIED, "a", a2), (ADDED, "c", c)])
        self.assertEqual(watcher.take(10), [])

    def test_from_current_revision(self) -> None:
        self.create("ns", "a")
        watcher = self.watch(from_revision=self.storage.revision)
        self.assertEqual(watcher.pending(), 0)
        b = self.create("ns", "b")
        self.assertEqual(seen(watcher.take(10)), [(ADDED, "b", b)])

    def test_from_future_revision(self) -> None:
        """
        A watch from a revision the cache has not reached skips events up
        to it.
        """
        future = self.storage.revision + 2
        watcher = self.watch(from_revision=future)
        self.assertEqual(watcher.revision, future)
        self.create("ns", "a")
        self.create("ns", "b")
        c = self.create("ns", "c")
        self.assertEqual(seen(watcher.take(10)), [(ADDED, "c", c)])

    def test_too_old_before_sync(self) -> None:
        """
        Before any event was dropped, history starts at the list's revision.
        """
        synced = self.flunders.oldest_revision
        self.assertEqual(synced, self.storage.revision)
        error = self.assertRaises(
            TooOld, self.flunders.watch, FLUNDERS, synced - 1, capacity=5
        )
        self.assertEqual(
            str(error), f"too old resource version: {synced - 1} ({synced})"
        )
        self.assertEqual((error.requested, error.oldest), (synced - 1, synced))

    def test_too_old_after_window(self) -> None:
        """
        Once the ring drops events, the oldest replayable revision is the
        first kept event's revision minus one.
        """
        revisions = [self.create("ns", f"o{n}") for n in range(7)]
        oldest = revisions[2] - 1
        self.assertEqual(self.flunders.oldest_revision, oldest)
        error = self.assertRaises(
            TooOld, self.flunders.watch, FLUNDERS, oldest - 1, capacity=5
        )
        self.assertEqual(
            str(error), f"too old resource version: {oldest - 1} ({oldest})"
        )
        watcher = self.watch(from_revision=oldest)
        self.assertEqual([e.revision for _, e in watcher.take(10)], revisions[2:])


class WaitTests(CacheTestCase):
    """
    Waiting for revisions and consistent reads.
    """

    def test_wait_for_revision(self) -> None:
        target = self.storage.revision + 2
        waiting = self.flunders.wait_for_revision(target, 3.0)
        self.create("ns", "a")
        self.assertNoResult(waiting)
        self.create("ns", "b")
        self.assertIsNone(self.successResultOf(waiting))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.flunders.pending_waits, 0)

    def test_wait_for_reached_revision(self) -> None:
        self.assertIsNone(
            self.successResultOf(
                self.flunders.wait_for_revision(self.storage.revision, 3.0)
            )
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_too_large(self) -> None:
        current = self.storage.revision
        waiting = self.flunders.wait_for_revision(current + 10, 3.0)
        self.clock.advance(2.9)
        self.assertNoResult(waiting)
        self.clock.advance(0.1)
        failure = self.failureResultOf(waiting, TooLarge)
        self.assertEqual(
            str(failure.value),
            f"Too large resource version: {current + 10}, current: {current}",
        )
        self.assertEqual(self.flunders.pending_waits, 0)
        self.create("ns", "a")

    def test_cancel_wait(self) -> None:
        waiting = self.flunders.wait_for_revision(self.storage.revision + 1, 3.0)
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.create("ns", "a")

    def test_waits_in_order(self) -> None:
        start = self.storage.revision
        later = self.flunders.wait_for_revision(start + 2, 3.0)
        sooner = self.flunders.wait_for_revision(start + 1, 3.0)
        self.create("ns", "a")
        self.successResultOf(sooner)
        self.assertNoResult(later)
        self.create("ns", "b")
        self.successResultOf(later)

    def test_consistent_revision(self) -> None:
        self.create("ns", "a")
        self.assertEqual(
            self.successResultOf(self.flunders.consistent_revision()),
            self.storage.revision,
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_consistent_revision_catches_up_with_writes_elsewhere(self) -> None:
        """
        A write outside the group raises the store's revision without an
        event for the group's watch: the multiplexer asks the storage
        whether anything under the prefix changed and, nothing having
        changed, brings the caches to the store's revision at once.
        Concurrent reads share one check.
        """
        self.create("ns", "a")
        self.successResultOf(self.storage.create("/elsewhere/a", b"{}"))
        self.successResultOf(self.storage.create("/elsewhere/b", b"{}"))
        lists = self.storage.lists
        first = self.flunders.consistent_revision()
        second = self.fischers.consistent_revision()
        self.assertNoResult(first)
        self.clock.advance(CATCH_UP_DELAY)
        self.assertEqual(self.successResultOf(first), self.storage.revision)
        self.assertEqual(self.successResultOf(second), self.storage.revision)
        self.assertEqual(self.storage.lists, lists + 1)
        self.assertEqual(
            (self.flunders.revision, self.fischers.revision),
            (self.storage.revision, self.storage.revision),
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_catch_up_checks_are_spaced(self) -> None:
        """
        Each check reads the whole prefix, so under a stream of writes
        elsewhere checks start at most once per L{CATCH_UP_INTERVAL}; a
        read in between waits for the next one.
        """
        self.successResultOf(self.storage.create("/elsewhere/a", b"{}"))
        first = self.flunders.consistent_revision()
        self.clock.advance(CATCH_UP_DELAY)
        self.successResultOf(first)
        lists = self.storage.lists
        self.successResultOf(self.storage.create("/elsewhere/b", b"{}"))
        waiting = self.flunders.consistent_revision()
        self.assertNoResult(waiting)
        self.clock.advance(CATCH_UP_INTERVAL - 0.001)
        self.assertNoResult(waiting)
        self.clock.advance(0.001)
        self.assertEqual(self.successResultOf(waiting), self.storage.revision)
        self.assertEqual(self.storage.lists, lists + 1)

    def test_catch_up_not_needed_after_all(self) -> None:
        """
        A read found behind waits L{CATCH_UP_DELAY} for the watch before
        the check starts: when the events (or a progress notification)
        arrive meanwhile, no check is made.
        """
        self.successResultOf(self.storage.create("/elsewhere/a", b"{}"))
        lists = self.storage.lists
        waiting = self.flunders.consistent_revision()
        self.storage.notify_progress()
        self.assertEqual(self.successResultOf(waiting), self.storage.revision)
        self.clock.advance(CATCH_UP_DELAY)
        self.assertEqual(self.storage.lists, lists)

    def test_stop_cancels_a_spaced_check(self) -> None:
        self.successResultOf(self.storage.create("/elsewhere/a", b"{}"))
        self.successResultOf(self.storage.create("/elsewhere/b", b"{}"))
        waiting = self.flunders.consistent_revision()
        self.successResultOf(self.mux.stopService())
        self.failureResultOf(waiting, NotReady)

    def test_catch_up_refused_when_the_prefix_changed(self) -> None:
        """
        When the prefix holds what the caches do not (here a key of no
        cached resource), the check cannot vouch for the caches: the read
        waits for the watch (a progress notification) or its deadline.
        """
        self.successResultOf(self.storage.create(GROUP + "others/x", b"{}"))
        self.successResultOf(self.storage.create("/elsewhere/a", b"{}"))
        waiting = self.flunders.consistent_revision()
        self.assertNoResult(waiting)
        self.storage.notify_progress()
        self.assertEqual(self.successResultOf(waiting), self.storage.revision)
        self.successResultOf(self.storage.create("/elsewhere/b", b"{}"))
        timing_out = self.flunders.consistent_revision()
        self.clock.advance(1.0)
        self.failureResultOf(timing_out, TooLarge)

    def test_catch_up_failure_waits_out_the_deadline(self) -> None:
        self.successResultOf(self.storage.create("/elsewhere/a", b"{}"))
        self.storage.list_failures.append(Unavailable("etcd is away"))
        timing_out = self.flunders.consistent_revision()
        self.assertNoResult(timing_out)
        self.clock.advance(1.0)
        self.failureResultOf(timing_out, TooLarge)
        self.flushLoggedErrors()

    def test_stop_fails_waits(self) -> None:
        waiting = self.flunders.wait_for_revision(self.storage.revision + 1, 3.0)
        self.successResultOf(self.mux.stopService())
        self.failureResultOf(waiting, NotReady)


class PredicateTests(CacheTestCase):
    def test_transitions(self) -> None:
        """
        Objects that start matching are ADDED, that stop matching DELETED
        (with their new state), deletions only of matching objects.
        """
        watcher = self.watch(predicate=red)
        blue = self.create("ns", "a", color="blue")
        to_red = self.update("ns", "a", blue, color="red")
        still_red = self.update("ns", "a", to_red, color="red", size="xl")
        to_blue = self.update("ns", "a", still_red, color="blue")
        self.delete("ns", "a", to_blue)
        b = self.create("ns", "b", color="red")
        gone = self.delete("ns", "b", b)
        taken = watcher.take(10)
        self.assertEqual(
            seen(taken),
            [
                (ADDED, "a", to_red),
                (MODIFIED, "a", still_red),
                (DELETED, "a", to_blue),
                (ADDED, "b", b),
                (DELETED, "b", gone),
            ],
        )
        # Stopping to match is reported with the new state.
        _, event = taken[2]
        self.assertEqual(
            (event.type, event.current.labels), (MODIFIED, {"color": "blue"})
        )

    def test_initial_and_replayed_events_filtered(self) -> None:
        self.create("ns", "blue", color="blue")
        red_rev = self.create("ns", "red", color="red")
        fresh = self.watch(predicate=red)
        self.assertEqual(fresh.initial_events, 1)
        self.assertEqual(seen(fresh.take(10)), [(ADDED, "red", red_rev)])
        resumed = self.watch(from_revision=self.flunders.oldest_revision, predicate=red)
        self.assertEqual(seen(resumed.take(10)), [(ADDED, "red", red_rev)])


class SlowWatcherTests(CacheTestCase):
    def test_slow_watcher_is_ended(self) -> None:
        """
        A watcher whose client stops taking is ended once it holds its
        capacity of live events; the others keep receiving everything.
        """
        self.create("ns", "before")
        slow = self.watch(capacity=3)
        fast = self.watch(capacity=3)
        ends: list[Failure] = []
        slow.ended.addErrback(ends.append)
        wakeups: list[str] = []
        slow.set_wakeup(lambda: wakeups.append("slow"))
        slow.take(1)
        fast.take(1)
        revisions = []
        for n in range(6):
            revisions.append(self.create("ns", f"o{n}"))
            self.assertEqual(seen(fast.take(10)), [(ADDED, f"o{n}", revisions[-1])])
        self.assertEqual(len(ends), 1)
        self.assertIsInstance(ends[0].value, FellBehind)
        self.assertIn("fell too far behind", str(ends[0].value))
        self.assertEqual(wakeups, ["slow", "slow"])
        self.assertEqual(slow.pending(), 0)
        self.assertTrue(slow.finished)
        self.assertEqual(self.flunders.watcher_count, 1)
        self.assertEqual(slow.revision, revisions[3])
        self.failureResultOf(slow.ended, FellBehind)

    def test_initial_events_do_not_count(self) -> None:
        """
        A large first page of synthetic ADDEDs does not end a watcher with
        a small capacity.
        """
        for n in range(10):
            self.create("ns", f"o{n}")
        watcher = self.watch(capacity=2)
        self.create("ns", "x")
        self.assertFalse(watcher.finished)
        self.assertEqual(watcher.pending(), 11)
        self.assertEqual(len(watcher.take(100)), 11)

    def test_replayed_events_do_not_count(self) -> None:
        start = self.storage.revision
        for n in range(5):
            self.create("ns", f"o{n}")
        watcher = self.watch(from_revision=start, capacity=2)
        self.create("ns", "x")
        self.assertFalse(watcher.finished)
        watcher.take(3)
        self.create("ns", "y")
        self.assertFalse(watcher.finished)
        self.create("ns", "z")
        self.assertTrue(watcher.finished)

    def test_capacity_must_be_positive(self) -> None:
        self.assertRaises(ValueError, self.flunders.watch, FLUNDERS, None, capacity=0)


class FanOutTests(CacheTestCase):
    def test_shared_events_and_encodings(self) -> None:
        """
        A thousand watchers get the very same event objects, and encoding
        an event for all of them computes it once.
        """
        self.create("ns", "existing")
        watchers = [self.watch() for _ in range(1000)]
        first = self.create("ns", "a")
        self.update("ns", "a", first)
        before = ENCODE_COUNTER.count
        batches = [watcher.take(10) for watcher in watchers]
        encoded = set()
        for batch in batches:
            self.assertEqual(len(batch), 3)
            for position, (kind, event) in enumerate(batch):
                self.assertIs(event, batches[0][position][1])
                encoded.add(event.encoded((kind, "v1", "json"), lambda: b"x" * 3))
        self.assertEqual(ENCODE_COUNTER.count - before, 3)
        self.assertEqual(encoded, {b"xxx"})
        # The synthetic ADDED of an unchanged object is shared with later
        # watches too.
        late = self.watch()
        existing = {e.current.name: e for _, e in late.take(10)}["existing"]
        self.assertEqual(batches[0][0][1].current.name, "existing")
        self.assertIs(existing, batches[0][0][1])


class StopTests(CacheTestCase):
    def test_stop_is_idempotent(self) -> None:
        watcher = self.watch()
        ended = watcher.ended
        self.create("ns", "a")
        wakeups: list[None] = []
        watcher.set_wakeup(lambda: wakeups.append(None))
        watcher.stop()
        watcher.stop()
        self.assertIsNone(self.successResultOf(ended))
        self.assertIsNone(self.successResultOf(watcher.ended))
        self.assertEqual(wakeups, [])
        self.assertEqual(watcher.pending(), 0)
        self.assertEqual(self.flunders.watcher_count, 0)
        self.create("ns", "b")
        self.assertEqual(watcher.take(5), [])

    def test_cancel_ended(self) -> None:
        watcher = self.watch()
        ended = watcher.ended
        ended.cancel()
        self.failureResultOf(ended, CancelledError)
        watcher.stop()

    def test_service_stop_ends_watchers(self) -> None:
        watcher = self.watch()
        wakeups: list[None] = []
        watcher.set_wakeup(lambda: wakeups.append(None))
        self.successResultOf(self.mux.stopService())
        self.assertIsNone(self.successResultOf(watcher.ended))
        self.assertEqual(wakeups, [None])
        self.assertFalse(self.flunders.ready)
        self.assertEqual(self.storage.watches[-1].done.called, True)
        # Writes after the stop reach no cache.
        self.create("ns", "late")
        self.assertIsNone(self.flunders.get(FLUNDERS + "ns/late"))


class HeldListStorage(MemoryStorage):
    """
    A L{MemoryStorage} whose lists wait until the test lets them through.
    """

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Deferred[ListResult]] = []
        self.cancelled = 0

    def list(
        self, prefix: str, start: str | None = None, limit: int = 0, revision: int = 0
    ) -> Deferred[ListResult]:
        def cancelled(_: Deferred[ListResult]) -> None:
            self.cancelled += 1

        held: Deferred[ListResult] = Deferred(cancelled)
        self.held.append(held)
        return held

    def release(self) -> None:
        held = self.held.pop(0)
        held.callback(self._listed())

    def _listed(self) -> ListResult:
        results: list[ListResult] = []
        MemoryStorage.list(self, GROUP).addCallback(results.append)
        return results[0]


class LifeCycleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.storage = HeldListStorage()
        self.mux = WatchMultiplexer(self.storage, GROUP, self.clock)
        self.flunders = self.mux.register(FLUNDERS, decode)

    def test_stop_while_listing(self) -> None:
        """
        Stopping cancels the list in flight; nothing is retried.
        """
        self.mux.startService()
        self.assertEqual(len(self.storage.held), 1)
        self.successResultOf(self.mux.stopService())
        self.assertEqual(self.storage.cancelled, 1)
        self.assertFalse(self.flunders.ready)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.mux.syncs, 0)

    def test_restart(self) -> None:
        """
        A stopped multiplexer starts again from a fresh list.
        """
        self.mux.startService()
        self.storage.release()
        self.assertTrue(self.flunders.ready)
        watcher = self.flunders.watch(FLUNDERS, None, capacity=5)
        self.successResultOf(self.mux.stopService())
        self.successResultOf(watcher.ended)
        key = FLUNDERS + "ns/a"
        self.successResultOf(self.storage.create(key, flunder("ns", "a")))
        self.mux.startService()
        self.assertFalse(self.flunders.ready)
        self.storage.release()
        self.assertTrue(self.flunders.ready)
        self.assertEqual(self.mux.syncs, 2)
        self.assertIsNotNone(self.flunders.get(key))
        fresh = self.flunders.watch(FLUNDERS, self.storage.revision, capacity=5)
        revision = self.successResultOf(
            self.storage.create(FLUNDERS + "ns/b", flunder("ns", "b"))
        )
        self.assertEqual(seen(fresh.take(5)), [(ADDED, "b", revision)])
        self.successResultOf(self.mux.stopService())


class RebuildTests(CacheTestCase):
    """
    A failed upstream watch: rebuild from a fresh list, expire watchers.
    """

    def fail_watch(self, error: Exception) -> None:
        self.storage.watches[-1].finish(error)

    def test_compaction(self) -> None:
        """
        Every watcher ends with TooOld; the caches are rebuilt from a fresh
        list and watching resumes.
        """
        a = self.create("ns", "a")
        watcher = self.watch()
        resumed = self.watch(from_revision=a)
        ends: list[Failure] = []
        watcher.ended.addErrback(ends.append)
        wakeups: list[None] = []
        watcher.set_wakeup(lambda: wakeups.append(None))
        readiness: list[bool] = []
        self.storage.list_failures = [Unavailable("etcd is away")]
        self.fail_watch(Compacted(a + 1, a + 5))
        readiness.append(self.flunders.ready)
        self.assertEqual(len(ends), 1)
        self.assertIsInstance(ends[0].value, TooOld)
        self.assertEqual(str(ends[0].value), f"too old resource version: {a} ({a + 5})")
        self.failureResultOf(resumed.ended, TooOld)
        self.assertEqual(wakeups, [None])
        self.assertRaises(NotReady, self.flunders.watch, FLUNDERS, None, capacity=5)
        # Written while the cache is rebuilding; the next list has it.
        b = self.create("ns", "b")
        self.clock.advance(backoff_delay(1, 0.1, 10.0) + 0.01)
        readiness.append(self.flunders.ready)
        self.assertEqual(readiness, [False, True])
        self.assertEqual(self.mux.syncs, 2)
        self.assertEqual([o.name for o in self.flunders.list(FLUNDERS)[0]], ["a", "b"])
        self.assertEqual(self.flunders.oldest_revision, b)
        fresh = self.watch()
        c = self.create("ns", "c")
        self.assertEqual(seen(fresh.take(10))[-1], (ADDED, "c", c))

    def test_repeated_failures_back_off(self) -> None:
        """
        The first retry is immediate, the next ones wait longer each time;
        a watch that delivers resets the delay.
        """
        self.fail_watch(Unavailable("gone"))
        self.assertTrue(self.flunders.ready)
        self.assertEqual(self.mux.syncs, 2)
        self.fail_watch(Unavailable("gone"))
        self.assertFalse(self.flunders.ready)
        self.clock.advance(0.11)
        self.assertEqual(self.mux.syncs, 3)
        self.fail_watch(Unavailable("gone"))
        self.clock.advance(0.15)
        self.assertEqual(self.mux.syncs, 3)
        self.clock.advance(0.06)
        self.assertEqual(self.mux.syncs, 4)
        self.create("ns", "a")
        self.fail_watch(Unavailable("gone"))
        self.assertEqual(self.mux.syncs, 5)

    def test_clean_end_rebuilds(self) -> None:
        """
        An upstream watch that ends without an error (nobody stopped it) is
        a lost watch too.
        """
        watcher = self.watch()
        self.storage.watches[-1].finish(None)
        self.failureResultOf(watcher.ended, TooOld)
        self.assertTrue(self.flunders.ready)
        self.assertEqual(self.mux.syncs, 2)


class DirectCacherTests(SynchronousTestCase):
    """
    A L{Cacher} fed by hand.
    """

    def test_history_size(self) -> None:
        self.assertRaises(
            ValueError, Cacher, FLUNDERS, decode, Clock(), lambda: Deferred(), 0
        )
