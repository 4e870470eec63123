# -*- test-case-name: tests.test_openapi -*-
"""
The OpenAPI documents the server publishes: Swagger 2.0 at C{/openapi/v2}
(JSON or protobuf), OpenAPI 3.0 at C{/openapi/v3} and C{/openapi/v3/<key>}.

The work is split by concern:

  - L{wardled.api.openapi.models}: type declarations to schema models;
  - L{wardled.api.openapi.paths}: the paths, parameters and operations
    of each resource and verb;
  - L{wardled.api.openapi.documents}: the v2 and v3 documents, built once
    and kept as bytes with their ETags;
  - L{wardled.api.openapi.protobuf}: the v2 document in gnostic's protobuf
    encoding;
  - L{wardled.api.openapi.serve}: answering a GET (negotiation, ETags,
    caching).

The types the documents describe are declared in L{wardled.apis.meta} and
L{wardled.apis.wardle}.  This module re-exports what the HTTP handlers
and the tests use.
"""

from __future__ import annotations

from wardled.api.openapi.documents import (
    openapi_v2,
    openapi_v3_document,
    openapi_v3_group_version,
    v2_document,
    v2_protobuf_document,
    v3_document,
    v3_group_version_document,
    v3_index_document,
    v3_keys,
)
from wardled.api.openapi.models import SWAGGER, Models
from wardled.api.openapi.protobuf import (
    PROTOBUF_V2,
    PROTOBUF_V2_DEPRECATED,
    swagger_to_protobuf,
)
from wardled.api.openapi.serve import accepts_json, etag_matches, negotiate_v2, render
from wardled.apis.meta import KIND_DOC, TIME_DOC

__all__ = [
    "KIND_DOC",
    "PROTOBUF_V2",
    "PROTOBUF_V2_DEPRECATED",
    "SWAGGER",
    "TIME_DOC",
    "Models",
    "accepts_json",
    "etag_matches",
    "negotiate_v2",
    "openapi_v2",
    "openapi_v3_document",
    "openapi_v3_group_version",
    "render",
    "swagger_to_protobuf",
    "v2_document",
    "v2_protobuf_document",
    "v3_document",
    "v3_group_version_document",
    "v3_index_document",
    "v3_keys",
]
