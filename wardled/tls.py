# -*- test-case-name: tests.test_tls -*-
"""
HTTPS with optional x509 client-certificate authentication.

Twisted's C{ssl:} endpoint strings cannot ask for client certificates, so
wardled listens on a plain TCP endpoint and wraps its L{Site} in
L{TLSMemoryBIOFactory} with TLS settings that request (but do not require) a
client certificate chained to one of the I{handshake authorities}: the
C{--client-ca-file} bundle and, with front-proxy authentication, the
C{--requestheader-client-ca-file} bundle.  A certificate from any other CA
fails the handshake; no certificate at all is fine, and the request is then
authenticated some other way or is anonymous.  Which of the bundles a
certificate chains to is decided per request by L{wardled.auth} (see
L{peer_certificates} and L{CertificateVerifier}), because the two bundles
mean different things and either may be rotated while the server runs
(L{RotatingServerTLS}).

L{client_certificate_identity} reads the verified certificate's CN (user)
and O values (groups) from a request over HTTP/1.1 or HTTP/2; with
L{peer_certificates} it is the one place that knows where the TLS transport
hides under each protocol.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IOpenSSLServerConnectionCreator,
    IReactorTCP,
    IStreamServerEndpoint,
)
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Site
from zope.interface import implementer

from wardled import certs
from wardled.config import WardledConfig
from wardled.workers import ReusePortEndpoint

log = Logger()

SELF_SIGNED_CERT_NAME = "apiserver.crt"
SELF_SIGNED_KEY_NAME = "apiserver.key"
HTTP11_ONLY = [b"http/1.1"]

Identity = tuple[str, tuple[str, ...]]

# Where a TLS protocol object caches its peer's certificates (see
# peer_certificates); _NOT_LOOKED marks "not looked yet".
_PEER_ATTRIBUTE = "_wardled_peer_certificates"
_NOT_LOOKED = object()


class TLSConfigError(ValueError):
    """
    A certificate, key or CA file cannot be used; the message says which
    file and why, in one line.
    """


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as source:
            return source.read()
    except OSError as error:
        raise TLSConfigError(
            f"cannot read {path}: {error.strerror or error}"
        ) from error


def load_certificates(path: str) -> list[x509.Certificate]:
    """
    Read every PEM certificate in C{path}, in order.

    @raise TLSConfigError: the file cannot be read or holds no certificate.
    """
    return load_certificates_pem(_read(path), path)


def load_private_key(path: str) -> Any:
    """
    Read an unencrypted PEM private key.

    @raise TLSConfigError: the file cannot be read or holds no usable key.
    """
    data = _read(path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise TLSConfigError(
            f"{path} holds no unencrypted PEM private key: {error}"
        ) from error


def _public_der(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )


def load_certificates_pem(data: bytes, source: str) -> list[x509.Certificate]:
    """
    Every PEM certificate in C{data} (read from C{source}, named in errors).

    @raise TLSConfigError: C{data} holds no PEM certificate.
    """
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise TLSConfigError(f"{source} holds no PEM certificate: {error}") from error


@attrs.frozen
class ServingPair:
    """
    The serving certificate (with its chain) and its private key.
    """

    chain: tuple[x509.Certificate, ...]
    key: Any

    @classmethod
    def load(cls, cert_file: str, key_file: str) -> ServingPair:
        """
        Read and check a serving pair.

        @raise TLSConfigError: a file is unreadable or malformed, or the key
            does not belong to the certificate.
        """
        chain = load_certificates(cert_file)
        key = load_private_key(key_file)
        if _public_der(chain[0].public_key()) != _public_der(key.public_key()):
            raise TLSConfigError(
                f"private key {key_file} does not match certificate {cert_file}"
            )
        pair = cls(tuple(chain), key)
        try:
            pair.options(()).getContext()
        except Exception as error:
            raise TLSConfigError(
                f"cannot use certificate {cert_file} with key {key_file}: {error}"
            ) from error
        return pair

    def options(self, authorities: Sequence[x509.Certificate]) -> CertificateOptions:
        """
        TLS settings serving this pair, TLS 1.2 at least, asking for (not
        requiring) a client certificate chained to one of C{authorities}
        (none asked for when empty).
        """
        # Twisted's annotations still say pyOpenSSL X509, but pyOpenSSL takes
        # cryptography objects directly (and warns about X509 ones).  caCerts
        # must stay pyOpenSSL X509: X509Store.add_cert rejects anything else.
        return CertificateOptions(
            privateKey=self.key,
            certificate=self.chain[0],  # type: ignore[arg-type]
            extraCertChain=list(self.chain[1:]) or None,  # type: ignore[arg-type]
            verify=bool(authorities),
            caCerts=[crypto.X509.from_cryptography(each) for each in authorities]
            or None,
            requireCertificate=False,
            raiseMinimumTo=TLSVersion.TLSv1_2,
        )


def server_tls_options(
    cert_file: str, key_file: str, client_ca_file: str | None
) -> CertificateOptions:
    """
    Build the server's TLS settings with one fixed client CA bundle.

    ALPN (h2, http/1.1) comes from the wrapped L{Site}, not from here.

    @param cert_file: the serving certificate in PEM, optionally followed by
        its chain.
    @param key_file: the serving certificate's private key in PEM.
    @param client_ca_file: PEM CA certificates that sign client
        certificates; when C{None} no client certificate is requested.
    @return: options for L{TLSMemoryBIOFactory}.
    @raise TLSConfigError: a file is unreadable or malformed, or the key does
        not belong to the certificate.
    """
    pair = ServingPair.load(cert_file, key_file)
    authorities = [] if client_ca_file is None else load_certificates(client_ca_file)
    options = pair.options(authorities)
    options.getContext()
    return options


@implementer(IOpenSSLServerConnectionCreator)
class RotatingServerTLS:
    """
    Server TLS whose handshake authorities can change while the server runs
    (a rotated client or front-proxy CA): each new connection uses the
    authorities current when it arrives; open connections keep theirs.

    @ivar authorities: returns the current handshake authorities; the
        settings are rebuilt only when it returns a different tuple.
    """

    def __init__(
        self,
        pair: ServingPair,
        authorities: Callable[[], tuple[x509.Certificate, ...]],
    ) -> None:
        self.pair = pair
        self.authorities = authorities
        self._built_for = authorities()
        self._options = pair.options(self._built_for)

    def set_pair(self, pair: ServingPair) -> None:
        """
        Serve C{pair} to connections arriving from now on (a reloaded
        certificate); open connections keep the one they were accepted with.
        """
        self._options = pair.options(self._built_for)
        self.pair = pair

    def context(self) -> SSL.Context:
        """
        The OpenSSL context for a connection arriving now.
        """
        current = self.authorities()
        if current is not self._built_for and current != self._built_for:
            self._options = self.pair.options(current)
            self._built_for = current
        return self._options.getContext()

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self.context(), None)


def _readable(*paths: str) -> bool:
    return all(os.access(path, os.R_OK) for path in paths)


def ensure_self_signed_cert(
    cert_dir: str, bind_address: str, alternate_dns: Sequence[str] = ()
) -> tuple[str, str]:
    """
    Return a serving certificate and key in C{cert_dir}, making a
    self-signed pair when there is none (like the reference's
    C{MaybeDefaultWithSelfSignedCerts}).

    An existing readable C{apiserver.crt} and C{apiserver.key} are reused.
    Otherwise a new CA signs a one-year certificate for C{localhost} with IP
    SANs 127.0.0.1 (plus C{bind_address} unless it is a wildcard) and DNS
    SANs C{localhost} plus C{alternate_dns}; the certificate file holds the
    chain and the key file has mode 0600.

    @return: the certificate and key paths.
    @raise OSError: C{cert_dir} cannot be created or written.
    """
    cert_path = os.path.join(cert_dir, SELF_SIGNED_CERT_NAME)
    key_path = os.path.join(cert_dir, SELF_SIGNED_KEY_NAME)
    if _readable(cert_path, key_path):
        return cert_path, key_path
    hosts = ["localhost", *alternate_dns, "127.0.0.1"]
    if not ipaddress.ip_address(bind_address).is_unspecified:
        hosts.append(bind_address)
    ca = certs.make_ca(f"localhost-ca@{int(time.time())}")
    serving = certs.make_serving_cert(ca, hosts, common_name="localhost")
    certs.write_key_pair(serving, cert_path, key_path, with_chain=True)
    log.info(
        "Generated self-signed cert ({cert}, {key})", cert=cert_path, key=key_path
    )
    return cert_path, key_path


def _tls_transport(request: Any) -> Any:
    """
    The TLS protocol object under C{request}, for HTTP/1.1 and HTTP/2.

    Over HTTP/1.1 C{request.transport} is the L{TLSMemoryBIOProtocol}; over
    HTTP/2 it is an C{H2Stream}, and the TLS protocol is the transport of the
    stream's (private) C{_conn}, the C{H2Connection}.
    """
    connection = getattr(request.channel, "_conn", None)
    if connection is not None:
        return connection.transport
    return request.transport


def _identity_of(certificate: x509.Certificate) -> Identity:
    subject = certificate.subject
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    organizations = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    user = str(names[0].value) if names else ""
    return user, tuple(str(each.value) for each in organizations)


class PeerCertificates:
    """
    What the client of one TLS connection presented: its certificate, the
    intermediates it sent, and the identity the certificate names.

    Kept on the connection so that a connection's many requests parse the
    certificate once, and verify it against each L{CertificateVerifier}
    once (L{verdicts}).
    """

    def __init__(self, leaf: crypto.X509, intermediates: Sequence[crypto.X509]) -> None:
        self.leaf = leaf
        self.intermediates = tuple(intermediates)
        self.identity = _identity_of(leaf.to_cryptography())
        self.verdicts: dict[int, bool] = {}

    @property
    def common_name(self) -> str:
        return self.identity[0]


def _read_peer(transport: Any) -> PeerCertificates | None:
    get_peer_certificate = getattr(transport, "getPeerCertificate", None)
    leaf = get_peer_certificate() if get_peer_certificate is not None else None
    if leaf is None:
        return None
    connection = getattr(transport, "_tlsConnection", None)
    chain = connection.get_peer_cert_chain() if connection is not None else None
    leaf_der = crypto.dump_certificate(crypto.FILETYPE_ASN1, leaf)
    intermediates = [
        each
        for each in chain or ()
        if crypto.dump_certificate(crypto.FILETYPE_ASN1, each) != leaf_der
    ]
    return PeerCertificates(leaf, intermediates)


def peer_certificates(request: Any) -> PeerCertificates | None:
    """
    The client certificate (and chain) of C{request}'s connection, parsed
    once per connection.

    The handshake already checked that it chains to one of the handshake
    authorities; which one is for a L{CertificateVerifier} to say.

    @param request: a L{twisted.web.server.Request} over TLS (HTTP/1.1 or
        HTTP/2).
    @return: C{None} when the client sent no certificate or the connection
        is not TLS.
    """
    transport = _tls_transport(request)
    cached = getattr(transport, _PEER_ATTRIBUTE, _NOT_LOOKED)
    if cached is _NOT_LOOKED:
        cached = _read_peer(transport)
        try:
            setattr(transport, _PEER_ATTRIBUTE, cached)
        except AttributeError:
            pass
    return cached  # type: ignore[return-value]


def client_certificate_identity(request: Any) -> Identity | None:
    """
    The user (CN) and groups (every O, in order) of the client certificate
    on C{request}'s connection.

    @param request: a L{twisted.web.server.Request} over TLS (HTTP/1.1 or
        HTTP/2).
    @return: C{(user, groups)}, or C{None} when the client sent no
        certificate, the connection is not TLS, or the certificate has no CN
        (Kubernetes then does not authenticate the request by certificate).
    """
    peer = peer_certificates(request)
    if peer is None or peer.common_name == "":
        return None
    return peer.identity


_VERIFIER_SERIALS = itertools.count(1)


class CertificateVerifier:
    """
    Whether a client certificate chains to one CA bundle.

    The handshake accepts a certificate that chains to any handshake
    authority; a verifier per bundle tells them apart (is this the
    front-proxy, or a user with a client certificate?).  A rotated bundle
    gets a new verifier, so verdicts cached on a connection under the old
    one are not reused.
    """

    def __init__(self, authorities: Sequence[x509.Certificate]) -> None:
        self.authorities = tuple(authorities)
        self.serial = next(_VERIFIER_SERIALS)
        self._store = crypto.X509Store()
        for authority in self.authorities:
            self._store.add_cert(crypto.X509.from_cryptography(authority))

    def verifies(self, peer: PeerCertificates) -> bool:
        """
        Whether C{peer}'s certificate chains to this bundle (checked once
        per connection).
        """
        verdict = peer.verdicts.get(self.serial)
        if verdict is None:
            verdict = self._verify(peer)
            peer.verdicts[self.serial] = verdict
        return verdict

    def _verify(self, peer: PeerCertificates) -> bool:
        if not self.authorities:
            return False
        context = crypto.X509StoreContext(self._store, peer.leaf, list(peer.intermediates))
        try:
            context.verify_certificate()
        except crypto.X509StoreContextError:
            return False
        return True


def listening_endpoint(
    reactor: IReactorTCP, port: int, bind_address: str, reuse_port: bool = False
) -> IStreamServerEndpoint:
    """
    A TCP endpoint on C{bind_address}:C{port} (IPv4 or IPv6).

    @param reuse_port: share the port with other processes (C{--workers}:
        a L{wardled.workers.ReusePortEndpoint}).
    """
    if reuse_port:
        return ReusePortEndpoint(reactor, port, bind_address)
    if ipaddress.ip_address(bind_address).version == 6:
        return TCP6ServerEndpoint(reactor, port, interface=bind_address)
    return TCP4ServerEndpoint(reactor, port, interface=bind_address)


SYSTEMD_WHERE = "the socket passed by systemd"


def inherited_endpoint(reactor: Any) -> AdoptedStreamServerEndpoint | None:
    """
    The listening socket systemd passed to this process (socket activation:
    C{LISTEN_PID}, C{LISTEN_FDS} and C{LISTEN_FDNAMES}), or C{None}.

    Twisted's C{systemd:} endpoint parser takes those variables out of the
    environment when L{twisted.internet.endpoints} is first imported, so
    the parser is asked rather than the environment.  The address family is
    read from the socket (systemd's C{ListenStream=8443} is an IPv6 socket
    that also accepts IPv4).
    """
    try:
        passed = serverFromString(reactor, "systemd:domain=INET:index=0")
    except IndexError:
        return None
    fileno = cast(AdoptedStreamServerEndpoint, passed).fileno
    with socket.socket(fileno=os.dup(fileno)) as probe:
        family = probe.family
    return AdoptedStreamServerEndpoint(reactor, fileno, family)


class _TLSListeningService(StreamServerEndpointService):
    """
    A L{StreamServerEndpointService} that listens synchronously (so twistd
    fails before the reactor runs when the port is taken) and turns the
    failure into one line instead of a traceback.
    """

    _raiseSynchronously = True

    # Set by tls_endpoint_service: the TLS settings (for reloads) and the
    # serving certificate and key files they were read from.
    tls: RotatingServerTLS
    serving_files: tuple[str, str]

    def __init__(
        self, endpoint: IStreamServerEndpoint, factory: Any, where: str
    ) -> None:
        super().__init__(endpoint, factory)
        self._where = where

    @property
    def where(self) -> str:
        """
        Where it listens: C{host:port}, or L{SYSTEMD_WHERE}.
        """
        return self._where

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as error:
            reason = error.socketError
            detail = getattr(reason, "strerror", None) or str(reason)
            raise SystemExit(
                f"wardled: error: cannot listen on {self._where}: {detail}"
            ) from error


def tls_endpoint_service(
    reactor: IReactorTCP,
    config: WardledConfig,
    site: Site,
    authorities: Callable[[], tuple[x509.Certificate, ...]] | None = None,
) -> _TLSListeningService:
    """
    The service that serves C{site} over HTTPS on
    C{config.bind_address}:C{config.secure_port}, or on the socket systemd
    passed (socket activation, see L{inherited_endpoint}).

    Uses C{--tls-cert-file}/C{--tls-private-key-file} when given, else a
    self-signed pair in C{config.cert_dir} (see L{ensure_self_signed_cert}).
    When C{config.http2} is false, C{site} is changed to offer only
    HTTP/1.1 over ALPN.

    @param authorities: returns the current handshake authorities (see
        L{RotatingServerTLS}); by default the fixed C{--client-ca-file}
        bundle.
    @raise TLSConfigError: a certificate, key or CA file cannot be used.
    @raise OSError: the self-signed pair cannot be written.
    """
    if config.tls_cert_file and config.tls_private_key_file:
        cert_file, key_file = config.tls_cert_file, config.tls_private_key_file
    else:
        cert_file, key_file = ensure_self_signed_cert(
            config.cert_dir, config.bind_address
        )
    pair = ServingPair.load(cert_file, key_file)
    if authorities is None:
        fixed = tuple(
            load_certificates(config.client_ca_file) if config.client_ca_file else ()
        )
        authorities = lambda: fixed
    creator = RotatingServerTLS(pair, authorities)
    if not config.http2:
        site.acceptableProtocols = lambda: HTTP11_ONLY  # type: ignore[method-assign]
    endpoint: IStreamServerEndpoint | None = inherited_endpoint(reactor)
    where = SYSTEMD_WHERE
    if endpoint is None:
        endpoint = listening_endpoint(
            reactor, config.secure_port, config.bind_address, reuse_port=config.workers > 1
        )
        where = _host_port(config.bind_address, config.secure_port)
    service = _TLSListeningService(
        endpoint, TLSMemoryBIOFactory(creator, False, site), where
    )
    service.tls = creator
    service.serving_files = (cert_file, key_file)
    return service


def _host_port(host: str, port: int) -> str:
    if ipaddress.ip_address(host).version == 6:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


__all__ = [
    "CertificateVerifier",
    "Identity",
    "PeerCertificates",
    "RotatingServerTLS",
    "ServingPair",
    "TLSConfigError",
    "client_certificate_identity",
    "ensure_self_signed_cert",
    "inherited_endpoint",
    "listening_endpoint",
    "load_certificates",
    "load_certificates_pem",
    "load_private_key",
    "peer_certificates",
    "server_tls_options",
    "tls_endpoint_service",
]
