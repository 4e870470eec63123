"""
One fan-out measurement ("phase"): connect N watchers to a server, note
its memory, run the writer, wait for the watchers to catch up, and read
what everybody received and what it cost.

Watchers live in separate worker processes (see L{bench._watchers} and
L{bench._workers}); the writer runs in this process.  Every wait is
bounded and every worker is ended before a phase returns, whatever
happened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import attrs

from bench._proc import CpuSnapshot, CpuUsage, rss_bytes, wait_until_quiet
from bench._report import Deliveries, PhaseResult, percentile
from bench._watchers import WatchTarget, WorkerResult, run_worker
from bench._workers import Worker, await_ready, shares, start_worker
from bench._writer import WriteResult, WriteTarget, write

_MESSAGE_SLACK = 15.0


@attrs.frozen
class PhaseSettings:
    """
    How every phase runs (the command-line options).

    @ivar duration: seconds the writer writes.
    @ivar client_processes: the most watcher processes per phase.
    @ivar writer_connections: keep-alive connections of the writer.
    @ivar connect_concurrency: watchers being set up at once, per process.
    @ivar connect_timeout: seconds a watcher may take to be established.
    @ivar drain_timeout: seconds to wait, after the last ack, for watchers
        to receive the last write.
    @ivar settle: seconds between connecting the watchers and reading RSS.
    @ivar quiet_limit: share of a core other processes may use before a
        phase starts (and during one, without a retry).
    @ivar quiet_wait: the longest wait for the machine to be that quiet.
    """

    duration: float
    client_processes: int
    writer_connections: int
    connect_concurrency: int
    connect_timeout: float
    drain_timeout: float
    settle: float
    quiet_limit: float
    quiet_wait: float


@attrs.frozen
class PhaseSpec:
    """
    One phase to run.

    @ivar target: C{"wardled"} or C{"etcd"}.
    @ivar watchers: how many watchers.
    @ivar rate: writes per second.
    @ivar watch: how each watcher watches.
    @ivar writer: what the writer writes.
    @ivar server_pid: the process serving the watchers.
    @ivar etcd_pid: etcd's process.
    @ivar own_pids: the benchmark's long-lived processes (etcd, wardled,
        this one): never counted as "other" load.
    """

    target: str
    watchers: int
    rate: float
    watch: WatchTarget
    writer: WriteTarget
    server_pid: int
    etcd_pid: int
    own_pids: tuple[int, ...]


def _start_workers(spec: PhaseSpec, settings: PhaseSettings) -> list[Worker]:
    return [
        start_worker(
            run_worker,
            (
                spec.watch,
                count,
                settings.connect_concurrency,
                settings.connect_timeout,
            ),
        )
        for count in shares(spec.watchers, settings.client_processes)
    ]


def _collect(
    workers: list[Worker], last_revision: int, drain_timeout: float
) -> list[WorkerResult]:
    """
    Ask every worker to drain up to C{last_revision} and gather results.
    """
    for worker in workers:
        worker.send(("drain", last_revision, drain_timeout))
    results = []
    deadline = time.monotonic() + drain_timeout + _MESSAGE_SLACK
    for worker in workers:
        message = worker.receive(max(deadline - time.monotonic(), 0.0))
        if message is not None and message[0] == "result":
            results.append(message[1])
    return results


def _result(
    spec: PhaseSpec,
    connected: int,
    written: WriteResult,
    received: list[WorkerResult],
    usage: CpuUsage,
    rss_growth: int,
    errors: list[str],
) -> PhaseResult:
    receipts = [pair for result in received for pair in result.receipts]
    deliveries = Deliveries.match(receipts, written.acks, written.sends)
    write_latencies = sorted(written.write_latencies)
    return PhaseResult(
        target=spec.target,
        watchers=spec.watchers,
        connected=connected,
        rate=spec.rate,
        writes=len(written.acks),
        write_errors=len(written.errors),
        window=max(written.finished - written.started, 0.0) + 1 / spec.rate,
        cpu_elapsed=usage.elapsed,
        deliveries=deliveries,
        ended_early=sum(result.ended_early for result in received),
        server_cpu=usage.of(spec.server_pid),
        etcd_cpu=usage.of(spec.etcd_pid),
        client_cpu=sum(
            seconds
            for pid, seconds in usage.processes.items()
            if pid not in (spec.server_pid, spec.etcd_pid, os.getpid())
        ),
        kernel_cpu=usage.kernel,
        other_cpu_share=usage.other_share,
        top_others=usage.top_others,
        rss_growth=rss_growth,
        write_latency_p50=percentile(write_latencies, 0.5),
        write_latency_p99=percentile(write_latencies, 0.99),
        writer_max_lag=written.max_lag,
        errors=(errors + written.errors)[:10],
    )


def run_phase(
    spec: PhaseSpec,
    settings: PhaseSettings,
    log: Callable[[str], None],
) -> PhaseResult:
    """
    Measure one fan-out; every worker is ended before this returns.
    """
    # Quiet means everything, the servers too (still closing the previous
    # phase's connections), apart from this process.
    busy = wait_until_quiet([os.getpid()], settings.quiet_limit, settings.quiet_wait)
    log(f"  {spec.target} x{spec.watchers}: machine {100 * busy:.0f}% busy before")
    rss_before = rss_bytes(spec.server_pid)
    connecting = time.monotonic()
    workers = _start_workers(spec, settings)
    try:
        ready_timeout = settings.connect_timeout * 2 + _MESSAGE_SLACK
        connected, errors = await_ready(workers, ready_timeout)
        took = time.monotonic() - connecting
        log(
            f"  {spec.target} x{spec.watchers}: {connected} established in {took:.1f} s"
        )
        time.sleep(settings.settle)
        rss_growth = rss_bytes(spec.server_pid) - rss_before
        pids = {spec.server_pid, spec.etcd_pid, os.getpid(), *spec.own_pids}
        pids.update(w.process.pid for w in workers if w.process.pid is not None)
        before = CpuSnapshot.take()
        written = write(
            spec.writer, spec.rate, settings.duration, settings.writer_connections
        )
        received = _collect(workers, written.last_revision, settings.drain_timeout)
        usage = CpuUsage.between(before, CpuSnapshot.take(), pids)
    finally:
        for worker in workers:
            worker.stop()
    return _result(spec, connected, written, received, usage, rss_growth, errors)
