# -*- test-case-name: tests.test_api -*-
"""
POST to a collection: create one object (201), recording its fields as
owned by the request's field manager.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from wardled.api import negotiate, respond
from wardled.api.scope import Scope
from wardled.api.writeoptions import decode_object, parse_write_options
from wardled.registry.fieldmanager import FieldManager


async def create(scope: Scope, request: IRequest) -> bytes:
    output = negotiate.negotiate_output(
        respond.header(request, "accept"), allow_table=False, allow_partial=False
    )
    options = parse_write_options(request, "CreateOptions")
    obj = decode_object(scope, request, options)
    obj = FieldManager(scope.resource, scope.store.now).update(
        None, obj, options.manager, scope.version
    )
    created = await scope.store.create(scope.namespace, obj, scope.user, options.dry_run)
    body = respond.object_body(scope.resource, scope.version, created, output, request)
    return respond.write(request, body, output, 201)
