# -*- test-case-name: tests.test_requestend -*-
"""
L{wardled.requestend}: every concern waiting for a request's end shares one
notification, yet each is told as its own Deferred would have told it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from wardled.requestend import when_finished


class WhenFinishedTests(SynchronousTestCase):
    def test_answered(self) -> None:
        """
        Hooks run in the order they were registered, told C{None}, from a
        single notification of the request.
        """
        request = DummyRequest([b""])
        told: list[tuple[str, object]] = []
        def hook(name: str) -> Callable[[object], None]:
            return lambda reason: told.append((name, reason))

        for name in ("tracker", "observers", "deadline", "in flight"):
            when_finished(request, hook(name))
        self.assertEqual(len(request._finishedDeferreds), 1)
        request.finish()
        self.assertEqual(
            told,
            [("tracker", None), ("observers", None), ("deadline", None), ("in flight", None)],
        )

    def test_connection_lost(self) -> None:
        request = DummyRequest([b""])
        told: list[object] = []
        when_finished(request, told.append)
        when_finished(request, told.append)
        request.processingFailed(Failure(ConnectionLost("gone")))
        self.assertEqual(len(told), 2)
        for reason in told:
            assert isinstance(reason, Failure)
            self.assertIsInstance(reason.value, ConnectionLost)

    def test_failing_hook_is_logged_and_others_run(self) -> None:
        request = DummyRequest([b""])
        told: list[object] = []

        def broken(reason: object) -> None:
            raise RuntimeError("a bug in one concern")

        when_finished(request, broken)
        when_finished(request, told.append)
        request.finish()
        self.assertEqual(told, [None])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_shadowed_notification_is_not_used(self) -> None:
        """
        A route that shadows the instance's C{notifyFinish} (to fail it at
        the deadline, as L{wardled.limits.DeadlineCancelling} does) does
        not change when the hooks run.
        """
        request: Any = DummyRequest([b""])
        shadow: Deferred[None] = Deferred()
        request.notifyFinish = lambda: shadow
        told: list[object] = []
        when_finished(request, told.append)
        shadow.errback(Failure(RuntimeError("deadline")))
        self.failureResultOf(shadow)
        self.assertEqual(told, [])
        del request.notifyFinish
        request.finish()
        self.assertEqual(told, [None])
