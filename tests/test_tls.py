# -*- test-case-name: tests.test_tls -*-
"""
Tests for L{wardled.tls}: real TLS on loopback with client certificates
over HTTP/1.1 and HTTP/2 (curl and Python's ssl against a
C{tests.tlsserver} subprocess), plus unit tests of the helpers.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from OpenSSL import crypto
from twisted.trial.unittest import SynchronousTestCase

from tests.harness import (
    ADMIN,
    ALICE,
    STRANGER,
    ClientCredentials,
    TestPKI,
    WhoAmIServer,
)
from wardled import certs, tls

# --- real TLS against a subprocess -----------------------------------------


@pytest.fixture(scope="module")
def whoami(pki: TestPKI) -> Iterator[WhoAmIServer]:
    """
    An HTTPS server with client-certificate authentication against the test
    CA, h2 and http/1.1 offered.
    """
    server = WhoAmIServer.start(
        pki.server_cert_file, pki.server_key_file, pki.ca_file
    )
    try:
        yield server
    finally:
        server.stop()


def _whoami(
    server: WhoAmIServer,
    pki: TestPKI,
    credentials: ClientCredentials | None,
    http2: bool,
) -> dict[str, Any]:
    result = server.curl("/whoami", ca_file=pki.ca_file, credentials=credentials,
                         http2=http2)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert isinstance(answer, dict)
    return answer


def test_identity_over_http11(whoami: WhoAmIServer, pki: TestPKI) -> None:
    """
    Over HTTP/1.1 the verified certificate's CN is the user and its O the
    groups.
    """
    answer = _whoami(whoami, pki, pki.users[ADMIN], http2=False)
    assert answer == {
        "user": "development",
        "groups": ["system:masters"],
        "protocol": "HTTP/1.1",
    }


def test_identity_over_http2(whoami: WhoAmIServer, pki: TestPKI) -> None:
    """
    Over HTTP/2 (negotiated by ALPN) the identity is read from the
    connection under the stream.
    """
    answer = _whoami(whoami, pki, pki.users[ALICE], http2=True)
    assert answer == {"user": "alice", "groups": ["devs"], "protocol": "HTTP/2"}


def test_every_organization_is_a_group(
    whoami: WhoAmIServer, pki: TestPKI, tmp_path: Any
) -> None:
    """
    Every O value becomes a group, in the certificate's order.
    """
    ca = certs.load_key_pair(pki.ca_file, pki.ca_key_file)
    pair = certs.make_client_cert(ca, "bob", ["system:masters", "devs", "ops"])
    credentials = ClientCredentials(str(tmp_path / "b.crt"), str(tmp_path / "b.key"))
    certs.write_key_pair(pair, credentials.cert_file, credentials.key_file)
    for http2 in (False, True):
        answer = _whoami(whoami, pki, credentials, http2=http2)
        assert answer["user"] == "bob"
        assert answer["groups"] == ["system:masters", "devs", "ops"]


@pytest.mark.parametrize("http2", [False, True])
def test_no_certificate_is_anonymous(
    whoami: WhoAmIServer, pki: TestPKI, http2: bool
) -> None:
    """
    A client without a certificate still connects; it has no identity.
    """
    answer = _whoami(whoami, pki, None, http2=http2)
    assert answer["user"] is None
    assert answer["groups"] is None
    assert answer["protocol"] == ("HTTP/2" if http2 else "HTTP/1.1")


def test_unknown_ca_is_refused_by_curl(whoami: WhoAmIServer, pki: TestPKI) -> None:
    """
    A certificate from a CA the server does not trust fails the handshake:
    under TLS 1.2 curl reports the server's "unknown ca" alert; under TLS 1.3
    (the alert comes after the client's Finished) it fails at the first read
    or write, and no answer comes back either way.
    """
    stranger = pki.users[STRANGER]
    tls12 = whoami.curl("--tlsv1.2", "--tls-max", "1.2", "/whoami",
                        ca_file=pki.ca_file, credentials=stranger)
    assert tls12.returncode == 35, tls12.stderr
    assert "unknown ca" in tls12.stderr
    assert tls12.stdout == ""
    for http2 in (False, True):
        tls13 = whoami.curl("/whoami", ca_file=pki.ca_file, credentials=stranger,
                            http2=http2)
        assert tls13.returncode != 0
        assert tls13.stdout == ""


def _client_context(
    pki: TestPKI, user: str | None, version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    context = pki.ssl_context(user)
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1
            context.minimum_version = version
            context.maximum_version = version
    return context


def _get(context: ssl.SSLContext, port: int) -> bytes:
    """
    Send a bare HTTP/1.1 GET and return everything the server sends back.
    """
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls_socket:
        tls_socket.sendall(
            b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        received = b""
        while chunk := tls_socket.recv(65536):
            received += chunk
        return received


def test_unknown_ca_is_refused_by_python(whoami: WhoAmIServer, pki: TestPKI) -> None:
    """
    Python's ssl sees the server's "unknown ca" alert (at the first read
    under TLS 1.3); the trusted user on the same server gets an answer.
    """
    with pytest.raises(ssl.SSLError, match="(?i)unknown.ca"):
        _get(_client_context(pki, STRANGER), whoami.port)
    assert b'"user": "alice"' in _get(_client_context(pki, ALICE), whoami.port)


def test_tls11_is_refused(whoami: WhoAmIServer, pki: TestPKI) -> None:
    """
    TLS 1.1 is refused by the server with a protocol_version alert, while
    TLS 1.2 with the same client works.
    """
    old = _client_context(pki, ADMIN, ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError, match="(?i)protocol.version"):
        _get(old, whoami.port)
    tls12 = _get(_client_context(pki, ADMIN, ssl.TLSVersion.TLSv1_2), whoami.port)
    assert tls12.startswith(b"HTTP/1.1 200")


def test_without_client_ca_no_certificate_is_requested(
    pki: TestPKI, tmp_path: Any
) -> None:
    """
    Without a client CA the server asks for no certificate, so even a
    valid one gives no identity; with HTTP/2 off, ALPN picks HTTP/1.1.
    """
    server = WhoAmIServer.start(
        pki.server_cert_file, pki.server_key_file, None,
        cert_dir=str(tmp_path), http2=False,
    )
    try:
        answer = server.curl("/", ca_file=pki.ca_file,
                             credentials=pki.users[ADMIN], http2=True)
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout) == {
            "user": None, "groups": None, "protocol": "HTTP/1.1"
        }
        stranger = server.curl("/", ca_file=pki.ca_file,
                               credentials=pki.users[STRANGER])
        assert stranger.returncode == 0, stranger.stderr
    finally:
        server.stop()


def test_self_signed_cert_made_then_reused(pki: TestPKI, tmp_path: Any) -> None:
    """
    Without a serving certificate one is made in the cert dir (logged), and
    a restart reuses it without making another.
    """
    cert_dir = str(tmp_path / "certificates")
    cert_path = os.path.join(cert_dir, "apiserver.crt")
    first = WhoAmIServer.start(None, None, pki.ca_file, cert_dir=cert_dir)
    try:
        chain = x509.load_pem_x509_certificates(Path(cert_path).read_bytes())
        root = os.path.join(str(tmp_path), "root.crt")
        with open(root, "wb") as output:
            output.write(chain[-1].public_bytes(certs.serialization.Encoding.PEM))
        answer = first.curl("/", ca_file=root, credentials=pki.users[ALICE])
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["user"] == "alice"
        assert "Generated self-signed cert" in first.output()
    finally:
        first.stop()
    original = Path(cert_path).read_bytes()
    second = WhoAmIServer.start(None, None, pki.ca_file, cert_dir=cert_dir)
    try:
        answer = second.curl("/", ca_file=root)
        assert answer.returncode == 0, answer.stderr
        assert "Generated self-signed cert" not in second.output()
    finally:
        second.stop()
    assert Path(cert_path).read_bytes() == original


# --- unit tests ----------------------------------------------------------


class _FakeTLSTransport:
    """
    Stands in for a TLSMemoryBIOProtocol: counts certificate look-ups.
    """

    def __init__(self, peer: crypto.X509 | None) -> None:
        self._peer = peer
        self.lookups = 0

    def getPeerCertificate(self) -> crypto.X509 | None:
        self.lookups += 1
        return self._peer


class _Object:
    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


def _http11_request(transport: object) -> object:
    return _Object(transport=transport, channel=_Object())


def _http2_request(transport: object) -> object:
    connection = _Object(transport=transport)
    return _Object(transport=_Object(), channel=_Object(_conn=connection))


def _peer(user: str, groups: list[str]) -> crypto.X509:
    ca = certs.make_ca("unit-ca")
    return crypto.X509.from_cryptography(
        certs.make_client_cert(ca, user, groups).certificate
    )


class ClientCertificateIdentityTests(SynchronousTestCase):
    """
    Tests for L{tls.client_certificate_identity}.
    """

    def test_http11(self) -> None:
        """
        Over HTTP/1.1 the identity comes from C{request.transport}.
        """
        transport = _FakeTLSTransport(_peer("carol", ["a", "b"]))
        identity = tls.client_certificate_identity(_http11_request(transport))
        self.assertEqual(identity, ("carol", ("a", "b")))

    def test_http2(self) -> None:
        """
        Over HTTP/2 it comes from the transport of C{request.channel._conn}.
        """
        transport = _FakeTLSTransport(_peer("dave", ["g"]))
        identity = tls.client_certificate_identity(_http2_request(transport))
        self.assertEqual(identity, ("dave", ("g",)))

    def test_parsed_once_per_connection(self) -> None:
        """
        Later requests on the same connection reuse the parsed identity,
        and so does "no certificate".
        """
        transport = _FakeTLSTransport(_peer("erin", []))
        for _ in range(3):
            identity = tls.client_certificate_identity(_http11_request(transport))
            self.assertEqual(identity, ("erin", ()))
        anonymous = _FakeTLSTransport(None)
        for _ in range(3):
            self.assertIsNone(
                tls.client_certificate_identity(_http2_request(anonymous))
            )
        self.assertEqual((transport.lookups, anonymous.lookups), (1, 1))

    def test_no_tls(self) -> None:
        """
        A transport without certificates (plain TCP, or none) gives
        C{None}.
        """
        self.assertIsNone(tls.client_certificate_identity(_http11_request(None)))
        self.assertIsNone(
            tls.client_certificate_identity(_http11_request(_Object()))
        )

    def test_no_common_name(self) -> None:
        """
        A certificate without a CN authenticates nobody.
        """
        transport = _FakeTLSTransport(_peer("", ["g"]))
        self.assertIsNone(tls.client_certificate_identity(_http11_request(transport)))


class ServerTLSOptionsTests(SynchronousTestCase):
    """
    Tests for L{tls.server_tls_options}.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        self.pki = TestPKI.create(self.directory)

    def test_client_ca_turns_on_verification(self) -> None:
        """
        With a client CA, peers are verified; the certificate is optional.
        """
        options = tls.server_tls_options(
            self.pki.server_cert_file, self.pki.server_key_file, self.pki.ca_file
        )
        self.assertTrue(options.verify)
        self.assertFalse(options.requireCertificate)

    def test_no_client_ca(self) -> None:
        """
        Without one, no client certificate is asked for.
        """
        options = tls.server_tls_options(
            self.pki.server_cert_file, self.pki.server_key_file, None
        )
        self.assertFalse(options.verify)

    def test_mismatched_key(self) -> None:
        """
        A key that does not belong to the certificate is refused by name.
        """
        alice_key = self.pki.users[ALICE].key_file
        error = self.assertRaises(
            tls.TLSConfigError,
            tls.server_tls_options,
            self.pki.server_cert_file,
            alice_key,
            None,
        )
        self.assertEqual(
            str(error),
            f"private key {alice_key} does not match certificate "
            f"{self.pki.server_cert_file}",
        )

    def test_unreadable_file(self) -> None:
        """
        A missing file gives the operating system's reason.
        """
        missing = os.path.join(self.directory, "missing.crt")
        error = self.assertRaises(
            tls.TLSConfigError,
            tls.server_tls_options,
            missing,
            self.pki.server_key_file,
            None,
        )
        self.assertEqual(str(error), f"cannot read {missing}: No such file or directory")

    def test_not_pem(self) -> None:
        """
        A CA file without a certificate is refused.
        """
        error = self.assertRaises(
            tls.TLSConfigError,
            tls.server_tls_options,
            self.pki.server_cert_file,
            self.pki.server_key_file,
            self.pki.ca_key_file,
        )
        self.assertIn("holds no PEM certificate", str(error))


class EnsureSelfSignedCertTests(SynchronousTestCase):
    """
    Tests for L{tls.ensure_self_signed_cert}.
    """

    def test_made_for_localhost(self) -> None:
        """
        The pair is made for localhost with IP SANs 127.0.0.1 and the bind
        address, the chain is in the certificate file and the key is 0600.
        """
        cert_dir = os.path.join(self.mktemp(), "certificates")
        cert_path, key_path = tls.ensure_self_signed_cert(
            cert_dir, "127.0.0.2", ["wardle.example"]
        )
        self.assertEqual(
            (cert_path, key_path),
            (
                os.path.join(cert_dir, "apiserver.crt"),
                os.path.join(cert_dir, "apiserver.key"),
            ),
        )
        chain = x509.load_pem_x509_certificates(Path(cert_path).read_bytes())
        self.assertEqual(len(chain), 2)
        sans = chain[0].extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        self.assertEqual(
            sorted(sans.get_values_for_type(x509.DNSName)),
            ["localhost", "wardle.example"],
        )
        self.assertEqual(
            sorted(str(a) for a in sans.get_values_for_type(x509.IPAddress)),
            ["127.0.0.1", "127.0.0.2"],
        )
        lifetime = chain[0].not_valid_after_utc - chain[0].not_valid_before_utc
        self.assertTrue(360 <= lifetime.days <= 366, lifetime)
        self.assertEqual(stat.S_IMODE(os.stat(key_path).st_mode), 0o600)
        tls.server_tls_options(cert_path, key_path, None)

    def test_wildcard_bind_address_not_in_sans(self) -> None:
        """
        0.0.0.0 is not a name clients use, so only 127.0.0.1 is an IP SAN.
        """
        cert_path, _ = tls.ensure_self_signed_cert(self.mktemp(), "0.0.0.0")
        leaf = x509.load_pem_x509_certificates(Path(cert_path).read_bytes())[0]
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        addresses = sans.value.get_values_for_type(x509.IPAddress)
        self.assertEqual([str(a) for a in addresses], ["127.0.0.1"])

    def test_reused(self) -> None:
        """
        An existing readable pair is returned untouched.
        """
        cert_dir = self.mktemp()
        cert_path, key_path = tls.ensure_self_signed_cert(cert_dir, "127.0.0.1")
        before = Path(cert_path).read_bytes(), Path(key_path).read_bytes()
        again = tls.ensure_self_signed_cert(cert_dir, "127.0.0.1")
        self.assertEqual(again, (cert_path, key_path))
        after = Path(cert_path).read_bytes(), Path(key_path).read_bytes()
        self.assertEqual(before, after)
