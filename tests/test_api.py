"""
The HTTP layer in memory: the real Site, filters, routes and handlers over
the in-memory storage, driven through treq's StubTreq (a real Agent over
fake transports).  Identity comes from a test authenticator instead of TLS;
the TLS path is covered by the integration tests.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wardled.auth.user import ANONYMOUS_USER, UserInfo, authenticated
from wardled.server import make_root
from wardled.storage.memory import MemoryStorage

BASE = "https://127.0.0.1:8443"
V1A = "/apis/wardle.example.com/v1alpha1"
V1B = "/apis/wardle.example.com/v1beta1"
FLUNDERS = f"{V1A}/namespaces/default/flunders"
FLUNDERS_B = f"{V1B}/namespaces/default/flunders"
FISCHERS = f"{V1A}/fischers"
ADMIN = authenticated("development", ("system:masters",))
ALICE = authenticated("alice", ("devs",))


class APITestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_780_000_000)
        self.storage = MemoryStorage()
        self.user: UserInfo = ADMIN
        root = make_root(self.storage, "/registry/wardle.example.com", self.clock, lambda request: self.user)
        self.stub = StubTreq(root)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, bytes]:
        all_headers = {"Accept": "application/json"}
        all_headers.update(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        response = self.successResultOf(
            self.stub.request(  # type: ignore[attr-defined]
                method, BASE + path, data=data, headers={k: [v] for k, v in all_headers.items()}
            )
        )
        content = self.successResultOf(self.stub.content(response))  # type: ignore[attr-defined]
        return response.code, response.headers, content

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        code, _, content = self.request(method, path, body, **kwargs)
        return code, json.loads(content) if content else None

    def create_flunder(self, name: str, path: str = FLUNDERS, **spec: str) -> dict[str, Any]:
        code, body = self.call("POST", path, {"metadata": {"name": name}, "spec": spec})
        self.assertEqual(code, 201, body)
        return body


class DiscoveryTests(APITestCase):
    def test_apis(self) -> None:
        code, body = self.call("GET", "/apis")
        self.assertEqual(code, 200)
        group = body["groups"][0]
        self.assertEqual(group["name"], "wardle.example.com")
        self.assertEqual([v["version"] for v in group["versions"]], ["v1beta1", "v1alpha1"])
        self.assertEqual(group["preferredVersion"]["version"], "v1beta1")

    def test_aggregated_discovery(self) -> None:
        accept = (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
            "application/json"
        )
        code, headers, content = self.request("GET", "/apis", headers={"Accept": accept})
        self.assertEqual(code, 200)
        self.assertEqual(
            headers.getRawHeaders("content-type"),
            ["application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"],
        )
        body = json.loads(content)
        self.assertEqual((body["kind"], body["apiVersion"]), ("APIGroupDiscoveryList", "apidiscovery.k8s.io/v2"))
        group = body["items"][0]
        self.assertEqual(group["metadata"]["name"], "wardle.example.com")
        self.assertEqual([v["version"] for v in group["versions"]], ["v1beta1", "v1alpha1"])
        alpha = group["versions"][1]["resources"]
        self.assertEqual([r["resource"] for r in alpha], ["fischers", "flunders"])
        self.assertEqual(alpha[0]["scope"], "Cluster")
        self.assertEqual(alpha[1]["responseKind"], {"group": "wardle.example.com", "version": "v1alpha1", "kind": "Flunder"})
        self.assertIn("watch", alpha[1]["verbs"])
        etag = headers.getRawHeaders("etag")[0]
        code, _, content = self.request("GET", "/apis", headers={"Accept": accept, "If-None-Match": etag})
        self.assertEqual((code, content), (304, b""))
        # Only v2beta1 (no longer served) or plain JSON: the legacy list.
        for legacy in ("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", "application/json"):
            _, body = self.call("GET", "/apis", headers={"Accept": legacy})
            self.assertEqual(body["kind"], "APIGroupList")

    def test_group(self) -> None:
        _, body = self.call("GET", "/apis/wardle.example.com")
        self.assertEqual(body["kind"], "APIGroup")
        self.assertEqual(body["versions"][1]["version"], "v1alpha1")
        self.assertEqual(body["preferredVersion"], body["versions"][0])

    def test_resource_lists(self) -> None:
        code, body = self.call("GET", V1A)
        self.assertEqual(code, 200)
        resources = body["resources"]
        self.assertEqual([r["name"] for r in resources], ["fischers", "flunders"])
        self.assertEqual(resources[0]["namespaced"], False)
        self.assertEqual(resources[1]["singularName"], "flunder")
        self.assertEqual(resources[1]["storageVersionHash"], "UHqNx5H3K7A=")
        code, body = self.call("GET", V1B)
        self.assertEqual([r["name"] for r in body["resources"]], ["flunders"])

    def test_version(self) -> None:
        code, body = self.call("GET", "/version")
        self.assertEqual((code, body["major"], body["minor"]), (200, "1", "2"))

    def test_unknown_path_is_404_status(self) -> None:
        for path in ("/nothing", "/api", f"{V1A}/widgets", "/apis/other.group/v1", f"{V1A}/namespaces/default/fischers"):
            code, body = self.call("GET", path)
            self.assertEqual(code, 404, path)
            self.assertEqual(body["kind"], "Status")
            self.assertEqual(body["reason"], "NotFound")


class HealthTests(APITestCase):
    def test_healthz(self) -> None:
        self.user = ANONYMOUS_USER
        code, _, content = self.request("GET", "/healthz")
        self.assertEqual((code, content), (200, b"ok"))
        code, _, content = self.request("GET", "/readyz?verbose")
        self.assertEqual(code, 200)
        self.assertIn(b"[+]etcd ok\n", content)
        self.assertIn(b"[+]etcd-readiness ok\n", content)
        self.assertTrue(content.endswith(b"readyz check passed\n"))
        code, _, content = self.request("GET", "/livez/ping")
        self.assertEqual((code, content), (200, b"ok"))
        code, _, content = self.request("GET", "/healthz?verbose&exclude=etcd")
        self.assertIn(b"[+]etcd excluded: ok\n", content)


class AuthTests(APITestCase):
    def test_anonymous_gets_401_on_api_paths(self) -> None:
        self.user = ANONYMOUS_USER
        code, body = self.call("GET", FLUNDERS)
        self.assertEqual((code, body["reason"], body["message"]), (401, "Unauthorized", "Unauthorized"))

    def test_other_users_get_403(self) -> None:
        self.user = ALICE
        code, body = self.call("GET", FLUNDERS)
        self.assertEqual(code, 403)
        self.assertEqual(
            body["message"],
            'flunders.wardle.example.com is forbidden: User "alice" cannot list resource '
            '"flunders" in API group "wardle.example.com" in the namespace "default"',
        )
        code, body = self.call("GET", "/version")
        self.assertEqual(code, 200)


class CrudTests(APITestCase):
    def test_create_get_list_delete(self) -> None:
        created = self.create_flunder("one", reference="two")
        self.assertEqual(created["kind"], "Flunder")
        self.assertEqual(created["apiVersion"], "wardle.example.com/v1alpha1")
        self.assertEqual(created["spec"], {"reference": "two", "referenceType": "Flunder"})
        code, got = self.call("GET", f"{FLUNDERS_B}/one")
        self.assertEqual(code, 200)
        self.assertEqual(got["spec"], {"flunderReference": "two", "referenceType": "Flunder"})
        code, listed = self.call("GET", FLUNDERS)
        self.assertEqual(listed["kind"], "FlunderList")
        self.assertEqual([i["metadata"]["name"] for i in listed["items"]], ["one"])
        code, everywhere = self.call("GET", f"{V1A}/flunders")
        self.assertEqual(len(everywhere["items"]), 1)
        code, status = self.call("DELETE", f"{FLUNDERS}/one")
        self.assertEqual(code, 200)
        self.assertEqual(status["status"], "Success")
        self.assertEqual(status["details"]["kind"], "flunders")
        self.assertEqual(status["details"]["uid"], created["metadata"]["uid"])
        code, _ = self.call("GET", f"{FLUNDERS}/one")
        self.assertEqual(code, 404)

    def test_deprecation_warning_on_v1alpha1_only(self) -> None:
        _, headers, _ = self.request("GET", FLUNDERS)
        self.assertEqual(
            headers.getRawHeaders("warning"),
            ['299 - "wardle.example.com/v1alpha1 Flunder is deprecated in v1.3+, unavailable in v1.10+"'],
        )
        _, headers, _ = self.request("GET", FLUNDERS_B)
        self.assertIsNone(headers.getRawHeaders("warning"))

    def test_update_and_conflict(self) -> None:
        created = self.create_flunder("u")
        created["metadata"]["labels"] = {"a": "b"}
        code, updated = self.call("PUT", f"{FLUNDERS}/u", created)
        self.assertEqual(code, 200)
        self.assertEqual(updated["metadata"]["labels"], {"a": "b"})
        code, body = self.call("PUT", f"{FLUNDERS}/u", created)
        self.assertEqual((code, body["reason"]), (409, "Conflict"))
        code, body = self.call("PUT", f"{FLUNDERS}/other", updated)
        self.assertEqual(code, 400)
        self.assertEqual(body["message"], "the name of the object (u) does not match the name on the URL (other)")

    def test_patch_merge_and_json_patch(self) -> None:
        self.create_flunder("p")
        code, body = self.call(
            "PATCH", f"{FLUNDERS}/p", {"metadata": {"labels": {"x": "1"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        self.assertEqual((code, body["metadata"]["labels"]), (200, {"x": "1"}))
        code, body = self.call(
            "PATCH", f"{FLUNDERS}/p", {"metadata": {"labels": {"y": "2"}}},
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        )
        self.assertEqual(body["metadata"]["labels"], {"x": "1", "y": "2"})
        code, body = self.call(
            "PATCH", f"{FLUNDERS}/p", [{"op": "remove", "path": "/metadata/labels/x"}],
            headers={"Content-Type": "application/json-patch+json"},
        )
        self.assertEqual(body["metadata"]["labels"], {"y": "2"})
        code, body = self.call(
            "PATCH", f"{FLUNDERS}/p", {"a": 1}, headers={"Content-Type": "text/plain"}
        )
        self.assertEqual(code, 415)
        code, body = self.call(
            "PATCH", f"{FLUNDERS}/missing", {}, headers={"Content-Type": "application/merge-patch+json"}
        )
        self.assertEqual(code, 404)
        code, _, _ = self.request(
            "PATCH", f"{FLUNDERS}/p", raw=b"{nope", headers={"Content-Type": "application/merge-patch+json"}
        )
        self.assertEqual(code, 400)

    def test_bad_patches_change_nothing(self) -> None:
        created = self.create_flunder("bp")
        cases = [
            ("application/json-patch+json", b'{"op": "add"}'),
            ("application/json-patch+json", b'[{"op": "frobnicate", "path": "/x"}]'),
            ("application/json-patch+json", b'[{"op": "test", "path": "/metadata/name", "value": "no"}]'),
            ("application/json-patch+json", b'[{"op": "replace", "path": "/spec/x/y", "value": 1}]'),
            ("application/merge-patch+json", b'{"spec": {"reference": 5}}'),
            ("application/merge-patch+json", b'{"metadata": {"name": "renamed"}}'),
            ("application/strategic-merge-patch+json", b"[not json"),
            ("application/strategic-merge-patch+json", b'{"apiVersion": "v9"}'),
            ("application/merge-patch+json", b'"just a string"'),
        ]
        for content_type, raw in cases:
            code, body = self.call("PATCH", f"{FLUNDERS}/bp", raw=raw, headers={"Content-Type": content_type})
            self.assertTrue(400 <= code < 500, (content_type, raw, code, body))
            self.assertEqual(body["kind"], "Status")
        _, current = self.call("GET", f"{FLUNDERS}/bp")
        self.assertEqual(current["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"])

    def test_patch_with_stale_resource_version_conflicts(self) -> None:
        created = self.create_flunder("pin")
        self.call("PATCH", f"{FLUNDERS}/pin", {"metadata": {"labels": {"a": "1"}}},
                  headers={"Content-Type": "application/merge-patch+json"})
        code, _body = self.call(
            "PATCH", f"{FLUNDERS}/pin",
            {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"], "labels": {"b": "2"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        self.assertEqual(code, 409)

    def test_fischer_and_ban(self) -> None:
        code, body = self.call(
            "POST", FISCHERS,
            {"apiVersion": "wardle.example.com/v1alpha1", "kind": "Fischer",
             "metadata": {"name": "panda"}, "disallowedFlunders": ["badname"]},
        )
        self.assertEqual(code, 201)
        code, body = self.call("POST", FLUNDERS, {"metadata": {"name": "badname"}})
        self.assertEqual(code, 403)
        self.assertIn("this name may not be used", body["message"])

    def test_yaml_in_and_out(self) -> None:
        code, _, content = self.request(
            "POST", FLUNDERS,
            raw=b"apiVersion: wardle.example.com/v1alpha1\nkind: Flunder\nmetadata:\n  name: yaml-flunder\n",
            headers={"Content-Type": "application/yaml", "Accept": "application/yaml"},
        )
        self.assertEqual(code, 201)
        self.assertEqual(yaml.safe_load(content)["metadata"]["name"], "yaml-flunder")

    def test_table(self) -> None:
        self.create_flunder("t")
        code, body = self.call(
            "GET", f"{FLUNDERS}?limit=500",
            headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"},
        )
        self.assertEqual(code, 200)
        self.assertEqual(body["kind"], "Table")
        self.assertEqual([c["name"] for c in body["columnDefinitions"]], ["Name", "Created At"])
        self.assertEqual(body["rows"][0]["cells"][0], "t")

    def test_protobuf_is_406(self) -> None:
        code, body = self.call("GET", FLUNDERS, headers={"Accept": "application/vnd.kubernetes.protobuf"})
        self.assertEqual((code, body["reason"]), (406, "NotAcceptable"))

    def test_bad_bodies(self) -> None:
        for raw, content_type, expected in [
            (b"{bad", "application/json", 400),
            (b"[1,2]", "application/json", 400),
            (b"", "application/json", 400),
            (b"x" * (3 * 1024 * 1024 + 1), "application/json", 413),
            (b"{}", "application/xml", 415),
            (json.dumps({"kind": "Fischer", "apiVersion": "wardle.example.com/v1alpha1"}).encode(), "application/json", 400),
            (json.dumps({"metadata": {"name": "x"}, "spec": {"reference": 5}}).encode(), "application/json", 400),
        ]:
            code, body = self.call("POST", FLUNDERS, raw=raw, headers={"Content-Type": content_type})
            self.assertEqual(code, expected, (raw[:40], body))
            self.assertEqual(body["kind"], "Status")
        code, listed = self.call("GET", FLUNDERS)
        self.assertEqual(listed["items"], [])

    def test_invalid_spec_is_422(self) -> None:
        code, body = self.call("POST", FLUNDERS_B, {"metadata": {"name": "v"}, "spec": {"referenceType": "Fischer"}})
        self.assertEqual(code, 422)
        self.assertEqual(body["details"]["causes"][0]["field"], "spec.fischerReference")

    def test_unknown_fields_warn_or_fail(self) -> None:
        _, headers, _ = self.request("POST", FLUNDERS, {"metadata": {"name": "w"}, "spec": {"foo": 1}})
        self.assertIn('299 - "unknown field \\"spec.foo\\""', headers.getRawHeaders("warning"))
        code, body = self.call("POST", f"{FLUNDERS}?fieldValidation=Strict", {"metadata": {"name": "s"}, "spec": {"foo": 1}})
        self.assertEqual(code, 400)
        self.assertEqual(
            body["message"],
            'Flunder in version "v1alpha1" cannot be handled as a Flunder: strict decoding error: '
            'unknown field "spec.foo"',
        )

    def test_label_selector_and_pagination(self) -> None:
        for index in range(3):
            self.call("POST", FLUNDERS, {"metadata": {"name": f"l{index}", "labels": {"i": str(index)}}})
        code, body = self.call("GET", f"{FLUNDERS}?labelSelector=i%20in%20(0,2)")
        self.assertEqual([i["metadata"]["name"] for i in body["items"]], ["l0", "l2"])
        code, body = self.call("GET", f"{FLUNDERS}?labelSelector=i%3D%3D")
        self.assertEqual(code, 200)
        code, body = self.call("GET", f"{FLUNDERS}?fieldSelector=spec.x%3Dy")
        self.assertEqual(code, 400)
        self.assertEqual(body["message"], '"spec.x" is not a known field selector: only "metadata.name", "metadata.namespace"')
        code, page = self.call("GET", f"{FLUNDERS}?limit=2")
        self.assertEqual(page["metadata"]["remainingItemCount"], 1)
        code, rest = self.call("GET", f"{FLUNDERS}?limit=2&continue={page['metadata']['continue']}")
        self.assertEqual([i["metadata"]["name"] for i in rest["items"]], ["l2"])

    def test_list_options_validation(self) -> None:
        code, body = self.call("GET", f"{FLUNDERS}?resourceVersionMatch=Exact")
        self.assertEqual(code, 422)
        self.assertEqual(
            body["message"],
            'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )

    def test_deletecollection(self) -> None:
        self.create_flunder("a")
        self.create_flunder("b")
        code, body = self.call("DELETE", FLUNDERS)
        self.assertEqual(code, 200)
        self.assertEqual(body["kind"], "FlunderList")
        self.assertEqual(len(body["items"]), 2)

    def test_cross_namespace_path_only_lists(self) -> None:
        code, _body = self.call("POST", f"{V1A}/flunders", {"metadata": {"name": "x"}})
        self.assertEqual(code, 405)

    def test_dry_run(self) -> None:
        code, _ = self.call("POST", f"{FLUNDERS}?dryRun=All", {"metadata": {"name": "dry"}})
        self.assertEqual(code, 201)
        code, _ = self.call("GET", f"{FLUNDERS}/dry")
        self.assertEqual(code, 404)
        code, _body = self.call("POST", f"{FLUNDERS}?dryRun=Some", {"metadata": {"name": "dry"}})
        self.assertEqual(code, 422)

    def test_pretty_for_curl(self) -> None:
        self.create_flunder("pretty")
        _, _, content = self.request("GET", f"{FLUNDERS}/pretty", headers={"User-Agent": "curl/8.0"})
        self.assertIn(b'\n  "kind": "Flunder"', content)
        _, _, content = self.request("GET", f"{FLUNDERS}/pretty")
        self.assertTrue(content.startswith(b'{"kind":"Flunder"'))
