# -*- test-case-name: tests.test_bench_smoke -*-
"""
The benchmark suite (C{make bench}): wardled side by side with raw etcd,
measured in one run on one machine.

It starts etcd, a PKI, wardled on that etcd and wardled on its embedded
store (and stops them all at the end), then measures, each as the median
(min–max) of C{--rounds} rounds:

  - baselines at 32 clients over HTTP/1.1 and HTTP/2: the client's own
    ceiling (wardled's C{GET /healthz}) and a bare Klein TLS hello-world
    (L{bench._hello}, C{GET /hello}, client certificates), the floor for
    wardled's GET;
  - create, get, update and delete over HTTP/1.1 and HTTP/2 at 1 and 32
    concurrent clients (TLS with a client certificate), beside the same
    write or read straight on etcd's JSON gateway, etcd alone doing the
    calls wardled makes (transactions, with wardled's watch open:
    L{bench._suite_etcdwrites}) and C{etcdctl check perf}'s ceiling;
  - lists of 100, 1,000 and 10,000 Flunders beside etcd's range of the same
    keys and C{json.dumps} of the same items, and the memory the cache of
    them costs;
  - watch fan-out to 1, 100 and 1,000 watchers beside etcd's own
    (L{bench.watch_fanout}'s phases), with RSS per idle watcher;
  - GET and create with 1 and 2 worker processes (C{--workers}).

It prints reStructuredText tables (ratios wardled / etcd) and issue 8's
targets with a verdict on each, writes every round as JSON (C{--json}) and
PNG plots (C{--plots DIR}, needs matplotlib: the C{bench} extra).  Run from
the repository root::

    python -m bench.suite [--quick | --smoke] [--json out.json] [--plots dir]

A benchmark, not a test: it never fails on a target.  On a shared machine
its numbers are only as good as the machine is quiet; cells during which
other processes used more than C{--quiet-limit} of a core are run again.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import attrs

if not __package__:  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import plots
from bench._hello import HELLO_PATH
from bench._http import Endpoint
from bench._proc import machine_description, raise_open_files_limit
from bench._report import Comparison, rst_table
from bench._suite_crud import (
    CrudTarget,
    etcd_target,
    run_cell,
    wardled_target,
)
from bench._suite_etcdwrites import etcd_txn_target
from bench._suite_lists import (
    ListTarget,
    dumps_seconds,
    fill,
    list_repeats,
    measure_list,
    with_json_sizes,
)
from bench._suite_load import (
    HTTP1,
    HTTP2,
    Accounting,
    LoadResult,
    LoadSpec,
    measure_on_new_connections,
    run_quietly,
)
from bench._suite_options import parse_suite_options
from bench._suite_report import (
    BARE_KLEIN,
    BASELINE_CLIENTS,
    BASELINE_HEADER,
    CRUD_HEADER,
    ETCD_CALLS_HEADER,
    ETCD_CALLS_LEGEND,
    ETCD_CALLS_TITLE,
    HEALTHZ,
    LATENCY_HEADER,
    LIST_HEADER,
    MEMORY_HEADER,
    WORKERS_HEADER,
    CheckPerf,
    SuiteResults,
    WorkersRun,
    bare_klein_json,
    baseline_rows,
    ceiling_json,
    crud_json,
    crud_rows,
    etcd_calls_json,
    etcd_calls_rows,
    latency_rows,
    list_json,
    list_rows,
    memory_rows,
    watch_tables,
    workers_json,
    workers_rows,
)
from bench._suite_servers import (
    HelloServer,
    SuiteServers,
    endpoint_of,
    process_tree,
    running_hello,
    running_suite_servers,
    start_wardled,
    stop_wardled,
)
from bench._suite_targets import Verdict, verdicts
from bench._suite_watch import run_watch
from bench.watch_fanout import LEGEND as WATCH_LEGEND
from tests.etcdserver import etcd_binary
from tests.harness import WardledProcess

ETCDCTL = "/usr/bin/etcdctl"
CHECK_PERF_TIMEOUT = 180.0
_THROUGHPUT = re.compile(r"Throughput (?:is|too low:) (\d+) writes/s")
_WARM_UP_SECONDS = 0.3


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _busiest(results: dict[str, LoadResult]) -> float:
    return max((result.other_share for result in results.values()), default=0.0)


def _quietly(
    options: argparse.Namespace, attempt: _Attempt
) -> dict[str, LoadResult]:
    return run_quietly(
        attempt,
        _busiest,
        options.quiet_limit,
        options.quiet_wait,
        options.retries,
        _log,
    )


class _Attempt:
    """
    One CRUD cell, run again under a new tag on each attempt.
    """

    def __init__(
        self,
        target: CrudTarget,
        protocol: str,
        concurrency: int,
        seconds: float,
        tag: str,
        operations: tuple[str, ...] | None = None,
    ) -> None:
        self._args = (target, protocol, concurrency, seconds)
        self._tag = tag
        self._operations = operations

    def __call__(self, number: int) -> dict[str, LoadResult]:
        tag = f"{self._tag}-a{number}"
        if self._operations is None:
            return run_cell(*self._args, tag)
        return run_cell(*self._args, tag, self._operations)


def _short(protocol: str) -> str:
    return "h2" if protocol == HTTP2 else "h1"


# -- sections ---------------------------------------------------------------


@attrs.frozen
class _Baseline:
    """
    One baseline server: C{GET path} at 32 clients over both protocols.

    @ivar rounds: where its results go, by protocol.
    """

    name: str
    endpoint: Endpoint
    path: str
    accounting: Accounting
    rounds: dict[str, list[LoadResult]]


async def _measure_baseline(
    baseline: _Baseline, protocol: str, seconds: float
) -> LoadResult:
    spec = LoadSpec(
        baseline.endpoint,
        protocol,
        lambda i: ("GET", baseline.path, b""),
        200,
        BASELINE_CLIENTS,
        seconds,
        1 << 60,
    )
    return await measure_on_new_connections(spec, baseline.accounting)


def _baseline_attempt(
    baseline: _Baseline, protocol: str, seconds: float, number: int
) -> LoadResult:
    return asyncio.run(_measure_baseline(baseline, protocol, seconds))


def baseline_servers(
    servers: SuiteServers, hello: HelloServer, results: SuiteResults
) -> list[_Baseline]:
    """
    wardled's C{/healthz} (the client's ceiling: it still asks etcd) and
    the bare Klein TLS hello-world's C{/hello} (the floor for wardled's
    GET), both over TLS presenting the admin certificate.
    """
    own = (*servers.own_pids(), hello.pid)
    return [
        _Baseline(
            HEALTHZ,
            servers.endpoint(servers.wardled),
            "/healthz",
            Accounting((servers.wardled.pid,), servers.etcd_pid, own),
            results.ceiling,
        ),
        _Baseline(
            BARE_KLEIN,
            endpoint_of(hello.url, servers.tls),
            HELLO_PATH,
            Accounting((hello.pid,), servers.etcd_pid, own),
            results.bare_klein,
        ),
    ]


def measure_baselines(
    servers: SuiteServers, options: argparse.Namespace, results: SuiteResults
) -> None:
    """
    The baselines at 32 clients, C{--rounds} times, servers and protocols
    alternating within a round: how many requests per second a core of
    client manages, and what a bare Klein TLS app serves on this machine.
    """
    with running_hello(servers.pki, servers.tls, servers.work_dir) as hello:
        results.bare_klein_body_bytes = hello.body_bytes
        baselines = baseline_servers(servers, hello, results)
        warm_up = min(_WARM_UP_SECONDS, options.op_seconds)
        for protocol in (HTTP1, HTTP2):  # a fresh process: not recorded
            _baseline_attempt(baselines[-1], protocol, warm_up, 0)
        for number in range(1, options.rounds + 1):
            for baseline in baselines:
                for protocol in (HTTP1, HTTP2):
                    result = run_quietly(
                        functools.partial(
                            _baseline_attempt, baseline, protocol, options.op_seconds
                        ),
                        lambda r: r.other_share,
                        options.quiet_limit,
                        options.quiet_wait,
                        options.retries,
                        _log,
                    )
                    baseline.rounds.setdefault(protocol, []).append(result)
                    _log(
                        f"baseline r{number} {baseline.name} {protocol}: "
                        f"{result.per_second:,.0f} req/s, server "
                        f"{result.server_cpu_us:,.0f} µs/req, client "
                        f"{100 * result.client_share:.0f}% of a core"
                        + (f" ({result.errors} errors)" if result.errors else "")
                    )


def crud_targets(servers: SuiteServers) -> list[CrudTarget]:
    """
    etcd's gateway put-style, etcd's gateway doing wardled's calls, wardled
    on etcd and (if running) wardled embedded.
    """
    own = servers.own_pids()
    both = (HTTP1, HTTP2)
    etcd_accounting = Accounting((servers.etcd_pid,), servers.etcd_pid, own)
    targets = [
        etcd_target(servers.etcd_endpoint, servers.template.value, etcd_accounting),
        etcd_txn_target(
            servers.etcd_endpoint, servers.template.value, etcd_accounting
        ),
        wardled_target(
            "wardled",
            servers.endpoint(servers.wardled),
            both,
            Accounting((servers.wardled.pid,), servers.etcd_pid, own),
        ),
    ]
    if servers.embedded is not None:
        targets.append(
            wardled_target(
                "embedded",
                servers.endpoint(servers.embedded),
                both,
                Accounting((servers.embedded.pid,), servers.etcd_pid, own),
            )
        )
    return targets


def measure_crud(
    servers: SuiteServers, options: argparse.Namespace, results: SuiteResults
) -> None:
    """
    Every target × protocol × concurrency, C{--rounds} times, targets
    alternating within a round.
    """
    targets = crud_targets(servers)
    for target in targets:  # warm-up, not recorded
        for protocol in target.protocols:
            run_cell(target, protocol, 1, _WARM_UP_SECONDS, f"warm-{_short(protocol)}")
    for number in range(1, options.rounds + 1):
        for concurrency in options.concurrency:
            for target in targets:
                for protocol in target.protocols:
                    tag = f"r{number}-c{concurrency}-{_short(protocol)}"
                    attempt = _Attempt(
                        target, protocol, concurrency, options.op_seconds, tag
                    )
                    cell = _quietly(options, attempt)
                    for operation, result in cell.items():
                        key = (target.name, protocol, concurrency, operation)
                        results.crud.setdefault(key, []).append(result)
                    _log(
                        f"crud r{number} {target.name} {protocol} x{concurrency}: "
                        + ", ".join(
                            f"{op} {r.per_second:,.0f}/s"
                            + (f" ({r.errors} errors)" if r.errors else "")
                            for op, r in cell.items()
                        )
                    )


def list_targets(servers: SuiteServers) -> list[ListTarget]:
    """
    wardled (both protocols), embedded (both) and etcd's range.
    """
    own = servers.own_pids()
    targets = [
        ListTarget(
            "etcd",
            HTTP1,
            servers.etcd_endpoint,
            Accounting((servers.etcd_pid,), servers.etcd_pid, own),
        )
    ]
    for name, server in (("wardled", servers.wardled), ("embedded", servers.embedded)):
        if server is None:
            continue
        for protocol in (HTTP1, HTTP2):
            targets.append(
                ListTarget(
                    name,
                    protocol,
                    servers.endpoint(server),
                    Accounting((server.pid,), servers.etcd_pid, own),
                )
            )
    return targets


def _list_attempt(
    target: ListTarget, size: int, repeats: int, key: bytes, number: int
) -> LoadResult:
    return measure_list(target, size, repeats, key)


def measure_lists(
    servers: SuiteServers, options: argparse.Namespace, results: SuiteResults
) -> None:
    """
    Each size, each target, C{--rounds} times; and json.dumps of the same.
    """
    targets = list_targets(servers)
    key = servers.template.key
    for number in range(1, options.rounds + 1):
        for size in options.list_sizes:
            repeats = list_repeats(size, options.list_repeats)
            for target in targets:
                result = run_quietly(
                    functools.partial(_list_attempt, target, size, repeats, key),
                    lambda r: r.other_share,
                    options.quiet_limit,
                    options.quiet_wait,
                    options.retries,
                    _log,
                )
                results.lists.setdefault((target.name, target.protocol, size), []).append(
                    result
                )
                _log(
                    f"list r{number} {size} {target.name} {target.protocol}: "
                    f"{result.latency_ms(0.5):,.1f} ms"
                )
            results.dumps.setdefault(size, []).append(
                dumps_seconds(servers.wardled, size)
            )


def _rejection(error: BaseException) -> str:
    """
    The line of wardled's output that says why it did not start.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "workers" in line.lower() and "usage" not in line.lower():
            return line[:200]
    return (lines[-1] if lines else repr(error))[:200]


def measure_workers(
    servers: SuiteServers, options: argparse.Namespace, results: SuiteResults
) -> None:
    """
    GET and create at 32 clients over HTTP/1.1 with each C{--workers} count
    (C{--workers N} passed only when N > 1; a wardled that rejects the flag
    gives a row with a note).
    """
    for workers in options.workers:
        server = servers.wardled
        extra = None
        note = ""
        if workers > 1:
            try:
                extra = start_wardled(
                    servers.etcd.url,
                    servers.pki,
                    [*options.wardled_arg, "--workers", str(workers)],
                )
            except RuntimeError as error:
                note = f"wardled rejected --workers {workers}: {_rejection(error)}"
                _log(note)
                results.workers.append(WorkersRun(workers, {}, note))
                continue
            server = extra
        try:
            results.workers.append(_workers_run(servers, server, workers, options))
        finally:
            if extra is not None:
                stop_wardled(extra)


def _workers_run(
    servers: SuiteServers,
    server: WardledProcess,
    workers: int,
    options: argparse.Namespace,
) -> WorkersRun:
    accounting = Accounting(
        process_tree(server.pid), servers.etcd_pid, (*servers.own_pids(), server.pid)
    )
    target = wardled_target("wardled", servers.endpoint(server), (HTTP1,), accounting)
    per_operation: dict[str, list[LoadResult]] = {}
    for number in range(1, options.rounds + 1):
        tag = f"w{workers}-r{number}"
        attempt = _Attempt(target, HTTP1, 32, options.op_seconds, tag, ("create", "get"))
        for operation, result in _quietly(options, attempt).items():
            per_operation.setdefault(operation, []).append(result)
    _log(
        f"workers {workers}: "
        + ", ".join(
            f"{op} {rounds[-1].per_second:,.0f}/s" for op, rounds in per_operation.items()
        )
    )
    return WorkersRun(workers, per_operation)


def run_check_perf(servers: SuiteServers, load: str) -> CheckPerf:
    """
    C{etcdctl check perf --load=LOAD} against the suite's etcd (60 s).
    """
    binary = ETCDCTL if os.access(ETCDCTL, os.X_OK) else shutil.which("etcdctl")
    if binary is None:
        return CheckPerf(load, None, None, "etcdctl not installed (etcd-client)")
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("ETCD")
    }
    environment["ETCDCTL_API"] = "3"
    command = [binary, f"--endpoints={servers.etcd.url}", "check", "perf", f"--load={load}"]
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=CHECK_PERF_TIMEOUT,
            env=environment,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return CheckPerf(load, None, None, f"etcdctl check perf failed: {error!r}")
    output = (completed.stdout + completed.stderr).replace("\r", "\n")
    tail = "\n".join(line for line in output.splitlines()[-4:] if line.strip())
    writes = parse_check_perf(output)
    if writes is None:
        return CheckPerf(
            load, None, None, f"no throughput line (exit {completed.returncode})", tail
        )
    passed = completed.returncode == 0
    note = "" if passed else "etcdctl judged it below the load's target rate"
    return CheckPerf(load, writes, passed, note, tail)


def parse_check_perf(output: str) -> float | None:
    """
    The writes/s of C{etcdctl check perf}'s output (its "Throughput is N
    writes/s" or "Throughput too low: N writes/s" line), or C{None}.
    """
    found = _THROUGHPUT.search(output)
    return None if found is None else float(found.group(1))


# -- output -----------------------------------------------------------------


def _machine_line(machine: dict[str, object]) -> str:
    return (
        f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB RAM, Linux {machine['kernel']}, "
        f"Python {machine['python']}, etcd {machine['etcd']}; load average "
        f"before {machine['load_average']}"
    )


def _settings_line(options: argparse.Namespace) -> str:
    return (
        f"Preset {options.preset}: median (min–max) of {options.rounds} round(s); "
        f"CRUD {options.op_seconds:g} s per operation and cell; lists "
        f"{', '.join(f'{size:,}' for size in options.list_sizes)}; watchers "
        f"{', '.join(f'{count:,}' for count in options.watchers)} "
        f"({options.watch_duration:g} s of writes per phase).  wardled: TLS with "
        "a client certificate; etcd: plain HTTP/1.1 on its client port (as "
        "wardled reaches it), data on tmpfs."
    )


def _check_perf_line(perf: CheckPerf | None) -> str:
    if perf is None:
        return "etcdctl check perf: not run."
    if perf.writes_per_second is None:
        if perf.note.startswith("skipped"):
            return f"etcdctl check perf: {perf.note}."
        return f"etcdctl check perf --load={perf.load}: no figure ({perf.note})."
    return (
        f"etcdctl check perf --load={perf.load}: {perf.writes_per_second:,.0f} "
        "writes/s (the gRPC ceiling of this etcd on this machine"
        + (f"; {perf.note}" if perf.note else "")
        + ")."
    )


def _baselines_legend(results: SuiteResults) -> str:
    return (
        f"{HEALTHZ} is the client's ceiling (it still asks etcd); {BARE_KLEIN} "
        "is a bare Klein app (bench/_hello.py: one route, "
        f"{results.bare_klein_body_bytes:,} bytes of JSON, no access log), the "
        "floor for wardled's GET.  Both over TLS with a client certificate."
    )


def _verdict_rows(found: Sequence[Verdict]) -> list[tuple[str, ...]]:
    return [(v.name, v.goal, v.measured, v.word) for v in found]


def render(
    results: SuiteResults,
    machine: dict[str, object],
    options: argparse.Namespace,
    found: Sequence[Verdict],
) -> str:
    """
    The whole report as reStructuredText.
    """
    parts = [_machine_line(machine), _settings_line(options), ""]

    def table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        if rows:
            parts.extend([title, "", rst_table(rows, header), ""])

    baselines = baseline_rows(results)
    table(f"Baselines (GET, {BASELINE_CLIENTS} clients):", BASELINE_HEADER, baselines)
    if baselines:
        parts.extend([_baselines_legend(results), ""])
    table(
        "CRUD throughput, requests/s (ratio: ÷ etcd gateway at the same "
        "concurrency over HTTP/1.1):",
        CRUD_HEADER,
        crud_rows(results),
    )
    table(
        "CRUD latency (median of the rounds' p50 / p99) and CPU per request:",
        LATENCY_HEADER,
        latency_rows(results),
    )
    calls = etcd_calls_rows(results)
    table(ETCD_CALLS_TITLE, ETCD_CALLS_HEADER, calls)
    if calls:
        parts.extend([ETCD_CALLS_LEGEND, ""])
    table(
        "Lists (one client; ms per list: median (min–max) of the rounds' medians):",
        LIST_HEADER,
        list_rows(results),
    )
    if results.watch is not None and results.watch.versus_etcd:
        main, embedded = watch_tables(results.watch)
        parts.extend(["Watch fan-out, wardled on etcd against etcd's gateway:", "", main, ""])
        if embedded:
            parts.extend(["Watch fan-out, wardled embedded against etcd:", "", embedded, ""])
        parts.extend([WATCH_LEGEND, ""])
    table("Cache memory (all listed Flunders):", MEMORY_HEADER, memory_rows(results))
    table(
        "Worker processes (HTTP/1.1, 32 clients):", WORKERS_HEADER, workers_rows(results)
    )
    parts.extend([_check_perf_line(results.check_perf), ""])
    table("Targets (issue 8):", ("target", "goal", "measured", "verdict"), _verdict_rows(found))
    return "\n".join(parts).rstrip() + "\n"


def _watch_json(comparisons: Sequence[Comparison]) -> list[dict[str, Any]]:
    """
    The comparisons as L{bench.watch_fanout} writes them, with the ratios
    (text in its table) as numbers.
    """
    documents = []
    for comparison in comparisons:
        data = comparison.as_json()
        summary: dict[str, dict[str, Any]] = data["summary"]  # type: ignore[assignment]
        for figures in summary.values():
            text = figures.get("ratio")
            figures["ratio"] = float(text) if text not in (None, "n/a") else None
        documents.append(data)
    return documents


def document(
    results: SuiteResults,
    machine: dict[str, object],
    options: argparse.Namespace,
    found: Sequence[Verdict],
    report: str,
) -> dict[str, object]:
    """
    Every figure as JSON.
    """
    watch = results.watch
    return {
        "benchmark": "suite",
        "machine": machine,
        "settings": {k: v for k, v in vars(options).items() if k not in ("json",)},
        "client_ceiling": ceiling_json(results),
        "bare_klein_tls": bare_klein_json(results),
        "crud": crud_json(results),
        "etcd_wardled_calls": etcd_calls_json(results),
        "list": list_json(results),
        "memory": [memory.as_json() for memory in results.memory],
        "watch": {
            "versus_etcd": [] if watch is None else _watch_json(watch.versus_etcd),
            "embedded": [] if watch is None else _watch_json(watch.embedded),
        },
        "workers": workers_json(results),
        "etcdctl_check_perf": (
            None if results.check_perf is None else results.check_perf.as_json()
        ),
        "targets": [verdict.as_json() for verdict in found],
        "section_seconds": results.section_seconds,
        "report": report,
    }


def run_suite(options: argparse.Namespace) -> SuiteResults:
    """
    Start the servers, measure every section, stop the servers.
    """
    results = SuiteResults()
    clock = _SectionClock(results.section_seconds)
    with running_suite_servers(options.wardled_arg, options.embedded) as servers:
        clock.lap("start servers")
        # Memory first, on fresh servers (a heap with room freed by earlier
        # sections would hide growth): the cache, then idle watchers.
        _log("filling the listed namespaces")
        memories = fill(servers, options.list_sizes, _log)
        clock.lap("fill lists")
        results.watch = run_watch(servers, options, _log)
        clock.lap("watch")
        measure_baselines(servers, options, results)
        clock.lap("baselines")
        measure_crud(servers, options, results)
        clock.lap("crud")
        measure_lists(servers, options, results)
        clock.lap("lists")
        results.memory = with_json_sizes(servers, memories, options.list_sizes)
        measure_workers(servers, options, results)
        clock.lap("workers")
        if options.check_perf:
            _log(f"etcdctl check perf --load={options.check_perf_load} (60 s)")
            results.check_perf = run_check_perf(servers, options.check_perf_load)
            clock.lap("etcdctl check perf")
        else:
            reason = "skipped (--smoke or --no-check-perf: it runs for 60 s)"
            results.check_perf = CheckPerf(options.check_perf_load, None, None, reason)
    clock.lap("stop servers")
    return results


class _SectionClock:
    """
    Note how long each section took (in C{seconds}) and log it.
    """

    def __init__(self, seconds: dict[str, float]) -> None:
        self._seconds = seconds
        self._last = time.monotonic()

    def lap(self, section: str) -> None:
        now = time.monotonic()
        self._seconds[section] = round(now - self._last, 1)
        _log(f"[{section}: {now - self._last:.1f} s]")
        self._last = now


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the suite; print the report; return the exit status.
    """
    options = parse_suite_options(argv)
    raise_open_files_limit(2 * max(options.watchers) + 1024)
    machine = machine_description(etcd_binary())
    started = time.monotonic()
    results = run_suite(options)
    found = verdicts(results)
    report = render(results, machine, options, found)
    print(report)
    written: list[str] = []
    if options.plots:
        try:
            data = document(results, machine, options, found, report)
            written = plots.write_plots(data, options.plots)
        except plots.PlotsUnavailable as reason:
            print(f"plots skipped: {reason}")
        else:
            print("plots: " + ", ".join(written))
    if options.json:
        data = document(results, machine, options, found, report)
        data["plots"] = written
        with open(options.json, "w", encoding="utf-8") as output:
            json.dump(data, output, indent=2, default=str)
            output.write("\n")
    _log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
