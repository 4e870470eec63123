# -*- test-case-name: tests.test_api -*-
"""
Writing responses: negotiated encoding, Status bodies, warnings, and the
object/list/Table/PartialObjectMetadata shapes of resource responses.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from wardled import apierrors
from wardled.api import negotiate, table
from wardled.api.negotiate import Output
from wardled.apis.scheme import ResourceType

Object = dict[str, Any]

JSON_OUTPUT = negotiate.negotiate_output(None, allow_table=False, allow_partial=False)


def query_arg(request: IRequest, name: str) -> str | None:
    """
    The first value of query parameter C{name}, decoded, or None.
    """
    values = request.args.get(name.encode())
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def header(request: IRequest, name: str) -> str | None:
    value = request.getHeader(name)
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
    try:
        output = negotiate.negotiate_output(
            header(request, "accept"), allow_table=False, allow_partial=False
        )
    except apierrors.StatusError:
        output = JSON_OUTPUT
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
    if output.as_kind == "PartialObjectMetadataList":
        raise apierrors.not_acceptable(negotiate.SUPPORTED_MEDIA_TYPES)
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
    if output.as_kind == "PartialObjectMetadata":
        raise apierrors.not_acceptable(negotiate.SUPPORTED_MEDIA_TYPES)
    return resource.encode_list(version, items, list_meta)
