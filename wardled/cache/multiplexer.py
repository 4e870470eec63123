# -*- test-case-name: tests.test_cache,tests.test_cache_etcd -*-
"""
One upstream storage watch over an API group's key prefix, fanned out to
the per-resource L{Cacher}s.

Writes elsewhere in the store (another API group, kube-apiserver sharing
the etcd) raise etcd's revision without sending this watch an event, so a
consistent read can find the caches behind a revision they will only learn
of from etcd's progress notifications, minutes apart by default.  Rather
than wait for those, the multiplexer asks the storage whether anything
under the prefix changed since the caches' revision (L{WatchMultiplexer.
catch_up}): if nothing did, the caches are current at the newer revision.

Every write of the group passes through this one watch, so the revision it
reaches is the group's view of the store revision: a consistent read can
compare it with etcd's current revision.  The service lists everything once
(one revision, in pages), hands each resource its keys, then watches from
the next revision.  When the watch fails (compaction, or any error), the
history it was built on is gone: every watcher is ended with L{TooOld} (its
client re-lists), the caches are marked not ready, and the list and watch
start over, backing off on the injected clock when failures repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from wardled.storage.interfaces import (
    Compacted,
    Event,
    KeyValue,
    PrefixState,
    StorageError,
)

from .cacher import (
    DEFAULT_CONSISTENT_TIMEOUT,
    DEFAULT_HISTORY_SIZE,
    Cacher,
    Decode,
)
from .probe import CoalescingProbe

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from wardled.storage.interfaces import IStorage, IWatch, ListResult

DEFAULT_PAGE_SIZE = 1000
#: The least time between the starts of two checks that the prefix is
#: unchanged (L{WatchMultiplexer.catch_up}): each is one etcd range over
#: the whole prefix, which etcd reads in full to sort (about 13 ms for
#: 10,000 keys), so under a steady stream of writes elsewhere at most 20 a
#: second.  Kubernetes asks etcd for progress every 100 ms in the same spot.
CATCH_UP_INTERVAL = 0.05
#: How long a read found behind waits for the watch before the check
#: starts: the group's own writes in flight (another worker's, a create's
#: admission read racing the previous create's event) arrive within a few
#: milliseconds, and then no check is needed (one would fail anyway).
CATCH_UP_DELAY = 0.02
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 10.0


def backoff_delay(attempt: int, initial: float, most: float) -> float:
    """
    How long to wait before retry number C{attempt} (0: at once).
    """
    if attempt <= 0:
        return 0.0
    return float(min(initial * 2 ** (attempt - 1), most))


class WatchMultiplexer(Service):
    """
    The upstream list and watch of one key prefix, feeding one L{Cacher}
    per resource prefix registered under it.

    @ivar cachers: the registered caches, in registration order.
    @ivar syncs: how many full lists were distributed (1 after the first
        sync; each rebuild adds one).
    """

    log = Logger()

    def __init__(
        self,
        storage: IStorage,
        prefix: str,
        clock: IReactorTime,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        consistent_timeout: float = DEFAULT_CONSISTENT_TIMEOUT,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        """
        @param storage: where the keys live.
        @param prefix: the group's key prefix, e.g.
            C{/registry/wardle.example.com/}; every resource prefix
            registered must start with it.
        @param clock: schedules retries and the deadlines of waits.
        @param page_size: keys per list request (0: all in one).
        @param consistent_timeout: see L{Cacher.consistent_revision}.
        @param backoff_initial: the delay before the second retry in a row
            (the first is immediate); it doubles up to C{backoff_max}.
        """
        self.storage = storage
        self.prefix = prefix
        self.cachers: list[Cacher] = []
        self.syncs = 0
        self._clock = clock
        self._page_size = page_size
        self._consistent_timeout = consistent_timeout
        self._backoff = (backoff_initial, backoff_max)
        self._attempts = 0
        self._generation = 0
        self._watch: IWatch | None = None
        self._listing: Deferred[tuple[list[KeyValue], int]] | None = None
        self._retry: IDelayedCall | None = None
        self._catch_up_target = 0
        self._catching_up = False
        self._last_check = float("-inf")
        self._check_timer: IDelayedCall | None = None
        # One revision probe for every cache of the group: concurrent
        # consistent reads of any resource share its etcd ranges.
        self.revision_probe = CoalescingProbe(storage.current_revision)

    def register(
        self,
        resource_prefix: str,
        decode: Decode,
        history_size: int = DEFAULT_HISTORY_SIZE,
    ) -> Cacher:
        """
        Cache the keys under C{resource_prefix} (before the service starts).

        @param resource_prefix: e.g.
            C{/registry/wardle.example.com/wardle.example.com/flunders/}.
        @param decode: turns a stored key, its bytes and mod_revision into a
            L{CachedObject}.
        @param history_size: how many recent events of this resource a watch
            may resume from.
        """
        if self.running:
            raise RuntimeError("register caches before the multiplexer starts")
        if not resource_prefix.startswith(self.prefix):
            raise ValueError(f"{resource_prefix!r} is not under {self.prefix!r}")
        cacher = Cacher(
            resource_prefix,
            decode,
            self._clock,
            self.revision_probe,
            history_size,
            self._consistent_timeout,
            self.catch_up,
        )
        self.cachers.append(cacher)
        return cacher

    @property
    def ready(self) -> bool:
        """
        Whether every cache has synced and none is rebuilding.
        """
        return all(cacher.ready for cacher in self.cachers)

    # -- life cycle ------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._attempts = 0
        self._sync()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._generation += 1
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        timer, self._check_timer = self._check_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        listing, self._listing = self._listing, None
        if listing is not None:
            listing.cancel()
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop()
        for cacher in self.cachers:
            cacher.close()
        return succeed(None)

    # -- listing -----------------------------------------------------------------

    def _sync(self) -> None:
        """
        List everything at one revision, give each cache its keys, then
        watch from the next revision.
        """
        self._retry = None
        generation = self._generation
        listing = Deferred.fromCoroutine(self._list_all())
        self._listing = listing
        listing.addCallback(lambda result: self._synced(generation, *result))
        listing.addErrback(lambda failure: self._sync_failed(generation, failure))

    async def _list_all(self) -> tuple[list[KeyValue], int]:
        """
        Every key under the prefix and the one revision they were read at.
        """
        page: ListResult = await self.storage.list(self.prefix, limit=self._page_size)
        revision = page.revision
        kvs = list(page.kvs)
        while page.more and page.kvs:
            start = page.kvs[-1].key + "\x00"
            page = await self.storage.list(
                self.prefix, start, self._page_size, revision
            )
            kvs.extend(page.kvs)
        return kvs, revision

    def _synced(self, generation: int, kvs: list[KeyValue], revision: int) -> None:
        if generation != self._generation:
            return
        self._listing = None
        self.syncs += 1
        self._distribute(kvs, revision)
        self.log.info(
            "cache of {prefix} synced: {count} keys at revision {revision}",
            prefix=self.prefix,
            count=len(kvs),
            revision=revision,
        )
        self._start_watch(revision + 1)

    def _distribute(self, kvs: Sequence[KeyValue], revision: int) -> None:
        shares: dict[int, list[KeyValue]] = {id(c): [] for c in self.cachers}
        for kv in kvs:
            cacher = self._cacher_for(kv.key)
            if cacher is not None:
                shares[id(cacher)].append(kv)
        for cacher in self.cachers:
            cacher.reset(shares[id(cacher)], revision)

    def _sync_failed(self, generation: int, failure: Failure) -> None:
        """
        The list failed (or applying it did): try again, backing off.
        """
        if generation != self._generation:
            return
        self._listing = None
        self._log_problem("listing {prefix} failed", failure)
        self._schedule_sync()

    def _schedule_sync(self) -> None:
        delay = backoff_delay(self._attempts, *self._backoff)
        self._attempts += 1
        if delay:
            self._retry = self._clock.callLater(delay, self._sync)
        else:
            self._sync()

    # -- watching ----------------------------------------------------------------

    def _start_watch(self, from_revision: int) -> None:
        generation = self._generation
        watch = self.storage.watch(self.prefix, from_revision, self._on_events)
        if generation != self._generation:
            # The service stopped from a callback of the first events.
            watch.stop()
            return
        self._watch = watch
        watch.done.addBoth(self._watch_ended, watch)

    def _on_events(self, events: Sequence[Event], revision: int) -> None:
        """
        Apply a batch to the caches it concerns, then bring every cache to
        the batch's revision (a progress notification is an empty batch).
        """
        self._attempts = 0
        for event in events:
            cacher = self._cacher_for(event.kv.key)
            if cacher is not None:
                cacher.apply(event)
        for cacher in self.cachers:
            cacher.advance(revision)
        if self._catch_up_target > revision:
            self._schedule_check()

    # -- catching up with writes elsewhere -------------------------------------

    def catch_up(self, revision: int) -> None:
        """
        A consistent read found the store at C{revision}, ahead of the
        caches: bring them there if nothing under the prefix changed in
        between (else its events are on their way).  One check runs at a
        time, for the newest revision asked, L{CATCH_UP_DELAY} after it was
        asked for and at most one per L{CATCH_UP_INTERVAL}.
        """
        self._catch_up_target = max(self._catch_up_target, revision)
        self._schedule_check()

    def _schedule_check(self) -> None:
        if self._catching_up or self._check_timer is not None:
            return
        spaced = self._last_check + CATCH_UP_INTERVAL - self._clock.seconds()
        self._check_timer = self._clock.callLater(
            max(spaced, CATCH_UP_DELAY), self._check_due
        )

    def _check_due(self) -> None:
        self._check_timer = None
        self._check_unchanged()

    @property
    def _seen(self) -> int:
        return min((cacher.revision for cacher in self.cachers), default=0)

    def _check_unchanged(self) -> None:
        target, seen = self._catch_up_target, self._seen
        if target <= seen or not self.ready or self._watch is None:
            return
        # The caches hold every key of the prefix as of `seen`; compare with
        # the prefix at `target`.
        held = sum(cacher.size for cacher in self.cachers)
        generation = self._generation
        self._catching_up = True
        self._last_check = self._clock.seconds()
        checking = self.storage.prefix_state(self.prefix, target)
        checking.addCallback(self._checked, generation, target, seen, held)
        checking.addErrback(self._check_failed)
        checking.addBoth(self._check_ended, target)

    def _checked(
        self, state: PrefixState, generation: int, target: int, seen: int, held: int
    ) -> None:
        unchanged = state.count == held and state.last_modified <= seen
        if unchanged and generation == self._generation:
            self._on_events((), target)

    def _check_failed(self, failure: Failure) -> None:
        # The read waits out its deadline and reads the storage instead.
        self._log_problem("checking {prefix} for changes failed", failure)

    def _check_ended(self, _: object, checked: int) -> None:
        # Check again for a newer revision asked meanwhile; a check that
        # found changes is retried when their events arrive (_on_events).
        self._catching_up = False
        if self._catch_up_target > checked:
            self._schedule_check()

    def _cacher_for(self, key: str) -> Cacher | None:
        for cacher in self.cachers:
            if key.startswith(cacher.resource_prefix):
                return cacher
        return None

    def _watch_ended(self, result: None | Failure, watch: IWatch) -> None:
        if watch is not self._watch or not self.running:
            return
        self._watch = None
        self._generation += 1
        error = None
        if isinstance(result, Failure):
            self._log_problem("the watch of {prefix} failed; rebuilding", result)
            error = result.value
        else:
            self.log.warn(  # noqa: G010 - twisted.logger has no warning()
                "the watch of {prefix} ended; rebuilding", prefix=self.prefix
            )
        self._expire(error)
        self._schedule_sync()

    def _log_problem(self, message: str, failure: Failure) -> None:
        """
        Log a storage error (compaction, etcd away) as a warning and
        anything else, which would be a bug, with its traceback.
        """
        if failure.check(StorageError):
            self.log.warn(  # noqa: G010 - twisted.logger has no warning()
                message + ": {error}", prefix=self.prefix, error=failure.value
            )
        else:
            self.log.failure(message, failure, prefix=self.prefix)

    def _expire(self, error: object) -> None:
        """
        End every watcher with L{TooOld} and mark the caches not ready.
        """
        for cacher in self.cachers:
            oldest = cacher.revision
            if isinstance(error, Compacted):
                oldest = max(oldest, error.compact_revision)
            cacher.expire(oldest)
