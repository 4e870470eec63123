# -*- test-case-name: tests.test_bench_smoke -*-
"""
Closed-loop load: C{concurrency} clients each sending one request after the
other as fast as the server answers, for a fixed time or a fixed number of
requests, over HTTP/1.1 (one keep-alive connection per client, as
L{bench._http}) or HTTP/2 (one connection, one stream per client, as
client-go and curl do).

A run notes every request's latency and what the server process(es), etcd,
this client process and the rest of the machine used in CPU (from
C{/proc}), so that a table can say whether the server or the client was
the bottleneck.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

import attrs

from bench._http import Endpoint, HttpError, KeepAliveConnection
from bench._proc import CpuSnapshot, CpuUsage, wait_until_quiet
from bench._report import percentile
from bench._suite_h2 import open_h2

HTTP1 = "HTTP/1.1"
HTTP2 = "HTTP/2"
_REQUEST_TIMEOUT = 30.0
_ERRORS_KEPT = 5
_QUIET_WINDOW = 0.3  # seconds of CPU counting per check for quiet

T = TypeVar("T")

#: Method, path and body of the C{i}-th request.
RequestMaker = Callable[[int], tuple[str, str, bytes]]
#: Called with the index and body of every successful response.
ResponseHook = Callable[[int, bytes], None]


@attrs.frozen
class LoadSpec:
    """
    One closed-loop run.

    @ivar endpoint: the server.
    @ivar protocol: L{HTTP1} or L{HTTP2} (HTTP/2 needs TLS).
    @ivar make_request: the C{i}-th request (C{i} counts from 0).
    @ivar success: the status code of a successful response.
    @ivar concurrency: clients sending at once.
    @ivar duration: stop starting requests after this many seconds.
    @ivar limit: start at most this many requests (C{i < limit}).
    @ivar on_response: called with C{(i, body)} of each success.
    """

    endpoint: Endpoint
    protocol: str
    make_request: RequestMaker
    success: int
    concurrency: int
    duration: float
    limit: int
    on_response: ResponseHook | None = None


@attrs.define
class LoadResult:
    """
    What a run did.

    @ivar completed: successful requests.
    @ivar errors: failed requests (bad status or transport error).
    @ivar first_errors: the first few reasons.
    @ivar elapsed: seconds from the first request to the last answer.
    @ivar latencies: sorted seconds per successful request.
    @ivar server_cpu: CPU seconds of the server process(es).
    @ivar etcd_cpu: CPU seconds of etcd (0 when etcd is the server).
    @ivar client_cpu: CPU seconds of this (client) process.
    @ivar other_share: the rest of the machine in cores.
    """

    completed: int = 0
    errors: int = 0
    first_errors: list[str] = attrs.Factory(list)
    elapsed: float = 0.0
    latencies: list[float] = attrs.Factory(list)
    server_cpu: float = 0.0
    etcd_cpu: float = 0.0
    client_cpu: float = 0.0
    other_share: float = 0.0

    @property
    def per_second(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else math.nan

    def latency_ms(self, fraction: float) -> float:
        return 1000 * percentile(self.latencies, fraction)

    def _per_request_us(self, seconds: float) -> float:
        return 1e6 * seconds / self.completed if self.completed else math.nan

    @property
    def server_cpu_us(self) -> float:
        """
        Server CPU per successful request, in microseconds.
        """
        return self._per_request_us(self.server_cpu)

    @property
    def stack_cpu_us(self) -> float:
        """
        Server plus etcd CPU per successful request, in microseconds.
        """
        return self._per_request_us(self.server_cpu + self.etcd_cpu)

    @property
    def client_share(self) -> float:
        """
        The client process's CPU as a share of one core.
        """
        return self.client_cpu / self.elapsed if self.elapsed > 0 else math.nan

    @property
    def server_share(self) -> float:
        """
        The server's CPU as a share of one core.
        """
        return self.server_cpu / self.elapsed if self.elapsed > 0 else math.nan

    def note_error(self, message: str) -> None:
        self.errors += 1
        if len(self.first_errors) < _ERRORS_KEPT:
            self.first_errors.append(message)

    def as_json(self) -> dict[str, object]:
        return {
            "completed": self.completed,
            "errors": self.errors,
            "first_errors": self.first_errors,
            "elapsed_s": round(self.elapsed, 4),
            "per_second": _rounded(self.per_second, 1),
            "latency_ms": {
                "p50": _rounded(self.latency_ms(0.5), 3),
                "p90": _rounded(self.latency_ms(0.9), 3),
                "p99": _rounded(self.latency_ms(0.99), 3),
                "max": _rounded(self.latency_ms(1.0), 3),
            },
            "server_cpu_us": _rounded(self.server_cpu_us, 1),
            "stack_cpu_us": _rounded(self.stack_cpu_us, 1),
            "server_cpu_share": _rounded(self.server_share, 3),
            "client_cpu_share": _rounded(self.client_share, 3),
            "other_cpu_share": round(self.other_share, 3),
        }


def _rounded(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(value, digits)


class RequestSender(Protocol):
    """
    A connection (or a share of one) that sends requests one at a time.
    """

    async def request(
        self, method: str, path: str, body: bytes = b""
    ) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


async def open_senders(
    endpoint: Endpoint, protocol: str, count: int
) -> list[RequestSender]:
    """
    C{count} request senders: as many HTTP/1.1 keep-alive connections, or
    one HTTP/2 connection shared C{count} times (one stream each).
    """
    if protocol == HTTP2:
        shared: RequestSender = await open_h2(endpoint)
        return [shared] * count
    opened: list[RequestSender] = list(
        await asyncio.gather(
            *(KeepAliveConnection.open(endpoint) for _ in range(count))
        )
    )
    return opened


def close_senders(senders: Iterable[RequestSender]) -> None:
    """
    Close every connection (once each).
    """
    for sender in {id(sender): sender for sender in senders}.values():
        sender.close()


async def _worker(
    spec: LoadSpec,
    client: RequestSender,
    indexes: itertools.count[int],
    deadline: float,
    result: LoadResult,
) -> None:
    while time.monotonic() < deadline:
        index = next(indexes)
        if index >= spec.limit:
            return
        method, path, body = spec.make_request(index)
        started = time.monotonic()
        try:
            status, payload = await asyncio.wait_for(
                client.request(method, path, body), _REQUEST_TIMEOUT
            )
        except (OSError, asyncio.IncompleteReadError, HttpError, TimeoutError) as error:
            result.note_error(f"{method} {path}: {error!r}")
            return  # this client's connection is unusable
        if status != spec.success:
            result.note_error(f"{method} {path}: HTTP {status} {payload[:160]!r}")
            continue
        result.latencies.append(time.monotonic() - started)
        result.completed += 1
        if spec.on_response is not None:
            spec.on_response(index, payload)


async def run_load(spec: LoadSpec, senders: Sequence[RequestSender]) -> LoadResult:
    """
    Run C{spec} over already open C{senders} (one per concurrent client).
    """
    result = LoadResult()
    indexes = itertools.count()
    started = time.monotonic()
    deadline = started + spec.duration
    await asyncio.gather(
        *(_worker(spec, client, indexes, deadline, result) for client in senders[: spec.concurrency])
    )
    result.elapsed = time.monotonic() - started
    result.latencies.sort()
    return result


@attrs.frozen
class Accounting:
    """
    Whose CPU a run charges to whom.

    @ivar server_pids: the serving process(es).
    @ivar etcd_pid: etcd (may be among C{server_pids}).
    @ivar own_pids: other long-lived processes of the benchmark (idle
        servers): never counted as "other" load.
    """

    server_pids: tuple[int, ...]
    etcd_pid: int
    own_pids: tuple[int, ...] = ()


async def measure_load(
    spec: LoadSpec, senders: Sequence[RequestSender], accounting: Accounting
) -> LoadResult:
    """
    L{run_load}, with the CPU the run cost filled in (connections are
    already open: handshakes are not counted).
    """
    me = os.getpid()
    servers = set(accounting.server_pids)
    watched = {me, accounting.etcd_pid, *servers, *accounting.own_pids}
    before = CpuSnapshot.take()
    result = await run_load(spec, senders)
    usage = CpuUsage.between(before, CpuSnapshot.take(), watched)
    result.server_cpu = sum(usage.of(pid) for pid in servers)
    if accounting.etcd_pid not in servers:
        result.etcd_cpu = usage.of(accounting.etcd_pid)
    result.client_cpu = usage.of(me)
    result.other_share = usage.other_share
    return result


async def measure_on_new_connections(spec: LoadSpec, accounting: Accounting) -> LoadResult:
    """
    L{measure_load} over C{spec.concurrency} connections opened for it
    (and closed after).
    """
    senders = await open_senders(spec.endpoint, spec.protocol, spec.concurrency)
    try:
        return await measure_load(spec, senders, accounting)
    finally:
        close_senders(senders)


def run_quietly(
    attempt: Callable[[int], T],
    busy_share: Callable[[T], float],
    quiet_limit: float,
    quiet_wait: float,
    retries: int,
    log: Callable[[str], None],
) -> T:
    """
    Run C{attempt(number)} once the machine is quiet; run it again (up to
    C{retries} times) while other processes used more than C{quiet_limit}
    of a core during it, unless the machine never got quiet before it
    (the load is lasting: another try would meet it too); keep the
    quietest attempt.

    @param busy_share: how much of a core the rest of the machine used
        during an attempt.
    @param quiet_wait: the longest wait for quiet before each attempt (0:
        do not wait).
    """
    best: T | None = None
    best_share = math.inf
    for number in range(retries + 1):
        busy_before = 0.0
        if quiet_wait > 0:
            busy_before = wait_until_quiet(
                [os.getpid()], quiet_limit, quiet_wait, _QUIET_WINDOW
            )
        outcome = attempt(number)
        share = busy_share(outcome)
        if share < best_share:
            best, best_share = outcome, share
        if share <= quiet_limit:
            break
        lasting = busy_before > quiet_limit
        again = "again" if number < retries and not lasting else "kept"
        log(f"  others used {100 * share:.0f}% of a core: {again}")
        if lasting:
            break
    assert best is not None
    return best
