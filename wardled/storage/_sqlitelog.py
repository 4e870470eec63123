# -*- test-case-name: tests.test_storage_sqlite,tests.test_storage_conformance -*-
"""
The synchronous half of L{wardled.storage.sqlite}: etcd's revisioned key
space as one append-only SQLite table, in the layout k3s's kine uses.

Every write appends one row and the row's id is the new store revision, so
there is one store-wide revision that every write raises by one, as in etcd.
A delete appends a tombstone. A key's state at revision I{R} is its newest
row at or below I{R}, unless that row is a tombstone. Each row also records
the revision of the key's previous row, which is where a watch event's
C{prev_kv} comes from.

Everything here blocks: L{wardled.storage.sqlite.SqliteStorage} opens and
uses its connection on its one worker thread and nowhere else. Keys are
stored as their UTF-8 bytes (BLOBs), so ranges and ordering compare bytes,
as etcd does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs

from ._gateway import key_bytes, prefix_end
from .interfaces import (
    DELETE,
    PUT,
    Compacted,
    Conflict,
    Event,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    PrefixState,
    StorageError,
)

SCHEMA_VERSION = 1
_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS log (
        revision INTEGER PRIMARY KEY AUTOINCREMENT,
        key BLOB NOT NULL,
        value BLOB NOT NULL,
        create_revision INTEGER NOT NULL,
        prev_revision INTEGER NOT NULL,
        deleted INTEGER NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    # A fresh store is at revision 1, like a fresh etcd: the first write is 2.
    """
    INSERT INTO sqlite_sequence (name, seq)
    SELECT 'log', 1 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'log')
    """,
    "INSERT OR IGNORE INTO meta (name, value) VALUES ('compact_revision', 0)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# For each key, drop every row below the compaction point except the newest
# one; then drop that one too where it is a tombstone. Rows from the
# compaction point on stay, and so does the row just before each of them
# (their prev_kv).
_DROP_SUPERSEDED = """
DELETE FROM log WHERE revision < :at AND revision < (
    SELECT MAX(newer.revision) FROM log AS newer
    WHERE newer.key = log.key AND newer.revision < :at
)
"""
_DROP_TOMBSTONES = "DELETE FROM log WHERE revision < :at AND deleted = 1"


@attrs.frozen
class _Row:
    """
    A key's newest row, as the compare of a write reads it.
    """

    revision: int
    value: bytes
    create_revision: int
    deleted: bool

    def key_value(self, key: str) -> KeyValue:
        return KeyValue(key, self.value, self.create_revision, self.revision)


@attrs.frozen
class EventPage:
    """
    The events a watch replays from the log, a page at a time.

    @ivar events: the matching events, in revision order.
    @ivar upto: every revision up to this one has been looked at.
    @ivar complete: C{upto} is the store's revision (nothing more to read).
    """

    events: Sequence[Event]
    upto: int
    complete: bool


class SqliteLog:
    """
    One SQLite connection holding the log.

    @ivar revision: the store's current revision.
    @ivar compact_revision: the oldest revision still readable (0: never
        compacted).
    """

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self.path = path
        self._connection = connection
        self.revision = self._number("SELECT seq FROM sqlite_sequence WHERE name='log'")
        self.compact_revision = self._number(
            "SELECT value FROM meta WHERE name = 'compact_revision'"
        )

    @classmethod
    def open(cls, path: str, trace: Callable[[str], None] | None = None) -> SqliteLog:
        """
        Open (creating if needed) the database at C{path}: WAL journal,
        C{synchronous=FULL} so that a commit is on disk when it returns.

        @param trace: called with every SQL statement run (tests use it to
            see which thread runs them).
        @raise StorageError: the file is not a database this code can use.
        """
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            if trace is not None:
                connection.set_trace_callback(trace)
            _prepare(connection, path)
            return cls(connection, path)
        except BaseException:
            connection.close()
            raise

    def _number(self, query: str) -> int:
        row = self._connection.execute(query).fetchone()
        return int(row[0]) if row is not None else 0

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """
        One write transaction: committed if the block returns, rolled back
        if it raises.
        """
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    # -- reads ---------------------------------------------------------------

    def _latest(self, key: bytes) -> _Row | None:
        row = self._connection.execute(
            "SELECT revision, value, create_revision, deleted FROM log "
            "WHERE key = ? ORDER BY revision DESC LIMIT 1",
            (key,),
        ).fetchone()
        if row is None:
            return None
        return _Row(row[0], bytes(row[1]), row[2], bool(row[3]))

    def get(self, key: str) -> tuple[KeyValue | None, int]:
        """
        C{key} at the current revision, and that revision.
        """
        row = self._latest(key_bytes(key))
        if row is None or row.deleted:
            return None, self.revision
        return row.key_value(key), self.revision

    def list(
        self, prefix: str, start: str | None, limit: int, revision: int
    ) -> ListResult:
        """
        See L{wardled.storage.interfaces.IStorage.list}.
        """
        at = revision or self.revision
        self._check_revision(at)
        low = key_bytes(prefix)
        if start is not None:
            low = max(low, key_bytes(start))
        where, parameters = _key_range(low, key_bytes(prefix), "key")
        live = f"""
            FROM log JOIN (
                SELECT MAX(revision) AS revision FROM log
                WHERE {where} AND revision <= ? GROUP BY key
            ) AS newest USING (revision)
            WHERE log.deleted = 0
        """
        parameters = (*parameters, at)
        count = self._connection.execute(
            f"SELECT COUNT(*) {live}", parameters
        ).fetchone()[0]
        rows = self._connection.execute(
            f"SELECT log.key, log.value, log.create_revision, log.revision {live} "
            "ORDER BY log.key LIMIT ?",
            (*parameters, limit if limit > 0 else -1),
        ).fetchall()
        kvs = [KeyValue(_text(row[0]), bytes(row[1]), row[2], row[3]) for row in rows]
        return ListResult(kvs=kvs, revision=at, more=len(kvs) < count, count=count)

    def prefix_state(self, prefix: str, revision: int) -> PrefixState:
        """
        See L{wardled.storage.interfaces.IStorage.prefix_state}: counted in
        SQL, without reading the values.
        """
        self._check_revision(revision)
        where, parameters = _key_range(key_bytes(prefix), key_bytes(prefix), "key")
        count, newest = self._connection.execute(
            f"""
            SELECT COUNT(*), COALESCE(MAX(log.revision), 0)
            FROM log JOIN (
                SELECT MAX(revision) AS revision FROM log
                WHERE {where} AND revision <= ? GROUP BY key
            ) AS newest USING (revision)
            WHERE log.deleted = 0
            """,
            (*parameters, revision),
        ).fetchone()
        return PrefixState(count, newest)

    def _check_revision(self, revision: int) -> None:
        if revision > self.revision:
            raise FutureRevision(revision, self.revision)
        if revision < self.compact_revision:
            raise Compacted(revision, self.compact_revision)

    def events(self, prefix: str, from_revision: int, limit: int) -> EventPage:
        """
        The changes under C{prefix} from C{from_revision} on, at most
        C{limit} of them.

        @raise Compacted: C{from_revision} is older than the compaction.
        """
        if from_revision < self.compact_revision:
            raise Compacted(from_revision, self.compact_revision)
        # "+e.key" keeps the planner on the revision (rowid) range.
        where, parameters = _key_range(key_bytes(prefix), key_bytes(prefix), "+e.key")
        rows = self._connection.execute(
            "SELECT e.revision, e.key, e.value, e.create_revision, e.deleted, "
            "p.revision, p.value, p.create_revision "
            "FROM log AS e LEFT JOIN log AS p "
            "ON e.prev_revision > 0 AND p.revision = e.prev_revision "
            f"WHERE e.revision >= ? AND {where} ORDER BY e.revision LIMIT ?",
            (from_revision, *parameters, limit),
        ).fetchall()
        events = [_event(row) for row in rows]
        if len(rows) < limit:
            return EventPage(events, self.revision, True)
        return EventPage(events, events[-1].kv.mod_revision, False)

    def check(self) -> None:
        """
        A trivial query on the database file; raises if it cannot be read.
        """
        self._number("SELECT value FROM meta WHERE name = 'compact_revision'")

    # -- writes --------------------------------------------------------------

    def create(self, key: str, value: bytes) -> Event:
        """
        Append C{key} if it has no live row.

        @raise KeyExists: it has.
        """
        encoded = key_bytes(key)
        with self._transaction():
            current = self._latest(encoded)
            if current is not None and not current.deleted:
                raise KeyExists(key)
            revision = self.revision + 1
            self._append(revision, encoded, value, revision, 0, deleted=False)
        self.revision = revision
        return Event(PUT, KeyValue(key, value, revision, revision))

    def update(self, key: str, value: bytes, mod_revision: int) -> Event:
        """
        Append C{key}'s new value if its newest row is at C{mod_revision}.

        @raise KeyNotFound: the key has no live row.
        @raise Conflict: it is at another revision.
        """
        encoded = key_bytes(key)
        with self._transaction():
            current = self._expect(key, encoded, mod_revision)
            revision = self.revision + 1
            self._append(
                revision,
                encoded,
                value,
                current.create_revision,
                current.mod_revision,
                deleted=False,
            )
        self.revision = revision
        kv = KeyValue(key, value, current.create_revision, revision)
        return Event(PUT, kv, current)

    def delete(self, key: str, mod_revision: int) -> Event:
        """
        Append a tombstone for C{key} if its newest row is at C{mod_revision}.

        @raise KeyNotFound: the key has no live row.
        @raise Conflict: it is at another revision.
        """
        encoded = key_bytes(key)
        with self._transaction():
            current = self._expect(key, encoded, mod_revision)
            revision = self.revision + 1
            self._append(
                revision,
                encoded,
                b"",
                current.create_revision,
                current.mod_revision,
                deleted=True,
            )
        self.revision = revision
        # etcd's DELETE events carry only the key and the delete's revision.
        return Event(DELETE, KeyValue(key, b"", 0, revision), current)

    def _expect(self, key: str, encoded: bytes, mod_revision: int) -> KeyValue:
        row = self._latest(encoded)
        if row is None or row.deleted:
            raise KeyNotFound(key)
        current = row.key_value(key)
        if current.mod_revision != mod_revision:
            raise Conflict(key, current)
        return current

    def _append(
        self,
        revision: int,
        key: bytes,
        value: bytes,
        create_revision: int,
        prev_revision: int,
        *,
        deleted: bool,
    ) -> None:
        self._connection.execute(
            "INSERT INTO log "
            "(revision, key, value, create_revision, prev_revision, deleted) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (revision, key, value, create_revision, prev_revision, int(deleted)),
        )

    def compact(self, revision: int) -> int:
        """
        Forget every state older than C{revision}: drop the rows no read at
        C{revision} or later needs (superseded values and tombstones below
        it, except the row each kept row names as its previous one).

        @return: how many rows were dropped.
        @raise FutureRevision: C{revision} is beyond the store's.
        @raise Compacted: the store is already compacted at or past it.
        """
        if revision > self.revision:
            raise FutureRevision(revision, self.revision)
        if revision <= self.compact_revision:
            raise Compacted(revision, self.compact_revision)
        connection = self._connection
        with self._transaction():
            dropped = connection.execute(_DROP_SUPERSEDED, {"at": revision}).rowcount
            dropped += connection.execute(_DROP_TOMBSTONES, {"at": revision}).rowcount
            connection.execute(
                "UPDATE meta SET value = ? WHERE name = 'compact_revision'",
                (revision,),
            )
        self.compact_revision = revision
        return dropped

    def close(self) -> None:
        self._connection.close()


def _prepare(connection: sqlite3.Connection, path: str) -> None:
    """
    Set the journal and durability modes and create the schema if needed.
    """
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StorageError(f"{path}: cannot use SQLite's WAL journal (got {mode!r})")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{path}: schema version {version} is newer than this wardled "
                f"understands ({SCHEMA_VERSION})"
            )
        for statement in _SCHEMA:
            connection.execute(statement)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _key_range(low: bytes, prefix: bytes, column: str) -> tuple[str, tuple[Any, ...]]:
    """
    The SQL condition for keys from C{low} to the end of C{prefix}.
    """
    end = prefix_end(prefix)
    if end == b"\0":
        # prefix_end's "every key": no upper bound.
        return f"{column} >= ?", (low,)
    return f"{column} >= ? AND {column} < ?", (low, end)


def _text(key: bytes) -> str:
    return bytes(key).decode("utf-8", "surrogateescape")


def _event(row: Sequence[Any]) -> Event:
    """
    An L{Event} from a log row joined with its previous row.
    """
    revision, key, value, create_revision, deleted = row[:5]
    prev_revision, prev_value, prev_create = row[5:]
    name = _text(key)
    prev = None
    if prev_revision is not None:
        prev = KeyValue(name, bytes(prev_value), prev_create, prev_revision)
    if deleted:
        return Event(DELETE, KeyValue(name, b"", 0, revision), prev)
    return Event(PUT, KeyValue(name, bytes(value), create_revision, revision), prev)
