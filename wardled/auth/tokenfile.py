# -*- test-case-name: tests.test_tokenfile -*-
"""
Static bearer tokens from a file (kube-apiserver's C{--token-auth-file}).

A stand-alone deployment has no cluster to send a TokenReview to, yet scripts
and C{curl} want to authenticate without a client certificate.  The file is
kube-apiserver's CSV: C{token,user,uid,"group1,group2"} (at least three
columns; the quoted group list is optional).  It is read once at start.
"""

from __future__ import annotations

import csv
import hmac
import io

import attrs
from zope.interface import implementer

from wardled.auth.interfaces import ITokenChecker
from wardled.auth.user import AUTHENTICATED, UserInfo


class TokenFileError(Exception):
    """
    The token file cannot be read or is malformed; the message says where.
    """


@implementer(ITokenChecker)
@attrs.frozen
class TokenTable:
    """
    The users behind the known tokens.

    @ivar entries: (token, user) pairs, in file order (a later duplicate
        wins, as in kube-apiserver).
    """

    entries: tuple[tuple[str, UserInfo], ...] = ()

    def lookup(self, token: str) -> UserInfo | None:
        """
        The user whose token is C{token}, or C{None}.

        Every entry is compared in constant time, so the answer's timing says
        nothing about how much of a token was right.
        """
        presented = token.encode("utf-8")
        found: UserInfo | None = None
        for known, user in self.entries:
            if hmac.compare_digest(known.encode("utf-8"), presented):
                found = user
        return found

    async def check(self, token: str) -> UserInfo | None:
        """
        L{wardled.auth.authn.ITokenChecker}: the same as L{lookup}.
        """
        return self.lookup(token)


def _user(record: list[str]) -> UserInfo:
    groups: list[str] = []
    if len(record) > 3:
        groups = [group.strip() for group in record[3].split(",") if group.strip()]
    if AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return UserInfo(record[1].strip(), tuple(groups), uid=record[2].strip())


def parse_token_csv(text: str, source: str = "<token file>") -> TokenTable:
    """
    Parse the CSV C{text}.

    @param source: the file name, for error messages.
    @raise TokenFileError: a record has fewer than three columns, an empty
        token or an empty user name, or the CSV itself is broken.
    """
    entries: list[tuple[str, UserInfo]] = []
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        for record in reader:
            if not record or not any(field.strip() for field in record):
                continue
            where = f"{source}, record {reader.line_num}"
            if len(record) < 3:
                raise TokenFileError(
                    f"{where}: want at least 3 columns (token,user,uid), got {len(record)}"
                )
            if not record[0].strip():
                raise TokenFileError(f"{where}: empty token")
            if not record[1].strip():
                raise TokenFileError(f"{where}: empty user name")
            entries.append((record[0].strip(), _user(record)))
    except csv.Error as error:
        raise TokenFileError(f"{source}, line {reader.line_num}: {error}") from None
    return TokenTable(tuple(entries))


def load_token_file(path: str) -> TokenTable:
    """
    Read and parse the token file at C{path} (blocking: call it before the
    reactor runs).

    @raise TokenFileError: unreadable or malformed.
    """
    try:
        with open(path, encoding="utf-8") as source:
            text = source.read()
    except OSError as error:
        raise TokenFileError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise TokenFileError(f"{path}: not UTF-8 text ({error.reason})") from None
    return parse_token_csv(text, path)
