# -*- test-case-name: tests.test_delegated -*-
"""
wardled behind kube-apiserver, end to end: a real C{twistd wardled}
delegating authentication and authorization to a **stand-in for
kube-apiserver** (L{tests.kubestandin}; the real one cannot be installed
here), over real mutual TLS, driven with Python's HTTP client and kubectl.

The stand-in records every TokenReview, SubjectAccessReview, ConfigMap and
namespace request, so the tests check what wardled asked as well as what it
answered.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.etcdserver import EtcdServer
from tests.harness import ALICE, TestPKI, WardledProcess, free_port
from tests.kubestandin import KubeStandIn
from wardled import certs

GROUP_PATH = "/apis/wardle.example.com/v1beta1"
FRONT_PROXY = "front-proxy-client"
STATIC_TOKEN = "static-token-1"
# What every real cluster's system:discovery role grants; kubectl needs it.
DISCOVERY_RULE = {
    "group": "system:authenticated",
    "verbs": ["get"],
    "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/openapi/*"],
}


def flunders(namespace: str) -> str:
    return f"{GROUP_PATH}/namespaces/{namespace}/flunders"


def flunder(name: str) -> dict[str, Any]:
    return {"apiVersion": "wardle.example.com/v1beta1", "kind": "Flunder", "metadata": {"name": name}}


class FrontProxyPKI:
    """
    A front-proxy CA (the aggregator's) with an allowed and a disallowed
    client certificate, plus a second CA for rotation.
    """

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.ca_file, self.proxy, self.intruder = self._authority("front-proxy-ca")
        self.rotated_ca_file, self.rotated_proxy, _ = self._authority("front-proxy-ca-2")

    def _authority(self, name: str) -> tuple[str, tuple[str, str], tuple[str, str]]:
        ca = certs.make_ca(name)
        ca_file = os.path.join(self.directory, f"{name}.crt")
        certs.write_key_pair(ca, ca_file, os.path.join(self.directory, f"{name}.key"))
        pairs = []
        for common_name in (FRONT_PROXY, "intruder"):
            pair = certs.make_client_cert(ca, common_name, [])
            cert = os.path.join(self.directory, f"{name}-{common_name}.crt")
            key = os.path.join(self.directory, f"{name}-{common_name}.key")
            certs.write_key_pair(pair, cert, key)
            pairs.append((cert, key))
        return ca_file, pairs[0], pairs[1]

    def context(self, pki: TestPKI, pair: tuple[str, str]) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=pki.ca_file)
        context.load_cert_chain(*pair)
        return context


def remote(user: str, group: str) -> dict[str, str]:
    """
    Front-proxy headers naming C{user} in C{group}.
    """
    return {"X-Remote-User": user, "X-Remote-Group": group}


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or check}")


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeStandIn]:
    server = KubeStandIn.start(str(tmp_path_factory.mktemp("standin")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def front_proxy(tmp_path_factory: pytest.TempPathFactory) -> FrontProxyPKI:
    return FrontProxyPKI(str(tmp_path_factory.mktemp("front-proxy")))


@pytest.fixture(scope="module")
def delegated(
    etcd: EtcdServer,
    pki: TestPKI,
    standin: KubeStandIn,
    front_proxy: FrontProxyPKI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WardledProcess]:
    """
    wardled with every delegation flag pointing at the stand-in, the
    front-proxy CA from the command line and a static token file.
    """
    directory = tmp_path_factory.mktemp("access")
    tokens = str(directory / "tokens.csv")
    with open(tokens, "w") as out:
        out.write(f'{STATIC_TOKEN},static-user,s1,"static-group"\n')
    policy = str(directory / "policy.yaml")
    with open(policy, "w") as out:
        out.write("rules:\n- users: [policy-user]\n  verbs: [list]\n  resources: [fischers]\n")
    server = WardledProcess.start(
        etcd.url,
        pki,
        [
            "--kubeconfig", standin.kubeconfig,
            "--authentication-kubeconfig", standin.kubeconfig,
            "--authorization-kubeconfig", standin.kubeconfig,
            "--requestheader-client-ca-file", front_proxy.ca_file,
            "--requestheader-allowed-names", FRONT_PROXY,
            "--token-auth-file", tokens,
            "--authorization-policy-file", policy,
        ],
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster_namespace(standin: KubeStandIn) -> str:
    name = f"test-{uuid.uuid4().hex[:10]}"
    standin.set_namespace(name)
    return name


@pytest.fixture(autouse=True)
def fresh_standin(request: pytest.FixtureRequest) -> Iterator[None]:
    """
    Every test starts with an available stand-in, no rules, no tokens.
    """
    if "standin" not in request.fixturenames:
        yield
        return
    standin: KubeStandIn = request.getfixturevalue("standin")
    standin.set_available(True)
    standin.set_access_rules([])
    standin.set_tokens({})
    standin.reset_calls()
    yield


def reviews(standin: KubeStandIn) -> list[dict[str, Any]]:
    return [call["body"]["spec"] for call in standin.calls("subjectaccessreview")]


class TestFrontProxy:
    def test_headers_reach_the_review_exactly(
        self,
        delegated: WardledProcess,
        standin: KubeStandIn,
        front_proxy: FrontProxyPKI,
        cluster_namespace: str,
    ) -> None:
        standin.set_access_rules([{"user": "fp-user", "verbs": ["list"], "resources": ["flunders"]}])
        context = front_proxy.context(delegated.pki, front_proxy.proxy)
        headers = {
            "X-Remote-User": "fp-user",
            "X-Remote-Extra-Acme.com%2Fproject": "p1",
        }
        # Two group headers: each value is one group, commas are kept.
        connection = delegated._connection(None, 10.0, context)
        connection.putrequest("GET", flunders(cluster_namespace))
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("X-Remote-Group", "g1")
        connection.putheader("X-Remote-Group", "g2,g3")
        connection.endheaders()
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
        assert (response.status, body["kind"]) == (200, "FlunderList")
        assert reviews(standin) == [
            {
                "resourceAttributes": {
                    "namespace": cluster_namespace,
                    "verb": "list",
                    "group": "wardle.example.com",
                    "version": "v1beta1",
                    "resource": "flunders",
                },
                "user": "fp-user",
                "groups": ["g1", "g2,g3", "system:authenticated"],
                "extra": {"acme.com/project": ["p1"]},
            }
        ]

    def test_headers_from_a_client_certificate_are_ignored(
        self, delegated: WardledProcess, standin: KubeStandIn, cluster_namespace: str
    ) -> None:
        response = delegated.https(
            "GET", flunders(cluster_namespace), user=ALICE, headers=remote("root", "system:masters")
        )
        assert response.status == 403
        assert response.json()["message"] == (
            'flunders.wardle.example.com is forbidden: User "alice" cannot list resource '
            f'"flunders" in API group "wardle.example.com" in the namespace "{cluster_namespace}"'
            ": no stand-in rule matches"
        )
        [spec] = reviews(standin)
        assert (spec["user"], spec["groups"]) == ("alice", ["devs", "system:authenticated"])

    def test_disallowed_common_name_is_401(
        self, delegated: WardledProcess, standin: KubeStandIn, front_proxy: FrontProxyPKI
    ) -> None:
        context = front_proxy.context(delegated.pki, front_proxy.intruder)
        response = delegated.https(
            "GET", flunders("default"), headers=remote("root", "system:masters"), context=context
        )
        assert (response.status, response.json()["reason"]) == (401, "Unauthorized")
        assert reviews(standin) == []

    def test_masters_from_the_front_proxy_skip_the_review(
        self, delegated: WardledProcess, standin: KubeStandIn, front_proxy: FrontProxyPKI
    ) -> None:
        context = front_proxy.context(delegated.pki, front_proxy.proxy)
        response = delegated.https(
            "GET", "/apis/wardle.example.com/v1alpha1/fischers",
            headers=remote("root", "system:masters"), context=context,
        )
        assert response.status == 200
        assert reviews(standin) == []


class TestTokens:
    def test_token_review_allowed_denied_and_cached(
        self, delegated: WardledProcess, standin: KubeStandIn, cluster_namespace: str
    ) -> None:
        standin.set_tokens({"tok-bob": {"username": "bob", "uid": "u-1", "groups": ["readers"]}})
        standin.set_access_rules([{"group": "readers", "verbs": ["list"], "resources": ["flunders"]}])
        for _ in range(3):
            response = delegated.https(
                "GET", flunders(cluster_namespace), user=None,
                headers={"Authorization": "Bearer tok-bob"},
            )
            assert response.status == 200, response.body
        [review] = standin.calls("tokenreview")
        assert review["body"]["spec"] == {"token": "tok-bob"}
        specs = reviews(standin)
        assert len(specs) == 1
        assert (specs[0]["user"], specs[0]["uid"]) == ("bob", "u-1")
        assert specs[0]["groups"] == ["readers", "system:authenticated"]
        response = delegated.https(
            "GET", flunders(cluster_namespace), user=None,
            headers={"Authorization": "Bearer not-a-token"},
        )
        assert (response.status, response.json()["reason"]) == (401, "Unauthorized")

    def test_static_token_is_checked_first(
        self, delegated: WardledProcess, standin: KubeStandIn
    ) -> None:
        standin.set_access_rules([{"user": "static-user", "verbs": ["list"], "resources": ["fischers"]}])
        response = delegated.https(
            "GET", "/apis/wardle.example.com/v1alpha1/fischers", user=None,
            headers={"Authorization": f"Bearer {STATIC_TOKEN}"},
        )
        assert response.status == 200
        assert standin.calls("tokenreview") == []
        assert reviews(standin)[-1]["groups"] == ["static-group", "system:authenticated"]

    def test_kubectl_with_a_token(
        self, delegated: WardledProcess, standin: KubeStandIn, cluster_namespace: str
    ) -> None:
        standin.set_tokens({"tok-kube": {"username": "kuber", "groups": ["editors"]}})
        standin.set_access_rules([{"group": "editors"}])
        result = subprocess.run(
            [
                "kubectl", "--kubeconfig=/dev/null", f"--server={delegated.url}",
                f"--certificate-authority={delegated.pki.ca_file}", "--token=tok-kube",
                "-n", cluster_namespace, "get", "flunders.wardle.example.com",
            ],
            check=False, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "No resources found" in result.stderr


class TestAuthorization:
    def test_review_allow_deny_and_cache(
        self, delegated: WardledProcess, standin: KubeStandIn, cluster_namespace: str
    ) -> None:
        standin.set_access_rules(
            [{"user": "alice", "verbs": ["get", "list"], "resources": ["flunders"], "namespaces": [cluster_namespace]}]
        )
        for _ in range(2):
            assert delegated.https("GET", flunders(cluster_namespace), user=ALICE).status == 200
        response = delegated.https("POST", flunders(cluster_namespace), flunder("x"), user=ALICE)
        assert response.status == 403
        assert response.json()["message"].startswith(
            'flunders.wardle.example.com is forbidden: User "alice" cannot create resource "flunders"'
        )
        assert [spec["resourceAttributes"]["verb"] for spec in reviews(standin)] == ["list", "create"]

    def test_policy_file_grants_before_the_review(
        self, delegated: WardledProcess, standin: KubeStandIn, front_proxy: FrontProxyPKI
    ) -> None:
        context = front_proxy.context(delegated.pki, front_proxy.proxy)
        path = "/apis/wardle.example.com/v1alpha1/fischers"
        response = delegated.https("GET", path, headers=remote("policy-user", "g"), context=context)
        assert response.status == 200
        assert reviews(standin) == []
        response = delegated.https("POST", path, {}, headers=remote("policy-user", "g"), context=context)
        assert response.status == 403
        assert len(reviews(standin)) == 1

    def test_always_allowed_paths_and_non_resource_reviews(
        self, delegated: WardledProcess, standin: KubeStandIn
    ) -> None:
        assert delegated.https("GET", "/readyz", user=None).status == 200
        assert reviews(standin) == []
        response = delegated.https("GET", "/version", user=None)
        assert response.status == 403
        assert response.json()["message"] == (
            'forbidden: User "system:anonymous" cannot get path "/version": no stand-in rule matches'
        )
        assert reviews(standin) == [
            {
                "nonResourceAttributes": {"path": "/version", "verb": "get"},
                "user": "system:anonymous",
                "groups": ["system:unauthenticated"],
            }
        ]

    def test_impersonation(
        self, delegated: WardledProcess, standin: KubeStandIn, cluster_namespace: str
    ) -> None:
        standin.set_access_rules(
            [
                {"user": "alice", "verbs": ["impersonate"], "resources": ["users"], "names": ["bob"]},
                {"user": "bob", "verbs": ["list"], "resources": ["flunders"]},
            ]
        )
        response = delegated.https(
            "GET", flunders(cluster_namespace), user=ALICE, headers={"Impersonate-User": "bob"}
        )
        assert response.status == 200, response.body
        assert reviews(standin)[-1]["user"] == "bob"
        response = delegated.https(
            "GET", flunders(cluster_namespace), user=ALICE, headers={"Impersonate-User": "carol"}
        )
        assert response.status == 403
        assert response.json()["message"] == (
            'users "carol" is forbidden: User "alice" cannot impersonate resource "users" '
            'in API group "" at the cluster scope: no stand-in rule matches'
        )

    def test_kubectl_as(
        self, delegated: WardledProcess, standin: KubeStandIn, cluster_namespace: str
    ) -> None:
        standin.set_access_rules(
            [
                {"user": "alice", "verbs": ["impersonate"], "resources": ["users", "groups"]},
                {"group": "auditors", "verbs": ["get", "list"], "resources": ["flunders"]},
                DISCOVERY_RULE,
            ]
        )
        result = delegated.kubectl(
            "-n", cluster_namespace, "get", "flunders.wardle.example.com",
            "--as=dave", "--as-group=auditors", user=ALICE,
        )
        assert result.returncode == 0, result.stderr
        spec = reviews(standin)[-1]
        assert (spec["user"], spec["groups"]) == ("dave", ["auditors", "system:authenticated"])


class TestNamespaceLifecycle:
    def test_missing_terminating_and_active(
        self, delegated: WardledProcess, standin: KubeStandIn, cluster_namespace: str
    ) -> None:
        response = delegated.https("POST", flunders("no-such-namespace"), flunder("a"))
        assert response.status == 404
        assert response.json()["message"] == 'namespaces "no-such-namespace" not found'
        created = delegated.https("POST", flunders(cluster_namespace), flunder("a"))
        assert created.status == 201, created.body
        standin.set_namespace(cluster_namespace, phase="Terminating")
        wait_for(
            lambda: delegated.https("POST", flunders(cluster_namespace), flunder("b")).status == 403,
            what="the terminating namespace to reach the mirror",
        )
        response = delegated.https("POST", flunders(cluster_namespace), flunder("c"))
        body = response.json()
        assert body["message"] == (
            f'flunders.wardle.example.com "c" is forbidden: unable to create new content in '
            f"namespace {cluster_namespace} because it is being terminated"
        )
        assert body["details"]["causes"][0]["reason"] == "NamespaceTerminating"
        # Namespaces are watched, not fetched per request: only the unknown
        # name was looked up live; the phase change arrived by the watch.
        gets = [call["path"] for call in standin.calls("namespace-get")]
        assert gets == ["/api/v1/namespaces/no-such-namespace"]

    def test_new_namespace_created_after_start(
        self, delegated: WardledProcess, standin: KubeStandIn
    ) -> None:
        name = f"fresh-{uuid.uuid4().hex[:8]}"
        standin.set_namespace(name)
        # Whether or not the watch has delivered it yet, the create works.
        assert delegated.https("POST", flunders(name), flunder("n")).status == 201


class TestClusterDown:
    def test_clean_errors_and_recovery(
        self, delegated: WardledProcess, standin: KubeStandIn, cluster_namespace: str
    ) -> None:
        standin.set_available(False)
        try:
            response = delegated.https("GET", f"{flunders(cluster_namespace)}?limit=7", user=ALICE)
            assert response.status == 500
            assert response.json()["reason"] == "InternalError"
            response = delegated.https(
                "GET", flunders(cluster_namespace), user=None, headers={"Authorization": "Bearer t"}
            )
            assert response.status == 401
            # system:masters needs no review: still served.
            assert delegated.https("GET", flunders(cluster_namespace)).status == 200
            assert delegated.https("GET", "/healthz", user=None).status == 200
        finally:
            standin.set_available(True)
        standin.set_access_rules([{"user": "alice"}])
        response = delegated.https("GET", f"{flunders(cluster_namespace)}?limit=8", user=ALICE)
        assert response.status == 200

    def test_hanging_cluster_times_out(
        self, delegated: WardledProcess, standin: KubeStandIn, cluster_namespace: str
    ) -> None:
        standin.pause()
        try:
            started = time.monotonic()
            response = delegated.https(
                "GET", f"{flunders(cluster_namespace)}?limit=9", user=ALICE, timeout=40
            )
            assert response.status == 500
            assert "timed out" in response.json()["message"]
            assert time.monotonic() - started < 30
        finally:
            standin.resume()


class TestConfigMap:
    @pytest.fixture
    def from_configmap(
        self,
        etcd: EtcdServer,
        pki: TestPKI,
        standin: KubeStandIn,
        front_proxy: FrontProxyPKI,
    ) -> Iterator[WardledProcess]:
        """
        wardled taking the front-proxy settings from the ConfigMap.
        """
        standin.set_configmap(self.configmap(front_proxy.ca_file))
        server = WardledProcess.start(
            etcd.url,
            pki,
            ["--authentication-kubeconfig", standin.kubeconfig, "--authorization-kubeconfig", standin.kubeconfig],
        )
        try:
            yield server
        finally:
            server.stop()
            standin.set_configmap(None)

    def configmap(self, ca_file: str) -> dict[str, str]:
        with open(ca_file) as source:
            ca = source.read()
        return {
            "requestheader-client-ca-file": ca,
            "requestheader-allowed-names": json.dumps([FRONT_PROXY]),
            "requestheader-username-headers": json.dumps(["X-Remote-User"]),
            "requestheader-group-headers": json.dumps(["X-Remote-Group"]),
            "requestheader-extra-headers-prefix": json.dumps(["X-Remote-Extra-"]),
        }

    def test_rotated_ca_takes_effect(
        self, from_configmap: WardledProcess, standin: KubeStandIn, front_proxy: FrontProxyPKI
    ) -> None:
        old = front_proxy.context(from_configmap.pki, front_proxy.proxy)
        new = front_proxy.context(from_configmap.pki, front_proxy.rotated_proxy)
        headers = remote("root", "system:masters")

        def status(context: ssl.SSLContext) -> int | str:
            try:
                return from_configmap.https("GET", "/apis/wardle.example.com/v1alpha1/fischers", headers=headers, context=context).status
            except (ssl.SSLError, OSError) as error:
                return type(error).__name__

        assert status(old) == 200
        assert status(new) != 200
        standin.set_configmap(self.configmap(front_proxy.rotated_ca_file))
        wait_for(lambda: status(new) == 200, what="the rotated CA")
        assert status(old) != 200

    def test_lookup_failure_stops_start_unless_tolerated(
        self, etcd: EtcdServer, pki: TestPKI, standin: KubeStandIn
    ) -> None:
        standin.set_available(False)
        args = WardledProcess.command(
            etcd.url, pki, free_port(), ["--authentication-kubeconfig", standin.kubeconfig]
        )
        result = subprocess.run(args, check=False, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith(
            "wardled: error: unable to load configmap based request-header-client-ca-file: "
        ), result.stderr
        server = WardledProcess.start(
            etcd.url, pki,
            ["--authentication-kubeconfig", standin.kubeconfig, "--authentication-tolerate-lookup-failure"],
        )
        try:
            assert server.https("GET", "/healthz").status == 200
        finally:
            server.stop()
