# -*- test-case-name: tests.test_api -*-
"""
GET of a collection: a list, a Table or PartialObjectMetadataList.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from wardled.api import negotiate, respond
from wardled.api.listoptions import parse_list_options
from wardled.api.scope import Scope


async def list_objects(scope: Scope, request: IRequest) -> bytes:
    output = negotiate.negotiate_output(
        respond.header(request, "accept"), allow_table=True, allow_partial=True
    )
    options = parse_list_options(request)
    page = await scope.store.list(scope.namespace, options)
    return respond.write_list(request, scope.resource, scope.version, page, output)
