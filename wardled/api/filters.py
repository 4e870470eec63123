# -*- test-case-name: tests.test_metrics,tests.test_audit,tests.test_api -*-
"""
The handler chain in front of the routes (k8s.io/apiserver's filters):
audit id and cache headers, body limit, authentication, impersonation,
request info, authorization.  Whatever it refuses is answered with a C{Status} here, so the
routes only ever see authorized requests.

Metrics and the audit log watch every request through the same hook: an
L{IRequestObserver} is told when admission has decided (allowed or not),
optionally of every write of the response, and when the response is
finished, with a L{RequestRecord} of what the filters learnt.
"""

from __future__ import annotations

import functools
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import Interface

from wardled import apierrors
from wardled.api import respond
from wardled.api.context import RequestContext, set_request_context
from wardled.api.requestinfo import RequestInfo, parse_request_info
from wardled.auth.authz import Authorizer, Decision, forbidden_error
from wardled.auth.impersonation import impersonate
from wardled.auth.sar import ReviewFailed
from wardled.auth.user import UserInfo
from wardled.limits import RequestLimits, write_refusal
from wardled.requestend import when_finished

# A function from a request to its user (or to an awaitable of it).
Authenticator = Callable[[IRequest], UserInfo | Awaitable[UserInfo]]


def new_audit_id() -> str:
    """
    A random (version 4) UUID for C{Audit-Id}: unique, not secret, so from
    C{random} (reseeded in every forked worker) rather than a system call
    per request.
    """
    return format_uuid4(random.getrandbits(128))


_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (0x4000 << 64)


def format_uuid4(bits: int) -> str:
    """
    C{str(uuid.UUID(int=bits, version=4))}, without building the UUID
    (a third of the time; it is done for every request).
    """
    text = "%032x" % (bits & _UUID4_CLEAR | _UUID4_SET)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _body_size(request: IRequest) -> int:
    content = request.content
    if content is None:
        return 0
    position = content.tell()
    content.seek(0, 2)
    size = content.tell()
    content.seek(position)
    return int(size)


def _request_info(request: IRequest) -> RequestInfo:
    # Go reads the decoded path (URL.Path): ".../flunders/a%20b" names "a b".
    path = unquote_to_bytes(request.path).decode("utf-8", "replace")
    watch = (respond.query_arg(request, "watch") or "").lower() in ("true", "1")
    return parse_request_info(request.method.decode("ascii", "replace"), path, watch)


class RequestRecord:
    """
    What the filters learnt about one request, for the observers.

    @ivar request: the request.
    @ivar audit_id: the C{Audit-Id} sent back.
    @ivar started: C{time.perf_counter()} when the filters first saw it.
    @ivar received: the wall-clock time (epoch seconds) it was received.
    @ivar user: the authenticated user (before impersonation); C{None}
        when authentication failed or did not run.
    @ivar impersonated: the user acted as, when impersonating.
    @ivar decision: the authorization decision, once made.
    @ivar error: the C{Status} error admission answered with, if refused.
    @ivar panicked: rendering raised (Twisted answers 500).
    @ivar state: room for observers' per-request state (created by them).
    """

    __slots__ = (
        "_info",
        "audit_id",
        "decision",
        "error",
        "impersonated",
        "panicked",
        "received",
        "request",
        "started",
        "state",
        "user",
    )

    def __init__(self, request: IRequest, audit_id: str) -> None:
        self.request = request
        self.audit_id = audit_id
        self.started = time.perf_counter()
        self.received = time.time()
        self.user: UserInfo | None = None
        self.impersonated: UserInfo | None = None
        self.decision: Decision | None = None
        self.error: apierrors.StatusError | None = None
        self.panicked: BaseException | None = None
        self.state: dict[str, Any] | None = None
        self._info: RequestInfo | None = None

    @property
    def info(self) -> RequestInfo:
        """
        The parsed request (parsed here if admission stopped before it).
        """
        if self._info is None:
            self._info = _request_info(self.request)
        return self._info

    @info.setter
    def info(self, info: RequestInfo) -> None:
        self._info = info

    @property
    def allowed(self) -> bool:
        """
        Whether admission let the request through to the routes.
        """
        return self.error is None and self.decision is not None and self.decision.allowed

    @property
    def code(self) -> int:
        """
        The response status code (200 until one is set).
        """
        code = getattr(self.request, "code", 200)
        return int(code)


class IRequestObserver(Interface):
    """
    Something told about every request the filters see (metrics, audit).

    Observers run on the reactor thread in the middle of serving: they
    must be quick and must not raise.
    """

    def admitted(record: RequestRecord) -> bool:
        """
        Admission has decided: C{record.allowed}, or C{record.error} holds
        the refusal about to be written.

        @return: whether to be told of each write of the response (see
            L{wrote}).
        """

    def wrote(record: RequestRecord, data: bytes) -> None:
        """
        C{data} is about to be written as (part of) the response body.
        """

    def finished(record: RequestRecord) -> None:
        """
        The response is finished or the client went away (then
        L{admitted} may not have been called).
        """


class FilteredResource(Resource):
    """
    Wraps the route tree; every request goes through L{render}.

    Authentication and authorization may have to ask the cluster
    (TokenReview, SubjectAccessReview), so admission is a coroutine; when
    it needs nothing from the network (the common case: certificates,
    static tokens, cached reviews) it finishes at once and the routes are
    rendered in the same call, as before.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        routes: IResource,
        authenticate: Authenticator,
        authorizer: Authorizer | None = None,
        observers: Sequence[IRequestObserver] = (),
        limits: RequestLimits | None = None,
    ) -> None:
        """
        @param limits: max in flight and the request timeout
            (L{wardled.limits}); none: unlimited.
        """
        super().__init__()
        self.routes = routes
        self.authenticate = authenticate
        self.authorizer = authorizer or Authorizer()
        self.observers = tuple(observers)
        self.limits = limits

    def render(self, request: IRequest) -> Any:
        audit_id = new_audit_id()
        request.setHeader(b"audit-id", audit_id.encode())
        request.setHeader(b"cache-control", b"no-cache, private")
        record = None
        if self.observers:
            record = RequestRecord(request, audit_id)
            when_finished(request, functools.partial(self._finished, record=record))
        info = _request_info(request)
        if self.limits is not None:
            self.limits.start(request, info)
        admitted = ensureDeferred(self._admit(request, info, record))
        outcome: list[object] = []
        admitted.addBoth(outcome.append)
        if outcome:
            return self._render_admitted(request, outcome[0], record)
        # Waiting for the cluster: render when it answers, unless the client
        # has gone by then.
        gone: list[object] = []
        when_finished(request, gone.append)
        admitted.addCallback(lambda _: self._finish_later(request, outcome[0], gone, record))
        admitted.addErrback(self._log_failure)
        return NOT_DONE_YET

    def _finish_later(
        self,
        request: IRequest,
        outcome: object,
        gone: list[object],
        record: RequestRecord | None,
    ) -> None:
        if gone:
            return
        body = self._render_admitted(request, outcome, record)
        if body is NOT_DONE_YET:
            return
        request.write(body)
        request.finish()

    def _log_failure(self, failure: Failure) -> None:
        self.log.failure("rendering an admitted request failed", failure)

    def _render_admitted(
        self, request: IRequest, outcome: object, record: RequestRecord | None
    ) -> Any:
        error: apierrors.StatusError | None = None
        if isinstance(outcome, Failure):
            if isinstance(outcome.value, apierrors.StatusError):
                error = outcome.value
            else:
                self.log.failure("request admission failed", outcome)
                error = apierrors.internal_error(str(outcome.value))
        if record is not None:
            record.error = error
            self._tell_admitted(record)
        if error is not None:
            return write_refusal(request, error)
        if record is None:
            return self._render_routes(request)
        try:
            return self._render_routes(request)
        except BaseException as panic:
            record.panicked = panic
            raise

    def _render_routes(self, request: IRequest) -> Any:
        return self.routes.render(request)

    async def _admit(
        self, request: IRequest, info: RequestInfo, record: RequestRecord | None
    ) -> None:
        if self.limits is not None:
            self.limits.check(request)
        if _body_size(request) > apierrors.MAX_BODY_BYTES:
            raise apierrors.request_entity_too_large()
        found = self.authenticate(request)
        user = await found if inspect.isawaitable(found) else found
        if record is not None:
            record.user = user
        acting = await impersonate(request, user, self._authorize)
        if record is not None:
            record.info = info
            if acting is not user:
                record.impersonated = acting
        if self.limits is not None:
            # Where Kubernetes has WithMaxInFlightLimit: after impersonation,
            # before authorization.
            self.limits.admit(request, info, acting)
        decision = await self._authorize(acting, info)
        if record is not None:
            record.decision = decision
        if not decision.allowed:
            if acting.is_anonymous and self.authorizer.challenges_anonymous:
                raise apierrors.unauthorized()
            raise forbidden_error(acting, info, decision.reason)
        set_request_context(request, RequestContext(info, acting))

    async def _authorize(self, user: UserInfo, info: RequestInfo) -> Decision:
        try:
            return await self.authorizer(user, info)
        except ReviewFailed as error:
            raise apierrors.internal_error(str(error)) from error

    # -- observers ----------------------------------------------------------

    def _tell_admitted(self, record: RequestRecord) -> None:
        listeners = []
        for observer in self.observers:
            try:
                if observer.admitted(record):
                    listeners.append(observer)
            except Exception:  # noqa: BLE001 - an observer bug must not fail requests
                self.log.failure("request observer failed")
        if listeners:
            _intercept_writes(record, listeners, self.log)

    def _finished(self, result: object, record: RequestRecord) -> None:
        """
        The response is done (or the client left): tell the observers.
        """
        request = record.request
        vars(request).pop("write", None)
        for observer in self.observers:
            try:
                observer.finished(record)
            except Exception:  # noqa: BLE001 - an observer bug must not fail requests
                self.log.failure("request observer failed")


def _intercept_writes(
    record: RequestRecord, listeners: Sequence[IRequestObserver], log: Logger
) -> None:
    """
    Route C{record.request}'s writes past C{listeners} first (an instance
    attribute shadowing L{Request.write}, removed when the request ends).
    """
    request = record.request
    write = request.write

    def observed_write(data: bytes) -> None:
        for listener in listeners:
            try:
                listener.wrote(record, data)
            except Exception:  # noqa: BLE001 - an observer bug must not fail requests
                log.failure("request observer failed")
        write(data)

    request.write = observed_write  # type: ignore[method-assign]
