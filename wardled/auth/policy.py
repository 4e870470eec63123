# -*- test-case-name: tests.test_policy -*-
"""
A stand-alone authorization policy (C{--authorization-policy-file}).

Without a cluster there is no SubjectAccessReview to ask, so only
C{system:masters} could do anything.  This small YAML format lets a VM
deployment grant other users exactly what they need::

    rules:
    - users: [alice]              # and/or groups: [devs]
      verbs: [get, list, watch]   # or ["*"]
      resources: [flunders]       # or ["*"]; "flunders/status" for a subresource
      namespaces: [team-a]        # optional; omitted or "*" = all namespaces
      names: [one, two]           # optional; omitted or "*" = all names
    - groups: [system:authenticated]
      verbs: [get]
      nonResourcePaths: [/metrics]  # a trailing "*" matches a prefix

A rule applies to a user named in C{users} or in a group named in
C{groups}; it grants a request whose verb and resource (or path) it lists.
Cluster-scoped requests match only rules without C{namespaces} (or with
C{"*"}); requests without a name (list, create, watch) only rules without
C{names} (or with C{"*"}).  Rules only grant; anything no rule grants is
denied.  L{PolicyFile} re-reads the file when it changes and keeps the last
good policy when the new text is broken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import yaml
from twisted.logger import Logger
from zope.interface import Interface, implementer

from wardled.api.requestinfo import RequestInfo
from wardled.auth.user import UserInfo
from wardled.reload import file_signature

WILDCARD = "*"

_LIST_KEYS = (
    "users",
    "groups",
    "verbs",
    "resources",
    "namespaces",
    "names",
    "nonResourcePaths",
)


class PolicyError(Exception):
    """
    The policy file cannot be read or is malformed; the message says where.
    """


class IPolicy(Interface):
    """
    Something that may grant requests beyond the built-in rules.
    """

    def allows(user: UserInfo, info: RequestInfo) -> bool:
        """
        Whether C{user} may do what C{info} describes.
        """


def _matches(allowed: tuple[str, ...] | None, value: str) -> bool:
    """
    Whether C{value} is in C{allowed}; C{None} (not given) or C{"*"} allow
    everything.
    """
    return allowed is None or WILDCARD in allowed or value in allowed


def path_matches(patterns: tuple[str, ...], path: str) -> bool:
    """
    Whether C{path} is one of C{patterns}; a pattern ending in C{"*"}
    matches every path it prefixes (Kubernetes' non-resource URL rules).
    """
    for pattern in patterns:
        if pattern == WILDCARD or pattern == path:
            return True
        if pattern.endswith(WILDCARD) and path.startswith(pattern[:-1]):
            return True
    return False


@attrs.frozen
class PolicyRule:
    """
    One rule of the file; see the module docstring.
    """

    verbs: tuple[str, ...]
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    resources: tuple[str, ...] | None = None
    namespaces: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None
    non_resource_paths: tuple[str, ...] | None = None

    def applies_to(self, user: UserInfo) -> bool:
        """
        Whether C{user} is one of this rule's subjects.
        """
        return user.name in self.users or any(g in self.groups for g in user.groups)

    def grants(self, info: RequestInfo) -> bool:
        """
        Whether this rule covers the request C{info} (whoever makes it).
        """
        if not _matches(self.verbs, info.verb):
            return False
        if not info.is_resource_request:
            return self.non_resource_paths is not None and path_matches(
                self.non_resource_paths, info.path
            )
        if self.resources is None:
            return False
        resource = info.resource
        if info.subresource:
            resource = f"{resource}/{info.subresource}"
        if not _matches(self.resources, resource):
            return False
        return _matches(self.namespaces, info.namespace) and _matches(
            self.names, info.name
        )


@implementer(IPolicy)
@attrs.frozen
class Policy:
    """
    A parsed policy: a request is allowed when any rule applies to its user
    and grants it.
    """

    rules: tuple[PolicyRule, ...] = ()

    def allows(self, user: UserInfo, info: RequestInfo) -> bool:
        return any(rule.applies_to(user) and rule.grants(info) for rule in self.rules)


def _string_list(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise PolicyError(f"{where}: {key} must be a non-empty list of strings")
    for item in value:
        if not isinstance(item, str) or not item:
            raise PolicyError(
                f"{where}: {key} must be a non-empty list of strings, got {item!r}"
            )
    return tuple(value)


def _parse_rule(index: int, document: Any) -> PolicyRule:
    where = f"rules[{index}]"
    if not isinstance(document, dict):
        raise PolicyError(f"{where}: want a mapping, got {type(document).__name__}")
    unknown = sorted(str(key) for key in document if key not in _LIST_KEYS)
    if unknown:
        raise PolicyError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_LIST_KEYS)})"
        )
    lists = {key: _string_list(where, key, document[key]) for key in document}
    if "users" not in lists and "groups" not in lists:
        raise PolicyError(f"{where}: needs users or groups")
    if "verbs" not in lists:
        raise PolicyError(f"{where}: needs verbs")
    has_resources = "resources" in lists
    has_paths = "nonResourcePaths" in lists
    if has_resources == has_paths:
        raise PolicyError(f"{where}: needs either resources or nonResourcePaths")
    if has_paths and ("namespaces" in lists or "names" in lists):
        raise PolicyError(
            f"{where}: namespaces and names apply to resources, not nonResourcePaths"
        )
    return PolicyRule(
        verbs=lists["verbs"],
        users=lists.get("users", ()),
        groups=lists.get("groups", ()),
        resources=lists.get("resources"),
        namespaces=lists.get("namespaces"),
        names=lists.get("names"),
        non_resource_paths=lists.get("nonResourcePaths"),
    )


def parse_policy(text: str) -> Policy:
    """
    Parse the YAML policy C{text}.

    @raise PolicyError: not YAML, not C{{rules: [...]}}, or a rule is
        invalid (the message names C{rules[i]}).
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PolicyError(f"not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(document, Mapping) or "rules" not in document:
        raise PolicyError("want a mapping with a 'rules' list")
    unknown = sorted(str(key) for key in document if key != "rules")
    if unknown:
        raise PolicyError(f"unknown top-level key {unknown[0]!r} (known: rules)")
    rules = document["rules"]
    if rules is None:
        rules = []
    if not isinstance(rules, Sequence) or isinstance(rules, str):
        raise PolicyError("'rules' must be a list")
    return Policy(tuple(_parse_rule(index, rule) for index, rule in enumerate(rules)))


def load_policy(path: str) -> Policy:
    """
    Read and parse the policy file at C{path}.

    @raise PolicyError: unreadable or malformed; the message starts with
        C{path}.
    """
    try:
        with open(path, encoding="utf-8") as source:
            text = source.read()
    except OSError as error:
        raise PolicyError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise PolicyError(f"{path}: not UTF-8 text ({error.reason})") from None
    try:
        return parse_policy(text)
    except PolicyError as error:
        raise PolicyError(f"{path}: {error}") from None


@implementer(IPolicy)
class PolicyFile:
    """
    The policy in a file, re-read when the file changes (L{check}, run
    every L{wardled.reload.POLL_INTERVAL} seconds and on SIGHUP by
    L{wardled.reload.ReloadService}).

    @ivar policy: the last policy that parsed.
    """

    log = Logger()

    def __init__(self, path: str, policy: Policy, signature: object) -> None:
        self.path = path
        self.policy = policy
        self._signature = signature

    @classmethod
    def load(cls, path: str) -> PolicyFile:
        """
        Load C{path} now.

        @raise PolicyError: it is unreadable or malformed.
        """
        signature = file_signature((path,))
        return cls(path, load_policy(path), signature)

    def allows(self, user: UserInfo, info: RequestInfo) -> bool:
        return self.policy.allows(user, info)

    def check(self) -> None:
        """
        Re-read the file if its modification time, size or inode changed
        (or it appeared or went); keep the current policy, and log why
        once, if it can no longer be read or parsed.
        """
        signature = file_signature((self.path,))
        if signature == self._signature:
            return
        self._signature = signature
        try:
            policy = load_policy(self.path)
        except PolicyError as error:
            self.log.error(
                "authorization policy not reloaded, keeping the last good "
                "policy: {reason}",
                reason=str(error),
            )
            return
        self.policy = policy
        self.log.info(
            "authorization policy reloaded from {path}: {count} rules",
            path=self.path,
            count=len(policy.rules),
        )
