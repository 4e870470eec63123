# -*- test-case-name: tests.test_listoptions -*-
"""
Query parameters of list (and deletecollection) requests, parsed and checked
as meta/v1 ListOptions are (422 C{ListOptions.meta.k8s.io "" is invalid}).
"""

from __future__ import annotations

import re

from twisted.web.iweb import IRequest

from wardled import apierrors
from wardled.api.respond import query_arg
from wardled.apis import field
from wardled.apis.field import FieldError
from wardled.registry.store import EXACT, NOT_OLDER_THAN, ListOptions
from wardled.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)

LIST_OPTIONS_KIND = apierrors.GroupKind("meta.k8s.io", "ListOptions")


def parse_list_options(request: IRequest) -> ListOptions:
    """
    The ListOptions of a list request.

    @raise apierrors.StatusError: 400 for unparseable values, 422 for
        combinations the reference forbids.
    """
    resource_version = query_arg(request, "resourceVersion") or ""
    match = query_arg(request, "resourceVersionMatch") or ""
    continue_token = query_arg(request, "continue") or ""
    errors = _validate(
        resource_version, match, continue_token, query_arg(request, "sendInitialEvents")
    )
    if errors:
        raise apierrors.invalid(LIST_OPTIONS_KIND, "", errors)
    if continue_token and resource_version not in ("", "0"):
        raise apierrors.bad_request(
            "specifying resource version is not allowed when using continue"
        )
    return ListOptions(
        label_selector=_label_selector(query_arg(request, "labelSelector")),
        field_selector=_field_selector(query_arg(request, "fieldSelector")),
        limit=_limit(query_arg(request, "limit")),
        continue_token=continue_token,
        resource_version=resource_version,
        resource_version_match=match,
    )


def _validate(
    resource_version: str, match: str, continue_token: str, send_initial: str | None
) -> list[FieldError]:
    errors: list[FieldError] = []
    if match:
        if not resource_version:
            errors.append(
                field.forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )
            )
        if continue_token:
            errors.append(
                field.forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                )
            )
        if match not in (EXACT, NOT_OLDER_THAN):
            errors.append(
                field.not_supported(
                    "resourceVersionMatch", match, [EXACT, NOT_OLDER_THAN, ""]
                )
            )
        if match == EXACT and resource_version == "0":
            errors.append(
                field.forbidden(
                    "resourceVersionMatch",
                    'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                )
            )
    if send_initial is not None:
        errors.append(
            field.forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list")
        )
    return errors


def _label_selector(text: str | None) -> LabelSelector | None:
    if not text:
        return None
    try:
        return parse_label_selector(text)
    except SelectorError as error:
        raise apierrors.bad_request(str(error)) from None


def _field_selector(text: str | None) -> FieldSelector | None:
    if not text:
        return None
    try:
        return parse_field_selector(text)
    except SelectorError as error:
        raise apierrors.bad_request(str(error)) from None


_INT64 = re.compile(r"[+-]?[0-9]+")


def _limit(text: str | None) -> int:
    """
    C{limit} as Go's C{strconv.ParseInt(text, 10, 64)} reads it (storage
    takes no more than an int64: etcd refuses it, SQLite overflows).
    """
    if not text:
        return 0
    if not _INT64.fullmatch(text):
        raise apierrors.bad_request(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    limit = int(text)
    if not -(2**63) <= limit < 2**63:
        raise apierrors.bad_request(f'strconv.ParseInt: parsing "{text}": value out of range')
    return max(limit, 0)
