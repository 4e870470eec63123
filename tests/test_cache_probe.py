# -*- test-case-name: tests.test_cache_probe -*-
"""
Tests for L{wardled.cache.probe.CoalescingProbe}: concurrent consistent
reads share revision probes, and never use one that started before they
arrived.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wardled.cache.cacher import Cacher
from wardled.cache.interfaces import CachedObject
from wardled.cache.multiplexer import WatchMultiplexer
from wardled.cache.probe import CoalescingProbe
from wardled.storage.memory import MemoryStorage


class FakeRevision:
    """
    A storage revision probe the test answers: each call is recorded with
    the revision the store had when the call started.

    @ivar store_revision: the revision writes have reached.
    @ivar started: per call, C{store_revision} when it started.
    @ivar pending: the unanswered calls.
    """

    def __init__(self) -> None:
        self.store_revision = 10
        self.started: list[int] = []
        self.pending: list[Deferred[int]] = []

    def __call__(self) -> Deferred[int]:
        self.started.append(self.store_revision)
        probing: Deferred[int] = Deferred()
        self.pending.append(probing)
        return probing

    def answer(self) -> None:
        """
        Answer the oldest pending call with the revision it started at (the
        storage answers with a revision at least that new).
        """
        probing = self.pending.pop(0)
        probing.callback(self.started[len(self.started) - len(self.pending) - 1])

    def fail(self, error: Exception) -> None:
        self.pending.pop(0).errback(error)


class CoalescingProbeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fake = FakeRevision()
        self.probe = CoalescingProbe(self.fake)

    def test_one_caller_one_probe(self) -> None:
        reading = self.probe()
        self.assertEqual(self.probe.calls, 1)
        self.assertNoResult(reading)
        self.fake.answer()
        self.assertEqual(self.successResultOf(reading), 10)

    def test_concurrent_callers_share_the_next_probe(self) -> None:
        """
        32 concurrent reads cost two probes: the first starts one, the 31
        that arrive while it runs share the one after it.
        """
        readings = [self.probe() for _ in range(32)]
        self.assertEqual((self.probe.calls, self.probe.waiting), (1, 31))
        self.fake.answer()
        self.assertEqual((self.probe.calls, self.probe.waiting), (2, 0))
        self.successResultOf(readings[0])
        for reading in readings[1:]:
            self.assertNoResult(reading)
        self.fake.answer()
        self.assertEqual([self.successResultOf(r) for r in readings[1:]], [10] * 31)
        self.assertEqual(self.probe.calls, 2)
        self.assertEqual(self.fake.pending, [])

    def test_never_served_by_a_probe_started_before_arrival(self) -> None:
        """
        A write that completes after a probe started and before a read
        arrives is seen by that read: the read waits for a probe that
        started after it arrived.
        """
        first = self.probe()
        self.fake.store_revision = 11  # a write completes
        second = self.probe()
        self.fake.answer()
        self.assertEqual(self.successResultOf(first), 10)
        self.assertNoResult(second)
        self.fake.answer()
        self.assertEqual(self.successResultOf(second), 11)
        self.assertEqual(self.fake.started, [10, 11])

    def test_no_probe_in_flight_starts_one_at_once(self) -> None:
        self.probe()
        self.fake.answer()
        self.fake.store_revision = 12
        later = self.probe()
        self.assertEqual(self.fake.started, [10, 12])
        self.fake.answer()
        self.assertEqual(self.successResultOf(later), 12)

    def test_error_reaches_every_waiter_of_that_probe(self) -> None:
        first = self.probe()
        second = self.probe()
        third = self.probe()
        self.fake.answer()
        self.successResultOf(first)
        self.fake.fail(ValueError("etcd is away"))
        for reading in (second, third):
            self.assertEqual(
                str(self.failureResultOf(reading, ValueError).value), "etcd is away"
            )
        after = self.probe()
        self.fake.answer()
        self.assertEqual(self.successResultOf(after), 10)

    def test_probe_raising_fails_its_callers(self) -> None:
        def broken() -> Deferred[int]:
            raise RuntimeError("bug")

        probe = CoalescingProbe(broken)
        self.failureResultOf(probe(), RuntimeError)
        self.failureResultOf(probe(), RuntimeError)
        self.assertEqual(probe.calls, 2)

    def test_cancel_one_waiter_of_the_running_probe(self) -> None:
        first = self.probe()
        second = self.probe()
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertEqual(self.fake.pending[0].called, False)
        self.fake.answer()
        self.fake.answer()
        self.assertEqual(self.successResultOf(second), 10)

    def test_cancel_one_waiter_of_the_next_probe(self) -> None:
        self.probe()
        second = self.probe()
        third = self.probe()
        second.cancel()
        self.failureResultOf(second, CancelledError)
        self.assertEqual(self.probe.waiting, 1)
        self.fake.answer()
        self.fake.answer()
        self.assertEqual(self.successResultOf(third), 10)

    def test_no_next_probe_when_every_waiter_cancelled(self) -> None:
        self.probe()
        waiting = self.probe()
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)
        self.fake.answer()
        self.assertEqual((self.probe.calls, self.fake.pending), (1, []))

    def test_synchronous_probe(self) -> None:
        """
        A probe that answers at once (the in-memory storage) serves each
        call with its own probe.
        """
        calls: list[int] = []

        def at_once() -> Deferred[int]:
            calls.append(1)
            return succeed(len(calls))

        probe = CoalescingProbe(at_once)
        self.assertEqual([self.successResultOf(probe()) for _ in range(3)], [1, 2, 3])

    def test_a_callback_asking_again_waits_for_a_new_probe(self) -> None:
        """
        A caller that asks again from its callback (a read following a
        read) gets a probe that starts after it asked.
        """
        again: list[Deferred[int]] = []
        first = self.probe()
        first.addCallback(lambda revision: again.append(self.probe()))
        self.fake.answer()
        self.assertEqual(len(again), 1)
        self.assertNoResult(again[0])
        self.assertEqual(self.probe.calls, 2)
        self.fake.store_revision = 13
        self.fake.answer()
        self.assertEqual(self.successResultOf(again[0]), 10)


def decode(key: str, value: bytes, revision: int) -> CachedObject:
    return CachedObject(key, "", key, {}, revision, {})


class CacherProbeTests(SynchronousTestCase):
    """
    The caches of a multiplexer share one probe.
    """

    def test_caches_share_the_probe(self) -> None:
        clock = Clock()
        storage = MemoryStorage()
        fake = FakeRevision()
        storage.current_revision = fake  # type: ignore[method-assign]
        mux = WatchMultiplexer(storage, "/g/", clock)
        flunders = mux.register("/g/flunders/", decode)
        fischers = mux.register("/g/fischers/", decode)
        mux.startService()
        self.addCleanup(mux.stopService)
        fake.store_revision = storage.revision
        readings = [cache.consistent_revision() for cache in (flunders, fischers) * 4]
        self.assertEqual(mux.revision_probe.calls, 1)
        fake.answer()
        fake.answer()
        self.assertEqual(
            [self.successResultOf(r) for r in readings], [storage.revision] * 8
        )
        self.assertEqual(len(fake.started), 2)

    def test_cacher_coalesces_a_plain_probe(self) -> None:
        fake = FakeRevision()
        cacher = Cacher("/g/", decode, Clock(), fake)
        cacher.reset([], 10)
        readings = [cacher.consistent_revision() for _ in range(5)]
        fake.answer()
        fake.answer()
        self.assertEqual([self.successResultOf(r) for r in readings], [10] * 5)
        self.assertEqual(len(fake.started), 2)
