# -*- test-case-name: tests.test_validation -*-
"""
Kubernetes' generic validation: name formats and C{ObjectMeta} rules.

Every wardle object goes through the checks that k8s.io/apiserver's
C{rest.BeforeCreate} / C{rest.BeforeUpdate} run on its metadata
(k8s.io/apimachinery C{pkg/api/validation/objectmeta.go} and the string
checks of C{pkg/util/validation} / C{pkg/api/validate/content}). Clients see
the resulting messages verbatim in 422 responses, so the texts, field paths
and error order here follow Go's exactly.

Metadata arrives as the decoded JSON C{metadata} object (camelCase keys);
fields that are absent or C{null} count as Go's zero values. The body is
assumed to have been type-checked already by the decoder.

Go measures string lengths in bytes, so every length limit here is applied
to the UTF-8 encoding.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from wardled.apis.field import (
    ErrorType,
    FieldError,
    GoRepr,
    forbidden,
    invalid,
    not_supported,
    required,
)

__all__ = [
    "DNS1123_LABEL_MAX_LENGTH",
    "DNS1123_SUBDOMAIN_MAX_LENGTH",
    "FIELD_IMMUTABLE_ERROR_MSG",
    "FIELD_MANAGER_MAX_LENGTH",
    "FINALIZER_DELETE_DEPENDENTS",
    "FINALIZER_ORPHAN_DEPENDENTS",
    "IS_NEGATIVE_ERROR_MSG",
    "LABEL_VALUE_MAX_LENGTH",
    "MAX_SUBRESOURCE_NAME_LENGTH",
    "QUALIFIED_NAME_MAX_LENGTH",
    "TOTAL_ANNOTATION_SIZE_LIMIT_BYTES",
    "NameFunction",
    "go_json",
    "go_quote",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_valid_label_value",
    "is_valid_path_segment_name",
    "is_valid_path_segment_prefix",
    "max_len_error",
    "regex_error",
    "too_long",
    "validate_annotations",
    "validate_common_update",
    "validate_field_manager",
    "validate_finalizers",
    "validate_immutable_field",
    "validate_labels",
    "validate_managed_fields",
    "validate_no_new_finalizers",
    "validate_object_meta",
    "validate_object_meta_update",
    "validate_owner_references",
    "validate_path_segment_name",
]

DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
QUALIFIED_NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63
TOTAL_ANNOTATION_SIZE_LIMIT_BYTES = 256 * (1 << 10)
FIELD_MANAGER_MAX_LENGTH = 128
MAX_SUBRESOURCE_NAME_LENGTH = 256

FIELD_IMMUTABLE_ERROR_MSG = "field is immutable"
IS_NEGATIVE_ERROR_MSG = "must be greater than or equal to 0"

FINALIZER_ORPHAN_DEPENDENTS = "orphan"
FINALIZER_DELETE_DEPENDENTS = "foregroundDeletion"

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_ERR_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric "
    "characters or '-', and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_ERR_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character"
)
_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_ERR_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = "(" + _LABEL_KEY_FMT + ")?"
_LABEL_VALUE_ERR_MSG = (
    "a valid label must be an empty string or consist of alphanumeric "
    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
    "character"
)

# Go's regexp "^...$" anchors at the very ends of the text; fullmatch does
# the same (Python's "$" would also accept a trailing newline).
_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_LABEL_KEY_RE = re.compile(_LABEL_KEY_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)

_BANNED_OWNERS = frozenset({("", "v1", "Event")})
_MANAGED_FIELDS_OPERATIONS = ["Apply", "Update"]


# ---------------------------------------------------------------------------
# Go formatting helpers


def go_quote(text: str) -> str:
    """
    Quote C{text} as Go's C{strconv.Quote} (and so C{%q}) does.

    @param text: any string.
    @return: the double-quoted Go literal, non-printable characters escaped.
    """
    parts = ['"']
    for char in text:
        parts.append(_go_escape(char))
    parts.append('"')
    return "".join(parts)


_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _go_escape(char: str) -> str:
    """
    One character of a C{strconv.Quote} result.
    """
    if char in ('"', "\\"):
        return "\\" + char
    if char.isprintable():
        return char
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def go_json(value: Any) -> str:
    """
    Encode C{value} the way Go's C{encoding/json.Marshal} does: compact,
    UTF-8, with C{<}, C{>}, C{&}, U+2028 and U+2029 escaped.

    @param value: a JSON-compatible value.
    @return: the JSON text.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _go_string_slice(values: Iterable[str]) -> str:
    """
    Render a C{[]string} with Go's C{%#v}: C{[]string{"a", "b"}}.
    """
    return "[]string{" + ", ".join(go_quote(value) for value in values) + "}"


def _byte_length(text: str) -> int:
    """
    The length Go's C{len()} reports for C{text}: its UTF-8 size.
    """
    return len(text.encode("utf-8", "surrogatepass"))


def _go_lower(text: str) -> str:
    """
    Go's C{strings.ToLower}: a one-to-one per-character mapping (unlike
    Python's C{str.lower}, which expands U+0130 to two characters).
    """
    lowered = []
    for char in text:
        low = char.lower()
        lowered.append(low if len(low) == 1 else low[0])
    return "".join(lowered)


# ---------------------------------------------------------------------------
# Message builders (k8s.io/apimachinery/pkg/api/validate/content/errors.go)


def max_len_error(length: int) -> str:
    """
    The "string too long" explanation.

    @param length: the maximum length in bytes.
    """
    return f"must be no more than {length} bytes"


def _empty_error() -> str:
    return "must be non-empty"


def regex_error(message: str, regex: str, *examples: str) -> str:
    """
    Explain a regular expression mismatch, with examples, as Go's
    C{RegexError} does (including its double space between examples).

    @param message: what the value must look like.
    @param regex: the expression used for validation.
    @param examples: valid sample values.
    """
    if not examples:
        return f"{message} (regex used for validation is '{regex}')"
    text = message + " (e.g. "
    for index, example in enumerate(examples):
        if index > 0:
            text += " or "
        text += f"'{example}', "
    return text + f"regex used for validation is '{regex}')"


def too_long(path: str, max_length: int) -> FieldError:
    """
    A C{field.TooLong} error, worded as k8s.io/apimachinery words it.

    @param path: the field path.
    @param max_length: the limit in bytes.
    """
    unit = "byte" if max_length == 1 else "bytes"
    detail = f"may not be more than {max_length} {unit}"
    return FieldError(ErrorType.TOO_LONG, path, detail=detail)


# ---------------------------------------------------------------------------
# String formats


def is_dns1123_label(value: str) -> list[str]:
    """
    Check that C{value} is an RFC 1123 label (a namespace name, say).

    @return: the reasons it is not, or an empty list.
    """
    errors = []
    if _byte_length(value) > DNS1123_LABEL_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        if _DNS1123_SUBDOMAIN_RE.fullmatch(value):
            errors.append("must not contain dots")
        else:
            errors.append(
                regex_error(
                    _DNS1123_LABEL_ERR_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"
                )
            )
    return errors


def is_dns1123_subdomain(value: str) -> list[str]:
    """
    Check that C{value} is a lowercase RFC 1123 subdomain.

    @return: the reasons it is not, or an empty list.
    """
    errors = []
    if _byte_length(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errors.append(
            regex_error(
                _DNS1123_SUBDOMAIN_ERR_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"
            )
        )
    return errors


def _label_key_regex_error() -> str:
    return regex_error(
        _LABEL_KEY_ERR_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc"
    )


def is_qualified_name(value: str) -> list[str]:
    """
    Check that C{value} is a qualified name (a label key): an optional DNS
    subdomain prefix and C{/}, then a name of at most 63 bytes.

    @return: the reasons it is not, or an empty list.
    """
    errors: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part " + _empty_error())
        else:
            errors.extend("prefix part " + msg for msg in is_dns1123_subdomain(prefix))
    else:
        return [
            "a valid label key "
            + _label_key_regex_error()
            + " with an optional DNS subdomain prefix and '/'"
            + " (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part " + _empty_error())
    elif _byte_length(name) > QUALIFIED_NAME_MAX_LENGTH:
        errors.append("name part " + max_len_error(QUALIFIED_NAME_MAX_LENGTH))
    if not _LABEL_KEY_RE.fullmatch(name):
        errors.append("name part " + _label_key_regex_error())
    return errors


def is_valid_label_value(value: str) -> list[str]:
    """
    Check that C{value} may be a label value (possibly empty).

    @return: the reasons it may not, or an empty list.
    """
    errors = []
    if _byte_length(value) > LABEL_VALUE_MAX_LENGTH:
        errors.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errors.append(
            regex_error(
                _LABEL_VALUE_ERR_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"
            )
        )
    return errors


def is_valid_path_segment_name(name: str) -> list[str]:
    """
    Check that C{name} can be a URL path segment / etcd key segment: not
    C{.} or C{..}, no C{/} or C{%}. Empty names and lengths are not checked.

    @return: the reasons it cannot, or an empty list.
    """
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return is_valid_path_segment_prefix(name)


def is_valid_path_segment_prefix(name: str) -> list[str]:
    """
    Check that C{name} can start a path segment (a C{generateName}): no C{/}
    or C{%}; C{.} and C{..} are fine since a suffix follows.

    @return: the reasons it cannot, or an empty list.
    """
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in name]


def validate_path_segment_name(name: str, prefix: bool) -> list[str]:
    """
    The name function k8s.io/apiserver's create and update paths use.

    @param name: a name or, with C{prefix}, a C{generateName}.
    @param prefix: whether a random suffix will be appended.
    """
    if prefix:
        return is_valid_path_segment_prefix(name)
    return is_valid_path_segment_name(name)


NameFunction = Callable[[str, bool], list[str]]


# ---------------------------------------------------------------------------
# Accessors over the decoded metadata (absent or null = Go's zero value)


def _text(meta: Mapping[str, Any], key: str) -> str:
    value = meta.get(key)
    return value if isinstance(value, str) else ""


def _integer(meta: Mapping[str, Any], key: str) -> int:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value


def _mapping(meta: Mapping[str, Any], key: str) -> Mapping[str, str]:
    value = meta.get(key)
    return value if isinstance(value, Mapping) else {}


def _sequence(meta: Mapping[str, Any], key: str) -> Sequence[Any]:
    value = meta.get(key)
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------------------
# Pieces of ObjectMeta


def validate_labels(labels: Mapping[str, str], path: str) -> list[FieldError]:
    """
    C{ValidateLabels}: keys are qualified names, values label values; both
    kinds of error are reported at C{path} itself.

    @param labels: the label map.
    @param path: its field path, e.g. C{metadata.labels}.
    """
    errors: list[FieldError] = []
    for key, value in labels.items():
        errors.extend(invalid(path, key, msg) for msg in is_qualified_name(key))
        errors.extend(invalid(path, value, msg) for msg in is_valid_label_value(value))
    return errors


def validate_annotations(annotations: Mapping[str, str], path: str) -> list[FieldError]:
    """
    C{ValidateAnnotations}: keys are qualified names regardless of case, and
    keys plus values total at most 256 KiB.

    @param annotations: the annotation map.
    @param path: its field path, e.g. C{metadata.annotations}.
    """
    errors: list[FieldError] = []
    total = 0
    for key, value in annotations.items():
        errors.extend(
            invalid(path, key, msg) for msg in is_qualified_name(_go_lower(key))
        )
        total += _byte_length(key) + _byte_length(value)
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES:
        errors.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT_BYTES))
    return errors


def _parse_group_version(text: str) -> tuple[str, str] | None:
    """
    C{schema.ParseGroupVersion}: (group, version), or C{None} on error.
    """
    if text in ("", "/"):
        return ("", "")
    slashes = text.count("/")
    if slashes == 0:
        return ("", text)
    if slashes == 1:
        group, version = text.split("/")
        return (group, version)
    return None


def _owner_reference_json(reference: Mapping[str, Any]) -> dict[str, Any]:
    """
    An owner reference with Go's field order and C{omitempty} rules.
    """
    rendered: dict[str, Any] = {
        key: _text(reference, key) for key in ("apiVersion", "kind", "name", "uid")
    }
    for key in ("controller", "blockOwnerDeletion"):
        if reference.get(key) is not None:
            rendered[key] = reference[key]
    return rendered


def _validate_owner_reference(
    reference: Mapping[str, Any], path: str
) -> list[FieldError]:
    errors = []
    api_version = _text(reference, "apiVersion")
    group_version = _parse_group_version(api_version)
    if not api_version:
        errors.append(required(f"{path}.apiVersion", "must not be empty"))
    elif group_version is None or not group_version[1]:
        errors.append(
            invalid(
                f"{path}.apiVersion",
                api_version,
                "must be <group>/<version> or <version>",
            )
        )
    for key in ("kind", "name", "uid"):
        if not _text(reference, key):
            errors.append(required(f"{path}.{key}", "must not be empty"))
    group, version = group_version or ("", "")
    kind = _text(reference, "kind")
    if (group, version, kind) in _BANNED_OWNERS:
        errors.append(
            invalid(
                path,
                GoRepr(go_json(_owner_reference_json(reference))),
                f"{group}/{version}, Kind={kind} is disallowed from being an owner",
            )
        )
    return errors


def validate_owner_references(
    references: Sequence[Mapping[str, Any]], path: str
) -> list[FieldError]:
    """
    C{ValidateOwnerReferences}: each reference names its owner fully, and at
    most one is the controller.

    @param references: the decoded C{ownerReferences} list.
    @param path: its field path, e.g. C{metadata.ownerReferences}.
    """
    errors = []
    first_controller = ""
    for index, reference in enumerate(references):
        errors.extend(_validate_owner_reference(reference, f"{path}[{index}]"))
        if reference.get("controller") is not True:
            continue
        controller = f"{_text(reference, 'kind')}/{_text(reference, 'name')}"
        if not first_controller:
            first_controller = controller
            continue
        rendered = GoRepr(go_json([_owner_reference_json(ref) for ref in references]))
        errors.append(
            invalid(
                path,
                rendered,
                'Only one reference can have Controller set to true. Found "true" '
                f"in references for {first_controller} and {controller}",
            )
        )
    return errors


def validate_finalizers(finalizers: Sequence[str], path: str) -> list[FieldError]:
    """
    C{ValidateFinalizers}: names are qualified names (reported at C{path},
    without an index), and C{orphan} and C{foregroundDeletion} exclude each
    other. Like Go, duplicates are not reported.

    @param finalizers: the finalizer names.
    @param path: their field path, e.g. C{metadata.finalizers}.
    """
    errors: list[FieldError] = []
    for finalizer in finalizers:
        errors.extend(
            invalid(path, finalizer, msg) for msg in is_qualified_name(finalizer)
        )
    if (
        FINALIZER_ORPHAN_DEPENDENTS in finalizers
        and FINALIZER_DELETE_DEPENDENTS in finalizers
    ):
        errors.append(
            invalid(
                path,
                GoRepr(go_json(list(finalizers))),
                f"finalizer {FINALIZER_ORPHAN_DEPENDENTS} and "
                f"{FINALIZER_DELETE_DEPENDENTS} cannot be both set",
            )
        )
    return errors


def validate_field_manager(manager: str, path: str) -> list[FieldError]:
    """
    C{ValidateFieldManager}: at most 128 bytes, printable characters only.

    @param manager: the field manager name.
    @param path: its field path.
    """
    errors = []
    if _byte_length(manager) > FIELD_MANAGER_MAX_LENGTH:
        errors.append(too_long(path, FIELD_MANAGER_MAX_LENGTH))
    offset = 0
    for char in manager:
        if not char.isprintable():
            errors.append(
                invalid(
                    path,
                    manager,
                    f"invalid character U+{ord(char):04X} (at position {offset})",
                )
            )
        offset += _byte_length(char)
    return errors


def validate_managed_fields(
    entries: Sequence[Mapping[str, Any]], path: str
) -> list[FieldError]:
    """
    C{ValidateManagedFields}: operation is Apply or Update, fieldsType (if
    set) is FieldsV1, a valid manager, a subresource of at most 256 bytes.

    @param entries: the decoded C{managedFields} list.
    @param path: its field path, e.g. C{metadata.managedFields}.
    """
    errors = []
    for index, entry in enumerate(entries):
        entry_path = f"{path}[{index}]"
        operation = _text(entry, "operation")
        if not operation:
            errors.append(required(f"{entry_path}.operation", "must not be empty"))
        elif operation not in _MANAGED_FIELDS_OPERATIONS:
            errors.append(
                not_supported(
                    f"{entry_path}.operation", operation, _MANAGED_FIELDS_OPERATIONS
                )
            )
        fields_type = _text(entry, "fieldsType")
        if fields_type and fields_type != "FieldsV1":
            errors.append(
                invalid(f"{entry_path}.fieldsType", fields_type, "must be `FieldsV1`")
            )
        errors.extend(
            validate_field_manager(_text(entry, "manager"), f"{entry_path}.manager")
        )
        if _byte_length(_text(entry, "subresource")) > MAX_SUBRESOURCE_NAME_LENGTH:
            errors.append(
                too_long(f"{entry_path}.subresource", MAX_SUBRESOURCE_NAME_LENGTH)
            )
    return errors


def _validate_nonnegative(value: int, path: str) -> list[FieldError]:
    if value < 0:
        return [invalid(path, value, IS_NEGATIVE_ERROR_MSG)]
    return []


# ---------------------------------------------------------------------------
# ObjectMeta on create


def validate_object_meta(
    meta: Mapping[str, Any],
    namespaced: bool,
    path: str = "metadata",
    name_function: NameFunction = validate_path_segment_name,
) -> list[FieldError]:
    """
    C{ValidateObjectMetaAccessor} with the apiserver's path-segment name rule.

    Name generation must already have happened: an empty name is an error
    even if C{generateName} is set.

    @param meta: the decoded C{metadata} object.
    @param namespaced: whether the kind lives in namespaces.
    @param path: the field path of C{meta}.
    @param name_function: checks a name (or, with C{prefix}, a generateName).
    @return: the errors, in Go's order.
    """
    errors: list[FieldError] = []
    generate_name = _text(meta, "generateName")
    if generate_name:
        errors.extend(
            invalid(f"{path}.generateName", generate_name, msg)
            for msg in name_function(generate_name, True)
        )
    name = _text(meta, "name")
    if not name:
        errors.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errors.extend(
            invalid(f"{path}.name", name, msg) for msg in name_function(name, False)
        )
    return errors + _validate_object_meta_common(meta, namespaced, path)


def _validate_object_meta_common(
    meta: Mapping[str, Any], namespaced: bool, path: str
) -> list[FieldError]:
    errors = _validate_namespace(
        _text(meta, "namespace"), namespaced, f"{path}.namespace"
    )
    errors += _validate_nonnegative(_integer(meta, "generation"), f"{path}.generation")
    errors += validate_labels(_mapping(meta, "labels"), f"{path}.labels")
    errors += validate_annotations(_mapping(meta, "annotations"), f"{path}.annotations")
    errors += validate_owner_references(
        _sequence(meta, "ownerReferences"), f"{path}.ownerReferences"
    )
    errors += validate_finalizers(_sequence(meta, "finalizers"), f"{path}.finalizers")
    errors += validate_managed_fields(
        _sequence(meta, "managedFields"), f"{path}.managedFields"
    )
    return errors


def _validate_namespace(
    namespace: str, namespaced: bool, path: str
) -> list[FieldError]:
    if not namespaced:
        if namespace:
            return [forbidden(path, "not allowed on this type")]
        return []
    if not namespace:
        return [required(path)]
    return [invalid(path, namespace, msg) for msg in is_dns1123_label(namespace)]


# ---------------------------------------------------------------------------
# ObjectMeta on update


def validate_no_new_finalizers(
    new_finalizers: Sequence[str], old_finalizers: Sequence[str], path: str
) -> list[FieldError]:
    """
    C{ValidateNoNewFinalizers}: forbid finalizers absent from the old list.

    @param new_finalizers: the updated list.
    @param old_finalizers: the stored list.
    @param path: the field path, e.g. C{metadata.finalizers}.
    """
    extra = sorted(set(new_finalizers) - set(old_finalizers))
    if not extra:
        return []
    return [
        forbidden(
            path,
            "no new finalizers can be added if the object is being deleted, "
            f"found new finalizers {_go_string_slice(extra)}",
        )
    ]


def validate_immutable_field(new: Any, old: Any, path: str) -> list[FieldError]:
    """
    C{ValidateImmutableField}: C{new} must equal C{old}.

    @param new: the updated value, also the reported bad value.
    @param old: the stored value.
    @param path: the field path.
    """
    if new == old:
        return []
    return [invalid(path, new, FIELD_IMMUTABLE_ERROR_MSG)]


def _parse_time(text: Any) -> datetime.datetime | str | None:
    """
    A C{metav1.Time} for comparison: C{None} when zero, an aware datetime
    when parseable, else the raw text.
    """
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is None:
        return text
    return parsed


def _time_json(value: datetime.datetime | str | None) -> GoRepr:
    """
    The bad value of a time error, as C{metav1.Time.MarshalJSON} writes it.
    """
    if value is None:
        return GoRepr("null")
    if isinstance(value, str):
        return GoRepr(go_json(value))
    utc = value.astimezone(datetime.UTC)
    return GoRepr(go_json(utc.strftime("%Y-%m-%dT%H:%M:%SZ")))


def _validate_immutable_time(new: Any, old: Any, path: str) -> list[FieldError]:
    new_time, old_time = _parse_time(new), _parse_time(old)
    if new_time == old_time:
        return []
    return [invalid(path, _time_json(new_time), FIELD_IMMUTABLE_ERROR_MSG)]


def _grace_period(meta: Mapping[str, Any]) -> int | None:
    value = meta.get("deletionGracePeriodSeconds")
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def validate_object_meta_update(
    new_meta: Mapping[str, Any], old_meta: Mapping[str, Any], path: str = "metadata"
) -> list[FieldError]:
    """
    C{ValidateObjectMetaAccessorUpdate}: what may not change on update,
    plus labels, annotations, owner references and managed fields of the
    new metadata. It includes Go's "resourceVersion must be specified"
    check (with the bad value C{""}).

    @param new_meta: the decoded updated C{metadata}.
    @param old_meta: the decoded stored C{metadata}.
    @param path: the field path of the metadata.
    @return: the errors, in Go's order.
    """
    errors: list[FieldError] = []
    if _parse_time(old_meta.get("deletionTimestamp")) is not None:
        errors += validate_no_new_finalizers(
            _sequence(new_meta, "finalizers"),
            _sequence(old_meta, "finalizers"),
            f"{path}.finalizers",
        )
    if not _text(new_meta, "resourceVersion"):
        errors.append(
            invalid(f"{path}.resourceVersion", "", "must be specified for an update")
        )
    errors += _validate_generation_update(new_meta, old_meta, f"{path}.generation")
    for key in ("name", "namespace", "uid"):
        errors += validate_immutable_field(
            _text(new_meta, key), _text(old_meta, key), f"{path}.{key}"
        )
    for key in ("creationTimestamp", "deletionTimestamp"):
        errors += _validate_immutable_time(
            new_meta.get(key), old_meta.get(key), f"{path}.{key}"
        )
    errors += validate_immutable_field(
        _grace_period(new_meta),
        _grace_period(old_meta),
        f"{path}.deletionGracePeriodSeconds",
    )
    errors += validate_labels(_mapping(new_meta, "labels"), f"{path}.labels")
    errors += validate_annotations(
        _mapping(new_meta, "annotations"), f"{path}.annotations"
    )
    errors += validate_owner_references(
        _sequence(new_meta, "ownerReferences"), f"{path}.ownerReferences"
    )
    errors += validate_managed_fields(
        _sequence(new_meta, "managedFields"), f"{path}.managedFields"
    )
    return errors


def _validate_generation_update(
    new_meta: Mapping[str, Any], old_meta: Mapping[str, Any], path: str
) -> list[FieldError]:
    new_generation = _integer(new_meta, "generation")
    errors = _validate_nonnegative(new_generation, path)
    if new_generation < _integer(old_meta, "generation"):
        errors.append(invalid(path, new_generation, "must not be decremented"))
    return errors


def validate_common_update(
    new_meta: Mapping[str, Any],
    old_meta: Mapping[str, Any],
    namespaced: bool,
    path: str = "metadata",
) -> list[FieldError]:
    """
    What k8s.io/apiserver's C{rest.BeforeUpdate} runs on metadata
    (C{validateCommonFields}): the create checks on the new metadata, then
    the update checks.

    @param new_meta: the decoded updated C{metadata}.
    @param old_meta: the decoded stored C{metadata}.
    @param namespaced: whether the kind lives in namespaces.
    @param path: the field path of the metadata.
    """
    return validate_object_meta(
        new_meta, namespaced, path
    ) + validate_object_meta_update(new_meta, old_meta, path)
