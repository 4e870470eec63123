"""
Stand-alone authorization and its messages.
"""

from twisted.trial.unittest import SynchronousTestCase

from wardled.api.requestinfo import parse_request_info
from wardled.auth.authz import authorize, forbidden_error, is_open_path
from wardled.auth.user import ANONYMOUS_USER, authenticated

ALICE = authenticated("alice", ("devs",))
ADMIN = authenticated("development", ("system:masters",))


class AuthorizeTests(SynchronousTestCase):
    def test_masters_may_do_everything(self) -> None:
        info = parse_request_info("DELETE", "/apis/wardle.example.com/v1alpha1/fischers", False)
        self.assertTrue(authorize(ADMIN, info).allowed)

    def test_open_paths(self) -> None:
        for path in ("/healthz", "/livez", "/readyz", "/readyz/etcd", "/version", "/healthz/"):
            self.assertTrue(is_open_path(path), path)
            info = parse_request_info("GET", path, False)
            self.assertTrue(authorize(ANONYMOUS_USER, info).allowed)
        for path in ("/apis", "/healthzz", "/versions", "/"):
            self.assertFalse(is_open_path(path), path)

    def test_discovery_for_authenticated_users_only(self) -> None:
        for path in ("/apis", "/apis/wardle.example.com", "/apis/wardle.example.com/v1alpha1", "/openapi/v2", "/openapi/v3/apis/wardle.example.com/v1beta1"):
            info = parse_request_info("GET", path, False)
            self.assertTrue(authorize(ALICE, info).allowed, path)
            self.assertFalse(authorize(ANONYMOUS_USER, info).allowed, path)
        for method, path in (("POST", "/apis"), ("GET", "/"), ("GET", "/metrics"),
                             ("GET", "/apis/wardle.example.com/v1alpha1/fischers")):
            self.assertFalse(authorize(ALICE, parse_request_info(method, path, False)).allowed, path)

    def test_authenticated_users_get_group(self) -> None:
        self.assertEqual(ALICE.groups, ("devs", "system:authenticated"))

    def test_forbidden_messages(self) -> None:
        info = parse_request_info(
            "GET", "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders", False
        )
        self.assertFalse(authorize(ALICE, info).allowed)
        error = forbidden_error(ALICE, info)
        self.assertEqual(error.code, 403)
        self.assertEqual(
            error.message,
            'flunders.wardle.example.com is forbidden: User "alice" cannot list resource '
            '"flunders" in API group "wardle.example.com" in the namespace "default"',
        )
        info = parse_request_info("GET", "/apis/wardle.example.com/v1alpha1/fischers/f", False)
        self.assertEqual(
            forbidden_error(ALICE, info).message,
            'fischers.wardle.example.com "f" is forbidden: User "alice" cannot get resource '
            '"fischers" in API group "wardle.example.com" at the cluster scope',
        )
        info = parse_request_info("GET", "/", False)
        self.assertEqual(
            forbidden_error(ALICE, info).message,
            'forbidden: User "alice" cannot get path "/"',
        )
