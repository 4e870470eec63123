# -*- test-case-name: tests.test_reload -*-
"""
Reloading the serving certificate, the client CA bundle and the policy
without a restart (L{wardled.reload}): unit tests on a L{Clock}, and a real
C{twistd wardled} whose files are replaced while clients are connected.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.etcdserver import EtcdServer
from tests.harness import STRANGER, TestPKI, WardledProcess
from wardled import certs, tls
from wardled.reload import POLL_INTERVAL, ReloadService, ServingCertificate


def _serving_pair(pki: TestPKI, directory: str, name: str) -> tuple[str, str]:
    ca = certs.load_key_pair(pki.ca_file, pki.ca_key_file)
    pair = certs.make_serving_cert(ca, ["127.0.0.1", "localhost"], common_name=name)
    cert, key = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
    certs.write_key_pair(pair, cert, key)
    return cert, key


def _replace(source: str, target: str) -> None:
    """
    Replace C{target} atomically, as an operator's deploy tool would.
    """
    temporary = target + ".new"
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


class ServingCertificateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.pki = TestPKI.create(os.path.join(self.directory, "pki"))
        self.cert = os.path.join(self.directory, "server.crt")
        self.key = os.path.join(self.directory, "server.key")
        shutil.copyfile(self.pki.server_cert_file, self.cert)
        shutil.copyfile(self.pki.server_key_file, self.key)
        self.server_tls = tls.RotatingServerTLS(tls.ServingPair.load(self.cert, self.key), lambda: ())
        self.clock = Clock()
        self.service = ReloadService(
            self.clock, [ServingCertificate(self.cert, self.key, self.server_tls)], handle_sighup=False
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def common_name(self) -> str:
        names = self.server_tls.pair.chain[0].subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return str(names[0].value) if names else ""

    def test_changed_files_are_served_after_the_poll(self) -> None:
        before = self.server_tls.context()
        cert, key = _serving_pair(self.pki, self.directory, "second")
        _replace(cert, self.cert)
        _replace(key, self.key)
        self.assertNotEqual(self.common_name(), "second")
        self.clock.advance(POLL_INTERVAL)
        self.assertEqual(self.common_name(), "second")
        self.assertIsNot(self.server_tls.context(), before)

    def test_broken_files_keep_the_pair_in_use(self) -> None:
        pair = self.server_tls.pair
        with open(self.cert, "w") as out:
            out.write("not a certificate\n")
        self.clock.advance(POLL_INTERVAL)
        self.assertIs(self.server_tls.pair, pair)
        # A certificate whose key is not the key file's is refused too.
        cert, _ = _serving_pair(self.pki, self.directory, "mismatched")
        _replace(cert, self.cert)
        self.clock.advance(POLL_INTERVAL)
        self.assertIs(self.server_tls.pair, pair)

    def test_reload_now_brackets_the_checks(self) -> None:
        seen: list[object] = []
        self.service.on_reload = seen.append
        cert, key = _serving_pair(self.pki, self.directory, "third")
        _replace(cert, self.cert)
        _replace(key, self.key)
        self.service.reload_now()
        self.assertEqual(seen, [False, True])
        self.assertEqual(self.common_name(), "third")


@pytest.fixture
def reloading(
    etcd: EtcdServer, pki: TestPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WardledProcess, str]]:
    """
    wardled serving a copy of the test certificate and client CA bundle in
    a directory of its own.
    """
    directory = str(tmp_path_factory.mktemp("reload"))
    for name in ("server.crt", "server.key", "ca.crt"):
        shutil.copyfile(os.path.join(pki.directory, name), os.path.join(directory, name))
    server = WardledProcess.start(
        etcd.url,
        pki,
        [
            "--tls-cert-file", os.path.join(directory, "server.crt"),
            "--tls-private-key-file", os.path.join(directory, "server.key"),
            "--client-ca-file", os.path.join(directory, "ca.crt"),
        ],
    )
    try:
        yield server, directory
    finally:
        server.stop()


def _served_common_name(server: WardledProcess) -> str:
    context = ssl.create_default_context(cafile=server.pki.ca_file)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped:
        der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    subject = x509.load_der_x509_certificate(der).subject
    return str(subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def _wait_for(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_certificate_reloaded_on_sighup_open_connections_kept(
    reloading: tuple[WardledProcess, str], pki: TestPKI
) -> None:
    server, directory = reloading
    first = _served_common_name(server)
    open_connection = http.client.HTTPSConnection(
        "127.0.0.1", server.port, timeout=10, context=pki.ssl_context("admin")
    )
    open_connection.request("GET", "/healthz")
    assert open_connection.getresponse().read() == b"ok"
    cert, key = _serving_pair(pki, directory, "rotated-serving")
    _replace(key, os.path.join(directory, "server.key"))
    _replace(cert, os.path.join(directory, "server.crt"))
    os.kill(server.pid, signal.SIGHUP)
    _wait_for(lambda: _served_common_name(server) == "rotated-serving")
    assert first != "rotated-serving"
    open_connection.request("GET", "/healthz")
    assert open_connection.getresponse().read() == b"ok"
    open_connection.close()
    # A broken replacement is refused; the rotated pair stays.
    with open(os.path.join(directory, "server.crt"), "w") as out:
        out.write("garbage\n")
    os.kill(server.pid, signal.SIGHUP)
    _wait_for(lambda: "serving certificate not reloaded" in server.output())
    assert _served_common_name(server) == "rotated-serving"
    assert server.running


def test_client_ca_bundle_reloaded_when_the_file_changes(
    reloading: tuple[WardledProcess, str], pki: TestPKI
) -> None:
    server, directory = reloading

    def stranger_status() -> int | str:
        try:
            return server.https("GET", "/apis/wardle.example.com/v1alpha1/fischers", user=STRANGER).status
        except (ssl.SSLError, OSError) as error:
            return type(error).__name__

    assert stranger_status() != 200
    bundle = os.path.join(directory, "ca.crt")
    with open(pki.ca_file) as ours, open(os.path.join(pki.directory, "other-ca.crt")) as theirs:
        combined = ours.read() + theirs.read()
    with open(bundle + ".new", "w") as out:
        out.write(combined)
    os.replace(bundle + ".new", bundle)
    # No SIGHUP: the file is noticed within the poll interval.
    _wait_for(lambda: stranger_status() == 200)
    assert server.https("GET", "/healthz").status == 200
