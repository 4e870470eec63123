# -*- test-case-name: tests.test_api -*-
"""
GET of one object.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from wardled import apierrors
from wardled.api import negotiate, respond
from wardled.api.scope import Scope


async def get(scope: Scope, request: IRequest) -> bytes:
    output = negotiate.negotiate_output(
        respond.header(request, "accept"), allow_table=True, allow_partial=True
    )
    if respond.query_arg(request, "export") is not None:
        raise apierrors.bad_request("the export parameter, deprecated since v1.14, is no longer supported")
    cached = await scope.store.read(
        scope.namespace, scope.name, respond.query_arg(request, "resourceVersion") or ""
    )
    return respond.write_object(request, scope.resource, scope.version, cached, output)
