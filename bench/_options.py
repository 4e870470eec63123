"""
The command line of L{bench.watch_fanout}: what to measure and how, and
the L{PhaseSettings} every phase runs with; and the options and checks
every benchmark's command line shares (L{bench.soak} uses them too).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bench._phase import PhaseSettings

DEFAULT_WATCHERS = (1, 100, 1000)
DEFAULT_RATES = {1: 200.0, 100: 200.0, 1000: 20.0}
FALLBACK_RATE = 20.0


def parse_counts(text: str) -> list[int]:
    """
    A comma-separated list of positive integers (an argparse C{type}).
    """
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


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """
    Add the options every benchmark takes: C{--wardled-arg} (repeatable)
    and C{--json PATH}.
    """
    parser.add_argument(
        "--wardled-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for twistd wardled (repeatable)",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write every figure as JSON here"
    )


def require_at_least_one(
    parser: argparse.ArgumentParser, options: argparse.Namespace, names: Sequence[str]
) -> None:
    """
    Exit with a usage error unless every option in C{names} (attribute
    names, e.g. C{"client_processes"}) is at least 1.
    """
    for name in names:
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")


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
        type=parse_counts,
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
        "--rounds",
        type=int,
        default=3,
        help="rounds per watcher count; the table shows medians (min–max)",
    )
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
    add_common_options(parser)
    options = parser.parse_args(argv)
    require_at_least_one(
        parser, options, ("rounds", "client_processes", "writer_connections")
    )
    if options.duration <= 0 or options.retries < 0:
        parser.error("--duration must be positive and --retries not negative")
    return options


def phase_settings(options: argparse.Namespace) -> PhaseSettings:
    """
    The settings of every phase, from the parsed options.
    """
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


def rate_for(watchers: int, options: argparse.Namespace) -> float:
    """
    Writes per second for C{watchers} watchers.
    """
    rates: dict[int, float] = options.rates
    return rates.get(watchers, FALLBACK_RATE)
