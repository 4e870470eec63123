# -*- test-case-name: tests.test_cache -*-
"""
The watch cache's contract: cached objects, shared events, watchers.

One upstream etcd watch (over the group's key prefix) feeds a L{ICacher}:
every event is decoded once into a L{CachedObject} (kept compact, as its
response JSON, when the cache has an L{IObjectCodec}), applied to the in-memory
state and to a bounded history, and handed to every matching L{IWatcher} as
the same L{CacheEvent} object, whose encodings are memoised so that an event
is serialised once per (type, version, media type), never once per watcher.

The HTTP watch handler (L{wardled.api.watch}) drains watchers; the registry
serves lists and gets from L{ICacher} snapshots; admission reads Fischers
from it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

Object = dict[str, Any]

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


class _Unpacker(Protocol):
    """
    What a compact L{CachedObject} needs from the cache that packed it.
    """

    @property
    def version(self) -> str: ...

    def decoded(self, cached: CachedObject) -> Object: ...

    def transcoded(self, cached: CachedObject, version: str) -> bytes: ...


class CachedObject:
    """
    One object as the cache holds it.

    Built I{loose} (C{obj} given, as a decoder returns it) or I{compact}
    (L{CachedObject.compact}: the object's JSON bytes plus what selectors
    and indexing need; C{obj} decoded again on demand).  The cache keeps
    compact objects when it has an L{IObjectCodec}, so that memory is about
    the size of the objects' JSON and reads in the bytes' version serve
    those bytes without encoding anything.

    Immutable by contract and compared by identity.

    @ivar key: the storage key.
    @ivar namespace: C{metadata.namespace} (empty for cluster-scoped).
    @ivar revision: the key's mod_revision (for a deleted object's last
        state: the revision of the delete).
    """

    __slots__ = ("_body", "_labels", "_name", "_unpacker", "key", "namespace", "revision")

    key: str
    namespace: str
    revision: int

    def __init__(
        self,
        key: str,
        namespace: str,
        name: str,
        labels: Mapping[str, str],
        revision: int,
        obj: Object,
    ) -> None:
        """
        A loose object.

        @param obj: the internal form, with C{metadata.resourceVersion} set
            to C{revision}.
        """
        self.key = key
        self.namespace = namespace
        self.revision = revision
        self._name: str | None = name
        self._labels: Mapping[str, str] | tuple[str, ...] = labels
        self._body: Object | bytes = obj
        self._unpacker: _Unpacker | None = None

    @classmethod
    def compact(
        cls,
        key: str,
        namespace: str,
        name: str | None,
        labels: tuple[str, ...],
        revision: int,
        data: bytes,
        unpacker: _Unpacker,
    ) -> CachedObject:
        """
        A compact object.

        @param name: None when it is the last segment of C{key}.
        @param labels: keys and values, alternating.
        @param data: see L{data}.
        @param unpacker: decodes C{data} (for L{obj}) and names its version.
        """
        cached = cls.__new__(cls)
        cached.key = key
        cached.namespace = namespace
        cached.revision = revision
        cached._name = name
        cached._labels = labels
        cached._body = data
        cached._unpacker = unpacker
        return cached

    @property
    def name(self) -> str:
        """
        C{metadata.name}.
        """
        name = self._name
        if name is None:
            return self.key.rpartition("/")[2]
        return name

    @property
    def labels(self) -> Mapping[str, str]:
        """
        C{metadata.labels} (empty when there are none).
        """
        labels = self._labels
        if type(labels) is tuple:
            return dict(zip(labels[::2], labels[1::2], strict=True))
        return labels  # type: ignore[return-value]

    @property
    def obj(self) -> Object:
        """
        The internal form, with C{metadata.resourceVersion} set to
        C{revision}.  Shared by every reader: never mutate it (copy first).
        """
        unpacker = self._unpacker
        if unpacker is None:
            return self._body  # type: ignore[return-value]
        return unpacker.decoded(self)

    @property
    def data(self) -> bytes | None:
        """
        For a compact object: its JSON as a list item in L{version} (no
        C{kind}/C{apiVersion}), exactly as a response encodes it, without
        a trailing newline; else None.
        """
        if self._unpacker is None:
            return None
        return self._body  # type: ignore[return-value]

    def data_in(self, version: str) -> bytes | None:
        """
        For a compact object: its JSON as a list item in C{version}, as
        L{data} is in L{version} (converted from L{data} when the versions
        differ; nothing is kept); else None.
        """
        unpacker = self._unpacker
        if unpacker is None:
            return None
        if unpacker.version == version:
            return self._body  # type: ignore[return-value]
        return unpacker.transcoded(self, version)

    @property
    def version(self) -> str | None:
        """
        The API version of L{data} (None for a loose object).
        """
        unpacker = self._unpacker
        return None if unpacker is None else unpacker.version

    def __repr__(self) -> str:
        form = "loose" if self._unpacker is None else f"compact {self.version}"
        return f"<CachedObject {self.key!r} at {self.revision}, {form}>"


class IObjectCodec(Interface):
    """
    How the cache of one resource holds its objects as bytes.
    """

    version: str = Attribute(
        "The API version the bytes are in (the storage version): reads in "
        "it are served from the bytes without encoding."
    )

    def encode(obj: Object) -> bytes:
        """
        An internal object as a list item of C{version}, in the exact JSON
        a response carries (compact, Go escaping, no trailing newline).
        """

    def decode(data: bytes, revision: int) -> Object:
        """
        The internal object C{encode} was given, from its bytes.
        """

    def transcode(data: bytes, version: str) -> bytes:
        """
        What C{encode} would make of the same object in C{version} (another
        served version), from its bytes.
        """


@attrs.define(eq=False, weakref_slot=False)
class CacheEvent:
    """
    One change at one revision, shared by every watcher that sees it.

    @ivar type: L{ADDED}, L{MODIFIED} or L{DELETED}.
    @ivar current: the object after the change; for L{DELETED}, its last
        state with C{revision} (and resourceVersion) of the delete.
    @ivar previous: the object before the change (None for L{ADDED}).
    """

    type: str
    revision: int
    current: CachedObject
    previous: CachedObject | None = None
    # Created by the first encoding: most history events are never encoded.
    _encodings: dict[Hashable, bytes] | None = attrs.field(
        default=None, init=False, repr=False
    )

    def encoded(self, key: Hashable, encode: Callable[[], bytes]) -> bytes:
        """
        C{encode()}'s result, computed once per C{key} for this event (the
        key names the effective type, API version and media type).
        """
        encodings = self._encodings
        if encodings is None:
            encodings = self._encodings = {}
        cached = encodings.get(key)
        if cached is None:
            cached = encodings[key] = encode()
            ENCODE_COUNTER.count += 1
        return cached


@attrs.define
class _Counter:
    count: int = 0


# How many event encodings were computed process-wide: tests (and metrics)
# use it to prove fan-out serialises each event once, not once per watcher.
ENCODE_COUNTER = _Counter()


class TooOld(Exception):
    """
    A watch asked for history the cache no longer holds (HTTP: 410 Expired,
    C{too old resource version: N (M)}).
    """

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class TooLarge(Exception):
    """
    A read or watch asked for a revision the cache did not reach in time
    (HTTP: 504 C{Too large resource version: N, current: M}).
    """

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"Too large resource version: {requested}, current: {current}")
        self.requested = requested
        self.current = current


class NotReady(Exception):
    """
    The cache has not finished its first sync (or is rebuilding).
    """


class FellBehind(Exception):
    """
    A watcher's client did not take events fast enough: its queue of live
    events reached its capacity, so the cache ended it rather than wait (the
    client re-lists and watches again).
    """

    def __init__(self, pending: int, capacity: int) -> None:
        super().__init__(
            f"the watcher fell too far behind: {pending} events not taken "
            f"(capacity {capacity})"
        )
        self.pending = pending
        self.capacity = capacity


class IWatcher(Interface):
    """
    One client's subscription: a bounded FIFO of events the client has not
    taken yet.  The cacher appends without ever waiting; a watcher whose
    queue is full is ended (its client re-lists), so one slow client never
    holds up the others or grows memory without bound.
    """

    revision: int = Attribute(
        "The revision through which this watcher has been fed: every event "
        "up to it is in the queue or was taken.  A BOOKMARK sent when the "
        "queue is empty may carry it."
    )
    initial_events: int = Attribute(
        "How many synthetic ADDED events (the state at start_revision) open "
        "the queue; 0 when the watch started from a revision."
    )
    start_revision: int = Attribute(
        "The snapshot revision of the initial events, or the revision the "
        "watch started after: the RV of an initial-events-end BOOKMARK."
    )
    ended: Deferred[None] = Attribute(
        "Fires with None when stop() was called (or the cache shut down); "
        "fails with TooOld (history "
        "lost: compaction or rebuild), or with an Exception saying the "
        "watcher fell too far behind (L{FellBehind}).  Once ended, the "
        "queue is empty.  Each access may give a new Deferred (like "
        "Request.notifyFinish), so an end nobody waits for is never an "
        "unhandled error: keep the one you add callbacks to."
    )

    def take(limit: int) -> Sequence[tuple[str, CacheEvent]]:
        """
        Remove and return up to C{limit} queued (effective type, event)
        pairs, oldest first.  The effective type differs from the event's
        own when a predicate is set: an object that starts matching is
        L{ADDED}, one that stops matching is L{DELETED} (with its new state).
        """

    def pending() -> int:
        """
        How many events wait in the queue.
        """

    def set_wakeup(wakeup: Callable[[], None] | None) -> None:
        """
        Call C{wakeup()} (synchronously, from dispatch) whenever the queue
        goes from empty to non-empty, or the watcher ends.
        """

    def stop() -> None:
        """
        Unsubscribe; idempotent.
        """


class ICacher(Interface):
    """
    The cache of one resource (one key prefix).
    """

    ready: bool = Attribute("Whether the first sync finished (and no rebuild runs).")
    revision: int = Attribute(
        "The store revision the cache reflects (raised by events and by "
        "progress notifications)."
    )

    def wait_until_ready(timeout: float) -> Deferred[None]:
        """
        Fire once ready; fail with L{NotReady} after C{timeout} seconds.
        """

    def wait_for_revision(revision: int, timeout: float) -> Deferred[None]:
        """
        Fire once C{self.revision >= revision}; fail with L{TooLarge} after
        C{timeout} seconds.
        """

    def consistent_revision() -> Deferred[int]:
        """
        The storage's current revision, once the cache has caught up with it
        (a consistent read served from memory).

        @raise TooLarge: the cache did not catch up in time; callers fall
            back to reading storage directly.
        """

    def use_codec(codec: IObjectCodec) -> None:
        """
        Hold objects compactly from now on: as C{codec}'s bytes (objects
        already held are packed at once).
        """

    def get(key: str) -> CachedObject | None:
        """
        The object at C{key} now.
        """

    def list(prefix: str) -> tuple[Sequence[CachedObject], int]:
        """
        The objects under C{prefix}, sorted by key, and the revision of that
        snapshot.
        """

    def watch(
        prefix: str,
        from_revision: int | None,
        *,
        capacity: int,
        predicate: Callable[[CachedObject], bool] | None = None,
    ) -> IWatcher:
        """
        Subscribe to changes under C{prefix}.

        @param from_revision: None: first a synthetic L{ADDED} for every
            current object (matching C{predicate}), then every later event;
            N: every event with revision > N, from history, then live.
        @param capacity: the most events the watcher may hold untaken.
        @param predicate: only objects it accepts are seen (with the
            ADDED/DELETED transitions described in L{IWatcher.take}).
        @raise TooOld: N is older than the history window.
        @raise NotReady: the cache has not synced yet or is rebuilding
            (wait with L{wait_until_ready} first).  A watch from an N the
            cache has not reached yet starts after N (its events up to N are
            skipped); use L{wait_for_revision} first to answer 504 instead.
        """
