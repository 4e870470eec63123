# -*- test-case-name: tests.test_storage_etcd -*-
"""
A real etcd for tests: start one on free loopback ports, wait until it is
healthy, stop it and remove its data.

Tests of the etcd storage driver (and anything above it that wants a real
store) run against Debian's C{/usr/bin/etcd} rather than a fake, so the
gateway's JSON shapes, compaction and restarts are etcd's own. Everything here
blocks; call it from test set-up (C{setUpClass}), never from reactor code.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request

import attrs

# stop_process is imported from here by tests written before tests.processes.
from tests.processes import free_ports, read_log, spawn_logged, stop_process
from tests.waiting import wait_serving

ETCD_PATH = "/usr/bin/etcd"
READY_TIMEOUT = 15.0
SHM = "/dev/shm"


class EtcdNotInstalled(RuntimeError):
    """
    No etcd binary was found.
    """


class EtcdStartError(RuntimeError):
    """
    etcd exited or did not become healthy in time; the message holds its log.
    """


def etcd_binary() -> str:
    """
    Find the etcd server binary.

    @return: the path of C{/usr/bin/etcd}, or of C{etcd} on C{PATH}.
    @raise EtcdNotInstalled: neither exists.
    """
    if os.access(ETCD_PATH, os.X_OK):
        return ETCD_PATH
    found = shutil.which("etcd")
    if found is None:
        raise EtcdNotInstalled(
            f"etcd is not installed: no executable {ETCD_PATH} and no etcd on "
            "PATH (Debian: apt-get install etcd-server)"
        )
    return found


def etcd_environment() -> dict[str, str]:
    """
    The current environment without C{ETCD_*} variables, which etcd would
    read as flags.
    """
    return {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("ETCD_")
    }


@attrs.frozen
class EtcdTLS:
    """
    PEM files for an etcd that serves HTTPS and requires client certificates.

    @ivar ca_file: the CA that signed the serving certificate and that client
        certificates must chain to.
    @ivar cert_file: etcd's serving certificate (valid for 127.0.0.1).
    @ivar key_file: its private key.
    @ivar client_cert_file: a client certificate (used by the health probe).
    @ivar client_key_file: its private key.
    """

    ca_file: str
    cert_file: str
    key_file: str
    client_cert_file: str
    client_key_file: str

    def flags(self) -> list[str]:
        return [
            f"--cert-file={self.cert_file}",
            f"--key-file={self.key_file}",
            f"--trusted-ca-file={self.ca_file}",
            "--client-cert-auth",
        ]

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        context.load_cert_chain(self.client_cert_file, self.client_key_file)
        return context


def is_healthy(url: str, tls: EtcdTLS | None = None) -> bool:
    """
    Whether C{GET url/health} answers C{"health": "true"} right now.
    """
    context = None if tls is None else tls.context()
    try:
        with urllib.request.urlopen(
            url + "/health", timeout=1.0, context=context
        ) as response:
            body = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("health") == "true"


class EtcdServer:
    """
    One running single-member etcd listening only on 127.0.0.1.

    @ivar url: the client URL, e.g. C{"http://127.0.0.1:23791"} (C{https}
        when started with L{EtcdTLS}).
    @ivar client_port: the client (and JSON gateway) port.
    @ivar peer_port: the raft peer port.
    @ivar data_dir: etcd's data directory (removed by L{stop}).
    """

    def __init__(
        self,
        base_dir: str,
        client_port: int,
        peer_port: int,
        tls: EtcdTLS | None = None,
    ) -> None:
        self._base_dir = base_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.tls = tls
        scheme = "http" if tls is None else "https"
        self.url = f"{scheme}://127.0.0.1:{client_port}"
        self.data_dir = os.path.join(base_dir, "data")
        self._log_path = os.path.join(base_dir, "etcd.log")
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls, base_dir: str | None = None, *, tls: EtcdTLS | None = None
    ) -> EtcdServer:
        """
        Start etcd on free ports with a fresh data directory and wait until
        it is healthy.

        @param base_dir: where to create the temporary directory holding the
            data directory and the log; default C{/dev/shm} (no fsync cost)
            when available, else the system temporary directory.
        @param tls: serve HTTPS with these files and require client
            certificates.
        @raise EtcdNotInstalled: there is no etcd.
        @raise EtcdStartError: etcd did not become healthy within
            L{READY_TIMEOUT} seconds.
        """
        binary = etcd_binary()
        if base_dir is None and os.access(SHM, os.W_OK):
            base_dir = SHM
        own_dir = tempfile.mkdtemp(prefix="wardled-etcd-", dir=base_dir)
        client_port, peer_port = free_ports(2)
        server = cls(own_dir, client_port, peer_port, tls)
        try:
            server._launch(binary)
        except BaseException:
            server.stop()
            raise
        return server

    def _command(self, binary: str) -> list[str]:
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        return [
            binary,
            "--name=wardled-test",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=wardled-test={peer_url}",
            "--logger=zap",
            "--log-outputs=stderr",
            "--log-level=warn",
            "--experimental-watch-progress-notify-interval=1s",
            *([] if self.tls is None else self.tls.flags()),
        ]

    def _launch(self, binary: str) -> None:
        """
        Run etcd and block until it is healthy.
        """
        self._process = spawn_logged(
            self._command(binary),
            self._log_path,
            env=etcd_environment(),
            append=True,
            kill_at_exit=False,
        )
        wait_serving(
            self._process,
            lambda: is_healthy(self.url, self.tls),
            READY_TIMEOUT,
            exited=lambda code: EtcdStartError(
                f"etcd exited with {code} before "
                f"becoming healthy at {self.url}; log:\n{self.log()}"
            ),
            timed_out=lambda: EtcdStartError(
                f"etcd at {self.url} not healthy after {READY_TIMEOUT:g}s; "
                f"log:\n{self.log()}"
            ),
        )

    def log(self) -> str:
        """
        Everything etcd has logged so far (its stderr).
        """
        return read_log(self._log_path, "(no log)")

    @property
    def running(self) -> bool:
        """
        Whether the etcd process is alive.
        """
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """
        The process id of the etcd started last (to signal it from outside,
        as an operator would).

        @raise RuntimeError: it was stopped or killed through this object.
        """
        if self._process is None:
            raise RuntimeError(f"etcd at {self.url} was stopped")
        return self._process.pid

    def _end(self, sig: int) -> None:
        """
        Send C{sig} to etcd (if it runs) and reap it.
        """
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, sig)

    def kill(self) -> None:
        """
        SIGKILL etcd (a crash); the data directory stays for L{restart}.
        """
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """
        Stop etcd if it runs and start it again on the same ports with the
        same data; block until it is healthy.
        """
        self._end(signal.SIGTERM)
        self._launch(etcd_binary())

    def stop(self) -> None:
        """
        Terminate etcd, wait for it and remove its directory; idempotent.
        """
        self._end(signal.SIGTERM)
        shutil.rmtree(self._base_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<EtcdServer {self.url} data_dir={self.data_dir!r}>"


class SharedEtcdMixin:
    """
    For trial TestCases: one real etcd shared by every test of the class,
    started on first use, restarted if a test left it stopped, stopped after
    the class (and at exit, whatever happens).
    """

    timeout = 60
    etcd: EtcdServer | None = None

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.etcd is not None:
            cls.etcd.stop()
            cls.etcd = None

    def shared_etcd(self) -> EtcdServer:
        cls = type(self)
        if cls.etcd is None:
            cls.etcd = EtcdServer.start()
            atexit.register(cls.etcd.stop)
        if not cls.etcd.running:
            cls.etcd.restart()
        return cls.etcd
