# -*- test-case-name: tests.test_audit -*-
"""
The audit filter: an observer of the filters that turns each request the
policy selects into audit events, stage by stage, as k8s.io/apiserver's
C{WithAudit} does:

  - C{RequestReceived} once the request is admitted or refused (the user,
    the request, no response yet, no authorization annotations: in the
    reference the audit filter runs before impersonation and
    authorization);
  - C{ResponseStarted} for watches, when the response headers go out;
  - C{ResponseComplete} when the response is finished, with the
    authorization decision, the impersonated user, the status and (at
    level Request/RequestResponse) the request and response bodies;
  - C{Panic} when rendering raised.

A request whose authentication failed gets one C{ResponseStarted} event
(C{WithFailedAuthenticationAudit}).  Events go to an L{IAuditSink}, which
writes them off the reactor thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.web.iweb import IRequest
from zope.interface import Interface, implementer

from wardled import apierrors
from wardled.api.filters import IRequestObserver, RequestRecord
from wardled.audit import event as shape
from wardled.audit.policy import (
    NONE,
    PANIC,
    REQUEST,
    REQUEST_RECEIVED,
    REQUEST_RESPONSE,
    RESPONSE_COMPLETE,
    RESPONSE_STARTED,
    AuditPolicy,
    RequestAuditConfig,
    level_at_least,
)

# Response bodies kept for the log: at most this many bytes (a larger
# response is logged without its object).
MAX_CAPTURE = 3 * 1024 * 1024

_BODY_METHODS = (b"POST", b"PUT", b"PATCH", b"DELETE")


class IAuditSink(Interface):
    """
    Where audit events go.
    """

    def process(event: dict[str, Any]) -> None:
        """
        Take one event (a JSON-able dict no one changes afterwards); must
        not block.
        """


def _read_body(request: IRequest) -> bytes:
    content = request.content
    if content is None:
        return b""
    position = content.tell()
    content.seek(0)
    data = content.read()
    content.seek(position)
    return bytes(data)


def _auth_failure_message(request: IRequest) -> str:
    """
    C{getAuthMethods}: what the client tried.
    """
    methods = []
    authorization = (request.getHeader(b"authorization") or b"").strip()
    scheme = authorization.split(b" ", 1)[0].lower() if b" " in authorization else b""
    if scheme == b"basic":
        methods.append("basic")
    if scheme == b"bearer":
        methods.append("bearer")
    if request.args.get(b"access_token"):
        methods.append("access_token")
    if methods:
        return "Authentication failed, attempted: " + ", ".join(methods)
    return "Authentication failed, no credentials provided"


class _Audit:
    """
    One audited request's event as it builds up.
    """

    __slots__ = (
        "annotations",
        "base",
        "captured",
        "capturing",
        "config",
        "impersonated",
        "long_running",
        "request_object",
        "response_object",
        "started",
        "status",
        "target",
        "wrote",
    )

    def __init__(self, config: RequestAuditConfig, base: dict[str, Any], long_running: bool) -> None:
        self.config = config
        self.base = base
        self.long_running = long_running
        self.target: dict[str, Any] | None = base.get("objectRef")
        self.impersonated: dict[str, Any] | None = None
        self.annotations: dict[str, str] | None = None
        self.request_object: Any = None
        self.response_object: Any = None
        self.status: dict[str, Any] | None = None
        self.started = False
        self.wrote = 0
        self.capturing: bool | None = None
        self.captured: list[bytes] = []


@implementer(IRequestObserver)
class AuditTrail:
    """
    Audits requests as the policy says, sending events to a sink.
    """

    def __init__(
        self,
        policy: AuditPolicy,
        sink: IAuditSink,
        now: Callable[[], float] = time.time,
        max_capture: int = MAX_CAPTURE,
    ) -> None:
        """
        @param now: the wall clock, for stage timestamps.
        @param max_capture: the largest response body logged.
        """
        self.policy = policy
        self.sink = sink
        self.now = now
        self.max_capture = max_capture

    # -- IRequestObserver ---------------------------------------------------

    def admitted(self, record: RequestRecord) -> bool:
        """
        Decide the level; log C{RequestReceived} (or, for a failed
        authentication, the only event); ask for the response body when it
        will be logged.
        """
        config = self.policy.evaluate(record.user, record.info)
        if config.level == NONE:
            return False
        request = record.request
        audit = _Audit(config, self._base(record, config), record.info.verb == "watch")
        if record.user is None and record.error is not None:
            audit.status = shape.response_status(
                record.error.code, {"message": _auth_failure_message(request)}
            )
            self._emit(audit, RESPONSE_STARTED, record)
            return False
        self._emit(audit, REQUEST_RECEIVED, record)
        self._learn_request(audit, record)
        record.state = record.state or {}
        record.state["audit"] = audit
        if record.error is not None:
            self._refused(audit, record.error)
            return False
        return True

    def wrote(self, record: RequestRecord, data: bytes) -> None:
        """
        A watch's first write starts its response; other responses are
        kept when their body will be logged.
        """
        audit: _Audit = record.state["audit"]  # type: ignore[index]
        if audit.long_running and not audit.started:
            audit.status = shape.response_status(record.code)
            self._emit(audit, RESPONSE_STARTED, record)
        if audit.capturing is None:
            audit.capturing = self._wants_body(audit, record)
        if not audit.capturing:
            return
        audit.wrote += len(data)
        if audit.wrote > self.max_capture:
            audit.capturing = False
            audit.captured = []
            return
        audit.captured.append(data)

    def finished(self, record: RequestRecord) -> None:
        """
        Log C{ResponseComplete} (or C{Panic}).
        """
        audit = record.state.pop("audit", None) if record.state else None
        if audit is None:
            return
        if record.panicked is not None:
            audit.status = shape.response_status(500, {
                "status": "Failure",
                "reason": "InternalError",
                "message": f"APIServer panic'd: {record.panicked}",
            })
            self._emit(audit, PANIC, record)
            return
        if audit.long_running and not audit.started:
            audit.status = shape.response_status(200, {
                "status": "Success", "message": "Connection closed early",
            })
            self._emit(audit, RESPONSE_STARTED, record)
        self._settle_response(audit, record)
        self._emit(audit, RESPONSE_COMPLETE, record)

    # -- building -----------------------------------------------------------

    def _base(self, record: RequestRecord, config: RequestAuditConfig) -> dict[str, Any]:
        """
        The fields every stage's event shares, in Go's order.
        """
        request = record.request
        base: dict[str, Any] = {
            "kind": shape.KIND,
            "apiVersion": shape.API_VERSION,
            "level": config.level,
            "auditID": record.audit_id,
            "stage": "",
            "requestURI": request.uri.decode("utf-8", "replace"),
            "verb": record.info.verb,
            "user": shape.user_info(record.user) if record.user is not None else {},
        }
        ips = shape.source_ips(request)
        if ips:
            base["sourceIPs"] = ips
        agent = shape.user_agent(request)
        if agent:
            base["userAgent"] = agent
        target = shape.object_ref(record.info)
        if target is not None:
            base["objectRef"] = target
        return base

    def _learn_request(self, audit: _Audit, record: RequestRecord) -> None:
        """
        What later stages add: the acting user, the authorization decision,
        the request body (for the object's name, and at level Request).
        """
        if record.impersonated is not None:
            audit.impersonated = shape.user_info(record.impersonated)
        if record.decision is not None:
            audit.annotations = shape.authorization_annotations(
                record.decision.allowed, record.decision.reason
            )
        request = record.request
        if not record.info.is_resource_request or request.method not in _BODY_METHODS:
            return
        wants_object = level_at_least(audit.config.level, REQUEST)
        if not wants_object and request.method != b"POST":
            return
        body = shape.decode_body(_read_body(request), request.getHeader(b"content-type"))
        if request.method in (b"POST", b"PUT"):
            audit.target = shape.object_ref(record.info, body)
        if wants_object and isinstance(body, (dict, list)):
            audit.request_object = self._shown(audit, body)

    def _refused(self, audit: _Audit, error: apierrors.StatusError) -> None:
        status = error.status()
        audit.status = shape.response_status(error.code, status)
        if audit.config.level == REQUEST_RESPONSE:
            audit.response_object = status

    def _wants_body(self, audit: _Audit, record: RequestRecord) -> bool:
        """
        Keep the body of a response that will be logged, and of failures
        and deletes (whose C{Status} fills C{responseStatus}); never a
        watch stream (only the Status of a watch that failed).
        """
        if audit.long_running:
            return record.code >= 400
        return (
            audit.config.level == REQUEST_RESPONSE
            or record.code >= 400
            or record.request.method == b"DELETE"
        )

    def _settle_response(self, audit: _Audit, record: RequestRecord) -> None:
        """
        The status and (at RequestResponse) object of a finished response.
        """
        if not audit.captured:
            if audit.status is None:
                audit.status = shape.response_status(record.code)
            return
        content_type = record.request.responseHeaders.getRawHeaders(b"content-type", [None])[0]
        body = shape.decode_body(b"".join(audit.captured), content_type)
        audit.captured = []
        audit.status = shape.response_status(
            record.code, body if shape.is_status(body) else None
        )
        if audit.config.level == REQUEST_RESPONSE and isinstance(body, (dict, list)):
            audit.response_object = self._shown(audit, body)

    def _shown(self, audit: _Audit, obj: Any) -> Any:
        if audit.config.omit_managed_fields:
            return shape.without_managed_fields(obj)
        return obj

    def _emit(self, audit: _Audit, stage: str, record: RequestRecord) -> None:
        """
        Send this stage's event, unless the policy omits the stage.
        """
        if stage == RESPONSE_STARTED:
            audit.started = True
        if stage in audit.config.omit_stages:
            return
        received = shape.micro_time(record.received)
        first = stage == REQUEST_RECEIVED
        event = dict(audit.base)
        event["stage"] = stage
        if not first and audit.impersonated is not None:
            event["impersonatedUser"] = audit.impersonated
        if not first and audit.target is not None:
            event["objectRef"] = audit.target
        if not first and audit.status is not None:
            event["responseStatus"] = audit.status
        if not first and audit.request_object is not None:
            event["requestObject"] = audit.request_object
        if stage == RESPONSE_COMPLETE and audit.response_object is not None:
            event["responseObject"] = audit.response_object
        event["requestReceivedTimestamp"] = received
        event["stageTimestamp"] = received if first else shape.micro_time(self.now())
        if not first and audit.annotations:
            event["annotations"] = audit.annotations
        self.sink.process(_ordered(event))


_ORDER = (
    "kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user",
    "impersonatedUser", "sourceIPs", "userAgent", "objectRef", "responseStatus",
    "requestObject", "responseObject", "requestReceivedTimestamp", "stageTimestamp",
    "annotations",
)


def _ordered(event: dict[str, Any]) -> dict[str, Any]:
    """
    C{event} with its keys in the order Go writes the Event struct.
    """
    return {key: event[key] for key in _ORDER if key in event}

