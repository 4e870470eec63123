# -*- test-case-name: tests.test_api -*-
"""
What create, update and patch share: C{dryRun}, C{fieldValidation},
C{fieldManager} (defaulting to the User-Agent's product) and C{force}, and
turning a request body into an internal object with the unknown and
duplicate fields reported the way C{fieldValidation} asks.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.web.iweb import IRequest

from wardled import apierrors
from wardled.api import body as request_body
from wardled.api.respond import add_warning, header, query, query_arg
from wardled.api.scope import Scope
from wardled.apis import field
from wardled.apis.field import FieldError
from wardled.apis.validation import validate_field_manager
from wardled.registry.fieldmanager import manager_from_user_agent

DRY_RUN_ALL = "All"
IGNORE = "Ignore"
WARN = "Warn"
STRICT = "Strict"
FIELD_VALIDATIONS = [IGNORE, WARN, STRICT]


@attrs.frozen
class WriteOptions:
    """
    @ivar field_manager: the C{fieldManager} the client sent (may be empty).
    @ivar manager: the manager writes are recorded under: C{field_manager},
        else the User-Agent's product.
    @ivar force: C{force=true} (apply only).
    """

    dry_run: bool = False
    field_validation: str = WARN
    field_manager: str = ""
    manager: str = ""
    force: bool = False


def parse_write_options(request: IRequest, options_kind: str) -> WriteOptions:
    """
    C{dryRun} and C{fieldValidation} from the query.

    @param options_kind: C{CreateOptions}, C{UpdateOptions}, C{PatchOptions} or
        C{DeleteOptions}, for the 422 message.
    """
    dry_run_values = query(request).get("dryRun", [])
    errors: list[FieldError] = []
    for value in dry_run_values:
        if value != DRY_RUN_ALL:
            errors.append(field.not_supported("dryRun", value, [DRY_RUN_ALL]))
    validation = query_arg(request, "fieldValidation") or WARN
    if validation not in FIELD_VALIDATIONS and options_kind != "DeleteOptions":
        errors.append(field.not_supported("fieldValidation", validation, FIELD_VALIDATIONS))
    field_manager = query_arg(request, "fieldManager") or ""
    if options_kind != "DeleteOptions":
        errors += validate_field_manager(field_manager, "fieldManager")
    if errors:
        raise apierrors.invalid(apierrors.GroupKind("meta.k8s.io", options_kind), "", errors)
    return WriteOptions(
        dry_run=bool(dry_run_values),
        field_validation=validation,
        field_manager=field_manager,
        manager=field_manager or manager_from_user_agent(header(request, "user-agent")),
        force=query_arg(request, "force") in ("1", "t", "T", "true", "TRUE", "True"),
    )


def read_request_body(request: IRequest, expected_kind: str | None = None) -> request_body.DecodedBody:
    """
    The parsed body (JSON or YAML) of C{request}.
    """
    request.content.seek(0)
    return request_body.read_body(
        request.content.read(), header(request, "content-type"), expected_kind=expected_kind
    )


def report_fields(
    request: IRequest,
    options: WriteOptions,
    unknown: list[str],
    duplicates: list[str],
    strict_prefix: str = "",
) -> None:
    """
    Unknown and duplicate fields: ignored, sent back as warnings, or refused.

    @param duplicates: the decoder's texts for duplicate fields.
    @param strict_prefix: what Kubernetes puts before C{strict decoding
        error:} (C{Flunder in version "v1alpha1" cannot be handled as a
        Flunder: }).
    """
    problems = list(duplicates) + [f'unknown field "{path}"' for path in unknown]
    if not problems or options.field_validation == IGNORE:
        return
    if options.field_validation == STRICT:
        raise apierrors.bad_request(
            f"{strict_prefix}strict decoding error: " + ", ".join(problems)
        )
    for problem in problems:
        add_warning(request, problem)


def decode_object(scope: Scope, request: IRequest, options: WriteOptions) -> dict[str, Any]:
    """
    The request body as an internal object of C{scope}'s resource.
    """
    parsed = read_request_body(request, scope.resource.kind)
    return decode_versioned(scope, request, options, parsed.obj, parsed.warnings())


def decode_versioned(
    scope: Scope,
    request: IRequest,
    options: WriteOptions,
    body: Any,
    duplicates: list[str] | None = None,
) -> dict[str, Any]:
    """
    A parsed object in C{scope}'s version (a body, or a patched object) as
    an internal object, its unknown and duplicate fields reported as
    C{fieldValidation} asks.
    """
    kind = scope.resource.kind
    decoded = scope.resource.decode_request(scope.version, body)
    report_fields(
        request,
        options,
        decoded.unknown_fields,
        duplicates or [],
        f'{kind} in version "{scope.version}" cannot be handled as a {kind}: ',
    )
    return decoded.internal
