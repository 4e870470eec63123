# -*- test-case-name: tests.test_bench_smoke -*-
"""
The command line of L{bench.suite}: which sections run, how big and how
long, with presets for a full run (the default, about ten minutes on a
2-core machine), C{--quick} (a couple of minutes) and C{--smoke} (seconds:
what CI runs to check the suite still works, numbers meaningless).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bench._options import DEFAULT_RATES

#: Option values each preset changes (a flag given explicitly wins).
PRESETS: dict[str, dict[str, object]] = {
    "full": {},
    "quick": {
        "rounds": 1,
        "op_seconds": 0.5,
        "list_sizes": [100, 1000, 10000],
        "watchers": [1, 100, 1000],
        "watch_duration": 3.0,
        "embedded_watch_rounds": 1,
    },
    "smoke": {
        "rounds": 1,
        "op_seconds": 0.15,
        "list_sizes": [10, 100],
        "list_repeats": 3,
        "watchers": [1, 10],
        "watch_duration": 0.5,
        "watch_settle": 0.1,
        "embedded_watch_rounds": 1,
        "quiet_wait": 0.0,
        "retries": 0,
        "check_perf": False,
    },
}

DEFAULTS: dict[str, object] = {
    "rounds": 3,
    "op_seconds": 1.0,
    "list_sizes": [100, 1000, 10000],
    "list_repeats": 0,
    "watchers": [1, 100, 1000],
    "watch_duration": 4.0,
    "watch_settle": 1.0,
    "embedded_watch_rounds": 1,
    "quiet_wait": 10.0,
    "retries": 1,
    "check_perf": True,
}


def _counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 1,100,1000")
    return counts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.suite",
        description=(
            "wardled against raw etcd in one run: CRUD, lists, watch fan-out "
            "over HTTP/1.1 and HTTP/2, etcdctl check perf, memory."
        ),
    )
    add = parser.add_argument
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument(
        "--quick", action="store_true", help="one round, shorter phases (minutes)"
    )
    preset.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, seconds: checks the suite runs (CI), numbers meaningless",
    )
    add("--rounds", type=int, help="rounds of each measurement (median, min–max)")
    add("--op-seconds", type=float, help="seconds of each CRUD operation per cell")
    add("--list-sizes", type=_counts, help="Flunders per listed namespace")
    add(
        "--list-repeats",
        type=int,
        help="lists per size and round (default: about 2 s of listing, 3 to 50)",
    )
    add("--watchers", type=_counts, help="watcher counts of the fan-out")
    add("--watch-duration", type=float, help="seconds of writing per fan-out phase")
    add("--watch-settle", type=float, help="seconds between connecting and RSS")
    add(
        "--embedded-watch-rounds",
        type=int,
        help="fan-out rounds on the embedded store (0: none)",
    )
    add(
        "--concurrency",
        type=_counts,
        default=[1, 32],
        help="CRUD client concurrencies (default 1,32)",
    )
    add(
        "--workers",
        type=_counts,
        default=[1, 2],
        help="wardled worker processes to compare GET/create for (default 1,2; "
        "--workers N is passed only when N > 1)",
    )
    add(
        "--no-embedded",
        dest="embedded",
        action="store_false",
        help="leave out wardled on its embedded store",
    )
    add(
        "--no-check-perf",
        dest="check_perf",
        action="store_const",
        const=False,
        help="skip etcdctl check perf (60 s)",
    )
    add(
        "--check-perf-load",
        default="l",
        choices=["s", "m", "l", "xl"],
        help="etcdctl check perf --load (default l: s is capped at 150 writes/s)",
    )
    add("--quiet-limit", type=float, default=0.25, help="share of a core others may use")
    add("--quiet-wait", type=float, help="longest wait for a quiet machine per cell")
    add("--retries", type=int, help="re-runs of a cell during which others were busy")
    add(
        "--wardled-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for every twistd wardled (repeatable)",
    )
    add("--json", metavar="PATH", help="also write every figure as JSON here")
    add("--plots", metavar="DIR", help="write PNG plots here (needs matplotlib)")
    return parser


def parse_suite_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    The command line, with the preset's values filled in where no flag
    was given.
    """
    parser = _parser()
    options = parser.parse_args(argv)
    options.preset = "smoke" if options.smoke else "quick" if options.quick else "full"
    chosen = {**DEFAULTS, **PRESETS[options.preset]}
    for name, value in chosen.items():
        if getattr(options, name, None) is None:
            setattr(options, name, value)
    if options.rounds < 1 or options.op_seconds <= 0 or options.watch_duration <= 0:
        parser.error("--rounds, --op-seconds and --watch-duration must be positive")
    return options


def watch_rate(watchers: int) -> float:
    """
    Writes per second of the fan-out with C{watchers} watchers (the
    targets' 1,000 × 20/s and 100 × 200/s; 200/s for fewer).
    """
    if watchers in DEFAULT_RATES:
        return DEFAULT_RATES[watchers]
    return 200.0 if watchers <= 100 else 20.0
