# -*- test-case-name: tests.test_openapi -*-
"""
The Swagger 2.0 document as protobuf.

client-go's C{OpenAPISchema()} (kubectl, helm) asks for C{/openapi/v2} in
protobuf only: the gnostic C{openapi.v2} messages
(github.com/google/gnostic, C{OpenAPIv2.proto}).  The encoding below covers
what L{wardled.api.openapi.documents.openapi_v2} writes; a key it does not
know is an error, so the two cannot drift apart silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from wardled.api.openapi.models import Object

PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
#: The media type client-go asks for.  It is not a valid media type (C{@}),
#: so the answer is labelled L{PROTOBUF_V2}, as kube-openapi does: Go's
#: C{mime.ParseMediaType} in client-go rejects a C{Content-Type} with C{@}.
PROTOBUF_V2_DEPRECATED = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _message(number: int, payload: bytes) -> bytes:
    """
    A length-delimited field (a message, a string), present even if empty.
    """
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string(number: int, text: str) -> bytes:
    return _message(number, text.encode("utf-8")) if text else b""


def _strings(number: int, texts: Iterable[str]) -> bytes:
    return b"".join(_message(number, text.encode("utf-8")) for text in texts)


def _bool(number: int, value: bool) -> bytes:
    return _varint(number << 3) + b"\x01" if value else b""


def _yaml(value: Any) -> str:
    """
    A JSON value as the YAML text gnostic's C{Any} holds.
    """
    text = yaml.safe_dump(value, sort_keys=True, default_flow_style=False)
    return text.removesuffix("...\n")


def _any(number: int, value: Any) -> bytes:
    return _message(number, _string(2, _yaml(value)))


def _named(number: int, name: str, value: bytes) -> bytes:
    """
    One entry of gnostic's ordered maps (C{NamedSchema}, C{NamedAny}...).
    """
    return _message(number, _string(1, name) + _message(2, value))


def _vendor_extensions(number: int, mapping: Object) -> bytes:
    return b"".join(
        _named(number, key, _string(2, _yaml(value)))
        for key, value in sorted(mapping.items())
        if key.startswith("x-")
    )


def _check_keys(mapping: Object, known: Iterable[str], what: str) -> None:
    unknown = [k for k in mapping if k not in known and not k.startswith("x-")]
    if unknown:
        raise ValueError(f"no protobuf form for {what} keys {unknown}")


_SCHEMA_KEYS = (
    "$ref", "format", "description", "default", "required",
    "additionalProperties", "type", "items", "allOf", "properties",
)


def _pb_schema(schema: Object) -> bytes:
    _check_keys(schema, _SCHEMA_KEYS, "schema")
    out = _string(1, schema.get("$ref", "")) + _string(2, schema.get("format", ""))
    out += _string(4, schema.get("description", ""))
    if "default" in schema:
        out += _any(5, schema["default"])
    out += _strings(19, schema.get("required", ()))
    if "additionalProperties" in schema:
        out += _message(21, _message(1, _pb_schema(schema["additionalProperties"])))
    if "type" in schema:
        out += _message(22, _strings(1, [schema["type"]]))
    if "items" in schema:
        out += _message(23, _message(1, _pb_schema(schema["items"])))
    out += b"".join(_message(24, _pb_schema(item)) for item in schema.get("allOf", ()))
    if "properties" in schema:
        out += _message(25, b"".join(
            _named(1, name, _pb_schema(value))
            for name, value in sorted(schema["properties"].items())
        ))
    return out + _vendor_extensions(31, schema)


#: Fields of the query and path parameter messages: required, in,
#: description, name, type, unique_items.
_NON_BODY_FIELDS = {
    "query": (3, (1, 2, 3, 4, 6, 20)),
    "path": (4, (1, 2, 3, 4, 5, 19)),
}


def _pb_parameter(parameter: Object) -> bytes:
    if parameter["in"] == "body":
        body = (
            _string(1, parameter.get("description", "")) + _string(2, parameter["name"])
            + _string(3, "body") + _bool(4, parameter.get("required", False))
            + _message(5, _pb_schema(parameter["schema"]))
        )
        return _message(1, _message(1, body))
    choice, (required, where, doc, name, type_, unique) = _NON_BODY_FIELDS[parameter["in"]]
    sub_schema = (
        _bool(required, parameter.get("required", False))
        + _string(where, parameter["in"]) + _string(doc, parameter.get("description", ""))
        + _string(name, parameter["name"]) + _string(type_, parameter["type"])
        + _bool(unique, parameter.get("uniqueItems", False))
    )
    return _message(1, _message(2, _message(choice, sub_schema)))


def _pb_parameters(number: int, parameters: Iterable[Object]) -> bytes:
    return b"".join(_message(number, _pb_parameter(p)) for p in parameters)


def _pb_response(response: Object) -> bytes:
    out = _string(1, response["description"])
    if "schema" in response:
        out += _message(2, _message(1, _pb_schema(response["schema"])))
    return _message(1, out)


_OPERATION_KEYS = (
    "tags", "description", "operationId", "produces", "consumes",
    "parameters", "responses", "schemes",
)


def _pb_operation(operation: Object) -> bytes:
    _check_keys(operation, _OPERATION_KEYS, "operation")
    responses = b"".join(
        _named(1, code, _pb_response(response))
        for code, response in sorted(operation["responses"].items())
    )
    return (
        _strings(1, operation.get("tags", ())) + _string(3, operation.get("description", ""))
        + _string(5, operation["operationId"]) + _strings(6, operation.get("produces", ()))
        + _strings(7, operation.get("consumes", ()))
        + _pb_parameters(8, operation.get("parameters", ()))
        + _message(9, responses) + _strings(10, operation.get("schemes", ()))
        + _vendor_extensions(13, operation)
    )


_PATH_ITEM_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6,
                      "head": 7, "patch": 8}


def _pb_path_item(item: Object) -> bytes:
    _check_keys(item, (*_PATH_ITEM_METHODS, "parameters"), "path item")
    out = b"".join(
        _message(number, _pb_operation(item[method]))
        for method, number in _PATH_ITEM_METHODS.items()
        if method in item
    )
    return out + _pb_parameters(9, item.get("parameters", ()))


def _pb_security_definitions(definitions: Object) -> bytes:
    items = b""
    for name, definition in sorted(definitions.items()):
        api_key = (
            _string(1, definition["type"]) + _string(2, definition["name"])
            + _string(3, definition["in"]) + _string(4, definition.get("description", ""))
        )
        items += _named(1, name, _message(2, api_key))
    return items


def _pb_security(requirements: Iterable[Object]) -> bytes:
    return b"".join(
        _message(12, b"".join(
            _named(1, name, _strings(1, scopes))
            for name, scopes in sorted(requirement.items())
        ))
        for requirement in requirements
    )


def swagger_to_protobuf(document: Object) -> bytes:
    """
    A Swagger 2.0 document (as
    L{wardled.api.openapi.documents.openapi_v2} writes it) as a gnostic
    C{openapi.v2.Document}.

    @raise ValueError: the document holds something this encoder does not
        know.
    """
    _check_keys(
        document,
        ("swagger", "info", "paths", "definitions", "securityDefinitions", "security"),
        "document",
    )
    info = _string(1, document["info"]["title"]) + _string(2, document["info"]["version"])
    paths = b"".join(
        _named(2, path, _pb_path_item(item))
        for path, item in sorted(document["paths"].items())
    )
    definitions = b"".join(
        _named(1, name, _pb_schema(schema))
        for name, schema in sorted(document["definitions"].items())
    )
    return (
        _string(1, document["swagger"]) + _message(2, info) + _message(8, paths)
        + _message(9, definitions) + _pb_security(document.get("security", ()))
        + _message(13, _pb_security_definitions(document.get("securityDefinitions", {})))
    )
