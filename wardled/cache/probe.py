# -*- test-case-name: tests.test_cache_probe -*-
"""
One storage revision probe shared by every consistent read that may use it.

A consistent read (C{resourceVersion=""}) served from the watch cache must
see every write that completed before the read arrived, so it asks the
storage for its current revision and waits for the cache to reach it.
Asking once per read turns N concurrent reads into N etcd ranges.  A
L{CoalescingProbe} keeps at most one probe in flight: a read that arrives
while none runs starts one; reads that arrive while one runs cannot use it
(it may have been answered before their writes completed), so they wait for
the I{next} probe, which starts as soon as the running one ends and serves
all of them.  Under any load that is at most two probes per read's wait,
and one probe per round of concurrent reads.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

Probe = Callable[[], "Deferred[int]"]


class CoalescingProbe:
    """
    Share the calls of C{probe} between concurrent callers, never serving a
    caller from a call that started before it asked.

    @ivar calls: how many times C{probe} was called.
    """

    def __init__(self, probe: Probe) -> None:
        """
        @param probe: asks the storage for its current revision.
        """
        self.calls = 0
        self._probe = probe
        self._running = False
        self._next: list[Deferred[int]] = []

    def __call__(self) -> Deferred[int]:
        """
        The revision of a probe that starts now, or as soon as the probe in
        flight (started before this call) ends.

        Cancelling the result only drops this caller: the shared probe goes
        on for the others.  A failed probe fails every caller it serves.
        """
        waiter: Deferred[int] = Deferred(self._forget)
        self._next.append(waiter)
        if not self._running:
            self._start()
        return waiter

    @property
    def waiting(self) -> int:
        """
        How many callers wait for the next probe (not the one in flight).
        """
        return len(self._next)

    def _forget(self, waiter: Deferred[int]) -> None:
        # Deferred.cancel errbacks it with CancelledError after this; a
        # waiter of the running probe is skipped when that one ends.
        if waiter in self._next:
            self._next.remove(waiter)

    def _start(self) -> None:
        served, self._next = self._next, []
        self._running = True
        self.calls += 1
        try:
            probing = self._probe()
        except Exception:  # noqa: BLE001 - delivered to the callers
            probing = fail()
        probing.addBoth(self._ended, served)

    def _ended(self, result: int | Failure, served: list[Deferred[int]]) -> None:
        """
        The probe ended: start the next one for the callers that arrived
        meanwhile, then answer the callers this one served.
        """
        self._running = False
        if self._next:
            self._start()
        for waiter in served:
            if waiter.called:
                continue
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
