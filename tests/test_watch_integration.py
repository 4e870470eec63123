"""
Watches end to end: a real etcd, a real wardled, real clients (raw HTTP/1.1
streams, kubectl get -w, the kubernetes Python client), including an etcd
restart in the middle of a watch and a client that never reads.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from tests.etcdserver import EtcdServer
from tests.harness import ADMIN, Stream, TestPKI, WardledProcess, next_event

V1A = "/apis/wardle.example.com/v1alpha1"
V1B = "/apis/wardle.example.com/v1beta1"



def create(wardled: WardledProcess, namespace: str, name: str, **labels: str) -> dict[str, Any]:
    response = wardled.https(
        "POST", f"{V1B}/namespaces/{namespace}/flunders",
        {"metadata": {"name": name, "labels": labels}},
    )
    assert response.status == 201, response.body
    body: dict[str, Any] = response.json()
    return body


def events(stream: Stream, count: int) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    for _ in range(count):
        event = next_event(stream)
        assert event is not None, seen
        metadata = event["object"]["metadata"]
        seen.append((event["type"], metadata.get("name", ""), metadata["resourceVersion"]))
    return seen


class TestWatchStreams:
    def test_order_resume_and_delete(self, wardled: WardledProcess, namespace: str) -> None:
        collection = f"{V1B}/namespaces/{namespace}/flunders"
        first = create(wardled, namespace, "a")
        start = first["metadata"]["resourceVersion"]
        with wardled.stream(f"{collection}?watch=true&resourceVersion={start}") as stream:
            assert stream.status == 200
            assert stream.headers.get("content-type") == "application/json"
            b = create(wardled, namespace, "b")
            updated = dict(b, metadata=dict(b["metadata"], labels={"x": "y"}))
            assert wardled.https("PUT", f"{collection}/b", updated).status == 200
            assert wardled.https("DELETE", f"{collection}/a").status == 200
            seen = events(stream, 3)
        assert [(t, n) for t, n, _ in seen] == [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")]
        revisions = [int(rv) for _, _, rv in seen]
        assert revisions == sorted(revisions) and len(set(revisions)) == 3
        with wardled.stream(f"{collection}?watch=true&resourceVersion={seen[0][2]}") as resumed:
            assert [(t, n) for t, n, _ in events(resumed, 2)] == [("MODIFIED", "b"), ("DELETED", "a")]

    def test_initial_events_and_bookmark(self, wardled: WardledProcess, namespace: str) -> None:
        create(wardled, namespace, "one")
        create(wardled, namespace, "two")
        path = (
            f"{V1A}/namespaces/{namespace}/flunders?watch=true&sendInitialEvents=true"
            "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        )
        with wardled.stream(path) as stream:
            initial = [next_event(stream) for _ in range(3)]
        assert [e["type"] for e in initial] == ["ADDED", "ADDED", "BOOKMARK"]
        assert [e["object"]["metadata"].get("name") for e in initial[:2]] == ["one", "two"]
        bookmark = initial[2]["object"]
        assert bookmark["kind"] == "Flunder"
        assert bookmark["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"

    def test_selector_transitions(self, wardled: WardledProcess, namespace: str) -> None:
        collection = f"{V1B}/namespaces/{namespace}/flunders"
        with wardled.stream(f"{collection}?watch=true&labelSelector=color%3Dblue") as stream:
            obj = create(wardled, namespace, "c", color="red")
            obj["metadata"]["labels"] = {"color": "blue"}
            response = wardled.https("PUT", f"{collection}/c", obj)
            assert response.status == 200
            obj = response.json()
            obj["metadata"]["labels"] = {"color": "green"}
            assert wardled.https("PUT", f"{collection}/c", obj).status == 200
            seen = events(stream, 2)
        assert [t for t, _, _ in seen] == ["ADDED", "DELETED"]

    def test_too_large_is_504(self, wardled: WardledProcess, namespace: str) -> None:
        response = wardled.https(
            "GET", f"{V1B}/namespaces/{namespace}/flunders?watch=true&resourceVersion=99999999"
        )
        assert response.status == 504
        assert "Too large resource version" in response.json()["message"]

    def test_timeout_seconds_ends_stream(self, wardled: WardledProcess, namespace: str) -> None:
        started = time.monotonic()
        with wardled.stream(f"{V1B}/namespaces/{namespace}/flunders?watch=true&timeoutSeconds=1") as stream:
            assert next_event(stream, timeout=10) is None
        assert time.monotonic() - started < 8

    def test_cached_list_sees_own_write(self, wardled: WardledProcess, namespace: str) -> None:
        for index in range(5):
            create(wardled, namespace, f"w{index}")
            listed = wardled.https("GET", f"{V1B}/namespaces/{namespace}/flunders").json()
            assert len(listed["items"]) == index + 1


    def test_cross_namespace_and_legacy_paths(self, wardled: WardledProcess, namespace: str) -> None:
        start = create(wardled, namespace, "first")["metadata"]["resourceVersion"]
        paths = [
            f"{V1B}/flunders?watch=true&resourceVersion={start}",
            f"{V1B}/watch/flunders?resourceVersion={start}",
            f"{V1B}/watch/namespaces/{namespace}/flunders/second?resourceVersion={start}",
        ]
        streams = [wardled.stream(path) for path in paths]
        try:
            create(wardled, namespace, "second")
            for stream in streams:
                assert stream.status == 200
                event = next_event(stream)
                assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "second")
        finally:
            for stream in streams:
                stream.close()


class TestLists:
    def test_kubectl_chunked_list(self, wardled: WardledProcess, namespace: str) -> None:
        for index in range(5):
            create(wardled, namespace, f"c{index}")
        result = wardled.kubectl(
            "get", "flunders", "-n", namespace, "--chunk-size=2", "-o", "name"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [
            f"flunder.wardle.example.com/c{index}" for index in range(5)
        ]

    def test_continue_after_compaction_is_410(
        self, etcd_wardled: WardledProcess, etcd: EtcdServer, namespace: str
    ) -> None:
        wardled = etcd_wardled  # compacts etcd behind wardled's back
        collection = f"{V1B}/namespaces/{namespace}/flunders"
        for index in range(3):
            create(wardled, namespace, f"p{index}")
        first = wardled.https("GET", f"{collection}?limit=1").json()
        token = first["metadata"]["continue"]
        assert first["metadata"]["remainingItemCount"] == 2
        latest = create(wardled, namespace, "later")["metadata"]["resourceVersion"]
        etcd_request(etcd, "/v3/kv/compaction", {"revision": latest, "physical": True})
        expired = wardled.https("GET", f"{collection}?limit=1&continue={token}")
        assert expired.status == 410
        status = expired.json()
        assert status["reason"] == "Expired"
        assert status["message"].startswith("The provided continue parameter is too old")
        fresh = status["metadata"]["continue"]
        rest = wardled.https("GET", f"{collection}?limit=10&continue={fresh}").json()
        assert [i["metadata"]["name"] for i in rest["items"]] == ["p1", "p2"]


class TestHTTP2:
    def test_quiet_watch_survives_idle_timeout(
        self, etcd_wardled: WardledProcess, namespace: str
    ) -> None:
        """
        Twisted drops an HTTP/2 connection idle for 60 s; a watch with
        nothing to say keeps it alive for its whole 70 s lifetime.  (About
        HTTP/2, not storage: run on one backend, it takes 70 s.)
        """
        wardled = etcd_wardled
        result = wardled.curl(
            "-N", "-o", "-", "-w", "\n%{http_version} %{http_code} %{size_download}",
            f"{V1B}/namespaces/{namespace}/flunders?watch=true&timeoutSeconds=70",
            http2=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        body, _, summary = result.stdout.rpartition("\n")
        assert summary.split()[:2] == ["2", "200"]
        assert body.strip() == ""
        assert int(summary.split()[2]) >= 2


class TestClients:
    def test_kubectl_get_watch(self, wardled: WardledProcess, namespace: str) -> None:
        create(wardled, namespace, "existing")
        process = subprocess.Popen(
            ["/usr/bin/kubectl", "--kubeconfig", wardled.pki.kubeconfig(ADMIN, wardled.url),
             "get", "flunders", "-n", namespace, "-w", "--request-timeout=0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            time.sleep(1.5)
            create(wardled, namespace, "arrived")
            time.sleep(1.5)
        finally:
            process.terminate()
            out, err = process.communicate(timeout=10)
        names = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
        assert names[:2] == ["existing", "arrived"], (out, err)

    def test_python_client_watch(self, wardled: WardledProcess, namespace: str) -> None:
        client = kubernetes.config.new_client_from_config(
            config_file=wardled.pki.kubeconfig(ADMIN, wardled.url)
        )
        api: Any = kubernetes.client.CustomObjectsApi(client)
        watch = kubernetes.watch.Watch()
        create(wardled, namespace, "py-existing")
        threading.Timer(1.0, create, (wardled, namespace, "py-arrived")).start()
        seen = []
        for event in watch.stream(
            api.list_namespaced_custom_object, "wardle.example.com", "v1beta1", namespace,
            "flunders", timeout_seconds=5,
        ):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 2:
                watch.stop()
        assert seen == [("ADDED", "py-existing"), ("ADDED", "py-arrived")]


class TestFanOut:
    def test_200_watchers_get_every_event(self, wardled: WardledProcess, namespace: str) -> None:
        collection = f"{V1B}/namespaces/{namespace}/flunders"
        start = create(wardled, namespace, "zero")["metadata"]["resourceVersion"]
        streams = [
            wardled.stream(f"{collection}?watch=true&resourceVersion={start}")
            for _ in range(200)
        ]
        try:
            names = [f"n{index}" for index in range(20)]
            for name in names:
                create(wardled, namespace, name)
            for stream in streams:
                assert [next_event(stream)["object"]["metadata"]["name"] for _ in names] == names
        finally:
            for stream in streams:
                stream.close()

    def test_stalled_client_is_dropped(self, wardled: WardledProcess, namespace: str) -> None:
        collection = f"{V1B}/namespaces/{namespace}/flunders"
        start = create(wardled, namespace, "zero")["metadata"]["resourceVersion"]
        stalled = stalled_watch(wardled, f"{collection}?watch=true&resourceVersion={start}")
        padding = "x" * 16_000
        total = 1_300
        got: list[str] = []
        with wardled.stream(f"{collection}?watch=true&resourceVersion={start}") as healthy:
            reader = threading.Thread(
                target=lambda: got.extend(
                    next_event(healthy, 60)["object"]["metadata"]["name"] for _ in range(total)
                )
            )
            reader.start()
            for index in range(total):
                response = wardled.https(
                    "POST", collection,
                    {"metadata": {"name": f"s{index}", "annotations": {"pad": padding}}},
                )
                assert response.status == 201
            reader.join(60)
        assert got == [f"s{index}" for index in range(total)]
        stalled.settimeout(30)
        received = 0
        try:
            while chunk := stalled.recv(1 << 20):
                received += len(chunk)
        except ssl.SSLError:
            pass  # closed without close_notify: also an end
        stalled.close()
        # The server ended the stalled watch (EOF) after far less than the
        # ~21 MB that was written for the healthy watcher.
        assert received < 16_000 * total
        assert wardled.https("GET", "/readyz").status == 200


def stalled_watch(wardled: WardledProcess, path: str) -> socket.socket:
    """
    A watch whose client never reads a byte.
    """
    context = ssl.create_default_context(cafile=wardled.pki.ca_file)
    credentials = wardled.pki.credentials(ADMIN)
    assert credentials is not None
    context.load_cert_chain(credentials.cert_file, credentials.key_file)
    raw = socket.create_connection(("127.0.0.1", wardled.port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    sock.sendall(request.encode())
    return sock


@pytest.fixture
def restartable(tmp_path: Any) -> Iterator[tuple[EtcdServer, WardledProcess]]:
    """
    An etcd and a wardled of this test's own (the test restarts etcd).
    """
    etcd = EtcdServer.start()
    pki = TestPKI.create(str(tmp_path / "pki"))
    server = WardledProcess.start(etcd.url, pki)
    try:
        yield etcd, server
    finally:
        server.stop()
        etcd.stop()


def test_too_old_is_410_error_event(restartable: tuple[EtcdServer, WardledProcess]) -> None:
    etcd, _ = restartable
    # Writes the cache never saw (before this server's first list, and
    # outside its prefix) put revision 2 out of its window.
    etcd_put(etcd, "/elsewhere/a", "1")
    etcd_put(etcd, "/elsewhere/b", "2")
    wardled = WardledProcess.start(etcd.url, restartable[1].pki)
    try:
        path = f"{V1B}/namespaces/old/flunders?watch=true&resourceVersion=2"
        with wardled.stream(path) as stream:
            assert stream.status == 200
            event = next_event(stream)
            assert event["type"] == "ERROR"
            assert event["object"]["code"] == 410
            assert event["object"]["reason"] == "Expired"
            assert event["object"]["message"].startswith("too old resource version: 2 (")
            assert next_event(stream) is None
    finally:
        wardled.stop()


def test_history_window_from_flag(restartable: tuple[EtcdServer, WardledProcess]) -> None:
    etcd, first = restartable
    wardled = WardledProcess.start(
        etcd.url, first.pki, extra_args=["--watch-cache-sizes=flunders.wardle.example.com#3"]
    )
    try:
        start = create(wardled, "window", "w0")["metadata"]["resourceVersion"]
        for index in range(1, 6):
            create(wardled, "window", f"w{index}")
        path = f"{V1B}/namespaces/window/flunders?watch=true&resourceVersion={start}"
        with wardled.stream(path) as stream:
            event = next_event(stream)
        assert (event["type"], event["object"]["code"]) == ("ERROR", 410)
        recent = int(start) + 3
        with wardled.stream(path.replace(start, str(recent))) as stream:
            assert [n for _, n, _ in events(stream, 2)] == ["w4", "w5"]
    finally:
        wardled.stop()


def etcd_request(etcd: EtcdServer, path: str, body: dict[str, Any]) -> Any:
    """
    One call to etcd's JSON gateway, as an operator's tool would make it.
    """
    request = urllib.request.Request(
        f"{etcd.url}{path}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.load(response)


def etcd_put(etcd: EtcdServer, key: str, value: str) -> None:
    etcd_request(etcd, "/v3/kv/put", {
        "key": base64.b64encode(key.encode()).decode(),
        "value": base64.b64encode(value.encode()).decode(),
    })


def test_etcd_restart_mid_watch(restartable: tuple[EtcdServer, WardledProcess]) -> None:
    etcd, wardled = restartable
    namespace = "restart"
    start = create(wardled, namespace, "before")["metadata"]["resourceVersion"]
    with wardled.stream(f"{V1B}/namespaces/{namespace}/flunders?watch=true&resourceVersion={start}") as stream:
        create(wardled, namespace, "one")
        etcd.restart()
        deadline = time.monotonic() + 20
        while wardled.https("GET", "/readyz").status != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        create(wardled, namespace, "two")
        create(wardled, namespace, "three")
        seen = events(stream, 3)
    assert [n for _, n, _ in seen] == ["one", "two", "three"]
    assert len({rv for _, _, rv in seen}) == 3
