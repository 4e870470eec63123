# -*- test-case-name: tests.test_reviews -*-
"""
Bearer tokens checked by the cluster: a C{TokenReview}
(authentication.k8s.io/v1) sent to kube-apiserver, as k8s.io/apiserver's
delegating authenticator does, with answers cached for
C{--authentication-token-webhook-cache-ttl} (10 s).

Tokens are cached under their SHA-256, never in clear.  When the cluster
cannot be asked the token is a failed credential (401), as in Kubernetes;
that failure is not cached, so the next request asks again.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from wardled.auth.interfaces import AuthenticationFailed, ITokenChecker
from wardled.auth.ttlcache import TTLCache
from wardled.auth.user import UserInfo
from wardled.kube.client import KubeAPIError, KubeClient, KubeUnavailable

TOKEN_REVIEWS_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
DEFAULT_TTL = 10.0

log = Logger()


def token_review(token: str) -> dict[str, Any]:
    """
    The TokenReview that asks about C{token}.
    """
    return {
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": {"token": token},
        "status": {"user": {}},
    }


def _extra(document: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(document, dict):
        return ()
    return tuple(
        sorted(
            (str(key), tuple(str(v) for v in values or ()))
            for key, values in document.items()
        )
    )


def reviewed_user(review: Any) -> UserInfo | None:
    """
    The user a TokenReview answer names, or C{None} when it says the token
    is not authenticated.
    """
    status = review.get("status") if isinstance(review, dict) else None
    if not isinstance(status, dict) or status.get("authenticated") is not True:
        return None
    user = status.get("user") or {}
    return UserInfo(
        str(user.get("username", "")),
        tuple(str(group) for group in user.get("groups") or ()),
        uid=str(user.get("uid", "")),
        extra=_extra(user.get("extra")),
    )


@implementer(ITokenChecker)
class TokenReviewer:
    """
    Ask the cluster who a bearer token belongs to.
    """

    def __init__(self, client: KubeClient, clock: Any, ttl: float = DEFAULT_TTL) -> None:
        self.client = client
        self._answers: TTLCache[UserInfo | None] = TTLCache(clock, lambda _: ttl)

    async def check(self, token: str) -> UserInfo | None:
        key = hashlib.sha256(token.encode("utf-8")).hexdigest()
        return await self._answers.get(key, lambda: self._ask(token))

    async def _ask(self, token: str) -> UserInfo | None:
        try:
            review = await self.client.post(TOKEN_REVIEWS_PATH, token_review(token))
        except (KubeAPIError, KubeUnavailable) as error:
            log.warn("TokenReview failed: {error}", error=error)  # noqa: G010 - twisted.logger has no warning()
            raise AuthenticationFailed(f"TokenReview failed: {error}") from error
        user = reviewed_user(review)
        if user is not None and not user.name:
            return None
        return user
