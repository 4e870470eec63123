# -*- test-case-name: tests.test_authn -*-
"""
Front-proxy (requestheader) authentication.

Behind kube-apiserver, requests arrive through the aggregator, which has
already authenticated the user and says who it is in headers
(C{X-Remote-User}, C{X-Remote-Group}, C{X-Remote-Extra-<key>}).  Those
headers are believed only on a connection whose client certificate chains to
the front-proxy CA (C{--requestheader-client-ca-file}) and whose CN is in
C{--requestheader-allowed-names} (any CN when that is empty); anyone else
could send them too.  As in k8s.io/apiserver's C{headerrequest}:

  - the user is the first value of the first username header whose first
    value is not empty;
  - every non-empty value of every group header is one group (no comma
    splitting);
  - extra keys are the header name after the prefix, lower-cased and
    %-unescaped; each header value is one value;
  - the uid is the first non-empty value of the uid headers.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

import attrs
from zope.interface import implementer

from wardled.auth.clientauth import ClientAuth, RequestHeaderSettings
from wardled.auth.interfaces import AuthenticationFailed, IRequestAuthenticator
from wardled.auth.user import UserInfo
from wardled.tls import peer_certificates


def _values(request: Any, name: str) -> list[str]:
    raw = request.requestHeaders.getRawHeaders(name.encode("latin-1")) or []
    return [
        value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        for value in raw
    ]


def _first(request: Any, names: Sequence[str]) -> str:
    """
    The first value of the first header in C{names} whose first value is
    not empty (Go's C{Header.Get} reads only the first value).
    """
    for name in names:
        values = _values(request, name)
        if values and values[0].strip():
            return values[0].strip()
    return ""


def _header_items(request: Any) -> list[tuple[str, list[str]]]:
    return [
        (
            name.decode("latin-1") if isinstance(name, bytes) else name,
            [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values],
        )
        for name, values in request.requestHeaders.getAllRawHeaders()
    ]


def _extra(
    request: Any, prefixes: Sequence[str]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    found: dict[str, list[str]] = {}
    lowered = [prefix.lower() for prefix in prefixes]
    for name, values in _header_items(request):
        for prefix in lowered:
            if name.lower().startswith(prefix) and len(name) > len(prefix):
                key = urllib.parse.unquote(name[len(prefix) :].lower())
                found.setdefault(key, []).extend(values)
                break
    return tuple(sorted((key, tuple(values)) for key, values in found.items()))


def user_from_headers(request: Any, settings: RequestHeaderSettings) -> UserInfo | None:
    """
    The user the front proxy names in C{request}'s headers, or C{None} when
    no username header has a value.
    """
    name = _first(request, settings.username_headers)
    if not name:
        return None
    groups: list[str] = []
    for header in settings.group_headers:
        groups.extend(value for value in _values(request, header) if value)
    return UserInfo(
        name,
        tuple(groups),
        uid=_first(request, settings.uid_headers),
        extra=_extra(request, settings.extra_prefixes),
    )


def strip_headers(request: Any, names: Sequence[str], prefixes: Sequence[str]) -> None:
    """
    Remove the front-proxy headers C{names} and every header starting with
    one of C{prefixes} from C{request}.

    Every request goes through this, so it reads the header names once and
    removes only what is there.
    """
    headers = request.requestHeaders
    exact = {name.lower().encode("latin-1") for name in names}
    starts = tuple(prefix.lower().encode("latin-1") for prefix in prefixes)
    doomed = [
        name
        for name, _ in headers.getAllRawHeaders()
        if (lowered := name.lower()) in exact or lowered.startswith(starts)
    ]
    for name in doomed:
        headers.removeHeader(name)


@implementer(IRequestAuthenticator)
@attrs.frozen
class RequestHeaderAuthenticator:
    """
    Believe the front-proxy headers on connections from the front proxy.

    A client certificate that does not chain to the front-proxy CA, or whose
    CN is not allowed, is a failed credential here (a later authenticator
    may still recognise it as an ordinary client certificate).
    """

    client_auth: ClientAuth

    async def authenticate(self, request: Any) -> UserInfo | None:
        settings = self.client_auth.requestheader
        if settings is None:
            return None
        peer = peer_certificates(request)
        if peer is None:
            return None
        if not self.client_auth.requestheader_verifier.verifies(peer):
            raise AuthenticationFailed(
                "front proxy: certificate signed by unknown authority"
            )
        if settings.allowed_names and peer.common_name not in settings.allowed_names:
            raise AuthenticationFailed(
                f"x509: subject with cn={peer.common_name} is not in the allowed list"
            )
        return user_from_headers(request, settings)
