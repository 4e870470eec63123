# -*- test-case-name: tests.test_bench_smoke -*-
"""
etcd alone doing the storage calls wardled makes: the ceiling etcd puts
on wardled's writes on this machine.

Issue 8 compares wardled's create with a plain C{put} on etcd's gateway
(the C{"etcd"} CRUD target), but wardled cannot write that way: a create
must not overwrite an existing object, so it is a create-if-absent
transaction, and an update or delete must not undo someone else's write,
so it is a compare-and-swap on the key's mod_revision
(L{wardled.storage.etcd}).  And wardled's watch cache keeps one gateway
watch open on its prefix, with C{prev_kv} and C{progress_notify}, so etcd
sends every write to a watcher too.

The C{"etcd-txn"} target does exactly that, straight on the gateway over
HTTP/1.1: the same transactions on keys under a prefix of its own per
cell, holding the bytes wardled stores for a Flunder, while one watch with
wardled's options is open on that prefix and its events are read (and
checked to have all arrived once the cell is done).  Whatever wardled adds
on top (TLS, admission, validation, the watch cache) only costs more.
"""

from __future__ import annotations

import asyncio
import re

from bench._http import Endpoint
from bench._suite_crud import CrudTarget, EtcdCrud, Operation
from bench._suite_load import HTTP1, Accounting
from bench._targets import etcd_watch
from bench._watchers import WatchProtocol, WatchTarget, _open_watch
from tests.waiting import poll_async

ETCD_TXN = "etcd-txn"
ETCD_TXN_LABEL = "etcd doing wardled's calls (txn + watch)"

#: One match per watch event: the mod_revision of its C{kv} (not C{prev_kv}).
_EVENT_REVISION = rb'"kv":\{[^{}]*?"mod_revision":"(\d+)"'
_HEADER_REVISION = re.compile(rb'"revision":"(\d+)"')
_SUCCEEDED = b'"succeeded":true'
_WATCH_TIMEOUT = 30.0
_DRAIN_TIMEOUT = 10.0
_DRAIN_POLL = 0.01


def wardled_watch(endpoint: Endpoint, prefix: bytes) -> WatchTarget:
    """
    The gateway watch wardled's watch cache holds: every key under
    C{prefix} from now on, with each event's previous value and progress
    notifications.
    """
    return etcd_watch(
        endpoint,
        prefix,
        options={"prev_kv": True, "progress_notify": True},
        revision_pattern=_EVENT_REVISION,
    )


def _header_revision(body: bytes) -> int:
    found = _HEADER_REVISION.search(body)
    return 0 if found is None else int(found.group(1))


class EtcdTxnCrud(EtcdCrud):
    """
    Keys under one prefix, written the way wardled writes (L{EtcdCrud}'s
    keys, values and range), with wardled's watch on the prefix.
    """

    def __init__(self, prefix: bytes, value: bytes) -> None:
        super().__init__(prefix, value)
        self._revisions: dict[int, int] = {}
        self._rejected: dict[str, int] = {}
        self._last_revision = 0
        self._watch: WatchProtocol | None = None

    # -- requests ---------------------------------------------------------

    def _swap(self, index: int, operation: dict[str, object]) -> bytes:
        """
        wardled's compare-and-swap: C{operation} if the key's mod_revision
        is the one last written, else read the key.
        """
        key = self._key(index)
        compare = {
            "target": "MOD",
            "key": key,
            "result": "EQUAL",
            "mod_revision": self._revisions[index],
        }
        return self._body(
            compare=[compare],
            success=[operation],
            failure=[{"request_range": {"key": key}}],
        )

    def _create(self, index: int) -> bytes:
        key = self._key(index)
        compare = {"target": "CREATE", "key": key, "result": "EQUAL", "create_revision": 0}
        put = {"key": key, "value": self._value}
        return self._body(compare=[compare], success=[{"request_put": put}])

    def _update(self, index: int) -> bytes:
        put = {"key": self._key(index), "value": self._changed}
        return self._swap(index, {"request_put": put})

    def _delete(self, index: int) -> bytes:
        return self._swap(index, {"request_delete_range": {"key": self._key(index)}})

    # -- responses --------------------------------------------------------

    def _applied(self, name: str, index: int, body: bytes) -> bool:
        """
        Note the revision a successful transaction wrote at, or count it
        as rejected.
        """
        if _SUCCEEDED not in body:
            self._rejected[name] = self._rejected.get(name, 0) + 1
            return False
        revision = _header_revision(body)
        self._revisions[index] = revision
        self._last_revision = max(self._last_revision, revision)
        return True

    def _remember(self, index: int, body: bytes) -> None:
        if self._applied("create", index, body):
            self.created.append(index)

    def _updated(self, position: int, body: bytes) -> None:
        self._applied("update", self.created[position], body)

    def _deleted(self, position: int, body: bytes) -> None:
        self._applied("delete", self.created[position], body)

    def operation(self, name: str) -> Operation:
        created = self.created
        if name == "create":
            return Operation(
                lambda i: ("POST", "/v3/kv/txn", self._create(i)), 200, self._remember
            )
        if name == "update":
            return Operation(
                lambda i: ("POST", "/v3/kv/txn", self._update(created[i])),
                200,
                self._updated,
            )
        if name == "delete":
            return Operation(
                lambda i: ("POST", "/v3/kv/txn", self._delete(created[i])),
                200,
                self._deleted,
            )
        return super().operation(name)

    def rejected(self, name: str) -> int:
        return self._rejected.get(name, 0)

    # -- the watch --------------------------------------------------------

    async def start(self, endpoint: Endpoint) -> None:
        """
        Open wardled's watch on the prefix and wait until it is created.
        """
        target = wardled_watch(endpoint, self._prefix)
        pattern = re.compile(target.revision_pattern)
        self._watch = await _open_watch(
            target, pattern, asyncio.Semaphore(1), _WATCH_TIMEOUT
        )

    async def finish(self) -> list[str]:
        """
        Wait until the watch has delivered the last write.

        @return: why it did not, if it did not.
        """
        watch = self._watch
        if watch is None:
            return ["the watch was never opened"]
        last = self._last_revision
        await poll_async(
            lambda: watch.closed or watch.last_revision >= last,
            _DRAIN_TIMEOUT,
            _DRAIN_POLL,
        )
        if watch.last_revision >= last:
            return []
        why = "closed" if watch.closed else f"lagged {_DRAIN_TIMEOUT:g} s"
        problem = (
            f"the watch {why}: last event at revision {watch.last_revision}, "
            f"last write at {last}"
        )
        return [problem]

    def close(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and watch.transport is not None:
            watch.transport.abort()


def etcd_txn_target(
    endpoint: Endpoint, value: bytes, accounting: Accounting
) -> CrudTarget:
    """
    etcd's gateway doing wardled's calls over HTTP/1.1: keys under a
    prefix per cell, with wardled's watch open on it.
    """
    return CrudTarget(
        ETCD_TXN,
        endpoint,
        (HTTP1,),
        accounting,
        lambda tag: EtcdTxnCrud(f"/bench-crud-txn/{tag}/".encode(), value),
    )
