# -*- test-case-name: tests.test_limits -*-
"""
Limits on connections: what a client that sends slowly, sends too much or
sends nothing can hold.

Twisted resets a connection's idle timeout whenever a byte arrives, so a
client sending one header byte a second (slowloris) could keep a
connection, and its memory, for ever.  Go's C{http.Server}, which
kube-apiserver runs with C{ReadHeaderTimeout} 32 s and C{MaxHeaderBytes}
1 MiB, does not allow that; L{GuardedSite} brings the same limits to
Twisted:

 - B{request head deadline} (C{--read-header-timeout}, 32 s): a new
   connection must complete its TLS handshake and its first request head
   within it; on a kept-alive HTTP/1.1 connection, each later head must be
   complete that long after its first byte.  Otherwise the connection is
   dropped (as Go drops it: no response).
 - B{request body deadline} (HTTP/1.1): a body must arrive within the
   request timeout (C{--request-timeout}) after its head, else C{504}
   (the C{Status} Kubernetes' timeout filter sends) and the connection
   closes.
 - B{head size}: request line and headers together may take
   L{MAX_HEADER_BYTES} (1 MiB, plus Go's 4 KiB of slack); a longer head,
   a long URL included (Go has no separate URL limit), gets Go's plain
   C{431 Request Header Fields Too Large} and the connection closes.
   Over HTTP/2 the header list is limited to the 64 KiB the h2 library
   advertises in C{SETTINGS_MAX_HEADER_LIST_SIZE}: clients refuse to send
   more (curl reports C{REFUSED_STREAM}), and a larger list ends the
   connection (GOAWAY).
 - B{declared body size} (HTTP/1.1): a C{Content-Length} over the 3 MiB
   body limit, or a chunked body growing past it, is answered C{413}
   before it is read, and the connection closes (the filters still
   check every body that was read).
 - B{HTTP/2 idle}: an HTTP/2 connection with no stream must open one
   within the head deadline of its start, and one with no stream open for
   the site's idle timeout (90 s) is closed with GOAWAY (and cut
   L{GOAWAY_GRACE} later), however many frames (PINGs, a trickled HEADERS
   frame) it sends meanwhile.

The kept-alive HTTP/1.1 connection waiting for its next request is left
to Twisted's idle timeout (the site's C{timeout}; the server gives it
L{IDLE_TIMEOUT}, 90 s, as kube-apiserver's C{IdleTimeout}).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._http2 import H2Connection
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol, _parseRequestLine
from twisted.web.iweb import INonQueuedRequestFactory
from twisted.web.server import Site

from wardled import apierrors
from wardled.limits import TIMEOUT_MESSAGE, LimitSettings

#: Go's C{http.DefaultMaxHeaderBytes}, which kube-apiserver sets.
MAX_HEADER_BYTES = 1 << 20
#: What Go actually reads before refusing (C{MaxHeaderBytes} + 4096).
HEADER_BYTES_LIMIT = MAX_HEADER_BYTES + 4096
#: Chunked-encoding framing allowed on top of the body limit.
CHUNKED_SLACK = 64 * 1024
#: Header lines Twisted accepts per request (its default is 500; Go counts
#: only bytes, so the byte limit is what bounds a head here too).
MAX_HEADER_COUNT = 100_000

#: The idle timeout to give the site (Go's C{IdleTimeout} in
#: kube-apiserver): longer than the request timeout, so that Twisted's own
#: HTTP/2 idle timeout (reset only by frames) does not cut a slow request
#: before its 504.
IDLE_TIMEOUT = 90.0
#: Seconds an idle HTTP/2 connection told GOAWAY has to close before it
#: is cut.
GOAWAY_GRACE = 1

_HEAD, _BODY, _HANDLING, _IDLE = "head", "body", "handling", "idle"

#: The largest head read in one piece (L{GuardedHTTPChannel}'s fast
#: path); a longer one goes line by line, where the limits are checked.
WHOLE_HEAD_BYTES = 16 * 1024
_HEAD_END = b"\r\n\r\n"

log = Logger()

HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\n"
    b"431 Request Header Fields Too Large"
)


def status_response(error: apierrors.StatusError, phrase: str) -> bytes:
    """
    A whole HTTP/1.1 response carrying C{error}'s C{Status}, closing the
    connection (for answers given before a request object is ready).
    """
    body = (json.dumps(error.status(), separators=(",", ":")) + "\n").encode()
    head = (
        f"HTTP/1.1 {error.code} {phrase}\r\n"
        "Content-Type: application/json\r\n"
        "Cache-Control: no-cache, private\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedHTTPChannel(HTTPChannel):
    """
    An HTTP/1.1 channel with a head deadline, a body deadline and size
    limits (see the module docstring).

    @ivar phase: where the current request is: C{"head"} (arriving),
        C{"body"}, C{"handling"} (being answered) or C{"idle"} (a kept-alive
        connection between requests).
    """

    MAX_LENGTH = HEADER_BYTES_LIMIT
    totalHeadersSize = HEADER_BYTES_LIMIT + 1
    maxHeaders = MAX_HEADER_COUNT

    def __init__(self, settings: LimitSettings) -> None:
        super().__init__()
        self.settings = settings
        self.phase = _HEAD
        self.started = 0.0
        self._deadline: IDelayedCall | None = None
        self._head_bytes = 0
        self._body_bytes = 0
        self._refused = False
        self._addresses: dict[str, Any] = {}

    @property
    def clock(self) -> IReactorTime:
        """
        The site's reactor (a Clock in tests).
        """
        site: Site = getattr(self, "site")  # noqa: B009 - set by Site.buildProtocol
        reactor: IReactorTime = site.reactor
        return reactor

    @property
    def _connection(self) -> Any:
        """
        The transport (the TLS connection).
        """
        return self.transport

    # -- deadlines -----------------------------------------------------------

    def _arm(self, seconds: float, expired: Any) -> None:
        self.stop_guard()
        if seconds > 0:
            self._deadline = self.clock.callLater(seconds, expired)

    def stop_guard(self) -> None:
        """
        Cancel the pending deadline (the connection ends or switches to
        HTTP/2).
        """
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()

    def _expect_head(self, seconds: float | None = None) -> None:
        self.phase = _HEAD
        self._head_bytes = 0
        timeout = self.settings.read_header_timeout if seconds is None else seconds
        self._arm(timeout, self._head_overdue)

    def _head_overdue(self) -> None:
        self._deadline = None
        log.info(
            "dropping {peer}: no complete request head within {seconds} s",
            peer=str(self._connection.getPeer()),
            seconds=self.settings.read_header_timeout,
        )
        self._connection.abortConnection()

    def _body_overdue(self) -> None:
        self._deadline = None
        log.info(
            "timing out {peer}: request body not received within {seconds} s",
            peer=str(self._connection.getPeer()),
            seconds=self.settings.request_timeout,
        )
        self._refuse(status_response(apierrors.timeout(TIMEOUT_MESSAGE), "Gateway Timeout"))

    def _refuse(self, response: bytes) -> None:
        """
        Answer with C{response} and close, reading nothing more.
        """
        self.stop_guard()
        self._refused = True
        self.persistent = False
        self._connection.write(response)
        self.loseConnection()

    # -- HTTPChannel ---------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        self.started = self.clock.seconds()
        self._expect_head()

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._reads_whole_head(data):
            self._receive_whole_head(data)
            return
        if self.phase == _IDLE and data:
            self._expect_head()
        super().dataReceived(data)

    # -- whole heads ---------------------------------------------------------
    #
    # Most requests arrive with their whole head in one read.  Twisted's
    # line receiver would split it line by line, through three methods per
    # line; a whole head is split at once and given to the same request
    # and header handling (Twisted's own checks of each header included).
    # Anything unusual (a partial head, folded header lines, a leading
    # empty line, a head near the size limits, a closing connection) takes
    # the line-by-line road.

    def _reads_whole_head(self, data: bytes) -> bool:
        return (
            (self.phase == _IDLE or (self.phase == _HEAD and self._head_bytes == 0))
            and bool(self.line_mode)
            and not self._buffer
            and not self._busyReceiving
            and bool(self.persistent)
            and getattr(self, "_HTTPChannel__first_line") == 1  # noqa: B009
            and len(data) <= WHOLE_HEAD_BYTES
            and not data.startswith(b"\r\n")
            and _HEAD_END in data
        )

    def _receive_whole_head(self, data: bytes) -> None:
        head, rest = data.split(_HEAD_END, 1)
        lines = head.split(b"\r\n")
        if any(line[:1] in (b" ", b"\t") for line in lines[1:]):
            # Folded headers: the line receiver joins them.
            self._expect_head()
            super().dataReceived(data)
            return
        self.stop_guard()
        self.phase = _HEAD
        self._head_bytes = len(head) + len(_HEAD_END)
        self.resetTimeout()
        self._busyReceiving = True
        try:
            self._handle_head(lines)
            if rest:
                self._buffer += rest
        finally:
            self._busyReceiving = False
        if self._buffer and not self._refused:
            # A body or pipelined requests: the line receiver takes them.
            super().dataReceived(b"")

    def _handle_head(self, lines: list[bytes]) -> None:
        """
        What L{HTTPChannel.lineReceived} does for each line of a head.
        """
        self._receivedHeaderSize = sum(map(len, lines))
        factory: Any = self.requestFactory
        if INonQueuedRequestFactory.providedBy(factory):
            request = factory(self)
        else:
            request = factory(self, len(self.requests))
        self.requests.append(request)
        setattr(self, "_HTTPChannel__first_line", 0)  # noqa: B010
        try:
            self._command, self._path, self._version = _parseRequestLine(lines[0])
        except ValueError:
            self._respondToBadRequestAndDisconnect()
            return
        for line in lines[1:]:
            if not self.headerReceived(line):
                return
        self.allHeadersReceived()
        if self._refused:
            return
        if self.length == 0:
            self.allContentReceived()
        else:
            self.setRawMode()

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if self.phase == _IDLE:
            self._expect_head()
        self._head_bytes += len(line) + 2
        if self._head_bytes > HEADER_BYTES_LIMIT:
            self._refuse(HEADERS_TOO_LARGE)
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._refuse(HEADERS_TOO_LARGE)

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        self.stop_guard()
        if self.length is not None and self.length > apierrors.MAX_BODY_BYTES:
            self._refuse(
                status_response(apierrors.request_entity_too_large(), "Request Entity Too Large")
            )
            return
        self._body_bytes = 0
        if self.length == 0:
            self.phase = _HANDLING
        else:
            self.phase = _BODY
            self._arm(self.settings.request_timeout, self._body_overdue)

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self.phase == _BODY:
            self._body_bytes += len(data)
            if self._body_bytes > apierrors.MAX_BODY_BYTES + CHUNKED_SLACK:
                self._refuse(
                    status_response(
                        apierrors.request_entity_too_large(), "Request Entity Too Large"
                    )
                )
                return
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        self.stop_guard()
        self.phase = _HANDLING
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        if self.persistent:
            # Set before the base class replays pipelined data, so that a
            # head found there starts its deadline.
            self.phase = _IDLE
        super().requestDone(request)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.stop_guard()
        super().connectionLost(reason)

    # Every request asks its channel for both addresses; a connection's do
    # not change, so ask the socket once, not twice per request.

    def getHost(self) -> Any:
        host = self._addresses.get("host")
        if host is None:
            host = self._addresses["host"] = super().getHost()
        return host

    def getPeer(self) -> Any:
        peer = self._addresses.get("peer")
        if peer is None:
            peer = self._addresses["peer"] = super().getPeer()
        return peer


class HTTP2IdleGuard:
    """
    Closes an HTTP/2 connection that has had no stream for too long.
    """

    def __init__(self, connection: H2Connection, clock: IReactorTime, idle: float) -> None:
        """
        @param connection: the HTTP/2 connection.
        @param clock: runs the timer.
        @param idle: seconds without a stream after which it is closed
            (0: only the first deadline applies).
        """
        self.connection = connection
        self.clock = clock
        self.idle = idle
        self._seen_stream = 0
        self._call: IDelayedCall | None = None

    def start(self, first: float) -> None:
        """
        The connection must open a stream within C{first} seconds.
        """
        self._arm(first)

    def _arm(self, seconds: float) -> None:
        self._seen_stream = self.connection.conn.highest_inbound_stream_id
        self._call = self.clock.callLater(max(seconds, 0.0), self._check)

    def _check(self) -> None:
        self._call = None
        busy = bool(self.connection.streams)
        opened = self.connection.conn.highest_inbound_stream_id != self._seen_stream
        if busy or opened:
            if self.idle > 0:
                self._arm(self.idle)
            return
        # GOAWAY, then close; a client that does not close its side in
        # GOAWAY_GRACE seconds is cut (Twisted's default is 15 s).
        self.connection.abortTimeout = GOAWAY_GRACE
        self.connection.timeoutConnection()

    def stop(self) -> None:
        """
        Cancel the timer (the connection is gone).
        """
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()


class GuardedChannelProtocol(_GenericHTTPChannelProtocol):
    """
    Twisted's HTTP/1.1-or-HTTP/2 switch, with the HTTP/1.1 channel a
    L{GuardedHTTPChannel} and an HTTP/2 connection given an
    L{HTTP2IdleGuard}.
    """

    _guard: HTTP2IdleGuard | None = None

    def dataReceived(self, data: bytes) -> None:
        if self._negotiatedProtocol is None:
            before = self._channel
            # The base class picks the protocol on the first data; let it,
            # then guard the new HTTP/2 connection before it reads anything.
            super().dataReceived(b"")
            started_http2 = isinstance(self._channel, H2Connection)
            if started_http2 and isinstance(before, GuardedHTTPChannel):
                self._http2_started(before)
        super().dataReceived(data)

    def _http2_started(self, channel: GuardedHTTPChannel) -> None:
        channel.stop_guard()
        connection: H2Connection = self._channel
        clock = channel.clock
        idle = float(self._timeOut or 0)
        self._guard = HTTP2IdleGuard(connection, clock, idle)
        first = channel.settings.read_header_timeout
        if first > 0:
            self._guard.start(channel.started + first - clock.seconds())
        elif idle > 0:
            self._guard.start(idle)

    def connectionLost(self, reason: Failure) -> None:
        if self._guard is not None:
            self._guard.stop()
        self._channel.connectionLost(reason)


class GuardedSite(Site):
    """
    A L{Site} whose connections are guarded (see the module docstring).

    @ivar limit_settings: the deadlines; set it before the site listens.
    """

    limit_settings = LimitSettings()

    def protocol(self) -> GuardedChannelProtocol:
        """
        A new connection's protocol (called by C{buildProtocol}).
        """
        return GuardedChannelProtocol(GuardedHTTPChannel(self.limit_settings))
