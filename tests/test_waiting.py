# -*- test-case-name: tests.test_waiting -*-
"""
Tests for L{tests.waiting}, the polling loops every harness waits with: they
must stop as soon as the condition holds, give up after exactly the timeout,
and end early with the harness's own error when the process died.

Time is faked (L{FakeTime}) so nothing here sleeps; the process tests use a
real child that has already exited.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from tests.waiting import poll, poll_async, wait_for, wait_serving


class FakeTime:
    """
    A clock that only moves when slept on, recording every sleep.
    """

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def counting(results: list[object]) -> tuple[Callable[[], object], list[int]]:
    """
    A condition answering C{results} in turn (the last one for ever), and
    the list whose length is how often it was asked.
    """
    calls: list[int] = []

    def condition() -> object:
        calls.append(1)
        return results[min(len(calls), len(results)) - 1]

    return condition, calls


def exited_process() -> subprocess.Popen[bytes]:
    """
    A child process that has already exited with status 3.
    """
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    return process


class PollTests(SynchronousTestCase):
    """
    L{poll}.
    """

    def test_true_at_once(self) -> None:
        """
        A condition that holds at once is asked once and never slept on;
        its value is returned.
        """
        time = FakeTime()
        condition, calls = counting(["ready"])
        found = poll(condition, 5.0, clock=time.clock, sleep=time.sleep)
        self.assertEqual((found, len(calls), time.sleeps), ("ready", 1, []))

    def test_true_later(self) -> None:
        """
        The condition is asked again after each C{interval} until it holds.
        """
        time = FakeTime()
        condition, calls = counting([None, 0, "", 7])
        found = poll(condition, 5.0, 0.25, clock=time.clock, sleep=time.sleep)
        self.assertEqual((found, len(calls), time.sleeps), (7, 4, [0.25] * 3))

    def test_timeout(self) -> None:
        """
        A condition that never holds is asked until C{timeout} seconds have
        passed; then C{None}.
        """
        time = FakeTime()
        condition, calls = counting([False])
        found = poll(condition, 1.0, 0.25, clock=time.clock, sleep=time.sleep)
        self.assertEqual((found, len(calls), time.now), (None, 4, 101.0))


class WaitForTests(SynchronousTestCase):
    """
    L{wait_for}.
    """

    def test_result(self) -> None:
        """
        The condition's true value is returned; the failure is not made.
        """
        made: list[int] = []

        def failure() -> Exception:
            made.append(1)
            return AssertionError("never")

        self.assertEqual(wait_for(lambda: 42, 1.0, failure), 42)
        self.assertEqual(made, [])

    def test_failure(self) -> None:
        """
        When time runs out, the error C{failure} makes is raised.
        """
        error = self.assertRaises(
            LookupError, wait_for, lambda: False, 0.0, lambda: LookupError("gone")
        )
        self.assertEqual(str(error), "gone")

    def test_condition_error(self) -> None:
        """
        An error from the condition ends the wait with that error.
        """

        def broken() -> bool:
            raise ValueError("broken")

        self.assertRaises(
            ValueError, wait_for, broken, 1.0, lambda: AssertionError("timeout")
        )


class WaitServingTests(SynchronousTestCase):
    """
    L{wait_serving}.
    """

    def test_exited(self) -> None:
        """
        A process that has ended raises what C{exited} makes from its exit
        status, without asking whether it serves.
        """
        condition, calls = counting([True])
        error = self.assertRaises(
            RuntimeError,
            wait_serving,
            exited_process(),
            condition,
            5.0,
            lambda code: RuntimeError(f"exited with {code}"),
            lambda: AssertionError("timeout"),
        )
        self.assertEqual((str(error), calls), ("exited with 3", []))

    def test_serving(self) -> None:
        """
        A running process that serves ends the wait quietly.
        """
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.read()"],
            stdin=subprocess.PIPE,
        )
        try:
            wait_serving(
                process,
                lambda: True,
                5.0,
                lambda code: AssertionError(f"exited with {code}"),
                lambda: AssertionError("timeout"),
            )
            self.assertIsNone(process.poll())
        finally:
            assert process.stdin is not None
            process.stdin.close()
            process.wait()


class PollAsyncTests(SynchronousTestCase):
    """
    L{poll_async}.
    """

    def test_coroutine_condition(self) -> None:
        """
        A coroutine function's result is awaited.
        """

        async def ready() -> bool:
            return True

        self.assertTrue(asyncio.run(poll_async(ready, 1.0)))

    def test_plain_condition(self) -> None:
        """
        A plain function works too.
        """
        self.assertTrue(asyncio.run(poll_async(lambda: 1, 1.0)))

    def test_timeout(self) -> None:
        """
        C{False} when the time runs out first.
        """
        self.assertFalse(asyncio.run(poll_async(lambda: False, 0.0)))
