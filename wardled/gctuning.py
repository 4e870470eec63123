# -*- test-case-name: tests.test_gctuning -*-
"""
The garbage collector, set for a server whose heap is mostly long-lived.

Every request allocates a few hundred short-lived containers (Deferreds,
dicts, closures), so CPython's collector runs its young generations very
often, and every so often a full collection walks the whole heap: the
modules, the interface declarations, the metrics, the watch cache.
Measured on a consistent GET served from the cache, that is about a fifth
of the request's CPU.  Two standard settings for long-running servers take
most of it back (about 20 % more requests per core):

  - C{gc.freeze()} once start-up is done, and again once the watch caches
    are filled: what exists then lives as long as the process, and full
    collections no longer walk it;
  - a larger first-generation threshold, so young collections run less
    often (the garbage they find is still freed; reference counting frees
    everything that is not in a cycle at once anyway).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorCore, IReactorTime
from twisted.logger import Logger

#: C{gc.set_threshold} for the server (CPython's default: 700, 10, 10).
THRESHOLDS = (10_000, 50, 100)
#: Seconds between looks at whether the watch caches are filled.
READY_POLL_INTERVAL = 1.0
#: Give up waiting for the caches after this many looks.
READY_POLLS = 300

ReadyCheck = Callable[[], "Deferred[bool]"]


def freeze() -> None:
    """
    Collect what is garbage now, then move every object left out of the
    collector's generations.
    """
    gc.collect()
    gc.freeze()


class CollectorTuning(Service):
    """
    Sets L{THRESHOLDS} when started, and freezes the heap when the reactor
    runs and again the first time C{ready} says the server is ready.
    """

    log = Logger()

    def __init__(
        self, reactor: IReactorTime, ready: ReadyCheck, freezer: Callable[[], None] = freeze
    ) -> None:
        """
        @param ready: whether the server is ready (its watch caches filled).
        @param freezer: collects and freezes the heap (L{freeze}).
        """
        self._reactor = reactor
        self._ready = ready
        self._freeze = freezer
        self._polls = 0
        self._call: IDelayedCall | None = None
        self._previous: tuple[int, int, int] | None = None

    def startService(self) -> None:
        super().startService()
        self._previous = gc.get_threshold()
        gc.set_threshold(*THRESHOLDS)
        core: IReactorCore = self._reactor  # type: ignore[assignment]
        core.callWhenRunning(self._started)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._previous is not None:
            gc.set_threshold(*self._previous)
        return None

    def _started(self) -> None:
        if not self.running:
            return
        self._freeze()
        self._poll()

    def _poll(self) -> None:
        self._call = None
        if not self.running or self._polls >= READY_POLLS:
            return
        self._polls += 1
        self._ready().addCallbacks(self._answered, self._failed)

    def _answered(self, ready: bool) -> None:
        if not self.running:
            return
        if ready:
            self._freeze()
            self.log.debug("heap frozen with the watch caches filled")
            return
        self._call = self._reactor.callLater(READY_POLL_INTERVAL, self._poll)

    def _failed(self, failure: object) -> None:
        self._answered(False)
