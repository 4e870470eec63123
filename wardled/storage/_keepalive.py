# -*- test-case-name: tests.test_keepalive -*-
"""
A lean HTTP/1.1 keep-alive client for etcd's JSON gateway (issue #8).

Every storage call is one small JSON request and one small JSON answer.
Through treq and C{twisted.web.client.Agent} each of them cost about 450 µs
of CPU (request and response objects, header objects, body producers and
consumers, interface declarations made per request), and under concurrency
the Agent's pool kept opening new TCP connections. This module does only
what the gateway needs: write a request in one go on a kept-alive
connection, parse the status line, the framing headers and the body
(C{Content-Length}, C{chunked} as Go's net/http sends larger bodies, or up
to the close), and hand back the status and the whole body.

L{IUnaryTransport} is the seam: L{KeepAlivePool} is the production
provider; L{AgentTransport} runs the same calls through any C{IAgent} (tests
serve a fake gateway that way). Gateway semantics (failover, deadlines,
error bodies) stay in L{wardled.storage._gateway}; the errors raised here
are the ones it already understands: Twisted's C{ConnectError} family
(connection refused: nothing was sent), L{ResponseNeverReceived} (the
connection went away before any answer byte: the request may or may not
have been applied), L{ResponseFailed} (the answer was cut off) and
L{BadResponse} (the answer is not HTTP).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import attrs
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    ConnectionDone,
)
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import (
    BrowserLikePolicyForHTTPS,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IPolicyForHTTPS, IResponse
from zope.interface import Interface, implementer

if TYPE_CHECKING:
    from twisted.internet.interfaces import (
        IAddress,
        IConsumer,
        IProtocol,
        IReactorTCP,
        IStreamClientEndpoint,
        ITCPTransport,
    )
    from twisted.web.iweb import IAgent

Answer = tuple[int, bytes]
# Idle connections kept per server; more than the callers' usual
# concurrency, so a burst does not churn connections.
MAX_IDLE_PER_SERVER = 64
# A status line and headers longer than this are not etcd's gateway.
MAX_HEAD_SIZE = 64 * 1024
_MAX_CHUNK_LINE = 4096
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_NO_BODY_STATUSES = frozenset({204, 304})


class IUnaryTransport(Interface):
    """
    Sends one HTTP request to one server and returns the whole answer.
    """

    def request(
        server: str,
        method: bytes | str,
        path: str,
        body: bytes | None,
        idempotent: bool = False,
    ) -> Deferred[Answer]:
        """
        Send C{method path} with a JSON C{body} to C{server}.

        @param server: C{http://host:port} or C{https://host:port}.
        @param idempotent: whether sending it twice is harmless (reads):
            then a kept-alive connection found dead may be replaced.
        @return: the status and the whole body. Cancelling it drops the
            connection and fails it with C{CancelledError}.
        @raise twisted.internet.error.ConnectError: (and C{DNSLookupError})
            the request was not sent.
        @raise ResponseNeverReceived: the connection was lost before any
            answer byte.
        @raise ResponseFailed: the answer was cut off.
        @raise BadResponse: the answer was not HTTP/1.x.
        """

    def close() -> Deferred[None]:
        """
        Close idle connections and abort busy ones.

        @return: fires once every connection is closed.
        """


class BadResponse(Exception):
    """
    The server's answer is not well-formed HTTP/1.x.
    """


class PoolClosed(ConnectError):
    """
    The pool was closed; nothing was sent.
    """


# -- parsing ----------------------------------------------------------------


class ResponseParser:
    """
    An incremental HTTP/1.x response parser: feed it bytes as they arrive,
    split anywhere, until L{done}.

    @ivar started: whether any byte arrived.
    @ivar done: whether the whole response arrived.
    @ivar status: the status code (0 until the status line arrived).
    @ivar body: the whole body, once L{done}.
    @ivar until_close: the body ends when the connection closes (no
        length and not chunked).
    """

    def __init__(self, expect_body: bool = True) -> None:
        """
        @param expect_body: False for answers that never have a body
            (C{HEAD}).
        """
        self.started = False
        self.done = False
        self.status = 0
        self.body = b""
        self.until_close = False
        self._expect_body = expect_body
        self._buffer = bytearray()
        self._body = bytearray()
        self._scanned = 0
        self._status_seen = False
        self._trailer_size = 0
        self._remaining = 0
        self._step: Callable[[], bool] = self._head
        self._keep_alive = False
        self._length: int | None = None
        self._framed_by_te = False
        self._chunked = False

    @property
    def reusable(self) -> bool:
        """
        Whether the connection may carry another request: the answer is
        complete, said nothing against keep-alive, and nothing followed it.
        """
        return self.done and self._keep_alive and not self._buffer

    def feed(self, data: bytes) -> bool:
        """
        Take more bytes of the response.

        @return: whether the response is now complete.
        @raise BadResponse: it is not well-formed.
        """
        self.started = True
        self._buffer += data
        while not self.done and self._step():
            pass
        return self.done

    def connection_closed(self) -> bool:
        """
        The connection closed cleanly: a body read up to the close is
        complete now.

        @return: whether the response is complete.
        """
        if self.until_close and not self.done:
            self._finish()
        return self.done

    def _finish(self) -> None:
        self.done = True
        self.body = bytes(self._body)

    def _line(self, limit: int) -> bytes | None:
        """
        The next line without its line end, or None until it has arrived.
        """
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > limit:
                raise BadResponse("response line too long")
            return None
        line = bytes(self._buffer[:end]).removesuffix(b"\r")
        del self._buffer[: end + 1]
        return line

    def _head(self) -> bool:
        """
        The status line and the headers, in one pass once the blank line
        after them has arrived (a Go server writes them in one piece).
        """
        end = _HEAD_END.search(self._buffer, self._scanned)
        if end is None:
            if len(self._buffer) > MAX_HEAD_SIZE:
                raise BadResponse("response head too long")
            self._scanned = max(len(self._buffer) - 3, 0)
            if not self._status_seen:
                self._early_status_line()
            return False
        if end.start() > MAX_HEAD_SIZE:
            raise BadResponse("response head too long")
        head = bytes(self._buffer[: end.start()])
        del self._buffer[: end.end()]
        self._scanned = 0
        status_line, *fields = _LINE_END.split(head)
        self._status_line(status_line)
        for field in fields:
            self._header_line(field)
        self._end_of_head()
        return True

    def _early_status_line(self) -> None:
        """
        Check the status line as soon as it is there: what is not HTTP
        fails now, not at the deadline.
        """
        end = self._buffer.find(b"\n")
        if end >= 0:
            self._status_line(bytes(self._buffer[:end]).removesuffix(b"\r"))

    def _status_line(self, line: bytes) -> None:
        version, _, rest = line.partition(b" ")
        code = rest[:3]
        if (
            not version.startswith(b"HTTP/1.")
            or not code.isdigit()
            or rest[3:4] not in (b"", b" ")
        ):
            raise BadResponse(f"malformed status line {line[:100]!r}")
        self._status_seen = True
        self.status = int(code)
        self._keep_alive = version == b"HTTP/1.1"
        self._length = None
        self._framed_by_te = self._chunked = False

    def _header_line(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise BadResponse(f"malformed header line {line[:100]!r}")
        self._header(name.lower(), value.strip())

    def _header(self, name: bytes, value: bytes) -> None:
        """
        Note the headers that frame the body or end the connection.
        """
        if name == b"content-length":
            if not value.isdigit() or self._length not in (None, int(value)):
                raise BadResponse(f"bad Content-Length {value[:40]!r}")
            self._length = int(value)
        elif name == b"transfer-encoding":
            self._framed_by_te = True
            last = value.lower().rsplit(b",", 1)[-1].strip()
            self._chunked = last == b"chunked"
        elif name == b"connection":
            tokens = {token.strip() for token in value.lower().split(b",")}
            if b"close" in tokens:
                self._keep_alive = False

    def _end_of_head(self) -> None:
        """
        Choose how the body is framed (RFC 9112 section 6.3).
        """
        if self.status == 101:
            raise BadResponse("unexpected 101 Switching Protocols")
        if 100 <= self.status < 200:
            self._status_seen = False  # an interim answer: skip it
        elif not self._expect_body or self.status in _NO_BODY_STATUSES:
            self._finish()
        elif self._chunked:
            self._step = self._chunk_size
        elif self._framed_by_te or self._length is None:
            self.until_close = True
            self._keep_alive = False
            self._step = self._body_until_close
        elif self._length == 0:
            self._finish()
        else:
            self._remaining = self._length
            self._step = self._fixed_body

    def _take(self) -> bool:
        """
        Move up to L{_remaining} buffered bytes into the body.
        """
        taken = min(self._remaining, len(self._buffer))
        if not taken:
            return False
        self._body += self._buffer[:taken]
        del self._buffer[:taken]
        self._remaining -= taken
        return True

    def _fixed_body(self) -> bool:
        progressed = self._take()
        if not self._remaining:
            self._finish()
        return progressed

    def _body_until_close(self) -> bool:
        self._body += self._buffer
        self._buffer.clear()
        return False

    def _chunk_size(self) -> bool:
        line = self._line(_MAX_CHUNK_LINE)
        if line is None:
            return False
        size = line.split(b";", 1)[0].strip()  # drop chunk extensions
        if not _HEX.fullmatch(size):
            raise BadResponse(f"bad chunk size line {line[:40]!r}")
        self._remaining = int(size, 16)
        self._step = self._chunk_data if self._remaining else self._trailer
        return True

    def _chunk_data(self) -> bool:
        progressed = self._take()
        if not self._remaining:
            self._step = self._chunk_end
            return True
        return progressed

    def _chunk_end(self) -> bool:
        line = self._line(_MAX_CHUNK_LINE)
        if line is None:
            return False
        if line:
            raise BadResponse("chunk data longer than its size")
        self._step = self._chunk_size
        return True

    def _trailer(self) -> bool:
        line = self._line(MAX_HEAD_SIZE - self._trailer_size)
        if line is None:
            return False
        self._trailer_size += len(line) + 2
        if self._trailer_size > MAX_HEAD_SIZE:
            raise BadResponse("response trailer too long")
        if not line:
            self._finish()
        return True


def request_bytes(method: bytes, path: str, host: bytes, body: bytes | None) -> bytes:
    """
    A whole HTTP/1.1 request, ready for one write.

    @param host: the C{Host} header's value.
    @param body: JSON, or None for no body (C{GET}).
    """
    target = path.encode("ascii")
    if not target.startswith(b"/") or any(c in target for c in b" \r\n"):
        raise ValueError(f"bad request path {path!r}")
    head = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, target, host)
    if body is None:
        return head + b"\r\n"
    return b"%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        head,
        len(body),
        body,
    )


def _method_bytes(method: bytes | str) -> bytes:
    return method.encode("ascii") if isinstance(method, str) else method


# -- the keep-alive pool ----------------------------------------------------


class Connection(Protocol):
    """
    One HTTP/1.1 connection to one server, carrying one request at a time.

    @ivar server: the server URL it belongs to.
    @ivar served: how many complete answers it has carried.
    """

    def __init__(self, pool: KeepAlivePool, server: str) -> None:
        self.server = server
        self.served = 0
        self._pool = pool
        self._parser: ResponseParser | None = None
        self._waiting: Deferred[Answer] | None = None
        self._closing = False

    @property
    def busy(self) -> bool:
        """
        Whether a request is waiting for its answer.
        """
        return self._waiting is not None

    def _tcp(self) -> ITCPTransport:
        return cast("ITCPTransport", self.transport)

    def connectionMade(self) -> None:
        self._pool._opened(self)

    def send(self, message: bytes, expect_body: bool = True) -> Deferred[Answer]:
        """
        Write a whole request.

        @return: its answer; cancelling it aborts the connection.
        """
        self._parser = ResponseParser(expect_body)
        waiting: Deferred[Answer] = Deferred(self._cancel)
        self._waiting = waiting
        self._tcp().write(message)
        return waiting

    def dataReceived(self, data: bytes) -> None:
        parser, waiting = self._parser, self._waiting
        if parser is None or waiting is None:
            self.abort()  # bytes nobody asked for: the framing is lost
            return
        try:
            done = parser.feed(data)
        except BadResponse:
            self._parser = self._waiting = None
            self.abort()
            waiting.errback()
            return
        if done:
            self._answered(parser, waiting)

    def _answered(self, parser: ResponseParser, waiting: Deferred[Answer]) -> None:
        """
        Give the connection back (first, so that whoever the answer wakes
        up can reuse it at once), then the answer.
        """
        self._parser = self._waiting = None
        self.served += 1
        if parser.reusable and not self._closing:
            self._pool._release(self)
        else:
            self.close()
        waiting.callback((parser.status, parser.body))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closing = True
        self._pool._forget(self)
        parser, waiting = self._parser, self._waiting
        self._parser = self._waiting = None
        if parser is None or waiting is None:
            return
        if reason.check(ConnectionDone) and parser.connection_closed():
            waiting.callback((parser.status, parser.body))
        elif parser.started:
            waiting.errback(ResponseFailed([reason]))
        else:
            waiting.errback(ResponseNeverReceived([reason]))

    def _cancel(self, waiting: Deferred[Answer]) -> None:
        self._parser = self._waiting = None
        self.abort()

    def abort(self) -> None:
        """
        Drop the connection now (it is never reused).
        """
        if not self._closing:
            self._closing = True
            self._tcp().abortConnection()

    def close(self) -> None:
        """
        Close the connection after what was written.
        """
        if not self._closing:
            self._closing = True
            self._tcp().loseConnection()


class _ConnectionFactory(ClientFactory):
    noisy = False  # no "Starting factory" log line per connection

    def __init__(self, pool: KeepAlivePool, server: str) -> None:
        self._pool = pool
        self._server = server

    def buildProtocol(self, addr: IAddress | None) -> Connection:
        return Connection(self._pool, self._server)


@attrs.frozen
class Target:
    """
    How to reach one server URL.

    @ivar endpoint: connects to it (TLS included for C{https}).
    @ivar host: its C{Host} header value.
    """

    endpoint: IStreamClientEndpoint
    host: bytes


def target_for(
    reactor: IReactorTCP, server: str, tls: IPolicyForHTTPS | None
) -> Target:
    """
    The endpoint and C{Host} header for a server URL.

    IP literals (the usual etcd URL) are dialled directly: a
    L{HostnameEndpoint} would resolve them on the thread pool first.

    @param tls: the policy giving the TLS client options of C{https}
        servers; None: Twisted's browser-like verification.
    """
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s)://host:port URL: {server!r}")
    secure = parts.scheme == "https"
    host = parts.hostname
    port = parts.port or (443 if secure else 80)
    endpoint: IStreamClientEndpoint
    if isIPAddress(host):
        endpoint = TCP4ClientEndpoint(reactor, host, port)
    elif isIPv6Address(host):
        endpoint = TCP6ClientEndpoint(reactor, host, port)
    else:
        endpoint = HostnameEndpoint(reactor, host, port)
    if secure:
        policy = tls if tls is not None else BrowserLikePolicyForHTTPS()
        creator = policy.creatorForNetloc(host.encode("idna"), port)
        endpoint = wrapClientTLS(creator, endpoint)
    return Target(endpoint, parts.netloc.rpartition("@")[2].encode("idna"))


@implementer(IUnaryTransport)
class KeepAlivePool:
    """
    Kept-alive HTTP/1.1 connections per server URL.

    Idle connections are reused last-in first-out (the warmest first, so
    the surplus after a burst goes quiet and is the part dropped by the
    cap). Busy connections are not capped: the callers bound concurrency.

    @ivar opened: how many connections were made so far.
    """

    def __init__(
        self,
        reactor: IReactorTCP,
        tls: IPolicyForHTTPS | None = None,
        max_idle: int = MAX_IDLE_PER_SERVER,
    ) -> None:
        """
        @param reactor: connects (and, for TLS, times the handshake).
        @param tls: see L{target_for}.
        @param max_idle: idle connections kept per server; more are closed.
        """
        self.opened = 0
        self._reactor = reactor
        self._tls = tls
        self._max_idle = max_idle
        self._targets: dict[str, Target] = {}
        self._idle: dict[str, list[Connection]] = {}
        self._connections: set[Connection] = set()
        self._connecting: set[Deferred[IProtocol]] = set()
        self._closed = False
        self._drained: list[Deferred[None]] = []

    def idle(self, server: str) -> int:
        """
        How many idle connections to C{server} are kept.
        """
        return len(self._idle.get(server, ()))

    def request(
        self,
        server: str,
        method: bytes | str,
        path: str,
        body: bytes | None,
        idempotent: bool = False,
    ) -> Deferred[Answer]:
        if self._closed:
            return fail(PoolClosed(string="connection pool closed"))
        target = self._targets.get(server)
        if target is None:
            target = self._targets[server] = target_for(
                self._reactor, server, self._tls
            )
        method = _method_bytes(method)
        message = request_bytes(method, path, target.host, body)
        expect_body = method != b"HEAD"
        idle = self._idle.get(server)
        if not idle:
            return self._on_new_connection(target, server, message, expect_body)
        sending = idle.pop().send(message, expect_body)
        if idempotent:
            # It may have died while idle, its close still on the way.
            sending.addErrback(
                self._retry_if_stale, target, server, message, expect_body
            )
        return sending

    def _retry_if_stale(
        self,
        failure: Failure,
        target: Target,
        server: str,
        message: bytes,
        expect_body: bool,
    ) -> Deferred[Answer]:
        failure.trap(ResponseNeverReceived)
        return self._on_new_connection(target, server, message, expect_body)

    def _on_new_connection(
        self, target: Target, server: str, message: bytes, expect_body: bool
    ) -> Deferred[Answer]:
        if self._closed:
            return fail(PoolClosed(string="connection pool closed"))
        connecting = target.endpoint.connect(_ConnectionFactory(self, server))
        self._connecting.add(connecting)

        def connected(connection: IProtocol) -> Deferred[Answer]:
            self._connecting.discard(connecting)
            return cast(Connection, connection).send(message, expect_body)

        def not_connected(failure: Failure) -> Failure:
            self._connecting.discard(connecting)
            self._maybe_drained()
            if self._closed:
                raise PoolClosed(string="connection pool closed")
            if failure.check(ConnectingCancelledError):
                raise CancelledError()
            return failure

        return connecting.addCallbacks(connected, not_connected)

    def _opened(self, connection: Connection) -> None:
        self.opened += 1
        self._connections.add(connection)

    def _release(self, connection: Connection) -> None:
        """
        Keep a connection that finished an answer, unless enough are idle.
        """
        idle = self._idle.setdefault(connection.server, [])
        if self._closed or len(idle) >= self._max_idle:
            connection.close()
        else:
            idle.append(connection)

    def _forget(self, connection: Connection) -> None:
        """
        A connection closed.
        """
        self._connections.discard(connection)
        idle = self._idle.get(connection.server)
        if idle and connection in idle:
            idle.remove(connection)
        self._maybe_drained()

    def _maybe_drained(self) -> None:
        if self._drained and not self._connections and not self._connecting:
            drained, self._drained = self._drained, []
            for waiter in drained:
                waiter.callback(None)

    def close(self) -> Deferred[None]:
        """
        Close idle connections, abort busy ones and connection attempts;
        later requests fail with L{PoolClosed}.
        """
        self._closed = True
        for connecting in list(self._connecting):
            connecting.cancel()
        for connection in list(self._connections):
            if connection.busy:
                connection.abort()
            else:
                connection.close()
        if not self._connections and not self._connecting:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._drained.append(waiter)
        return waiter


# -- the same calls through an IAgent ------------------------------------------


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body already in memory, written in one go (no cooperator, so
    no hidden use of the global reactor): for L{AgentTransport} and the
    treq client of watch streams.
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _BodyReader(Protocol):
    """
    Read a whole response body; cancelling L{finished} drops the connection.
    """

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.finished: Deferred[bytes] = Deferred(self._abort)

    def _abort(self, _: Deferred[bytes]) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self._chunks))
        else:
            self.finished.errback(reason)


_JSON_HEADERS = {b"content-type": [b"application/json"]}


@implementer(IUnaryTransport)
class AgentTransport:
    """
    L{IUnaryTransport} over an C{IAgent}: for agents that serve requests
    without a network (C{treq.testing.RequestTraversalAgent}).
    """

    def __init__(self, agent: IAgent) -> None:
        self._agent = agent

    def request(
        self,
        server: str,
        method: bytes | str,
        path: str,
        body: bytes | None,
        idempotent: bool = False,
    ) -> Deferred[Answer]:
        headers = None if body is None else Headers(_JSON_HEADERS)
        producer = None if body is None else BytesProducer(body)
        url = (server + path).encode("ascii")
        asking = self._agent.request(_method_bytes(method), url, headers, producer)
        return asking.addCallback(_read_whole)

    def close(self) -> Deferred[None]:
        return succeed(None)


def _read_whole(response: IResponse) -> Deferred[Answer]:
    reader = _BodyReader()
    response.deliverBody(reader)
    return reader.finished.addCallback(lambda body: (response.code, body))
