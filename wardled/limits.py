# -*- test-case-name: tests.test_limits -*-
"""
Per-request limits, as k8s.io/apiserver's filters impose them: requests in
flight and the request timeout.

One server cannot let a burst of clients or one slow backend use it up:

 - B{max in flight} (C{WithMaxInFlightLimit}): at most
   C{--max-requests-inflight} read-only (C{get}, C{list}) and
   C{--max-mutating-requests-inflight} mutating requests are served at
   once; one more is answered at once with C{429 Too Many Requests},
   C{Retry-After: 1} and a plain-text body (not a C{Status}: Kubernetes
   answers with C{http.Error}).  Long-running requests (watches) do not
   count.  A member of C{system:masters} is served even when the limit is
   reached, without taking a slot.  C{0} turns a limit off.
 - B{request timeout} (C{WithRequestDeadline} and
   C{WithTimeoutForNonLongRunningRequests}): every request that is not
   long-running gets C{--request-timeout} (60 s), counted from when it
   arrived; the C{timeout} query parameter (a Go duration such as C{5s})
   shortens it, never lengthens it.  When it passes, the client gets the
   C{504} C{Status} Kubernetes sends and the work is cancelled: the
   route's Deferred is cancelled, and nothing is written to the request
   after the 504.  A write may still have reached storage, as in
   Kubernetes.

L{RequestLimits} is what L{wardled.api.filters.FilteredResource} consults.
Limits on connections (request heads, bodies, idle connections) are in
L{wardled.connlimits}.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from itertools import accumulate
from operator import methodcaller
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from wardled import apierrors
from wardled.api import respond
from wardled.api.requestinfo import RequestInfo
from wardled.auth.user import MASTERS, UserInfo
from wardled.requestend import when_finished

DEFAULT_MAX_REQUESTS_INFLIGHT = 400
DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT = 200
DEFAULT_REQUEST_TIMEOUT = 60.0

#: Verbs that do not count as mutating (C{nonMutatingRequestVerbs}).
READONLY_VERBS = frozenset({"get", "list", "watch"})
#: Verbs of long-running requests (the reference's C{LongRunningFunc}:
#: C{BasicLongRunningRequestCheck(sets.NewString("watch"), ...)}).
LONG_RUNNING_VERBS = frozenset({"watch"})

RETRY_AFTER_SECONDS = 1
TOO_MANY_REQUESTS = "Too many requests, please try again later."
TIMEOUT_MESSAGE = "request did not complete within the allotted timeout"
INVALID_TIMEOUT = "invalid timeout specified in the request URL"

#: How deeply a request body may nest (JSON or YAML).  Kubernetes' JSON
#: decoder stops at 10000 levels; Python's recursion limit stops some of
#: wardled's body handling (JSON patches, YAML merge patches) at about 500,
#: so bodies are refused well before that, with a 400 instead of a 500.
MAX_BODY_DEPTH = 100

_DEADLINE_ATTRIBUTE = "_wardled_deadline"

log = Logger()


@attrs.frozen
class LimitSettings:
    """
    The limits of one server (its command line).

    @ivar max_requests_inflight: read-only requests served at once (0: no
        limit).
    @ivar max_mutating_requests_inflight: mutating requests served at once
        (0: no limit).
    @ivar request_timeout: seconds a request that is not long-running may
        take (0: no timeout).
    @ivar read_header_timeout: seconds a connection has to send a complete
        request head (see L{wardled.connlimits}; 0: no deadline).
    """

    max_requests_inflight: int = DEFAULT_MAX_REQUESTS_INFLIGHT
    max_mutating_requests_inflight: int = DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    read_header_timeout: float = 32.0


def settings_from_config(config: Any) -> LimitSettings:
    """
    The limits a L{wardled.config.WardledConfig} asks for.
    """
    return LimitSettings(
        max_requests_inflight=config.max_requests_inflight,
        max_mutating_requests_inflight=config.max_mutating_requests_inflight,
        request_timeout=config.request_timeout,
        read_header_timeout=config.read_header_timeout,
    )


# -- Go durations ------------------------------------------------------------

_NANOSECONDS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX_NANOSECONDS = (1 << 63) - 1
_DIGITS = "0123456789"


def _go_quote(text: str) -> str:
    """
    A string quoted as Go's C{time} package quotes it in errors: C{"} and
    C{\\} escaped, bytes outside printable ASCII as C{\\xNN}.
    """
    quoted = ['"']
    for char in text:
        if char < " " or char > "~":
            quoted.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
        elif char in '"\\':
            quoted.append("\\" + char)
        else:
            quoted.append(char)
    quoted.append('"')
    return "".join(quoted)


def parse_go_duration(text: str) -> float:
    """
    Parse a duration as Go's C{time.ParseDuration} does (C{1m30s},
    C{-1.5h}, C{300ms}, C{0}).

    @return: seconds (negative for a negative duration).
    @raise ValueError: Go's message, e.g. C{time: invalid duration "x"}.
    """
    invalid = ValueError(f"time: invalid duration {_go_quote(text)}")
    rest, negative = text, False
    if rest[:1] in ("-", "+"):
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise invalid
    total = 0
    while rest:
        if rest[0] != "." and rest[0] not in _DIGITS:
            raise invalid
        whole, rest = _leading(rest)
        fraction = ""
        if rest[:1] == ".":
            fraction, rest = _leading(rest[1:])
        if not whole and not fraction:
            raise invalid
        unit, rest = _unit(rest, text)
        if len(whole.lstrip("0")) > 19 or int(whole or "0") * unit > 1 << 63:
            raise invalid
        value = int(whole or "0") * unit
        if fraction:
            digits = fraction[:18]
            value += int(int(digits) * (unit / 10 ** len(digits)))
        total += value
        if value > 1 << 63 or total > 1 << 63:
            raise invalid
    if not negative and total > _MAX_NANOSECONDS:
        raise invalid
    seconds = total / 1e9
    return -seconds if negative else seconds


def _unit(rest: str, text: str) -> tuple[int, str]:
    """
    The unit at the start of C{rest} (up to the next digit or C{.}) in
    nanoseconds, and what follows it.

    @raise ValueError: Go's message for a missing or unknown unit.
    """
    length = 0
    while length < len(rest) and rest[length] != "." and rest[length] not in _DIGITS:
        length += 1
    if length == 0:
        raise ValueError(f"time: missing unit in duration {_go_quote(text)}")
    name = rest[:length]
    unit = _NANOSECONDS.get(name)
    if unit is None:
        raise ValueError(
            f"time: unknown unit {_go_quote(name)} in duration {_go_quote(text)}"
        )
    return unit, rest[length:]


def _leading(text: str) -> tuple[str, str]:
    """
    Split C{text} after its leading ASCII digits.
    """
    end = 0
    while end < len(text) and text[end] in _DIGITS:
        end += 1
    return text[:end], text[end:]


def requested_timeout(request: IRequest) -> float | None:
    """
    The C{timeout} query parameter in seconds (C{None} when absent or
    empty), as C{parseTimeout} reads it.

    @raise apierrors.StatusError: 400 when it is not a Go duration.
    """
    value = respond.query_arg(request, "timeout")
    if not value:
        return None
    try:
        return parse_go_duration(value)
    except ValueError as error:
        raise apierrors.bad_request(f"{INVALID_TIMEOUT} - {error}") from None


def effective_timeout(maximum: float, requested: float | None) -> float:
    """
    The timeout of one request: C{requested} when it is positive and
    shorter than C{maximum}, else C{maximum}.
    """
    if requested is not None and 0 < requested < maximum:
        return requested
    return maximum


# -- body nesting ------------------------------------------------------------------

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_BRACKET_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_INDENT = re.compile(rb"(?m)^[ \t]+")
_DASH_RUNS = re.compile(rb"(?:-[ \t]+){2,}")
_COUNT_DASHES = methodcaller("count", b"-")


def nesting_exceeds(content: bytes, limit: int = MAX_BODY_DEPTH) -> bool:
    """
    Whether a JSON or YAML body may nest deeper than C{limit} levels.

    Counted without parsing (bodies up to 3 MiB, at C speed): brackets
    outside JSON strings (JSON, YAML flow style), distinct indentations
    (YAML block style) and runs of C{- } (YAML compact sequences).  Each
    bounds one way of nesting from above, so a body said to be within the
    limit is; a legitimate body is never near it.
    """
    if content.count(b"[") + content.count(b"{") > limit:
        brackets = _JSON_STRING.sub(b"", content).translate(None, _NOT_BRACKETS)
        if max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > limit:
            return True
    if content.count(b"\n") > limit and len(set(_INDENT.findall(content))) > limit:
        return True
    runs = _DASH_RUNS.findall(content)
    return max(map(_COUNT_DASHES, runs), default=0) > limit


def body_too_deep(limit: int = MAX_BODY_DEPTH) -> apierrors.StatusError:
    """
    The 400 for a body nested deeper than C{limit} levels.
    """
    return apierrors.bad_request(
        f"the request body is nested too deeply: exceeded max depth {limit}"
    )


def _small_body(request: IRequest) -> bytes | None:
    """
    The request body (the content file is left at its start), or C{None}
    when it is over the body size limit (the filters answer 413).
    """
    content = request.content
    if content is None:
        return b""
    content.seek(0, 2)
    if content.tell() > apierrors.MAX_BODY_BYTES:
        content.seek(0)
        return None
    content.seek(0)
    data = content.read()
    content.seek(0)
    return bytes(data)


# -- classification ------------------------------------------------------------


def is_long_running(info: RequestInfo) -> bool:
    """
    Whether the limits leave C{info}'s request alone (a watch).
    """
    return info.verb in LONG_RUNNING_VERBS


def is_mutating(info: RequestInfo) -> bool:
    """
    Whether C{info}'s request counts against the mutating limit.
    """
    return info.verb not in READONLY_VERBS


def is_done(request: IRequest) -> bool:
    """
    Whether C{request}'s response is finished or its client has gone.
    """
    return bool(getattr(request, "finished", False) or getattr(request, "_disconnected", False))


# -- max in flight ---------------------------------------------------------------


class TooManyRequests(apierrors.StatusError):
    """
    The max-in-flight refusal: 429 with C{Retry-After: 1}.  Kubernetes
    writes this one as plain text (C{http.Error}); wardled answers with a
    C{Status} like every other refusal (reason C{TooManyRequests},
    C{details.retryAfterSeconds}), which client-go reads the same way.
    """

    def __init__(self) -> None:
        super().__init__(
            429,
            "TooManyRequests",
            TOO_MANY_REQUESTS,
            {"retryAfterSeconds": RETRY_AFTER_SECONDS},
        )

    def write(self, request: IRequest) -> bytes:
        """
        Set the status and headers; return the C{Status} body.
        """
        request.setHeader(b"retry-after", str(RETRY_AFTER_SECONDS).encode())
        return respond.write_status(request, self)


class InflightLimiter:
    """
    Counts the requests being served, read-only and mutating apart.

    @ivar readonly: read-only requests holding a slot.
    @ivar mutating: mutating requests holding a slot.
    """

    def __init__(self, readonly_limit: int, mutating_limit: int) -> None:
        """
        @param readonly_limit: slots for read-only requests (0: no limit).
        @param mutating_limit: slots for mutating requests (0: no limit).
        """
        self.readonly_limit = readonly_limit
        self.mutating_limit = mutating_limit
        self.readonly = 0
        self.mutating = 0

    def admit(self, request: IRequest, info: RequestInfo, user: UserInfo) -> None:
        """
        Take a slot for C{request} until its response is finished or its
        client goes; long-running requests take none.

        @raise TooManyRequests: no slot is free and C{user} is not in
            C{system:masters}.
        """
        if is_long_running(info) or is_done(request):
            return
        mutating = is_mutating(info)
        limit = self.mutating_limit if mutating else self.readonly_limit
        if not limit:
            return
        held = self.mutating if mutating else self.readonly
        if held >= limit:
            if MASTERS in user.groups:
                return
            raise TooManyRequests()
        self._take(mutating, +1)
        when_finished(request, functools.partial(self._release, mutating=mutating))

    def _take(self, mutating: bool, delta: int) -> None:
        if mutating:
            self.mutating += delta
        else:
            self.readonly += delta

    def _release(self, result: object, mutating: bool) -> None:
        self._take(mutating, -1)


# -- request timeout -------------------------------------------------------------


def _timeout_body(error: apierrors.StatusError) -> bytes:
    """
    The 504 body: the C{Status} as JSON and a newline, as Go's
    C{json.Encoder} writes it.
    """
    return (json.dumps(error.status(), separators=(",", ":")) + "\n").encode()


class RequestDeadline:
    """
    The timeout of one request: answers 504 when it passes, cancels the
    route's work and keeps anything else from writing to the request.
    """

    def __init__(self, request: IRequest, clock: IReactorTime, seconds: float) -> None:
        self.request = request
        self.timed_out = False
        self._on_expiry: list[Callable[[], object]] = []
        self._call: IDelayedCall | None = clock.callLater(seconds, self._expire)
        when_finished(request, self._cancel)

    @property
    def pending(self) -> bool:
        """
        Whether the deadline is still ahead.
        """
        return self._call is not None

    def on_expiry(self, cancel: Callable[[], object]) -> None:
        """
        Call C{cancel} (which stops the route's work) if the deadline
        passes before the response is done.
        """
        self._on_expiry.append(cancel)

    def _cancel(self, result: object) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _expire(self) -> None:
        self._call = None
        request = self.request
        if is_done(request):
            return
        self.timed_out = True
        for cancel in self._on_expiry:
            try:
                cancel()
            except Exception:  # noqa: BLE001 - the 504 must still go out
                log.failure("cancelling a timed-out request's work failed")
        if is_done(request):
            return
        if getattr(request, "startedWriting", False):
            # Too late for a 504: cut the response, as Kubernetes does
            # (HTTP/1.1: the connection is closed; HTTP/2: the stream reset).
            _cut(request)
            return
        try:
            self._answer_timeout()
        except Exception:  # noqa: BLE001 - the connection is going; nothing to answer
            log.failure("answering a timed-out request failed; closing its connection")
            _cut(request)

    def _answer_timeout(self) -> None:
        request = self.request
        error = apierrors.timeout(TIMEOUT_MESSAGE)
        body = _timeout_body(error)
        request.setResponseCode(504)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"content-length", str(len(body)).encode())
        request.write(body)
        request.finish()
        # Whatever still runs must not write again.
        request.write = _discard  # type: ignore[method-assign]
        request.finish = _ignore  # type: ignore[method-assign]


def _cut(request: IRequest) -> None:
    """
    End C{request}'s response so that the client sees it incomplete.
    """
    channel: Any = getattr(request, "channel", None)
    abort = getattr(channel, "abortConnection", None)
    if abort is not None:
        abort()  # an HTTP/2 stream: RST_STREAM
    elif channel is not None and channel.transport is not None:
        channel.transport.abortConnection()


class DeadlineCancelling(Resource):
    """
    Routes that stop their work when the client goes (they wait on
    C{request.notifyFinish()}, as Klein does), made to stop it when the
    request's deadline passes as well: while they render, the
    notifications they ask for also fail at the deadline.
    """

    isLeaf = True

    def __init__(self, routes: IResource) -> None:
        super().__init__()
        self.routes = routes

    def render(self, request: IRequest) -> Any:
        deadline = getattr(request, _DEADLINE_ATTRIBUTE, None)
        if not (isinstance(deadline, RequestDeadline) and deadline.pending):
            return self.routes.render(request)
        finished: Callable[[], Deferred[object]] = request.notifyFinish  # type: ignore[attr-defined]

        def notify_finish() -> Deferred[object]:
            watcher: Deferred[object] = Deferred()
            deadline.on_expiry(lambda: _fail(watcher))
            finished().addBoth(_relay, watcher)
            return watcher

        request.notifyFinish = notify_finish  # type: ignore[attr-defined]
        try:
            return self.routes.render(request)
        finally:
            vars(request).pop("notifyFinish", None)


def _fail(watcher: Deferred[object]) -> None:
    if not watcher.called:
        watcher.errback(Failure(CancelledError(TIMEOUT_MESSAGE)))


def _relay(result: object, watcher: Deferred[object]) -> None:
    """
    Pass the request's end on to C{watcher}, unless the deadline has
    already failed it.
    """
    if watcher.called:
        return
    if isinstance(result, Failure):
        watcher.errback(result)
    else:
        watcher.callback(result)


def on_deadline(request: IRequest, cancel: Callable[[], object]) -> None:
    """
    Call C{cancel} if C{request}'s deadline passes before its response is
    done (routes stop their work with it); nothing when it has none.
    """
    deadline = getattr(request, _DEADLINE_ATTRIBUTE, None)
    if isinstance(deadline, RequestDeadline) and deadline.pending:
        deadline.on_expiry(cancel)


def _discard(data: bytes) -> None:
    log.debug("dropped {count} bytes written after a timeout", count=len(data))


def _ignore() -> None:
    pass


# -- what the filters use ----------------------------------------------------------


class RequestLimits:
    """
    Max in flight and the request timeout of one server.

    The filters call L{start} when a request arrives, L{check} first in
    admission, L{admit} between impersonation and authorization (where
    Kubernetes has C{WithMaxInFlightLimit}); routes register the work a
    deadline cancels with L{on_deadline}.
    """

    def __init__(self, clock: IReactorTime, settings: LimitSettings = LimitSettings()) -> None:
        self.clock = clock
        self.settings = settings
        self.inflight = InflightLimiter(
            settings.max_requests_inflight, settings.max_mutating_requests_inflight
        )

    def start(self, request: IRequest, info: RequestInfo) -> None:
        """
        Start C{request}'s timeout unless it is long-running (C{info} says
        whether); a bad C{timeout} parameter is kept for L{check}.
        """
        if is_long_running(info):
            return
        try:
            requested = requested_timeout(request)
        except apierrors.StatusError as error:
            setattr(request, _DEADLINE_ATTRIBUTE, error)
            return
        seconds = effective_timeout(self.settings.request_timeout, requested)
        if seconds > 0:
            setattr(request, _DEADLINE_ATTRIBUTE, RequestDeadline(request, self.clock, seconds))

    def check(self, request: IRequest) -> None:
        """
        @raise apierrors.StatusError: 400 for a bad C{timeout} parameter or
            a body nested too deeply (a body over the size limit is left
            to the filters' 413).
        """
        found = getattr(request, _DEADLINE_ATTRIBUTE, None)
        if isinstance(found, apierrors.StatusError):
            raise found
        body = _small_body(request)
        if body and nesting_exceeds(body):
            raise body_too_deep()

    def admit(self, request: IRequest, info: RequestInfo, user: UserInfo) -> None:
        """
        Take a slot in flight for C{request} (see L{InflightLimiter.admit}).

        @raise TooManyRequests: none is free.
        """
        self.inflight.admit(request, info, user)



def write_refusal(request: IRequest, error: apierrors.StatusError) -> bytes:
    """
    Answer with C{error}'s C{Status} (with C{Retry-After} for
    L{TooManyRequests}).
    """
    if isinstance(error, TooManyRequests):
        return error.write(request)
    return respond.write_status(request, error)


def parse_limit(flag: str, value: str) -> int:
    """
    C{--max-requests-inflight}, C{--max-mutating-requests-inflight}: a
    whole number >= 0.

    @raise ValueError: not one (worded as Kubernetes' option validation).
    """
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"invalid --{flag} {value!r}: want a whole number") from None
    if number < 0:
        raise ValueError(f"--{flag} can not be negative value")
    return number
