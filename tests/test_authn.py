# -*- test-case-name: tests.test_authn -*-
"""
Unit tests of delegated authentication: client-certificate verdicts and
rotating TLS (L{wardled.tls}), the client and front-proxy CA settings
(L{wardled.auth.clientauth}), front-proxy headers
(L{wardled.auth.requestheader}), the authentication chain
(L{wardled.auth.authn}) and impersonation (L{wardled.auth.impersonation}).

Everything runs in-process: real certificates made with L{wardled.certs},
real pyOpenSSL verification, and requests whose TLS transport is a small
stand-in offering exactly what L{wardled.tls.peer_certificates} reads.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from wardled import certs
from wardled.api.requestinfo import RequestInfo
from wardled.apierrors import StatusError
from wardled.auth.authn import (
    AuthenticatorChain,
    BearerTokenAuthenticator,
    X509Authenticator,
    bearer_token,
    make_authenticator,
)
from wardled.auth.authz import Decision
from wardled.auth.clientauth import (
    ClientAuth,
    ClientAuthError,
    ClientAuthSettings,
    RequestHeaderSettings,
    merge_configmap,
    requestheader_from_configmap,
)
from wardled.auth.impersonation import impersonate
from wardled.auth.interfaces import AuthenticationFailed, ITokenChecker
from wardled.auth.requestheader import (
    RequestHeaderAuthenticator,
    strip_headers,
    user_from_headers,
)
from wardled.auth.tokenfile import parse_token_csv
from wardled.auth.user import ANONYMOUS_USER, UserInfo
from wardled.tls import (
    CertificateVerifier,
    PeerCertificates,
    RotatingServerTLS,
    ServingPair,
    peer_certificates,
)

AUTHENTICATED = "system:authenticated"
PROXY_NAME = "front-proxy-client"

CLIENT_CA = certs.make_ca("client-ca")
PROXY_CA = certs.make_ca("front-proxy-ca")
OTHER_CA = certs.make_ca("other-ca")

PROXY_CERT = certs.make_client_cert(PROXY_CA, PROXY_NAME, [])
ALICE_CERT = certs.make_client_cert(CLIENT_CA, "alice", ["devs", "ops"])


# --- certificates and requests ---------------------------------------------


def x509_of(pair: certs.KeyPair) -> crypto.X509:
    """
    The pyOpenSSL form of C{pair}'s certificate (what a TLS connection
    gives).
    """
    return crypto.X509.from_cryptography(pair.certificate)


def intermediate_ca(name: str, root_name: str) -> tuple[certs.KeyPair, certs.KeyPair]:
    """
    A root CA that may sign one intermediate, and that intermediate (for
    chains the client sends along with its certificate).

    @return: C{(root, intermediate)}.
    """
    now = datetime.datetime.now(datetime.UTC)

    def ca(
        subject_cn: str,
        issuer: certs.KeyPair | None,
        path_length: int,
    ) -> certs.KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.certificate.subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.BasicConstraints(ca=True, path_length=path_length), critical=True
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                critical=False,
            )
            .sign(issuer.key if issuer else key, hashes.SHA256())
        )
        chain = (issuer.certificate,) if issuer else ()
        return certs.KeyPair(key, certificate, chain)

    root = ca(root_name, None, 1)
    return root, ca(name, root, 0)


class FakeTLSConnection:
    """
    Stands in for the pyOpenSSL connection under a TLS transport: the chain
    the client sent.
    """

    def __init__(self, chain: Sequence[crypto.X509] | None) -> None:
        self._chain = None if chain is None else list(chain)

    def get_peer_cert_chain(self) -> list[crypto.X509] | None:
        return self._chain


class FakeTLSTransport:
    """
    Stands in for a C{TLSMemoryBIOProtocol}: the client's certificate and
    chain, and a count of certificate look-ups.
    """

    def __init__(
        self,
        leaf: crypto.X509 | None,
        chain: Sequence[crypto.X509] | None = None,
    ) -> None:
        self._leaf = leaf
        self._tlsConnection = FakeTLSConnection(chain)
        self.lookups = 0

    def getPeerCertificate(self) -> crypto.X509 | None:
        self.lookups += 1
        return self._leaf


def tls_transport(pair: certs.KeyPair | None) -> FakeTLSTransport:
    """
    A TLS transport whose client presented C{pair} (with its chain), or
    no certificate.
    """
    if pair is None:
        return FakeTLSTransport(None)
    leaf = x509_of(pair)
    return FakeTLSTransport(
        leaf, [leaf, *(crypto.X509.from_cryptography(c) for c in pair.chain)]
    )


class _Object:
    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


class Request(DummyRequest):
    """
    A L{DummyRequest} over HTTP/1.1 on C{transport}.
    """

    def __init__(self, transport: Any = None) -> None:
        super().__init__([b""])
        self.transport: Any = transport
        self.channel: Any = _Object()


def request(
    pair: certs.KeyPair | None = None,
    headers: Iterable[tuple[str, str]] = (),
    transport: Any = None,
) -> Request:
    """
    A request from a client presenting C{pair}, carrying C{headers} (each
    C{(name, value)} added in order, repeats allowed).
    """
    made = Request(transport if transport is not None else tls_transport(pair))
    for name, value in headers:
        made.requestHeaders.addRawHeader(name.encode("latin-1"), value.encode("utf-8"))
    return made


def header_dump(made: Request) -> dict[str, list[str]]:
    """
    Every header of C{made}, names lower-cased.
    """
    return {
        name.decode("latin-1").lower(): [value.decode("utf-8") for value in values]
        for name, values in made.requestHeaders.getAllRawHeaders()
    }


PROXY_SETTINGS = RequestHeaderSettings(
    authorities=(PROXY_CA.certificate,), allowed_names=(PROXY_NAME,)
)
SETTINGS = ClientAuthSettings((CLIENT_CA.certificate,), PROXY_SETTINGS)


# --- wardled.tls -------------------------------------------------------------


class PeerCertificatesTests(SynchronousTestCase):
    """
    L{PeerCertificates} and L{peer_certificates}.
    """

    def test_identity(self) -> None:
        """
        The CN is the user, every O a group, in order.
        """
        peer = PeerCertificates(x509_of(ALICE_CERT), [])
        self.assertEqual(peer.identity, ("alice", ("devs", "ops")))
        self.assertEqual(peer.common_name, "alice")
        self.assertEqual(peer.verdicts, {})

    def test_no_common_name(self) -> None:
        """
        A certificate without a CN has the empty user name.
        """
        peer = PeerCertificates(
            x509_of(certs.make_client_cert(CLIENT_CA, "", ["g"])), []
        )
        self.assertEqual(peer.identity, ("", ("g",)))

    def test_leaf_left_out_of_intermediates(self) -> None:
        """
        The chain the client sent starts with its own certificate; only the
        others are intermediates.
        """
        _, middle = intermediate_ca("middle", "root")
        leaf = certs.make_client_cert(middle, "carol", [])
        peer = peer_certificates(request(leaf))
        assert peer is not None
        self.assertEqual(
            [each.to_cryptography() for each in peer.intermediates],
            [middle.certificate],
        )
        self.assertEqual(peer.leaf.to_cryptography(), leaf.certificate)

    def test_parsed_once_per_connection(self) -> None:
        """
        Requests on one connection share one L{PeerCertificates}.
        """
        transport = tls_transport(ALICE_CERT)
        first = peer_certificates(request(transport=transport))
        second = peer_certificates(request(transport=transport))
        self.assertIsNotNone(first)
        self.assertIs(first, second)
        self.assertEqual(transport.lookups, 1)

    def test_http2(self) -> None:
        """
        Over HTTP/2 the TLS transport is the one of the stream's connection.
        """
        made = Request(_Object())
        made.channel = _Object(_conn=_Object(transport=tls_transport(ALICE_CERT)))
        peer = peer_certificates(made)
        assert peer is not None
        self.assertEqual(peer.common_name, "alice")

    def test_no_certificate_or_no_tls(self) -> None:
        """
        No client certificate, or no TLS at all, gives C{None}.
        """
        self.assertIsNone(peer_certificates(request(None)))
        self.assertIsNone(peer_certificates(Request(None)))
        self.assertIsNone(peer_certificates(Request(_Object())))


class CertificateVerifierTests(SynchronousTestCase):
    """
    L{CertificateVerifier}: does a certificate chain to one bundle.
    """

    def test_chains_or_not(self) -> None:
        """
        A certificate signed by a CA of the bundle verifies; one signed by
        another CA does not.
        """
        verifier = CertificateVerifier([CLIENT_CA.certificate])
        self.assertTrue(verifier.verifies(PeerCertificates(x509_of(ALICE_CERT), [])))
        self.assertFalse(verifier.verifies(PeerCertificates(x509_of(PROXY_CERT), [])))

    def test_bundle_of_several(self) -> None:
        """
        Any CA of the bundle will do.
        """
        verifier = CertificateVerifier([OTHER_CA.certificate, PROXY_CA.certificate])
        self.assertTrue(verifier.verifies(PeerCertificates(x509_of(PROXY_CERT), [])))

    def test_empty_bundle(self) -> None:
        """
        An empty bundle verifies nothing.
        """
        verifier = CertificateVerifier([])
        self.assertFalse(verifier.verifies(PeerCertificates(x509_of(ALICE_CERT), [])))

    def test_intermediates_sent_by_the_client(self) -> None:
        """
        A certificate from an intermediate CA verifies against the root
        when the client sent the intermediate, not without it.
        """
        root, middle = intermediate_ca("middle", "root")
        leaf = certs.make_client_cert(middle, "carol", [])
        verifier = CertificateVerifier([root.certificate])
        with_chain = peer_certificates(request(leaf))
        assert with_chain is not None
        self.assertTrue(verifier.verifies(with_chain))
        alone = PeerCertificates(x509_of(leaf), [])
        self.assertFalse(verifier.verifies(alone))

    def test_verdict_cached_per_verifier(self) -> None:
        """
        A verdict is kept on the connection under the verifier's serial;
        another verifier (a rotated bundle) decides afresh.
        """
        peer = PeerCertificates(x509_of(ALICE_CERT), [])
        first = CertificateVerifier([CLIENT_CA.certificate])
        second = CertificateVerifier([OTHER_CA.certificate])
        self.assertNotEqual(first.serial, second.serial)
        self.assertTrue(first.verifies(peer))
        self.assertEqual(peer.verdicts, {first.serial: True})
        peer.verdicts[first.serial] = False
        self.assertFalse(first.verifies(peer), "the cached verdict is used")
        self.assertFalse(second.verifies(peer))
        self.assertEqual(peer.verdicts, {first.serial: False, second.serial: False})


def serving_pair() -> ServingPair:
    serving = certs.make_serving_cert(certs.make_ca("serving-ca"), ["localhost"])
    return ServingPair((serving.certificate, *serving.chain), serving.key)


class ServingTLSTests(SynchronousTestCase):
    """
    L{ServingPair.options} and L{RotatingServerTLS}.
    """

    def test_options(self) -> None:
        """
        Client certificates are asked for (never required) only when there
        are authorities.
        """
        pair = serving_pair()
        asking = pair.options([CLIENT_CA.certificate])
        self.assertTrue(asking.verify)
        self.assertFalse(asking.requireCertificate)
        self.assertFalse(pair.options(()).verify)

    def test_context_rebuilt_only_on_change(self) -> None:
        """
        The same context serves connections while the authorities stay
        equal (even as a new tuple); a change builds a new one.
        """
        current: list[tuple[x509.Certificate, ...]] = [(CLIENT_CA.certificate,)]
        server = RotatingServerTLS(serving_pair(), lambda: current[0])
        first = server.context()
        self.assertIs(server.context(), first)
        current[0] = (CLIENT_CA.certificate,)
        self.assertIs(server.context(), first)
        current[0] = (CLIENT_CA.certificate, PROXY_CA.certificate)
        rotated = server.context()
        self.assertIsNot(rotated, first)
        self.assertIs(server.context(), rotated)
        self.assertEqual(server._built_for, current[0])

    def test_connection(self) -> None:
        """
        Each connection gets an OpenSSL connection on the current context.
        """
        server = RotatingServerTLS(serving_pair(), lambda: (CLIENT_CA.certificate,))
        connection = server.serverConnectionForTLS(None)
        self.assertIs(connection.get_context(), server.context())


# --- wardled.auth.clientauth -----------------------------------------------------


def pem(*pairs: certs.KeyPair) -> str:
    return b"".join(pair.certificate_pem() for pair in pairs).decode("ascii")


class ClientAuthSettingsTests(SynchronousTestCase):
    """
    L{ClientAuthSettings} and L{ClientAuth}.
    """

    def test_handshake_authorities(self) -> None:
        """
        The client CAs, then the front-proxy CAs, each once.
        """
        settings = ClientAuthSettings(
            (CLIENT_CA.certificate, OTHER_CA.certificate),
            RequestHeaderSettings((PROXY_CA.certificate, CLIENT_CA.certificate)),
        )
        self.assertEqual(
            settings.handshake_authorities,
            (CLIENT_CA.certificate, OTHER_CA.certificate, PROXY_CA.certificate),
        )
        self.assertEqual(
            ClientAuthSettings((CLIENT_CA.certificate,)).handshake_authorities,
            (CLIENT_CA.certificate,),
        )
        self.assertEqual(ClientAuthSettings().handshake_authorities, ())

    def test_update_with_equal_settings(self) -> None:
        """
        Equal settings (even rebuilt) change nothing: same verifiers.
        """
        client_auth = ClientAuth(SETTINGS)
        verifier = client_auth.client_verifier
        again = ClientAuthSettings(
            (CLIENT_CA.certificate,),
            RequestHeaderSettings((PROXY_CA.certificate,), (PROXY_NAME,)),
        )
        self.assertFalse(client_auth.update(again))
        self.assertIs(client_auth.client_verifier, verifier)

    def test_update_installs_everything(self) -> None:
        """
        New settings replace the verifiers, the front-proxy settings and
        the handshake authorities together.
        """
        client_auth = ClientAuth(SETTINGS)
        new = ClientAuthSettings((OTHER_CA.certificate,))
        self.assertTrue(client_auth.update(new))
        self.assertEqual(client_auth.settings, new)
        self.assertIsNone(client_auth.requestheader)
        self.assertEqual(
            client_auth.client_verifier.authorities, (OTHER_CA.certificate,)
        )
        self.assertEqual(client_auth.requestheader_verifier.authorities, ())
        self.assertEqual(
            client_auth.current_handshake_authorities(), (OTHER_CA.certificate,)
        )

    def test_rotation_forgets_verdicts(self) -> None:
        """
        On one connection, a certificate from the old client CA stops
        authenticating once the CA is rotated, and one from the new CA
        starts: verdicts under the old verifier are not reused.
        """
        client_auth = ClientAuth(ClientAuthSettings((CLIENT_CA.certificate,)))
        chain = make_authenticator(client_auth)
        old_connection = tls_transport(ALICE_CERT)
        bob_cert = certs.make_client_cert(OTHER_CA, "bob", [])
        new_connection = tls_transport(bob_cert)
        alice = self.successResultOf(
            ensureDeferred(chain(request(transport=old_connection)))
        )
        self.assertEqual(alice.name, "alice")
        self.failureResultOf(
            ensureDeferred(chain(request(transport=new_connection))), StatusError
        )
        self.assertTrue(client_auth.update(ClientAuthSettings((OTHER_CA.certificate,))))
        failure = self.failureResultOf(
            ensureDeferred(chain(request(transport=old_connection))), StatusError
        )
        self.assertEqual(failure.value.code, 401)
        bob = self.successResultOf(
            ensureDeferred(chain(request(transport=new_connection)))
        )
        self.assertEqual(bob, UserInfo("bob", (AUTHENTICATED,)))

    def test_rotating_server_follows_client_auth(self) -> None:
        """
        L{RotatingServerTLS} on L{ClientAuth.current_handshake_authorities}
        builds a new context after an update that changes the CAs only.
        """
        client_auth = ClientAuth(SETTINGS)
        server = RotatingServerTLS(
            serving_pair(), client_auth.current_handshake_authorities
        )
        first = server.context()
        client_auth.update(attrs.evolve(SETTINGS))
        self.assertIs(server.context(), first)
        client_auth.update(ClientAuthSettings((OTHER_CA.certificate,)))
        self.assertIsNot(server.context(), first)

    def test_flags_and_configmap_merged(self) -> None:
        """
        A L{ClientAuth} made from flags and a ConfigMap merges them; a new
        ConfigMap or new flags merge again with the other source kept.
        """
        flags = ClientAuthSettings((CLIENT_CA.certificate,))
        data = {
            "client-ca-file": pem(OTHER_CA),
            "requestheader-client-ca-file": pem(PROXY_CA),
        }
        client_auth = ClientAuth(flags, (True, False), data)
        from_configmap = RequestHeaderSettings((PROXY_CA.certificate,))
        self.assertEqual(
            client_auth.settings,
            ClientAuthSettings((CLIENT_CA.certificate,), from_configmap),
        )
        rotated = ClientAuthSettings((OTHER_CA.certificate,))
        self.assertTrue(client_auth.set_flags(rotated))
        self.assertEqual(
            client_auth.settings,
            ClientAuthSettings((OTHER_CA.certificate,), from_configmap),
        )
        self.assertFalse(client_auth.set_flags(rotated))
        self.assertTrue(client_auth.set_configmap(None))
        self.assertEqual(client_auth.settings, rotated)
        self.assertFalse(client_auth.set_configmap(None))

    def test_bad_configmap_changes_nothing(self) -> None:
        """
        A ConfigMap that does not merge is refused and the one in use kept,
        for later flag changes too.
        """
        data = {"requestheader-client-ca-file": pem(PROXY_CA)}
        client_auth = ClientAuth(ClientAuthSettings(), (False, False), data)
        in_use = client_auth.settings
        verifier = client_auth.requestheader_verifier
        bad = {**data, "requestheader-allowed-names": "front-proxy"}
        self.assertRaises(ClientAuthError, client_auth.set_configmap, bad)
        self.assertEqual(client_auth.settings, in_use)
        self.assertIs(client_auth.requestheader_verifier, verifier)
        self.assertFalse(client_auth.set_flags(ClientAuthSettings()))
        self.assertEqual(client_auth.settings, in_use)

    def test_strip_header_names(self) -> None:
        """
        The configured front-proxy headers, or the defaults without a front
        proxy.
        """
        self.assertEqual(
            ClientAuth(ClientAuthSettings()).strip_header_names(),
            (("X-Remote-User", "X-Remote-Group", "X-Remote-Uid"), ("X-Remote-Extra-",)),
        )
        custom = RequestHeaderSettings(
            (PROXY_CA.certificate,),
            username_headers=("X-Proxy-User",),
            group_headers=("X-Proxy-Group",),
            extra_prefixes=("X-Proxy-Extra-",),
            uid_headers=("X-Proxy-Uid",),
        )
        self.assertEqual(
            ClientAuth(ClientAuthSettings((), custom)).strip_header_names(),
            (
                ("X-Proxy-User", "X-Proxy-Group", "X-Proxy-Uid")
                + ("X-Remote-User", "X-Remote-Group", "X-Remote-Uid"),
                ("X-Proxy-Extra-", "X-Remote-Extra-"),
            ),
        )


class ConfigMapSettingsTests(SynchronousTestCase):
    """
    L{requestheader_from_configmap} and L{merge_configmap}.
    """

    def test_requestheader_keys(self) -> None:
        """
        The C{requestheader-*} keys other than the CA are JSON lists.
        """
        data = {
            "requestheader-client-ca-file": pem(PROXY_CA, OTHER_CA),
            "requestheader-allowed-names": '["front-proxy-client","aggregator"]',
            "requestheader-username-headers": '["X-Remote-User","X-User"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
            "requestheader-uid-headers": '["X-Remote-Uid"]',
        }
        self.assertEqual(
            requestheader_from_configmap(data),
            RequestHeaderSettings(
                authorities=(PROXY_CA.certificate, OTHER_CA.certificate),
                allowed_names=("front-proxy-client", "aggregator"),
                username_headers=("X-Remote-User", "X-User"),
                group_headers=("X-Remote-Group",),
                extra_prefixes=("X-Remote-Extra-",),
                uid_headers=("X-Remote-Uid",),
            ),
        )

    def test_defaults_for_missing_keys(self) -> None:
        """
        Missing, empty or C{[]} lists take the defaults (any CN allowed).
        """
        data = {
            "requestheader-client-ca-file": pem(PROXY_CA),
            "requestheader-allowed-names": "[]",
            "requestheader-username-headers": "",
        }
        self.assertEqual(
            requestheader_from_configmap(data),
            RequestHeaderSettings((PROXY_CA.certificate,)),
        )

    def test_no_front_proxy_ca(self) -> None:
        """
        Without C{requestheader-client-ca-file} there is no front proxy,
        whatever the other keys say.
        """
        self.assertIsNone(
            requestheader_from_configmap({"requestheader-allowed-names": '["x"]'})
        )
        self.assertIsNone(
            requestheader_from_configmap({"requestheader-client-ca-file": ""})
        )

    def test_bad_values(self) -> None:
        """
        A list that is not JSON, a JSON value that is not a list of strings
        and a CA that is not PEM are refused by key.
        """
        proxy = {"requestheader-client-ca-file": pem(PROXY_CA)}
        for key, raw in (
            ("requestheader-allowed-names", "front-proxy-client"),
            ("requestheader-group-headers", '"X-Remote-Group"'),
            ("requestheader-username-headers", "[1]"),
        ):
            error = self.assertRaises(
                ClientAuthError, requestheader_from_configmap, {**proxy, key: raw}
            )
            self.assertTrue(
                str(error).startswith(f"{key}: not a JSON list"), str(error)
            )
        error = self.assertRaises(
            ClientAuthError,
            requestheader_from_configmap,
            {"requestheader-client-ca-file": "not a certificate"},
        )
        self.assertIn("requestheader-client-ca-file", str(error))
        self.assertRaises(
            ClientAuthError,
            merge_configmap,
            ClientAuthSettings(),
            (False, True),
            {"client-ca-file": "garbage"},
        )

    def test_flags_win_per_kind(self) -> None:
        """
        A CA flag keeps its kind from the ConfigMap; the other kind comes
        from the ConfigMap.
        """
        flags = ClientAuthSettings((CLIENT_CA.certificate,), PROXY_SETTINGS)
        data = {
            "client-ca-file": pem(OTHER_CA),
            "requestheader-client-ca-file": pem(OTHER_CA),
            "requestheader-allowed-names": '["aggregator"]',
        }
        from_configmap = RequestHeaderSettings((OTHER_CA.certificate,), ("aggregator",))
        self.assertEqual(merge_configmap(flags, (True, True), data), flags)
        self.assertEqual(
            merge_configmap(flags, (True, False), data),
            ClientAuthSettings((CLIENT_CA.certificate,), from_configmap),
        )
        self.assertEqual(
            merge_configmap(flags, (False, True), data),
            ClientAuthSettings((OTHER_CA.certificate,), PROXY_SETTINGS),
        )
        self.assertEqual(
            merge_configmap(flags, (False, False), data),
            ClientAuthSettings((OTHER_CA.certificate,), from_configmap),
        )

    def test_configmap_without_keys(self) -> None:
        """
        A ConfigMap without a kind's CA leaves that kind out (not the
        flags' value, which was not given).
        """
        self.assertEqual(
            merge_configmap(
                SETTINGS, (False, False), {"client-ca-file": pem(CLIENT_CA)}
            ),
            ClientAuthSettings((CLIENT_CA.certificate,), None),
        )

    def test_no_configmap(self) -> None:
        """
        C{data} C{None} (no ConfigMap) gives the flags' settings.
        """
        self.assertIs(merge_configmap(SETTINGS, (False, False), None), SETTINGS)


# --- wardled.auth.requestheader ---------------------------------------------------


def users(
    made: Request, settings: RequestHeaderSettings = PROXY_SETTINGS
) -> UserInfo | None:
    return user_from_headers(made, settings)


class UserFromHeadersTests(SynchronousTestCase):
    """
    L{user_from_headers}, as k8s.io/apiserver's C{headerrequest} reads them.
    """

    def test_first_username_header_with_a_value(self) -> None:
        """
        The user is the first non-empty value of the first username header
        that has one.
        """
        settings = RequestHeaderSettings(
            (), username_headers=("X-Remote-User", "X-Other-User")
        )
        both = request(headers=[("X-Other-User", "bob"), ("X-Remote-User", "alice")])
        self.assertEqual(user_from_headers(both, settings), UserInfo("alice"))
        second = request(headers=[("X-Other-User", "bob"), ("X-Other-User", "carol")])
        self.assertEqual(user_from_headers(second, settings), UserInfo("bob"))
        empty_first = request(headers=[("X-Remote-User", ""), ("X-Other-User", "bob")])
        self.assertEqual(user_from_headers(empty_first, settings), UserInfo("bob"))

    def test_each_group_value_is_one_group(self) -> None:
        """
        Every value of every group header is one group; commas do not
        split.
        """
        settings = RequestHeaderSettings(
            (), group_headers=("X-Remote-Group", "X-Other-Group")
        )
        made = request(
            headers=[
                ("X-Remote-User", "alice"),
                ("X-Other-Group", "d"),
                ("X-Remote-Group", "a,b"),
                ("X-Remote-Group", "c"),
            ]
        )
        user = user_from_headers(made, settings)
        assert user is not None
        self.assertEqual(user.groups, ("a,b", "c", "d"))

    def test_empty_group_values_ignored(self) -> None:
        """
        An empty group header value is no group (Go's C{allHeaderValues}
        skips empty values).
        """
        made = request(
            headers=[
                ("X-Remote-User", "alice"),
                ("X-Remote-Group", ""),
                ("X-Remote-Group", "devs"),
            ]
        )
        user = users(made)
        assert user is not None
        self.assertEqual(user.groups, ("devs",))

    def test_extra(self) -> None:
        """
        Extra keys are lower-cased and %-unescaped; every value is kept, in
        order.
        """
        made = request(
            headers=[
                ("X-Remote-User", "alice"),
                ("X-Remote-Extra-Acme.com%2Fproject", "a"),
                ("X-Remote-Extra-Acme.com%2Fproject", "b"),
                ("X-Remote-Extra-Scopes", "view"),
            ]
        )
        user = users(made)
        assert user is not None
        self.assertEqual(
            user.extra, (("acme.com/project", ("a", "b")), ("scopes", ("view",)))
        )

    def test_uid(self) -> None:
        """
        The uid is the first non-empty value of the uid headers.
        """
        settings = RequestHeaderSettings((), uid_headers=("X-Remote-Uid",))
        made = request(headers=[("X-Remote-User", "alice"), ("X-Remote-Uid", "u-1")])
        self.assertEqual(
            user_from_headers(made, settings), UserInfo("alice", uid="u-1")
        )
        self.assertEqual(users(made), UserInfo("alice"), "no uid header configured")

    def test_custom_names(self) -> None:
        """
        Custom header names are read and the defaults are not.
        """
        settings = RequestHeaderSettings(
            (),
            username_headers=("X-Proxy-User",),
            group_headers=("X-Proxy-Group",),
            extra_prefixes=("X-Proxy-Extra-",),
            uid_headers=("X-Proxy-Uid",),
        )
        made = request(
            headers=[
                ("X-Remote-User", "mallory"),
                ("X-Remote-Group", "system:masters"),
                ("X-Proxy-User", "alice"),
                ("X-Proxy-Group", "devs"),
                ("X-Proxy-Extra-Team", "blue"),
                ("X-Proxy-Uid", "7"),
            ]
        )
        self.assertEqual(
            user_from_headers(made, settings),
            UserInfo("alice", ("devs",), uid="7", extra=(("team", ("blue",)),)),
        )

    def test_no_username(self) -> None:
        """
        Without a username value there is no user, whatever else is sent.
        """
        self.assertIsNone(users(request(headers=[("X-Remote-Group", "devs")])))
        self.assertIsNone(users(request(headers=[("X-Remote-User", "  ")])))

    def test_strip_headers(self) -> None:
        """
        The named headers and every header under a prefix go; others stay.
        """
        made = request(
            headers=[
                ("X-Remote-User", "a"),
                ("x-remote-group", "b"),
                ("X-Remote-Extra-Scopes", "c"),
                ("X-Remote-Extra-Acme.com%2Fp", "d"),
                ("Accept", "application/json"),
            ]
        )
        strip_headers(made, ["X-Remote-User", "X-Remote-Group"], ["X-Remote-Extra-"])
        self.assertEqual(header_dump(made), {"accept": ["application/json"]})


# --- wardled.auth.authn ---------------------------------------------------------


@implementer(ITokenChecker)
@attrs.define
class RecordingChecker:
    """
    A token source knowing C{known}, recording every token it is asked
    about; C{failing} makes it unreachable.
    """

    known: dict[str, UserInfo] = attrs.Factory(dict)
    failing: bool = False
    asked: list[str] = attrs.Factory(list)

    async def check(self, token: str) -> UserInfo | None:
        self.asked.append(token)
        if self.failing:
            raise AuthenticationFailed("cannot ask")
        return self.known.get(token)


FRONT_PROXY_HEADERS = [
    ("X-Remote-User", "jane"),
    ("X-Remote-Group", "devs"),
    ("X-Remote-Group", "system:masters,ops"),
    ("X-Remote-Extra-Acme.com%2Fproject", "a"),
    ("Accept", "application/json"),
]


class ChainTests(SynchronousTestCase):
    """
    L{make_authenticator}: front proxy, x509, bearer tokens, anonymous.
    """

    def authenticate(
        self, made: Request, settings: ClientAuthSettings = SETTINGS, *checkers: Any
    ) -> UserInfo:
        chain = make_authenticator(ClientAuth(settings), checkers)
        return self.successResultOf(ensureDeferred(chain(made)))

    def refused(
        self, made: Request, settings: ClientAuthSettings = SETTINGS, *checkers: Any
    ) -> StatusError:
        chain = make_authenticator(ClientAuth(settings), checkers)
        error = self.failureResultOf(ensureDeferred(chain(made)), StatusError).value
        assert isinstance(error, StatusError)
        return error

    def assertStripped(self, made: Request) -> None:
        self.assertEqual(header_dump(made), {"accept": ["application/json"]})

    def test_front_proxy(self) -> None:
        """
        The front proxy's certificate makes its headers believed; the user
        is also in C{system:authenticated}; the headers are gone after.
        """
        made = request(PROXY_CERT, FRONT_PROXY_HEADERS)
        self.assertEqual(
            self.authenticate(made),
            UserInfo(
                "jane",
                ("devs", "system:masters,ops", AUTHENTICATED),
                extra=(("acme.com/project", ("a",)),),
            ),
        )
        self.assertStripped(made)

    def test_client_certificate_ignores_headers(self) -> None:
        """
        A certificate from the client CA is its own user; identity headers
        it sends are ignored and removed.
        """
        made = request(ALICE_CERT, FRONT_PROXY_HEADERS)
        self.assertEqual(
            self.authenticate(made), UserInfo("alice", ("devs", "ops", AUTHENTICATED))
        )
        self.assertStripped(made)

    def test_common_name_not_allowed(self) -> None:
        """
        A front-proxy CA certificate whose CN is not allowed is a 401 (the
        headers are not believed, and the certificate is no user).
        """
        mallory = certs.make_client_cert(PROXY_CA, "mallory", [])
        made = request(mallory, FRONT_PROXY_HEADERS)
        error = self.refused(made)
        self.assertEqual((error.code, error.reason), (401, "Unauthorized"))
        self.assertStripped(made)

    def test_no_allowed_names_means_any(self) -> None:
        """
        With no allowed names, any CN from the front-proxy CA will do.
        """
        settings = ClientAuthSettings(
            (CLIENT_CA.certificate,), RequestHeaderSettings((PROXY_CA.certificate,))
        )
        mallory = certs.make_client_cert(PROXY_CA, "mallory", [])
        made = request(mallory, FRONT_PROXY_HEADERS)
        self.assertEqual(self.authenticate(made, settings).name, "jane")
        self.assertStripped(made)

    def test_front_proxy_without_headers(self) -> None:
        """
        The front proxy's certificate without a username header is a 401:
        it does not chain to the client CA.
        """
        made = request(PROXY_CERT, [("Accept", "application/json")])
        self.assertEqual(self.refused(made).code, 401)

    def test_front_proxy_without_headers_one_ca(self) -> None:
        """
        When the client CA is the front-proxy CA too, the front proxy's
        certificate without headers is its own user.
        """
        settings = ClientAuthSettings((PROXY_CA.certificate,), PROXY_SETTINGS)
        made = request(PROXY_CERT, [("Accept", "application/json")])
        self.assertEqual(
            self.authenticate(made, settings), UserInfo(PROXY_NAME, (AUTHENTICATED,))
        )

    def test_anonymous(self) -> None:
        """
        No certificate and no token is anonymous (not in
        C{system:authenticated}); identity headers are still removed.
        """
        made = request(None, FRONT_PROXY_HEADERS)
        self.assertEqual(self.authenticate(made), ANONYMOUS_USER)
        self.assertStripped(made)

    def test_nothing_configured(self) -> None:
        """
        Without client CAs or token sources everyone is anonymous, and the
        default front-proxy headers are removed all the same.
        """
        made = request(ALICE_CERT, FRONT_PROXY_HEADERS)
        chain = make_authenticator(None, ())
        self.assertEqual(
            self.successResultOf(ensureDeferred(chain(made))), ANONYMOUS_USER
        )
        self.assertStripped(made)

    def test_custom_headers_stripped(self) -> None:
        """
        Custom front-proxy headers (uid and extra prefixes too) are removed
        after authentication, on a front-proxy request and on an anonymous
        one.
        """
        custom = RequestHeaderSettings(
            (PROXY_CA.certificate,),
            username_headers=("X-Proxy-User",),
            group_headers=("X-Proxy-Group",),
            extra_prefixes=("X-Proxy-Extra-", "X-Also-"),
            uid_headers=("X-Proxy-Uid",),
        )
        settings = ClientAuthSettings((CLIENT_CA.certificate,), custom)
        headers = [
            ("X-Proxy-User", "jane"),
            ("X-Proxy-Group", "devs"),
            ("X-Proxy-Uid", "9"),
            ("X-Proxy-Extra-Team", "blue"),
            ("X-Also-Scope", "all"),
            ("Accept", "application/json"),
        ]
        made = request(PROXY_CERT, headers)
        self.assertEqual(
            self.authenticate(made, settings),
            UserInfo(
                "jane",
                ("devs", AUTHENTICATED),
                uid="9",
                extra=(("scope", ("all",)), ("team", ("blue",))),
            ),
        )
        self.assertStripped(made)
        anonymous = request(None, headers)
        self.assertEqual(self.authenticate(anonymous, settings), ANONYMOUS_USER)
        self.assertStripped(anonymous)

    def test_standard_headers_stripped_with_custom_names(self) -> None:
        """
        With custom front-proxy header names, a client's own
        C{X-Remote-User}, C{X-Remote-Group} and C{X-Remote-Extra-*} are
        removed too (k8s.io/apiserver's C{WithAuthentication} always clears
        the standard names as well as the configured ones).
        """
        custom = RequestHeaderSettings(
            (PROXY_CA.certificate,),
            username_headers=("X-Proxy-User",),
            group_headers=("X-Proxy-Group",),
            extra_prefixes=("X-Proxy-Extra-",),
        )
        settings = ClientAuthSettings((CLIENT_CA.certificate,), custom)
        made = request(ALICE_CERT, FRONT_PROXY_HEADERS)
        self.assertEqual(self.authenticate(made, settings).name, "alice")
        self.assertStripped(made)

    def test_headers_stripped_on_failure(self) -> None:
        """
        A refused request loses its identity headers too.
        """
        made = request(None, [*FRONT_PROXY_HEADERS, ("Authorization", "Bearer nope")])
        self.assertEqual(self.refused(made, SETTINGS, RecordingChecker()).code, 401)
        self.assertEqual(
            header_dump(made),
            {"accept": ["application/json"], "authorization": ["Bearer nope"]},
        )

    def test_unknown_bearer_token(self) -> None:
        """
        A bearer token that no source knows is a 401, never anonymous;
        every source was asked.
        """
        first, second = RecordingChecker(), RecordingChecker()
        made = request(None, [("Authorization", "Bearer secret")])
        self.assertEqual(self.refused(made, SETTINGS, first, second).code, 401)
        self.assertEqual((first.asked, second.asked), (["secret"], ["secret"]))

    def test_token_sources_in_order(self) -> None:
        """
        The token file is asked first; the next source only when the file
        does not know the token.
        """
        table = parse_token_csv("file-token,fred,5,ops\n")
        review = RecordingChecker({"review-token": UserInfo("rita", ("g",))})
        by_file = request(None, [("Authorization", "Bearer file-token")])
        self.assertEqual(
            self.authenticate(by_file, SETTINGS, table, review),
            UserInfo("fred", ("ops", AUTHENTICATED), uid="5"),
        )
        self.assertEqual(review.asked, [])
        by_review = request(None, [("Authorization", "bearer review-token")])
        self.assertEqual(
            self.authenticate(by_review, SETTINGS, table, review),
            UserInfo("rita", ("g", AUTHENTICATED)),
        )
        self.assertEqual(review.asked, ["review-token"])

    def test_token_source_unreachable(self) -> None:
        """
        A token source that cannot be asked fails the credential: 401.
        """
        made = request(None, [("Authorization", "Bearer t")])
        self.assertEqual(
            self.refused(made, SETTINGS, RecordingChecker(failing=True)).code, 401
        )

    def test_later_authenticator_recognises(self) -> None:
        """
        A failed credential is no 401 when a later authenticator
        recognises the request: a stranger's certificate with a good token
        is the token's user.
        """
        stranger = certs.make_client_cert(OTHER_CA, "stranger", [])
        review = RecordingChecker({"good": UserInfo("rita")})
        made = request(stranger, [("Authorization", "Bearer good")])
        self.assertEqual(
            self.authenticate(made, SETTINGS, review),
            UserInfo("rita", (AUTHENTICATED,)),
        )

    def test_certificate_before_token(self) -> None:
        """
        A client certificate wins over a bearer token, which is not even
        checked.
        """
        review = RecordingChecker({"good": UserInfo("rita")})
        made = request(ALICE_CERT, [("Authorization", "Bearer good")])
        self.assertEqual(self.authenticate(made, SETTINGS, review).name, "alice")
        self.assertEqual(review.asked, [])

    def test_certificate_without_common_name(self) -> None:
        """
        A client CA certificate without a CN is nobody: anonymous without a
        front proxy; with one it is a 401, as in Kubernetes, because the
        front-proxy verifier already refused it and nothing recognised the
        request.
        """
        nameless = certs.make_client_cert(CLIENT_CA, "", ["devs"])
        without_proxy = ClientAuthSettings((CLIENT_CA.certificate,))
        self.assertEqual(
            self.authenticate(request(nameless), without_proxy), ANONYMOUS_USER
        )
        self.assertEqual(self.refused(request(nameless)).code, 401)

    def test_chain_is_the_documented_order(self) -> None:
        """
        L{make_authenticator} builds front proxy, x509, then tokens.
        """
        client_auth = ClientAuth(SETTINGS)
        checker = RecordingChecker()
        chain = make_authenticator(client_auth, [checker])
        self.assertEqual(
            chain.authenticators,
            (
                RequestHeaderAuthenticator(client_auth),
                X509Authenticator(client_auth),
                BearerTokenAuthenticator((checker,)),
            ),
        )
        self.assertEqual(chain.header_names(), client_auth.strip_header_names())
        self.assertEqual(make_authenticator().authenticators, ())
        self.assertIsInstance(make_authenticator(), AuthenticatorChain)


class BearerTokenTests(SynchronousTestCase):
    """
    L{bearer_token}.
    """

    def test_forms(self) -> None:
        for header, expected in (
            ("Bearer abc", "abc"),
            ("bearer abc", "abc"),
            ("BEARER   abc  ", "abc"),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearer   ", None),
        ):
            made = request(None, [("Authorization", header)])
            self.assertEqual(bearer_token(made), expected, header)
        self.assertIsNone(bearer_token(request(None)))


# --- wardled.auth.impersonation -------------------------------------------------


def target(
    resource: str,
    name: str,
    group: str = "",
    namespace: str = "",
    subresource: str = "",
) -> RequestInfo:
    return RequestInfo(
        path="",
        verb="impersonate",
        is_resource_request=True,
        api_group=group,
        api_version="v1",
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )


@attrs.define
class RecordingAuthorizer:
    """
    Allows everything except C{denied} targets, recording what it is asked.
    """

    denied: tuple[RequestInfo, ...] = ()
    reason: str = ""
    asked: list[tuple[UserInfo, RequestInfo]] = attrs.Factory(list)

    async def __call__(self, user: UserInfo, info: RequestInfo) -> Decision:
        self.asked.append((user, info))
        if info in self.denied:
            return Decision(False, self.reason)
        return Decision(True)


ALICE = UserInfo("alice", ("devs", AUTHENTICATED))


class ImpersonationTests(SynchronousTestCase):
    """
    L{impersonate}.
    """

    def impersonate(self, made: Request, authorizer: RecordingAuthorizer) -> UserInfo:
        return self.successResultOf(
            ensureDeferred(impersonate(made, ALICE, authorizer))
        )

    def refused(self, made: Request, authorizer: RecordingAuthorizer) -> StatusError:
        failure = self.failureResultOf(
            ensureDeferred(impersonate(made, ALICE, authorizer)), StatusError
        )
        assert isinstance(failure.value, StatusError)
        return failure.value

    def test_no_headers(self) -> None:
        """
        Without impersonation headers the requestor acts as itself and
        nothing is asked.
        """
        authorizer = RecordingAuthorizer()
        made = request(None, [("Accept", "application/json")])
        self.assertIs(self.impersonate(made, authorizer), ALICE)
        self.assertEqual(authorizer.asked, [])
        self.assertEqual(header_dump(made), {"accept": ["application/json"]})

    def test_allowed(self) -> None:
        """
        The new user has the groups (plus C{system:authenticated}), extra
        and uid asked for; each was authorized separately, in order, for
        the requestor; the headers are gone.
        """
        authorizer = RecordingAuthorizer()
        made = request(
            None,
            [
                ("Impersonate-User", "bob"),
                ("Impersonate-Group", "devs"),
                ("Impersonate-Group", "ops"),
                ("Impersonate-Extra-Scopes", "view"),
                ("Impersonate-Extra-Scopes", "edit"),
                ("Impersonate-Extra-Acme.com%2Fproject", "p1"),
                ("Impersonate-Uid", "uid-7"),
                ("Accept", "application/json"),
            ],
        )
        self.assertEqual(
            self.impersonate(made, authorizer),
            UserInfo(
                "bob",
                ("devs", "ops", AUTHENTICATED),
                uid="uid-7",
                extra=(("acme.com/project", ("p1",)), ("scopes", ("view", "edit"))),
            ),
        )
        authn = "authentication.k8s.io"
        self.assertEqual(
            authorizer.asked,
            [
                (ALICE, target("users", "bob")),
                (ALICE, target("groups", "devs")),
                (ALICE, target("groups", "ops")),
                (ALICE, target("userextras", "view", authn, subresource="scopes")),
                (ALICE, target("userextras", "edit", authn, subresource="scopes")),
                (
                    ALICE,
                    target("userextras", "p1", authn, subresource="acme.com/project"),
                ),
                (ALICE, target("uids", "uid-7", authn)),
            ],
        )
        self.assertEqual(header_dump(made), {"accept": ["application/json"]})

    def test_service_account(self) -> None:
        """
        A service account is impersonated as C{serviceaccounts} in its
        namespace and gets the service-account groups.
        """
        authorizer = RecordingAuthorizer()
        made = request(None, [("Impersonate-User", "system:serviceaccount:ns1:robot")])
        self.assertEqual(
            self.impersonate(made, authorizer),
            UserInfo(
                "system:serviceaccount:ns1:robot",
                ("system:serviceaccounts", "system:serviceaccounts:ns1", AUTHENTICATED),
            ),
        )
        self.assertEqual(
            authorizer.asked,
            [(ALICE, target("serviceaccounts", "robot", namespace="ns1"))],
        )

    def test_service_account_with_groups(self) -> None:
        """
        A service account impersonated with explicit groups has those
        groups only (plus C{system:authenticated}), as in Kubernetes, which
        adds the service-account groups only when no group is asked for.
        """
        made = request(
            None,
            [
                ("Impersonate-User", "system:serviceaccount:ns1:robot"),
                ("Impersonate-Group", "devs"),
            ],
        )
        user = self.impersonate(made, RecordingAuthorizer())
        self.assertEqual(user.groups, ("devs", AUTHENTICATED))

    def test_unauthenticated_group_asked_for(self) -> None:
        """
        Impersonating a user with group C{system:unauthenticated} does not
        add C{system:authenticated} (as in Kubernetes).
        """
        made = request(
            None,
            [
                ("Impersonate-User", "bob"),
                ("Impersonate-Group", "system:unauthenticated"),
            ],
        )
        user = self.impersonate(made, RecordingAuthorizer())
        self.assertEqual(user.groups, ("system:unauthenticated",))

    def test_anonymous(self) -> None:
        """
        Impersonating C{system:anonymous} gives C{system:unauthenticated}.
        """
        made = request(None, [("Impersonate-User", "system:anonymous")])
        user = self.impersonate(made, RecordingAuthorizer())
        self.assertEqual(user, ANONYMOUS_USER)

    def test_denied_user(self) -> None:
        """
        A user the requestor may not impersonate is a 403 naming it; the
        headers are gone all the same.
        """
        authorizer = RecordingAuthorizer(denied=(target("users", "bob"),))
        made = request(None, [("Impersonate-User", "bob"), ("Impersonate-Group", "g")])
        error = self.refused(made, authorizer)
        self.assertEqual((error.code, error.reason), (403, "Forbidden"))
        self.assertEqual(
            error.message,
            'users "bob" is forbidden: User "alice" cannot impersonate resource '
            '"users" in API group "" at the cluster scope',
        )
        self.assertEqual(error.details, {"name": "bob", "kind": "users"})
        self.assertEqual(len(authorizer.asked), 1, "stops at the first denial")
        self.assertEqual(header_dump(made), {})

    def test_denied_with_reason(self) -> None:
        """
        The authorizer's reason is appended; a denied extra names its key as
        the subresource.
        """
        denied = target(
            "userextras", "edit", "authentication.k8s.io", subresource="scopes"
        )
        authorizer = RecordingAuthorizer(
            denied=(denied,), reason="no RBAC policy matched"
        )
        made = request(
            None, [("Impersonate-User", "bob"), ("Impersonate-Extra-Scopes", "edit")]
        )
        self.assertEqual(
            self.refused(made, authorizer).message,
            'userextras.authentication.k8s.io "edit" is forbidden: User "alice" '
            'cannot impersonate resource "userextras/scopes" in API group '
            '"authentication.k8s.io" at the cluster scope: no RBAC policy matched',
        )

    def test_denied_service_account(self) -> None:
        """
        A denied service account is named in its namespace.
        """
        denied = target("serviceaccounts", "robot", namespace="ns1")
        made = request(None, [("Impersonate-User", "system:serviceaccount:ns1:robot")])
        self.assertEqual(
            self.refused(made, RecordingAuthorizer(denied=(denied,))).message,
            'serviceaccounts "robot" is forbidden: User "alice" cannot impersonate '
            'resource "serviceaccounts" in API group "" in the namespace "ns1"',
        )

    def test_without_user(self) -> None:
        """
        Groups, extra or a uid without a user is a 500; nothing is asked;
        the headers are gone.
        """
        for header in (
            "Impersonate-Group",
            "Impersonate-Uid",
            "Impersonate-Extra-Scopes",
        ):
            authorizer = RecordingAuthorizer()
            made = request(None, [(header, "x")])
            error = self.refused(made, authorizer)
            self.assertEqual((error.code, error.reason), (500, "InternalError"), header)
            self.assertEqual(authorizer.asked, [])
            self.assertEqual(header_dump(made), {})
