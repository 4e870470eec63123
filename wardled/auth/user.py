# -*- test-case-name: tests.test_auth -*-
"""
Who is making a request, as k8s.io/apiserver's user.Info describes it.
"""

from __future__ import annotations

import attrs

ANONYMOUS = "system:anonymous"
UNAUTHENTICATED = "system:unauthenticated"
AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"


@attrs.frozen
class UserInfo:
    """
    An authenticated (or anonymous) user.
    """

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def is_anonymous(self) -> bool:
        return self.name == ANONYMOUS


ANONYMOUS_USER = UserInfo(ANONYMOUS, (UNAUTHENTICATED,))


def authenticated(name: str, groups: tuple[str, ...]) -> UserInfo:
    """
    A user whose credential checked out: every such user is also in
    C{system:authenticated}.
    """
    if AUTHENTICATED not in groups:
        groups = (*groups, AUTHENTICATED)
    return UserInfo(name, groups)


def with_authenticated_group(user: UserInfo) -> UserInfo:
    """
    C{user} with C{system:authenticated} added to its groups (once).
    """
    if AUTHENTICATED in user.groups:
        return user
    return attrs.evolve(user, groups=(*user.groups, AUTHENTICATED))
