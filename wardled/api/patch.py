# -*- test-case-name: tests.test_api -*-
"""
PATCH of one object: JSON patch (RFC 6902), merge patch (RFC 7386),
strategic merge patch (which, for types without merge keys such as these,
is a merge patch) and server-side apply (C{application/apply-patch+yaml},
see L{wardled.registry.fieldmanager}), which creates a missing object.

A patch is applied to the current object in the request's version, and the
result is written with the current resourceVersion as precondition.  On a
conflict the patch is re-applied to the fresh object, up to five times,
unless the patch itself set C{metadata.resourceVersion}: then it is the
client's precondition and the conflict is answered with 409.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import yaml
from twisted.web.iweb import IRequest

from wardled import apierrors
from wardled.api import goyaml, negotiate, respond
from wardled.api.scope import Scope
from wardled.api.update import check_name, record_update
from wardled.api.writeoptions import WriteOptions, decode_versioned, parse_write_options
from wardled.apis import field
from wardled.apis.jsoncopy import deep_copy
from wardled.registry.fieldmanager import FieldManager

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH]
PATCH_ATTEMPTS = 5

Object = dict[str, Any]


def merge_patch(target: Any, patch: Any) -> Any:
    """
    RFC 7386: objects merge key by key, C{null} removes, anything else
    replaces.
    """
    if not isinstance(patch, dict):
        return deep_copy(patch)
    result = deep_copy(target) if isinstance(target, dict) else {}
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
        document = _parse_yaml(patch_type, data)
    if patch_type == JSON_PATCH:
        try:
            return jsonpatch.JsonPatch(document)
        except (
            jsonpatch.InvalidJsonPatch,
            jsonpatch.JsonPointerException,  # a path such as "/a/~2"
            TypeError,
            AttributeError,
        ) as error:
            raise apierrors.bad_request(str(error) or "invalid JSON patch") from None
    return document


def _parse_yaml(patch_type: str, data: bytes) -> Any:
    """
    A YAML patch body; an applied configuration is read as go-yaml reads it
    (C{y} and C{on} are booleans there).
    """
    if patch_type == APPLY_PATCH:
        try:
            return goyaml.yaml_to_json(data).obj
        except goyaml.GoYamlError as error:
            raise apierrors.bad_request(f"error decoding YAML: {error}") from None
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as error:
        raise apierrors.bad_request(f"error decoding patch: {error}") from None


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
    _check_apply_options(patch_type, options)
    request.content.seek(0)
    parsed = _parse_patch(patch_type, request.content.read())
    once = _apply_once if patch_type == APPLY_PATCH else _patch_once
    for attempt in range(PATCH_ATTEMPTS):
        try:
            updated, code = await once(scope, request, options, patch_type, parsed)
            break
        except _Retry:
            continue
    else:
        raise apierrors.conflict(
            scope.resource.group_resource, scope.name, apierrors.OBJECT_MODIFIED
        )
    body = respond.object_body(scope.resource, scope.version, updated, output, request)
    return respond.write(request, body, output, code)


def _check_apply_options(patch_type: str, options: WriteOptions) -> None:
    """
    Apply needs an explicit C{fieldManager}; C{force} is for apply only.
    """
    options_kind = apierrors.GroupKind("meta.k8s.io", "PatchOptions")
    if patch_type == APPLY_PATCH and not options.field_manager:
        raise apierrors.invalid(
            options_kind, "", [field.required("fieldManager", "is required for apply patch")]
        )
    if patch_type != APPLY_PATCH and options.force:
        raise apierrors.invalid(
            options_kind, "", [field.forbidden("force", "may not be specified for non-apply patch")]
        )


class _Retry(Exception):
    """The object changed under an unpinned patch: apply it again."""


async def _patch_once(
    scope: Scope, request: IRequest, options: WriteOptions, patch_type: str, parsed: Any
) -> tuple[Object, int]:
    current = await scope.store.get(scope.namespace, scope.name)
    versioned = scope.resource.encode(scope.version, current)
    patched = _apply(patch_type, parsed, versioned)
    obj = decode_versioned(scope, request, options, patched)
    check_name(scope, obj)
    current_version = current["metadata"].get("resourceVersion", "")
    pinned = obj.get("metadata", {}).get("resourceVersion", "") != current_version
    try:
        updated = await scope.store.update(
            scope.namespace,
            scope.name,
            obj,
            scope.user,
            options.dry_run,
            prepare=record_update(scope, options),
        )
    except apierrors.StatusError as error:
        if error.reason == "Conflict" and not pinned:
            raise _Retry() from None
        raise
    return updated, 200


async def _live_object(scope: Scope) -> Object | None:
    try:
        return await scope.store.get(scope.namespace, scope.name)
    except apierrors.StatusError as error:
        if error.code == 404:
            return None
        raise


async def _apply_once(
    scope: Scope, request: IRequest, options: WriteOptions, patch_type: str, parsed: Any
) -> tuple[Object, int]:
    """
    One attempt at a server-side apply: merge into the live object and
    update it, or create the object (201) when there is none.
    """
    if not isinstance(parsed, dict):
        raise apierrors.bad_request("error decoding patch: the applied configuration is not an object")
    current = await _live_object(scope)
    manager = FieldManager(scope.resource, scope.store.now)
    # Decoded only to check types and report unknown fields: apply merges
    # the configuration as sent.
    decode_versioned(scope, request, options, parsed)
    obj = manager.apply(current, parsed, options.field_manager, scope.version, options.force)
    check_name(scope, obj)
    if current is None:
        try:
            created = await scope.store.create(scope.namespace, obj, scope.user, options.dry_run)
        except apierrors.StatusError as error:
            if error.reason == "AlreadyExists":
                raise _Retry() from None
            raise
        return created, 201
    pinned = bool((parsed.get("metadata") or {}).get("resourceVersion"))
    try:
        updated = await scope.store.update(
            scope.namespace, scope.name, obj, scope.user, options.dry_run
        )
    except apierrors.StatusError as error:
        if error.reason == "Conflict" and not pinned:
            raise _Retry() from None
        raise
    return updated, 200
