# -*- test-case-name: tests.test_api -*-
"""
Writing responses: negotiated encoding, Status bodies, warnings, and the
object/list/Table/PartialObjectMetadata shapes of resource responses.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from twisted.web.iweb import IRequest

from wardled import apierrors
from wardled.api import negotiate, table
from wardled.api.negotiate import Output
from wardled.apis.scheme import ResourceType

Object = dict[str, Any]


_QUERY_ATTRIBUTE = "_wardled_query"


def query(request: IRequest) -> dict[str, list[str]]:
    """
    The query parameters, decoded once per request.

    Unlike C{request.args}, a parameter without C{=} (C{?verbose}) is kept,
    with an empty value, as Go's C{url.Query} keeps it.
    """
    cached = getattr(request, _QUERY_ATTRIBUTE, None)
    if cached is None:
        _, _, raw = request.uri.partition(b"?")
        cached = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        setattr(request, _QUERY_ATTRIBUTE, cached)
    return cached


def query_arg(request: IRequest, name: str) -> str | None:
    """
    The first value of query parameter C{name}, or None.
    """
    values = query(request).get(name)
    if not values:
        return None
    return values[0]


def header(request: IRequest, name: str) -> str | None:
    # By bytes name: Twisted decodes a str lookup as UTF-8 and raises on
    # other bytes, which clients may send (Go reads header values as bytes).
    value = request.getHeader(name.encode("ascii"))
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def add_warning(request: IRequest, text: str) -> None:
    """
    Add a C{Warning: 299 - "text"} header, as k8s.io/apiserver's warning recorder.
    """
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    request.responseHeaders.addRawHeader(b"Warning", f'299 - "{escaped}"'.encode())


def pretty(request: IRequest) -> bool:
    return negotiate.wants_pretty(query_arg(request, "pretty"), header(request, "user-agent"))


def write(request: IRequest, body: Object, output: Output, code: int = 200) -> bytes:
    """
    Encode C{body} as C{output} and set the status and Content-Type.
    """
    request.setResponseCode(code)
    request.setHeader(b"content-type", output.content_type.encode())
    return negotiate.encode(body, output, pretty(request))


def write_status(request: IRequest, error: apierrors.StatusError) -> bytes:
    """
    Answer with C{error}'s Status, in YAML if the client asked for it.
    """
    output = negotiate.negotiate_error_output(header(request, "accept"))
    if error.code == 429 or (error.details or {}).get("retryAfterSeconds"):
        retry = (error.details or {}).get("retryAfterSeconds", 1)
        request.setHeader(b"retry-after", str(retry).encode())
    return write(request, error.status(), output, error.code)


def object_body(
    resource: ResourceType, version: str, obj: Object, output: Output, request: IRequest
) -> Object:
    """
    One object in the shape C{output} asks for.
    """
    encoded = resource.encode(version, obj)
    if output.as_kind == "Table":
        include = table.parse_include_object(query_arg(request, "includeObject"))
        return table.to_table(
            [encoded],
            list_meta={"resourceVersion": obj.get("metadata", {}).get("resourceVersion", "")},
            include_object=include,
            no_headers=False,
            version=output.version,
        )
    if output.as_kind == "PartialObjectMetadata":
        return table.to_partial_metadata(encoded, output.version)
    table.check_conversion(
        output.as_kind, is_list=False, type_name=f"*wardle.{resource.kind}"
    )
    return encoded


def list_body(
    resource: ResourceType,
    version: str,
    items: list[Object],
    list_meta: Object,
    output: Output,
    request: IRequest,
) -> Object:
    """
    A list in the shape C{output} asks for.
    """
    if output.as_kind == "Table":
        include = table.parse_include_object(query_arg(request, "includeObject"))
        return table.to_table(
            [resource.encode(version, item) for item in items],
            list_meta=list_meta,
            include_object=include,
            no_headers=False,
            version=output.version,
        )
    if output.as_kind == "PartialObjectMetadataList":
        return table.to_partial_metadata_list(
            [resource.encode(version, item) for item in items], list_meta, output.version
        )
    table.check_conversion(
        output.as_kind, is_list=True, type_name=f"*wardle.{resource.list_kind}"
    )
    return resource.encode_list(version, items, list_meta)
