"""
The smallest HTTP/1.1 client the benchmarks need, on asyncio.

Benchmark clients must cost as little CPU as possible: on a 2-core machine
every cycle a client burns is taken from the server being measured.  So
instead of a general client library this module has exactly two things:
a keep-alive request/response connection (for the writer) and an
incremental decoder of a streamed (chunked) response body into lines (for
watchers).  Only what wardled and etcd's gateway send is handled: a
C{Content-Length} or C{chunked} body, no trailers, no redirects.
"""

from __future__ import annotations

import asyncio
import ssl

import attrs

_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"


@attrs.frozen
class TlsFiles:
    """
    PEM files of a client that authenticates with a certificate.

    @ivar ca_file: the CA that signed the server's certificate.
    @ivar cert_file: the client certificate.
    @ivar key_file: its private key.
    """

    ca_file: str
    cert_file: str
    key_file: str

    def context(self) -> ssl.SSLContext:
        """
        A client context trusting C{ca_file} and presenting the certificate
        (no ALPN: the connection speaks HTTP/1.1).
        """
        context = ssl.create_default_context(cafile=self.ca_file)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@attrs.frozen
class Endpoint:
    """
    Where a server listens: C{https} when C{tls} is set, else C{http}.

    @ivar host: an IP address (always loopback here).
    @ivar port: the TCP port.
    @ivar tls: client TLS files, or C{None} for plain HTTP.
    """

    host: str
    port: int
    tls: TlsFiles | None = None

    def context(self) -> ssl.SSLContext | None:
        """
        The TLS context to connect with, or C{None} for plain HTTP.
        """
        return None if self.tls is None else self.tls.context()


class HttpError(Exception):
    """
    A response that could not be parsed or had an unexpected status.
    """


@attrs.frozen
class ResponseHead:
    """
    The status line and headers of a response.

    @ivar status: the status code.
    @ivar headers: header values by lower-case name.
    """

    status: int
    headers: dict[str, str]

    @classmethod
    def parse(cls, head: bytes) -> ResponseHead:
        """
        Parse everything before the blank line that ends the headers.

        @raise HttpError: no valid status line.
        """
        status_line, *header_lines = head.split(_CRLF)
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"bad status line {status_line!r}")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode(
                "latin-1"
            )
        return cls(int(parts[1]), headers)

    @property
    def chunked(self) -> bool:
        """
        Whether the body uses chunked transfer coding.
        """
        return "chunked" in self.headers.get("transfer-encoding", "").lower()


def request_bytes(
    method: str,
    path: str,
    host: str,
    body: bytes = b"",
    content_type: str = "application/json",
) -> bytes:
    """
    One HTTP/1.1 request, ready to write.
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Accept: application/json"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class KeepAliveConnection:
    """
    One persistent connection sending one request at a time.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._endpoint = endpoint
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, endpoint: Endpoint) -> KeepAliveConnection:
        """
        Connect (and do the TLS handshake when C{endpoint} has TLS).
        """
        context = endpoint.context()
        reader, writer = await asyncio.open_connection(
            endpoint.host,
            endpoint.port,
            ssl=context,
            server_hostname=endpoint.host if context is not None else None,
        )
        return cls(endpoint, reader, writer)

    async def request(
        self, method: str, path: str, body: bytes = b""
    ) -> tuple[int, bytes]:
        """
        Send one request and read its whole response.

        @return: the status code and the body.
        """
        self._writer.write(request_bytes(method, path, self._endpoint.host, body))
        head = ResponseHead.parse((await self._reader.readuntil(_HEAD_END))[:-4])
        if head.chunked:
            return head.status, await self._read_chunked()
        length = int(head.headers.get("content-length", "0"))
        return head.status, await self._reader.readexactly(length)

    async def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(_CRLF)).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(_CRLF)
                return b"".join(parts)
            parts.append((await self._reader.readexactly(size + 2))[:-2])

    def close(self) -> None:
        """
        Close the connection.
        """
        self._writer.close()


class LineDecoder:
    """
    Turn the bytes of a streamed response, as they arrive, into the
    complete lines of its body.

    Feed it everything received, from the status line on.  Until the head
    has arrived it returns nothing; L{head} is then set.  Chunk framing is
    removed when the response is chunked; lines are split on C{\\n} and
    returned without it, blank ones included.
    """

    def __init__(self) -> None:
        self.head: ResponseHead | None = None
        self._raw = bytearray()
        self._body = bytearray()
        self._chunk_left = 0
        self._chunked = False
        self.finished = False

    def feed(self, data: bytes) -> list[bytes]:
        """
        Take received bytes; return the body lines they completed.

        @raise HttpError: the head or the chunk framing is malformed.
        """
        self._raw += data
        if self.head is None and not self._read_head():
            return []
        if self._chunked:
            self._unchunk()
        else:
            self._body += self._raw
            del self._raw[:]
        return self._split_lines()

    def _read_head(self) -> bool:
        end = self._raw.find(_HEAD_END)
        if end < 0:
            return False
        self.head = ResponseHead.parse(bytes(self._raw[:end]))
        self._chunked = self.head.chunked
        del self._raw[: end + 4]
        return True

    def _unchunk(self) -> None:
        raw = self._raw
        position = 0
        while position < len(raw) and not self.finished:
            if self._chunk_left > 0:
                take = min(self._chunk_left, len(raw) - position)
                self._body += raw[position : position + take]
                position += take
                self._chunk_left -= take
                continue
            position = self._read_chunk_size(position)
            if position < 0:
                return
        del raw[:position]

    def _read_chunk_size(self, position: int) -> int:
        """
        Read the (CRLF-terminated) chunk size line at C{position}, after the
        CRLF that ends the previous chunk's data if any.

        @return: the position after it, or -1 (nothing consumed beyond the
            previous chunk) when the line is not complete yet.
        """
        raw = self._raw
        if raw.startswith(_CRLF, position):
            position += 2
        end = raw.find(_CRLF, position)
        if end < 0:
            del raw[:position]
            return -1
        try:
            size = int(bytes(raw[position:end]).split(b";")[0], 16)
        except ValueError as error:
            raise HttpError(f"bad chunk size {bytes(raw[position:end])!r}") from error
        self._chunk_left = size
        self.finished = size == 0
        return end + 2

    def _split_lines(self) -> list[bytes]:
        body = self._body
        end = body.rfind(b"\n")
        if end < 0:
            return []
        lines = bytes(body[:end]).split(b"\n")
        del body[: end + 1]
        return lines
