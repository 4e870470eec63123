# -*- test-case-name: tests.test_storage_conformance -*-
"""
The storage contract: keys, bytes and revisions (kine's level, not objects).

Every backend (etcd through its JSON gateway, the in-memory store used by unit
tests, later an embedded SQLite log and the watch cache) provides L{IStorage}.
The registry above it encodes and decodes objects and turns the typed errors
below into API C{Status} errors; nothing here speaks HTTP.

Semantics are etcd v3's: one store-wide revision that every write raises by
one; a key's C{mod_revision} is the revision of its last write and becomes the
object's C{resourceVersion}.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


@attrs.frozen
class KeyValue:
    """
    One key as stored.
    """

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@attrs.frozen
class ListResult:
    """
    One page of a range read.

    @ivar revision: the store revision the read was served at (the list's
        resourceVersion).
    @ivar more: whether keys beyond this page exist in the range.
    @ivar count: how many keys the range holds from its start, this page
        included (etcd's C{count}); used for C{remainingItemCount}.
    """

    kvs: Sequence[KeyValue]
    revision: int
    more: bool
    count: int


@attrs.frozen
class PrefixState:
    """
    What a prefix holds at one revision, in brief: enough for a reader that
    saw the prefix at an older revision, with as many keys, to tell that
    nothing under it changed since (a delete lowers the count; a create or
    an update raises the highest mod_revision above what it saw).

    @ivar count: how many keys are under the prefix.
    @ivar last_modified: the highest mod_revision among them (0: none).
    """

    count: int
    last_modified: int


def prefix_state_of(listing: ListResult) -> PrefixState:
    """
    The L{PrefixState} of a whole listing (for stores that list cheaply).
    """
    return PrefixState(
        len(listing.kvs), max((kv.mod_revision for kv in listing.kvs), default=0)
    )


PUT = "PUT"
DELETE = "DELETE"


@attrs.frozen
class Event:
    """
    One change, as a watch reports it.

    For a C{DELETE}, C{kv.value} is empty and C{kv.mod_revision} is the
    revision of the delete; C{prev_kv} holds the last stored state (when the
    backend still has it).
    """

    type: str
    kv: KeyValue
    prev_kv: KeyValue | None = None


class StorageError(Exception):
    """
    Base of every error a backend raises.
    """


class KeyNotFound(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class KeyExists(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key exists: {key}")
        self.key = key


class Conflict(StorageError):
    """
    A compare-and-swap failed: the key's mod_revision was not the expected one.

    @ivar current: the key as it is now.
    """

    def __init__(self, key: str, current: KeyValue) -> None:
        super().__init__(f"conflict on {key}: now at {current.mod_revision}")
        self.key = key
        self.current = current


class Compacted(StorageError):
    """
    The requested revision is older than the oldest one the store keeps.
    """

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"required revision {requested} has been compacted "
            f"(compacted at {compact_revision})"
        )
        self.requested = requested
        self.compact_revision = compact_revision


class FutureRevision(StorageError):
    """
    The requested revision is newer than the store's current revision.
    """

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"required revision {requested} is a future revision")
        self.requested = requested
        self.current = current


class Unavailable(StorageError):
    """
    The backend cannot be reached or answered with something unexpected.
    """


class IWatch(Interface):
    """
    A running watch on a key prefix.
    """

    done: Deferred[None] = Attribute(
        "Fires with None once the watch has stopped because stop() was called, "
        "or fails with Compacted (the start revision is gone) or Unavailable "
        "(the backend gave up)."
    )

    def stop() -> None:
        """
        Stop delivering events; idempotent.
        """


# Called with the events of one revision batch (possibly empty, for a
# progress notification) and the store revision they bring the watcher to.
WatchCallback = Callable[[Sequence[Event], int], None]


class IStorage(Interface):
    """
    A revisioned key-value store with etcd v3 semantics.

    Every method returns a L{Deferred}; failures are the L{StorageError}
    subclasses above.
    """

    def get(key: str) -> Deferred[tuple[KeyValue | None, int]]:
        """
        Read one key at the latest revision.

        @return: the key (or None if absent) and the store revision.
        """

    def list(
        prefix: str, start: str | None = None, limit: int = 0, revision: int = 0
    ) -> Deferred[ListResult]:
        """
        Read keys under C{prefix} in key order, from C{start} (inclusive;
        default: C{prefix}) to the end of the prefix.

        @param limit: at most this many keys; 0 means all.
        @param revision: read at this revision; 0 means the latest.
            Fails with L{Compacted} or L{FutureRevision}.
        """

    def create(key: str, value: bytes) -> Deferred[int]:
        """
        Store C{value} at C{key} if the key does not exist.

        @return: the revision of the write.
        @raise KeyExists: the key exists.
        """

    def update(key: str, value: bytes, mod_revision: int) -> Deferred[int]:
        """
        Replace C{key}'s value if its mod_revision is C{mod_revision}.

        @return: the revision of the write.
        @raise KeyNotFound: the key does not exist.
        @raise Conflict: the key exists at another mod_revision.
        """

    def delete(key: str, mod_revision: int) -> Deferred[int]:
        """
        Delete C{key} if its mod_revision is C{mod_revision}.

        @return: the revision of the delete.
        @raise KeyNotFound: the key does not exist.
        @raise Conflict: the key exists at another mod_revision.
        """

    def current_revision() -> Deferred[int]:
        """
        The store's latest revision.
        """

    def prefix_state(prefix: str, revision: int) -> Deferred[PrefixState]:
        """
        How many keys are under C{prefix} at C{revision} and the newest of
        their mod_revisions.  Fails with L{Compacted} or L{FutureRevision}
        as L{list} does.
        """

    def watch(prefix: str, from_revision: int, callback: WatchCallback) -> IWatch:
        """
        Deliver every change under C{prefix} with revision >= C{from_revision},
        in revision order, none twice, by calling C{callback}.

        A backend that loses its connection resumes from the last revision it
        delivered plus one, so the caller sees a gap-free sequence or an
        error on L{IWatch.done}.
        """

    def compact(revision: int) -> Deferred[None]:
        """
        Forget history before C{revision}.
        """

    def check_health() -> Deferred[None]:
        """
        Succeed if the backend can serve reads and writes now.

        @raise Unavailable: it cannot, with the reason.
        """
