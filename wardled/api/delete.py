# -*- test-case-name: tests.test_api -*-
"""
DELETE of one object or of a collection.

DeleteOptions come from the query and, optionally, from a C{DeleteOptions}
body, as in the reference.  A deleted object is answered with a success
C{Status}; one kept by finalizers with the object itself (now carrying a
C{deletionTimestamp}); a collection with the list of what was deleted.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from wardled import apierrors
from wardled.api import body as request_body
from wardled.api import negotiate, respond
from wardled.api.listoptions import parse_list_options
from wardled.api.scope import Scope
from wardled.api.writeoptions import parse_write_options
from wardled.apis import field
from wardled.apis.field import FieldError
from wardled.apis.meta import DELETE_OPTIONS
from wardled.apis.schema import DecodeContext, DecodeError
from wardled.registry.store import BACKGROUND, FOREGROUND, ORPHAN, DeleteOptions

DELETE_OPTIONS_KIND = apierrors.GroupKind("meta.k8s.io", "DeleteOptions")
POLICIES = [FOREGROUND, BACKGROUND, ORPHAN, "nil"]


def _body_options(request: IRequest) -> dict[str, Any]:
    request.content.seek(0)
    data = request.content.read()
    if not data.strip():
        return {}
    parsed = request_body.read_body(data, respond.header(request, "content-type")).obj
    kind = parsed.get("kind", "DeleteOptions")
    if kind != "DeleteOptions":
        raise apierrors.bad_request(
            f'{kind} in version "v1" cannot be handled as a DeleteOptions'
        )
    try:
        return DELETE_OPTIONS.decode_root(parsed, DecodeContext())
    except DecodeError as error:
        # A field of the wrong type: 400 with Go's text (Kubernetes 1.35+;
        # it was a 500 before, kubernetes/kubernetes#133358).
        raise apierrors.bad_request(str(error)) from None


def parse_delete_options(request: IRequest) -> DeleteOptions:
    """
    Merge query and body DeleteOptions and check them.
    """
    write_options = parse_write_options(request, "DeleteOptions")
    body = _body_options(request)
    policy = respond.query_arg(request, "propagationPolicy") or body.get("propagationPolicy")
    orphan = _orphan_dependents(respond.query_arg(request, "orphanDependents"), body)
    preconditions = body.get("preconditions") or {}
    errors: list[FieldError] = []
    if policy is not None and policy not in POLICIES[:3]:
        errors.append(field.not_supported("propagationPolicy", policy, POLICIES))
    if policy is not None and orphan is not None:
        errors.append(
            field.invalid(
                "propagationPolicy",
                policy,
                "orphanDependents and deletionPropagation cannot be both set",
            )
        )
    if errors:
        raise apierrors.invalid(DELETE_OPTIONS_KIND, "", errors)
    return DeleteOptions(
        precondition_uid=preconditions.get("uid"),
        precondition_resource_version=preconditions.get("resourceVersion"),
        propagation_policy=policy,
        orphan_dependents=orphan,
        dry_run=write_options.dry_run or bool(body.get("dryRun")),
    )


def _orphan_dependents(query: str | None, body: dict[str, Any]) -> bool | None:
    if query is not None:
        return query.lower() in ("true", "1")
    value = body.get("orphanDependents")
    return value if isinstance(value, bool) else None


def success_status(scope: Scope, obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata", {})
    details = {
        "name": metadata.get("name", scope.name),
        "group": scope.resource.group,
        "kind": scope.resource.plural,
    }
    if metadata.get("uid"):
        details["uid"] = metadata["uid"]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


async def delete(scope: Scope, request: IRequest) -> bytes:
    output = negotiate.negotiate_output(
        respond.header(request, "accept"), allow_table=False, allow_partial=False
    )
    options = parse_delete_options(request)
    result = await scope.store.delete(scope.namespace, scope.name, options, scope.user)
    if result.deleted:
        return respond.write(request, success_status(scope, result.obj), output)
    code = 202 if options.orphan_dependents is False else 200
    body = respond.object_body(scope.resource, scope.version, result.obj, output, request)
    return respond.write(request, body, output, code)


async def delete_collection(scope: Scope, request: IRequest) -> bytes:
    output = negotiate.negotiate_output(
        respond.header(request, "accept"), allow_table=False, allow_partial=False
    )
    delete_options = parse_delete_options(request)
    list_options = parse_list_options(request)
    page = await scope.store.delete_collection(
        scope.namespace, list_options, delete_options, scope.user
    )
    body = scope.resource.encode_list(scope.version, page.items, page.list_meta(), shared=True)
    return respond.write(request, body, output)
