# -*- test-case-name: tests.test_auth -*-
"""
Authorization for a stand-alone server (no cluster to ask).

As in the reference's chain: members of C{system:masters} may do everything,
health and version paths are open to anyone, authenticated users may read
discovery and OpenAPI documents (Kubernetes' default C{system:discovery}
role), the rules of C{--authorization-policy-file} (L{wardled.auth.policy})
grant what they list, and everything else is refused with the reference's
wording.  Delegated authorization (SubjectAccessReview) comes in a later
issue.
"""

from __future__ import annotations

import attrs

from wardled import apierrors
from wardled.api.requestinfo import RequestInfo
from wardled.auth.policy import IPolicy
from wardled.auth.user import MASTERS, UserInfo

ALWAYS_ALLOW_PATHS = ("/healthz", "/livez", "/readyz", "/version")

# What Kubernetes' default RBAC role system:discovery grants every
# authenticated user: reading discovery and OpenAPI documents.  Without it a
# non-admin kubectl cannot even learn what the server serves, so it could not
# show the 403 for the resource itself.
DISCOVERY_PATHS = ("/api", "/apis", "/openapi")


@attrs.frozen
class Decision:
    allowed: bool
    reason: str = ""


def is_open_path(path: str) -> bool:
    """
    Whether C{path} is one of the always-allowed paths or below one.
    """
    trimmed = path.rstrip("/") or "/"
    return any(
        trimmed == open_path or trimmed.startswith(open_path + "/")
        for open_path in ALWAYS_ALLOW_PATHS
    )


def authorize(
    user: UserInfo, info: RequestInfo, policy: IPolicy | None = None
) -> Decision:
    """
    Whether C{user} may do what C{info} describes.

    @param policy: the stand-alone policy consulted after the built-in
        rules, if any.
    """
    if MASTERS in user.groups:
        return Decision(True)
    if is_open_path(info.path):
        return Decision(True)
    if is_discovery(user, info):
        return Decision(True)
    if policy is not None and policy.allows(user, info):
        return Decision(True)
    return Decision(False, "no rule grants access")


def is_discovery(user: UserInfo, info: RequestInfo) -> bool:
    """
    Whether C{info} is an authenticated user reading a discovery or OpenAPI
    document (never a resource).
    """
    if user.is_anonymous or info.is_resource_request or info.verb != "get":
        return False
    path = info.path.rstrip("/")
    return any(path == p or path.startswith(p + "/") for p in DISCOVERY_PATHS)


def forbidden_message(user: UserInfo, info: RequestInfo) -> str:
    """
    BuildForbiddenMessage.
    """
    if not info.is_resource_request:
        return f'User "{user.name}" cannot {info.verb} path "{info.path}"'
    resource = info.resource
    if info.subresource:
        resource = f"{resource}/{info.subresource}"
    where = (
        f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
    )
    return (
        f'User "{user.name}" cannot {info.verb} resource "{resource}" in API group '
        f'"{info.api_group}" {where}'
    )


def forbidden_error(user: UserInfo, info: RequestInfo) -> apierrors.StatusError:
    """
    The 403 for a denied request.
    """
    message = forbidden_message(user, info)
    if not info.is_resource_request:
        return apierrors.forbidden(None, info.path, message)
    return apierrors.forbidden(
        apierrors.GroupResource(info.api_group, info.resource), info.name, message
    )
