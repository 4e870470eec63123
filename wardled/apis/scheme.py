# -*- test-case-name: tests.test_types -*-
"""
Resource types and their versions: decoding, defaulting, conversion, storage.

A L{ResourceType} is the one declaration of a resource (its names, scope,
served versions and storage version).  Each L{Version} carries the schema of
its kind plus the functions that default it and convert it to and from the
internal form.  The internal form never leaves the server: handlers decode a
request into it, the registry works on it, and it is encoded to the storage
version for etcd and to the requested version for responses.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from wardled import apierrors
from wardled.apierrors import GroupKind, GroupResource
from wardled.apis.meta import LIST_META, OBJECT_META
from wardled.apis.schema import (
    DecodeContext,
    DecodeError,
    Field,
    List,
    Struct,
    go_json_type,
)

Object = dict[str, Any]


def _no_defaults(obj: Object) -> None:
    """Versions without defaulters."""


class Conversion(Protocol):
    """
    Converts an object between a version and the internal form.

    The result shares nothing with C{obj} (callers may change either),
    unless C{owned}: the caller hands C{obj} over (a fresh decode it will
    not use again) and the result may reuse its parts instead of copying.
    """

    def __call__(self, obj: Object, /, owned: bool = False) -> Object: ...


@attrs.frozen
class Version:
    """
    One served version of a resource's kind.

    @ivar schema: the kind's schema in this version (without apiVersion/kind).
    @ivar default: fills defaults in place, on request bodies and on objects
        read back from storage (the reference defaults whenever it decodes).
    @ivar to_internal: converts a decoded, defaulted object to the internal form.
    @ivar from_internal: converts an internal object to this version.
    @ivar deprecated_in: the release that deprecated the version and the one
        that removes it, for the C{Warning} header (the reference's
        prerelease-lifecycle tags), or None.
    """

    name: str
    schema: Struct
    to_internal: Conversion
    from_internal: Conversion
    default: Callable[[Object], None] = _no_defaults
    deprecated_in: tuple[str, str] | None = None


@attrs.frozen
class DecodedObject:
    """
    A request body turned into an internal object.

    @ivar unknown_fields: paths of fields the schema does not know (pruned).
    """

    internal: Object
    unknown_fields: list[str]


@attrs.frozen
class ResourceType:
    """
    The declaration of one resource of the API group.

    @ivar versions: served versions, most preferred first.
    """

    group: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    versions: Mapping[str, Version]
    storage_version: str

    @property
    def group_resource(self) -> GroupResource:
        return GroupResource(self.group, self.plural)

    @property
    def group_kind(self) -> GroupKind:
        return GroupKind(self.group, self.kind)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}"

    def storage_version_hash(self) -> str:
        """
        Discovery's C{storageVersionHash}: the first 8 bytes of the SHA-256 of
        the storage group/version/kind, base64-encoded.
        """
        text = f"{self.group}/{self.storage_version}/{self.kind}"
        return base64.b64encode(hashlib.sha256(text.encode()).digest()[:8]).decode()

    def deprecation_warning(self, version: str) -> str | None:
        """
        The C{Warning} header text for requests to a deprecated version.
        """
        lifecycle = self.versions[version].deprecated_in
        if lifecycle is None:
            return None
        deprecated, removed = lifecycle
        return (
            f"{self.api_version(version)} {self.kind} is deprecated in "
            f"v{deprecated}+, unavailable in v{removed}+"
        )

    # Decoding and encoding ------------------------------------------------

    def decode_request(self, version: str, body: Any) -> DecodedObject:
        """
        Turn a parsed request body sent to C{version}'s endpoint into an
        internal object, as the reference's decoder does.

        @raise apierrors.StatusError: 400 for a body of another group,
            version or kind, or with a wrongly typed field.
        """
        if not isinstance(body, dict):
            raise apierrors.bad_request(
                "couldn't get version/kind; json parse error: json: cannot unmarshal "
                f"{go_json_type(body)} into Go value of type struct "
                '{ APIVersion string "json:\\"apiVersion,omitempty\\""; '
                'Kind string "json:\\"kind,omitempty\\"" }'
            )
        api_version = body.get("apiVersion") or self.api_version(version)
        kind = body.get("kind") or self.kind
        if not isinstance(api_version, str) or not isinstance(kind, str):
            raise apierrors.bad_request(
                "couldn't get version/kind; json parse error: json: cannot unmarshal "
                "non-string apiVersion or kind"
            )
        body_version = self._check_type(version, api_version, kind)
        served = self.versions[body_version]
        ctx = DecodeContext()
        try:
            decoded = served.schema.decode_root(_without_type(body), ctx)
        except DecodeError as error:
            raise apierrors.bad_request(
                f'{kind} in version "{body_version}" cannot be handled as a '
                f"{self.kind}: {error}"
            ) from None
        served.default(decoded)
        return DecodedObject(served.to_internal(decoded), ctx.unknown_fields)

    def _check_type(self, version: str, api_version: str, kind: str) -> str:
        group, _, body_version = api_version.rpartition("/")
        if group != self.group or body_version not in self.versions:
            raise apierrors.bad_request(
                f'{kind} in version "{body_version}" cannot be handled as a '
                f'{self.kind}: no kind "{kind}" is registered for version '
                f'"{api_version}" in scheme "wardled"'
            )
        if kind != self.kind:
            raise apierrors.bad_request(
                f'{kind} in version "{body_version}" cannot be handled as a '
                f'{self.kind}: no kind "{kind}" is registered for the '
                f'"{self.plural}" endpoint'
            )
        if body_version != version:
            raise apierrors.bad_request(
                f"the API version in the data ({api_version}) does not match the "
                f"expected API version ({self.api_version(version)})"
            )
        return body_version

    def encode(self, version: str, internal: Object, *, shared: bool = False) -> Object:
        """
        The object as C{version} shows it, with C{apiVersion} and C{kind}.

        @param shared: the result is only read (encoded or compared at
            once, while C{internal} does not change), so it may share
            C{internal}'s parts instead of copying them.
        """
        return {
            "kind": self.kind,
            "apiVersion": self.api_version(version),
            **self.versions[version].from_internal(internal, owned=shared),
        }

    def encode_item(self, version: str, internal: Object, *, shared: bool = False) -> Object:
        """
        The object as a list item: the reference's typed lists give items no
        C{kind}/C{apiVersion}.  C{shared}: see L{encode}.
        """
        return self.versions[version].from_internal(internal, owned=shared)

    def encode_list(
        self, version: str, items: list[Object], list_meta: Object, *, shared: bool = False
    ) -> Object:
        """
        The C{<Kind>List} of C{items}.  C{shared}: see L{encode}.
        """
        return {
            "kind": self.list_kind,
            "apiVersion": self.api_version(version),
            "metadata": list_meta,
            "items": [self.encode_item(version, item, shared=shared) for item in items],
        }

    def list_schema(self, version: str) -> Struct:
        """
        The C{<Kind>List} schema of C{version} (for OpenAPI).
        """
        return Struct(
            name=self.list_kind,
            doc=f"{self.list_kind} is a list of {self.kind} objects.",
            fields=(
                Field("metadata", LIST_META),
                Field(
                    "items",
                    List(items=self.versions[version].schema, go_type=f"[]{self.kind}"),
                    keep_empty=True,
                    required=True,
                ),
            ),
        )

    # Storage ---------------------------------------------------------------

    def to_storage(self, internal: Object) -> bytes:
        """
        The bytes stored in etcd: storage-version JSON without
        C{resourceVersion} and C{selfLink}, as the reference writes them.
        """
        stored = self.encode(self.storage_version, internal, shared=True)
        metadata = dict(stored.get("metadata", {}))
        metadata.pop("resourceVersion", None)
        metadata.pop("selfLink", None)
        stored["metadata"] = metadata
        return json.dumps(stored, separators=(",", ":"), ensure_ascii=False).encode()

    def from_storage(self, data: bytes, mod_revision: int) -> Object:
        """
        An internal object from stored bytes; its resourceVersion is the key's
        mod_revision.
        """
        stored = json.loads(data)
        served = self.versions[self.storage_version]
        decoded = served.schema.decode_root(_without_type(stored), DecodeContext())
        served.default(decoded)
        internal = served.to_internal(decoded, owned=True)  # both are ours alone
        set_resource_version(internal, mod_revision)
        return internal


def set_resource_version(obj: Object, revision: int) -> None:
    """
    Put C{revision} into the object's metadata, keeping Go's key order.
    """
    metadata = obj.setdefault("metadata", {})
    metadata["resourceVersion"] = str(revision)
    order_metadata(metadata)


_META_ORDER = [f.name for f in OBJECT_META.fields]


def order_metadata(metadata: Object) -> None:
    """
    Put metadata keys back in Go's field order after the server set some.
    """
    ordered = {key: metadata[key] for key in _META_ORDER if key in metadata}
    extra = {key: value for key, value in metadata.items() if key not in ordered}
    metadata.clear()
    metadata.update(ordered)
    metadata.update(extra)


def _without_type(body: Object) -> Object:
    return {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
