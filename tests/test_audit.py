"""
The audit log: policy parsing and matching, the events of requests served
by the real Site, filters and routes over the in-memory storage (written
by the real writer into a real file, drained synchronously), rotation, the
flags, and a real C{twistd wardled} writing its audit log to a file and
to standard output.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from tests.etcdserver import EtcdServer
from tests.harness import TestPKI, WardledProcess
from tests.test_watch import RawResponse
from wardled import apierrors, tap
from wardled.api.filters import FilteredResource, format_uuid4, new_audit_id
from wardled.api.requestinfo import RequestInfo, parse_request_info
from wardled.audit.event import legacy_line, micro_time
from wardled.audit.log import AuditLogWriter, RotatingFile, backup_name, encoder
from wardled.audit.policy import (
    NONE,
    AuditPolicy,
    AuditPolicyError,
    RequestAuditConfig,
    load_audit_policy,
    parse_audit_policy,
)
from wardled.audit.trail import AuditTrail
from wardled.auth.user import UserInfo, authenticated
from wardled.server import QuietSite, build_api
from wardled.storage.memory import MemoryStorage

BASE = "https://127.0.0.1:8443"
PREFIX = "/registry/wardle.example.com"
GROUP = "wardle.example.com"
V1A = f"/apis/{GROUP}/v1alpha1"
FLUNDERS = f"{V1A}/namespaces/default/flunders"
ADMIN = authenticated("development", ("system:masters",))
ALICE = authenticated("alice", ("devs",))
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

HEADER = "apiVersion: audit.k8s.io/v1\nkind: Policy\n"
EVERYTHING_AT = HEADER + "rules:\n- level: {level}\n"


def info(method: str, path: str, watch: bool = False) -> RequestInfo:
    return parse_request_info(method, path, watch)


# -- policy ---------------------------------------------------------------------


class PolicyParsingTests(SynchronousTestCase):
    def assertPolicyError(self, text: str, message: str) -> None:
        error = self.assertRaises(AuditPolicyError, parse_audit_policy, text)
        self.assertEqual(str(error), message)

    def test_full_policy(self) -> None:
        """
        Every field of a rule is read.
        """
        policy = parse_audit_policy(
            HEADER
            + "omitStages: [RequestReceived]\n"
            + "omitManagedFields: true\n"
            + "rules:\n"
            + "- level: RequestResponse\n"
            + "  users: [alice]\n"
            + "  userGroups: [devs]\n"
            + "  verbs: [create, update]\n"
            + "  namespaces: [team-a]\n"
            + "  omitStages: [ResponseStarted]\n"
            + "  omitManagedFields: false\n"
            + "  resources:\n"
            + "  - group: wardle.example.com\n"
            + "    resources: [flunders]\n"
            + "    resourceNames: [one]\n"
            + "- level: Metadata\n"
            + "  nonResourceURLs: [/healthz*]\n"
        )
        first, second = policy.rules
        self.assertEqual(policy.omit_stages, frozenset({"RequestReceived"}))
        self.assertTrue(policy.omit_managed_fields)
        self.assertEqual(
            (first.level, first.users, first.user_groups, first.verbs, first.namespaces),
            ("RequestResponse", ("alice",), ("devs",), ("create", "update"), ("team-a",)),
        )
        self.assertEqual(
            (first.resources[0].group, first.resources[0].resources, first.resources[0].resource_names),
            (GROUP, ("flunders",), ("one",)),
        )
        self.assertFalse(first.omit_managed_fields)
        self.assertEqual(second.non_resource_urls, ("/healthz*",))

    def test_validation_errors(self) -> None:
        """
        Invalid rules are refused with the reference's field errors.
        """
        self.assertPolicyError(HEADER + "rules:\n- users: [a]\n", "rules[0].level: Required value")
        self.assertPolicyError(
            HEADER + "rules:\n- level: Everything\n",
            'rules[0].level: Unsupported value: "Everything": supported values: '
            '"None", "Metadata", "Request", "RequestResponse"',
        )
        self.assertPolicyError(
            HEADER + "omitStages: [Sometimes]\nrules:\n- level: None\n",
            'omitStages[0]: Invalid value: "Sometimes": allowed stages are '
            "RequestReceived,ResponseStarted,ResponseComplete,Panic",
        )
        self.assertPolicyError(
            HEADER + "rules:\n- level: Metadata\n  nonResourceURLs: [healthz, /a*b]\n",
            '[rules[0].nonResourceURLs[0]: Invalid value: "healthz": non-resource URL rules '
            "must begin with a '/' character, rules[0].nonResourceURLs[1]: Invalid value: "
            "\"/a*b\": non-resource URL wildcards '*' must be the final character of the rule]",
        )
        self.assertPolicyError(
            HEADER + "rules:\n- level: Metadata\n  nonResourceURLs: [/x]\n  namespaces: [a]\n",
            'rules[0].nonResourceURLs: Invalid value: ["/x"]: rules cannot apply to both '
            "regular resources and non-resource URLs",
        )
        self.assertPolicyError(
            HEADER + "rules:\n- level: Metadata\n  resources:\n  - resourceNames: [x]\n",
            'rules[0].resources[0].resourceNames: Invalid value: ["x"]: using resourceNames '
            "requires at least one resource",
        )

    def test_document_errors(self) -> None:
        """
        Not YAML, not a Policy, no rules: each says what is wrong.
        """
        self.assertPolicyError(HEADER + "rules: []\n", "loaded illegal policy with 0 rules")
        self.assertPolicyError(
            "apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: None}]\n",
            "unknown group version field 'audit.k8s.io/v1beta1' in policy: want audit.k8s.io/v1",
        )
        self.assertPolicyError(
            "rules: [{level: None}]\n",
            "the policy has no kind: want kind: Policy and apiVersion: audit.k8s.io/v1",
        )
        self.assertPolicyError(
            "apiVersion: audit.k8s.io/v1\nkind: Pilicy\nrules: [{level: None}]\n",
            "unknown kind 'Pilicy' in policy: want Policy",
        )
        self.assertPolicyError(HEADER + "rules:\n- level: None\n  users: alice\n", "rules[0].users: must be a list of strings")
        error = self.assertRaises(AuditPolicyError, parse_audit_policy, "rules: [")
        self.assertTrue(str(error).startswith("failed decoding: "), str(error))

    def test_unknown_fields_are_ignored(self) -> None:
        """
        As the reference's lenient fallback: unknown fields do not stop
        the policy.
        """
        policy = parse_audit_policy(HEADER + "rules:\n- level: None\n  color: blue\n")
        self.assertEqual(policy.rules[0].level, NONE)

    def test_load_from_file(self) -> None:
        """
        The file's problems name the file.
        """
        path = self.mktemp()
        missing = self.assertRaises(AuditPolicyError, load_audit_policy, path)
        self.assertEqual(str(missing), f'failed to read file path "{path}": No such file or directory')
        with open(path, "w") as policy_file:
            policy_file.write(HEADER + "rules: []\n")
        empty = self.assertRaises(AuditPolicyError, load_audit_policy, path)
        self.assertEqual(str(empty), f"loaded illegal policy with 0 rules: from file {path}")


class PolicyMatchingTests(SynchronousTestCase):
    def level(self, policy: AuditPolicy, user: UserInfo | None, request: RequestInfo) -> str:
        return policy.evaluate(user, request).level

    def test_first_match_wins(self) -> None:
        """
        Rules are tried in order; a request no rule matches is not logged.
        """
        policy = parse_audit_policy(
            HEADER
            + "rules:\n"
            + "- level: None\n  users: [alice]\n  verbs: [get]\n"
            + "- level: RequestResponse\n  userGroups: [devs]\n"
            + "- level: Metadata\n  resources: [{group: wardle.example.com}]\n"
        )
        item = info("GET", f"{FLUNDERS}/a")
        self.assertEqual(self.level(policy, ALICE, item), "None")
        self.assertEqual(self.level(policy, ALICE, info("POST", FLUNDERS)), "RequestResponse")
        self.assertEqual(self.level(policy, ADMIN, item), "Metadata")
        self.assertEqual(self.level(policy, ADMIN, info("GET", "/healthz")), "None")
        self.assertEqual(self.level(policy, None, item), "Metadata")

    def test_resources(self) -> None:
        """
        C{group} must match (omitted: the core group), then resources,
        C{resource/*}, C{*/subresource} and names.
        """
        policy = parse_audit_policy(
            HEADER
            + "rules:\n"
            + "- level: Request\n  resources: [{resources: [flunders]}]\n"
            + "- level: RequestResponse\n  resources: [{group: '*', resources: [fischers], resourceNames: [f1]}]\n"
            + "- level: Metadata\n  resources: [{group: wardle.example.com, resources: ['flunders/*', '*/status']}]\n"
        )
        # "flunders/*" is the resource and all its subresources (as in kube).
        self.assertEqual(self.level(policy, ADMIN, info("GET", f"{FLUNDERS}/a")), "Metadata")
        self.assertEqual(self.level(policy, ADMIN, info("GET", f"{FLUNDERS}/a/scale")), "Metadata")
        self.assertEqual(self.level(policy, ADMIN, info("GET", f"{V1A}/fischers/f2/scale")), "None")
        self.assertEqual(self.level(policy, ADMIN, info("GET", f"{V1A}/fischers/f1/status")), "Metadata")
        self.assertEqual(self.level(policy, ADMIN, info("GET", f"{V1A}/fischers/f1")), "RequestResponse")
        self.assertEqual(self.level(policy, ADMIN, info("GET", f"{V1A}/fischers/f2")), "None")

    def test_namespaces_and_urls(self) -> None:
        """
        C{namespaces: [""]} is the cluster scope; URL rules match
        non-resource paths, with a trailing C{*} as a prefix.
        """
        policy = parse_audit_policy(
            HEADER
            + "rules:\n"
            + "- level: Metadata\n  namespaces: ['']\n"
            + "- level: Request\n  namespaces: [default]\n"
            + "- level: RequestResponse\n  nonResourceURLs: ['/readyz*', /version]\n"
        )
        self.assertEqual(self.level(policy, ADMIN, info("GET", f"{V1A}/fischers")), "Metadata")
        self.assertEqual(self.level(policy, ADMIN, info("GET", FLUNDERS)), "Request")
        self.assertEqual(self.level(policy, ADMIN, info("GET", f"{V1A}/namespaces/other/flunders")), "None")
        self.assertEqual(self.level(policy, ADMIN, info("GET", "/readyz/etcd")), "RequestResponse")
        self.assertEqual(self.level(policy, ADMIN, info("GET", "/version")), "RequestResponse")
        self.assertEqual(self.level(policy, ADMIN, info("GET", "/versions")), "None")

    def test_omit_stages_and_managed_fields(self) -> None:
        """
        A rule's C{omitStages} add to the policy's; its
        C{omitManagedFields} overrides the policy's.
        """
        policy = parse_audit_policy(
            HEADER
            + "omitStages: [RequestReceived]\nomitManagedFields: true\n"
            + "rules:\n- level: Metadata\n  omitStages: [ResponseStarted]\n  omitManagedFields: false\n"
        )
        self.assertEqual(
            policy.evaluate(ADMIN, info("GET", FLUNDERS)),
            RequestAuditConfig("Metadata", frozenset({"RequestReceived", "ResponseStarted"}), False),
        )


# -- events -------------------------------------------------------------------


class AuditedServer(SynchronousTestCase):
    """
    A server over memory storage auditing through the real writer into a
    real file, drained synchronously.
    """

    policy_text = EVERYTHING_AT.format(level="Metadata")

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_780_000_000)
        self.user: UserInfo = ADMIN
        self.authenticate: Callable[[Any], Any] = lambda request: self.user
        self.log_path = os.path.join(self.mktemp(), "audit.log")
        self.writer = AuditLogWriter(RotatingFile(self.log_path), encoder("json"), self.clock)
        self.addCleanup(self.writer.stopService)
        trail = AuditTrail(parse_audit_policy(self.policy_text), self.writer)
        server = build_api(
            MemoryStorage(), PREFIX, self.clock, lambda request: self.authenticate(request),
            observers=(trail,),
        )
        assert server.multiplexer is not None
        server.multiplexer.startService()
        self.addCleanup(server.multiplexer.stopService)
        self.site = QuietSite(server.resource, reactor=self.clock)
        self.stub = StubTreq(server.resource)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, bytes]:
        all_headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "audit-test/1.0",
        }
        all_headers.update(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        response = self.successResultOf(
            self.stub.request(  # type: ignore[attr-defined]
                method, BASE + path, data=data, headers={k: [v] for k, v in all_headers.items()}
            )
        )
        content = self.successResultOf(self.stub.content(response))  # type: ignore[attr-defined]
        return response.code, response.headers, content

    def events(self) -> list[dict[str, Any]]:
        self.assertTrue(self.writer.drain())
        with open(self.log_path, "rb") as log:
            return [json.loads(line) for line in log]

    def create(self) -> tuple[str, list[dict[str, Any]]]:
        code, headers, _ = self.request("POST", FLUNDERS, {"metadata": {"name": "one"}, "spec": {"reference": "x"}})
        self.assertEqual(code, 201)
        audit_id = headers.getRawHeaders("audit-id")[0]
        return audit_id, [event for event in self.events() if event["auditID"] == audit_id]


class MetadataEventTests(AuditedServer):
    def test_create_at_metadata(self) -> None:
        """
        A create gives RequestReceived then ResponseComplete, shaped as
        Kubernetes writes them; the audit id is the response's.
        """
        audit_id, (received, complete) = self.create()
        self.assertEqual(
            list(complete),
            [
                "kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user",
                "sourceIPs", "userAgent", "objectRef", "responseStatus",
                "requestReceivedTimestamp", "stageTimestamp", "annotations",
            ],
        )
        self.assertEqual(
            {key: complete[key] for key in list(complete)[:8]},
            {
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "level": "Metadata",
                "auditID": audit_id,
                "stage": "ResponseComplete",
                "requestURI": FLUNDERS,
                "verb": "create",
                "user": {"username": "development", "groups": ["system:masters", "system:authenticated"]},
            },
        )
        self.assertEqual(complete["sourceIPs"], ["127.0.0.1"])
        self.assertEqual(complete["userAgent"], "audit-test/1.0")
        self.assertEqual(
            complete["objectRef"],
            {"resource": "flunders", "namespace": "default", "name": "one", "apiGroup": GROUP, "apiVersion": "v1alpha1"},
        )
        self.assertEqual(complete["responseStatus"], {"metadata": {}, "code": 201})
        self.assertEqual(
            complete["annotations"],
            {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""},
        )
        self.assertRegex(complete["stageTimestamp"], MICRO_TIME)
        self.assertEqual(received["stage"], "RequestReceived")
        self.assertEqual(received["stageTimestamp"], received["requestReceivedTimestamp"])
        self.assertEqual(received["requestReceivedTimestamp"], complete["requestReceivedTimestamp"])
        self.assertNotIn("responseStatus", received)
        self.assertNotIn("annotations", received)
        self.assertNotIn("name", received["objectRef"])

    def test_forbidden(self) -> None:
        """
        A refused request is logged with the Status and the decision.
        """
        self.user = ALICE
        code, headers, _ = self.request("GET", f"{FLUNDERS}/one")
        self.assertEqual(code, 403)
        complete = [e for e in self.events() if e["stage"] == "ResponseComplete"][-1]
        self.assertEqual(complete["auditID"], headers.getRawHeaders("audit-id")[0])
        self.assertEqual(
            complete["responseStatus"],
            {
                "metadata": {},
                "status": "Failure",
                "message": 'flunders.wardle.example.com "one" is forbidden: User "alice" cannot get '
                'resource "flunders" in API group "wardle.example.com" in the namespace "default"',
                "reason": "Forbidden",
                "details": {"name": "one", "group": GROUP, "kind": "flunders"},
                "code": 403,
            },
        )
        self.assertEqual(complete["annotations"]["authorization.k8s.io/decision"], "forbid")

    def test_not_found_status(self) -> None:
        """
        A failure from the routes fills the status from the body.
        """
        self.request("GET", f"{FLUNDERS}/missing")
        complete = self.events()[-1]
        self.assertEqual(complete["responseStatus"]["reason"], "NotFound")
        self.assertEqual(complete["responseStatus"]["code"], 404)
        self.assertNotIn("responseObject", complete)

    def test_impersonation(self) -> None:
        """
        The event's user is who sent the request; the impersonated user is
        shown after the first stage.
        """
        self.request("GET", FLUNDERS, headers={"Impersonate-User": "bob"})
        received, complete = self.events()
        self.assertEqual(received["user"]["username"], "development")
        self.assertNotIn("impersonatedUser", received)
        self.assertEqual(complete["impersonatedUser"], {"username": "bob", "groups": ["system:authenticated"]})
        self.assertEqual(list(complete)[8], "impersonatedUser")

    def test_failed_authentication(self) -> None:
        """
        A request whose credentials fail gives one ResponseStarted event.
        """

        def refuse(request: Any) -> UserInfo:
            raise apierrors.unauthorized()

        self.authenticate = refuse
        code, _, _ = self.request("GET", FLUNDERS, headers={"Authorization": "Bearer nope"})
        self.assertEqual(code, 401)
        (event,) = self.events()
        self.assertEqual(event["stage"], "ResponseStarted")
        self.assertEqual(event["user"], {})
        self.assertEqual(
            event["responseStatus"],
            {"metadata": {}, "message": "Authentication failed, attempted: bearer", "code": 401},
        )

    def test_watch_stages(self) -> None:
        """
        A watch logs ResponseStarted when it starts streaming and
        ResponseComplete when it ends.
        """
        watch = RawResponse(self.site, f"{FLUNDERS}?watch=true", {"Accept": "application/json"})
        self.assertEqual(watch.code, 200)
        self.assertEqual([e["stage"] for e in self.events()], ["RequestReceived", "ResponseStarted"])
        watch.disconnect()
        events = self.events()
        self.assertEqual([e["stage"] for e in events], ["RequestReceived", "ResponseStarted", "ResponseComplete"])
        self.assertEqual(events[1]["responseStatus"], {"metadata": {}, "code": 200})
        self.assertEqual(events[2]["verb"], "watch")


    def test_failed_watch(self) -> None:
        """
        A watch refused by its handler starts its response with the error
        code, and completes with the Status.
        """
        code, _, _ = self.request("GET", f"{FLUNDERS}?watch=true&timeoutSeconds=soon")
        self.assertEqual(code, 400)
        events = self.events()
        self.assertEqual([e["stage"] for e in events], ["RequestReceived", "ResponseStarted", "ResponseComplete"])
        self.assertEqual(events[1]["responseStatus"], {"metadata": {}, "code": 400})
        self.assertEqual(events[2]["responseStatus"]["reason"], "BadRequest")
        self.assertEqual(events[2]["responseStatus"]["code"], 400)

    def test_panic(self) -> None:
        """
        A route that raises gives a Panic event with a 500 status.
        """

        class Broken(Resource):
            isLeaf = True

            def render(self, request: IRequest) -> bytes:
                raise RuntimeError("boom")

        trail = AuditTrail(parse_audit_policy(self.policy_text), self.writer)
        stub = StubTreq(FilteredResource(Broken(), lambda request: ADMIN, observers=(trail,)))
        response = self.successResultOf(stub.get(BASE + "/anything"))  # type: ignore[attr-defined]
        self.assertEqual(response.code, 500)
        received, panic = self.events()
        self.assertEqual((received["stage"], panic["stage"]), ("RequestReceived", "Panic"))
        self.assertEqual(
            panic["responseStatus"],
            {
                "metadata": {},
                "status": "Failure",
                "message": "APIServer panic'd: boom",
                "reason": "InternalError",
                "code": 500,
            },
        )
        self.flushLoggedErrors(RuntimeError)


class RequestResponseEventTests(AuditedServer):
    policy_text = HEADER + "omitManagedFields: true\nrules:\n- level: RequestResponse\n"

    def test_create_at_request_response(self) -> None:
        """
        The request and response bodies are logged (without managedFields
        here); the first stage has neither.
        """
        _, (received, complete) = self.create()
        self.assertEqual(
            list(complete),
            [
                "kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user",
                "sourceIPs", "userAgent", "objectRef", "responseStatus", "requestObject",
                "responseObject", "requestReceivedTimestamp", "stageTimestamp", "annotations",
            ],
        )
        self.assertEqual(complete["requestObject"], {"metadata": {"name": "one"}, "spec": {"reference": "x"}})
        response = complete["responseObject"]
        self.assertEqual((response["kind"], response["metadata"]["name"]), ("Flunder", "one"))
        self.assertIn("uid", response["metadata"])
        self.assertNotIn("managedFields", response["metadata"])
        self.assertNotIn("requestObject", received)
        self.assertNotIn("responseObject", received)


class OmittedStageTests(AuditedServer):
    policy_text = (
        HEADER
        + "omitStages: [RequestReceived]\n"
        + "rules:\n- level: None\n  verbs: [list]\n- level: Metadata\n"
    )

    def test_omitted_stage_and_level_none(self) -> None:
        """
        Omitted stages are not written; a request at level None leaves no
        event at all.
        """
        self.request("GET", FLUNDERS)
        audit_id, events = self.create()
        self.assertEqual([event["stage"] for event in self.events()], ["ResponseComplete"])
        self.assertEqual(events[0]["auditID"], audit_id)


# -- formats, rotation, writer ------------------------------------------------------


SAMPLE_EVENT: dict[str, Any] = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Metadata",
    "auditID": "5b1d6e2c-5d7a-4d7e-9c55-3f7a0f4b2a10",
    "stage": "ResponseComplete",
    "requestURI": "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders",
    "verb": "create",
    "user": {"username": "development", "groups": ["system:masters", "system:authenticated"]},
    "sourceIPs": ["127.0.0.1"],
    "userAgent": "kubectl/v1.35.0",
    "objectRef": {"resource": "flunders", "namespace": "default", "name": "one"},
    "responseStatus": {"metadata": {}, "code": 201},
    "requestReceivedTimestamp": "2026-07-24T10:11:12.120000Z",
    "stageTimestamp": "2026-07-24T10:11:12.130000Z",
}


class FormatTests(SynchronousTestCase):
    def test_micro_time(self) -> None:
        self.assertEqual(micro_time(1_780_000_000.25), "2026-05-28T20:26:40.250000Z")

    def test_legacy_line(self) -> None:
        """
        The reference's one-line format.
        """
        self.assertEqual(
            legacy_line(SAMPLE_EVENT),
            '2026-07-24T10:11:12.12Z AUDIT: id="5b1d6e2c-5d7a-4d7e-9c55-3f7a0f4b2a10" '
            'stage="ResponseComplete" ip="127.0.0.1" method="create" user="development" '
            'groups="\\"system:masters\\",\\"system:authenticated\\"" as="<self>" '
            'asgroups="<lookup>" user-agent="kubectl/v1.35.0" namespace="default" '
            'uri="/apis/wardle.example.com/v1alpha1/namespaces/default/flunders" response="201"',
        )

    def test_json_encoding(self) -> None:
        """
        One compact line, HTML characters escaped as Go escapes them.
        """
        line = encoder("json")(dict(SAMPLE_EVENT, userAgent="a<b>&c"))
        self.assertTrue(line.endswith(b"}\n"))
        self.assertEqual(line.count(b"\n"), 1)
        self.assertIn(b'"userAgent":"a\\u003cb\\u003e\\u0026c"', line)


class RotationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        self.now = 1_780_000_000.0
        self.path = os.path.join(self.directory, "audit.log")

    def rotating(self, **settings: Any) -> RotatingFile:
        log = RotatingFile(self.path, now=lambda: self.now, **settings)
        self.addCleanup(log.close)
        return log

    def fill(self, log: RotatingFile, chunks: int, size: int = 400 * 1024) -> None:
        for index in range(chunks):
            log.write(bytes([65 + index % 26]) * (size - 1) + b"\n")
            self.now += 60

    def test_new_file_mode(self) -> None:
        self.rotating()
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)

    def test_rotates_by_size_keeping_max_backups(self) -> None:
        """
        Past C{--audit-log-maxsize} the file becomes a timestamped backup;
        only the newest C{--audit-log-maxbackup} backups stay.
        """
        log = self.rotating(max_size_mb=1, max_backups=2, max_age_days=0)
        self.fill(log, 9)
        log.flush()
        names = sorted(os.listdir(self.directory))
        self.assertEqual(len(names), 3, names)
        self.assertIn("audit.log", names)
        backups = log.backups()
        self.assertEqual([os.path.basename(path) for _, path in backups], sorted(names[:2], reverse=True))
        for _, path in backups:
            self.assertEqual(os.path.getsize(path), 2 * 400 * 1024)
            self.assertRegex(os.path.basename(path), r"^audit-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}\.log$")
        # Nine chunks, two per file: the ninth is alone in the current file.
        self.assertEqual(os.path.getsize(self.path), 400 * 1024)

    def test_backup_name(self) -> None:
        self.assertEqual(
            backup_name("/var/log/audit.log", 1_780_000_000.123),
            "/var/log/audit-2026-05-28T20-26-40.123.log",
        )

    def test_max_age_and_compress(self) -> None:
        """
        Backups older than C{--audit-log-maxage} days go; the rest are
        gzipped with C{--audit-log-compress}.
        """
        os.makedirs(self.directory)
        stale = backup_name(self.path, self.now - 3 * 86400)
        with open(stale, "wb") as old:
            old.write(b"old\n")
        log = self.rotating(max_size_mb=1, max_backups=0, max_age_days=2, compress=True)
        self.fill(log, 3)
        self.assertFalse(os.path.exists(stale))
        (backup,) = [path for _, path in log.backups()]
        self.assertTrue(backup.endswith(".log.gz"))
        with gzip.open(backup) as unpacked:
            self.assertEqual(len(unpacked.read()), 2 * 400 * 1024)

    def test_no_rotation_with_max_size_zero(self) -> None:
        log = self.rotating(max_size_mb=0)
        self.fill(log, 4)
        self.assertEqual(os.listdir(self.directory), ["audit.log"])


class WriterTests(SynchronousTestCase):
    def test_drain_writes_legacy_lines(self) -> None:
        """
        Queued events are written and flushed by L{AuditLogWriter.drain};
        the stop marker ends it.
        """
        path = os.path.join(self.mktemp(), "audit.log")
        writer = AuditLogWriter(RotatingFile(path), encoder("legacy"), Clock())
        writer.process(SAMPLE_EVENT)
        writer.process(dict(SAMPLE_EVENT, stage="Panic"))
        self.assertTrue(writer.drain())
        with open(path) as log:
            lines = log.read().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn('stage="Panic"', lines[1])
        self.assertTrue(writer.drain(), "nothing queued: still running")
        self.assertIsNone(writer.stopService())


# -- flags ----------------------------------------------------------------------


def parse(args: Sequence[str]) -> Any:
    options = tap.Options()
    options.parseOptions(["--etcd-servers", "http://127.0.0.1:2379", *args])
    return options.config


class FlagTests(SynchronousTestCase):
    def assertUsageError(self, args: Sequence[str], message: str) -> None:
        error = self.assertRaises(SystemExit, parse, args)
        self.assertEqual(error.code, f"wardled: error: {message}")

    def test_defaults(self) -> None:
        """
        The reference's defaults; no audit log.
        """
        config = parse([])
        self.assertEqual(
            (
                config.audit_log_path, config.audit_policy_file, config.audit_log_maxage,
                config.audit_log_maxbackup, config.audit_log_maxsize, config.audit_log_format,
                config.audit_log_compress,
            ),
            (None, None, 366, 100, 100, "json", False),
        )

    def test_values(self) -> None:
        policy = self.mktemp()
        with open(policy, "w") as policy_file:
            policy_file.write(EVERYTHING_AT.format(level="Metadata"))
        config = parse([
            "--audit-log-path=-", f"--audit-policy-file={policy}", "--audit-log-maxage=0",
            "--audit-log-maxbackup=0", "--audit-log-maxsize=5", "--audit-log-format=legacy",
            "--audit-log-compress",
        ])
        self.assertEqual(
            (
                config.audit_log_path, config.audit_policy_file, config.audit_log_maxage,
                config.audit_log_maxbackup, config.audit_log_maxsize, config.audit_log_format,
                config.audit_log_compress,
            ),
            ("-", policy, 0, 0, 5, "legacy", True),
        )

    def test_errors(self) -> None:
        self.assertUsageError(["--audit-log-maxage", "-1"], "--audit-log-maxage -1 can't be a negative number")
        self.assertUsageError(["--audit-log-maxsize", "big"], "invalid --audit-log-maxsize 'big': want a whole number")
        self.assertUsageError(
            ["--audit-log-format", "xml"],
            'invalid audit log format xml, allowed formats are "json,legacy"',
        )
        policy = self.mktemp()
        with open(policy, "w") as policy_file:
            policy_file.write(HEADER + "rules:\n- level: Loud\n")
        self.assertUsageError(
            ["--audit-policy-file", policy],
            f'--audit-policy-file: rules[0].level: Unsupported value: "Loud": supported values: '
            f'"None", "Metadata", "Request", "RequestResponse": from file {policy}',
        )


# -- a real server ----------------------------------------------------------------


def _write_policy(directory: str) -> str:
    path = os.path.join(directory, "audit-policy.yaml")
    with open(path, "w") as policy_file:
        policy_file.write(
            HEADER
            + "rules:\n"
            + "- level: None\n  nonResourceURLs: ['/healthz*', '/readyz*', '/livez*']\n"
            + "- level: Metadata\n"
        )
    return path


def _find(read: Callable[[], str], audit_id: str, stage: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for line in read().splitlines():
            if audit_id in line and line.lstrip().startswith("{"):
                event = json.loads(line)
                if event["auditID"] == audit_id and event["stage"] == stage:
                    return dict(event)
        if time.monotonic() > deadline:
            raise AssertionError(f"no {stage} event for {audit_id} in:\n{read()}")
        time.sleep(0.1)


def test_real_server_audit_log_file(etcd: EtcdServer, pki: TestPKI, tmp_path: Any, namespace: str) -> None:
    """
    A real wardled writes the ResponseComplete event of a create, with the
    response's Audit-Id, the user and the object, to its audit log.
    """
    log_path = str(tmp_path / "logs" / "audit.log")
    server = WardledProcess.start(
        etcd.url, pki, ["--audit-log-path", log_path, "--audit-policy-file", _write_policy(str(tmp_path))]
    )
    try:
        response = server.https(
            "POST", f"{V1A}/namespaces/{namespace}/flunders", {"metadata": {"name": "audited"}}
        )
        assert response.status == 201
        audit_id = response.header("audit-id")
        assert audit_id

        def read() -> str:
            with open(log_path, encoding="utf-8") as log:
                return log.read()

        event = _find(read, audit_id, "ResponseComplete")
    finally:
        server.stop()
    assert event["responseStatus"]["code"] == 201
    assert event["user"]["username"] == "development"
    assert event["verb"] == "create"
    assert event["objectRef"] == {
        "resource": "flunders", "namespace": namespace, "name": "audited",
        "apiGroup": GROUP, "apiVersion": "v1alpha1",
    }
    assert os.stat(log_path).st_mode & 0o777 == 0o600
    assert "/healthz" not in read()


def test_real_server_audit_log_to_stdout(etcd: EtcdServer, pki: TestPKI, tmp_path: Any) -> None:
    """
    C{--audit-log-path=-} writes the events to the process's standard
    output, one JSON object per line.
    """
    server = WardledProcess.start(
        etcd.url, pki, ["--audit-log-path=-", f"--audit-policy-file={_write_policy(str(tmp_path))}"]
    )
    try:
        response = server.https("GET", f"{V1A}/fischers")
        assert response.status == 200
        audit_id = response.header("audit-id")
        assert audit_id
        event = _find(server.output, audit_id, "ResponseComplete")
    finally:
        server.stop()
    assert event["verb"] == "list"
    assert event["requestURI"] == f"{V1A}/fischers"


class AuditIdTests(SynchronousTestCase):
    """
    Every request's C{Audit-Id} is a version 4 UUID, formatted as
    L{uuid.UUID} formats one.
    """

    def test_same_text_as_uuid(self) -> None:
        source = random.Random(8)
        for bits in [0, (1 << 128) - 1, *(source.getrandbits(128) for _ in range(2000))]:
            self.assertEqual(format_uuid4(bits), str(uuid.UUID(int=bits, version=4)))
        found = uuid.UUID(new_audit_id())
        self.assertEqual((found.version, found.variant), (4, uuid.RFC_4122))
        self.assertNotEqual(new_audit_id(), new_audit_id())
