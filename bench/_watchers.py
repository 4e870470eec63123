"""
A process holding many watch streams open and timing every event.

The benchmark runs one or a few of these (on a 2-core machine a thousand
watchers must share one event loop) so that receiving costs as little as
possible and never runs in the writer's process.  Each watcher records, for
every event, the revision it carries and C{time.monotonic()} when its bytes
arrived; C{CLOCK_MONOTONIC} is machine-wide, so the writer's process can
compare these times with its own.

The parent drives a worker through a L{multiprocessing} pipe::

    worker -> ("ready", connected, errors)      all watchers are streaming
    parent -> ("drain", last_revision, timeout) the writer is done
    worker -> ("result", WorkerResult)          receipts; the worker exits
    parent -> ("abort",)                        instead of "drain": just exit
"""

from __future__ import annotations

import asyncio
import re
import time
from array import array
from multiprocessing.connection import Connection

import attrs

from bench._http import Endpoint, HttpError, LineDecoder
from bench._proc import raise_open_files_limit
from tests.waiting import poll_async

_DRAIN_POLL = 0.05
_MAX_ERRORS_KEPT = 5


@attrs.frozen
class WatchTarget:
    """
    How to open one watch stream and read revisions out of its lines.

    @ivar name: C{"wardled"} or C{"etcd"} (for messages).
    @ivar endpoint: the server.
    @ivar request: the whole HTTP request that starts the watch.
    @ivar revision_pattern: a regular expression whose first group is an
        event's revision; every match in a line is one event.
    @ivar ready_marker: a watch is established when a line containing this
        arrives (etcd's C{"created":true}); C{None}: when the 200 head does.
    """

    name: str
    endpoint: Endpoint
    request: bytes
    revision_pattern: bytes
    ready_marker: bytes | None = None


@attrs.frozen
class WorkerResult:
    """
    What one worker's watchers received.

    @ivar receipts: per watcher, the revisions received and, at the same
        index, when (C{time.monotonic()}).
    @ivar ended_early: streams the server ended before the drain.
    """

    receipts: list[tuple[array[int], array[float]]]
    ended_early: int


class WatchProtocol(asyncio.Protocol):
    """
    One watch stream: send the request, then timestamp every event.
    """

    def __init__(self, target: WatchTarget, pattern: re.Pattern[bytes]) -> None:
        self._target = target
        self._pattern = pattern
        self._decoder = LineDecoder()
        self.revisions: array[int] = array("q")
        self.times: array[float] = array("d")
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._target.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        try:
            lines = self._decoder.feed(data)
        except HttpError as error:
            self._fail(str(error))
            return
        if not self.ready.done():
            self._check_ready(lines)
        for line in lines:
            for revision in self._pattern.findall(line):
                self.revisions.append(int(revision))
                self.times.append(now)

    def _check_ready(self, lines: list[bytes]) -> None:
        head = self._decoder.head
        if head is None:
            return
        marker = self._target.ready_marker
        if head.status != 200:
            self._fail(f"{self._target.name} watch answered HTTP {head.status}")
        elif marker is None or any(marker in line for line in lines):
            self.ready.set_result(None)

    def _fail(self, message: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(HttpError(message))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(
                HttpError(f"{self._target.name} closed the stream: {exc!r}")
            )

    @property
    def last_revision(self) -> int:
        """
        The highest revision received so far (0 before any).
        """
        return max(self.revisions[-8:], default=0)


async def _open_watch(
    target: WatchTarget,
    pattern: re.Pattern[bytes],
    gate: asyncio.Semaphore,
    timeout: float,
) -> WatchProtocol:
    """
    Connect one watcher and wait until its stream is established.
    """
    loop = asyncio.get_running_loop()
    endpoint = target.endpoint
    context = endpoint.context()
    async with gate:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: WatchProtocol(target, pattern),
                endpoint.host,
                endpoint.port,
                ssl=context,
                server_hostname=endpoint.host if context is not None else None,
            ),
            timeout,
        )
        await asyncio.wait_for(protocol.ready, timeout)
    return protocol


async def _open_all(
    target: WatchTarget, count: int, concurrency: int, timeout: float
) -> tuple[list[WatchProtocol], list[str]]:
    """
    Open C{count} watchers, at most C{concurrency} handshakes at a time.

    @return: the established watchers and the errors of the others.
    """
    pattern = re.compile(target.revision_pattern)
    gate = asyncio.Semaphore(concurrency)
    outcomes = await asyncio.gather(
        *(_open_watch(target, pattern, gate, timeout) for _ in range(count)),
        return_exceptions=True,
    )
    watchers = [item for item in outcomes if isinstance(item, WatchProtocol)]
    errors = [repr(item) for item in outcomes if isinstance(item, BaseException)]
    return watchers, errors


async def _drain(
    watchers: list[WatchProtocol], last_revision: int, timeout: float
) -> None:
    """
    Wait until every open watcher has seen C{last_revision}, or C{timeout}.
    """
    await poll_async(
        lambda: all(w.closed or w.last_revision >= last_revision for w in watchers),
        timeout,
        _DRAIN_POLL,
    )


async def _serve(
    target: WatchTarget,
    count: int,
    concurrency: int,
    timeout: float,
    pipe: Connection,
) -> None:
    loop = asyncio.get_running_loop()
    watchers, errors = await _open_all(target, count, concurrency, timeout)
    pipe.send(("ready", len(watchers), errors[:_MAX_ERRORS_KEPT]))
    try:
        command = await loop.run_in_executor(None, pipe.recv)
        if command[0] != "drain":
            return
        ended_early = sum(1 for w in watchers if w.closed)
        await _drain(watchers, command[1], command[2])
        receipts = [(w.revisions, w.times) for w in watchers]
        pipe.send(("result", WorkerResult(receipts, ended_early)))
    finally:
        for watcher in watchers:
            if watcher.transport is not None:
                watcher.transport.abort()


def run_worker(
    target: WatchTarget,
    count: int,
    concurrency: int,
    timeout: float,
    pipe: Connection,
) -> None:
    """
    The worker process's entry point: hold C{count} watchers on C{target}
    and follow the protocol in this module's docstring.

    @param concurrency: the most connections being set up at once (a burst
        of a thousand SYNs would overflow the server's listen backlog).
    @param timeout: seconds each watcher may take to connect and establish.
    """
    raise_open_files_limit(count + 256)
    try:
        asyncio.run(_serve(target, count, concurrency, timeout, pipe))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the parent went away: nothing left to report to
    finally:
        pipe.close()
