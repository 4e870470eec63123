# -*- test-case-name: tests.test_fieldmanager -*-
"""
C{metadata.managedFields} and server-side apply (k8s.io/apiserver's
C{fieldmanager} over structured-merge-diff's C{merge.Updater}).

Every write records which manager set which fields.  An I{Update} (create,
update, non-apply patch) gives its manager the fields it added or changed
and takes them from everybody else.  An I{Apply} merges a manager's whole
intended configuration into the live object: fields another manager owns
and that the configuration would change are conflicts (409) unless forced;
fields the manager applied before and has now dropped are removed when
nobody else owns them.

Field sets are computed in each entry's own API version: the live and new
objects are converted to that version before comparing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from wardled import apierrors
from wardled.apis.jsoncopy import deep_copy
from wardled.apis.schema import DecodeContext
from wardled.apis.scheme import ResourceType
from wardled.registry import fieldpaths
from wardled.registry.fieldpaths import Comparison, FieldSet

Object = dict[str, Any]
ManagerKey = tuple[str, str, str]

APPLY = "Apply"
UPDATE = "Update"
FIELDS_V1 = "FieldsV1"
FIELD_MANAGER_MAX_LENGTH = 128
MANAGED_FIELDS_MUST_BE_NIL = "metadata.managedFields must be nil"


@attrs.frozen
class ManagedEntry:
    """
    One C{managedFields} entry, decoded.
    """

    manager: str
    operation: str
    api_version: str
    time: str | None
    fields: FieldSet

    @property
    def key(self) -> ManagerKey:
        """
        What identifies the entry (C{BuildManagerIdentifier}): Update
        entries are per API version, Apply entries are not.
        """
        version = self.api_version if self.operation == UPDATE else ""
        return (self.manager, self.operation, version)

    def describe(self) -> str:
        """
        The manager as conflict messages name it (C{printManager}).
        """
        quoted = json.dumps(self.manager, ensure_ascii=False)
        if self.operation == UPDATE:
            return f"{quoted} using {self.api_version}"
        return quoted

    def to_json(self) -> Object:
        """
        The entry as Go encodes it (empty strings omitted).
        """
        entry: Object = {
            key: value
            for key, value in (
                ("manager", self.manager),
                ("operation", self.operation),
                ("apiVersion", self.api_version),
            )
            if value
        }
        if self.time is not None:
            entry["time"] = self.time
        entry["fieldsType"] = FIELDS_V1
        entry["fieldsV1"] = fieldpaths.to_fields_v1(self.fields)
        return entry


Managers = dict[ManagerKey, ManagedEntry]


def decode_managed_fields(entries: Any) -> Managers:
    """
    The decodable entries of a C{managedFields} list, by manager key.
    Entries for subresources or in another format are left out.
    """
    managers: Managers = {}
    if not isinstance(entries, list):
        return managers
    for raw in entries:
        entry = _decode_entry(raw)
        if entry is not None:
            managers[entry.key] = entry
    return managers


def _decode_entry(raw: Any) -> ManagedEntry | None:
    if not isinstance(raw, Mapping) or raw.get("subresource"):
        return None
    if raw.get("fieldsType", FIELDS_V1) != FIELDS_V1:
        return None
    try:
        fields = fieldpaths.from_fields_v1(raw.get("fieldsV1") or {})
    except (ValueError, TypeError):
        return None
    return ManagedEntry(
        manager=str(raw.get("manager", "")),
        operation=str(raw.get("operation", "")),
        api_version=str(raw.get("apiVersion", "")),
        time=raw.get("time"),
        fields=fields,
    )


def encode_managed_fields(managers: Managers) -> list[Object]:
    """
    The C{managedFields} list, sorted as the reference sorts it: by
    operation, time, manager, then API version.
    """
    ordered = sorted(
        managers.values(),
        key=lambda e: (e.operation, e.time or "", e.manager, e.api_version),
    )
    return [entry.to_json() for entry in ordered if entry.fields]


def manager_from_user_agent(user_agent: str | None) -> str:
    """
    The default field manager: the User-Agent up to its first C{/}, printable
    characters only, at most 128 of them (C{prefixFromUserAgent}).
    """
    prefix = (user_agent or "").split("/")[0]
    printable = [char for char in prefix if char.isprintable()]
    return "".join(printable[:FIELD_MANAGER_MAX_LENGTH])


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _without_times(managers: Managers) -> dict[ManagerKey, tuple[str, FieldSet]]:
    return {key: (entry.api_version, entry.fields) for key, entry in managers.items()}


def conflict_error(conflicts: list[tuple[ManagedEntry, fieldpaths.Path]]) -> apierrors.StatusError:
    """
    The 409 an apply gets for fields other managers own (C{NewConflictError}).
    """
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f"conflict with {entry.describe()}",
            "field": fieldpaths.path_string(path),
        }
        for entry, path in conflicts
    ]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = (
            f"Apply failed with 1 conflict: conflict with {entry.describe()}: "
            f"{fieldpaths.path_string(path)}"
        )
    else:
        lines: list[str] = []
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(entry.describe(), []).append(fieldpaths.path_string(path))
        for name in sorted(by_manager):
            lines.append(f"conflicts with {name}:")
            lines.extend(f"- {text}" for text in by_manager[name])
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return apierrors.StatusError(409, "Conflict", message, {"causes": causes})


@attrs.frozen
class FieldManager:
    """
    Managed-fields bookkeeping for one resource.

    @ivar now: seconds since the epoch (the reactor's clock).
    """

    resource: ResourceType
    now: Callable[[], float]

    # Versions --------------------------------------------------------------

    def _version_of(self, api_version: str, fallback: str) -> str:
        group, _, version = api_version.rpartition("/")
        if group == self.resource.group and version in self.resource.versions:
            return version
        return fallback

    def _versioned(self, version: str, internal: Object | None, shared: bool = False) -> Object:
        if internal is None:
            return {}
        return self.resource.encode(version, internal, shared=shared)

    def _compare(self, version: str, live: Object | None, new: Object) -> Comparison:
        schema = self.resource.versions[version].schema
        return fieldpaths.compare(
            schema,
            self._versioned(version, live, shared=True),
            self._versioned(version, new, shared=True),
        )

    # Update ----------------------------------------------------------------

    def update(self, live: Object | None, new: Object, manager: str, version: str) -> Object:
        """
        Record an Update by C{manager} turning C{live} into C{new}.

        @param live: the internal object before the write (None on create).
        @param new: the internal object the client sent; its
            C{managedFields}, when present, replace the live ones.
        @param version: the request's version (C{v1beta1}).
        @return: a copy of C{new} with C{metadata.managedFields} set.
        """
        new = deep_copy(new)
        metadata = new.setdefault("metadata", {})
        managers = decode_managed_fields(metadata.get("managedFields"))
        if not managers and live is not None:
            managers = decode_managed_fields(live.get("metadata", {}).get("managedFields"))
        before = dict(managers)
        comparisons: dict[str, Comparison] = {}
        key = (manager, UPDATE, self.resource.api_version(version))
        self._take_from_others(managers, key, live, new, version, comparisons, None)
        mine = comparisons[version]
        previous = managers.get(key)
        owned = previous.fields if previous is not None else frozenset()
        managers[key] = ManagedEntry(
            manager,
            UPDATE,
            self.resource.api_version(version),
            _rfc3339(self.now()),
            (owned | mine.changed) - mine.removed,
        )
        self._set_managed_fields(new, live, managers, before, mine)
        return new

    def _take_from_others(
        self,
        managers: Managers,
        acting: ManagerKey,
        live: Object | None,
        new: Object,
        version: str,
        comparisons: dict[str, Comparison],
        conflicts: list[tuple[ManagedEntry, fieldpaths.Path]] | None,
    ) -> None:
        """
        Take what C{new} changes away from every manager but C{acting}
        (C{Updater.update}); with C{conflicts} given, collect what would be
        taken instead of taking it.
        """
        comparisons[version] = self._compare(version, live, new)
        for key, entry in list(managers.items()):
            if key == acting:
                continue
            entry_version = self._version_of(entry.api_version, version)
            if entry_version not in comparisons:
                comparisons[entry_version] = self._compare(entry_version, live, new)
            comparison = comparisons[entry_version]
            clashes = entry.fields & comparison.changed
            if conflicts is not None and clashes:
                conflicts.extend((entry, path) for path in sorted(clashes))
            remaining = entry.fields - clashes - comparison.removed
            if remaining:
                managers[key] = attrs.evolve(entry, fields=remaining)
            else:
                del managers[key]

    def _set_managed_fields(
        self,
        new: Object,
        live: Object | None,
        managers: Managers,
        before: Managers,
        comparison: Comparison,
    ) -> None:
        """
        Store C{managers} in C{new}; a write that would only move timestamps
        keeps the live entries, so the store still sees a no-op.
        """
        metadata = new.setdefault("metadata", {})
        live_entries = (live or {}).get("metadata", {}).get("managedFields")
        managers = {key: entry for key, entry in managers.items() if entry.fields}
        if (
            live is not None
            and comparison.is_empty()
            and _without_times(managers) == _without_times(before)
        ):
            encoded = deep_copy(live_entries) if live_entries else []
        else:
            encoded = encode_managed_fields(managers)
        if encoded:
            metadata["managedFields"] = encoded
        else:
            metadata.pop("managedFields", None)

    # Apply -----------------------------------------------------------------

    def apply(
        self,
        live: Object | None,
        config: Object,
        manager: str,
        version: str,
        force: bool,
    ) -> Object:
        """
        Server-side apply of C{config} by C{manager}.

        @param live: the internal live object, or None when the apply creates.
        @param config: the applied configuration as parsed, in C{version}.
        @return: the new internal object, with C{managedFields}.
        @raise apierrors.StatusError: 400 for a configuration that is not an
            object of this kind or that sets C{managedFields}; 409 for
            conflicts when not forced.
        """
        self.resource.decode_request(version, config)
        # "metadata: null" decodes (Go reads it as empty): hence "or {}".
        if (config.get("metadata") or {}).get("managedFields") is not None:
            raise apierrors.bad_request(MANAGED_FIELDS_MUST_BE_NIL)
        schema = self.resource.versions[version].schema
        typed_config = schema.decode_root(
            {k: v for k, v in config.items() if k not in ("apiVersion", "kind")},
            DecodeContext(),
        )
        live_versioned = self._versioned(version, live)
        managers = decode_managed_fields(
            (live or {}).get("metadata", {}).get("managedFields")
        )
        before = dict(managers)
        key = (manager, APPLY, "")
        previous = managers.get(key)
        applied = fieldpaths.field_set(schema, typed_config)
        managers[key] = ManagedEntry(
            manager, APPLY, self.resource.api_version(version), _rfc3339(self.now()), applied
        )
        merged = fieldpaths.merge(schema, live_versioned, typed_config)
        if previous is not None:
            self._prune(merged, previous.fields, managers)
        merged["apiVersion"] = self.resource.api_version(version)
        merged["kind"] = self.resource.kind
        new = self.resource.decode_request(version, merged).internal
        conflicts: list[tuple[ManagedEntry, fieldpaths.Path]] = []
        comparisons: dict[str, Comparison] = {}
        self._take_from_others(managers, key, live, new, version, comparisons, conflicts)
        if conflicts and not force:
            raise conflict_error(conflicts)
        self._set_managed_fields(new, live, managers, before, comparisons[version])
        return new

    def _prune(self, merged: Object, last_applied: FieldSet, managers: Managers) -> None:
        """
        Remove what the manager applied last time and no longer does, unless
        some manager (the applier included) still owns it.
        """
        owned: FieldSet = frozenset().union(*(entry.fields for entry in managers.values()))
        dropped = [
            path
            for path in last_applied
            if not fieldpaths.owned_somewhere(path, owned)
        ]
        fieldpaths.remove_paths(merged, dropped)
