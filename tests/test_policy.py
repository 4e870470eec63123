# -*- test-case-name: tests.test_policy -*-
"""
The stand-alone authorization policy (C{--authorization-policy-file}):
parsing and validation, matching with wildcards, its place in the
authorization chain, reloading on change with a L{Clock}, and keeping the
last good policy when the file breaks.
"""

from __future__ import annotations

import os
from typing import cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from wardled import tap
from wardled.api.requestinfo import RequestInfo, parse_request_info
from wardled.auth.authz import authorize
from wardled.auth.policy import (
    Policy,
    PolicyError,
    PolicyFile,
    load_policy,
    parse_policy,
)
from wardled.auth.user import ANONYMOUS_USER, UserInfo, authenticated
from wardled.reload import POLL_INTERVAL, ReloadService

ALICE = authenticated("alice", ("devs",))
BOB = authenticated("bob", ())
CAROL = authenticated("carol", ("ops",))
G = "/apis/wardle.example.com/v1alpha1"

POLICY = """
rules:
- users: [alice]
  verbs: [get, list, watch]
  resources: [flunders]
  namespaces: [team-a]
- users: [alice]
  verbs: [get]
  resources: [fischers]
  names: [one, two]
- groups: [ops]
  verbs: ["*"]
  resources: ["*"]
- groups: [system:authenticated]
  verbs: [get]
  nonResourcePaths: [/metrics, /debug/*]
"""


def request(method: str, path: str, watch: bool = False) -> RequestInfo:
    return parse_request_info(method, path, watch)


class ParseTests(SynchronousTestCase):
    def test_rules(self) -> None:
        policy = parse_policy(POLICY)
        self.assertEqual(len(policy.rules), 4)
        first = policy.rules[0]
        self.assertEqual(first.users, ("alice",))
        self.assertEqual(first.groups, ())
        self.assertEqual(first.namespaces, ("team-a",))
        self.assertIsNone(first.names)
        self.assertEqual(policy.rules[3].non_resource_paths, ("/metrics", "/debug/*"))

    def test_empty_rules(self) -> None:
        self.assertEqual(parse_policy("rules: []"), Policy(()))
        self.assertEqual(parse_policy("rules:"), Policy(()))

    def test_errors(self) -> None:
        base = "- users: [a]\n  verbs: [get]\n  resources: [flunders]\n"
        cases = {
            "": "want a mapping with a 'rules' list",
            "[]": "want a mapping with a 'rules' list",
            "rules: [a\n": "not valid YAML:",
            "rules: {}\nextra: 1": "unknown top-level key 'extra' (known: rules)",
            "rules: x": "'rules' must be a list",
            "rules:\n- 3": "rules[0]: want a mapping, got int",
            "rules:\n" + base + "- users: [a]\n  verb: [get]\n  resources: [x]\n":
                "rules[1]: unknown key 'verb' (known: users, groups, verbs, "
                "resources, namespaces, names, nonResourcePaths)",
            "rules:\n- verbs: [get]\n  resources: [x]": "rules[0]: needs users or groups",
            "rules:\n- users: [a]\n  resources: [x]": "rules[0]: needs verbs",
            "rules:\n- users: [a]\n  verbs: [get]": "rules[0]: needs either resources or nonResourcePaths",
            "rules:\n- users: [a]\n  verbs: [get]\n  resources: [x]\n  nonResourcePaths: [/x]":
                "rules[0]: needs either resources or nonResourcePaths",
            "rules:\n- users: [a]\n  verbs: [get]\n  nonResourcePaths: [/x]\n  names: [n]":
                "rules[0]: namespaces and names apply to resources, not nonResourcePaths",
            "rules:\n- users: alice\n  verbs: [get]\n  resources: [x]":
                "rules[0]: users must be a non-empty list of strings",
            "rules:\n- users: []\n  verbs: [get]\n  resources: [x]":
                "rules[0]: users must be a non-empty list of strings",
            "rules:\n- users: [1]\n  verbs: [get]\n  resources: [x]":
                "rules[0]: users must be a non-empty list of strings, got 1",
        }
        for text, message in cases.items():
            error = self.assertRaises(PolicyError, parse_policy, text)
            self.assertTrue(str(error).startswith(message), (text, str(error)))

    def test_load_names_the_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as out:
            out.write("rules: x")
        error = self.assertRaises(PolicyError, load_policy, path)
        self.assertEqual(str(error), f"{path}: 'rules' must be a list")
        missing = os.path.join(self.mktemp(), "p.yaml")
        error = self.assertRaises(PolicyError, load_policy, missing)
        self.assertEqual(str(error), f"cannot read {missing}: No such file or directory")


class MatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.policy = parse_policy(POLICY)

    def test_namespace_and_verbs(self) -> None:
        allows = self.policy.allows
        self.assertTrue(allows(ALICE, request("GET", f"{G}/namespaces/team-a/flunders")))
        self.assertTrue(allows(ALICE, request("GET", f"{G}/namespaces/team-a/flunders/f")))
        self.assertTrue(allows(ALICE, request("GET", f"{G}/namespaces/team-a/flunders", True)))
        self.assertFalse(allows(ALICE, request("GET", f"{G}/namespaces/team-b/flunders")))
        self.assertFalse(allows(ALICE, request("POST", f"{G}/namespaces/team-a/flunders")))
        self.assertFalse(allows(ALICE, request("DELETE", f"{G}/namespaces/team-a/flunders/f")))
        # all namespaces at once is cluster scope: a namespaced rule does not cover it
        self.assertFalse(allows(ALICE, request("GET", f"{G}/flunders")))
        self.assertFalse(allows(BOB, request("GET", f"{G}/namespaces/team-a/flunders")))

    def test_subresource_is_not_the_resource(self) -> None:
        self.assertFalse(
            self.policy.allows(ALICE, request("GET", f"{G}/namespaces/team-a/flunders/f/status"))
        )
        policy = parse_policy(
            "rules:\n- users: [bob]\n  verbs: [get]\n  resources: [flunders/status]"
        )
        self.assertTrue(policy.allows(BOB, request("GET", f"{G}/namespaces/x/flunders/f/status")))
        self.assertFalse(policy.allows(BOB, request("GET", f"{G}/namespaces/x/flunders/f")))

    def test_names(self) -> None:
        allows = self.policy.allows
        self.assertTrue(allows(ALICE, request("GET", f"{G}/fischers/one")))
        self.assertFalse(allows(ALICE, request("GET", f"{G}/fischers/three")))
        self.assertFalse(allows(ALICE, request("GET", f"{G}/fischers")))

    def test_wildcards_and_groups(self) -> None:
        allows = self.policy.allows
        self.assertTrue(allows(CAROL, request("DELETE", f"{G}/namespaces/x/flunders/f")))
        self.assertTrue(allows(CAROL, request("POST", f"{G}/fischers")))
        self.assertTrue(allows(CAROL, request("GET", f"{G}/flunders")))
        self.assertFalse(allows(CAROL, request("GET", "/openapi/v2")))
        policy = parse_policy(
            "rules:\n- users: [bob]\n  verbs: [list]\n  resources: [flunders]\n"
            "  namespaces: ['*']\n  names: ['*']"
        )
        self.assertTrue(policy.allows(BOB, request("GET", f"{G}/flunders")))
        self.assertTrue(policy.allows(BOB, request("GET", f"{G}/namespaces/q/flunders")))

    def test_non_resource_paths(self) -> None:
        allows = self.policy.allows
        self.assertTrue(allows(BOB, request("GET", "/metrics")))
        self.assertTrue(allows(BOB, request("GET", "/debug/pprof/heap")))
        self.assertFalse(allows(BOB, request("POST", "/metrics")))
        self.assertFalse(allows(BOB, request("GET", "/metricsx")))
        self.assertFalse(allows(BOB, request("GET", "/debug")))
        self.assertFalse(allows(ANONYMOUS_USER, request("GET", "/metrics")))
        # resource rules never grant paths, path rules never grant resources
        ops_only = UserInfo("dave", ("ops",))
        self.assertFalse(allows(ops_only, request("GET", "/metrics")))
        self.assertFalse(allows(BOB, request("GET", f"{G}/fischers")))


class AuthorizeChainTests(SynchronousTestCase):
    def test_policy_consulted_after_builtins(self) -> None:
        policy = parse_policy(POLICY)
        info = request("GET", f"{G}/namespaces/team-a/flunders")
        self.assertFalse(authorize(ALICE, info).allowed)
        self.assertTrue(authorize(ALICE, info, policy).allowed)
        info = request("POST", f"{G}/namespaces/team-a/flunders")
        decision = authorize(ALICE, info, policy)
        self.assertEqual((decision.allowed, decision.reason), (False, ""))
        admin = authenticated("root", ("system:masters",))
        self.assertTrue(authorize(admin, info, Policy(())).allowed)
        self.assertTrue(authorize(ANONYMOUS_USER, request("GET", "/healthz"), Policy(())).allowed)


class PolicyFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()
        self.write(POLICY)
        self.clock = Clock()
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def write(self, text: str) -> None:
        with open(self.path, "w") as out:
            out.write(text)
        # make every write look new even within the file system's time granularity
        status = os.stat(self.path)
        bump = getattr(self, "bump", 0) + 1
        self.bump = bump
        os.utime(self.path, ns=(status.st_atime_ns, status.st_mtime_ns + bump * 1_000_000_000))

    def messages(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    def test_load_errors(self) -> None:
        missing = os.path.join(self.mktemp(), "p.yaml")
        error = self.assertRaises(PolicyError, PolicyFile.load, missing)
        self.assertEqual(str(error), f"cannot read {missing}: No such file or directory")
        self.write("rules: [1]")
        error = self.assertRaises(PolicyError, PolicyFile.load, self.path)
        self.assertEqual(str(error), f"{self.path}: rules[0]: want a mapping, got int")

    def test_reload_on_change(self) -> None:
        policy_file = PolicyFile.load(self.path)
        service = ReloadService(self.clock, [policy_file], handle_sighup=False)
        service.startService()
        self.addCleanup(service.stopService)
        team_b = request("GET", f"{G}/namespaces/team-b/flunders")
        self.assertFalse(authorize(ALICE, team_b, policy_file).allowed)
        self.write(POLICY.replace("team-a", "team-b"))
        self.assertFalse(policy_file.allows(ALICE, team_b))
        self.clock.advance(POLL_INTERVAL)
        self.assertTrue(authorize(ALICE, team_b, policy_file).allowed)
        self.assertTrue(any("reloaded" in m and "4 rules" in m for m in self.messages()))

    def test_unchanged_file_not_reread(self) -> None:
        policy_file = PolicyFile.load(self.path)
        before = policy_file.policy
        policy_file.check()
        self.assertIs(policy_file.policy, before)
        self.assertEqual(self.messages(), [])

    def test_broken_file_keeps_last_good(self) -> None:
        policy_file = PolicyFile.load(self.path)
        service = ReloadService(self.clock, [policy_file], handle_sighup=False)
        service.startService()
        self.addCleanup(service.stopService)
        good = policy_file.policy
        team_a = request("GET", f"{G}/namespaces/team-a/flunders")
        self.write("rules:\n- users: [alice]\n  verb: [get]\n")
        self.clock.advance(POLL_INTERVAL)
        self.assertIs(policy_file.policy, good)
        self.assertTrue(policy_file.allows(ALICE, team_a))
        errors = [m for m in self.messages() if "keeping the last good policy" in m]
        self.assertEqual(len(errors), 1)
        self.assertIn("rules[0]: unknown key 'verb'", errors[0])
        # logged once per change, not on every tick
        self.clock.advance(POLL_INTERVAL * 3)
        self.assertEqual(
            len([m for m in self.messages() if "keeping the last good policy" in m]), 1
        )
        os.remove(self.path)
        self.clock.advance(POLL_INTERVAL)
        self.assertTrue(policy_file.allows(ALICE, team_a))
        self.assertTrue(any(f"cannot read {self.path}" in m for m in self.messages()))
        self.write("rules: []")
        self.clock.advance(POLL_INTERVAL)
        self.assertFalse(policy_file.allows(ALICE, team_a))


class OptionsTests(SynchronousTestCase):
    def parse(self, path: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(
            ["--etcd-servers", "http://127.0.0.1:2379", "--authorization-policy-file", path]
        )
        return options

    def test_good_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as out:
            out.write(POLICY)
        self.assertEqual(self.parse(path).config.authorization_policy_file, path)

    def test_broken_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as out:
            out.write("rules:\n- users: [a]\n  verbs: [get]\n  resources: [x]\n  colour: [red]\n")
        error = self.assertRaises(SystemExit, self.parse, path)
        self.assertEqual(
            error.code,
            f"wardled: error: --authorization-policy-file: {path}: rules[0]: unknown key "
            "'colour' (known: users, groups, verbs, resources, namespaces, names, "
            "nonResourcePaths)",
        )

    def test_unreadable_file(self) -> None:
        path = os.path.join(self.mktemp(), "missing.yaml")
        error = self.assertRaises(SystemExit, self.parse, path)
        self.assertEqual(
            error.code,
            f"wardled: error: cannot read --authorization-policy-file {path}: "
            "No such file or directory",
        )
