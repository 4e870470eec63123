# -*- test-case-name: tests.test_openapi -*-
"""
The OpenAPI documents: Swagger 2.0 at C{/openapi/v2}; OpenAPI 3.0 at
C{/openapi/v3} (an index) and C{/openapi/v3/<key>} (one document per
group-version, plus the small ones for C{/apis}, C{/apis/<group>} and
C{/version}).

Each document puts the paths of L{wardled.api.openapi.paths} in its
version's form, with the models of L{wardled.api.openapi.models} they
reach.  kubectl reads them: C{kubectl explain} reads the v3 document of the
group-version; C{kubectl create/replace/apply} fall back to the v2
document, which client-go only reads as protobuf
(L{wardled.api.openapi.protobuf}), when the v3 one lacks what they need.

The documents are built once and kept as bytes with an ETag: the
upper-case hex SHA-512 of the body, quoted, as kube-openapi computes it.
The v3 index points at each document with C{?hash=<that hash>}.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from wardled.api.discovery import VERBS
from wardled.api.negotiate import JSON
from wardled.api.openapi.models import OPENAPI3, SWAGGER, Models, Object, gvk_object
from wardled.api.openapi.paths import (
    Operation,
    Parameter,
    Path,
    all_paths,
    apis_paths,
    group_paths,
    group_version_paths,
    version_paths,
)
from wardled.api.openapi.protobuf import PROTOBUF_V2, swagger_to_protobuf
from wardled.apis.wardle import GROUP, GROUP_VERSIONS

INFO = {"title": "Wardle", "version": "0.1"}

V3_URL_PREFIX = "/openapi/v3/"


# Swagger 2.0 -----------------------------------------------------------------

BEARER_TOKEN = {
    "BearerToken": {
        "description": "Bearer Token authentication",
        "type": "apiKey",
        "name": "authorization",
        "in": "header",
    }
}


def _v2_parameter(parameter: Parameter) -> Object:
    result: Object = {
        "uniqueItems": True,
        "type": parameter.type,
        "description": parameter.doc,
        "name": parameter.name,
        "in": parameter.location,
    }
    if parameter.required:
        result["required"] = True
    return result


def _v2_operation(operation: Operation, models: Models) -> Object:
    parameters = [_v2_parameter(p) for p in operation.parameters]
    if operation.body is not None:
        parameters.append({
            "name": "body",
            "in": "body",
            "required": True,
            "schema": models.ref(operation.body, operation.package),
        })
    responses: Object = {
        response.code: {
            "description": response.description,
            "schema": models.ref(response.schema, operation.package),
        }
        for response in operation.responses
    }
    responses["401"] = {"description": "Unauthorized"}
    result: Object = {
        "description": operation.description,
        "consumes": list(operation.consumes),
        "produces": list(operation.produces),
        "schemes": ["https"],
        "tags": [operation.tag],
        "operationId": operation.operation_id,
        "responses": responses,
    }
    if parameters:
        result["parameters"] = parameters
    return {**result, **_extensions(operation)}


def _extensions(operation: Operation) -> Object:
    extensions: Object = {}
    if operation.action:
        extensions["x-kubernetes-action"] = operation.action
    if operation.gvk is not None:
        extensions["x-kubernetes-group-version-kind"] = gvk_object(operation.gvk)
    return extensions


def _path_item(path: Path, render_parameter: Callable[[Parameter], Object],
               render_operation: Callable[[Operation], Object]) -> Object:
    item: Object = {op.method: render_operation(op) for op in path.operations}
    if path.parameters:
        item["parameters"] = [render_parameter(p) for p in path.parameters]
    return item


def openapi_v2(verbs: Sequence[str] = VERBS) -> Object:
    """
    The Swagger 2.0 document of everything served.
    """
    models = Models(SWAGGER)
    paths = {
        path.path: _path_item(path, _v2_parameter, lambda op: _v2_operation(op, models))
        for path in all_paths(verbs)
    }
    return {
        "swagger": "2.0",
        "info": dict(INFO),
        "paths": paths,
        "definitions": models.models,
        "securityDefinitions": BEARER_TOKEN,
        "security": [{"BearerToken": []}],
    }


# OpenAPI 3.0 -----------------------------------------------------------------


def _v3_parameter(parameter: Parameter) -> Object:
    result: Object = {
        "name": parameter.name,
        "in": parameter.location,
        "description": parameter.doc,
        "schema": {"type": parameter.type, "uniqueItems": True},
    }
    if parameter.required:
        result["required"] = True
    return result


def _content(media_types: Iterable[str], schema: Object) -> Object:
    return {media_type: {"schema": schema} for media_type in media_types}


def _v3_operation(operation: Operation, models: Models) -> Object:
    result: Object = {
        "description": operation.description,
        "operationId": operation.operation_id,
        "tags": [operation.tag],
        "responses": {
            response.code: {
                "description": response.description,
                "content": _content(
                    operation.produces, models.ref(response.schema, operation.package)
                ),
            }
            for response in operation.responses
        },
    }
    if operation.parameters:
        result["parameters"] = [_v3_parameter(p) for p in operation.parameters]
    if operation.body is not None:
        body = models.ref(operation.body, operation.package)
        result["requestBody"] = {"content": _content(operation.consumes, body)}
        if operation.body_required:
            result["requestBody"]["required"] = True
    return {**result, **_extensions(operation)}


def _v3_document(paths: Iterable[Path]) -> Object:
    models = Models(OPENAPI3)
    rendered = {
        path.path: _path_item(path, _v3_parameter, lambda op: _v3_operation(op, models))
        for path in paths
    }
    return {
        "openapi": "3.0.0",
        "info": dict(INFO),
        "paths": rendered,
        "components": {"schemas": models.models, "securitySchemes": BEARER_TOKEN},
        "security": [{"BearerToken": []}],
    }


def v3_keys() -> list[str]:
    """
    The keys of the v3 index, as C{/openapi/v3/<key>} serves them.
    """
    keys = ["apis", f"apis/{GROUP}"]
    keys += [f"apis/{GROUP}/{version}" for version in GROUP_VERSIONS]
    return keys + ["version"]


def openapi_v3_document(key: str, verbs: Sequence[str] = VERBS) -> Object:
    """
    The OpenAPI 3.0 document at C{/openapi/v3/<key>}.

    @raise KeyError: no such document.
    """
    if key == "apis":
        return _v3_document(apis_paths())
    if key == f"apis/{GROUP}":
        return _v3_document(group_paths())
    if key == "version":
        return _v3_document(version_paths())
    prefix = f"apis/{GROUP}/"
    if key.startswith(prefix):
        return openapi_v3_group_version(key[len(prefix):], verbs)
    raise KeyError(key)


def openapi_v3_group_version(version: str, verbs: Sequence[str] = VERBS) -> Object:
    """
    The OpenAPI 3.0 document of one served version of the group.

    @raise KeyError: C{version} is not served.
    """
    return _v3_document(group_version_paths(version, verbs))


def openapi_v3_index(hashes: Mapping[str, str]) -> Object:
    """
    The C{/openapi/v3} index.

    @param hashes: each document's key (L{v3_keys}) to its hash.
    """
    return {
        "paths": {
            key: {"serverRelativeURL": f"{V3_URL_PREFIX}{key}?hash={hashes[key]}"}
            for key in v3_keys()
        }
    }


# Served documents ------------------------------------------------------------


def _hash(body: bytes) -> str:
    return hashlib.sha512(body).hexdigest().upper()


@attrs.frozen
class Document:
    """
    A document as served.

    @ivar body: the bytes.
    @ivar etag: the C{ETag} header value: the quoted upper-case hex SHA-512
        of C{body}.
    @ivar content_type: the C{Content-Type} to send.
    """

    body: bytes
    etag: str
    content_type: str = JSON

    @classmethod
    def of(cls, content: Object) -> Document:
        """
        C{content} as compact JSON with sorted keys.
        """
        body = json.dumps(
            content, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
        return cls(body, f'"{_hash(body)}"')

    @classmethod
    def of_bytes(cls, body: bytes, content_type: str) -> Document:
        return cls(body, f'"{_hash(body)}"', content_type)

    @property
    def hash(self) -> str:
        """
        The ETag without quotes: the C{hash} of the v3 index.
        """
        return self.etag.strip('"')


@functools.cache
def v2_document() -> Document:
    return Document.of(openapi_v2())


@functools.cache
def v2_protobuf_document() -> Document:
    """
    The v2 document in protobuf, as client-go (kubectl, helm) reads it.
    """
    return Document.of_bytes(swagger_to_protobuf(openapi_v2()), PROTOBUF_V2)


@functools.cache
def v3_document(key: str) -> Document | None:
    """
    The document at C{/openapi/v3/<key>}, or None if there is none.
    """
    if key not in v3_keys():
        return None
    return Document.of(openapi_v3_document(key))


def v3_group_version_document(version: str) -> Document:
    """
    @raise KeyError: C{version} is not served.
    """
    document = v3_document(f"apis/{GROUP}/{version}")
    if document is None:
        raise KeyError(version)
    return document


@functools.cache
def v3_index_document() -> Document:
    hashes = {}
    for key in v3_keys():
        document = v3_document(key)
        assert document is not None
        hashes[key] = document.hash
    return Document.of(openapi_v3_index(hashes))

