# -*- test-case-name: tests.test_filters -*-
"""
The handler chain in front of the routes (k8s.io/apiserver's filters):
audit id and cache headers, body limit, authentication, request info,
authorization.  Whatever it refuses is answered with a C{Status} here, so the
routes only ever see authorized requests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from wardled import apierrors
from wardled.api import respond
from wardled.api.context import RequestContext, set_request_context
from wardled.api.requestinfo import RequestInfo, parse_request_info
from wardled.auth.authz import authorize, forbidden_error
from wardled.auth.policy import IPolicy
from wardled.auth.user import UserInfo

Authenticator = Callable[[IRequest], UserInfo]


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
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        routes: IResource,
        authenticate: Authenticator,
        policy: IPolicy | None = None,
    ) -> None:
        super().__init__()
        self.routes = routes
        self.authenticate = authenticate
        self.policy = policy

    def render(self, request: IRequest) -> Any:
        request.setHeader(b"audit-id", str(uuid.uuid4()).encode())
        request.setHeader(b"cache-control", b"no-cache, private")
        try:
            self._admit(request)
        except apierrors.StatusError as error:
            return respond.write_status(request, error)
        return self.routes.render(request)

    def _admit(self, request: IRequest) -> None:
        if _body_size(request) > apierrors.MAX_BODY_BYTES:
            raise apierrors.request_entity_too_large()
        user = self.authenticate(request)
        info = _request_info(request)
        decision = authorize(user, info, self.policy)
        if not decision.allowed:
            if user.is_anonymous:
                raise apierrors.unauthorized()
            raise forbidden_error(user, info)
        set_request_context(request, RequestContext(info, user))
