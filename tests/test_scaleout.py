# -*- test-case-name: tests.test_scaleout -*-
"""
Several wardled replicas on one three-member etcd cluster, end to end with
real processes: any replica serves any request, a write through one shows
up in watches on the others in order, losing an etcd member (the leader,
and the one every replica talks to first) leaves the service working after
a short failover window, losing a replica leaves the others untouched, and
the etcd member rejoins when started again.

The failover windows are printed (run with C{-s} to see them); the README's
"Running more than one replica" section quotes them.
"""

from __future__ import annotations

import functools
import http.client
import signal
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import pytest

from tests.etcdcluster import EtcdCluster, read_key
from tests.harness import Stream, TestPKI, WardledProcess, next_event

V1B = "/apis/wardle.example.com/v1beta1"
KEY_PREFIX = "/registry/wardle.example.com/wardle.example.com/flunders"
REPLICAS = 3
# How long a replica may fail requests after the etcd member it talked to
# first (and the leader) dies or hangs: a leader election plus one of the
# driver's request timeouts (5 s), generously.
FAILOVER_LIMIT = 15.0


@attrs.frozen
class Deployment:
    """
    The cluster and the replicas; every replica lists member 0 first in
    C{--etcd-servers}.
    """

    cluster: EtcdCluster
    replicas: list[WardledProcess]


def start_replicas(cluster: EtcdCluster, pki: TestPKI) -> list[WardledProcess]:
    """
    L{REPLICAS} wardled processes on the cluster, started side by side.
    """
    servers = ",".join(cluster.urls)
    with ThreadPoolExecutor(REPLICAS) as pool:
        starting = [
            pool.submit(WardledProcess.start, servers, pki) for _ in range(REPLICAS)
        ]
        return [future.result() for future in starting]


@pytest.fixture(scope="module")
def scaleout_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI.create(str(tmp_path_factory.mktemp("scaleout-pki")))


@pytest.fixture(scope="module")
def deployment(scaleout_pki: TestPKI) -> Iterator[Deployment]:
    cluster = EtcdCluster.start(size=3)
    try:
        replicas = start_replicas(cluster, scaleout_pki)
        try:
            yield Deployment(cluster, replicas)
        finally:
            for replica in replicas:
                replica.stop()
    finally:
        cluster.stop()


@pytest.fixture
def fresh(deployment: Deployment, scaleout_pki: TestPKI) -> Iterator[Deployment]:
    """
    New replicas on the module's cluster, so that member 0 is the server
    each of them talks to (an earlier failover moves replicas off it).
    """
    replicas = start_replicas(deployment.cluster, scaleout_pki)
    try:
        yield Deployment(deployment.cluster, replicas)
    finally:
        for replica in replicas:
            replica.stop()


def collection(namespace: str) -> str:
    return f"{V1B}/namespaces/{namespace}/flunders"


def create(replica: WardledProcess, namespace: str, name: str) -> dict[str, Any]:
    response = replica.https(
        "POST", collection(namespace), {"metadata": {"name": name}}
    )
    assert response.status == 201, (replica, response.body)
    created: dict[str, Any] = response.json()
    return created


def revision_of(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])



def watch_until(
    stream: Stream, last_name: str
) -> tuple[list[tuple[str, str, int]], Any]:
    """
    C{(type, name, revision)} of the events up to the ADDED of
    C{last_name}; the ERROR event if one came first (else None).
    """
    seen: list[tuple[str, str, int]] = []
    while True:
        event = next_event(stream, 30.0)
        assert event is not None, f"watch ended after {seen}"
        if event["type"] == "ERROR":
            return seen, event
        metadata = event["object"]["metadata"]
        seen.append((event["type"], metadata["name"], int(metadata["resourceVersion"])))
        if seen[-1][:2] == ("ADDED", last_name):
            return seen, None


def open_watches(
    replicas: Sequence[WardledProcess], namespace: str, revision: int
) -> list[Stream]:
    path = f"{collection(namespace)}?watch=true&resourceVersion={revision}"
    streams = [replica.stream(path, timeout=60) for replica in replicas]
    assert [stream.status for stream in streams] == [200] * len(streams)
    return streams


def check_watch(
    replica: WardledProcess,
    stream: Stream,
    namespace: str,
    acked: set[tuple[str, int]],
    last_name: str,
) -> str:
    """
    The watch saw every acknowledged create in revision order, or ended
    with 410 and a re-list holds them all; which of the two.
    """
    seen, error = watch_until(stream, last_name)
    revisions = [revision for _, _, revision in seen]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
    if error is None:
        added = {(name, revision) for kind, name, revision in seen if kind == "ADDED"}
        assert acked <= added, sorted(acked - added)
        return "every event"
    assert error["object"]["code"] == 410, error
    listed = replica.https("GET", collection(namespace)).json()
    listed_names = {item["metadata"]["name"] for item in listed["items"]}
    assert {name for name, _ in acked} <= listed_names
    return "410 and re-list"


def test_any_replica_serves_any_request(deployment: Deployment) -> None:
    a, b, c = deployment.replicas
    namespace = "any-replica"
    created = create(a, namespace, "shared")
    path = f"{collection(namespace)}/shared"
    for replica in (b, c):
        got = replica.https("GET", path)
        assert got.status == 200, got.body
        assert got.json()["metadata"]["uid"] == created["metadata"]["uid"]
        assert revision_of(got.json()) == revision_of(created)
    changed = dict(created, metadata=dict(created["metadata"], labels={"by": "b"}))
    updated = b.https("PUT", path, changed)
    assert updated.status == 200, updated.body
    for replica in (c, a):
        # A consistent read (no resourceVersion) on another replica sees
        # the write at once.
        got = replica.https("GET", path).json()
        assert (got["metadata"]["labels"], revision_of(got)) == (
            {"by": "b"},
            revision_of(updated.json()),
        )
        listed = replica.https("GET", collection(namespace)).json()
        assert int(listed["metadata"]["resourceVersion"]) >= revision_of(updated.json())
        assert [item["metadata"]["labels"] for item in listed["items"]] == [{"by": "b"}]
    assert c.https("DELETE", path).status == 200
    assert a.https("GET", path).status == 404
    assert b.https("GET", collection(namespace)).json()["items"] == []


def test_write_seen_by_watches_on_other_replicas(deployment: Deployment) -> None:
    a, b, c = deployment.replicas
    namespace = "fan-out"
    start = revision_of(create(a, namespace, "start"))
    streams = open_watches([b, c], namespace, start)
    try:
        written = [create(a, namespace, f"o{index:02d}") for index in range(20)]
        expected = [
            ("ADDED", obj["metadata"]["name"], revision_of(obj)) for obj in written
        ]
        for stream in streams:
            seen, error = watch_until(stream, "o19")
            assert error is None and seen == expected
    finally:
        for stream in streams:
            stream.close()


@attrs.frozen
class Failover:
    """
    How one replica rode out the loss of an etcd member.

    @ivar write_after: seconds from the kill to its first acknowledged
        create.
    @ivar read_after: seconds from the kill to its first successful
        consistent GET (measured after the write).
    @ivar failed: why requests failed before: a code and message, or the
        transport error.
    @ivar acked: the acknowledged create, C{(name, revision)}.
    """

    write_after: float
    read_after: float
    failed: tuple[str, ...]
    acked: tuple[str, int]


def ride_out(
    replica: WardledProcess, namespace: str, label: str, killed_at: float
) -> Failover:
    """
    Create objects through C{replica} until one is acknowledged, then read
    it back; every failure must be a 5xx Status or a dropped connection.
    """
    failed: list[str] = []
    while True:
        name = f"{label}-{len(failed)}"
        try:
            response = replica.https(
                "POST", collection(namespace), {"metadata": {"name": name}}
            )
        except (OSError, http.client.HTTPException) as error:
            failed.append(repr(error))
        else:
            if response.status == 201:
                break
            failed.append(failure_reason(response))
        assert time.monotonic() - killed_at < FAILOVER_LIMIT, f"{replica}: {failed}"
        time.sleep(0.05)
    write_after = time.monotonic() - killed_at
    acked = (name, revision_of(response.json()))
    while (
        got := replica.https("GET", f"{collection(namespace)}/{name}")
    ).status != 200:
        failed.append(failure_reason(got))
        assert time.monotonic() - killed_at < FAILOVER_LIMIT, f"{replica}: {failed}"
        time.sleep(0.05)
    return Failover(write_after, time.monotonic() - killed_at, tuple(failed), acked)


def failure_reason(response: Any) -> str:
    """
    A failed request's code and Status message; it must be a 5xx Status.
    """
    status = response.json()
    assert response.status >= 500 and status["kind"] == "Status", response.body
    return f"{response.status} {status['message']}"


def survive_member_loss(
    deployment: Deployment, namespace: str, lose: Callable[[], None], what: str
) -> int:
    """
    With watches open on every replica, make member 0 (first in every
    replica's C{--etcd-servers}, and made the leader so that its loss also
    costs an election) go away with C{lose}; every replica must serve
    writes and reads again after a short window, keep serving them, and
    its watch must see every acknowledged write (or end with 410 and a
    re-list holding them).

    @return: the revision of the last write, for the rejoin check.
    """
    cluster, replicas = deployment.cluster, deployment.replicas
    cluster.make_leader(0)
    start = revision_of(create(replicas[0], namespace, "start"))
    streams = open_watches(replicas, namespace, start)
    try:
        lose()
        lost_at = time.monotonic()
        with ThreadPoolExecutor(len(replicas)) as pool:
            riding = [
                pool.submit(ride_out, replica, namespace, f"r{index}", lost_at)
                for index, replica in enumerate(replicas)
            ]
            windows = [future.result() for future in riding]
        acked = {window.acked for window in windows}
        for index, writer in enumerate(replicas):
            for step in range(5):
                obj = create(writer, namespace, f"after-{index}-{step}")
                acked.add((obj["metadata"]["name"], revision_of(obj)))
                for reader in replicas:
                    got = reader.https(
                        "GET", f"{collection(namespace)}/{obj['metadata']['name']}"
                    )
                    assert got.status == 200, (reader, got.body)
        last = create(replicas[1], namespace, "last")
        acked.add(("last", revision_of(last)))
        outcomes = [
            check_watch(replica, stream, namespace, acked, "last")
            for replica, stream in zip(replicas, streams, strict=True)
        ]
        watched_after = time.monotonic() - lost_at
    finally:
        for stream in streams:
            stream.close()
    print(
        f"\netcd leader (first server of every replica) {what}; per replica: "
        + "; ".join(
            f"write ok after {w.write_after:.2f}s, read ok after {w.read_after:.2f}s, "
            f"{len(w.failed)} failed requests {list(w.failed)}, watch: {outcome}"
            for w, outcome in zip(windows, outcomes, strict=True)
        )
        + f"; all watches complete {watched_after:.2f}s after; new leader m{cluster.leader()}"
    )
    return revision_of(last)


def test_etcd_member_killed(fresh: Deployment) -> None:
    deployment = fresh
    cluster = deployment.cluster
    namespace = "member-killed"
    lose = functools.partial(cluster.stop_member, 0, signal.SIGKILL)
    last = survive_member_loss(deployment, namespace, lose, "killed")
    started = time.monotonic()
    cluster.start_member(0)
    assert_caught_up(cluster, 0, f"{KEY_PREFIX}/{namespace}/last", last, started)
    create(deployment.replicas[0], namespace, "after-rejoin")


def test_etcd_member_hung(fresh: Deployment) -> None:
    """
    A member that accepts connections but never answers (SIGSTOP) costs
    each replica one request timeout; its watch moves to another member
    after the keep-alive probe.
    """
    deployment = fresh
    cluster = deployment.cluster
    namespace = "member-hung"
    lose = functools.partial(cluster.pause_member, 0)
    try:
        last = survive_member_loss(deployment, namespace, lose, "hung")
    finally:
        cluster.resume_member(0)
    assert_caught_up(
        cluster, 0, f"{KEY_PREFIX}/{namespace}/last", last, time.monotonic()
    )
    create(deployment.replicas[0], namespace, "after-resume")


def assert_caught_up(
    cluster: EtcdCluster, index: int, key: str, revision: int, since: float
) -> None:
    """
    The member at C{index} is healthy, lists every member and holds (in its
    own copy) the key written while it was away.
    """
    cluster.wait_healthy([index])
    deadline = time.monotonic() + 15
    while True:
        local = read_key(cluster.urls[index], key, serializable=True)
        if local is not None and int(local["mod_revision"]) == revision:
            break
        assert time.monotonic() < deadline, f"member {index} did not catch up: {local}"
        time.sleep(0.05)
    print(
        f"member m{index} healthy and caught up {time.monotonic() - since:.2f}s after it came back"
    )
    assert cluster.member_names(index) == [member.name for member in cluster.members]
    assert cluster.status(index).get("leader"), "the member knows no leader"


def test_replica_killed(deployment: Deployment) -> None:
    a, b, c = deployment.replicas
    namespace = "replica-lost"
    start = revision_of(create(b, namespace, "start"))
    streams = open_watches([b, c], namespace, start)
    try:
        doomed = a.stream(f"{collection(namespace)}?watch=true&resourceVersion={start}")
        a.stop(signal.SIGKILL)
        assert not a.running
        assert_connection_ends(doomed)
        written = [
            create(writer, namespace, f"k{index}")
            for index, writer in enumerate((b, c, b, c))
        ]
        last = create(b, namespace, "last")
        expected = [
            ("ADDED", obj["metadata"]["name"], revision_of(obj))
            for obj in [*written, last]
        ]
        for stream in streams:
            seen, error = watch_until(stream, "last")
            assert error is None and seen == expected
        for replica in (b, c):
            assert replica.https("GET", "/readyz").status == 200
            assert len(replica.https("GET", collection(namespace)).json()["items"]) == 6
        with pytest.raises(OSError):
            a.https("GET", "/readyz", timeout=5)
    finally:
        for stream in streams:
            stream.close()


def assert_connection_ends(stream: Stream) -> None:
    """
    A watch on a killed replica ends (EOF or a reset), it does not hang.
    """
    try:
        assert next_event(stream, timeout=10) is None
    except (ConnectionError, ssl.SSLError, http.client.HTTPException):
        pass  # a reset: also an end
    finally:
        stream.close()
