# -*- test-case-name: tests.test_storage_etcd,tests.test_storage_conformance -*-
"""
L{IStorage} on etcd v3, through etcd's JSON gateway.

Writes are the compare-and-swap transactions the Kubernetes apiserver uses
(kine accepts exactly these shapes): create compares the key's
C{create_revision} with 0; update and delete compare its C{mod_revision} and
read the key back on failure, to tell L{KeyNotFound} from L{Conflict}. A watch
is one gateway watch stream, resumed after the last delivered revision when
the stream ends or etcd goes away; a stream quiet for
L{WATCH_KEEPALIVE_INTERVAL} seconds has its server probed, and is dropped
(and resumed on another server) when that server is hung or unhealthy, the
way etcd's Go client keeps gRPC streams alive. The JSON plumbing lives in
L{wardled.storage._gateway}; unary calls ride the kept-alive connections of
L{wardled.storage._keepalive}, watch streams treq (a connection each).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, gatherResults, succeed
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from zope.interface import implementer

from ._gateway import (
    JSON,
    Gateway,
    GatewayError,
    JSONLines,
    b64,
    header_revision,
    key_bytes,
    number,
    parse_event,
    parse_kv,
    prefix_end,
    tls_policy,
)
from ._keepalive import (
    MAX_IDLE_PER_SERVER,
    AgentTransport,
    BytesProducer,
    IUnaryTransport,
    KeepAlivePool,
)
from .interfaces import (
    Compacted,
    Conflict,
    Event,
    FutureRevision,
    IStorage,
    IWatch,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    PrefixState,
    StorageError,
    Unavailable,
    WatchCallback,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime
    from twisted.web.iweb import IAgent, IResponse

_COMPACTED = "required revision has been compacted"
_FUTURE = "required revision is a future revision"
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 3.0
# A watch stream that has carried nothing (no event, no progress
# notification) for this long has its server's /health asked.
WATCH_KEEPALIVE_INTERVAL = 10.0


@implementer(IStorage)
class EtcdStorage:
    """
    Keys and revisions in etcd v3.

    @ivar compact_revision: the newest compaction this client knows of (its
        own L{compact} calls and those a watch reported); etcd's "compacted"
        error does not say, so L{Compacted} errors carry this value.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        servers: Sequence[str],
        prefix_hint: str = "",
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        request_timeout: float = 5.0,
        *,
        agent: IAgent | None = None,
    ) -> None:
        """
        @param reactor: the reactor (TCP, SSL and time); only its clock is
            used when C{agent} is given.
        @param servers: etcd client URLs (C{http://} or C{https://}), tried in
            order when one refuses connections.
        @param prefix_hint: a key under the prefix this server stores; the
            cheap reads behind L{current_revision} probe it.
        @param ca_file: PEM CA bundle that signs etcd's serving certificate.
        @param cert_file: PEM client certificate for etcd's client-cert auth.
        @param key_file: PEM private key of C{cert_file}.
        @param request_timeout: seconds any one request may take.
        @param agent: send every request (streams included) through this
            agent instead of kept-alive connections (tests serve a fake
            gateway this way).
        """
        self._clock = reactor
        self._probe_key = b64(key_bytes(prefix_hint or "/"))
        self._watches: set[_EtcdWatch] = set()
        self.compact_revision = 0
        transport: IUnaryTransport
        pools: list[HTTPConnectionPool] = []
        if agent is None:
            transport, agent, pools = _connections(
                reactor, servers, ca_file, cert_file, key_file
            )
        else:
            transport = AgentTransport(agent)
        self._gateway = Gateway(
            reactor,
            servers,
            transport,
            HTTPClient(agent, data_to_body_producer=BytesProducer),
            request_timeout,
            pools,
        )

    @property
    def server(self) -> str:
        """
        The etcd URL requests go to first: the last one that answered.
        """
        return self._gateway.server

    # -- reads ---------------------------------------------------------------

    def get(self, key: str) -> Deferred[tuple[KeyValue | None, int]]:
        reading = self._gateway.request(
            "POST", "/v3/kv/range", {"key": b64(key_bytes(key))}, idempotent=True
        )
        return reading.addCallback(_first_kv).addErrback(self._storage_error)

    def list(
        self, prefix: str, start: str | None = None, limit: int = 0, revision: int = 0
    ) -> Deferred[ListResult]:
        listing = Deferred.fromCoroutine(self._list(prefix, start, limit, revision))
        return listing.addErrback(self._storage_error)

    async def _list(
        self, prefix: str, start: str | None, limit: int, revision: int
    ) -> ListResult:
        first = key_bytes(prefix)
        if start is not None:
            first = max(first, key_bytes(start))
        body: JSON = {
            "key": b64(first),
            "range_end": b64(prefix_end(key_bytes(prefix))),
        }
        if limit > 0:
            body["limit"] = limit
        if revision > 0:
            body["revision"] = revision
        try:
            reply = await self._gateway.request(
                "POST", "/v3/kv/range", body, idempotent=True
            )
        except GatewayError as error:
            raise await self._revision_error(error, revision) from None
        return ListResult(
            kvs=[parse_kv(kv) for kv in reply.get("kvs", ())],
            revision=revision or header_revision(reply),
            more=bool(reply.get("more", False)),
            count=number(reply, "count"),
        )

    def prefix_state(self, prefix: str, revision: int) -> Deferred[PrefixState]:
        reading = Deferred.fromCoroutine(self._prefix_state(prefix, revision))
        return reading.addErrback(self._storage_error)

    async def _prefix_state(self, prefix: str, revision: int) -> PrefixState:
        # One key, the most recently modified, and the count of all: etcd
        # sorts the range's keys without sending them.
        body: JSON = {
            "key": b64(key_bytes(prefix)),
            "range_end": b64(prefix_end(key_bytes(prefix))),
            "revision": revision,
            "sort_order": "DESCEND",
            "sort_target": "MOD",
            "limit": 1,
            "keys_only": True,
        }
        try:
            reply = await self._gateway.request(
                "POST", "/v3/kv/range", body, idempotent=True
            )
        except GatewayError as error:
            raise await self._revision_error(error, revision) from None
        newest = reply.get("kvs") or ()
        last_modified = number(newest[0], "mod_revision") if newest else 0
        return PrefixState(number(reply, "count"), last_modified)

    def current_revision(self) -> Deferred[int]:
        body = {"key": self._probe_key, "count_only": True}
        reading = self._gateway.request("POST", "/v3/kv/range", body, idempotent=True)
        return reading.addCallback(header_revision).addErrback(self._storage_error)

    def check_health(self) -> Deferred[None]:
        checking = Deferred.fromCoroutine(self._check_health())
        return checking.addErrback(self._storage_error)

    async def _check_health(self) -> None:
        try:
            reply = await self._gateway.request("GET", "/health", idempotent=True)
        except GatewayError as error:
            reply = error.body
        if reply.get("health") != "true":
            raise Unavailable(f"etcd at {self._gateway.server} is not healthy: {reply}")

    # -- writes --------------------------------------------------------------

    def create(self, key: str, value: bytes) -> Deferred[int]:
        encoded = b64(key_bytes(key))
        txn = {
            "compare": [
                {
                    "target": "CREATE",
                    "key": encoded,
                    "result": "EQUAL",
                    "create_revision": 0,
                }
            ],
            "success": [{"request_put": {"key": encoded, "value": b64(value)}}],
        }

        def created(reply: JSON) -> int:
            if not reply.get("succeeded", False):
                raise KeyExists(key)
            return header_revision(reply)

        writing = self._gateway.request("POST", "/v3/kv/txn", txn)
        return writing.addCallback(created).addErrback(self._storage_error)

    def update(self, key: str, value: bytes, mod_revision: int) -> Deferred[int]:
        encoded = b64(key_bytes(key))
        put = {"request_put": {"key": encoded, "value": b64(value)}}
        return self._swap(key, mod_revision, put)

    def delete(self, key: str, mod_revision: int) -> Deferred[int]:
        encoded = b64(key_bytes(key))
        return self._swap(key, mod_revision, {"request_delete_range": {"key": encoded}})

    def _swap(self, key: str, mod_revision: int, operation: JSON) -> Deferred[int]:
        """
        Apply C{operation} if C{key}'s mod_revision is C{mod_revision}, else
        read the key to say why not.
        """
        encoded = b64(key_bytes(key))
        txn = {
            "compare": [
                {
                    "target": "MOD",
                    "key": encoded,
                    "result": "EQUAL",
                    "mod_revision": mod_revision,
                }
            ],
            "success": [operation],
            "failure": [{"request_range": {"key": encoded}}],
        }

        def swapped(reply: JSON) -> int:
            if reply.get("succeeded", False):
                return header_revision(reply)
            responses = reply.get("responses") or [{}]
            kvs = responses[0].get("response_range", {}).get("kvs")
            if not kvs:
                raise KeyNotFound(key)
            raise Conflict(key, parse_kv(kvs[0]))

        writing = self._gateway.request("POST", "/v3/kv/txn", txn)
        return writing.addCallback(swapped).addErrback(self._storage_error)

    def compact(self, revision: int) -> Deferred[None]:
        compacting = Deferred.fromCoroutine(self._compact(revision))
        return compacting.addErrback(self._storage_error)

    async def _compact(self, revision: int) -> None:
        try:
            await self._gateway.request(
                "POST", "/v3/kv/compaction", {"revision": revision}
            )
        except GatewayError as error:
            raise await self._revision_error(error, revision) from None
        self.saw_compaction(revision)

    def saw_compaction(self, revision: int) -> None:
        """
        Remember that etcd is compacted up to C{revision}.
        """
        self.compact_revision = max(self.compact_revision, revision)

    def _storage_error(self, failure: Failure) -> Failure:
        """
        Let storage errors (and cancellation) through; anything else means
        etcd answered something this client does not understand.
        """
        if failure.check(StorageError, CancelledError):
            return failure
        if failure.check(GatewayError):
            raise Unavailable(str(failure.value))
        raise Unavailable(
            f"unexpected answer from etcd at {self.server}: "
            f"{type(failure.value).__name__}: {failure.getErrorMessage()}"
        )

    async def _revision_error(self, error: GatewayError, requested: int) -> Exception:
        """
        The L{StorageError} for a gateway error about C{requested}.
        """
        if _COMPACTED in error.message:
            return Compacted(requested, self.compact_revision)
        if _FUTURE in error.message:
            return FutureRevision(requested, await self.current_revision())
        return Unavailable(str(error))

    # -- watches -------------------------------------------------------------

    def watch(self, prefix: str, from_revision: int, callback: WatchCallback) -> IWatch:
        # Forget the watches that are over, connections included; close()
        # waits for the others.
        self._watches = {watch for watch in self._watches if not watch.closed}
        watch = _EtcdWatch(
            self, self._gateway, self._clock, prefix, from_revision, callback
        )
        self._watches.add(watch)
        watch.connect()
        return watch

    def close(self) -> Deferred[None]:
        """
        Stop every watch, wait for their streams to close, then close the
        pooled connections.
        """
        closing = [watch.stop_and_wait() for watch in list(self._watches)]
        waiting = gatherResults(closing)
        return waiting.addCallback(lambda _: self._gateway.close())


def _connections(
    reactor: Any,
    servers: Sequence[str],
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
) -> tuple[KeepAlivePool, Agent, list[HTTPConnectionPool]]:
    """
    The kept-alive connections for unary calls, the agent for watch streams
    (a connection each, never reused) and its pool.
    """
    stream_pool = HTTPConnectionPool(reactor, persistent=False)
    policy = None
    options: dict[str, Any] = {}
    if any(server.startswith("https:") for server in servers):
        policy = tls_policy(ca_file, cert_file, key_file)
        options["contextFactory"] = policy
    return (
        KeepAlivePool(reactor, policy, max_idle=MAX_IDLE_PER_SERVER),
        Agent(reactor, pool=stream_pool, **options),
        [stream_pool],
    )


def _first_kv(reply: JSON) -> tuple[KeyValue | None, int]:
    kvs = reply.get("kvs")
    return (parse_kv(kvs[0]) if kvs else None), header_revision(reply)


@implementer(IWatch)
class _EtcdWatch:
    """
    One gateway watch stream on a prefix, resumed after failures.

    @ivar done: see L{IWatch.done}.
    """

    def __init__(
        self,
        storage: EtcdStorage,
        gateway: Gateway,
        clock: IReactorTime,
        prefix: str,
        from_revision: int,
        callback: WatchCallback,
    ) -> None:
        self.done: Deferred[None] = Deferred()
        self._storage = storage
        self._gateway = gateway
        self._clock = clock
        self._prefix = prefix
        self._callback = callback
        # The last revision delivered (events up to it are done); 0 while a
        # watch "from now" has not been created yet.
        self._last = max(from_revision - 1, 0)
        self._from_now = from_revision <= 0
        self._attempts = 0
        self._finished = False
        self._opening: Deferred[tuple[str, IResponse]] | None = None
        self._retry: IDelayedCall | None = None
        self._stream: JSONLines | None = None
        self._stream_lost: Deferred[None] | None = None
        self._server = gateway.server
        self._heard = 0.0
        self._keepalive: IDelayedCall | None = None
        self._probing: Deferred[None] | None = None

    # -- life cycle -------------------------------------------------------

    def connect(self) -> None:
        """
        Open the gateway stream from the revision after the last delivered.
        """
        self._retry = None
        prefix = key_bytes(self._prefix)
        request: JSON = {
            "key": b64(prefix),
            "range_end": b64(prefix_end(prefix)),
            "prev_kv": True,
            "progress_notify": True,
        }
        if not self._from_now:
            request["start_revision"] = self._last + 1
        self._opening = self._gateway.open_stream(
            "/v3/watch", {"create_request": request}
        )
        self._opening.addCallbacks(self._opened, self._reconnect)

    def _opened(self, answer: tuple[str, IResponse]) -> None:
        self._opening = None
        server, response = answer
        self._server = server
        stream = JSONLines(self._message, self._stream_ended)
        self._stream = stream
        self._stream_lost = Deferred()
        response.deliverBody(stream)
        if response.code != 200 or self._finished:
            stream.abort()
            return
        self._heard = self._clock.seconds()
        self._schedule_keepalive(WATCH_KEEPALIVE_INTERVAL)

    def _schedule_keepalive(self, delay: float) -> None:
        self._keepalive = self._clock.callLater(delay, self._check_alive)

    def _cancel_keepalive(self) -> None:
        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None and keepalive.active():
            keepalive.cancel()
        probing, self._probing = self._probing, None
        if probing is not None:
            probing.cancel()

    def _check_alive(self) -> None:
        """
        If the stream has been quiet for L{WATCH_KEEPALIVE_INTERVAL}, ask
        its server's C{/health}; drop the stream (it resumes elsewhere)
        unless the server answers healthy in time.
        """
        self._keepalive = None
        stream = self._stream
        if stream is None or self._finished:
            return
        quiet = self._clock.seconds() - self._heard
        if quiet < WATCH_KEEPALIVE_INTERVAL:
            self._schedule_keepalive(WATCH_KEEPALIVE_INTERVAL - quiet)
            return
        server = self._server

        def answered(reply: JSON) -> None:
            if reply.get("health") != "true":
                raise Unavailable(f"etcd at {server} is not healthy: {reply}")
            if self._stream is stream:
                self._heard = self._clock.seconds()
                self._schedule_keepalive(WATCH_KEEPALIVE_INTERVAL)

        def silent(failure: Failure) -> None:
            if failure.check(CancelledError):
                return  # the stream ended first
            self._gateway.avoid(server)
            if self._stream is stream:
                stream.abort()

        def done(_: None) -> None:
            self._probing = None

        probing = self._gateway.health(server).addCallback(answered)
        self._probing = probing.addErrback(silent)
        self._probing.addCallback(done)

    def _stream_ended(self, reason: Failure) -> None:
        self._cancel_keepalive()
        self._stream = None
        lost, self._stream_lost = self._stream_lost, None
        if lost is not None:
            lost.callback(None)
        self._reconnect(reason)

    def _reconnect(self, reason: Failure) -> None:
        """
        Try again later (backing off), unless the watch has finished.
        """
        self._opening = None
        if self._finished:
            return
        delay = min(BACKOFF_INITIAL * 2**self._attempts, BACKOFF_MAX)
        self._attempts += 1
        self._retry = self._clock.callLater(delay, self.connect)

    @property
    def closed(self) -> bool:
        """
        Whether the watch is over and holds no connection any more.
        """
        return self._finished and self._stream is None and self._opening is None

    def stop(self) -> None:
        self._finish(None)

    def stop_and_wait(self) -> Deferred[None]:
        """
        Stop, and fire once the stream's connection has closed.
        """
        self.stop()
        lost = self._stream_lost
        return succeed(None) if lost is None else lost

    def _finish(self, error: StorageError | Failure | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._cancel_keepalive()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._opening is not None:
            opening, self._opening = self._opening, None
            opening.addErrback(lambda _: None)
            opening.cancel()
        if self._stream is not None:
            self._stream.abort()
        if error is None:
            self.done.callback(None)
        else:
            self.done.errback(error)

    # -- messages ---------------------------------------------------------

    def _message(self, message: JSON) -> None:
        self._heard = self._clock.seconds()
        result = message.get("result")
        if not isinstance(result, dict):
            # A gateway error on the stream: drop it and resume.
            if self._stream is not None:
                self._stream.abort()
            return
        if result.get("canceled", False):
            self._canceled(result)
            return
        if result.get("created", False):
            self._attempts = 0
            if self._from_now:
                self._from_now = False
                self._last = header_revision(result)
            return
        self._deliver(result)

    def _canceled(self, result: JSON) -> None:
        compacted_at = number(result, "compact_revision")
        if compacted_at:
            self._storage.saw_compaction(compacted_at)
            self._finish(Compacted(self._last + 1, compacted_at))
            return
        reason = result.get("cancel_reason", "no reason given")
        self._finish(
            Unavailable(f"etcd at {self._server} cancelled the watch: {reason}")
        )

    def _deliver(self, result: JSON) -> None:
        """
        Pass on the new events of one message, or a progress notification.
        """
        try:
            events = [parse_event(event) for event in result.get("events", ())]
            revision = header_revision(result)
        except (KeyError, TypeError, ValueError) as error:
            self._finish(
                Unavailable(f"etcd at {self._server} sent a bad watch event: {error}")
            )
            return
        fresh = [event for event in events if event.kv.mod_revision > self._last]
        if fresh:
            self._last = fresh[-1].kv.mod_revision
            self._call(fresh, self._last)
        elif not events and revision >= self._last:
            self._last = revision
            self._call([], revision)

    def _call(self, events: list[Event], revision: int) -> None:
        try:
            self._callback(events, revision)
        except Exception:  # noqa: BLE001 - a failing callback ends the watch
            self._finish(Failure())
