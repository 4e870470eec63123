# -*- test-case-name: tests.test_soak_smoke -*-
"""
The soak's verdicts: from the ledger of acknowledged writes, the final
consistent lists, the watchers' summaries, the RSS samples and the failed
responses, decide whether anything was lost, missed, leaked or failed
when it should not have, and compute the figures the report prints.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import attrs

from bench._report import percentile
from bench._soak_load import NameRecord
from bench._soak_record import (
    DELETE,
    EVENT_TYPES,
    TYPE_CODES,
    UPDATE,
    Ack,
    Expected,
    Failure,
    Recorder,
)
from bench._soak_watch import WatcherSummary

#: A revision above any the soak can reach (the open end of a delete's
#: range when nothing was written after it).
NO_LATER_REVISION = 2**62
_MIB = 1024 * 1024


@attrs.frozen
class Check:
    """
    One verdict: a name, whether it passed, and the figures behind it.
    """

    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        """
        C{PASS name: detail} or C{FAIL ...}.
        """
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"

    def as_json(self) -> dict[str, object]:
        return {"passed": self.passed, "detail": self.detail}


# -- what watchers were owed -------------------------------------------------


def _known(acks: Iterable[Ack]) -> list[Ack]:
    """
    The acks whose revision is known (creates and updates).
    """
    return [ack for ack in acks if ack.operation != DELETE]


def delete_ranges(acks: Sequence[Ack]) -> dict[int, tuple[int, int]]:
    """
    For each acknowledged delete (by object), the revisions its event must
    lie strictly between: above every known revision acknowledged before
    the delete was sent, below every known revision of a write sent after
    the delete was acknowledged (etcd's revisions grow with time).
    """
    known = _known(acks)
    by_ack = sorted(known, key=lambda ack: ack.acked)
    ack_times = [ack.acked for ack in by_ack]
    highest_before: list[int] = []
    for ack in by_ack:
        highest_before.append(
            max(ack.revision, highest_before[-1] if highest_before else 0)
        )
    by_send = sorted(known, key=lambda ack: ack.sent)
    send_times = [ack.sent for ack in by_send]
    lowest_after = [NO_LATER_REVISION] * (len(by_send) + 1)
    for index in range(len(by_send) - 1, -1, -1):
        lowest_after[index] = min(by_send[index].revision, lowest_after[index + 1])
    ranges = {}
    for ack in acks:
        if ack.operation != DELETE:
            continue
        before_count = bisect.bisect_left(ack_times, ack.sent)
        low = highest_before[before_count - 1] if before_count else 0
        high = lowest_after[bisect.bisect_right(send_times, ack.acked)]
        ranges[ack.name] = (low, high)
    return ranges


def expected_events(acks: Sequence[Ack]) -> dict[str, list[Expected]]:
    """
    Per namespace, the event each acknowledged write must produce.
    """
    ranges = delete_ranges(acks)
    expected: dict[str, list[Expected]] = {}
    for ack in acks:
        type_code = TYPE_CODES[EVENT_TYPES[ack.operation]]
        after, before = (
            ranges[ack.name]
            if ack.operation == DELETE
            else (ack.revision - 1, ack.revision + 1)
        )
        event = Expected(ack.name, type_code, after, before)
        expected.setdefault(ack.namespace, []).append(event)
    return expected


def drain_targets(acks: Iterable[Ack]) -> dict[str, int]:
    """
    Per namespace, the highest known acknowledged revision.
    """
    targets: dict[str, int] = {}
    for ack in _known(acks):
        targets[ack.namespace] = max(targets.get(ack.namespace, 0), ack.revision)
    return targets


# -- no acknowledged write lost ----------------------------------------------


@attrs.frozen
class WriteAudit:
    """
    The final state of every object against its last acknowledged write.

    @ivar checked: objects with an acknowledged write.
    @ivar lost: acknowledged creates or updates whose object is gone (no
        unsure delete followed), or holds an older revision.
    @ivar changed: objects holding a newer revision than acknowledged with
        no unsure update to explain it.
    @ivar resurrected: acknowledged deletes whose object is still there.
    @ivar unknown: objects listed that the soak never tried to create.
    @ivar unsure: objects whose last write got a 5xx or no response (any
        outcome of that write is allowed).
    @ivar samples: a few of the faults, for the report.
    """

    checked: int
    lost: int
    changed: int
    resurrected: int
    unknown: int
    unsure: int
    samples: tuple[str, ...]

    @property
    def faults(self) -> int:
        return self.lost + self.changed + self.resurrected + self.unknown


def _fault(record: NameRecord, ack: Ack, listed: int | None) -> str | None:
    """
    What is wrong with an object's final state, if anything: C{listed} is
    the revision the final list showed (C{None}: absent).
    """
    if ack.operation == DELETE:
        return None if listed is None else "resurrected"
    if listed is None:
        return None if record.unsure == DELETE else "lost"
    if listed < ack.revision:
        return "lost"
    if listed > ack.revision and record.unsure != UPDATE:
        return "changed"
    return None


def audit_writes(
    records: Mapping[int, NameRecord], final: Mapping[int, int]
) -> WriteAudit:
    """
    Compare each object's last acknowledged write with the final lists
    (resourceVersion by object index, every namespace).
    """
    counts = {"lost": 0, "changed": 0, "resurrected": 0}
    samples: list[str] = []
    checked = 0
    for name, record in records.items():
        if record.last_ack is None:
            continue
        checked += 1
        fault = _fault(record, record.last_ack, final.get(name))
        if fault is not None:
            counts[fault] += 1
            if len(samples) < 5:
                samples.append(f"{fault}: {record.last_ack} listed {final.get(name)}")
    unknown = [name for name in final if name not in records]
    samples += [f"unknown object index {name}" for name in unknown[:5]]
    return WriteAudit(
        checked=checked,
        unknown=len(unknown),
        unsure=sum(1 for record in records.values() if record.unsure is not None),
        samples=tuple(samples),
        **counts,
    )


def writes_check(audit: WriteAudit) -> Check:
    detail = (
        f"{audit.checked:,} objects checked against a final consistent list: "
        f"{audit.lost} lost, {audit.changed} changed, {audit.resurrected} "
        f"deleted but present, {audit.unknown} unknown ({audit.unsure} with "
        "an unacknowledged last write, either outcome allowed)"
    )
    return Check("no acknowledged write lost", audit.faults == 0, detail)


# -- no event missed without a 410 ---------------------------------------------


@attrs.frozen
class WatchTotals:
    """
    The watchers' summaries added up.
    """

    watchers: int
    events: int
    covered: int
    delivered: int
    missed: int
    mismatched: int
    reordered: int
    uncertain: int
    relists: int
    gone: int
    rewatches: int
    stream_ends: int
    undrained: int
    samples: tuple[str, ...]

    @classmethod
    def of(cls, summaries: Sequence[WatcherSummary]) -> WatchTotals:
        def total(field: str) -> int:
            return sum(getattr(summary, field) for summary in summaries)

        return cls(
            watchers=len(summaries),
            events=total("events"),
            covered=total("covered"),
            delivered=total("delivered"),
            missed=total("missed"),
            mismatched=total("mismatched"),
            reordered=total("reordered"),
            uncertain=total("uncertain"),
            relists=total("lists") - len(summaries),
            gone=total("gone"),
            rewatches=total("rewatches"),
            stream_ends=total("stream_ends"),
            undrained=sum(not summary.drained for summary in summaries),
            samples=tuple(s for summary in summaries for s in summary.samples)[:5],
        )


def watch_check(totals: WatchTotals, expected_watchers: int) -> Check:
    faults = totals.missed + totals.mismatched + totals.reordered
    passed = faults == 0 and totals.watchers == expected_watchers and totals.covered > 0
    detail = (
        f"{totals.watchers} of {expected_watchers} watchers reported; "
        f"{totals.covered:,} acknowledged events owed, {totals.missed} missed, "
        f"{totals.mismatched} mismatched, {totals.reordered} out of order; "
        f"{totals.gone} 410s (re-listed), {totals.uncertain} in a 410 gap"
    )
    return Check("no watcher missed an event without a 410", passed, detail)


# -- RSS -----------------------------------------------------------------------


@attrs.frozen
class RssTrend:
    """
    wardled's resident memory over the run.

    @ivar samples: C{(seconds since the start, bytes)}.
    @ivar warmup: seconds after the start that do not count.
    @ivar first: the first sample after the warm-up (bytes).
    @ivar last: the last sample.
    @ivar peak: the largest sample after the warm-up.
    @ivar slope: least-squares growth after the warm-up, bytes per minute.
    """

    samples: tuple[tuple[float, int], ...]
    warmup: float
    first: int
    last: int
    peak: int
    slope: float

    @classmethod
    def of(cls, samples: Sequence[tuple[float, int]], warmup: float) -> RssTrend:
        after = [sample for sample in samples if sample[0] >= warmup] or list(
            samples[-1:]
        )
        if not after:
            return cls(tuple(samples), warmup, 0, 0, 0, math.nan)
        return cls(
            tuple(samples),
            warmup,
            after[0][1],
            after[-1][1],
            max(size for _, size in after),
            60 * _slope(after),
        )

    @property
    def growth(self) -> float:
        """
        Last over first after the warm-up, minus one (0.05: 5 % more).
        """
        return self.last / self.first - 1 if self.first else math.nan

    def as_json(self) -> dict[str, object]:
        return {
            "warmup_s": self.warmup,
            "first_after_warmup_mib": round(self.first / _MIB, 1),
            "last_mib": round(self.last / _MIB, 1),
            "peak_after_warmup_mib": round(self.peak / _MIB, 1),
            "growth_percent": None
            if math.isnan(self.growth)
            else round(100 * self.growth, 2),
            "slope_mib_per_min": None
            if math.isnan(self.slope)
            else round(self.slope / _MIB, 3),
            "samples": [[round(at, 1), size] for at, size in self.samples],
        }


def _slope(points: Sequence[tuple[float, int]]) -> float:
    """
    The least-squares slope of C{points} (per second; 0 for fewer than 2).
    """
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def rss_check(
    trend: RssTrend, limit_percent: float, history_full: float | None
) -> Check:
    """
    RSS after the warm-up grew less than C{limit_percent}; C{history_full}
    is when wardled's watch history was full (C{None}: not during the run,
    so the growth includes it filling).
    """
    growth = 100 * trend.growth
    passed = not math.isnan(growth) and growth < limit_percent
    history = (
        "watch history not full during the run"
        if history_full is None
        else f"watch history full at {history_full:.0f} s"
    )
    detail = (
        f"{trend.first / _MIB:.1f} MiB after {trend.warmup:.0f} s of warm-up "
        f"({history}), {trend.last / _MIB:.1f} MiB at the end ({growth:+.1f} %, "
        f"limit {limit_percent:g} %), slope {trend.slope / _MIB:+.2f} MiB/min"
    )
    return Check("RSS flat after warm-up", passed, detail)


# -- 5xx outside the outage ----------------------------------------------------


@attrs.frozen
class ErrorWindows:
    """
    Failed responses inside and outside the outage window (widened by the
    grace period on each side).

    @ivar window: C{(start, end)} seconds since the soak started, or
        C{None} when there was no outage.
    """

    window: tuple[float, float] | None
    grace: float
    server_errors_inside: int
    server_errors_outside: int
    no_response_inside: int
    no_response_outside: int
    samples_outside: tuple[str, ...]

    @classmethod
    def of(
        cls,
        failures: Iterable[Failure],
        started: float,
        window: tuple[float, float] | None,
        grace: float,
    ) -> ErrorWindows:
        """
        Sort C{failures} (monotonic times; C{started} is the soak's start).
        """
        counts = {
            (True, True): 0,
            (True, False): 0,
            (False, True): 0,
            (False, False): 0,
        }
        samples: list[str] = []
        for failure in failures:
            if not (failure.server_error or failure.no_response):
                continue
            at = failure.at - started
            inside = window is not None and window[0] - grace <= at <= window[1] + grace
            counts[(failure.server_error, inside)] += 1
            if not inside and len(samples) < 5:
                samples.append(
                    f"{at:.1f} s {failure.operation} {failure.status} {failure.detail:.120}"
                )
        return cls(
            window,
            grace,
            counts[(True, True)],
            counts[(True, False)],
            counts[(False, True)],
            counts[(False, False)],
            tuple(samples),
        )


def errors_check(windows: ErrorWindows) -> Check:
    passed = windows.server_errors_outside == 0 and windows.no_response_outside == 0
    where = (
        "no outage"
        if windows.window is None
        else f"outage {windows.window[0]:.1f}–{windows.window[1]:.1f} s ± {windows.grace:g} s"
    )
    detail = (
        f"{where}: 5xx {windows.server_errors_inside} inside, "
        f"{windows.server_errors_outside} outside; no response "
        f"{windows.no_response_inside} inside, {windows.no_response_outside} outside"
    )
    return Check("no 5xx outside the outage window", passed, detail)


# -- per operation -------------------------------------------------------------

OPERATION_HEADER = (
    "operation",
    "requests",
    "2xx",
    "4xx",
    "5xx",
    "no resp.",
    "2xx/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
)


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{1000 * seconds:,.1f}"


def _rounded_ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(1000 * seconds, 2)


@attrs.frozen
class OperationFigures:
    """
    One operation's requests by status class, successes per second and
    the latency percentiles of the successes (seconds).
    """

    requests: int
    ok: int
    client_errors: int
    server_errors: int
    no_response: int
    per_second: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, recorder: Recorder, operation: str, elapsed: float) -> OperationFigures:
        statuses = recorder.statuses.get(operation, Counter[int]())
        latencies = sorted(recorder.latencies.get(operation, []))
        ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
        return cls(
            requests=sum(statuses.values()),
            ok=ok,
            client_errors=sum(
                n for status, n in statuses.items() if 400 <= status < 500
            ),
            server_errors=sum(n for status, n in statuses.items() if status >= 500),
            no_response=statuses.get(0, 0),
            per_second=ok / elapsed if elapsed > 0 else 0.0,
            p50=percentile(latencies, 0.5),
            p90=percentile(latencies, 0.9),
            p99=percentile(latencies, 0.99),
            max=percentile(latencies, 1.0),
        )

    def row(self, operation: str) -> tuple[str, ...]:
        counts = (self.requests, self.ok, self.client_errors, self.server_errors)
        return (
            operation,
            *(f"{count:,}" for count in (*counts, self.no_response)),
            f"{self.per_second:,.1f}",
            *(_ms(value) for value in (self.p50, self.p90, self.p99, self.max)),
        )

    def as_json(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "2xx": self.ok,
            "4xx": self.client_errors,
            "5xx": self.server_errors,
            "no_response": self.no_response,
            "2xx_per_s": round(self.per_second, 2),
            "latency_ms": {
                "p50": _rounded_ms(self.p50),
                "p90": _rounded_ms(self.p90),
                "p99": _rounded_ms(self.p99),
                "max": _rounded_ms(self.max),
            },
        }


def operation_figures(
    recorder: Recorder, elapsed: float
) -> dict[str, OperationFigures]:
    """
    L{OperationFigures} of every operation C{recorder} saw.
    """
    return {
        operation: OperationFigures.of(recorder, operation, elapsed)
        for operation in sorted(recorder.statuses)
    }
