# -*- test-case-name: tests.test_limits -*-
"""
Unit tests for L{wardled.limits} (max in flight, request timeout, body
nesting) and L{wardled.connlimits} (head and body deadlines, head size,
HTTP/2 idle connections).

Requests go through a real L{GuardedSite} and Twisted's HTTP parser over a
L{StringTransport}, on a L{Clock}; the routes behind the filters are a
small Klein app whose slow handlers answer only when a test says so.
"""

from __future__ import annotations

import json
from typing import Any

import h2.config
import h2.connection
import h2.events
from klein import Klein
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from zope.interface import implementer

from wardled import apierrors
from wardled.api import respond
from wardled.api.filters import FilteredResource
from wardled.api.requestinfo import RequestInfo, parse_request_info
from wardled.auth.authz import Authorizer
from wardled.auth.policy import IPolicy
from wardled.auth.user import UserInfo, authenticated
from wardled.connlimits import HEADER_BYTES_LIMIT, HEADERS_TOO_LARGE, GuardedSite
from wardled.limits import (
    MAX_BODY_DEPTH,
    DeadlineCancelling,
    InflightLimiter,
    LimitSettings,
    RequestLimits,
    effective_timeout,
    nesting_exceeds,
    parse_go_duration,
    parse_limit,
)

FLUNDERS = "/apis/wardle.example.com/v1alpha1/namespaces/ns/flunders"
MASTER = authenticated("development", ("system:masters",))
ALICE = authenticated("alice", ("devs",))
TOO_MANY_STATUS = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Too many requests, please try again later.",
    "reason": "TooManyRequests",
    "details": {"retryAfterSeconds": 1},
    "code": 429,
}
TIMEOUT_BODY = (
    b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
    b'"message":"Timeout: request did not complete within the allotted timeout",'
    b'"reason":"Timeout","details":{},"code":504}\n'
)


@implementer(IPolicy)
class AllowAll:
    """
    A policy granting everything to everyone.
    """

    def allows(self, user: UserInfo, info: RequestInfo) -> bool:
        return True


class SlowRoutes:
    """
    Routes that answer when the test fires their Deferred (C{/fast} at
    once); cancellations are recorded.
    """

    app = Klein()

    def __init__(self) -> None:
        self.pending: list[Deferred[bytes]] = []
        self.requests: list[IRequest] = []
        self.cancelled = 0

    def _cancelled(self, deferred: Deferred[bytes]) -> None:
        self.cancelled += 1

    @app.handle_errors(apierrors.StatusError)
    def status_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, apierrors.StatusError)
        return respond.write_status(request, error)

    @app.route("/fast", methods=["GET", "POST"])
    def fast(self, request: IRequest) -> bytes:
        return b"fast"

    @app.route("/<path:rest>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def slow(self, request: IRequest, rest: str) -> Deferred[bytes]:
        deferred: Deferred[bytes] = Deferred(self._cancelled)
        self.pending.append(deferred)
        self.requests.append(request)
        return deferred


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """
    The status, headers (lower-cased names) and body of one HTTP/1.1
    response, de-chunked.
    """
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        chunks = b""
        while body:
            size_line, _, body = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            chunks, body = chunks + body[:size], body[size + 2 :]
        body = chunks
    return code, headers, body


class Server:
    """
    A L{FilteredResource} over L{SlowRoutes} behind a L{GuardedSite}, with
    connections made over L{StringTransport}s.
    """

    def __init__(self, settings: LimitSettings, user: UserInfo = ALICE) -> None:
        self.clock = Clock()
        self.routes = SlowRoutes()
        self.user = user
        self.authentication: Deferred[UserInfo] | None = None
        self.limits = RequestLimits(self.clock, settings)
        self.resource = FilteredResource(
            DeadlineCancelling(self.routes.app.resource()),
            self.authenticate,
            Authorizer(AllowAll()),
            limits=self.limits,
        )
        self.site = GuardedSite(self.resource, reactor=self.clock)
        self.site.limit_settings = settings

    def authenticate(self, request: IRequest) -> Any:
        if self.authentication is not None:
            return self.authentication
        return self.user

    def connect(self, protocol: bytes | None = None) -> tuple[Any, StringTransport]:
        connection = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
        transport = StringTransport()
        if protocol is not None:
            transport.negotiatedProtocol = protocol  # type: ignore[attr-defined]
        assert connection is not None
        connection.makeConnection(transport)
        return connection, transport

    def send(self, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[Any, StringTransport]:
        """
        Open a connection and send one request on it.
        """
        connection, transport = self.connect()
        head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}"
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        connection.dataReceived(head.encode() + b"\r\n" + body)
        return connection, transport

    def answer(self, index: int, body: bytes = b"done") -> None:
        self.routes.pending[index].callback(body)


def limited(readonly: int = 2, mutating: int = 1, timeout: float = 60.0, head: float = 32.0) -> LimitSettings:
    return LimitSettings(readonly, mutating, timeout, head)


class GoDurationTests(SynchronousTestCase):
    """
    L{parse_go_duration} accepts and refuses what Go's
    C{time.ParseDuration} does, with its messages.
    """

    def test_valid(self) -> None:
        for text, seconds in [
            ("1s", 1.0), ("1m30s", 90.0), ("-1.5h", -5400.0), ("300ms", 0.3),
            ("0", 0.0), ("+0", 0.0), (".5s", 0.5), ("1.s", 1.0), ("2h45m", 9900.0),
            ("1\u00b5s", 1e-6), ("1us", 1e-6), ("10ns", 1e-8),
        ]:
            self.assertAlmostEqual(parse_go_duration(text), seconds, msg=text)

    def test_invalid(self) -> None:
        for text, message in [
            ("", 'time: invalid duration ""'),
            ("x", 'time: invalid duration "x"'),
            (".", 'time: invalid duration "."'),
            ("-", 'time: invalid duration "-"'),
            ("1", 'time: missing unit in duration "1"'),
            ("1x", 'time: unknown unit "x" in duration "1x"'),
            ("5 s", 'time: unknown unit " s" in duration "5 s"'),
            ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
            ("\u00e9", 'time: invalid duration "\\xc3\\xa9"'),
        ]:
            with self.assertRaises(ValueError) as raised:
                parse_go_duration(text)
            self.assertEqual(str(raised.exception), message)

    def test_effective_timeout(self) -> None:
        """
        A requested timeout only ever shortens the maximum.
        """
        self.assertEqual(effective_timeout(60.0, None), 60.0)
        self.assertEqual(effective_timeout(60.0, 5.0), 5.0)
        self.assertEqual(effective_timeout(60.0, 120.0), 60.0)
        self.assertEqual(effective_timeout(60.0, 0.0), 60.0)
        self.assertEqual(effective_timeout(60.0, -1.0), 60.0)

    def test_parse_limit(self) -> None:
        self.assertEqual(parse_limit("max-requests-inflight", "0"), 0)
        self.assertEqual(parse_limit("max-requests-inflight", "400"), 400)
        with self.assertRaises(ValueError) as raised:
            parse_limit("max-requests-inflight", "-1")
        self.assertEqual(str(raised.exception), "--max-requests-inflight can not be negative value")
        self.assertRaises(ValueError, parse_limit, "max-requests-inflight", "many")


class NestingTests(SynchronousTestCase):
    """
    L{nesting_exceeds} bounds the depth of JSON and YAML bodies.
    """

    def test_json(self) -> None:
        def nested(depth: int) -> bytes:
            return b'{"a":' * depth + b"1" + b"}" * depth

        self.assertFalse(nesting_exceeds(nested(MAX_BODY_DEPTH)))
        self.assertTrue(nesting_exceeds(nested(MAX_BODY_DEPTH + 1)))
        self.assertTrue(nesting_exceeds(b"[" * 100_000))
        # Many brackets side by side are not deep.
        self.assertFalse(nesting_exceeds(b"[" + b"[1]," * 10_000 + b"[1]]"))

    def test_strings_do_not_count(self) -> None:
        self.assertFalse(nesting_exceeds(b'{"a":"' + b"[" * 500 + b'"}'))
        self.assertFalse(nesting_exceeds(b'{"a":"\\"' + b"{" * 500 + b'"}'))

    def test_yaml_block_and_sequences(self) -> None:
        deep = b"a:\n" + b"".join(b"  " * i + b"b:\n" for i in range(1, MAX_BODY_DEPTH + 2))
        shallow = b"a:\n" + b"".join(b"  " * i + b"b:\n" for i in range(1, 50)) + b"c: 1\n" * 500
        self.assertTrue(nesting_exceeds(deep))
        self.assertFalse(nesting_exceeds(shallow))
        self.assertTrue(nesting_exceeds(b"- " * (MAX_BODY_DEPTH + 1) + b"x"))
        self.assertFalse(nesting_exceeds(b"- " * MAX_BODY_DEPTH + b"x"))
        self.assertFalse(nesting_exceeds(b"items:\n" + b"- a: -1\n" * 1000))


class InflightTests(SynchronousTestCase):
    """
    Max in flight, as C{WithMaxInFlightLimit}.
    """

    def test_too_many_readonly(self) -> None:
        """
        With both read-only slots held, the next read gets 429 with
        C{Retry-After: 1} and Kubernetes' plain-text body; mutating
        requests and watches still get through.
        """
        server = Server(limited())
        server.send("GET", FLUNDERS)
        server.send("GET", FLUNDERS + "/one")
        self.assertEqual(len(server.routes.pending), 2)
        _, transport = server.send("GET", "/fast")
        code, headers, body = parse_response(transport.value())
        self.assertEqual(code, 429)
        self.assertEqual(json.loads(body), TOO_MANY_STATUS)
        self.assertEqual(headers["retry-after"], "1")
        self.assertEqual(headers["content-type"], "application/json")
        self.assertIn("audit-id", headers)
        server.send("POST", FLUNDERS, b"{}")
        server.send("GET", FLUNDERS + "?watch=true")
        self.assertEqual(len(server.routes.pending), 4)
        self.assertEqual((server.limits.inflight.readonly, server.limits.inflight.mutating), (2, 1))

    def test_too_many_mutating(self) -> None:
        server = Server(limited())
        server.send("POST", FLUNDERS, b"{}")
        for method in ("PUT", "DELETE", "PATCH", "POST"):
            _, transport = server.send(method, FLUNDERS + "/one", b"{}")
            self.assertEqual(parse_response(transport.value())[0], 429, method)
        server.send("GET", FLUNDERS)
        self.assertEqual(len(server.routes.pending), 2)

    def test_masters_are_served_without_a_slot(self) -> None:
        """
        A member of C{system:masters} is served when the limit is reached,
        and holds no slot for it.
        """
        server = Server(limited(readonly=1))
        server.send("GET", FLUNDERS)
        server.user = MASTER
        _, transport = server.send("GET", "/fast")
        self.assertEqual(parse_response(transport.value())[:3:2], (200, b"fast"))
        self.assertEqual(server.limits.inflight.readonly, 1)

    def test_released_on_every_end(self) -> None:
        """
        A slot is freed when the response is finished, when the route
        fails, and when the client goes away.
        """
        server = Server(limited(readonly=1))
        for end in ("answer", "fail", "disconnect"):
            connection, transport = server.send("GET", FLUNDERS)
            self.assertEqual(server.limits.inflight.readonly, 1)
            _, refused = server.send("GET", "/fast")
            self.assertEqual(parse_response(refused.value())[0], 429, end)
            pending = server.routes.pending[-1]
            if end == "answer":
                pending.callback(b"done")
                self.assertEqual(parse_response(transport.value())[2], b"done")
            elif end == "fail":
                pending.errback(apierrors.bad_request("no"))
            else:
                connection.connectionLost(Failure(ConnectionError("gone")))
            self.assertEqual(server.limits.inflight.readonly, 0, end)
            _, served = server.send("GET", "/fast")
            self.assertEqual(parse_response(served.value())[0], 200, end)
        self.assertEqual(server.limits.inflight.readonly, 0)

    def test_refused_requests_hold_nothing(self) -> None:
        server = Server(limited(readonly=1))
        server.send("GET", FLUNDERS)
        for _ in range(5):
            server.send("GET", "/fast")
        self.assertEqual(server.limits.inflight.readonly, 1)
        server.answer(0)
        self.assertEqual(server.limits.inflight.readonly, 0)

    def test_zero_is_unlimited(self) -> None:
        server = Server(limited(readonly=0, mutating=0))
        for _ in range(50):
            server.send("GET", FLUNDERS)
            server.send("POST", FLUNDERS, b"{}")
        self.assertEqual(len(server.routes.pending), 100)
        self.assertEqual((server.limits.inflight.readonly, server.limits.inflight.mutating), (0, 0))

    def test_verbs(self) -> None:
        """
        get, list and watch are read-only (watch is long-running); the rest
        mutate.
        """
        limiter = InflightLimiter(1, 1)

        class FakeRequest:
            finished = False

            def notifyFinish(self) -> Deferred[None]:
                return Deferred()

        for method, path, counter in [
            ("GET", FLUNDERS, "readonly"),
            ("GET", "/healthz", "readonly"),
            ("POST", FLUNDERS, "mutating"),
            ("DELETE", FLUNDERS, "mutating"),
        ]:
            limiter.readonly = limiter.mutating = 0
            info = parse_request_info(method, path, False)
            limiter.admit(FakeRequest(), info, ALICE)  # type: ignore[arg-type]
            self.assertEqual(getattr(limiter, counter), 1, (method, path))
        limiter.readonly = limiter.mutating = 0
        limiter.admit(FakeRequest(), parse_request_info("GET", FLUNDERS, True), ALICE)  # type: ignore[arg-type]
        self.assertEqual((limiter.readonly, limiter.mutating), (0, 0))


class TimeoutTests(SynchronousTestCase):
    """
    The request timeout, as C{WithRequestDeadline} and
    C{WithTimeoutForNonLongRunningRequests}.
    """

    def test_timeout_answers_504_and_cancels(self) -> None:
        server = Server(limited(timeout=60.0))
        _, transport = server.send("GET", FLUNDERS + "?timeout=2s")
        server.clock.advance(1.9)
        self.assertEqual(transport.value(), b"")
        server.clock.advance(0.1)
        code, headers, body = parse_response(transport.value())
        self.assertEqual((code, body), (504, TIMEOUT_BODY))
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(server.routes.cancelled, 1)
        self.assertEqual(server.limits.inflight.readonly, 0)

    def test_no_write_after_timeout(self) -> None:
        """
        Whatever still holds the request after the 504 cannot write to it.
        """
        server = Server(limited(timeout=1.0))
        _, transport = server.send("GET", FLUNDERS)
        server.clock.advance(1.0)
        written = transport.value()
        request = server.routes.requests[0]
        request.write(b"late")
        request.finish()
        self.assertEqual(transport.value(), written)
        self.assertEqual(parse_response(written)[2], TIMEOUT_BODY)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_default_and_cap(self) -> None:
        """
        Without C{timeout}, with a longer one, with 0 or a negative one,
        the request timeout applies.
        """
        for query in ("", "?timeout=120s", "?timeout=0s", "?timeout=-5s"):
            server = Server(limited(timeout=60.0))
            _, transport = server.send("GET", FLUNDERS + query)
            server.clock.advance(59.9)
            self.assertEqual(transport.value(), b"", query)
            server.clock.advance(0.1)
            self.assertEqual(parse_response(transport.value())[0], 504, query)

    def test_bad_timeout(self) -> None:
        server = Server(limited())
        _, transport = server.send("GET", FLUNDERS + "?timeout=soon")
        code, _, body = parse_response(transport.value())
        self.assertEqual(code, 400)
        self.assertEqual(
            json.loads(body),
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": 'invalid timeout specified in the request URL - time: invalid duration "soon"',
                "reason": "BadRequest",
                "code": 400,
            },
        )
        self.assertEqual(server.routes.pending, [])

    def test_watches_are_not_timed_out(self) -> None:
        server = Server(limited(timeout=1.0))
        _, transport = server.send("GET", FLUNDERS + "?watch=true&timeout=1s")
        server.clock.advance(100)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(server.routes.cancelled, 0)

    def test_answer_in_time(self) -> None:
        server = Server(limited(timeout=5.0))
        _, transport = server.send("GET", FLUNDERS)
        server.answer(0)
        server.clock.advance(10)
        self.assertEqual(parse_response(transport.value())[:3:2], (200, b"done"))
        self.assertEqual(server.routes.cancelled, 0)

    def test_timeout_during_admission(self) -> None:
        """
        The deadline covers authentication: 504 when it, and only it, is
        still running; its late answer writes nothing.
        """
        server = Server(limited(timeout=3.0))
        server.authentication = Deferred()
        _, transport = server.send("GET", FLUNDERS)
        server.clock.advance(3.0)
        self.assertEqual(parse_response(transport.value())[:3:2], (504, TIMEOUT_BODY))
        written = transport.value()
        server.authentication.callback(ALICE)
        self.assertEqual(transport.value(), written)
        self.assertEqual(server.routes.pending, [])
        self.assertEqual(server.limits.inflight.readonly, 0)

    def test_timeout_after_headers_closes(self) -> None:
        """
        Too late for a 504 (the response has started): the connection is
        closed, as Kubernetes does.
        """
        server = Server(limited(timeout=2.0))
        _, transport = server.send("GET", FLUNDERS)
        request = server.routes.requests[0]
        request.write(b"partial")
        server.clock.advance(2.0)
        self.assertTrue(transport.disconnected)  # aborted: the client sees a cut response
        self.assertNotIn(b"504", transport.value())

    def test_timeout_resets_a_started_http2_stream(self) -> None:
        """
        Over HTTP/2 a response already started is cut by resetting its
        stream.
        """
        resets: list[str] = []

        class Stream:
            def abortConnection(self) -> None:
                resets.append("RST_STREAM")

        server = Server(limited(timeout=2.0))
        server.send("GET", FLUNDERS)
        request: Any = server.routes.requests[0]
        request.write(b"partial")
        real_channel = request.channel
        request.channel = Stream()
        server.clock.advance(2.0)
        request.channel = real_channel
        self.assertEqual(resets, ["RST_STREAM"])

    def test_deep_body(self) -> None:
        server = Server(limited())
        body = b'{"a":' * 200 + b"1" + b"}" * 200
        _, transport = server.send("POST", FLUNDERS, body, "Content-Type: application/json\r\n")
        code, _, answer = parse_response(transport.value())
        self.assertEqual(code, 400)
        self.assertEqual(
            json.loads(answer)["message"],
            "the request body is nested too deeply: exceeded max depth 100",
        )
        self.assertEqual(server.routes.pending, [])


def feed_slowly(connection: Any, clock: Clock, data: bytes, every: float) -> None:
    for byte in data:
        connection.dataReceived(bytes([byte]))
        clock.advance(every)


class ConnectionTests(SynchronousTestCase):
    """
    The connection guards of L{GuardedSite}.
    """

    def test_silent_connection_dropped(self) -> None:
        server = Server(limited(head=5.0))
        _, transport = server.connect()
        server.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        server.clock.advance(0.1)
        self.assertTrue(transport.disconnected)  # aborted
        self.assertEqual(transport.value(), b"")

    def test_slowloris_dropped(self) -> None:
        """
        A head sent a byte a second is dropped at the deadline although
        bytes keep coming (Twisted's idle timeout would never fire).
        """
        server = Server(limited(head=5.0))
        connection, transport = server.connect()
        feed_slowly(connection, server.clock, b"GET /fast HTTP/1.1\r\nHo", 1.0)
        self.assertTrue(transport.disconnected)
        self.assertEqual(transport.value(), b"")

    def test_kept_alive_connection(self) -> None:
        """
        A head in time is served; the idle kept-alive connection is left to
        the idle timeout, but its next head has the deadline from its first
        byte.
        """
        server = Server(limited(head=5.0))
        connection, transport = server.connect()
        connection.dataReceived(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(parse_response(transport.value())[2], b"fast")
        server.clock.advance(30)
        self.assertFalse(transport.disconnecting)
        connection.dataReceived(b"GET /fa")
        server.clock.advance(5)
        self.assertTrue(transport.disconnected)

    def test_zero_disables_the_head_deadline(self) -> None:
        server = Server(limited(head=0.0))
        connection, transport = server.connect()
        feed_slowly(connection, server.clock, b"GET /fast", 10.0)
        self.assertFalse(transport.disconnecting)

    def test_head_too_large(self) -> None:
        """
        A head over 1 MiB + 4 KiB (many headers, one long header, a long
        URL) gets Go's 431 and the connection closes; one just under is
        served.
        """
        server = Server(limited())
        filler = "a" * 1000
        many = "".join(f"X-Filler-{n}: {filler}\r\n" for n in range(HEADER_BYTES_LIMIT // 1000))
        for head in (
            f"GET /fast HTTP/1.1\r\n{many}\r\n",
            f"GET /fast HTTP/1.1\r\nX-Big: {'b' * HEADER_BYTES_LIMIT}\r\n\r\n",
            f"GET /fast?{'c' * HEADER_BYTES_LIMIT} HTTP/1.1\r\n\r\n",
        ):
            connection, transport = server.connect()
            connection.dataReceived(head.encode())
            self.assertEqual(transport.value(), HEADERS_TOO_LARGE)
            self.assertTrue(transport.disconnecting)
        connection, transport = server.connect()
        connection.dataReceived(f"GET /fast?{'d' * (1 << 20)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.assertEqual(parse_response(transport.value())[:3:2], (200, b"fast"))

    def test_declared_body_too_large(self) -> None:
        server = Server(limited())
        connection, transport = server.connect()
        connection.dataReceived(
            f"POST /fast HTTP/1.1\r\nContent-Length: {apierrors.MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        )
        code, headers, body = parse_response(transport.value())
        self.assertEqual(code, 413)
        self.assertEqual(json.loads(body)["message"], "Request entity too large: limit is 3145728")
        self.assertEqual(headers["connection"], "close")
        self.assertTrue(transport.disconnecting)

    def test_chunked_body_too_large(self) -> None:
        server = Server(limited())
        connection, transport = server.connect()
        connection.dataReceived(b"POST /fast HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
        for _ in range(apierrors.MAX_BODY_BYTES // 65536 + 2):
            connection.dataReceived(chunk)
        self.assertEqual(parse_response(transport.value())[0], 413)
        self.assertTrue(transport.disconnecting)

    def test_slow_body(self) -> None:
        """
        A body not received within the request timeout gets the 504
        Status and the connection closes.
        """
        server = Server(limited(timeout=3.0, head=5.0))
        connection, transport = server.connect()
        connection.dataReceived(b"POST /fast HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
        feed_slowly(connection, server.clock, b"abc", 1.0)
        code, _, body = parse_response(transport.value())
        self.assertEqual((code, body), (504, TIMEOUT_BODY))
        self.assertTrue(transport.disconnecting)


class HTTP2Tests(SynchronousTestCase):
    """
    The guards of HTTP/2 connections.
    """

    def setUp(self) -> None:
        self.server = Server(limited(head=5.0))
        self.connection, self.transport = self.server.connect(b"h2")
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.client.initiate_connection()
        self.addCleanup(self.forget_global_calls)

    def forget_global_calls(self) -> None:
        """
        Cancel what Twisted's HTTP/2 connection scheduled on the global
        reactor as it was made (it would run in a later test that runs the
        reactor).
        """
        from twisted.internet import reactor

        channel = self.connection._channel
        for call in reactor.getDelayedCalls():
            owner = getattr(getattr(call, "func", None), "__self__", None)
            if owner is channel and call.active():
                call.cancel()

    def start(self) -> None:
        """
        Send the client preface, then run the HTTP/2 connection's sending
        loop on the test clock (Twisted starts it on the global reactor).
        """
        self.connection.dataReceived(self.client.data_to_send())
        channel = self.connection._channel
        self.forget_global_calls()
        channel._reactor = self.server.clock
        channel._sendPrioritisedData()

    def events(self) -> list[Any]:
        events = self.client.receive_data(self.transport.value())
        self.transport.clear()
        return events

    def request(self, stream_id: int) -> None:
        self.client.send_headers(
            stream_id,
            [(":method", "GET"), (":path", "/fast"), (":scheme", "https"), (":authority", "x")],
            end_stream=True,
        )
        self.connection.dataReceived(self.client.data_to_send())
        self.server.clock.advance(0)

    def test_no_stream_in_time(self) -> None:
        """
        A connection that opens no stream within the head deadline gets
        GOAWAY and is closed, though it keeps sending frames.
        """
        self.connection.dataReceived(self.client.data_to_send())
        for _ in range(4):
            self.server.clock.advance(1)
            self.client.ping(b"12345678")
            self.connection.dataReceived(self.client.data_to_send())
        self.server.clock.advance(1)
        self.assertTrue(any(isinstance(e, h2.events.ConnectionTerminated) for e in self.events()))
        self.assertTrue(self.transport.disconnecting)

    def test_idle_after_streams(self) -> None:
        """
        A connection serving streams is kept; once it has had none for the
        idle timeout (the site's) it is closed.
        """
        self.start()
        self.request(1)
        self.assertTrue(any(isinstance(e, h2.events.ResponseReceived) for e in self.events()))
        self.server.clock.advance(5)
        self.assertFalse(self.transport.disconnecting)
        for _ in range(10):
            self.server.clock.advance(10)
            self.client.ping(b"12345678")
            self.connection.dataReceived(self.client.data_to_send())
        self.assertTrue(self.transport.disconnecting)

    def test_slow_stream_counts_as_activity(self) -> None:
        """
        A stream still being answered keeps the connection.
        """
        self.start()
        self.client.send_headers(
            1,
            [(":method", "GET"), (":path", FLUNDERS), (":scheme", "https"), (":authority", "x")],
            end_stream=True,
        )
        self.connection.dataReceived(self.client.data_to_send())
        self.server.clock.advance(50)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(len(self.server.routes.pending), 1)
