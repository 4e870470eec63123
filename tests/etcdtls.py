"""
etcd with mutual TLS for tests: a throwaway CA and an etcd per test class
that serves HTTPS and requires client certificates.
"""

from __future__ import annotations

import atexit
import datetime
import ipaddress
import os
import shutil
import tempfile
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.etcdserver import EtcdServer, EtcdTLS


def write_pem(path: str, data: bytes) -> str:
    with open(path, "wb") as target:
        target.write(data)
    return path


class TestCA:
    """
    A throwaway certificate authority issuing certificates for 127.0.0.1.
    """

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            self._builder(self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(self.key, hashes.SHA256())
        )

    def _builder(
        self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name if hasattr(self, "certificate") else subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def issue(
        self, directory: str, name: str, *usages: x509.ObjectIdentifier
    ) -> tuple[str, str]:
        """
        Write a certificate and key for C{name}, valid for 127.0.0.1.

        @return: the certificate and key file paths.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (
            self._builder(subject, key.public_key())
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                False,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
        return (
            write_pem(os.path.join(directory, f"{name}.crt"), cert_pem),
            write_pem(os.path.join(directory, f"{name}.key"), key_pem),
        )

    def write(self, directory: str) -> str:
        pem = self.certificate.public_bytes(serialization.Encoding.PEM)
        return write_pem(os.path.join(directory, "ca.crt"), pem)



class MutualTLSEtcdMixin:
    """
    For trial test cases: one etcd per test class serving HTTPS and
    requiring client certificates, started on first use (C{self.server})
    with its PEM files in C{files}: C{ca} (signs etcd's and the client's
    certificates), C{cert}/C{key} (a client certificate), C{other_ca} (a CA
    that signed neither), C{dir}.
    """

    etcd: EtcdServer | None = None
    files: ClassVar[dict[str, str]] = {}

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.etcd is not None:
            cls.etcd.stop()
            cls.etcd = None
        if cls.files:
            shutil.rmtree(cls.files["dir"], ignore_errors=True)

    def setUp(self) -> None:
        cls = type(self)
        if cls.etcd is None:
            directory = tempfile.mkdtemp(prefix="wardled-etcd-pki-")
            atexit.register(shutil.rmtree, directory, True)
            ca = TestCA("etcd-ca")
            # etcd's gateway dials etcd's own gRPC port with the serving
            # certificate, so with client-cert auth that certificate must
            # also be good for client authentication.
            cert, key = ca.issue(
                directory,
                "etcd",
                ExtendedKeyUsageOID.SERVER_AUTH,
                ExtendedKeyUsageOID.CLIENT_AUTH,
            )
            client_cert, client_key = ca.issue(
                directory, "wardled", ExtendedKeyUsageOID.CLIENT_AUTH
            )
            cls.files = {
                "dir": directory,
                "ca": ca.write(directory),
                "cert": client_cert,
                "key": client_key,
                "other_ca": TestCA("other-ca").write(tempfile.mkdtemp(dir=directory)),
            }
            tls = EtcdTLS(cls.files["ca"], cert, key, client_cert, client_key)
            cls.etcd = EtcdServer.start(tls=tls)
            atexit.register(cls.etcd.stop)
        self.server = cls.etcd
