# -*- test-case-name: tests.test_auth -*-
"""
Authentication: who sent a request.

Stand-alone, the only credential is a client certificate that chained to
C{--client-ca-file} during the TLS handshake (the handshake already refused any
other): user = CN, groups = every O, plus C{system:authenticated}.  A request
without one is C{system:anonymous}.  Front-proxy headers and tokens come with
delegated authentication (a later issue).
"""

from __future__ import annotations

from typing import Any

from wardled.auth.user import ANONYMOUS_USER, UserInfo, authenticated
from wardled.tls import client_certificate_identity


def authenticate(request: Any) -> UserInfo:
    """
    The user behind C{request}.
    """
    identity = client_certificate_identity(request)
    if identity is None:
        return ANONYMOUS_USER
    common_name, organizations = identity
    return authenticated(common_name, tuple(organizations))
