# -*- test-case-name: tests.test_continuetoken -*-
"""
List continue tokens, in the reference's format (k8s.io/apiserver
pkg/storage/continue.go) so tokens mean the same to every client.

A token is base64url (no padding) of C{{"v":"meta.k8s.io/v1","rv":N,"start":K}},
where C{K} is the next key to read, relative to the list's key prefix.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath

import attrs

from wardled import apierrors

TOKEN_VERSION = "meta.k8s.io/v1"

# rv in a token meaning "continue from the latest revision" (the token handed
# out with a 410 for an expired one).
LATEST = -1


@attrs.frozen
class ContinuePoint:
    """
    Where a continued list resumes: the absolute start key and the revision.
    """

    start_key: str
    revision: int


def encode(revision: int, next_key: str, key_prefix: str) -> str:
    """
    A token resuming at C{next_key} (absolute) read at C{revision}.
    """
    relative = next_key.removeprefix(key_prefix)
    payload = json.dumps(
        {"v": TOKEN_VERSION, "rv": revision, "start": relative},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()


def decode(token: str, key_prefix: str) -> ContinuePoint:
    """
    Check and unpack a token for a list under C{key_prefix}.

    @raise apierrors.StatusError: 400 C{invalid continue token: ...}
    """
    try:
        return _decode(token, key_prefix)
    except ValueError as error:
        raise apierrors.bad_request(f"invalid continue token: {error}") from None


def _decode(token: str, key_prefix: str) -> ContinuePoint:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"continue key is not valid: {error}") from None
    if not isinstance(data, dict):
        raise ValueError("continue key is not valid: not an object")  # noqa: TRY004
    if data.get("v") != TOKEN_VERSION:
        raise ValueError(
            "continue key is not valid: server does not recognize this encoded "
            f"version {data.get('v')}"
        )
    revision = data.get("rv")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision == 0:
        raise ValueError(
            "continue key is not valid: incorrect encoded start resourceVersion "
            "(version meta.k8s.io/v1)"
        )
    start = data.get("start")
    if not isinstance(start, str) or not start:
        raise ValueError(
            "continue key is not valid: encoded start key empty (version "
            "meta.k8s.io/v1)"
        )
    rooted = start if start.startswith("/") else "/" + start
    if posixpath.normpath(rooted) != rooted or rooted.startswith("//"):
        raise ValueError(f"continue key is not valid: {start}")
    return ContinuePoint(key_prefix + rooted[1:], revision)
