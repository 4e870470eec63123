# -*- test-case-name: tests.test_shutdown -*-
"""
Tests for L{wardled.shutdown}: the drain on a L{Clock} with real HTTP
channels over in-memory transports, and a real C{twistd wardled} stopped
with SIGTERM while a watch is open and a request is half sent.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import time
from typing import Any

import pytest
from twisted.application.service import Service
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import Request
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests.etcdserver import EtcdServer
from tests.harness import ADMIN, TestPKI, WardledProcess
from wardled.shutdown import (
    DRAIN_TIMEOUT,
    GracefulShutdown,
    OpenConnections,
    RequestTracker,
    SigtermExitsZero,
    is_watch,
)
from wardled.tap import Options

FLUNDERS = "/apis/wardle.example.com/v1alpha1/namespaces/ns/flunders"


class Held(Resource):
    """
    Holds every request (NOT_DONE_YET) for the test to answer.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render(self, request: Any) -> Any:
        self.requests.append(request)
        return NOT_DONE_YET


class Recorder(Service):
    """
    A service that notes when it was stopped (and may do something then).
    """

    def __init__(self, clock: Clock, on_stop: Any = None) -> None:
        self.clock = clock
        self.on_stop = on_stop
        self.stopped_at: float | None = None

    def stopService(self) -> None:
        super().stopService()
        self.stopped_at = self.clock.seconds()
        if self.on_stop is not None:
            self.on_stop()


class Server:
    """
    A site holding its requests, behind a connection-tracking factory, with
    connections over L{StringTransport}s.
    """

    def __init__(self) -> None:
        self.resource = Held()
        # No idle timeout: it would be a real reactor call left behind.
        self.site = Site(self.resource, timeout=None)
        self.tracker = RequestTracker()
        self.tracker.install(self.site)
        self.factory: WrappingFactory[Any] = WrappingFactory(self.site)
        self.connections = OpenConnections(self.factory)

    def connect(self) -> tuple[ProtocolWrapper, StringTransport]:
        wrapper = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4321))
        transport = StringTransport()
        wrapper.makeConnection(transport)
        return wrapper, transport

    def request(self, head: bytes) -> tuple[ProtocolWrapper, StringTransport, Request]:
        """
        A connection that sent C{head} (a whole request without body).
        """
        wrapper, transport = self.connect()
        wrapper.dataReceived(head)
        return wrapper, transport, self.resource.requests[-1]


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def closed(wrapper: ProtocolWrapper) -> None:
    """
    What the reactor does once a closing connection is flushed.
    """
    wrapper.connectionLost(Failure(ConnectionDone()))


def finish_watches(requests: list[Request]) -> None:
    """
    What closing the watch caches does to every open watch: the stream
    ends normally.
    """
    for request in requests:
        if is_watch(request) and not request.finished:
            request.write(b'{"type":"ADDED"}\n')
            request.finish()


class IsWatchTests(SynchronousTestCase):
    """
    L{is_watch} tells watches (not waited for) from other requests.
    """

    def classify(self, head: bytes) -> bool:
        server = Server()
        _, _, request = server.request(head)
        return is_watch(request)

    def test_watch_parameter(self) -> None:
        for value in ("true", "1", "TRUE"):
            self.assertTrue(self.classify(get(f"{FLUNDERS}?watch={value}")), value)

    def test_legacy_watch_path(self) -> None:
        self.assertTrue(
            self.classify(get("/apis/wardle.example.com/v1alpha1/watch/namespaces/ns/flunders"))
        )

    def test_not_watches(self) -> None:
        for head in (
            get(FLUNDERS),
            get(f"{FLUNDERS}?watch=false"),
            get("/readyz?watch=1"),
            f"POST {FLUNDERS}?watch=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode(),
        ):
            self.assertFalse(self.classify(head), head)

    def test_head_not_received(self) -> None:
        """
        A request whose head is still arriving is not a watch (it is waited
        for).
        """
        server = Server()
        wrapper, _ = server.connect()
        wrapper.dataReceived(b"GET " + FLUNDERS.encode() + b"?watch=1 HTTP/1.1\r\n")
        (request,) = server.tracker.in_flight
        self.assertFalse(is_watch(request))


class RequestTrackerTests(SynchronousTestCase):
    """
    L{RequestTracker} counts requests from their first line to their end.
    """

    def test_counted_until_finished(self) -> None:
        server = Server()
        _, _, request = server.request(get(FLUNDERS))
        self.assertEqual(server.tracker.in_flight, (request,))
        request.finish()
        self.assertEqual(server.tracker.in_flight, ())

    def test_counted_while_body_arrives(self) -> None:
        server = Server()
        wrapper, _ = server.connect()
        wrapper.dataReceived(
            f"POST {FLUNDERS} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345".encode()
        )
        self.assertEqual(len(server.tracker.in_flight), 1)
        self.assertEqual(server.resource.requests, [])

    def test_connection_lost(self) -> None:
        server = Server()
        wrapper, _, _ = server.request(get(FLUNDERS))
        closed(wrapper)
        self.assertEqual(server.tracker.in_flight, ())

    def test_short_lived(self) -> None:
        server = Server()
        _, _, listing = server.request(get(FLUNDERS))
        server.request(get(f"{FLUNDERS}?watch=1"))
        self.assertEqual(server.tracker.short_lived(), [listing])

    def test_draining_closes_connections_after_responses(self) -> None:
        """
        Once draining, an HTTP/1.1 response in flight or to come says
        C{Connection: close} and its connection is closed after it; a
        response already started (a watch) is not changed but its
        connection closes too.
        """
        server = Server()
        _, in_flight_transport, in_flight = server.request(get(FLUNDERS))
        _, watch_transport, watch = server.request(get(f"{FLUNDERS}?watch=1"))
        watch.write(b"")
        server.tracker.start_draining()
        _, new_transport, new = server.request(get(FLUNDERS))
        for request in (in_flight, new):
            request.write(b"{}")
            request.finish()
        watch.finish()
        for transport in (in_flight_transport, new_transport):
            self.assertIn(b"\r\nConnection: close\r\n", transport.value())
            self.assertTrue(transport.disconnecting)
        self.assertNotIn(b"Connection: close", watch_transport.value())
        self.assertTrue(watch_transport.disconnecting)

    def test_keeps_alive_when_not_draining(self) -> None:
        server = Server()
        _, transport, request = server.request(get(FLUNDERS))
        request.finish()
        self.assertNotIn(b"Connection: close", transport.value())
        self.assertFalse(transport.disconnecting)


class OpenConnectionsTests(SynchronousTestCase):
    """
    L{OpenConnections} over a L{WrappingFactory}.
    """

    def test_count_close_and_abort(self) -> None:
        server = Server()
        first, first_transport = server.connect()
        _second, second_transport = server.connect()
        self.assertEqual(server.connections.count, 2)
        server.connections.close_all()
        self.assertTrue(first_transport.disconnecting)
        self.assertTrue(second_transport.disconnecting)
        self.assertIsNone(first_transport.producer)
        closed(first)
        self.assertEqual(server.connections.count, 1)
        self.assertEqual(server.connections.abort_all(), 1)
        self.assertTrue(second_transport.disconnecting)

    def test_closes_tcp_under_a_closing_tls_connection(self) -> None:
        """
        A connection whose upper layer is already closing (TLS waiting for
        the client's close_notify, which an idle client never sends) still
        gets its TCP connection closed.
        """
        server = Server()
        connection, transport = server.connect()
        connection.disconnecting = True
        server.connections.close_all()
        self.assertTrue(transport.disconnecting)


class GracefulShutdownTests(SynchronousTestCase):
    """
    The drain, step by step, on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.server = Server()
        self.backend = Recorder(
            self.clock, on_stop=lambda: finish_watches(self.server.resource.requests)
        )
        self.listener = Recorder(self.clock)
        self.reporter = Recorder(self.clock)

    def top(self, delay: float = 0.0) -> GracefulShutdown:
        top = GracefulShutdown(
            self.clock,
            self.backend,
            self.listener,
            self.server.tracker,
            self.server.connections,
            delay=delay,
        )
        self.reporter.setServiceParent(top)
        top.startService()
        return top

    def stop(self, top: GracefulShutdown) -> Deferred[None]:
        return top.stopService()

    def test_start_order(self) -> None:
        top = self.top()
        self.assertEqual(list(top), [self.backend, self.listener, self.reporter])
        self.assertTrue(all(service.running for service in top))

    def test_delay_then_stop_listening(self) -> None:
        """
        Reporters stop at once; the listener only after the delay; with
        nothing in flight the backend right after.
        """
        top = self.top(delay=10.0)
        stopped = self.stop(top)
        self.assertEqual(self.reporter.stopped_at, 0.0)
        self.clock.advance(9.9)
        self.assertIsNone(self.listener.stopped_at)
        self.assertIsNone(self.backend.stopped_at)
        self.clock.advance(0.1)
        self.assertEqual(self.listener.stopped_at, 10.0)
        self.assertEqual(self.backend.stopped_at, 10.0)
        self.successResultOf(stopped)
        self.assertTrue(top.stopped_cleanly)

    def test_requests_served_during_delay(self) -> None:
        top = self.top(delay=5.0)
        stopped = self.stop(top)
        self.clock.advance(1)
        connection, transport, request = self.server.request(get(FLUNDERS))
        request.write(b"ok")
        request.finish()
        self.assertNotIn(b"Connection: close", transport.value())
        self.assertFalse(transport.disconnecting)
        self.clock.advance(4)
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(stopped)
        closed(connection)
        self.clock.advance(0.05)
        self.successResultOf(stopped)

    def test_waits_for_requests_not_watches(self) -> None:
        """
        A request in flight holds the backend (and with it the end of the
        watches) until it finishes; the watch then ends normally, every
        connection is closed, and the stop is over.
        """
        top = self.top()
        listing_connection, listing_transport, listing = self.server.request(get(FLUNDERS))
        watch_connection, watch_transport, watch = self.server.request(
            get(f"{FLUNDERS}?watch=1")
        )
        watch.write(b"")
        idle_connection, idle_transport = self.server.connect()
        stopped = self.stop(top)
        self.assertEqual(self.listener.stopped_at, 0.0)
        self.clock.pump([0.05] * 100)
        self.assertIsNone(self.backend.stopped_at)
        self.assertFalse(watch.finished)
        listing.write(b"{}")
        listing.finish()
        self.assertTrue(listing_transport.disconnecting)
        closed(listing_connection)
        self.clock.advance(0.05)
        self.assertAlmostEqual(self.backend.stopped_at, 5.05)
        self.assertTrue(watch.finished)
        self.assertTrue(watch_transport.value().endswith(b"\r\n0\r\n\r\n"))
        self.assertTrue(watch_transport.disconnecting)
        self.assertTrue(idle_transport.disconnecting)
        self.assertNoResult(stopped)
        closed(watch_connection)
        closed(idle_connection)
        self.clock.advance(0.05)
        self.successResultOf(stopped)
        self.assertTrue(top.stopped_cleanly)

    def test_deadline_cuts(self) -> None:
        """
        A request that never finishes is cut at the deadline: the backend
        stops, the connections are aborted, the stop ends.
        """
        top = self.top(delay=2.0)
        _, transport, _ = self.server.request(get(FLUNDERS))
        stopped = self.stop(top)
        self.clock.pump([0.05] * int((2.0 + DRAIN_TIMEOUT) / 0.05 - 2))
        self.assertIsNone(self.backend.stopped_at)
        self.assertNoResult(stopped)
        self.clock.pump([0.05] * 3)
        self.assertIsNotNone(self.backend.stopped_at)
        self.assertTrue(transport.disconnecting)
        self.successResultOf(stopped)
        self.assertFalse(top.stopped_cleanly)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failing_service_does_not_stop_the_drain(self) -> None:
        def explode() -> None:
            raise RuntimeError("boom")

        self.backend.on_stop = explode
        top = self.top()
        stopped = self.stop(top)
        self.clock.advance(0.05)
        self.successResultOf(stopped)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ShutdownDelayFlagTests(SynchronousTestCase):
    """
    C{--shutdown-delay-duration} is a Go duration, C{0s} by default.
    """

    def parse(self, *args: str) -> float:
        options = Options()
        options.parseOptions(["--etcd-servers", "http://127.0.0.1:2379", *args])
        return options.config.shutdown_delay_duration

    def test_default(self) -> None:
        self.assertEqual(self.parse(), 0.0)

    def test_durations(self) -> None:
        self.assertEqual(self.parse("--shutdown-delay-duration", "10s"), 10.0)
        self.assertEqual(self.parse("--shutdown-delay-duration=1m30s"), 90.0)

    def test_bad_value(self) -> None:
        error = self.assertRaises(
            SystemExit, self.parse, "--shutdown-delay-duration", "soon"
        )
        self.assertIn("invalid --shutdown-delay-duration 'soon'", str(error.code))


class FakeReactor:
    """
    The parts of a reactor L{SigtermExitsZero} uses.
    """

    def __init__(self) -> None:
        self.when_running: list[Any] = []
        self.stops = 0

    def callWhenRunning(self, function: Any) -> None:
        self.when_running.append(function)

    def callFromThread(self, function: Any) -> None:
        function()

    def stop(self) -> None:
        self.stops += 1


class SigtermExitsZeroTests(SynchronousTestCase):
    """
    L{SigtermExitsZero} takes SIGTERM once the reactor runs and stops it
    once, without recording the signal (so twistd exits 0).
    """

    def test_installs_when_running_and_stops_once(self) -> None:
        original = signal.getsignal(signal.SIGTERM)
        self.addCleanup(signal.signal, signal.SIGTERM, original)
        reactor = FakeReactor()
        service = SigtermExitsZero(reactor)
        service.startService()
        self.assertIs(signal.getsignal(signal.SIGTERM), original)
        (install,) = reactor.when_running
        install()
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)
        handler(signal.SIGTERM, None)
        self.assertEqual(reactor.stops, 1)
        self.assertFalse(hasattr(reactor, "_exitSignal"))


# -- a real server ---------------------------------------------------------

DELAY = 2.0


def flunder(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "wardle.example.com/v1alpha1",
        "kind": "Flunder",
        "metadata": {"name": name},
    }


def stdout_line(process: Any, timeout: float = 10.0) -> Any:
    """
    The next line C{process} prints, parsed as JSON.
    """
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "nothing printed"
    return json.loads(process.stdout.readline())


def _slow_create(server: WardledProcess, namespace: str) -> tuple[ssl.SSLSocket, bytes]:
    """
    Start a create whose body is only half sent: the request is in flight
    until the test sends the rest.

    @return: the connection and the rest of the body.
    """
    body = json.dumps(flunder("slow")).encode()
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    connection = server.pki.ssl_context(ADMIN).wrap_socket(raw, server_hostname="127.0.0.1")
    head = (
        f"POST /apis/wardle.example.com/v1alpha1/namespaces/{namespace}/flunders HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    connection.sendall(head + body[:10])
    return connection, body[10:]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_drains(etcd: EtcdServer, pki: TestPKI, namespace: str) -> None:
    """
    After SIGTERM with C{--shutdown-delay-duration=2s}: for two seconds
    C{/readyz} answers 500 and C{/healthz} 200; then the port is closed; a
    request still arriving completes; the open watch then ends with the
    last chunk; the process exits 0.
    """
    server = WardledProcess.start(
        etcd.url, pki, extra_args=["--shutdown-delay-duration", f"{DELAY:g}s"]
    )
    try:
        collection = f"/apis/wardle.example.com/v1alpha1/namespaces/{namespace}/flunders"
        created = server.https("POST", collection, flunder("first"))
        assert created.status == 201, created.body
        watch = server.stream(f"{collection}?watch=1")
        assert watch.read_event()["object"]["metadata"]["name"] == "first"
        slow, rest = _slow_create(server, namespace)
        assert server.https("GET", "/readyz").status == 200
        # A client keeping an idle connection it does not read (a pool).
        idle = http.client.HTTPSConnection(
            "127.0.0.1", server.port, context=pki.ssl_context(ADMIN)
        )
        idle.request("GET", "/healthz")
        assert idle.getresponse().read() == b"ok"

        sent_at = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        time.sleep(0.5)
        ready = server.https("GET", "/readyz?verbose")
        assert ready.status == 500, ready.body
        assert b"[-]shutdown failed" in ready.body
        assert server.https("GET", "/healthz").status == 200
        assert time.monotonic() - sent_at < DELAY

        while time.monotonic() - sent_at < DELAY + 0.5:
            time.sleep(0.1)
        assert _refused(server.port)
        assert server.running

        slow.sendall(rest)
        response = http.client.HTTPResponse(slow)
        response.begin()
        assert response.status == 201
        assert json.loads(response.read())["metadata"]["name"] == "slow"
        assert response.getheader("connection") == "close"
        slow.close()

        events = []
        while (event := watch.read_event(timeout=10)) is not None:
            events.append(event)
        assert [e["object"]["metadata"]["name"] for e in events] == ["slow"]
        watch.close()

        status = server.stop()
        assert status == 0, server.output()
        assert time.monotonic() - sent_at < DELAY + 10
        assert "drained; stopping" in server.output()
        idle.close()
    finally:
        server.stop()


@pytest.mark.parametrize("http2", [False, True])
def test_watch_ends_cleanly_for_curl(
    etcd: EtcdServer, pki: TestPKI, namespace: str, http2: bool
) -> None:
    """
    curl watching over HTTP/1.1 or HTTP/2 sees its watch end normally
    (exit status 0, no "transfer closed with outstanding read data") when
    the server stops.
    """
    server = WardledProcess.start(etcd.url, pki)
    try:
        # A watch before the cache has synced is a (pretty-printed) 429.
        server.wait_ready()
        collection = f"/apis/wardle.example.com/v1alpha1/namespaces/{namespace}/flunders"
        credentials = pki.users[ADMIN]
        command = [
            "curl", "-sS", "-N", "--cacert", pki.ca_file,
            "--cert", credentials.cert_file, "--key", credentials.key_file,
            "--http2" if http2 else "--http1.1",
            f"{server.url}{collection}?watch=1&allowWatchBookmarks=true",
        ]
        curl = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            created = server.https("POST", collection, flunder("seen"))
            assert created.status == 201, created.body
            assert stdout_line(curl)["object"]["metadata"]["name"] == "seen"
            status = server.stop(signal.SIGTERM)
            _, err = curl.communicate(timeout=10)
        finally:
            if curl.poll() is None:
                curl.kill()
                curl.wait()
        assert status == 0, server.output()
        assert curl.returncode == 0, err
        assert err == ""
    finally:
        server.stop()
