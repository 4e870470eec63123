# -*- test-case-name: tests.test_registry -*-
"""
Per-type policy for writes (k8s.io/apiserver pkg/registry/rest create.go and
update.go): a L{Strategy} says what a type validates; L{before_create} and
L{before_update} apply the rules every type shares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from wardled import apierrors
from wardled.apis import validation
from wardled.apis.field import FieldError
from wardled.apis.scheme import ResourceType, order_metadata

Object = dict[str, Any]
Validator = Callable[[Object], list[FieldError]]
UpdateValidator = Callable[[Object, Object], list[FieldError]]

NAMESPACE_MISMATCH = (
    "the namespace of the provided object does not match the namespace sent on "
    "the request"
)


def _no_errors(*objects: Object) -> list[FieldError]:
    return []


@attrs.frozen
class Strategy:
    """
    The policy of one resource.

    @ivar validate: create validation of the internal object (run before the
        shared metadata checks, so its errors mask theirs, as in the reference).
    @ivar validate_update: update validation; the reference's is empty for
        both wardle types.
    @ivar allow_unconditional_update: whether a PUT without
        C{metadata.resourceVersion} is accepted (false for both types).  A PUT
        never creates: the reference's AllowCreateOnUpdate is false for both.
    """

    resource: ResourceType
    validate: Validator = _no_errors
    validate_update: UpdateValidator = _no_errors
    allow_unconditional_update: bool = False

    @property
    def namespaced(self) -> bool:
        return self.resource.namespaced


def ensure_namespace(strategy: Strategy, request_namespace: str, obj: Object) -> None:
    """
    EnsureObjectNamespaceMatchesRequestNamespace: fill an empty namespace from
    the request, clear it on cluster-scoped types, refuse a mismatch.
    """
    metadata = obj.setdefault("metadata", {})
    expected = request_namespace if strategy.namespaced else ""
    actual = metadata.get("namespace", "")
    if actual == expected:
        return
    if not actual:
        metadata["namespace"] = expected
        order_metadata(metadata)
    elif not expected:
        metadata.pop("namespace", None)
    else:
        raise apierrors.bad_request(NAMESPACE_MISMATCH)


def before_create(strategy: Strategy, request_namespace: str, obj: Object) -> None:
    """
    BeforeCreate: namespace, then the type's validation, then (only if that
    passed) the shared ObjectMeta validation.
    """
    ensure_namespace(strategy, request_namespace, obj)
    metadata = obj["metadata"]
    metadata.pop("deletionTimestamp", None)
    metadata.pop("deletionGracePeriodSeconds", None)
    name = metadata.get("name", "")
    errors = strategy.validate(obj)
    if not errors:
        errors = validation.validate_object_meta(metadata, strategy.namespaced)
    if errors:
        raise apierrors.invalid(strategy.resource.group_kind, name, errors)


def before_update(
    strategy: Strategy, request_namespace: str, obj: Object, old: Object
) -> None:
    """
    BeforeUpdate: carry over what a client may not change, then validate.
    """
    ensure_namespace(strategy, request_namespace, obj)
    metadata = obj["metadata"]
    old_metadata = old["metadata"]
    _carry_over(metadata, old_metadata)
    order_metadata(metadata)
    errors = validation.validate_common_update(
        metadata, old_metadata, strategy.namespaced
    )
    errors += strategy.validate_update(obj, old)
    if errors:
        raise apierrors.invalid(
            strategy.resource.group_kind, metadata.get("name", ""), errors
        )


def _carry_over(metadata: Object, old_metadata: Object) -> None:
    for key in ("generation",):
        _copy(metadata, old_metadata, key)
    if not metadata.get("uid"):
        _copy(metadata, old_metadata, "uid")
    if old_metadata.get("creationTimestamp"):
        _copy(metadata, old_metadata, "creationTimestamp")
    if old_metadata.get("deletionTimestamp"):
        _copy(metadata, old_metadata, "deletionTimestamp")
    if (
        "deletionGracePeriodSeconds" in old_metadata
        and "deletionGracePeriodSeconds" not in metadata
    ):
        _copy(metadata, old_metadata, "deletionGracePeriodSeconds")


def _copy(metadata: Object, old_metadata: Object, key: str) -> None:
    if key in old_metadata:
        metadata[key] = old_metadata[key]
    else:
        metadata.pop(key, None)
