# -*- test-case-name: tests.test_workers -*-
"""
Using more than one core: C{--workers N}.

One Twisted reactor runs on one core, and TLS, JSON and the filters are
CPU work, so one wardled process saturates one core.  With C{--workers N}
the twistd process (the I{parent}, worker 0) serves as usual and also
starts N-1 copies of itself (I{workers} 1..N-1, same command line): every
process binds the same port with C{SO_REUSEPORT} (L{ReusePortEndpoint}),
and the kernel spreads new connections across them.  Every process builds
the whole server, so each has its own etcd watches and watch caches; reads
stay consistent because each read checks etcd's current revision.  That is
why C{--workers} needs etcd: the embedded store is one process's.

The parent supervises (L{WorkerSupervisor}): a worker that dies is started
again after a back-off; SIGTERM and SIGINT to the parent stop the workers
(SIGTERM, then SIGKILL after the drain's deadline) before the parent exits;
SIGHUP to the parent is passed on, so every process reloads.  Only the
parent talks to systemd (the workers get no C{NOTIFY_SOCKET}).  A worker
stops when its parent dies (L{ParentWatch}, and C{PR_SET_PDEATHSIG} on
Linux).

A worker knows it is one from its environment: C{WARDLED_WORKER} (its
number) and C{WARDLED_WORKER_PARENT} (the parent's pid).
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any

import attrs
from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import (
    CannotListenError,
    ProcessExitedAlready,
    ReactorNotRunning,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProcessTransport,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from wardled.config import WardledConfig
from wardled.shutdown import DRAIN_TIMEOUT

log = Logger()

WORKER_ENV = "WARDLED_WORKER"
PARENT_ENV = "WARDLED_WORKER_PARENT"
# What systemd gives the main process only: a worker must neither notify
# (NotifyAccess=main would refuse it anyway) nor think it was socket-activated.
SYSTEMD_ENV = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
)
# twistd's entry point, run with C{python -c} (C{python -m twisted} is
# C{twist}, not C{twistd}).
TWISTD_MAIN = "from twisted.scripts.twistd import run; run()"

LISTEN_BACKLOG = 50  # Twisted's default for TCP ports
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
# A worker that ran this long before dying is restarted after
# FIRST_RESTART_DELAY again (the back-off is for workers that die at once).
STABLE_AFTER = 10.0
PARENT_POLL_INTERVAL = 1.0
# After the drain's deadline, how long a stopping worker has before SIGKILL,
# and how long after SIGKILL the parent stops waiting for it.
STOP_MARGIN = 5.0

SOCKET_ACTIVATION_ERROR = (
    "--workers > 1 cannot be used with socket activation "
    "(systemd passes its socket to one process)"
)
EMBEDDED_STORE_ERROR = (
    "--workers > 1 needs --etcd-servers (the embedded store is single-process)"
)

PR_SET_PDEATHSIG = 1


# -- the command line -------------------------------------------------------


def parse_workers(value: str) -> int:
    """
    Parse C{--workers}: how many processes serve (1: only this one).

    @raise usage.UsageError: not a whole number of at least 1.
    """
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise usage.UsageError(
            f"invalid --workers {value!r}: want a whole number of processes >= 1"
        )
    return count


def check_workers(config: WardledConfig) -> None:
    """
    Check that C{config}'s storage can be shared by several processes.

    @raise usage.UsageError: C{--workers} > 1 on the embedded store.
    """
    if config.workers > 1 and not config.etcd_servers:
        raise usage.UsageError(EMBEDDED_STORE_ERROR)


def worker_index(environ: Mapping[str, str]) -> int:
    """
    This process's worker number: 0 for the parent (or without
    C{--workers}), 1..N-1 for a worker the parent started.
    """
    if parent_pid(environ) is None:
        return 0
    try:
        return max(int(environ.get(WORKER_ENV, "")), 0)
    except ValueError:
        return 0


def parent_pid(environ: Mapping[str, str]) -> int | None:
    """
    The pid of the parent that started this worker, or C{None} in the
    parent.
    """
    try:
        pid = int(environ.get(PARENT_ENV, ""))
    except ValueError:
        return None
    return pid if pid > 1 else None


@attrs.frozen
class TwistdCommand:
    """
    How this twistd was started, split so that a worker can be started the
    same way.

    @ivar executable: the Python interpreter.
    @ivar twistd_arguments: twistd's own options (before the subcommand).
    @ivar subcommand: the plugin's name (C{wardled}).
    @ivar plugin_arguments: the plugin's options, exactly as given.
    @ivar logfile: twistd's C{--logfile}, if any.
    @ivar cwd: the directory twistd was started in (relative paths in the
        options are relative to it).
    """

    executable: str
    twistd_arguments: tuple[str, ...]
    subcommand: str
    plugin_arguments: tuple[str, ...]
    logfile: str | None
    cwd: str

    @classmethod
    def split(
        cls,
        argv: Sequence[str],
        subcommand: str,
        plugin_arguments: Sequence[str],
        logfile: str | None = None,
        executable: str = sys.executable,
        cwd: str | None = None,
    ) -> TwistdCommand:
        """
        Split twistd's C{argv} (C{sys.argv}) at C{subcommand}, knowing the
        arguments the plugin was given (twistd stops reading its own
        options at the first word that is not one, the subcommand).

        When C{argv} does not end with them (twistd run some other way),
        the worker gets no twistd options but its own.
        """
        plugin = tuple(plugin_arguments)
        head = list(argv[1 : len(argv) - len(plugin)])
        ends_with_plugin = tuple(argv[len(argv) - len(plugin) :]) == plugin
        if not (ends_with_plugin and head and head[-1] == subcommand):
            head = [subcommand]
        return cls(
            executable,
            tuple(head[:-1]),
            subcommand,
            plugin,
            logfile,
            os.getcwd() if cwd is None else cwd,
        )

    @classmethod
    def from_options(
        cls, options: Any, argv: Sequence[str] | None = None
    ) -> TwistdCommand:
        """
        How this twistd was started, from the plugin's parsed options: their
        C{arguments} (as given) and their C{parent} (twistd's options: the
        subcommand's name and C{--logfile}), and C{sys.argv}.
        """
        twistd = getattr(options, "parent", None)
        subcommand = getattr(twistd, "subCommand", None) or "wardled"
        logfile = twistd.get("logfile") if twistd is not None else None
        return cls.split(
            sys.argv if argv is None else argv,
            subcommand,
            getattr(options, "arguments", ()),
            logfile,
        )

    def for_worker(self, index: int) -> list[str]:
        """
        The command line of worker C{index}: in the foreground, without a
        pid file, and logging to standard output (shared with the parent)
        or, when the parent logs to a file, to C{<logfile>.worker-<index>}.
        """
        logging = []
        if self.logfile and self.logfile != "-":
            logging = [f"--logfile={self.logfile}.worker-{index}"]
        return [
            self.executable,
            "-c",
            TWISTD_MAIN,
            *self.twistd_arguments,
            "--nodaemon",
            "--pidfile=",
            *logging,
            self.subcommand,
            *self.plugin_arguments,
        ]


def worker_environment(
    environ: Mapping[str, str], index: int, parent: int
) -> dict[str, str]:
    """
    The environment of worker C{index}: this one without systemd's
    variables, with the worker markers.
    """
    environment = {
        name: value for name, value in environ.items() if name not in SYSTEMD_ENV
    }
    environment[WORKER_ENV] = str(index)
    environment[PARENT_ENV] = str(parent)
    return environment


# -- the shared port --------------------------------------------------------


def reuse_port_socket(
    interface: str, port: int, backlog: int = LISTEN_BACKLOG
) -> socket.socket:
    """
    A non-blocking TCP socket listening on C{interface}:C{port} with
    C{SO_REUSEADDR} (as Twisted's ports) and C{SO_REUSEPORT}: other
    processes of the same user may listen on the same port the same way.

    @raise OSError: it cannot be bound.
    """
    version = ipaddress.ip_address(interface).version
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((interface, port))
        listener.listen(backlog)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """
    A TCP server endpoint whose port other processes can share
    (C{SO_REUSEPORT}): the socket is made here and adopted by the reactor
    (C{IReactorSocket.adoptStreamPort}), since Twisted's TCP ports cannot
    set the option before binding.
    """

    def __init__(
        self, reactor: Any, port: int, interface: str, backlog: int = LISTEN_BACKLOG
    ) -> None:
        """
        @param reactor: provides C{IReactorSocket}.
        @param port: the TCP port.
        @param interface: the IPv4 or IPv6 address to bind.
        @param backlog: the listen queue length.
        """
        self.reactor = reactor
        self.port = port
        self.interface = interface
        self.backlog = backlog

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """
        Listen now; the result has already fired.

        @return: fires with the port, or fails with L{CannotListenError}.
        """
        try:
            listener = reuse_port_socket(self.interface, self.port, self.backlog)
        except OSError as error:
            return fail(CannotListenError(self.interface, self.port, error))
        try:
            listening: IListeningPort = self.reactor.adoptStreamPort(
                listener.fileno(), listener.family, protocolFactory
            )
        finally:
            listener.close()  # the reactor holds its own duplicate
        return succeed(listening)


# -- the parent -------------------------------------------------------------


class _WorkerProtocol(ProcessProtocol):
    """
    One worker process, as the parent sees it: nothing to say to it
    (standard input is closed at once), told when it ends.
    """

    def __init__(self, supervisor: WorkerSupervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.closeStdin()

    def processEnded(self, reason: Failure) -> None:
        self.supervisor.worker_ended(self.index, reason)


@attrs.define
class _Worker:
    """
    A running worker: its process and when it started.
    """

    transport: IProcessTransport
    started: float


def describe_exit(reason: Failure) -> str:
    """
    How a process ended, in words (C{exit status 1}, C{signal 9}).
    """
    status = getattr(reason.value, "exitCode", None)
    number = getattr(reason.value, "signal", None)
    if number is not None:
        return f"signal {number}"
    return f"exit status {status}"


class WorkerSupervisor(Service):
    """
    Runs workers 1..N-1 beside this process (worker 0) and keeps them
    running: starts them once the reactor runs, restarts one that ends
    while serving (after L{FIRST_RESTART_DELAY}, doubling up to
    L{MAX_RESTART_DELAY} while it keeps dying within L{STABLE_AFTER}
    seconds), passes SIGHUP on, and on stop sends SIGTERM and waits for
    them (SIGKILL after C{grace} seconds).

    Put it under the server's L{wardled.shutdown.GracefulShutdown} after
    the listener: it is then stopped at the start of the drain, so the
    workers drain while this process does.

    @ivar workers: the running workers by number.
    """

    def __init__(
        self,
        reactor: Any,
        count: int,
        command: Callable[[int], Sequence[str]],
        environment: Callable[[int], Mapping[str, str]],
        cwd: str | None = None,
        grace: float = DRAIN_TIMEOUT + STOP_MARGIN,
        handle_sighup: bool = True,
    ) -> None:
        """
        @param reactor: provides C{IReactorProcess}, C{IReactorTime},
            C{callWhenRunning} and C{callFromThread}.
        @param count: how many processes serve in all (this one included).
        @param command: the command line of worker C{i}.
        @param environment: the environment of worker C{i}.
        @param cwd: the workers' working directory (default this one's).
        @param grace: how long stopping workers have before SIGKILL.
        @param handle_sighup: pass SIGHUP on to the workers (off in unit
            tests, which must not touch signal handlers).
        """
        self.reactor = reactor
        self.count = count
        self.command = command
        self.environment = environment
        self.cwd = cwd
        self.grace = grace
        self.handle_sighup = handle_sighup
        self.workers: dict[int, _Worker] = {}
        self._failures: dict[int, int] = {}
        self._restarts: dict[int, IDelayedCall] = {}
        self._stopped: Deferred[None] | None = None
        self._stop_calls: list[IDelayedCall] = []
        self._previous_sighup: Any = None

    # -- starting -----------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if self.handle_sighup:
            self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup)
        self.reactor.callWhenRunning(self._start_all)

    def _start_all(self) -> None:
        for index in range(1, self.count):
            self.start_worker(index)

    def start_worker(self, index: int) -> None:
        """
        Start worker C{index} (if still serving); a failure to start is
        retried like a worker that died.
        """
        self._restarts.pop(index, None)
        if not self.running or index in self.workers:
            return
        command = list(self.command(index))
        try:
            transport = self.reactor.spawnProcess(
                _WorkerProtocol(self, index),
                command[0],
                command,
                env=dict(self.environment(index)),
                path=self.cwd,
                childFDs={0: "w", 1: 1, 2: 2},
            )
        except OSError as error:
            log.error("cannot start worker {index}: {error}", index=index, error=error)
            self._schedule_restart(index)
            return
        self.workers[index] = _Worker(transport, self.reactor.seconds())
        log.info("started worker {index} (pid {pid})", index=index, pid=transport.pid)

    # -- ending -------------------------------------------------------------

    def worker_ended(self, index: int, reason: Failure) -> None:
        """
        Worker C{index} ended: restart it, unless stopping.
        """
        worker = self.workers.pop(index, None)
        if self._stopped is not None:
            log.info(
                "worker {index} stopped ({how})", index=index, how=describe_exit(reason)
            )
            if not self.workers:
                self._all_stopped()
            return
        if not self.running:
            return
        ran = None if worker is None else self.reactor.seconds() - worker.started
        if ran is not None and ran >= STABLE_AFTER:
            self._failures[index] = 0
        delay = self._schedule_restart(index)
        log.warn(  # noqa: G010 - twisted.logger has no warning()
            "worker {index} ended unexpectedly ({how}); restarting it in {delay:g} s",
            index=index,
            how=describe_exit(reason),
            delay=delay,
        )

    def _schedule_restart(self, index: int) -> float:
        failures = self._failures.get(index, 0)
        self._failures[index] = failures + 1
        delay = min(FIRST_RESTART_DELAY * 2**failures, MAX_RESTART_DELAY)
        self._restarts[index] = self.reactor.callLater(delay, self.start_worker, index)
        return delay

    # -- signals ------------------------------------------------------------

    def signal_workers(self, name: str) -> None:
        """
        Send signal C{name} (C{"TERM"}, C{"HUP"}, C{"KILL"}) to every
        running worker.
        """
        for worker in list(self.workers.values()):
            try:
                worker.transport.signalProcess(name)
            except ProcessExitedAlready:
                pass

    def _sighup(self, number: int, frame: FrameType | None) -> None:
        previous = self._previous_sighup
        if callable(previous):
            previous(number, frame)
        self.reactor.callFromThread(self.signal_workers, "HUP")

    # -- stopping -----------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        """
        Stop the workers: SIGTERM now, SIGKILL after C{grace} seconds.

        @return: fires once every worker ended (or did not end within
            L{STOP_MARGIN} seconds of SIGKILL).
        """
        super().stopService()
        if self.handle_sighup and self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        for call in self._restarts.values():
            call.cancel()
        self._restarts.clear()
        self._stopped = Deferred()
        if not self.workers:
            self._all_stopped()
            return self._stopped
        log.info("stopping {count} worker processes", count=len(self.workers))
        self.signal_workers("TERM")
        kill = self.reactor.callLater(self.grace, self._kill_remaining)
        self._stop_calls.append(kill)
        return self._stopped

    def _kill_remaining(self) -> None:
        log.warn(  # noqa: G010 - twisted.logger has no warning()
            "{count} workers still running after {grace:g} s; killing them",
            count=len(self.workers),
            grace=self.grace,
        )
        self.signal_workers("KILL")
        self._stop_calls.append(self.reactor.callLater(STOP_MARGIN, self._all_stopped))

    def _all_stopped(self) -> None:
        for call in self._stop_calls:
            if call.active():
                call.cancel()
        self._stop_calls.clear()
        if self._stopped is not None and not self._stopped.called:
            self._stopped.callback(None)


# -- a worker ---------------------------------------------------------------


def set_parent_death_signal(number: int) -> bool:
    """
    Ask Linux to send this process signal C{number} when its parent dies
    (C{prctl(PR_SET_PDEATHSIG)}).

    @return: whether it was set (not on other systems).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, number, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class ParentWatch(Service):
    """
    In a worker: stop the server when the parent is gone (this process
    was re-parented), checked every L{PARENT_POLL_INTERVAL} seconds.
    """

    def __init__(
        self,
        clock: IReactorTime,
        parent: int,
        orphaned: Callable[[], None],
        getppid: Callable[[], int] = os.getppid,
        interval: float = PARENT_POLL_INTERVAL,
    ) -> None:
        """
        @param clock: runs the checks.
        @param parent: the parent's pid.
        @param orphaned: called once, when the parent is gone (stops the
            reactor).
        @param getppid: this process's parent pid now.
        """
        self.clock = clock
        self.parent_pid = parent
        self.orphaned = orphaned
        self.getppid = getppid
        self.interval = interval
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        loop = LoopingCall(self.check)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.interval, now=True)

    def check(self) -> None:
        """
        Stop the server if the parent is gone.
        """
        if self.getppid() == self.parent_pid:
            return
        log.info(
            "the parent process (pid {pid}) is gone; stopping", pid=self.parent_pid
        )
        self._stop_loop()
        self.orphaned()

    def stopService(self) -> None:
        super().stopService()
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None


def _stop_reactor(reactor: Any) -> Callable[[], None]:
    def stop() -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    return stop


def worker_services(
    config: WardledConfig,
    reactor: Any,
    command: TwistdCommand,
    environ: Mapping[str, str] = os.environ,
    grace: float = DRAIN_TIMEOUT,
) -> list[IService]:
    """
    What C{--workers} adds to the server: in the parent a
    L{WorkerSupervisor}, in a worker a L{ParentWatch} (and the parent-death
    signal), else nothing.

    @param command: how this twistd was started.
    @param grace: the drain's deadline after the listener stops; the
        workers get C{--shutdown-delay-duration} plus this plus
        L{STOP_MARGIN} before SIGKILL.
    """
    parent = parent_pid(environ)
    if parent is not None:
        log.info(
            "worker {index} of {count} (pid {pid}; parent pid {parent})",
            index=worker_index(environ),
            count=config.workers,
            pid=os.getpid(),
            parent=parent,
        )
        set_parent_death_signal(signal.SIGTERM)
        return [ParentWatch(reactor, parent, _stop_reactor(reactor))]
    if config.workers <= 1:
        return []
    me = os.getpid()
    return [
        WorkerSupervisor(
            reactor,
            config.workers,
            command.for_worker,
            lambda index: worker_environment(environ, index, me),
            command.cwd,
            config.shutdown_delay_duration + grace + STOP_MARGIN,
        )
    ]


__all__ = [
    "EMBEDDED_STORE_ERROR",
    "SOCKET_ACTIVATION_ERROR",
    "ParentWatch",
    "ReusePortEndpoint",
    "TwistdCommand",
    "WorkerSupervisor",
    "check_workers",
    "parent_pid",
    "parse_workers",
    "reuse_port_socket",
    "set_parent_death_signal",
    "worker_environment",
    "worker_index",
    "worker_services",
]
