# -*- test-case-name: tests.test_bench_smoke -*-
"""
The benchmark suite (C{make bench}, L{bench.suite}) still runs: a C{--smoke}
run against a real etcd and real wardleds prints its tables, writes JSON
with every section holding numbers and ratios, and draws its plots (or
says why not).  The numbers themselves are not checked: tests check
behaviour, never speed.  Plus the pieces that need no server: parsing
C{etcdctl check perf}, the target verdicts, the table of etcd doing
wardled's calls, the presets, the bare Klein hello-world's body.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bench._hello import HELLO_PATH, hello_body
from bench._suite_etcdwrites import ETCD_TXN
from bench._suite_load import HTTP1, HTTP2, LoadResult
from bench._suite_options import parse_suite_options, watch_rate
from bench._suite_report import (
    BARE_KLEIN,
    ETCD_CALLS_HEADER,
    ETCD_CALLS_TITLE,
    SuiteResults,
    baseline_rows,
    etcd_calls_rows,
)
from bench._suite_servers import StoredTemplate
from bench._suite_targets import verdicts
from bench.suite import parse_check_perf

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE_TIMEOUT = 240.0
OPERATIONS = {"create", "get", "update", "delete"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """
    Run C{python -m bench.suite --smoke} once; its output, JSON and plots
    directory.
    """
    directory = tmp_path_factory.mktemp("bench")
    json_path = directory / "suite.json"
    plots_dir = directory / "plots"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.suite",
            "--smoke",
            "--json",
            str(json_path),
            "--plots",
            str(plots_dir),
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    with open(json_path, encoding="utf-8") as source:
        document = json.load(source)
    yield {"stdout": completed.stdout, "document": document, "plots": plots_dir}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def test_prints_every_table(smoke: dict[str, Any]) -> None:
    stdout = smoke["stdout"]
    for title in (
        "Machine: ",
        "Baselines (GET, 32 clients)",
        "CRUD throughput",
        "CRUD latency",
        ETCD_CALLS_TITLE,
        "Lists",
        "Watch fan-out, wardled on etcd against etcd's gateway",
        "Watch fan-out, wardled embedded against etcd",
        "Cache memory",
        "Worker processes",
        "etcdctl check perf",
        "Targets (issue 8)",
    ):
        assert title in stdout, title
    assert "wardled req/s  etcd gateway req/s  ratio" in stdout
    assert stdout.count("\n=====") >= 20  # reStructuredText table borders


def _table_rows(stdout: str, label: str) -> list[list[str]]:
    """
    The cells (split at runs of two or more spaces) of every printed table
    row whose second cell is C{label}.
    """
    rows = [re.split(r"\s{2,}", line.strip()) for line in stdout.splitlines()]
    return [cells for cells in rows if len(cells) > 3 and cells[1] == label]


def _leading_number(cell: str) -> float:
    """
    The median of a C{"1,234"} or C{"1,234 (1,200–1,300)"} cell.
    """
    return float(cell.split()[0].replace(",", ""))


def test_prints_the_bare_klein_baseline(smoke: dict[str, Any]) -> None:
    rows = _table_rows(smoke["stdout"], BARE_KLEIN)
    assert [cells[0] for cells in rows] == ["HTTP/1.1", "HTTP/2"], rows
    for cells in rows:
        assert cells[2] == "32"
        assert _leading_number(cells[3]) > 0, cells  # req/s
        assert _leading_number(cells[4]) > 0, cells  # server CPU/req
    healthz = _table_rows(smoke["stdout"], "wardled /healthz")
    assert [cells[0] for cells in healthz] == ["HTTP/1.1", "HTTP/2"], healthz
    document = smoke["document"]["bare_klein_tls"]
    assert document["path"] == HELLO_PATH
    assert document["body_bytes"] == len(hello_body())
    assert f"{document['body_bytes']:,} bytes of JSON" in smoke["stdout"]
    for protocol in ("HTTP/1.1", "HTTP/2"):
        figures = document["protocols"][protocol]
        assert figures["per_second"]["median"] > 0
        assert figures["server_cpu_us"]["median"] > 0
        assert figures["errors"] == 0, figures["rounds"]
    assert document["wardled_get_share"] > 0
    assert document["wardled_get_clients"] in (1, 32)  # the better of the two


def test_crud_has_every_cell_with_ratios(smoke: dict[str, Any]) -> None:
    entries = smoke["document"]["crud"]
    cells = {(e["operation"], e["protocol"], e["concurrency"]) for e in entries}
    assert cells == {
        (operation, protocol, concurrency)
        for operation in OPERATIONS
        for protocol in ("HTTP/1.1", "HTTP/2")
        for concurrency in (1, 32)
    }
    for entry in entries:
        assert entry["wardled"]["per_second"]["median"] > 0, entry["operation"]
        assert entry["etcd"]["per_second"]["median"] > 0
        assert entry["embedded"]["per_second"]["median"] > 0
        assert _number(entry["ratio_wardled_etcd"])
        assert _number(entry["ratio_embedded_etcd"])
        assert entry["wardled"]["errors"] == 0, entry["wardled"]["rounds"]


def test_etcd_doing_wardleds_calls_has_every_cell(smoke: dict[str, Any]) -> None:
    entries = smoke["document"]["etcd_wardled_calls"]
    cells = {(e["operation"], e["concurrency"]) for e in entries}
    assert cells == {
        (operation, concurrency)
        for operation in OPERATIONS
        for concurrency in (1, 32)
    }
    for entry in entries:
        assert entry["protocol"] == "HTTP/1.1"
        txn_watch = entry["etcd_txn_watch"]
        assert txn_watch["per_second"]["median"] > 0, entry["operation"]
        assert txn_watch["server_cpu_us"]["median"] > 0
        assert txn_watch["errors"] == 0, txn_watch["rounds"]
        assert entry["etcd_put_style"]["per_second"]["median"] > 0
        assert entry["wardled"]["per_second"]["median"] > 0
        for name in (
            "ratio_wardled_put_style",
            "ratio_wardled_txn_watch",
            "ratio_txn_watch_put_style",
        ):
            assert _number(entry[name]), (entry["operation"], name)


def test_prints_the_table_of_etcd_doing_wardleds_calls(smoke: dict[str, Any]) -> None:
    stdout = smoke["stdout"]
    table = stdout[stdout.index(ETCD_CALLS_TITLE) :].split("\n\n")[1]
    header = table.splitlines()[1]
    assert tuple(re.split(r"\s{2,}", header.strip())) == ETCD_CALLS_HEADER
    rows = [
        re.split(r"\s{2,}", line.strip())
        for line in table.splitlines()
        if line.split()[0] in OPERATIONS
    ]
    assert [tuple(cells[:3]) for cells in rows] == [
        (operation, "HTTP/1.1", clients)
        for operation in ("create", "get", "update", "delete")
        for clients in ("1", "32")
    ]
    for cells in rows:
        assert len(cells) == len(ETCD_CALLS_HEADER), cells
        assert all(_leading_number(cell) > 0 for cell in cells[3:6]), cells  # req/s
        assert all(_leading_number(cell) >= 0 for cell in cells[6:9]), cells  # ratios
        assert re.fullmatch(r"[\d,]+ / [\d,]+", cells[9]), cells  # etcd CPU/req
        assert _leading_number(cells[10]) >= 0, cells  # others % core


def test_lists_have_baselines_and_ratios(smoke: dict[str, Any]) -> None:
    entries = smoke["document"]["list"]
    assert [entry["items"] for entry in entries] == [10, 100]
    for entry in entries:
        assert entry["json_dumps_ms"] > 0
        assert entry["etcd_range_ms"] > 0
        for key in ("wardled HTTP/1.1", "wardled HTTP/2", "embedded HTTP/1.1"):
            assert entry[key]["ms_per_list"]["median"] > 0
            assert _number(entry[key]["ratio_json_dumps"])
            assert _number(entry[key]["ratio_etcd_range"])


def test_ceiling_memory_watch_and_workers(smoke: dict[str, Any]) -> None:
    document = smoke["document"]
    for protocol in ("HTTP/1.1", "HTTP/2"):
        ceiling = document["client_ceiling"][protocol]
        assert ceiling["per_second"]["median"] > 0
        assert ceiling["client_ceiling_per_core"]["median"] > 0
    assert [m["backend"] for m in document["memory"]] == ["etcd", "embedded"]
    assert all(m["json_bytes"] > 0 for m in document["memory"])
    for group in ("versus_etcd", "embedded"):
        comparisons = document["watch"][group]
        assert [c["watchers"] for c in comparisons] == [1, 10]
        for comparison in comparisons:
            delivered = comparison["summary"]["delivered events/s"]
            assert delivered["wardled"]["median"] > 0
            assert _number(delivered["ratio"])
    one, two = document["workers"]
    assert one["workers"] == 1
    assert one["results"]["get"]["per_second"]["median"] > 0
    assert two["workers"] == 2
    assert two["results"] or "--workers 2" in two["note"]
    perf = document["etcdctl_check_perf"]
    assert perf["writes_per_s"] is None and "skipped" in perf["note"]


def test_targets_have_verdicts(smoke: dict[str, Any]) -> None:
    targets = smoke["document"]["targets"]
    assert [t["target"] for t in targets] == [
        "GET throughput",
        "create vs etcd put",
        "LIST 10,000",
        "watch latency",
        "RSS per watcher",
        "cache memory",
    ]
    assert all(t["met"] in (True, False, None) for t in targets)
    # Smoke sizes cannot judge the list and watch targets.
    assert targets[2]["met"] is None and targets[3]["met"] is None
    assert targets[1]["met"] is not None
    assert re.search(
        r"; etcd alone doing wardled's calls \(txn \+ watch\): [\d,]+ req/s "
        r"= \d+ % of put$",
        targets[1]["measured"],
    ), targets[1]["measured"]
    assert re.search(
        r"= \d+ % of bare Klein TLS \([\d,]+\) in this run$", targets[0]["measured"]
    ), targets[0]["measured"]


def test_plots_or_the_reason(smoke: dict[str, Any]) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        assert "plots skipped: matplotlib not installed" in smoke["stdout"]
        assert smoke["document"]["plots"] == []
    else:
        names = sorted(os.listdir(smoke["plots"]))
        assert names == ["list-latency.png", "watch-latency.png"]
        for name in names:
            with open(smoke["plots"] / name, "rb") as png:
                assert png.read(8) == b"\x89PNG\r\n\x1a\n"


# -- no servers -------------------------------------------------------------


def test_check_perf_throughput_lines() -> None:
    failed = " 60 / 60  100.00% 1m0s\nFAIL: Throughput too low: 5604 writes/s\nFAIL\n"
    passed = "PASS: Throughput is 151 writes/s\nPASS: Slowest request took 0.009s\nPASS\n"
    assert parse_check_perf(failed) == 5604.0
    assert parse_check_perf(passed) == 151.0
    assert parse_check_perf("Error: context deadline exceeded") is None


def _rate(per_second: float) -> LoadResult:
    return LoadResult(completed=int(per_second), elapsed=1.0)


def test_verdicts_from_figures() -> None:
    results = SuiteResults()
    assert [v.met for v in verdicts(results)] == [None] * 6
    results.crud[("wardled", HTTP1, 32, "get")] = [_rate(6000), _rate(4000), _rate(5500)]
    results.crud[("wardled", HTTP1, 32, "create")] = [_rate(590)]
    results.crud[("etcd", HTTP1, 32, "create")] = [_rate(1000)]
    get, create = verdicts(results)[:2]
    assert get.met is True and get.measured == "5,500 req/s at 32 clients"
    assert create.met is False
    assert create.measured == "590 vs 1,000 req/s at 32 clients = 59 %"
    results.crud[(ETCD_TXN, HTTP1, 32, "create")] = [_rate(480), _rate(520)]
    results.crud[(ETCD_TXN, HTTP1, 1, "create")] = [_rate(100)]
    create = verdicts(results)[1]
    assert create.met is False  # the rule is unchanged: vs put
    assert create.measured == (
        "590 vs 1,000 req/s at 32 clients = 59 %; etcd alone doing wardled's "
        "calls (txn + watch): 500 req/s = 50 % of put"
    )
    results.bare_klein[HTTP1] = [_rate(11000), _rate(9000), _rate(10000)]
    results.bare_klein[HTTP2] = [_rate(3000)]
    get = verdicts(results)[0]
    assert get.met is True
    assert get.measured == (
        "5,500 req/s at 32 clients = 55 % of bare Klein TLS (10,000) in this run"
    )


def test_etcd_calls_rows_from_figures() -> None:
    results = SuiteResults()
    assert etcd_calls_rows(results) == []
    results.crud[("etcd", HTTP1, 32, "create")] = [_rate(1000), _rate(800)]
    results.crud[(ETCD_TXN, HTTP1, 32, "create")] = [_rate(500)]
    results.crud[("wardled", HTTP1, 32, "create")] = [
        LoadResult(completed=450, elapsed=1.0, other_share=0.42)
    ]
    results.crud[("wardled", HTTP2, 32, "create")] = [_rate(9999)]
    results.crud[(ETCD_TXN, HTTP1, 1, "get")] = [_rate(300)]
    rows = etcd_calls_rows(results)
    assert [row[:9] for row in rows] == [
        ("create", HTTP1, "32", "900 (800–1,000)", "500", "450", "0.50", "0.90", "0.56"),
        ("get", HTTP1, "1", "–", "300", "–", "n/a", "n/a", "n/a"),
    ]
    assert [row[9] for row in rows] == ["0 / 0", "– / 0"]  # no CPU was counted
    assert [row[10] for row in rows] == ["42", "0"]  # the busiest of the row


def test_baseline_rows_by_protocol() -> None:
    results = SuiteResults()
    results.bare_klein[HTTP2] = [_rate(3000)]
    results.bare_klein[HTTP1] = [_rate(9000), _rate(8000)]
    results.ceiling[HTTP1] = [_rate(2000)]
    rows = baseline_rows(results)
    assert [(row[0], row[1], row[3]) for row in rows] == [
        (HTTP1, "wardled /healthz", "2,000"),
        (HTTP1, BARE_KLEIN, "8,500 (8,000–9,000)"),
        (HTTP2, BARE_KLEIN, "3,000"),
    ]


def test_hello_body_is_flunder_sized_json() -> None:
    body = hello_body()
    assert 300 <= len(body) <= 1000
    document = json.loads(body)
    assert (document["kind"], document["metadata"]["name"]) == ("Flunder", "hello")


def test_presets_and_explicit_flags() -> None:
    smoke = parse_suite_options(["--smoke"])
    assert (smoke.rounds, smoke.list_sizes, smoke.check_perf) == (1, [10, 100], False)
    full = parse_suite_options(["--rounds", "2"])
    assert (full.rounds, full.list_sizes, full.watchers) == (
        2,
        [100, 1000, 10000],
        [1, 100, 1000],
    )
    assert full.check_perf is True and full.workers == [1, 2]
    assert parse_suite_options(["--smoke", "--rounds", "2"]).rounds == 2
    assert (watch_rate(1000), watch_rate(100), watch_rate(10)) == (20.0, 200.0, 200.0)


def test_stored_template_renames() -> None:
    template = StoredTemplate(
        b"/registry/g/g/flunders/warm/bench-000000",
        b'{"metadata":{"name":"bench-000000","namespace":"warm","uid":"u"}}',
    )
    assert template.key_for("list-10", "item-1") == b"/registry/g/g/flunders/list-10/item-1"
    renamed = json.loads(template.value_for("list-10", "item-1"))["metadata"]
    assert (renamed["name"], renamed["namespace"]) == ("item-1", "list-10")
    assert renamed["uid"] != "u"
