# -*- test-case-name: tests.test_openapi -*-
"""
Tests for L{wardled.api.openapi}: the documents are generated from the type
declarations, every reference resolves, kubectl finds what it looks for,
and they are served with ETags (through a small in-test Klein app, and
against a real C{twistd wardled} with the real kubectl).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import attrs
import treq
from klein import Klein
from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest

from tests.harness import WardledProcess
from wardled import apierrors
from wardled.api import openapi, respond
from wardled.api.discovery import VERBS
from wardled.api.openapi import documents as openapi_documents
from wardled.api.openapi import models as openapi_models
from wardled.api.openapi import protobuf as openapi_protobuf
from wardled.api.openapi import serve as openapi_serve
from wardled.api.patch import PATCH_TYPES
from wardled.apis import meta
from wardled.apis.schema import Field, String, Struct
from wardled.apis.wardle import (
    FISCHERS,
    FLUNDERS,
    GROUP,
    GROUP_VERSIONS,
    resources_in,
)

Object = dict[str, Any]

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
WARDLE = "io.k8s.sample-apiserver.pkg.apis.wardle."
V2_REF = "#/definitions/"
V3_REF = "#/components/schemas/"


def wardle_model(version: str, name: str) -> str:
    return f"{WARDLE}{version}.{name}"


def refs(value: Any) -> Iterator[str]:
    """
    Every C{$ref} anywhere in a JSON value.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def unresolved_refs(document: Object, prefix: str, models: Object) -> list[str]:
    """
    The references of C{document} that do not name one of C{models}.
    """
    return [
        ref for ref in refs(document)
        if not ref.startswith(prefix) or ref[len(prefix):] not in models
    ]


def v3_documents() -> dict[str, Object]:
    return {key: openapi.openapi_v3_document(key) for key in openapi.v3_keys()}


def property_of(models: Object, model: str, name: str) -> Object:
    result: Object = models[model]["properties"][name]
    return result


def described_ref(schema: Object) -> str:
    """
    The model a property refers to, in either dialect (v3 wraps a C{$ref}
    with siblings in an C{allOf}).
    """
    if "allOf" in schema:
        [inner] = schema["allOf"]
        return str(inner["$ref"])
    return str(schema["$ref"])


class ModelTests(SynchronousTestCase):
    """
    The models are the declarations, walked.
    """

    def test_v2_model_names(self) -> None:
        """
        The v2 document defines the wardle kinds of every served version
        and the meta.k8s.io types they use, with the reference's names.
        """
        wardle = {
            wardle_model(version, name)
            for version in GROUP_VERSIONS
            for name in ("Flunder", "FlunderSpec", "FlunderStatus", "FlunderList")
        } | {wardle_model("v1alpha1", "Fischer"), wardle_model("v1alpha1", "FischerList")}
        metas = {
            META + name
            for name in (
                "ObjectMeta", "ListMeta", "OwnerReference", "ManagedFieldsEntry",
                "Time", "FieldsV1", "Status", "StatusDetails", "StatusCause",
                "DeleteOptions", "Preconditions", "Patch", "APIGroupList",
                "APIGroup", "GroupVersionForDiscovery", "ServerAddressByClientCIDR",
                "APIResourceList", "APIResource",
            )
        }
        definitions = set(openapi.openapi_v2()["definitions"])
        self.assertEqual(
            definitions, wardle | metas | {"io.k8s.apimachinery.pkg.version.Info"}
        )

    def test_v3_group_versions_hold_their_own_kinds(self) -> None:
        """
        Each group-version document holds the models of its kinds only:
        Fischer is in v1alpha1, not in v1beta1.
        """
        v1alpha1 = openapi.openapi_v3_group_version("v1alpha1")["components"]["schemas"]
        v1beta1 = openapi.openapi_v3_group_version("v1beta1")["components"]["schemas"]
        self.assertIn(wardle_model("v1alpha1", "Fischer"), v1alpha1)
        self.assertIn(wardle_model("v1alpha1", "FlunderList"), v1alpha1)
        self.assertIn(wardle_model("v1beta1", "Flunder"), v1beta1)
        self.assertFalse([name for name in v1beta1 if "Fischer" in name])
        self.assertFalse([name for name in v1beta1 if ".v1alpha1." in name])

    def test_kinds_carry_group_version_kind(self) -> None:
        """
        Top-level kinds and their lists carry
        C{x-kubernetes-group-version-kind}; nested types do not.
        """
        for models in (
            openapi.openapi_v2()["definitions"],
            openapi.openapi_v3_group_version("v1alpha1")["components"]["schemas"],
        ):
            for kind in ("Flunder", "FlunderList", "Fischer", "FischerList"):
                self.assertEqual(
                    models[wardle_model("v1alpha1", kind)]["x-kubernetes-group-version-kind"],
                    [{"group": GROUP, "kind": kind, "version": "v1alpha1"}],
                )
            self.assertNotIn(
                "x-kubernetes-group-version-kind", models[wardle_model("v1alpha1", "FlunderSpec")]
            )
            self.assertNotIn("x-kubernetes-group-version-kind", models[META + "ObjectMeta"])
        v1beta1 = openapi.openapi_v3_group_version("v1beta1")["components"]["schemas"]
        self.assertEqual(
            v1beta1[wardle_model("v1beta1", "Flunder")]["x-kubernetes-group-version-kind"],
            [{"group": GROUP, "kind": "Flunder", "version": "v1beta1"}],
        )
        self.assertIn(
            {"group": GROUP, "kind": "DeleteOptions", "version": "v1beta1"},
            v1beta1[META + "DeleteOptions"]["x-kubernetes-group-version-kind"],
        )

    def test_kinds_have_type_meta(self) -> None:
        """
        Kinds get C{kind} and C{apiVersion} first, although the wardle
        declarations leave them out (the decoder handles them).
        """
        models = openapi.openapi_v2()["definitions"]
        flunder = models[wardle_model("v1beta1", "Flunder")]["properties"]
        self.assertEqual(list(flunder), ["kind", "apiVersion", "metadata", "spec", "status"])
        self.assertEqual(flunder["kind"]["description"], openapi.KIND_DOC)
        self.assertNotIn("kind", models[wardle_model("v1beta1", "FlunderSpec")]["properties"])

    def test_atomic_disallowed_flunders(self) -> None:
        """
        C{disallowedFlunders} is an atomic list of strings, in both dialects.
        """
        for models in (
            openapi.openapi_v2()["definitions"],
            openapi.openapi_v3_group_version("v1alpha1")["components"]["schemas"],
        ):
            disallowed = property_of(models, wardle_model("v1alpha1", "Fischer"), "disallowedFlunders")
            self.assertEqual(disallowed["type"], "array")
            self.assertEqual(disallowed["items"], {"type": "string"})
            self.assertEqual(disallowed["x-kubernetes-list-type"], "atomic")

    def test_object_meta_is_the_declaration(self) -> None:
        """
        ObjectMeta's properties, in order, and their descriptions are those
        of L{wardled.apis.meta.OBJECT_META}: there is one source.
        """
        for models in (
            openapi.openapi_v2()["definitions"],
            openapi.openapi_v3_group_version("v1beta1")["components"]["schemas"],
        ):
            object_meta = models[META + "ObjectMeta"]
            self.assertEqual(object_meta["description"], meta.OBJECT_META.doc)
            self.assertEqual(
                list(object_meta["properties"]), [f.name for f in meta.OBJECT_META.fields]
            )
            for field in meta.OBJECT_META.fields:
                self.assertEqual(object_meta["properties"][field.name]["description"], field.doc)
            self.assertIs(object_meta["properties"]["name"]["description"], meta.NAME_DOC)

    def test_spec_fields_are_the_declaration(self) -> None:
        """
        The spec of each version is that version's declaration.
        """
        models = openapi.openapi_v2()["definitions"]
        for version in GROUP_VERSIONS:
            declared = FLUNDERS.versions[version].schema.field("spec").schema
            assert isinstance(declared, Struct)
            spec = models[wardle_model(version, "FlunderSpec")]["properties"]
            self.assertEqual(
                {name: value["description"] for name, value in spec.items()},
                {field.name: field.doc for field in declared.fields},
            )

    def test_go_nuances(self) -> None:
        """
        Non-pointer structs default to C{{}}, required scalars to their
        zero value; pointers, lists, maps and C{Time} get no default; maps
        have C{additionalProperties}; C{Time} is its own string model.
        """
        models = openapi.openapi_v2()["definitions"]
        flunder = models[wardle_model("v1alpha1", "Flunder")]["properties"]
        self.assertEqual(flunder["metadata"]["default"], {})
        self.assertEqual(flunder["status"]["default"], {})
        self.assertEqual(flunder["metadata"]["$ref"], V2_REF + META + "ObjectMeta")
        owner = models[META + "OwnerReference"]
        self.assertEqual(owner["properties"]["uid"]["default"], "")
        self.assertNotIn("default", owner["properties"]["controller"])
        self.assertEqual(owner["required"], ["apiVersion", "kind", "name", "uid"])
        object_meta = models[META + "ObjectMeta"]["properties"]
        self.assertEqual(
            object_meta["creationTimestamp"],
            {"$ref": V2_REF + META + "Time", "description": meta.CREATION_TIMESTAMP_DOC},
        )
        self.assertEqual(
            object_meta["labels"]["additionalProperties"], {"type": "string"}
        )
        self.assertEqual(object_meta["generation"]["format"], "int64")
        self.assertNotIn("default", object_meta["finalizers"])
        self.assertEqual(
            models[META + "Time"],
            {"description": openapi.TIME_DOC, "type": "string", "format": "date-time"},
        )
        self.assertEqual(models[META + "FieldsV1"]["type"], "object")
        preferred = models[META + "APIGroup"]["properties"]["preferredVersion"]
        self.assertNotIn("default", preferred)  # {} would break its required fields
        self.assertEqual(models[wardle_model("v1beta1", "FlunderList")]["required"], ["items"])
        self.assertEqual(
            models[wardle_model("v1beta1", "FlunderList")]["description"],
            "FlunderList is a list of Flunder objects.",
        )

    def test_v3_wraps_refs_with_siblings(self) -> None:
        """
        OpenAPI 3 puts a C{$ref} that has a description or default in an
        C{allOf}, as kube-openapi does; a bare reference stays bare.
        """
        models = openapi.openapi_v3_group_version("v1alpha1")["components"]["schemas"]
        metadata = property_of(models, wardle_model("v1alpha1", "Flunder"), "metadata")
        self.assertEqual(
            metadata,
            {
                "allOf": [{"$ref": V3_REF + META + "ObjectMeta"}],
                "description": FLUNDERS.versions["v1alpha1"].schema.field("metadata").doc,
                "default": {},
            },
        )
        items = property_of(models, wardle_model("v1alpha1", "FlunderList"), "items")
        self.assertEqual(items["items"], {"$ref": V3_REF + wardle_model("v1alpha1", "Flunder")})

    def test_two_declarations_of_one_model(self) -> None:
        """
        Two different structs that would get the same model name are a bug
        the generator refuses.
        """
        models = openapi.Models(openapi.SWAGGER)
        models.ref(Struct(name="Thing", fields=(Field("a", String()),)), "x")
        self.assertRaises(
            ValueError, models.ref, Struct(name="Thing", fields=(Field("b", String()),)), "x"
        )

    def test_refs_resolve(self) -> None:
        """
        Every reference of the v2 document and of each v3 document names a
        model of that document.
        """
        v2 = openapi.openapi_v2()
        self.assertEqual(unresolved_refs(v2, V2_REF, v2["definitions"]), [])
        self.assertGreater(len(list(refs(v2))), 50)
        for key, document in v3_documents().items():
            schemas = document["components"]["schemas"]
            self.assertEqual(unresolved_refs(document, V3_REF, schemas), [], key)
            self.assertTrue(list(refs(document)), key)

    def test_unresolved_refs_are_found(self) -> None:
        """
        The reference check above does catch a dangling reference.
        """
        broken = {"a": [{"$ref": V3_REF + "Nothing"}], "b": {"$ref": V2_REF + "Known"}}
        self.assertEqual(
            unresolved_refs(broken, V3_REF, {"Known": {}}),
            [V3_REF + "Nothing", V2_REF + "Known"],
        )


def operations(document: Object) -> Iterator[tuple[str, str, Object]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


class PathTests(SynchronousTestCase):
    """
    The paths are the served ones, with the operations kubectl looks for.
    """

    def test_v2_paths(self) -> None:
        """
        Every served resource path is documented, with an operation per
        served verb and nothing else (no watch yet).
        """
        paths = openapi.openapi_v2()["paths"]
        v1alpha1 = f"/apis/{GROUP}/v1alpha1"
        self.assertEqual(
            set(paths[f"{v1alpha1}/namespaces/{{namespace}}/flunders"]),
            {"parameters", "get", "post", "delete"},
        )
        self.assertEqual(
            set(paths[f"{v1alpha1}/namespaces/{{namespace}}/flunders/{{name}}"]),
            {"parameters", "get", "put", "patch", "delete"},
        )
        self.assertEqual(set(paths[f"{v1alpha1}/flunders"]), {"parameters", "get"})
        self.assertEqual(set(paths[f"{v1alpha1}/fischers"]), {"parameters", "get", "post", "delete"})
        self.assertIn(f"{v1alpha1}/fischers/{{name}}", paths)
        self.assertNotIn(f"/apis/{GROUP}/v1beta1/fischers", paths)
        self.assertFalse([path for path in paths if "/watch/" in path])
        self.assertEqual(
            {path for path in paths if not path.startswith(f"/apis/{GROUP}/v1")},
            {"/apis/", f"/apis/{GROUP}/", "/version/"},
        )

    def test_operation_ids_and_actions(self) -> None:
        """
        Operation ids, actions and kinds follow Kubernetes' conventions.
        """
        paths = openapi.openapi_v2()["paths"]
        base = f"/apis/{GROUP}/v1alpha1"
        collection = paths[f"{base}/namespaces/{{namespace}}/flunders"]
        item = paths[f"{base}/namespaces/{{namespace}}/flunders/{{name}}"]
        found = {
            (op["operationId"], op["x-kubernetes-action"])
            for op in [*collection.values(), *item.values()]
            if isinstance(op, dict)
        }
        infix = "WardleExampleComV1alpha1"
        self.assertEqual(found, {
            (f"list{infix}NamespacedFlunder", "list"),
            (f"create{infix}NamespacedFlunder", "post"),
            (f"delete{infix}CollectionNamespacedFlunder", "deletecollection"),
            (f"read{infix}NamespacedFlunder", "get"),
            (f"replace{infix}NamespacedFlunder", "put"),
            (f"patch{infix}NamespacedFlunder", "patch"),
            (f"delete{infix}NamespacedFlunder", "delete"),
        })
        self.assertEqual(
            paths[f"{base}/flunders"]["get"]["operationId"],
            f"list{infix}FlunderForAllNamespaces",
        )
        self.assertEqual(paths[f"{base}/fischers"]["get"]["operationId"], f"list{infix}Fischer")
        self.assertEqual(
            paths[f"{base}/fischers/{{name}}"]["patch"]["x-kubernetes-group-version-kind"],
            {"group": GROUP, "kind": "Fischer", "version": "v1alpha1"},
        )
        ids = [op["operationId"] for _, _, op in operations(openapi.openapi_v2())]
        self.assertEqual(len(ids), len(set(ids)))

    def test_parameters(self) -> None:
        """
        Writes take dryRun, fieldManager and fieldValidation; lists take
        the list options; deletes the delete options; paths share name,
        namespace and pretty.
        """
        paths = openapi.openapi_v2()["paths"]
        base = f"/apis/{GROUP}/v1beta1/namespaces/{{namespace}}/flunders"

        def names(parameters: list[Object]) -> list[str]:
            return [parameter["name"] for parameter in parameters]

        for method in ("post",):
            self.assertEqual(
                names(paths[base][method]["parameters"]),
                ["dryRun", "fieldManager", "fieldValidation", "body"],
            )
        for method in ("put", "patch"):
            self.assertEqual(
                names(paths[base + "/{name}"][method]["parameters"]),
                ["dryRun", "fieldManager", "fieldValidation", "body"],
            )
        self.assertEqual(
            names(paths[base]["get"]["parameters"]),
            ["labelSelector", "fieldSelector", "resourceVersion", "resourceVersionMatch",
             "timeoutSeconds", "limit", "continue", "watch", "allowWatchBookmarks",
             "sendInitialEvents"],
        )
        self.assertEqual(
            names(paths[base + "/{name}"]["delete"]["parameters"]),
            ["gracePeriodSeconds", "orphanDependents", "propagationPolicy", "dryRun", "body"],
        )
        self.assertEqual(names(paths[base + "/{name}"]["parameters"]), ["name", "namespace", "pretty"])
        namespace = paths[base]["parameters"][0]
        self.assertEqual(
            (namespace["in"], namespace.get("required")), ("path", True)
        )
        self.assertEqual(paths[base + "/{name}"]["patch"]["consumes"], PATCH_TYPES)
        self.assertEqual(paths[base]["post"]["consumes"], ["application/json", "application/yaml"])
        body = paths[base + "/{name}"]["delete"]["parameters"][-1]
        self.assertEqual(body["schema"], {"$ref": V2_REF + META + "DeleteOptions"})

    def test_responses(self) -> None:
        """
        Responses refer to the kind, its list or Status.
        """
        paths = openapi.openapi_v2()["paths"]
        base = f"/apis/{GROUP}/v1alpha1/fischers"
        self.assertEqual(
            paths[base]["get"]["responses"]["200"]["schema"],
            {"$ref": V2_REF + wardle_model("v1alpha1", "FischerList")},
        )
        self.assertEqual(set(paths[base]["post"]["responses"]), {"200", "201", "202", "401"})
        self.assertEqual(
            paths[base + "/{name}"]["delete"]["responses"]["200"]["schema"],
            {"$ref": V2_REF + META + "Status"},
        )

    def test_watch_when_served(self) -> None:
        """
        Once discovery serves watch, lists document the watch parameters.
        """
        document = openapi.openapi_v3_group_version("v1beta1", verbs=(*VERBS, "watch"))
        listing = document["paths"][f"/apis/{GROUP}/v1beta1/namespaces/{{namespace}}/flunders"]["get"]
        self.assertIn("watch", [parameter["name"] for parameter in listing["parameters"]])
        self.assertIn("application/json;stream=watch", listing["responses"]["200"]["content"])
        self.assertEqual(listing["description"], "list or watch objects of kind Flunder")

    def test_patch_declares_field_validation(self) -> None:
        """
        What kubectl's QueryParamVerifierV3 checks: for every served kind,
        the group-version document has a PATCH operation whose
        C{x-kubernetes-group-version-kind} is the kind and whose own
        parameters include C{fieldValidation} in the query.
        """
        for version in GROUP_VERSIONS:
            document = openapi.openapi_v3_group_version(version)
            for resource in resources_in(version):
                gvk = {"group": GROUP, "version": version, "kind": resource.kind}
                patches = [
                    op for _, method, op in operations(document)
                    if method == "patch" and op.get("x-kubernetes-group-version-kind") == gvk
                ]
                self.assertEqual(len(patches), 1, (version, resource.kind))
                self.assertIn(
                    ("fieldValidation", "query"),
                    [(p["name"], p["in"]) for p in patches[0]["parameters"]],
                )
                self.assertEqual(
                    set(patches[0]["requestBody"]["content"]), set(PATCH_TYPES)
                )

    def test_v3_shapes(self) -> None:
        """
        OpenAPI 3 parameters carry a schema; bodies and responses carry
        content by media type.
        """
        document = openapi.openapi_v3_group_version("v1alpha1")
        self.assertEqual(document["openapi"], "3.0.0")
        self.assertEqual(document["info"], {"title": "Wardle", "version": "0.1"})
        create = document["paths"][f"/apis/{GROUP}/v1alpha1/fischers"]["post"]
        self.assertEqual(
            create["parameters"][0]["schema"], {"type": "string", "uniqueItems": True}
        )
        fischer = {"schema": {"$ref": V3_REF + wardle_model("v1alpha1", "Fischer")}}
        self.assertEqual(
            create["requestBody"],
            {"content": {"application/json": fischer, "application/yaml": fischer},
             "required": True},
        )
        self.assertEqual(create["responses"]["201"]["content"]["application/json"], fischer)

    def test_v2_document_head(self) -> None:
        document = openapi.openapi_v2()
        self.assertEqual(document["swagger"], "2.0")
        self.assertEqual(document["info"], {"title": "Wardle", "version": "0.1"})


def wire_fields(data: bytes) -> list[tuple[int, Any]]:
    """
    Decode one protobuf message into (field number, value) pairs: varints
    as ints, length-delimited fields as bytes (only the wire types the
    encoder writes).
    """
    fields: list[tuple[int, Any]] = []
    position = 0

    def varint() -> int:
        nonlocal position
        result = shift = 0
        while True:
            byte = data[position]
            position += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while position < len(data):
        key = varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            fields.append((number, varint()))
        elif wire_type == 2:
            length = varint()
            fields.append((number, data[position:position + length]))
            position += length
        else:
            raise AssertionError(f"unexpected wire type {wire_type}")
    return fields


def field_values(data: bytes, number: int) -> list[Any]:
    return [value for found, value in wire_fields(data) if found == number]


def named(data: bytes, number: int) -> dict[str, bytes]:
    """
    A gnostic ordered map (repeated C{Named*}: name 1, value 2) as a dict.
    """
    entries = {}
    for entry in field_values(data, number):
        [name] = field_values(entry, 1)
        [value] = field_values(entry, 2)
        entries[name.decode()] = value
    return entries


class ProtobufTests(SynchronousTestCase):
    """
    The v2 document as gnostic protobuf, decoded field by field.
    """

    def setUp(self) -> None:
        self.document = openapi.swagger_to_protobuf(openapi.openapi_v2())

    def test_head(self) -> None:
        [swagger] = field_values(self.document, 1)
        [info] = field_values(self.document, 2)
        self.assertEqual(swagger, b"2.0")
        self.assertEqual(field_values(info, 1), [b"Wardle"])
        self.assertEqual(field_values(info, 2), [b"0.1"])

    def test_paths_and_definitions(self) -> None:
        """
        Every path and every model of the JSON document is there, by name.
        """
        v2 = openapi.openapi_v2()
        [paths] = field_values(self.document, 8)
        [definitions] = field_values(self.document, 9)
        self.assertEqual(set(named(paths, 2)), set(v2["paths"]))
        self.assertEqual(set(named(definitions, 1)), set(v2["definitions"]))

    def test_schema_fields(self) -> None:
        """
        A model keeps its type, properties, vendor extensions (as YAML) and
        references.
        """
        [definitions] = field_values(self.document, 9)
        fischer = named(definitions, 1)[wardle_model("v1alpha1", "Fischer")]
        [type_item] = field_values(fischer, 22)
        self.assertEqual(field_values(type_item, 1), [b"object"])
        [properties] = field_values(fischer, 25)
        disallowed = named(properties, 1)["disallowedFlunders"]
        self.assertEqual(
            named(disallowed, 31)["x-kubernetes-list-type"], b"\x12\x07atomic\n"
        )
        metadata = named(properties, 1)["metadata"]
        self.assertEqual(field_values(metadata, 1), [(V2_REF + META + "ObjectMeta").encode()])
        [default] = field_values(metadata, 5)
        self.assertEqual(field_values(default, 2), [b"{}\n"])
        gvk = named(fischer, 31)["x-kubernetes-group-version-kind"]
        self.assertEqual(
            field_values(gvk, 2),
            [b"- group: wardle.example.com\n  kind: Fischer\n  version: v1alpha1\n"],
        )

    def test_patch_parameters(self) -> None:
        """
        The PATCH operation's query parameters are query parameter
        sub-schemas, the body a body parameter.
        """
        [paths] = field_values(self.document, 8)
        item = named(paths, 2)[f"/apis/{GROUP}/v1beta1/namespaces/{{namespace}}/flunders/{{name}}"]
        [patch] = field_values(item, 8)
        self.assertEqual(
            field_values(patch, 5), [b"patchWardleExampleComV1beta1NamespacedFlunder"]
        )
        parameters = field_values(patch, 8)
        names = []
        for parameter_item in parameters:
            [parameter] = field_values(parameter_item, 1)
            [(choice, message)] = wire_fields(parameter)
            if choice == 2:
                [(kind, sub_schema)] = wire_fields(message)
                self.assertEqual(kind, 3)
                self.assertEqual(field_values(sub_schema, 2), [b"query"])
                [name] = field_values(sub_schema, 4)
            else:
                self.assertEqual(choice, 1)
                [name] = field_values(message, 2)
            names.append(name.decode())
        self.assertEqual(names, ["dryRun", "fieldManager", "fieldValidation", "body"])
        self.assertEqual(field_values(patch, 7), [t.encode() for t in PATCH_TYPES])

    def test_unknown_keys_refused(self) -> None:
        """
        Something the encoder does not know is an error, not a silent loss.
        """
        document = openapi.openapi_v2()
        document["definitions"][META + "Time"]["pattern"] = ".*"
        self.assertRaises(ValueError, openapi.swagger_to_protobuf, document)


class DocumentTests(SynchronousTestCase):
    """
    The served bytes, their ETags and the v3 index.
    """

    def test_etag_is_the_body_hash(self) -> None:
        """
        A document's ETag is the quoted upper-case hex SHA-512 of its body,
        which is the generated document as JSON.
        """
        document = openapi.v2_document()
        digest = hashlib.sha512(document.body).hexdigest().upper()
        self.assertEqual(document.etag, f'"{digest}"')
        self.assertEqual(document.hash, digest)
        self.assertEqual(json.loads(document.body), openapi.openapi_v2())
        self.assertIs(openapi.v2_document(), document)

    def test_index_hashes_are_the_etags(self) -> None:
        """
        The index lists every v3 document with its current hash.
        """
        index = json.loads(openapi.v3_index_document().body)
        self.assertEqual(
            set(index["paths"]),
            {"apis", f"apis/{GROUP}", f"apis/{GROUP}/v1alpha1", f"apis/{GROUP}/v1beta1",
             "version"},
        )
        for key, entry in index["paths"].items():
            document = openapi.v3_document(key)
            assert document is not None
            self.assertEqual(
                entry["serverRelativeURL"], f"/openapi/v3/{key}?hash={document.hash}"
            )
            self.assertEqual(json.loads(document.body), openapi.openapi_v3_document(key))
        self.assertEqual(
            openapi.v3_group_version_document("v1beta1"),
            openapi.v3_document(f"apis/{GROUP}/v1beta1"),
        )

    def test_unknown_documents(self) -> None:
        self.assertIsNone(openapi.v3_document("apis/other.example.com/v1"))
        self.assertRaises(KeyError, openapi.v3_group_version_document, "v2")
        self.assertRaises(KeyError, openapi.openapi_v3_document, "nothing")

    def test_small_documents(self) -> None:
        """
        The discovery documents of the index are small valid documents.
        """
        apis = openapi.openapi_v3_document("apis")
        self.assertEqual(list(apis["paths"]), ["/apis/"])
        self.assertEqual(
            apis["paths"]["/apis/"]["get"]["responses"]["200"]["content"]["application/json"],
            {"schema": {"$ref": V3_REF + META + "APIGroupList"}},
        )
        version = openapi.openapi_v3_document("version")
        self.assertEqual(
            list(version["components"]["schemas"]), ["io.k8s.apimachinery.pkg.version.Info"]
        )

    def test_etag_matching(self) -> None:
        etag = '"ABC"'
        self.assertTrue(openapi.etag_matches('"ABC"', etag))
        self.assertTrue(openapi.etag_matches('"X", W/"ABC"', etag))
        self.assertTrue(openapi.etag_matches("*", etag))
        self.assertFalse(openapi.etag_matches('"ABCD"', etag))
        self.assertFalse(openapi.etag_matches(None, etag))

    def test_accepts_json(self) -> None:
        self.assertTrue(openapi.accepts_json(None))
        self.assertTrue(openapi.accepts_json("application/json, */*"))
        self.assertTrue(openapi.accepts_json("application/*"))
        self.assertFalse(
            openapi.accepts_json("application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
        )
        self.assertFalse(openapi.accepts_json("application/json;q=0"))


@attrs.define
class OpenAPIRoutes:
    """
    The routes L{wardled.api.app} is meant to have for the documents, in a
    small app of their own.
    """

    now: float
    app = Klein()

    @app.handle_errors(apierrors.StatusError)
    def status_error(self, request: IRequest, failure: Any) -> bytes:
        return respond.write_status(request, failure.value)

    @app.route("/openapi/v2", methods=["GET"])
    def v2(self, request: IRequest) -> bytes:
        document = openapi.negotiate_v2(respond.header(request, "accept"))
        return openapi.render(request, document, self.now)

    @app.route("/openapi/v3", methods=["GET"])
    def v3_index(self, request: IRequest) -> bytes:
        return openapi.render(request, openapi.v3_index_document(), self.now)

    @app.route("/openapi/v3/<path:key>", methods=["GET"])
    def v3(self, request: IRequest, key: str) -> bytes:
        document = openapi.v3_document(key)
        if document is None:
            raise apierrors.server_not_found()
        return openapi.render(request, document, self.now)


class ServingTests(SynchronousTestCase):
    """
    L{openapi.render} behind real twisted.web requests.
    """

    def setUp(self) -> None:
        self.client = StubTreq(OpenAPIRoutes(now=1_000_000_000.0).app.resource())

    def get(self, path: str, **headers: str) -> tuple[Any, bytes]:
        response = self.successResultOf(
            self.client.get(  # type: ignore[attr-defined]
                "http://wardled" + path, headers=headers or None, allow_redirects=False
            )
        )
        body = self.successResultOf(treq.content(response))
        return response, body

    def header(self, response: Any, name: str) -> str | None:
        values = response.headers.getRawHeaders(name)
        return values[0] if values else None

    def test_v2(self) -> None:
        response, body = self.get("/openapi/v2")
        document = openapi.v2_document()
        self.assertEqual(response.code, 200)
        self.assertEqual(body, document.body)
        self.assertEqual(self.header(response, "etag"), document.etag)
        self.assertEqual(self.header(response, "content-type"), "application/json")
        self.assertIsNone(self.header(response, "cache-control"))

    def test_not_modified(self) -> None:
        document = openapi.v2_document()
        response, body = self.get("/openapi/v2", **{"If-None-Match": document.etag})
        self.assertEqual((response.code, body), (304, b""))
        self.assertEqual(self.header(response, "etag"), document.etag)
        response, body = self.get("/openapi/v2", **{"If-None-Match": '"stale"'})
        self.assertEqual(response.code, 200)

    def test_v2_protobuf(self) -> None:
        """
        client-go asks for v2 in protobuf only, with a media type that is
        not valid as a C{Content-Type}; it gets protobuf labelled with the
        dotted media type, with its own ETag.
        """
        document = openapi.v2_protobuf_document()
        response, body = self.get("/openapi/v2", Accept=openapi.PROTOBUF_V2_DEPRECATED)
        self.assertEqual((response.code, body), (200, document.body))
        self.assertEqual(self.header(response, "content-type"), openapi.PROTOBUF_V2)
        self.assertEqual(self.header(response, "etag"), document.etag)
        self.assertNotEqual(document.etag, openapi.v2_document().etag)
        response, body = self.get(
            "/openapi/v2", Accept=f"{openapi.PROTOBUF_V2}, application/json"
        )
        self.assertEqual(body, document.body)
        response, body = self.get(
            "/openapi/v2", Accept=f"application/json, {openapi.PROTOBUF_V2}"
        )
        self.assertEqual(body, openapi.v2_document().body)

    def test_not_acceptable(self) -> None:
        """
        A client that takes none of the forms served gets a 406 Status.
        """
        for path in ("/openapi/v2", "/openapi/v3"):
            response, body = self.get(path, Accept="text/html")
            self.assertEqual(response.code, 406)
            self.assertEqual(json.loads(body)["reason"], "NotAcceptable")

    def test_follow_the_index(self) -> None:
        """
        Every URL of the index serves its document, cacheable for a year
        since it names the current hash.
        """
        response, body = self.get("/openapi/v3")
        self.assertEqual(response.code, 200)
        for key, entry in json.loads(body)["paths"].items():
            response, body = self.get(entry["serverRelativeURL"])
            document = openapi.v3_document(key)
            assert document is not None
            self.assertEqual((response.code, body), (200, document.body), key)
            self.assertEqual(self.header(response, "etag"), document.etag)
            self.assertEqual(self.header(response, "cache-control"), "public, immutable")
            self.assertEqual(
                self.header(response, "expires"), "Mon, 09 Sep 2002 01:46:40 GMT"
            )

    def test_stale_hash_redirects(self) -> None:
        document = openapi.v3_group_version_document("v1alpha1")
        response, _ = self.get(f"/openapi/v3/apis/{GROUP}/v1alpha1?hash=OLD")
        self.assertEqual(response.code, 301)
        self.assertEqual(
            self.header(response, "location"),
            f"/openapi/v3/apis/{GROUP}/v1alpha1?hash={document.hash}",
        )

    def test_unknown_document(self) -> None:
        response, body = self.get("/openapi/v3/apis/other.example.com/v1")
        self.assertEqual(response.code, 404)
        self.assertEqual(json.loads(body)["reason"], "NotFound")


#: Each name L{wardled.api.openapi} re-exports, and the module defining it.
OPENAPI_EXPORTS: Mapping[str, ModuleType] = {
    "KIND_DOC": meta,
    "TIME_DOC": meta,
    "Models": openapi_models,
    "SWAGGER": openapi_models,
    "PROTOBUF_V2": openapi_protobuf,
    "PROTOBUF_V2_DEPRECATED": openapi_protobuf,
    "swagger_to_protobuf": openapi_protobuf,
    "openapi_v2": openapi_documents,
    "openapi_v3_document": openapi_documents,
    "openapi_v3_group_version": openapi_documents,
    "v2_document": openapi_documents,
    "v2_protobuf_document": openapi_documents,
    "v3_document": openapi_documents,
    "v3_group_version_document": openapi_documents,
    "v3_index_document": openapi_documents,
    "v3_keys": openapi_documents,
    "accepts_json": openapi_serve,
    "etag_matches": openapi_serve,
    "negotiate_v2": openapi_serve,
    "render": openapi_serve,
}


class ExportsTests(SynchronousTestCase):
    """
    L{wardled.api.openapi} only re-exports: each name it offers is the very
    object of the module that defines it.
    """

    def test_exports_are_the_defining_objects(self) -> None:
        """
        Each re-export is the identical object of its defining module.
        """
        for name, module in OPENAPI_EXPORTS.items():
            self.assertIs(getattr(openapi, name), getattr(module, name), name)

    def test_all_lists_the_exports(self) -> None:
        """
        C{__all__} names exactly the checked re-exports, among them what
        the HTTP handlers call.
        """
        self.assertEqual(sorted(openapi.__all__), sorted(OPENAPI_EXPORTS))
        for name in ("negotiate_v2", "render", "v3_index_document", "v3_document"):
            self.assertIn(name, openapi.__all__)


class TestWithKubectl:
    """
    The real kubectl against a real C{twistd wardled} (the session server
    of C{tests/conftest.py}).
    """

    def test_explain(self, wardled: WardledProcess) -> None:
        result = wardled.kubectl("explain", "flunders.spec")
        assert result.returncode == 0, result.stderr
        assert "KIND:       Flunder" in result.stdout
        assert "VERSION:    v1beta1" in result.stdout
        assert "FIELD: spec <FlunderSpec>" in result.stdout
        spec = FLUNDERS.versions["v1beta1"].schema.field("spec").schema
        assert isinstance(spec, Struct)
        for field in spec.fields:
            assert f"{field.name}\t<string>" in result.stdout
        assert spec.field("fischerReference").doc in result.stdout
        fischers = wardled.kubectl("explain", "fischers.disallowedFlunders")
        assert fischers.returncode == 0, fischers.stderr
        assert "FIELD: disallowedFlunders <[]string>" in fischers.stdout
        assert FISCHERS.versions["v1alpha1"].schema.field("disallowedFlunders").doc in (
            fischers.stdout
        )

    def test_create_leaves_validation_to_the_server(
        self, wardled: WardledProcess, namespace: str
    ) -> None:
        """
        kubectl create finds fieldValidation in the v3 document, so it sends
        C{fieldValidation=Strict} and never downloads the v2 document.
        """
        manifest = (
            f"apiVersion: {GROUP}/v1beta1\nkind: Flunder\nmetadata:\n"
            f"  name: strict\n  namespace: {namespace}\n"
            "spec:\n  referenceType: Flunder\n  flunderReference: other\n"
        )
        created = wardled.kubectl("create", "-f", "-", "-v=6", input=manifest)
        assert created.returncode == 0, created.stderr
        assert "flunder.wardle.example.com/strict created" in created.stdout
        assert "fieldValidation=Strict" in created.stderr
        assert "/openapi/v2" not in created.stderr
        assert "failed to download openapi" not in created.stderr
        unknown = manifest.replace("name: strict", "name: unknown").replace(
            "spec:\n", "spec:\n  bogus: 1\n"
        )
        rejected = wardled.kubectl("create", "-f", "-", input=unknown)
        assert rejected.returncode == 1
        assert 'strict decoding error: unknown field "spec.bogus"' in rejected.stderr

    def test_explain_from_v2(self, wardled: WardledProcess) -> None:
        """
        The v2 document in protobuf, as kubectl reads it.
        """
        result = wardled.kubectl("explain", "fischers", "--output=plaintext-openapiv2")
        assert result.returncode == 0, result.stderr
        assert "VERSION:  wardle.example.com/v1alpha1" in result.stdout
        assert "disallowedFlunders\t<[]string>" in result.stdout

    def test_served_documents(self, wardled: WardledProcess) -> None:
        """
        The server serves the documents this module builds, with ETags.
        """
        v2 = wardled.https("GET", "/openapi/v2", headers={"Accept": "application/json"})
        assert v2.status == 200
        assert v2.body == openapi.v2_document().body
        assert v2.header("ETag") == openapi.v2_document().etag
        again = wardled.https("GET", "/openapi/v2", headers={"If-None-Match": v2.header("ETag") or ""})
        assert again.status == 304
        index = wardled.https("GET", "/openapi/v3")
        assert index.status == 200
        for key, entry in index.json()["paths"].items():
            response = wardled.https("GET", entry["serverRelativeURL"])
            assert response.status == 200, (key, response.body[:200])
            assert json.loads(response.body) == openapi.openapi_v3_document(key)
