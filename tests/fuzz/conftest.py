# -*- test-case-name: tests.fuzz.test_hypothesis_fuzz,tests.fuzz.test_openapi_fuzz -*-
"""
Servers and clients for the fuzz tests.

Fuzzing gets servers of its own rather than the session's shared ones: it
creates cluster-scoped Fischers with random C{disallowedFlunders} (which
the BanFlunder admission plugin would then apply to every other test's
Flunders) and deletes whole collections.  One runs on the embedded store,
one on the session's etcd under a key prefix of its own.  Each client
checks, when its test ends, that its server is still ready and logged no
traceback.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.etcdserver import EtcdServer
from tests.fuzz.support import FuzzClient
from tests.harness import TestPKI, WardledProcess


@pytest.fixture(scope="session")
def fuzz_embedded(pki: TestPKI) -> Iterator[WardledProcess]:
    """
    A wardled on the embedded store, for fuzzing only.
    """
    server = WardledProcess.start(None, pki)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fuzz_etcd(etcd: EtcdServer, pki: TestPKI) -> Iterator[WardledProcess]:
    """
    A wardled on the session's etcd, under a key prefix no other server
    uses, for fuzzing only.
    """
    prefix = f"/fuzz-{uuid.uuid4().hex[:8]}/registry/wardle.example.com"
    server = WardledProcess.start(etcd.url, pki, ["--etcd-prefix", prefix])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["embedded", "etcd"])
def fuzz_server(request: pytest.FixtureRequest) -> WardledProcess:
    """
    Each fuzzing server in turn (for what reaches storage keys: names and
    continue tokens).
    """
    server: WardledProcess = request.getfixturevalue(f"fuzz_{request.param}")
    return server


def _client(server: WardledProcess) -> Iterator[FuzzClient]:
    client = FuzzClient(server)
    try:
        yield client
        client.assert_healthy()
    finally:
        client.close()


@pytest.fixture
def client(fuzz_embedded: WardledProcess) -> Iterator[FuzzClient]:
    """
    An admin client of the embedded fuzzing server; when the test ends the
    server must be ready and have logged no traceback.
    """
    yield from _client(fuzz_embedded)


@pytest.fixture
def backend_client(fuzz_server: WardledProcess) -> Iterator[FuzzClient]:
    """
    L{client} for each fuzzing server in turn.
    """
    yield from _client(fuzz_server)
