# -*- test-case-name: tests.test_filters -*-
"""
Per-request facts the filters establish and the handlers read: the parsed
L{RequestInfo} and the authenticated user.
"""

from __future__ import annotations

import attrs
from twisted.web.iweb import IRequest

from wardled.api.requestinfo import RequestInfo
from wardled.auth.user import UserInfo

_ATTRIBUTE = "_wardled_context"


@attrs.frozen
class RequestContext:
    info: RequestInfo
    user: UserInfo


def set_request_context(request: IRequest, context: RequestContext) -> None:
    setattr(request, _ATTRIBUTE, context)


def request_context(request: IRequest) -> RequestContext:
    """
    The context the filters attached.

    @raise LookupError: the request did not pass through the filters.
    """
    context = getattr(request, _ATTRIBUTE, None)
    if context is None:
        raise LookupError("request has no wardled context")
    return context
