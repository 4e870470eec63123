# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics, named and labelled as kube-apiserver's, served on
C{/metrics} in the text exposition format.

Each server owns one L{ServerMetrics} (its own C{CollectorRegistry}, never
the process-global default, so tests can build several servers).  It
counts requests through the filters' observer hook (L{RequestMetrics}),
times storage calls by wrapping the storage (L{TimedStorage}), reads
object counts from the watch caches when scraped, and carries the
process and platform collectors.

Label values follow k8s.io/apiserver 1.34+ (C{endpoints/metrics}):
  - C{verb} is upper case: C{GET}/C{LIST} (a GET of a collection),
    C{WATCH}, C{POST}, C{PUT}, C{PATCH}, C{APPLY} (server-side apply),
    C{DELETE} (item and collection alike), else C{other};
  - C{scope} is C{resource} (a name, or a create), C{namespace},
    C{cluster}, or empty for non-resource requests;
  - a non-resource request has empty group, version and resource and its
    path as C{subresource} (as kube labels discovery);
  - C{apiserver_watch_events_total} and C{etcd_request_duration_seconds}
    carry C{group} and C{resource} (1.34 replaced C{kind}/C{type}).

A request for something the server does not serve (an unknown group,
resource or path) is counted with C{subresource="other"} and nothing else
named, so clients cannot grow the label space.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from zope.interface import implementer

from wardled.api.filters import IRequestObserver, RequestRecord
from wardled.api.requestinfo import RequestInfo
from wardled.apis.wardle import GROUP, GROUP_VERSIONS, resource_for
from wardled.cache.interfaces import ICacher
from wardled.storage.interfaces import (
    Conflict,
    IStorage,
    IWatch,
    KeyExists,
    KeyNotFound,
    WatchCallback,
)

# Kubernetes exposes no *_created series.
disable_created_metrics()

COMPONENT = "apiserver"
OTHER = "other"

# apiserver_request_duration_seconds' and etcd_request_duration_seconds'
# buckets.
LATENCY_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0,
    4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
)

_VALID_VERBS = frozenset({
    "APPLY", "CONNECT", "CREATE", "DELETE", "DELETECOLLECTION", "GET", "LIST",
    "PATCH", "POST", "PROXY", "PUT", "UPDATE", "WATCH", "WATCHLIST",
})
_APPLY_PATCH = b"application/apply-patch+yaml"

_SERVED_PATHS = frozenset({
    "/", "/apis", "/version", "/metrics", "/openapi/v2", "/openapi/v3",
    "/healthz", "/livez", "/readyz", f"/apis/{GROUP}",
    *(f"/apis/{GROUP}/{version}" for version in GROUP_VERSIONS),
})
_SERVED_PREFIXES = ("/openapi/v3/", "/healthz/", "/livez/", "/readyz/")
_REFUSED = (401, 403, 404)

_REQUEST_LABELS = (
    "verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component",
)
_LONG_RUNNING_LABELS = (
    "verb", "group", "version", "resource", "subresource", "scope", "component",
)

# (verb, dry_run, group, version, resource, subresource, scope, component)
RequestLabels = tuple[str, str, str, str, str, str, str, str]


# -- labels -------------------------------------------------------------------


def clean_scope(info: RequestInfo) -> str:
    """
    kube's C{CleanScope}: C{resource} for a named object or a create,
    C{namespace}, C{cluster}, or empty for a non-resource request.
    """
    if info.name or info.verb == "create":
        return "resource"
    if info.namespace:
        return "namespace"
    if info.is_resource_request:
        return "cluster"
    return ""


def reported_verb(info: RequestInfo, method: str, content_type: bytes | None, scope: str) -> str:
    """
    The C{verb} label: kube's C{CanonicalVerb} then C{cleanVerb}.
    """
    if info.verb == "watch":
        return "WATCH"
    if method in ("GET", "HEAD"):
        return "LIST" if scope in ("namespace", "cluster") else "GET"
    if method == "PATCH" and content_type == _APPLY_PATCH:
        return "APPLY"
    return method if method in _VALID_VERBS else OTHER


def dry_run_label(request: IRequest) -> str:
    """
    kube's C{cleanDryRun}: the sorted distinct C{dryRun} values, or
    C{invalid}.
    """
    if b"dryRun" not in request.uri:
        return ""
    values = {value.decode("utf-8", "replace") for value in request.args.get(b"dryRun", [])}
    if any(value != "All" for value in values):
        return "invalid"
    return ",".join(sorted(values))


def _served_resource(info: RequestInfo) -> bool:
    return (
        info.api_group == GROUP
        and not info.subresource
        and resource_for(info.api_version, info.resource) is not None
    )


def path_label(path: str, code: int) -> str:
    """
    The C{subresource} label of a non-resource request: its path when the
    server serves it, else C{other}.
    """
    trimmed = path.rstrip("/") or "/"
    if trimmed in _SERVED_PATHS:
        return trimmed
    if code not in _REFUSED and trimmed.startswith(_SERVED_PREFIXES):
        return trimmed
    return OTHER


def request_labels(record: RequestRecord) -> RequestLabels:
    """
    The labels of C{apiserver_request_total} (but C{code}) and
    C{apiserver_request_duration_seconds} for one request.
    """
    request = record.request
    info = record.info
    scope = clean_scope(info)
    method = request.method.decode("ascii", "replace").upper()
    content_type = request.getHeader(b"content-type") if method == "PATCH" else None
    verb = reported_verb(info, method, content_type, scope)
    dry_run = dry_run_label(request)
    if not info.is_resource_request:
        return (verb, dry_run, "", "", "", path_label(info.path, record.code), "", COMPONENT)
    if not _served_resource(info):
        return (verb, dry_run, "", "", "", OTHER, "", COMPONENT)
    return (
        verb, dry_run, info.api_group, info.api_version, info.resource,
        info.subresource, scope, COMPONENT,
    )


# -- requests -------------------------------------------------------------------


@implementer(IRequestObserver)
class RequestMetrics:
    """
    Counts and times requests, and tracks open watches (an observer of the
    filters).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.total = Counter(
            "apiserver_request_total",
            "Counter of apiserver requests broken out for each verb, dry run value, "
            "group, version, resource, scope, component, and HTTP response code.",
            [*_REQUEST_LABELS, "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, "
            "group, version, resource, subresource, scope and component.",
            _REQUEST_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.long_running = Gauge(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, "
            "group, version, resource, scope and component. Not all requests are "
            "tracked this way.",
            _LONG_RUNNING_LABELS,
            registry=registry,
        )
        self.watchers = Gauge(
            "apiserver_registered_watchers",
            "Number of currently registered watchers for a given resources",
            ["group", "version", "kind"],
            registry=registry,
        )
        self.watch_events = Counter(
            "apiserver_watch_events_total",
            "Number of events sent in watch clients",
            ["group", "version", "resource"],
            registry=registry,
        )
        self._children: dict[tuple[RequestLabels, int], tuple[Any, Any]] = {}

    def admitted(self, record: RequestRecord) -> bool:
        """
        An admitted watch raises the long-running and watcher gauges and has
        its events counted.
        """
        info = record.info
        if not record.allowed or info.verb != "watch" or not _served_resource(info):
            return False
        resource = resource_for(info.api_version, info.resource)
        assert resource is not None
        group, version = info.api_group, info.api_version
        open_watch = (
            self.long_running.labels(
                "WATCH", group, version, info.resource, info.subresource,
                clean_scope(info), COMPONENT,
            ),
            self.watchers.labels(group, version, resource.kind),
            self.watch_events.labels(group, version, info.resource),
        )
        open_watch[0].inc()
        open_watch[1].inc()
        record.state = record.state or {}
        record.state["metrics"] = open_watch
        return True

    def wrote(self, record: RequestRecord, data: bytes) -> None:
        """
        Count the events (one per line) written to a watch.
        """
        events = data.count(b"\n")
        if events and record.state:
            record.state["metrics"][2].inc(events)

    def finished(self, record: RequestRecord) -> None:
        """
        Count the request, time it, and close its watch.
        """
        elapsed = time.perf_counter() - record.started
        labels = request_labels(record)
        key = (labels, record.code)
        children = self._children.get(key)
        if children is None:
            children = (
                self.total.labels(*labels, str(record.code)),
                self.duration.labels(*labels),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)
        open_watch = record.state.pop("metrics", None) if record.state else None
        if open_watch is not None:
            open_watch[0].dec()
            open_watch[1].dec()


# -- storage ------------------------------------------------------------------


_NOT_ERRORS = (KeyNotFound, KeyExists, Conflict)


class StorageMetrics:
    """
    C{etcd_request_duration_seconds}, C{etcd_requests_total} and
    C{etcd_request_errors_total}.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["operation", "group", "resource"]
        self.duration = Histogram(
            "etcd_request_duration_seconds",
            "Etcd request latency in seconds for each operation and object type.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.total = Counter(
            "etcd_requests_total",
            "Etcd request counts for each operation and object type.",
            labels,
            registry=registry,
        )
        self.errors = Counter(
            "etcd_request_errors_total",
            "Etcd failed request counts for each operation and object type.",
            labels,
            registry=registry,
        )


@implementer(IStorage)
class TimedStorage:
    """
    An L{IStorage} that times each call of the storage it wraps.

    Operations are named as kube's etcd3 store names them (C{get},
    C{listWithCount}, C{create}, C{update}, C{delete},
    C{getCurrentResourceVersion}); watches, compaction and health checks
    pass through untimed.  A key's resource is the path segment after
    C{group_prefix}.
    """

    def __init__(self, storage: IStorage, metrics: StorageMetrics, group_prefix: str) -> None:
        self._storage = storage
        self._metrics = metrics
        self._group_prefix = group_prefix
        self._children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        # Backend extras (close, notify_progress, ...) reach the backend.
        return getattr(self._storage, name)

    def _labels(self, operation: str, key: str) -> tuple[Any, Any, Any]:
        resource = ""
        if key.startswith(self._group_prefix):
            resource = key[len(self._group_prefix):].partition("/")[0]
        children = self._children.get((operation, resource))
        if children is None:
            metrics = self._metrics
            children = (
                metrics.duration.labels(operation, GROUP, resource),
                metrics.total.labels(operation, GROUP, resource),
                metrics.errors.labels(operation, GROUP, resource),
            )
            self._children[(operation, resource)] = children
        return children

    def _timed(self, operation: str, key: str, started: float, call: Deferred[Any]) -> Deferred[Any]:
        duration, total, errors = self._labels(operation, key)

        def done(result: Any) -> Any:
            duration.observe(time.perf_counter() - started)
            total.inc()
            if isinstance(result, Failure) and not result.check(*_NOT_ERRORS):
                errors.inc()
            return result

        return call.addBoth(done)

    def get(self, key: str) -> Deferred[Any]:
        started = time.perf_counter()
        return self._timed("get", key, started, self._storage.get(key))

    def list(
        self, prefix: str, start: str | None = None, limit: int = 0, revision: int = 0
    ) -> Deferred[Any]:
        started = time.perf_counter()
        call = self._storage.list(prefix, start, limit, revision)
        return self._timed("listWithCount", prefix, started, call)

    def create(self, key: str, value: bytes) -> Deferred[int]:
        started = time.perf_counter()
        return self._timed("create", key, started, self._storage.create(key, value))

    def update(self, key: str, value: bytes, mod_revision: int) -> Deferred[int]:
        started = time.perf_counter()
        call = self._storage.update(key, value, mod_revision)
        return self._timed("update", key, started, call)

    def delete(self, key: str, mod_revision: int) -> Deferred[int]:
        started = time.perf_counter()
        return self._timed("delete", key, started, self._storage.delete(key, mod_revision))

    def prefix_state(self, prefix: str, revision: int) -> Deferred[Any]:
        started = time.perf_counter()
        call = self._storage.prefix_state(prefix, revision)
        return self._timed("count", prefix, started, call)

    def current_revision(self) -> Deferred[int]:
        started = time.perf_counter()
        call = self._storage.current_revision()
        return self._timed("getCurrentResourceVersion", self._group_prefix, started, call)

    def watch(self, prefix: str, from_revision: int, callback: WatchCallback) -> IWatch:
        return self._storage.watch(prefix, from_revision, callback)

    def compact(self, revision: int) -> Deferred[None]:
        return self._storage.compact(revision)

    def check_health(self) -> Deferred[None]:
        return self._storage.check_health()


# -- watch caches ----------------------------------------------------------------


def _object_count(cacher: ICacher) -> int:
    size = getattr(cacher, "size", None)
    if isinstance(size, int):
        return size
    return len(cacher.list("")[0])


class CacheCollector(Collector):
    """
    Object counts read from the watch caches at scrape time:
    C{apiserver_storage_objects{resource="flunders.wardle.example.com"}}
    and C{apiserver_resource_objects{group, resource}}; -1 while a cache
    is not ready (kube's value when the count cannot be had).
    """

    def __init__(self, cachers: Mapping[str, ICacher]) -> None:
        self._cachers = dict(cachers)

    def collect(self) -> Iterator[Metric]:
        legacy = GaugeMetricFamily(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind. "
            "In case of a fetching error, the value will be -1.",
            labels=["resource"],
        )
        current = GaugeMetricFamily(
            "apiserver_resource_objects",
            "Number of stored objects at the time of last check split by kind. "
            "In case of a fetching error, the value will be -1.",
            labels=["group", "resource"],
        )
        for plural, cacher in sorted(self._cachers.items()):
            count = float(_object_count(cacher)) if cacher.ready else -1.0
            legacy.add_metric([f"{plural}.{GROUP}"], count)
            current.add_metric([GROUP, plural], count)
        yield legacy
        yield current


# -- the whole set --------------------------------------------------------------


class ServerMetrics:
    """
    One server's metrics: its registry and the parts that feed it.

    @ivar registry: the server's own C{CollectorRegistry}.
    @ivar requests: the filters' observer.
    @ivar storage: the storage series (fed by L{timed}).
    """

    def __init__(self, process: bool = True) -> None:
        """
        @param process: also collect process, platform and GC metrics.
        """
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = RequestMetrics(self.registry)
        self.storage = StorageMetrics(self.registry)
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def timed(self, storage: IStorage, group_prefix: str) -> TimedStorage:
        """
        C{storage} with every call timed.

        @param group_prefix: the key prefix of the group's objects
            (C{<etcd-prefix>/wardle.example.com/}).
        """
        return TimedStorage(storage, self.storage, group_prefix)

    def watch_caches(self, cachers: Mapping[str, ICacher]) -> None:
        """
        Report the object counts of C{cachers} (by plural).
        """
        self.registry.register(CacheCollector(cachers))

    def exposition(self) -> bytes:
        """
        Everything, in the text exposition format (L{CONTENT_TYPE}).
        """
        return generate_latest(self.registry)


Exposition = Callable[[], bytes]
