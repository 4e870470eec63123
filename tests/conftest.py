# -*- test-case-name: tests.test_tap -*-
"""
Session-wide pytest fixtures for integration tests: one real etcd, one test
PKI and one C{twistd wardled} process shared by every test that asks for
them.  Tests keep apart by using their own namespace (the C{namespace}
fixture) and names.  Everything started here is stopped at the end of the
session, whether tests passed or not.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.etcdserver import EtcdServer
from tests.harness import TestPKI, WardledProcess


@pytest.fixture(scope="session")
def etcd() -> Iterator[EtcdServer]:
    """
    A real etcd on free loopback ports for the whole session.
    """
    server = EtcdServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """
    The test CA, serving certificate, client certificates (admin, alice,
    stranger) and kubeconfigs.
    """
    return TestPKI.create(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def etcd_wardled(etcd: EtcdServer, pki: TestPKI) -> Iterator[WardledProcess]:
    """
    One C{twistd -n wardled} on C{etcd} for the whole session, with x509
    client authentication against C{pki}.
    """
    server = WardledProcess.start(etcd.url, pki)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def embedded_wardled(pki: TestPKI) -> Iterator[WardledProcess]:
    """
    One C{twistd -n wardled} on the embedded store (its own data directory)
    for the whole session.
    """
    server = WardledProcess.start(None, pki)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=["etcd", "embedded"])
def wardled(request: pytest.FixtureRequest) -> WardledProcess:
    """
    The session's server on each storage backend in turn: every
    integration test that asks for C{wardled} runs against etcd and against
    the embedded store.
    """
    server: WardledProcess = request.getfixturevalue(f"{request.param}_wardled")
    return server


@pytest.fixture
def namespace() -> str:
    """
    A namespace name no other test uses.
    """
    return f"test-{uuid.uuid4().hex[:10]}"
