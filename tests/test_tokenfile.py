# -*- test-case-name: tests.test_tokenfile -*-
"""
Static bearer tokens (C{--token-auth-file}): parsing the CSV, the
authentication chain x509 → token → anonymous, and the one-line error for a
bad file.
"""

from __future__ import annotations

import os
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from wardled import apierrors, tap
from wardled.auth.authn import bearer_token, make_authenticator
from wardled.auth.tokenfile import TokenFileError, load_token_file, parse_token_csv
from wardled.auth.user import ANONYMOUS_USER, UserInfo
from wardled.server import make_root
from wardled.storage.memory import MemoryStorage

CSV = (
    'admin-token,root,1,"system:masters,ops"\n'
    "plain-token,bob,42\n"
    '\n'
    'spaced-token, carol ,7," devs , qa "\n'
)
FLUNDERS = "https://127.0.0.1:8443/apis/wardle.example.com/v1alpha1/namespaces/default/flunders"


class FakeRequest:
    """
    Just enough of a request for the authenticator: headers, and no TLS.
    """

    def __init__(self, authorization: bytes | None = None) -> None:
        self.requestHeaders = Headers()
        if authorization:
            self.requestHeaders.setRawHeaders(b"authorization", [authorization])
        self.channel = None
        self.transport = None

    def getHeader(self, name: bytes) -> bytes | None:
        values = self.requestHeaders.getRawHeaders(name)
        return values[-1] if values else None


class ParseTests(SynchronousTestCase):
    def test_records(self) -> None:
        table = parse_token_csv(CSV)
        self.assertEqual(
            table.lookup("admin-token"),
            UserInfo("root", ("system:masters", "ops", "system:authenticated"), uid="1"),
        )
        self.assertEqual(
            table.lookup("plain-token"), UserInfo("bob", ("system:authenticated",), uid="42")
        )
        self.assertEqual(
            table.lookup("spaced-token"),
            UserInfo("carol", ("devs", "qa", "system:authenticated"), uid="7"),
        )
        self.assertIsNone(table.lookup("nope"))
        self.assertIsNone(table.lookup("admin-toke"))
        self.assertIsNone(table.lookup(""))

    def test_later_duplicate_wins(self) -> None:
        table = parse_token_csv("t,first,1\nt,second,2\n")
        user = table.lookup("t")
        self.assertEqual(user.name if user else None, "second")

    def test_malformed(self) -> None:
        cases = {
            "t,user\n": "f, record 1: want at least 3 columns (token,user,uid), got 2",
            "a,b,c\n,user,1\n": "f, record 2: empty token",
            "t, ,1\n": "f, record 1: empty user name",
        }
        for text, message in cases.items():
            error = self.assertRaises(TokenFileError, parse_token_csv, text, "f")
            self.assertEqual(str(error), message)
        error = self.assertRaises(TokenFileError, parse_token_csv, 't,u,1,"a,b\n', "f")
        self.assertIn("f, line", str(error))

    def test_load_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as out:
            out.write(CSV)
        self.assertEqual(load_token_file(path), parse_token_csv(CSV, path))
        missing = os.path.join(self.mktemp(), "none.csv")
        error = self.assertRaises(TokenFileError, load_token_file, missing)
        self.assertEqual(str(error), f"cannot read {missing}: No such file or directory")


class BearerTokenTests(SynchronousTestCase):
    def test_scheme_case_insensitive(self) -> None:
        for header in (b"Bearer abc", b"bearer abc", b"BEARER  abc ", b" Bearer abc"):
            self.assertEqual(bearer_token(FakeRequest(header)), "abc", header)

    def test_not_bearer(self) -> None:
        for header in (None, b"Basic abc", b"Bearer", b"Bearer   ", b"Bearerabc"):
            self.assertIsNone(bearer_token(FakeRequest(header)), header)


class AuthenticatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.chain = make_authenticator(None, [parse_token_csv(CSV)])

    def authenticate(self, request: FakeRequest) -> UserInfo:
        return self.successResultOf(ensureDeferred(self.chain(request)))

    def test_token_user(self) -> None:
        user = self.authenticate(FakeRequest(b"Bearer plain-token"))
        self.assertEqual(user, UserInfo("bob", ("system:authenticated",), uid="42"))

    def test_unknown_token_is_401(self) -> None:
        failure = self.failureResultOf(
            ensureDeferred(self.chain(FakeRequest(b"Bearer wrong"))), apierrors.StatusError
        )
        self.assertEqual((failure.value.code, failure.value.reason), (401, "Unauthorized"))

    def test_no_credential_is_anonymous(self) -> None:
        self.assertEqual(self.authenticate(FakeRequest()), ANONYMOUS_USER)
        self.assertEqual(self.authenticate(FakeRequest(b"Basic x")), ANONYMOUS_USER)

    def test_without_table_tokens_are_a_failed_credential(self) -> None:
        """
        With no token source, a bearer token still is not anonymous: nobody
        accepts it, so it is a 401 (kube-apiserver's "invalid bearer token"
        needs a token authenticator; without one the header is ignored).
        """
        chain = make_authenticator(None, [])
        user = self.successResultOf(ensureDeferred(chain(FakeRequest(b"Bearer admin-token"))))
        self.assertEqual(user, ANONYMOUS_USER)


class HTTPTests(SynchronousTestCase):
    """
    Tokens through the real filters and routes (in memory).
    """

    def setUp(self) -> None:
        root = make_root(
            MemoryStorage(), "/registry/wardle.example.com", Clock(),
            make_authenticator(None, [parse_token_csv(CSV)]),
        )
        self.stub = StubTreq(root)

    def get(self, authorization: str | None) -> tuple[int, Any]:
        headers = {"Authorization": [authorization]} if authorization else {}
        response = self.successResultOf(
            self.stub.get(FLUNDERS, headers=headers)  # type: ignore[attr-defined]
        )
        body = self.successResultOf(self.stub.json_content(response))  # type: ignore[attr-defined]
        return response.code, body

    def test_answers(self) -> None:
        code, body = self.get("Bearer admin-token")
        self.assertEqual((code, body["kind"]), (200, "FlunderList"))
        code, body = self.get("bearer plain-token")
        self.assertEqual(code, 403)
        self.assertEqual(
            body["message"],
            'flunders.wardle.example.com is forbidden: User "bob" cannot list resource '
            '"flunders" in API group "wardle.example.com" in the namespace "default"',
        )
        code, body = self.get("Bearer unknown")
        self.assertEqual((code, body["kind"], body["reason"]), (401, "Status", "Unauthorized"))
        code, body = self.get(None)
        self.assertEqual(code, 401)


class OptionsTests(SynchronousTestCase):
    def parse_error(self, path: str) -> str:
        options = tap.Options()
        error = self.assertRaises(
            SystemExit,
            options.parseOptions,
            ["--etcd-servers", "http://127.0.0.1:2379", "--token-auth-file", path],
        )
        return str(error.code)

    def test_good_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as out:
            out.write(CSV)
        options = tap.Options()
        options.parseOptions(["--etcd-servers", "http://127.0.0.1:2379", "--token-auth-file", path])
        self.assertEqual(options.config.token_auth_file, path)

    def test_malformed_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as out:
            out.write("only,two\n")
        self.assertEqual(
            self.parse_error(path),
            f"wardled: error: --token-auth-file: {path}, record 1: want at least 3 "
            "columns (token,user,uid), got 2",
        )

    def test_unreadable_file(self) -> None:
        path = os.path.join(self.mktemp(), "missing.csv")
        self.assertEqual(
            self.parse_error(path),
            f"wardled: error: cannot read --token-auth-file {path}: No such file or directory",
        )
