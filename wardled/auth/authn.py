# -*- test-case-name: tests.test_auth -*-
"""
Authentication: who sent a request.

Stand-alone, the chain is the reference's without the cluster: first a
client certificate that chained to C{--client-ca-file} during the TLS
handshake (the handshake already refused any other): user = CN, groups =
every O; then an C{Authorization: Bearer} token from C{--token-auth-file};
otherwise C{system:anonymous}.  Authenticated users are also in
C{system:authenticated}.  A bearer token that is not in the file is a failed
credential: 401, never anonymous.  Front-proxy headers and TokenReview come
with delegated authentication (a later issue).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wardled import apierrors
from wardled.auth.tokenfile import TokenTable
from wardled.auth.user import ANONYMOUS_USER, UserInfo, authenticated
from wardled.tls import client_certificate_identity


def _certificate_user(request: Any) -> UserInfo | None:
    identity = client_certificate_identity(request)
    if identity is None:
        return None
    common_name, organizations = identity
    return authenticated(common_name, tuple(organizations))


def bearer_token(request: Any) -> str | None:
    """
    The token of an C{Authorization: Bearer <token>} header (the scheme in
    any case), or C{None} when there is no such header.
    """
    header = request.getHeader(b"authorization")
    if not header:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return str(token)


def authenticate(request: Any) -> UserInfo:
    """
    The user behind C{request}, by client certificate only.
    """
    return _certificate_user(request) or ANONYMOUS_USER


def make_authenticator(
    tokens: TokenTable | None = None,
) -> Callable[[Any], UserInfo]:
    """
    The chain x509 client certificate, then bearer token from C{tokens}
    (when given), then anonymous.

    @return: a function from a request to its user; it raises
        L{apierrors.StatusError} 401 for a bearer token not in C{tokens}.
    """
    if tokens is None:
        return authenticate

    def authenticate_with_tokens(request: Any) -> UserInfo:
        user = _certificate_user(request)
        if user is not None:
            return user
        token = bearer_token(request)
        if token is None:
            return ANONYMOUS_USER
        user = tokens.lookup(token)
        if user is None:
            raise apierrors.unauthorized()
        return user

    return authenticate_with_tokens
