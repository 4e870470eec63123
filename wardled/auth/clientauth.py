# -*- test-case-name: tests.test_authn -*-
"""
Which client certificates the server trusts, and for what: the settings
behind x509 and front-proxy (requestheader) authentication.

They come from the command line (C{--client-ca-file},
C{--requestheader-*}) and, behind kube-apiserver, from the ConfigMap
C{kube-system/extension-apiserver-authentication} that kube-apiserver
publishes for extension servers.  The ConfigMap is re-read while the server
runs (L{wardled.auth.configmap}), so a rotated CA takes effect without a
restart: L{ClientAuth} holds the current settings and the verifiers built
from them, and the TLS listener asks it for the handshake authorities of
each new connection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs
from cryptography import x509

from wardled.tls import CertificateVerifier, load_certificates_pem

# The keys kube-apiserver writes into extension-apiserver-authentication.
CLIENT_CA_KEY = "client-ca-file"
REQUESTHEADER_CA_KEY = "requestheader-client-ca-file"
ALLOWED_NAMES_KEY = "requestheader-allowed-names"
USERNAME_HEADERS_KEY = "requestheader-username-headers"
GROUP_HEADERS_KEY = "requestheader-group-headers"
EXTRA_PREFIXES_KEY = "requestheader-extra-headers-prefix"
UID_HEADERS_KEY = "requestheader-uid-headers"

DEFAULT_USERNAME_HEADERS = ("X-Remote-User",)
DEFAULT_GROUP_HEADERS = ("X-Remote-Group",)
DEFAULT_EXTRA_PREFIXES = ("X-Remote-Extra-",)
# Removed from every request even when the front proxy uses other names.
STANDARD_HEADERS = ("X-Remote-User", "X-Remote-Group", "X-Remote-Uid")


class ClientAuthError(ValueError):
    """
    The ConfigMap (or a flag) holds something unusable; the message says
    which key and why.
    """


@attrs.frozen
class RequestHeaderSettings:
    """
    Front-proxy authentication: trust identity headers on connections whose
    client certificate chains to C{authorities} and whose CN is in
    C{allowed_names} (any CN when empty).
    """

    authorities: tuple[x509.Certificate, ...]
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = DEFAULT_USERNAME_HEADERS
    group_headers: tuple[str, ...] = DEFAULT_GROUP_HEADERS
    extra_prefixes: tuple[str, ...] = DEFAULT_EXTRA_PREFIXES
    uid_headers: tuple[str, ...] = ()


@attrs.frozen
class ClientAuthSettings:
    """
    Everything client-certificate authentication needs at one moment.
    """

    client_authorities: tuple[x509.Certificate, ...] = ()
    requestheader: RequestHeaderSettings | None = None

    @property
    def handshake_authorities(self) -> tuple[x509.Certificate, ...]:
        """
        Every CA a client certificate may chain to in the TLS handshake:
        the client CAs, then the front-proxy CAs (each once).
        """
        found: list[x509.Certificate] = list(self.client_authorities)
        if self.requestheader is not None:
            found.extend(
                each for each in self.requestheader.authorities if each not in found
            )
        return tuple(found)


def _json_list(data: Mapping[str, str], key: str) -> tuple[str, ...] | None:
    raw = data.get(key)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise ClientAuthError(f"{key}: not a JSON list of strings: {error}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ClientAuthError(f"{key}: not a JSON list of strings")
    return tuple(value)


def _authorities(data: Mapping[str, str], key: str) -> tuple[x509.Certificate, ...] | None:
    pem = data.get(key)
    if not pem:
        return None
    try:
        return tuple(load_certificates_pem(pem.encode(), key))
    except ValueError as error:
        raise ClientAuthError(str(error)) from None


def requestheader_from_configmap(data: Mapping[str, str]) -> RequestHeaderSettings | None:
    """
    The front-proxy settings in the ConfigMap's C{data}, or C{None} when it
    names no front-proxy CA.

    @raise ClientAuthError: a key holds something unusable.
    """
    authorities = _authorities(data, REQUESTHEADER_CA_KEY)
    if authorities is None:
        return None
    return RequestHeaderSettings(
        authorities=authorities,
        allowed_names=_json_list(data, ALLOWED_NAMES_KEY) or (),
        username_headers=_json_list(data, USERNAME_HEADERS_KEY)
        or DEFAULT_USERNAME_HEADERS,
        group_headers=_json_list(data, GROUP_HEADERS_KEY) or DEFAULT_GROUP_HEADERS,
        extra_prefixes=_json_list(data, EXTRA_PREFIXES_KEY) or DEFAULT_EXTRA_PREFIXES,
        uid_headers=_json_list(data, UID_HEADERS_KEY) or (),
    )


def merge_configmap(
    flags: ClientAuthSettings,
    from_flags: tuple[bool, bool],
    data: Mapping[str, str] | None,
) -> ClientAuthSettings:
    """
    The settings from the command line, with what it leaves out taken from
    the ConfigMap's C{data}, as the reference's
    C{lookupMissingConfigInCluster} does: a CA flag wins over the
    ConfigMap's CA of the same kind.

    @param from_flags: whether C{--client-ca-file} and
        C{--requestheader-client-ca-file} were given.
    @param data: the ConfigMap's C{data}; C{None} when there is none.
    @raise ClientAuthError: the ConfigMap holds something unusable.
    """
    if data is None:
        return flags
    client_given, requestheader_given = from_flags
    client = flags.client_authorities
    if not client_given:
        client = _authorities(data, CLIENT_CA_KEY) or ()
    requestheader = flags.requestheader
    if not requestheader_given:
        requestheader = requestheader_from_configmap(data)
    return ClientAuthSettings(client, requestheader)


class ClientAuth:
    """
    The current L{ClientAuthSettings} and the verifiers built from them.

    The settings come from two sources that change independently: the
    command line's CA files (re-read when they change, L{set_flags}) and the
    cluster's ConfigMap (re-read periodically, L{set_configmap}); each
    change merges them again (L{merge_configmap}).  Authenticators read
    L{client_verifier}, L{requestheader} and L{requestheader_verifier} for
    each request; an update swaps all of them at once.
    """

    def __init__(
        self,
        flags: ClientAuthSettings,
        from_flags: tuple[bool, bool] = (True, True),
        configmap: Mapping[str, str] | None = None,
    ) -> None:
        self.flags = flags
        self.from_flags = from_flags
        self.configmap = configmap
        self._install(merge_configmap(flags, from_flags, configmap))

    def _install(self, settings: ClientAuthSettings) -> None:
        self.settings = settings
        self.handshake_authorities = settings.handshake_authorities
        self.client_verifier = CertificateVerifier(settings.client_authorities)
        self.requestheader = settings.requestheader
        self.requestheader_verifier = CertificateVerifier(
            settings.requestheader.authorities if settings.requestheader else ()
        )

    def update(self, settings: ClientAuthSettings) -> bool:
        """
        Use C{settings} from now on.

        @return: whether anything changed.
        """
        if settings == self.settings:
            return False
        self._install(settings)
        return True

    def set_flags(self, flags: ClientAuthSettings) -> bool:
        """
        The command line's CA files changed: merge again.

        @return: whether anything changed.
        @raise ClientAuthError: the ConfigMap in use holds something unusable.
        """
        settings = merge_configmap(flags, self.from_flags, self.configmap)
        self.flags = flags
        return self.update(settings)

    def set_configmap(self, configmap: Mapping[str, str] | None) -> bool:
        """
        The ConfigMap changed (C{None}: it is gone): merge again.

        @return: whether anything changed.
        @raise ClientAuthError: it holds something unusable (nothing changes).
        """
        settings = merge_configmap(self.flags, self.from_flags, configmap)
        self.configmap = configmap
        return self.update(settings)

    def strip_header_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """
        The front-proxy identity headers and extra-header prefixes in use,
        plus the standard ones whatever the configuration (as Kubernetes
        does): what to remove from every request.
        """
        settings = self.requestheader or RequestHeaderSettings(())
        names = (
            settings.username_headers + settings.group_headers + settings.uid_headers
        )
        return (
            tuple(dict.fromkeys(names + STANDARD_HEADERS)),
            tuple(dict.fromkeys(settings.extra_prefixes + DEFAULT_EXTRA_PREFIXES)),
        )

    def current_handshake_authorities(self) -> tuple[x509.Certificate, ...]:
        """
        For L{wardled.tls.RotatingServerTLS}: the CAs of the handshake.
        """
        return self.handshake_authorities
