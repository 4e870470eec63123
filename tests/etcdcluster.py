# -*- test-case-name: tests.test_scaleout -*-
"""
A real three-member etcd cluster on loopback for tests of what happens when
one member goes away: several wardled replicas share it, one member is
killed, the others keep a quorum, the member is started again and rejoins.

Like L{tests.etcdserver} it runs Debian's C{/usr/bin/etcd}, blocks, and is
for test set-up only (never reactor code).  Members are started at the same
time (each waits for a quorum before it answers C{/health}), their data lives
under one temporary directory (C{/dev/shm} when there is one), and whatever
was started is stopped at exit, whatever happens.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

from tests.etcdserver import (
    READY_TIMEOUT,
    SHM,
    EtcdStartError,
    etcd_binary,
    etcd_environment,
    is_healthy,
)
from tests.processes import free_ports, read_log, spawn_logged, stop_process
from tests.waiting import wait_for


class EtcdMember:
    """
    One member of an L{EtcdCluster}: its ports, data directory, log and
    process (when running).

    @ivar name: the member name, e.g. C{"m0"}.
    @ivar url: the client URL (and JSON gateway), C{http://127.0.0.1:<port>}.
    @ivar peer_url: the raft peer URL.
    @ivar data_dir: its data directory (kept across L{EtcdCluster.stop_member}).
    """

    def __init__(
        self, base_dir: str, name: str, client_port: int, peer_port: int
    ) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{client_port}"
        self.peer_url = f"http://127.0.0.1:{peer_port}"
        self.data_dir = os.path.join(base_dir, name)
        self._log_path = os.path.join(base_dir, f"{name}.log")
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, binary: str, initial_cluster: str) -> list[str]:
        """
        The etcd command line of this member in a cluster described by
        C{initial_cluster} (C{name=peer_url,...}); with an existing data
        directory etcd ignores the C{--initial-*} flags, so the same command
        restarts it.
        """
        return [
            binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={initial_cluster}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=wardled-test-cluster",
            "--logger=zap",
            "--log-outputs=stderr",
            "--log-level=warn",
            "--experimental-watch-progress-notify-interval=1s",
        ]

    def launch(self, binary: str, initial_cluster: str) -> None:
        """
        Run etcd for this member (without waiting for it).
        """
        self.process = spawn_logged(
            self.command(binary, initial_cluster),
            self._log_path,
            env=etcd_environment(),
            append=True,
            kill_at_exit=False,
        )

    @property
    def running(self) -> bool:
        """
        Whether this member's process is alive.
        """
        return self.process is not None and self.process.poll() is None

    def end(self, sig: int) -> None:
        """
        Send C{sig} (if it runs) and reap it; SIGKILL after a grace period.
        """
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # in case it was paused
            stop_process(process, sig)

    def log(self) -> str:
        """
        What this member logged so far.
        """
        return read_log(self._log_path, "(no log)")

    def __repr__(self) -> str:
        return f"<EtcdMember {self.name} {self.url}>"


class EtcdCluster:
    """
    A running etcd cluster of L{EtcdMember}s on 127.0.0.1.

    @ivar members: the members, in the order of L{urls}.
    """

    def __init__(self, base_dir: str, members: Sequence[EtcdMember]) -> None:
        self._base_dir = base_dir
        self.members = list(members)
        self._binary = etcd_binary()
        self._initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)

    @classmethod
    def start(cls, size: int = 3, base_dir: str | None = None) -> EtcdCluster:
        """
        Start C{size} members at once on free ports, each with a fresh data
        directory, and wait until every one is healthy (which needs a leader).

        @param base_dir: where the cluster's temporary directory goes;
            default C{/dev/shm} when writable.
        @raise tests.etcdserver.EtcdNotInstalled: there is no etcd.
        @raise EtcdStartError: a member exited or was not healthy in time.
        """
        binary = etcd_binary()
        if base_dir is None and os.access(SHM, os.W_OK):
            base_dir = SHM
        own_dir = tempfile.mkdtemp(prefix="wardled-etcd-cluster-", dir=base_dir)
        ports = free_ports(2 * size)
        members = [
            EtcdMember(own_dir, f"m{index}", ports[2 * index], ports[2 * index + 1])
            for index in range(size)
        ]
        cluster = cls(own_dir, members)
        atexit.register(cluster.stop)
        try:
            for member in members:
                member.launch(binary, cluster._initial_cluster)
            cluster.wait_healthy(range(size))
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def urls(self) -> list[str]:
        """
        The members' client URLs, in member order.
        """
        return [member.url for member in self.members]

    def wait_healthy(
        self, indices: Sequence[int] | range, timeout: float = READY_TIMEOUT
    ) -> None:
        """
        Block until the members at C{indices} answer C{/health} true.

        @raise EtcdStartError: one exited, or time ran out.
        """
        waiting = [self.members[index] for index in indices]

        def all_healthy() -> bool:
            for member in list(waiting):
                if not member.running:
                    raise EtcdStartError(
                        f"etcd member {member.name} is not running; log:\n{member.log()}"
                    )
                if is_healthy(member.url):
                    waiting.remove(member)
            return not waiting

        def not_healthy() -> EtcdStartError:
            logs = "\n".join(f"--- {m.name}:\n{m.log()}" for m in waiting)
            return EtcdStartError(
                f"etcd members {[m.name for m in waiting]} not healthy after "
                f"{timeout:g}s; logs:\n{logs}"
            )

        wait_for(all_healthy, timeout, not_healthy)

    def stop_member(self, index: int, sig: int = signal.SIGKILL) -> None:
        """
        Stop one member with C{sig} (SIGKILL: a crash; SIGTERM: a clean
        stop); its data directory stays for L{start_member}.
        """
        self.members[index].end(sig)

    def start_member(self, index: int, wait: bool = True) -> None:
        """
        Start a stopped member again on its ports with its data; by default
        block until it is healthy (it has rejoined and sees a leader).
        """
        member = self.members[index]
        if member.running:
            raise RuntimeError(f"etcd member {member.name} is already running")
        member.launch(self._binary, self._initial_cluster)
        if wait:
            self.wait_healthy([index])

    def pause_member(self, index: int) -> None:
        """
        SIGSTOP one member: a hung etcd whose sockets still accept
        connections but never answer (and which misses raft heartbeats).
        """
        process = self.members[index].process
        assert process is not None, f"member {index} is not running"
        process.send_signal(signal.SIGSTOP)

    def resume_member(self, index: int) -> None:
        """
        SIGCONT a member stopped by L{pause_member}.
        """
        process = self.members[index].process
        assert process is not None, f"member {index} is not running"
        process.send_signal(signal.SIGCONT)

    def status(self, index: int, timeout: float = 10.0) -> dict[str, Any]:
        """
        The member's C{/v3/maintenance/status} answer (its own revision,
        raft index, the leader's id and its own id in C{header.member_id}).
        """
        url = self.members[index].url
        return gateway_post(url, "/v3/maintenance/status", {}, timeout)

    def leader(self) -> int:
        """
        The index of the current leader, as the first member that answers
        sees it (stopped and hung members are skipped).

        @raise RuntimeError: no answering member knows a leader.
        """
        ids: dict[str, int] = {}
        leader_id = None
        for index, member in enumerate(self.members):
            if not member.running:
                continue
            try:
                status = self.status(index, timeout=1.0)
            except OSError:
                continue
            ids[status["header"]["member_id"]] = index
            leader_id = leader_id or status.get("leader")
        if leader_id is None or leader_id not in ids:
            raise RuntimeError(f"no leader known among running members ({ids})")
        return ids[leader_id]

    def make_leader(self, index: int, timeout: float = 10.0) -> None:
        """
        Move the leadership to the member at C{index} (etcd's MoveLeader,
        sent to the current leader) and wait until the members report it
        as leader.
        """
        target = self.status(index)["header"]["member_id"]
        deadline = time.monotonic() + timeout
        while self.leader() != index:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.members[index].name} did not become leader")
            leader_url = self.members[self.leader()].url
            gateway_post(
                leader_url, "/v3/maintenance/transfer-leadership", {"targetID": target}
            )

    def member_names(self, index: int) -> list[str]:
        """
        The names of the members the member at C{index} lists, sorted.
        """
        reply = gateway_post(self.members[index].url, "/v3/cluster/member/list", {})
        return sorted(member.get("name", "") for member in reply["members"])

    def stop(self) -> None:
        """
        Terminate every member and remove the cluster's directory;
        idempotent.
        """
        for member in self.members:
            member.end(signal.SIGTERM)
        shutil.rmtree(self._base_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<EtcdCluster {self.urls}>"


def gateway_post(
    url: str, path: str, body: dict[str, Any], timeout: float = 10.0
) -> Any:
    """
    One call to an etcd member's JSON gateway, as an operator's tool makes it.
    """
    request = urllib.request.Request(
        f"{url}{path}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def read_key(
    url: str, key: str, revision: int = 0, serializable: bool = False
) -> dict[str, Any] | None:
    """
    The C{mvccpb.KeyValue} of C{key} straight from one member (value
    decoded from base64 and parsed as JSON), or C{None}.

    @param revision: read at this revision (0: the latest).
    @param serializable: answer from the member's own copy, without asking
        the leader (shows what that member has applied).
    """
    body: dict[str, Any] = {"key": base64.b64encode(key.encode()).decode()}
    if revision:
        body["revision"] = revision
    if serializable:
        body["serializable"] = True
    kvs = gateway_post(url, "/v3/kv/range", body).get("kvs", [])
    if not kvs:
        return None
    found: dict[str, Any] = dict(kvs[0])
    found["value"] = json.loads(base64.b64decode(found.get("value", "")))
    return found
