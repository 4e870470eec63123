"""
Turning receipts and counters into the figures the benchmark reports, and
printing them side by side (wardled, etcd, ratio) as a reStructuredText
simple table that can be pasted into README.rst as it is.
"""

from __future__ import annotations

import math
import statistics
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

import attrs

#: Per watcher: revisions received and, at the same index, when.
Receipts: TypeAlias = "Sequence[tuple[array[int], array[float]]]"


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """
    The nearest-rank percentile of already sorted values (NaN when empty).
    """
    if not ordered:
        return math.nan
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


@attrs.frozen
class Deliveries:
    """
    The receipts of all watchers matched against the writer's acks.

    @ivar delivered: receipts of acknowledged writes (first receipt of each
        revision by each watcher).
    @ivar missed: acknowledged writes some watcher never received.
    @ivar duplicates: receipts of a revision a watcher had already received.
    @ivar latencies: sorted seconds from ack to receipt, one per delivery
        (negative when the event reached a watcher before the writer had
        read its ack).
    @ivar from_send: sorted seconds from sending the write to receipt.
    """

    delivered: int
    missed: int
    duplicates: int
    latencies: list[float]
    from_send: list[float]

    @classmethod
    def match(
        cls, receipts: Receipts, acks: dict[int, float], sends: dict[int, float]
    ) -> Deliveries:
        """
        Match every watcher's receipts with C{acks} (revision -> ack time)
        and C{sends} (revision -> send time); revisions nobody acknowledged
        are ignored.
        """
        latencies: list[float] = []
        from_send: list[float] = []
        duplicates = 0
        for revisions, times in receipts:
            seen: set[int] = set()
            for revision, received in zip(revisions, times, strict=True):
                acked = acks.get(revision)
                if acked is None:
                    continue
                if revision in seen:
                    duplicates += 1
                    continue
                seen.add(revision)
                latencies.append(received - acked)
                from_send.append(received - sends[revision])
        latencies.sort()
        from_send.sort()
        missed = len(acks) * len(receipts) - len(latencies)
        return cls(len(latencies), missed, duplicates, latencies, from_send)


@attrs.frozen
class PhaseResult:
    """
    One fan-out measurement: N watchers on one server, one writer.

    @ivar target: C{"wardled"} or C{"etcd"}.
    @ivar watchers: watchers asked for.
    @ivar connected: watchers whose stream was established.
    @ivar rate: writes per second asked for.
    @ivar writes: writes acknowledged.
    @ivar write_errors: writes that failed.
    @ivar window: seconds from the first write's due time to the last ack,
        plus one interval between writes (C{1 / rate}): the time the writes
        took, C{duration} when the writer kept up.
    @ivar cpu_elapsed: seconds over which CPU was counted (the writer's
        window plus connecting it and draining the watchers).
    @ivar deliveries: what the watchers received.
    @ivar ended_early: streams the server ended during the run.
    @ivar server_cpu: CPU seconds of the serving process in the window
        (wardled, or etcd for the etcd baseline).
    @ivar etcd_cpu: CPU seconds of etcd in the window.
    @ivar client_cpu: CPU seconds of the watcher processes in the window.
    @ivar kernel_cpu: CPU seconds of kernel threads in the window (mostly
        loopback networking).
    @ivar other_cpu_share: the rest of the machine, in cores, in the window.
    @ivar top_others: the largest other CPU consumers in the window.
    @ivar rss_growth: serving process RSS with the watchers connected and
        idle minus before they connected, in bytes.
    @ivar write_latency_p50: median seconds from sending a write to its ack.
    @ivar write_latency_p99: the 99th percentile of the same.
    @ivar writer_max_lag: longest a write waited for a free connection.
    @ivar errors: the first connect and write errors.
    """

    target: str
    watchers: int
    connected: int
    rate: float
    writes: int
    write_errors: int
    window: float
    cpu_elapsed: float
    deliveries: Deliveries
    ended_early: int
    server_cpu: float
    etcd_cpu: float
    client_cpu: float
    kernel_cpu: float
    other_cpu_share: float
    top_others: list[str]
    rss_growth: int
    write_latency_p50: float
    write_latency_p99: float
    writer_max_lag: float
    errors: list[str]

    @property
    def events_per_second(self) -> float:
        return self.deliveries.delivered / self.window if self.window > 0 else 0.0

    @property
    def latency_p50_ms(self) -> float:
        return 1000 * percentile(self.deliveries.latencies, 0.50)

    @property
    def latency_p99_ms(self) -> float:
        return 1000 * percentile(self.deliveries.latencies, 0.99)

    @property
    def from_send_p99_ms(self) -> float:
        return 1000 * percentile(self.deliveries.from_send, 0.99)

    @property
    def latency_max_ms(self) -> float:
        return 1000 * percentile(self.deliveries.latencies, 1.0)

    def _per_event_us(self, seconds: float) -> float:
        delivered = self.deliveries.delivered
        return 1e6 * seconds / delivered if delivered else math.nan

    @property
    def server_cpu_per_event_us(self) -> float:
        return self._per_event_us(self.server_cpu)

    @property
    def stack_cpu_per_event_us(self) -> float:
        """
        Serving process plus etcd (the same process for the baseline).
        """
        extra = 0.0 if self.target == "etcd" else self.etcd_cpu
        return self._per_event_us(self.server_cpu + extra)

    @property
    def server_cpu_share(self) -> float:
        elapsed = self.cpu_elapsed
        return self.server_cpu / elapsed if elapsed > 0 else 0.0

    @property
    def client_cpu_share(self) -> float:
        elapsed = self.cpu_elapsed
        return self.client_cpu / elapsed if elapsed > 0 else 0.0

    @property
    def rss_per_watcher_kib(self) -> float:
        return self.rss_growth / 1024 / self.connected if self.connected else math.nan

    def as_json(self) -> dict[str, object]:
        """
        Everything measured, JSON-ready (latency list summarised).
        """
        return {
            "target": self.target,
            "watchers": self.watchers,
            "connected": self.connected,
            "rate": self.rate,
            "writes": self.writes,
            "write_errors": self.write_errors,
            "window_s": round(self.window, 3),
            "delivered": self.deliveries.delivered,
            "missed": self.deliveries.missed,
            "duplicates": self.deliveries.duplicates,
            "ended_early": self.ended_early,
            "events_per_s": round(self.events_per_second, 1),
            "latency_ms": {
                "p50": _round(self.latency_p50_ms),
                "p90": _round(1000 * percentile(self.deliveries.latencies, 0.9)),
                "p99": _round(self.latency_p99_ms),
                "max": _round(self.latency_max_ms),
            },
            "send_to_receipt_ms": {
                "p50": _round(1000 * percentile(self.deliveries.from_send, 0.5)),
                "p99": _round(1000 * percentile(self.deliveries.from_send, 0.99)),
            },
            "server_cpu_s": round(self.server_cpu, 2),
            "etcd_cpu_s": round(self.etcd_cpu, 2),
            "client_cpu_s": round(self.client_cpu, 2),
            "kernel_cpu_s": round(self.kernel_cpu, 2),
            "server_cpu_per_event_us": _round(self.server_cpu_per_event_us),
            "stack_cpu_per_event_us": _round(self.stack_cpu_per_event_us),
            "server_cpu_share": round(self.server_cpu_share, 3),
            "other_cpu_share": round(self.other_cpu_share, 3),
            "top_other_processes": self.top_others,
            "rss_growth_bytes": self.rss_growth,
            "rss_per_watcher_kib": _round(self.rss_per_watcher_kib),
            "write_latency_p50_ms": _round(1000 * self.write_latency_p50),
            "write_latency_p99_ms": _round(1000 * self.write_latency_p99),
            "writer_max_lag_ms": _round(1000 * self.writer_max_lag),
            "errors": self.errors,
        }


def _round(value: float, digits: int = 3) -> float | None:
    return None if math.isnan(value) else round(value, digits)


@attrs.frozen
class Metric:
    """
    One row of the table: a label and how to read it off a result.

    @ivar digits: decimals shown.
    @ivar ratio: whether wardled / etcd means something for it.
    @ivar first_round_only: only the first round counts (memory growth: a
        later round reuses what the previous rounds freed, so the server's
        RSS barely grows).
    """

    label: str
    read: Callable[[PhaseResult], float]
    digits: int
    ratio: bool = True
    first_round_only: bool = False


METRICS = (
    Metric("delivered events/s", lambda r: r.events_per_second, 0),
    Metric("latency p50 (ms)", lambda r: r.latency_p50_ms, 2),
    Metric("latency p99 (ms)", lambda r: r.latency_p99_ms, 2),
    Metric("write→ack p50 (ms)", lambda r: 1000 * r.write_latency_p50, 2),
    Metric("send→receipt p99 (ms)", lambda r: r.from_send_p99_ms, 2),
    Metric("server CPU/event (µs)", lambda r: r.server_cpu_per_event_us, 0),
    Metric("+ etcd CPU/event (µs)", lambda r: r.stack_cpu_per_event_us, 0),
    Metric("server CPU (% core)", lambda r: 100 * r.server_cpu_share, 0),
    Metric("clients CPU (% core)", lambda r: 100 * r.client_cpu_share, 0),
    Metric(
        "RSS/watcher, round 1 (KiB)",
        lambda r: r.rss_per_watcher_kib,
        1,
        first_round_only=True,
    ),
    Metric("missed + dup events", lambda r: _faults(r), 0, ratio=False),
    Metric("other load (% core)", lambda r: 100 * r.other_cpu_share, 0, ratio=False),
)


def _faults(result: PhaseResult) -> float:
    deliveries = result.deliveries
    return float(deliveries.missed + deliveries.duplicates)


def _number(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


@attrs.frozen
class Spread:
    """
    The median, lowest and highest of one metric over several rounds (NaN
    values, e.g. a ratio with nothing delivered, are left out).
    """

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        known = sorted(value for value in values if not math.isnan(value))
        if not known:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(statistics.median(known), known[0], known[-1], len(known))

    def cell(self, digits: int) -> str:
        """
        C{"median"}, or C{"median (low–high)"} when the rounds differ.
        """
        median = _number(self.median, digits)
        if self.rounds < 2 or self.low == self.high:
            return median
        low, high = _number(self.low, digits), _number(self.high, digits)
        return f"{median} ({low}–{high})"

    def as_json(self, digits: int) -> dict[str, float | None]:
        return {
            "median": _round(self.median, digits + 1),
            "min": _round(self.low, digits + 1),
            "max": _round(self.high, digits + 1),
        }


def _ratio(ours: float, theirs: float) -> str:
    if math.isnan(ours) or math.isnan(theirs) or theirs <= 0 or ours < 0:
        return "n/a"
    return f"{ours / theirs:.2f}"


@attrs.frozen
class Comparison:
    """
    The rounds of wardled and of etcd for one number of watchers.
    """

    watchers: int
    rate: float
    ours: list[PhaseResult]
    theirs: list[PhaseResult]

    def spreads(self, metric: Metric) -> tuple[Spread, Spread]:
        """
        C{metric} over wardled's rounds and over etcd's.
        """
        rounds = 1 if metric.first_round_only else None
        return (
            Spread.of(metric.read(result) for result in self.ours[:rounds]),
            Spread.of(metric.read(result) for result in self.theirs[:rounds]),
        )

    def rows(self) -> list[tuple[str, ...]]:
        """
        One table row per metric: medians (and ranges), ratio of medians.
        """
        rows: list[tuple[str, ...]] = []
        for metric in METRICS:
            mine, base = self.spreads(metric)
            ratio = _ratio(mine.median, base.median) if metric.ratio else ""
            rows.append(
                (
                    f"{self.watchers:,}",
                    f"{self.rate:g}",
                    metric.label,
                    mine.cell(metric.digits),
                    base.cell(metric.digits),
                    ratio,
                )
            )
        return rows

    def as_json(self) -> dict[str, object]:
        """
        Every round of both sides and the per-metric summary.
        """
        summary = {}
        for metric in METRICS:
            mine, base = self.spreads(metric)
            summary[metric.label] = {
                "wardled": mine.as_json(metric.digits),
                "etcd": base.as_json(metric.digits),
                "ratio": _ratio(mine.median, base.median) if metric.ratio else None,
            }
        return {
            "watchers": self.watchers,
            "rate": self.rate,
            "summary": summary,
            "wardled_rounds": [result.as_json() for result in self.ours],
            "etcd_rounds": [result.as_json() for result in self.theirs],
        }


def comparison_rows(comparisons: Iterable[Comparison]) -> list[tuple[str, ...]]:
    """
    The table's rows for every number of watchers.
    """
    return [row for comparison in comparisons for row in comparison.rows()]


HEADER = ("watchers", "writes/s", "metric", "wardled", "etcd", "ratio")


def rst_table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...] = HEADER) -> str:
    """
    A reStructuredText simple table (every row has its first cell filled,
    so no row reads as a continuation line).
    """
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    border = "  ".join("=" * width for width in widths)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < 3 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([border, line(header), border, *map(line, rows), border])
