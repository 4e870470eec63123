# -*- test-case-name: tests.test_outage -*-
"""
etcd going away under a running wardled, end to end with real processes:
etcd stopped (SIGTERM), crashed (SIGKILL) and hung (SIGSTOP).

While etcd is away requests must fail fast with a 503 Status (never hang
past the driver's request timeout), C{/readyz} must fail naming etcd and
C{/livez} must stay ok.  When etcd is back (same data) everything recovers
without restarting wardled, no acknowledged write is lost, and an open
watch either sees every acknowledged event or is told to re-list (410).
A compaction while wardled could not see etcd ends the old watches with
410 and leaves new lists fine.

The module has its own etcd and wardled (it stops etcd; the session's
servers are not touched).  C{test_watch_integration} already covers a
plain etcd restart in the middle of a watch.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from tests import waiting
from tests.etcdserver import EtcdServer
from tests.harness import Stream, TestPKI, WardledProcess, free_port, next_event

V1B = "/apis/wardle.example.com/v1beta1"
KEY_PREFIX = "/registry/wardle.example.com/wardle.example.com/flunders"
# The etcd driver's per-request timeout (EtcdStorage's request_timeout).
ETCD_REQUEST_TIMEOUT = 5.0
# What a failing request may take beyond that (TLS set-up, the revision
# probe of a consistent read, a loaded machine).
MARGIN = 2.5
RECOVERY_TIMEOUT = 20.0

SIGNALS = {
    "SIGTERM": signal.SIGTERM,
    "SIGKILL": signal.SIGKILL,
    "SIGSTOP": signal.SIGSTOP,
}


@pytest.fixture(scope="module")
def outage(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EtcdServer, WardledProcess]]:
    """
    An etcd and a wardled of this module's own.
    """
    etcd = EtcdServer.start()
    try:
        pki = TestPKI.create(str(tmp_path_factory.mktemp("outage-pki")))
        wardled = WardledProcess.start(etcd.url, pki)
        try:
            yield etcd, wardled
        finally:
            wardled.stop()
    finally:
        etcd.stop()


# -- etcd ---------------------------------------------------------------------


def take_down(etcd: EtcdServer, sig: int) -> None:
    """
    Send C{sig} to etcd; for a terminating signal, wait until it is gone
    (its data stays for L{bring_back}).
    """
    os.kill(etcd.pid, sig)
    if sig == signal.SIGSTOP:
        # The signal stops etcd's threads asynchronously: a request sent at
        # once may still be answered.  Wait until every thread is stopped.
        waiting.wait_for(
            lambda: all_threads_stopped(etcd.pid),
            10,
            lambda: AssertionError("etcd did not stop"),
        )
        return
    waiting.wait_for(
        lambda: not etcd.running, 10, lambda: AssertionError("etcd did not exit")
    )


def all_threads_stopped(pid: int) -> bool:
    """
    Whether every thread of process C{pid} is in the stopped state (C{T}).
    """
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                # The state follows the parenthesised command name.
                states.append(stat.read().rpartition(")")[2].split()[0])
        except OSError:
            continue  # the thread has exited
    return bool(states) and all(state == "T" for state in states)


def bring_back(etcd: EtcdServer, sig: int) -> None:
    """
    Undo L{take_down}: continue a stopped etcd, or start it again on the
    same port and data; block until it is healthy.
    """
    if sig == signal.SIGSTOP:
        os.kill(etcd.pid, signal.SIGCONT)
    else:
        etcd.restart()


def etcd_post(url: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{url}{path}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def etcd_key_at(url: str, key: str, revision: int) -> dict[str, Any] | None:
    """
    The key's C{KeyValue} as etcd held it at C{revision} (value parsed).
    """
    reply = etcd_post(url, "/v3/kv/range", {"key": b64(key), "revision": revision})
    kvs = reply.get("kvs", [])
    if not kvs:
        return None
    found: dict[str, Any] = dict(kvs[0])
    found["value"] = json.loads(base64.b64decode(found["value"]))
    return found


# -- wardled ------------------------------------------------------------------


def collection(namespace: str) -> str:
    return f"{V1B}/namespaces/{namespace}/flunders"


def create(wardled: WardledProcess, namespace: str, name: str) -> dict[str, Any]:
    response = wardled.https(
        "POST", collection(namespace), {"metadata": {"name": name}}
    )
    assert response.status == 201, response.body
    created: dict[str, Any] = response.json()
    return created


def names(listed: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in listed["items"]]


def wait_ready(wardled: WardledProcess, timeout: float = RECOVERY_TIMEOUT) -> float:
    """
    Block until C{/readyz} answers 200; the seconds it took.
    """
    started = time.monotonic()
    waiting.wait_for(
        lambda: wardled.https("GET", "/readyz", timeout=10).status == 200,
        timeout,
        lambda: AssertionError(wardled.https("GET", "/readyz?verbose").body),
    )
    return time.monotonic() - started



def assert_unavailable(response: Any) -> None:
    """
    A 503 C{Status} that says storage (etcd) cannot be reached.
    """
    assert response.status == 503, response.body
    assert response.header("content-type") == "application/json"
    status = response.json()
    assert (status["kind"], status["apiVersion"]) == ("Status", "v1")
    assert (status["status"], status["code"], status["reason"]) == (
        "Failure",
        503,
        "ServiceUnavailable",
    )
    assert status["message"].startswith("storage is unavailable: ")
    assert "etcd" in status["message"]


# -- requests while etcd is away ------------------------------------------------


@pytest.mark.parametrize("signame", list(SIGNALS))
def test_fail_fast_then_recover(
    outage: tuple[EtcdServer, WardledProcess], signame: str
) -> None:
    etcd, wardled = outage
    sig = SIGNALS[signame]
    namespace = f"away-{signame.lower()}"
    before = create(wardled, namespace, "before")
    path = f"{collection(namespace)}/before"
    take_down(etcd, sig)
    try:
        timings = {}
        for verb, method, target, body in (
            ("get", "GET", path, None),
            ("list", "GET", collection(namespace), None),
            ("create", "POST", collection(namespace), {"metadata": {"name": "during"}}),
        ):
            started = time.monotonic()
            response = wardled.https(method, target, body)
            timings[verb] = time.monotonic() - started
            assert_unavailable(response)
            assert timings[verb] < ETCD_REQUEST_TIMEOUT + MARGIN, timings
        started = time.monotonic()
        ready = wardled.https("GET", "/readyz?verbose")
        timings["readyz"] = time.monotonic() - started
        assert ready.status == 500
        assert "[-]etcd failed: reason withheld" in ready.body.decode()
        assert "[-]etcd-readiness failed: reason withheld" in ready.body.decode()
        assert wardled.https("GET", "/readyz/etcd").status == 500
        started = time.monotonic()
        live = wardled.https("GET", "/livez?verbose")
        timings["livez"] = time.monotonic() - started
        assert (live.status, live.body.decode()) == (
            200,
            "[+]ping ok\n[+]log ok\nlivez check passed\n",
        )
        # resourceVersion=0 asks for whatever the watch cache holds.
        cached = wardled.https("GET", f"{collection(namespace)}?resourceVersion=0")
        assert (cached.status, names(cached.json())) == (200, ["before"])
    finally:
        bring_back(etcd, sig)
    recovered = wait_ready(wardled)
    print(
        f"\n{signame}: "
        + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
        + f"; ready again {recovered:.2f}s after etcd was healthy"
    )
    after = create(wardled, namespace, "after")
    listed = wardled.https("GET", collection(namespace)).json()
    # A refused connection never reached etcd; a hung etcd may still apply
    # the request it had buffered (the client was told 503: not acknowledged).
    expected = (
        ["after", "before"]
        if sig != signal.SIGSTOP
        else sorted({"after", "before"} | ({"during"} & set(names(listed))))
    )
    assert names(listed) == expected
    assert int(listed["metadata"]["resourceVersion"]) >= int(
        after["metadata"]["resourceVersion"]
    )
    got = wardled.https("GET", f"{collection(namespace)}/before").json()
    assert got["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert wardled.https("GET", "/livez").status == 200


# -- writes and a watch across a crash -------------------------------------------


@attrs.frozen
class Ack:
    """
    A write wardled answered 2xx: what the client was told.
    """

    type: str
    name: str
    revision: int
    generation: str


@attrs.define
class Writer:
    """
    Creates then updates flunders through wardled, one after the other,
    remembering what was acknowledged and counting what was not.
    """

    wardled: WardledProcess
    namespace: str
    acked: list[Ack] = attrs.Factory(list)
    failures: int = 0
    stopping: threading.Event = attrs.Factory(threading.Event)

    def run(self) -> None:
        index = 0
        while not self.stopping.is_set():
            self._write_one(f"w{index:04d}")
            index += 1

    def _send(self, method: str, path: str, body: dict[str, Any]) -> Any:
        try:
            response = self.wardled.https(method, path, body, timeout=30)
        except (OSError, http.client.HTTPException):
            response = None
        if response is None or response.status >= 300:
            self.failures += 1
            time.sleep(0.05)
            return None
        return response.json()

    def _write_one(self, name: str) -> None:
        body = {"metadata": {"name": name, "labels": {"generation": "0"}}}
        created = self._send("POST", collection(self.namespace), body)
        if created is None:
            return
        self._ack("ADDED", created)
        created["metadata"]["labels"] = {"generation": "1"}
        updated = self._send("PUT", f"{collection(self.namespace)}/{name}", created)
        if updated is not None:
            self._ack("MODIFIED", updated)

    def _ack(self, kind: str, obj: dict[str, Any]) -> None:
        metadata = obj["metadata"]
        self.acked.append(
            Ack(
                kind,
                metadata["name"],
                int(metadata["resourceVersion"]),
                metadata["labels"]["generation"],
            )
        )

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        waiting.wait_for(
            lambda: len(self.acked) >= count,
            timeout,
            lambda: AssertionError(f"only {len(self.acked)} writes acknowledged"),
            interval=0.02,
        )


def read_watch_until(stream: Stream, last_name: str) -> tuple[list[Any], Any]:
    """
    Events up to the ADDED of C{last_name}, or up to an ERROR event (then
    returned second).
    """
    seen: list[Any] = []
    while True:
        event = next_event(stream, 30.0)
        assert event is not None, f"watch ended after {len(seen)} events"
        if event["type"] == "ERROR":
            return seen, event
        seen.append(event)
        if (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", last_name):
            return seen, None


def test_no_acknowledged_write_lost(outage: tuple[EtcdServer, WardledProcess]) -> None:
    etcd, wardled = outage
    namespace = "crash-writes"
    start = create(wardled, namespace, "first")["metadata"]["resourceVersion"]
    watch_path = f"{collection(namespace)}?watch=true&resourceVersion={start}"
    with wardled.stream(watch_path, timeout=60) as stream:
        assert stream.status == 200
        writer = Writer(wardled, namespace)
        thread = threading.Thread(target=writer.run, daemon=True)
        thread.start()
        try:
            writer.wait_for(10)
            take_down(etcd, signal.SIGKILL)
            time.sleep(1.5)
            acked_while_down = len(writer.acked)
            bring_back(etcd, signal.SIGKILL)
            writer.wait_for(acked_while_down + 10)
        finally:
            writer.stopping.set()
            thread.join(60)
        assert writer.failures > 0, "the writer never met the outage"
        create(wardled, namespace, "last")
        seen, error = read_watch_until(stream, "last")
    for ack in writer.acked:
        stored = etcd_key_at(
            etcd.url, f"{KEY_PREFIX}/{namespace}/{ack.name}", ack.revision
        )
        assert stored is not None, ack
        assert int(stored["mod_revision"]) == ack.revision, (ack, stored)
        assert stored["value"]["metadata"]["labels"] == {"generation": ack.generation}
    observed = {
        (
            event["type"],
            event["object"]["metadata"]["name"],
            int(event["object"]["metadata"]["resourceVersion"]),
        )
        for event in seen
    }
    revisions = [int(event["object"]["metadata"]["resourceVersion"]) for event in seen]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
    if error is None:
        missing = {(a.type, a.name, a.revision) for a in writer.acked} - observed
        assert not missing, sorted(missing)
    else:
        assert error["object"]["code"] == 410
        listed = wardled.https("GET", collection(namespace)).json()
        assert {a.name for a in writer.acked} <= set(names(listed))
    outcome = "every acknowledged event" if error is None else "410, re-listed"
    print(
        f"\nacknowledged {len(writer.acked)} writes, {writer.failures} failed "
        f"while etcd was away; the watch saw {outcome}"
    )


# -- compaction while wardled could not see etcd ------------------------------


def test_compaction_while_away(outage: tuple[EtcdServer, WardledProcess]) -> None:
    etcd, wardled = outage
    namespace = "compacted"
    old = create(wardled, namespace, "old")["metadata"]["resourceVersion"]
    with wardled.stream(
        f"{collection(namespace)}?watch=true&resourceVersion={old}"
    ) as stream:
        create(wardled, namespace, "seen")
        assert next_event(stream, 30.0)["object"]["metadata"]["name"] == "seen"
        take_down(etcd, signal.SIGKILL)
        compacted_at = write_and_compact_unseen(etcd)
        bring_back(etcd, signal.SIGKILL)
        event = next_event(stream, 30.0)
        assert event["type"] == "ERROR", event
        status = event["object"]
        assert (status["kind"], status["code"], status["reason"]) == (
            "Status",
            410,
            "Expired",
        )
        assert status["message"].startswith("too old resource version: ")
        assert next_event(stream, 30.0) is None
    wait_ready(wardled)
    with wardled.stream(
        f"{collection(namespace)}?watch=true&resourceVersion={old}"
    ) as stale:
        event = next_event(stale, 30.0)
        assert (event["type"], event["object"]["code"]) == ("ERROR", 410)
    exact = wardled.https(
        "GET",
        f"{collection(namespace)}?resourceVersion={old}&resourceVersionMatch=Exact",
    )
    assert (exact.status, exact.json()["reason"]) == (410, "Expired")
    listed = wardled.https("GET", collection(namespace)).json()
    assert names(listed) == ["old", "seen"]
    fresh = listed["metadata"]["resourceVersion"]
    assert int(fresh) >= compacted_at
    with wardled.stream(
        f"{collection(namespace)}?watch=true&resourceVersion={fresh}"
    ) as stream:
        create(wardled, namespace, "new")
        event = next_event(stream, 30.0)
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "new")


def write_and_compact_unseen(etcd: EtcdServer) -> int:
    """
    Start the (stopped) etcd's data on another client port, where wardled
    cannot reach it, write two keys outside wardled's prefix and compact to
    the newest revision, then stop it again; the revision compacted to.
    """
    hidden = EtcdServer(os.path.dirname(etcd.data_dir), free_port(), etcd.peer_port)
    try:
        hidden.restart()
        etcd_post(
            hidden.url, "/v3/kv/put", {"key": b64("/elsewhere/a"), "value": b64("1")}
        )
        reply = etcd_post(
            hidden.url, "/v3/kv/put", {"key": b64("/elsewhere/b"), "value": b64("2")}
        )
        revision = int(reply["header"]["revision"])
        etcd_post(
            hidden.url, "/v3/kv/compaction", {"revision": revision, "physical": True}
        )
    finally:
        hidden.kill()  # keeps the data directory, which is etcd's
    return revision
