# -*- test-case-name: tests.test_authn -*-
"""
Authentication: who sent a request.

The chain is k8s.io/apiserver's delegating authenticator:

  1. front-proxy headers (L{wardled.auth.requestheader}), trusted only on a
     connection whose client certificate chains to the front-proxy CA;
  2. an x509 client certificate chained to the client CA: user = CN,
     groups = every O;
  3. an C{Authorization: Bearer} token: C{--token-auth-file} first, then a
     TokenReview (L{wardled.auth.tokenreview}) when a cluster is known;
  4. otherwise C{system:anonymous} in C{system:unauthenticated}.

As in Kubernetes, the first authenticator that recognises the request
wins; a credential that fails (a certificate from the wrong CA, a CN the
front-proxy list does not allow, a bearer token nobody accepts) is a 401
unless a later authenticator recognises the request, never anonymous.
Authenticated users are also in C{system:authenticated}.  Front-proxy
headers are removed from every request once it is authenticated, so no
handler can mistake a client's own C{X-Remote-User} for an identity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from weakref import WeakKeyDictionary

import attrs
from zope.interface import implementer

from wardled import apierrors
from wardled.auth.clientauth import (
    DEFAULT_EXTRA_PREFIXES,
    DEFAULT_GROUP_HEADERS,
    DEFAULT_USERNAME_HEADERS,
    ClientAuth,
)
from wardled.auth.interfaces import (
    AuthenticationFailed,
    IRequestAuthenticator,
    ITokenChecker,
)
from wardled.auth.requestheader import RequestHeaderAuthenticator, strip_headers
from wardled.auth.user import ANONYMOUS_USER, UserInfo, with_authenticated_group
from wardled.tls import PeerCertificates, peer_certificates

Authenticator = Callable[[Any], Awaitable[UserInfo]]


@implementer(IRequestAuthenticator)
@attrs.frozen
class X509Authenticator:
    """
    A client certificate chained to the client CA: user = CN, groups = O.
    Without a client CA it has no opinion (a front-proxy certificate then
    is not a failed credential).
    """

    client_auth: ClientAuth
    _users: WeakKeyDictionary[PeerCertificates, UserInfo] = attrs.field(
        factory=WeakKeyDictionary, init=False, eq=False, repr=False
    )

    async def authenticate(self, request: Any) -> UserInfo | None:
        peer = peer_certificates(request)
        if peer is None or not self.client_auth.settings.client_authorities:
            return None
        if not self.client_auth.client_verifier.verifies(peer):
            raise AuthenticationFailed(
                f"x509: certificate of {peer.common_name!r} signed by unknown authority"
            )
        if peer.common_name == "":
            return None
        known = self._users.get(peer)
        if known is None:
            # Once per connection: its requests share one user value.
            user, groups = peer.identity
            known = self._users[peer] = with_authenticated_group(UserInfo(user, groups))
        return known


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


@implementer(IRequestAuthenticator)
@attrs.frozen
class BearerTokenAuthenticator:
    """
    An C{Authorization: Bearer} token, checked against each of C{checkers}
    in turn; a token none of them knows is a failed credential.
    """

    checkers: tuple[ITokenChecker, ...]

    async def authenticate(self, request: Any) -> UserInfo | None:
        token = bearer_token(request)
        if token is None:
            return None
        for checker in self.checkers:
            user = await checker.check(token)
            if user is not None:
                return user
        raise AuthenticationFailed("invalid bearer token")


@attrs.frozen
class AuthenticatorChain:
    """
    The authenticators in order, then anonymous (see the module docstring).

    @ivar header_names: the front-proxy header names and prefixes to strip
        from every request, whether or not it came from the front proxy.
    """

    authenticators: tuple[IRequestAuthenticator, ...]
    header_names: Callable[[], tuple[Sequence[str], Sequence[str]]] = (
        lambda: (DEFAULT_USERNAME_HEADERS + DEFAULT_GROUP_HEADERS, DEFAULT_EXTRA_PREFIXES)
    )

    async def __call__(self, request: Any) -> UserInfo:
        """
        The user behind C{request}.

        @raise apierrors.StatusError: 401, a credential failed and nothing
            else recognised the request.
        """
        try:
            return await self._authenticate(request)
        finally:
            names, prefixes = self.header_names()
            strip_headers(request, names, prefixes)

    async def _authenticate(self, request: Any) -> UserInfo:
        failures: list[AuthenticationFailed] = []
        for authenticator in self.authenticators:
            try:
                user = await authenticator.authenticate(request)
            except AuthenticationFailed as failure:
                failures.append(failure)
                continue
            if user is not None:
                # As Kubernetes does: the credential has done its job.
                request.requestHeaders.removeHeader(b"authorization")
                return with_authenticated_group(user)
        if failures:
            raise apierrors.unauthorized()
        return ANONYMOUS_USER


def make_authenticator(
    client_auth: ClientAuth | None = None,
    token_checkers: Sequence[ITokenChecker] = (),
) -> AuthenticatorChain:
    """
    The chain front proxy → x509 → bearer tokens → anonymous, with the
    parts that are configured.

    @param client_auth: the (possibly rotating) client and front-proxy CAs;
        C{None} when no client certificates are trusted.
    @param token_checkers: the bearer token sources, in order.
    """
    authenticators: list[IRequestAuthenticator] = []
    if client_auth is not None:
        authenticators.append(RequestHeaderAuthenticator(client_auth))
        authenticators.append(X509Authenticator(client_auth))
    if token_checkers:
        authenticators.append(BearerTokenAuthenticator(tuple(token_checkers)))
    if client_auth is None:
        return AuthenticatorChain(tuple(authenticators))
    return AuthenticatorChain(tuple(authenticators), client_auth.strip_header_names)
