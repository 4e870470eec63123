# -*- test-case-name: tests.test_soak_smoke -*-
"""
The soak's watchers: processes holding many Kubernetes watches open the
way an informer does, and judging afterwards what each one received.

Each watcher lists its namespace (a consistent list) and watches from the
list's resourceVersion.  When its stream ends it watches again from the
last resourceVersion it received; when it is told its resourceVersion is
too old (an C{ERROR} event with a 410 Status, or an HTTP 410) it lists
again and watches from there.  The run of a watcher between two lists is
an L{Epoch}: within one, the server promises every event after the list's
revision, in order, without gaps, so every acknowledged write whose
revision falls in a stretch the epoch covered must have arrived; a 410
excuses only the writes after the last event the epoch received.

The parent drives a worker through a L{multiprocessing} pipe::

    worker -> ("ready", established, errors)  every watch answered 200
    parent -> ("drain", targets, expected, timeout)
    worker -> ("result", [WatcherSummary], Recorder); the worker exits
    parent -> ("abort",)                      instead of "drain": just exit

C{targets} is, per namespace, the revision of the last acknowledged write
(a watcher has drained when it has received it); C{expected} is, per
namespace, the L{Expected} events of every acknowledged write.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from array import array
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import attrs

from bench._http import (
    Endpoint,
    HttpError,
    KeepAliveConnection,
    LineDecoder,
    request_bytes,
)
from bench._proc import raise_open_files_limit
from bench._soak_record import NO_RESPONSE, TYPE_CODES, Expected, Recorder, name_index
from bench._targets import flunders_path
from tests.waiting import poll_async

_RETRY_DELAY = 1.0
_READ_SIZE = 65536
_DRAIN_POLL = 0.1
_MAX_SAMPLES = 5
_CONNECTION_ERRORS = (OSError, asyncio.IncompleteReadError, HttpError, TimeoutError)

LIST = "watch-list"
WATCH = "watch"
WATCH_ERROR = "watch-error"

#: How a watch ended.
GONE = "gone"
ENDED = "ended"
FAILED = "failed"


@attrs.frozen
class WatchPlan:
    """
    What one worker process runs.

    @ivar endpoint: wardled.
    @ivar namespaces: the namespace of each of the worker's watchers.
    @ivar connect_concurrency: watchers setting up their first list and
        watch at once.
    @ivar connect_timeout: seconds for every watcher's first watch to
        answer.
    @ivar request_timeout: seconds for a list or for a watch's response
        head.
    @ivar watch_timeout: each watch asks the server to end it after this
        many seconds or up to twice as many (0: never).
    """

    endpoint: Endpoint
    namespaces: tuple[str, ...]
    connect_concurrency: int = 32
    connect_timeout: float = 60.0
    request_timeout: float = 15.0
    watch_timeout: float = 0.0


@attrs.define
class Epoch:
    """
    A watcher's run from one list to the next.

    @ivar start: the list's resourceVersion (events after it are due).
    @ivar last: the highest revision received in the epoch (C{start}
        before any).
    @ivar gone: whether it ended with a 410.
    """

    start: int
    last: int
    gone: bool = False


@attrs.frozen
class WatcherSummary:
    """
    What one watcher received, judged against the acknowledged writes.

    @ivar events: events received (acknowledged writes or not).
    @ivar covered: acknowledged writes whose event fell, for certain, in a
        stretch the watcher's epochs covered.
    @ivar delivered: acknowledged writes whose event arrived.
    @ivar missed: covered writes whose event never arrived.
    @ivar mismatched: events whose revision belongs to an acknowledged
        write of another object or kind.
    @ivar reordered: events whose revision was not above the previous one.
    @ivar uncertain: writes that may have fallen into a 410 gap (a delete's
        revision is only known to lie in a range) and did not arrive.
    @ivar lists: lists made (the first, and one after each 410).
    @ivar gone: 410s received.
    @ivar rewatches: watches started again without a list (after a stream
        ended or failed).
    @ivar stream_ends: streams the server ended.
    @ivar drained: whether it received the namespace's last write.
    @ivar samples: the first few missed writes, for the report.
    """

    namespace: str
    events: int
    covered: int
    delivered: int
    missed: int
    mismatched: int
    reordered: int
    uncertain: int
    lists: int
    gone: int
    rewatches: int
    stream_ends: int
    drained: bool
    samples: tuple[str, ...]


@attrs.define
class Receipts:
    """
    The events of one watcher: revision, object index, type code.
    """

    revisions: array[int] = attrs.Factory(lambda: array("q"))
    names: array[int] = attrs.Factory(lambda: array("q"))
    types: array[int] = attrs.Factory(lambda: array("b"))

    def add(self, revision: int, name: int, type_code: int) -> None:
        self.revisions.append(revision)
        self.names.append(name)
        self.types.append(type_code)


def _covers(epochs: Sequence[tuple[int, int]], low: int, high: int) -> bool:
    """
    Whether one stretch C{(start, end]} holds every revision of C{[low,
    high]}.
    """
    return any(start < low and high <= end for start, end in epochs)


def _touches(epochs: Sequence[tuple[int, int]], low: int, high: int) -> bool:
    return any(low <= end and high > start for start, end in epochs)


def judge(
    namespace: str,
    stretches: Sequence[tuple[int, int]],
    received: Receipts,
    expected: Sequence[Expected],
) -> dict[str, Any]:
    """
    Compare what a watcher received with the acknowledged writes.

    @param stretches: C{(start, end]} revision ranges its epochs covered.
    @return: the counting fields of L{WatcherSummary}.
    """
    by_revision = {
        revision: (name, kind)
        for revision, name, kind in zip(
            received.revisions, received.names, received.types, strict=True
        )
    }
    deleted_at = {
        name: revision
        for revision, (name, kind) in by_revision.items()
        if kind == TYPE_CODES["DELETED"]
    }
    counts = dict.fromkeys(
        ("covered", "delivered", "missed", "mismatched", "uncertain"), 0
    )
    samples: list[str] = []
    for event in expected:
        low, high = event.after + 1, event.before - 1
        certain = _covers(stretches, low, high)
        counts["covered"] += certain
        if event.exact:
            found = by_revision.get(low)
            arrived = found == (event.name, event.type_code)
            counts["mismatched"] += found is not None and not arrived
        else:
            revision = deleted_at.get(event.name)
            arrived = revision is not None and low <= revision <= high
            counts["mismatched"] += revision is not None and not arrived
        if arrived:
            counts["delivered"] += 1
        elif certain:
            counts["missed"] += 1
            if len(samples) < _MAX_SAMPLES:
                samples.append(
                    f"{namespace}/{event.name} type {event.type_code} rv {low}..{high}"
                )
        elif _touches(stretches, low, high):
            counts["uncertain"] += 1
    return {**counts, "samples": tuple(samples)}


class Watcher:
    """
    One informer-like watcher of one namespace.
    """

    def __init__(
        self,
        plan: WatchPlan,
        namespace: str,
        context: ssl.SSLContext,
        recorder: Recorder,
    ) -> None:
        self._plan = plan
        self.namespace = namespace
        self._context = context
        self._recorder = recorder
        self.epochs: list[Epoch] = []
        self.received = Receipts()
        self.established: asyncio.Future[None] = (
            asyncio.get_running_loop().create_future()
        )
        self.reordered = 0
        self.rewatches = 0
        self.stream_ends = 0
        self._highest = 0
        self._random = random.Random()

    @property
    def latest(self) -> int:
        """
        The highest revision it has received or listed at.
        """
        return self.epochs[-1].last if self.epochs else 0

    async def follow(self, gate: asyncio.Semaphore) -> None:
        """
        List, watch, watch again, list again after a 410, forever (until
        cancelled).  The first list and watch hold C{gate} until the watch
        is established (or fails).
        """
        await gate.acquire()
        holding = True

        def release(_: object = None) -> None:
            nonlocal holding
            if holding:
                holding = False
                gate.release()

        self.established.add_done_callback(release)
        try:
            await self._start_epoch()
            outcome = await self._watch(self.epochs[-1])
        finally:
            release()
        while True:
            if outcome == GONE:
                self.epochs[-1].gone = True
                await self._start_epoch()
            else:
                self.rewatches += 1
                if outcome == FAILED:
                    await asyncio.sleep(_RETRY_DELAY)
            outcome = await self._watch(self.epochs[-1])

    async def _start_epoch(self) -> None:
        start = await self._list()
        self.epochs.append(Epoch(start, start))

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        endpoint = self._plan.endpoint
        return await asyncio.wait_for(
            asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=self._context,
                server_hostname=endpoint.host,
            ),
            self._plan.request_timeout,
        )

    async def _list(self) -> int:
        """
        A consistent list of the namespace, retried until it answers 200.

        @return: its resourceVersion.
        """
        path = flunders_path(self.namespace)
        while True:
            sent = time.monotonic()
            try:
                reader, writer = await self._open()
                connection = KeepAliveConnection(self._plan.endpoint, reader, writer)
                try:
                    status, body = await asyncio.wait_for(
                        connection.request("GET", path), self._plan.request_timeout
                    )
                finally:
                    connection.close()
            except _CONNECTION_ERRORS as error:
                self._recorder.failure(LIST, NO_RESPONSE, repr(error), time.monotonic())
            else:
                done = time.monotonic()
                if status == 200:
                    self._recorder.success(LIST, status, done - sent)
                    return int(json.loads(body)["metadata"]["resourceVersion"])
                self._recorder.failure(LIST, status, repr(body[:300]), done)
            await asyncio.sleep(_RETRY_DELAY)

    def _watch_path(self, epoch: Epoch) -> str:
        """
        A watch from the epoch's last revision, with a random
        C{timeoutSeconds} between once and twice the plan's (as client-go's
        reflector does) unless that is 0.
        """
        path = (
            f"{flunders_path(self.namespace)}?watch=true&resourceVersion={epoch.last}"
        )
        timeout = self._plan.watch_timeout
        if timeout > 0:
            path += f"&timeoutSeconds={round(timeout * (1 + self._random.random()))}"
        return path

    async def _watch(self, epoch: Epoch) -> str:
        """
        One watch from the epoch's last revision, read until it ends.

        @return: L{GONE} (a 410: list again), L{ENDED} (the server ended the
            stream) or L{FAILED}.
        """
        sent = time.monotonic()
        try:
            reader, writer = await self._open()
        except _CONNECTION_ERRORS as error:
            self._recorder.failure(WATCH, NO_RESPONSE, repr(error), time.monotonic())
            return FAILED
        try:
            host = self._plan.endpoint.host
            writer.write(request_bytes("GET", self._watch_path(epoch), host))
            return await self._read(reader, epoch, sent)
        except (*_CONNECTION_ERRORS, ValueError, KeyError) as error:
            self._recorder.failure(WATCH, NO_RESPONSE, repr(error), time.monotonic())
            return FAILED
        finally:
            writer.close()

    async def _read(
        self, reader: asyncio.StreamReader, epoch: Epoch, sent: float
    ) -> str:
        decoder = LineDecoder()
        while decoder.head is None:
            data = await asyncio.wait_for(
                reader.read(_READ_SIZE), self._plan.request_timeout
            )
            if not data:
                raise HttpError("closed before the response head")
            lines = decoder.feed(data)
        assert decoder.head is not None
        status = decoder.head.status
        if status != 200:
            body = b"\n".join(lines)
            self._recorder.failure(
                WATCH, status, repr(body[:300]), time.monotonic(), status == 410
            )
            return GONE if status == 410 else FAILED
        self._recorder.success(WATCH, status, time.monotonic() - sent)
        if not self.established.done():
            self.established.set_result(None)
        while True:
            for line in lines:
                outcome = self._event(json.loads(line), epoch) if line.strip() else None
                if outcome is not None:
                    return outcome
            if decoder.finished or not (data := await reader.read(_READ_SIZE)):
                self.stream_ends += 1
                return ENDED
            lines = decoder.feed(data)

    def _event(self, event: dict[str, Any], epoch: Epoch) -> str | None:
        """
        Note one event.

        @return: C{None}, or for an C{ERROR} event how the watch ended
            (L{GONE} for a 410, else L{FAILED}).
        """
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = int(obj.get("code", 0))
            message = str(obj.get("message", ""))
            gone = code == 410
            self._recorder.failure(WATCH_ERROR, code, message, time.monotonic(), gone)
            return GONE if gone else FAILED
        type_code = TYPE_CODES.get(str(kind))
        if type_code is None:
            return None
        metadata = obj["metadata"]
        revision = int(metadata["resourceVersion"])
        if revision <= self._highest:
            self.reordered += 1
        self._highest = max(self._highest, revision)
        epoch.last = max(epoch.last, revision)
        self.received.add(revision, name_index(metadata["name"]), type_code)
        return None

    def summary(self, target: int, expected: Sequence[Expected]) -> WatcherSummary:
        """
        Judge what it received; C{target} is the namespace's last write.
        """
        stretches = []
        for index, epoch in enumerate(self.epochs):
            last_epoch = index == len(self.epochs) - 1
            end = (
                max(target, epoch.last) if last_epoch and not epoch.gone else epoch.last
            )
            stretches.append((epoch.start, end))
        counts = judge(self.namespace, stretches, self.received, expected)
        return WatcherSummary(
            namespace=self.namespace,
            events=len(self.received.revisions),
            reordered=self.reordered,
            lists=len(self.epochs),
            gone=sum(epoch.gone for epoch in self.epochs),
            rewatches=self.rewatches,
            stream_ends=self.stream_ends,
            drained=self.latest >= target,
            **counts,
        )


async def _drain(
    watchers: Sequence[Watcher], targets: dict[str, int], timeout: float
) -> None:
    """
    Wait until every watcher has received its namespace's last write.
    """
    await poll_async(
        lambda: all(w.latest >= targets.get(w.namespace, 0) for w in watchers),
        timeout,
        _DRAIN_POLL,
    )


async def _serve(plan: WatchPlan, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    context = plan.endpoint.context()
    if context is None:
        raise ValueError("the soak's watchers speak TLS")
    recorder = Recorder()
    watchers = [Watcher(plan, ns, context, recorder) for ns in plan.namespaces]
    gate = asyncio.Semaphore(plan.connect_concurrency)
    tasks = [asyncio.create_task(watcher.follow(gate)) for watcher in watchers]
    try:
        done, _ = await asyncio.wait(
            [watcher.established for watcher in watchers],
            timeout=plan.connect_timeout,
        )
        errors = [f"{len(watchers) - len(done)} watches not established in time"]
        pipe.send(("ready", len(done), errors if len(done) < len(watchers) else []))
        command = await loop.run_in_executor(None, pipe.recv)
        if command[0] != "drain":
            return
        _, targets, expected, timeout = command
        await _drain(watchers, targets, timeout)
        for task in tasks:
            task.cancel()
        summaries = [
            w.summary(targets.get(w.namespace, 0), expected.get(w.namespace, ()))
            for w in watchers
        ]
        pipe.send(("result", summaries, recorder))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def run_watch_worker(plan: WatchPlan, pipe: Connection) -> None:
    """
    The worker process's entry point (see the module docstring).
    """
    raise_open_files_limit(2 * len(plan.namespaces) + 256)
    try:
        asyncio.run(_serve(plan, pipe))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the parent went away: nothing left to report to
    finally:
        pipe.close()
