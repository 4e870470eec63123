# -*- test-case-name: tests.test_reviews -*-
"""
Authorization by the cluster: a C{SubjectAccessReview}
(authorization.k8s.io/v1) sent to kube-apiserver with the user, groups,
uid, extra and what the request does, as k8s.io/apiserver's delegating
authorizer does.  Allowed answers are cached for
C{--authorization-webhook-cache-authorized-ttl}, denials for
C{--authorization-webhook-cache-unauthorized-ttl} (10 s each).  When the
cluster cannot be asked, the request fails with a 500, as in Kubernetes;
that failure is not cached.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.logger import Logger

from wardled.api.requestinfo import RequestInfo
from wardled.auth.ttlcache import TTLCache
from wardled.auth.user import UserInfo
from wardled.kube.client import KubeAPIError, KubeClient, KubeUnavailable

SUBJECT_ACCESS_REVIEWS_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
DEFAULT_TTL = 10.0

log = Logger()


class ReviewFailed(Exception):
    """
    The cluster could not be asked; the message says why.
    """


@attrs.frozen
class Review:
    """
    The cluster's answer.
    """

    allowed: bool
    reason: str = ""


def _without_empty(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if value not in ("", None, [], {})}


def review_spec(user: UserInfo, info: RequestInfo) -> dict[str, Any]:
    """
    The SubjectAccessReview C{spec} for C{user} doing C{info} (empty fields
    left out, as Go's C{omitempty} does).
    """
    if info.is_resource_request:
        attributes = {
            "resourceAttributes": _without_empty(
                {
                    "namespace": info.namespace,
                    "verb": info.verb,
                    "group": info.api_group,
                    "version": info.api_version,
                    "resource": info.resource,
                    "subresource": info.subresource,
                    "name": info.name,
                }
            )
        }
    else:
        attributes = {"nonResourceAttributes": {"path": info.path, "verb": info.verb}}
    return _without_empty(
        {
            **attributes,
            "user": user.name,
            "groups": list(user.groups),
            "extra": {key: list(values) for key, values in user.extra},
            "uid": user.uid,
        }
    )


def subject_access_review(spec: dict[str, Any]) -> dict[str, Any]:
    """
    The whole SubjectAccessReview object for C{spec}.
    """
    return {
        "kind": "SubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": {"allowed": False},
    }


def _review_of(answer: Any) -> Review:
    status = answer.get("status") if isinstance(answer, dict) else None
    if not isinstance(status, dict):
        return Review(False, "")
    allowed = status.get("allowed") is True and status.get("denied") is not True
    return Review(allowed, str(status.get("reason") or ""))


class SubjectAccessReviewer:
    """
    Ask the cluster whether a user may do something.
    """

    def __init__(
        self,
        client: KubeClient,
        clock: Any,
        authorized_ttl: float = DEFAULT_TTL,
        unauthorized_ttl: float = DEFAULT_TTL,
    ) -> None:
        self.client = client
        self._answers: TTLCache[Review] = TTLCache(
            clock, lambda review: authorized_ttl if review.allowed else unauthorized_ttl
        )

    async def review(self, user: UserInfo, info: RequestInfo) -> Review:
        """
        The cluster's answer for C{user} doing C{info}.

        @raise ReviewFailed: the cluster could not be asked.
        """
        spec = review_spec(user, info)
        key = json.dumps(spec, sort_keys=True)
        return await self._answers.get(key, lambda: self._ask(spec))

    async def _ask(self, spec: dict[str, Any]) -> Review:
        try:
            answer = await self.client.post(
                SUBJECT_ACCESS_REVIEWS_PATH, subject_access_review(spec)
            )
        except (KubeAPIError, KubeUnavailable) as error:
            log.warn("SubjectAccessReview failed: {error}", error=error)  # noqa: G010 - twisted.logger has no warning()
            raise ReviewFailed(f"SubjectAccessReview failed: {error}") from error
        return _review_of(answer)
