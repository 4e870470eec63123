# -*- test-case-name: tests.test_bench_smoke -*-
"""
The servers the benchmark suite measures, started once for the whole run:
one etcd, a test PKI, wardled on that etcd and wardled on its embedded
store, plus short-lived extra wardleds (C{--workers N}) and the bare Klein
TLS hello-world (L{bench._hello}) for the baselines.

Everything listens on 127.0.0.1 only and is stopped, and its files
removed, when the context manager exits, whatever happened.  The etcd and
wardled processes are the test harness's (L{tests.etcdserver},
L{tests.harness}): the suite measures what the tests run.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import attrs

from bench._hello import CONTENT_TYPE, HELLO_PATH
from bench._http import Endpoint, TlsFiles
from bench._proc import pid_running
from bench._targets import etcd_call, flunder, flunders_path, prefix_end
from tests.etcdserver import EtcdServer
from tests.harness import ADMIN, TestPKI, WardledProcess

WARMUP_NAMESPACE = "bench-warmup"
ETCD_TXN_OPS = 128  # etcd's default --max-txn-ops
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELLO_START_TIMEOUT = 30.0
HELLO_STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def endpoint_of(url: str, tls: TlsFiles | None) -> Endpoint:
    """
    The L{Endpoint} of C{scheme://host:port}.
    """
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return Endpoint(host, int(port), tls)


@attrs.frozen
class StoredTemplate:
    """
    How wardled stores a Flunder in etcd, to write more of them directly.

    @ivar key: the etcd key of the warm-up Flunder.
    @ivar value: its stored bytes (also what the raw etcd baseline puts).
    """

    key: bytes
    value: bytes

    def key_for(self, namespace: str, name: str) -> bytes:
        """
        The key wardled would store C{namespace}/C{name} under.
        """
        collection = self.key.rsplit(b"/", 2)[0]
        return collection + f"/{namespace}/{name}".encode()

    def value_for(self, namespace: str, name: str) -> bytes:
        """
        The stored bytes of a Flunder like the template, renamed.
        """
        stored: dict[str, Any] = json.loads(self.value)
        metadata = stored["metadata"]
        metadata.update(name=name, namespace=namespace, uid=str(uuid.uuid4()))
        return json.dumps(stored, separators=(",", ":")).encode()


def etcd_put_many(url: str, items: Sequence[tuple[bytes, bytes]]) -> None:
    """
    Put C{(key, value)} pairs straight into etcd, a transaction of
    L{ETCD_TXN_OPS} puts at a time (set-up only, never timed).
    """
    for start in range(0, len(items), ETCD_TXN_OPS):
        batch = items[start : start + ETCD_TXN_OPS]
        success = [
            {"request_put": {"key": _b64(key), "value": _b64(value)}}
            for key, value in batch
        ]
        etcd_call(url, "/v3/kv/txn", {"success": success})


def etcd_range(url: str, prefix: bytes, keys_only: bool = False) -> list[Any]:
    """
    Every key-value under C{prefix} (set-up only).
    """
    body = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
    if keys_only:
        body["keys_only"] = True  # type: ignore[assignment]
    kvs: list[Any] = etcd_call(url, "/v3/kv/range", body).get("kvs") or []
    return kvs


@attrs.frozen
class SuiteServers:
    """
    What the suite runs against.

    @ivar etcd: the etcd server (wardled's store and the raw baseline).
    @ivar etcd_pid: its process id.
    @ivar pki: certificates; clients authenticate as the admin user.
    @ivar tls: the admin's client certificate files.
    @ivar wardled: wardled on C{etcd}.
    @ivar embedded: wardled on its embedded store, or C{None}.
    @ivar template: how wardled stores a Flunder.
    @ivar work_dir: scratch files (removed at the end).
    """

    etcd: EtcdServer
    etcd_pid: int
    pki: TestPKI
    tls: TlsFiles
    wardled: WardledProcess
    embedded: WardledProcess | None
    template: StoredTemplate
    work_dir: str

    def endpoint(self, server: WardledProcess) -> Endpoint:
        """
        How a client reaches C{server} (TLS with the admin certificate).
        """
        return endpoint_of(server.url, self.tls)

    @property
    def etcd_endpoint(self) -> Endpoint:
        """
        etcd's client port (plain HTTP, as wardled reaches it).
        """
        return endpoint_of(self.etcd.url, None)

    def own_pids(self) -> tuple[int, ...]:
        """
        The long-lived servers (never "other" load).
        """
        pids = [self.etcd_pid, self.wardled.pid]
        if self.embedded is not None:
            pids.append(self.embedded.pid)
        return tuple(pids)


def _warm_up(wardled: WardledProcess, etcd_url: str) -> StoredTemplate:
    """
    Create one Flunder through wardled; return how it was stored.
    """
    response = wardled.https("POST", flunders_path(WARMUP_NAMESPACE), flunder(0))
    if response.status != 201:
        raise RuntimeError(f"warm-up create: HTTP {response.status} {response.body!r}")
    for kv in etcd_range(etcd_url, b"/"):
        key = base64.b64decode(kv["key"])
        if f"/{WARMUP_NAMESPACE}/".encode() in key:
            return StoredTemplate(key, base64.b64decode(kv["value"]))
    raise RuntimeError("the warm-up Flunder is not in etcd")


def start_wardled(
    etcd_url: str | None, pki: TestPKI, args: Sequence[str]
) -> WardledProcess:
    """
    Start wardled (on etcd at C{etcd_url}, or embedded when C{None}) and
    wait until it is ready.
    """
    server = WardledProcess.start(etcd_url, pki, args)
    try:
        server.wait_ready()
    except BaseException:
        stop_wardled(server)
        raise
    return server


def stop_wardled(server: WardledProcess) -> None:
    """
    Stop C{server} and remove its files.
    """
    server.stop()
    shutil.rmtree(server.work_dir, ignore_errors=True)


@contextmanager
def running_suite_servers(
    wardled_args: Sequence[str], embedded: bool
) -> Iterator[SuiteServers]:
    """
    Start etcd, a PKI, wardled on etcd and (when C{embedded}) wardled on
    its embedded store; stop them all and remove their files on exit.
    """
    work_dir = tempfile.mkdtemp(prefix="wardled-suite-")
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work_dir, True)
        etcd = EtcdServer.start()
        cleanup.callback(etcd.stop)
        pki = TestPKI.create(os.path.join(work_dir, "pki"))
        wardled = start_wardled(etcd.url, pki, wardled_args)
        cleanup.callback(stop_wardled, wardled)
        other = None
        if embedded:
            other = start_wardled(None, pki, wardled_args)
            cleanup.callback(stop_wardled, other)
        admin = pki.users[ADMIN]
        yield SuiteServers(
            etcd=etcd,
            etcd_pid=pid_running(f"--data-dir={etcd.data_dir}"),
            pki=pki,
            tls=TlsFiles(pki.ca_file, admin.cert_file, admin.key_file),
            wardled=wardled,
            embedded=other,
            template=_warm_up(wardled, etcd.url),
            work_dir=work_dir,
        )


def process_tree(pid: int) -> tuple[int, ...]:
    """
    C{pid} and all its descendants now (a server with worker processes).
    """
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                text = stat.read()
        except OSError:
            continue
        parents[int(entry)] = int(text[text.rindex(b")") + 2 :].split()[1])
    tree = [pid]
    for candidate in tree:
        tree.extend(child for child, parent in parents.items() if parent == candidate)
    return tuple(tree)


@attrs.frozen
class HelloServer:
    """
    A running L{bench._hello} process.

    @ivar process: the process.
    @ivar port: the port it listens on (127.0.0.1).
    @ivar body_bytes: the size of its C{GET /hello} body.
    """

    process: subprocess.Popen[bytes]
    port: int
    body_bytes: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def _hello_output(log_path: str) -> str:
    try:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            return log.read()[-4000:]
    except OSError:
        return ""


def _wait_for_port(
    process: subprocess.Popen[bytes], port_file: str, log_path: str
) -> int:
    """
    The port the hello-world wrote to C{port_file} once listening.

    @raise RuntimeError: it exited or did not listen in time.
    """
    deadline = time.monotonic() + HELLO_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"bench._hello exited with {process.returncode}; output:\n"
                + _hello_output(log_path)
            )
        try:
            with open(port_file, encoding="ascii") as source:
                return int(source.read())
        except (OSError, ValueError):
            time.sleep(_POLL_INTERVAL)
    raise RuntimeError(
        f"bench._hello not listening after {HELLO_START_TIMEOUT:g}s; output:\n"
        + _hello_output(log_path)
    )


def check_hello(port: int, tls: TlsFiles) -> int:
    """
    One C{GET /hello} with the client certificate of C{tls}; the size of
    its JSON body.

    @raise RuntimeError: not a 200 with a JSON body.
    """
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, context=tls.context(), timeout=10.0
    )
    try:
        connection.request("GET", HELLO_PATH)
        response = connection.getresponse()
        body = response.read()
        content_type = response.getheader("content-type", "")
    finally:
        connection.close()
    if response.status != 200 or content_type != CONTENT_TYPE.decode():
        raise RuntimeError(
            f"GET {HELLO_PATH}: HTTP {response.status} {content_type} {body[:200]!r}"
        )
    json.loads(body)
    return len(body)


def _stop_hello(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(HELLO_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_hello(pki: TestPKI, tls: TlsFiles, work_dir: str) -> Iterator[HelloServer]:
    """
    Run the bare Klein TLS hello-world (L{bench._hello}) with C{pki}'s
    serving pair and client CA on a free port of 127.0.0.1, checked with
    one request presenting C{tls}; stop it on exit.
    """
    directory = tempfile.mkdtemp(prefix="hello-", dir=work_dir)
    port_file = os.path.join(directory, "port")
    log_path = os.path.join(directory, "hello.log")
    command = [
        sys.executable,
        "-m",
        "bench._hello",
        "--cert",
        pki.server_cert_file,
        "--key",
        pki.server_key_file,
        "--client-ca",
        pki.ca_file,
        "--port-file",
        port_file,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPOSITORY,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        port = _wait_for_port(process, port_file, log_path)
        yield HelloServer(process, port, check_hello(port, tls))
    finally:
        _stop_hello(process)
        shutil.rmtree(directory, ignore_errors=True)
