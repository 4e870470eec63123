# -*- test-case-name: tests.test_storage_conformance -*-
"""
What every in-process storage driver's watch does the same way: hand
events to the watcher's callback, end on C{stop()} or an error, and fire
C{done} exactly once.  The memory and SQLite drivers differ only in how
they find the events (L{wardled.storage.memory}, L{wardled.storage.sqlite}).
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wardled.storage.interfaces import Event, StorageError, WatchCallback


class CallbackWatch:
    """
    The delivery and ending half of an L{IWatch}.

    @ivar done: see L{wardled.storage.interfaces.IWatch.done}.
    """

    def __init__(self, callback: WatchCallback) -> None:
        self.done: Deferred[None] = Deferred()
        self._callback = callback
        self._finished = False

    def _forget(self) -> None:
        """
        Stop the driver from offering this watch more events.
        """
        raise NotImplementedError

    def _call(self, events: Sequence[Event], revision: int) -> None:
        try:
            self._callback(events, revision)
        except Exception:  # noqa: BLE001 - a failing callback ends the watch
            self.finish(Failure())

    def stop(self) -> None:
        self.finish(None)

    def finish(self, error: StorageError | Failure | None) -> None:
        """
        End the watch: C{done} fires, with C{error} if there is one.
        """
        if self._finished:
            return
        self._finished = True
        self._forget()
        if error is None:
            self.done.callback(None)
        else:
            self.done.errback(error)
