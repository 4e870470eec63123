# -*- test-case-name: tests.test_openapi -*-
"""
Serving the OpenAPI documents: content negotiation (JSON or, for v2,
protobuf), ETags and C{If-None-Match}, and the C{?hash=} caching rules of
the v3 documents, as kube-openapi's handlers answer.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Sequence

from twisted.web.iweb import IRequest

from wardled import apierrors
from wardled.api import negotiate, respond
from wardled.api.negotiate import JSON
from wardled.api.openapi.documents import Document, v2_document, v2_protobuf_document
from wardled.api.openapi.protobuf import PROTOBUF_V2, PROTOBUF_V2_DEPRECATED

#: How long a client may cache a v3 document fetched by its current hash.
IMMUTABLE_SECONDS = 365 * 24 * 3600


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """
    Whether an C{If-None-Match} header matches C{etag} (weak comparison,
    RFC 9110 13.1.2: C{*}, or any listed tag with or without C{W/}).
    """
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in tags)


def _choose(accept: str | None, media_types: Sequence[str]) -> str | None:
    """
    The first of C{media_types} that the C{Accept} clauses, in preference
    order, allow (wildcards included); the first one if there is no
    C{Accept}; None if none is acceptable.
    """
    if not accept:
        return media_types[0]
    for clause in negotiate.parse_accept(accept):
        if clause.q <= 0:
            continue
        for media_type in media_types:
            major, _, minor = media_type.partition("/")
            if clause.type in (major, "*") and clause.subtype in (minor, "*"):
                return media_type
    return None


def accepts_json(accept: str | None) -> bool:
    """
    Whether an C{Accept} header allows JSON (no header allows anything).
    """
    return _choose(accept, [JSON]) is not None


def negotiate_v2(accept: str | None) -> Document:
    """
    The v2 document in the form C{Accept} prefers: JSON or protobuf.

    @raise apierrors.StatusError: 406, neither is acceptable.
    """
    offers = (JSON, PROTOBUF_V2_DEPRECATED, PROTOBUF_V2)
    chosen = _choose(accept, offers)
    if chosen is None:
        raise apierrors.not_acceptable(list(offers))
    return v2_document() if chosen == JSON else v2_protobuf_document()


def render(request: IRequest, document: Document, now: float | None = None) -> bytes:
    """
    Answer a GET for C{document}: 200 with its body, or 304 when
    C{If-None-Match} names its ETag.

    As kube-openapi does for v3 documents, a C{?hash=} naming the current
    hash makes the answer cacheable for a year, and a stale one redirects
    (301) to the current URL.

    @param document: a JSON document, or one chosen by L{negotiate_v2}.
    @param now: the current time (seconds since the epoch), for C{Expires}.
    @raise apierrors.StatusError: 406 if the client does not take the
        document's media type.
    """
    if document.content_type == JSON and not accepts_json(respond.header(request, "accept")):
        raise apierrors.not_acceptable([JSON])
    wanted_hash = respond.query_arg(request, "hash")
    if wanted_hash is not None and wanted_hash != document.hash:
        path = request.path.decode("utf-8", "replace")
        request.setResponseCode(301)
        request.setHeader(b"location", f"{path}?hash={document.hash}".encode())
        return b""
    request.setHeader(b"etag", document.etag.encode())
    request.setHeader(b"vary", b"Accept")
    if wanted_hash is not None:
        expires = (time.time() if now is None else now) + IMMUTABLE_SECONDS
        request.setHeader(b"cache-control", b"public, immutable")
        request.setHeader(b"expires", email.utils.formatdate(expires, usegmt=True).encode())
    if etag_matches(respond.header(request, "if-none-match"), document.etag):
        request.setResponseCode(304)
        return b""
    request.setHeader(b"content-type", document.content_type.encode())
    return document.body
