# -*- test-case-name: tests.test_authn -*-
"""
The pluggable parts of authentication: ways of recognising a request's
user, and sources of bearer tokens.  They live apart from the chain in
L{wardled.auth.authn} so that each authenticator's module can name them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from zope.interface import Interface

from wardled.auth.user import UserInfo


class AuthenticationFailed(Exception):
    """
    The request carried a credential and it did not check out; the message
    says why (for the log; clients only see 401).
    """


class IRequestAuthenticator(Interface):
    """
    One way of recognising a request's user.
    """

    def authenticate(request: Any) -> Awaitable[UserInfo | None]:
        """
        The user, or C{None} when this authenticator does not apply.

        @raise AuthenticationFailed: it applies and the credential is bad.
        """


class ITokenChecker(Interface):
    """
    One source of bearer tokens.
    """

    def check(token: str) -> Awaitable[UserInfo | None]:
        """
        The user C{token} belongs to, or C{None} if this source does not
        know it.

        @raise AuthenticationFailed: the source could not be asked.
        """
