"""
The writer: create objects at a fixed rate and note when each was
acknowledged and at which revision.

Requests are scheduled open-loop (request C{i} is due C{i / rate} seconds
after the start, whatever happened to the previous ones) over a few
keep-alive connections, so a slow response delays no later write unless
every connection is busy.  The time of a write's acknowledgement is when its
whole response has been read; watchers' receipt times are compared with it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import attrs

from bench._http import Endpoint, HttpError, KeepAliveConnection

_REQUEST_TIMEOUT = 10.0
_START_DELAY = 0.05

#: Method, path and body of the C{i}-th write.
RequestMaker = Callable[[int], tuple[str, str, bytes]]


@attrs.frozen
class WriteTarget:
    """
    Where and what the writer writes.

    @ivar endpoint: the server.
    @ivar make_request: method, path and body of the C{i}-th write.
    @ivar revision_pattern: a regular expression whose first group, found in
        a successful response body, is the revision the write created.
    @ivar success: the status code of a successful write.
    """

    endpoint: Endpoint
    make_request: RequestMaker
    revision_pattern: bytes
    success: int


@attrs.define
class WriteResult:
    """
    What the writer did.

    @ivar acks: acknowledgement time (C{time.monotonic()}) by revision.
    @ivar sends: when the write that created each revision was sent.
    @ivar write_latencies: seconds from sending each write to its ack.
    @ivar errors: writes that failed, with the first few reasons.
    @ivar started: when the first write was due.
    @ivar finished: when the last ack arrived.
    @ivar max_lag: the longest a write waited past its due time for a free
        connection.
    """

    acks: dict[int, float] = attrs.Factory(dict)
    sends: dict[int, float] = attrs.Factory(dict)
    write_latencies: list[float] = attrs.Factory(list)
    errors: list[str] = attrs.Factory(list)
    started: float = 0.0
    finished: float = 0.0
    max_lag: float = 0.0

    @property
    def last_revision(self) -> int:
        """
        The highest acknowledged revision (0 when nothing was written).
        """
        return max(self.acks, default=0)


async def _write_one(
    target: WriteTarget,
    pattern: re.Pattern[bytes],
    index: int,
    connection: KeepAliveConnection,
    pool: asyncio.Queue[KeepAliveConnection],
    result: WriteResult,
) -> None:
    method, path, body = target.make_request(index)
    sent = time.monotonic()
    try:
        status, payload = await asyncio.wait_for(
            connection.request(method, path, body), _REQUEST_TIMEOUT
        )
    except (OSError, asyncio.IncompleteReadError, HttpError, TimeoutError) as error:
        connection.close()
        result.errors.append(f"write {index}: {error!r}")
        await _replace_connection(target.endpoint, pool, result)
        return
    acked = time.monotonic()
    pool.put_nowait(connection)
    found = pattern.search(payload)
    if status != target.success or found is None:
        result.errors.append(f"write {index}: HTTP {status} {payload[:200]!r}")
        return
    revision = int(found.group(1))
    result.acks[revision] = acked
    result.sends[revision] = sent
    result.write_latencies.append(acked - sent)
    result.finished = max(result.finished, acked)


async def _replace_connection(
    endpoint: Endpoint, pool: asyncio.Queue[KeepAliveConnection], result: WriteResult
) -> None:
    """
    Put a new connection in the pool in place of a broken one; if that
    fails too the pool shrinks (and L{run_writer} gives up once it is
    empty for L{_REQUEST_TIMEOUT} seconds).
    """
    try:
        pool.put_nowait(await KeepAliveConnection.open(endpoint))
    except OSError as error:
        result.errors.append(f"reconnect: {error!r}")


async def run_writer(
    target: WriteTarget, rate: float, duration: float, connections: int
) -> WriteResult:
    """
    Write C{rate × duration} objects at C{rate} per second.

    @param connections: keep-alive connections to spread writes over.
    @raise TimeoutError: no connection was usable for L{_REQUEST_TIMEOUT}
        seconds (the server is gone).
    """
    pool: asyncio.Queue[KeepAliveConnection] = asyncio.Queue()
    opened = await asyncio.gather(
        *(KeepAliveConnection.open(target.endpoint) for _ in range(connections))
    )
    for connection in opened:
        pool.put_nowait(connection)
    pattern = re.compile(target.revision_pattern)
    result = WriteResult()
    result.started = start = time.monotonic() + _START_DELAY
    tasks = []
    try:
        for index in range(round(rate * duration)):
            due = start + index / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            connection = await asyncio.wait_for(pool.get(), _REQUEST_TIMEOUT)
            result.max_lag = max(result.max_lag, time.monotonic() - due)
            tasks.append(
                asyncio.create_task(
                    _write_one(target, pattern, index, connection, pool, result)
                )
            )
        await asyncio.gather(*tasks)
    finally:
        while not pool.empty():
            pool.get_nowait().close()
    return result


def write(
    target: WriteTarget, rate: float, duration: float, connections: int
) -> WriteResult:
    """
    Run L{run_writer} in a fresh event loop (blocking).
    """
    return asyncio.run(run_writer(target, rate, duration, connections))
