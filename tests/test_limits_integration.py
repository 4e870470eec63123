# -*- test-case-name: tests.test_limits_integration -*-
"""
The limits of a real C{twistd wardled} (L{wardled.limits},
L{wardled.connlimits}): max in flight, the request timeout, body size and
nesting, head size, slow and silent clients, and validation of what names
the storage keys.

One server on the embedded store with small limits serves the module.  A
request is made slow without touching the backend: a LIST asking for a
resourceVersion far ahead waits 3 s for the watch cache before its own
504 (C{Too large resource version}), holding a slot all that time.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from tests.harness import ALICE, Response, TestPKI, WardledProcess
from tests.test_limits import TOO_MANY_STATUS

HEAD_TIMEOUT = 2.0
REQUEST_TIMEOUT = 4.0
NAMESPACE = "limits"
FLUNDERS = f"/apis/wardle.example.com/v1alpha1/namespaces/{NAMESPACE}/flunders"
# Waits WAIT_FOR_REVISION_SECONDS (3 s) in the cache, then 504.
SLOW_LIST = FLUNDERS + "?resourceVersion=999999999"
TIMEOUT_STATUS = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Timeout: request did not complete within the allotted timeout",
    "reason": "Timeout",
    "details": {},
    "code": 504,
}
HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\n"
    b"431 Request Header Fields Too Large"
)
POLICY = """\
rules:
- users: [alice]
  verbs: ["*"]
  resources: ["*"]
- users: [alice]
  verbs: ["*"]
  nonResourcePaths: ["*"]
"""


@pytest.fixture(scope="module")
def server(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WardledProcess]:
    """
    wardled with 2 read-only and 1 mutating slots, a 2 s head deadline, a
    4 s request timeout, and a policy letting C{alice} (not in
    C{system:masters}) do everything.
    """
    policy = os.path.join(str(tmp_path_factory.mktemp("limits")), "policy.yaml")
    with open(policy, "w") as file:
        file.write(POLICY)
    process = WardledProcess.start(
        None,
        pki,
        [
            "--max-requests-inflight=2",
            "--max-mutating-requests-inflight=1",
            f"--read-header-timeout={HEAD_TIMEOUT:g}s",
            f"--request-timeout={REQUEST_TIMEOUT:g}s",
            "--authorization-policy-file",
            policy,
        ],
    )
    try:
        yield process
    finally:
        process.stop()


class Background:
    """
    Requests running in threads (each on its own connection).
    """

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.results: list[Response | BaseException] = []

    def start(self, server: WardledProcess, method: str, path: str, user: str | None = ALICE) -> None:
        def run() -> None:
            try:
                self.results.append(server.https(method, path, user=user))
            except BaseException as error:  # noqa: BLE001 - reported by the test
                self.results.append(error)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> list[Response | BaseException]:
        for thread in self.threads:
            thread.join(15)
        return self.results


def wait_for_status(server: WardledProcess, code: int, path: str = "/version", user: str | None = ALICE) -> Response:
    """
    Ask C{path} until the answer is C{code} (within 3 s).
    """
    deadline = time.monotonic() + 3.0
    while True:
        response = server.https("GET", path, user=user)
        if response.status == code or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def tls_socket(server: WardledProcess, alpn: str = "http/1.1", user: str | None = ALICE) -> ssl.SSLSocket:
    context = server.pki.ssl_context(user)
    context.set_alpn_protocols([alpn])
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """
    Everything the server sends until it closes (or C{timeout} passes:
    then the result ends with C{<open>}).
    """
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except (ConnectionResetError, ssl.SSLError):
        return data
    except TimeoutError:
        return data + b"<open>"


def status_of(response: Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    return body


# -- max in flight -------------------------------------------------------------


def test_too_many_requests(server: WardledProcess) -> None:
    """
    With both read-only slots held by slow LISTs, a read gets 429 with
    C{Retry-After: 1}; system:masters, mutating requests and watches are
    still served; once the LISTs end, reads are served again.
    """
    slow = Background()
    for _ in range(2):
        slow.start(server, "GET", SLOW_LIST)
    refused = wait_for_status(server, 429)
    assert refused.status == 429
    assert refused.json() == TOO_MANY_STATUS
    assert refused.header("Retry-After") == "1"
    assert refused.header("Content-Type") == "application/json"
    assert server.https("GET", "/version").status == 200  # admin: system:masters
    created = server.https(
        "POST", FLUNDERS, {"metadata": {"generateName": "busy-"}, "spec": {}}, user=ALICE
    )
    assert created.status == 201, created.body
    watch = server.https("GET", FLUNDERS + "?watch=true&resourceVersion=0&timeoutSeconds=1", user=ALICE)
    assert watch.status == 200
    results = slow.join()
    assert [getattr(result, "status", result) for result in results] == [504, 504]
    assert server.https("GET", "/version", user=ALICE).status == 200


def test_too_many_over_http2(server: WardledProcess) -> None:
    slow = Background()
    for _ in range(2):
        slow.start(server, "GET", SLOW_LIST)
    assert wait_for_status(server, 429).status == 429
    result = server.curl("-si", "/version", user=ALICE, http2=True)
    assert result.stdout.startswith("HTTP/2 429"), result.stdout
    assert "retry-after: 1" in result.stdout.lower()
    assert '"reason": "TooManyRequests"' in result.stdout
    slow.join()


def test_slot_freed_when_client_goes(server: WardledProcess) -> None:
    """
    A client that hangs up frees its slot at once.
    """
    slow = Background()
    slow.start(server, "GET", SLOW_LIST)
    sock = tls_socket(server)
    sock.sendall(f"GET {SLOW_LIST} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert wait_for_status(server, 429).status == 429
    sock.close()
    assert wait_for_status(server, 200).status == 200
    slow.join()


# -- request timeout ---------------------------------------------------------------


def test_timeout_parameter(server: WardledProcess) -> None:
    """
    C{?timeout=1s} on a request that would take 3 s: 504 after about 1 s,
    over HTTP/1.1 and HTTP/2; the slot is freed.
    """
    started = time.monotonic()
    response = server.https("GET", SLOW_LIST + "&timeout=1s", user=ALICE)
    elapsed = time.monotonic() - started
    assert response.status == 504
    assert status_of(response) == TIMEOUT_STATUS
    assert 0.9 <= elapsed < 2.5, elapsed
    result = server.curl("-s", "-w", "\n%{http_code}", f"{SLOW_LIST}&timeout=1s", http2=True)
    body, _, code = result.stdout.rpartition("\n")
    assert code == "504"
    assert json.loads(body) == TIMEOUT_STATUS
    assert server.https("GET", "/version", user=ALICE).status == 200


def test_bad_timeout_parameter(server: WardledProcess) -> None:
    response = server.https("GET", FLUNDERS + "?timeout=soon", user=ALICE)
    assert response.status == 400
    assert status_of(response)["message"] == (
        'invalid timeout specified in the request URL - time: invalid duration "soon"'
    )
    result = server.curl("-s", FLUNDERS + "?timeout=1", http2=True)
    assert json.loads(result.stdout)["message"] == (
        'invalid timeout specified in the request URL - time: missing unit in duration "1"'
    )


def test_slow_body(server: WardledProcess) -> None:
    """
    A body sent a byte a second gets the 504 Status at the request timeout,
    and the connection closes.
    """
    sock = tls_socket(server)
    sock.sendall(
        f"POST {FLUNDERS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n".encode()
    )
    started = time.monotonic()
    sock.settimeout(0.5)
    answer = b""
    for byte in b'{"metadata":{"name":"slow"}':
        sock.sendall(bytes([byte]))
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            continue
        break
    answer += read_until_closed(sock, 3)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n"), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == TIMEOUT_STATUS
    assert REQUEST_TIMEOUT - 0.5 <= elapsed < REQUEST_TIMEOUT + 2, elapsed


# -- sizes ---------------------------------------------------------------------------


def test_body_too_large(server: WardledProcess, tmp_path: Any) -> None:
    """
    A declared body over 3 MiB is refused before it is read (HTTP/1.1);
    over HTTP/2 the filters refuse it once read.
    """
    sock = tls_socket(server)
    sock.sendall(f"POST {FLUNDERS} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n".encode())
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n"), answer[:200]
    message = json.loads(answer.partition(b"\r\n\r\n")[2])["message"]
    assert message == "Request entity too large: limit is 3145728"
    big = tmp_path / "big.json"
    big.write_bytes(b'{"a":"' + b"x" * (4 << 20) + b'"}')
    result = server.curl(
        "-s", "-H", "Content-Type: application/json", "--data-binary", f"@{big}", FLUNDERS,
        http2=True,
    )
    assert json.loads(result.stdout)["code"] == 413
    assert server.https("GET", "/version").status == 200


def test_deep_bodies(server: WardledProcess) -> None:
    """
    Deeply nested JSON and YAML bodies get a 400 Status, never a 500, and
    the server goes on serving.
    """
    deep_json = b'{"metadata":{"name":"deep"},"spec":{"x":' + b"[" * 5000 + b"]" * 5000 + b"}}"
    deep_yaml = b"metadata:\n  name: deep\nspec:\n" + b"".join(
        b"  " * depth + b"a:\n" for depth in range(1, 1000)
    )
    cases = [
        ("POST", FLUNDERS, deep_json, "application/json"),
        ("POST", FLUNDERS, deep_yaml, "application/yaml"),
        ("PATCH", FLUNDERS + "/deep", deep_json, "application/merge-patch+json"),
        ("PATCH", FLUNDERS + "/deep", deep_yaml, "application/merge-patch+json"),
        ("PATCH", FLUNDERS + "/deep", b'[{"op":"add","path":"/spec/x","value":' + b"[" * 700 + b"]" * 700 + b"}]",
         "application/json-patch+json"),
    ]
    for method, path, body, content_type in cases:
        response = server.https(method, path, body, headers={"Content-Type": content_type})
        assert response.status == 400, (method, content_type, response.body[:300])
        assert status_of(response)["reason"] == "BadRequest"
    result = server.curl(
        "-s", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@-", FLUNDERS,
        http2=True, input=deep_json.decode(),
    )
    assert json.loads(result.stdout)["code"] == 400
    assert server.https("GET", "/version").status == 200


def test_head_too_large(server: WardledProcess) -> None:
    """
    A head over 1 MiB (one big header, or a long URL) gets Go's 431 and the
    connection closes; a 1 MiB URL is still served.
    """
    for head in (
        b"GET /version HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"a" * 5000 + b"\r\n\r\n",
        b"GET /version?" + b"a" * ((1 << 20) + 5000) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        sock = tls_socket(server)
        sock.sendall(head)
        assert read_until_closed(sock) == HEADERS_TOO_LARGE
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=server.pki.ssl_context("admin"), timeout=10
    )
    connection.request("GET", "/version?" + "a" * (1 << 20))
    assert connection.getresponse().status == 200
    connection.close()
    # Over HTTP/2 a header list over what the server advertises (64 KiB)
    # is refused by the client itself; one under it is served.
    result = server.curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "X-Big: " + "b" * 60000, "/version", http2=True)
    assert result.stdout == "200"


# -- slow and silent clients ---------------------------------------------------------


def test_slowloris(server: WardledProcess) -> None:
    """
    Connections sending their head a byte at a time, or nothing (not even
    a TLS handshake), are dropped at the head deadline, while a normal
    client is served all along.
    """
    slow = [tls_socket(server) for _ in range(20)]
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(5)]
    head = b"GET /version HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    started = time.monotonic()
    closed_at: dict[int, float] = {}
    served = 0
    for byte in head:
        if len(closed_at) == len(slow):
            break
        for index, sock in enumerate(slow):
            if index in closed_at:
                continue
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_at[index] = time.monotonic() - started
        assert server.https("GET", "/version").status == 200
        served += 1
        time.sleep(0.25)
    for index, sock in enumerate(slow):
        if index not in closed_at:
            assert read_until_closed(sock, 2) == b""
            closed_at[index] = time.monotonic() - started
    assert max(closed_at.values()) < HEAD_TIMEOUT + 2.0, closed_at
    assert served >= 4
    for plain in silent:
        assert read_until_closed(plain, HEAD_TIMEOUT + 2.0) == b""
    assert time.monotonic() - started < HEAD_TIMEOUT + 3.0
    for each in (*slow, *silent):
        each.close()


def test_http2_without_streams(server: WardledProcess) -> None:
    """
    An HTTP/2 connection that opens no stream (it trickles frames) gets
    GOAWAY at the head deadline and is closed.
    """
    sock = tls_socket(server, alpn="h2")
    assert sock.selected_alpn_protocol() == "h2"
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    sock.sendall(client.data_to_send())
    started = time.monotonic()
    received = b""
    sock.settimeout(0.5)
    while time.monotonic() - started < HEAD_TIMEOUT + 3.0:
        client.ping(b"stillup!")
        try:
            sock.sendall(client.data_to_send())
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    elapsed = time.monotonic() - started
    events = client.receive_data(received)
    assert any(isinstance(event, h2.events.ConnectionTerminated) for event in events)
    assert HEAD_TIMEOUT - 0.5 <= elapsed < HEAD_TIMEOUT + 2.5, elapsed
    sock.close()


# -- validation of names that become storage keys -----------------------------------------


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        (".", "may not be '.'"),
        ("..", "may not be '..'"),
        ("a/b", "may not contain '/'"),
        ("a%b", "may not contain '%'"),
    ],
)
def test_bad_names(server: WardledProcess, name: str, detail: str) -> None:
    response = server.https("POST", FLUNDERS, {"metadata": {"name": name}, "spec": {}})
    assert response.status == 422
    status = status_of(response)
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        f'Flunder.wardle.example.com "{name}" is invalid: metadata.name: '
        f'Invalid value: "{name}": {detail}'
    )


def test_bad_namespace_and_labels(server: WardledProcess) -> None:
    response = server.https(
        "POST",
        "/apis/wardle.example.com/v1alpha1/namespaces/Bad_NS/flunders",
        {"metadata": {"name": "ok"}, "spec": {}},
    )
    assert response.status == 422
    assert status_of(response)["message"].startswith(
        'Flunder.wardle.example.com "ok" is invalid: metadata.namespace: Invalid value: '
        '"Bad_NS": a lowercase RFC 1123 label must consist of lower case alphanumeric characters'
    )
    for labels, start in [
        ({"bad key": "v"}, 'metadata.labels: Invalid value: "bad key": name part must consist of'),
        ({"k": "-bad-"}, 'metadata.labels: Invalid value: "-bad-": a valid label must be an empty string'),
    ]:
        response = server.https(
            "POST", FLUNDERS, {"metadata": {"name": "labelled", "labels": labels}, "spec": {}}
        )
        assert response.status == 422
        assert start in status_of(response)["message"]
    response = server.https("GET", FLUNDERS + "/a%25b")
    assert response.status == 404
    assert status_of(response)["message"] == 'flunders.wardle.example.com "a%b" not found'
