# -*- test-case-name: tests.test_bench_smoke -*-
"""
Issue 8's performance targets, checked against the suite's figures.

The suite reports whether each is met; it never fails on one.  A target
whose figures were not measured in this run (e.g. C{--smoke} sizes) says
"not measured".  wardled's GET is also given as a share of the bare Klein
TLS hello-world (L{bench._hello}) measured in the same run: the floor that
Twisted, Klein and TLS alone set on this machine.  The create target
compares with a plain put, as issue 8 says, and also gives etcd alone doing
wardled's create (a create-if-absent txn with wardled's watch open,
L{bench._suite_etcdwrites}) as a share of that put: the ceiling etcd
itself puts on wardled's create.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import attrs

from bench._report import Comparison, PhaseResult
from bench._suite_etcdwrites import ETCD_TXN
from bench._suite_load import HTTP1
from bench._suite_report import (
    SuiteResults,
    get_share,
    list_sizes,
    median_rate,
    ratio,
)

GET_PER_SECOND = 5000.0
CREATE_SHARE_OF_ETCD = 0.60
LIST_TIMES_DUMPS = 3.0
LIST_SIZE = 10_000
LINEAR_SLACK = 1.5
WATCH_P99_MS = 100.0
WATCH_LOADS = ((1000, 20.0), (100, 200.0))
RSS_PER_WATCHER_KIB = 50.0
RSS_MIN_WATCHERS = 100
CACHE_RSS_PER_JSON = 2.0
CREATE_CEILING = "etcd alone doing wardled's calls (txn + watch)"


@attrs.frozen
class Verdict:
    """
    One target: what was asked, what was measured, whether it was met
    (C{None}: not measured in this run).
    """

    name: str
    goal: str
    measured: str
    met: bool | None

    @property
    def word(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]

    def as_json(self) -> dict[str, object]:
        return {
            "target": self.name,
            "goal": self.goal,
            "measured": self.measured,
            "met": self.met,
        }


def _top_concurrency(results: SuiteResults) -> int:
    return max((key[2] for key in results.crud), default=0)


def _get_target(results: SuiteResults) -> Verdict:
    goal = f"GET one object ≥ {GET_PER_SECOND:,.0f} req/s (HTTP/1.1, client certs)"
    found = get_share(results)
    if math.isnan(found.wardled):
        return Verdict("GET throughput", goal, "not measured", None)
    measured = f"{found.wardled:,.0f} req/s at {found.concurrency} clients"
    if not math.isnan(found.share):
        measured += (
            f" = {100 * found.share:.0f} % of bare Klein TLS "
            f"({found.bare_klein:,.0f}) in this run"
        )
    return Verdict("GET throughput", goal, measured, found.wardled >= GET_PER_SECOND)


def _create_target(results: SuiteResults) -> Verdict:
    goal = (
        f"create at 32 clients ≥ {100 * CREATE_SHARE_OF_ETCD:.0f} % of etcd "
        "gateway put throughput"
    )
    concurrency = _top_concurrency(results)
    ours = median_rate(results.crud.get(("wardled", HTTP1, concurrency, "create"), []))
    theirs = median_rate(results.crud.get(("etcd", HTTP1, concurrency, "create"), []))
    share = ratio(ours, theirs)
    if math.isnan(share):
        return Verdict("create vs etcd put", goal, "not measured", None)
    measured = (
        f"{ours:,.0f} vs {theirs:,.0f} req/s at {concurrency} clients "
        f"= {100 * share:.0f} %"
    )
    ceiling = median_rate(results.crud.get((ETCD_TXN, HTTP1, concurrency, "create"), []))
    if not math.isnan(ceiling):
        measured += (
            f"; {CREATE_CEILING}: "
            f"{ceiling:,.0f} req/s = {100 * ratio(ceiling, theirs):.0f} % of put"
        )
    return Verdict("create vs etcd put", goal, measured, share >= CREATE_SHARE_OF_ETCD)


def _list_ms(results: SuiteResults, size: int) -> float:
    rounds = results.lists.get(("wardled", HTTP1, size), [])
    values = [r.latency_ms(0.5) for r in rounds if r.completed]
    return statistics.median(values) if values else math.nan


def _list_target(results: SuiteResults) -> Verdict:
    goal = (
        f"LIST of {LIST_SIZE:,} ≤ {LIST_TIMES_DUMPS:g}× json.dumps of the same "
        f"items; per-item cost linear (10,000 ≤ {LINEAR_SLACK:g}× 1,000)"
    )
    list_ms = _list_ms(results, LIST_SIZE)
    dumps = results.dumps.get(LIST_SIZE)
    if math.isnan(list_ms) or not dumps:
        return Verdict("LIST 10,000", goal, "not measured", None)
    dumps_ms = 1000 * statistics.median(dumps)
    times = list_ms / dumps_ms
    measured = f"{list_ms:,.0f} ms vs json.dumps {dumps_ms:,.0f} ms = {times:.1f}×"
    met = times <= LIST_TIMES_DUMPS
    smaller = [size for size in list_sizes(results) if size < LIST_SIZE]
    if smaller:
        size = max(smaller)
        growth = ratio(list_ms / LIST_SIZE, _list_ms(results, size) / size)
        measured += f"; per item {growth:.2f}× that of {size:,}"
        met = met and growth <= LINEAR_SLACK
    return Verdict("LIST 10,000", goal, measured, met)


def _median_of(phases: Sequence[PhaseResult], read: str) -> float:
    values = [getattr(p, read) for p in phases]
    known = [v for v in values if not math.isnan(v)]
    return statistics.median(known) if known else math.nan


def _watch_target(results: SuiteResults) -> Verdict:
    goal = (
        f"watch p99 ack→receipt ≤ {WATCH_P99_MS:g} ms and ≤ etcd's, at "
        "1,000 × 20/s and 100 × 200/s"
    )
    watch = results.watch
    found: dict[int, Comparison] = {}
    if watch is not None:
        found = {c.watchers: c for c in watch.versus_etcd}
    parts, met = [], True
    for watchers, rate in WATCH_LOADS:
        comparison = found.get(watchers)
        if comparison is None or comparison.rate != rate:
            return Verdict("watch latency", goal, "not measured", None)
        ours = _median_of(comparison.ours, "latency_p99_ms")
        theirs = _median_of(comparison.theirs, "latency_p99_ms")
        faults = sum(
            p.deliveries.missed + p.deliveries.duplicates for p in comparison.ours
        )
        parts.append(
            f"{watchers:,}×{rate:g}/s: p99 {ours:.1f} ms (etcd {theirs:.1f} ms)"
            + (f", {faults} missed/duplicate" if faults else "")
        )
        met = met and ours <= WATCH_P99_MS and ours <= theirs and faults == 0
    return Verdict("watch latency", goal, "; ".join(parts), met)


def _rss_target(results: SuiteResults) -> Verdict:
    goal = f"RSS growth ≤ {RSS_PER_WATCHER_KIB:g} KiB per idle watcher (own TLS connection)"
    watch = results.watch
    if watch is None or not watch.versus_etcd:
        return Verdict("RSS per watcher", goal, "not measured", None)
    largest = max(watch.versus_etcd, key=lambda c: c.watchers)
    if largest.watchers < RSS_MIN_WATCHERS:  # growth below RSS's resolution
        return Verdict("RSS per watcher", goal, "not measured", None)
    kib = largest.ours[0].rss_per_watcher_kib
    if math.isnan(kib):
        return Verdict("RSS per watcher", goal, "not measured", None)
    etcd_kib = largest.theirs[0].rss_per_watcher_kib
    measured = (
        f"{kib:.1f} KiB at {largest.watchers:,} watchers (etcd {etcd_kib:.1f} KiB)"
    )
    return Verdict("RSS per watcher", goal, measured, kib <= RSS_PER_WATCHER_KIB)


def _cache_target(results: SuiteResults) -> Verdict:
    goal = f"cache RSS ≤ {CACHE_RSS_PER_JSON:g}× the JSON size of stored objects"
    if not results.memory:
        return Verdict("cache memory", goal, "not measured", None)
    parts = [
        f"{m.backend}: {m.ratio:.2f}× ({m.objects:,} objects, "
        f"{m.json_bytes / 2**20:.1f} MiB JSON)"
        for m in results.memory
    ]
    main = results.memory[0]
    return Verdict("cache memory", goal, "; ".join(parts), main.ratio <= CACHE_RSS_PER_JSON)


def verdicts(results: SuiteResults) -> list[Verdict]:
    """
    Every target's verdict, in issue 8's order.
    """
    return [
        _get_target(results),
        _create_target(results),
        _list_target(results),
        _watch_target(results),
        _rss_target(results),
        _cache_target(results),
    ]
