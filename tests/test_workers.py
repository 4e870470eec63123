# -*- test-case-name: tests.test_workers -*-
"""
Tests for L{wardled.workers}: C{--workers N}, N processes serving one port
with C{SO_REUSEPORT}, the parent supervising the others.

Unit tests drive the supervisor with a clock that also "spawns" processes;
the integration tests run a real C{twistd wardled --workers 2} on a real
etcd and look at the processes and their sockets in C{/proc}.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import pytest
from twisted.internet.error import (
    CannotListenError,
    ProcessExitedAlready,
    ProcessTerminated,
)
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from tests.etcdserver import EtcdServer
from tests.harness import TestPKI, WardledProcess, free_port
from wardled import tap, workers
from wardled.config import WardledConfig

ETCD = "http://127.0.0.1:2379"
V1A = "/apis/wardle.example.com/v1alpha1"
RELOAD_LINE = "SIGHUP: reloading certificates, CA bundles and policy"


# -- the command line -------------------------------------------------------


def _options(*arguments: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(arguments))
    return options


class OptionTests(SynchronousTestCase):
    """
    C{--workers} on the command line.
    """

    def test_default_one(self) -> None:
        self.assertEqual(_options("--etcd-servers", ETCD).config.workers, 1)
        self.assertEqual(_options().config.workers, 1)

    def test_workers_with_etcd(self) -> None:
        options = _options("--etcd-servers", ETCD, "--workers", "3")
        self.assertEqual(options.config.workers, 3)
        self.assertEqual(options.arguments, ("--etcd-servers", ETCD, "--workers", "3"))

    def test_not_a_count(self) -> None:
        for value in ("0", "-2", "two", ""):
            error = self.assertRaises(
                SystemExit, _options, "--etcd-servers", ETCD, "--workers", value
            )
            self.assertEqual(
                error.code,
                f"wardled: error: invalid --workers {value!r}: "
                "want a whole number of processes >= 1",
            )

    def test_embedded_store_is_single_process(self) -> None:
        error = self.assertRaises(SystemExit, _options, "--workers", "2")
        self.assertEqual(
            error.code,
            "wardled: error: --workers > 1 needs --etcd-servers "
            "(the embedded store is single-process)",
        )
        self.assertEqual(_options("--workers", "1").config.workers, 1)


class TwistdCommandTests(SynchronousTestCase):
    """
    A worker is started with this twistd's command line.
    """

    def test_from_real_twistd_options(self) -> None:
        argv = [
            "/venv/bin/twistd", "-n", "--logfile=/var/log/w.log", "--pidfile=w.pid",
            "wardled", "--etcd-servers", ETCD, "--workers", "2",
        ]
        twistd = ServerOptions()
        twistd.parseOptions(argv[1:])
        command = workers.TwistdCommand.from_options(twistd.subOptions, argv)
        self.assertEqual(command.subcommand, "wardled")
        self.assertEqual(
            command.twistd_arguments, ("-n", "--logfile=/var/log/w.log", "--pidfile=w.pid")
        )
        self.assertEqual(
            command.for_worker(1)[3:],
            [
                "-n", "--logfile=/var/log/w.log", "--pidfile=w.pid",
                "--nodaemon", "--pidfile=", "--logfile=/var/log/w.log.worker-1",
                "wardled", "--etcd-servers", ETCD, "--workers", "2",
            ],
        )
        self.assertEqual(command.for_worker(1)[:3], [sys.executable, "-c", workers.TWISTD_MAIN])
        # The worker's own twistd accepts that command line, with the last
        # --pidfile and --logfile winning.
        again = ServerOptions()
        again.parseOptions(command.for_worker(2)[3:])
        self.assertEqual(again["pidfile"], "")
        self.assertEqual(again["logfile"], "/var/log/w.log.worker-2")
        self.assertEqual(again.subOptions.config.workers, 2)

    def test_standard_output_is_shared(self) -> None:
        command = workers.TwistdCommand.split(
            ["twistd", "--logfile=-", "wardled"], "wardled", (), "-", "python", "/srv"
        )
        self.assertEqual(
            command.for_worker(1),
            ["python", "-c", workers.TWISTD_MAIN, "--logfile=-", "--nodaemon",
             "--pidfile=", "wardled"],
        )
        self.assertEqual(command.cwd, "/srv")

    def test_unknown_argv(self) -> None:
        """
        When C{argv} is not twistd's options, the subcommand and the plugin's
        arguments, the worker gets only the plugin's arguments.
        """
        command = workers.TwistdCommand.split(
            ["pytest", "-q"], "wardled", ("--workers", "2"), None, "python", "/"
        )
        self.assertEqual(command.twistd_arguments, ())
        self.assertEqual(
            command.for_worker(1)[3:], ["--nodaemon", "--pidfile=", "wardled", "--workers", "2"]
        )


class EnvironmentTests(SynchronousTestCase):
    """
    Workers know they are workers from their environment, and get none of
    systemd's variables.
    """

    def test_worker_environment(self) -> None:
        environ = {
            "PATH": "/bin", "NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "1",
            "WATCHDOG_PID": "7", "LISTEN_FDS": "1", "LISTEN_PID": "7",
            "LISTEN_FDNAMES": "x",
        }
        environment = workers.worker_environment(environ, 3, 1234)
        self.assertEqual(
            environment,
            {"PATH": "/bin", "WARDLED_WORKER": "3", "WARDLED_WORKER_PARENT": "1234"},
        )
        self.assertEqual(workers.worker_index(environment), 3)
        self.assertEqual(workers.parent_pid(environment), 1234)

    def test_parent(self) -> None:
        for environ in (
            {},
            {"WARDLED_WORKER": "2"},
            {"WARDLED_WORKER": "2", "WARDLED_WORKER_PARENT": "x"},
            {"WARDLED_WORKER": "2", "WARDLED_WORKER_PARENT": "1"},
        ):
            self.assertEqual(workers.worker_index(environ), 0, environ)
            self.assertIsNone(workers.parent_pid(environ))
        self.assertEqual(
            workers.worker_index({"WARDLED_WORKER": "x", "WARDLED_WORKER_PARENT": "9"}), 0
        )

    def test_services_in_the_parent(self) -> None:
        command = workers.TwistdCommand.split(["twistd", "wardled"], "wardled", (), None, "py", "/")
        config = WardledConfig(etcd_servers=(ETCD,), workers=3, shutdown_delay_duration=4.0)
        [supervisor] = workers.worker_services(config, Clock(), command, {"HOME": "/root"})
        assert isinstance(supervisor, workers.WorkerSupervisor)
        self.assertEqual(supervisor.count, 3)
        self.assertEqual(supervisor.grace, 4.0 + 30.0 + workers.STOP_MARGIN)
        self.assertEqual(supervisor.command(2)[-1], "wardled")
        self.assertEqual(supervisor.environment(2)["WARDLED_WORKER_PARENT"], str(os.getpid()))
        self.assertEqual(workers.worker_services(WardledConfig(), Clock(), command, {}), [])


# -- the shared port --------------------------------------------------------


class AdoptingReactor:
    """
    Adopts listening sockets the way a real reactor does: it keeps a
    duplicate of the descriptor it is given.
    """

    def __init__(self) -> None:
        self.adopted: list[tuple[socket.socket, int, Any]] = []

    def adoptStreamPort(self, fileno: int, family: int, factory: Any) -> socket.socket:
        kept = socket.socket(fileno=os.dup(fileno))
        self.adopted.append((kept, family, factory))
        return kept

    def close(self) -> None:
        for kept, _, _ in self.adopted:
            kept.close()


class ReusePortEndpointTests(SynchronousTestCase):
    """
    Tests for L{workers.ReusePortEndpoint}.
    """

    def setUp(self) -> None:
        self.reactor = AdoptingReactor()
        self.addCleanup(self.reactor.close)
        self.factory = Factory.forProtocol(Protocol)

    def test_processes_share_the_port(self) -> None:
        port = free_port()
        first = workers.ReusePortEndpoint(self.reactor, port, "127.0.0.1")
        second = workers.ReusePortEndpoint(self.reactor, port, "127.0.0.1")
        self.successResultOf(first.listen(self.factory))
        self.successResultOf(second.listen(self.factory))
        self.assertEqual(
            [(family, factory) for _, family, factory in self.reactor.adopted],
            [(socket.AF_INET, self.factory)] * 2,
        )
        kept = self.reactor.adopted[0][0]
        self.assertEqual(kept.getsockname(), ("127.0.0.1", port))
        self.assertTrue(kept.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))
        self.assertFalse(os.get_blocking(kept.fileno()))
        # A connection reaches one of them.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass

    def test_port_of_another_server(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            endpoint = workers.ReusePortEndpoint(self.reactor, port, "127.0.0.1")
            failure = self.failureResultOf(endpoint.listen(self.factory), CannotListenError)
        self.assertEqual(failure.value.port, port)
        self.assertEqual(failure.value.socketError.strerror, "Address already in use")
        self.assertEqual(self.reactor.adopted, [])

    def test_ipv6(self) -> None:
        endpoint = workers.ReusePortEndpoint(self.reactor, 0, "::1")
        self.successResultOf(endpoint.listen(self.factory))
        self.assertEqual(self.reactor.adopted[0][1], socket.AF_INET6)

    def test_parent_probe_refuses_a_shared_port(self) -> None:
        """
        A worker's start-up check binds with C{SO_REUSEPORT} beside its
        parent; the parent's does not, so it refuses a port another
        wardled with workers holds.
        """
        port = free_port()
        self.successResultOf(
            workers.ReusePortEndpoint(self.reactor, port, "127.0.0.1").listen(self.factory)
        )
        config = WardledConfig(secure_port=port, bind_address="127.0.0.1", workers=2)
        tap.check_can_listen(config, reuse_port=True)
        error = self.assertRaises(SystemExit, tap.check_can_listen, config)
        self.assertEqual(
            error.code, f"wardled: error: cannot listen on 127.0.0.1:{port}: Address already in use"
        )


# -- the supervisor ---------------------------------------------------------


@attrs.define
class FakeProcess:
    """
    The parent's side of a worker process: the signals sent to it.
    """

    pid: int
    signals: list[str] = attrs.Factory(list)
    stdin_closed: bool = False
    exited: bool = False

    def signalProcess(self, name: str) -> None:
        if self.exited:
            raise ProcessExitedAlready()
        self.signals.append(name)

    def closeStdin(self) -> None:
        self.stdin_closed = True


@attrs.frozen
class Spawned:
    protocol: ProcessProtocol
    executable: str
    args: Sequence[str]
    env: Mapping[str, str]
    path: str | None
    child_fds: Mapping[int, Any]
    process: FakeProcess

    def end(self, exit_code: int | None = None, signal_number: int | None = 9) -> None:
        self.process.exited = True
        self.protocol.processEnded(Failure(ProcessTerminated(exit_code, signal_number)))


class ProcessClock(Clock):
    """
    A clock that also starts (fake) processes, runs C{callWhenRunning} and
    C{callFromThread} calls at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[Spawned] = []
        self.refuse: OSError | None = None

    def spawnProcess(
        self,
        protocol: ProcessProtocol,
        executable: str,
        args: Sequence[str],
        env: Mapping[str, str],
        path: str | None,
        childFDs: Mapping[int, Any],
    ) -> FakeProcess:
        if self.refuse is not None:
            raise self.refuse
        process = FakeProcess(1000 + len(self.spawned))
        protocol.makeConnection(process)
        self.spawned.append(Spawned(protocol, executable, args, env, path, childFDs, process))
        return process

    def callWhenRunning(self, function: Callable[..., object], *args: object) -> None:
        function(*args)

    def callFromThread(self, function: Callable[..., object], *args: object) -> None:
        function(*args)


class SupervisorTests(SynchronousTestCase):
    """
    Tests for L{workers.WorkerSupervisor}.
    """

    def setUp(self) -> None:
        self.clock = ProcessClock()
        self.supervisor = workers.WorkerSupervisor(
            self.clock,
            3,
            lambda index: ["python", "-c", "twistd", f"worker-{index}"],
            lambda index: {"WARDLED_WORKER": str(index)},
            "/srv",
            grace=40.0,
            handle_sighup=False,
        )
        self.addCleanup(self._stop)

    def _stop(self) -> None:
        if self.supervisor.running:
            self.supervisor.stopService()
            for each in self.clock.spawned:
                if not each.process.exited:
                    each.end(0, None)

    def test_starts_the_others(self) -> None:
        self.supervisor.startService()
        self.assertEqual(
            [(s.executable, list(s.args), dict(s.env), s.path) for s in self.clock.spawned],
            [
                ("python", ["python", "-c", "twistd", "worker-1"], {"WARDLED_WORKER": "1"}, "/srv"),
                ("python", ["python", "-c", "twistd", "worker-2"], {"WARDLED_WORKER": "2"}, "/srv"),
            ],
        )
        first = self.clock.spawned[0]
        self.assertEqual(dict(first.child_fds), {0: "w", 1: 1, 2: 2})
        self.assertTrue(first.process.stdin_closed)
        self.assertEqual(sorted(self.supervisor.workers), [1, 2])

    def test_restarts_with_back_off(self) -> None:
        self.supervisor.startService()
        self.clock.spawned[0].end()
        self.assertEqual(sorted(self.supervisor.workers), [2])
        self.clock.advance(workers.FIRST_RESTART_DELAY - 0.1)
        self.assertEqual(len(self.clock.spawned), 2)
        self.clock.advance(0.1)
        self.assertEqual(self.clock.spawned[2].args[-1], "worker-1")
        # Dying again at once: twice as long.
        self.clock.spawned[2].end(1, None)
        self.clock.advance(2 * workers.FIRST_RESTART_DELAY - 0.1)
        self.assertEqual(len(self.clock.spawned), 3)
        self.clock.advance(0.1)
        self.assertEqual(len(self.clock.spawned), 4)
        # After running a while, the back-off starts again.
        self.clock.advance(workers.STABLE_AFTER)
        self.clock.spawned[3].end()
        self.clock.advance(workers.FIRST_RESTART_DELAY)
        self.assertEqual(len(self.clock.spawned), 5)
        self.assertEqual(sorted(self.supervisor.workers), [1, 2])

    def test_back_off_has_a_ceiling(self) -> None:
        self.supervisor.startService()
        for _ in range(8):
            self.clock.spawned[-1].end()
            self.clock.advance(workers.MAX_RESTART_DELAY)
        self.assertEqual(len(self.clock.spawned), 2 + 8)

    def test_start_failure_is_retried(self) -> None:
        self.clock.refuse = OSError(24, "Too many open files")
        self.supervisor.startService()
        self.assertEqual(self.supervisor.workers, {})
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        self.clock.refuse = None
        self.clock.advance(workers.FIRST_RESTART_DELAY)
        self.assertEqual(sorted(self.supervisor.workers), [1, 2])

    def test_forwards_signals(self) -> None:
        self.supervisor.startService()
        self.clock.spawned[1].process.exited = True  # ended, not yet reaped
        self.supervisor.signal_workers("HUP")
        self.assertEqual([s.process.signals for s in self.clock.spawned], [["HUP"], []])

    def test_stop_waits_for_the_workers(self) -> None:
        self.supervisor.startService()
        stopped = self.supervisor.stopService()
        self.assertEqual([s.process.signals for s in self.clock.spawned], [["TERM"], ["TERM"]])
        self.clock.spawned[0].end(0, None)
        self.assertNoResult(stopped)
        self.clock.advance(60)
        self.assertEqual(len(self.clock.spawned), 2, "a stopping worker is not restarted")
        self.clock.spawned[1].end(0, None)
        self.assertIsNone(self.successResultOf(stopped))

    def test_stop_kills_after_grace(self) -> None:
        self.supervisor.startService()
        stopped = self.supervisor.stopService()
        self.clock.advance(39.9)
        self.assertEqual(self.clock.spawned[0].process.signals, ["TERM"])
        self.clock.advance(0.1)
        self.assertEqual(self.clock.spawned[0].process.signals, ["TERM", "KILL"])
        self.clock.spawned[0].end()
        self.assertNoResult(stopped)
        # One that never ends is given up on.
        self.clock.advance(workers.STOP_MARGIN)
        self.successResultOf(stopped)

    def test_stop_cancels_restarts(self) -> None:
        self.supervisor.startService()
        self.clock.spawned[0].end()
        stopped = self.supervisor.stopService()
        self.clock.spawned[1].end(0, None)
        self.successResultOf(stopped)
        self.clock.advance(60)
        self.assertEqual(len(self.clock.spawned), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_without_workers(self) -> None:
        self.supervisor.count = 1
        self.supervisor.startService()
        self.assertEqual(self.clock.spawned, [])
        self.successResultOf(self.supervisor.stopService())


# -- a worker ---------------------------------------------------------------


class ParentWatchTests(SynchronousTestCase):
    """
    Tests for L{workers.ParentWatch}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.parent = [77]
        self.orphaned: list[bool] = []
        self.watch = workers.ParentWatch(
            self.clock, 77, lambda: self.orphaned.append(True), lambda: self.parent[0]
        )

    def test_parent_gone(self) -> None:
        self.watch.startService()
        self.clock.advance(5)
        self.assertEqual(self.orphaned, [])
        self.parent[0] = 1  # re-parented to init
        self.clock.advance(workers.PARENT_POLL_INTERVAL)
        self.assertEqual(self.orphaned, [True])
        self.clock.advance(5)
        self.assertEqual(self.orphaned, [True])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_gone_before_start(self) -> None:
        self.parent[0] = 1
        self.watch.startService()
        self.assertEqual(self.orphaned, [True])

    def test_stop(self) -> None:
        self.watch.startService()
        self.watch.stopService()
        self.parent[0] = 1
        self.clock.advance(5)
        self.assertEqual(self.orphaned, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


_PDEATHSIG = """
import ctypes, signal
from wardled.workers import set_parent_death_signal
assert set_parent_death_signal(signal.SIGTERM)
value = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0)  # PR_GET_PDEATHSIG
print(value.value)
"""


def test_parent_death_signal() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PDEATHSIG], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(int(signal.SIGTERM))


# -- a real twistd wardled --workers 2 --------------------------------------


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def children_of(pid: int) -> list[int]:
    """
    The processes whose parent is C{pid} (zombies included).
    """
    return [
        int(name)
        for name in os.listdir("/proc")
        if name.isdigit() and _parent_of(int(name)) == pid
    ]


def alive(pid: int) -> bool:
    """
    Whether C{pid} runs (a zombie does not).
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def socket_inodes(pid: int) -> set[int]:
    """
    The inodes of the sockets C{pid} holds.
    """
    inodes = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def tcp_inodes(port: int, state: str) -> set[int]:
    """
    The inodes of the TCP sockets whose local port is C{port}, in C{state}
    (C{0A} listening, C{01} established), from C{/proc/net/tcp}.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    inodes.add(int(fields[9]))
    return inodes


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def the_worker(server: WardledProcess, timeout: float = 15.0) -> int:
    """
    The pid of C{server}'s one worker, once it listens on the port and
    every process answers C{/readyz} (twenty new connections in a row).
    """

    def listening_worker() -> int | None:
        listeners = tcp_inodes(server.port, "0A")
        for pid in children_of(server.pid):
            if alive(pid) and socket_inodes(pid) & listeners:
                return pid
        return None

    pid: int = wait_for(listening_worker, timeout, f"a worker listening\n{server.output()}")

    def all_ready() -> bool:
        try:
            return all(
                server.https("GET", "/readyz", timeout=5).status == 200 for _ in range(20)
            )
        except (OSError, http.client.HTTPException):
            return False

    wait_for(all_ready, timeout, "every process ready")
    return pid


@pytest.fixture(scope="module")
def two_workers(etcd: EtcdServer, pki: TestPKI) -> Iterator[WardledProcess]:
    server = WardledProcess.start(etcd.url, pki, ["--workers", "2"])
    try:
        yield server
    finally:
        server.stop()


def _flunder(name: str, reference: str) -> dict[str, Any]:
    return {
        "apiVersion": "wardle.example.com/v1alpha1",
        "kind": "Flunder",
        "metadata": {"name": name},
        "spec": {"reference": reference},
    }


def test_connections_spread_over_both(two_workers: WardledProcess) -> None:
    server = two_workers
    worker = the_worker(server)
    connections = []
    try:
        for _ in range(40):
            connection = http.client.HTTPSConnection(
                "127.0.0.1", server.port, timeout=10, context=server.pki.ssl_context("admin")
            )
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            assert response.status == 200
            response.read()
            connections.append(connection)
        established = tcp_inodes(server.port, "01")
        served = {
            pid: len(socket_inodes(pid) & established) for pid in (server.pid, worker)
        }
    finally:
        for connection in connections:
            connection.close()
    assert served[server.pid] > 0 and served[worker] > 0, served
    assert sum(served.values()) >= 40, served


def test_writes_visible_on_every_connection(two_workers: WardledProcess) -> None:
    """
    A write through one connection is seen by the next reads, whichever
    process (and watch cache) they reach.
    """
    server = two_workers
    the_worker(server)
    namespace = f"test-{uuid.uuid4().hex[:10]}"
    collection = f"{V1A}/namespaces/{namespace}/flunders"
    created = server.https("POST", collection, _flunder("one", "first"))
    assert created.status == 201, created.body
    for _ in range(20):
        got = server.https("GET", f"{collection}/one")
        assert got.status == 200, got.body
        assert got.json()["spec"]["reference"] == "first"
    changed = dict(created.json(), spec={"reference": "second"})
    updated = server.https("PUT", f"{collection}/one", changed)
    assert updated.status == 200, updated.body
    version = updated.json()["metadata"]["resourceVersion"]
    for _ in range(20):
        listed = server.https("GET", collection)
        assert listed.status == 200, listed.body
        [item] = listed.json()["items"]
        assert item["metadata"]["resourceVersion"] == version
        assert item["spec"]["reference"] == "second"


def test_sighup_reaches_every_process(two_workers: WardledProcess) -> None:
    server = two_workers
    the_worker(server)
    before = server.output().count(RELOAD_LINE)
    os.kill(server.pid, signal.SIGHUP)
    wait_for(
        lambda: server.output().count(RELOAD_LINE) == before + 2,
        10,
        f"both processes reloading\n{server.output()}",
    )


def test_killed_worker_is_restarted(two_workers: WardledProcess) -> None:
    server = two_workers
    worker = the_worker(server)
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: not alive(worker), 5, "the worker to die")
    replacement = the_worker(server)
    assert replacement != worker
    assert "worker 1 ended unexpectedly (signal 9); restarting it in 1 s" in server.output()
    assert server.running


def test_sigterm_stops_every_process(etcd: EtcdServer, pki: TestPKI) -> None:
    server = WardledProcess.start(etcd.url, pki, ["--workers", "2"])
    try:
        worker = the_worker(server)
        assert server.stop(signal.SIGTERM) == 0, server.output()
        assert not alive(worker), server.output()
        assert "worker 1 stopped (exit status 0)" in server.output()
    finally:
        server.stop()


def test_workers_stop_when_the_parent_dies(etcd: EtcdServer, pki: TestPKI) -> None:
    server = WardledProcess.start(etcd.url, pki, ["--workers", "2"])
    try:
        worker = the_worker(server)
        server.stop(signal.SIGKILL)
        wait_for(lambda: not alive(worker), 10, f"the orphaned worker to exit\n{server.output()}")
    finally:
        server.stop()


def _run_twistd(arguments: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(arguments), capture_output=True, text=True, timeout=60, check=False, **kwargs
    )


def test_embedded_store_refused(pki: TestPKI, tmp_path: Any) -> None:
    command = WardledProcess.command(None, pki, free_port(), ["--workers", "2"])
    result = _run_twistd(command, cwd=str(tmp_path))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "wardled: error: --workers > 1 needs --etcd-servers "
        "(the embedded store is single-process)"
    )


_ACTIVATE = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="wardled.socket")
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_socket_activation_refused(etcd: EtcdServer, pki: TestPKI, tmp_path: Any) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        command = WardledProcess.command(etcd.url, pki, free_port(), ["--workers", "2"])
        result = _run_twistd(
            [sys.executable, "-c", _ACTIVATE, str(listening.fileno()), *command],
            pass_fds=(listening.fileno(),),
            cwd=str(tmp_path),
        )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "wardled: error: --workers > 1 cannot be used with socket activation "
        "(systemd passes its socket to one process)"
    )


def test_one_process_by_default(etcd_wardled: WardledProcess) -> None:
    assert [pid for pid in children_of(etcd_wardled.pid) if alive(pid)] == []
