# -*- test-case-name: tests.test_storage_sqlite -*-
"""
What only the SQLite backend promises beyond the conformance suite: data and
revisions survive close, reopen and C{kill -9}; one process at a time owns a
data directory; compaction drops history but keeps the latest values; watches
replay the log, then follow live writes in revision order; SQLite never runs
on the reactor thread; and the periodic compaction service.

Tests that need the worker thread run under the real reactor; other
processes (lock holders, a writer to kill) are Python children started with
C{spawnProcess}.
"""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.test_storage_conformance import Recorder
from wardled.storage.interfaces import (
    DELETE,
    PUT,
    Compacted,
    FutureRevision,
    KeyValue,
    StorageError,
    Unavailable,
)
from wardled.storage.memory import MemoryStorage
from wardled.storage.sqlite import (
    DATABASE_NAME,
    LOCK_NAME,
    CompactionService,
    SqliteStorage,
    StorageLocked,
)

_E = TypeVar("_E", bound=Exception)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A child that tries to open the directory given as its argument.
OPEN_PROBE = """
import sys
from twisted.internet import reactor
from wardled.storage.sqlite import SqliteStorage, StorageLocked
try:
    SqliteStorage.open(reactor, sys.argv[1])
except StorageLocked as error:
    print(error, flush=True)
    sys.exit(3)
print("opened", flush=True)
"""

# A child that holds the directory until it is killed.
HOLDER = """
import sys
from twisted.internet import reactor
from wardled.storage.sqlite import SqliteStorage
SqliteStorage.open(reactor, sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
"""

# A child that writes for ever from four concurrent writers and prints every
# acknowledged write as "key revision value".
WRITER = """
import sys
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from wardled.storage.sqlite import SqliteStorage

storage = SqliteStorage.open(reactor, sys.argv[1])

async def write(writer):
    count = 0
    while True:
        key = f"/kill/{writer}/{count:06d}"
        revision = await storage.create(key, b"created")
        value = "created"
        if count % 2:
            revision = await storage.update(key, b"updated", revision)
            value = "updated"
        print(key, revision, value, flush=True)
        count += 1

for writer in range(4):
    Deferred.fromCoroutine(write(writer))
reactor.run()
"""


def deferred_test(
    test: Callable[[Any], Coroutine[Any, Any, None]],
) -> Callable[[Any], Deferred[None]]:
    """
    Run a coroutine test method as a Deferred under trial.
    """

    @functools.wraps(test)
    def run(self: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(test(self))

    return run


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = REPO_ROOT if not path else REPO_ROOT + os.pathsep + path
    return env


class _Child(ProcessProtocol):
    """
    A Python child: its output lines as they come, and how it ended.
    """

    def __init__(self, wanted_lines: int) -> None:
        self.lines: list[str] = []
        self.errors = b""
        self.enough: Deferred[None] = Deferred()
        self.ended: Deferred[BaseException] = Deferred()
        self._wanted = wanted_lines
        self._partial = b""

    @classmethod
    def spawn(cls, script: str, data_dir: str, wanted_lines: int = 1) -> _Child:
        child = cls(wanted_lines)
        reactor.spawnProcess(
            child,
            sys.executable,
            [sys.executable, "-c", script, data_dir],
            env=_child_env(),
            path=REPO_ROOT,
        )
        return child

    def outReceived(self, data: bytes) -> None:
        *complete, self._partial = (self._partial + data).split(b"\n")
        self.lines.extend(line.decode() for line in complete)
        if len(self.lines) >= self._wanted and not self.enough.called:
            self.enough.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Failure) -> None:
        if not self.enough.called:
            self.enough.errback(
                RuntimeError(f"child ended early: {self.lines} {self.errors!r}")
            )
        # The exception, not the Failure: awaiting it must not raise.
        ended = reason.value
        assert ended is not None
        self.ended.callback(ended)

    def kill(self) -> Deferred[BaseException]:
        assert self.transport is not None
        self.transport.signalProcess("KILL")
        return self.ended


class _StorageTestCase(TestCase):
    """
    A fresh data directory per test, under the real reactor.
    """

    timeout = 20

    def setUp(self) -> None:
        parent = tempfile.mkdtemp(prefix="wardled-sqlite-test-")
        self.addCleanup(shutil.rmtree, parent, ignore_errors=True)
        self.data_dir = os.path.join(parent, "data")

    def open_storage(self, **options: Any) -> SqliteStorage:
        storage = SqliteStorage.open(reactor, self.data_dir, **options)
        self.addCleanup(storage.close)
        return storage

    def read_lock_file(self) -> str:
        with open(os.path.join(self.data_dir, LOCK_NAME)) as lock_file:
            return lock_file.read()

    async def fails(self, waiting: Deferred[Any], kind: type[_E]) -> _E:
        """
        Await C{waiting}, which must fail with a C{kind}; return the error.
        """
        try:
            result = await waiting
        except kind as error:
            return error
        raise self.failureException(f"expected {kind.__name__}, got {result!r}")

    def count_rows(self) -> int:
        """
        How many rows the log holds, read through a connection of our own.
        """
        path = os.path.join(self.data_dir, DATABASE_NAME)
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(connection.execute("SELECT COUNT(*) FROM log").fetchone()[0])
        finally:
            connection.close()


class PersistenceTests(_StorageTestCase):
    @deferred_test
    async def test_reopen_keeps_data_and_revisions(self) -> None:
        storage = self.open_storage()
        a = await storage.create("/p/a", b"a1")
        a2 = await storage.update("/p/a", b"a2", a)
        b = await storage.create("/p/b", b"b1")
        c = await storage.create("/p/c", b"c1")
        gone = await storage.delete("/p/c", c)
        await storage.compact(a2)
        await storage.close()

        reopened = self.open_storage()
        self.assertEqual(await reopened.current_revision(), gone)
        self.assertEqual(reopened.compact_revision, a2)
        latest = await reopened.list("/p/")
        self.assertEqual(
            list(latest.kvs),
            [KeyValue("/p/a", b"a2", a, a2), KeyValue("/p/b", b"b1", b, b)],
        )
        self.assertEqual(latest.revision, gone)
        before_delete = await reopened.list("/p/", revision=c)
        self.assertEqual([kv.value for kv in before_delete.kvs], [b"a2", b"b1", b"c1"])
        await self.fails(reopened.list("/p/", revision=a), Compacted)
        following = await reopened.create("/p/d", b"d1")
        self.assertEqual(following, gone + 1)

    @deferred_test
    async def test_kill_loses_no_acknowledged_write(self) -> None:
        """
        A writer killed with SIGKILL mid-stream: every write it saw
        acknowledged is there, at the revision it was told.
        """
        writer = _Child.spawn(WRITER, self.data_dir, wanted_lines=60)
        await writer.enough
        ended = await writer.kill()
        assert isinstance(ended, ProcessTerminated)
        self.assertEqual(ended.signal, 9)
        acknowledged = [line.split() for line in writer.lines]
        self.assertGreaterEqual(len(acknowledged), 60)

        storage = self.open_storage()
        stored = {kv.key: kv for kv in (await storage.list("/kill/")).kvs}
        for key, revision, value in acknowledged:
            self.assertIn(key, stored)
            self.assertEqual(stored[key].mod_revision, int(revision))
            self.assertEqual(stored[key].value, value.encode())
        newest = max(int(revision) for _, revision, _ in acknowledged)
        self.assertGreaterEqual(await storage.current_revision(), newest)
        self.assertGreater(await storage.create("/after", b""), newest)


class LockTests(_StorageTestCase):
    @deferred_test
    async def test_other_process_cannot_open(self) -> None:
        self.open_storage()
        probe = _Child.spawn(OPEN_PROBE, self.data_dir)
        ended = await probe.ended
        assert isinstance(ended, ProcessTerminated)
        self.assertEqual(ended.exitCode, 3)
        self.assertEqual(
            probe.lines,
            [
                (
                    f"data directory {self.data_dir} is in use by another wardled "
                    f"process (pid {os.getpid()})"
                )
            ],
        )

    @deferred_test
    async def test_killed_holder_does_not_block(self) -> None:
        """
        While a child holds the directory, opening fails and names it; once
        it is killed (its lock file stays behind), opening works.
        """
        holder = _Child.spawn(HOLDER, self.data_dir)
        await holder.enough
        self.assertEqual(holder.lines, ["locked"])
        assert holder.transport is not None
        with self.assertRaises(StorageLocked) as raised:
            SqliteStorage.open(reactor, self.data_dir)
        self.assertEqual(raised.exception.pid, holder.transport.pid)
        await holder.kill()
        self.assertTrue(os.path.exists(os.path.join(self.data_dir, LOCK_NAME)))
        storage = self.open_storage()
        self.assertEqual(await storage.current_revision(), 1)
        self.assertEqual(self.read_lock_file(), f"{os.getpid()}\n")


class CompactionTests(_StorageTestCase):
    @deferred_test
    async def test_compaction_drops_history_keeps_latest(self) -> None:
        storage = self.open_storage()
        a = await storage.create("/c/a", b"a1")
        a2 = await storage.update("/c/a", b"a2", a)
        a3 = await storage.update("/c/a", b"a3", a2)
        b = await storage.create("/c/b", b"b1")
        b_gone = await storage.delete("/c/b", b)
        c = await storage.create("/c/c", b"c1")
        c2 = await storage.update("/c/c", b"c2", c)
        self.assertEqual(self.count_rows(), 7)

        await storage.compact(c)
        # Left: a3 (a's newest), c1 (the compaction point, and c2's
        # prev_kv), c2. Gone: a1, a2, b1 and b's tombstone.
        self.assertEqual(self.count_rows(), 3)
        for old in (a, a2, a3, b_gone):
            error = await self.fails(storage.list("/c/", revision=old), Compacted)
            self.assertEqual((error.requested, error.compact_revision), (old, c))
        at_compaction = await storage.list("/c/", revision=c)
        self.assertEqual(
            list(at_compaction.kvs),
            [KeyValue("/c/a", b"a3", a, a3), KeyValue("/c/c", b"c1", c, c)],
        )
        latest = await storage.list("/c/")
        self.assertEqual([kv.value for kv in latest.kvs], [b"a3", b"c2"])
        self.assertEqual(latest.count, 2)
        kv, _ = await storage.get("/c/b")
        self.assertIsNone(kv)

        recorder = Recorder()
        replay = storage.watch("/c/", c, recorder)
        self.addCleanup(replay.stop)
        events = await recorder.wait_for(2)
        self.assertEqual(
            [(e.type, e.kv.value, e.kv.mod_revision) for e in events],
            [(PUT, b"c1", c), (PUT, b"c2", c2)],
        )
        self.assertEqual(events[1].prev_kv, KeyValue("/c/c", b"c1", c, c))

        too_old = storage.watch("/c/", a3, Recorder())
        error = await self.fails(too_old.done, Compacted)
        self.assertEqual((error.requested, error.compact_revision), (a3, c))
        await self.fails(storage.compact(c), Compacted)
        await self.fails(storage.compact(c2 + 5), FutureRevision)

    @deferred_test
    async def test_compaction_service(self) -> None:
        storage = self.open_storage()
        revision = await storage.create("/s/key", b"0")
        for count in range(1, 10):
            revision = await storage.update("/s/key", str(count).encode(), revision)
        service = CompactionService(storage, Clock(), interval=60.0, keep=4)
        await service.compact_once()
        self.assertEqual(storage.compact_revision, revision - 4)
        self.assertEqual(service.compacted, revision - 4)
        # The newest row below the compaction point stays: the compaction
        # point's prev_kv.
        self.assertEqual(self.count_rows(), 6)
        await service.compact_once()
        self.assertEqual(storage.compact_revision, revision - 4)


class CompactionServiceTests(SynchronousTestCase):
    """
    The timer (on a L{Clock}, against the in-memory store).
    """

    def test_compacts_every_interval(self) -> None:
        storage = MemoryStorage()
        clock = Clock()
        for count in range(5):
            storage.create(f"/k/{count}", b"")
        service = CompactionService(storage, clock, interval=10.0, keep=2)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(storage.compact_revision, 4)
        storage.create("/k/late", b"")
        clock.advance(9.0)
        self.assertEqual(storage.compact_revision, 4)
        clock.advance(1.0)
        self.assertEqual(storage.compact_revision, 5)

    def test_failures_keep_the_timer(self) -> None:
        """
        A failing round logs a warning; the next one still runs.
        """
        data_dir = tempfile.mkdtemp(prefix="wardled-sqlite-closed-")
        self.addCleanup(shutil.rmtree, data_dir, ignore_errors=True)
        storage = SqliteStorage.open(MemoryReactorClock(), data_dir)
        self.successResultOf(storage.close())
        clock = Clock()
        service = CompactionService(storage, clock, interval=5.0, keep=0)
        with capturedLogs() as events:
            service.startService()
            self.addCleanup(service.stopService)
            clock.advance(5.0)
        warnings = [
            formatEvent(event)
            for event in events
            if event.get("log_level") == LogLevel.warn
        ]
        self.assertEqual(len(warnings), 2)
        self.assertIn("is closed", warnings[0])
        self.assertEqual(service.compacted, 0)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_already_compacted(self) -> None:
        storage = MemoryStorage()
        for count in range(5):
            storage.create(f"/k/{count}", b"")
        storage.compact(5)
        service = CompactionService(storage, Clock(), keep=1)
        self.successResultOf(service.compact_once())
        self.assertEqual(service.compacted, 5)


class WatchTests(_StorageTestCase):
    @deferred_test
    async def test_replay_then_live_delete_with_previous_value(self) -> None:
        storage = self.open_storage()
        a = await storage.create("/w/a", b"a1")
        a2 = await storage.update("/w/a", b"a2", a)
        x = await storage.create("/w/x", b"x1")
        x_gone = await storage.delete("/w/x", x)
        recorder = Recorder()
        watch = storage.watch("/w/", a, recorder)
        self.addCleanup(watch.stop)
        replayed = await recorder.wait_for(4)
        self.assertEqual(
            [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in replayed],
            [
                (PUT, "/w/a", b"a1", a),
                (PUT, "/w/a", b"a2", a2),
                (PUT, "/w/x", b"x1", x),
                (DELETE, "/w/x", b"", x_gone),
            ],
        )
        self.assertEqual(replayed[3].prev_kv, KeyValue("/w/x", b"x1", x, x))
        a_gone = await storage.delete("/w/a", a2)
        # A caught-up watch has its event before the write's Deferred fires.
        self.assertEqual(len(recorder.events), 5)
        live = recorder.events[4]
        self.assertEqual((live.type, live.kv.mod_revision), (DELETE, a_gone))
        self.assertEqual(live.prev_kv, KeyValue("/w/a", b"a2", a, a2))
        self.assertEqual(recorder.problems, [])

    @deferred_test
    async def test_concurrent_writes_arrive_in_revision_order(self) -> None:
        storage = self.open_storage()
        recorder = Recorder()
        watch = storage.watch("/o/", 0, recorder)
        self.addCleanup(watch.stop)
        seen_before_ack: list[bool] = []

        def acknowledged(revision: int) -> int:
            delivered = {e.kv.mod_revision for e in recorder.events}
            seen_before_ack.append(revision in delivered)
            return revision

        writes = [
            storage.create(f"/o/{count:03d}", b"v").addCallback(acknowledged)
            for count in range(60)
        ]
        revisions = await gatherResults(writes)
        events = await recorder.wait_for(60)
        self.assertEqual([e.kv.mod_revision for e in events], sorted(revisions))
        self.assertEqual(len(set(revisions)), 60)
        self.assertEqual(seen_before_ack, [True] * 60)
        self.assertEqual(recorder.problems, [])

    @deferred_test
    async def test_replay_pages_and_catches_up_with_live_writes(self) -> None:
        """
        A watch replaying more than a page while writes keep coming sees
        every revision once, in order.
        """
        storage = self.open_storage()
        first = revision = await storage.create("/r/key", b"0")
        for count in range(1, 1100):
            revision = await storage.update("/r/key", str(count).encode(), revision)
        recorder = Recorder()
        watch = storage.watch("/r/", first, recorder)
        self.addCleanup(watch.stop)
        for count in range(1100, 1120):
            revision = await storage.update("/r/key", str(count).encode(), revision)
        events = await recorder.wait_for(1120)
        self.assertEqual(
            [e.kv.value for e in events], [str(n).encode() for n in range(1120)]
        )
        self.assertEqual(recorder.problems, [])

    @deferred_test
    async def test_progress_for_other_prefixes(self) -> None:
        """
        A write elsewhere brings a caught-up watch to its revision with an
        empty batch (what consistent reads from the watch cache wait for).
        """
        storage = self.open_storage()
        recorder = Recorder()
        watch = storage.watch("/mine/", 0, recorder)
        self.addCleanup(watch.stop)
        elsewhere = await storage.create("/theirs/x", b"")
        await recorder.wait_for_batches(1)
        self.assertEqual(recorder.batches, [([], elsewhere)])

    @deferred_test
    async def test_close_ends_watches_and_calls(self) -> None:
        storage = self.open_storage()
        watch = storage.watch("/z/", 0, Recorder())
        outcome: list[object] = []
        watch.done.addCallback(outcome.append)
        await storage.close()
        self.assertEqual(outcome, [None])
        await self.fails(storage.get("/z/a"), Unavailable)
        await self.fails(storage.create("/z/a", b""), Unavailable)
        await self.fails(storage.watch("/z/", 0, Recorder()).done, Unavailable)
        await storage.close()


class ThreadTests(_StorageTestCase):
    @deferred_test
    async def test_sqlite_runs_off_the_reactor_thread(self) -> None:
        statements: list[tuple[int, str]] = []

        def trace(statement: str) -> None:
            statements.append((threading.get_ident(), statement))

        storage = self.open_storage(trace=trace)
        created = await storage.create("/t/a", b"1")
        updated = await storage.update("/t/a", b"2", created)
        await storage.get("/t/a")
        await storage.list("/t/", revision=created)
        recorder = Recorder()
        watch = storage.watch("/t/", created, recorder)
        self.addCleanup(watch.stop)
        await recorder.wait_for(2)
        await storage.delete("/t/a", updated)
        await storage.compact(updated)
        await storage.check_health()
        await storage.close()
        threads = {thread for thread, _ in statements}
        self.assertGreater(len(statements), 10)
        self.assertIn("PRAGMA synchronous = FULL", [sql for _, sql in statements])
        self.assertEqual(len(threads), 1)
        self.assertNotIn(threading.get_ident(), threads)


class OpenTests(SynchronousTestCase):
    """
    Opening and closing before the reactor runs (a L{MemoryReactorClock}
    never runs, so nothing starts the worker thread).
    """

    def setUp(self) -> None:
        parent = tempfile.mkdtemp(prefix="wardled-sqlite-open-")
        self.addCleanup(shutil.rmtree, parent, ignore_errors=True)
        self.data_dir = os.path.join(parent, "data")

    def test_creates_private_directory(self) -> None:
        fake = MemoryReactorClock()
        storage = SqliteStorage.open(fake, self.data_dir)
        self.assertEqual(stat.S_IMODE(os.stat(self.data_dir).st_mode), 0o700)
        self.assertTrue(os.path.exists(os.path.join(self.data_dir, DATABASE_NAME)))
        self.assertEqual(self.successResultOf(storage.current_revision()), 1)
        self.successResultOf(storage.close())

    def test_reactor_shutdown_closes(self) -> None:
        fake = MemoryReactorClock()
        storage = SqliteStorage.open(fake, self.data_dir)
        [(shutdown, args, kwargs)] = fake.triggers["before"]["shutdown"]
        self.successResultOf(shutdown(*args, **kwargs))
        self.failureResultOf(storage.current_revision(), Unavailable)
        self.successResultOf(storage.close())
        again = SqliteStorage.open(fake, self.data_dir)
        self.successResultOf(again.close())

    def test_second_open_in_same_process(self) -> None:
        storage = SqliteStorage.open(MemoryReactorClock(), self.data_dir)
        with self.assertRaises(StorageLocked) as raised:
            SqliteStorage.open(MemoryReactorClock(), self.data_dir)
        self.assertEqual(
            str(raised.exception),
            f"data directory {self.data_dir} is in use by another wardled "
            f"process (pid {os.getpid()})",
        )
        self.successResultOf(storage.close())
        again = SqliteStorage.open(MemoryReactorClock(), self.data_dir)
        self.successResultOf(again.close())

    def test_newer_schema_refused(self) -> None:
        storage = SqliteStorage.open(MemoryReactorClock(), self.data_dir)
        self.successResultOf(storage.close())
        path = os.path.join(self.data_dir, DATABASE_NAME)
        connection = sqlite3.connect(path)
        connection.execute("PRAGMA user_version = 99")
        connection.close()
        with self.assertRaises(StorageError) as raised:
            SqliteStorage.open(MemoryReactorClock(), self.data_dir)
        self.assertIn("schema version 99", str(raised.exception))
        # The failed open released the lock: the same error, not StorageLocked.
        with self.assertRaises(StorageError) as again:
            SqliteStorage.open(MemoryReactorClock(), self.data_dir)
        self.assertIn("schema version 99", str(again.exception))
