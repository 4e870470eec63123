# -*- test-case-name: tests.test_apierrors -*-
"""
API errors as Kubernetes C{Status} objects (k8s.io/apimachinery/pkg/api/errors).

Every failure a client can see is a L{StatusError}.  The registry raises them;
the HTTP layer writes L{StatusError.status} as the body and L{StatusError.code}
as the HTTP status.  Messages are built exactly as the Go reference builds
them, because clients (kubectl among them) print them verbatim.
"""

from __future__ import annotations

from typing import Any

import attrs

from wardled.apis.field import FieldError, aggregate

MAX_BODY_BYTES = 3 * 1024 * 1024


@attrs.frozen
class GroupResource:
    """
    A resource within a group, printed as C{flunders.wardle.example.com}.
    """

    group: str
    resource: str

    def __str__(self) -> str:
        if not self.group:
            return self.resource
        return f"{self.resource}.{self.group}"


@attrs.frozen
class GroupKind:
    """
    A kind within a group, printed as C{Flunder.wardle.example.com}.
    """

    group: str
    kind: str

    def __str__(self) -> str:
        if not self.group:
            return self.kind
        return f"{self.kind}.{self.group}"


class StatusError(Exception):
    """
    An error with a Kubernetes C{Status} body.
    """

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        list_meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.list_meta = list_meta or {}

    def status(self) -> dict[str, Any]:
        """
        The C{Status} object, keys in the order Go writes them.
        """
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.list_meta),
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body

    def __repr__(self) -> str:
        return f"StatusError({self.code}, {self.reason!r}, {self.message!r})"


def _details(
    name: str = "",
    group: str = "",
    kind: str = "",
    uid: str = "",
    causes: list[dict[str, str]] | None = None,
    retry_after: int = 0,
) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for key, value in (("name", name), ("group", group), ("kind", kind), ("uid", uid)):
        if value:
            details[key] = value
    if causes:
        details["causes"] = causes
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return details


def _resource_details(gr: GroupResource, name: str) -> dict[str, Any]:
    return _details(name=name, group=gr.group, kind=gr.resource)


def not_found(gr: GroupResource, name: str) -> StatusError:
    return StatusError(
        404, "NotFound", f'{gr} "{name}" not found', _resource_details(gr, name)
    )


def already_exists(gr: GroupResource, name: str) -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{gr} "{name}" already exists',
        _resource_details(gr, name),
    )


def generate_name_conflict(gr: GroupResource, name: str) -> StatusError:
    details = _resource_details(gr, name)
    details["retryAfterSeconds"] = 1
    return StatusError(
        409,
        "AlreadyExists",
        f'{gr} "{name}" already exists, the server was not able to generate a '
        "unique name for the object",
        details,
    )


def conflict(gr: GroupResource, name: str, reason: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {gr} "{name}": {reason}',
        _resource_details(gr, name),
    )


OBJECT_MODIFIED = (
    "the object has been modified; please apply your changes to the latest "
    "version and try again"
)


def invalid(gk: GroupKind, name: str, errors: list[FieldError]) -> StatusError:
    causes = [
        {"reason": e.type.value, "message": e.body(), "field": e.field} for e in errors
    ]
    message = f'{gk} "{name}" is invalid'
    if errors:
        message = f"{message}: {aggregate(errors)}"
    return StatusError(
        422,
        "Invalid",
        message,
        _details(name=name, group=gk.group, kind=gk.kind, causes=causes),
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)



def unauthorized(message: str = "Unauthorized") -> StatusError:
    return StatusError(401, "Unauthorized", message)


def forbidden(gr: GroupResource | None, name: str, reason: str) -> StatusError:
    """
    NewForbidden: C{gr} is None for non-resource paths (C{forbidden: ...}).
    """
    if gr is None:
        return StatusError(403, "Forbidden", f"forbidden: {reason}", _details(name=name))
    if name:
        message = f'{gr} "{name}" is forbidden: {reason}'
    else:
        message = f"{gr} is forbidden: {reason}"
    return StatusError(403, "Forbidden", message, _resource_details(gr, name))


def method_not_supported(gr: GroupResource, action: str) -> StatusError:
    return StatusError(
        405,
        "MethodNotAllowed",
        f'{action} is not supported on resources of kind "{gr}"',
        _details(group=gr.group, kind=gr.resource),
    )


def not_acceptable(accepted: list[str]) -> StatusError:
    return StatusError(
        406,
        "NotAcceptable",
        "only the following media types are accepted: " + ", ".join(accepted),
    )


def unsupported_media_type(accepted: list[str]) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types "
        "include: " + ", ".join(accepted),
    )


def request_entity_too_large(limit: int = MAX_BODY_BYTES) -> StatusError:
    return StatusError(
        413,
        "RequestEntityTooLarge",
        f"Request entity too large: limit is {limit}",
    )


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def internal_error(cause: str) -> StatusError:
    return StatusError(
        500,
        "InternalError",
        f"Internal error occurred: {cause}",
        _details(causes=[{"message": cause}]),
    )


def service_unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message)


def timeout(message: str, retry_after: int = 0) -> StatusError:
    return StatusError(
        504, "Timeout", f"Timeout: {message}", _details(retry_after=retry_after)
    )


def server_not_found() -> StatusError:
    """
    The 404 for a path no API serves.
    """
    return StatusError(
        404,
        "NotFound",
        "the server could not find the requested resource",
        {},
    )
