"""
End to end: a real etcd, a real C{twistd -n wardled} over mutual TLS, driven
with raw HTTP/1.1, curl (HTTP/2), httpie and kubectl — the clients users have.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
import yaml

from tests.harness import ADMIN, ALICE, STRANGER, WardledProcess

V1A = "/apis/wardle.example.com/v1alpha1"
V1B = "/apis/wardle.example.com/v1beta1"
PREFIX = "/registry/wardle.example.com/wardle.example.com"


def flunder(name: str, **spec: str) -> dict[str, Any]:
    return {
        "apiVersion": "wardle.example.com/v1alpha1",
        "kind": "Flunder",
        "metadata": {"name": name},
        "spec": dict(spec),
    }


class TestIdentityAndAuthorization:
    def test_admin_over_http1(self, wardled: WardledProcess, namespace: str) -> None:
        response = wardled.https("GET", f"{V1A}/namespaces/{namespace}/flunders")
        assert response.status == 200, response.body
        assert response.json()["kind"] == "FlunderList"

    @pytest.mark.parametrize("http2", [True, False])
    def test_identity_over_both_protocols(self, wardled: WardledProcess, http2: bool) -> None:
        result = wardled.curl(
            "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
            f"{V1A}/namespaces/default/flunders", http2=http2,
        )
        assert result.stdout == ("2 200" if http2 else "1.1 200"), result.stderr
        denied = wardled.curl(f"{V1A}/namespaces/default/flunders", user=ALICE, http2=http2)
        status = json.loads(denied.stdout)
        assert status["code"] == 403
        assert status["message"] == (
            'flunders.wardle.example.com is forbidden: User "alice" cannot list resource '
            '"flunders" in API group "wardle.example.com" in the namespace "default"'
        )

    def test_anonymous(self, wardled: WardledProcess) -> None:
        response = wardled.https("GET", f"{V1A}/fischers", user=None)
        assert response.status == 401
        assert response.json()["reason"] == "Unauthorized"
        for path in ("/healthz", "/livez", "/readyz", "/readyz/etcd", "/version"):
            assert wardled.https("GET", path, user=None).status == 200, path

    def test_unknown_ca_fails_handshake(self, wardled: WardledProcess) -> None:
        # TLS 1.2 makes the refusal part of the handshake (with TLS 1.3 curl
        # may only notice it at its first read, as a reset connection).
        result = wardled.curl("--tls-max", "1.2", "/healthz", user=STRANGER)
        assert result.returncode == 35, result.stderr
        assert "unknown ca" in result.stderr.lower()
        over_tls13 = wardled.curl("/healthz", user=STRANGER)
        assert over_tls13.returncode != 0
        assert over_tls13.stdout == ""
        assert wardled.https("GET", "/healthz").status == 200


class TestResources:
    def test_crud_and_etcd_layout(
        self, wardled: WardledProcess, namespace: str
    ) -> None:
        collection = f"{V1B}/namespaces/{namespace}/flunders"
        created = wardled.https(
            "POST", collection,
            {"apiVersion": "wardle.example.com/v1beta1", "kind": "Flunder",
             "metadata": {"name": "one"}, "spec": {"flunderReference": "two", "referenceType": "Flunder"}},
        )
        assert created.status == 201, created.body
        body = created.json()
        stored = wardled.stored(f"{PREFIX}/flunders/{namespace}/one")
        assert stored is not None
        assert stored["apiVersion"] == "wardle.example.com/v1alpha1"
        assert stored["spec"] == {"reference": "two", "referenceType": "Flunder"}
        assert "resourceVersion" not in stored["metadata"]
        assert body["metadata"]["resourceVersion"] == stored["__mod_revision"]

        alpha = wardled.https("GET", f"{V1A}/namespaces/{namespace}/flunders/one")
        assert alpha.json()["spec"] == {"reference": "two", "referenceType": "Flunder"}
        assert "is deprecated in v1.3+" in (alpha.header("warning") or "")

        stale = dict(body, metadata=dict(body["metadata"], resourceVersion="1"))
        assert wardled.https("PUT", f"{collection}/one", stale).status == 409
        body["metadata"]["labels"] = {"color": "blue"}
        updated = wardled.https("PUT", f"{collection}/one", body)
        assert updated.status == 200, updated.body

        deleted = wardled.https("DELETE", f"{collection}/one")
        assert deleted.status == 200
        assert deleted.json()["status"] == "Success"
        assert wardled.stored(f"{PREFIX}/flunders/{namespace}/one") is None

    def test_bad_inputs_write_nothing_and_server_keeps_serving(
        self, wardled: WardledProcess, namespace: str
    ) -> None:
        collection = f"{V1A}/namespaces/{namespace}/flunders"
        cases = [
            (b"{not json", "application/json", 400),
            (b"- a\n- list\n", "application/yaml", 400),
            (b"x" * (3 * 1024 * 1024 + 10), "application/json", 413),
            (b"<flunder/>", "application/xml", 415),
            (json.dumps(flunder("bad", referenceType="Flunder")).encode(), "application/json", 422),
            (json.dumps({"apiVersion": "wardle.example.com/v1beta1", "kind": "Flunder",
                         "metadata": {"name": "bad"}}).encode(), "application/json", 400),
        ]
        for payload, content_type, code in cases:
            response = wardled.https("POST", collection, payload, {"Content-Type": content_type})
            assert response.status == code, (payload[:40], response.body[:300])
            assert response.json()["kind"] == "Status"
        assert wardled.https(
            "GET", collection, headers={"Accept": "application/vnd.kubernetes.protobuf"}
        ).status == 406
        assert wardled.stored(f"{PREFIX}/flunders/{namespace}/bad") is None
        assert wardled.https("GET", "/healthz").status == 200

    def test_finalizers(self, wardled: WardledProcess, namespace: str) -> None:
        collection = f"{V1A}/namespaces/{namespace}/flunders"
        obj = flunder("kept")
        obj["metadata"]["finalizers"] = ["example.com/hold"]
        assert wardled.https("POST", collection, obj).status == 201
        marked = wardled.https("DELETE", f"{collection}/kept")
        assert marked.status == 200
        current = marked.json()
        assert current["metadata"]["deletionTimestamp"]
        current["metadata"]["finalizers"] = []
        assert wardled.https("PUT", f"{collection}/kept", current).status == 200
        assert wardled.https("GET", f"{collection}/kept").status == 404

    def test_ban_flunder(self, wardled: WardledProcess, namespace: str) -> None:
        fischer = {"apiVersion": "wardle.example.com/v1alpha1", "kind": "Fischer",
                   "metadata": {"name": f"ban-{namespace}"}, "disallowedFlunders": [f"banned-{namespace}"]}
        assert wardled.https("POST", f"{V1A}/fischers", fischer).status == 201
        response = wardled.https(
            "POST", f"{V1A}/namespaces/{namespace}/flunders", flunder(f"banned-{namespace}")
        )
        assert response.status == 403
        assert response.json()["message"].endswith(
            "is forbidden: this name may not be used, please change the resource name"
        )
        assert wardled.https("DELETE", f"{V1A}/fischers/ban-{namespace}").status == 200


class TestClients:
    def test_kubectl_flunders(self, wardled: WardledProcess, namespace: str, tmp_path: Any) -> None:
        manifest = tmp_path / "flunder.yaml"
        manifest.write_text(yaml.safe_dump(
            {"apiVersion": "wardle.example.com/v1beta1", "kind": "Flunder",
             "metadata": {"name": "my-first-flunder", "namespace": namespace,
                          "labels": {"sample-label": "true"}}}
        ))
        created = wardled.kubectl("create", "-f", str(manifest))
        assert created.returncode == 0, created.stderr
        assert "flunder.wardle.example.com/my-first-flunder created" in created.stdout

        listed = wardled.kubectl("get", "flunders", "-n", namespace)
        assert listed.returncode == 0, listed.stderr
        header, row = listed.stdout.splitlines()[:2]
        assert header.split() == ["NAME", "CREATED", "AT"]
        assert row.split()[0] == "my-first-flunder"

        as_yaml = wardled.kubectl("get", "flunder", "my-first-flunder", "-n", namespace, "-o", "yaml")
        assert as_yaml.returncode == 0, as_yaml.stderr
        assert yaml.safe_load(as_yaml.stdout)["metadata"]["labels"] == {"sample-label": "true"}

        labelled = wardled.kubectl("label", "flunder", "my-first-flunder", "-n", namespace, "color=green")
        assert labelled.returncode == 0, labelled.stderr
        selected = wardled.kubectl("get", "flunders", "-n", namespace, "-l", "color=green", "-o", "name")
        assert selected.stdout.strip() == "flunder.wardle.example.com/my-first-flunder"

        applied = wardled.kubectl("apply", "-f", "-", input=yaml.safe_dump(
            {"apiVersion": "wardle.example.com/v1beta1", "kind": "Flunder",
             "metadata": {"name": "my-first-flunder", "namespace": namespace,
                          "labels": {"sample-label": "false"}}}
        ))
        assert applied.returncode == 0, applied.stderr
        relabelled = wardled.kubectl(
            "get", "flunder", "my-first-flunder", "-n", namespace, "-o", "json"
        )
        assert json.loads(relabelled.stdout)["metadata"]["labels"]["sample-label"] == "false"

        deleted = wardled.kubectl("delete", "flunder", "my-first-flunder", "-n", namespace)
        assert deleted.returncode == 0, deleted.stderr
        gone = wardled.kubectl("get", "flunder", "my-first-flunder", "-n", namespace)
        assert gone.returncode != 0
        assert "NotFound" in gone.stderr or "not found" in gone.stderr

    def test_kubectl_fischers(self, wardled: WardledProcess, namespace: str) -> None:
        name = f"fischer-{namespace}"
        manifest = yaml.safe_dump(
            {"apiVersion": "wardle.example.com/v1alpha1", "kind": "Fischer",
             "metadata": {"name": name}, "disallowedFlunders": ["nope"]}
        )
        created = wardled.kubectl("create", "-f", "-", input=manifest)
        assert created.returncode == 0, created.stderr
        assert "deprecated" in created.stderr
        got = wardled.kubectl("get", "fischer", name, "-o", "json")
        assert json.loads(got.stdout)["disallowedFlunders"] == ["nope"]
        as_yaml = wardled.kubectl("get", "fischer", name, "-o", "yaml")
        assert yaml.safe_load(as_yaml.stdout)["kind"] == "Fischer"
        labelled = wardled.kubectl("label", "fischer", name, "team=x")
        assert labelled.returncode == 0, labelled.stderr
        table = wardled.kubectl("get", "fischers", "-l", "team=x")
        assert name in table.stdout
        deleted = wardled.kubectl("delete", "fischer", name)
        assert deleted.returncode == 0, deleted.stderr

    def test_kubectl_forbidden_user(self, wardled: WardledProcess) -> None:
        result = wardled.kubectl("get", "flunders", "-n", "default", user=ALICE)
        assert result.returncode != 0
        assert 'User "alice" cannot list resource "flunders"' in result.stderr

    def test_httpie(self, wardled: WardledProcess, namespace: str) -> None:
        result = wardled.httpie(
            "--body", "POST", f"{V1A}/namespaces/{namespace}/flunders",
            "metadata[name]=from-httpie", "spec[reference]=x",
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["spec"]["referenceType"] == "Flunder"

    def test_curl_pretty_json(self, wardled: WardledProcess) -> None:
        result = wardled.curl("/apis/wardle.example.com")
        assert result.stdout.startswith('{\n  "kind": "APIGroup"')

    def test_kubectl_explain(self, wardled: WardledProcess) -> None:
        result = wardled.kubectl("explain", "flunders.spec")
        assert result.returncode == 0, result.stderr
        assert "FlunderSpec is the specification of a Flunder." in result.stdout
        assert "A name of a fischer, mutually exclusive to the FlunderReference." in result.stdout
        fischers = wardled.kubectl("explain", "fischers.disallowedFlunders")
        assert "disallowedFlunders holds a list of Flunder.Names" in fischers.stdout

    def test_kubectl_raw_discovery(self, wardled: WardledProcess) -> None:
        result = wardled.kubectl("get", "--raw", "/apis/wardle.example.com/v1alpha1")
        assert result.returncode == 0, result.stderr
        names = [r["name"] for r in json.loads(result.stdout)["resources"]]
        assert names == ["fischers", "flunders"]
        resources = wardled.kubectl("api-resources", "--api-group=wardle.example.com")
        assert "flunders" in resources.stdout and "fischers" in resources.stdout



class TestPythonClient:
    def test_custom_objects_api(self, wardled: WardledProcess, namespace: str) -> None:
        client = kubernetes.config.new_client_from_config(
            config_file=wardled.pki.kubeconfig(ADMIN, wardled.url)
        )
        api: Any = kubernetes.client.CustomObjectsApi(client)
        group, version, plural = "wardle.example.com", "v1beta1", "flunders"
        created = api.create_namespaced_custom_object(
            group, version, namespace, plural,
            {"apiVersion": f"{group}/{version}", "kind": "Flunder",
             "metadata": {"name": "py", "labels": {"via": "python"}}},
        )
        assert created["metadata"]["namespace"] == namespace
        listed = api.list_namespaced_custom_object(
            group, version, namespace, plural, label_selector="via=python"
        )
        assert [i["metadata"]["name"] for i in listed["items"]] == ["py"]
        patched = api.patch_namespaced_custom_object(
            group, version, namespace, plural, "py", {"spec": {"fischerReference": "f", "referenceType": "Fischer"}}
        )
        assert patched["spec"] == {"fischerReference": "f", "referenceType": "Fischer"}
        with pytest.raises(kubernetes.client.exceptions.ApiException) as raised:
            api.create_namespaced_custom_object(
                group, version, namespace, plural, {"metadata": {"name": "py"}}
            )
        assert raised.value.status == 409
        assert json.loads(str(raised.value.body))["reason"] == "AlreadyExists"
        api.delete_namespaced_custom_object(group, version, namespace, plural, "py")
        with pytest.raises(kubernetes.client.exceptions.ApiException) as raised:
            api.get_namespaced_custom_object(group, version, namespace, plural, "py")
        assert raised.value.status == 404
