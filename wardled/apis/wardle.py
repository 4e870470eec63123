# -*- test-case-name: tests.test_types -*-
"""
The wardle.example.com API group: Flunder (v1alpha1, v1beta1) and Fischer
(v1alpha1), declared once.

Schemas, defaults, conversion and create validation follow the reference's
C{pkg/apis/wardle} packages.  The internal form of a Flunder has the v1beta1
spec (C{flunderReference}, C{fischerReference}, C{referenceType}); a
Fischer's internal form is its v1alpha1 form.
"""

from __future__ import annotations

from typing import Any

from wardled.apis import field
from wardled.apis.field import FieldError
from wardled.apis.jsoncopy import deep_copy
from wardled.apis.meta import OBJECT_META
from wardled.apis.schema import Field, List, String, Struct
from wardled.apis.scheme import ResourceType, Version

GROUP = "wardle.example.com"

FLUNDER = "Flunder"
FISCHER = "Fischer"
REFERENCE_TYPES = (FLUNDER, FISCHER)

# The reference's prerelease-lifecycle tags: deprecated in 1.3, removed in 1.10.
V1ALPHA1_LIFECYCLE = ("1.3", "1.10")

Object = dict[str, Any]

_METADATA = Field(
    "metadata",
    OBJECT_META,
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/"
    "api-conventions.md#metadata",
)
_REFERENCE_TYPE_DOC = "The type of the reference."
_STATUS = Field(
    "status", Struct(name="FlunderStatus", doc="FlunderStatus is the status of a Flunder.")
)
_FLUNDER_DOC = "Flunder is an example type with a spec and a status."
_FLUNDER_SPEC_DOC = "FlunderSpec is the specification of a Flunder."

FLUNDER_V1ALPHA1 = Struct(
    name="Flunder",
    doc=_FLUNDER_DOC,
    fields=(
        _METADATA,
        Field(
            "spec",
            Struct(
                name="FlunderSpec",
                doc=_FLUNDER_SPEC_DOC,
                fields=(
                    Field(
                        "reference",
                        String(),
                        "A name of another flunder or fischer, depending on the "
                        "reference type.",
                    ),
                    Field(
                        "referenceType",
                        String(enum=REFERENCE_TYPES, go_type="ReferenceType"),
                        _REFERENCE_TYPE_DOC,
                        pointer=True,
                    ),
                ),
            ),
        ),
        _STATUS,
    ),
)

FLUNDER_V1BETA1 = Struct(
    name="Flunder",
    doc=_FLUNDER_DOC,
    fields=(
        _METADATA,
        Field(
            "spec",
            Struct(
                name="FlunderSpec",
                doc=_FLUNDER_SPEC_DOC,
                fields=(
                    Field(
                        "flunderReference",
                        String(),
                        "A name of another flunder, mutually exclusive to the "
                        "FischerReference.",
                    ),
                    Field(
                        "fischerReference",
                        String(),
                        "A name of a fischer, mutually exclusive to the "
                        "FlunderReference.",
                    ),
                    Field(
                        "referenceType",
                        String(enum=REFERENCE_TYPES, go_type="ReferenceType"),
                        _REFERENCE_TYPE_DOC,
                    ),
                ),
            ),
        ),
        _STATUS,
    ),
)

FISCHER_V1ALPHA1 = Struct(
    name="Fischer",
    doc="Fischer is an example type with a list of disallowed Flunder.Names",
    fields=(
        _METADATA,
        Field(
            "disallowedFlunders",
            List(list_type="atomic"),
            "disallowedFlunders holds a list of Flunder.Names that are disallowed.",
        ),
    ),
)


# Defaults ----------------------------------------------------------------


def default_flunder_v1alpha1(flunder: Object) -> None:
    """
    SetDefaults_FlunderSpec: a reference without a type refers to a Flunder.
    """
    spec = flunder.setdefault("spec", {})
    if not spec.get("referenceType") and spec.get("reference"):
        spec["referenceType"] = FLUNDER


# Conversion --------------------------------------------------------------


def _with_spec(obj: Object, spec: Object, owned: bool) -> Object:
    """
    C{obj} with C{spec} replaced, keeping the key order: a copy, or when
    the caller hands C{obj} over (C{owned}) a new top level sharing its
    other parts.
    """
    copy = _share if owned else deep_copy
    converted = {key: copy(value) for key, value in obj.items() if key != "spec"}
    result = {"metadata": converted.pop("metadata", {}), "spec": spec}
    result.update(converted)
    result.setdefault("status", {})
    return result


def _share(value: Any) -> Any:
    return value


def flunder_v1alpha1_to_internal(flunder: Object, owned: bool = False) -> Object:
    """
    One C{reference} plus its type becomes the matching typed reference; an
    unknown type drops both, as the reference's hand-written conversion does.
    """
    spec = flunder.get("spec", {})
    reference_type = spec.get("referenceType")
    internal_spec: Object = {}
    if reference_type == FLUNDER:
        internal_spec = _spec(spec.get("reference", ""), "", FLUNDER)
    elif reference_type == FISCHER:
        internal_spec = _spec("", spec.get("reference", ""), FISCHER)
    return _with_spec(flunder, internal_spec, owned)


def flunder_internal_to_v1alpha1(flunder: Object, owned: bool = False) -> Object:
    spec = flunder.get("spec", {})
    reference_type = spec.get("referenceType", "")
    versioned: Object = {}
    if reference_type == FLUNDER:
        versioned = {"reference": spec.get("flunderReference", ""), "referenceType": FLUNDER}
    elif reference_type == FISCHER:
        versioned = {"reference": spec.get("fischerReference", ""), "referenceType": FISCHER}
    if not versioned.get("reference"):
        versioned.pop("reference", None)
    return _with_spec(flunder, versioned, owned)


def _spec(flunder_reference: str, fischer_reference: str, reference_type: str) -> Object:
    spec = {
        "flunderReference": flunder_reference,
        "fischerReference": fischer_reference,
        "referenceType": reference_type,
    }
    return {key: value for key, value in spec.items() if value}


def identity(obj: Object, owned: bool = False) -> Object:
    """
    Conversion between versions with the same shape: a copy, or C{obj}
    itself when the caller hands it over.
    """
    return obj if owned else deep_copy(obj)


# Validation --------------------------------------------------------------


def validate_flunder(flunder: Object) -> list[FieldError]:
    """
    ValidateFlunder: the spec rules, on create only, with the v1beta1 field
    names in the paths whatever version the request used.
    """
    spec = flunder.get("spec", {})
    flunder_ref = spec.get("flunderReference", "")
    fischer_ref = spec.get("fischerReference", "")
    reference_type = spec.get("referenceType", "")
    errors: list[FieldError] = []
    if flunder_ref and fischer_ref:
        errors.append(
            field.invalid(
                "spec.fischerReference",
                fischer_ref,
                "cannot be set with flunderReference at the same time",
            )
        )
    elif flunder_ref and reference_type != FLUNDER:
        errors.append(
            field.invalid(
                "spec.flunderReference",
                flunder_ref,
                "cannot be set if referenceType is not Flunder",
            )
        )
    elif fischer_ref and reference_type != FISCHER:
        errors.append(
            field.invalid(
                "spec.fischerReference",
                fischer_ref,
                "cannot be set if referenceType is not Fischer",
            )
        )
    elif not fischer_ref and reference_type == FISCHER:
        errors.append(
            field.invalid(
                "spec.fischerReference",
                fischer_ref,
                "cannot be empty if referenceType is Fischer",
            )
        )
    elif not flunder_ref and reference_type == FLUNDER:
        errors.append(
            field.invalid(
                "spec.flunderReference",
                flunder_ref,
                "cannot be empty if referenceType is Flunder",
            )
        )
    if reference_type and reference_type not in REFERENCE_TYPES:
        errors.append(
            field.invalid(
                "spec.referenceType", reference_type, "must be Flunder or Fischer"
            )
        )
    return errors


# The resources -----------------------------------------------------------

FLUNDERS = ResourceType(
    group=GROUP,
    plural="flunders",
    singular="flunder",
    kind=FLUNDER,
    namespaced=True,
    versions={
        "v1beta1": Version("v1beta1", FLUNDER_V1BETA1, identity, identity),
        "v1alpha1": Version(
            "v1alpha1",
            FLUNDER_V1ALPHA1,
            flunder_v1alpha1_to_internal,
            flunder_internal_to_v1alpha1,
            default=default_flunder_v1alpha1,
            deprecated_in=V1ALPHA1_LIFECYCLE,
        ),
    },
    storage_version="v1alpha1",
)

FISCHERS = ResourceType(
    group=GROUP,
    plural="fischers",
    singular="fischer",
    kind=FISCHER,
    namespaced=False,
    versions={
        "v1alpha1": Version(
            "v1alpha1",
            FISCHER_V1ALPHA1,
            identity,
            identity,
            deprecated_in=V1ALPHA1_LIFECYCLE,
        ),
    },
    storage_version="v1alpha1",
)

# Served group versions, most preferred first (v1beta1 > v1alpha1), and the
# resources each serves.
RESOURCES = (FLUNDERS, FISCHERS)
GROUP_VERSIONS = ("v1beta1", "v1alpha1")


def resources_in(version: str) -> list[ResourceType]:
    """
    The resources served in C{version}, sorted by name as discovery lists them.
    """
    return sorted(
        (r for r in RESOURCES if version in r.versions), key=lambda r: r.plural
    )


def resource_for(version: str, plural: str) -> ResourceType | None:
    for resource in RESOURCES:
        if resource.plural == plural and version in resource.versions:
            return resource
    return None
