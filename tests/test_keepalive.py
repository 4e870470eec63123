# -*- test-case-name: tests.test_keepalive -*-
"""
Tests for L{wardled.storage._keepalive}: the response parser (every framing,
split anywhere), the pool's connection reuse, failure and cancellation rules
on a memory reactor, the gateway's failover over it, and real etcds (plain
and mutual TLS) proving that sequential calls share one connection.
"""

from __future__ import annotations

from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.interfaces import IProtocol, IReactorTCP, IReactorTime
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseFailed, ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.etcdserver import SharedEtcdMixin
from tests.etcdtls import MutualTLSEtcdMixin
from wardled.storage._gateway import Gateway, tls_policy
from wardled.storage._keepalive import (
    AgentTransport,
    BadResponse,
    IUnaryTransport,
    KeepAlivePool,
    PoolClosed,
    ResponseParser,
    request_bytes,
)
from wardled.storage.etcd import EtcdStorage
from wardled.storage.interfaces import KeyValue, Unavailable

SERVER = "http://127.0.0.1:2379"
OTHER = "http://127.0.0.1:2380"

CONTENT_LENGTH = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 11\r\n"
    b"\r\n"
    b'{"a":"b c"}'
)
CHUNKED = (
    b"HTTP/1.1 200 OK\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
    b"5;name=value\r\n"
    b'{"a":\r\n'
    b'6 ; ext="x;y"\r\n'
    b'"b c"}\r\n'
    b"0\r\n"
    b"X-Trailer: t\r\n"
    b"\r\n"
)


def ok(body: bytes = b"{}", *headers: bytes) -> bytes:
    """
    A 200 answer with a Content-Length and extra header lines.
    """
    head = b"".join(header + b"\r\n" for header in headers)
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (
        head,
        len(body),
        body,
    )


def parse(*pieces: bytes, expect_body: bool = True) -> ResponseParser:
    parser = ResponseParser(expect_body)
    for piece in pieces:
        parser.feed(piece)
    return parser


class ResponseParserTests(SynchronousTestCase):
    """
    L{ResponseParser} on every framing, whole and split.
    """

    def assertParsed(
        self, parser: ResponseParser, status: int, body: bytes, reusable: bool
    ) -> None:
        self.assertTrue(parser.done)
        self.assertEqual((parser.status, parser.body), (status, body))
        self.assertEqual(parser.reusable, reusable)

    def test_content_length(self) -> None:
        self.assertParsed(parse(CONTENT_LENGTH), 200, b'{"a":"b c"}', True)

    def test_chunked_with_extensions_and_trailer(self) -> None:
        self.assertParsed(parse(CHUNKED), 200, b'{"a":"b c"}', True)

    def test_split_at_every_byte(self) -> None:
        """
        However the bytes are cut, the answer is the same, and it is not
        done before its last byte.
        """
        for response in (CONTENT_LENGTH, CHUNKED, ok(b"", b"Connection: close")):
            whole = parse(response)
            for cut in range(1, len(response)):
                parser = ResponseParser()
                self.assertFalse(parser.feed(response[:cut]))
                self.assertTrue(parser.feed(response[cut:]))
                self.assertEqual(
                    (parser.status, parser.body, parser.reusable),
                    (whole.status, whole.body, whole.reusable),
                )
            bytewise = ResponseParser()
            done = [bytewise.feed(response[i : i + 1]) for i in range(len(response))]
            self.assertEqual(done, [False] * (len(response) - 1) + [True])
            self.assertEqual(bytewise.body, whole.body)

    def test_connection_close(self) -> None:
        self.assertParsed(parse(ok(b"{}", b"Connection: Close")), 200, b"{}", False)
        self.assertParsed(
            parse(ok(b"{}", b"Connection: keep-alive, close")), 200, b"{}", False
        )

    def test_http10_not_reused(self) -> None:
        response = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}"
        self.assertParsed(parse(response), 200, b"{}", False)

    def test_body_until_close(self) -> None:
        """
        Without a length or chunking, the body is what comes before the
        connection closes.
        """
        parser = parse(b"HTTP/1.1 200 OK\r\n\r\n{", b'"a":1}')
        self.assertFalse(parser.done)
        self.assertTrue(parser.until_close)
        self.assertTrue(parser.connection_closed())
        self.assertParsed(parser, 200, b'{"a":1}', False)

    def test_unknown_transfer_coding_until_close(self) -> None:
        response = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nab"
        )
        parser = parse(response)
        self.assertFalse(parser.done)
        self.assertTrue(parser.connection_closed())
        self.assertEqual(parser.body, b"ab")

    def test_no_body_statuses(self) -> None:
        self.assertParsed(parse(b"HTTP/1.1 204 No Content\r\n\r\n"), 204, b"", True)
        self.assertParsed(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", expect_body=False),
            200,
            b"",
            True,
        )

    def test_interim_answer_skipped(self) -> None:
        parser = parse(b"HTTP/1.1 100 Continue\r\n\r\n" + CONTENT_LENGTH)
        self.assertParsed(parser, 200, b'{"a":"b c"}', True)

    def test_error_status_and_bare_newlines(self) -> None:
        response = b"HTTP/1.1 503\nContent-Length: 2\n\n{}"
        self.assertParsed(parse(response), 503, b"{}", True)

    def test_bytes_after_the_answer(self) -> None:
        """
        Anything after the answer means the framing is off: not reused.
        """
        self.assertParsed(parse(CONTENT_LENGTH + b"HTTP"), 200, b'{"a":"b c"}', False)

    def test_malformed(self) -> None:
        for response in (
            b"HTTP/2 200 OK\r\n",
            b"garbage\r\n",
            b"HTTP/1.1 20 OK\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70000,
            b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70000 + b"\r\n\r\n",
        ):
            self.assertRaises(BadResponse, parse, response)

    def test_request_bytes(self) -> None:
        self.assertEqual(
            request_bytes(b"POST", "/v3/kv/range", b"h:1", b"{}"),
            b"POST /v3/kv/range HTTP/1.1\r\nHost: h:1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        )
        self.assertEqual(
            request_bytes(b"GET", "/health", b"h:1", None),
            b"GET /health HTTP/1.1\r\nHost: h:1\r\n\r\n",
        )
        for path in ("health", "/a b", "/a\r\nX: y"):
            self.assertRaises(ValueError, request_bytes, b"GET", path, b"h", None)


class WriteRecorder(StringTransport):
    """
    A transport that keeps each write separately.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


class Server:
    """
    The far end of one memory-reactor connection.
    """

    def __init__(self, protocol: IProtocol) -> None:
        self.protocol = protocol
        self.transport = WriteRecorder()
        protocol.makeConnection(self.transport)

    def answer(self, data: bytes) -> None:
        self.transport.clear()
        self.protocol.dataReceived(data)

    def lose(self, reason: Exception | None = None) -> None:
        self.protocol.connectionLost(Failure(reason or ConnectionDone()))


def accept(memory: MemoryReactorClock, index: int = -1) -> Server:
    """
    Complete the connection attempt C{index}.
    """
    host, port, factory, _, _ = memory.tcpClients[index]
    protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
    assert protocol is not None
    return Server(protocol)


def refuse(memory: MemoryReactorClock, index: int = -1) -> None:
    """
    Fail the connection attempt C{index}: refused.
    """
    factory = memory.tcpClients[index][2]
    connector = memory.connectors[index]
    factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))


class PoolTests(SynchronousTestCase):
    """
    L{KeepAlivePool} on a memory reactor.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.pool = KeepAlivePool(self.reactor, max_idle=2)

    def accept(self, index: int = -1) -> Server:
        return accept(self.reactor, index)

    def get(self, server: str = SERVER, idempotent: bool = True) -> Deferred[Any]:
        return self.pool.request(server, "POST", "/v3/kv/range", b"{}", idempotent)

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IUnaryTransport, self.pool))
        self.assertTrue(verifyObject(IUnaryTransport, AgentTransport(None)))  # type: ignore[arg-type]

    def test_request_in_one_write(self) -> None:
        answer = self.get()
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 2379))
        server = self.accept()
        self.assertEqual(
            server.transport.writes,
            [
                (
                    b"POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                )
            ],
        )
        self.assertNoResult(answer)
        server.answer(CONTENT_LENGTH)
        self.assertEqual(self.successResultOf(answer), (200, b'{"a":"b c"}'))

    def test_host_name(self) -> None:
        """
        A host name is resolved (the memory reactor resolves everything to
        127.0.0.1) and sent as the Host header.
        """
        answer = self.pool.request("http://etcd.test:2379", b"GET", "/health", None)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 2379))
        server = self.accept()
        self.assertEqual(
            server.transport.value(),
            b"GET /health HTTP/1.1\r\nHost: etcd.test:2379\r\n\r\n",
        )
        server.answer(ok(b'{"health":"true"}'))
        self.assertEqual(self.successResultOf(answer), (200, b'{"health":"true"}'))

    def test_not_a_server_url(self) -> None:
        self.assertRaises(ValueError, self.pool.request, "etcd:2379", "GET", "/", None)

    def test_reused_after_complete_answer(self) -> None:
        first = self.get()
        server = self.accept()
        server.answer(CHUNKED)
        self.successResultOf(first)
        self.assertEqual(self.pool.idle(SERVER), 1)
        second = self.get()
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.pool.idle(SERVER), 0)
        self.assertTrue(server.transport.value().startswith(b"POST /v3/kv/range "))
        server.answer(ok(b'{"n":2}'))
        self.assertEqual(self.successResultOf(second), (200, b'{"n":2}'))
        self.assertEqual(self.pool.opened, 1)

    def test_reused_by_the_answer_callback(self) -> None:
        """
        The connection is back in the pool before the answer is delivered,
        so the caller's next request, made from its callback, reuses it.
        """
        follow_ups: list[Deferred[Any]] = []
        first = self.get().addCallback(lambda _: follow_ups.append(self.get()))
        server = self.accept()
        server.answer(ok())
        self.successResultOf(first)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        server.answer(ok())
        self.assertEqual(self.successResultOf(follow_ups[0]), (200, b"{}"))

    def test_byte_by_byte_then_reused(self) -> None:
        first = self.get()
        server = self.accept()
        for index in range(len(CHUNKED)):
            self.assertNoResult(first)
            server.protocol.dataReceived(CHUNKED[index : index + 1])
        self.assertEqual(self.successResultOf(first), (200, b'{"a":"b c"}'))
        self.assertEqual(self.pool.idle(SERVER), 1)

    def test_connection_close_not_pooled(self) -> None:
        first = self.get()
        server = self.accept()
        server.answer(ok(b"{}", b"Connection: close"))
        self.assertEqual(self.successResultOf(first), (200, b"{}"))
        self.assertTrue(server.transport.disconnecting)
        self.assertEqual(self.pool.idle(SERVER), 0)
        self.get()
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_body_until_close(self) -> None:
        answer = self.get()
        server = self.accept()
        server.answer(b"HTTP/1.1 200 OK\r\n\r\n{")
        server.protocol.dataReceived(b"}")
        self.assertNoResult(answer)
        server.lose()
        self.assertEqual(self.successResultOf(answer), (200, b"{}"))
        self.assertEqual(self.pool.idle(SERVER), 0)

    def test_idle_cap_and_lifo(self) -> None:
        """
        At most C{max_idle} answered connections are kept; the last one
        given back is the first one reused.
        """
        answers = [self.get() for _ in range(3)]
        servers = [self.accept(index) for index in range(3)]
        for server in servers:
            server.answer(ok())
        self.assertEqual([self.successResultOf(a)[0] for a in answers], [200] * 3)
        self.assertEqual(self.pool.idle(SERVER), 2)
        self.assertEqual(
            [server.transport.disconnecting for server in servers],
            [False, False, True],
        )
        self.get()
        self.assertEqual(servers[1].transport.value()[:4], b"POST")
        self.assertEqual(servers[0].transport.value(), b"")

    def test_servers_apart(self) -> None:
        self.get(SERVER)
        self.accept().answer(ok())
        self.get(OTHER)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertEqual(self.reactor.tcpClients[1][:2], ("127.0.0.1", 2380))

    def test_refused(self) -> None:
        answer = self.get()
        refuse(self.reactor)
        self.failureResultOf(answer, ConnectionRefusedError)

    def test_lost_mid_body(self) -> None:
        """
        An answer cut off is an error, not retried even for a read.
        """
        answer = self.get()
        server = self.accept()
        server.answer(CONTENT_LENGTH[:-3])
        server.lose(ConnectionLost())
        failure = self.failureResultOf(answer, ResponseFailed)
        self.assertNotIsInstance(failure.value, ResponseNeverReceived)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_lost_mid_chunked_body_cleanly(self) -> None:
        answer = self.get()
        server = self.accept()
        server.answer(CHUNKED[:-5])
        server.lose()
        self.failureResultOf(answer, ResponseFailed)

    def test_fresh_connection_lost_before_answer(self) -> None:
        """
        A new connection lost before any answer byte is not retried here
        (the gateway decides about other servers).
        """
        answer = self.get(idempotent=True)
        self.accept().lose()
        failure = self.failureResultOf(answer, ResponseNeverReceived)
        self.assertTrue(failure.value.reasons[0].check(ConnectionDone))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def stale(self) -> Server:
        """
        An idle connection (whose close has not arrived yet).
        """
        self.get()
        server = self.accept()
        server.answer(ok())
        return server

    def test_stale_connection_read_retried_once(self) -> None:
        stale = self.stale()
        answer = self.get(idempotent=True)
        stale.lose()
        self.assertEqual(len(self.reactor.tcpClients), 2)
        fresh = self.accept()
        self.assertTrue(fresh.transport.value().startswith(b"POST /v3/kv/range "))
        fresh.lose()
        self.failureResultOf(answer, ResponseNeverReceived)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_stale_connection_read_succeeds_on_fresh(self) -> None:
        stale = self.stale()
        answer = self.get(idempotent=True)
        stale.lose(ConnectionLost())
        self.accept().answer(ok(b'{"x":1}'))
        self.assertEqual(self.successResultOf(answer), (200, b'{"x":1}'))

    def test_stale_connection_write_not_retried(self) -> None:
        stale = self.stale()
        answer = self.get(idempotent=False)
        stale.lose()
        self.failureResultOf(answer, ResponseNeverReceived)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_malformed_answer(self) -> None:
        answer = self.get()
        server = self.accept()
        server.answer(b"SPDY/3 200 OK\r\n\r\n")
        self.failureResultOf(answer, BadResponse)
        self.assertTrue(server.transport.disconnected)
        server.lose()
        self.assertEqual(self.pool.idle(SERVER), 0)

    def test_cancel_aborts(self) -> None:
        """
        A cancelled request drops its connection, even if the answer then
        arrives before the close.
        """
        answer = self.get()
        server = self.accept()
        answer.cancel()
        self.failureResultOf(answer, CancelledError)
        self.assertTrue(server.transport.disconnected)
        server.protocol.dataReceived(ok())
        server.lose(ConnectionLost())
        self.assertEqual(self.pool.idle(SERVER), 0)
        self.get()
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_cancel_reused_connection(self) -> None:
        stale = self.stale()
        answer = self.get()
        answer.cancel()
        self.failureResultOf(answer, CancelledError)
        self.assertTrue(stale.transport.disconnected)
        stale.lose(ConnectionLost())
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_cancel_while_connecting(self) -> None:
        answer = self.get()
        answer.cancel()
        self.failureResultOf(answer, CancelledError)
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)

    def test_unasked_bytes_drop_idle_connection(self) -> None:
        server = self.stale()
        server.protocol.dataReceived(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        self.assertTrue(server.transport.disconnected)
        server.lose()
        self.assertEqual(self.pool.idle(SERVER), 0)

    def test_idle_closed_by_server(self) -> None:
        server = self.stale()
        server.lose()
        self.assertEqual(self.pool.idle(SERVER), 0)
        self.get()
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_close(self) -> None:
        """
        close() closes idle connections, aborts busy ones and connection
        attempts, fires once all are gone, and later requests are refused.
        """
        idle = self.stale()
        busy_answer = self.get(OTHER)
        busy = self.accept()
        connecting = self.get(OTHER)
        closing = self.pool.close()
        self.assertTrue(idle.transport.disconnecting)
        self.assertFalse(idle.transport.disconnected)
        self.assertTrue(busy.transport.disconnected)
        self.failureResultOf(connecting, PoolClosed)
        self.assertNoResult(closing)
        busy.lose(ConnectionLost())
        self.failureResultOf(busy_answer, ResponseNeverReceived)
        self.assertNoResult(closing)
        idle.lose()
        self.assertIsNone(self.successResultOf(closing))
        self.failureResultOf(self.get(), PoolClosed)
        self.assertEqual(len(self.reactor.tcpClients), 3)

    def test_close_when_nothing_open(self) -> None:
        self.assertIsNone(self.successResultOf(self.pool.close()))


class FakeEtcd(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        request.setResponseCode(201)
        content_type = request.getHeader(b"content-type") or b""
        return content_type + b" " + request.content.read()


class AgentTransportTests(SynchronousTestCase):
    def test_whole_answer(self) -> None:
        agent = RequestTraversalAgent(FakeEtcd())
        transport = AgentTransport(agent)
        answer = transport.request(SERVER, "POST", "/v3/kv/range", b'{"k":1}')
        agent.flush()
        self.assertEqual(
            self.successResultOf(answer), (201, b'application/json {"k":1}')
        )
        self.assertIsNone(self.successResultOf(transport.close()))


class GatewayOverPoolTests(SynchronousTestCase):
    """
    L{Gateway}'s failover and deadline over L{KeepAlivePool}.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.pool = KeepAlivePool(self.reactor)
        no_streams: Any = None
        self.gateway = Gateway(
            self.reactor, [SERVER, OTHER], self.pool, no_streams, 2.0
        )

    def accept(self, index: int = -1) -> Server:
        return accept(self.reactor, index)

    def test_refused_fails_over(self) -> None:
        reply = self.gateway.request("POST", "/v3/kv/txn", {"a": 1})
        refuse(self.reactor)
        self.assertEqual(self.reactor.tcpClients[1][1], 2380)
        server = self.accept()
        self.assertTrue(server.transport.value().endswith(b'\r\n\r\n{"a":1}'))
        server.answer(ok(b'{"header":{"revision":"3"}}'))
        self.assertEqual(self.successResultOf(reply), {"header": {"revision": "3"}})
        self.assertEqual(self.gateway.server, OTHER)

    def test_deadline_aborts(self) -> None:
        reply = self.gateway.request("POST", "/v3/kv/range", {}, idempotent=True)
        server = self.accept()
        self.reactor.advance(2.0)
        error = self.failureResultOf(reply, Unavailable).value
        self.assertEqual(
            str(error), f"etcd at {SERVER}: no answer to /v3/kv/range within 2s"
        )
        self.assertTrue(server.transport.disconnected)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.gateway.server, OTHER)

    def test_write_on_stale_connection_not_repeated(self) -> None:
        """
        A write whose kept-alive connection dies unanswered may have been
        applied: it fails, on no other connection.
        """
        first = self.gateway.request("POST", "/v3/kv/txn", {})
        server = self.accept()
        server.answer(ok())
        self.successResultOf(first)
        write = self.gateway.request("POST", "/v3/kv/txn", {})
        server.lose()
        error = self.failureResultOf(write, Unavailable).value
        self.assertIn(f"etcd at {SERVER}: /v3/kv/txn failed", str(error))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_error_answers(self) -> None:
        reply = self.gateway.request("POST", "/v3/kv/range", {}, idempotent=True)
        server = self.accept()
        server.answer(
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'e\r\n{"error":"no"}\r\n0\r\n\r\n'
        )
        error = self.failureResultOf(reply).value
        self.assertEqual(str(error), f"etcd at {SERVER} answered 400: no")
        health = self.gateway.health(SERVER)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        server.answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")
        self.assertEqual(
            str(self.failureResultOf(health, Unavailable).value),
            f"etcd at {SERVER} answered 404 to /health with non-JSON: nope",
        )

    def test_close(self) -> None:
        reply = self.gateway.request("POST", "/v3/kv/range", {}, idempotent=True)
        server = self.accept()
        closing = self.gateway.close()
        self.assertTrue(server.transport.disconnected)
        server.lose(ConnectionLost())
        self.assertIsNone(self.successResultOf(closing))
        self.failureResultOf(reply, Unavailable)


# -- real etcd ---------------------------------------------------------------


@implementer(IReactorTCP, IReactorTime)
class ConnectionCounter:
    """
    The real reactor, counting the TCP connections it is asked to make.
    """

    def __init__(self) -> None:
        self.connections = 0

    def connectTCP(self, *args: Any, **kwargs: Any) -> Any:
        self.connections += 1
        return reactor.connectTCP(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)


class RealEtcdTests(SharedEtcdMixin, TestCase):
    """
    Unary calls to a real etcd share kept-alive connections.
    """

    def setUp(self) -> None:
        self.server = self.shared_etcd()
        self.counter = ConnectionCounter()
        self.storage = EtcdStorage(self.counter, [self.server.url], "/keepalive/")
        self.addCleanup(self.storage.close)

    def test_sequential_calls_share_one_connection(self) -> Deferred[None]:
        async def run() -> None:
            written = []
            for index in range(20):
                written.append(
                    await self.storage.create(f"/keepalive/seq/{index}", b"v")
                )
            kv, _ = await self.storage.get("/keepalive/seq/3")
            self.assertEqual(
                kv, KeyValue("/keepalive/seq/3", b"v", written[3], written[3])
            )
            await self.storage.check_health()
            self.assertEqual(written, sorted(written))
            self.assertEqual(self.counter.connections, 1)

        return Deferred.fromCoroutine(run())

    def test_concurrent_rounds_reuse(self) -> Deferred[None]:
        """
        A second burst of concurrent calls needs no new connection, and a
        chunked list answer (Go chunks bodies past its buffer) is read.
        """

        async def run() -> None:
            value = b"x" * 1000
            await gatherResults(
                [self.storage.create(f"/keepalive/burst/{i}", value) for i in range(8)]
            )
            opened = self.counter.connections
            self.assertLessEqual(opened, 8)
            pages = await gatherResults(
                [self.storage.list("/keepalive/burst/") for _ in range(8)]
            )
            self.assertEqual([len(page.kvs) for page in pages], [8] * 8)
            self.assertEqual({kv.value for kv in pages[0].kvs}, {value})
            self.assertEqual(self.counter.connections, opened)

        return Deferred.fromCoroutine(run())

    def test_read_after_restart_uses_fresh_connection(self) -> Deferred[None]:
        """
        etcd restarted: the kept-alive connection is dead; a read notices and
        goes on a new one.
        """

        async def run() -> None:
            written = await self.storage.create("/keepalive/restart", b"1")
            self.server.restart()
            kv, _ = await self.storage.get("/keepalive/restart")
            self.assertEqual(kv, KeyValue("/keepalive/restart", b"1", written, written))
            self.assertEqual(self.counter.connections, 2)

        return Deferred.fromCoroutine(run())

    def test_close(self) -> Deferred[None]:
        """
        close() ends the kept-alive connections (trial checks that none is
        left); calls after it fail without connecting.
        """

        async def run() -> None:
            await self.storage.current_revision()
            await self.storage.close()
            try:
                await self.storage.current_revision()
            except Unavailable as error:
                self.assertIn("connection pool closed", str(error))
            else:
                self.fail("expected Unavailable")
            self.assertEqual(self.counter.connections, 1)

        return Deferred.fromCoroutine(run())


class TLSEtcdTests(MutualTLSEtcdMixin, TestCase):
    """
    Kept-alive connections to etcd over HTTPS with client certificates.
    """

    timeout = 60

    def test_mutual_tls_one_connection(self) -> Deferred[None]:
        counter = ConnectionCounter()
        files = self.files
        policy = tls_policy(files["ca"], files["cert"], files["key"])
        pool = KeepAlivePool(counter, policy)
        self.addCleanup(pool.close)

        async def run() -> None:
            self.assertTrue(self.server.url.startswith("https://"))
            for _ in range(10):
                status, body = await pool.request(
                    self.server.url, "GET", "/health", None, idempotent=True
                )
                self.assertEqual(status, 200)
                self.assertIn(b'"health":"true"', body)
            status, _ = await pool.request(
                self.server.url, "POST", "/v3/kv/range", b'{"key":"YQ=="}'
            )
            self.assertEqual(status, 200)
            self.assertEqual((counter.connections, pool.opened), (1, 1))

        return Deferred.fromCoroutine(run())

    def test_storage_over_mutual_tls(self) -> Deferred[None]:
        files = self.files
        storage = EtcdStorage(
            reactor,
            [self.server.url],
            ca_file=files["ca"],
            cert_file=files["cert"],
            key_file=files["key"],
        )
        self.addCleanup(storage.close)

        async def run() -> None:
            written = await storage.create("/keepalive/tls", b"secret")
            kv, _ = await storage.get("/keepalive/tls")
            self.assertEqual(
                kv, KeyValue("/keepalive/tls", b"secret", written, written)
            )

        return Deferred.fromCoroutine(run())
