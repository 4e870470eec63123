# -*- test-case-name: tests.test_api -*-
"""
PATCH of one object: JSON patch (RFC 6902), merge patch (RFC 7386) and
strategic merge patch (which, for types without merge keys such as these,
is a merge patch).

A patch is applied to the current object in the request's version, and the
result is written with the current resourceVersion as precondition.  On a
conflict the patch is re-applied to the fresh object, up to five times,
unless the patch itself set C{metadata.resourceVersion}: then it is the
client's precondition and the conflict is answered with 409.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import yaml
from twisted.web.iweb import IRequest

from wardled import apierrors
from wardled.api import negotiate, respond
from wardled.api.scope import Scope
from wardled.api.update import check_name
from wardled.api.writeoptions import WriteOptions, parse_write_options, report_fields

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH]
PATCH_ATTEMPTS = 5

Object = dict[str, Any]


def merge_patch(target: Any, patch: Any) -> Any:
    """
    RFC 7386: objects merge key by key, C{null} removes, anything else
    replaces.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _patch_type(request: IRequest) -> str:
    content_type = (respond.header(request, "content-type") or "").split(";")[0].strip().lower()
    if content_type not in PATCH_TYPES:
        raise apierrors.unsupported_media_type(PATCH_TYPES)
    return content_type


def _parse_patch(patch_type: str, data: bytes) -> Any:
    try:
        document = json.loads(data)
    except ValueError:
        try:
            document = yaml.safe_load(data)
        except yaml.YAMLError as error:
            raise apierrors.bad_request(f"error decoding patch: {error}") from None
    if patch_type == JSON_PATCH:
        try:
            return jsonpatch.JsonPatch(document)
        except (jsonpatch.InvalidJsonPatch, TypeError, AttributeError) as error:
            raise apierrors.bad_request(str(error) or "invalid JSON patch") from None
    return document


def _apply(patch_type: str, patch: Any, current: Object) -> Any:
    if patch_type != JSON_PATCH:
        return merge_patch(current, patch)
    try:
        return patch.apply(current)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
        raise apierrors.StatusError(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
            {"causes": [{"reason": "UnexpectedServerResponse", "message": str(error)}]},
        ) from None


async def patch(scope: Scope, request: IRequest) -> bytes:
    output = negotiate.negotiate_output(
        respond.header(request, "accept"), allow_table=False, allow_partial=False
    )
    patch_type = _patch_type(request)
    options = parse_write_options(request, "PatchOptions")
    request.content.seek(0)
    parsed = _parse_patch(patch_type, request.content.read())
    for attempt in range(PATCH_ATTEMPTS):
        try:
            updated = await _patch_once(scope, request, options, patch_type, parsed)
            break
        except _Retry:
            continue
    else:
        raise apierrors.conflict(
            scope.resource.group_resource, scope.name, apierrors.OBJECT_MODIFIED
        )
    body = respond.object_body(scope.resource, scope.version, updated, output, request)
    return respond.write(request, body, output)


class _Retry(Exception):
    """The object changed under an unpinned patch: apply it again."""


async def _patch_once(
    scope: Scope, request: IRequest, options: WriteOptions, patch_type: str, parsed: Any
) -> Object:
    current = await scope.store.get(scope.namespace, scope.name)
    versioned = scope.resource.encode(scope.version, current)
    patched = _apply(patch_type, parsed, versioned)
    decoded = scope.resource.decode_request(scope.version, patched)
    kind = scope.resource.kind
    report_fields(
        request,
        options,
        decoded.unknown_fields,
        [],
        f'{kind} in version "{scope.version}" cannot be handled as a {kind}: ',
    )
    obj = decoded.internal
    check_name(scope, obj)
    current_version = current["metadata"].get("resourceVersion", "")
    pinned = obj.get("metadata", {}).get("resourceVersion", "") != current_version
    try:
        return await scope.store.update(
            scope.namespace, scope.name, obj, scope.user, options.dry_run
        )
    except apierrors.StatusError as error:
        if error.reason == "Conflict" and not pinned:
            raise _Retry() from None
        raise
