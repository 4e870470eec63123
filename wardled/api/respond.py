# -*- test-case-name: tests.test_api -*-
"""
Writing responses: negotiated encoding, Status bodies, warnings, and the
object/list/Table/PartialObjectMetadata shapes of resource responses.

Objects read from the watch cache carry their JSON: a plain compact JSON
response in that JSON's version is joined from those bytes
(L{write_object}, L{write_list}), byte for byte what encoding the decoded
objects would give; every other shape decodes them and encodes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from twisted.web.iweb import IRequest

from wardled import apierrors
from wardled.api import negotiate, table
from wardled.api.negotiate import Output
from wardled.apis.scheme import ResourceType
from wardled.cache.interfaces import CachedObject
from wardled.registry.store import ListPage

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


def write_encoded(request: IRequest, body: bytes, output: Output, code: int = 200) -> bytes:
    """
    Set the status and Content-Type of C{body}, already encoded as
    C{output}.
    """
    request.setResponseCode(code)
    request.setHeader(b"content-type", output.content_type.encode())
    return body


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
    # Encoded at once by the caller: the shape may share the object's parts.
    encoded = resource.encode(version, obj, shared=True)
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
            [resource.encode(version, item, shared=True) for item in items],
            list_meta=list_meta,
            include_object=include,
            no_headers=False,
            version=output.version,
        )
    if output.as_kind == "PartialObjectMetadataList":
        return table.to_partial_metadata_list(
            [resource.encode(version, item, shared=True) for item in items], list_meta, output.version
        )
    table.check_conversion(
        output.as_kind, is_list=True, type_name=f"*wardle.{resource.list_kind}"
    )
    return resource.encode_list(version, items, list_meta, shared=True)


# Responses joined from the watch cache's bytes ------------------------------


def _joinable(version: str, output: Output, request: IRequest) -> bool:
    """
    Whether a response in C{version} as C{output} is plain compact JSON of
    the object(s) themselves, which cached bytes can make (in their own
    version by joining them, in another by converting each).
    """
    return (
        output.encoding == "json"
        and output.as_kind is None
        and not output.pretty
        and not pretty(request)
    )


@functools.lru_cache(maxsize=64)
def type_members(kind: str, api_version: str) -> bytes:
    """
    The C{kind} and C{apiVersion} members an object's JSON opens with.
    """
    return negotiate.json_members({"kind": kind, "apiVersion": api_version})


def object_bytes(resource: ResourceType, version: str, cached: CachedObject) -> bytes | None:
    """
    The compact JSON of C{cached} as C{version} shows it (with C{kind} and
    C{apiVersion}, no newline), from its cached bytes; None when it is not
    held as bytes.
    """
    data = cached.data_in(version)
    if data is None:
        return None
    members = type_members(resource.kind, resource.api_version(version))
    return negotiate.prepend_members(members, data)


def write_object(
    request: IRequest,
    resource: ResourceType,
    version: str,
    cached: CachedObject,
    output: Output,
) -> bytes:
    """
    Answer with one object in the shape C{output} asks for: joined from
    its cached bytes when they fit, else decoded and encoded.
    """
    if _joinable(version, output, request):
        body = object_bytes(resource, version, cached)
        if body is not None:
            return write_encoded(request, body + b"\n", output)
    shaped = object_body(resource, version, cached.obj, output, request)
    return write(request, shaped, output)


def _list_bytes(
    resource: ResourceType,
    version: str,
    cached: Sequence[CachedObject],
    list_meta: Object,
) -> bytes | None:
    """
    The compact JSON of a list of C{cached}, from their bytes; None unless
    they are all held as bytes.
    """
    items: list[bytes] = []
    for entry in cached:
        data = entry.data_in(version)
        if data is None:
            return None
        items.append(data)
    members = negotiate.json_members(
        {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version(version),
            "metadata": list_meta,
        }
    )
    return negotiate.json_with_array(members, "items", items)


def write_list(
    request: IRequest,
    resource: ResourceType,
    version: str,
    page: ListPage,
    output: Output,
) -> bytes:
    """
    Answer with a page of a list in the shape C{output} asks for: joined
    from the cached objects' bytes when they fit, else decoded and encoded.
    """
    list_meta = page.list_meta()
    if page.cached is not None and _joinable(version, output, request):
        body = _list_bytes(resource, version, page.cached, list_meta)
        if body is not None:
            return write_encoded(request, body, output)
    shaped = list_body(resource, version, page.items, list_meta, output, request)
    return write(request, shaped, output)
