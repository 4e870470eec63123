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
    minus before they connected, divided by their number.

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
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import attrs

if not __package__:  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._http import Endpoint, TlsFiles
from bench._phase import PhaseSettings, PhaseSpec, run_phase
from bench._proc import (
    machine_description,
    pid_running,
    raise_open_files_limit,
)
from bench._report import PhaseResult, comparison_rows, rst_table
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
from tests.harness import ADMIN, TestPKI, WardledProcess

DEFAULT_WATCHERS = (1, 100, 1000)
DEFAULT_RATES = {1: 200.0, 100: 200.0, 1000: 20.0}
FALLBACK_RATE = 20.0
WARDLED_PREFIX = b"/registry/wardle.example.com/"
WARMUP_NAMESPACE = "bench-warmup"


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
    work_dir = tempfile.mkdtemp(prefix="wardled-bench-")
    etcd: EtcdServer | None = None
    wardled: WardledProcess | None = None
    try:
        etcd = EtcdServer.start()
        pki = TestPKI.create(os.path.join(work_dir, "pki"))
        wardled = WardledProcess.start(etcd.url, pki, wardled_args)
        admin = pki.users[ADMIN]
        tls = TlsFiles(pki.ca_file, admin.cert_file, admin.key_file)
        yield Servers(
            etcd=etcd,
            wardled=wardled,
            wardled_endpoint=_endpoint_of(wardled.url, tls),
            etcd_endpoint=_endpoint_of(etcd.url, None),
            etcd_pid=pid_running(f"--data-dir={etcd.data_dir}"),
            stored_value=_warm_up(wardled, etcd.url),
        )
    finally:
        if wardled is not None:
            wardled.stop()
            shutil.rmtree(wardled.work_dir, ignore_errors=True)
        if etcd is not None:
            etcd.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


def _wardled_spec(servers: Servers, watchers: int, rate: float, tag: str) -> PhaseSpec:
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
        etcd_pid=_etcd_pid(servers),
        quiet_pids=(servers.wardled.pid, _etcd_pid(servers), os.getpid()),
    )


def _etcd_spec(servers: Servers, watchers: int, rate: float, tag: str) -> PhaseSpec:
    prefix = f"/bench-fanout/{tag}/".encode()
    endpoint = servers.etcd_endpoint
    start = etcd_revision(servers.etcd.url) + 1
    return PhaseSpec(
        target="etcd",
        watchers=watchers,
        rate=rate,
        watch=etcd_watch(endpoint, prefix, start),
        writer=etcd_writer(endpoint, prefix, servers.stored_value),
        server_pid=_etcd_pid(servers),
        etcd_pid=_etcd_pid(servers),
        quiet_pids=(servers.wardled.pid, _etcd_pid(servers), os.getpid()),
    )


def _etcd_pid(servers: Servers) -> int:
    return servers.etcd_pid


SpecMaker = Callable[[Servers, int, float, str], PhaseSpec]


def _measure(
    make_spec: SpecMaker,
    servers: Servers,
    watchers: int,
    rate: float,
    options: argparse.Namespace,
) -> PhaseResult:
    """
    Run one phase, again (up to C{--retries} times) while something else
    loaded the machine; keep the quietest attempt.
    """
    best: PhaseResult | None = None
    for attempt in range(options.retries + 1):
        spec = make_spec(
            servers, watchers, rate, f"n{watchers}-a{attempt}-{os.getpid()}"
        )
        result = run_phase(spec, _settings(options), _log)
        _log(_summary(result))
        if best is None or result.other_cpu_share < best.other_cpu_share:
            best = result
        if result.other_cpu_share <= options.quiet_limit:
            break
        _log(f"  other processes used {100 * result.other_cpu_share:.0f}% of a core")
    assert best is not None
    return best


def _summary(result: PhaseResult) -> str:
    return (
        f"  {result.target} x{result.watchers}: {result.events_per_second:,.0f} ev/s, "
        f"p50 {result.latency_p50_ms:.2f} ms, p99 {result.latency_p99_ms:.2f} ms, "
        f"missed {result.deliveries.missed}, errors {result.errors[:2]}"
    )


def _settings(options: argparse.Namespace) -> PhaseSettings:
    return PhaseSettings(
        duration=options.duration,
        client_processes=options.client_processes,
        writer_connections=options.writer_connections,
        connect_concurrency=options.connect_concurrency,
        connect_timeout=options.connect_timeout,
        drain_timeout=options.drain_timeout,
        settle=options.settle,
        quiet_limit=options.quiet_limit,
        quiet_wait=options.quiet_wait,
    )


def _rate_for(watchers: int, options: argparse.Namespace) -> float:
    rates: dict[int, float] = options.rates
    return rates.get(watchers, FALLBACK_RATE)


def run_all(
    servers: Servers, options: argparse.Namespace
) -> tuple[list[tuple[PhaseResult, PhaseResult]], list[list[float]]]:
    """
    Measure wardled then etcd for each number of watchers.

    @return: the (wardled, etcd) pairs and the load average after each.
    """
    pairs = []
    loads = []
    for watchers in options.watchers:
        rate = _rate_for(watchers, options)
        _log(f"{watchers} watchers, {rate:g} writes/s for {options.duration:g} s")
        ours = _measure(_wardled_spec, servers, watchers, rate, options)
        theirs = _measure(_etcd_spec, servers, watchers, rate, options)
        pairs.append((ours, theirs))
        loads.append([round(value, 2) for value in os.getloadavg()])
    return pairs, loads


def _parse_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 1,100,1000")
    return counts


def _parse_rates(text: str) -> dict[int, float]:
    rates = dict(DEFAULT_RATES)
    for part in filter(None, (p.strip() for p in text.split(","))):
        watchers, _, rate = part.partition(":")
        if not rate or float(rate) <= 0:
            raise argparse.ArgumentTypeError(f"expected WATCHERS:RATE, got {part!r}")
        rates[int(watchers)] = float(rate)
    return rates


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    The command line.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.watch_fanout",
        description="Watch fan-out of wardled against etcd's gateway watch.",
    )
    add = parser.add_argument
    add(
        "--watchers",
        type=_parse_counts,
        default=list(DEFAULT_WATCHERS),
        help="comma-separated watcher counts (default 1,100,1000)",
    )
    add(
        "--rates",
        type=_parse_rates,
        default=dict(DEFAULT_RATES),
        help="writes/s per watcher count, e.g. 1:200,100:200,1000:20 "
        f"(the default; other counts get {FALLBACK_RATE:g})",
    )
    add("--duration", type=float, default=10.0, help="seconds of writing per phase")
    add(
        "--client-processes",
        type=int,
        default=2,
        help="watcher processes per phase (default 2)",
    )
    add(
        "--writer-connections",
        type=int,
        default=16,
        help="keep-alive connections of the writer (default 16)",
    )
    add(
        "--connect-concurrency",
        type=int,
        default=32,
        help="watch connections set up at once per process (default 32)",
    )
    add(
        "--connect-timeout",
        type=float,
        default=60.0,
        help="seconds a watcher may take to be established",
    )
    add(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="seconds to wait after the last write for the watchers",
    )
    add(
        "--settle",
        type=float,
        default=2.0,
        help="seconds between connecting the watchers and reading RSS",
    )
    add(
        "--quiet-limit",
        type=float,
        default=0.10,
        help="share of a core other processes may use (default 0.10)",
    )
    add(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="longest wait for the machine to be that quiet before a phase",
    )
    add(
        "--retries",
        type=int,
        default=1,
        help="re-runs of a phase during which the machine was busy",
    )
    add(
        "--wardled-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for twistd wardled (repeatable)",
    )
    add("--json", metavar="PATH", help="also write every figure as JSON here")
    return parser.parse_args(argv)


def _report(
    pairs: list[tuple[PhaseResult, PhaseResult]],
    machine: dict[str, object],
    loads: list[list[float]],
    options: argparse.Namespace,
) -> str:
    table = rst_table(comparison_rows(pairs))
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
        f"Writer: {options.duration:g} s per phase over "
        f"{options.writer_connections} keep-alive connections; watchers in up "
        f"to {options.client_processes} processes; HTTP/1.1 (wardled: TLS with "
        "a client certificate; etcd: plain HTTP)."
    )
    return f"{machine_line}\n{load_line}\n{setup_line}\n\n{table}"


def _write_json(
    path: str,
    pairs: list[tuple[PhaseResult, PhaseResult]],
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
        "results": [
            {
                "watchers": ours.watchers,
                "rate": ours.rate,
                "wardled": ours.as_json(),
                "etcd": theirs.as_json(),
            }
            for ours, theirs in pairs
        ],
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
        pairs, loads = run_all(servers, options)
    report = _report(pairs, machine, loads, options)
    print(report)
    if options.json:
        _write_json(options.json, pairs, machine, loads, options, report)
    _log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
