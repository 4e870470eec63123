# -*- test-case-name: tests.test_soak_smoke -*-
"""
Soak: wardled under mixed traffic for minutes, with etcd restarted in the
middle, then checked for lost writes, missed events, memory growth and
errors outside the outage.

It starts its own etcd, a PKI and one C{twistd wardled} on loopback, and
for C{--duration} seconds (default 600) runs at once:

  - a writer, C{--rate} writes/s in all (default 50) over a few keep-alive
    connections: creates, updates (PUT with the last acknowledged
    resourceVersion) and deletes of Flunders in C{--namespaces} namespaces
    (default 4), each held near C{--objects} objects;
  - a lister, C{--list-rate} lists/s (default 5): whole lists and walks of
    pages (C{limit} and C{continue}) in turn;
  - C{--watchers} watchers (default 200, HTTP/1.1 with a client
    certificate) spread over the namespaces, in C{--client-processes}
    processes: each lists, watches (asking, as client-go's reflector does,
    to be ended after C{--watch-timeout} to twice as many seconds, default
    120), watches again from its last resourceVersion when a stream ends,
    and lists again after a 410;
  - at C{--outage-at} of the run (default half-way) etcd gets SIGTERM
    (C{--etcd-kill SIGKILL} for a crash), stays down C{--etcd-down} seconds
    and is started again on the same data directory; the window from the
    signal to wardled's C{/readyz} answering 200 again is recorded;
  - wardled's RSS is read every C{--rss-interval} seconds.

Then it checks, printing a PASS or FAIL line each (and everything as JSON
with C{--json PATH}):

  - no acknowledged write lost: every object's last 2xx write is what a
    final consistent list shows (a create or update with that
    resourceVersion, a delete gone; an object whose later write got a 5xx
    or no answer may show that write's outcome too);
  - no watcher missed an event without a 410: every acknowledged write in
    the stretches a watcher's epochs covered arrived, once, in order;
  - RSS flat after warm-up: the last sample is less than C{--rss-limit}
    percent (default 5) above the first one after the warm-up.  wardled's
    watch history (C{--watch-history} events, its default 10,000) holds
    about 4 KiB per event and fills at the write rate (200 s at 50 writes/s),
    so the warm-up lasts until that many writes were acknowledged, plus
    L{HISTORY_SETTLE} seconds, and at least C{--warmup} seconds (default a
    fifth of the run);
  - no 5xx (and no request left without an answer) outside the outage
    window widened by C{--grace} seconds (default 10) on each side.

It also reports, per operation, the requests by status class, successes
per second and latency percentiles; wardled's RSS from the end of the
outage window on (a step while etcd was away is not a leak); the CPU
used; and how far the writer fell behind its schedule (the clients must
not be the bottleneck).  The exit status is 1 when a check failed.

With C{--backend embedded} wardled keeps its objects in its embedded store
instead and nothing is restarted (there is no etcd; restarting wardled
would cut every watch and start a new process whose memory is another
series), so no 5xx at all is allowed.

Run it from the repository root (not part of C{make test})::

    python -m bench.soak [--duration 600] [--watchers 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import attrs

if not __package__:  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._http import Endpoint
from bench._options import add_common_options, require_at_least_one
from bench._proc import (
    CpuSnapshot,
    CpuUsage,
    machine_description,
    raise_open_files_limit,
    rss_bytes,
)
from bench._report import rst_table
from bench._soak_checks import (
    OPERATION_HEADER,
    Check,
    ErrorWindows,
    OperationFigures,
    RssTrend,
    WatchTotals,
    WriteAudit,
    audit_writes,
    drain_targets,
    errors_check,
    expected_events,
    operation_figures,
    rss_check,
    watch_check,
    writes_check,
)
from bench._soak_load import (
    ConnectionPool,
    Lister,
    Workload,
    Writer,
    final_objects,
)
from bench._soak_record import CREATE, DELETE, UPDATE, Recorder
from bench._soak_watch import WatcherSummary, WatchPlan, run_watch_worker
from bench._stack import Stack, running_stack
from bench._workers import Worker, await_ready, shares, start_worker
from tests.etcdserver import EtcdServer, etcd_binary
from tests.waiting import poll, poll_async

SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
_MIB = 1024 * 1024
_READY_POLL = 0.1
_READY_TIMEOUT = 60.0
_STOP_TIMEOUT = 15.0
_MESSAGE_SLACK = 30.0

#: wardled's default watch history per resource (its --watch-cache-sizes).
DEFAULT_WATCH_HISTORY = 10_000
#: Seconds after the watch history is full before RSS counts.
HISTORY_SETTLE = 10.0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the command line ----------------------------------------------------------


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    The command line.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Soak wardled: mixed traffic, an etcd restart, then checks.",
    )
    add = parser.add_argument
    add("--duration", type=float, default=600.0, help="seconds of traffic (600)")
    add("--watchers", type=int, default=200, help="watch streams (200)")
    add("--rate", type=float, default=50.0, help="writes per second in all (50)")
    add("--list-rate", type=float, default=5.0, help="lists per second (5)")
    add("--namespaces", type=int, default=4, help="namespaces written (4)")
    add("--objects", type=int, default=100, help="objects held per namespace (100)")
    add("--page-size", type=int, default=20, help="limit of a paged list (20)")
    add("--writer-connections", type=int, default=32, help="writer keep-alives (32)")
    add("--list-connections", type=int, default=4, help="lister keep-alives (4)")
    add("--client-processes", type=int, default=2, help="watcher processes (2)")
    add("--connect-concurrency", type=int, default=32, help="watch set-ups at once")
    add(
        "--watch-timeout",
        type=float,
        default=120.0,
        help="watches ask to be ended after this many seconds to twice as many, "
        "then watch again (client-go's reflector does so; 0: never; 120)",
    )
    add("--backend", choices=("etcd", "embedded"), default="etcd")
    add(
        "--etcd-kill",
        choices=sorted(SIGNALS),
        default="SIGTERM",
        help="how etcd is stopped in the middle (SIGTERM)",
    )
    add("--etcd-down", type=float, default=2.0, help="seconds etcd stays down (2)")
    add(
        "--outage-at",
        type=float,
        default=0.5,
        help="when etcd is stopped, as a fraction of the run (0.5)",
    )
    add("--grace", type=float, default=10.0, help="seconds around the outage (10)")
    add(
        "--warmup",
        type=float,
        default=None,
        help="least seconds of RSS that do not count (default: a fifth of the run)",
    )
    add(
        "--watch-history",
        type=int,
        default=DEFAULT_WATCH_HISTORY,
        help="wardled's watch history length for Flunders: the warm-up lasts "
        f"until it is full (default {DEFAULT_WATCH_HISTORY}; 0: ignore it)",
    )
    add("--rss-interval", type=float, default=5.0, help="seconds between RSS reads")
    add("--rss-limit", type=float, default=5.0, help="allowed RSS growth, %% (5)")
    add(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds for watchers to catch up",
    )
    add("--seed", type=int, default=1, help="seed of the write mix")
    add_common_options(parser)
    options = parser.parse_args(argv)
    require_at_least_one(
        parser,
        options,
        (
            "watchers",
            "namespaces",
            "objects",
            "page_size",
            "writer_connections",
            "list_connections",
            "client_processes",
            "connect_concurrency",
        ),
    )
    if (
        min(options.duration, options.rate, options.list_rate, options.rss_interval)
        <= 0
    ):
        parser.error(
            "--duration, --rate, --list-rate and --rss-interval must be positive"
        )
    if not 0 < options.outage_at < 1:
        parser.error("--outage-at must be between 0 and 1")
    if options.warmup is None:
        options.warmup = options.duration / 5
    return options


# -- the servers ---------------------------------------------------------------


@attrs.frozen
class Outage:
    """
    The etcd restart, in seconds since the traffic started.

    @ivar signal: how etcd was stopped.
    @ivar stopped: when the signal was sent.
    @ivar healthy: when etcd answered its health check again.
    @ivar ready: when wardled's C{/readyz} answered 200 again (C{None}: not
        within a minute).
    """

    signal: str
    stopped: float
    healthy: float
    ready: float | None

    @property
    def window(self) -> tuple[float, float]:
        """
        From the signal to wardled being ready (or etcd healthy).
        """
        return self.stopped, self.ready if self.ready is not None else self.healthy

    def as_json(self) -> dict[str, object]:
        return {
            "signal": self.signal,
            "stopped_s": round(self.stopped, 2),
            "etcd_healthy_s": round(self.healthy, 2),
            "wardled_ready_s": None if self.ready is None else round(self.ready, 2),
        }


def restart_etcd(etcd: EtcdServer, sig: signal.Signals, down: float) -> float:
    """
    Send C{sig} to etcd, wait until it has exited, keep it down C{down}
    seconds, start it again on the same data (blocking; run in a thread).

    @return: when it was healthy again (C{time.monotonic()}).
    """
    os.kill(etcd.pid, sig)
    poll(lambda: not etcd.running, _STOP_TIMEOUT)
    time.sleep(down)
    etcd.restart()
    return time.monotonic()


async def wait_ready(pool: ConnectionPool, timeout: float = _READY_TIMEOUT) -> bool:
    """
    Poll wardled's C{/readyz} until it answers 200.
    """

    async def ready() -> bool:
        response = await pool.send(await pool.acquire(), "GET", "/readyz")
        return not isinstance(response, str) and response[0] == 200

    return await poll_async(ready, timeout, _READY_POLL)


# -- the watcher processes -----------------------------------------------------


@attrs.frozen
class WatcherProcess:
    """
    A watcher process (its pipe) and what it runs.
    """

    worker: Worker
    plan: WatchPlan


def start_watchers(
    endpoint: Endpoint, namespaces: Sequence[str], options: argparse.Namespace
) -> tuple[list[WatcherProcess], int, list[str]]:
    """
    Start the watcher processes; wait until their watches are established.

    @return: the processes, the watches established and the errors.
    """
    assignments = [namespaces[i % len(namespaces)] for i in range(options.watchers)]
    started = []
    offset = 0
    for count in shares(options.watchers, options.client_processes):
        plan = WatchPlan(
            endpoint,
            tuple(assignments[offset : offset + count]),
            connect_concurrency=options.connect_concurrency,
            watch_timeout=options.watch_timeout,
        )
        offset += count
        started.append(WatcherProcess(start_worker(run_watch_worker, (plan,)), plan))
    established, errors = await_ready(
        [watcher.worker for watcher in started],
        started[0].plan.connect_timeout + _MESSAGE_SLACK,
    )
    return started, established, errors


def collect_watchers(
    watchers: Sequence[WatcherProcess],
    targets: dict[str, int],
    expected: dict[str, Any],
    timeout: float,
) -> tuple[list[WatcherSummary], Recorder]:
    """
    Tell every watcher process to drain and judge; gather the summaries
    and what their requests met.
    """
    for watcher in watchers:
        mine = {ns: expected.get(ns, []) for ns in set(watcher.plan.namespaces)}
        watcher.worker.send(("drain", targets, mine, timeout))
    summaries: list[WatcherSummary] = []
    recorder = Recorder()
    deadline = time.monotonic() + timeout + _MESSAGE_SLACK
    for watcher in watchers:
        message = watcher.worker.receive(max(deadline - time.monotonic(), 0.0))
        if message is not None and message[0] == "result":
            summaries.extend(message[1])
            recorder.merge(message[2])
    return summaries, recorder


# -- the traffic -----------------------------------------------------------------


@attrs.define
class LoadResult:
    """
    What the writer, the lister and the samplers did.

    @ivar started: when the traffic started (C{time.monotonic()}).
    @ivar elapsed: seconds of traffic (up to the last write's answer).
    @ivar writer_max_lag: the longest a write waited for a free connection.
    @ivar writer_max_lag_at: when that write was due, seconds since start.
    @ivar writer_late: writes sent more than a second behind schedule.
    @ivar final: every object's resourceVersion in the final consistent
        lists, by index (C{None}: the lists failed).
    @ivar cpu: cores used on average by wardled, by the soak's clients and
        by the rest of the machine (etcd included).
    """

    started: float
    elapsed: float
    workload: Workload
    recorder: Recorder
    lister: Lister
    writer_max_lag: float
    writer_max_lag_at: float
    writer_late: int
    rss: list[tuple[float, int]]
    outage: Outage | None
    final: dict[int, int] | None
    final_error: str | None
    cpu: dict[str, float] = attrs.Factory(dict)


async def sample_rss(
    pid: int, started: float, interval: float, samples: list[tuple[float, int]]
) -> None:
    """
    Append C{(seconds since start, RSS)} of C{pid} every C{interval}
    seconds until cancelled.
    """
    while True:
        samples.append((time.monotonic() - started, rss_bytes(pid)))
        await asyncio.sleep(interval)


async def disrupt(
    stack: Stack, options: argparse.Namespace, started: float, probe: ConnectionPool
) -> Outage | None:
    """
    At C{--outage-at} of the run restart etcd; record the window.
    """
    if stack.etcd is None:
        return None
    await asyncio.sleep(
        started + options.outage_at * options.duration - time.monotonic()
    )
    loop = asyncio.get_running_loop()
    stopped = time.monotonic()
    _log(f"  {stopped - started:.1f} s: etcd {options.etcd_kill}")
    healthy = await loop.run_in_executor(
        None, restart_etcd, stack.etcd, SIGNALS[options.etcd_kill], options.etcd_down
    )
    ready = await wait_ready(probe)
    ready_at = time.monotonic() if ready else None
    outage = Outage(
        options.etcd_kill,
        stopped - started,
        healthy - started,
        None if ready_at is None else ready_at - started,
    )
    _log(f"  etcd healthy at {outage.healthy:.1f} s; {_ready_text(outage)}")
    return outage


async def final_lists(
    lists: ConnectionPool, probe: ConnectionPool, namespaces: Sequence[str]
) -> tuple[dict[int, int] | None, str | None]:
    """
    Once wardled is ready, a consistent list of every namespace.

    @return: every object's resourceVersion by index, or C{None} and why.
    """
    if not await wait_ready(probe):
        return None, "wardled not ready for the final lists"
    found: dict[int, int] = {}
    try:
        for namespace in namespaces:
            found.update(await final_objects(lists, namespace))
    except RuntimeError as error:
        return None, str(error)
    return found, None


async def run_load(
    stack: Stack, namespaces: Sequence[str], options: argparse.Namespace
) -> LoadResult:
    """
    The writer, the lister, the RSS sampler and the etcd restart, side by
    side for C{--duration} seconds; then one more create per namespace
    (the watchers' drain target) and the final consistent lists.
    """
    recorder = Recorder()
    writes = ConnectionPool(stack.endpoint, options.writer_connections)
    lists = ConnectionPool(stack.endpoint, options.list_connections)
    probe = ConnectionPool(stack.endpoint, 1)
    for pool in (writes, lists, probe):
        await pool.open()
    workload = Workload(namespaces, options.objects, options.seed)
    writer = Writer(writes, workload, recorder)
    lister = Lister(lists, recorder, namespaces, options.page_size)
    rss: list[tuple[float, int]] = []
    started = time.monotonic()
    until = started + options.duration
    sampler = asyncio.create_task(
        sample_rss(stack.wardled.pid, started, options.rss_interval, rss)
    )
    outage_task = asyncio.create_task(disrupt(stack, options, started, probe))
    try:
        await asyncio.gather(
            writer.run(options.rate, started, until),
            lister.run(options.list_rate, started, until),
        )
        outage = await outage_task
        for namespace in namespaces:
            await writer.create_until_acknowledged(namespace)
        elapsed = time.monotonic() - started
    finally:
        sampler.cancel()
        outage_task.cancel()
    final, final_error = await final_lists(lists, probe, namespaces)
    for pool in (writes, lists, probe):
        await pool.close()
    return LoadResult(
        started,
        elapsed,
        workload,
        recorder,
        lister,
        writer.max_lag,
        writer.max_lag_due - started,
        writer.late,
        rss,
        outage,
        final,
        final_error,
    )


# -- the verdicts and the report -------------------------------------------------


@attrs.frozen
class Verdict:
    """
    Everything judged after the run.

    @ivar history_full: when wardled's watch history was full (seconds
        since the start; C{None}: never).
    @ivar rss_after_outage: RSS from the end of the outage window (grace
        included) on, to tell a step during the outage from a steady
        growth (C{None}: no outage, or it ended too late).
    """

    audit: WriteAudit | None
    watch: WatchTotals
    rss: RssTrend
    windows: ErrorWindows
    operations: dict[str, OperationFigures]
    checks: list[Check]
    history_full: float | None
    rss_after_outage: RssTrend | None


def judge_run(
    load: LoadResult,
    summaries: Sequence[WatcherSummary],
    watch_recorder: Recorder,
    options: argparse.Namespace,
) -> Verdict:
    """
    Run the four checks and compute the figures.
    """
    audit = (
        None if load.final is None else audit_writes(load.workload.records, load.final)
    )
    watch = WatchTotals.of(summaries)
    warmup, history_full = warmup_seconds(load, options)
    rss = RssTrend.of(load.rss, warmup)
    window = None if load.outage is None else load.outage.window
    failures = [*load.recorder.failures, *watch_recorder.failures]
    windows = ErrorWindows.of(failures, load.started, window, options.grace)
    everything = Recorder()
    everything.merge(load.recorder)
    everything.merge(watch_recorder)
    checks = [
        writes_check(audit)
        if audit is not None
        else Check(
            "no acknowledged write lost", False, f"no final list: {load.final_error}"
        ),
        watch_check(watch, options.watchers),
        rss_check(rss, options.rss_limit, history_full),
        errors_check(windows),
    ]
    operations = operation_figures(everything, load.elapsed)
    after_outage = None
    if window is not None:
        settled = max(warmup, window[1] + options.grace)
        if sum(at >= settled for at, _ in load.rss) >= 2:
            after_outage = RssTrend.of(load.rss, settled)
    return Verdict(
        audit, watch, rss, windows, operations, checks, history_full, after_outage
    )


def warmup_seconds(
    load: LoadResult, options: argparse.Namespace
) -> tuple[float, float | None]:
    """
    How long RSS does not count: C{--warmup}, or longer until wardled's
    watch history was full (C{--watch-history} acknowledged writes) plus
    L{HISTORY_SETTLE}.

    @return: the warm-up and when the history was full (C{None}: never
        during the run, or ignored).
    """
    history = options.watch_history
    acks = load.workload.acks
    if history <= 0 or len(acks) < history:
        return options.warmup, None
    full = acks[history - 1].acked - load.started
    return max(options.warmup, full + HISTORY_SETTLE), full


def _acks_by_operation(load: LoadResult) -> Counter[str]:
    return Counter(ack.operation for ack in load.workload.acks)


def summary_rows(
    load: LoadResult, verdict: Verdict, options: argparse.Namespace
) -> list[tuple[str, str]]:
    """
    The soak's figures, one row each (the README's table).
    """
    acks = _acks_by_operation(load)
    sent = sum(
        verdict.operations[op].requests
        for op in (CREATE, UPDATE, DELETE)
        if op in verdict.operations
    )
    lists = verdict.operations.get("list")
    pages = verdict.operations.get("list-page")
    watch = verdict.watch
    rss = verdict.rss
    windows = verdict.windows
    audit = verdict.audit
    rows = [
        ("duration", f"{load.elapsed:,.0f} s"),
        (
            "writes acknowledged",
            (
                f"{sum(acks.values()):,} of {sent:,} sent (create {acks[CREATE]:,}, "
                f"update {acks[UPDATE]:,}, delete {acks[DELETE]:,}); "
                f"{math.ceil(options.rate * options.duration):,} due"
            ),
        ),
        (
            "lists",
            (
                f"{0 if lists is None else lists.ok:,} whole, "
                f"{load.lister.walks:,} paged walks "
                f"({0 if pages is None else pages.ok:,} pages)"
            ),
        ),
        (
            "watchers",
            (
                f"{watch.watchers} ({watch.relists} re-lists after 410, "
                f"{watch.rewatches} re-watches)"
            ),
        ),
        (
            "events delivered",
            f"{watch.events:,} ({watch.delivered:,} of acknowledged writes)",
        ),
        ("outage window", _outage_cell(load.outage)),
        (
            f"5xx inside / outside window ±{options.grace:g} s",
            f"{windows.server_errors_inside} / {windows.server_errors_outside}",
        ),
        (
            "no response inside / outside",
            f"{windows.no_response_inside} / {windows.no_response_outside}",
        ),
        ("lost writes", "n/a" if audit is None else f"{audit.faults}"),
        ("missed events", f"{watch.missed + watch.mismatched + watch.reordered}"),
        (
            f"RSS after {rss.warmup:.0f} s warm-up / end",
            f"{rss.first / _MIB:.1f} / {rss.last / _MIB:.1f} MiB ({100 * rss.growth:+.1f} %)",
        ),
        ("RSS slope after warm-up", f"{rss.slope / _MIB:+.2f} MiB/min"),
        ("RSS after the outage", _settled_cell(verdict.rss_after_outage)),
        (
            "CPU, cores",
            (
                f"wardled {load.cpu.get('wardled', 0):.2f}, soak clients "
                f"{load.cpu.get('clients', 0):.2f}, rest (etcd included) "
                f"{load.cpu.get('rest', 0):.2f}"
            ),
        ),
        (
            "writer behind schedule",
            (
                f"{load.writer_late:,} writes over 1 s late; at most "
                f"{load.writer_max_lag:.1f} s (at {load.writer_max_lag_at:.0f} s)"
            ),
        ),
    ]
    return rows


def _ready_text(outage: Outage) -> str:
    if outage.ready is None:
        return f"wardled not ready within {_READY_TIMEOUT:g} s"
    return f"wardled ready {outage.ready:.1f} s"


def _settled_cell(trend: RssTrend | None) -> str:
    if trend is None:
        return "n/a"
    return (
        f"{trend.first / _MIB:.1f} / {trend.last / _MIB:.1f} MiB from "
        f"{trend.warmup:.0f} s, slope {trend.slope / _MIB:+.2f} MiB/min"
    )


def _outage_cell(outage: Outage | None) -> str:
    if outage is None:
        return "none (embedded store)"
    start, end = outage.window
    return (
        f"{start:.1f}–{end:.1f} s ({end - start:.1f} s): etcd {outage.signal}, "
        f"healthy {outage.healthy:.1f} s, {_ready_text(outage)}"
    )


def report(
    load: LoadResult,
    verdict: Verdict,
    options: argparse.Namespace,
    machine: dict[str, object],
) -> str:
    """
    The tables and the PASS/FAIL lines.
    """
    machine_line = (
        f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}, "
        f"Python {machine['python']}, etcd {machine['etcd']}; backend {options.backend}; "
        f"{options.rate:g} writes/s, {options.list_rate:g} lists/s, "
        f"{options.watchers} watchers over {options.namespaces} namespaces"
    )
    after = [round(value, 2) for value in os.getloadavg()]
    load_line = f"Load average before: {machine['load_average']}; after: {after}"
    summary = rst_table(summary_rows(load, verdict, options), ("figure", "value"))
    operations = rst_table(
        [figures.row(op) for op, figures in verdict.operations.items()],
        OPERATION_HEADER,
    )
    checks = "\n".join(check.line() for check in verdict.checks)
    return f"{machine_line}\n{load_line}\n\n{summary}\n\n{operations}\n\n{checks}"


def write_json(
    path: str,
    load: LoadResult,
    verdict: Verdict,
    options: argparse.Namespace,
    machine: dict[str, object],
    text: str,
) -> None:
    audit = verdict.audit
    document = {
        "benchmark": "soak",
        "machine": machine,
        "settings": {k: v for k, v in vars(options).items() if k != "json"},
        "passed": all(check.passed for check in verdict.checks),
        "checks": {check.name: check.as_json() for check in verdict.checks},
        "duration_s": round(load.elapsed, 2),
        "writes": dict(_acks_by_operation(load)),
        "write_refusals": load.workload.refusals,
        "writes_due": math.ceil(options.rate * options.duration),
        "writes_late": load.writer_late,
        "writer_max_lag_ms": round(1000 * load.writer_max_lag, 1),
        "writer_max_lag_at_s": round(load.writer_max_lag_at, 1),
        "cpu_cores": load.cpu,
        "paged_walks": load.lister.walks,
        "expired_continues": load.lister.expired,
        "outage": None if load.outage is None else load.outage.as_json(),
        "errors": attrs.asdict(verdict.windows),
        "lost_writes": None if audit is None else attrs.asdict(audit),
        "watch": attrs.asdict(verdict.watch),
        "rss": {
            **verdict.rss.as_json(),
            "watch_history_full_s": verdict.history_full,
            "after_outage": None
            if verdict.rss_after_outage is None
            else {
                ("from_s" if key == "warmup_s" else key): value
                for key, value in verdict.rss_after_outage.as_json().items()
                if key != "samples"
            },
        },
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "operations": {
            op: figures.as_json() for op, figures in verdict.operations.items()
        },
        "table": text,
    }
    with open(path, "w", encoding="utf-8") as output:
        json.dump(document, output, indent=2, default=str)
        output.write("\n")


def soak(options: argparse.Namespace) -> tuple[LoadResult, Verdict]:
    """
    Start everything, run the traffic, judge; stop everything.
    """
    namespaces = [f"soak-{index}" for index in range(options.namespaces)]
    with running_stack(
        options.wardled_arg,
        with_etcd=options.backend == "etcd",
        prefix="wardled-soak-",
    ) as stack:
        _log(
            f"wardled {stack.wardled.url} (pid {stack.wardled.pid}), backend {options.backend}"
        )
        watchers, established, errors = start_watchers(
            stack.endpoint, namespaces, options
        )
        try:
            _log(f"{established} watches established {errors[:3]}")
            _log(f"traffic for {options.duration:g} s")
            before = CpuSnapshot.take()
            load = asyncio.run(run_load(stack, namespaces, options))
            clients = [os.getpid(), *(w.worker.process.pid or 0 for w in watchers)]
            load.cpu = cpu_shares(before, stack.wardled.pid, clients)
            _log(
                f"traffic done; final lists {'failed' if load.final is None else 'read'}"
            )
            summaries, watch_recorder = collect_watchers(
                watchers,
                drain_targets(load.workload.acks),
                expected_events(load.workload.acks),
                options.drain_timeout,
            )
        finally:
            for watcher in watchers:
                watcher.worker.stop()
    return load, judge_run(load, summaries, watch_recorder, options)


def cpu_shares(
    before: CpuSnapshot, wardled_pid: int, client_pids: Sequence[int]
) -> dict[str, float]:
    """
    Cores used since C{before} by wardled, the clients and everything else.
    """
    usage = CpuUsage.between(before, CpuSnapshot.take(), [wardled_pid, *client_pids])
    elapsed = usage.elapsed or 1.0
    clients = sum(usage.of(pid) for pid in client_pids)
    return {
        "wardled": round(usage.of(wardled_pid) / elapsed, 3),
        "clients": round(clients / elapsed, 3),
        "rest": round(usage.other_share, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the soak; print the report; 0 when every check passed, else 1.
    """
    options = parse_options(argv)
    raise_open_files_limit(2 * options.watchers + 1024)
    binary = etcd_binary() if options.backend == "etcd" else "etcd"
    machine = machine_description(binary)
    load, verdict = soak(options)
    text = report(load, verdict, options, machine)
    print(text)
    if options.json:
        write_json(options.json, load, verdict, options, machine, text)
    return 0 if all(check.passed for check in verdict.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
