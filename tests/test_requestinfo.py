"""
Request info parsing, as k8s.io/apiserver's RequestInfoFactory.
"""

from twisted.trial.unittest import SynchronousTestCase

from wardled.api.requestinfo import parse_request_info

BASE = "/apis/wardle.example.com/v1alpha1"


class RequestInfoTests(SynchronousTestCase):
    def check(self, method: str, path: str, watch: bool = False, **expected: object) -> None:
        info = parse_request_info(method, path, watch)
        for name, value in expected.items():
            self.assertEqual(getattr(info, name), value, (method, path, name))

    def test_resource_verbs(self) -> None:
        ns = f"{BASE}/namespaces/default/flunders"
        self.check("GET", ns, verb="list", namespace="default", resource="flunders", name="")
        self.check("GET", ns, True, verb="watch")
        self.check("GET", f"{ns}/a", verb="get", name="a")
        self.check("GET", f"{ns}/a", True, verb="watch", name="a")
        self.check("POST", ns, verb="create")
        self.check("PUT", f"{ns}/a", verb="update")
        self.check("PATCH", f"{ns}/a", verb="patch")
        self.check("DELETE", f"{ns}/a", verb="delete")
        self.check("DELETE", ns, verb="deletecollection")
        self.check("GET", f"{BASE}/flunders", verb="list", namespace="", resource="flunders")
        self.check("GET", f"{BASE}/fischers/f", verb="get", resource="fischers", name="f")
        self.check("GET", f"{ns}/a/status", subresource="status")

    def test_legacy_watch_path(self) -> None:
        self.check("GET", f"{BASE}/watch/namespaces/default/flunders", verb="watch",
                   legacy_watch=True, namespace="default", resource="flunders")

    def test_non_resource(self) -> None:
        for path in ("/", "/apis", "/apis/wardle.example.com", BASE, "/healthz/etcd", "/version"):
            self.check("GET", path, is_resource_request=False, verb="get")

    def test_namespace_itself(self) -> None:
        self.check("GET", f"{BASE}/namespaces/default", resource="namespaces", name="default")
