# -*- test-case-name: tests.test_openapi -*-
"""
The paths the OpenAPI documents describe, as plain values: each path, its
parameters, and an L{Operation} per HTTP method with its request body and
responses.

They come from the resource declarations and the verbs discovery
advertises (L{wardled.api.discovery.VERBS}), so the documents describe what
is served.  kubectl depends on the details: C{kubectl create/replace/apply}
look for the kind's PATCH operation and check that it declares the
C{fieldValidation} query parameter before leaving field validation to the
server.  L{wardled.api.openapi.documents} writes these values in Swagger 2.0
and OpenAPI 3.0 form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from wardled.api.discovery import VERBS
from wardled.api.negotiate import JSON, YAML
from wardled.api.openapi.models import GVK, STRUCT_PACKAGES, wardle_package
from wardled.api.patch import PATCH_TYPES
from wardled.apis.meta import (
    API_GROUP,
    API_GROUP_LIST,
    API_RESOURCE_LIST,
    DELETE_OPTIONS,
    PATCH,
    STATUS,
    VERSION_INFO,
)
from wardled.apis.schema import Schema, Struct
from wardled.apis.scheme import ResourceType
from wardled.apis.wardle import GROUP, GROUP_VERSIONS, resources_in

#: What the resource operations consume and produce.
MEDIA_TYPES = (JSON, YAML)


# Parameters and operations -------------------------------------------------


@attrs.frozen
class Parameter:
    """
    A path or query parameter.
    """

    name: str
    location: str
    type: str
    doc: str
    required: bool = False


def _query(name: str, type: str, doc: str) -> Parameter:
    return Parameter(name, "query", type, doc)


PRETTY = _query("pretty", "string", "If 'true', then the output is pretty printed.")
NAMESPACE = Parameter(
    "namespace",
    "path",
    "string",
    "object name and auth scope, such as for teams and projects",
    required=True,
)
DRY_RUN = _query(
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. An "
    "invalid or unrecognized dryRun directive will result in an error response "
    "and no further processing of the request. Valid values are: - All: all dry "
    "run stages will be processed",
)
FIELD_MANAGER = _query(
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making "
    "these changes. The value must be less than or 128 characters long, and "
    "only contain printable characters, as defined by "
    "https://golang.org/pkg/unicode/#IsPrint.",
)
FIELD_VALIDATION = _query(
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the "
    "request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid "
    "values are: - Ignore: ignores unknown/duplicate fields. - Warn: responds "
    "with a warning for each unknown/duplicate field, but successfully serves "
    "the request (the default). - Strict: fails the request on "
    "unknown/duplicate fields.",
)
LABEL_SELECTOR = _query(
    "labelSelector",
    "string",
    "A selector to restrict the list of returned objects by their labels. "
    "Defaults to everything.",
)
FIELD_SELECTOR = _query(
    "fieldSelector",
    "string",
    "A selector to restrict the list of returned objects by their fields. "
    "Defaults to everything.",
)
LIMIT = _query(
    "limit",
    "integer",
    "limit is a maximum number of responses to return for a list call. If more "
    "items exist, the server will set the `continue` field on the list metadata "
    "to a value that can be used with the same initial query to retrieve the "
    "next set of results.",
)
CONTINUE = _query(
    "continue",
    "string",
    "The continue option should be set when retrieving more results from the "
    "server, with the continue value of a previous list response made with "
    "identical query parameters. An expired continue value gives a 410 "
    "ResourceExpired error.",
)
RESOURCE_VERSION = _query(
    "resourceVersion",
    "string",
    "resourceVersion sets a constraint on what resource versions a request may "
    "be served from. See https://kubernetes.io/docs/reference/using-api/"
    "api-concepts/#resource-versions for details.\n\nDefaults to unset",
)
RESOURCE_VERSION_MATCH = _query(
    "resourceVersionMatch",
    "string",
    "resourceVersionMatch determines how resourceVersion is applied to list "
    "calls. See https://kubernetes.io/docs/reference/using-api/api-concepts/"
    "#resource-versions for details.\n\nDefaults to unset",
)
TIMEOUT_SECONDS = _query(
    "timeoutSeconds",
    "integer",
    "Timeout for the list/watch call. This limits the duration of the call, "
    "regardless of any activity or inactivity.",
)
WATCH = _query(
    "watch",
    "boolean",
    "Watch for changes to the described resources and return them as a stream "
    "of add, update, and remove notifications. Specify resourceVersion.",
)
ALLOW_WATCH_BOOKMARKS = _query(
    "allowWatchBookmarks",
    "boolean",
    'allowWatchBookmarks requests watch events with type "BOOKMARK". If this is '
    "not a watch, this field is ignored.",
)
GRACE_PERIOD_SECONDS = _query(
    "gracePeriodSeconds",
    "integer",
    DELETE_OPTIONS.field("gracePeriodSeconds").doc,
)
ORPHAN_DEPENDENTS = _query(
    "orphanDependents", "boolean", DELETE_OPTIONS.field("orphanDependents").doc
)
PROPAGATION_POLICY = _query(
    "propagationPolicy", "string", DELETE_OPTIONS.field("propagationPolicy").doc
)

LIST_PARAMETERS = (
    LABEL_SELECTOR,
    FIELD_SELECTOR,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    TIMEOUT_SECONDS,
    LIMIT,
    CONTINUE,
)
SEND_INITIAL_EVENTS = _query(
    "sendInitialEvents",
    "boolean",
    "`sendInitialEvents=true` may be set together with `watch=true`. In that case, "
    "the watch stream will begin with synthetic events to produce the current state "
    "of objects in the collection. Once all such events have been sent, a synthetic "
    '"Bookmark" event will be sent. The bookmark will report the ResourceVersion '
    "(RV) corresponding to the set of objects, and be marked with "
    '`"k8s.io/initial-events-end": "true"` annotation. When `sendInitialEvents` '
    "option is set, we require `resourceVersionMatch` option to also be set.",
)
WATCH_PARAMETERS = (WATCH, ALLOW_WATCH_BOOKMARKS, SEND_INITIAL_EVENTS)
WRITE_PARAMETERS = (DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION)
DELETE_PARAMETERS = (GRACE_PERIOD_SECONDS, ORPHAN_DEPENDENTS, PROPAGATION_POLICY, DRY_RUN)


def _name_parameter(kind: str) -> Parameter:
    return Parameter("name", "path", "string", f"name of the {kind}", required=True)


@attrs.frozen
class Response:
    code: str
    description: str
    schema: Schema


def _ok(schema: Schema) -> Response:
    return Response("200", "OK", schema)


def _created(schema: Schema) -> Response:
    return Response("201", "Created", schema)


def _accepted(schema: Schema) -> Response:
    return Response("202", "Accepted", schema)


@attrs.frozen
class Operation:
    """
    One operation of a path.

    @ivar method: the lower-case HTTP method.
    @ivar action: C{x-kubernetes-action}, or C{""} for non-resource paths.
    @ivar package: the package of the wardle models it refers to.
    @ivar body: the request body's schema, or None.
    @ivar consumes: the request media types.
    @ivar produces: the response media types.
    @ivar gvk: C{x-kubernetes-group-version-kind}, or None.
    """

    method: str
    operation_id: str
    description: str
    tag: str
    package: str
    responses: tuple[Response, ...]
    action: str = ""
    parameters: tuple[Parameter, ...] = ()
    body: Schema | None = None
    body_required: bool = False
    consumes: tuple[str, ...] = MEDIA_TYPES
    produces: tuple[str, ...] = MEDIA_TYPES
    gvk: GVK | None = None


@attrs.frozen
class Path:
    """
    A path, the parameters all its operations share, and its operations.
    """

    path: str
    parameters: tuple[Parameter, ...]
    operations: tuple[Operation, ...]


def _camel(text: str) -> str:
    """
    C{wardle.example.com} to C{WardleExampleCom}, C{v1alpha1} to C{V1alpha1}.
    """
    return "".join(part[:1].upper() + part[1:] for part in text.split("."))


def group_tag() -> str:
    camel = _camel(GROUP)
    return camel[:1].lower() + camel[1:]


def version_tag(version: str) -> str:
    return f"{group_tag()}_{version}"


@attrs.frozen
class _ResourceOperations:
    """
    Builds the operations of one resource in one version.
    """

    resource: ResourceType
    version: str

    @property
    def kind_schema(self) -> Struct:
        return self.resource.versions[self.version].schema

    def _id(self, verb: str, suffix: str = "", collection: bool = False) -> str:
        scope = "Namespaced" if self.resource.namespaced and not suffix else ""
        middle = "Collection" if collection else ""
        return (
            f"{verb}{_camel(GROUP)}{_camel(self.version)}{middle}{scope}"
            f"{self.resource.kind}{suffix}"
        )

    def _operation(
        self, method: str, verb: str, action: str, description: str, **kwargs: Any
    ) -> Operation:
        operation_id = kwargs.pop("operation_id", None) or self._id(verb)
        return Operation(
            method=method,
            operation_id=operation_id,
            description=description,
            tag=version_tag(self.version),
            package=wardle_package(self.version),
            action=action,
            gvk=(GROUP, self.version, self.resource.kind),
            **kwargs,
        )

    def list(self, verbs: Iterable[str], all_namespaces: bool = False) -> Operation:
        watching = "watch" in verbs
        return self._operation(
            "get",
            "list",
            "list",
            f"list {'or watch ' if watching else ''}objects of kind {self.resource.kind}",
            operation_id=self._id("list", "ForAllNamespaces") if all_namespaces else None,
            parameters=() if all_namespaces else _list_parameters(verbs),
            responses=(_ok(self.resource.list_schema(self.version)),),
            produces=MEDIA_TYPES + (("application/json;stream=watch",) if watching else ()),
        )

    def create(self) -> Operation:
        kind = self.kind_schema
        return self._operation(
            "post",
            "create",
            "post",
            f"create a {self.resource.kind}",
            parameters=WRITE_PARAMETERS,
            body=kind,
            body_required=True,
            responses=(_ok(kind), _created(kind), _accepted(kind)),
        )

    def delete_collection(self) -> Operation:
        return self._operation(
            "delete",
            "delete",
            "deletecollection",
            f"delete collection of {self.resource.kind}",
            operation_id=self._id("delete", collection=True),
            parameters=DELETE_PARAMETERS + _list_parameters(()),
            body=DELETE_OPTIONS,
            responses=(_ok(STATUS),),
        )

    def read(self) -> Operation:
        return self._operation(
            "get",
            "read",
            "get",
            f"read the specified {self.resource.kind}",
            responses=(_ok(self.kind_schema),),
        )

    def replace(self) -> Operation:
        kind = self.kind_schema
        return self._operation(
            "put",
            "replace",
            "put",
            f"replace the specified {self.resource.kind}",
            parameters=WRITE_PARAMETERS,
            body=kind,
            body_required=True,
            responses=(_ok(kind), _created(kind)),
        )

    def patch(self) -> Operation:
        kind = self.kind_schema
        return self._operation(
            "patch",
            "patch",
            "patch",
            f"partially update the specified {self.resource.kind}",
            parameters=WRITE_PARAMETERS,
            body=PATCH,
            body_required=True,
            consumes=tuple(PATCH_TYPES),
            responses=(_ok(kind), _created(kind)),
        )

    def delete(self) -> Operation:
        return self._operation(
            "delete",
            "delete",
            "delete",
            f"delete a {self.resource.kind}",
            parameters=DELETE_PARAMETERS,
            body=DELETE_OPTIONS,
            responses=(_ok(STATUS), _accepted(STATUS)),
        )


def _list_parameters(verbs: Iterable[str]) -> tuple[Parameter, ...]:
    return LIST_PARAMETERS + (WATCH_PARAMETERS if "watch" in verbs else ())


def resource_paths(
    resource: ResourceType, version: str, verbs: Sequence[str] = VERBS
) -> list[Path]:
    """
    The paths of C{resource} in C{version}, with an operation per served
    verb (C{verbs} as discovery lists them).
    """
    build = _ResourceOperations(resource, version)
    base = f"/apis/{GROUP}/{version}"
    scope = f"{base}/namespaces/{{namespace}}" if resource.namespaced else base
    scope_parameters = (NAMESPACE,) if resource.namespaced else ()
    collection_builders: dict[str, Callable[[], Operation]] = {
        "list": lambda: build.list(verbs),
        "create": build.create,
        "deletecollection": build.delete_collection,
    }
    item_builders: dict[str, Callable[[], Operation]] = {
        "get": build.read,
        "update": build.replace,
        "patch": build.patch,
        "delete": build.delete,
    }
    collection = tuple(make() for verb, make in collection_builders.items() if verb in verbs)
    item = tuple(make() for verb, make in item_builders.items() if verb in verbs)
    name = _name_parameter(resource.kind)
    paths = [
        Path(f"{scope}/{resource.plural}", (*scope_parameters, PRETTY), collection),
        Path(f"{scope}/{resource.plural}/{{name}}", (name, *scope_parameters, PRETTY), item),
    ]
    if resource.namespaced and "list" in verbs:
        every_namespace = build.list(verbs, all_namespaces=True)
        paths.append(
            Path(
                f"{base}/{resource.plural}",
                (*_list_parameters(verbs), PRETTY),
                (every_namespace,),
            )
        )
    return [path for path in paths if path.operations]


def _discovery_path(path: str, operation_id: str, description: str, tag: str,
                    schema: Struct) -> Path:
    operation = Operation(
        method="get",
        operation_id=operation_id,
        description=description,
        tag=tag,
        package=STRUCT_PACKAGES[schema],
        responses=(_ok(schema),),
    )
    return Path(path, (), (operation,))


def apis_paths() -> list[Path]:
    return [
        _discovery_path(
            "/apis/", "getAPIVersions", "get available API versions", "apis",
            API_GROUP_LIST,
        )
    ]


def group_paths() -> list[Path]:
    return [
        _discovery_path(
            f"/apis/{GROUP}/", f"get{_camel(GROUP)}APIGroup",
            "get information of a group", group_tag(), API_GROUP,
        )
    ]


def version_paths() -> list[Path]:
    return [
        _discovery_path(
            "/version/", "getCode", "get the version information for this server",
            "version", VERSION_INFO,
        )
    ]


def group_version_paths(version: str, verbs: Sequence[str] = VERBS) -> list[Path]:
    """
    The discovery path of C{version} and the paths of its resources.

    @raise KeyError: C{version} is not served.
    """
    if version not in GROUP_VERSIONS:
        raise KeyError(version)
    paths = [
        _discovery_path(
            f"/apis/{GROUP}/{version}/",
            f"get{_camel(GROUP)}{_camel(version)}APIResources",
            "get available resources", version_tag(version), API_RESOURCE_LIST,
        )
    ]
    for resource in resources_in(version):
        paths += resource_paths(resource, version, verbs)
    return paths


def all_paths(verbs: Sequence[str] = VERBS) -> list[Path]:
    """
    Every path the server documents, for the v2 document.
    """
    paths = apis_paths() + group_paths()
    for version in GROUP_VERSIONS:
        paths += group_version_paths(version, verbs)
    return paths + version_paths()
