# -*- test-case-name: tests.test_authn -*-
"""
Impersonation: C{Impersonate-User}, C{Impersonate-Group},
C{Impersonate-Uid} and C{Impersonate-Extra-<key>} headers make a request
act as another user, for callers allowed to C{impersonate} each of them (as
k8s.io/apiserver's C{WithImpersonation} filter does; C{kubectl --as}).

Each thing impersonated is authorized separately with verb C{impersonate}:
the user (resource C{users}, or C{serviceaccounts} in its namespace for
C{system:serviceaccount:<ns>:<name>}), each group (C{groups}), each extra
value (C{userextras/<key>} in C{authentication.k8s.io}) and the uid
(C{uids} in C{authentication.k8s.io}).  The headers are removed before the
request goes on.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from wardled import apierrors
from wardled.api.requestinfo import RequestInfo
from wardled.auth.authz import Decision, forbidden_error
from wardled.auth.user import (
    ANONYMOUS,
    AUTHENTICATED,
    UNAUTHENTICATED,
    UserInfo,
)

USER_HEADER = "Impersonate-User"
GROUP_HEADER = "Impersonate-Group"
UID_HEADER = "Impersonate-Uid"
EXTRA_PREFIX = "Impersonate-Extra-"

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
AUTHENTICATION_GROUP = "authentication.k8s.io"

Authorize = Callable[[UserInfo, RequestInfo], Awaitable[Decision]]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _header_values(request: Any, name: str) -> list[str]:
    raw = request.requestHeaders.getRawHeaders(name.encode("latin-1")) or []
    return [_text(value) for value in raw]


def _extra_headers(request: Any) -> dict[str, list[str]]:
    extra: dict[str, list[str]] = {}
    prefix = EXTRA_PREFIX.lower()
    for name, values in request.requestHeaders.getAllRawHeaders():
        lowered = _text(name).lower()
        if lowered.startswith(prefix) and len(lowered) > len(prefix):
            key = urllib.parse.unquote(lowered[len(prefix) :])
            extra.setdefault(key, []).extend(_text(value) for value in values)
    return extra


def _user_target(name: str) -> RequestInfo:
    if name.startswith(SERVICE_ACCOUNT_PREFIX):
        namespace, _, account = name[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
        if namespace and account:
            return _target("", "serviceaccounts", account, namespace=namespace)
    return _target("", "users", name)


def _target(
    group: str, resource: str, name: str, namespace: str = "", subresource: str = ""
) -> RequestInfo:
    return RequestInfo(
        path="",
        verb="impersonate",
        is_resource_request=True,
        api_group=group,
        api_version="v1",
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )


def _impersonated_groups(name: str, groups: list[str]) -> tuple[str, ...]:
    """
    The groups of the impersonated user, as Kubernetes makes them: a
    service account asked for without groups gets its service-account
    groups; C{system:authenticated} is added unless it or
    C{system:unauthenticated} was asked for (C{system:unauthenticated}
    for the anonymous user).
    """
    found = list(groups)
    if not found and name.startswith(SERVICE_ACCOUNT_PREFIX):
        namespace = name[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")[0]
        found = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    if name == ANONYMOUS:
        if UNAUTHENTICATED not in found:
            found.append(UNAUTHENTICATED)
    elif AUTHENTICATED not in found and UNAUTHENTICATED not in found:
        found.append(AUTHENTICATED)
    return tuple(found)


def strip_impersonation_headers(request: Any) -> None:
    """
    Remove every impersonation header from C{request}.
    """
    headers = request.requestHeaders
    for name, _ in list(headers.getAllRawHeaders()):
        if _text(name).lower().startswith("impersonate-"):
            headers.removeHeader(name)


async def impersonate(request: Any, requestor: UserInfo, authorize: Authorize) -> UserInfo:
    """
    The user C{request} acts as: C{requestor} itself, or the user its
    impersonation headers name when C{requestor} may impersonate all of it.

    @raise apierrors.StatusError: 403 naming the first thing C{requestor}
        may not impersonate; 500 when groups, extra or a uid are asked for
        without a user (as in Kubernetes).
    """
    if not any(
        name.lower().startswith(b"impersonate-")
        for name, _ in request.requestHeaders.getAllRawHeaders()
    ):
        return requestor  # the common case, found in one look at the names
    names = _header_values(request, USER_HEADER)
    groups = _header_values(request, GROUP_HEADER)
    uids = _header_values(request, UID_HEADER)
    extra = _extra_headers(request)
    strip_impersonation_headers(request)
    if not (names or groups or uids or extra):
        return requestor
    if not names:
        raise apierrors.internal_error(
            "requested impersonation of groups, extra or a uid without impersonating a user"
        )
    name = names[0]
    targets = [_user_target(name)]
    targets.extend(_target("", "groups", group) for group in groups)
    for key, values in extra.items():
        targets.extend(
            _target(AUTHENTICATION_GROUP, "userextras", value, subresource=key)
            for value in values
        )
    targets.extend(_target(AUTHENTICATION_GROUP, "uids", uid) for uid in uids[:1])
    for target in targets:
        decision = await authorize(requestor, target)
        if not decision.allowed:
            raise forbidden_error(requestor, target, decision.reason)
    return UserInfo(
        name,
        _impersonated_groups(name, groups),
        uid=uids[0] if uids else "",
        extra=tuple(sorted((key, tuple(values)) for key, values in extra.items())),
    )
