# -*- test-case-name: tests.test_certs -*-
"""
Tests for L{wardled.certs} and the C{wardled-certs} command.
"""

from __future__ import annotations

import io
import ipaddress
import os
import stat
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.trial.unittest import SynchronousTestCase

from tests.harness import KUBECTL, WhoAmIServer, venv_bin
from wardled import certs

FILES = (
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "client.crt",
    "client.key",
    "client.p12",
    "kubeconfig",
)


def _certificate(path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def _usages(certificate: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(
        certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )


class KeyPairTests(SynchronousTestCase):
    """
    Tests for L{certs.make_ca}, L{certs.make_serving_cert} and
    L{certs.make_client_cert}.
    """

    def setUp(self) -> None:
        self.ca = certs.make_ca("test-ca")

    def test_ca(self) -> None:
        constraints = self.ca.certificate.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
        self.assertTrue(constraints.ca)
        self.assertEqual(self.ca.certificate.issuer, self.ca.certificate.subject)
        self.assertEqual(self.ca.common_name(), "test-ca")

    def test_serving_cert_sans(self) -> None:
        """
        IP addresses become IP SANs, anything else DNS SANs; the usage is
        serverAuth and the chain is the CA.
        """
        pair = certs.make_serving_cert(self.ca, ["localhost", "127.0.0.1", "::1", "a.b"])
        sans = pair.certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        self.assertEqual(sans.get_values_for_type(x509.DNSName), ["localhost", "a.b"])
        self.assertEqual(
            sans.get_values_for_type(x509.IPAddress),
            [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")],
        )
        self.assertEqual(_usages(pair.certificate), [ExtendedKeyUsageOID.SERVER_AUTH])
        self.assertEqual(pair.chain, (self.ca.certificate,))
        pair.certificate.verify_directly_issued_by(self.ca.certificate)

    def test_client_cert_subject(self) -> None:
        """
        CN is the user, one O per group in order; the usage is clientAuth.
        """
        pair = certs.make_client_cert(self.ca, "development", ["system:masters", "devs"])
        subject = pair.certificate.subject
        self.assertEqual(
            [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)],
            ["development"],
        )
        self.assertEqual(
            [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)],
            ["system:masters", "devs"],
        )
        self.assertEqual(_usages(pair.certificate), [ExtendedKeyUsageOID.CLIENT_AUTH])
        pair.certificate.verify_directly_issued_by(self.ca.certificate)

    def test_write_and_load(self) -> None:
        """
        A pair written with its chain loads back the same; the key is 0600.
        """
        directory = self.mktemp()
        pair = certs.make_serving_cert(self.ca, ["localhost"])
        cert_path, key_path = f"{directory}/s.crt", f"{directory}/s.key"
        certs.write_key_pair(pair, cert_path, key_path, with_chain=True)
        loaded = certs.load_key_pair(cert_path, key_path)
        self.assertEqual(loaded.certificate, pair.certificate)
        self.assertEqual(loaded.chain, (self.ca.certificate,))
        self.assertEqual(loaded.key_pem(), pair.key_pem())
        self.assertEqual(stat.S_IMODE(os.stat(key_path).st_mode), 0o600)


class InitTests(SynchronousTestCase):
    """
    Tests for C{wardled-certs init} (L{certs.main}).
    """

    def run_main(self, *args: str) -> tuple[int, str]:
        output = io.StringIO()
        with redirect_stdout(output):
            status = certs.main(list(args))
        return status, output.getvalue()

    def test_writes_everything(self) -> None:
        directory = self.mktemp()
        status, output = self.run_main(
            "init", directory, "--san", "wardle.local", "--san", "127.0.1.1",
            "--user", "carol", "--group", "devs", "--group", "ops",
        )
        self.assertEqual(status, 0)
        self.assertEqual(
            output.splitlines(), [f"wrote {directory}/{name}" for name in FILES]
        )
        ca = _certificate(f"{directory}/ca.crt")
        server = _certificate(f"{directory}/server.crt")
        server.verify_directly_issued_by(ca)
        sans = server.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        self.assertEqual(
            sans.get_values_for_type(x509.DNSName), ["localhost", "wardle.local"]
        )
        self.assertEqual(
            [str(a) for a in sans.get_values_for_type(x509.IPAddress)],
            ["127.0.0.1", "127.0.1.1"],
        )
        client = _certificate(f"{directory}/client.crt")
        self.assertEqual(
            client.subject.rfc4514_string(), "CN=carol,O=ops,O=devs"
        )
        for secret in ("ca.key", "server.key", "client.key", "client.p12", "kubeconfig"):
            mode = stat.S_IMODE(os.stat(f"{directory}/{secret}").st_mode)
            self.assertEqual(mode, 0o600, secret)

    def test_p12_loads_without_password(self) -> None:
        directory = self.mktemp()
        self.run_main("init", directory)
        bundle = pkcs12.load_pkcs12(Path(f"{directory}/client.p12").read_bytes(), None)
        assert bundle.cert is not None
        self.assertEqual(bundle.cert.certificate, _certificate(f"{directory}/client.crt"))
        self.assertEqual(
            [each.certificate for each in bundle.additional_certs],
            [_certificate(f"{directory}/ca.crt")],
        )
        self.assertIsNotNone(bundle.key)

    def test_default_identity(self) -> None:
        """
        By default the client is the reference's development user.
        """
        directory = self.mktemp()
        self.run_main("init", directory)
        client = _certificate(f"{directory}/client.crt")
        self.assertEqual(client.subject.rfc4514_string(), "CN=development,O=system:masters")

    def test_kubeconfig(self) -> None:
        directory = self.mktemp()
        self.run_main("init", directory, "--server", "https://127.0.0.1:9443")
        document = yaml.safe_load(Path(f"{directory}/kubeconfig").read_text())
        self.assertEqual(document["current-context"], "wardled-development")
        cluster = document["clusters"][0]["cluster"]
        self.assertEqual(cluster["server"], "https://127.0.0.1:9443")
        self.assertEqual(cluster["certificate-authority"], os.path.abspath(f"{directory}/ca.crt"))
        user = document["users"][0]["user"]
        self.assertEqual(user["client-certificate"], os.path.abspath(f"{directory}/client.crt"))
        self.assertEqual(user["client-key"], os.path.abspath(f"{directory}/client.key"))

    def test_rerun_keeps_everything(self) -> None:
        directory = self.mktemp()
        self.run_main("init", directory)
        before = {name: Path(f"{directory}/{name}").read_bytes() for name in FILES}
        status, output = self.run_main("init", directory, "--user", "other")
        self.assertEqual(status, 0)
        self.assertEqual(output.splitlines(), [f"kept {directory}/{name}" for name in FILES])
        after = {name: Path(f"{directory}/{name}").read_bytes() for name in FILES}
        self.assertEqual(before, after)

    def test_rerun_keeps_ca_and_fills_gaps(self) -> None:
        """
        Removed leaf files are made again, signed by the kept CA.
        """
        directory = self.mktemp()
        self.run_main("init", directory)
        ca_before = Path(f"{directory}/ca.crt").read_bytes()
        os.remove(f"{directory}/server.key")
        os.remove(f"{directory}/client.p12")
        status, output = self.run_main("init", directory)
        self.assertEqual(status, 0)
        self.assertIn(f"wrote {directory}/server.crt", output)
        self.assertIn(f"wrote {directory}/client.p12", output)
        self.assertIn(f"kept {directory}/ca.crt", output)
        self.assertIn(f"kept {directory}/client.crt", output)
        self.assertEqual(Path(f"{directory}/ca.crt").read_bytes(), ca_before)
        ca = _certificate(f"{directory}/ca.crt")
        _certificate(f"{directory}/server.crt").verify_directly_issued_by(ca)

    def test_error_is_one_line(self) -> None:
        blocker = self.mktemp()
        Path(blocker).write_text("a file\n")
        error = io.StringIO()
        with redirect_stderr(error):
            status = certs.main(["init", f"{blocker}/certs"])
        self.assertEqual(status, 1)
        self.assertEqual(len(error.getvalue().splitlines()), 1)
        self.assertTrue(error.getvalue().startswith("wardled-certs: error: "))


def test_console_script_and_kubectl(tmp_path: Path) -> None:
    """
    The installed C{wardled-certs} makes a PKI whose kubeconfig kubectl
    uses to reach a server with client-certificate authentication as the
    development user.
    """
    directory = tmp_path / "certs"
    result = subprocess.run(
        [venv_bin("wardled-certs"), "init", str(directory)],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"wrote {directory}/{n}" for n in FILES]
    server = WhoAmIServer.start(
        str(directory / "server.crt"),
        str(directory / "server.key"),
        str(directory / "ca.crt"),
        cert_dir=str(tmp_path / "run"),
    )
    try:
        kubectl = subprocess.run(
            [KUBECTL, "--kubeconfig", str(directory / "kubeconfig"),
             "--server", server.url, "--cache-dir", str(tmp_path / "cache"),
             "get", "--raw", "/whoami"],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
            timeout=60,
        )
    finally:
        server.stop()
    assert kubectl.returncode == 0, kubectl.stderr
    assert yaml.safe_load(kubectl.stdout) == {
        "user": "development",
        "groups": ["system:masters"],
        "protocol": "HTTP/2",
    }
