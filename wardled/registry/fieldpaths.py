# -*- test-case-name: tests.test_fieldmanager -*-
"""
Field sets for server-side apply (sigs.k8s.io/structured-merge-diff's
C{fieldpath} and C{typed} packages, as far as wardled's types need them).

A field path is a tuple of FieldsV1 keys (C{"f:spec"}, C{"f:flunderReference"});
a field set is a frozenset of paths, each one a I{member}: a field somebody
sets.  The paths an object sets are found by walking the type's declared
schema (L{wardled.apis.schema}), so there is no second copy of the types:

  - a struct is a set of named fields; the struct itself is not a member;
  - a map (labels, annotations) is a member (FieldsV1's C{"."}) and so is
    each of its keys;
  - lists are atomic (a single leaf), as structured-merge-diff treats lists
    without a declared C{x-kubernetes-list-type};
  - scalars are leaves.

Empty structs (Flunder's C{"status":{}}) own nothing: the decoder fills them
in on every object, so owning them would only produce noise.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from wardled.apis.jsoncopy import deep_copy
from wardled.apis.schema import Map, Schema, Struct

Path = tuple[str, ...]
FieldSet = frozenset[Path]
Object = dict[str, Any]

# What a container member (a map itself) is worth when comparing values: its
# presence matters, its contents are compared key by key.
_CONTAINER = object()

MEMBER = "."
FIELD_PREFIX = "f:"

# The fields no manager owns (the reference's stripMeta manager).
_STRIPPED_METADATA = (
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
)
STRIPPED: FieldSet = frozenset(
    {("f:metadata", FIELD_PREFIX + name) for name in _STRIPPED_METADATA}
)


@attrs.frozen
class Comparison:
    """
    How an object changed (C{typed.Comparison}): members only in the new
    object, members whose leaf value changed, members only in the old one.
    """

    added: FieldSet
    modified: FieldSet
    removed: FieldSet

    @property
    def changed(self) -> FieldSet:
        """
        Added or modified: what an applier would take from another manager.
        """
        return self.added | self.modified

    def is_empty(self) -> bool:
        return not (self.added or self.modified or self.removed)


def field_values(schema: Schema, obj: Mapping[str, Any]) -> dict[Path, Any]:
    """
    The members C{obj} sets, each with its value (leaves) or a container
    marker (maps), without the server-owned metadata fields.

    @param schema: the kind's schema in the object's version.
    @param obj: the object in that version (C{kind}/C{apiVersion} ignored).
    """
    found: dict[Path, Any] = {}
    _walk(schema, obj, (), found)
    return {path: value for path, value in found.items() if path not in STRIPPED}


def field_set(schema: Schema, obj: Mapping[str, Any]) -> FieldSet:
    """
    The set of members C{obj} sets (C{TypedValue.ToFieldSet}).
    """
    return frozenset(field_values(schema, obj))


def _walk(schema: Schema, value: Any, path: Path, found: dict[Path, Any]) -> None:
    if isinstance(schema, Struct) and isinstance(value, dict):
        for member in schema.fields:
            if member.name in value and value[member.name] is not None:
                child = path + (FIELD_PREFIX + member.name,)
                _walk(member.schema, value[member.name], child, found)
        return
    if isinstance(schema, Map) and isinstance(value, dict):
        found[path] = _CONTAINER
        for key, item in value.items():
            _walk(schema.values, item, path + (FIELD_PREFIX + key,), found)
        return
    found[path] = value


def compare(schema: Schema, old: Mapping[str, Any], new: Mapping[str, Any]) -> Comparison:
    """
    Compare two objects of the same version (C{TypedValue.Compare}).
    """
    before = field_values(schema, old)
    after = field_values(schema, new)
    added = frozenset(after.keys() - before.keys())
    removed = frozenset(before.keys() - after.keys())
    modified = frozenset(
        path
        for path in after.keys() & before.keys()
        if after[path] is not _CONTAINER and after[path] != before[path]
    )
    return Comparison(added, modified, removed)


# FieldsV1 ------------------------------------------------------------------


def to_fields_v1(fields: Iterable[Path]) -> Object:
    """
    Encode a field set as FieldsV1 JSON: nested objects keyed by path
    element, C{"."} marking a member that also has children, keys sorted.
    """
    tree: Object = {}
    members = set(fields)
    for path in members:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    _mark_members(tree, (), members)
    return _sorted_tree(tree)


def _mark_members(node: Object, path: Path, members: set[Path]) -> None:
    for element, child in list(node.items()):
        child_path = path + (element,)
        if child and child_path in members:
            child[MEMBER] = {}
        _mark_members(child, child_path, members)


def _sorted_tree(node: Object) -> Object:
    return {key: _sorted_tree(node[key]) for key in sorted(node)}


def from_fields_v1(tree: Mapping[str, Any]) -> FieldSet:
    """
    Decode FieldsV1 JSON into a field set.

    @raise ValueError: a key is not a FieldsV1 path element.
    @raise TypeError: an entry is not an object.
    """
    members: set[Path] = set()
    _collect(tree, (), members)
    return frozenset(members)


def _collect(node: Any, path: Path, members: set[Path]) -> None:
    if not isinstance(node, Mapping):
        raise TypeError(f"FieldsV1 entry at {path_string(path)} is not an object")
    if path and (not node or MEMBER in node):
        members.add(path)
    for element, child in node.items():
        if element == MEMBER:
            continue
        if not isinstance(element, str) or element[1:2] != ":":
            raise ValueError(f"invalid FieldsV1 key {element!r}")
        _collect(child, path + (element,), members)


def path_string(path: Path) -> str:
    """
    A path as structured-merge-diff prints it: C{.spec.flunderReference},
    C{[="x"]} for set values, C{[k=v]} for keys.
    """
    parts = []
    for element in path:
        kind, _, text = element.partition(":")
        if kind == "f":
            parts.append("." + text)
        elif kind == "v":
            parts.append(f"[={text}]")
        elif kind == "i":
            parts.append(f"[{text}]")
        else:
            parts.append(_key_string(text))
    return "".join(parts)


def _key_string(text: str) -> str:
    try:
        keys = json.loads(text)
    except ValueError:
        return f"[{text}]"
    if not isinstance(keys, dict):
        return f"[{text}]"
    return "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(keys.items())) + "]"


# Apply helpers -------------------------------------------------------------


def merge(schema: Schema, live: Any, config: Any) -> Any:
    """
    Merge an applied configuration into the live object (C{TypedValue.Merge}):
    structs and maps key by key, everything else (scalars, atomic lists)
    replaced by the configuration.
    """
    if isinstance(schema, (Struct, Map)) and isinstance(live, dict) and isinstance(config, dict):
        merged = deep_copy(live)
        for key, value in config.items():
            child = _child_schema(schema, key)
            if key in merged and child is not None:
                merged[key] = merge(child, merged[key], value)
            else:
                merged[key] = deep_copy(value)
        return merged
    return deep_copy(config)


def _child_schema(schema: Schema, key: str) -> Schema | None:
    if isinstance(schema, Map):
        return schema.values
    if isinstance(schema, Struct):
        try:
            return schema.field(key).schema
        except KeyError:
            return None
    return None


def owned_somewhere(path: Path, owned: FieldSet) -> bool:
    """
    Whether C{path} or something under it is a member of C{owned}.
    """
    size = len(path)
    return any(candidate[:size] == path for candidate in owned)


def remove_paths(obj: Object, paths: Iterable[Path]) -> None:
    """
    Delete the members C{paths} from C{obj} in place (missing ones are fine).
    """
    for path in sorted(paths, key=len, reverse=True):
        node: Any = obj
        for element in path[:-1]:
            node = node.get(element[2:]) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1][2:], None)
