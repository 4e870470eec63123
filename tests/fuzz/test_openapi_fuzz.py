# -*- test-case-name: tests.fuzz.test_openapi_fuzz -*-
"""
Every operation wardled publishes, fuzzed from the OpenAPI documents it
serves (C{/openapi/v2} and each C{/openapi/v3/<key>}) with schemathesis:
requests that fit the schema and requests that break it (wrong types,
missing required parts, unexpected parameters and headers).

The list of operations is taken at collection time from the same code
that builds the documents (L{wardled.api.openapi}), so each operation is a
test of its own; the requests are generated from the documents the running
server sends, and the test checks the two agree.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation, BaseSchema

from tests.fuzz.support import FuzzClient, check, fuzz_settings
from tests.harness import WardledProcess
from wardled.api import openapi

#: Where namespaced operations are sent (one namespace for the whole run,
#: so that creates, reads, patches and deletes meet the same objects).
NAMESPACE = f"fuzz-openapi-{uuid.uuid4().hex[:6]}"

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

V2 = "v2"


def _document_operations(key: str, document: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (key, method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in _METHODS
    ]


def published_operations() -> list[tuple[str, str, str]]:
    """
    C{(document, METHOD, path)} for every operation of every document,
    where C{document} is C{"v2"} or a v3 key such as
    C{"apis/wardle.example.com/v1beta1"}.
    """
    operations = _document_operations(V2, json.loads(openapi.v2_document().body))
    for key in openapi.v3_keys():
        document = openapi.v3_document(key)
        assert document is not None
        operations += _document_operations(key, json.loads(document.body))
    return operations


OPERATIONS = published_operations()


def _served_documents(client: FuzzClient) -> dict[str, Any]:
    documents: dict[str, Any] = {}
    v2 = client.send("GET", "/openapi/v2", headers={"Accept": "application/json"})
    assert v2.status == 200, v2
    documents[V2] = json.loads(v2.body)
    index = client.send("GET", "/openapi/v3")
    assert index.status == 200, index
    for key, entry in json.loads(index.body)["paths"].items():
        reply = client.send("GET", entry["serverRelativeURL"])
        assert reply.status == 200, reply
        documents[key] = json.loads(reply.body)
    return documents


@pytest.fixture(scope="module")
def served_schemas(fuzz_embedded: WardledProcess) -> Iterator[dict[str, BaseSchema]]:
    """
    The documents the fuzzing server serves, loaded by schemathesis.
    """
    client = FuzzClient(fuzz_embedded)
    try:
        documents = _served_documents(client)
    finally:
        client.close()
    yield {key: schemathesis.openapi.from_dict(doc) for key, doc in documents.items()}


def test_served_documents_list_the_published_operations(
    served_schemas: dict[str, BaseSchema],
) -> None:
    """
    The running server serves the documents the operation list was taken
    from, and schemathesis reads every operation in them.
    """
    served = []
    for key, schema in served_schemas.items():
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            served.append((key, result.ok().method.upper(), result.ok().path))
    assert sorted(served) == sorted(OPERATIONS)


def _cases(operation: APIOperation) -> st.SearchStrategy[Any]:
    """
    Cases that fit the schema and cases that do not, with the namespace
    fixed.
    """
    fixed = {"namespace": NAMESPACE} if "{namespace}" in operation.path else None
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed),
        operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=fixed),
    )


@pytest.mark.parametrize(
    "document,method,path", OPERATIONS, ids=[f"{d}:{m}:{p}" for d, m, p in OPERATIONS]
)
def test_operation(
    client: FuzzClient,
    served_schemas: dict[str, BaseSchema],
    document: str,
    method: str,
    path: str,
) -> None:
    """
    Requests generated for one operation never get a 5xx, and every error
    is a C{Status}; the server is ready afterwards (checked by the
    C{client} fixture).
    """
    operation = served_schemas[document][path][method]

    @fuzz_settings()
    @given(case=_cases(operation))
    def answers_within_contract(case: Any) -> None:
        check(client.send_prepared(case.as_transport_kwargs(base_url=client.base_url)))

    answers_within_contract()
