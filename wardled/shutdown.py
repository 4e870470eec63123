# -*- test-case-name: tests.test_shutdown -*-
"""
Stopping without dropping requests (SIGTERM, C{systemctl stop}, a rolling
restart behind a load balancer).

twistd stops the reactor on SIGTERM and first waits for the application's
C{stopService}.  L{GracefulShutdown} makes that wait a drain, the way
k8s.io/apiserver shuts down:

 1. At once: C{/readyz} fails (the server's C{shutdown} check, set on the
    reactor's I{before shutdown} trigger) and the services that only report
    (the systemd notifier: C{STOPPING=1}) stop.
 2. For C{--shutdown-delay-duration} the listener keeps accepting and every
    request is served as before, so load balancers that poll C{/readyz}
    take the server out of rotation before it stops listening.
 3. The listener stops.  Requests in flight that are not watches may
    finish; responses from now on say C{Connection: close} (HTTP/1.1), so
    clients do not keep reusing a connection to a server that is going.
 4. The backend stops: the watch caches close, which ends every open watch
    the normal way (the chunked response ends with its last chunk, the
    client re-watches elsewhere), and storage closes.
 5. Every connection is closed cleanly (TLS close_notify, then FIN) once
    what was written to it is sent.

Steps 3 to 5 share one deadline, L{DRAIN_TIMEOUT} seconds after the
listener stopped: whatever is unfinished then is cut, and the process
exits, with status 0 (L{SigtermExitsZero}: twistd would kill itself with
the signal again).
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, Request
from twisted.web.server import Site

from wardled.api.requestinfo import parse_request_info
from wardled.requestend import when_finished

DRAIN_TIMEOUT = 30.0
POLL_INTERVAL = 0.05

log = Logger()


def is_watch(request: Request) -> bool:
    """
    Whether C{request} is a watch (a long-running request the drain does
    not wait for), as far as it has been received: a request whose head
    has not all arrived is not.
    """
    path = getattr(request, "path", None)
    if not isinstance(path, bytes):
        return False
    args = getattr(request, "args", None) or {}
    watch = (args.get(b"watch") or [b""])[0].lower() in (b"true", b"1")
    method = request.method.decode("ascii", "replace")
    info = parse_request_info(method, path.decode("utf-8", "replace"), watch)
    return info.verb == "watch"


def close_after_response(request: Request) -> None:
    """
    Close C{request}'s connection once its response is sent (HTTP/1.1):
    say C{Connection: close} if the headers are not out yet, and do not
    keep the connection alive either way.  An HTTP/2 stream is left alone
    (its connection is closed at the end of the drain).
    """
    channel = request.channel
    if not isinstance(channel, HTTPChannel):
        return
    # A request whose head is still arriving: the channel decides whether
    # to keep the connection from the first Connection header once the head
    # is in (and then answers Connection: close itself).
    request.requestHeaders.setRawHeaders(b"connection", [b"close"])
    if not request.startedWriting:
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
    channel.persistent = False


class RequestTracker:
    """
    The requests in flight: every request the site has created whose
    response is not finished and whose connection is not lost.

    Install it with L{install} (it wraps the site's C{requestFactory}), so
    a request is counted from its first line, including while its body
    arrives.

    @ivar draining: set by L{start_draining}: new requests are answered
        with C{Connection: close}.
    """

    def __init__(self) -> None:
        self._requests: set[Request] = set()
        self.draining = False

    def install(self, site: Site) -> None:
        """
        Count every request C{site} creates from now on.
        """
        make = site.requestFactory

        def tracked(channel: Any, *args: Any, **kwargs: Any) -> Request:
            request: Request = make(channel, *args, **kwargs)
            self.track(request)
            return request

        # Site documents requestFactory as any callable building a request.
        site.requestFactory = tracked  # type: ignore[assignment]

    def track(self, request: Request) -> None:
        """
        Count C{request} until it finishes or its connection is lost.
        """
        self._requests.add(request)
        when_finished(request, functools.partial(self._finished, request=request))
        if self.draining:
            close_after_response(request)

    def _finished(self, result: object, request: Request) -> None:
        self._requests.discard(request)

    @property
    def in_flight(self) -> tuple[Request, ...]:
        """
        The requests in flight.
        """
        return tuple(self._requests)

    def short_lived(self) -> list[Request]:
        """
        The requests in flight that are not watches.
        """
        return [request for request in self._requests if not is_watch(request)]

    def start_draining(self) -> None:
        """
        From now on every response closes its connection (the ones in
        flight too).
        """
        self.draining = True
        for request in self._requests:
            close_after_response(request)


class OpenConnections:
    """
    The connections of one listener, as its L{WrappingFactory} (the
    L{TLSMemoryBIOFactory}) tracks them.
    """

    def __init__(self, factory: WrappingFactory[Any]) -> None:
        self.factory = factory

    @property
    def count(self) -> int:
        """
        How many are open.
        """
        return len(self.factory.protocols)

    def close_all(self) -> None:
        """
        Close every connection cleanly: what was written is still sent,
        then TLS says close_notify and TCP closes.

        The HTTP channel is the TLS connection's producer, and TLS waits for
        its producer to go before closing; letting it go and then closing is
        what the channel's own C{loseConnection} does.  TLS would then also
        wait for the client's close_notify, which a client holding an idle
        connection without reading it never sends, so TCP is closed at
        once, once what TLS wrote is sent.
        """
        for connection in list(self.factory.protocols):
            try:
                if not getattr(connection, "disconnecting", False):
                    connection.unregisterProducer()
                    connection.loseConnection()
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.loseConnection()
            except Exception:  # noqa: BLE001 - one bad connection must not stop the drain
                log.failure("closing a connection failed; aborting it")
                connection.abortConnection()

    def abort_all(self) -> int:
        """
        Drop every connection still open now.

        @return: how many there were.
        """
        connections = list(self.factory.protocols)
        for connection in connections:
            connection.abortConnection()
        return len(connections)


class GracefulShutdown(MultiService):
    """
    The server's top service: the backend (storage, caches, auth), the
    listener, and any reporting service added later (the systemd
    notifier), started in that order and stopped as a drain (see the
    module docstring).

    @ivar stopped_cleanly: after a stop, whether everything finished
        before the deadline.
    """

    def __init__(
        self,
        clock: IReactorTime,
        backend: IService,
        listener: IService,
        requests: RequestTracker,
        connections: OpenConnections,
        delay: float = 0.0,
        grace: float = DRAIN_TIMEOUT,
    ) -> None:
        """
        @param clock: runs the delay and the deadline.
        @param backend: everything behind the listener; stopping it ends
            the open watches.
        @param listener: accepts connections.
        @param requests: the requests in flight.
        @param connections: the listener's connections.
        @param delay: how long to keep serving after the stop begins
            (C{--shutdown-delay-duration}).
        @param grace: how long, after the listener stops, requests and
            connections may take to finish.
        """
        super().__init__()
        self.clock = clock
        self.backend = backend
        self.listener = listener
        self.requests = requests
        self.connections = connections
        self.delay = delay
        self.grace = grace
        self.stopped_cleanly = False
        backend.setServiceParent(self)
        listener.setServiceParent(self)

    def stopService(self) -> Deferred[None]:
        """
        Drain (see the module docstring); fires when done, never fails.
        """
        Service.stopService(self)
        return ensureDeferred(self._drain())

    def _reporters(self) -> list[IService]:
        return [
            service for service in self if service not in (self.backend, self.listener)
        ]

    async def _drain(self) -> None:
        reporters = [
            _stop_quietly(service, "a reporting service") for service in reversed(self._reporters())
        ]
        log.info(
            "shutting down: /readyz fails; serving for {delay} s more, then draining "
            "for at most {grace} s",
            delay=self.delay,
            grace=self.grace,
        )
        if self.delay > 0:
            await deferLater(self.clock, self.delay, lambda: None)
        await _stop_quietly(self.listener, "the listener")
        deadline = self.clock.seconds() + self.grace
        self.requests.start_draining()
        requests_done = await self._wait(lambda: not self.requests.short_lived(), deadline)
        backend_stopped = _done_flag(_stop_quietly(self.backend, "the backend"))
        watches_done = await self._wait(lambda: not self.requests.in_flight, deadline)
        cut = await self._close_connections(deadline)
        await self._wait(backend_stopped, deadline)
        await DeferredList(reporters)
        self._stopped(requests_done and watches_done and not cut, cut)

    async def _close_connections(self, deadline: float) -> int:
        """
        Close every connection cleanly, abort those still open at
        C{deadline}.

        @return: how many were aborted.
        """
        self.connections.close_all()
        await self._wait(lambda: self.connections.count == 0, deadline)
        return self.connections.abort_all()

    def _stopped(self, cleanly: bool, cut: int) -> None:
        self.stopped_cleanly = cleanly
        if cleanly:
            log.info("drained; stopping")
        else:
            log.warn(  # noqa: G010 - twisted.logger has no warning()
                "drain deadline passed; {cut} connections cut", cut=cut
            )

    async def _wait(self, condition: Callable[[], bool], deadline: float) -> bool:
        """
        Wait until C{condition} holds or C{deadline} passes.

        @return: whether it holds.
        """
        while not condition():
            remaining = deadline - self.clock.seconds()
            if remaining <= 0:
                return False
            await deferLater(self.clock, min(POLL_INTERVAL, remaining), lambda: None)
        return True


def _stop_quietly(service: IService, what: str) -> Deferred[None]:
    """
    Stop C{service}, logging rather than passing on a failure: a service
    that fails to stop must not stop the drain.
    """

    def failed(failure: Failure) -> None:
        log.failure("stopping {what} failed", failure, what=what)

    return maybeDeferred(service.stopService).addCallbacks(lambda _: None, failed)


def _done_flag(deferred: Deferred[None]) -> Callable[[], bool]:
    """
    A condition that holds once C{deferred} has fired.
    """
    fired: list[object] = []
    deferred.addBoth(fired.append)
    return lambda: bool(fired)


class SigtermExitsZero(Service):
    """
    SIGTERM stops the reactor as twistd's own handler does, except that the
    process then exits with status 0: twistd remembers the signal and, once
    stopped, kills itself with it again (exit status 143), which systemd
    accepts but a supervisor that wants 0 after a clean drain does not.

    Installed once the reactor runs (the reactor installs its own handlers
    as it starts); SIGINT keeps twistd's behaviour.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._stopping = False

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(self.install)

    def install(self) -> None:
        """
        Handle SIGTERM from now on.
        """
        signal.signal(signal.SIGTERM, self._received)

    def _received(self, number: int, frame: FrameType | None) -> None:
        log.info("Received SIGTERM, shutting down.")
        self.reactor.callFromThread(self._stop_reactor)

    def _stop_reactor(self) -> None:
        if not self._stopping:
            self._stopping = True
            self.reactor.stop()


def serve_gracefully(
    reactor: Any,
    backend: IService,
    listener: Any,
    site: Site,
    delay: float = 0.0,
    grace: float = DRAIN_TIMEOUT,
    reporters: Iterable[IService] = (),
) -> GracefulShutdown:
    """
    Put C{backend} and C{listener} under a L{GracefulShutdown}, counting
    the requests of C{site}, with a L{SigtermExitsZero}.

    @param reactor: runs the drain's timers and stops on SIGTERM.
    @param listener: a L{StreamServerEndpointService} whose C{factory} is a
        L{WrappingFactory} (wardled's L{TLSMemoryBIOFactory}).
    @param reporters: services started last and stopped first (the
        systemd notifier).
    """
    requests = RequestTracker()
    requests.install(site)
    top = GracefulShutdown(
        reactor, backend, listener, requests, OpenConnections(listener.factory), delay, grace
    )
    for reporter in (*reporters, SigtermExitsZero(reactor)):
        reporter.setServiceParent(top)
    return top
