# -*- test-case-name: tests.test_certs -*-
"""
A small PKI for running and testing wardled, made with C{cryptography}.

wardled authenticates clients by x509 certificates (user = CN, groups = O),
so a developer needs a CA, a serving certificate, a client certificate and a
kubeconfig before the first request.  C{wardled-certs init DIR} makes all of
them; the same helpers create the self-signed serving certificate when no
C{--tls-cert-file} is given, and the integration tests build their PKI with
them.  No C{openssl} command line is needed.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
import typing
from collections.abc import Sequence

import attrs
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=365)
CLOCK_SKEW = datetime.timedelta(minutes=5)
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
DEFAULT_USER = "development"
DEFAULT_GROUPS = ("system:masters",)
DEFAULT_SERVER_URL = "https://127.0.0.1:8443"


@attrs.frozen
class KeyPair:
    """
    A private key with its certificate and the certificates that chain it
    to its root.

    @ivar key: the private key.
    @ivar certificate: the certificate of C{key}.
    @ivar chain: the issuing certificates after C{certificate}, leaf-most
        first (empty for a root CA).
    """

    key: CertificateIssuerPrivateKeyTypes
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    def certificate_pem(self, with_chain: bool = False) -> bytes:
        """
        The certificate in PEM, optionally followed by its chain.
        """
        certificates = (self.certificate,) + (self.chain if with_chain else ())
        return b"".join(
            each.public_bytes(serialization.Encoding.PEM) for each in certificates
        )

    def key_pem(self) -> bytes:
        """
        The private key as unencrypted PKCS#8 PEM.
        """
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def common_name(self) -> str:
        """
        The first CN of the certificate's subject, or C{""}.
        """
        names = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else ""


def _new_key() -> ec.EllipticCurvePrivateKey:
    """
    A fresh P-256 key: fast to make and accepted by curl, kubectl and Go.
    """
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: CertificateIssuerPrivateKeyTypes,
    validity: datetime.timedelta,
) -> x509.CertificateBuilder:
    """
    A certificate builder with the fields every certificate here shares.
    """
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
    )


def make_ca(
    common_name: str, validity: datetime.timedelta = CA_VALIDITY
) -> KeyPair:
    """
    Make a self-signed certificate authority.

    @param common_name: the CA's subject CN.
    @param validity: how long the CA is valid.
    @return: the CA's key and certificate.
    """
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        _builder(name, name, key, validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(key, certificate)


def _leaf(
    ca: KeyPair,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    validity: datetime.timedelta,
    sans: Sequence[x509.GeneralName] = (),
) -> KeyPair:
    """
    Make a certificate for a new key, signed by C{ca}, for one extended
    key usage.
    """
    key = _new_key()
    builder = (
        _builder(subject, ca.certificate.subject, key, validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.key.public_key()
            ),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(sans)), critical=False
        )
    certificate = builder.sign(ca.key, hashes.SHA256())
    return KeyPair(key, certificate, (ca.certificate,))


def host_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """
    Turn host names and IP addresses into subject alternative names.

    @param hosts: DNS names or IP addresses, in the order wanted.
    @return: one C{IPAddress} or C{DNSName} per distinct host.
    """
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_serving_cert(
    ca: KeyPair,
    hosts: Sequence[str],
    validity: datetime.timedelta = LEAF_VALIDITY,
    common_name: str | None = None,
) -> KeyPair:
    """
    Make a TLS server certificate signed by C{ca}.

    @param ca: the issuing CA.
    @param hosts: the names and IP addresses clients will connect to; each
        becomes a DNS or IP subject alternative name.
    @param validity: how long the certificate is valid.
    @param common_name: the subject CN; default the first host.
    @return: the key, the certificate and the chain (C{ca}'s certificate).
    """
    if not hosts:
        raise ValueError("a serving certificate needs at least one host")
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name or hosts[0])]
    )
    return _leaf(
        ca, subject, ExtendedKeyUsageOID.SERVER_AUTH, validity, host_names(hosts)
    )


def make_client_cert(
    ca: KeyPair,
    user: str,
    groups: Sequence[str],
    validity: datetime.timedelta = LEAF_VALIDITY,
) -> KeyPair:
    """
    Make a client certificate in Kubernetes' convention: CN is the user
    name, each O is a group.

    @param ca: the issuing CA (the one given to C{--client-ca-file}).
    @param user: the user name; C{""} leaves the CN out (such a
        certificate authenticates nobody).
    @param groups: the groups, in order.
    @param validity: how long the certificate is valid.
    @return: the key, the certificate and the chain (C{ca}'s certificate).
    """
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    if user:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
    return _leaf(
        ca, x509.Name(attributes), ExtendedKeyUsageOID.CLIENT_AUTH, validity
    )


def write_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """
    Write C{data} to C{path} atomically with the given permission bits.

    The file is created with C{mode} from the start, so a private key is
    never readable by others, not even briefly.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "wb") as output:
            output.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_key_pair(
    pair: KeyPair, cert_path: str, key_path: str, with_chain: bool = False
) -> None:
    """
    Write a certificate (optionally with its chain) and its key as PEM; the
    key file gets mode 0600.
    """
    write_file(key_path, pair.key_pem(), 0o600)
    write_file(cert_path, pair.certificate_pem(with_chain))


def load_key_pair(cert_path: str, key_path: str) -> KeyPair:
    """
    Read a PEM certificate (with any chain after it) and its PEM key.

    @raise OSError: a file cannot be read.
    @raise ValueError: a file holds no certificate or key.
    @raise TypeError: the key is not one that can sign.
    """
    with open(cert_path, "rb") as cert_file:
        certificates = x509.load_pem_x509_certificates(cert_file.read())
    with open(key_path, "rb") as key_file:
        key = serialization.load_pem_private_key(key_file.read(), password=None)
    if not isinstance(key, _SIGNING_KEY_TYPES):
        raise TypeError(f"{key_path}: unsupported private key type")
    return KeyPair(key, certificates[0], tuple(certificates[1:]))


_SIGNING_KEY_TYPES = typing.get_args(CertificateIssuerPrivateKeyTypes)


def pkcs12_bundle(pair: KeyPair, name: str) -> bytes:
    """
    A password-less PKCS#12 file holding the key, the certificate and its
    chain (for browsers and tools that want one file).
    """
    return pkcs12.serialize_key_and_certificates(
        name.encode("utf-8"),
        typing.cast(pkcs12.PKCS12PrivateKeyTypes, pair.key),
        pair.certificate,
        list(pair.chain) or None,
        serialization.NoEncryption(),
    )


def kubeconfig(
    server_url: str,
    ca_file: str,
    cert_file: str | None,
    key_file: str | None,
    user: str,
) -> dict[str, object]:
    """
    A kubeconfig document that talks to C{server_url} as C{user}.

    File paths are made absolute so the kubeconfig works from any directory.
    Without C{cert_file} and C{key_file} the user has no credentials
    (anonymous).
    """
    context = f"wardled-{user}"
    credentials: dict[str, str] = {}
    if cert_file and key_file:
        credentials = {
            "client-certificate": os.path.abspath(cert_file),
            "client-key": os.path.abspath(key_file),
        }
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": "wardled",
                "cluster": {
                    "server": server_url,
                    "certificate-authority": os.path.abspath(ca_file),
                },
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": "wardled", "user": user},
            }
        ],
        "current-context": context,
    }


def write_kubeconfig(
    path: str,
    server_url: str,
    ca_file: str,
    cert_file: str | None,
    key_file: str | None,
    user: str,
) -> None:
    """
    Write a kubeconfig for C{user} (see L{kubeconfig}) with mode 0600.
    """
    document = kubeconfig(server_url, ca_file, cert_file, key_file, user)
    write_file(path, yaml.safe_dump(document, sort_keys=False).encode(), 0o600)


@attrs.frozen
class InitResult:
    """
    What L{init_directory} did.

    @ivar written: the files it created.
    @ivar kept: the files that already existed and were left alone.
    """

    written: tuple[str, ...]
    kept: tuple[str, ...]


def _load_or_make_ca(directory: str) -> tuple[KeyPair, bool]:
    """
    Reuse C{ca.crt}/C{ca.key} in C{directory} or make a new CA.

    @return: the CA and whether it was made now.
    """
    cert_path = os.path.join(directory, "ca.crt")
    key_path = os.path.join(directory, "ca.key")
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return load_key_pair(cert_path, key_path), False
    ca = make_ca(f"wardled-ca@{int(_now().timestamp())}")
    write_key_pair(ca, cert_path, key_path)
    return ca, True


def init_directory(
    directory: str,
    sans: Sequence[str] = (),
    user: str = DEFAULT_USER,
    groups: Sequence[str] = DEFAULT_GROUPS,
    server_url: str = DEFAULT_SERVER_URL,
) -> InitResult:
    """
    Create (or complete) a development PKI in C{directory}.

    Files: C{ca.crt ca.key server.crt server.key client.crt client.key
    client.p12 kubeconfig}.  An existing CA is kept, and so is every existing
    file, unless the CA is new, in which case everything it signs is made
    again.

    @param directory: where to write; created if needed.
    @param sans: extra host names or IP addresses for the serving
        certificate, besides C{localhost} and C{127.0.0.1}.
    @param user: the client certificate's user (CN).
    @param groups: the client certificate's groups (O).
    @param server_url: the server the kubeconfig points at.
    """
    os.makedirs(directory, exist_ok=True)
    ca, ca_is_new = _load_or_make_ca(directory)
    written: list[str] = []
    kept: list[str] = []
    (written if ca_is_new else kept).extend(["ca.crt", "ca.key"])

    def path(name: str) -> str:
        return os.path.join(directory, name)

    def needed(*names: str, force: bool = ca_is_new) -> bool:
        absent = force or not all(os.path.exists(path(n)) for n in names)
        (written if absent else kept).extend(names)
        return absent

    if needed("server.crt", "server.key"):
        serving = make_serving_cert(ca, [*DEFAULT_HOSTS, *sans])
        write_key_pair(serving, path("server.crt"), path("server.key"))
    client_is_new = needed("client.crt", "client.key")
    if client_is_new:
        client = make_client_cert(ca, user, groups)
        write_key_pair(client, path("client.crt"), path("client.key"))
    if needed("client.p12", force=client_is_new):
        _write_p12(ca, path("client.crt"), path("client.key"), path("client.p12"))
    if needed("kubeconfig", force=client_is_new):
        write_kubeconfig(
            path("kubeconfig"),
            server_url,
            path("ca.crt"),
            path("client.crt"),
            path("client.key"),
            user,
        )
    return InitResult(tuple(written), tuple(kept))


def _write_p12(ca: KeyPair, cert_path: str, key_path: str, p12_path: str) -> None:
    """
    Bundle the client pair on disk (with C{ca}) into a password-less
    PKCS#12 file with mode 0600.
    """
    client = attrs.evolve(load_key_pair(cert_path, key_path), chain=(ca.certificate,))
    bundle = pkcs12_bundle(client, client.common_name() or "client")
    write_file(p12_path, bundle, 0o600)


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wardled-certs",
        description="Make certificates and a kubeconfig for running wardled.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser(
        "init",
        help="create a CA, a serving and a client certificate and a kubeconfig",
        description=(
            "Write ca.crt ca.key server.crt server.key client.crt client.key "
            "client.p12 kubeconfig into DIR.  Existing files and an existing "
            "CA are kept."
        ),
    )
    init.add_argument("directory", metavar="DIR")
    init.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help="another DNS name or IP address for server.crt "
        "(localhost and 127.0.0.1 are always included); repeatable",
    )
    init.add_argument(
        "--user", default=DEFAULT_USER, help="client certificate CN (user name)"
    )
    init.add_argument(
        "--group",
        action="append",
        default=None,
        metavar="GROUP",
        help="client certificate O (group); repeatable; "
        f"default {', '.join(DEFAULT_GROUPS)}",
    )
    init.add_argument(
        "--server",
        default=DEFAULT_SERVER_URL,
        metavar="URL",
        help=f"server URL written into the kubeconfig (default {DEFAULT_SERVER_URL})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    The C{wardled-certs} command.

    @param argv: the arguments after the program name; default C{sys.argv}.
    @return: the exit status.
    """
    arguments = _argument_parser().parse_args(argv)
    groups = DEFAULT_GROUPS if arguments.group is None else arguments.group
    try:
        result = init_directory(
            arguments.directory,
            sans=arguments.san,
            user=arguments.user,
            groups=groups,
            server_url=arguments.server,
        )
    except (OSError, ValueError, TypeError) as error:
        print(f"wardled-certs: error: {error}", file=sys.stderr)
        return 1
    for name in result.written:
        print(f"wrote {os.path.join(arguments.directory, name)}")
    for name in result.kept:
        print(f"kept {os.path.join(arguments.directory, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
