# -*- test-case-name: tests.test_bench_smoke -*-
"""
Create, get, update and delete, one after the other, on wardled and
straight on etcd's JSON gateway, at a given concurrency and protocol.

A "cell" is one backend × protocol × concurrency: it creates Flunders
(or puts keys) for C{op_seconds}, then gets them for as long, updates each
created one once and deletes each once (both stop early at
C{op_seconds}), over the same open connections, each operation timed
and CPU-accounted on its own.

The etcd baseline does what a client of etcd's gateway would: C{put} of
the bytes wardled stored for a Flunder under a new key (create), C{range}
of one key (get), C{put} of changed bytes on an existing key (update) and
C{deleterange} of one key (delete), over plain HTTP/1.1 as wardled itself
reaches etcd.  wardled's own writes are compare-and-swap transactions
plus admission, validation, managedFields and the watch cache: the ratio
is what all that costs.  L{bench._suite_etcdwrites} measures etcd alone
doing the very calls wardled makes (transactions, with wardled's watch
open), the ceiling etcd puts on wardled's writes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable

import attrs

from bench._http import Endpoint
from bench._suite_load import (
    HTTP1,
    Accounting,
    LoadResult,
    LoadSpec,
    RequestMaker,
    ResponseHook,
    close_senders,
    measure_load,
    open_senders,
)
from bench._targets import flunder, flunders_path

OPERATIONS = ("create", "get", "update", "delete")
_RESOURCE_VERSION = re.compile(rb'"resourceVersion":"(\d+)"')
_UNLIMITED = 1 << 60


@attrs.frozen
class Operation:
    """
    How to do one operation on the C{i}-th object.

    @ivar make_request: the request for index C{i} (of the objects
        L{CrudOps.created} holds, for every operation but create).
    @ivar success: the status of a success.
    @ivar on_response: what to remember from a success.
    """

    make_request: RequestMaker
    success: int
    on_response: ResponseHook | None = None


class CrudOps:
    """
    The four operations on one set of objects; L{created} lists the
    indexes that creating succeeded for, in order.
    """

    created: list[int]

    def operation(self, name: str) -> Operation:
        raise NotImplementedError

    async def start(self, endpoint: Endpoint) -> None:
        """
        Called before the cell's connections open (default: nothing).
        """

    async def finish(self) -> list[str]:
        """
        Called after the last operation of a cell that ran to its end.

        @return: what went wrong beside the requests (default: nothing).
        """
        return []

    def close(self) -> None:
        """
        Called last, whatever happened (default: nothing).
        """

    def rejected(self, name: str) -> int:
        """
        How many of operation C{name}'s successful responses (by status)
        did not do what was asked (default: none).
        """
        return 0


def _name(index: int) -> str:
    return f"bench-{index:06d}"


class WardledCrud(CrudOps):
    """
    Flunders in one namespace of wardled.
    """

    def __init__(self, namespace: str) -> None:
        self.created = []
        self._versions: dict[int, str] = {}
        self._path = flunders_path(namespace)

    def _remember(self, index: int, body: bytes) -> None:
        found = _RESOURCE_VERSION.search(body)
        if found is not None:
            self._versions[index] = found.group(1).decode()
            self.created.append(index)

    def _updated(self, index: int) -> bytes:
        body = json.loads(flunder(index))
        body["metadata"]["resourceVersion"] = self._versions[index]
        body["spec"]["reference"] = f"updated-{index}"
        return json.dumps(body, separators=(",", ":")).encode()

    def operation(self, name: str) -> Operation:
        path, created = self._path, self.created
        if name == "create":
            return Operation(
                lambda i: ("POST", path, flunder(i)), 201, self._remember
            )
        if name == "get":
            return Operation(
                lambda i: ("GET", f"{path}/{_name(created[i % len(created)])}", b""),
                200,
            )
        if name == "update":
            return Operation(
                lambda i: (
                    "PUT",
                    f"{path}/{_name(created[i])}",
                    self._updated(created[i]),
                ),
                200,
            )
        return Operation(lambda i: ("DELETE", f"{path}/{_name(created[i])}", b""), 200)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class EtcdCrud(CrudOps):
    """
    Keys under one prefix on etcd's gateway, holding what wardled stores.
    """

    def __init__(self, prefix: bytes, value: bytes) -> None:
        self.created = []
        self._prefix = prefix
        self._value = _b64(value)
        self._changed = _b64(value.replace(b'"reference":"', b'"reference":"updated-'))

    def _key(self, index: int) -> str:
        return _b64(self._prefix + _name(index).encode())

    def _remember(self, index: int, body: bytes) -> None:
        self.created.append(index)

    def _body(self, **fields: object) -> bytes:
        return json.dumps(fields).encode()

    def operation(self, name: str) -> Operation:
        created, key, body = self.created, self._key, self._body
        if name == "create":
            value = self._value
            return Operation(
                lambda i: ("POST", "/v3/kv/put", body(key=key(i), value=value)),
                200,
                self._remember,
            )
        if name == "get":
            return Operation(
                lambda i: (
                    "POST",
                    "/v3/kv/range",
                    body(key=key(created[i % len(created)])),
                ),
                200,
            )
        if name == "update":
            changed = self._changed
            return Operation(
                lambda i: (
                    "POST",
                    "/v3/kv/put",
                    body(key=key(created[i]), value=changed),
                ),
                200,
            )
        return Operation(
            lambda i: ("POST", "/v3/kv/deleterange", body(key=key(created[i]))), 200
        )


@attrs.frozen
class CrudTarget:
    """
    A backend the cells run against.

    @ivar name: C{"wardled"}, C{"embedded"}, C{"etcd"} or C{"etcd-txn"}.
    @ivar endpoint: where it listens.
    @ivar protocols: the protocols it is measured over.
    @ivar accounting: whose CPU is whose.
    @ivar make_ops: fresh L{CrudOps} for a tag unique to the cell.
    """

    name: str
    endpoint: Endpoint
    protocols: tuple[str, ...]
    accounting: Accounting
    make_ops: Callable[[str], CrudOps]


def wardled_target(
    name: str, endpoint: Endpoint, protocols: tuple[str, ...], accounting: Accounting
) -> CrudTarget:
    """
    A wardled (on etcd or embedded): Flunders in a namespace per cell.
    """
    return CrudTarget(
        name, endpoint, protocols, accounting, lambda tag: WardledCrud(f"crud-{tag}")
    )


def etcd_target(endpoint: Endpoint, value: bytes, accounting: Accounting) -> CrudTarget:
    """
    etcd's gateway over HTTP/1.1: keys under a prefix per cell.
    """
    return CrudTarget(
        "etcd",
        endpoint,
        (HTTP1,),
        accounting,
        lambda tag: EtcdCrud(f"/bench-crud/{tag}/".encode(), value),
    )


async def _run_operations(
    target: CrudTarget,
    protocol: str,
    concurrency: int,
    op_seconds: float,
    ops: CrudOps,
    operations: tuple[str, ...],
) -> dict[str, LoadResult]:
    senders = await open_senders(target.endpoint, protocol, concurrency)
    results: dict[str, LoadResult] = {}
    try:
        for name in operations:
            operation = ops.operation(name)
            limit = _UNLIMITED if name in ("create", "get") else len(ops.created)
            if name != "create" and not ops.created:
                results[name] = LoadResult(first_errors=["nothing was created"])
                continue
            spec = LoadSpec(
                endpoint=target.endpoint,
                protocol=protocol,
                make_request=operation.make_request,
                success=operation.success,
                concurrency=concurrency,
                duration=op_seconds,
                limit=limit,
                on_response=operation.on_response,
            )
            result = await measure_load(spec, senders, target.accounting)
            _count_rejected(result, name, ops.rejected(name))
            results[name] = result
    finally:
        close_senders(senders)
    return results


def _count_rejected(result: LoadResult, name: str, rejected: int) -> None:
    """
    Count as errors the C{rejected} responses that had the success status.
    """
    if rejected:
        result.completed -= rejected
        result.errors += rejected - 1  # note_error counts the last one
        result.note_error(f"{name}: {rejected} answered as success did not apply")


async def _run_cell(
    target: CrudTarget,
    protocol: str,
    concurrency: int,
    op_seconds: float,
    tag: str,
    operations: tuple[str, ...],
) -> dict[str, LoadResult]:
    ops = target.make_ops(tag)
    try:
        await ops.start(target.endpoint)
        results = await _run_operations(
            target, protocol, concurrency, op_seconds, ops, operations
        )
        for problem in await ops.finish():
            for result in results.values():
                result.note_error(problem)
    finally:
        ops.close()
    return results


def run_cell(
    target: CrudTarget,
    protocol: str,
    concurrency: int,
    op_seconds: float,
    tag: str,
    operations: tuple[str, ...] = OPERATIONS,
) -> dict[str, LoadResult]:
    """
    One cell (blocking): each of C{operations} in turn, on objects of its
    own (C{tag} must be unique); create and get run C{op_seconds}, update
    and delete touch each created object once or stop at C{op_seconds}.

    @return: a L{LoadResult} per operation.
    """
    return asyncio.run(
        _run_cell(target, protocol, concurrency, op_seconds, tag, operations)
    )
