"""
Prometheus metrics: the real Site, filters, routes and watch cache over
the in-memory storage (identity from a test authenticator), scraped through
C{/metrics} and parsed with prometheus_client's own parser; plus one scrape
of a real C{twistd wardled} over a real etcd.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from tests.harness import ALICE, WardledProcess
from tests.test_watch import RawResponse
from wardled.api.filters import RequestRecord
from wardled.api.requestinfo import parse_request_info
from wardled.auth.authz import Authorizer
from wardled.auth.policy import parse_policy
from wardled.auth.user import ANONYMOUS_USER, UserInfo, authenticated
from wardled.metrics import (
    LATENCY_BUCKETS,
    ServerMetrics,
    TimedStorage,
    path_label,
    request_labels,
)
from wardled.server import QuietSite, build_api, make_root
from wardled.storage.interfaces import Compacted, KeyExists
from wardled.storage.memory import MemoryStorage

BASE = "https://127.0.0.1:8443"
PREFIX = "/registry/wardle.example.com"
GROUP = "wardle.example.com"
V1A = f"/apis/{GROUP}/v1alpha1"
FLUNDERS = f"{V1A}/namespaces/default/flunders"
ADMIN = authenticated("development", ("system:masters",))
ALICE_USER = authenticated("alice", ("devs",))
MONITOR = authenticated("prometheus", ("monitoring",))

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """
    Every sample of an exposition, by name and label set.
    """
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def resource_labels(verb: str, scope: str, **extra: str) -> dict[str, str]:
    return {
        "verb": verb,
        "dry_run": "",
        "group": GROUP,
        "version": "v1alpha1",
        "resource": "flunders",
        "subresource": "",
        "scope": scope,
        "component": "apiserver",
        **extra,
    }


def named(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {label_set: value for (sample, label_set), value in samples.items() if sample == name}


class MetricsTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_780_000_000)
        self.storage = MemoryStorage()
        self.user: UserInfo = ADMIN
        self.serve()

    def serve(self, authorizer: Authorizer | None = None) -> None:
        root = make_root(
            self.storage, PREFIX, self.clock, lambda request: self.user, authorizer=authorizer
        )
        self.stub = StubTreq(root)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, bytes]:
        all_headers = {"Accept": "application/json", "Content-Type": "application/json"}
        all_headers.update(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        response = self.successResultOf(
            self.stub.request(  # type: ignore[attr-defined]
                method, BASE + path, data=data, headers={k: [v] for k, v in all_headers.items()}
            )
        )
        content = self.successResultOf(self.stub.content(response))  # type: ignore[attr-defined]
        return response.code, response.headers, content

    def scrape(self) -> Samples:
        user, self.user = self.user, ADMIN
        try:
            code, headers, content = self.request("GET", "/metrics")
        finally:
            self.user = user
        self.assertEqual(code, 200, content)
        self.assertEqual(
            headers.getRawHeaders("content-type"), ["text/plain; version=0.0.4; charset=utf-8"]
        )
        return parse(content.decode())

    def known_traffic(self) -> None:
        """
        Two creates, one list, one get of a missing object, one forbidden
        list.
        """
        for name in ("one", "two"):
            code, _, _ = self.request("POST", FLUNDERS, {"metadata": {"name": name}})
            self.assertEqual(code, 201)
        self.assertEqual(self.request("GET", FLUNDERS)[0], 200)
        self.assertEqual(self.request("GET", f"{FLUNDERS}/missing")[0], 404)
        self.user = ALICE_USER
        self.assertEqual(self.request("GET", FLUNDERS)[0], 403)
        self.user = ADMIN


class RequestCountTests(MetricsTestCase):
    def test_request_total_after_known_traffic(self) -> None:
        """
        Each request is counted once under kube's labels: POST for creates
        (scope resource), LIST for a collection GET, GET for an item; the
        forbidden request too, with its code.
        """
        self.known_traffic()
        totals = named(self.scrape(), "apiserver_request_total")
        flunder_totals = {
            label_set: value for label_set, value in totals.items() if ("resource", "flunders") in label_set
        }
        self.assertEqual(
            flunder_totals,
            {
                labels(**resource_labels("POST", "resource"), code="201"): 2.0,
                labels(**resource_labels("LIST", "namespace"), code="200"): 1.0,
                labels(**resource_labels("GET", "resource"), code="404"): 1.0,
                labels(**resource_labels("LIST", "namespace"), code="403"): 1.0,
            },
        )

    def test_duration_histogram(self) -> None:
        """
        Every request is observed once in kube's buckets (no code label:
        the 200 and the 403 LIST share a series).
        """
        self.known_traffic()
        samples = self.scrape()
        counts = named(samples, "apiserver_request_duration_seconds_count")
        self.assertEqual(counts[labels(**resource_labels("POST", "resource"))], 2.0)
        self.assertEqual(counts[labels(**resource_labels("LIST", "namespace"))], 2.0)
        self.assertEqual(counts[labels(**resource_labels("GET", "resource"))], 1.0)
        buckets = named(samples, "apiserver_request_duration_seconds_bucket")
        post = resource_labels("POST", "resource")
        bounds = sorted(
            float(dict(label_set)["le"])
            for label_set in buckets
            if label_set - {("le", dict(label_set)["le"])} == labels(**post)
        )
        self.assertEqual(bounds, [*LATENCY_BUCKETS, float("inf")])
        self.assertEqual(buckets[labels(**post, le="+Inf")], 2.0)
        self.assertGreater(named(samples, "apiserver_request_duration_seconds_sum")[labels(**post)], 0.0)

    def test_non_resource_requests(self) -> None:
        """
        A non-resource request has empty group, version, resource and scope
        and its path as subresource; an unserved path is counted as
        C{other}.
        """
        self.assertEqual(self.request("GET", "/healthz")[0], 200)
        self.assertEqual(self.request("GET", "/no/such/path")[0], 404)
        totals = named(self.scrape(), "apiserver_request_total")
        empty = {"dry_run": "", "group": "", "version": "", "resource": "", "scope": "", "component": "apiserver"}
        self.assertEqual(totals[labels(verb="GET", subresource="/healthz", code="200", **empty)], 1.0)
        self.assertEqual(totals[labels(verb="GET", subresource="other", code="404", **empty)], 1.0)

    def test_verbs_dry_run_and_unknown_resources(self) -> None:
        """
        DELETE of a collection reports C{DELETE}, server-side apply
        C{APPLY}, C{dryRun=All} fills C{dry_run}; an unknown resource is
        C{other} with nothing else named.
        """
        self.request("POST", f"{FLUNDERS}?dryRun=All", {"metadata": {"name": "dry"}})
        self.request("DELETE", FLUNDERS)
        self.request(
            "PATCH",
            f"{FLUNDERS}/applied?fieldManager=test",
            {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Flunder", "metadata": {"name": "applied"}},
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        self.request("GET", f"{V1A}/namespaces/default/gizmos")
        totals = named(self.scrape(), "apiserver_request_total")
        self.assertEqual(totals[labels(**resource_labels("POST", "resource", dry_run="All"), code="201")], 1.0)
        self.assertEqual(totals[labels(**resource_labels("DELETE", "namespace"), code="200")], 1.0)
        self.assertEqual(totals[labels(**resource_labels("APPLY", "resource"), code="201")], 1.0)
        unknown = {
            "dry_run": "", "group": "", "version": "", "resource": "", "scope": "",
            "component": "apiserver", "subresource": "other",
        }
        self.assertEqual(totals[labels(verb="LIST", code="404", **unknown)], 1.0)


class StorageMetricsTests(MetricsTestCase):
    def test_storage_objects_from_the_caches(self) -> None:
        """
        C{apiserver_storage_objects} is each watch cache's object count.
        """
        self.known_traffic()
        samples = self.scrape()
        objects = named(samples, "apiserver_storage_objects")
        self.assertEqual(
            objects,
            {
                labels(resource=f"flunders.{GROUP}"): 2.0,
                labels(resource=f"fischers.{GROUP}"): 0.0,
            },
        )
        self.assertEqual(
            named(samples, "apiserver_resource_objects")[labels(group=GROUP, resource="flunders")], 2.0
        )

    def test_etcd_request_duration(self) -> None:
        """
        Storage calls are timed per operation and resource.
        """
        self.known_traffic()
        samples = self.scrape()
        counts = named(samples, "etcd_request_duration_seconds_count")
        self.assertEqual(counts[labels(operation="create", group=GROUP, resource="flunders")], 2.0)
        totals = named(samples, "etcd_requests_total")
        self.assertEqual(totals[labels(operation="create", group=GROUP, resource="flunders")], 2.0)

    def test_errors_exclude_expected_outcomes(self) -> None:
        """
        A key that exists is an answer, not an error; a compacted revision
        is an error.
        """
        storage = MemoryStorage()
        metrics = ServerMetrics(process=False)
        timed = TimedStorage(storage, metrics.storage, f"{PREFIX}/{GROUP}/")
        key = f"{PREFIX}/{GROUP}/flunders/default/a"
        created = self.successResultOf(timed.create(key, b"{}"))
        self.failureResultOf(timed.create(key, b"{}"), KeyExists)
        updated = self.successResultOf(timed.update(key, b"{}", created))
        self.successResultOf(storage.compact(updated))
        self.failureResultOf(timed.list(f"{PREFIX}/{GROUP}/flunders/", revision=created), Compacted)
        samples = parse(metrics.exposition().decode())
        errors = named(samples, "etcd_request_errors_total")
        self.assertEqual(errors[labels(operation="create", group=GROUP, resource="flunders")], 0.0)
        self.assertEqual(errors[labels(operation="listWithCount", group=GROUP, resource="flunders")], 1.0)
        self.assertEqual(
            named(samples, "etcd_requests_total")[labels(operation="create", group=GROUP, resource="flunders")],
            2.0,
        )

    def test_each_server_has_its_own_registry(self) -> None:
        """
        Two servers in one process keep separate series.
        """
        other = StubTreq(make_root(MemoryStorage(), PREFIX, self.clock, lambda request: ADMIN))
        self.known_traffic()
        self.stub = other
        totals = named(self.scrape(), "apiserver_request_total")
        self.assertFalse([key for key in totals if ("resource", "flunders") in key])


class WatchMetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_780_000_000)
        self.metrics = ServerMetrics(process=False)
        server = build_api(
            MemoryStorage(), PREFIX, self.clock, lambda request: ADMIN, metrics=self.metrics
        )
        assert server.multiplexer is not None
        server.multiplexer.startService()
        self.addCleanup(server.multiplexer.stopService)
        self.site = QuietSite(server.resource, reactor=self.clock)
        self.stub = StubTreq(server.resource)

    def create(self, name: str) -> dict[str, Any]:
        response = self.successResultOf(
            self.stub.post(  # type: ignore[attr-defined]
                BASE + FLUNDERS,
                data=json.dumps({"metadata": {"name": name}}).encode(),
                headers={"Content-Type": ["application/json"]},
            )
        )
        self.assertEqual(response.code, 201)
        return dict(json.loads(self.successResultOf(self.stub.content(response))))  # type: ignore[attr-defined]

    def samples(self) -> Samples:
        return parse(self.metrics.exposition().decode())

    def test_watch_gauges_and_events(self) -> None:
        """
        An open watch raises C{apiserver_longrunning_requests} and
        C{apiserver_registered_watchers}; each event it sends counts in
        C{apiserver_watch_events_total}; when it ends the gauges go back
        down and the request is counted as a C{WATCH}.
        """
        first = self.create("first")
        watch = RawResponse(
            self.site,
            f"{FLUNDERS}?watch=true&resourceVersion={first['metadata']['resourceVersion']}",
            {"Accept": "application/json"},
        )
        self.assertEqual(watch.code, 200)
        long_running = labels(
            verb="WATCH", group=GROUP, version="v1alpha1", resource="flunders",
            subresource="", scope="namespace", component="apiserver",
        )
        watchers = labels(group=GROUP, version="v1alpha1", kind="Flunder")
        events = labels(group=GROUP, version="v1alpha1", resource="flunders")
        during = self.samples()
        self.assertEqual(named(during, "apiserver_longrunning_requests")[long_running], 1.0)
        self.assertEqual(named(during, "apiserver_registered_watchers")[watchers], 1.0)
        self.create("second")
        self.create("third")
        self.assertEqual(len(watch.events()), 2)
        self.assertEqual(named(self.samples(), "apiserver_watch_events_total")[events], 2.0)
        watch.disconnect()
        after = self.samples()
        self.assertEqual(named(after, "apiserver_longrunning_requests")[long_running], 0.0)
        self.assertEqual(named(after, "apiserver_registered_watchers")[watchers], 0.0)
        watch_total = labels(**resource_labels("WATCH", "namespace"), code="200")
        self.assertEqual(named(after, "apiserver_request_total")[watch_total], 1.0)


class AuthorizationTests(MetricsTestCase):
    def test_forbidden_for_a_non_master(self) -> None:
        """
        C{/metrics} goes through authorization: an authenticated user
        outside C{system:masters} gets 403, an anonymous one 401.
        """
        self.user = ALICE_USER
        code, _, content = self.request("GET", "/metrics")
        self.assertEqual(code, 403)
        self.assertEqual(json.loads(content)["message"], 'forbidden: User "alice" cannot get path "/metrics"')
        self.user = ANONYMOUS_USER
        self.assertEqual(self.request("GET", "/metrics")[0], 401)

    def test_allowed_by_the_policy_file(self) -> None:
        """
        A stand-alone policy rule for the path grants it.
        """
        policy = parse_policy(
            "rules:\n- groups: [monitoring]\n  verbs: [get]\n  nonResourcePaths: [/metrics]\n"
        )
        self.serve(Authorizer(policy))
        self.user = MONITOR
        code, _, content = self.request("GET", "/metrics")
        self.assertEqual(code, 200)
        self.assertIn(b"# TYPE apiserver_request_total counter", content)


class LabelTests(SynchronousTestCase):
    def record(self, method: bytes, uri: bytes, code: int = 200) -> RequestRecord:
        """
        A record of a real request line, as the filters would make it.
        """
        request = Request(DummyChannel())
        request.method = method
        request.uri = uri
        request.path, _, query = uri.partition(b"?")
        request.args = parse_qs(query)
        request.code = code
        record = RequestRecord(request, "id")
        watch = request.args.get(b"watch", [b""])[0] in (b"true", b"1")
        record.info = parse_request_info(method.decode(), request.path.decode(), watch)
        return record

    def check(self, cases: Iterable[tuple[bytes, bytes, tuple[str, ...]]]) -> None:
        for method, uri, expected in cases:
            verb, dry_run, *_, subresource, scope, component = request_labels(self.record(method, uri))
            self.assertEqual((verb, dry_run, subresource, scope), expected, uri)
            self.assertEqual(component, "apiserver")

    def test_verbs_and_scopes(self) -> None:
        """
        kube's CanonicalVerb/CleanVerb and CleanScope.
        """
        self.check(
            [
                (b"GET", b"/apis/wardle.example.com/v1alpha1/fischers", ("LIST", "", "", "cluster")),
                (b"GET", b"/apis/wardle.example.com/v1alpha1/fischers/f", ("GET", "", "", "resource")),
                (b"HEAD", b"/apis/wardle.example.com/v1alpha1/fischers/f", ("GET", "", "", "resource")),
                (b"GET", b"/apis/wardle.example.com/v1beta1/flunders?watch=1", ("WATCH", "", "", "cluster")),
                (
                    b"GET",
                    b"/apis/wardle.example.com/v1beta1/watch/namespaces/n/flunders/x",
                    ("WATCH", "", "", "resource"),
                ),
                (b"POST", b"/apis/wardle.example.com/v1alpha1/fischers", ("POST", "", "", "resource")),
                (b"PUT", b"/apis/wardle.example.com/v1alpha1/fischers/f?dryRun=All&dryRun=All", ("PUT", "All", "", "resource")),
                (b"DELETE", b"/apis/wardle.example.com/v1alpha1/fischers?dryRun=Some", ("DELETE", "invalid", "", "cluster")),
                (b"OPTIONS", b"/apis/wardle.example.com/v1alpha1/fischers", ("other", "", "", "cluster")),
                (b"GET", b"/apis/wardle.example.com/v1alpha1", ("GET", "", f"{V1A}", "")),
            ]
        )

    def test_path_label(self) -> None:
        """
        Served paths keep their name; sub-paths only when answered; the
        rest is C{other}.
        """
        self.assertEqual(path_label("/metrics", 403), "/metrics")
        self.assertEqual(path_label("/apis/", 200), "/apis")
        self.assertEqual(path_label("/readyz/etcd", 200), "/readyz/etcd")
        self.assertEqual(path_label("/readyz/nope", 404), "other")
        self.assertEqual(path_label("/openapi/v3/random", 401), "other")
        self.assertEqual(path_label("/random", 200), "other")


class DelayedAdmissionTests(MetricsTestCase):
    def test_counted_when_admission_waits(self) -> None:
        """
        A request whose authentication answers later (a token review) is
        counted once it is served.
        """
        waiting: Deferred[UserInfo] = Deferred()
        answers: list[Any] = [waiting]
        root = make_root(self.storage, PREFIX, self.clock, lambda request: answers.pop() if answers else ADMIN)
        self.stub = StubTreq(root)
        response = self.stub.get(BASE + FLUNDERS)  # type: ignore[attr-defined]
        self.assertNoResult(response)
        waiting.callback(ADMIN)
        self.stub.flush()
        self.assertEqual(self.successResultOf(response).code, 200)
        totals = named(self.scrape(), "apiserver_request_total")
        self.assertEqual(totals[labels(**resource_labels("LIST", "namespace"), code="200")], 1.0)


def test_scrape_a_real_server(wardled: WardledProcess, namespace: str) -> None:
    """
    A real wardled over a real etcd: the admin scrapes etcd latencies and
    process metrics; alice is refused.
    """
    path = f"{V1A}/namespaces/{namespace}/flunders"
    assert wardled.https("POST", path, {"metadata": {"name": "scraped"}}).status == 201
    response = wardled.https("GET", "/metrics")
    assert response.status == 200
    assert response.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(response.body.decode())
    create = labels(operation="create", group=GROUP, resource="flunders")
    assert named(samples, "etcd_request_duration_seconds_count")[create] >= 1.0
    assert named(samples, "process_cpu_seconds_total")[frozenset()] > 0.0
    assert named(samples, "process_resident_memory_bytes")[frozenset()] > 0.0
    created = labels(**resource_labels("POST", "resource"), code="201")
    assert named(samples, "apiserver_request_total")[created] >= 1.0
    assert wardled.https("GET", "/metrics", user=ALICE).status == 403
