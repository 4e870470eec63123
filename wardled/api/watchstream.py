# -*- test-case-name: tests.test_watch -*-
"""
The body of one watch response: events from an L{IWatcher}, written as
newline-delimited JSON with backpressure.

A L{WatchStream} is the response's C{IPushProducer}.  The watcher wakes it
when events arrive; it then takes what is queued, a batch at a time, and
writes each batch with one C{request.write} (Kubernetes flushes when its
queue is drained).  When the transport is full, C{pauseProducing} stops
the draining: events wait in the
watcher's queue, and if that overflows the cache ends the watcher and the
response is finished, so a stalled client costs bounded memory and never
delays anyone else.  Bookmarks, keep-alives and the watch's lifetime run on
timers of the reactor serving the request.

Every end (timeout, the cache ending the watcher, a disconnect reported by
C{notifyFinish}, C{stopProducing}, or Klein cancelling the handler) runs the
same idempotent cleanup.  A client that reads nothing for C{stall_timeout}
(or whose watcher overflows while it is not reading) is aborted rather than
ended: its response could never drain, and over HTTP/2 Twisted would spin
retrying to send into the exhausted flow-control window.

L{EventEncoder} turns cache events into lines, encoding each event once per
(type, version, shape) through L{CacheEvent.encoded} so that any number of
watchers share one serialisation; a plain JSON line in the version of the
cached object's bytes wraps those bytes instead of encoding the object.
"""

from __future__ import annotations

import base64
from collections.abc import Hashable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import Request
from zope.interface import implementer

from wardled import apierrors
from wardled.api import table
from wardled.api.negotiate import (
    PARTIAL_OBJECT_METADATA,
    TABLE,
    Output,
    encode_json,
    json_members,
)
from wardled.api.respond import object_bytes
from wardled.apis.schema import DecodeContext
from wardled.apis.scheme import ResourceType
from wardled.cache.interfaces import CacheEvent, IWatcher, TooOld

Object = dict[str, Any]

BOOKMARK = "BOOKMARK"
ERROR = "ERROR"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
INITIAL_EVENTS_LIST_BLUEPRINT = "k8s.io/initial-events-list-blueprint"

#: What a quiet stream writes to stay alive: one space.  JSON decoders
#: (client-go's, kubectl's) skip whitespace between values, and a
#: line-splitting client (the Python C{kubernetes} client) sees it as leading
#: whitespace of the next event.  A blank line would not do: that client
#: yields C{None} for it, or fails with C{deserialize=False}.
HEARTBEAT = b" "

# Slack for float arithmetic when comparing a timer's firing time.
_EPSILON = 1e-6


@attrs.frozen
class StreamSettings:
    """
    The timing and batching of one watch stream.

    @ivar lifetime: seconds until the stream ends cleanly.
    @ivar bookmarks: the client allowed BOOKMARK events
        (C{allowWatchBookmarks=true}): one every C{bookmark_interval} while
        the queue is drained, and one just before the lifetime ends.
    @ivar initial_events_end: after the watcher's initial events, send the
        BOOKMARK annotated C{k8s.io/initial-events-end}.
    @ivar keepalive_interval: without bookmarks, write L{HEARTBEAT} when
        nothing was written for this long (HTTP/2 connections idle for 60 s
        are closed by Twisted).
    @ivar bookmark_interval: seconds between periodic bookmarks.
    @ivar batch_size: the most events taken and written per reactor turn.
    @ivar stall_timeout: a stream paused (its client not reading) for this
        long is aborted.
    """

    lifetime: float
    bookmarks: bool = False
    initial_events_end: bool = False
    keepalive_interval: float = 30.0
    bookmark_interval: float = 30.0
    batch_size: int = 500
    stall_timeout: float = 60.0


@attrs.frozen
class _Shape:
    """
    What an event's object is turned into, as a hashable memo key part.
    """

    as_kind: str | None
    meta_version: str
    include_object: str


class EventEncoder:
    """
    The lines of one watch response, in the request's version and shape.

    A Table stream's first object carries the column definitions and later
    ones do not (as Kubernetes' watch encoder sets C{NoHeaders} after the
    first), so the encoder is per stream while the encodings it memoises on
    shared events are keyed by everything that shapes them.
    """

    def __init__(
        self,
        resource: ResourceType,
        version: str,
        output: Output,
        include_object: str = table.INCLUDE_METADATA,
    ) -> None:
        """
        @param resource: the watched resource.
        @param version: the API version objects are shown in.
        @param output: the negotiated format (JSON; maybe as Table or
            PartialObjectMetadata).
        @param include_object: a Table row's object (C{includeObject}).
        """
        as_kind = output.as_kind if output.as_kind in (TABLE, PARTIAL_OBJECT_METADATA) else None
        self._resource = resource
        self._version = version
        self._shape = _Shape(as_kind, output.version, include_object)
        self._headers_sent = False

    def event(self, effective_type: str, event: CacheEvent) -> bytes:
        """
        The line of C{event} seen as C{effective_type}, encoded once per key
        for every stream that shares it.
        """
        no_headers = self._next_no_headers()
        key: Hashable = ("watch", effective_type, self._version, self._shape, no_headers)
        current = event.current

        def encode() -> bytes:
            if self._shape.as_kind is None:
                shown_bytes = object_bytes(self._resource, self._version, current)
                if shown_bytes is not None:
                    return _joined_line(effective_type, shown_bytes)
            shown = self._resource.encode(self._version, current.obj, shared=True)
            return self._line(effective_type, self._shaped(shown, no_headers))

        return event.encoded(key, encode)

    def bookmark(self, revision: int, initial_events_end: bool = False) -> bytes:
        """
        A BOOKMARK line: the kind's empty object at C{revision}, annotated
        as the end of the initial events if asked (with the empty list a
        WatchList client rebuilds its list from).
        """
        metadata: Object = {"resourceVersion": str(revision)}
        if initial_events_end:
            metadata["annotations"] = {
                INITIAL_EVENTS_END: "true",
                INITIAL_EVENTS_LIST_BLUEPRINT: self._list_blueprint(),
            }
        served = self._resource.versions[self._version]
        empty = served.schema.decode_root({"metadata": metadata}, DecodeContext())
        shown = {
            "kind": self._resource.kind,
            "apiVersion": self._resource.api_version(self._version),
            **empty,
        }
        return self._line(BOOKMARK, self._shaped(shown, self._next_no_headers()))

    def _list_blueprint(self) -> str:
        """
        The empty versioned list, encoded and base64-encoded, as Kubernetes
        annotates a WatchList's initial-events-end bookmark.
        """
        if self._shape.as_kind == PARTIAL_OBJECT_METADATA:
            blueprint: Object = {
                "kind": "PartialObjectMetadataList",
                "apiVersion": f"meta.k8s.io/{self._shape.meta_version}",
                "metadata": {},
                "items": None,
            }
        else:
            blueprint = {
                "kind": self._resource.list_kind,
                "apiVersion": self._resource.api_version(self._version),
                "metadata": {},
                "items": None,
            }
        return base64.b64encode(encode_json(blueprint)).decode("ascii")

    def _next_no_headers(self) -> bool:
        """
        Whether the next Table leaves out its column definitions.
        """
        no_headers = self._headers_sent
        self._headers_sent = True
        return no_headers

    def _shaped(self, shown: Object, no_headers: bool) -> Object:
        shape = self._shape
        if shape.as_kind == TABLE:
            revision = shown.get("metadata", {}).get("resourceVersion", "")
            return table.to_table(
                [shown],
                list_meta={"resourceVersion": revision},
                include_object=shape.include_object,
                no_headers=no_headers,
                version=shape.meta_version,
            )
        if shape.as_kind == PARTIAL_OBJECT_METADATA:
            return table.to_partial_metadata(shown, shape.meta_version)
        return shown

    @staticmethod
    def _line(event_type: str, obj: Object) -> bytes:
        return encode_json({"type": event_type, "object": obj})


def _joined_line(event_type: str, obj: bytes) -> bytes:
    """
    L{EventEncoder._line} for an object already encoded (compact JSON,
    no newline).
    """
    head = json_members({"type": event_type, "object": None})[: -len(b"null")]
    return b"".join((b"{", head, obj, b"}\n"))


def error_line(error: apierrors.StatusError) -> bytes:
    """
    An ERROR event carrying C{error}'s Status (never transformed into a
    Table).
    """
    return encode_json({"type": ERROR, "object": error.status()})


def expired_line(error: TooOld) -> bytes:
    """
    The ERROR event of a watch whose history is gone (410 Expired).
    """
    return error_line(apierrors.gone(str(error)))


def start_response(request: Request) -> None:
    """
    Set the status and Content-Type of a watch response.
    """
    request.setResponseCode(200)
    request.setHeader(b"content-type", b"application/json")


@implementer(IPushProducer)
class WatchStream:
    """
    Drains one watcher into one response.

    @ivar done: fires with None when the response should be finished (the
        handler then returns and Klein finishes it); cancelling it (Klein
        does on disconnect) cleans up.
    """

    log = Logger()

    def __init__(
        self,
        request: Request,
        watcher: IWatcher,
        encoder: EventEncoder,
        clock: IReactorTime,
        settings: StreamSettings,
    ) -> None:
        self._request = request
        self._watcher = watcher
        self._encoder = encoder
        self._clock = clock
        self._settings = settings
        self._paused = False
        self._closed = False
        self._draining = False
        self._registered = False
        self._initial_left = watcher.initial_events if settings.initial_events_end else 0
        self._end_bookmark_due = settings.initial_events_end
        self._last_write = clock.seconds()
        self._drain_call: IDelayedCall | None = None
        self._tick_call: IDelayedCall | None = None
        self._expire_call: IDelayedCall | None = None
        self._stall_call: IDelayedCall | None = None
        self.done: Deferred[None] = Deferred(self._cancelled)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> Deferred[None]:
        """
        Send the headers, hook up the watcher, the transport and the timers,
        and write what is already queued (the initial events).

        @return: L{done}.
        """
        request = self._request
        start_response(request)
        request.registerProducer(self, True)
        self._registered = True
        request.write(b"")
        request.notifyFinish().addErrback(self._connection_lost)
        self._watcher.ended.addCallbacks(self._watcher_stopped, self._watcher_ended)
        if self._closed:
            return self.done
        self._watcher.set_wakeup(self._wakeup)
        clock = self._clock
        self._expire_call = clock.callLater(max(self._settings.lifetime, 0.0), self._expire)
        self._schedule_tick()
        self._wakeup()
        return self.done

    def _finish(self, last_line: bytes | None = None) -> None:
        """
        End the response (after writing C{last_line}, if any).
        """
        if self._closed:
            return
        if last_line is not None:
            self._write(last_line)
        self._cleanup()
        if not self.done.called:
            self.done.callback(None)

    def _cleanup(self) -> None:
        """
        Stop the watcher, the timers and the producer registration; safe to
        run any number of times, from any end.
        """
        if self._closed:
            return
        self._closed = True
        for call in (self._drain_call, self._tick_call, self._expire_call, self._stall_call):
            if call is not None and call.active():
                call.cancel()
        self._drain_call = self._tick_call = self._expire_call = self._stall_call = None
        self._watcher.set_wakeup(None)
        self._watcher.stop()
        if self._registered and getattr(self._request, "channel", None) is not None:
            self._request.unregisterProducer()
        self._registered = False

    @property
    def closed(self) -> bool:
        """
        Whether the stream has ended.
        """
        return self._closed

    def _cancelled(self, done: Deferred[None]) -> None:
        self._cleanup()

    def _connection_lost(self, reason: Failure) -> None:
        self._cleanup()
        if not self.done.called:
            self.done.callback(None)

    def _watcher_stopped(self, result: None) -> None:
        self._finish()

    def _watcher_ended(self, reason: Failure) -> None:
        """
        The cache ended the watcher: its history is gone (send the 410
        ERROR event) or it fell behind (the client re-watches): end the
        response, or abort it if the client is not reading at all.
        """
        if isinstance(reason.value, TooOld):
            self._finish(expired_line(reason.value))
            return
        self.log.info("watch ended: {reason}", reason=reason.getErrorMessage())
        if self._paused:
            self._abort()
        else:
            self._finish()

    def _stalled(self) -> None:
        self._stall_call = None
        self.log.info(
            "aborting a watch whose client read nothing for {seconds} s",
            seconds=self._settings.stall_timeout,
        )
        self._abort()

    def _abort(self) -> None:
        """
        Drop the response without ending it cleanly: what is queued for a
        client that does not read would never drain.  On HTTP/2 only this
        stream is reset (Twisted otherwise keeps retrying to send into the
        closed window, and reports nothing to the request, so the loss is
        reported here); on HTTP/1.1 the connection is aborted and the
        reactor reports the loss.
        """
        channel: Any = self._request.channel
        self._cleanup()
        if channel is None:
            return
        reset_stream = getattr(channel, "abortConnection", None)
        if reset_stream is None:
            # HTTP/1.1: the channel is the connection's protocol.
            if channel.transport is not None:
                channel.transport.abortConnection()
            return
        # HTTP/2: the channel is this request's stream.
        reset_stream()
        channel.connectionLost(Failure(ConnectionAborted()))

    def _expire(self) -> None:
        self._expire_call = None
        if self._bookmark_allowed():
            self._write(self._encoder.bookmark(self._watcher.revision))
        self._finish()

    # -- IPushProducer ----------------------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
        if self._stall_call is None and not self._closed:
            self._stall_call = self._clock.callLater(self._settings.stall_timeout, self._stalled)

    def resumeProducing(self) -> None:
        self._paused = False
        if self._stall_call is not None and self._stall_call.active():
            self._stall_call.cancel()
        self._stall_call = None
        self._wakeup()

    def stopProducing(self) -> None:
        self._cleanup()

    # -- draining ---------------------------------------------------------

    def _wakeup(self) -> None:
        """
        Events arrived (or the stream started or resumed): write a batch now.
        """
        if self._closed or self._paused or self._draining:
            return
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
        self._drain()

    def _drain(self) -> None:
        """
        Write one batch with one write; if events remain, continue on the
        next reactor turn, so a long backlog (a big initial state) does not
        hold the reactor.
        """
        self._drain_call = None
        if self._closed or self._paused:
            return
        self._draining = True
        try:
            lines = self._lines(self._watcher.take(self._settings.batch_size))
            if lines:
                self._write(b"".join(lines))
        except Exception:  # noqa: BLE001 - a bug ends this stream, not the server
            self.log.failure("writing watch events failed")
            self._finish()
            return
        finally:
            self._draining = False
        if self._watcher.pending() and not (self._closed or self._paused):
            self._drain_call = self._clock.callLater(0, self._drain)

    def _lines(self, batch: Sequence[tuple[str, CacheEvent]]) -> list[bytes]:
        lines: list[bytes] = []
        self._end_initial_events(lines)
        for effective_type, event in batch:
            lines.append(self._encoder.event(effective_type, event))
            if self._initial_left:
                self._initial_left -= 1
                self._end_initial_events(lines)
        return lines

    def _end_initial_events(self, lines: list[bytes]) -> None:
        """
        Append the initial-events-end bookmark once the initial events are
        all out.
        """
        if self._end_bookmark_due and not self._initial_left:
            self._end_bookmark_due = False
            lines.append(
                self._encoder.bookmark(self._watcher.start_revision, initial_events_end=True)
            )

    def _write(self, data: bytes) -> None:
        self._request.write(data)
        self._last_write = self._clock.seconds()

    # -- bookmarks and keep-alive -----------------------------------------

    def _bookmark_allowed(self) -> bool:
        """
        A periodic bookmark may go out: the client allowed them, the
        initial events are over and every event up to the watcher's
        revision was written.
        """
        return (
            self._settings.bookmarks
            and not self._paused
            and not self._end_bookmark_due
            and not self._watcher.pending()
        )

    def _schedule_tick(self) -> None:
        settings = self._settings
        if settings.bookmarks:
            delay = settings.bookmark_interval
        else:
            due = self._last_write + settings.keepalive_interval
            delay = max(due - self._clock.seconds(), _EPSILON)
        self._tick_call = self._clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._tick_call = None
        if self._closed:
            return
        idle = self._clock.seconds() - self._last_write
        if self._bookmark_allowed():
            self._write(self._encoder.bookmark(self._watcher.revision))
        elif not self._paused and idle >= self._settings.keepalive_interval - _EPSILON:
            self._write(HEARTBEAT)
        self._schedule_tick()
