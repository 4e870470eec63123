# -*- test-case-name: tests.test_sdnotify -*-
"""
Telling systemd how the server is doing (C{Type=notify} units), without
libsystemd.

systemd gives a C{Type=notify} service the path of a datagram socket in
C{$NOTIFY_SOCKET}; the service sends it newline-separated C{KEY=VALUE}
lines (the C{sd_notify} protocol): C{READY=1} when it is serving (so
C{systemctl start} returns, and units ordered after it start, only then),
C{WATCHDOG=1} at least every C{$WATCHDOG_USEC} microseconds (or systemd
restarts it as hung), C{RELOADING=1} and C{READY=1} around a reload, and
C{STOPPING=1} when it begins to shut down.

L{NotifySocket} sends those datagrams: non-blocking, and never raising: a
missing or full socket only costs a log line.  L{SystemdNotifier} is the
service that decides when to send what: C{READY=1} once the server listens
I{and} its C{/readyz} checks pass, the watchdog pings from the reactor (so
a blocked reactor stops them), C{STOPPING=1} when it stops.  Outside
systemd (no C{$NOTIFY_SOCKET}) it does nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from wardled.api.health import HealthEndpoint, run_endpoint

# A readiness check: fires with whether the server is ready (it may also
# fail, which counts as not ready).
ReadyCheck = Callable[[], "Deferred[bool]"]

READY_POLL_INTERVAL = 0.5

log = Logger()


def socket_address(value: str) -> str | None:
    """
    The C{AF_UNIX} address of a C{$NOTIFY_SOCKET} value: a path, or an
    abstract socket when it starts with C{@} (the C{@} becomes a NUL byte).

    @return: C{None} for a value that names no unix socket (empty, or
        another kind such as C{vsock:}, which wardled does not speak).
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def message(**fields: str) -> bytes:
    """
    One notification: C{KEY=VALUE} lines (C{message(READY="1")}).
    """
    return "\n".join(f"{key}={value}" for key, value in fields.items()).encode("utf-8")


class NotifySocket:
    """
    Sends notifications to one C{$NOTIFY_SOCKET}.

    A datagram that cannot be sent (the socket is gone, systemd is not
    reading, the address is not a unix socket) is dropped and logged, once
    per kind of failure: the server must never fail because systemd cannot
    hear it.
    """

    def __init__(self, address: str) -> None:
        """
        @param address: an C{AF_UNIX} address (see L{socket_address}).
        """
        self.address = address
        self._socket: socket.socket | None = None
        self._last_error: int | None = None

    def send(self, datagram: bytes) -> bool:
        """
        Send one datagram without blocking.

        @return: whether it was sent.
        """
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(datagram, self.address)
        except OSError as error:
            self._failed(error)
            return False
        self._last_error = None
        return True

    def _failed(self, error: OSError) -> None:
        if error.errno != self._last_error:
            log.warn(  # noqa: G010 - twisted.logger has no warning()
                "cannot notify systemd at {address}: {reason}",
                address=self.address.replace("\0", "@"),
                reason=error.strerror or str(error),
            )
        self._last_error = error.errno
        self.close()

    def close(self) -> None:
        """
        Close the socket (the next L{send} opens a new one).
        """
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def notify_socket(environ: Mapping[str, str]) -> NotifySocket | None:
    """
    The notification socket systemd gave this process, if any.
    """
    address = socket_address(environ.get("NOTIFY_SOCKET", ""))
    return None if address is None else NotifySocket(address)


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """
    How often to ping the watchdog: half of C{$WATCHDOG_USEC}, when it is
    set and C{$WATCHDOG_PID} is unset or this process.

    @return: seconds, or C{None} for no watchdog.
    """
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    if watchdog_pid and watchdog_pid != str(pid):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


def endpoint_ready(endpoint: HealthEndpoint) -> ReadyCheck:
    """
    A readiness check that runs C{endpoint}'s checks as a plain
    C{GET /readyz} does: ready when it would answer 200.
    """

    def check() -> Deferred[bool]:
        return run_endpoint(endpoint, None, False, ()).addCallback(
            lambda answer: answer[0] == 200
        )

    return check


def _monotonic_usec() -> int:
    return time.monotonic_ns() // 1000


class SystemdNotifier(Service):
    """
    Tells systemd when the server is ready, that it is alive, when it
    reloads and when it stops.

    Start it after the listener: it then polls C{ready_check} every
    L{READY_POLL_INTERVAL} seconds and sends C{READY=1} (with C{STATUS=})
    the first time it passes.  Outside systemd every method does nothing.

    @ivar ready: whether C{READY=1} was sent.
    """

    def __init__(
        self,
        clock: IReactorTime,
        environ: Mapping[str, str],
        ready_check: ReadyCheck,
        status: str = "serving",
        pid: int | None = None,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
    ) -> None:
        """
        @param clock: runs the readiness polls and watchdog pings.
        @param environ: the process environment (C{NOTIFY_SOCKET},
            C{WATCHDOG_USEC}, C{WATCHDOG_PID}).
        @param ready_check: whether the server is ready (C{/readyz}).
        @param status: the C{STATUS=} text sent with C{READY=1}, e.g.
            C{serving on 0.0.0.0:8443}.
        @param pid: this process's id (for C{WATCHDOG_PID}); default the
            real one.
        @param monotonic_usec: C{CLOCK_MONOTONIC} in microseconds (sent with
            C{RELOADING=1}).
        """
        self.clock = clock
        self.ready_check = ready_check
        self.status = status
        self.ready = False
        self._socket = notify_socket(environ)
        self._monotonic_usec = monotonic_usec
        self._watchdog_interval = watchdog_interval(
            environ, os.getpid() if pid is None else pid
        )
        self._poll: LoopingCall | None = None
        self._watchdog: LoopingCall | None = None
        self._checking = False

    @property
    def enabled(self) -> bool:
        """
        Whether systemd is listening (C{$NOTIFY_SOCKET} was set).
        """
        return self._socket is not None

    def notify(self, **fields: str) -> bool:
        """
        Send C{fields} (C{notify(READY="1", STATUS="...")}).

        @return: whether it was sent.
        """
        if self._socket is None:
            return False
        return self._socket.send(message(**fields))

    # -- life cycle ---------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if self._socket is None:
            return
        if self._watchdog_interval is not None:
            self._watchdog = self._loop(self._ping, self._watchdog_interval, now=False)
        if not self.ready:
            self._poll = self._loop(self._poll_ready, READY_POLL_INTERVAL, now=True)

    def stopService(self) -> None:
        """
        Send C{STOPPING=1}; stop polling and pinging (systemd stops
        watching a unit once it is stopping).
        """
        super().stopService()
        self._stop_loops()
        self.notify(STOPPING="1", STATUS="shutting down")

    def _loop(self, function: Callable[[], object], interval: float, now: bool) -> LoopingCall:
        loop = LoopingCall(function)
        loop.clock = self.clock
        loop.start(interval, now=now).addErrback(self._loop_failed)
        return loop

    def _loop_failed(self, failure: Failure) -> None:
        log.failure("systemd notification loop failed", failure)

    def _stop_loops(self) -> None:
        for loop in (self._poll, self._watchdog):
            if loop is not None and loop.running:
                loop.stop()
        self._poll = self._watchdog = None

    # -- readiness ----------------------------------------------------------

    def _poll_ready(self) -> None:
        """
        Run the readiness check unless one is still running.
        """
        if self.ready or self._checking:
            return
        self._checking = True
        checked = maybeDeferred(self.ready_check)
        checked.addErrback(lambda failure: False)
        checked.addCallback(self._checked)

    def _checked(self, passed: bool) -> None:
        self._checking = False
        if passed and self.running and not self.ready:
            self.ready = True
            if self._poll is not None and self._poll.running:
                self._poll.stop()
            self._poll = None
            self.notify(READY="1", STATUS=self.status)

    def _ping(self) -> None:
        self.notify(WATCHDOG="1")

    # -- reloads (SIGHUP) ---------------------------------------------------

    def reloading(self) -> None:
        """
        A reload starts: C{RELOADING=1} (with C{MONOTONIC_USEC=}, as
        systemd asks).
        """
        self.notify(
            RELOADING="1",
            STATUS="reloading",
            MONOTONIC_USEC=str(self._monotonic_usec()),
        )

    def reloaded(self) -> None:
        """
        A reload ended: C{READY=1} again, if the server was ready before
        (a reload during start-up does not make it ready).
        """
        if self.ready:
            self.notify(READY="1", STATUS=self.status)

    def on_reload(self, done: bool) -> None:
        """
        L{reloading} (C{done} false) or L{reloaded} (C{done} true): the
        shape of L{wardled.reload.ReloadService}'s C{on_reload} hook.
        """
        if done:
            self.reloaded()
        else:
            self.reloading()
