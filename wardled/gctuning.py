# -*- test-case-name: tests.test_gctuning -*-
"""
The garbage collector, set for a server whose heap is mostly long-lived.

Every request allocates a few hundred short-lived containers (Deferreds,
dicts, closures), so CPython's collector runs often, and every so often a
full collection walks the whole heap: the modules, the interface
declarations, the metrics, the watch cache.  Measured on a consistent GET
served from the cache, that is about a fifth of the request's CPU.
C{gc.freeze()} once start-up is done, and again once the watch caches are
filled, takes most of it back: what exists then lives as long as the
process, and full collections no longer walk it.

The thresholds stay CPython's: raising them (fewer young collections) saved
a little more CPU but let cyclic garbage pile up, and the memory targets
(RSS per idle watcher, cache RSS) got worse.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorCore, IReactorTime
from twisted.logger import Logger

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
    Freezes the heap when the reactor runs and again the first time
    C{ready} says the server is ready.
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

    def startService(self) -> None:
        super().startService()
        core: IReactorCore = self._reactor  # type: ignore[assignment]
        core.callWhenRunning(self._started)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
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
