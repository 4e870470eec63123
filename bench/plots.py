# -*- test-case-name: tests.test_bench_smoke -*-
"""
PNG plots of the suite's figures: list latency against the number of
items, and watch delivery latency against the number of watchers.

They are drawn from the suite's JSON document, so they can be redrawn from
a saved run::

    python -m bench.plots results.json out-dir

matplotlib is only in the C{bench} extra (C{pip install -e '.[bench]'});
without it L{write_plots} raises L{PlotsUnavailable} and the suite says
so instead of failing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

LIST_PNG = "list-latency.png"
WATCH_PNG = "watch-latency.png"

#: (JSON key of a list entry, legend label)
LIST_SERIES = (
    ("wardled HTTP/1.1", "wardled, HTTP/1.1"),
    ("wardled HTTP/2", "wardled, HTTP/2"),
    ("embedded HTTP/1.1", "wardled embedded, HTTP/1.1"),
    ("embedded HTTP/2", "wardled embedded, HTTP/2"),
)


class PlotsUnavailable(Exception):
    """
    The plots cannot be drawn here (matplotlib is not installed).
    """


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable("matplotlib not installed") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def list_series(entries: Sequence[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """
    Milliseconds per list by number of items, per series label.
    """
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in entries:
        items = entry["items"]
        for key, label in LIST_SERIES:
            figures = entry.get(key)
            if figures and figures["ms_per_list"]["median"] is not None:
                series.setdefault(label, []).append(
                    (items, figures["ms_per_list"]["median"])
                )
        for key, label in (
            ("etcd_range_ms", "etcd gateway range"),
            ("json_dumps_ms", "json.dumps alone"),
        ):
            if entry.get(key) is not None:
                series.setdefault(label, []).append((items, entry[key]))
    return series


def watch_series(
    document: dict[str, Any], metric: str
) -> dict[str, list[tuple[int, float]]]:
    """
    C{metric} (a watch table label, e.g. C{"latency p99 (ms)"}) by number
    of watchers, per server.
    """
    series: dict[str, list[tuple[int, float]]] = {}
    watch = document.get("watch") or {}
    sides = (
        ("versus_etcd", "wardled", "wardled on etcd"),
        ("versus_etcd", "etcd", "etcd gateway"),
        ("embedded", "wardled", "wardled embedded"),
    )
    for group, side, label in sides:
        for comparison in watch.get(group) or []:
            value = comparison["summary"][metric][side]["median"]
            if value is not None and value > 0:
                series.setdefault(label, []).append((comparison["watchers"], value))
    return series


def _draw(
    pyplot: Any,
    series: dict[str, list[tuple[int, float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    path: str,
) -> None:
    figure, axes = pyplot.subplots(figsize=(7, 4.5), dpi=110)
    colours: dict[str, str] = {}
    for label, points in series.items():
        points = sorted(points)
        server = label.split(", from send")[0]
        colour = colours.setdefault(server, f"C{len(colours)}")
        style = "-"
        if label.startswith(("etcd", "json")):
            style = "--"
        if "from send" in label:
            style = ":"
        axes.plot(
            [x for x, _ in points],
            [y for _, y in points],
            style,
            color=colour,
            marker="o",
            label=label,
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def write_plots(document: dict[str, Any], directory: str) -> list[str]:
    """
    Draw the plots of a suite JSON C{document} into C{directory}.

    @return: the paths written.
    @raise PlotsUnavailable: matplotlib is not installed.
    """
    pyplot = _pyplot()
    os.makedirs(directory, exist_ok=True)
    machine = document.get("machine") or {}
    where = f"{machine.get('cpus', '?')} CPUs, {machine.get('cpu_model', '')}"
    written = []
    lists = list_series(document.get("list") or [])
    if lists:
        path = os.path.join(directory, LIST_PNG)
        _draw(
            pyplot,
            lists,
            f"List latency vs items ({where})",
            "Flunders listed",
            "ms per list (median)",
            path,
        )
        written.append(path)
    watch = watch_series(document, "latency p99 (ms)")
    for label, points in watch_series(document, "send→receipt p99 (ms)").items():
        watch[f"{label}, from send"] = points
    if watch:
        path = os.path.join(directory, WATCH_PNG)
        _draw(
            pyplot,
            watch,
            f"Watch delivery p99 vs watchers ({where})",
            "watchers",
            "p99 ms (ack→receipt; dotted: send→receipt)",
            path,
        )
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """
    C{python -m bench.plots RESULTS.json DIR}.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 2:
        print("usage: python -m bench.plots RESULTS.json DIR", file=sys.stderr)
        return 2
    with open(arguments[0], encoding="utf-8") as source:
        document = json.load(source)
    try:
        written = write_plots(document, arguments[1])
    except PlotsUnavailable as reason:
        print(f"plots skipped: {reason}")
        return 0
    print("plots: " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
