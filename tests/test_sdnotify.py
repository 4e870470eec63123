# -*- test-case-name: tests.test_sdnotify -*-
"""
Tests for L{wardled.sdnotify}: the sd_notify datagrams a real unix socket
receives, on a L{Clock} (when C{READY=1}, C{WATCHDOG=1}, C{STOPPING=1} and
the reload pair go out), and from a real C{twistd wardled} started the way
systemd starts a C{Type=notify} unit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.etcdserver import EtcdServer
from tests.harness import TestPKI, WardledProcess
from wardled.api.health import HealthCheck, HealthEndpoint
from wardled.sdnotify import (
    READY_POLL_INTERVAL,
    NotifySocket,
    SystemdNotifier,
    endpoint_ready,
    message,
    socket_address,
    watchdog_interval,
)


class NotifyListener:
    """
    What systemd does: a datagram socket bound in a temporary directory
    (or in the abstract namespace) that the test reads.
    """

    def __init__(self, abstract: bool = False) -> None:
        self.directory = tempfile.mkdtemp(prefix="wardled-notify-")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"wardled-test-{os.getpid()}-{id(self)}"
            self.socket.bind("\0" + name)
            self.env_value = "@" + name
        else:
            path = os.path.join(self.directory, "notify")
            self.socket.bind(path)
            self.env_value = path
        self.socket.setblocking(False)

    @property
    def environ(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.env_value}

    def received(self) -> list[str]:
        """
        Every datagram waiting, decoded.
        """
        datagrams = []
        while True:
            try:
                datagrams.append(self.socket.recv(4096).decode("utf-8"))
            except BlockingIOError:
                return datagrams

    def wait_for(self, wanted: Callable[[str], bool], timeout: float) -> list[str]:
        """
        Read (blocking, in the test) until a datagram satisfies C{wanted}.

        @return: every datagram read, the matching one last.
        @raise AssertionError: none did within C{timeout} seconds.
        """
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        self.socket.setblocking(True)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching notification; got {seen!r}")
                self.socket.settimeout(remaining)
                try:
                    datagram = self.socket.recv(4096).decode("utf-8")
                except TimeoutError:
                    continue
                seen.append(datagram)
                if wanted(datagram):
                    return seen
        finally:
            self.socket.setblocking(False)

    def close(self) -> None:
        self.socket.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def fields(datagram: str) -> dict[str, str]:
    """
    The KEY=VALUE lines of one notification.
    """
    return dict(line.split("=", 1) for line in datagram.splitlines())


class Readiness:
    """
    A readiness check the test flips.
    """

    def __init__(self) -> None:
        self.ready = False
        self.calls = 0

    def __call__(self) -> Deferred[bool]:
        self.calls += 1
        return succeed(self.ready)


class AddressTests(SynchronousTestCase):
    """
    L{socket_address}, L{message} and L{watchdog_interval}.
    """

    def test_path(self) -> None:
        self.assertEqual(socket_address("/run/systemd/notify"), "/run/systemd/notify")

    def test_abstract(self) -> None:
        """
        A leading C{@} names an abstract socket: a NUL byte instead.
        """
        self.assertEqual(socket_address("@/org/freedesktop/x"), "\0/org/freedesktop/x")

    def test_not_a_unix_socket(self) -> None:
        for value in ("", "@", "vsock:2:1234", "relative/path"):
            self.assertIsNone(socket_address(value), value)

    def test_message(self) -> None:
        self.assertEqual(
            message(READY="1", STATUS="serving on x"), b"READY=1\nSTATUS=serving on x"
        )

    def test_watchdog_interval_is_half(self) -> None:
        self.assertEqual(watchdog_interval({"WATCHDOG_USEC": "30000000"}, 7), 15.0)

    def test_watchdog_for_this_pid_only(self) -> None:
        environ = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7"}
        self.assertEqual(watchdog_interval(environ, 7), 1.0)
        self.assertIsNone(watchdog_interval(environ, 8))

    def test_no_watchdog(self) -> None:
        for environ in ({}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "soon"}):
            self.assertIsNone(watchdog_interval(environ, 7), environ)


class NotifySocketTests(SynchronousTestCase):
    """
    L{NotifySocket} over real unix datagram sockets.
    """

    def listener(self, abstract: bool = False) -> NotifyListener:
        listener = NotifyListener(abstract)
        self.addCleanup(listener.close)
        return listener

    def test_sends_to_a_path(self) -> None:
        listener = self.listener()
        sender = NotifySocket(listener.env_value)
        self.addCleanup(sender.close)
        self.assertTrue(sender.send(b"READY=1"))
        self.assertEqual(listener.received(), ["READY=1"])

    def test_sends_to_an_abstract_socket(self) -> None:
        listener = self.listener(abstract=True)
        address = socket_address(listener.env_value)
        assert address is not None
        sender = NotifySocket(address)
        self.addCleanup(sender.close)
        self.assertTrue(sender.send(b"WATCHDOG=1"))
        self.assertEqual(listener.received(), ["WATCHDOG=1"])

    def test_missing_socket_never_raises(self) -> None:
        """
        A socket that is gone (or never was) costs a log line, not an
        exception; once it is back, datagrams go through again.
        """
        listener = self.listener()
        path = listener.env_value
        listener.socket.close()
        os.unlink(path)
        sender = NotifySocket(path)
        self.addCleanup(sender.close)
        self.assertFalse(sender.send(b"READY=1"))
        self.assertFalse(sender.send(b"WATCHDOG=1"))
        back = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(back.close)
        back.bind(path)
        self.assertTrue(sender.send(b"WATCHDOG=1"))
        self.assertEqual(back.recv(100), b"WATCHDOG=1")


class SystemdNotifierTests(SynchronousTestCase):
    """
    L{SystemdNotifier} on a L{Clock}, sending to a real socket.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.listener = NotifyListener()
        self.addCleanup(self.listener.close)
        self.readiness = Readiness()

    def notifier(
        self, environ: dict[str, str] | None = None, ready_check: object = None
    ) -> SystemdNotifier:
        notifier = SystemdNotifier(
            self.clock,
            {**self.listener.environ, **(environ or {})},
            ready_check or self.readiness,  # type: ignore[arg-type]
            "serving on 127.0.0.1:8443",
            pid=4242,
            monotonic_usec=lambda: 123456789,
        )
        self.addCleanup(self._stop, notifier)
        return notifier

    @staticmethod
    def _stop(notifier: SystemdNotifier) -> None:
        if notifier.running:
            notifier.stopService()

    def test_ready_only_once_ready(self) -> None:
        """
        C{READY=1} (with the status) goes out the first time the readiness
        check passes, not before, and only once.
        """
        notifier = self.notifier()
        notifier.startService()
        self.clock.pump([READY_POLL_INTERVAL] * 4)
        self.assertEqual(self.listener.received(), [])
        self.assertEqual(self.readiness.calls, 5)
        self.readiness.ready = True
        self.clock.advance(READY_POLL_INTERVAL)
        self.assertEqual(
            self.listener.received(), ["READY=1\nSTATUS=serving on 127.0.0.1:8443"]
        )
        self.assertTrue(notifier.ready)
        calls = self.readiness.calls
        self.clock.pump([READY_POLL_INTERVAL] * 10)
        self.assertEqual(self.listener.received(), [])
        self.assertEqual(self.readiness.calls, calls)

    def test_ready_at_once_when_ready(self) -> None:
        self.readiness.ready = True
        self.notifier().startService()
        self.assertEqual([fields(d)["READY"] for d in self.listener.received()], ["1"])

    def test_failing_check_is_not_ready(self) -> None:
        """
        A readiness check that fails (etcd unreachable) means not ready yet.
        """
        outcomes = [fail(RuntimeError("etcd down")), succeed(True)]
        notifier = self.notifier(ready_check=lambda: outcomes.pop(0))
        notifier.startService()
        self.assertEqual(self.listener.received(), [])
        self.clock.advance(READY_POLL_INTERVAL)
        self.assertEqual(self.listener.received(), ["READY=1\nSTATUS=serving on 127.0.0.1:8443"])

    def test_watchdog_every_half_interval(self) -> None:
        """
        With C{WATCHDOG_USEC=2000000} a ping goes out every second.
        """
        self.notifier({"WATCHDOG_USEC": "2000000"}).startService()
        self.clock.advance(0.99)
        self.assertEqual(self.listener.received(), [])
        self.clock.advance(0.01)
        self.assertEqual(self.listener.received(), ["WATCHDOG=1"])
        self.clock.pump([1.0] * 3)
        self.assertEqual(self.listener.received(), ["WATCHDOG=1"] * 3)

    def test_no_watchdog_for_another_pid(self) -> None:
        self.notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}).startService()
        self.clock.advance(10)
        self.assertEqual(self.listener.received(), [])

    def test_stopping(self) -> None:
        """
        Stopping sends C{STOPPING=1} and ends the pings and the polls.
        """
        notifier = self.notifier({"WATCHDOG_USEC": "2000000"})
        notifier.startService()
        notifier.stopService()
        self.assertEqual(
            self.listener.received(), ["STOPPING=1\nSTATUS=shutting down"]
        )
        calls = self.readiness.calls
        self.readiness.ready = True
        self.clock.advance(10)
        self.assertEqual(self.listener.received(), [])
        self.assertEqual(self.readiness.calls, calls)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_check_finishing_after_stop_sends_nothing(self) -> None:
        pending: Deferred[bool] = Deferred()
        notifier = self.notifier(ready_check=lambda: pending)
        notifier.startService()
        notifier.stopService()
        self.listener.received()
        pending.callback(True)
        self.assertEqual(self.listener.received(), [])

    def test_reload(self) -> None:
        """
        A reload is C{RELOADING=1} with C{MONOTONIC_USEC}, then C{READY=1}.
        """
        self.readiness.ready = True
        notifier = self.notifier()
        notifier.startService()
        self.listener.received()
        notifier.on_reload(False)
        notifier.on_reload(True)
        self.assertEqual(
            self.listener.received(),
            [
                "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=123456789",
                "READY=1\nSTATUS=serving on 127.0.0.1:8443",
            ],
        )

    def test_reload_before_ready_does_not_make_ready(self) -> None:
        notifier = self.notifier()
        notifier.startService()
        notifier.reloading()
        notifier.reloaded()
        self.assertEqual(
            [fields(d).get("READY") for d in self.listener.received()], [None]
        )

    def test_missing_socket_never_raises(self) -> None:
        """
        The socket going away while the server runs breaks nothing.
        """
        self.readiness.ready = True
        notifier = self.notifier({"WATCHDOG_USEC": "2000000"})
        self.listener.close()
        notifier.startService()
        self.clock.advance(5)
        notifier.reloading()
        notifier.reloaded()
        notifier.stopService()
        self.assertTrue(notifier.ready)

    def test_outside_systemd(self) -> None:
        """
        Without C{NOTIFY_SOCKET} nothing is polled, pinged or sent.
        """
        notifier = SystemdNotifier(self.clock, {"WATCHDOG_USEC": "2000000"}, self.readiness)
        notifier.startService()
        self.clock.advance(10)
        self.assertFalse(notifier.enabled)
        self.assertFalse(notifier.notify(READY="1"))
        self.assertEqual(self.readiness.calls, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        notifier.stopService()


class EndpointReadyTests(SynchronousTestCase):
    """
    L{endpoint_ready} runs the C{/readyz} checks.
    """

    def test_passes_and_fails_with_the_checks(self) -> None:
        state = {"ok": False}

        async def check() -> None:
            if not state["ok"]:
                raise RuntimeError("not yet")

        ready = endpoint_ready(HealthEndpoint("readyz", (HealthCheck("x", check),)))
        self.assertFalse(self.successResultOf(ready()))
        state["ok"] = True
        self.assertTrue(self.successResultOf(ready()))


def test_real_twistd_notifies(etcd: EtcdServer, pki: TestPKI) -> None:
    """
    A real C{twistd wardled} with systemd's variables sends C{READY=1} once
    serving, then watchdog pings, C{RELOADING=1} and C{READY=1} around a
    SIGHUP reload, then C{STOPPING=1} on SIGTERM.
    """
    listener = NotifyListener()
    try:
        server = WardledProcess.start(
            etcd.url,
            pki,
            env={**listener.environ, "WATCHDOG_USEC": "2000000"},
        )
        try:
            before_ready = listener.wait_for(lambda d: "READY=1" in d, timeout=20)
            ready = fields(before_ready[-1])
            assert ready["STATUS"] == f"serving on 127.0.0.1:{server.port}"
            assert all("STOPPING" not in d for d in before_ready)
            assert server.https("GET", "/readyz").status == 200
            listener.wait_for(lambda d: d == "WATCHDOG=1", timeout=5)
            os.kill(server.pid, signal.SIGHUP)
            reloading = listener.wait_for(lambda d: "RELOADING=1" in d, timeout=10)[-1]
            assert int(fields(reloading)["MONOTONIC_USEC"]) > 0
            reloaded = listener.wait_for(lambda d: "READY=1" in d, timeout=10)[-1]
            assert fields(reloaded)["STATUS"] == ready["STATUS"]
            server.stop(signal.SIGTERM)
            after = listener.wait_for(lambda d: "STOPPING=1" in d, timeout=10)
            assert all("READY=1" not in d for d in after)
        finally:
            status = server.stop()
        assert status == 0, server.output()
    finally:
        listener.close()
