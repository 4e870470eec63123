# -*- test-case-name: tests.test_audit -*-
"""
The audit policy (C{--audit-policy-file}): an C{audit.k8s.io/v1 Policy}
whose rules say at what level each request is logged.

Parsing and validation follow k8s.io/apiserver's C{policy.LoadPolicyFromBytes}
and C{validation.ValidatePolicy}; matching follows C{policy/checker.go}:
the first rule that matches wins, a request no rule matches is not logged
(level C{None}), and a rule's C{omitStages} adds to the policy's.

    apiVersion: audit.k8s.io/v1
    kind: Policy
    omitStages: [RequestReceived]
    rules:
    - level: None
      nonResourceURLs: [/healthz*, /readyz*, /livez*]
    - level: RequestResponse
      resources:
      - group: wardle.example.com
        resources: [flunders]
    - level: Metadata

Note C{group}: omitted, it means the core group (C{""}), which this server
does not serve; write C{group: wardle.example.com} or C{group: "*"}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import yaml
from twisted.logger import Logger

from wardled.api.requestinfo import RequestInfo
from wardled.apis import field
from wardled.apis.field import FieldError
from wardled.apis.validation import is_dns1123_subdomain
from wardled.auth.user import UserInfo

API_VERSION = "audit.k8s.io/v1"
KIND = "Policy"

NONE = "None"
METADATA = "Metadata"
REQUEST = "Request"
REQUEST_RESPONSE = "RequestResponse"
LEVELS = (NONE, METADATA, REQUEST, REQUEST_RESPONSE)

REQUEST_RECEIVED = "RequestReceived"
RESPONSE_STARTED = "ResponseStarted"
RESPONSE_COMPLETE = "ResponseComplete"
PANIC = "Panic"
STAGES = (REQUEST_RECEIVED, RESPONSE_STARTED, RESPONSE_COMPLETE, PANIC)

WILDCARD = "*"

_RULE_KEYS = frozenset({
    "level", "users", "userGroups", "verbs", "resources", "namespaces",
    "nonResourceURLs", "omitStages", "omitManagedFields",
})
_POLICY_KEYS = frozenset({"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"})
_GROUP_RESOURCE_KEYS = frozenset({"group", "resources", "resourceNames"})

log = Logger()


class AuditPolicyError(Exception):
    """
    The policy cannot be read or is invalid; the message says where.
    """


def level_at_least(level: str, minimum: str) -> bool:
    """
    Whether C{level} logs at least as much as C{minimum}.
    """
    return LEVELS.index(level) >= LEVELS.index(minimum)


@attrs.frozen
class RequestAuditConfig:
    """
    How one request is audited: its level, the stages not logged and
    whether C{managedFields} are dropped from logged objects.
    """

    level: str
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False


@attrs.frozen
class GroupResources:
    """
    One C{resources} entry: a group and, optionally, resources and names.
    """

    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()

    def matches(self, info: RequestInfo) -> bool:
        if self.group not in (info.api_group, WILDCARD):
            return False
        if not self.resources:
            return True
        if self.resource_names and info.name not in self.resource_names:
            return False
        combined = info.resource
        if info.subresource:
            combined = f"{info.resource}/{info.subresource}"
        for resource in self.resources:
            if resource in (combined, WILDCARD):
                return True
            if info.subresource and resource == f"*/{info.subresource}":
                return True
            if resource.endswith("/*") and resource[:-2] == info.resource:
                return True
        return False


def _path_matches(path: str, spec: str) -> bool:
    if spec in (WILDCARD, path):
        return True
    return spec.endswith(WILDCARD) and path.startswith(spec.rstrip(WILDCARD))


@attrs.frozen
class AuditRule:
    """
    One rule; an empty list matches everything (see C{checker.go}).
    """

    level: str
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool | None = None

    def matches(self, user: UserInfo | None, info: RequestInfo) -> bool:
        """
        Whether the rule applies to C{user} (C{None}: not authenticated)
        doing C{info}.
        """
        if self.users and (user is None or user.name not in self.users):
            return False
        if self.user_groups and (
            user is None or not any(group in self.user_groups for group in user.groups)
        ):
            return False
        if self.verbs and info.verb not in self.verbs:
            return False
        if self.namespaces or self.resources:
            return self._matches_resource(info)
        if self.non_resource_urls:
            return not info.is_resource_request and any(
                _path_matches(info.path, spec) for spec in self.non_resource_urls
            )
        return True

    def _matches_resource(self, info: RequestInfo) -> bool:
        if not info.is_resource_request:
            return False
        if self.namespaces and info.namespace not in self.namespaces:
            return False
        if not self.resources:
            return True
        return any(entry.matches(info) for entry in self.resources)


@attrs.frozen
class AuditPolicy:
    """
    A parsed, validated policy.
    """

    rules: tuple[AuditRule, ...]
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False

    def evaluate(self, user: UserInfo | None, info: RequestInfo) -> RequestAuditConfig:
        """
        The first matching rule's level (with its and the policy's
        C{omitStages}), else level C{None}.
        """
        for rule in self.rules:
            if rule.matches(user, info):
                omit_managed = self.omit_managed_fields
                if rule.omit_managed_fields is not None:
                    omit_managed = rule.omit_managed_fields
                return RequestAuditConfig(
                    rule.level, self.omit_stages | rule.omit_stages, omit_managed
                )
        return RequestAuditConfig(NONE, self.omit_stages, self.omit_managed_fields)


# -- parsing ------------------------------------------------------------------


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AuditPolicyError(f"{where}: must be a list of strings")
    return tuple(value)


def _boolean(where: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise AuditPolicyError(f"{where}: must be true or false")


def _mapping(where: str, value: Any, known: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise AuditPolicyError(f"{where}: must be a mapping")
    unknown = sorted(str(key) for key in value if key not in known)
    if unknown:
        # The reference falls back to lenient decoding with a warning.
        log.warn(  # noqa: G010 - twisted.logger has no warning()
            "audit policy: ignoring unknown field(s) {fields} in {where}",
            fields=", ".join(unknown),
            where=where or "the policy",
        )
    return value


def _validate_omit_stages(where: str, stages: tuple[str, ...]) -> list[FieldError]:
    return [
        field.invalid(f"{where}[{index}]", stage, "allowed stages are " + ",".join(STAGES))
        for index, stage in enumerate(stages)
        if stage not in STAGES
    ]


def _validate_level(where: str, level: str) -> list[FieldError]:
    if level == "":
        return [field.required(where)]
    if level not in LEVELS:
        return [field.not_supported(where, level, list(LEVELS))]
    return []


def _validate_urls(where: str, urls: tuple[str, ...]) -> list[FieldError]:
    errors = []
    for index, url in enumerate(urls):
        if url == WILDCARD:
            continue
        if not url.startswith("/"):
            errors.append(field.invalid(
                f"{where}[{index}]", url, "non-resource URL rules must begin with a '/' character"
            ))
        if url and WILDCARD in url[:-1]:
            errors.append(field.invalid(
                f"{where}[{index}]",
                url,
                "non-resource URL wildcards '*' must be the final character of the rule",
            ))
    return errors


def _parse_group_resources(where: str, document: Any) -> tuple[GroupResources, list[FieldError]]:
    entry = _mapping(where, document, _GROUP_RESOURCE_KEYS)
    group = entry.get("group") or ""
    if not isinstance(group, str):
        raise AuditPolicyError(f"{where}.group: must be a string")
    parsed = GroupResources(
        group,
        _strings(f"{where}.resources", entry.get("resources")),
        _strings(f"{where}.resourceNames", entry.get("resourceNames")),
    )
    errors = []
    if group and group != WILDCARD:
        messages = is_dns1123_subdomain(group)
        if messages:
            errors.append(field.invalid(f"{where}.group", group, ",".join(messages)))
    if parsed.resource_names and not parsed.resources:
        errors.append(field.invalid(
            f"{where}.resourceNames",
            list(parsed.resource_names),
            "using resourceNames requires at least one resource",
        ))
    return parsed, errors


def _parse_rule(index: int, document: Any) -> tuple[AuditRule, list[FieldError]]:
    where = f"rules[{index}]"
    rule = _mapping(where, document, _RULE_KEYS)
    level = rule.get("level") or ""
    if not isinstance(level, str):
        raise AuditPolicyError(f"{where}.level: must be a string")
    resources_document = rule.get("resources") or []
    if not isinstance(resources_document, list):
        raise AuditPolicyError(f"{where}.resources: must be a list")
    errors = _validate_level(f"{where}.level", level)
    resources = []
    for position, item in enumerate(resources_document):
        entry, entry_errors = _parse_group_resources(f"{where}.resources[{position}]", item)
        resources.append(entry)
        errors.extend(entry_errors)
    urls = _strings(f"{where}.nonResourceURLs", rule.get("nonResourceURLs"))
    namespaces = _strings(f"{where}.namespaces", rule.get("namespaces"))
    stages = _strings(f"{where}.omitStages", rule.get("omitStages"))
    errors += _validate_urls(f"{where}.nonResourceURLs", urls)
    errors += _validate_omit_stages(f"{where}.omitStages", stages)
    if urls and (resources or namespaces):
        errors.append(field.invalid(
            f"{where}.nonResourceURLs",
            list(urls),
            "rules cannot apply to both regular resources and non-resource URLs",
        ))
    parsed = AuditRule(
        level=level,
        users=_strings(f"{where}.users", rule.get("users")),
        user_groups=_strings(f"{where}.userGroups", rule.get("userGroups")),
        verbs=_strings(f"{where}.verbs", rule.get("verbs")),
        resources=tuple(resources),
        namespaces=namespaces,
        non_resource_urls=urls,
        omit_stages=frozenset(stages),
        omit_managed_fields=_boolean(f"{where}.omitManagedFields", rule.get("omitManagedFields")),
    )
    return parsed, errors


def _check_type(document: Mapping[str, Any]) -> None:
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if not kind:
        raise AuditPolicyError(
            f"the policy has no kind: want kind: {KIND} and apiVersion: {API_VERSION}"
        )
    if api_version != API_VERSION:
        raise AuditPolicyError(
            f"unknown group version field {api_version!r} in policy: want {API_VERSION}"
        )
    if kind != KIND:
        raise AuditPolicyError(f"unknown kind {kind!r} in policy: want {KIND}")


def parse_audit_policy(text: str) -> AuditPolicy:
    """
    Parse and validate a policy document (YAML or JSON).

    @raise AuditPolicyError: it is not YAML, not an C{audit.k8s.io/v1
        Policy}, fails validation (the message lists the field errors as
        the reference words them) or has no rules.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise AuditPolicyError(f"failed decoding: {error}") from None
    policy = _mapping("", document, _POLICY_KEYS) if document is not None else {}
    _check_type(policy)
    rules_document = policy.get("rules") or []
    if not isinstance(rules_document, list):
        raise AuditPolicyError("rules: must be a list")
    stages = _strings("omitStages", policy.get("omitStages"))
    errors = _validate_omit_stages("omitStages", stages)
    rules = []
    for index, document_rule in enumerate(rules_document):
        rule, rule_errors = _parse_rule(index, document_rule)
        rules.append(rule)
        errors.extend(rule_errors)
    if errors:
        raise AuditPolicyError(field.aggregate(errors))
    if not rules:
        raise AuditPolicyError("loaded illegal policy with 0 rules")
    omit_managed = _boolean("omitManagedFields", policy.get("omitManagedFields"))
    return AuditPolicy(tuple(rules), frozenset(stages), bool(omit_managed))


def load_audit_policy(path: str) -> AuditPolicy:
    """
    Read and parse the policy file at C{path}.

    @raise AuditPolicyError: it cannot be read, or L{parse_audit_policy}
        refuses it; the message names the file.
    """
    try:
        with open(path, encoding="utf-8") as source:
            text = source.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise AuditPolicyError(f'failed to read file path "{path}": {reason}') from None
    try:
        return parse_audit_policy(text)
    except AuditPolicyError as error:
        raise AuditPolicyError(f"{error}: from file {path}") from None
