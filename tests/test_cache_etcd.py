# -*- test-case-name: tests.test_cache_etcd -*-
"""
The watch cache over a real etcd: event order and revisions, an etcd
restart in the middle of a stream, and a compaction that overtakes the
cache's upstream watch.

The cache's storage reaches etcd through a TCP proxy the tests can cut, so
that its watch can be held back while another client writes and compacts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, ITCPTransport
from twisted.internet.task import deferLater
from twisted.protocols.portforward import ProxyFactory, ProxyServer
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.etcdserver import SharedEtcdMixin
from tests.test_cache import decode, flunder, seen
from wardled.cache.cacher import Cacher
from wardled.cache.interfaces import ADDED, DELETED, MODIFIED, CacheEvent, TooOld
from wardled.cache.multiplexer import WatchMultiplexer
from wardled.cache.watcher import CacheWatcher
from wardled.storage.etcd import EtcdStorage

WAIT = 10.0


def _pause(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


async def _until(condition: Callable[[], bool], what: str) -> None:
    """
    Poll C{condition} on the real reactor until it holds (at most L{WAIT}).
    """
    for _ in range(int(WAIT / 0.02)):
        if condition():
            return
        await _pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Collector:
    """
    Drains a watcher as its wakeups come, keeping every taken event.
    """

    def __init__(self, watcher: CacheWatcher) -> None:
        self.watcher = watcher
        self.events: list[tuple[str, CacheEvent]] = []
        self.end: Failure | None = None
        watcher.set_wakeup(self.drain)
        watcher.ended.addErrback(self._ended)
        self.drain()

    def drain(self) -> None:
        self.events.extend(self.watcher.take(1000))

    def _ended(self, failure: Failure) -> None:
        self.end = failure

    async def wait_for(self, count: int) -> list[tuple[str, str, int]]:
        await _until(lambda: len(self.events) >= count, f"{count} events")
        return seen(self.events)


class CuttableProxy(ProxyFactory):
    """
    A TCP proxy to etcd whose connections can be cut and whose port can be
    closed (refusing connections) and opened again.
    """

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port)
        self.servers: list[ProxyServer] = []
        self.listening: IListeningPort | None = None
        self.listen_port = 0

    def buildProtocol(self, addr: Any) -> ProxyServer:
        server = super().buildProtocol(addr)
        assert server is not None
        self.servers.append(server)
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def open(self) -> None:
        listening = reactor.listenTCP(
            self.listen_port, cast(Any, self), interface="127.0.0.1"
        )
        self.listening = listening
        self.listen_port = cast(IPv4Address, listening.getHost()).port

    def close(self) -> Deferred[None]:
        """
        Stop listening and cut every connection.
        """
        listening, self.listening = self.listening, None
        for server in self.servers:
            if server.transport is not None:
                cast(ITCPTransport, server.transport).abortConnection()
        self.servers = []
        stopping = None if listening is None else listening.stopListening()
        return succeed(None) if stopping is None else stopping


class CacheOnEtcdTests(SharedEtcdMixin, TestCase):
    def setUp(self) -> None:
        self.server = self.shared_etcd()
        root = f"/t{uuid.uuid4().hex[:8]}"
        self.group = f"{root}/wardle.example.com/"
        self.flunders_prefix = f"{self.group}wardle.example.com/flunders/"
        self.writer = self.storage([self.server.url])

    def storage(self, servers: list[str]) -> EtcdStorage:
        storage = EtcdStorage(reactor, servers, self.group)
        self.addCleanup(storage.close)
        return storage

    async def start_cache(self, servers: list[str] | None = None) -> Cacher:
        """
        A started multiplexer (flunders only) over its own etcd client.
        """
        storage = self.storage(servers or [self.server.url])
        self.mux = WatchMultiplexer(storage, self.group, reactor, page_size=2)
        cacher = self.mux.register(self.flunders_prefix, decode)
        self.mux.startService()
        self.addCleanup(self.mux.stopService)
        await cacher.wait_until_ready(WAIT)
        return cacher

    def key(self, name: str) -> str:
        return f"{self.flunders_prefix}ns/{name}"

    async def create(self, name: str) -> int:
        return await self.writer.create(self.key(name), flunder("ns", name))

    async def update(self, name: str, revision: int) -> int:
        value = flunder("ns", name, touched=str(revision))
        return await self.writer.update(self.key(name), value, revision)

    def watch(self, cacher: Cacher, from_revision: int | None = None) -> Collector:
        watcher = cacher.watch(self.flunders_prefix, from_revision, capacity=1000)
        self.addCleanup(watcher.stop)
        return Collector(watcher)

    # -- tests -----------------------------------------------------------------

    def test_events_in_order(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._events_in_order())

    async def _events_in_order(self) -> None:
        """
        Initial state, then every write in order with the etcd revisions.
        """
        cacher = await self.start_cache()
        listed = [await self.create(name) for name in ("b", "a", "c")]
        await cacher.wait_for_revision(listed[-1], WAIT)
        self.assertEqual(
            [(o.name, o.revision) for o in cacher.list(self.flunders_prefix)[0]],
            [("a", listed[1]), ("b", listed[0]), ("c", listed[2])],
        )
        collector = self.watch(cacher)
        resumed = self.watch(cacher, listed[0])
        d = await self.create("d")
        a2 = await self.update("a", listed[1])
        gone = await self.writer.delete(self.key("b"), listed[0])
        expected = [(ADDED, "d", d), (MODIFIED, "a", a2), (DELETED, "b", gone)]
        events = await collector.wait_for(6)
        self.assertEqual(events[3:], expected)
        self.assertEqual(
            await resumed.wait_for(5),
            [(ADDED, "a", listed[1]), (ADDED, "c", listed[2]), *expected],
        )
        await _pause(0.1)
        self.assertEqual(len(collector.events), 6)
        self.assertEqual(len(resumed.events), 5)
        self.assertEqual(await cacher.consistent_revision(), gone)
        self.assertEqual(collector.watcher.revision, gone)

    def test_consistent_read_after_writes_elsewhere(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._consistent_read_after_writes_elsewhere())

    async def _consistent_read_after_writes_elsewhere(self) -> None:
        """
        Writes outside the group raise etcd's revision without an event
        for the cache's watch (and etcd's progress notifications are ten
        minutes apart): a consistent read still finds the cache current at
        etcd's revision, well within its one-second wait, because the
        multiplexer checks that nothing under the prefix changed.
        """
        cacher = await self.start_cache()
        mine = await self.create("a")
        await cacher.wait_for_revision(mine, WAIT)
        foreign = 0
        for index in range(3):
            elsewhere = f"{self.group.rstrip('/')}-other/{index}"
            foreign = await self.writer.create(elsewhere, b"{}")
        self.assertGreater(foreign, cacher.revision)
        self.assertEqual(await cacher.consistent_revision(), foreign)
        self.assertEqual(cacher.revision, foreign)
        # A write of the group after that still arrives as an event.
        again = await self.create("b")
        self.assertEqual(await cacher.consistent_revision(), again)
        self.assertEqual([o.name for o in cacher.list(self.flunders_prefix)[0]], ["a", "b"])

    def test_etcd_restart(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._etcd_restart())

    async def _etcd_restart(self) -> None:
        """
        etcd crashing and coming back under a live watch: nothing is lost,
        nothing is seen twice, no watcher is ended.
        """
        cacher = await self.start_cache()
        collector = self.watch(cacher)
        first = await self.create("a")
        await collector.wait_for(1)
        self.server.kill()
        await _pause(0.3)
        self.server.restart()
        second = await self.update("a", first)
        third = await self.update("a", second)
        fourth = await self.create("b")
        events = await collector.wait_for(4)
        await _pause(0.2)
        self.assertEqual(
            seen(collector.events),
            [
                (ADDED, "a", first),
                (MODIFIED, "a", second),
                (MODIFIED, "a", third),
                (ADDED, "b", fourth),
            ],
        )
        self.assertEqual(len(events), 4)
        self.assertIsNone(collector.end)
        self.assertTrue(cacher.ready)
        self.assertEqual(self.mux.syncs, 1)

    def test_compaction_overtakes_watch(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._compaction_overtakes_watch())

    async def _compaction_overtakes_watch(self) -> None:
        """
        While the cache's watch is cut off, other writes happen and etcd is
        compacted past them: the resumed watch is refused, every watcher
        ends with TooOld, and the cache rebuilds from a fresh list.
        """
        proxy = CuttableProxy(self.server.client_port)
        proxy.open()
        self.addCleanup(proxy.close)
        cacher = await self.start_cache([proxy.url])
        first = await self.create("a")
        collector = self.watch(cacher)
        await collector.wait_for(1)
        await proxy.close()
        missed = await self.create("b")
        latest = await self.update("a", first)
        await self.writer.compact(latest)
        proxy.open()
        await _until(lambda: collector.end is not None, "the watcher to end")
        assert collector.end is not None
        expired = collector.end.value
        assert isinstance(expired, TooOld)
        self.assertEqual(expired.oldest, latest)
        await _until(lambda: self.mux.syncs == 2 and cacher.ready, "the rebuild")
        self.assertEqual(
            [(o.name, o.revision) for o in cacher.list(self.flunders_prefix)[0]],
            [("a", latest), ("b", missed)],
        )
        self.assertEqual(cacher.oldest_revision, latest)
        self.assertRaises(TooOld, cacher.watch, self.flunders_prefix, first, capacity=9)
        fresh = self.watch(cacher, latest)
        after = await self.create("c")
        self.assertEqual(await fresh.wait_for(1), [(ADDED, "c", after)])
