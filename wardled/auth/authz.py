# -*- test-case-name: tests.test_auth -*-
"""
Authorization: may this user do this?

The chain is the reference's, with a stand-alone policy before the cluster:

  1. members of C{system:masters} may do everything;
  2. C{--authorization-always-allow-paths} (C{/healthz}, C{/readyz},
     C{/livez}) are open to anyone;
  3. the rules of C{--authorization-policy-file} (L{wardled.auth.policy})
     grant what they list;
  4. behind kube-apiserver, a SubjectAccessReview (L{wardled.auth.sar})
     decides the rest.

A stand-alone server (no cluster to ask) stands in for the roles every
Kubernetes cluster has by default: health sub-paths and C{/version} are open
to anyone (C{system:public-info-viewer}) and authenticated users may read
discovery and OpenAPI documents (C{system:discovery}).  Everything else is
refused with the reference's wording.
"""

from __future__ import annotations

import attrs

from wardled import apierrors
from wardled.api.requestinfo import RequestInfo
from wardled.auth.policy import IPolicy, path_matches
from wardled.auth.sar import SubjectAccessReviewer
from wardled.auth.user import MASTERS, UserInfo

ALWAYS_ALLOW_PATHS = ("/healthz", "/livez", "/readyz", "/version")

# --authorization-always-allow-paths' default, as in the reference.
DEFAULT_ALWAYS_ALLOW_PATHS = ("/healthz", "/readyz", "/livez")

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
    return Decision(False)


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


def forbidden_error(
    user: UserInfo, info: RequestInfo, reason: str = ""
) -> apierrors.StatusError:
    """
    The 403 for a denied request; a non-empty C{reason} (the cluster's) is
    appended as Kubernetes does.
    """
    message = forbidden_message(user, info)
    if reason:
        message = f"{message}: {reason}"
    if not info.is_resource_request:
        return apierrors.forbidden(None, info.path, message)
    return apierrors.forbidden(
        apierrors.GroupResource(info.api_group, info.resource), info.name, message
    )


@attrs.frozen
class Authorizer:
    """
    The whole authorization chain (see the module docstring).

    @ivar reviewer: asks the cluster; C{None} for a stand-alone server.
    @ivar always_allow_paths: C{--authorization-always-allow-paths}.
    """

    policy: IPolicy | None = None
    reviewer: SubjectAccessReviewer | None = None
    always_allow_paths: tuple[str, ...] = DEFAULT_ALWAYS_ALLOW_PATHS

    @property
    def challenges_anonymous(self) -> bool:
        """
        Whether a denied anonymous request is answered 401 (asking for
        credentials) rather than 403.  Stand-alone, anonymous users can only
        ever reach the open paths; behind kube-apiserver they are a user
        like any other, as in Kubernetes.
        """
        return self.reviewer is None

    async def __call__(self, user: UserInfo, info: RequestInfo) -> Decision:
        """
        Whether C{user} may do C{info}.

        @raise ReviewFailed: only the cluster could say, and it could not be
            asked.
        """
        if MASTERS in user.groups:
            return Decision(True)
        if not info.is_resource_request and path_matches(
            self.always_allow_paths, info.path
        ):
            return Decision(True)
        if self.reviewer is None:
            return authorize(user, info, self.policy)
        if self.policy is not None and self.policy.allows(user, info):
            return Decision(True)
        review = await self.reviewer.review(user, info)
        return Decision(review.allowed, review.reason)
