"""
L{wardled.gctuning}: the collector's thresholds and when the heap is frozen.
"""

from __future__ import annotations

import gc

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from wardled.gctuning import READY_POLL_INTERVAL, CollectorTuning, freeze


class CollectorTuningTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.answers: list[Deferred[bool]] = []
        self.frozen = 0

    def ready(self) -> Deferred[bool]:
        return self.answers.pop(0) if self.answers else succeed(False)

    def count_freeze(self) -> None:
        self.frozen += 1

    def tuning(self) -> CollectorTuning:
        return CollectorTuning(self.reactor, self.ready, self.count_freeze)

    def test_frozen_at_start_and_when_ready(self) -> None:
        """
        The heap is frozen when the reactor runs, then readiness is asked
        every second (failures count as not ready) until it is ready, when
        the heap is frozen again and the asking stops.
        """
        self.answers = [succeed(False), fail(RuntimeError("etcd down")), succeed(True)]
        tuning = self.tuning()
        tuning.startService()
        self.assertEqual(self.frozen, 0)
        self.reactor.run()  # runs the callWhenRunning hooks
        self.assertEqual(self.frozen, 1)
        self.reactor.advance(READY_POLL_INTERVAL)
        self.assertEqual(self.frozen, 1)
        self.reactor.advance(READY_POLL_INTERVAL)
        self.assertEqual((self.frozen, self.answers), (2, []))
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        tuning.stopService()

    def test_stop_stops_asking(self) -> None:
        tuning = self.tuning()
        tuning.startService()
        self.reactor.run()
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        tuning.stopService()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.frozen, 1)

    def test_freeze(self) -> None:
        """
        L{freeze} moves every tracked object out of the generations.
        """
        self.addCleanup(gc.unfreeze)
        freeze()
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertEqual(gc.get_count()[2], 0)
