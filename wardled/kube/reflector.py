# -*- test-case-name: tests.test_kubeclient -*-
"""
A local copy of a list of kube-apiserver objects, kept current by a watch.

wardled's namespace-lifecycle admission must know which namespaces exist
(and which are terminating) without asking the cluster on every create.
L{Reflector} is the small Python form of client-go's reflector for that:
LIST once, WATCH from the list's resourceVersion, apply every event, and
when anything goes wrong (an expired resourceVersion, a dropped stream, a
cluster that is down) start again with a LIST, backing off while failures
last.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wardled.kube.client import KubeAPIError, KubeClient

JSON = dict[str, Any]

WATCH_TIMEOUT_SECONDS = 480
# A watch that ends this soon with no event is treated as a failure (as
# client-go does), so a server or proxy that closes watches at once cannot
# make the reflector spin.
SHORT_WATCH_SECONDS = 1.0
EXPIRED = 410


class WatchErrorEvent(Exception):
    """
    The watch sent an C{ERROR} event (or an event of unknown type).

    @ivar status: the event's object, normally a C{Status}.
    """

    def __init__(self, status: Mapping[str, Any]) -> None:
        self.status = dict(status)
        self.code = int(self.status.get("code") or 0)
        message = self.status.get("message") or "no message"
        super().__init__(f"watch error {self.code}: {message}")


def object_key(item: Mapping[str, Any]) -> str:
    """
    The key of an object in L{Reflector.objects}: its name, prefixed with
    C{namespace/} for a namespaced object.
    """
    metadata = item.get("metadata") or {}
    name = str(metadata.get("name", ""))
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if namespace else name


def _error_code(error: BaseException | None) -> int:
    if isinstance(error, KubeAPIError | WatchErrorEvent):
        return error.code
    return 0


class Reflector(Service):
    """
    Mirror one list (such as C{/api/v1/namespaces}) into L{objects}.

    @ivar synced: whether a LIST has succeeded since construction.
    @ivar last_error: what went wrong last, while failures last; C{None}
        once a LIST succeeds again.
    @ivar resource_version: the resourceVersion the mirror is current to.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        client: KubeClient,
        path: str,
        params: Mapping[str, str] | None = None,
        resync_backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self._reactor = reactor
        self._client = client
        self._path = path
        self._params = dict(params or {})
        self._initial_backoff = resync_backoff
        self._max_backoff = max_backoff
        self._backoff = resync_backoff
        self._objects: dict[str, JSON] = {}
        self._waiters: list[Deferred[None]] = []
        self._pending: Deferred[Any] | None = None
        self._retry: IDelayedCall | None = None
        self._failing = False
        self._relisted_for_expiry = False
        self._watch_started = 0.0
        self._watch_events = 0
        self.synced = False
        self.last_error: str | None = None
        self.resource_version: str | None = None

    @property
    def objects(self) -> Mapping[str, JSON]:
        """
        The objects, by L{object_key} (the name, for cluster-scoped ones);
        a read-only view.
        """
        return MappingProxyType(self._objects)

    def wait_synced(self) -> Deferred[None]:
        """
        @return: fires when the first LIST has succeeded (at once if it
            has); may be cancelled.
        """
        if self.synced:
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._forget_waiter)
        self._waiters.append(waiter)
        return waiter

    def _forget_waiter(self, waiter: Deferred[None]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    # -- lifecycle --------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._list()

    def stopService(self) -> None:
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    # -- list -------------------------------------------------------------------

    def _list(self) -> None:
        self._retry = None
        listing = Deferred.fromCoroutine(self._client.get(self._path, self._params))
        self._pending = listing
        listing.addCallback(self._listed)
        listing.addErrback(self._failed)

    def _listed(self, answer: JSON) -> None:
        items = answer.get("items")
        version = (answer.get("metadata") or {}).get("resourceVersion")
        if not isinstance(items, list) or not version:
            raise ValueError(f"{self._path}: the list has no items or resourceVersion")
        self._objects = {object_key(item): item for item in items}
        self.resource_version = str(version)
        self._pending = None
        if self._failing:
            self.log.info("{path}: listed again, recovered", path=self._path)
        self._failing = False
        self.last_error = None
        self.synced = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
        self._watch()

    # -- watch ------------------------------------------------------------------

    def _watch(self) -> None:
        params = {
            **self._params,
            "resourceVersion": self.resource_version or "",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS),
        }
        self._watch_started = self._reactor.seconds()
        self._watch_events = 0
        watching = self._client.watch(self._path, params, self._on_event)
        self._pending = watching
        watching.addCallback(self._watch_ended)
        watching.addErrback(self._failed)

    def _on_event(self, event: JSON) -> None:
        kind = event.get("type")
        item = event.get("object") or {}
        if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
            raise WatchErrorEvent(item if kind == "ERROR" else {"message": repr(kind)})
        if kind in ("ADDED", "MODIFIED"):
            self._objects[object_key(item)] = item
        elif kind == "DELETED":
            self._objects.pop(object_key(item), None)
        version = (item.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = str(version)
        self._watch_events += 1
        self._backoff = self._initial_backoff
        self._relisted_for_expiry = False

    def _watch_ended(self, _: None) -> None:
        self._pending = None
        lasted = self._reactor.seconds() - self._watch_started
        if self._watch_events == 0 and lasted < SHORT_WATCH_SECONDS:
            self._failed(
                Failure(RuntimeError("the watch ended at once without any event"))
            )
            return
        self._watch()

    # -- failures ---------------------------------------------------------------

    def _failed(self, failure: Failure) -> None:
        self._pending = None
        if not self.running:
            return
        error = failure.value
        if _error_code(error) == EXPIRED and not self._relisted_for_expiry:
            self._relisted_for_expiry = True
            self.log.info(
                "{path}: resourceVersion {rv} expired, listing again",
                path=self._path,
                rv=self.resource_version,
            )
            self._list()
            return
        self.last_error = f"{type(error).__name__}: {error}"
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)
        if not self._failing:
            self._failing = True
            self.log.error(
                "{path}: {error}; retrying with backoff until it works",
                path=self._path,
                error=self.last_error,
            )
        self._retry = self._reactor.callLater(delay, self._list)


__all__ = ["Reflector", "WatchErrorEvent", "object_key"]
