# -*- test-case-name: tests.test_filters -*-
"""
The handler chain in front of the routes (k8s.io/apiserver's filters):
audit id and cache headers, body limit, authentication, impersonation,
request info, authorization.  Whatever it refuses is answered with a C{Status} here, so the
routes only ever see authorized requests.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from wardled import apierrors
from wardled.api import respond
from wardled.api.context import RequestContext, set_request_context
from wardled.api.requestinfo import RequestInfo, parse_request_info
from wardled.auth.authz import Authorizer, Decision, forbidden_error
from wardled.auth.impersonation import impersonate
from wardled.auth.sar import ReviewFailed
from wardled.auth.user import UserInfo

# A function from a request to its user (or to an awaitable of it).
Authenticator = Callable[[IRequest], UserInfo | Awaitable[UserInfo]]


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
    path = request.path.decode("utf-8", "replace")
    watch = (respond.query_arg(request, "watch") or "").lower() in ("true", "1")
    return parse_request_info(request.method.decode("ascii", "replace"), path, watch)


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
    ) -> None:
        super().__init__()
        self.routes = routes
        self.authenticate = authenticate
        self.authorizer = authorizer or Authorizer()

    def render(self, request: IRequest) -> Any:
        request.setHeader(b"audit-id", str(uuid.uuid4()).encode())
        request.setHeader(b"cache-control", b"no-cache, private")
        admitted = ensureDeferred(self._admit(request))
        outcome: list[object] = []
        admitted.addBoth(outcome.append)
        if outcome:
            return self._render_admitted(request, outcome[0])
        # Waiting for the cluster: render when it answers, unless the client
        # has gone by then.
        gone: list[object] = []
        request.notifyFinish().addBoth(gone.append)  # type: ignore[attr-defined]
        admitted.addCallback(lambda _: self._finish_later(request, outcome[0], gone))
        admitted.addErrback(self._log_failure)
        return NOT_DONE_YET

    def _finish_later(self, request: IRequest, outcome: object, gone: list[object]) -> None:
        if gone:
            return
        body = self._render_admitted(request, outcome)
        if body is NOT_DONE_YET:
            return
        request.write(body)
        request.finish()

    def _log_failure(self, failure: Failure) -> None:
        self.log.failure("rendering an admitted request failed", failure)

    def _render_admitted(self, request: IRequest, outcome: object) -> Any:
        if isinstance(outcome, Failure):
            error = outcome.value
            if not isinstance(error, apierrors.StatusError):
                self.log.failure("request admission failed", outcome)
                error = apierrors.internal_error(str(error))
            return respond.write_status(request, error)
        return self.routes.render(request)

    async def _admit(self, request: IRequest) -> None:
        if _body_size(request) > apierrors.MAX_BODY_BYTES:
            raise apierrors.request_entity_too_large()
        found = self.authenticate(request)
        user = await found if inspect.isawaitable(found) else found
        user = await impersonate(request, user, self._authorize)
        info = _request_info(request)
        decision = await self._authorize(user, info)
        if not decision.allowed:
            if user.is_anonymous and self.authorizer.challenges_anonymous:
                raise apierrors.unauthorized()
            raise forbidden_error(user, info, decision.reason)
        set_request_context(request, RequestContext(info, user))

    async def _authorize(self, user: UserInfo, info: RequestInfo) -> Decision:
        try:
            return await self.authorizer(user, info)
        except ReviewFailed as error:
            raise apierrors.internal_error(str(error)) from error
