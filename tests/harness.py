# -*- test-case-name: tests.test_tap -*-
"""
The integration-test harness: a PKI, a real C{twistd wardled} process and
clients that talk to it the way users do (Python's C{http.client}, curl,
kubectl, httpie).

Integration tests share one server per session (see C{tests/conftest.py})
and keep out of each other's way by using their own namespaces and names.
Everything here blocks; it runs in test code, never under a reactor.
"""

from __future__ import annotations

import base64
import email.message
import http.client
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Self

import attrs

from tests.processes import (
    free_port,
    read_log,
    spawn_logged,
    spawn_module,
    stop_process,
    unbuffered_environment,
)
from tests.waiting import wait_for, wait_listening, wait_serving
from wardled import certs

KUBECTL = "/usr/bin/kubectl"
CURL = "curl"
START_TIMEOUT = 20.0
REQUEST_TIMEOUT = 30.0

ADMIN = "admin"
ALICE = "alice"
STRANGER = "stranger"


def venv_bin(name: str) -> str:
    """
    The path of the console script C{name} installed next to the running
    Python (the project's virtualenv).
    """
    return os.path.join(os.path.dirname(sys.executable), name)


@attrs.frozen
class ClientCredentials:
    """
    A client certificate and key on disk.
    """

    cert_file: str
    key_file: str


@attrs.frozen
class TestPKI:
    """
    Certificates for integration tests, written under C{directory}.

    Users (the C{user=} argument of the clients below):
      - C{"admin"}: CN=development, O=system:masters (the reference's
        development user; authorization is skipped for system:masters);
      - C{"alice"}: CN=alice, O=devs;
      - C{"stranger"}: CN=stranger, O=system:masters, signed by another CA
        that the server does not trust (its handshake must fail);
      - C{None}: no client certificate.

    @ivar ca_file: the CA that signs the serving and client certificates
        (give it to C{--client-ca-file} and to clients as the trust root).
    @ivar server_cert_file: serving certificate for 127.0.0.1 and localhost.
    @ivar server_key_file: its key.
    @ivar users: client credentials by user name.
    @ivar kubeconfigs: a kubeconfig per user (and C{"anonymous"}) pointing at
        C{https://127.0.0.1:8443}; L{kubeconfig} writes one for another URL.
    """

    __test__ = False  # not a test class, whatever pytest thinks of its name

    directory: str
    ca_file: str
    ca_key_file: str
    server_cert_file: str
    server_key_file: str
    users: Mapping[str, ClientCredentials]
    kubeconfigs: Mapping[str, str]

    @classmethod
    def create(cls, directory: str) -> TestPKI:
        """
        Make the CA, the serving certificate, the client certificates and
        the kubeconfigs in C{directory}.
        """
        os.makedirs(directory, exist_ok=True)

        def path(name: str) -> str:
            return os.path.join(directory, name)

        ca = certs.make_ca("wardled-test-ca")
        certs.write_key_pair(ca, path("ca.crt"), path("ca.key"))
        serving = certs.make_serving_cert(ca, ["127.0.0.1", "localhost"])
        certs.write_key_pair(serving, path("server.crt"), path("server.key"))
        other_ca = certs.make_ca("unknown-test-ca")
        certs.write_key_pair(other_ca, path("other-ca.crt"), path("other-ca.key"))
        subjects = {
            ADMIN: (ca, "development", ["system:masters"]),
            ALICE: (ca, "alice", ["devs"]),
            STRANGER: (other_ca, "stranger", ["system:masters"]),
        }
        users: dict[str, ClientCredentials] = {}
        for name, (issuer, user, groups) in subjects.items():
            pair = certs.make_client_cert(issuer, user, groups)
            credentials = ClientCredentials(path(f"{name}.crt"), path(f"{name}.key"))
            certs.write_key_pair(pair, credentials.cert_file, credentials.key_file)
            users[name] = credentials
        pki = cls(
            directory=directory,
            ca_file=path("ca.crt"),
            ca_key_file=path("ca.key"),
            server_cert_file=path("server.crt"),
            server_key_file=path("server.key"),
            users=users,
            kubeconfigs={},
        )
        kubeconfigs = {
            name: pki.kubeconfig(name, certs.DEFAULT_SERVER_URL)
            for name in (*users, None)
        }
        return attrs.evolve(
            pki, kubeconfigs={k or "anonymous": v for k, v in kubeconfigs.items()}
        )

    def credentials(self, user: str | None) -> ClientCredentials | None:
        """
        The client certificate of C{user}, or C{None} for C{None}.

        @raise KeyError: unknown user.
        """
        return None if user is None else self.users[user]

    def kubeconfig(self, user: str | None, server_url: str) -> str:
        """
        Write (once) and return a kubeconfig for C{user} against
        C{server_url}.
        """
        label = user or "anonymous"
        port = server_url.rsplit(":", 1)[-1].strip("/")
        path = os.path.join(self.directory, f"kubeconfig-{label}-{port}")
        if os.path.exists(path):
            return path
        credentials = self.credentials(user)
        certs.write_kubeconfig(
            path,
            server_url,
            self.ca_file,
            credentials.cert_file if credentials else None,
            credentials.key_file if credentials else None,
            label,
        )
        return path

    def ssl_context(self, user: str | None) -> ssl.SSLContext:
        """
        A client TLS context trusting the test CA and presenting C{user}'s
        certificate (none for C{None}).
        """
        context = ssl.create_default_context(cafile=self.ca_file)
        credentials = self.credentials(user)
        if credentials is not None:
            context.load_cert_chain(credentials.cert_file, credentials.key_file)
        return context


@attrs.frozen
class Response:
    """
    An HTTP response read whole.

    @ivar status: the status code.
    @ivar headers: the headers (case-insensitive C{.get()}).
    @ivar body: the body bytes.
    """

    status: int
    headers: email.message.Message
    body: bytes

    def json(self) -> Any:
        """
        The body parsed as JSON.
        """
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """
        One header's value, or C{None}.
        """
        return self.headers.get(name)


class Stream:
    """
    A response still being received (a watch): read it line by line.
    """

    def __init__(
        self, connection: http.client.HTTPSConnection, response: http.client.HTTPResponse
    ) -> None:
        self._connection = connection
        self._response = response
        self.status = response.status
        self.headers: email.message.Message = response.headers

    def readline(self, timeout: float = 10.0) -> bytes:
        """
        The next line (with its newline), or C{b""} at the end of the stream.

        @raise TimeoutError: nothing arrived within C{timeout} seconds.
        """
        sock = self._connection.sock
        if sock is not None:
            sock.settimeout(timeout)
        return self._response.readline()

    def read_event(self, timeout: float = 10.0) -> Any:
        """
        The next line parsed as JSON (a watch event), or C{None} at the end.
        """
        line = self.readline(timeout)
        return json.loads(line) if line.strip() else None

    def close(self) -> None:
        """
        Drop the connection (the client going away).
        """
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _encode_body(
    body: bytes | str | Mapping[str, Any] | Sequence[Any] | None,
    headers: dict[str, str],
) -> bytes | None:
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    headers.setdefault("Content-Type", "application/json")
    return json.dumps(body).encode("utf-8")


class WardledProcess:
    """
    A C{twistd -n wardled} subprocess on 127.0.0.1 and clients for it.

    @ivar port: the HTTPS port.
    @ivar url: C{https://127.0.0.1:<port>}.
    @ivar pki: the certificates it was started with.
    @ivar args: the full command line.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        pki: TestPKI,
        args: Sequence[str],
        log_path: str,
        work_dir: str,
    ) -> None:
        self._process = process
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        self.pki = pki
        self.args = tuple(args)
        self._log_path = log_path
        self.work_dir = work_dir
        # Where objects are kept: etcd at etcd_url, or the embedded store.
        self.etcd_url: str | None = None
        self.data_dir: str | None = None

    @property
    def backend(self) -> str:
        """
        C{"etcd"} or C{"embedded"}.
        """
        return "etcd" if self.etcd_url is not None else "embedded"

    def stored(self, key: str) -> dict[str, Any] | None:
        """
        The object stored under C{key}, read straight from the backend (not
        through wardled), with its revision as C{"__mod_revision"}; C{None}
        when there is none.
        """
        if self.etcd_url is not None:
            return _etcd_stored(self.etcd_url, key)
        assert self.data_dir is not None
        return _embedded_stored(self.data_dir, key)

    @classmethod
    def command(
        cls,
        etcd_url: str | None,
        pki: TestPKI,
        port: int,
        extra_args: Sequence[str] = (),
        data_dir: str | None = None,
    ) -> list[str]:
        """
        The command line L{start} runs: storage in etcd at C{etcd_url}, or
        with C{etcd_url} C{None} in the embedded store in C{data_dir}.
        """
        storage = (
            ["--etcd-servers", etcd_url]
            if etcd_url is not None
            else ["--data-dir", data_dir or "wardled-data"]
        )
        return [
            venv_bin("twistd"),
            "-n",
            "--pidfile=",
            "wardled",
            "--secure-port",
            str(port),
            "--bind-address",
            "127.0.0.1",
            *storage,
            "--tls-cert-file",
            pki.server_cert_file,
            "--tls-private-key-file",
            pki.server_key_file,
            "--client-ca-file",
            pki.ca_file,
            *extra_args,
        ]

    @classmethod
    def start(
        cls,
        etcd_url: str | None,
        pki: TestPKI,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        timeout: float = START_TIMEOUT,
        env: Mapping[str, str] | None = None,
    ) -> WardledProcess:
        """
        Start wardled and wait until C{GET /healthz} answers 200.

        @param etcd_url: the C{--etcd-servers} value; C{None} for the
            embedded store (in a C{data} directory of the server's own).
        @param pki: certificates (serving pair and client CA).
        @param extra_args: more flags, e.g. C{["--disable-admission-plugins",
            "BanFlunder"]}; they come last, so they win.
        @param port: the HTTPS port; default a free one.
        @param timeout: seconds to wait for C{/healthz}.
        @param env: extra environment variables.
        @raise RuntimeError: it exited or did not get healthy in time; the
            message holds its output.
        """
        port = free_port() if port is None else port
        work_dir = tempfile.mkdtemp(prefix="wardled-run-")
        data_dir = os.path.join(work_dir, "data")
        args = cls.command(etcd_url, pki, port, extra_args, data_dir)
        log_path = os.path.join(work_dir, "wardled.log")
        environment = unbuffered_environment(env)
        process = spawn_logged(args, log_path, cwd=work_dir, env=environment)
        server = cls(process, port, pki, args, log_path, work_dir)
        server.etcd_url = etcd_url
        server.data_dir = None if etcd_url is not None else data_dir
        try:
            server.wait_healthy(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """
        Block until C{GET /healthz} answers 200.

        @raise RuntimeError: the process exited or the time ran out.
        """
        last_error = "no answer yet"

        def healthy() -> bool:
            nonlocal last_error
            problem = self._not_ok("/healthz")
            if problem is None:
                return True
            last_error = problem
            return False

        wait_serving(
            self._process,
            healthy,
            timeout,
            exited=lambda code: RuntimeError(
                f"wardled exited with {code} before "
                f"answering /healthz; output:\n{self.output()}"
            ),
            timed_out=lambda: RuntimeError(
                f"wardled at {self.url} not healthy after {timeout:g}s "
                f"({last_error}); output:\n{self.output()}"
            ),
        )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """
        Block until C{GET /readyz} answers 200 (storage answers, watch
        caches synced).

        @raise RuntimeError: the time ran out.
        """
        wait_for(
            lambda: self._not_ok("/readyz") is None,
            timeout,
            lambda: RuntimeError(f"wardled at {self.url} not ready after {timeout:g}s"),
        )

    def _not_ok(self, path: str) -> str | None:
        """
        Why C{GET path} does not answer 200 right now; C{None} when it does.
        """
        try:
            response = self.https("GET", path, timeout=2.0)
        except (OSError, http.client.HTTPException) as error:
            return repr(error)
        if response.status == 200:
            return None
        return f"HTTP {response.status}: {response.body!r}"

    @property
    def pid(self) -> int:
        """
        The server's process id.
        """
        return self._process.pid

    @property
    def running(self) -> bool:
        """
        Whether the process is alive.
        """
        return self._process.poll() is None

    def output(self) -> str:
        """
        Everything the server wrote to stdout and stderr so far.
        """
        return read_log(self._log_path, "(no output)")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """
        Send C{sig}, wait up to ten seconds, then SIGKILL;
        idempotent.

        @return: the exit status.
        """
        stop_process(self._process, sig)
        return self._process.returncode

    def _connection(
        self, user: str | None, timeout: float, context: ssl.SSLContext | None = None
    ) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1",
            self.port,
            timeout=timeout,
            context=context or self.pki.ssl_context(user),
        )

    def https(
        self,
        method: str,
        path: str,
        body: bytes | str | Mapping[str, Any] | Sequence[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        user: str | None = ADMIN,
        timeout: float = REQUEST_TIMEOUT,
        context: ssl.SSLContext | None = None,
    ) -> Response:
        """
        One HTTP/1.1 request over a new TLS connection.

        @param method: e.g. C{"GET"}.
        @param path: the path and query, e.g. C{"/apis/wardle.example.com"}.
        @param body: bytes or text as is; anything else is sent as JSON with
            C{Content-Type: application/json} (unless C{headers} set one).
        @param headers: request headers.
        @param user: C{"admin"}, C{"alice"}, C{"stranger"} or C{None} (no
            client certificate).
        @param timeout: socket timeout in seconds.
        @param context: a client TLS context to use instead of C{user}'s
            (e.g. one presenting a front-proxy certificate).
        """
        request_headers = dict(headers or {})
        payload = _encode_body(body, request_headers)
        connection = self._connection(user, timeout, context)
        try:
            connection.request(method, path, body=payload, headers=request_headers)
            response = connection.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            connection.close()

    def stream(
        self,
        path: str,
        user: str | None = ADMIN,
        headers: Mapping[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Stream:
        """
        Start a GET whose body is read as it arrives (a watch); close it
        when done (it is a context manager).
        """
        connection = self._connection(user, timeout)
        connection.request("GET", path, headers=dict(headers or {}))
        return Stream(connection, connection.getresponse())

    def _expand(self, args: Sequence[str]) -> list[str]:
        return [self.url + arg if arg.startswith("/") else arg for arg in args]

    def kubectl(
        self,
        *args: str,
        user: str | None = ADMIN,
        input: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """
        Run C{kubectl --kubeconfig <user's kubeconfig for this server> ARGS}.

        Output is text; the exit status is not checked.
        """
        kubeconfig = self.pki.kubeconfig(user, self.url)
        cache_dir = os.path.join(self.work_dir, "kube-cache")
        command = [KUBECTL, "--kubeconfig", kubeconfig, "--cache-dir", cache_dir]
        return _run([*command, *args], input, timeout)

    def curl(
        self,
        *args: str,
        user: str | None = ADMIN,
        http2: bool | None = None,
        input: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """
        Run C{curl -sS} trusting the test CA with C{user}'s certificate.

        Arguments starting with C{/} are paths on this server (the base URL
        is put in front).  C{http2=True} adds C{--http2}, C{False} adds
        C{--http1.1}; C{None} leaves curl's default (h2 over ALPN).
        """
        command = [CURL, "-sS", "--cacert", self.pki.ca_file]
        credentials = self.pki.credentials(user)
        if credentials is not None:
            command += ["--cert", credentials.cert_file, "--key", credentials.key_file]
        if http2 is not None:
            command.append("--http2" if http2 else "--http1.1")
        return _run([*command, *self._expand(args)], input, timeout)

    def httpie(
        self,
        *args: str,
        user: str | None = ADMIN,
        input: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """
        Run httpie's C{http} (from the project's virtualenv) trusting the
        test CA with C{user}'s certificate; C{/path} arguments are expanded
        as for L{curl}.
        """
        command = [venv_bin("http"), "--verify", self.pki.ca_file]
        if input is None:
            command.append("--ignore-stdin")
        credentials = self.pki.credentials(user)
        if credentials is not None:
            command += ["--cert", credentials.cert_file]
            command += ["--cert-key", credentials.key_file]
        return _run([*command, *self._expand(args)], input, timeout)

    def __repr__(self) -> str:
        return f"<WardledProcess {self.url} pid={self.pid}>"


def _etcd_stored(etcd_url: str, key: str) -> dict[str, Any] | None:
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    request = urllib.request.Request(f"{etcd_url}/v3/kv/range", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        kvs = json.load(response).get("kvs", [])
    if not kvs:
        return None
    stored: dict[str, Any] = json.loads(base64.b64decode(kvs[0]["value"]))
    stored["__mod_revision"] = kvs[0]["mod_revision"]
    return stored


def _embedded_stored(data_dir: str, key: str) -> dict[str, Any] | None:
    database = os.path.join(data_dir, "wardled.db")
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        row = connection.execute(
            "SELECT value, deleted, revision FROM log WHERE key = ? "
            "ORDER BY revision DESC LIMIT 1",
            (key.encode(),),
        ).fetchone()
    finally:
        connection.close()
    if row is None or row[1]:
        return None
    stored: dict[str, Any] = json.loads(row[0])
    stored["__mod_revision"] = str(row[2])
    return stored


def _run(
    command: Sequence[str], input_text: str | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        input=input_text,
        stdin=subprocess.DEVNULL if input_text is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def lines(text: str) -> list[str]:
    """
    The non-empty lines of C{text}.
    """
    return [line for line in text.splitlines() if line.strip()]


def next_event(stream: Stream, timeout: float = 10.0) -> Any:
    """
    The next watch event on C{stream}, skipping keep-alive blank lines;
    None at the end of the stream.

    @raise AssertionError: no event within C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        line = stream.readline(max(deadline - time.monotonic(), 0.1))
        if not line:
            return None
        if line.strip():
            return json.loads(line)
        assert time.monotonic() < deadline, "no watch event in time"


def iter_events(stream: Stream, count: int, timeout: float = 10.0) -> Iterator[Any]:
    """
    Read C{count} watch events from C{stream}.
    """
    for _ in range(count):
        event = stream.read_event(timeout)
        if event is None:
            return
        yield event


class WhoAmIServer:
    """
    A C{tests.tlsserver} subprocess: HTTPS through L{wardled.tls} answering
    every C{GET} with the caller's certificate identity and HTTP version.
    """

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, log_path: str
    ) -> None:
        self._process = process
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        self._log_path = log_path

    @classmethod
    def start(
        cls,
        cert_file: str | None,
        key_file: str | None,
        client_ca_file: str | None,
        cert_dir: str | None = None,
        http2: bool = True,
        timeout: float = START_TIMEOUT,
    ) -> WhoAmIServer:
        """
        Start it on a free port and wait until it accepts connections.

        @param cert_file: serving certificate; C{None} makes (or reuses) a
            self-signed pair in C{cert_dir}.
        @param key_file: its key.
        @param client_ca_file: CA for client certificates, or C{None}.
        @param cert_dir: where the self-signed pair lives; also where the
            output log is written.
        @param http2: offer h2 over ALPN.
        """
        port = free_port()
        work_dir = cert_dir or tempfile.mkdtemp(prefix="wardled-tls-")
        os.makedirs(work_dir, exist_ok=True)
        args = ["--port", str(port), "--cert-dir", work_dir]
        for flag, value in (
            ("--cert", cert_file),
            ("--key", key_file),
            ("--client-ca", client_ca_file),
        ):
            if value is not None:
                args += [flag, value]
        if not http2:
            args.append("--no-http2")
        log_path = os.path.join(work_dir, f"tlsserver-{port}.log")
        process = spawn_module("tests.tlsserver", args, log_path)
        server = cls(process, port, log_path)
        try:
            server._wait_listening(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_listening(self, timeout: float) -> None:
        wait_listening(
            "127.0.0.1",
            self.port,
            self._process,
            timeout,
            exited=lambda code: RuntimeError(
                f"tlsserver exited with {code}; output:\n{self.output()}"
            ),
            timed_out=lambda: RuntimeError(
                f"tlsserver not listening; output:\n{self.output()}"
            ),
        )

    def output(self) -> str:
        """
        What the server logged so far.
        """
        return read_log(self._log_path, "(no output)")

    def stop(self) -> None:
        """
        Terminate it and wait; idempotent.
        """
        stop_process(self._process)

    def curl(
        self,
        *args: str,
        ca_file: str,
        credentials: ClientCredentials | None = None,
        http2: bool | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """
        Run C{curl -sS --cacert CA [--cert --key] [--http2|--http1.1] URL}
        where C{/path} arguments get this server's URL in front.
        """
        command = [CURL, "-sS", "--cacert", ca_file]
        if credentials is not None:
            command += ["--cert", credentials.cert_file, "--key", credentials.key_file]
        if http2 is not None:
            command.append("--http2" if http2 else "--http1.1")
        expanded = [self.url + a if a.startswith("/") else a for a in args]
        return _run([*command, *expanded], None, 60.0)
