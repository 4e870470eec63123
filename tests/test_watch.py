"""
The watch verb in memory: the real Site, filters, routes, watch handler and
watch cache over the in-memory storage.

Writes go through C{StubTreq}; watches are read from a real C{HTTPChannel}
on a C{StringTransport}, served by a Site whose reactor is the test's
clock, so timers (bookmarks, keep-alives, lifetimes, the 3 s wait) are
driven by C{clock.advance} and backpressure is driven the way a transport
drives it (C{transport.producer.pauseProducing()}).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel, Request
from twisted.web.iweb import IRequest

from wardled.api import watch as watch_handler
from wardled.api.negotiate import DEFAULT_OUTPUT
from wardled.api.scope import Scope
from wardled.api.watchstream import HEARTBEAT, EventEncoder, StreamSettings, WatchStream
from wardled.auth.user import authenticated
from wardled.cache.cacher import Cacher
from wardled.cache.interfaces import ENCODE_COUNTER, FellBehind
from wardled.cache.multiplexer import CATCH_UP_DELAY
from wardled.registry import flunder
from wardled.registry.store import Store
from wardled.server import QuietSite, build_api
from wardled.storage.memory import MemoryStorage

BASE = "https://127.0.0.1:8443"
PREFIX = "/registry/wardle.example.com"
GROUP = "/apis/wardle.example.com"
V1A = f"{GROUP}/v1alpha1"
V1B = f"{GROUP}/v1beta1"
FLUNDERS = f"{V1B}/namespaces/default/flunders"
FLUNDERS_A = f"{V1A}/namespaces/default/flunders"
FISCHERS = f"{V1A}/fischers"
ADMIN = authenticated("development", ("system:masters",))
TABLE_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)
INITIAL_EVENTS = "sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
ANNOTATION = "k8s.io/initial-events-end"
BLUEPRINT = "k8s.io/initial-events-list-blueprint"

Object = dict[str, Any]


def dechunk(data: bytes) -> tuple[bytes, list[bytes], bool]:
    """
    A chunked body: the payload, the chunks and whether the last chunk
    came.
    """
    chunks: list[bytes] = []
    position = 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return b"".join(chunks), chunks, False
        size = int(data[position:line_end], 16)
        if size == 0:
            return b"".join(chunks), chunks, True
        start = line_end + 2
        if len(data) < start + size + 2:
            return b"".join(chunks), chunks, False
        chunks.append(data[start : start + size])
        position = start + size + 2


class RawResponse:
    """
    One HTTP/1.1 exchange on a real server channel over a StringTransport.
    """

    def __init__(self, site: QuietSite, path: str, headers: dict[str, str]) -> None:
        self.transport = StringTransport()
        self.protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50123))
        assert self.protocol is not None
        self.protocol.makeConnection(self.transport)
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.protocol.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _parts(self) -> tuple[int, dict[str, str], bytes]:
        head, separator, rest = self.transport.value().partition(b"\r\n\r\n")
        if not separator:
            return 0, {}, b""
        status, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status.split()[1]), headers, rest

    @property
    def code(self) -> int:
        return self._parts()[0]

    def header(self, name: str) -> str | None:
        return self._parts()[1].get(name.lower())

    @property
    def body(self) -> bytes:
        _, headers, rest = self._parts()
        if "content-length" in headers:  # a whole (error) response, not a stream
            return rest[: int(headers["content-length"])]
        return dechunk(rest)[0]

    @property
    def chunks(self) -> list[bytes]:
        return dechunk(self._parts()[2])[1]

    @property
    def ended(self) -> bool:
        return dechunk(self._parts()[2])[2]

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[Object]:
        return [json.loads(line) for line in self.body.split(b"\n") if line.strip()]

    def summary(self) -> list[tuple[str, str, str]]:
        """
        (type, name, resourceVersion) of every event so far.
        """
        return [
            (
                event["type"],
                event["object"].get("metadata", {}).get("name", ""),
                event["object"].get("metadata", {}).get("resourceVersion", ""),
            )
            for event in self.events()
        ]

    def pause(self) -> None:
        """
        What a transport does when its buffer is full: pause its producer
        (the HTTP channel).
        """
        producer = self.transport.producer
        assert producer is not None
        producer.pauseProducing()

    def resume(self) -> None:
        producer = self.transport.producer
        assert producer is not None
        producer.resumeProducing()

    def disconnect(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone("client went away")))


class WatchTestCase(SynchronousTestCase):
    """
    A server over memory storage; C{self.site} serves watches on the test
    clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_780_000_000)
        self.serve(MemoryStorage())

    def serve(self, storage: MemoryStorage) -> None:
        """
        Serve C{storage} (what L{make_root} does, keeping the multiplexer
        at hand).
        """
        self.storage = storage
        server = build_api(storage, PREFIX, self.clock, lambda request: ADMIN)
        assert server.multiplexer is not None
        multiplexer = server.multiplexer
        multiplexer.startService()
        self.addCleanup(multiplexer.stopService)
        self.cachers = {c.resource_prefix.rstrip("/").rsplit("/", 1)[-1]: c for c in multiplexer.cachers}
        self.site = QuietSite(server.resource, reactor=self.clock)
        self.stub = StubTreq(server.resource)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        response = self.successResultOf(
            self.stub.request(  # type: ignore[attr-defined]
                method,
                BASE + path,
                data=data,
                headers={"Content-Type": ["application/json"], "Accept": ["application/json"]},
            )
        )
        content = self.successResultOf(self.stub.content(response))  # type: ignore[attr-defined]
        return response.code, json.loads(content) if content else None

    def create(self, name: str, path: str = FLUNDERS, **labels: str) -> Object:
        code, body = self.call("POST", path, {"metadata": {"name": name, "labels": labels}})
        self.assertEqual(code, 201, body)
        return dict(body)

    def relabel(self, obj: Object, path: str = FLUNDERS, **labels: str) -> Object:
        changed = dict(obj, metadata=dict(obj["metadata"], labels=labels))
        code, body = self.call("PUT", f"{path}/{obj['metadata']['name']}", changed)
        self.assertEqual(code, 200, body)
        return dict(body)

    def delete(self, name: str, path: str = FLUNDERS) -> None:
        code, body = self.call("DELETE", f"{path}/{name}")
        self.assertEqual(code, 200, body)

    def watch(self, path: str, accept: str = "application/json") -> RawResponse:
        """
        Open a watch of C{path} (adding C{watch=true} unless it is a
        C{/watch/} path).
        """
        if "/watch/" not in path and "watch=" not in path:
            separator = "&" if "?" in path else "?"
            path = f"{path}{separator}watch=true"
        return RawResponse(self.site, path, {"Accept": accept})

    def cacher(self, plural: str = "flunders") -> Cacher:
        return self.cachers[plural]

    def watch_with(
        self, settings: watch_handler.WatchSettings, query: str, namespace: str = "default"
    ) -> RawResponse:
        """
        A watch of the flunders of C{namespace} (all for C{""}) served by
        the handler with C{settings} (a one-route app over the same cache).
        """
        cacher = self.cacher()
        store = Store(flunder.STRATEGY, self.storage, PREFIX, self.clock.seconds, cacher=cacher)
        app = Klein()

        @app.route("/w")
        async def route(request: IRequest) -> bytes:
            scope = Scope(store.resource, "v1beta1", store, namespace, "", ADMIN, cacher)
            return await watch_handler.watch(scope, request, settings)

        site = QuietSite(app.resource(), reactor=self.clock)
        return RawResponse(site, f"/w?{query}", {})


class StreamFramingTests(WatchTestCase):
    def test_events_in_order_with_their_revisions(self) -> None:
        """
        A watch from an RV gets every later event once, in order, each a
        full object with kind and apiVersion; DELETED carries the last state
        with the delete's RV.
        """
        first = self.create("a")
        stream = self.watch(f"{FLUNDERS}?resourceVersion={first['metadata']['resourceVersion']}")
        self.assertEqual(stream.code, 200)
        self.assertEqual(stream.header("content-type"), "application/json")
        self.assertEqual(stream.header("transfer-encoding"), "chunked")
        self.assertEqual(stream.events(), [])
        second = self.create("b")
        changed = self.relabel(second, x="y")
        self.delete("a")
        summary = stream.summary()
        self.assertEqual([(t, n) for t, n, _ in summary], [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")])
        revisions = [int(rv) for _, _, rv in summary]
        self.assertEqual(revisions[:2], [int(second["metadata"]["resourceVersion"]), int(changed["metadata"]["resourceVersion"])])
        self.assertGreater(revisions[2], revisions[1])
        deleted = stream.events()[2]["object"]
        self.assertEqual(deleted["kind"], "Flunder")
        self.assertEqual(deleted["apiVersion"], "wardle.example.com/v1beta1")
        self.assertEqual(deleted["metadata"]["uid"], first["metadata"]["uid"])
        self.assertFalse(stream.ended)

    def test_each_event_is_one_line(self) -> None:
        """
        Events are newline-terminated compact JSON, one per line.
        """
        stream = self.watch(f"{FLUNDERS}?resourceVersion=1")
        self.create("a")
        self.create("b")
        lines = stream.body.split(b"\n")
        self.assertEqual(lines[-1], b"")
        self.assertEqual(len(lines), 3)
        self.assertTrue(all(line.startswith(b'{"type":') for line in lines[:2]))

    def test_version_of_the_request(self) -> None:
        """
        A v1alpha1 watch shows v1alpha1 objects, converted.
        """
        self.call(
            "POST",
            FLUNDERS,
            {"metadata": {"name": "a"}, "spec": {"flunderReference": "x", "referenceType": "Flunder"}},
        )
        stream = self.watch(FLUNDERS_A)
        [event] = stream.events()
        self.assertEqual(event["object"]["apiVersion"], "wardle.example.com/v1alpha1")
        self.assertEqual(event["object"]["spec"], {"reference": "x", "referenceType": "Flunder"})

    def test_resume_from_a_revision(self) -> None:
        """
        Watching again from an event's RV replays what came after it, none
        twice.
        """
        start = self.create("a")["metadata"]["resourceVersion"]
        b = self.create("b")
        self.relabel(b, x="1")
        self.delete("a")
        resumed = self.watch(f"{FLUNDERS}?resourceVersion={b['metadata']['resourceVersion']}")
        self.assertEqual([(t, n) for t, n, _ in resumed.summary()], [("MODIFIED", "b"), ("DELETED", "a")])
        everything = self.watch(f"{FLUNDERS}?resourceVersion={start}")
        self.assertEqual(len(everything.events()), 3)

    def test_namespace_scoped(self) -> None:
        """
        A namespaced watch sees only its namespace.
        """
        stream = self.watch(f"{FLUNDERS}?resourceVersion=1")
        self.create("elsewhere", f"{V1B}/namespaces/other/flunders")
        self.create("here")
        self.assertEqual([n for _, n, _ in stream.summary()], ["here"])

    def test_all_namespaces(self) -> None:
        """
        A namespaced resource watched without a namespace (the
        cross-namespace path) sees every namespace.
        """
        stream = self.watch_with(watch_handler.DEFAULT_SETTINGS, "resourceVersion=1", namespace="")
        self.create("elsewhere", f"{V1B}/namespaces/other/flunders")
        self.create("here")
        self.assertEqual([n for _, n, _ in stream.summary()], ["elsewhere", "here"])

    def test_cluster_scoped_resource(self) -> None:
        """
        Fischers stream as Fischers.
        """
        stream = self.watch(f"{FISCHERS}?resourceVersion=1")
        self.call("POST", FISCHERS, {"metadata": {"name": "f"}, "disallowedFlunders": ["x"]})
        [event] = stream.events()
        self.assertEqual((event["type"], event["object"]["kind"]), ("ADDED", "Fischer"))
        self.assertEqual(event["object"]["disallowedFlunders"], ["x"])


class InitialEventsTests(WatchTestCase):
    def test_unset_resource_version_starts_with_the_state(self) -> None:
        """
        Without a resourceVersion (or with "0"), the current objects come as
        ADDED first, then live events; no bookmark marks the end unless
        sendInitialEvents was sent.
        """
        self.create("a")
        self.create("b")
        for query in ("", "resourceVersion=0&", "allowWatchBookmarks=true&"):
            stream = self.watch(f"{FLUNDERS}?{query}watch=true")
            self.assertEqual([(t, n) for t, n, _ in stream.summary()], [("ADDED", "a"), ("ADDED", "b")], query)
        self.create("c")
        self.assertEqual([n for _, n, _ in stream.summary()], ["a", "b", "c"])

    def test_initial_events_end_bookmark(self) -> None:
        """
        sendInitialEvents=true with bookmarks: the state, then a BOOKMARK at
        its revision annotated initial-events-end, in the kind's shape, with
        the empty list blueprint; then live events.
        """
        self.create("a")
        last = self.create("b")["metadata"]["resourceVersion"]
        stream = self.watch(f"{FLUNDERS_A}?{INITIAL_EVENTS}&allowWatchBookmarks=true")
        types = [t for t, _, _ in stream.summary()]
        self.assertEqual(types, ["ADDED", "ADDED", "BOOKMARK"])
        bookmark = stream.events()[2]["object"]
        annotations = bookmark["metadata"].pop("annotations")
        self.assertEqual(
            bookmark,
            {
                "kind": "Flunder",
                "apiVersion": "wardle.example.com/v1alpha1",
                "metadata": {"resourceVersion": last},
                "spec": {},
                "status": {},
            },
        )
        self.assertEqual(annotations[ANNOTATION], "true")
        blueprint = json.loads(base64.b64decode(annotations[BLUEPRINT]))
        self.assertEqual(
            blueprint,
            {"kind": "FlunderList", "apiVersion": "wardle.example.com/v1alpha1", "metadata": {}, "items": None},
        )
        self.create("c")
        self.assertEqual(stream.summary()[-1][:2], ("ADDED", "c"))

    def test_initial_events_end_of_nothing(self) -> None:
        """
        With no objects, the bookmark comes at once; a Fischer bookmark has
        a Fischer's shape.
        """
        stream = self.watch(f"{FISCHERS}?{INITIAL_EVENTS}&allowWatchBookmarks=true")
        [event] = stream.events()
        self.assertEqual(event["type"], "BOOKMARK")
        obj = event["object"]
        self.assertEqual(set(obj), {"kind", "apiVersion", "metadata"})
        self.assertEqual(obj["kind"], "Fischer")
        self.assertEqual(obj["metadata"]["annotations"][ANNOTATION], "true")

    def test_send_initial_events_without_bookmarks(self) -> None:
        """
        Without allowWatchBookmarks no bookmark is sent (the reference's
        isListWatchRequest needs both).
        """
        self.create("a")
        stream = self.watch(f"{FLUNDERS}?{INITIAL_EVENTS}")
        self.assertEqual([t for t, _, _ in stream.summary()], ["ADDED"])

    def test_send_initial_events_false(self) -> None:
        """
        sendInitialEvents=false starts at the current revision.
        """
        self.create("a")
        stream = self.watch(f"{FLUNDERS}?sendInitialEvents=false&resourceVersionMatch=NotOlderThan")
        self.assertEqual(stream.events(), [])
        self.create("b")
        self.assertEqual([n for _, n, _ in stream.summary()], ["b"])

    def test_initial_events_from_a_revision(self) -> None:
        """
        sendInitialEvents=true with an RV: the current state (not the
        history), then the bookmark at the state's revision.
        """
        first = self.create("a")["metadata"]["resourceVersion"]
        last = self.create("b")["metadata"]["resourceVersion"]
        stream = self.watch(
            f"{FLUNDERS}?{INITIAL_EVENTS}&allowWatchBookmarks=true&resourceVersion={first}"
        )
        self.assertEqual(
            [(t, n, rv) for t, n, rv in stream.summary()],
            [("ADDED", "a", first), ("ADDED", "b", last), ("BOOKMARK", "", last)],
        )

    def test_large_initial_state_goes_out_in_batches(self) -> None:
        """
        More initial events than a batch: one write per batch, the rest on
        later reactor turns, the bookmark right after the last.
        """
        for index in range(5):
            self.create(f"f{index}")
        stream = self.watch_with(
            watch_handler.WatchSettings(batch_size=2), f"{INITIAL_EVENTS}&allowWatchBookmarks=true"
        )
        self.assertEqual(len(stream.events()), 2)
        self.clock.advance(0)
        self.assertEqual([t for t, _, _ in stream.summary()], ["ADDED"] * 5 + ["BOOKMARK"])
        self.assertEqual(len(stream.chunks), 3)
        self.assertEqual([c.count(b"\n") for c in stream.chunks], [2, 2, 2])


class ErrorTests(WatchTestCase):
    def test_too_old_is_a_410_event(self) -> None:
        """
        An RV older than the cache's history: HTTP 200, then one ERROR event
        carrying the 410 Expired Status, then the end.
        """
        storage = MemoryStorage()
        for index in range(3):
            self.successResultOf(storage.create(f"{PREFIX}/other/{index}", b"x"))
        self.serve(storage)
        stream = self.watch(f"{FLUNDERS}?resourceVersion=2")
        self.assertEqual(stream.code, 200)
        self.assertEqual(
            stream.events(),
            [
                {
                    "type": "ERROR",
                    "object": {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": "too old resource version: 2 (4)",
                        "reason": "Expired",
                        "code": 410,
                    },
                }
            ],
        )
        self.assertTrue(stream.ended)
        self.assertEqual(self.cacher().watcher_count, 0)

    def test_history_lost_during_a_watch(self) -> None:
        """
        When the cache loses its history (compaction, rebuild), running
        watches get the 410 ERROR event and end.
        """
        stream = self.watch(f"{FLUNDERS}?resourceVersion=1")
        self.create("a")
        self.cacher().expire(7)
        [_, error] = stream.events()
        self.assertEqual(error["type"], "ERROR")
        self.assertEqual(error["object"]["code"], 410)
        self.assertEqual(error["object"]["message"], "too old resource version: 2 (7)")
        self.assertTrue(stream.ended)

    def test_not_ready_is_429(self) -> None:
        """
        A cache that is not ready (rebuilding) refuses watches with 429.
        """
        self.cacher().expire(1)
        stream = self.watch(FLUNDERS)
        self.assertEqual(stream.code, 429)
        self.assertEqual(stream.header("retry-after"), "1")
        self.assertEqual(stream.json()["message"], "storage is (re)initializing")

    def test_too_large_waits_then_504(self) -> None:
        """
        An RV the cache has not reached: nothing for 3 s, then a 504 Status
        (no stream was started).
        """
        current = int(self.create("a")["metadata"]["resourceVersion"])
        stream = self.watch(f"{FLUNDERS}?resourceVersion={current + 10}")
        self.clock.advance(2.9)
        self.assertEqual(stream.transport.value(), b"")
        self.clock.advance(0.1)
        self.assertEqual(stream.code, 504)
        body = stream.json()
        self.assertEqual(body["reason"], "Timeout")
        self.assertEqual(
            body["message"],
            f"Timeout: Too large resource version: {current + 10}, current: {current}",
        )
        self.assertEqual(body["details"], {"retryAfterSeconds": 1})
        self.assertEqual(self.cacher().watcher_count, 0)

    def test_revision_reached_in_time(self) -> None:
        """
        An RV reached within 3 s starts the stream after it.
        """
        current = int(self.create("a")["metadata"]["resourceVersion"])
        stream = self.watch(f"{FLUNDERS}?resourceVersion={current + 1}")
        self.clock.advance(1)
        self.create("b")
        self.assertEqual(stream.code, 200)
        self.assertEqual(stream.events(), [])
        self.create("c")
        self.assertEqual([n for _, n, _ in stream.summary()], ["c"])

    def test_writes_elsewhere(self) -> None:
        """
        Writes outside the group raise the storage's revision without an
        event for the cache; the cache catches up once the check that
        nothing under the group's prefix changed is made (after
        L{CATCH_UP_DELAY}, well before the consistent read's deadline), so
        even a WatchList request starts.
        """
        self.create("a")
        self.successResultOf(self.storage.create("/elsewhere/x", b"x"))
        strict = self.watch(f"{FLUNDERS}?{INITIAL_EVENTS}&allowWatchBookmarks=true")
        self.assertEqual(strict.code, 0)
        self.clock.advance(CATCH_UP_DELAY)
        self.assertEqual(strict.code, 200)
        self.assertEqual(
            [(kind, name) for kind, name, _ in strict.summary()],
            [("ADDED", "a"), ("BOOKMARK", "")],
        )

    def test_lagging_cache(self) -> None:
        """
        When the cache lags behind storage and cannot catch up (here the
        group's prefix holds a key no cached resource owns, so the check
        that nothing changed cannot succeed; no progress notification yet),
        a legacy watch starts from the cache's state after the consistent
        read's wait; a WatchList request (explicit sendInitialEvents) gets
        the 504 instead.
        """
        self.create("a")
        unowned = f"{PREFIX}/wardle.example.com/others/x"
        self.successResultOf(self.storage.create(unowned, b"x"))
        self.successResultOf(self.storage.create("/elsewhere/x", b"x"))
        legacy = self.watch(FLUNDERS)
        strict = self.watch(f"{FLUNDERS}?{INITIAL_EVENTS}&allowWatchBookmarks=true")
        self.assertEqual((legacy.code, strict.code), (0, 0))
        self.clock.advance(1)
        self.assertEqual(legacy.code, 200)
        self.assertEqual([n for _, n, _ in legacy.summary()], ["a"])
        self.assertEqual(strict.code, 504)
        self.assertIn("Too large resource version", strict.json()["message"])

    def test_invalid_options(self) -> None:
        """
        validateWatchOptions' combinations are 422 ListOptions errors.
        """
        cases = {
            "sendInitialEvents=true": (
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
                "resourceVersionMatch to NotOlderThan"
            ),
            "resourceVersionMatch=NotOlderThan": (
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for "
                "watch unless sendInitialEvents is provided"
            ),
            "sendInitialEvents=true&resourceVersionMatch=Exact": (
                "[resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
                "resourceVersionMatch to NotOlderThan, resourceVersionMatch: Unsupported "
                'value: "Exact": supported values: "NotOlderThan"]'
            ),
            f"{INITIAL_EVENTS}&continue=abc": (
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when "
                "continue is provided"
            ),
        }
        for query, message in cases.items():
            stream = self.watch(f"{FLUNDERS}?{query}")
            self.assertEqual(stream.code, 422, query)
            body = stream.json()
            self.assertEqual(body["message"], f'ListOptions.meta.k8s.io "" is invalid: {message}')
            self.assertEqual(body["details"]["kind"], "ListOptions")

    def test_bad_parameters(self) -> None:
        """
        Unparseable values are 400s.
        """
        cases = {
            "timeoutSeconds=soon": 'strconv.ParseInt: parsing "soon": invalid syntax',
            "resourceVersion=abc": 'invalid resource version "abc"',
            "labelSelector=a%20in": "",
            "fieldSelector=spec.x%3D1": '"spec.x" is not a known field selector',
        }
        for query, message in cases.items():
            stream = self.watch(f"{FLUNDERS}?{query}")
            self.assertEqual(stream.code, 400, query)
            self.assertIn(message, stream.json()["message"])

    def test_yaml_is_not_acceptable(self) -> None:
        """
        Watches stream JSON only.
        """
        stream = self.watch(FLUNDERS, accept="application/yaml")
        self.assertEqual(stream.code, 406)
        self.assertIn(b"application/json;stream=watch", stream.body)


class SelectorTests(WatchTestCase):
    def test_label_selector_transitions(self) -> None:
        """
        An object that starts matching is ADDED, one that stops is DELETED;
        events of objects that never match are not sent.
        """
        a = self.create("a")
        self.create("other", app="y")
        stream = self.watch(f"{FLUNDERS}?labelSelector=app%3Dx")
        self.assertEqual(stream.events(), [])
        a = self.relabel(a, app="x")
        a = self.relabel(a, app="x", tier="1")
        self.relabel(a, app="z")
        self.delete("a")
        self.create("b", app="x")
        self.delete("b")
        self.assertEqual(
            [(t, n) for t, n, _ in stream.summary()],
            [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a"), ("ADDED", "b"), ("DELETED", "b")],
        )
        stopped = stream.events()[2]["object"]
        self.assertEqual(stopped["metadata"]["labels"], {"app": "z"})

    def test_field_selector(self) -> None:
        """
        metadata.name and metadata.namespace select objects.
        """
        stream = self.watch(f"{FLUNDERS}?fieldSelector=metadata.name%3Db&resourceVersion=1")
        negated = self.watch(f"{FLUNDERS}?fieldSelector=metadata.name!%3Db&resourceVersion=1")
        self.create("a")
        self.create("b")
        self.assertEqual([n for _, n, _ in stream.summary()], ["b"])
        self.assertEqual([n for _, n, _ in negated.summary()], ["a"])

    def test_item_watch(self) -> None:
        """
        Watching an item path sees that object only; a selector naming
        another object is a 400, one naming the same object is fine.
        """
        self.create("a")
        item = self.watch(f"{FLUNDERS}/b?resourceVersion=1")
        same = self.watch(f"{FLUNDERS}/b?resourceVersion=1&fieldSelector=metadata.name%3Db")
        conflicting = self.watch(f"{FLUNDERS}/b?fieldSelector=metadata.name%3Da")
        self.assertEqual(conflicting.code, 400)
        self.assertEqual(
            conflicting.json()["message"], "fieldSelector metadata.name doesn't match requested name"
        )
        other_field = self.watch(f"{FLUNDERS}/b?fieldSelector=metadata.namespace%3Ddefault")
        self.assertEqual(other_field.code, 400)
        invalid_too = self.watch(f"{FLUNDERS}/b?fieldSelector=metadata.name%3Da&sendInitialEvents=true")
        self.assertEqual(invalid_too.code, 422)
        b = self.create("b")
        self.relabel(b, x="1")
        self.create("c")
        self.assertEqual([(t, n) for t, n, _ in item.summary()], [("ADDED", "b"), ("MODIFIED", "b")])
        self.assertEqual(same.summary(), item.summary())

    def test_legacy_watch_paths(self) -> None:
        """
        The deprecated /watch/ paths watch collections and items.
        """
        collection = self.watch(f"{V1B}/watch/namespaces/default/flunders?resourceVersion=1")
        item = self.watch(f"{V1B}/watch/namespaces/default/flunders/b?resourceVersion=1")
        fischers = self.watch(f"{V1A}/watch/fischers?resourceVersion=1")
        self.create("a")
        self.create("b")
        self.call("POST", FISCHERS, {"metadata": {"name": "f"}})
        self.assertEqual(collection.code, 200)
        self.assertEqual([n for _, n, _ in collection.summary()], ["a", "b"])
        self.assertEqual([n for _, n, _ in item.summary()], ["b"])
        self.assertEqual([n for _, n, _ in fischers.summary()], ["f"])


class TimerTests(WatchTestCase):
    def test_periodic_bookmarks(self) -> None:
        """
        allowWatchBookmarks=true: a BOOKMARK every 30 s at the watcher's
        revision, in the kind's shape.
        """
        stream = self.watch(f"{FLUNDERS}?resourceVersion=1&allowWatchBookmarks=true")
        self.clock.advance(29)
        self.assertEqual(stream.events(), [])
        self.clock.advance(1)
        [bookmark] = stream.events()
        self.assertEqual(
            bookmark,
            {
                "type": "BOOKMARK",
                "object": {
                    "kind": "Flunder",
                    "apiVersion": "wardle.example.com/v1beta1",
                    "metadata": {"resourceVersion": str(self.cacher().revision)},
                    "spec": {},
                    "status": {},
                },
            },
        )
        created = self.create("a")["metadata"]["resourceVersion"]
        self.clock.advance(30)
        self.assertEqual(stream.summary()[-2:], [("ADDED", "a", created), ("BOOKMARK", "", created)])

    def test_no_bookmark_while_paused(self) -> None:
        """
        A paused stream writes nothing, not even bookmarks.
        """
        stream = self.watch(f"{FLUNDERS}?resourceVersion=1&allowWatchBookmarks=true")
        stream.pause()
        self.clock.advance(59)
        self.assertEqual(stream.body, b"")
        stream.resume()
        self.clock.advance(30)
        self.assertEqual([t for t, _, _ in stream.summary()], ["BOOKMARK"])

    def test_heartbeat_when_quiet(self) -> None:
        """
        Without bookmarks, a space goes out after 30 s without a write, so
        HTTP/2 connections never sit idle for 60 s; it never breaks the
        line-per-event framing.
        """
        stream = self.watch(f"{FLUNDERS}?resourceVersion=1")
        self.clock.advance(29.9)
        self.assertEqual(stream.body, b"")
        self.clock.advance(0.1)
        self.assertEqual(stream.body, HEARTBEAT)
        self.clock.advance(10)
        self.create("a")
        after_event = stream.body
        self.clock.advance(29.9)
        self.assertEqual(stream.body, after_event)
        self.clock.advance(0.1)
        self.assertEqual(stream.body, after_event + HEARTBEAT)
        self.assertEqual([n for _, n, _ in stream.summary()], ["a"])
        for line in stream.body.split(b"\n"):
            if line.strip():
                json.loads(line)

    def test_timeout_seconds_ends_the_stream(self) -> None:
        """
        timeoutSeconds ends the stream cleanly and unsubscribes the watcher.
        """
        stream = self.watch(f"{FLUNDERS}?timeoutSeconds=5")
        self.assertEqual(self.cacher().watcher_count, 1)
        self.clock.advance(4.9)
        self.assertFalse(stream.ended)
        self.clock.advance(0.1)
        self.assertTrue(stream.ended)
        self.assertEqual(self.cacher().watcher_count, 0)
        self.assertFalse(stream.transport.disconnecting)

    def test_final_bookmark_before_the_end(self) -> None:
        """
        With bookmarks, the stream's last event is a BOOKMARK at the latest
        revision, so the client resumes from there.
        """
        stream = self.watch(f"{FLUNDERS}?timeoutSeconds=5&allowWatchBookmarks=true&resourceVersion=1")
        created = self.create("a")["metadata"]["resourceVersion"]
        self.clock.advance(5)
        self.assertEqual(stream.summary()[-1], ("BOOKMARK", "", created))
        self.assertTrue(stream.ended)

    def test_default_lifetime(self) -> None:
        """
        Without timeoutSeconds a watch lasts a random time in [1800, 3600).
        """
        stream = self.watch(FLUNDERS)
        self.clock.advance(1799)
        self.assertFalse(stream.ended)
        self.clock.advance(1801)
        self.assertTrue(stream.ended)
        settings = watch_handler.WatchSettings(random=lambda: 0.0)
        self.assertEqual(settings.lifetime(None), 1800.0)
        self.assertEqual(settings.lifetime(0), 1800.0)
        self.assertEqual(settings.lifetime(7), 7.0)
        self.assertEqual(watch_handler.WatchSettings(random=lambda: 0.5).lifetime(None), 2700.0)


class ShapeTests(WatchTestCase):
    def test_table_events(self) -> None:
        """
        kubectl's Table watch: each event's object is a one-row Table; a
        stream's first carries the column definitions, later ones do not,
        whatever other streams have already encoded.
        """
        first = self.watch(f"{FLUNDERS}?resourceVersion=1", accept=TABLE_ACCEPT)
        a = self.create("a")
        second = self.watch(f"{FLUNDERS}?resourceVersion={a['metadata']['resourceVersion']}", accept=TABLE_ACCEPT)
        self.create("b")
        [one, two] = first.events()
        [only] = second.events()
        self.assertEqual(first.header("content-type"), "application/json")
        self.assertEqual(one["object"]["kind"], "Table")
        self.assertEqual([c["name"] for c in one["object"]["columnDefinitions"]], ["Name", "Created At"])
        self.assertIsNone(two["object"]["columnDefinitions"])
        self.assertIsNotNone(only["object"]["columnDefinitions"])
        self.assertEqual(two["object"]["rows"][0]["cells"][0], "b")
        self.assertEqual(only["object"]["rows"], two["object"]["rows"])
        self.assertEqual(two["object"]["rows"][0]["object"]["kind"], "PartialObjectMetadata")
        self.assertEqual(one["object"]["metadata"], {"resourceVersion": a["metadata"]["resourceVersion"]})

    def test_table_include_object(self) -> None:
        """
        includeObject applies to watch rows; a bad value is a 400.
        """
        stream = self.watch(f"{FLUNDERS}?resourceVersion=1&includeObject=Object", accept=TABLE_ACCEPT)
        self.create("a")
        [event] = stream.events()
        self.assertEqual(event["object"]["rows"][0]["object"]["kind"], "Flunder")
        bad = self.watch(f"{FLUNDERS}?includeObject=Everything", accept=TABLE_ACCEPT)
        self.assertEqual(bad.code, 400)

    def test_partial_object_metadata(self) -> None:
        """
        A metadata watch streams PartialObjectMetadata.
        """
        stream = self.watch(
            f"{FLUNDERS}?resourceVersion=1",
            accept="application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
        self.create("a", app="x")
        [event] = stream.events()
        self.assertEqual(event["object"]["kind"], "PartialObjectMetadata")
        self.assertEqual(event["object"]["metadata"]["labels"], {"app": "x"})
        self.assertNotIn("spec", event["object"])

    def test_one_encoding_per_event_for_many_watchers(self) -> None:
        """
        Any number of watchers of one version share one encoding per event;
        another version or shape costs one more.
        """
        streams = [self.watch(f"{FLUNDERS}?resourceVersion=1") for _ in range(20)]
        alpha = self.watch(f"{FLUNDERS_A}?resourceVersion=1")
        before = ENCODE_COUNTER.count
        self.create("a")
        self.assertEqual(ENCODE_COUNTER.count - before, 2)
        self.assertEqual({s.body for s in streams}, {streams[0].body})
        self.assertEqual(len(alpha.events()), 1)


class LifecycleTests(WatchTestCase):
    def test_disconnect_cleans_up_once(self) -> None:
        """
        A client going away unsubscribes the watcher (notifyFinish and
        Klein's cancellation both fire; the cleanup is idempotent) and
        leaves no error and no timer behind.
        """
        stream = self.watch(f"{FLUNDERS}?allowWatchBookmarks=true")
        self.assertEqual(self.cacher().watcher_count, 1)
        self.assertTrue(self.clock.getDelayedCalls())
        stream.disconnect()
        self.assertEqual(self.cacher().watcher_count, 0)
        self.create("a")
        self.assertEqual(stream.events(), [])
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()], [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_every_end_runs_one_cleanup(self) -> None:
        """
        stopProducing, the Deferred's cancellation and notifyFinish's
        errback may all arrive, in any order: the watcher is stopped once,
        the producer unregistered once, C{done} fires once.
        """
        cacher = self.cacher()
        store = Store(flunder.STRATEGY, self.storage, PREFIX, self.clock.seconds, cacher=cacher)
        request, _ = _bare_request()
        watcher = cacher.watch(store.list_prefix("default"), None, capacity=10)
        stream = WatchStream(
            request,
            watcher,
            EventEncoder(store.resource, "v1beta1", DEFAULT_OUTPUT),
            self.clock,
            StreamSettings(lifetime=60),
        )
        done = stream.start()
        self.assertIs(request.producer, stream)
        stream.stopProducing()
        self.assertTrue(stream.closed)
        self.assertIsNone(request.producer)
        self.assertEqual(cacher.watcher_count, 0)
        done.cancel()
        stream.stopProducing()
        request.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(done, CancelledError)
        self.assertEqual(self.flushLoggedErrors(), [])


class BackpressureTests(WatchTestCase):
    def test_pause_holds_events_and_resume_writes_them_at_once(self) -> None:
        """
        The transport pausing the channel pauses the watch: events wait in
        the watcher's queue and go out in one write on resume.
        """
        stream = self.watch(f"{FLUNDERS}?resourceVersion=1")
        self.create("a")
        stream.pause()
        for name in ("b", "c", "d"):
            self.create(name)
        self.assertEqual(len(stream.events()), 1)
        chunks = len(stream.chunks)
        stream.resume()
        self.assertEqual([n for _, n, _ in stream.summary()], ["a", "b", "c", "d"])
        self.assertEqual(len(stream.chunks), chunks + 1)

    def test_stalled_client_is_cut_others_get_everything(self) -> None:
        """
        A paused watch whose queue overflows is ended (and unsubscribed);
        another watcher of the same cache still gets every event.
        """
        settings = watch_handler.WatchSettings(capacity=5)
        stalled = self.watch_with(settings, "resourceVersion=1")
        healthy = self.watch(f"{FLUNDERS}?resourceVersion=1")
        stalled.pause()
        self.assertEqual(self.cacher().watcher_count, 2)
        for index in range(12):
            self.create(f"f{index}")
        self.assertTrue(stalled.transport.disconnected)
        self.assertEqual(stalled.events(), [])
        self.assertEqual(self.cacher().watcher_count, 1)
        self.assertEqual([n for _, n, _ in healthy.summary()], [f"f{i}" for i in range(12)])
        stalled.disconnect()
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_overflow_while_reading_ends_cleanly(self) -> None:
        """
        A watcher the cache ends while its client still reads finishes the
        response cleanly (the client re-watches); the same while the client
        reads nothing aborts it.
        """
        for paused in (False, True):
            cacher = self.cacher()
            request, transport = _bare_request()
            watcher = cacher.watch(f"{PREFIX}/wardle.example.com/flunders/", cacher.revision, capacity=10)
            stream = WatchStream(
                request,
                watcher,
                EventEncoder(flunder.STRATEGY.resource, "v1beta1", DEFAULT_OUTPUT),
                self.clock,
                StreamSettings(lifetime=60),
            )
            done = stream.start()
            if paused:
                stream.pauseProducing()
            watcher.end(FellBehind(11, 10))
            self.assertTrue(stream.closed)
            self.assertIs(transport.disconnected, paused)
            if paused:
                self.assertNoResult(done)
                request.connectionLost(Failure(ConnectionDone()))
            self.assertIsNone(self.successResultOf(done))

    def test_server_shutdown_ends_watches(self) -> None:
        """
        Closing the cache (server shutdown) ends its watches cleanly.
        """
        stream = self.watch(f"{FLUNDERS}?resourceVersion=1")
        self.cacher().close()
        self.assertTrue(stream.ended)
        self.assertFalse(stream.transport.disconnecting)

    def test_stalled_client_is_aborted(self) -> None:
        """
        A client that reads nothing for 60 s is aborted, even without new
        events; one that reads again in time is kept.
        """
        stream = self.watch(f"{FLUNDERS}?resourceVersion=1")
        kept = self.watch(f"{FLUNDERS}?resourceVersion=1")
        stream.pause()
        kept.pause()
        self.clock.advance(59)
        kept.resume()
        self.assertFalse(stream.transport.disconnected)
        self.clock.advance(1)
        self.assertTrue(stream.transport.disconnected)
        self.assertEqual(self.cacher().watcher_count, 1)
        stream.disconnect()
        self.clock.advance(120)
        self.assertFalse(kept.transport.disconnected)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_default_capacity_is_about_a_thousand(self) -> None:
        """
        The default watcher queue holds 1,000 events.
        """
        self.assertEqual(watch_handler.DEFAULT_SETTINGS.capacity, 1000)


class OptionTests(SynchronousTestCase):
    def test_go_bool(self) -> None:
        """
        Only 0 and false (any case) are false, as Kubernetes reads query
        booleans.
        """
        for value in ("0", "false", "False", "FALSE"):
            self.assertFalse(watch_handler.go_bool(value), value)
        for value in ("1", "true", "", "yes"):
            self.assertTrue(watch_handler.go_bool(value), value)

    def test_validation_matrix(self) -> None:
        """
        The valid combinations pass.
        """
        self.assertEqual(watch_handler.validate_watch_options(None, "", ""), [])
        self.assertEqual(watch_handler.validate_watch_options(True, "NotOlderThan", ""), [])
        self.assertEqual(watch_handler.validate_watch_options(False, "NotOlderThan", ""), [])
        self.assertEqual(len(watch_handler.validate_watch_options(None, "Bogus", "")), 2)


def _bare_request() -> tuple[Request, StringTransport]:
    """
    A GET request on a fresh HTTP/1.1 channel, that nothing has rendered
    yet, and the channel's transport.
    """
    transport = StringTransport()
    channel = HTTPChannel()
    channel.makeConnection(transport)
    request = Request(channel, True)
    request.method = b"GET"
    request.clientproto = b"HTTP/1.1"
    request.uri = request.path = b"/"
    channel.requests.append(request)
    return request, transport


class HTTP2Tests(WatchTestCase):
    """
    A watch over an in-memory HTTP/2 connection (Twisted's H2Connection on
    the test clock).  Twisted closes an h2 connection on which nothing was
    sent or received for its timeout (60 s), even mid-response.
    """

    def h2_watch(
        self, settings: watch_handler.WatchSettings, window: int | None = None
    ) -> tuple[Any, StringTransport, Any]:
        """
        Open a watch over HTTP/2 (with a stream window of C{window} bytes if
        given); return the server connection, its transport and the h2
        client state.
        """
        import h2.config
        import h2.connection
        import h2.settings
        from twisted.web._http2 import H2Connection
        from twisted.web.server import Request as SiteRequest

        cacher = self.cacher()
        store = Store(flunder.STRATEGY, self.storage, PREFIX, self.clock.seconds, cacher=cacher)
        app = Klein()

        @app.route("/w")
        async def route(request: IRequest) -> bytes:
            scope = Scope(store.resource, "v1beta1", store, "default", "", ADMIN, cacher)
            return await watch_handler.watch(scope, request, settings)

        site = QuietSite(app.resource(), reactor=self.clock)
        server: Any = H2Connection(reactor=self.clock)
        server.requestFactory = SiteRequest
        server.site = site
        server.timeOut = 60
        server.callLater = self.clock.callLater
        transport = StringTransport()
        server.makeConnection(transport)
        client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        client.initiate_connection()
        if window is not None:
            client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        client.send_headers(
            1,
            [(":method", "GET"), (":path", "/w?resourceVersion=1"), (":scheme", "https"), (":authority", "x")],
            end_stream=True,
        )
        server.dataReceived(client.data_to_send())
        return server, transport, client

    def run_due_calls(self, limit: int = 200) -> int:
        """
        Run the calls due now, one by one (C{Clock.advance(0)} would never
        return while Twisted's h2 sender retries, every reactor turn, a
        stream whose window is exhausted); return how many ran, at most
        C{limit}.
        """
        ran = 0
        while ran < limit:
            due = [call for call in self.clock.calls if call.getTime() <= self.clock.seconds()]
            if not due:
                break
            call = min(due, key=lambda delayed: delayed.getTime())
            self.clock.calls.remove(call)
            call.func(*call.args, **call.kw)
            ran += 1
        return ran

    def advance(self, seconds: float) -> int:
        """
        C{Clock.advance} with at most 200 calls run (see L{run_due_calls}).
        """
        self.clock.rightNow += seconds
        return self.run_due_calls()

    def pump(self, server: Any, transport: StringTransport, client: Any, read: bool = True) -> list[Any]:
        """
        Let the server send, hand its bytes to the client (which opens the
        flow-control window again only if it C{read}s); the h2 events.
        """
        import h2.events

        self.run_due_calls()
        events = client.receive_data(transport.value())
        transport.clear()
        for event in events:
            if read and isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        reply = client.data_to_send()
        if reply:
            server.dataReceived(reply)
        return list(events)

    def test_quiet_watch_outlives_the_idle_timeout(self) -> None:
        """
        With the heartbeat, a watch with no events for 150 s keeps its h2
        connection; events still arrive afterwards.
        """
        import h2.events

        server, transport, client = self.h2_watch(watch_handler.DEFAULT_SETTINGS)
        events = self.pump(server, transport, client)
        response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
        headers: Any = dict(response.headers)
        self.assertEqual(headers[":status"], "200")
        received = b""
        for _ in range(150):
            self.clock.advance(1)
            for event in self.pump(server, transport, client):
                if isinstance(event, h2.events.DataReceived):
                    received += event.data
        self.assertFalse(transport.disconnecting)
        self.assertEqual(received, HEARTBEAT * 5)
        self.create("late")
        data = b"".join(
            e.data for e in self.pump(server, transport, client) if isinstance(e, h2.events.DataReceived)
        )
        self.assertEqual(json.loads(data)["object"]["metadata"]["name"], "late")

    def test_without_heartbeat_the_connection_dies(self) -> None:
        """
        The control: with keep-alives further apart than the timeout,
        Twisted times the connection out at 60 s.
        """
        server, transport, client = self.h2_watch(watch_handler.WatchSettings(keepalive_interval=600))
        self.pump(server, transport, client)
        for _ in range(59):
            self.clock.advance(1)
            self.pump(server, transport, client)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        server.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.cacher().watcher_count, 0)

    def test_flow_control_pauses_the_stream(self) -> None:
        """
        A client that stops opening its stream window pauses the watch;
        events then wait in the watcher, whose overflow resets the stream,
        while a reading client of the same cache gets every event.
        """
        import h2.events

        server, transport, client = self.h2_watch(watch_handler.WatchSettings(capacity=3), window=700)
        healthy = self.watch(f"{FLUNDERS}?resourceVersion=1")
        self.pump(server, transport, client)
        received = b""
        reset = []
        for index in range(10):
            self.create(f"f{index}")
            for event in self.pump(server, transport, client, read=False):
                if isinstance(event, h2.events.DataReceived):
                    received += event.data
                reset += [event] if isinstance(event, h2.events.StreamReset) else []
        self.assertLessEqual(len(received), 700)
        self.assertEqual(len(reset), 1)
        self.assertEqual(self.cacher().watcher_count, 1)
        self.assertEqual([n for _, n, _ in healthy.summary()], [f"f{i}" for i in range(10)])
        self.assertFalse(transport.disconnecting)
        self.assertLess(self.run_due_calls(), 200)

    def test_twisted_spins_on_a_closed_window(self) -> None:
        """
        The reason stalled h2 clients are aborted: while a stream's window
        is exhausted with data queued, Twisted's sender runs every reactor
        turn and keeps the idle timeout from firing; resetting the stream
        (here after a 90 s stall) stops it.
        """
        import h2.events

        settings = watch_handler.WatchSettings(stall_timeout=90)
        server, transport, client = self.h2_watch(settings, window=700)
        self.pump(server, transport, client)
        for index in range(4):
            self.create(f"f{index}")
        self.pump(server, transport, client, read=False)
        self.assertEqual(self.run_due_calls(), 200)
        self.assertEqual(self.advance(61), 200)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.cacher().watcher_count, 1)
        self.advance(29)
        self.assertEqual(self.cacher().watcher_count, 0)
        events = self.pump(server, transport, client, read=False)
        self.assertEqual(len([e for e in events if isinstance(e, h2.events.StreamReset)]), 1)
        self.assertLess(self.run_due_calls(), 200)
        self.assertEqual(self.flushLoggedErrors(), [])
