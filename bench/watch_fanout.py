"""
Watch fan-out: wardled against etcd's own watch, same machine, same run.

For each number of watchers (default 1, 100 and 1,000) this starts that
many concurrent watch streams, runs a writer creating objects at a fixed
rate for a fixed time, and reports:

  - delivered events per second (all watchers together);
  - delivery latency p50/p99, from the writer's ack (the 201 with the new
    resourceVersion, or etcd's put reply with its revision) to the arrival
    of that revision at each watcher;
  - server CPU per delivered event, from C{/proc/<pid>/stat}, and the same
    with etcd's CPU added for wardled (the whole stack);
  - RSS per watcher: the server's RSS with the watchers connected and idle
    minus before they connected, divided by their number (first round of
    each count only: give counts in ascending order, as by default, since
    a server reuses memory freed by earlier, larger phases).

Each number of watchers is measured C{--rounds} times (default 3), wardled
and etcd alternating; the table shows the median and (min–max) of each
figure, and the ratio of the medians.

The baseline is the same fan-out done by etcd itself: as many watchers
C{POST /v3/watch} on etcd's JSON gateway, the writer putting the same bytes
(a Flunder as wardled stores it) at the same rate.  Both are printed side by
side with the ratio wardled / etcd as a reStructuredText table (paste it
into README.rst), and C{--json PATH} writes every figure.

Everything it starts (etcd, a PKI, C{twistd wardled}, watcher processes)
listens on 127.0.0.1 only and is stopped before it exits.  Watchers speak
HTTP/1.1 (TLS with a client certificate to wardled, plain HTTP to etcd as
wardled itself does).  Run it from the repository root::

    python -m bench.watch_fanout [--duration 10] [--json out.json]

This is a benchmark, not a test: it never runs in CI, and on a shared
machine its numbers are only as good as the machine is quiet (phases in
which other processes used more than C{--quiet-limit} of a core are run
again, and the "other load" row shows what was left).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import attrs

if not __package__:  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._http import Endpoint, TlsFiles
from bench._options import parse_options, phase_settings, rate_for
from bench._phase import PhaseSpec, run_phase
from bench._proc import machine_description, raise_open_files_limit
from bench._report import Comparison, PhaseResult, comparison_rows, rst_table
from bench._stack import running_stack
from bench._targets import (
    etcd_first_value,
    etcd_revision,
    etcd_watch,
    etcd_writer,
    flunder,
    flunders_path,
    wardled_watch,
    wardled_writer,
)
from tests.etcdserver import EtcdServer, etcd_binary
from tests.harness import WardledProcess

WARDLED_PREFIX = b"/registry/wardle.example.com/"
WARMUP_NAMESPACE = "bench-warmup"

LEGEND = """\
Latencies run from the writer's ack (wardled's 201, etcd's put reply) to
each watcher's receipt of that revision; negative when the event reached
the watcher before the writer had read its ack.  send→receipt counts from
sending the write instead.  CPU per event is the serving process's CPU
(wardled; etcd for the baseline) over the run, writes included, divided by
the events delivered; "+ etcd" adds etcd's CPU to wardled's.  RSS per
watcher: RSS with the watchers connected and idle minus before, divided by
their number, in the first round only (later rounds reuse memory freed by
earlier ones).  The watcher processes share the machine ("clients CPU")."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@attrs.frozen
class Servers:
    """
    The running etcd and wardled, and how clients reach them.

    @ivar stored_value: the bytes wardled stored for a Flunder (what the
        etcd baseline's writer puts).
    """

    etcd: EtcdServer
    wardled: WardledProcess
    wardled_endpoint: Endpoint
    etcd_endpoint: Endpoint
    etcd_pid: int
    stored_value: bytes


def _endpoint_of(url: str, tls: TlsFiles | None) -> Endpoint:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return Endpoint(host, int(port), tls)


def _warm_up(wardled: WardledProcess, etcd_url: str) -> bytes:
    """
    Create one Flunder through wardled and return the bytes it stored.
    """
    response = wardled.https("POST", flunders_path(WARMUP_NAMESPACE), flunder(0))
    if response.status != 201:
        raise RuntimeError(f"warm-up create: HTTP {response.status} {response.body!r}")
    return etcd_first_value(etcd_url, WARDLED_PREFIX)


@contextmanager
def running_servers(wardled_args: Sequence[str]) -> Iterator[Servers]:
    """
    Start etcd, a PKI and wardled; stop them and remove their files on exit.
    """
    with running_stack(wardled_args, with_etcd=True, prefix="wardled-bench-") as stack:
        etcd = stack.etcd
        assert etcd is not None
        yield Servers(
            etcd=etcd,
            wardled=stack.wardled,
            wardled_endpoint=stack.endpoint,
            etcd_endpoint=_endpoint_of(etcd.url, None),
            etcd_pid=etcd.pid,
            stored_value=_warm_up(stack.wardled, etcd.url),
        )


def _wardled_spec(servers: Servers, watchers: int, rate: float, tag: str) -> PhaseSpec:
    """
    Watch and write Flunders in a new namespace through wardled.
    """
    namespace = f"bench-{tag}"
    listed = servers.wardled.https("GET", flunders_path(namespace)).json()
    resource_version = listed["metadata"]["resourceVersion"]
    endpoint = servers.wardled_endpoint
    return PhaseSpec(
        target="wardled",
        watchers=watchers,
        rate=rate,
        watch=wardled_watch(endpoint, namespace, resource_version),
        writer=wardled_writer(endpoint, namespace),
        server_pid=servers.wardled.pid,
        etcd_pid=servers.etcd_pid,
        own_pids=(servers.wardled.pid, servers.etcd_pid, os.getpid()),
    )


def _etcd_spec(servers: Servers, watchers: int, rate: float, tag: str) -> PhaseSpec:
    """
    Watch and put keys under a new prefix straight on etcd's gateway.
    """
    prefix = f"/bench-fanout/{tag}/".encode()
    endpoint = servers.etcd_endpoint
    start = etcd_revision(servers.etcd.url) + 1
    return PhaseSpec(
        target="etcd",
        watchers=watchers,
        rate=rate,
        watch=etcd_watch(endpoint, prefix, start),
        writer=etcd_writer(endpoint, prefix, servers.stored_value),
        server_pid=servers.etcd_pid,
        etcd_pid=servers.etcd_pid,
        own_pids=(servers.wardled.pid, servers.etcd_pid, os.getpid()),
    )


SpecMaker = Callable[[Servers, int, float, str], PhaseSpec]


def _measure(
    make_spec: SpecMaker,
    servers: Servers,
    watchers: int,
    rate: float,
    round_number: int,
    options: argparse.Namespace,
) -> PhaseResult:
    """
    Run one phase, again (up to C{--retries} times) while something else
    loaded the machine; keep the quietest attempt.
    """
    best: PhaseResult | None = None
    for attempt in range(options.retries + 1):
        tag = f"n{watchers}-r{round_number}-a{attempt}-{os.getpid()}"
        spec = make_spec(servers, watchers, rate, tag)
        result = run_phase(spec, phase_settings(options), _log)
        _log(_summary(result))
        if best is None or result.other_cpu_share < best.other_cpu_share:
            best = result
        if result.other_cpu_share <= options.quiet_limit:
            break
        _log(
            f"  other processes used {100 * result.other_cpu_share:.0f}% of a "
            f"core (largest: {', '.join(result.top_others) or 'short-lived'})"
        )
    assert best is not None
    return best


def _summary(result: PhaseResult) -> str:
    return (
        f"  {result.target} x{result.watchers}: {result.events_per_second:,.0f} ev/s, "
        f"p50 {result.latency_p50_ms:.2f} ms, p99 {result.latency_p99_ms:.2f} ms, "
        f"missed {result.deliveries.missed}, errors {result.errors[:2]}"
    )


def run_all(
    servers: Servers, options: argparse.Namespace
) -> tuple[list[Comparison], list[list[float]]]:
    """
    For each number of watchers, C{--rounds} times: wardled, then etcd
    (alternating, so that a drift of the machine touches both alike).

    @return: the comparisons and the load average after each.
    """
    comparisons = []
    loads = []
    for watchers in options.watchers:
        rate = rate_for(watchers, options)
        comparison = Comparison(watchers, rate, [], [])
        for round_number in range(1, options.rounds + 1):
            _log(
                f"{watchers} watchers, {rate:g} writes/s for {options.duration:g} s, "
                f"round {round_number}/{options.rounds}"
            )
            for make_spec, results in (
                (_wardled_spec, comparison.ours),
                (_etcd_spec, comparison.theirs),
            ):
                args = (servers, watchers, rate, round_number, options)
                results.append(_measure(make_spec, *args))
        comparisons.append(comparison)
        loads.append([round(value, 2) for value in os.getloadavg()])
    return comparisons, loads


def _report(
    comparisons: list[Comparison],
    machine: dict[str, object],
    loads: list[list[float]],
    options: argparse.Namespace,
) -> str:
    table = rst_table(comparison_rows(comparisons))
    machine_line = (
        f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}, "
        f"Python {machine['python']}, etcd {machine['etcd']}"
    )
    load_line = (
        f"Load average before: {machine['load_average']}; "
        f"after each watcher count: {loads}"
    )
    setup_line = (
        f"Median (min–max) of {options.rounds} rounds; writer: "
        f"{options.duration:g} s per phase over "
        f"{options.writer_connections} keep-alive connections; watchers in up "
        f"to {options.client_processes} processes; HTTP/1.1 (wardled: TLS with "
        "a client certificate; etcd: plain HTTP)."
    )
    return f"{machine_line}\n{load_line}\n{setup_line}\n\n{table}\n\n{LEGEND}"


def _write_json(
    path: str,
    comparisons: list[Comparison],
    machine: dict[str, object],
    loads: list[list[float]],
    options: argparse.Namespace,
    table: str,
) -> None:
    document = {
        "benchmark": "watch_fanout",
        "machine": machine,
        "load_average_after": loads,
        "settings": {
            key: value for key, value in vars(options).items() if key != "json"
        },
        "results": [comparison.as_json() for comparison in comparisons],
        "table": table,
    }
    with open(path, "w", encoding="utf-8") as output:
        json.dump(document, output, indent=2, default=str)
        output.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the benchmark; print the table; return the exit status.
    """
    options = parse_options(argv)
    raise_open_files_limit(2 * max(options.watchers) + 1024)
    machine = machine_description(etcd_binary())
    started = time.monotonic()
    with running_servers(options.wardled_arg) as servers:
        comparisons, loads = run_all(servers, options)
    report = _report(comparisons, machine, loads, options)
    print(report)
    if options.json:
        _write_json(options.json, comparisons, machine, loads, options, report)
    _log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
