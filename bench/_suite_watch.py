# -*- test-case-name: tests.test_bench_smoke -*-
"""
The suite's watch fan-out section: L{bench.watch_fanout}'s phases (N
watchers over HTTP/1.1 with client certificates, one writer at a fixed
rate, ack→receipt latency, CPU per event, RSS per idle watcher) for
wardled on etcd and etcd's own gateway fan-out, alternating round by
round, plus wardled on its embedded store as extra rows.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import attrs

from bench import watch_fanout
from bench._options import parse_options
from bench._report import Comparison, PhaseResult
from bench._suite_options import watch_rate
from bench._suite_servers import SuiteServers
from tests.harness import WardledProcess


@attrs.frozen
class WatchResults:
    """
    Fan-out results per watcher count.

    @ivar versus_etcd: wardled on etcd (ours) against etcd (theirs).
    @ivar embedded: wardled on the embedded store (ours) against the same
        etcd rounds (theirs); empty when not measured.
    """

    versus_etcd: list[Comparison]
    embedded: list[Comparison]


def fanout_options(options: argparse.Namespace) -> argparse.Namespace:
    """
    L{bench.watch_fanout}'s options for the suite's settings.
    """
    return parse_options(
        [
            "--watchers",
            ",".join(str(count) for count in options.watchers),
            "--duration",
            str(options.watch_duration),
            "--rounds",
            str(options.rounds),
            "--settle",
            str(options.watch_settle),
            "--quiet-limit",
            str(options.quiet_limit),
            "--quiet-wait",
            str(options.quiet_wait),
            "--retries",
            str(options.retries),
        ]
    )


def _fanout_servers(servers: SuiteServers, wardled: WardledProcess) -> watch_fanout.Servers:
    return watch_fanout.Servers(
        etcd=servers.etcd,
        wardled=wardled,
        wardled_endpoint=servers.endpoint(wardled),
        etcd_endpoint=servers.etcd_endpoint,
        etcd_pid=servers.etcd_pid,
        stored_value=servers.template.value,
    )


def run_watch(
    servers: SuiteServers,
    options: argparse.Namespace,
    log: Callable[[str], None],
) -> WatchResults:
    """
    For each watcher count and round: wardled on etcd, etcd, then (in the
    first C{--embedded-watch-rounds} rounds) wardled embedded.
    """
    fanout = fanout_options(options)
    on_etcd = _fanout_servers(servers, servers.wardled)
    embedded = (
        None
        if servers.embedded is None or options.embedded_watch_rounds < 1
        else _fanout_servers(servers, servers.embedded)
    )
    versus_etcd, versus_embedded = [], []
    for watchers in options.watchers:
        rate = watch_rate(watchers)
        ours: list[PhaseResult] = []
        theirs: list[PhaseResult] = []
        extra: list[PhaseResult] = []
        for number in range(1, options.rounds + 1):
            log(f"watch: {watchers} watchers, {rate:g} writes/s, round {number}")
            args = (watchers, rate, number, fanout)
            # Private helpers of watch_fanout, shared on purpose: one
            # definition of a fan-out phase for both scripts.
            ours.append(watch_fanout._measure(watch_fanout._wardled_spec, on_etcd, *args))
            theirs.append(watch_fanout._measure(watch_fanout._etcd_spec, on_etcd, *args))
            if embedded is not None and number <= options.embedded_watch_rounds:
                extra.append(
                    watch_fanout._measure(watch_fanout._wardled_spec, embedded, *args)
                )
        versus_etcd.append(Comparison(watchers, rate, ours, theirs))
        if extra:
            versus_embedded.append(Comparison(watchers, rate, extra, theirs))
    return WatchResults(versus_etcd, versus_embedded)
