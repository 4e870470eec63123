"""
Server-side apply and managedFields over HTTP, in memory (the real Site and
handlers over L{wardled.storage.memory.MemoryStorage}, through StubTreq).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import yaml

from tests.harness import WardledProcess
from tests.test_api import FISCHERS, FLUNDERS, FLUNDERS_B, APITestCase

APPLY = "application/apply-patch+yaml"
V1B_API = "wardle.example.com/v1beta1"


def flunder_config(name: str, **spec: str) -> dict[str, Any]:
    return {
        "apiVersion": V1B_API,
        "kind": "Flunder",
        "metadata": {"name": name},
        "spec": spec,
    }


class ApplyTestCase(APITestCase):
    def apply(
        self, name: str, config: Any, manager: str | None = "alpha", query: str = "",
        as_yaml: bool = True, path: str = FLUNDERS_B,
    ) -> tuple[int, Any]:
        params = []
        if manager is not None:
            params.append(f"fieldManager={manager}")
        if query:
            params.append(query)
        url = f"{path}/{name}" + ("?" + "&".join(params) if params else "")
        raw = yaml.safe_dump(config).encode() if as_yaml else json.dumps(config).encode()
        code, _, content = self.request("PATCH", url, raw=raw, headers={"Content-Type": APPLY})
        return code, json.loads(content)

    def managers(self, obj: dict[str, Any]) -> dict[tuple[str, str], Any]:
        return {
            (entry["manager"], entry["operation"]): entry["fieldsV1"]
            for entry in obj["metadata"].get("managedFields", [])
        }


class ApplyCreateTests(ApplyTestCase):
    def test_apply_creates(self) -> None:
        code, body = self.apply(
            "f1", flunder_config("f1", referenceType="Flunder", flunderReference="x")
        )
        self.assertEqual(code, 201, body)
        self.assertEqual(body["spec"]["flunderReference"], "x")
        [entry] = body["metadata"]["managedFields"]
        self.assertEqual(
            (entry["manager"], entry["operation"], entry["apiVersion"], entry["fieldsType"]),
            ("alpha", "Apply", V1B_API, "FieldsV1"),
        )
        self.assertEqual(
            entry["fieldsV1"],
            {"f:spec": {"f:flunderReference": {}, "f:referenceType": {}}},
        )
        self.assertEqual(entry["time"], "2026-05-28T20:26:40Z")
        code, stored = self.call("GET", f"{FLUNDERS_B}/f1")
        self.assertEqual(stored["metadata"]["managedFields"], [entry])

    def test_yaml_read_as_go_yaml(self) -> None:
        raw = (
            b"apiVersion: wardle.example.com/v1beta1\nkind: Flunder\n"
            b"metadata:\n  name: f1\nspec:\n  flunderReference: y\n"
        )
        code, _, content = self.request(
            "PATCH", f"{FLUNDERS_B}/f1?fieldManager=m", raw=raw, headers={"Content-Type": APPLY}
        )
        self.assertEqual(code, 400, content)
        self.assertIn(b"cannot unmarshal bool", content)

    def test_apply_accepts_json(self) -> None:
        code, body = self.apply("f1", flunder_config("f1"), as_yaml=False)
        self.assertEqual(code, 201, body)

    def test_field_manager_required(self) -> None:
        code, body = self.apply("f1", flunder_config("f1"), manager=None)
        self.assertEqual(code, 422)
        self.assertEqual(
            body["message"],
            'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
            "is required for apply patch",
        )
        code, _ = self.call("GET", f"{FLUNDERS_B}/f1")
        self.assertEqual(code, 404)

    def test_ban_flunder_blocks_apply_create(self) -> None:
        code, _ = self.call(
            "POST", FISCHERS,
            {"metadata": {"name": "panda"}, "disallowedFlunders": ["badname"]},
        )
        self.assertEqual(code, 201)
        code, body = self.apply("badname", flunder_config("badname"))
        self.assertEqual(code, 403, body)
        self.assertIn("this name may not be used", body["message"])
        code, _ = self.call("GET", f"{FLUNDERS_B}/badname")
        self.assertEqual(code, 404)

    def test_dry_run_create(self) -> None:
        code, body = self.apply("f1", flunder_config("f1"), query="dryRun=All")
        self.assertEqual(code, 201, body)
        code, _ = self.call("GET", f"{FLUNDERS_B}/f1")
        self.assertEqual(code, 404)

    def test_name_mismatch(self) -> None:
        code, body = self.apply("f1", flunder_config("other"))
        self.assertEqual(code, 400, body)

    def test_managed_fields_in_config_refused(self) -> None:
        config = flunder_config("f1")
        config["metadata"]["managedFields"] = [{"manager": "x", "operation": "Apply"}]
        code, body = self.apply("f1", config)
        self.assertEqual((code, body["message"]), (400, "metadata.managedFields must be nil"))

    def test_force_only_for_apply(self) -> None:
        self.create_flunder("f1")
        code, _, content = self.request(
            "PATCH", f"{FLUNDERS}/f1?force=true", raw=b"{}",
            headers={"Content-Type": "application/merge-patch+json"},
        )
        self.assertEqual(code, 422)
        self.assertIn(b"force: Forbidden: may not be specified for non-apply patch", content)


class ApplyUpdateTests(ApplyTestCase):
    def test_apply_again_with_change(self) -> None:
        self.apply("f1", flunder_config("f1", referenceType="Flunder", flunderReference="x"))
        self.clock.advance(60)
        code, body = self.apply(
            "f1", flunder_config("f1", referenceType="Flunder", flunderReference="yy")
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(body["spec"]["flunderReference"], "yy")
        [entry] = body["metadata"]["managedFields"]
        self.assertEqual(entry["time"], "2026-05-28T20:27:40Z")

    def test_same_apply_is_no_write(self) -> None:
        config = flunder_config("f1", referenceType="Flunder", flunderReference="x")
        _, first = self.apply("f1", config)
        self.clock.advance(60)
        code, second = self.apply("f1", config)
        self.assertEqual(code, 200)
        self.assertEqual(second["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"])
        self.assertEqual(second["metadata"]["managedFields"], first["metadata"]["managedFields"])

    def test_conflict_between_managers(self) -> None:
        self.apply("f1", flunder_config("f1", referenceType="Flunder", flunderReference="x"))
        code, body = self.apply(
            "f1", flunder_config("f1", referenceType="Flunder", flunderReference="yy"),
            manager="beta",
        )
        self.assertEqual(code, 409, body)
        self.assertEqual(body["reason"], "Conflict")
        self.assertEqual(
            body["message"],
            'Apply failed with 1 conflict: conflict with "alpha": .spec.flunderReference',
        )
        self.assertEqual(
            body["details"]["causes"],
            [{"reason": "FieldManagerConflict", "message": 'conflict with "alpha"',
              "field": ".spec.flunderReference"}],
        )
        _, live = self.call("GET", f"{FLUNDERS_B}/f1")
        self.assertEqual(live["spec"]["flunderReference"], "x")

    def test_two_conflicts_message(self) -> None:
        self.apply("f1", {**flunder_config("f1"), "metadata": {"name": "f1", "labels": {"a": "1", "b": "1"}}})
        code, body = self.apply(
            "f1", {**flunder_config("f1"), "metadata": {"name": "f1", "labels": {"a": "2", "b": "2"}}},
            manager="beta",
        )
        self.assertEqual(code, 409)
        self.assertEqual(
            body["message"],
            'Apply failed with 2 conflicts: conflicts with "alpha":\n'
            "- .metadata.labels.a\n- .metadata.labels.b",
        )
        self.assertEqual(len(body["details"]["causes"]), 2)

    def test_same_value_is_shared(self) -> None:
        config = flunder_config("f1", referenceType="Flunder", flunderReference="x")
        self.apply("f1", config)
        code, body = self.apply("f1", config, manager="beta")
        self.assertEqual(code, 200, body)
        managers = self.managers(body)
        self.assertEqual(managers[("alpha", "Apply")], managers[("beta", "Apply")])

    def test_force_takes_ownership(self) -> None:
        self.apply("f1", flunder_config("f1", referenceType="Flunder", flunderReference="x"))
        code, body = self.apply(
            "f1", flunder_config("f1", flunderReference="yy"), manager="beta", query="force=true"
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(body["spec"]["flunderReference"], "yy")
        managers = self.managers(body)
        self.assertEqual(managers[("beta", "Apply")], {"f:spec": {"f:flunderReference": {}}})
        self.assertEqual(managers[("alpha", "Apply")], {"f:spec": {"f:referenceType": {}}})

    def test_conflict_with_update_manager(self) -> None:
        code, _, _ = self.request(
            "POST", f"{FLUNDERS_B}?fieldManager=creator", raw=json.dumps(
                flunder_config("f1", referenceType="Flunder", flunderReference="x")
            ).encode(), headers={"Content-Type": "application/json"},
        )
        self.assertEqual(code, 201)
        code, body = self.apply("f1", flunder_config("f1", flunderReference="yy"))
        self.assertEqual(code, 409)
        self.assertEqual(
            body["details"]["causes"][0]["message"],
            f'conflict with "creator" using {V1B_API}',
        )

    def test_dropped_field_removed(self) -> None:
        self.apply("f1", {**flunder_config("f1"), "metadata": {"name": "f1", "labels": {"a": "1", "b": "1"}}})
        code, body = self.apply("f1", {**flunder_config("f1"), "metadata": {"name": "f1", "labels": {"a": "1"}}})
        self.assertEqual(code, 200, body)
        self.assertEqual(body["metadata"]["labels"], {"a": "1"})

    def test_dropped_field_kept_when_shared(self) -> None:
        labels = {"name": "f1", "labels": {"a": "1", "b": "1"}}
        self.apply("f1", {**flunder_config("f1"), "metadata": labels})
        self.apply("f1", {**flunder_config("f1"), "metadata": {"name": "f1", "labels": {"b": "1"}}}, manager="beta")
        code, body = self.apply("f1", {**flunder_config("f1"), "metadata": {"name": "f1", "labels": {"a": "1"}}})
        self.assertEqual(code, 200, body)
        self.assertEqual(body["metadata"]["labels"], {"a": "1", "b": "1"})
        self.assertEqual(
            self.managers(body)[("beta", "Apply")],
            {"f:metadata": {"f:labels": {".": {}, "f:b": {}}}},
        )

    def test_dry_run_update(self) -> None:
        self.apply("f1", flunder_config("f1", referenceType="Flunder", flunderReference="x"))
        code, body = self.apply(
            "f1", flunder_config("f1", referenceType="Flunder", flunderReference="yy"),
            query="dryRun=All",
        )
        self.assertEqual((code, body["spec"]["flunderReference"]), (200, "yy"))
        _, live = self.call("GET", f"{FLUNDERS_B}/f1")
        self.assertEqual(live["spec"]["flunderReference"], "x")

    def test_apply_in_v1alpha1(self) -> None:
        config = {
            "apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
            "metadata": {"name": "f1"}, "spec": {"reference": "x"},
        }
        code, body = self.apply("f1", config, path=FLUNDERS)
        self.assertEqual(code, 201, body)
        [entry] = body["metadata"]["managedFields"]
        self.assertEqual(entry["apiVersion"], "wardle.example.com/v1alpha1")
        self.assertEqual(entry["fieldsV1"], {"f:spec": {"f:reference": {}}})


class ManagedFieldsOnWritesTests(ApplyTestCase):
    def test_create_records_user_agent_manager(self) -> None:
        code, _, content = self.request(
            "POST", FLUNDERS, raw=json.dumps({"metadata": {"name": "f1", "labels": {"a": "1"}}}).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "kubectl\x01x/v1.30 (linux)"},
        )
        self.assertEqual(code, 201)
        [entry] = json.loads(content)["metadata"]["managedFields"]
        self.assertEqual(
            (entry["manager"], entry["operation"], entry["apiVersion"]),
            ("kubectlx", "Update", "wardle.example.com/v1alpha1"),
        )
        self.assertEqual(entry["fieldsV1"], {"f:metadata": {"f:labels": {".": {}, "f:a": {}}}})

    def test_update_moves_ownership(self) -> None:
        code, _, content = self.request(
            "POST", f"{FLUNDERS}?fieldManager=one",
            raw=json.dumps({"metadata": {"name": "f1", "labels": {"a": "1"}}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        created = json.loads(content)
        created["metadata"]["labels"] = {"a": "2", "b": "2"}
        code, _, content = self.request(
            "PUT", f"{FLUNDERS}/f1?fieldManager=two", raw=json.dumps(created).encode(),
            headers={"Content-Type": "application/json"},
        )
        self.assertEqual(code, 200, content)
        managers = self.managers(json.loads(content))
        self.assertEqual(managers[("one", "Update")], {"f:metadata": {"f:labels": {}}})
        self.assertEqual(
            managers[("two", "Update")], {"f:metadata": {"f:labels": {"f:a": {}, "f:b": {}}}}
        )

    def test_noop_update_is_no_write(self) -> None:
        created = self.create_flunder("f1", reference="x")
        self.clock.advance(60)
        code, body = self.call("PUT", f"{FLUNDERS}/f1", created)
        self.assertEqual(code, 200)
        self.assertEqual(body["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"])
        self.assertEqual(body["metadata"]["managedFields"], created["metadata"]["managedFields"])

    def test_merge_patch_records_update(self) -> None:
        self.apply("f1", flunder_config("f1", referenceType="Flunder", flunderReference="x"))
        code, _, content = self.request(
            "PATCH", f"{FLUNDERS_B}/f1?fieldManager=patcher",
            raw=json.dumps({"spec": {"flunderReference": "z"}}).encode(),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        self.assertEqual(code, 200, content)
        managers = self.managers(json.loads(content))
        self.assertEqual(managers[("patcher", "Update")], {"f:spec": {"f:flunderReference": {}}})
        self.assertEqual(managers[("alpha", "Apply")], {"f:spec": {"f:referenceType": {}}})

    def test_bad_field_manager(self) -> None:
        code, body = self.call("POST", f"{FLUNDERS}?fieldManager={'x' * 129}", {"metadata": {"name": "f1"}})
        self.assertEqual(code, 422)
        self.assertIn("fieldManager: Too long", body["message"])


class TestServerSideApplyWithKubectl:
    """
    C{kubectl apply --server-side} against a real server: two managers, a
    conflict, then C{--force-conflicts}.
    """

    def test_two_managers(self, wardled: WardledProcess, namespace: str) -> None:
        def manifest(reference: str) -> str:
            return yaml.safe_dump(
                {"apiVersion": V1B_API, "kind": "Flunder",
                 "metadata": {"name": "ssa", "namespace": namespace},
                 "spec": {"flunderReference": reference, "referenceType": "Flunder"}}
            )

        def apply(manager: str, reference: str, *extra: str) -> subprocess.CompletedProcess[str]:
            return wardled.kubectl(
                "apply", "--server-side", f"--field-manager={manager}", *extra, "-f", "-",
                input=manifest(reference),
            )

        # Values go-yaml would read as booleans (y, n) are avoided on purpose.
        first = apply("one", "xx")
        assert first.returncode == 0 and "serverside-applied" in first.stdout, first.stderr
        clash = apply("two", "yy")
        assert clash.returncode != 0
        assert 'conflict with "one": .spec.flunderReference' in clash.stderr, clash.stderr
        forced = apply("two", "yy", "--force-conflicts")
        assert forced.returncode == 0, forced.stderr
        got = json.loads(wardled.kubectl(
            "get", "flunder", "ssa", "-n", namespace, "-o", "json", "--show-managed-fields"
        ).stdout)
        assert got["spec"]["flunderReference"] == "yy"
        owners = {
            entry["manager"]: entry["fieldsV1"] for entry in got["metadata"]["managedFields"]
        }
        assert owners["two"] == {"f:spec": {"f:flunderReference": {}, "f:referenceType": {}}}
        assert owners["one"] == {"f:spec": {"f:referenceType": {}}}
