# -*- test-case-name: tests.test_api -*-
"""
PUT to an object: replace it (200), guarded by its resourceVersion; the
changed fields go to the request's field manager.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.web.iweb import IRequest

from wardled import apierrors
from wardled.api import negotiate, respond
from wardled.api.scope import Scope
from wardled.api.writeoptions import WriteOptions, decode_object, parse_write_options
from wardled.registry.fieldmanager import FieldManager

Object = dict[str, Any]


def check_name(scope: Scope, obj: dict[str, Any]) -> None:
    """
    checkName: the body names the object the URL names.
    """
    metadata = obj.setdefault("metadata", {})
    name = metadata.get("name", "")
    if name != scope.name:
        raise apierrors.bad_request(
            f"the name of the object ({name}) does not match the name on the URL "
            f"({scope.name})"
        )
    namespace = metadata.get("namespace", "")
    if scope.namespace and namespace and namespace != scope.namespace:
        raise apierrors.bad_request(
            f"the namespace of the object ({namespace}) does not match the "
            f"namespace on the request ({scope.namespace})"
        )


def record_update(scope: Scope, options: WriteOptions) -> Callable[[Object, Object], Object]:
    """
    What the store runs on each attempt: record the request's Update in
    C{managedFields}, against the live object it is about to replace.
    """
    manager = FieldManager(scope.resource, scope.store.now)

    def prepare(live: Object, new: Object) -> Object:
        return manager.update(live, new, options.manager, scope.version)

    return prepare


async def update(scope: Scope, request: IRequest) -> bytes:
    output = negotiate.negotiate_output(
        respond.header(request, "accept"), allow_table=False, allow_partial=False
    )
    options = parse_write_options(request, "UpdateOptions")
    obj = decode_object(scope, request, options)
    check_name(scope, obj)
    updated = await scope.store.update(
        scope.namespace,
        scope.name,
        obj,
        scope.user,
        options.dry_run,
        prepare=record_update(scope, options),
    )
    body = respond.object_body(scope.resource, scope.version, updated, output, request)
    return respond.write(request, body, output)
