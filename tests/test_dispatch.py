# -*- test-case-name: tests.test_dispatch -*-
"""
The route tree's front (L{wardled.api.dispatch}): which requests skip the
Klein route map, and that the direct road answers exactly as Klein does.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from tests.apiserver import running_api
from wardled.api.dispatch import Routes, is_plain_resource_request
from wardled.auth.user import authenticated
from wardled.limits import LimitSettings, RequestLimits
from wardled.server import QuietSite
from wardled.storage.memory import MemoryStorage

FLUNDERS = "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders"
ADMIN = authenticated("admin", ("system:masters",))


def _request(method: bytes, path: bytes) -> Any:
    request: Any = DummyRequest(path.lstrip(b"/").split(b"/"))
    request.method = method
    request.path = path
    return request


class PlainPathTests(SynchronousTestCase):
    """
    L{is_plain_resource_request}: only paths Werkzeug would read the same
    way skip it.
    """

    def test_plain_resource_paths(self) -> None:
        for path in (
            FLUNDERS,
            FLUNDERS + "/my-flunder.v2",
            "/apis/wardle.example.com/v1beta1/flunders",
            "/apis/wardle.example.com/v1alpha1/watch/namespaces/default/flunders/x",
        ):
            for method in (b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS"):
                self.assertTrue(
                    is_plain_resource_request(_request(method, path.encode())), (method, path)
                )

    def test_everything_else_goes_to_klein(self) -> None:
        for method, path in (
            (b"TRACE", FLUNDERS),
            (b"GET", FLUNDERS + "/"),
            (b"GET", FLUNDERS + "/a%20b"),
            (b"GET", FLUNDERS + "//a"),
            (b"GET", FLUNDERS + "/.."),
            (b"GET", "/apis/wardle.example.com/v1alpha1"),
            (b"GET", "/apis/wardle.example.com/v1alpha1/"),
            (b"GET", "/apis/other.example.com/v1/things"),
            (b"GET", "/healthz"),
            (b"GET", "/openapi/v2"),
        ):
            self.assertFalse(is_plain_resource_request(_request(method, path.encode())), path)


class _Recorder(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[bytes] = []

    def render(self, request: IRequest) -> bytes:
        self.paths.append(request.path)
        return b"klein"


class RoutesTests(SynchronousTestCase):
    """
    L{Routes} over a real API on the in-memory storage.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_780_000_000)
        self.storage = MemoryStorage()
        server = running_api(self, self.storage, self.clock, lambda request: ADMIN)
        self.root = server.resource
        filtered: Any = self.root
        self.routes: Routes = filtered.routes
        self.stub = StubTreq(self.root)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, dict[str, list[str]]]:
        data = None if body is None else json.dumps(body).encode()
        response = self.successResultOf(
            self.stub.request(  # type: ignore[attr-defined]
                method, "https://wardled.test" + path, data=data,
                headers={"Accept": ["application/json"], "Content-Type": ["application/json"]},
            )
        )
        content = self.successResultOf(response.content())
        headers = {
            name.decode().lower(): [value.decode() for value in values]
            for name, values in response.headers.getAllRawHeaders()
        }
        return response.code, json.loads(content) if content else None, headers

    def create(self, name: str) -> None:
        code, _, _ = self.call(
            "POST", FLUNDERS,
            {"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder", "metadata": {"name": name}},
        )
        self.assertEqual(code, 201)

    def test_plain_requests_skip_klein(self) -> None:
        """
        A plain resource request never reaches the Klein resource; the
        rest still does.
        """
        recorder = _Recorder()
        self.routes.klein = recorder
        self.create("a")
        code, body, _ = self.call("GET", FLUNDERS + "/a")
        self.assertEqual((code, body["metadata"]["name"]), (200, "a"))
        self.assertEqual(recorder.paths, [])
        self.stub.get("https://wardled.test/version")  # type: ignore[attr-defined]
        self.assertEqual(recorder.paths, [b"/version"])

    def test_same_answers_on_both_roads(self) -> None:
        """
        The same object read on the direct road and through Klein (a
        trailing slash sends it there) is the same body; so is a 404
        Status, and a 405 for a verb the path does not take.
        """
        self.create("a")
        direct = self.call("GET", FLUNDERS + "/a")
        through_klein = self.call("GET", FLUNDERS + "/%61")  # "a", escaped
        self.assertEqual(direct[:2], through_klein[:2])
        missing_direct = self.call("GET", FLUNDERS + "/nope")
        missing_klein = self.call("GET", FLUNDERS + "/n%6Fpe")
        self.assertEqual(missing_direct[:2], missing_klein[:2])
        self.assertEqual(missing_direct[0], 404)
        self.assertEqual(missing_direct[1]["reason"], "NotFound")
        code, status, _ = self.call(
            "POST", "/apis/wardle.example.com/v1alpha1/flunders", {"metadata": {"name": "x"}}
        )
        self.assertEqual((code, status["reason"]), (405, "MethodNotAllowed"))

    def test_direct_answers_have_a_length(self) -> None:
        """
        An answer ready at once is written whole, with a Content-Length
        (as Go's server writes small bodies), not chunked.
        """
        self.create("a")
        site = QuietSite(self.root, reactor=self.clock)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET " + FLUNDERS.encode() + b"/a HTTP/1.1\r\nHost: t\r\n\r\n")
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertIn(b"\r\nContent-Length: %d\r\n" % len(body), head + b"\r\n")
        self.assertNotIn(b"Transfer-Encoding", head)
        self.assertEqual(json.loads(body)["metadata"]["name"], "a")
        channel.connectionLost(Failure(ConnectionDone()))

    def test_later_answers_have_a_length_too(self) -> None:
        """
        An answer the handler gives later (after waiting for storage) is
        also written whole, with a Content-Length.
        """
        waiting: Deferred[bytes] = Deferred()

        async def slow(request: IRequest) -> bytes:
            return await waiting

        self.routes.api.resource = slow  # type: ignore[method-assign]
        site = QuietSite(self.root, reactor=self.clock)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET " + FLUNDERS.encode() + b"/a HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertEqual(transport.value(), b"")
        waiting.callback(b'{"late":true}')
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertIn(b"\r\nContent-Length: 13\r\n", head + b"\r\n")
        self.assertNotIn(b"Transfer-Encoding", head)
        self.assertEqual(body, b'{"late":true}')
        channel.connectionLost(Failure(ConnectionDone()))

    def test_deadline_cancels_the_handler(self) -> None:
        """
        A handler still waiting at the request's deadline is cancelled, and
        the answer is the deadline's 504 Status, not the cancellation.
        """
        server = running_api(
            self, self.storage, self.clock, lambda request: ADMIN,
            limits=RequestLimits(self.clock, LimitSettings(request_timeout=5.0)),
        )
        waiting: Deferred[bytes] = Deferred()
        cancelled: list[bool] = []

        async def slow(request: IRequest) -> bytes:
            try:
                return await waiting
            except CancelledError:
                cancelled.append(True)
                raise

        filtered: Any = server.resource
        filtered.routes.api.resource = slow
        site = QuietSite(server.resource, reactor=self.clock)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"GET " + FLUNDERS.encode() + b"/a HTTP/1.1\r\nHost: t\r\n\r\n")
        self.clock.advance(4.9)
        self.assertEqual((transport.value(), cancelled), (b"", []))
        self.clock.advance(0.2)
        self.assertEqual(cancelled, [True])
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 504 "), head)
        self.assertEqual(json.loads(body)["reason"], "Timeout")
        channel.connectionLost(Failure(ConnectionDone()))

    def test_failures_are_status_bodies(self) -> None:
        """
        An error raised by a handler becomes the Status Klein's error
        handler would write (here: a bad request body).
        """
        response = self.successResultOf(
            self.stub.request(  # type: ignore[attr-defined]
                "POST", "https://wardled.test" + FLUNDERS, data=b"{not json",
                headers={"Content-Type": ["application/json"]},
            )
        )
        status = json.loads(self.successResultOf(response.content()))
        self.assertEqual((response.code, status["kind"]), (400, "Status"))

    def test_client_gone_cancels_the_handler(self) -> None:
        """
        A handler still waiting when the client disconnects is cancelled
        and nothing is written after.
        """
        waiting: Deferred[bytes] = Deferred()
        cancelled: list[bool] = []
        waiting.addErrback(lambda failure: cancelled.append(True))

        async def slow(request: IRequest) -> bytes:
            return await waiting

        self.routes.api.resource = slow  # type: ignore[method-assign]
        request = _request(b"GET", FLUNDERS.encode())
        self.assertEqual(self.routes.render(request), NOT_DONE_YET)
        request._disconnected = True  # as Request.connectionLost marks it
        request.processingFailed(Failure(ConnectionDone("gone")))
        self.assertEqual(cancelled, [True])
        self.assertEqual(request.written, [])
        self.assertEqual(request.finished, 0)
