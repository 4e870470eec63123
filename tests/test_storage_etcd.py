# -*- test-case-name: tests.test_storage_etcd -*-
"""
Tests that only the etcd driver needs: the exact gateway requests it sends
and how it reads the gateway's answers (against a small fake gateway, on a
L{Clock}), how it rides out a real etcd going away (restart, stop, a dead
first server), and mutual TLS to a real etcd.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tests.etcdserver import SharedEtcdMixin
from tests.etcdtls import MutualTLSEtcdMixin
from tests.test_storage_conformance import Recorder
from wardled.storage._gateway import b64, prefix_end
from wardled.storage.etcd import BACKOFF_INITIAL, EtcdStorage
from wardled.storage.interfaces import (
    DELETE,
    PUT,
    Compacted,
    Conflict,
    Event,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    Unavailable,
)

SERVER = "http://etcd.test:2379"
HEADER = {"cluster_id": "1", "member_id": "2", "raft_term": "2"}


def header(revision: int) -> dict[str, Any]:
    return {**HEADER, "revision": str(revision)}


def kv_json(key: str, value: bytes, create: int, mod: int) -> dict[str, str]:
    """
    A C{mvccpb.KeyValue} as the gateway writes it (no C{value} when empty).
    """
    kv = {
        "key": b64(key.encode()),
        "create_revision": str(create),
        "mod_revision": str(mod),
        "version": "1",
    }
    if value:
        kv["value"] = b64(value)
    return kv


class FakeGateway(Resource):
    """
    An etcd gateway that records each request and answers from a script.

    @ivar requests: (path, parsed JSON body) of every request, in order.
    @ivar answers: for each path, the answers still to give: a JSON object
        (200), a (status, raw body) pair, or C{None} to hold the request
        open (it lands in L{held}).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, Any]] = []
        self.answers: dict[str, list[Any]] = {}
        self.held: list[Request] = []

    def answer(self, path: str, *answers: Any) -> None:
        self.answers.setdefault(path, []).extend(answers)

    def render_POST(self, request: Request) -> bytes | int:
        path = request.path.decode()
        assert request.content is not None
        self.requests.append((path, json.loads(request.content.read())))
        answer = self.answers[path].pop(0)
        if answer is None:
            request.setHeader(b"content-type", b"application/json")
            self.held.append(request)
            return NOT_DONE_YET
        if isinstance(answer, tuple):
            status, body = answer
            request.setResponseCode(status)
            return bytes(body)
        return json.dumps(answer).encode()


class FakeGatewayTests(SynchronousTestCase):
    """
    Request shapes and answer parsing, against L{FakeGateway}.
    """

    def setUp(self) -> None:
        self.gateway = FakeGateway()
        self.agent = RequestTraversalAgent(self.gateway)
        self.clock = Clock()
        self.storage = EtcdStorage(
            self.clock, [SERVER], request_timeout=2.0, agent=self.agent
        )

    def result(self, waiting: Deferred[Any]) -> Any:
        self.agent.flush()
        return self.successResultOf(waiting)

    def failure(self, waiting: Deferred[Any], *kinds: type[Exception]) -> Exception:
        self.agent.flush()
        error = self.failureResultOf(waiting, *kinds).value
        assert isinstance(error, Exception)
        return error

    def test_create_request(self) -> None:
        """
        create is kine's create shape: compare create_revision 0, then put.
        """
        self.gateway.answer(
            "/v3/kv/txn", {"header": header(7), "succeeded": True, "responses": []}
        )
        self.assertEqual(self.result(self.storage.create("/a/k", b"v")), 7)
        self.assertEqual(
            self.gateway.requests,
            [
                (
                    "/v3/kv/txn",
                    {
                        "compare": [
                            {
                                "target": "CREATE",
                                "key": b64(b"/a/k"),
                                "result": "EQUAL",
                                "create_revision": 0,
                            }
                        ],
                        "success": [
                            {"request_put": {"key": b64(b"/a/k"), "value": b64(b"v")}}
                        ],
                    },
                )
            ],
        )

    def test_create_exists(self) -> None:
        """
        A failed txn has no C{succeeded} field at all.
        """
        self.gateway.answer("/v3/kv/txn", {"header": header(7)})
        error = self.failure(self.storage.create("/a/k", b"v"), KeyExists)
        self.assertEqual(str(error), "key exists: /a/k")

    def test_update_request(self) -> None:
        self.gateway.answer("/v3/kv/txn", {"header": header(9), "succeeded": True})
        self.assertEqual(self.result(self.storage.update("/a/k", b"v2", 8)), 9)
        key = b64(b"/a/k")
        self.assertEqual(
            self.gateway.requests[0][1],
            {
                "compare": [
                    {"target": "MOD", "key": key, "result": "EQUAL", "mod_revision": 8}
                ],
                "success": [{"request_put": {"key": key, "value": b64(b"v2")}}],
                "failure": [{"request_range": {"key": key}}],
            },
        )

    def test_update_conflict(self) -> None:
        self.gateway.answer(
            "/v3/kv/txn",
            {
                "header": header(9),
                "responses": [
                    {
                        "response_range": {
                            "header": header(9),
                            "kvs": [kv_json("/a/k", b"", 3, 9)],
                            "count": "1",
                        }
                    }
                ],
            },
        )
        error = self.failure(self.storage.update("/a/k", b"v2", 8), Conflict)
        assert isinstance(error, Conflict)
        self.assertEqual(error.current, KeyValue("/a/k", b"", 3, 9))

    def test_update_missing(self) -> None:
        """
        An empty range in the failure branch means the key is gone.
        """
        self.gateway.answer(
            "/v3/kv/txn",
            {"header": header(9), "responses": [{"response_range": {"header": {}}}]},
        )
        self.failure(self.storage.update("/a/k", b"v2", 8), KeyNotFound)

    def test_delete_request(self) -> None:
        self.gateway.answer("/v3/kv/txn", {"header": header(10), "succeeded": True})
        self.assertEqual(self.result(self.storage.delete("/a/k", 9)), 10)
        key = b64(b"/a/k")
        self.assertEqual(
            self.gateway.requests[0][1],
            {
                "compare": [
                    {"target": "MOD", "key": key, "result": "EQUAL", "mod_revision": 9}
                ],
                "success": [{"request_delete_range": {"key": key}}],
                "failure": [{"request_range": {"key": key}}],
            },
        )

    def test_list_request(self) -> None:
        """
        A page is a range from the start key to the prefix's end with limit
        and revision; C{more} and C{count} are read as etcd omits them.
        """
        self.gateway.answer(
            "/v3/kv/range",
            {
                "header": header(12),
                "kvs": [kv_json("/a/b/c", b"1", 4, 5)],
                "more": True,
                "count": "3",
            },
            {"header": header(12)},
        )
        page = self.result(
            self.storage.list("/a/b/", start="/a/b/b\0", limit=1, revision=6)
        )
        self.assertEqual(list(page.kvs), [KeyValue("/a/b/c", b"1", 4, 5)])
        self.assertEqual((page.revision, page.more, page.count), (6, True, 3))
        self.assertEqual(
            self.gateway.requests[0][1],
            {
                "key": b64(b"/a/b/b\0"),
                "range_end": b64(b"/a/b0"),
                "limit": 1,
                "revision": 6,
            },
        )
        empty = self.result(self.storage.list("/a/b/"))
        self.assertEqual((list(empty.kvs), empty.revision), ([], 12))
        self.assertEqual((empty.more, empty.count), (False, 0))
        self.assertEqual(
            self.gateway.requests[1][1],
            {"key": b64(b"/a/b/"), "range_end": b64(b"/a/b0")},
        )

    def test_future_revision(self) -> None:
        """
        etcd's error does not give the current revision; the driver asks.
        """
        message = "etcdserver: mvcc: required revision is a future revision"
        error_body = {"error": message, "message": message, "code": 11}
        self.gateway.answer(
            "/v3/kv/range",
            (400, json.dumps(error_body).encode()),
            {"header": header(4)},
        )
        error = self.failure(self.storage.list("/a/", revision=9), FutureRevision)
        assert isinstance(error, FutureRevision)
        self.assertEqual((error.requested, error.current), (9, 4))

    def test_unknown_gateway_error(self) -> None:
        body = {"error": "etcdserver: no leader", "code": 14}
        self.gateway.answer("/v3/kv/range", (503, json.dumps(body).encode()))
        error = self.failure(self.storage.get("/a"), Unavailable)
        self.assertEqual(
            str(error), f"etcd at {SERVER} answered 503: etcdserver: no leader"
        )

    def test_not_json(self) -> None:
        self.gateway.answer("/v3/kv/range", (404, b"404 page not found\n"))
        error = self.failure(self.storage.current_revision(), Unavailable)
        self.assertEqual(
            str(error),
            f"etcd at {SERVER} answered 404 to /v3/kv/range with non-JSON: "
            "404 page not found",
        )

    def test_timeout(self) -> None:
        """
        A request without an answer fails after C{request_timeout} seconds,
        on the injected clock, and leaves no timer behind.
        """
        self.gateway.answer("/v3/kv/range", None)
        reading = self.storage.get("/a")
        self.agent.flush()
        self.clock.advance(1.9)
        self.assertNoResult(reading)
        self.clock.advance(0.1)
        error = self.failureResultOf(reading, Unavailable).value
        self.assertEqual(
            str(error), f"etcd at {SERVER}: no answer to /v3/kv/range within 2s"
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    # -- watches -------------------------------------------------------------

    def start_watch(self, from_revision: int) -> tuple[Any, Recorder, Request]:
        self.gateway.answer("/v3/watch", None)
        recorder = Recorder()
        watch = self.storage.watch("/a/", from_revision, recorder)
        self.agent.flush()
        return watch, recorder, self.gateway.held[-1]

    def send(self, stream: Request, *results: dict[str, Any]) -> None:
        for result in results:
            stream.write(json.dumps({"result": result}).encode() + b"\n")
        self.agent.flush()

    def test_watch_request(self) -> None:
        self.start_watch(5)
        self.assertEqual(
            self.gateway.requests,
            [
                (
                    "/v3/watch",
                    {
                        "create_request": {
                            "key": b64(b"/a/"),
                            "range_end": b64(prefix_end(b"/a/")),
                            "prev_kv": True,
                            "progress_notify": True,
                            "start_revision": 5,
                        }
                    },
                )
            ],
        )

    def test_watch_messages(self) -> None:
        """
        Events of one message form one batch up to its last revision (PUT
        events have no C{type}); a header-only message is a progress
        notification.
        """
        _, recorder, stream = self.start_watch(5)
        put = {"kv": kv_json("/a/x", b"1", 5, 5)}
        delete = {
            "type": "DELETE",
            "kv": {"key": b64(b"/a/x"), "mod_revision": "6"},
            "prev_kv": kv_json("/a/x", b"1", 5, 5),
        }
        self.send(
            stream,
            {"header": header(6), "created": True},
            {"header": header(6), "events": [put, delete]},
            {"header": header(8)},
        )
        self.assertEqual(
            recorder.batches,
            [
                (
                    [
                        Event(PUT, KeyValue("/a/x", b"1", 5, 5)),
                        Event(
                            DELETE,
                            KeyValue("/a/x", b"", 0, 6),
                            KeyValue("/a/x", b"1", 5, 5),
                        ),
                    ],
                    6,
                ),
                ([], 8),
            ],
        )

    def test_watch_resumes(self) -> None:
        """
        When the stream ends, the watch reconnects after a back-off from the
        revision after the last one delivered, and drops repeats.
        """
        _, recorder, stream = self.start_watch(5)
        self.send(
            stream,
            {"header": header(7), "created": True},
            {"header": header(7), "events": [{"kv": kv_json("/a/x", b"1", 7, 7)}]},
        )
        stream.finish()
        self.agent.flush()
        self.gateway.answer("/v3/watch", None)
        self.clock.advance(BACKOFF_INITIAL)
        self.agent.flush()
        self.assertEqual(
            self.gateway.requests[-1][1]["create_request"]["start_revision"], 8
        )
        again = self.gateway.held[-1]
        self.send(
            again,
            {"header": header(9), "created": True},
            {
                "header": header(9),
                "events": [
                    {"kv": kv_json("/a/x", b"1", 7, 7)},
                    {"kv": kv_json("/a/y", b"2", 9, 9)},
                ],
            },
        )
        self.assertEqual([e.kv.mod_revision for e in recorder.events], [7, 9])
        self.assertEqual(recorder.problems, [])

    def test_watch_backs_off(self) -> None:
        """
        Failed reconnects wait longer each time.
        """
        _, _, stream = self.start_watch(5)
        stream.finish()
        self.agent.flush()
        delays = []
        for _ in range(3):
            self.gateway.answer("/v3/watch", (503, b"down"))
            [call] = self.clock.getDelayedCalls()
            delays.append(call.getTime() - self.clock.seconds())
            self.clock.advance(delays[-1])
            self.agent.flush()
        self.assertEqual([round(delay, 9) for delay in delays], [0.1, 0.2, 0.4])

    def test_watch_compacted(self) -> None:
        """
        A compacted start revision cancels the watch: C{done} fails with
        L{Compacted} and the stream is closed.
        """
        watch, recorder, stream = self.start_watch(2)
        closed: list[object] = []
        stream.notifyFinish().addBoth(closed.append)
        self.send(
            stream,
            {"header": header(9), "created": True},
            {"header": HEADER, "canceled": True, "compact_revision": "5"},
        )
        error = self.failureResultOf(watch.done, Compacted).value
        self.assertEqual((error.requested, error.compact_revision), (2, 5))
        self.assertEqual(len(closed), 1)
        self.assertEqual(recorder.batches, [])
        self.assertEqual(self.storage.compact_revision, 5)

    def test_watch_stop(self) -> None:
        watch, _, stream = self.start_watch(5)
        closed: list[object] = []
        stream.notifyFinish().addBoth(closed.append)
        watch.stop()
        watch.stop()
        self.agent.flush()
        self.assertIsNone(self.successResultOf(watch.done))
        self.assertEqual(len(closed), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.successResultOf(self.storage.close())

    def test_failing_callback_ends_watch(self) -> None:
        self.gateway.answer("/v3/watch", None)

        def failing(events: Any, revision: int) -> None:
            raise ZeroDivisionError()

        watch = self.storage.watch("/a/", 5, failing)
        self.agent.flush()
        self.send(
            self.gateway.held[-1],
            {"header": header(5), "events": [{"kv": kv_json("/a/x", b"1", 5, 5)}]},
        )
        self.failureResultOf(watch.done, ZeroDivisionError)
        self.assertEqual(self.clock.getDelayedCalls(), [])


def _closed_port() -> int:
    """
    A loopback port nothing listens on (connections are refused).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _pause(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class EtcdFaultTests(SharedEtcdMixin, TestCase):
    """
    A real etcd that restarts, stops, or hides behind a dead server URL.
    """

    def setUp(self) -> None:
        self.server = self.shared_etcd()

    def make_storage(self, servers: list[str], timeout: float = 5.0) -> EtcdStorage:
        storage = EtcdStorage(reactor, servers, "/faults/", request_timeout=timeout)
        self.addCleanup(storage.close)
        return storage

    def test_watch_survives_restart(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._watch_survives_restart())

    async def _watch_survives_restart(self) -> None:
        storage = self.make_storage([self.server.url])
        key = "/faults/restart/a"
        first = await storage.create(key, b"1")
        recorder = Recorder()
        watch = storage.watch("/faults/restart/", first, recorder)
        self.addCleanup(watch.stop)
        await recorder.wait_for(1)
        # A crash: the stream breaks and reconnects are refused for a while.
        self.server.kill()
        await _pause(0.5)
        self.server.restart()
        second = await self._write_after_reconnect(storage, recorder, key, b"2", first)
        # A clean shutdown ends the stream without an error.
        self.server.restart()
        third = await self._write_after_reconnect(storage, recorder, key, b"3", second)
        events = await recorder.wait_for(3)
        self.assertEqual(
            [(e.kv.value, e.kv.mod_revision) for e in events],
            [(b"1", first), (b"2", second), (b"3", third)],
        )
        self.assertEqual(recorder.problems, [])
        self.assertFalse(watch.done.called)

    async def _write_after_reconnect(
        self,
        storage: EtcdStorage,
        recorder: Recorder,
        key: str,
        value: bytes,
        mod_revision: int,
    ) -> int:
        """
        Wait for the watch's first progress notification from the new etcd
        (it has reconnected), then update C{key}.
        """
        await recorder.wait_for_batches(len(recorder.batches) + 1)
        delivered = recorder.wait_for(len(recorder.events) + 1)
        written = await storage.update(key, value, mod_revision)
        await delivered
        return written

    def test_unavailable_when_stopped(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._unavailable_when_stopped())

    async def _unavailable_when_stopped(self) -> None:
        storage = self.make_storage([self.server.url], timeout=3.0)
        await storage.create("/faults/stopped/a", b"1")
        self.server.kill()
        started = reactor.seconds()
        calls: list[Deferred[Any]] = [
            storage.get("/faults/stopped/a"),
            storage.create("/faults/stopped/b", b"2"),
            storage.list("/faults/stopped/"),
            storage.current_revision(),
            storage.check_health(),
        ]
        for call in calls:
            try:
                await call
            except Unavailable as error:
                self.assertIn(self.server.url, str(error))
                self.assertNotIn("\n", str(error))
            else:
                self.fail("expected Unavailable")
        self.assertLess(reactor.seconds() - started, 3.0)
        self.server.restart()
        kv, _ = await storage.get("/faults/stopped/a")
        assert kv is not None
        self.assertEqual(kv.value, b"1")

    def test_failover(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._failover())

    async def _failover(self) -> None:
        dead = f"http://127.0.0.1:{_closed_port()}"
        storage = self.make_storage([dead, self.server.url])
        written = await storage.create("/faults/failover/a", b"1")
        self.assertEqual(storage.server, self.server.url)
        kv, _ = await storage.get("/faults/failover/a")
        self.assertEqual(kv, KeyValue("/faults/failover/a", b"1", written, written))
        only_dead = self.make_storage([dead])
        try:
            await only_dead.current_revision()
        except Unavailable as error:
            self.assertIn(dead, str(error))
        else:
            self.fail("expected Unavailable")

    def test_close_waits_for_streams(self) -> Deferred[None]:
        """
        close() stops every watch and leaves no connection behind (trial's
        reactor check would fail the test otherwise).
        """

        async def closing() -> None:
            storage = EtcdStorage(reactor, [self.server.url])
            watches = [storage.watch("/faults/close/", 0, Recorder()) for _ in range(3)]
            await _pause(0.2)
            await storage.close()
            outcomes = await gatherResults([watch.done for watch in watches])
            self.assertEqual(outcomes, [None, None, None])

        return Deferred.fromCoroutine(closing())


class EtcdTLSTests(MutualTLSEtcdMixin, TestCase):
    """
    etcd over HTTPS with client-certificate authentication.
    """

    timeout = 60

    def make_storage(
        self, ca_file: str, cert_file: str | None = None, key_file: str | None = None
    ) -> EtcdStorage:
        storage = EtcdStorage(
            reactor,
            [self.server.url],
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
        )
        self.addCleanup(storage.close)
        return storage

    def test_mutual_tls(self) -> Deferred[None]:
        async def run() -> None:
            files = self.files
            storage = self.make_storage(
                ca_file=files["ca"], cert_file=files["cert"], key_file=files["key"]
            )
            self.assertTrue(self.server.url.startswith("https://"))
            await storage.check_health()
            written = await storage.create("/tls/a", b"secret")
            recorder = Recorder()
            watch = storage.watch("/tls/", written, recorder)
            self.addCleanup(watch.stop)
            events = await recorder.wait_for(1)
            self.assertEqual(
                events[0].kv, KeyValue("/tls/a", b"secret", written, written)
            )

        return Deferred.fromCoroutine(run())

    async def _assert_refused(self, storage: EtcdStorage) -> None:
        for call in (storage.current_revision(), storage.create("/tls/b", b"")):
            try:
                await call
            except Unavailable as error:
                self.assertIn(self.server.url, str(error))
                self.assertIn("certificate", str(error))
            else:
                self.fail("expected Unavailable")

    def test_no_client_certificate(self) -> Deferred[None]:
        storage = self.make_storage(ca_file=self.files["ca"])
        return Deferred.fromCoroutine(self._assert_refused(storage))

    def test_untrusted_server(self) -> Deferred[None]:
        files = self.files
        storage = self.make_storage(
            ca_file=files["other_ca"], cert_file=files["cert"], key_file=files["key"]
        )
        return Deferred.fromCoroutine(self._assert_refused(storage))
