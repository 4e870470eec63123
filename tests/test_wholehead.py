# -*- test-case-name: tests.test_wholehead -*-
"""
L{GuardedHTTPChannel} reads a request head that arrives whole in one piece
instead of line by line: whatever the bytes, the answers must be exactly
those of the line-by-line road (the same bytes fed one at a time).
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from wardled import connlimits
from wardled.connlimits import WHOLE_HEAD_BYTES, GuardedSite
from wardled.limits import LimitSettings

_DATE = re.compile(rb"\r\nDate: [^\r]*")


class Echo(Resource):
    """
    Answers with what the request was: method, path, headers and body.
    """

    isLeaf = True

    def render(self, request: Any) -> bytes:
        headers = sorted(
            (name.lower(), value)
            for name, values in request.requestHeaders.getAllRawHeaders()
            for value in values
        )
        body = request.content.read() if request.content is not None else b""
        lines = [request.method, request.uri, request.clientproto]
        lines += [name + b": " + value for name, value in headers]
        return b"\n".join(lines) + b"\n\n" + body


def _connect(clock: Clock | None = None, head_timeout: float = 32.0) -> tuple[Any, StringTransport]:
    """
    A guarded HTTP/1.1 connection to L{Echo} over a L{StringTransport}.
    """
    site = GuardedSite(Echo(), reactor=clock or Clock())
    site.limit_settings = LimitSettings(0, 0, 60.0, head_timeout)
    protocol: Any = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def _answers(data: bytes, one_byte_at_a_time: bool) -> tuple[bytes, bool]:
    """
    What a guarded channel writes for C{data}, and whether it closed.
    """
    protocol, transport = _connect()
    if one_byte_at_a_time:
        for index in range(len(data)):
            if transport.disconnecting:  # a closing socket reads no more
                break
            protocol.dataReceived(data[index : index + 1])
    else:
        protocol.dataReceived(data)
    return _DATE.sub(b"", transport.value()), transport.disconnecting


def _get(path: str = "/a", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode()


CASES: dict[str, bytes] = {
    "plain GET": _get(),
    "many headers": _get(extra="".join(f"X-H{n}: v{n}\r\n" for n in range(40))),
    "repeated header": _get(extra="Accept: a\r\nAccept: b\r\n"),
    "body in the same read": (
        b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
    ),
    "chunked body": (
        b"POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    ),
    "two pipelined requests": _get("/one") + _get("/two"),
    "request then part of the next": _get("/one") + b"GET /two HT",
    "folded header": b"GET /f HTTP/1.1\r\nHost: t\r\nX-Long: a\r\n  b\r\n\r\n",
    "leading empty line": b"\r\n" + _get(),
    "bad request line": b"GET /a\r\nHost: t\r\n\r\n",
    "header without colon": b"GET /a HTTP/1.1\r\nHost t\r\n\r\n",
    "bad header name": b"GET /a HTTP/1.1\r\nBad Name: x\r\n\r\n",
    "two lengths": (
        b"POST /p HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"
    ),
    "bad length": b"POST /p HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    "expect continue": (
        b"POST /p HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    ),
    "connection close then more": _get(extra="Connection: close\r\n") + _get("/after"),
    "HTTP/1.0": b"GET /old HTTP/1.0\r\n\r\n",
    "head over the whole-head size": _get(extra=f"X-Big: {'b' * WHOLE_HEAD_BYTES}\r\n"),
    "declared body too large": (
        b"POST /p HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n"
    ),
}


class WholeHeadTests(SynchronousTestCase):
    """
    A head read whole is answered exactly as one read line by line.
    """

    def test_same_answers_as_line_by_line(self) -> None:
        for name, data in CASES.items():
            whole = _answers(data, one_byte_at_a_time=False)
            pieces = _answers(data, one_byte_at_a_time=True)
            self.assertEqual(whole, pieces, name)
            self.assertTrue(whole[0], f"{name}: no answer at all")

    def spy_on_whole_heads(self) -> list[bytes]:
        """
        The request lines of the heads read whole from now on.
        """
        read_whole: list[bytes] = []
        original = connlimits.GuardedHTTPChannel._handle_head

        def spy(channel: Any, lines: list[bytes]) -> None:
            read_whole.append(lines[0])
            original(channel, lines)

        self.patch(connlimits.GuardedHTTPChannel, "_handle_head", spy)
        return read_whole

    def test_whole_heads_are_read_at_once(self) -> None:
        """
        A plain head, and each head of a kept-alive connection, is read
        whole (the cases above would pass without the fast path at all).
        """
        read_whole = self.spy_on_whole_heads()
        protocol, transport = _connect()
        for path in ("/1", "/2", "/3"):
            protocol.dataReceived(_get(path))
        self.assertEqual(
            read_whole, [b"GET /1 HTTP/1.1", b"GET /2 HTTP/1.1", b"GET /3 HTTP/1.1"]
        )
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 3)
        self.assertFalse(transport.disconnecting)

    def test_folded_and_partial_heads_go_line_by_line(self) -> None:
        read_whole = self.spy_on_whole_heads()
        _answers(CASES["folded header"], one_byte_at_a_time=False)
        _answers(CASES["head over the whole-head size"], one_byte_at_a_time=False)
        _answers(_get(), one_byte_at_a_time=True)
        self.assertEqual(read_whole, [])

    def test_head_deadline_after_a_whole_head(self) -> None:
        """
        After a request read whole, a later partial head still gets the
        head deadline: the connection is dropped when it passes.
        """
        clock = Clock()
        protocol, transport = _connect(clock, head_timeout=5.0)
        protocol.dataReceived(_get("/1"))
        self.assertIn(b"200 OK", transport.value())
        protocol.dataReceived(b"GET /2 HTTP/1.1\r\nHo")
        clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
