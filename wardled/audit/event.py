# -*- test-case-name: tests.test_audit -*-
"""
The pieces of an C{audit.k8s.io/v1 Event}, shaped as Kubernetes
serializes them: Go's field order, empty fields left out, timestamps as
C{metav1.MicroTime} (RFC 3339, UTC, microseconds).

Also the reference's one-line C{legacy} format (C{audit.EventString}).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Mapping
from typing import Any

import yaml
from twisted.web.iweb import IRequest

from wardled.api.requestinfo import RequestInfo
from wardled.auth.user import UserInfo

API_VERSION = "audit.k8s.io/v1"
KIND = "Event"

DECISION_ANNOTATION = "authorization.k8s.io/decision"
REASON_ANNOTATION = "authorization.k8s.io/reason"
ALLOW = "allow"
FORBID = "forbid"

MAX_USER_AGENT = 1024
USER_AGENT_TRUNCATED = "...TRUNCATED"

Object = dict[str, Any]

_YAML_TYPES = ("application/yaml", "application/apply-patch+yaml")


def micro_time(seconds: float) -> str:
    """
    C{seconds} since the epoch as C{metav1.MicroTime} writes it:
    C{2026-07-24T10:11:12.123456Z}.
    """
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def user_info(user: UserInfo) -> Object:
    """
    C{authentication.k8s.io/v1 UserInfo}: username, uid, groups, extra
    (empty ones left out; extra keys sorted, as Go writes maps).
    """
    info: Object = {"username": user.name}
    if user.uid:
        info["uid"] = user.uid
    if user.groups:
        info["groups"] = list(user.groups)
    if user.extra:
        info["extra"] = {key: list(values) for key, values in sorted(user.extra)}
    return info


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def source_ips(request: IRequest) -> list[str]:
    """
    k8s.io/apimachinery's C{SourceIPs}: the C{X-Forwarded-For} chain, then
    C{X-Real-Ip} unless already in it, then the peer's address unless it
    is the last one already.
    """
    found: list[str] = []
    forwarded = request.getHeader(b"x-forwarded-for")
    if forwarded:
        for part in forwarded.decode("latin-1").split(","):
            address = _ip(part)
            if address is not None:
                found.append(address)
    real = request.getHeader(b"x-real-ip")
    if real:
        address = _ip(real.decode("latin-1"))
        if address is not None and address not in found:
            found.append(address)
    peer = _ip(str(getattr(request.getClientAddress(), "host", "")))
    if peer is not None and (not found or found[-1] != peer):
        found.append(peer)
    return found


def user_agent(request: IRequest) -> str:
    """
    The C{User-Agent}, cut at 1024 characters as the reference does.
    """
    raw = request.getHeader(b"user-agent")
    if not raw:
        return ""
    text = raw.decode("utf-8", "replace")
    if len(text) > MAX_USER_AGENT:
        return text[:MAX_USER_AGENT] + USER_AGENT_TRUNCATED
    return text


def object_ref(info: RequestInfo, body: Any = None) -> Object | None:
    """
    The C{objectRef} of a resource request (C{None} otherwise), in Go's
    field order; C{body} (a create's or update's object) fills in what the
    path does not say, as C{LogRequestObject} does.
    """
    if not info.is_resource_request:
        return None
    metadata = body.get("metadata") if isinstance(body, dict) else None
    if not isinstance(metadata, dict):
        metadata = {}

    def from_body(key: str) -> str:
        value = metadata.get(key)
        return value if isinstance(value, str) else ""

    candidates = (
        ("resource", info.resource),
        ("namespace", info.namespace or from_body("namespace")),
        ("name", info.name or from_body("name")),
        ("uid", from_body("uid")),
        ("apiGroup", info.api_group),
        ("apiVersion", info.api_version),
        ("resourceVersion", from_body("resourceVersion")),
        ("subresource", info.subresource),
    )
    return {key: value for key, value in candidates if value}


def response_status(code: int, status: Mapping[str, Any] | None = None) -> Object:
    """
    The C{responseStatus}: a C{metav1.Status} with the bounded fields of
    the response's Status (when it was one) or just the code.
    """
    shown: Object = {"metadata": {}}
    if status is not None:
        for key in ("status", "message", "reason", "details"):
            value = status.get(key)
            if value:
                shown[key] = value
        code = int(status.get("code") or code)
    if code:
        shown["code"] = code
    return shown


def is_status(body: Any) -> bool:
    """
    Whether a decoded body is a C{Status}.
    """
    return isinstance(body, dict) and body.get("kind") == "Status"


def decode_body(data: bytes, content_type: bytes | None) -> Any:
    """
    A request or response body as data (JSON, or YAML for YAML media
    types), or C{None} when it is empty or neither.
    """
    if not data.strip():
        return None
    media = (content_type or b"").split(b";", 1)[0].strip().decode("latin-1").lower()
    try:
        if media in _YAML_TYPES:
            return yaml.safe_load(data)
        return json.loads(data)
    except (ValueError, yaml.YAMLError):
        return None


def without_managed_fields(obj: Any) -> Any:
    """
    C{obj} (an object, a list of them or a Table) without
    C{metadata.managedFields}; C{obj} itself is left alone.
    """
    if not isinstance(obj, dict):
        return obj
    copy = dict(obj)
    metadata = copy.get("metadata")
    if isinstance(metadata, dict) and "managedFields" in metadata:
        copy["metadata"] = {k: v for k, v in metadata.items() if k != "managedFields"}
    for key in ("items", "rows"):
        items = copy.get(key)
        if isinstance(items, list):
            copy[key] = [_row_or_item(item, key) for item in items]
    return copy


def _row_or_item(item: Any, key: str) -> Any:
    if key == "rows" and isinstance(item, dict) and "object" in item:
        return {**item, "object": without_managed_fields(item["object"])}
    return without_managed_fields(item)


def authorization_annotations(allowed: bool, reason: str) -> dict[str, str]:
    """
    What the authorization filter records.
    """
    return {DECISION_ANNOTATION: ALLOW if allowed else FORBID, REASON_ANNOTATION: reason}


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _quoted_list(values: Any) -> str:
    return ",".join(_go_quote(str(value)) for value in values)


def _rfc3339_nano(micro: str) -> str:
    """
    A MicroTime string as Go's C{RFC3339Nano} prints it (trailing zeros of
    the fraction dropped).
    """
    head, dot, fraction = micro.rstrip("Z").partition(".")
    fraction = fraction.rstrip("0")
    return f"{head}.{fraction}Z" if dot and fraction else f"{head}Z"


def legacy_line(event: Mapping[str, Any]) -> str:
    """
    The reference's C{legacy} log format (C{audit.EventString}).
    """
    user = event.get("user") or {}
    username, groups = "<none>", "<none>"
    if user.get("username"):
        username = user["username"]
        if user.get("groups"):
            groups = _quoted_list(user["groups"])
    as_user, as_groups = "<self>", "<lookup>"
    impersonated = event.get("impersonatedUser")
    if impersonated is not None:
        as_user = impersonated.get("username", "")
        if impersonated.get("groups") is not None:
            as_groups = _quoted_list(impersonated["groups"])
    namespace = (event.get("objectRef") or {}).get("namespace") or "<none>"
    status = event.get("responseStatus")
    response = str(status.get("code", 0)) if status is not None else "<deferred>"
    ips = event.get("sourceIPs") or ["<unknown>"]
    fields = (
        ("id", event["auditID"]),
        ("stage", event["stage"]),
        ("ip", ips[0]),
        ("method", event["verb"]),
        ("user", username),
        ("groups", groups),
        ("as", as_user),
        ("asgroups", as_groups),
        ("user-agent", event.get("userAgent", "")),
        ("namespace", namespace),
        ("uri", event["requestURI"]),
    )
    text = " ".join(f"{name}={_go_quote(value)}" for name, value in fields)
    received = _rfc3339_nano(event["requestReceivedTimestamp"])
    return f'{received} AUDIT: {text} response="{response}"'
