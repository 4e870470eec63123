# -*- test-case-name: tests.test_soak_smoke -*-
"""
The soak's writer and lister: mixed traffic at fixed rates, and a ledger
of what the server acknowledged.

Writes are scheduled open-loop (write C{i} is due C{i / rate} seconds after
the start) over a few keep-alive connections (L{bench._http}), each one a
create, an update (a PUT carrying the resourceVersion last acknowledged,
so a lost update shows as a 409) or a delete, of Flunders spread over a few
namespaces whose population is held near a target.  No two writes to one
object are in flight at once, and an object whose write got a 5xx or no
response (so it may or may not have been applied) is never written again:
the ledger can then say exactly which final states are allowed.

Lists run beside the writes at their own rate, alternating between a whole
list and a walk of pages (C{limit} and C{continue}).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

import attrs

from bench._http import Endpoint, HttpError, KeepAliveConnection
from bench._soak_record import (
    CREATE,
    DELETE,
    NO_RESPONSE,
    UPDATE,
    Ack,
    Recorder,
    name_index,
)
from bench._targets import flunder, flunders_path

REQUEST_TIMEOUT = 15.0
#: Seconds behind its schedule after which a write counts as late.
LATE = 1.0
_RECONNECT_DELAY = 0.5
_CONNECTION_ERRORS = (OSError, asyncio.IncompleteReadError, HttpError, TimeoutError)

#: Chances of a create, an update and a delete while a namespace holds
#: fewer objects than its target, and once it holds as many or more.
WEIGHTS_BELOW = (0.4, 0.4, 0.2)
WEIGHTS_ABOVE = (0.2, 0.4, 0.4)


@attrs.frozen
class Write:
    """
    One write to send.

    @ivar name: the object's index (its name is C{flunder(name)}'s).
    @ivar operation: L{CREATE}, L{UPDATE} or L{DELETE}.
    """

    namespace: str
    name: int
    operation: str
    method: str
    path: str
    body: bytes = b""


@attrs.define
class NameRecord:
    """
    Everything the ledger knows about one object.

    @ivar last_ack: its last acknowledged write.
    @ivar unsure: the operation of a later write that got a 5xx or no
        response (it may have been applied); the object was then retired.
    """

    namespace: str
    last_ack: Ack | None = None
    unsure: str | None = None


def _object_for_update(returned: dict[str, Any]) -> dict[str, Any]:
    """
    What to keep of a create's or update's response to PUT it back later:
    all of it but C{managedFields} (as C{kubectl replace} would send).
    """
    returned.get("metadata", {}).pop("managedFields", None)
    return returned


def _changed(obj: dict[str, Any]) -> dict[str, Any]:
    """
    C{obj} with its spec and a label changed (the body of an update).
    """
    metadata = obj["metadata"]
    labels = metadata.setdefault("labels", {})
    generation = int(labels.get("soak-generation", "0")) + 1
    labels["soak-generation"] = str(generation)
    obj.setdefault("spec", {})["reference"] = f"fischer-{generation}"
    return obj


class Workload:
    """
    Chooses each write and keeps the ledger of their outcomes.

    @ivar records: every object ever written, by index.
    @ivar acks: every acknowledged write, in the order the acks came.
    @ivar refusals: writes answered 4xx.
    """

    def __init__(
        self, namespaces: Sequence[str], objects_per_namespace: int, seed: int
    ) -> None:
        self._namespaces = list(namespaces)
        self._target = objects_per_namespace
        self._random = random.Random(seed)
        self._idle: dict[str, dict[int, dict[str, Any]]] = {
            namespace: {} for namespace in namespaces
        }
        self._turn = 0
        self._next_name = 1
        self.records: dict[int, NameRecord] = {}
        self.acks: list[Ack] = []
        self.refusals = 0

    def next_write(self) -> Write:
        """
        The next write: the namespaces take turns; below its target a
        namespace gets more creates, above it more deletes.
        """
        namespace = self._namespaces[self._turn % len(self._namespaces)]
        self._turn += 1
        idle = self._idle[namespace]
        weights = WEIGHTS_BELOW if len(idle) < self._target else WEIGHTS_ABOVE
        operation = self._random.choices((CREATE, UPDATE, DELETE), weights)[0]
        if operation == CREATE or not idle:
            return self.create(namespace)
        name = self._random.choice(list(idle))
        obj = idle.pop(name)
        path = f"{flunders_path(namespace)}/{obj['metadata']['name']}"
        if operation == UPDATE:
            body = json.dumps(_changed(obj), separators=(",", ":")).encode()
            return Write(namespace, name, UPDATE, "PUT", path, body)
        return Write(namespace, name, DELETE, "DELETE", path)

    def create(self, namespace: str) -> Write:
        """
        A create of a new object in C{namespace}.
        """
        name = self._next_name
        self._next_name += 1
        self.records[name] = NameRecord(namespace)
        path = flunders_path(namespace)
        return Write(namespace, name, CREATE, "POST", path, flunder(name))

    def acknowledged(
        self, write: Write, payload: bytes, sent: float, acked: float
    ) -> Ack:
        """
        Note a 2xx: the object is idle again (unless deleted) with the
        resourceVersion the response carried.
        """
        revision = 0
        if write.operation != DELETE:
            returned = json.loads(payload)
            revision = int(returned["metadata"]["resourceVersion"])
            self._idle[write.namespace][write.name] = _object_for_update(returned)
        ack = Ack(write.namespace, write.name, write.operation, revision, sent, acked)
        self.records[write.name].last_ack = ack
        self.acks.append(ack)
        return ack

    def refused(self, write: Write) -> None:
        """
        Note a 4xx: not applied, but what the server holds may not be what
        the ledger expected, so the object (already taken out of the idle
        ones) is retired; its last ack still stands.
        """
        self.refusals += 1

    def unsure(self, write: Write) -> None:
        """
        Note a 5xx or no response: the write may have been applied; the
        object is retired.
        """
        self.records[write.name].unsure = write.operation


class ConnectionPool:
    """
    Keep-alive connections to one server, one request at a time each; a
    connection that fails is replaced in the background.
    """

    def __init__(self, endpoint: Endpoint, size: int) -> None:
        self._endpoint = endpoint
        self._size = size
        self._free: asyncio.Queue[KeepAliveConnection] = asyncio.Queue()
        self._replacing: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """
        Open every connection.
        """
        opened = await asyncio.gather(
            *(KeepAliveConnection.open(self._endpoint) for _ in range(self._size))
        )
        for connection in opened:
            self._free.put_nowait(connection)

    async def acquire(self) -> KeepAliveConnection:
        """
        A free connection (waiting for one).
        """
        return await self._free.get()

    def release(self, connection: KeepAliveConnection) -> None:
        """
        Give back a connection taken with L{acquire} and not used.
        """
        self._free.put_nowait(connection)

    async def send(
        self, connection: KeepAliveConnection, method: str, path: str, body: bytes = b""
    ) -> tuple[int, bytes] | str:
        """
        One request on C{connection} (acquired from this pool), which goes
        back to the pool afterwards, or is replaced if it failed.

        @return: the status and body, or what went wrong when no response
            came.
        """
        try:
            response = await asyncio.wait_for(
                connection.request(method, path, body), REQUEST_TIMEOUT
            )
        except _CONNECTION_ERRORS as error:
            connection.close()
            task = asyncio.create_task(self._replace())
            self._replacing.add(task)
            task.add_done_callback(self._replacing.discard)
            return repr(error)
        self._free.put_nowait(connection)
        return response

    async def _replace(self) -> None:
        while True:
            try:
                connection = await KeepAliveConnection.open(self._endpoint)
            except OSError:
                await asyncio.sleep(_RECONNECT_DELAY)
                continue
            self._free.put_nowait(connection)
            return

    async def close(self) -> None:
        """
        Close every idle connection and stop replacing broken ones.
        """
        for task in list(self._replacing):
            task.cancel()
        while not self._free.empty():
            self._free.get_nowait().close()


@attrs.define
class Writer:
    """
    Runs the writes of a L{Workload} over a L{ConnectionPool}.

    @ivar max_lag: the longest a write waited past its due time for a free
        connection.
    @ivar max_lag_due: when that write was due (C{time.monotonic()}).
    @ivar late: writes sent more than L{LATE} seconds after they were due.
    """

    pool: ConnectionPool
    workload: Workload
    recorder: Recorder
    max_lag: float = 0.0
    max_lag_due: float = 0.0
    late: int = 0
    _tasks: set[asyncio.Task[Ack | None]] = attrs.Factory(set)

    async def run(self, rate: float, start: float, until: float) -> None:
        """
        Write at C{rate} per second from C{start} to C{until} (monotonic
        times; a server that cannot keep up gets fewer writes, not a longer
        run); wait for the writes still in flight.
        """
        index = 0
        while (due := start + index / rate) < until:
            index += 1
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            connection = await self.pool.acquire()
            if time.monotonic() >= until:
                self.pool.release(connection)
                break
            lag = time.monotonic() - due
            self.late += lag > LATE
            if lag > self.max_lag:
                self.max_lag, self.max_lag_due = lag, due
            write = self.workload.next_write()
            self._start(self.write(connection, write))
        await asyncio.gather(*self._tasks)

    def _start(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def write(self, connection: KeepAliveConnection, write: Write) -> Ack | None:
        """
        Send C{write}; note its outcome in the ledger and the recorder.

        @return: its ack, or C{None} if it was not acknowledged.
        """
        sent = time.monotonic()
        response = await self.pool.send(
            connection, write.method, write.path, write.body
        )
        done = time.monotonic()
        if isinstance(response, str):
            self.recorder.failure(write.operation, NO_RESPONSE, response, done)
            self.workload.unsure(write)
            return None
        status, payload = response
        if 200 <= status < 300:
            self.recorder.success(write.operation, status, done - sent)
            return self.workload.acknowledged(write, payload, sent, done)
        self.recorder.failure(write.operation, status, repr(payload[:300]), done)
        if status >= 500:
            self.workload.unsure(write)
        else:
            self.workload.refused(write)
        return None

    async def create_until_acknowledged(
        self, namespace: str, attempts: int = 20
    ) -> Ack | None:
        """
        Create one object in C{namespace}, retrying (a new object each
        time) until one is acknowledged.
        """
        for _ in range(attempts):
            connection = await self.pool.acquire()
            ack = await self.write(connection, self.workload.create(namespace))
            if ack is not None:
                return ack
            await asyncio.sleep(_RECONNECT_DELAY)
        return None


FULL_LIST = "list"
LIST_PAGE = "list-page"


@attrs.define
class Lister:
    """
    Lists the soak's namespaces at a fixed rate: a whole list, then a walk
    of pages, and so on.

    @ivar walks: page walks that reached the last page.
    @ivar expired: page walks ended by a 410 (a continue token older than
        a compaction), which is how the API says "start again".
    """

    pool: ConnectionPool
    recorder: Recorder
    namespaces: Sequence[str]
    page_size: int
    walks: int = 0
    expired: int = 0
    _tasks: set[asyncio.Task[None]] = attrs.Factory(set)

    async def run(self, rate: float, start: float, until: float) -> None:
        """
        List at C{rate} per second from C{start} to C{until}.
        """
        index = 0
        while (due := start + index / rate) < until:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            namespace = self.namespaces[index % len(self.namespaces)]
            work = self._walk(namespace) if index % 2 else self._list(namespace)
            index += 1
            task = asyncio.create_task(work)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.gather(*self._tasks)

    async def _get(self, operation: str, path: str) -> dict[str, Any] | None:
        """
        One GET on a free connection; note it.

        @return: the parsed body of a 200, else C{None}.
        """
        connection = await self.pool.acquire()
        sent = time.monotonic()
        response = await self.pool.send(connection, "GET", path)
        done = time.monotonic()
        if isinstance(response, str):
            self.recorder.failure(operation, NO_RESPONSE, response, done)
            return None
        status, payload = response
        if status == 200:
            self.recorder.success(operation, status, done - sent)
            parsed: dict[str, Any] = json.loads(payload)
            return parsed
        expired = status == 410 and operation == LIST_PAGE
        self.expired += expired
        self.recorder.failure(operation, status, repr(payload[:300]), done, expired)
        return None

    async def _list(self, namespace: str) -> None:
        await self._get(FULL_LIST, flunders_path(namespace))

    async def _walk(self, namespace: str) -> None:
        """
        Read C{namespace}'s list page by page.
        """
        base = f"{flunders_path(namespace)}?limit={self.page_size}"
        path = base
        while (page := await self._get(LIST_PAGE, path)) is not None:
            token = page.get("metadata", {}).get("continue")
            if not token:
                self.walks += 1
                return
            path = f"{base}&continue={urllib.parse.quote(token, safe='')}"


async def final_objects(
    pool: ConnectionPool, namespace: str, page_size: int = 500
) -> dict[int, int]:
    """
    A consistent list of C{namespace} (no resourceVersion: read from
    storage), all pages.

    @return: each object's resourceVersion by L{name_index}.
    @raise RuntimeError: a page did not answer 200.
    """
    found: dict[int, int] = {}
    base = f"{flunders_path(namespace)}?limit={page_size}"
    path = base
    while True:
        connection = await pool.acquire()
        response = await pool.send(connection, "GET", path)
        if isinstance(response, str) or response[0] != 200:
            raise RuntimeError(f"final list of {namespace}: {response!r:.300}")
        page = json.loads(response[1])
        for item in page["items"]:
            metadata = item["metadata"]
            found[name_index(metadata["name"])] = int(metadata["resourceVersion"])
        token = page["metadata"].get("continue")
        if not token:
            return found
        path = f"{base}&continue={urllib.parse.quote(token, safe='')}"
