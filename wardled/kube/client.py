# -*- test-case-name: tests.test_kubeclient -*-
"""
An HTTP client of the core kube-apiserver, just big enough for an
aggregated API server.

wardled asks the cluster it extends who a bearer token belongs to
(TokenReview), whether a user may do something (SubjectAccessReview), reads
the C{extension-apiserver-authentication} ConfigMap and watches namespaces.
That takes three verbs: L{KubeClient.get}, L{KubeClient.post} and
L{KubeClient.watch}, over treq with mutual TLS, a bearer token that may be
rotated on disk, and a deadline on every request so that a stuck
kube-apiserver turns into an error instead of a request that hangs.

Failures come in two kinds callers treat differently: L{KubeAPIError} (the
cluster answered, with a C{Status}) and L{KubeUnavailable} (it could not be
reached or did not answer in time).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from OpenSSL.crypto import X509
from treq.client import HTTPClient
from twisted.internet import error as neterror
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    TimeoutError,
    gatherResults,
)
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS, IResponse
from zope.interface import implementer

from wardled import __version__
from wardled.kube.kubeconfig import ClusterConfig

_T = TypeVar("_T")
JSON = dict[str, Any]

USER_AGENT = f"wardled/{__version__}"
TOKEN_REREAD_SECONDS = 60.0
_MAX_ERROR_TEXT = 500

# The reason client-go gives a Status it has to make up from a bare HTTP
# status code (k8s.io/apimachinery errors.NewGenericServerResponse).
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class KubeAPIError(Exception):
    """
    The kube-apiserver answered with an HTTP error.

    @ivar code: the HTTP status code.
    @ivar status: the C{Status} object it sent, or one made up from its text
        when the body was not a JSON object.
    """

    def __init__(self, code: int, status: Mapping[str, Any]) -> None:
        self.code = code
        self.status = dict(status)
        reason = self.status.get("reason") or "Unknown"
        message = self.status.get("message") or ""
        super().__init__(f"kube-apiserver answered {code} {reason}: {message}")

    @property
    def reason(self) -> str:
        """
        The C{Status} reason (C{NotFound}, C{Expired}, ...), or C{""}.
        """
        return str(self.status.get("reason") or "")


class KubeUnavailable(Exception):
    """
    The kube-apiserver could not be used: the connection was refused, TLS
    failed, it did not answer in time, or its answer made no sense.  The
    message says which, in one line.
    """


def _one_line(text: str, limit: int = _MAX_ERROR_TEXT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def made_up_status(code: int, text: str) -> JSON:
    """
    A C{Status} for an error answer whose body is not one.

    @param code: the HTTP status code.
    @param text: the body as text (may be empty).
    """
    message = _one_line(text) or (
        f"the server responded with the status code {code} "
        "but did not return more information"
    )
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "Unknown"),
        "code": code,
    }


def _tls_reason(error: SSL.Error) -> str:
    details = error.args[0] if error.args else []
    if isinstance(details, list):
        reasons = [str(entry[-1]) for entry in details if entry and entry[-1]]
        if reasons:
            return "TLS failed: " + ", ".join(reasons)
    return f"TLS failed: {error}"


def describe(failure: BaseException) -> str:
    """
    One line saying why a request could not be made or completed.

    Unwraps the reason lists of twisted.web's client errors
    (C{ResponseNeverReceived}, C{ResponseFailed}, ...).
    """
    reasons = getattr(failure, "reasons", None)
    if reasons:
        first = reasons[0]
        inner = first.value if isinstance(first, Failure) else first
        if isinstance(inner, BaseException):
            return describe(inner)
    if isinstance(failure, neterror.ConnectionRefusedError):
        return "connection refused"
    if isinstance(failure, neterror.DNSLookupError):
        return f"cannot resolve host: {_one_line(str(failure))}"
    if isinstance(failure, neterror.TCPTimedOutError | neterror.TimeoutError):
        return "connection timed out"
    if isinstance(failure, neterror.ConnectionDone | neterror.ConnectionLost):
        return "connection closed by the server"
    if isinstance(failure, SSL.Error):
        return _tls_reason(failure)
    if type(failure).__name__ == "VerificationError":
        return f"TLS failed: server certificate does not match: {failure}"
    return _one_line(f"{type(failure).__name__}: {failure}")


# -- TLS ----------------------------------------------------------------------


def _client_certificate_options(config: ClusterConfig) -> dict[str, Any]:
    """
    C{CertificateOptions} arguments presenting the client certificate, as
    C{cryptography} objects (the form pyOpenSSL does not warn about).
    """
    if config.client_cert_data is None or config.client_key_data is None:
        return {}
    chain = x509.load_pem_x509_certificates(config.client_cert_data)
    return {
        "certificate": chain[0],
        "extraCertChain": chain[1:],
        "privateKey": serialization.load_pem_private_key(config.client_key_data, None),
    }


def _trust_root(ca_data: bytes | None) -> Any:
    if ca_data is None:
        return platformTrust()
    authorities = x509.load_pem_x509_certificates(ca_data)
    return trustRootFromCertificates(
        [Certificate(X509.from_cryptography(each)) for each in authorities]
    )


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedCreator:
    """
    TLS without verifying the server (C{insecure-skip-tls-verify}), still
    sending SNI and presenting the client certificate.
    """

    def __init__(self, options: CertificateOptions, server_name: str) -> None:
        self._options = options
        self._server_name = server_name

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if _is_dns_name(self._server_name):
            connection.set_tlsext_host_name(self._server_name.encode("idna"))
        return connection


def _is_dns_name(host: str) -> bool:
    """
    Whether C{host} may be sent as SNI (a name, not an IP address).
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(host)
    return False


@implementer(IPolicyForHTTPS)
class ClusterTLSPolicy:
    """
    How the client's L{Agent} does TLS to the kube-apiserver: verify it
    against the cluster CA (or the system roots) under its host name or
    C{tls_server_name}, and present the client certificate when there is one.
    """

    def __init__(self, config: ClusterConfig) -> None:
        self._server_name = config.tls_server_name
        self._insecure = config.insecure_skip_tls_verify
        self._client_options = _client_certificate_options(config)
        self._trust_root = None if self._insecure else _trust_root(config.ca_data)

    def creatorForNetloc(
        self, hostname: bytes, port: int
    ) -> IOpenSSLClientConnectionCreator:
        name = self._server_name or hostname.decode("ascii")
        if self._insecure:
            options = CertificateOptions(verify=False, **self._client_options)
            return _UnverifiedCreator(options, name)
        return optionsForClientTLS(
            name,
            trustRoot=self._trust_root,
            extraCertificateOptions=dict(self._client_options),
        )


# -- credentials ----------------------------------------------------------------


class TokenSource:
    """
    The bearer token to send: a fixed one, or the content of a file that is
    read again at most once every L{TOKEN_REREAD_SECONDS} (projected
    service-account tokens are rotated in place).  When the file cannot be
    read, the last token read (or the fixed one) is kept.

    @param clock: gives the time.
    @param token: the fixed token, if any.
    @param token_file: the file, if any; it wins over C{token}.
    """

    log = Logger()

    def __init__(self, clock: Any, token: str | None, token_file: str | None) -> None:
        self._clock = clock
        self._token = token
        self._file = token_file
        self._from_file: str | None = None
        self._read_at: float | None = None

    def current(self) -> str | None:
        """
        The token to send now, or C{None} for none.

        @raise KubeUnavailable: the token file cannot be read and no token
            was ever known.
        """
        if self._file is None:
            return self._token
        now = self._clock.seconds()
        if self._read_at is None or now - self._read_at >= TOKEN_REREAD_SECONDS:
            self._read_at = now
            self._reread(self._file)
        return self._from_file or self._token

    def _reread(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as source:
                self._from_file = source.read().strip() or None
        except (OSError, UnicodeError) as error:
            why = getattr(error, "strerror", None) or str(error)
            if self._from_file is None and self._token is None:
                self._read_at = None
                raise KubeUnavailable(f"cannot read token file {path}: {why}") from None
            self.log.warn(  # noqa: G010 - twisted.logger has no warning()
                "cannot read token file {path}: {why}; keeping the last token",
                path=path,
                why=why,
            )


# -- reading bodies ----------------------------------------------------------------


class _BodyReceiver(Protocol):
    """
    Hand each chunk of a response body to C{on_data}.

    @ivar finished: fires with C{None} at the end of the body; fails with
        the transport's reason, or with what C{on_data} raised (the
        connection is then closed).  Cancelling it closes the connection.
    @ivar lost: fires once the body's connection is gone, however it ended.
    @ivar handler_failed: whether C{finished} failed because C{on_data}
        raised.
    """

    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self._on_data = on_data
        self.finished: Deferred[None] = Deferred(lambda _: self.abort())
        self.lost: Deferred[None] = Deferred()
        self.handler_failed = False

    def dataReceived(self, data: bytes) -> None:
        if self.finished.called:
            return
        try:
            self._on_data(data)
        except Exception:  # noqa: BLE001 - handed to whoever waits on finished
            failure = Failure()
            self.handler_failed = True
            self.abort()
            self.finished.errback(failure)

    def abort(self) -> None:
        """
        Close the connection under the body.
        """
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.finished.called:
            if reason.check(ResponseDone, PotentialDataLoss):
                self.finished.callback(None)
            else:
                self.finished.errback(reason)
        self.lost.callback(None)


class _EventLines:
    """
    Split a watch stream into its newline-delimited JSON events, however
    the stream is cut into chunks.
    """

    def __init__(self, on_event: Callable[[JSON], None]) -> None:
        self._on_event = on_event
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._deliver(line)

    def finish(self) -> None:
        """
        Deliver a last event not followed by a newline.
        """
        line, self._buffer = self._buffer, b""
        self._deliver(line)

    def _deliver(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except ValueError:
            raise KubeUnavailable(
                "watch stream holds a line that is not JSON: "
                + _one_line(line[:200].decode("utf-8", "replace"))
            ) from None
        if not isinstance(event, dict):
            raise KubeUnavailable("watch stream holds an event that is not an object")
        self._on_event(event)


# -- the client ----------------------------------------------------------------


class KubeClient:
    """
    GET, POST and WATCH against one kube-apiserver.

    @param reactor: the reactor (TCP, SSL and time).
    @param config: where the server is and how to authenticate.
    @param timeout: seconds each request may take, body included; for a
        watch, until the response headers arrive.
    """

    def __init__(
        self, reactor: Any, config: ClusterConfig, timeout: float = 10.0
    ) -> None:
        self._reactor = reactor
        self._server = config.server.rstrip("/")
        self._timeout = timeout
        self._tokens = TokenSource(reactor, config.token, config.token_file)
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        policy = ClusterTLSPolicy(config)
        self._http = HTTPClient(Agent(reactor, contextFactory=policy, pool=self._pool))
        self._streams: set[_BodyReceiver] = set()

    @property
    def server(self) -> str:
        """
        The server's URL, C{https://host:port}.
        """
        return self._server

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> JSON:
        """
        GET a JSON object.

        @param path: the path, such as C{/api/v1/namespaces}.
        @param params: query parameters.
        @return: the decoded object.
        @raise KubeAPIError: the server answered an error status.
        @raise KubeUnavailable: it could not be reached, or not in time.
        """
        return await self._within(
            self._exchange("GET", path, params, None), f"GET {self._server}{path}"
        )

    async def post(self, path: str, body: Mapping[str, Any]) -> JSON:
        """
        POST a JSON object (a TokenReview, a SubjectAccessReview) and return
        the object the server answers with.

        @raise KubeAPIError: the server answered an error status.
        @raise KubeUnavailable: it could not be reached, or not in time.
        """
        return await self._within(
            self._exchange("POST", path, None, body), f"POST {self._server}{path}"
        )

    def watch(
        self,
        path: str,
        params: Mapping[str, str],
        on_event: Callable[[JSON], None],
    ) -> Deferred[None]:
        """
        Watch C{path}: GET it with C{watch=1} and pass each event of the
        stream to C{on_event} as it arrives.

        @param params: query parameters, typically C{resourceVersion},
            C{allowWatchBookmarks} and C{timeoutSeconds}.
        @param on_event: called with each C{{"type": ..., "object": ...}}
            (C{ERROR} events included).  If it raises, the stream is closed
            and the returned Deferred fails with that exception.
        @return: fires with C{None} when the server ends the stream; fails
            with L{KubeAPIError} or L{KubeUnavailable}.  Cancelling it closes
            the connection.
        """
        return Deferred.fromCoroutine(self._watch(path, params, on_event))

    def close(self) -> Deferred[None]:
        """
        Close every open watch stream and every idle pooled connection.

        @return: fires when they are all closed.
        """
        streams = list(self._streams)
        for stream in streams:
            stream.abort()
        waiting = [stream.lost for stream in streams]
        waiting.append(self._pool.closeCachedConnections())
        return gatherResults(waiting).addCallback(lambda _: None)

    # -- internals ----------------------------------------------------------

    async def _within(self, work: Coroutine[Any, Any, _T], what: str) -> _T:
        """
        Run C{work}, cancelling it after the client's timeout.
        """
        deferred = Deferred.fromCoroutine(work)
        deferred.addTimeout(self._timeout, self._reactor)
        try:
            return await deferred
        except TimeoutError:
            raise KubeUnavailable(
                f"{what} timed out after {self._timeout:g}s"
            ) from None

    def _headers(self, has_body: bool) -> Headers:
        headers = Headers(
            {
                b"Accept": [b"application/json"],
                b"User-Agent": [USER_AGENT.encode("ascii")],
            }
        )
        token = self._tokens.current()
        if token:
            headers.addRawHeader(b"Authorization", b"Bearer " + token.encode("utf-8"))
        if has_body:
            headers.addRawHeader(b"Content-Type", b"application/json")
        return headers

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
    ) -> IResponse:
        url = self._server + path
        options: dict[str, Any] = {"unbuffered": True}
        if params:
            options["params"] = dict(params)
        if body is not None:
            options["data"] = json.dumps(body).encode("utf-8")
        headers = self._headers(body is not None)
        try:
            response: IResponse = await self._http.request(
                method, url, headers=headers, **options
            )
        except Exception as error:  # noqa: BLE001 - any failure means unreachable
            if _cancelled(error):
                raise CancelledError() from None
            raise KubeUnavailable(f"{method} {url}: {describe(error)}") from None
        return response

    async def _read(self, response: IResponse, what: str) -> bytes:
        chunks: list[bytes] = []
        receiver = _BodyReceiver(chunks.append)
        response.deliverBody(receiver)
        try:
            await receiver.finished
        except Exception as error:  # noqa: BLE001 - any failure means unreachable
            if _cancelled(error):
                raise CancelledError() from None
            raise KubeUnavailable(f"{what}: {describe(error)}") from None
        return b"".join(chunks)

    async def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
    ) -> JSON:
        what = f"{method} {self._server}{path}"
        response = await self._send(method, path, params, body)
        data = await self._read(response, what)
        if not 200 <= response.code < 300:
            raise _api_error(response.code, data)
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise KubeUnavailable(
                f"{what}: answered {response.code} with a body that is not "
                "a JSON object"
            )
        return answer

    async def _watch(
        self,
        path: str,
        params: Mapping[str, str],
        on_event: Callable[[JSON], None],
    ) -> None:
        what = f"watch {self._server}{path}"
        query = {**params, "watch": "1"}
        response = await self._within(self._send("GET", path, query, None), what)
        if not 200 <= response.code < 300:
            data = await self._within(self._read(response, what), what)
            raise _api_error(response.code, data)
        lines = _EventLines(on_event)
        receiver = _BodyReceiver(lines.feed)
        self._streams.add(receiver)
        receiver.lost.addBoth(lambda _: self._streams.discard(receiver))
        response.deliverBody(receiver)
        try:
            await receiver.finished
        except CancelledError:
            raise
        except Exception as error:
            if receiver.handler_failed:
                raise
            raise KubeUnavailable(f"{what}: {describe(error)}") from None
        lines.finish()


def _cancelled(error: BaseException) -> bool:
    """
    Whether C{error} is, or only wraps, a cancellation (ours: a timeout or
    the caller cancelling).
    """
    if isinstance(error, CancelledError | neterror.ConnectingCancelledError):
        return True
    reasons = getattr(error, "reasons", None) or []
    return any(
        isinstance(reason, Failure)
        and reason.check(CancelledError, neterror.ConnectingCancelledError)
        for reason in reasons
    )


def _api_error(code: int, data: bytes) -> KubeAPIError:
    """
    The L{KubeAPIError} for an error answer: its C{Status}, or one made up
    from its text.
    """
    try:
        status = json.loads(data)
    except ValueError:
        status = None
    if not isinstance(status, dict) or status.get("kind") != "Status":
        status = made_up_status(code, data.decode("utf-8", "replace"))
    return KubeAPIError(code, status)


__all__ = [
    "ClusterTLSPolicy",
    "KubeAPIError",
    "KubeClient",
    "KubeUnavailable",
    "TokenSource",
    "describe",
    "made_up_status",
]
