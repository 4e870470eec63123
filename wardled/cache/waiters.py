# -*- test-case-name: tests.test_cache -*-
"""
Deferreds that fire when the cache reaches a revision or becomes ready, or
fail when a deadline on the injected clock passes first.

Reads that must be consistent ("the cache has caught up with etcd") and
watches that ask for a future revision wait here.  Every waiter owns one
C{DelayedCall}, cancelled as soon as the waiter fires, fails or is
cancelled, so nothing is left scheduled on the reactor.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, succeed

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime


class _Waiter:
    """
    One pending wait: its Deferred and its deadline.
    """

    def __init__(
        self,
        clock: IReactorTime,
        timeout: float,
        timed_out: Callable[[], Exception],
        forget: Callable[[_Waiter], None],
    ) -> None:
        self.deferred: Deferred[None] = Deferred(self._cancelled)
        self.finished = False
        self._timed_out = timed_out
        self._forget = forget
        self._timer: IDelayedCall | None = clock.callLater(timeout, self._expire)

    def succeed(self) -> None:
        if self._finish():
            self.deferred.callback(None)

    def fail(self, error: Exception) -> None:
        if self._finish():
            self.deferred.errback(error)

    def _expire(self) -> None:
        self._timer = None
        self.fail(self._timed_out())

    def _cancelled(self, deferred: Deferred[None]) -> None:
        # Deferred.cancel errbacks with CancelledError after this returns.
        self._finish()

    def _finish(self) -> bool:
        """
        Stop the timer and forget the waiter; say whether it was pending.
        """
        if self.finished:
            return False
        self.finished = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._forget(self)
        return True


class RevisionWaiters:
    """
    Waits for a revision, in revision order (a heap), each with a deadline.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._heap: list[tuple[int, int, _Waiter]] = []
        self._order = itertools.count()
        self._pending = 0

    def __len__(self) -> int:
        return self._pending

    def wait(
        self,
        revision: int,
        current: int,
        timeout: float,
        timed_out: Callable[[], Exception],
    ) -> Deferred[None]:
        """
        Fire once L{advance} reaches C{revision} (at once if C{current}
        already has); fail with C{timed_out()} after C{timeout} seconds.
        """
        if current >= revision:
            return succeed(None)
        waiter = _Waiter(self._clock, timeout, timed_out, self._forget)
        heapq.heappush(self._heap, (revision, next(self._order), waiter))
        self._pending += 1
        return waiter.deferred

    def _forget(self, waiter: _Waiter) -> None:
        # The heap entry of a waiter that timed out or was cancelled is
        # dropped lazily, by advance() or once nothing is pending.
        self._pending -= 1
        if not self._pending:
            self._heap.clear()

    def advance(self, revision: int) -> None:
        """
        Fire every waiter for C{revision} or older.
        """
        while self._heap and self._heap[0][0] <= revision:
            _, _, waiter = heapq.heappop(self._heap)
            waiter.succeed()

    def fail_all(self, error: Callable[[], Exception]) -> None:
        """
        Fail every pending waiter with C{error()}.
        """
        heap, self._heap = self._heap, []
        for _, _, waiter in heap:
            waiter.fail(error())


class ConditionWaiters:
    """
    Waits for one condition (such as "ready") with deadlines.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiters: set[_Waiter] = set()

    def __len__(self) -> int:
        return len(self._waiters)

    def wait(
        self, timeout: float, timed_out: Callable[[], Exception]
    ) -> Deferred[None]:
        """
        Fire at the next L{fire}; fail with C{timed_out()} after C{timeout}.
        """
        waiter = _Waiter(self._clock, timeout, timed_out, self._waiters.discard)
        self._waiters.add(waiter)
        return waiter.deferred

    def fire(self) -> None:
        for waiter in list(self._waiters):
            waiter.succeed()

    def fail_all(self, error: Callable[[], Exception]) -> None:
        for waiter in list(self._waiters):
            waiter.fail(error())
