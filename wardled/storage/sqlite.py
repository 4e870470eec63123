# -*- test-case-name: tests.test_storage_sqlite,tests.test_storage_conformance -*-
"""
L{IStorage} in an embedded SQLite database, so wardled can run without etcd.

This is k3s's kine idea on the standard library's C{sqlite3}: etcd's
revisions, compare-and-swap writes, compaction and watches on top of one
append-only log table (L{wardled.storage._sqlitelog}). One process owns a
data directory: L{SqliteStorage.open} takes an exclusive C{flock} on
C{wardled.lock} next to C{wardled.db} and fails with L{StorageLocked} while
another process holds it.

Threads: the database connection belongs to one worker thread (a Twisted
thread pool of size one, started when the reactor runs and stopped by
L{SqliteStorage.close} or at reactor shutdown). Every query runs there, so
the reactor thread never waits on SQLite; results come back as Deferreds.
Commits are durable (WAL journal, C{synchronous=FULL}): a write whose
Deferred has fired survives C{kill -9}.

Watches: this process is the only writer, so no polling. After each commit
the worker hands the write's event to the reactor thread (in commit order,
through C{callFromThread}) before the write's Deferred fires; watches that
are caught up receive it at once. A watch from an older revision first
replays the log from the database, a page at a time, then follows live
writes. A caught-up watch whose prefix a write did not touch gets a progress
notification (an empty batch at the new revision) on the next reactor turn,
so consistent reads from the watch cache never wait.

Compaction: L{SqliteStorage.compact} drops the rows no read at or after the
given revision needs. L{CompactionService} calls it every C{interval}
seconds to keep the last C{keep} revisions (kine's policy: 1000 revisions,
every five minutes).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ._callbackwatch import CallbackWatch
from ._sqlitelog import EventPage, SqliteLog
from .interfaces import (
    Compacted,
    Event,
    IStorage,
    IWatch,
    KeyValue,
    ListResult,
    PrefixState,
    StorageError,
    Unavailable,
    WatchCallback,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

DATABASE_NAME = "wardled.db"
LOCK_NAME = "wardled.lock"
REPLAY_PAGE = 1000
DEFAULT_COMPACTION_INTERVAL = 300.0
DEFAULT_COMPACTION_KEEP = 1000

_T = TypeVar("_T")
_logger = Logger()


class StorageLocked(StorageError):
    """
    Another process holds the data directory's lock.

    @ivar data_dir: the directory.
    @ivar pid: the process id written in its lock file, if one was.
    """

    def __init__(self, data_dir: str, pid: int | None) -> None:
        holder = "unknown" if pid is None else str(pid)
        super().__init__(
            f"data directory {data_dir} is in use by another wardled process "
            f"(pid {holder})"
        )
        self.data_dir = data_dir
        self.pid = pid


class _DirectoryLock:
    """
    An exclusive C{flock} on C{<data_dir>/wardled.lock}, held while the file
    stays open; the kernel releases it when the process dies.
    """

    def __init__(self, path: str, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, data_dir: str) -> _DirectoryLock:
        """
        Lock C{data_dir} without waiting and write this process's id.

        @raise StorageLocked: another process (or another open storage in
            this one) holds it.
        """
        path = os.path.join(data_dir, LOCK_NAME)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(descriptor)
            os.close(descriptor)
            raise StorageLocked(data_dir, holder) from None
        except BaseException:
            os.close(descriptor)
            raise
        lock = cls(path, descriptor)
        lock.write_pid()
        return lock

    def write_pid(self) -> None:
        """
        Record this process's id (again after C{twistd} daemonizes).
        """
        if self._descriptor is not None:
            os.ftruncate(self._descriptor, 0)
            os.pwrite(self._descriptor, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def _read_pid(descriptor: int) -> int | None:
    try:
        return int(os.pread(descriptor, 32, 0).decode("ascii").strip())
    except (OSError, ValueError):
        return None


@implementer(IStorage)
class SqliteStorage:
    """
    Keys and revisions in an SQLite log in one data directory.

    @ivar revision: the newest revision whose commit the reactor thread has
        seen (what L{current_revision} answers).
    @ivar compact_revision: the oldest revision still readable.
    @ivar data_dir: the data directory.
    """

    def __init__(
        self,
        reactor: Any,
        data_dir: str,
        lock: _DirectoryLock,
        opened: SqliteLog,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        """
        Use L{open}.

        @param reactor: provides C{callFromThread}, C{callLater},
            C{callWhenRunning} and system event triggers.
        @param lock: the data directory's lock, held.
        @param opened: the log as L{open} checked it (closed since; the
            worker thread opens its own connection).
        """
        self.data_dir = data_dir
        self.path = opened.path
        self.revision = opened.revision
        self.compact_revision = opened.compact_revision
        self._reactor = reactor
        self._lock = lock
        self._trace = trace
        # The worker thread's connection, opened by its first job: after
        # twistd has forked, and on the thread that uses it.
        self._log: SqliteLog | None = None
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="wardled-sqlite")
        self._watches: list[_SqliteWatch] = []
        self._progress_call: IDelayedCall | None = None
        self._closed = False
        self._close_waiters: list[Deferred[None]] | None = None
        self._shutdown_trigger: Any = reactor.addSystemEventTrigger(
            "before", "shutdown", self._shutdown
        )
        reactor.callWhenRunning(self._start)

    @classmethod
    def open(
        cls,
        reactor: Any,
        data_dir: str,
        *,
        trace: Callable[[str], None] | None = None,
    ) -> SqliteStorage:
        """
        Open the store in C{data_dir}, creating the directory (mode 0700) and
        the database as needed. Blocks: call it before the reactor runs.
        The lock is taken and the database checked here, so that errors stop
        the start-up; the worker thread opens its connection later.

        @param reactor: see L{__init__}.
        @param trace: called with every SQL statement (for tests).
        @raise StorageLocked: another process uses C{data_dir}.
        @raise StorageError: the database cannot be used.
        """
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        lock = _DirectoryLock.acquire(data_dir)
        path = os.path.join(data_dir, DATABASE_NAME)
        try:
            checked = SqliteLog.open(path)
            checked.close()
        except sqlite3.Error as error:
            lock.release()
            raise StorageError(f"cannot open {path}: {error}") from error
        except BaseException:
            lock.release()
            raise
        return cls(reactor, data_dir, lock, checked, trace)

    def _start(self) -> None:
        if self._closed:
            return
        self._pool.start()
        writing = deferToThreadPool(self._reactor, self._pool, self._lock.write_pid)
        writing.addErrback(self._log_failure, "cannot write {path}", self._lock.path)

    def _log_failure(self, failure: Failure, message: str, path: str) -> None:
        _logger.failure(message, failure, path=path)

    def _run(self, work: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """
        Run C{work(log, *args)} on the worker thread; SQLite errors become
        L{Unavailable}.
        """
        if self._closed:
            return fail(Unavailable(f"the store in {self.data_dir} is closed"))
        return deferToThreadPool(self._reactor, self._pool, self._guarded, work, *args)

    def _guarded(self, work: Callable[..., _T], *args: Any) -> _T:
        """
        On the worker thread: C{work} on the connection (opened the first
        time).
        """
        try:
            if self._log is None:
                self._log = SqliteLog.open(self.path, self._trace)
            return work(self._log, *args)
        except sqlite3.Error as error:
            raise Unavailable(f"sqlite database {self.path}: {error}") from error

    def _close_log(self) -> None:
        """
        On the worker thread: close the connection, if it was opened.
        """
        log, self._log = self._log, None
        if log is not None:
            log.close()

    # -- reads ---------------------------------------------------------------

    def get(self, key: str) -> Deferred[tuple[KeyValue | None, int]]:
        return self._run(SqliteLog.get, key)

    def list(
        self, prefix: str, start: str | None = None, limit: int = 0, revision: int = 0
    ) -> Deferred[ListResult]:
        return self._run(SqliteLog.list, prefix, start, limit, revision)

    def prefix_state(self, prefix: str, revision: int) -> Deferred[PrefixState]:
        return self._run(SqliteLog.prefix_state, prefix, revision)

    def current_revision(self) -> Deferred[int]:
        """
        The newest committed revision; every write whose Deferred has fired
        is at or below it.
        """
        if self._closed:
            return fail(Unavailable(f"the store in {self.data_dir} is closed"))
        return succeed(self.revision)

    def check_health(self) -> Deferred[None]:
        return self._run(SqliteLog.check)

    # -- writes --------------------------------------------------------------

    def create(self, key: str, value: bytes) -> Deferred[int]:
        return self._write(SqliteLog.create, key, value)

    def update(self, key: str, value: bytes, mod_revision: int) -> Deferred[int]:
        return self._write(SqliteLog.update, key, value, mod_revision)

    def delete(self, key: str, mod_revision: int) -> Deferred[int]:
        return self._write(SqliteLog.delete, key, mod_revision)

    def _write(self, write: Callable[..., Event], *args: Any) -> Deferred[int]:
        """
        Run C{write} on the worker and pass its event to the reactor thread,
        ahead of the write's own result.
        """

        def writing(log: SqliteLog) -> int:
            event = write(log, *args)
            self._reactor.callFromThread(self._committed, event)
            return event.kv.mod_revision

        return self._run(writing)

    def _committed(self, event: Event) -> None:
        """
        A write has committed (called in revision order): tell the watches.
        """
        self.revision = max(self.revision, event.kv.mod_revision)
        for watch in list(self._watches):
            watch.offer(event)
        self._schedule_progress()

    def compact(self, revision: int) -> Deferred[None]:
        compacting = self._run(SqliteLog.compact, revision)
        return compacting.addCallback(self._compacted, revision)

    def _compacted(self, dropped: int, revision: int) -> None:
        self.compact_revision = max(self.compact_revision, revision)
        _logger.debug(
            "compacted {path} at revision {revision}: {dropped} rows dropped",
            path=self.path,
            revision=revision,
            dropped=dropped,
        )

    # -- watches -------------------------------------------------------------

    def watch(self, prefix: str, from_revision: int, callback: WatchCallback) -> IWatch:
        """
        Watch C{prefix}; a C{from_revision} of 0 means "from the next write".
        """
        start = from_revision if from_revision > 0 else self.revision + 1
        watch = _SqliteWatch(self, prefix, start, callback)
        if self._closed:
            watch.finish(Unavailable(f"the store in {self.data_dir} is closed"))
        elif start < self.compact_revision:
            watch.finish(Compacted(start, self.compact_revision))
        else:
            self._watches.append(watch)
            watch.catch_up()
        return watch

    def read_events(self, prefix: str, from_revision: int) -> Deferred[EventPage]:
        """
        One page of logged events under C{prefix} from C{from_revision} on.
        """
        return self._run(SqliteLog.events, prefix, from_revision, REPLAY_PAGE)

    def forget(self, watch: _SqliteWatch) -> None:
        if watch in self._watches:
            self._watches.remove(watch)

    def _schedule_progress(self) -> None:
        """
        Send progress notifications on the next reactor turn (once for all
        the commits seen in this one).
        """
        if self._progress_call is None and self._watches:
            self._progress_call = self._reactor.callLater(0, self._send_progress)

    def _send_progress(self) -> None:
        self._progress_call = None
        for watch in list(self._watches):
            watch.progress(self.revision)

    # -- shutdown ------------------------------------------------------------

    def close(self) -> Deferred[None]:
        """
        Stop every watch, finish the queued work, close the database, stop
        the worker thread and release the directory lock.
        """
        waiter: Deferred[None] = Deferred()
        if self._close_waiters is None:
            self._close_waiters = [waiter]
            self._begin_close()
        elif self._closed and not self._close_waiters:
            waiter.callback(None)
        else:
            self._close_waiters.append(waiter)
        return waiter

    def _shutdown(self) -> Deferred[None]:
        self._shutdown_trigger = None
        return self.close()

    def _begin_close(self) -> None:
        for watch in list(self._watches):
            watch.stop()
        if self._progress_call is not None and self._progress_call.active():
            self._progress_call.cancel()
        self._progress_call = None
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        if not self._pool.started:
            # The reactor never ran: no connection, nothing to wait for.
            self._closed = True
            self._closed_down(None)
            return
        closing = deferToThreadPool(self._reactor, self._pool, self._close_log)
        self._closed = True
        closing.addBoth(self._closed_down)

    def _closed_down(self, result: None | Failure) -> None:
        # The worker is idle now (the close was its last job): joining it
        # does not wait.
        if self._pool.started:
            self._pool.stop()
        self._lock.release()
        if isinstance(result, Failure):
            self._log_failure(result, "closing {path} failed", self.path)
        waiters, self._close_waiters = self._close_waiters or [], []
        for waiter in waiters:
            waiter.callback(None)


@implementer(IWatch)
class _SqliteWatch(CallbackWatch):
    """
    One watch on a L{SqliteStorage}: the next revision it needs, whether it
    is replaying from the database, and where to send events.

    @ivar done: see L{IWatch.done}.
    """

    def __init__(
        self, storage: SqliteStorage, prefix: str, start: int, callback: WatchCallback
    ) -> None:
        super().__init__(callback)
        self._storage = storage
        self._prefix = prefix
        self._next = start
        self._reported = start - 1
        self._reading = False

    def _forget(self) -> None:
        self._storage.forget(self)

    def offer(self, event: Event) -> None:
        """
        A live write, in revision order: deliver it if it is the next one
        this watch needs (a replaying watch will read it from the log).
        """
        if self._finished or self._reading:
            return
        revision = event.kv.mod_revision
        if revision < self._next:
            return
        if revision > self._next:
            self.catch_up()
            return
        self._next = revision + 1
        if event.kv.key.startswith(self._prefix):
            self._call([event], revision)

    def catch_up(self, more: bool = False) -> None:
        """
        Replay the committed revisions this watch has not seen, if any.

        @param more: read on even if the reactor thread has seen no newer
            commit (the last page was full).
        """
        if self._finished or self._reading:
            return
        if self._next > self._storage.revision and not more:
            return
        self._reading = True
        reading = self._storage.read_events(self._prefix, self._next)
        reading.addCallbacks(self._replayed, self._replay_failed)

    def _replayed(self, page: EventPage) -> None:
        self._reading = False
        if self._finished:
            return
        events = [event for event in page.events if event.kv.mod_revision >= self._next]
        if events:
            self._next = events[-1].kv.mod_revision + 1
            self._call(events, events[-1].kv.mod_revision)
        self._next = max(self._next, page.upto + 1)
        if not page.complete or self._next <= self._storage.revision:
            self.catch_up(more=not page.complete)
        else:
            self.progress(self._storage.revision)

    def _replay_failed(self, failure: Failure) -> None:
        self._reading = False
        self.finish(failure)

    def progress(self, revision: int) -> None:
        """
        Report C{revision} with an empty batch if this watch has seen
        everything up to it but has not said so yet.
        """
        if self._finished or self._reading:
            return
        if self._reported < revision < self._next:
            self._call([], revision)

    def _call(self, events: Sequence[Event], revision: int) -> None:
        self._reported = revision
        super()._call(events, revision)


class CompactionService(TimerService):
    """
    Compact a store every C{interval} seconds, keeping its last C{keep}
    revisions readable (a list or watch from an older resourceVersion then
    gets C{410 Gone} and relists).

    Works with any L{IStorage}; failures are logged and the next round
    tries again.

    @ivar compacted: the newest revision this service compacted at.
    """

    def __init__(
        self,
        storage: IStorage,
        clock: IReactorTime,
        interval: float = DEFAULT_COMPACTION_INTERVAL,
        keep: int = DEFAULT_COMPACTION_KEEP,
    ) -> None:
        super().__init__(interval, self.compact_once)
        self.clock = clock
        self.storage = storage
        self.keep = keep
        self.compacted = 0

    def compact_once(self) -> Deferred[None]:
        """
        Compact at the current revision minus C{keep}, if that is newer than
        the last compaction; never fails.
        """
        return Deferred.fromCoroutine(self._compact_once())

    async def _compact_once(self) -> None:
        target = 0
        try:
            target = await self.storage.current_revision() - self.keep
            if target <= self.compacted:
                return
            await self.storage.compact(target)
            self.compacted = target
        except Compacted:
            # Someone compacted at or past the target already.
            self.compacted = max(self.compacted, target)
        except StorageError as error:
            _logger.warn(  # noqa: G010 - twisted.logger has no warning()
                "compacting at revision {revision} failed: {error}",
                revision=target,
                error=error,
            )
        except Exception:  # noqa: BLE001 - a bug; log it, keep the timer running
            _logger.failure("compacting at revision {revision} failed", revision=target)
