# -*- test-case-name: tests.test_storage_etcd -*-
"""
The low-level client of etcd's v3 JSON gateway (C{/v3/...} on the client port).

L{EtcdStorage<wardled.storage.etcd.EtcdStorage>} speaks etcd semantics; this
module only moves JSON: it encodes keys and values (base64), posts a request
to the first etcd that answers (simple failover), bounds every request by a
timeout on the injected clock, parses the answer once and turns transport
trouble into L{Unavailable}. It also frames the watch stream (one JSON object
per line) and builds the TLS policy for C{https} servers.

Unary calls go through an L{IUnaryTransport} (the kept-alive connections of
L{wardled.storage._keepalive} in production); watch streams, few and
long-lived, through treq, each on its own connection.

Gateway JSON quirks handled here: int64 fields are strings, proto3 leaves out
fields holding their default (C{false}, C{0}, empty), so every field is read
with a default.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL.crypto import X509
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    DNSLookupError,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import (
    Certificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from twisted.web.client import RequestTransmissionFailed, ResponseNeverReceived
from twisted.web.iweb import IPolicyForHTTPS, IResponse
from zope.interface import implementer

from ._keepalive import IUnaryTransport
from .interfaces import DELETE, PUT, Event, KeyValue, Unavailable

if TYPE_CHECKING:
    from treq.client import HTTPClient
    from twisted.internet.interfaces import (
        IOpenSSLClientConnectionCreator,
        IReactorTime,
    )
    from twisted.web.client import HTTPConnectionPool

_T = TypeVar("_T")
JSON = dict[str, Any]


# -- encoding ---------------------------------------------------------------


def key_bytes(key: str) -> bytes:
    """
    A key as etcd stores it (UTF-8, lossless for keys read back from etcd).
    """
    return key.encode("utf-8", "surrogateescape")


def b64(data: bytes) -> str:
    """
    Base64 text for a gateway C{bytes} field.
    """
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """
    The smallest key greater than every key starting with C{prefix}: etcd's
    C{range_end} for a prefix read (C{b"\\0"}, meaning "all keys", for the
    empty prefix).
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


def number(message: JSON, field: str) -> int:
    """
    An int64 field of a gateway message (a string, or absent when 0).
    """
    return int(message.get(field, 0))


def header_revision(reply: JSON) -> int:
    """
    The store revision in a reply's C{header}.
    """
    header = reply.get("header", {})
    return number(header, "revision")


def parse_kv(message: JSON) -> KeyValue:
    """
    A L{KeyValue} from a gateway C{mvccpb.KeyValue}.
    """
    return KeyValue(
        key=base64.b64decode(message.get("key", "")).decode("utf-8", "surrogateescape"),
        value=base64.b64decode(message.get("value", "")),
        create_revision=number(message, "create_revision"),
        mod_revision=number(message, "mod_revision"),
    )


def parse_event(message: JSON) -> Event:
    """
    An L{Event} from a gateway C{mvccpb.Event} (PUT events carry no C{type}).
    """
    kind = message.get("type", PUT)
    if kind not in (PUT, DELETE):
        raise ValueError(f"unknown etcd event type {kind!r}")
    prev = message.get("prev_kv")
    return Event(
        type=kind,
        kv=parse_kv(message["kv"]),
        prev_kv=None if prev is None else parse_kv(prev),
    )


# -- errors -----------------------------------------------------------------


class GatewayError(Exception):
    """
    etcd answered with an error status and a gateway error body.

    @ivar server: the etcd URL that answered.
    @ivar status: the HTTP status.
    @ivar message: the gateway's C{error}/C{message} text (or the raw body).
    @ivar body: the parsed body when it was JSON.
    """

    def __init__(self, server: str, status: int, message: str, body: JSON) -> None:
        super().__init__(f"etcd at {server} answered {status}: {message}")
        self.server = server
        self.status = status
        self.message = message
        self.body = body


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _cancelled(error: Exception) -> bool:
    """
    Whether C{error} is, or wraps, a cancellation (ours or the caller's).
    """
    if isinstance(error, (CancelledError, ConnectingCancelledError)):
        return True
    reasons = getattr(error, "reasons", ())
    return any(reason.check(CancelledError) for reason in reasons)


# -- HTTP plumbing ----------------------------------------------------------


class JSONLines(Protocol):
    """
    The body of a streaming gateway response: one JSON object per line.

    @ivar on_message: called with each parsed object; may call L{abort}.
    @ivar on_end: called once with the reason the stream ended.
    """

    def __init__(
        self, on_message: Callable[[JSON], None], on_end: Callable[[Failure], None]
    ) -> None:
        self.on_message = on_message
        self.on_end = on_end
        self._buffer = b""
        self._aborted = False

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while not self._aborted and b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                self.abort()
                return
            self.on_message(message)

    def abort(self) -> None:
        """
        Close the stream (and its connection); no more messages are passed on.
        """
        self._aborted = True
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._aborted = True
        self.on_end(reason)


@implementer(IPolicyForHTTPS)
class ClientTLSPolicy:
    """
    Verify etcd against a trust root and, for mutual TLS, present a client
    certificate.

    @param client_options: C{CertificateOptions} arguments holding the client
        certificate, its chain and key as C{cryptography} objects (the form
        that does not make pyOpenSSL warn), or nothing.
    """

    def __init__(self, trust_root: Any, client_options: dict[str, Any]) -> None:
        self._trust_root = trust_root
        self._client_options = client_options

    def creatorForNetloc(
        self, hostname: bytes, port: int
    ) -> IOpenSSLClientConnectionCreator:
        return optionsForClientTLS(
            hostname.decode("ascii"),
            trustRoot=self._trust_root,
            extraCertificateOptions=dict(self._client_options),
        )


def _read(path: str) -> bytes:
    with open(path, "rb") as source:
        return source.read()


def tls_policy(
    ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ClientTLSPolicy:
    """
    Build the TLS policy for C{https} etcd URLs from PEM files.

    Reads the files now (at start-up, before the reactor serves anything).

    @param ca_file: CA bundle to verify etcd with; None: the platform's.
    @param cert_file: client certificate (with its chain) for mutual TLS.
    @param key_file: the client certificate's private key.
    """
    if (cert_file is None) != (key_file is None):
        raise ValueError("etcd client TLS needs both a certificate and a key file")
    trust_root: Any = platformTrust()
    if ca_file is not None:
        authorities = x509.load_pem_x509_certificates(_read(ca_file))
        trust_root = trustRootFromCertificates(
            [Certificate(X509.from_cryptography(ca)) for ca in authorities]
        )
    client_options: dict[str, Any] = {}
    if cert_file is not None and key_file is not None:
        chain = x509.load_pem_x509_certificates(_read(cert_file))
        client_options = {
            "certificate": chain[0],
            "extraCertChain": chain[1:],
            "privateKey": serialization.load_pem_private_key(_read(key_file), None),
        }
    return ClientTLSPolicy(trust_root, client_options)


# -- the client -------------------------------------------------------------


class Gateway:
    """
    Post JSON to the first of several etcd servers that answers.

    A server that refuses the connection (or, for reads, drops it before
    answering) is skipped and the next one tried; the one that answered is
    tried first next time. Each call, all attempts included, is bounded by
    C{request_timeout}; a server that lets it run out (hung, or cut off from
    the cluster) fails that call, and the next call starts with another one.
    """

    def __init__(
        self,
        clock: IReactorTime,
        servers: Sequence[str],
        transport: IUnaryTransport,
        stream_http: HTTPClient,
        request_timeout: float,
        pools: Sequence[HTTPConnectionPool] = (),
    ) -> None:
        """
        @param transport: carries the unary calls (whole answers).
        @param stream_http: opens watch streams.
        @param pools: the connection pools of C{stream_http}, closed by
            L{close}.
        """
        if not servers:
            raise ValueError("at least one etcd server URL is needed")
        self._clock = clock
        self._servers = [server.rstrip("/") for server in servers]
        self._transport = transport
        self._stream_http = stream_http
        self._timeout = request_timeout
        self._pools = pools
        self._current = 0

    @property
    def server(self) -> str:
        """
        The server tried first (the last one that answered).
        """
        return self._servers[self._current]

    def avoid(self, server: str) -> None:
        """
        Try another server first from now on, if C{server} is the one tried
        first (it did not answer in time, or says it is unhealthy).
        """
        if len(self._servers) > 1 and self._servers[self._current] == server:
            self._current = (self._current + 1) % len(self._servers)

    def request(
        self, method: str, path: str, body: JSON | None = None, idempotent: bool = False
    ) -> Deferred[JSON]:
        """
        Send a request and parse its JSON answer.

        @return: the answer object on HTTP 200.
        @raise GatewayError: etcd answered an error status with a body.
        @raise Unavailable: no server answered in time, or the answer was
            not JSON.
        """
        return Deferred.fromCoroutine(self._request(method, path, body, idempotent))

    async def _request(
        self, method: str, path: str, body: JSON | None, idempotent: bool
    ) -> JSON:
        deadline = self._clock.seconds() + self._timeout
        payload = None if body is None else _encode(body)

        def send(server: str) -> Deferred[tuple[int, bytes]]:
            return self._transport.request(server, method, path, payload, idempotent)

        server, (status, raw) = await self._first_answer(
            send, path, idempotent, deadline
        )
        return _answer(server, path, status, raw)

    def health(self, server: str) -> Deferred[JSON]:
        """
        C{GET /health} of one server, without failover, bounded by the
        request timeout (a liveness probe of the server a watch streams
        from).

        @return: the answer on HTTP 200.
        @raise GatewayError: it answered another status (503: unhealthy).
        @raise Unavailable: it did not answer in time.
        """

        async def asking() -> JSON:
            deadline = self._clock.seconds() + self._timeout
            sending = self._transport.request(server, "GET", "/health", None, True)
            status, raw = await self._within(sending, deadline, server, "/health")
            return _answer(server, "/health", status, raw)

        return Deferred.fromCoroutine(asking())

    def open_stream(self, path: str, body: JSON) -> Deferred[tuple[str, IResponse]]:
        """
        Post a streaming request (a watch) on its own connection.

        @return: the server that answered and its response, whose body the
            caller reads (see L{JSONLines}).
        """

        def send(server: str) -> Deferred[IResponse]:
            sending = self._stream_http.request(
                "POST", server + path, unbuffered=True, json=body
            )
            return cast("Deferred[IResponse]", sending)

        async def opening() -> tuple[str, IResponse]:
            deadline = self._clock.seconds() + self._timeout
            return await self._first_answer(send, path, True, deadline)

        return Deferred.fromCoroutine(opening())

    async def _first_answer(
        self,
        send: Callable[[str], Deferred[_T]],
        path: str,
        idempotent: bool,
        deadline: float,
    ) -> tuple[str, _T]:
        """
        C{send} to each server in turn, from the one tried first, until one
        answers (whatever its status).

        @return: the server that answered and its answer.
        """
        failures: list[str] = []
        count = len(self._servers)
        for index in [(self._current + step) % count for step in range(count)]:
            server = self._servers[index]
            try:
                answer = await self._within(send(server), deadline, server, path)
            except Unavailable:
                raise
            except Exception as error:
                if _cancelled(error):
                    raise
                if not _may_retry(error, idempotent):
                    raise Unavailable(
                        f"etcd at {server}: {path} failed: {_reason(error)}"
                    ) from None
                failures.append(f"{server}: {_reason(error)}")
                continue
            self._current = index
            return server, answer
        raise Unavailable("cannot reach etcd: " + "; ".join(failures))

    async def _within(
        self, waiting: Deferred[_T], deadline: float, server: str, path: str
    ) -> _T:
        """
        Wait for C{waiting} until C{deadline}; cancel it and raise
        L{Unavailable} after that.
        """
        expired = []

        def expire() -> None:
            expired.append(True)
            waiting.cancel()

        remaining = max(deadline - self._clock.seconds(), 0.0)
        timer = self._clock.callLater(remaining, expire)
        try:
            return await waiting
        except Exception:
            if expired:
                self.avoid(server)
                raise Unavailable(
                    f"etcd at {server}: no answer to {path} within {self._timeout:g}s"
                ) from None
            raise
        finally:
            if timer.active():
                timer.cancel()

    def close(self) -> Deferred[None]:
        """
        Close the connections: the transport's (aborting calls in flight)
        and the stream pools'.
        """
        closing = [self._transport.close()]
        closing += [pool.closeCachedConnections() for pool in self._pools]
        return gatherResults(closing).addCallback(lambda _: None)


def _encode(body: JSON) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _answer(server: str, path: str, status: int, raw: bytes) -> JSON:
    """
    The JSON object of a 200 answer; other answers as errors.

    @raise GatewayError: a JSON error body.
    @raise Unavailable: the answer is not a JSON object.
    """
    try:
        reply = json.loads(raw)
    except ValueError:
        reply = None
    if status == 200 and isinstance(reply, dict):
        return reply
    if isinstance(reply, dict):
        message = reply.get("error") or reply.get("message") or raw.decode()
        raise GatewayError(server, status, _one_line(message), reply)
    raise Unavailable(
        f"etcd at {server} answered {status} to {path} with "
        f"non-JSON: {_one_line(raw[:200].decode('utf-8', 'replace'))}"
    )


def _may_retry(error: Exception, idempotent: bool) -> bool:
    """
    Whether a failed attempt may be repeated on the next server: the request
    never reached etcd, or it is a read.
    """
    if isinstance(error, (ConnectError, DNSLookupError, RequestTransmissionFailed)):
        return True
    return idempotent and isinstance(error, ResponseNeverReceived)


def _reason(error: Exception) -> str:
    """
    A one-line reason for a transport failure.
    """
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(_one_line(reason.getErrorMessage()) for reason in reasons)
    return _one_line(error) or type(error).__name__
