"""
kubectl's everyday toolbox against a real server: apply, diff, edit, patch,
wait, custom columns, server-side dry runs, metadata-only output.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from typing import Any

import yaml

from tests.harness import WardledProcess
from tests.test_integration import PREFIX

V1B = "/apis/wardle.example.com/v1beta1"


def manifest(name: str, namespace: str, **labels: str) -> str:
    return yaml.safe_dump(
        {"apiVersion": "wardle.example.com/v1beta1", "kind": "Flunder",
         "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": {"flunderReference": "x", "referenceType": "Flunder"}}
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


class TestKubectl:
    def test_apply_twice_and_diff(self, wardled: WardledProcess, namespace: str) -> None:
        assert "created" in ok(wardled.kubectl("apply", "-f", "-", input=manifest("ap", namespace, v="1")))
        changed = manifest("ap", namespace, v="2")
        diff = wardled.kubectl("diff", "-f", "-", input=changed)
        assert diff.returncode == 1, diff.stderr  # 1: differences found
        assert "-    v: \"1\"" in diff.stdout and "+    v: \"2\"" in diff.stdout
        assert "configured" in ok(wardled.kubectl("apply", "-f", "-", input=changed))
        got = json.loads(ok(wardled.kubectl("get", "flunder", "ap", "-n", namespace, "-o", "json")))
        assert got["metadata"]["labels"] == {"v": "2"}
        assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]
        assert wardled.kubectl("diff", "-f", "-", input=changed).returncode == 0

    def test_patch_types(self, wardled: WardledProcess, namespace: str) -> None:
        ok(wardled.kubectl("apply", "-f", "-", input=manifest("pt", namespace)))
        ok(wardled.kubectl("patch", "flunder", "pt", "-n", namespace, "--type", "merge",
                           "-p", '{"metadata":{"labels":{"m":"1"}}}'))
        ok(wardled.kubectl("patch", "flunder", "pt", "-n", namespace, "--type", "strategic",
                           "-p", '{"metadata":{"labels":{"s":"1"}}}'))
        ok(wardled.kubectl("patch", "flunder", "pt", "-n", namespace, "--type", "json",
                           "-p", '[{"op":"replace","path":"/spec/flunderReference","value":"y"}]'))
        got = json.loads(ok(wardled.kubectl("get", "flunder", "pt", "-n", namespace, "-o", "json")))
        assert got["metadata"]["labels"] == {"m": "1", "s": "1"}
        assert got["spec"]["flunderReference"] == "y"
        bad = wardled.kubectl("patch", "flunder", "pt", "-n", namespace, "--type", "json",
                              "-p", '[{"op":"remove","path":"/spec/nothere"}]')
        assert bad.returncode != 0
        assert "The request is invalid" in bad.stderr and "nothere" in bad.stderr

    def test_edit(self, wardled: WardledProcess, namespace: str, tmp_path: Any) -> None:
        ok(wardled.kubectl("apply", "-f", "-", input=manifest("ed", namespace)))
        editor = tmp_path / "editor.sh"
        editor.write_text("#!/bin/sh\nsed -i 's/flunderReference: x/flunderReference: edited/' \"$1\"\n")
        editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
        env = dict(os.environ, KUBE_EDITOR=str(editor))
        result = subprocess.run(
            ["/usr/bin/kubectl", "--kubeconfig", wardled.pki.kubeconfig("admin", wardled.url),
             "edit", "flunder", "ed", "-n", namespace],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr
        got = json.loads(ok(wardled.kubectl("get", "flunder", "ed", "-n", namespace, "-o", "json")))
        assert got["spec"]["flunderReference"] == "edited"

    def test_wait(self, wardled: WardledProcess, namespace: str) -> None:
        ok(wardled.kubectl("apply", "-f", "-", input=manifest("wt", namespace, phase="ready")))
        ok(wardled.kubectl("wait", "flunder/wt", "-n", namespace,
                           "--for=jsonpath={.metadata.labels.phase}=ready", "--timeout=20s"))
        waiting = subprocess.Popen(
            ["/usr/bin/kubectl", "--kubeconfig", wardled.pki.kubeconfig("admin", wardled.url),
             "wait", "flunder/wt", "-n", namespace, "--for=delete", "--timeout=30s"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        # Let kubectl find the object and start watching it first: waiting
        # for the deletion of an object already gone is a different path.
        time.sleep(1.5)
        ok(wardled.kubectl("delete", "flunder", "wt", "-n", namespace, "--wait=false"))
        out, err = waiting.communicate(timeout=40)
        assert waiting.returncode == 0, err
        assert "condition met" in out or "deleted" in out

    def test_custom_columns(self, wardled: WardledProcess, namespace: str) -> None:
        ok(wardled.kubectl("apply", "-f", "-", input=manifest("cc", namespace)))
        out = ok(wardled.kubectl("get", "flunders", "-n", namespace,
                                 "-o", "custom-columns=NAME:.metadata.name,REF:.spec.flunderReference"))
        assert out.split() == ["NAME", "REF", "cc", "x"]

    def test_server_dry_run_changes_nothing(
        self, wardled: WardledProcess, namespace: str
    ) -> None:
        key = f"{PREFIX}/flunders/{namespace}/dry"
        assert "(server dry run)" in ok(
            wardled.kubectl("create", "--dry-run=server", "-f", "-", input=manifest("dry", namespace))
        )
        assert wardled.stored(key) is None
        ok(wardled.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest("dry", namespace)))
        assert wardled.stored(key) is None
        ok(wardled.kubectl("apply", "-f", "-", input=manifest("dry", namespace)))
        before = wardled.stored(key)
        assert before is not None
        ok(wardled.kubectl("delete", "flunder", "dry", "-n", namespace, "--dry-run=server"))
        assert wardled.stored(key) == before


class TestOutputForms:
    def test_partial_metadata_and_include_object(self, wardled: WardledProcess, namespace: str) -> None:
        collection = f"{V1B}/namespaces/{namespace}/flunders"
        assert wardled.https("POST", collection, {"metadata": {"name": "pm"}}).status == 201
        meta = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
        listed = wardled.https("GET", collection, headers={"Accept": meta}).json()
        assert listed["kind"] == "PartialObjectMetadataList"
        assert listed["items"][0]["metadata"]["name"] == "pm"
        assert "spec" not in listed["items"][0]
        one = wardled.https(
            "GET", f"{collection}/pm",
            headers={"Accept": "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"},
        ).json()
        assert (one["kind"], one["metadata"]["name"]) == ("PartialObjectMetadata", "pm")
        table = "application/json;as=Table;v=v1;g=meta.k8s.io"
        full = wardled.https("GET", f"{collection}?includeObject=Object", headers={"Accept": table}).json()
        assert full["rows"][0]["object"]["kind"] == "Flunder"
        bare = wardled.https("GET", f"{collection}?includeObject=None", headers={"Accept": table}).json()
        assert bare["rows"][0].get("object") is None
        wrong = wardled.https("GET", collection, headers={"Accept": "application/json;as=Widget;v=v1;g=meta.k8s.io"})
        assert wrong.status == 406
        assert wrong.json()["reason"] == "NotAcceptable"
