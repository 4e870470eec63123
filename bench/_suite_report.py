# -*- test-case-name: tests.test_bench_smoke -*-
"""
The suite's figures: kept per round while the suite runs
(L{SuiteResults}), then summarised as median (min–max) of the rounds in
reStructuredText tables (pasted into README.rst as they are), a JSON
document with every round, and the verdict on each of issue 8's targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import attrs

from bench._hello import HELLO_PATH
from bench._report import Spread, comparison_rows, rst_table
from bench._suite_crud import OPERATIONS
from bench._suite_etcdwrites import ETCD_TXN, ETCD_TXN_LABEL
from bench._suite_lists import CacheMemory
from bench._suite_load import HTTP1, HTTP2, LoadResult
from bench._suite_watch import WatchResults

#: (target, protocol, concurrency, operation) -> one result per round.
CrudKey = tuple[str, str, int, str]
#: (target, protocol, size) -> one result per round.
ListKey = tuple[str, str, int]

WRITES = ("create", "update", "delete")


@attrs.frozen
class CheckPerf:
    """
    C{etcdctl check perf}: its writes/s, or why there is none.
    """

    load: str
    writes_per_second: float | None
    passed: bool | None
    note: str
    output_tail: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "load": self.load,
            "writes_per_s": self.writes_per_second,
            "passed": self.passed,
            "note": self.note,
            "output_tail": self.output_tail,
        }


@attrs.frozen
class WorkersRun:
    """
    GET and create at concurrency 32 (HTTP/1.1) with C{workers} processes.

    @ivar results: per operation, one result per round; empty when skipped.
    @ivar note: why it was skipped, or C{""}.
    """

    workers: int
    results: dict[str, list[LoadResult]]
    note: str = ""


@attrs.define
class SuiteResults:
    """
    Everything measured, round by round.

    @ivar ceiling: wardled's C{GET /healthz} at 32 clients, by protocol.
    @ivar bare_klein: the bare Klein TLS hello-world's C{GET /hello} at 32
        clients, by protocol.
    @ivar bare_klein_body_bytes: the size of its response body.
    """

    ceiling: dict[str, list[LoadResult]] = attrs.Factory(dict)
    bare_klein: dict[str, list[LoadResult]] = attrs.Factory(dict)
    bare_klein_body_bytes: int = 0
    crud: dict[CrudKey, list[LoadResult]] = attrs.Factory(dict)
    lists: dict[ListKey, list[LoadResult]] = attrs.Factory(dict)
    dumps: dict[int, list[float]] = attrs.Factory(dict)
    memory: list[CacheMemory] = attrs.Factory(list)
    watch: WatchResults | None = None
    check_perf: CheckPerf | None = None
    workers: list[WorkersRun] = attrs.Factory(list)
    section_seconds: dict[str, float] = attrs.Factory(dict)


def _spread(results: Iterable[LoadResult], read: Callable[[LoadResult], float]) -> Spread:
    return Spread.of(read(result) for result in results)


def _per_second(result: LoadResult) -> float:
    return result.per_second if result.completed else math.nan


def _p50(result: LoadResult) -> float:
    return result.latency_ms(0.5)


def _p99(result: LoadResult) -> float:
    return result.latency_ms(0.99)


def ratio(ours: float, theirs: float) -> float:
    """
    C{ours / theirs}, NaN when either is unknown or C{theirs} is 0.
    """
    if math.isnan(ours) or math.isnan(theirs) or theirs <= 0:
        return math.nan
    return ours / theirs


def _ratio_text(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def _json_number(value: float, digits: int = 3) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def _summary(results: Sequence[LoadResult]) -> dict[str, object]:
    return {
        "per_second": _spread(results, _per_second).as_json(0),
        "latency_p50_ms": _spread(results, _p50).as_json(2),
        "latency_p99_ms": _spread(results, _p99).as_json(2),
        "server_cpu_us": _spread(results, lambda r: r.server_cpu_us).as_json(0),
        "stack_cpu_us": _spread(results, lambda r: r.stack_cpu_us).as_json(0),
        "client_cpu_share": _spread(results, lambda r: r.client_share).as_json(2),
        "errors": sum(result.errors for result in results),
        "rounds": [result.as_json() for result in results],
    }


# -- baselines: client ceiling and bare Klein TLS --------------------------


BASELINE_CLIENTS = 32
HEALTHZ = "wardled /healthz"
BARE_KLEIN = f"bare Klein TLS {HELLO_PATH}"

BASELINE_HEADER = (
    "protocol",
    "server",
    "clients",
    "req/s",
    "server CPU/req (µs)",
    "client CPU/req (µs)",
    "client ceiling (req/s/core)",
    "client CPU (% core)",
    "others % core",
)


def _client_us(result: LoadResult) -> float:
    return 1e6 * result.client_cpu / result.completed if result.completed else math.nan


def _ceiling_per_core(result: LoadResult) -> float:
    return result.completed / result.client_cpu if result.client_cpu > 0 else math.nan


def _baselines(results: SuiteResults) -> Iterable[tuple[str, str, list[LoadResult]]]:
    """
    C{(protocol, server, rounds)} of every baseline measured, by protocol.
    """
    for protocol in (HTTP1, HTTP2):
        for name, by_protocol in (
            (HEALTHZ, results.ceiling),
            (BARE_KLEIN, results.bare_klein),
        ):
            rounds = by_protocol.get(protocol)
            if rounds:
                yield protocol, name, rounds


def baseline_rows(results: SuiteResults) -> list[tuple[str, ...]]:
    """
    The baselines table's rows: wardled's C{/healthz} (the client's
    ceiling) and the bare Klein TLS hello-world, per protocol.
    """
    return [
        (
            protocol,
            name,
            str(BASELINE_CLIENTS),
            _spread(rounds, _per_second).cell(0),
            _spread(rounds, lambda r: r.server_cpu_us).cell(0),
            _spread(rounds, _client_us).cell(0),
            _spread(rounds, _ceiling_per_core).cell(0),
            _spread(rounds, lambda r: 100 * r.client_share).cell(0),
            _others_cell(rounds),
        )
        for protocol, name, rounds in _baselines(results)
    ]


def _baseline_json(rounds: Sequence[LoadResult]) -> dict[str, object]:
    return {
        **_summary(rounds),
        "client_cpu_per_request_us": _spread(rounds, _client_us).as_json(1),
        "client_ceiling_per_core": _spread(rounds, _ceiling_per_core).as_json(0),
    }


def ceiling_json(results: SuiteResults) -> dict[str, object]:
    """
    The client ceiling (wardled's C{/healthz}) by protocol, every round
    included.
    """
    return {
        protocol: _baseline_json(rounds) for protocol, rounds in results.ceiling.items()
    }


def median_rate(results: Sequence[LoadResult]) -> float:
    """
    The median requests/s of the rounds that completed any (NaN: none).
    """
    return _spread([r for r in results if r.completed], _per_second).median


@attrs.frozen
class GetShare:
    """
    wardled's best GET over HTTP/1.1 beside the bare Klein TLS hello-world
    at 32 clients in the same run.

    @ivar wardled: wardled's median GET req/s at C{concurrency} clients.
    @ivar concurrency: the concurrency of wardled's best median.
    @ivar bare_klein: the hello-world's median req/s (NaN: not measured).
    """

    wardled: float
    concurrency: int
    bare_klein: float

    @property
    def share(self) -> float:
        """
        C{wardled / bare_klein} (NaN when either is unknown).
        """
        return ratio(self.wardled, self.bare_klein)


def get_share(results: SuiteResults) -> GetShare:
    """
    wardled's best median GET req/s over HTTP/1.1 (any concurrency) and the
    bare Klein TLS hello-world's over HTTP/1.1.
    """
    wardled, concurrency = max(
        (
            (median_rate(rounds), key[2])
            for key, rounds in results.crud.items()
            if key[0] == "wardled" and key[1] == HTTP1 and key[3] == "get"
        ),
        key=lambda pair: -math.inf if math.isnan(pair[0]) else pair[0],
        default=(math.nan, 0),
    )
    bare_klein = median_rate(results.bare_klein.get(HTTP1, []))
    return GetShare(wardled, concurrency, bare_klein)


def bare_klein_json(results: SuiteResults) -> dict[str, object]:
    """
    The bare Klein TLS hello-world by protocol, every round included, and
    wardled's GET as a share of it.
    """
    share = get_share(results)
    return {
        "path": HELLO_PATH,
        "body_bytes": results.bare_klein_body_bytes,
        "clients": BASELINE_CLIENTS,
        "protocols": {
            protocol: _baseline_json(rounds)
            for protocol, rounds in results.bare_klein.items()
        },
        "wardled_get_per_second": _json_number(share.wardled, 1),
        "wardled_get_clients": share.concurrency or None,
        "wardled_get_share": _json_number(share.share),
    }


# -- CRUD -------------------------------------------------------------------


CRUD_HEADER = (
    "operation",
    "HTTP",
    "clients",
    "wardled req/s",
    "etcd gateway req/s",
    "ratio",
    "embedded req/s",
    "ratio",
    "etcdctl ceiling",
)

LATENCY_HEADER = (
    "operation",
    "HTTP",
    "clients",
    "wardled p50/p99 ms",
    "etcd p50/p99 ms",
    "embedded p50/p99 ms",
    "wardled CPU/req µs",
    "+ etcd µs",
    "etcd CPU/req µs",
    "others % core",
)


def _crud_cells(
    results: SuiteResults,
) -> Iterable[tuple[str, str, int, list[LoadResult], list[LoadResult], list[LoadResult]]]:
    concurrencies = sorted({key[2] for key in results.crud})
    for operation in OPERATIONS:
        for concurrency in concurrencies:
            baseline = results.crud.get(("etcd", HTTP1, concurrency, operation), [])
            for protocol in (HTTP1, HTTP2):
                ours = results.crud.get(("wardled", protocol, concurrency, operation))
                if ours is None:
                    continue
                embedded = results.crud.get(
                    ("embedded", protocol, concurrency, operation), []
                )
                yield operation, protocol, concurrency, ours, baseline, embedded


def _median(results: Sequence[LoadResult], read: Callable[[LoadResult], float]) -> float:
    return _spread(results, read).median


def _latency_cell(results: Sequence[LoadResult]) -> str:
    if not results:
        return "–"
    p50, p99 = _median(results, _p50), _median(results, _p99)
    return f"{p50:.1f} / {p99:.1f}" if not math.isnan(p50) else "n/a"


def _ceiling_cell(results: SuiteResults, operation: str) -> str:
    perf = results.check_perf
    if operation not in WRITES or perf is None or perf.writes_per_second is None:
        return "–"
    return f"{perf.writes_per_second:,.0f}"


def crud_rows(results: SuiteResults) -> list[tuple[str, ...]]:
    """
    The CRUD throughput table's rows.
    """
    rows: list[tuple[str, ...]] = []
    for operation, protocol, concurrency, ours, base, embedded in _crud_cells(results):
        ours_rate = _median(ours, _per_second)
        base_rate = _median(base, _per_second) if base else math.nan
        embedded_rate = _median(embedded, _per_second) if embedded else math.nan
        rows.append(
            (
                operation,
                protocol,
                str(concurrency),
                _spread(ours, _per_second).cell(0),
                _spread(base, _per_second).cell(0) if base else "–",
                _ratio_text(ratio(ours_rate, base_rate)),
                _spread(embedded, _per_second).cell(0) if embedded else "–",
                _ratio_text(ratio(embedded_rate, base_rate)) if embedded else "–",
                _ceiling_cell(results, operation),
            )
        )
    return rows


def latency_rows(results: SuiteResults) -> list[tuple[str, ...]]:
    """
    The CRUD latency and CPU table's rows.
    """
    rows: list[tuple[str, ...]] = []
    for operation, protocol, concurrency, ours, base, embedded in _crud_cells(results):
        rows.append(
            (
                operation,
                protocol,
                str(concurrency),
                _latency_cell(ours),
                _latency_cell(base),
                _latency_cell(embedded),
                f"{_median(ours, lambda r: r.server_cpu_us):,.0f}",
                f"{_median(ours, lambda r: r.stack_cpu_us):,.0f}",
                f"{_median(base, lambda r: r.server_cpu_us):,.0f}" if base else "–",
                _others_cell([*ours, *base, *embedded]),
            )
        )
    return rows


def _others_cell(results: Sequence[LoadResult]) -> str:
    """
    The most of a core other processes used during any of C{results}.
    """
    shares = [result.other_share for result in results]
    return f"{100 * max(shares):.0f}" if shares else "–"


def crud_json(results: SuiteResults) -> list[dict[str, object]]:
    """
    One entry per operation × protocol × concurrency, with ratios.
    """
    entries = []
    for operation, protocol, concurrency, ours, base, embedded in _crud_cells(results):
        ours_rate = _median(ours, _per_second)
        base_rate = _median(base, _per_second) if base else math.nan
        embedded_rate = _median(embedded, _per_second) if embedded else math.nan
        entries.append(
            {
                "operation": operation,
                "protocol": protocol,
                "concurrency": concurrency,
                "wardled": _summary(ours),
                "etcd": _summary(base) if base else None,
                "embedded": _summary(embedded) if embedded else None,
                "ratio_wardled_etcd": _json_number(ratio(ours_rate, base_rate)),
                "ratio_embedded_etcd": _json_number(ratio(embedded_rate, base_rate)),
            }
        )
    return entries


# -- etcd doing wardled's calls ----------------------------------------------


ETCD_CALLS_TITLE = f"Ceiling of wardled's writes: {ETCD_TXN_LABEL}, requests/s:"
ETCD_CALLS_LEGEND = (
    "put-style: the etcd gateway column above (put, range, put, deleterange; "
    "no watch).  txn + watch: what wardled asks of etcd (create-if-absent "
    "txn, range, compare-and-swap txns on mod_revision) with one watch "
    "(prev_kv, progress_notify) open on the keys, as wardled's watch cache "
    "holds; etcd's CPU per request includes sending the events.  others: the "
    "most of a core other processes used during any of the row's cells (a "
    "busy machine skews the ratios)."
)
ETCD_CALLS_HEADER = (
    "operation",
    "HTTP",
    "clients",
    "etcd put-style req/s",
    "etcd txn + watch req/s",
    "wardled req/s",
    "wardled ÷ put-style",
    "wardled ÷ txn + watch",
    "txn + watch ÷ put-style",
    "etcd CPU/req µs put-style / txn + watch",
    "others % core",
)


@attrs.frozen
class EtcdCallsCell:
    """
    One operation at one concurrency over HTTP/1.1: etcd put-style, etcd
    doing wardled's calls, and wardled (each a list of rounds, maybe empty).
    """

    operation: str
    concurrency: int
    put_style: list[LoadResult]
    txn_watch: list[LoadResult]
    wardled: list[LoadResult]

    def ratios(self) -> tuple[float, float, float]:
        """
        wardled ÷ put-style, wardled ÷ txn + watch, txn + watch ÷ put-style
        (of the medians; NaN where one is missing).
        """
        put_style, txn_watch, wardled = (
            _median(rounds, _per_second) if rounds else math.nan
            for rounds in (self.put_style, self.txn_watch, self.wardled)
        )
        return (
            ratio(wardled, put_style),
            ratio(wardled, txn_watch),
            ratio(txn_watch, put_style),
        )


def etcd_calls_cells(results: SuiteResults) -> list[EtcdCallsCell]:
    """
    Every operation × concurrency that etcd doing wardled's calls was
    measured at.
    """
    concurrencies = sorted({key[2] for key in results.crud if key[0] == ETCD_TXN})
    cells = []
    for operation in OPERATIONS:
        for concurrency in concurrencies:
            txn_watch = results.crud.get((ETCD_TXN, HTTP1, concurrency, operation))
            if not txn_watch:
                continue
            cells.append(
                EtcdCallsCell(
                    operation,
                    concurrency,
                    results.crud.get(("etcd", HTTP1, concurrency, operation), []),
                    txn_watch,
                    results.crud.get(("wardled", HTTP1, concurrency, operation), []),
                )
            )
    return cells


def _rate_cell(rounds: Sequence[LoadResult]) -> str:
    return _spread(rounds, _per_second).cell(0) if rounds else "–"


def _etcd_cpu_cell(cell: EtcdCallsCell) -> str:
    put_style, txn_watch = (
        f"{_median(rounds, lambda r: r.server_cpu_us):,.0f}" if rounds else "–"
        for rounds in (cell.put_style, cell.txn_watch)
    )
    return f"{put_style} / {txn_watch}"


def etcd_calls_rows(results: SuiteResults) -> list[tuple[str, ...]]:
    """
    The rows of the table of etcd doing wardled's calls.
    """
    rows: list[tuple[str, ...]] = []
    for cell in etcd_calls_cells(results):
        rows.append(
            (
                cell.operation,
                HTTP1,
                str(cell.concurrency),
                _rate_cell(cell.put_style),
                _rate_cell(cell.txn_watch),
                _rate_cell(cell.wardled),
                *(_ratio_text(value) for value in cell.ratios()),
                _etcd_cpu_cell(cell),
                _others_cell([*cell.put_style, *cell.txn_watch, *cell.wardled]),
            )
        )
    return rows


def _rate_json(rounds: Sequence[LoadResult]) -> dict[str, object] | None:
    if not rounds:
        return None
    return {
        "per_second": _spread(rounds, _per_second).as_json(0),
        "server_cpu_us": _spread(rounds, lambda r: r.server_cpu_us).as_json(0),
    }


def etcd_calls_json(results: SuiteResults) -> list[dict[str, object]]:
    """
    One entry per operation × concurrency: etcd doing wardled's calls
    (every round), etcd put-style and wardled over HTTP/1.1 (req/s and
    server CPU; their rounds are under C{crud}), and the ratios.
    """
    entries = []
    for cell in etcd_calls_cells(results):
        wardled_put, wardled_txn, txn_put = cell.ratios()
        entries.append(
            {
                "operation": cell.operation,
                "protocol": HTTP1,
                "concurrency": cell.concurrency,
                "etcd_put_style": _rate_json(cell.put_style),
                "etcd_txn_watch": _summary(cell.txn_watch),
                "wardled": _rate_json(cell.wardled),
                "ratio_wardled_put_style": _json_number(wardled_put),
                "ratio_wardled_txn_watch": _json_number(wardled_txn),
                "ratio_txn_watch_put_style": _json_number(txn_put),
            }
        )
    return entries


# -- lists ------------------------------------------------------------------


LIST_HEADER = (
    "items",
    "HTTP",
    "what",
    "ms per list",
    "µs per item",
    "÷ etcd range",
    "÷ json.dumps",
    "server CPU ms",
    "others % core",
)


def _list_ms(result: LoadResult) -> float:
    return result.latency_ms(0.5)


def list_sizes(results: SuiteResults) -> list[int]:
    """
    The list sizes measured, ascending.
    """
    return sorted({key[2] for key in results.lists})


def _dumps_ms(results: SuiteResults, size: int) -> float:
    timings = results.dumps.get(size, [])
    return 1000 * Spread.of(timings).median if timings else math.nan


LIST_TARGETS = (
    ("wardled", HTTP1, "wardled"),
    ("wardled", HTTP2, "wardled"),
    ("embedded", HTTP1, "embedded"),
    ("embedded", HTTP2, "embedded"),
    ("etcd", HTTP1, "etcd range"),
)


def list_rows(results: SuiteResults) -> list[tuple[str, ...]]:
    """
    The list table's rows: each target per size, then json.dumps.
    """
    rows: list[tuple[str, ...]] = []
    for size in list_sizes(results):
        etcd_ms = _median(results.lists.get(("etcd", HTTP1, size), []), _list_ms)
        dumps_ms = _dumps_ms(results, size)
        for name, protocol, label in LIST_TARGETS:
            rounds = results.lists.get((name, protocol, size))
            if not rounds:
                continue
            ms = _median(rounds, _list_ms)
            rows.append(
                (
                    f"{size:,}",
                    protocol,
                    label,
                    _spread(rounds, _list_ms).cell(1),
                    f"{1000 * ms / size:.1f}",
                    "" if name == "etcd" else _ratio_text(ratio(ms, etcd_ms)),
                    _ratio_text(ratio(ms, dumps_ms)),
                    f"{_median(rounds, lambda r: r.server_cpu / max(r.completed, 1)) * 1000:,.1f}",
                    _others_cell(rounds),
                )
            )
        rows.append(
            (
                f"{size:,}",
                "–",
                "json.dumps",
                f"{dumps_ms:.1f}",
                f"{1000 * dumps_ms / size:.1f}",
                "",
                "1.00",
                "",
                "",
            )
        )
    return rows


def list_json(results: SuiteResults) -> list[dict[str, object]]:
    """
    One entry per size, with baselines and ratios.
    """
    entries = []
    for size in list_sizes(results):
        etcd_ms = _median(results.lists.get(("etcd", HTTP1, size), []), _list_ms)
        dumps_ms = _dumps_ms(results, size)
        entry: dict[str, object] = {
            "items": size,
            "json_dumps_ms": _json_number(dumps_ms),
            "etcd_range_ms": _json_number(etcd_ms),
        }
        for name, protocol, _ in LIST_TARGETS:
            rounds = results.lists.get((name, protocol, size))
            if not rounds:
                continue
            ms = _median(rounds, _list_ms)
            entry[f"{name} {protocol}"] = {
                "ms_per_list": _spread(rounds, _list_ms).as_json(2),
                "us_per_item": _json_number(1000 * ms / size),
                "ratio_etcd_range": _json_number(ratio(ms, etcd_ms)),
                "ratio_json_dumps": _json_number(ratio(ms, dumps_ms)),
                "rounds": [result.as_json() for result in rounds],
            }
        entries.append(entry)
    return entries


# -- watch ------------------------------------------------------------------


def watch_tables(watch: WatchResults) -> tuple[str, str]:
    """
    wardled on etcd against etcd, and embedded against etcd.
    """
    main = rst_table(comparison_rows(watch.versus_etcd))
    embedded = ""
    if watch.embedded:
        header = ("watchers", "writes/s", "metric", "embedded", "etcd", "ratio")
        embedded = rst_table(comparison_rows(watch.embedded), header)
    return main, embedded


# -- memory and workers -----------------------------------------------------


MEMORY_HEADER = ("backend", "objects", "JSON MiB", "RSS growth MiB", "RSS / JSON")


def memory_rows(results: SuiteResults) -> list[tuple[str, ...]]:
    """
    The cache-memory table's rows, one per backend.
    """
    return [
        (
            memory.backend,
            f"{memory.objects:,}",
            f"{memory.json_bytes / 2**20:.1f}",
            f"{memory.rss_growth / 2**20:.1f}",
            _ratio_text(memory.ratio),
        )
        for memory in results.memory
    ]


WORKERS_HEADER = (
    "workers",
    "operation",
    "clients",
    "req/s",
    "server CPU/req µs",
    "others % core",
    "note",
)


def workers_rows(results: SuiteResults) -> list[tuple[str, ...]]:
    """
    The worker-processes table's rows (a note when skipped).
    """
    rows: list[tuple[str, ...]] = []
    for run in results.workers:
        if not run.results:
            rows.append((str(run.workers), "–", "–", "–", "–", "–", run.note))
            continue
        for operation, rounds in run.results.items():
            rows.append(
                (
                    str(run.workers),
                    operation,
                    "32",
                    _spread(rounds, _per_second).cell(0),
                    f"{_median(rounds, lambda r: r.server_cpu_us):,.0f}",
                    _others_cell(rounds),
                    run.note,
                )
            )
    return rows


def workers_json(results: SuiteResults) -> list[dict[str, object]]:
    """
    One entry per worker count.
    """
    return [
        {
            "workers": run.workers,
            "note": run.note,
            "results": {op: _summary(rounds) for op, rounds in run.results.items()},
        }
        for run in results.workers
    ]
