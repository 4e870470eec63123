# -*- test-case-name: tests.test_cached_reads -*-
"""
Reads are served from the watch cache: after the cache has synced, GETs
and LISTs (consistent, C{resourceVersion=""}, or C{resourceVersion=0}) never
range over the stored objects.  A consistent read costs one revision probe
(etcd's cheap C{count_only} range on one key); a C{resourceVersion=0} read
costs nothing at all; concurrent consistent reads share their probes (at
most one in flight, each read served by one that started after it arrived).
Counted on a storage that records its calls, through the real HTTP stack.
"""

from __future__ import annotations

import collections
import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wardled.auth.user import authenticated
from wardled.server import make_root
from wardled.storage.interfaces import KeyValue, ListResult
from wardled.storage.memory import MemoryStorage

BASE = "https://127.0.0.1:8443"
FLUNDERS = "/apis/wardle.example.com/v1beta1/namespaces/default/flunders"
ADMIN = authenticated("development", ("system:masters",))


class CountingStorage(MemoryStorage):
    """
    The in-memory storage, counting the reads that reach it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def get(self, key: str) -> Deferred[tuple[KeyValue | None, int]]:
        self.calls["get"] += 1
        return super().get(key)

    def list(self, *args: Any, **kwargs: Any) -> Deferred[ListResult]:
        self.calls["list"] += 1
        return super().list(*args, **kwargs)

    def current_revision(self) -> Deferred[int]:
        self.calls["current_revision"] += 1
        return super().current_revision()


class HeldProbeStorage(CountingStorage):
    """
    A L{CountingStorage} whose revision probes wait until the test answers
    them (as etcd's would, over the network).
    """

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        self.probes: list[Deferred[None]] = []

    def current_revision(self) -> Deferred[int]:
        answer = super().current_revision()
        if not self.held:
            return answer
        waiting: Deferred[None] = Deferred()
        self.probes.append(waiting)
        return waiting.addCallback(lambda _: answer)

    def answer_probes(self) -> None:
        probes, self.probes = self.probes, []
        for probe in probes:
            probe.callback(None)


class CachedReadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_780_000_000)
        self.storage = HeldProbeStorage()
        root = make_root(self.storage, "/registry/wardle.example.com", self.clock, lambda _: ADMIN)
        self.stub = StubTreq(root)
        for index in range(5):
            self.assertEqual(self.send("POST", FLUNDERS, self.flunder(f"f{index}"))[0], 201)
        self.storage.calls.clear()

    def flunder(self, name: str) -> bytes:
        body = {"apiVersion": "wardle.example.com/v1beta1", "kind": "Flunder", "metadata": {"name": name}}
        return json.dumps(body).encode()

    def send(self, method: str, path: str, data: bytes | None = None) -> tuple[int, Any]:
        headers = {"Accept": ["application/json"], "Content-Type": ["application/json"]}
        response = self.successResultOf(
            self.stub.request(method, BASE + path, data=data, headers=headers)  # type: ignore[attr-defined]
        )
        body = self.successResultOf(self.stub.content(response))  # type: ignore[attr-defined]
        return response.code, json.loads(body)

    def test_consistent_reads_probe_the_revision_only(self) -> None:
        """
        One after the other, each consistent read costs one probe (none is
        in flight when it arrives, so it starts its own).
        """
        for _ in range(20):
            code, body = self.send("GET", f"{FLUNDERS}/f3")
            self.assertEqual((code, body["metadata"]["name"]), (200, "f3"))
            code, body = self.send("GET", FLUNDERS)
            self.assertEqual((code, len(body["items"])), (200, 5))
        self.assertEqual(
            dict(self.storage.calls), {"current_revision": 40}, "no get or list reached storage"
        )

    def test_resource_version_zero_reads_touch_nothing(self) -> None:
        for _ in range(20):
            self.assertEqual(self.send("GET", f"{FLUNDERS}/f1?resourceVersion=0")[0], 200)
            self.assertEqual(self.send("GET", f"{FLUNDERS}?resourceVersion=0")[0], 200)
        self.assertEqual(dict(self.storage.calls), {})

    def test_a_write_is_read_back_from_the_cache(self) -> None:
        self.assertEqual(self.send("POST", FLUNDERS, self.flunder("late"))[0], 201)
        self.storage.calls.clear()
        code, body = self.send("GET", f"{FLUNDERS}/late")
        self.assertEqual((code, body["metadata"]["name"]), (200, "late"))
        self.assertEqual(self.storage.calls["get"] + self.storage.calls["list"], 0)

    def test_concurrent_reads_share_probes(self) -> None:
        """
        32 concurrent GETs cost two probes: the first read's, and the next
        one, shared by the 31 reads that arrived while the first ran.
        """
        self.storage.held = True
        headers = {"Accept": ["application/json"]}
        responses = [
            self.stub.request("GET", f"{BASE}{FLUNDERS}/f{index % 5}", headers=headers)  # type: ignore[attr-defined]
            for index in range(32)
        ]
        self.assertEqual(len(self.storage.probes), 1)
        while self.storage.probes:
            self.storage.answer_probes()
        self.stub.flush()
        codes = [self.successResultOf(response).code for response in responses]
        self.assertEqual(codes, [200] * 32)
        self.assertEqual(dict(self.storage.calls), {"current_revision": 2})
