# -*- test-case-name: tests.test_cache_bytes -*-
"""
Responses joined from the watch cache's bytes are byte for byte what
encoding the decoded objects gives (the responses wardled sent before the
cache held bytes): GETs, LISTs and watch events, in every served version
and shape, for objects written through the API and objects written by
others (Go's key order, unknown fields, escapes).  And the joined paths
really are taken: they decode nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.apiserver import PREFIX, running_api
from wardled.api.negotiate import (
    DEFAULT_OUTPUT,
    TABLE,
    Output,
    encode_json,
    encode_yaml,
)
from wardled.api.watchstream import EventEncoder
from wardled.apis.scheme import ResourceType
from wardled.apis.wardle import FISCHERS, FLUNDERS
from wardled.auth.user import authenticated
from wardled.cache.cacher import Cacher
from wardled.cache.compact import Packer
from wardled.registry.install import build_stores
from wardled.storage.interfaces import DELETE, Event, KeyValue
from wardled.storage.memory import MemoryStorage

BASE = "https://127.0.0.1:8443"
GROUP = "/apis/wardle.example.com"
ADMIN = authenticated("development", ("system:masters",))
KEYS = f"{PREFIX}/wardle.example.com"
TRICKY = "<b>&amp; \u2028\u2029 é 日本 \U0001f600 \\ \" \t"

Object = dict[str, Any]


def collection(resource: ResourceType, version: str, namespace: str = "default") -> str:
    if resource.namespaced:
        return f"{GROUP}/{version}/namespaces/{namespace}/{resource.plural}"
    return f"{GROUP}/{version}/{resource.plural}"


class CachedBytesTestCase(SynchronousTestCase):
    """
    A server over memory storage holding Flunders and Fischers written
    through the API (both Flunder versions) and straight into storage.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_780_000_000)
        self.storage = MemoryStorage()
        server = running_api(self, self.storage, self.clock, lambda request: ADMIN)
        assert server.multiplexer is not None
        self.cachers = {
            c.resource_prefix.rstrip("/").rsplit("/", 1)[-1]: c
            for c in server.multiplexer.cachers
        }
        self.stub = StubTreq(server.resource)
        self.fill()

    def fill(self) -> None:
        specs: list[Object] = [
            {},
            {"reference": "other", "referenceType": "Flunder"},
            {"reference": "fish", "referenceType": "Fischer"},
            {"reference": TRICKY},
        ]
        for index, spec in enumerate(specs):
            self.post(
                FLUNDERS,
                "v1alpha1",
                {
                    "metadata": {
                        "name": f"alpha-{index}",
                        "labels": {"shard": str(index % 2), "app": "x"},
                        "annotations": {"note": TRICKY},
                    },
                    "spec": spec,
                },
            )
        self.post(
            FLUNDERS,
            "v1beta1",
            {
                "metadata": {"name": "beta", "finalizers": ["example.com/keep"]},
                "spec": {"fischerReference": "fish", "referenceType": "Fischer"},
            },
        )
        self.post(FISCHERS, "v1alpha1", {"metadata": {"name": "fish"}, "disallowedFlunders": [TRICKY]})
        # As another writer (the Go reference) may have stored them: other
        # key order, unknown fields, no status, escaped characters.
        raw = (
            b'{"spec":{"reference":"x"},"metadata":{"uid":"u-1","name":"raw",'
            b'"namespace":"default","labels":{"shard":"1"},'
            b'"creationTimestamp":"2026-05-28T20:26:40Z","annotations":'
            b'{"a":"\\u003c\\u2028\\ud83d\\ude00"}},"kind":"Flunder",'
            b'"apiVersion":"wardle.example.com/v1alpha1","unknown":{"x":1}}'
        )
        self.successResultOf(self.storage.create(f"{KEYS}/flunders/default/raw", raw))
        self.successResultOf(
            self.storage.create(
                f"{KEYS}/flunders/default/plain",
                b'{"metadata":{"name":"plain","namespace":"default"}}',
            )
        )

    def post(self, resource: ResourceType, version: str, body: Object) -> None:
        body = {"apiVersion": f"wardle.example.com/{version}", "kind": resource.kind, **body}
        code, content = self.request("POST", collection(resource, version), json.dumps(body).encode())
        self.assertEqual(code, 201, content)

    def request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        accept: str = "application/json",
    ) -> tuple[int, bytes]:
        headers = {"Accept": [accept], "Content-Type": ["application/json"]}
        response = self.successResultOf(
            self.stub.request(method, BASE + path, data=data, headers=headers)  # type: ignore[attr-defined]
        )
        content = self.successResultOf(self.stub.content(response))  # type: ignore[attr-defined]
        return response.code, content

    def get(self, path: str, accept: str = "application/json") -> bytes:
        code, content = self.request("GET", path, accept=accept)
        self.assertEqual(code, 200, content)
        return content

    def stored(self, resource: ResourceType, namespace: str = "default") -> list[KeyValue]:
        """
        The stored keys of C{resource} (in C{namespace}), in key order.
        """
        prefix = f"{KEYS}/{resource.plural}/"
        if resource.namespaced:
            prefix += f"{namespace}/"
        return list(self.successResultOf(self.storage.list(prefix)).kvs)

    def decoded(self, kvs: Sequence[KeyValue], resource: ResourceType) -> list[Object]:
        return [resource.from_storage(kv.value, kv.mod_revision) for kv in kvs]

    def packer(self, resource: ResourceType) -> Packer:
        packer = self.cachers[resource.plural].packer
        assert packer is not None
        return packer


class JoinedResponseTests(CachedBytesTestCase):
    def test_list_every_version(self) -> None:
        """
        A list of the cache is the encoding of the stored objects, in each
        version, made from the cached bytes (nothing is decoded into the
        cache's memo).
        """
        for resource in (FLUNDERS, FISCHERS):
            kvs = self.stored(resource)
            revision = self.storage.revision
            for version in resource.versions:
                packer = self.packer(resource)
                packer.forget()
                before = packer.decodes
                body = self.get(collection(resource, version))
                expected = encode_json(
                    resource.encode_list(
                        version,
                        self.decoded(kvs, resource),
                        {"resourceVersion": str(revision)},
                    )
                )
                self.assertEqual(body, expected, (resource.plural, version))
                # Other versions are converted from the bytes, item by
                # item, without going through (and filling) the memo.
                self.assertEqual(packer.decodes - before, 0, version)

    def test_list_pages_and_selectors(self) -> None:
        """
        Pages (with their continue token and remaining count) and selected
        lists join the right items.
        """
        kvs = self.stored(FLUNDERS)
        objects = self.decoded(kvs, FLUNDERS)
        path = collection(FLUNDERS, "v1alpha1")
        for query, items in (
            ("limit=2", objects[:2]),
            ("labelSelector=shard%3D1", [o for o in objects if o["metadata"].get("labels", {}).get("shard") == "1"]),
            ("fieldSelector=metadata.name%3Draw", [o for o in objects if o["metadata"]["name"] == "raw"]),
            ("labelSelector=app&limit=1", [o for o in objects if "app" in o["metadata"].get("labels", {})][:1]),
        ):
            body = self.get(f"{path}?{query}")
            list_meta = json.loads(body)["metadata"]
            self.assertEqual(
                body, encode_json(FLUNDERS.encode_list("v1alpha1", items, list_meta)), query
            )
        empty = self.get(collection(FLUNDERS, "v1alpha1", "nowhere"))
        self.assertEqual(json.loads(empty)["items"], [])
        self.assertIn(b'"items":[]}\n', empty)

    def test_list_same_as_storage(self) -> None:
        """
        The cache's list and storage's (an exact resourceVersion) are the
        same bytes, in every shape.
        """
        revision = self.storage.revision
        exact = f"resourceVersion={revision}&resourceVersionMatch=Exact"
        for version in FLUNDERS.versions:
            path = collection(FLUNDERS, version)
            for accept in (
                "application/json",
                "application/yaml",
                "application/json;as=Table;v=v1;g=meta.k8s.io",
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
            ):
                self.assertEqual(
                    self.get(path, accept), self.get(f"{path}?{exact}", accept), (version, accept)
                )
            self.assertEqual(self.get(f"{path}?pretty=1"), self.get(f"{path}?pretty=1&{exact}"))

    def test_get_every_version_and_shape(self) -> None:
        for resource in (FLUNDERS, FISCHERS):
            for kv, obj in zip(self.stored(resource), self.decoded(self.stored(resource), resource), strict=True):
                name = obj["metadata"]["name"]
                for version in resource.versions:
                    path = f"{collection(resource, version)}/{name}"
                    packer = self.packer(resource)
                    packer.forget()
                    before = packer.decodes
                    shown = resource.encode(version, obj)
                    self.assertEqual(self.get(path), encode_json(shown), (name, version))
                    if version == resource.storage_version:
                        self.assertEqual(packer.decodes, before, name)
                    self.assertEqual(self.get(path, "application/yaml"), encode_yaml(shown))
                    self.assertEqual(self.get(f"{path}?pretty=true"), encode_json(shown, pretty=True))
                    table = json.loads(
                        self.get(path, "application/json;as=Table;v=v1;g=meta.k8s.io")
                    )
                    self.assertEqual(table["rows"][0]["object"]["metadata"]["name"], name)


class UncachedReadTests(CachedBytesTestCase):
    def test_storage_read_is_loose(self) -> None:
        """
        A store without a cache reads storage: the object comes back loose
        (no bytes), decoded as storage decodes it, and is answered encoded.
        """
        stores = build_stores(self.storage, PREFIX, self.clock.seconds)
        cached = self.successResultOf(
            ensureDeferred(stores["flunders"].read("default", "alpha-3"))
        )
        self.assertIsNone(cached.data)
        [kv] = [kv for kv in self.stored(FLUNDERS) if kv.key.endswith("/alpha-3")]
        self.assertEqual(cached.obj, FLUNDERS.from_storage(kv.value, kv.mod_revision))
        self.assertEqual((cached.name, cached.revision), ("alpha-3", kv.mod_revision))
        self.assertEqual(dict(cached.labels), {"shard": "1", "app": "x"})


class JoinedWatchTests(CachedBytesTestCase):
    def events(self, from_revision: int) -> list[Event]:
        seen: list[Event] = []
        watch = self.storage.watch(
            f"{KEYS}/flunders/", from_revision, lambda events, revision: seen.extend(events)
        )
        watch.stop()
        return seen

    def test_event_lines(self) -> None:
        """
        Each watch event's line, in each version, is the encoding of the
        stored object (for a delete, its last state at the delete's
        revision).
        """
        cacher: Cacher = self.cachers["flunders"]
        start = self.storage.revision
        watcher = cacher.watch(f"{KEYS}/flunders/", start, capacity=100)
        self.addCleanup(watcher.stop)
        self.post(FLUNDERS, "v1alpha1", {"metadata": {"name": "late", "annotations": {"a": TRICKY[:3]}}})
        code, body = self.request("GET", f"{collection(FLUNDERS, 'v1beta1')}/late")
        changed = json.loads(body)
        changed["metadata"]["annotations"] = {"x": TRICKY}
        code, _ = self.request(
            "PUT", f"{collection(FLUNDERS, 'v1beta1')}/late", json.dumps(changed).encode()
        )
        self.assertEqual(code, 200)
        code, _ = self.request("DELETE", f"{collection(FLUNDERS, 'v1beta1')}/late")
        self.assertEqual(code, 200)
        taken = watcher.take(10)
        stored = self.events(start + 1)
        self.assertEqual(len(taken), 3)
        self.assertEqual(len(stored), 3)
        for version in FLUNDERS.versions:
            encoder = EventEncoder(FLUNDERS, version, DEFAULT_OUTPUT)
            for (effective_type, event), change in zip(taken, stored, strict=True):
                kv = change.kv
                if change.type == DELETE:
                    assert change.prev_kv is not None
                    kv = KeyValue(kv.key, change.prev_kv.value, 0, kv.mod_revision)
                obj = FLUNDERS.from_storage(kv.value, kv.mod_revision)
                expected = encode_json(
                    {"type": effective_type, "object": FLUNDERS.encode(version, obj)}
                )
                self.assertEqual(encoder.event(effective_type, event), expected, version)

    def test_table_lines_still_encoded(self) -> None:
        cacher: Cacher = self.cachers["flunders"]
        watcher = cacher.watch(f"{KEYS}/flunders/", self.storage.revision, capacity=100)
        self.addCleanup(watcher.stop)
        self.post(FLUNDERS, "v1alpha1", {"metadata": {"name": "late"}})
        [(effective_type, event)] = watcher.take(10)
        encoder = EventEncoder(FLUNDERS, "v1alpha1", Output(as_kind=TABLE))
        line = json.loads(encoder.event(effective_type, event))
        self.assertEqual(line["object"]["kind"], "Table")
        self.assertEqual(line["object"]["rows"][0]["cells"][0], "late")
