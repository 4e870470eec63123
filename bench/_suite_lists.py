# -*- test-case-name: tests.test_bench_smoke -*-
"""
Lists of 100, 1,000 and 10,000 Flunders: wardled's (from its watch
cache), etcd's own C{range} of the same keys through the gateway, and
C{json.dumps} of the same items in this process (the floor for any Python
server that has the objects in memory); plus what holding them costs
wardled in memory.

For wardled on etcd the Flunders are written straight into etcd, as
wardled stores them (set-up, not measured), and wardled's cache picks them
up through its watch; the embedded store has no such back door, so they
are created through wardled (at concurrency 32; that run's throughput is
reported too).  Resident memory is read before and after, once the cache
holds them all, and compared with the size of their JSON.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import time
from collections.abc import Callable, Sequence

import attrs

from bench._http import Endpoint
from bench._proc import rss_bytes
from bench._suite_load import (
    HTTP1,
    Accounting,
    LoadResult,
    LoadSpec,
    measure_on_new_connections,
)
from bench._suite_servers import SuiteServers, etcd_put_many
from bench._targets import flunder, flunders_path, prefix_end
from tests.harness import WardledProcess

_DUMPS_REPEATS = 5
_SYNC_TIMEOUT = 60.0
_UNLIMITED = 1 << 60


def list_namespace(size: int) -> str:
    """
    The namespace holding C{size} Flunders.
    """
    return f"list-{size}"


def list_repeats(size: int, requested: int) -> int:
    """
    Lists per size and round: C{requested}, or by default about the same
    number of items listed for every size (3 to 30 lists).
    """
    return requested if requested > 0 else max(3, min(30, 30_000 // size))


@attrs.frozen
class CacheMemory:
    """
    What holding the listed Flunders costs a wardled.

    @ivar backend: C{"etcd"} or C{"embedded"}.
    @ivar objects: Flunders added.
    @ivar json_bytes: their compact JSON, as listed, in bytes.
    @ivar rss_growth: the server's RSS after minus before, in bytes.
    @ivar create_result: for the embedded store, the creates that filled it.
    """

    backend: str
    objects: int
    json_bytes: int
    rss_growth: int
    create_result: LoadResult | None = None

    @property
    def ratio(self) -> float:
        return self.rss_growth / self.json_bytes if self.json_bytes else float("nan")

    def as_json(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "objects": self.objects,
            "json_bytes": self.json_bytes,
            "rss_growth_bytes": self.rss_growth,
            "rss_per_json_byte": round(self.ratio, 3),
            "create_during_fill": (
                None if self.create_result is None else self.create_result.as_json()
            ),
        }


def _item_name(index: int) -> str:
    return f"item-{index:06d}"


def _fill_etcd(servers: SuiteServers, sizes: Sequence[int]) -> None:
    template = servers.template
    for size in sizes:
        namespace = list_namespace(size)
        etcd_put_many(
            servers.etcd.url,
            [
                (
                    template.key_for(namespace, _item_name(i)),
                    template.value_for(namespace, _item_name(i)),
                )
                for i in range(size)
            ],
        )


def _named_flunder(index: int) -> bytes:
    return flunder(index).replace(b'"bench-', b'"item-', 1)


async def _create_all(
    endpoint: Endpoint, size: int, accounting: Accounting, concurrency: int = 32
) -> LoadResult:
    path = flunders_path(list_namespace(size))
    spec = LoadSpec(
        endpoint=endpoint,
        protocol=HTTP1,
        make_request=lambda i: ("POST", path, _named_flunder(i)),
        success=201,
        concurrency=min(concurrency, size),
        duration=float(_UNLIMITED),
        limit=size,
    )
    return await measure_on_new_connections(spec, accounting)


def _wait_cached(server: WardledProcess, size: int) -> None:
    """
    Wait until C{server} lists all C{size} Flunders of the namespace (a
    one-item page: its C{remainingItemCount} says how many there are).
    """
    path = flunders_path(list_namespace(size)) + "?limit=1"
    deadline = time.monotonic() + _SYNC_TIMEOUT
    while True:
        listed = server.https("GET", path).json()
        count = len(listed["items"]) + listed["metadata"].get("remainingItemCount", 0)
        if count >= size:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path}: {count} of {size} Flunders after filling")
        time.sleep(0.1)


def _listed_json_bytes(server: WardledProcess, size: int) -> int:
    """
    The size of the compact JSON of the Flunders in the namespace of
    C{size}, as C{server} lists them.
    """
    items = server.https("GET", flunders_path(list_namespace(size))).json()["items"]
    return sum(len(json.dumps(item, separators=(",", ":"))) for item in items)


def _settled_rss(pid: int) -> int:
    """
    RSS once the server is idle (a few samples, the last one).
    """
    time.sleep(0.5)
    return rss_bytes(pid)


def fill(
    servers: SuiteServers,
    sizes: Sequence[int],
    log: Callable[[str], None],
) -> list[CacheMemory]:
    """
    Put C{sizes} Flunders in a namespace each, on every wardled; measure
    the memory their cache costs (L{with_json_sizes} adds what their JSON
    weighs, later).
    """
    total = sum(sizes)
    memories = []
    before = _settled_rss(servers.wardled.pid)
    _fill_etcd(servers, sizes)
    for size in sizes:
        _wait_cached(servers.wardled, size)
    rss_growth = _settled_rss(servers.wardled.pid) - before
    memories.append(CacheMemory("etcd", total, 0, rss_growth))
    log(f"  etcd backend: {total} Flunders, cache RSS +{rss_growth / 2**20:.1f} MiB")
    embedded = servers.embedded
    if embedded is not None:
        accounting = Accounting((embedded.pid,), servers.etcd_pid, servers.own_pids())
        endpoint = servers.endpoint(embedded)
        before = _settled_rss(embedded.pid)
        results = [
            asyncio.run(_create_all(endpoint, size, accounting)) for size in sizes
        ]
        for size in sizes:
            _wait_cached(embedded, size)
        rss_growth = _settled_rss(embedded.pid) - before
        created = _merged(results)
        memories.append(
            CacheMemory("embedded", created.completed, 0, rss_growth, created)
        )
        log(
            f"  embedded: {created.completed} created at "
            f"{created.per_second:.0f}/s, RSS +{rss_growth / 2**20:.1f} MiB"
        )
    return memories


def with_json_sizes(
    servers: SuiteServers, memories: Sequence[CacheMemory], sizes: Sequence[int]
) -> list[CacheMemory]:
    """
    C{memories} with the size of the listed Flunders' JSON filled in (read
    by listing them: done last, so that the big responses do not leave
    free heap behind for the memory figures of other sections to reuse).
    """
    servers_by_backend = {"etcd": servers.wardled, "embedded": servers.embedded}
    completed = []
    for memory in memories:
        server = servers_by_backend[memory.backend]
        assert server is not None
        json_bytes = sum(_listed_json_bytes(server, size) for size in sizes)
        completed.append(attrs.evolve(memory, json_bytes=json_bytes))
    return completed


def _merged(results: Sequence[LoadResult]) -> LoadResult:
    merged = LoadResult()
    for result in results:
        merged.completed += result.completed
        merged.errors += result.errors
        merged.first_errors.extend(result.first_errors[:2])
        merged.elapsed += result.elapsed
        merged.latencies.extend(result.latencies)
        merged.server_cpu += result.server_cpu
        merged.etcd_cpu += result.etcd_cpu
        merged.client_cpu += result.client_cpu
        merged.other_share = max(merged.other_share, result.other_share)
    merged.latencies.sort()
    return merged


@attrs.frozen
class ListTarget:
    """
    Something that lists: a wardled over a protocol, or etcd's range.

    @ivar name: C{"wardled"}, C{"embedded"} or C{"etcd"}.
    @ivar protocol: the protocol.
    @ivar endpoint: where.
    @ivar accounting: whose CPU is whose.
    """

    name: str
    protocol: str
    endpoint: Endpoint
    accounting: Accounting

    def request(self, size: int, template_key: bytes) -> tuple[str, str, bytes]:
        """
        The request listing the namespace of C{size}.
        """
        namespace = list_namespace(size)
        if self.name != "etcd":
            return "GET", flunders_path(namespace), b""
        collection = template_key.rsplit(b"/", 2)[0]
        prefix = collection + f"/{namespace}/".encode()
        body = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        return "POST", "/v3/kv/range", json.dumps(body).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def _list_many(target: ListTarget, size: int, repeats: int, key: bytes) -> LoadResult:
    request = target.request(size, key)
    spec = LoadSpec(
        endpoint=target.endpoint,
        protocol=target.protocol,
        make_request=lambda i: request,
        success=200,
        concurrency=1,
        duration=float(_UNLIMITED),
        limit=repeats,
    )
    return await measure_on_new_connections(spec, target.accounting)


def measure_list(
    target: ListTarget, size: int, repeats: int, template_key: bytes
) -> LoadResult:
    """
    List the namespace of C{size} C{repeats} times, one after the other
    (blocking).
    """
    return asyncio.run(_list_many(target, size, repeats, template_key))


def dumps_seconds(server: WardledProcess, size: int) -> float:
    """
    The median time C{json.dumps} (compact, as wardled writes) takes on
    the list wardled returns for the namespace of C{size}.
    """
    listed = server.https("GET", flunders_path(list_namespace(size))).json()
    timings = []
    for _ in range(_DUMPS_REPEATS):
        started = time.perf_counter()
        json.dumps(listed, separators=(",", ":"))
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)
