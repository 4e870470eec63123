# -*- test-case-name: tests.test_bench_smoke -*-
"""
The smallest HTTP/2 client the benchmark suite needs, on asyncio and C{h2}.

kubectl and curl talk to wardled over HTTP/2 (ALPN C{h2}), and Twisted's
HTTP/2 is pure Python, so the suite measures it next to HTTP/1.1.  Like
L{bench._http} this is a load generator, not a general client: one TLS
connection multiplexing concurrent request/response streams (what
client-go does: one connection per server, many streams), bodies read
whole, flow-control windows large enough that a 10,000-item list does not
stall on window updates.  C{h2} (pure Python too) costs the client CPU;
the suite measures that ceiling against C{/healthz} and prints it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes

from bench._http import Endpoint, HttpError

_WINDOW = 2**24
_MAX_FRAME = 2**16


@attrs.define
class _Stream:
    """
    One request in flight: its status once known, its body so far, and the
    future that gets C{(status, body)}.
    """

    done: asyncio.Future[tuple[int, bytes]]
    status: int = 0
    body: bytearray = attrs.Factory(bytearray)


class H2ClientProtocol(asyncio.Protocol):
    """
    An HTTP/2 client connection: L{request} may be called concurrently.
    """

    def __init__(self, authority: str) -> None:
        self._authority = authority.encode("ascii")
        self._h2 = H2Connection(
            config=H2Configuration(client_side=True, header_encoding=None)
        )
        self._streams: dict[int, _Stream] = {}
        self._transport: asyncio.Transport | None = None
        self._closed: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._h2.initiate_connection()
        self._h2.update_settings(
            {
                SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
                SettingCodes.MAX_FRAME_SIZE: _MAX_FRAME,
            }
        )
        self._h2.increment_flow_control_window(_WINDOW)
        self._flush()

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None:
            self._transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except ProtocolError as error:  # the connection is dead
            self._fail_all(HttpError(f"HTTP/2 protocol error: {error!r}"))
            return
        for event in events:
            self._handle(event)
        self._flush()

    def _handle(self, event: Any) -> None:
        if isinstance(event, ResponseReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, DataReceived):
            self._h2.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data
        elif isinstance(event, StreamEnded):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None and not stream.done.done():
                stream.done.set_result((stream.status, bytes(stream.body)))
        elif isinstance(event, StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None and not stream.done.done():
                stream.done.set_exception(
                    HttpError(f"stream reset, code {event.error_code!r}")
                )
        elif isinstance(event, ConnectionTerminated):
            self._fail_all(HttpError(f"GOAWAY {event.error_code!r}"))

    def _fail_all(self, error: BaseException) -> None:
        self._closed = error
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            if not stream.done.done():
                stream.done.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(HttpError(f"connection lost: {exc!r}"))

    async def request(
        self, method: str, path: str, body: bytes = b""
    ) -> tuple[int, bytes]:
        """
        Send one request on a new stream and read its whole response.

        @return: the status code and the body.
        @raise HttpError: the stream or the connection failed.
        """
        if self._closed is not None:
            raise self._closed
        stream_id = self._h2.get_next_available_stream_id()
        headers = [
            (b":method", method.encode("ascii")),
            (b":path", path.encode("ascii")),
            (b":scheme", b"https"),
            (b":authority", self._authority),
            (b"accept", b"application/json"),
        ]
        if body or method in ("POST", "PUT", "PATCH"):
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
            ]
        done: asyncio.Future[tuple[int, bytes]] = (
            asyncio.get_running_loop().create_future()
        )
        self._streams[stream_id] = _Stream(done)
        self._h2.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self._h2.send_data(stream_id, body, end_stream=True)
        self._flush()
        return await done

    def close(self) -> None:
        """
        Say goodbye and close the connection.
        """
        if self._transport is not None and not self._transport.is_closing():
            self._h2.close_connection()
            self._flush()
            self._transport.close()


async def open_h2(endpoint: Endpoint) -> H2ClientProtocol:
    """
    Connect over TLS offering only C{h2} (ALPN).

    @raise HttpError: the server did not pick C{h2}.
    """
    context = endpoint.context()
    if context is None:
        raise HttpError("HTTP/2 here means TLS with ALPN: the endpoint has no TLS")
    context.set_alpn_protocols(["h2"])
    loop = asyncio.get_running_loop()
    authority = f"{endpoint.host}:{endpoint.port}"
    transport, protocol = await loop.create_connection(
        lambda: H2ClientProtocol(authority),
        endpoint.host,
        endpoint.port,
        ssl=context,
        server_hostname=endpoint.host,
    )
    ssl_object = transport.get_extra_info("ssl_object")
    chosen = None if ssl_object is None else ssl_object.selected_alpn_protocol()
    if chosen != "h2":
        transport.close()
        raise HttpError(f"server chose {chosen!r} over ALPN, not h2")
    return protocol
