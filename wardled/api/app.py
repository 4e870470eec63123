# -*- test-case-name: tests.test_api -*-
"""
The route installer: the Klein app that maps paths to discovery, health,
version and the per-verb resource handlers (k8s.io/apiserver's installer).

Requests reach it through L{wardled.api.filters}, which has already
authenticated and authorized them and attached their L{RequestInfo}.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import PathConverter

from wardled import __version__, apierrors
from wardled.api import (
    create,
    delete,
    discovery,
    get,
    negotiate,
    openapi,
    patch,
    respond,
    update,
    watch,
)
from wardled.api import list as list_handler
from wardled.api.context import request_context
from wardled.api.health import HealthEndpoint, run_endpoint
from wardled.api.scope import Scope
from wardled.apis.wardle import GROUP, GROUP_VERSIONS, resource_for
from wardled.registry.store import Store
from wardled.storage.interfaces import Unavailable

Handler = Callable[[Scope, IRequest], Awaitable[bytes]]

HANDLERS: Mapping[str, Handler] = {
    "get": get.get,
    "list": list_handler.list_objects,
    "create": create.create,
    "update": update.update,
    "patch": patch.patch,
    "delete": delete.delete,
    "deletecollection": delete.delete_collection,
    "watch": watch.watch,
}

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class _AnyPathConverter(PathConverter):
    """
    Werkzeug's C{path} converter, newlines included: a name may hold one
    (C{.../flunders/a%0Ab}), and Werkzeug's own pattern stops at it.
    """

    regex = r"[^/](?:.|\n)*?"


# The wardle binary version the reference reports (major 1, minor 2).
WARDLE_MAJOR, WARDLE_MINOR = "1", "2"


def version_info() -> dict[str, str]:
    """
    C{/version}, shaped like version.Info.
    """
    return {
        "major": WARDLE_MAJOR,
        "minor": WARDLE_MINOR,
        "emulationMajor": WARDLE_MAJOR,
        "emulationMinor": WARDLE_MINOR,
        "minCompatibilityMajor": WARDLE_MAJOR,
        "minCompatibilityMinor": str(int(WARDLE_MINOR) - 1),
        "gitVersion": f"v{WARDLE_MAJOR}.{WARDLE_MINOR}.0+wardled-{__version__}",
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": f"python{platform.python_version()}",
        "compiler": sys.implementation.name,
        "platform": f"{sys.platform}/{platform.machine()}",
    }


class WardleAPI:
    """
    The routes of the server; one instance per server.
    """

    app = Klein()
    app.url_map.converters["path"] = _AnyPathConverter
    log = Logger()

    def __init__(
        self,
        stores: Mapping[str, Store],
        health: Mapping[str, HealthEndpoint],
        metrics: Callable[[], bytes] | None = None,
    ) -> None:
        """
        @param metrics: renders C{/metrics} (none: C{/metrics} is not served).
        """
        self.stores = stores
        self.health = health
        self.metrics = metrics

    def _json(self, request: IRequest, body: dict[str, Any], code: int = 200) -> bytes:
        output = negotiate.negotiate_output(
            respond.header(request, "accept"), allow_table=False, allow_partial=False
        )
        return respond.write(request, body, output, code)

    @app.handle_errors(Exception)
    def handle_error(self, request: IRequest, failure: Failure) -> bytes:
        return self.failure_body(request, failure)

    def failure_body(self, request: IRequest, failure: Failure) -> bytes:
        """
        The response to a route that failed (Klein's or
        L{wardled.api.dispatch}'s): its Status error, or the Status that
        stands for the kind of failure.
        """
        error = failure.value
        if isinstance(error, apierrors.StatusError):
            return respond.write_status(request, error)
        if isinstance(error, Unavailable):
            return self._storage_unavailable(request, error)
        if isinstance(error, HTTPException):
            return self._routing_error(request, error)
        if isinstance(error, RecursionError):
            return self._nested_too_deeply(request)
        return self._internal_error(request, failure)

    def _storage_unavailable(self, request: IRequest, error: Unavailable) -> bytes:
        """
        Storage could not be reached (etcd down, hung or without quorum)
        wherever the handler met it (a consistent read's revision probe,
        admission, the write itself): a 503 Status naming the cause.
        """
        self.log.warn(  # noqa: G010 - twisted.logger has no warning()
            "{method} {path}: storage unavailable: {error}",
            method=request.method, path=request.path, error=error,
        )
        return respond.write_status(
            request, apierrors.service_unavailable(f"storage is unavailable: {error}")
        )

    def _routing_error(self, request: IRequest, error: HTTPException) -> bytes:
        """
        The route map refused the request: a method no route takes
        (C{TRACE}, C{PROPFIND}, C{OPTIONS /}) is the 405 Status the resource
        routes answer, a path no pattern matches (a newline in it) a 404
        Status; not a 500.
        """
        if error.code != 405:
            return respond.write_status(request, apierrors.server_not_found())
        return respond.write_status(
            request,
            apierrors.StatusError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                {},
            ),
        )

    def _nested_too_deeply(self, request: IRequest) -> bytes:
        """
        A request value nested deeper than Python's recursion limit lets the
        handlers walk (copying, merging, encoding): the client's doing, so a
        400 Status, not a 500.
        """
        self.log.info("{method} {path}: nesting too deep", method=request.method, path=request.path)
        return respond.write_status(
            request, apierrors.bad_request("the request is nested too deeply: exceeded max depth")
        )

    def _internal_error(self, request: IRequest, failure: Failure) -> bytes:
        """
        A bug: log it, answer with a 500 Status, keep serving.
        """
        self.log.failure("unhandled error serving {path}", failure, path=request.path)
        return respond.write_status(
            request, apierrors.internal_error("an unexpected error happened; see the server log")
        )

    @app.route("/", methods=["GET"])
    def root(self, request: IRequest) -> bytes:
        return self._json(request, discovery.root_paths())

    @app.route("/version", methods=["GET"])
    def version(self, request: IRequest) -> bytes:
        return self._json(request, version_info())

    @app.route("/apis", methods=["GET"])
    def apis(self, request: IRequest) -> bytes:
        request.setHeader(b"vary", b"Accept")
        if discovery.wants_aggregated(respond.header(request, "accept")):
            return self._aggregated(request)
        host = request.getHost()
        return self._json(request, discovery.api_group_list(f"{host.host}:{host.port}"))

    def _aggregated(self, request: IRequest) -> bytes:
        body, etag = discovery.aggregated_document()
        request.setHeader(b"etag", etag.encode())
        request.setHeader(b"cache-control", b"public")
        request.setHeader(b"content-type", discovery.AGGREGATED_MEDIA_TYPE.encode())
        if openapi.etag_matches(respond.header(request, "if-none-match"), etag):
            request.setResponseCode(304)
            return b""
        return body

    @app.route(f"/apis/{GROUP}", methods=["GET"])
    def group(self, request: IRequest) -> bytes:
        return self._json(request, discovery.api_group_document())

    @app.route(f"/apis/{GROUP}/<version>", methods=["GET"])
    def group_version(self, request: IRequest, version: str) -> bytes:
        if version not in GROUP_VERSIONS:
            raise apierrors.server_not_found()
        return self._json(request, discovery.api_resource_list(version))

    @app.route("/openapi/v2", methods=["GET"])
    def openapi_v2(self, request: IRequest) -> bytes:
        document = openapi.negotiate_v2(respond.header(request, "accept"))
        return openapi.render(request, document)

    @app.route("/openapi/v3", methods=["GET"])
    def openapi_v3(self, request: IRequest) -> bytes:
        return openapi.render(request, openapi.v3_index_document())

    @app.route("/openapi/v3/<path:key>", methods=["GET"])
    def openapi_v3_document(self, request: IRequest, key: str) -> bytes:
        document = openapi.v3_document(key)
        if document is None:
            raise apierrors.server_not_found()
        return openapi.render(request, document)

    @app.route("/<any(healthz,livez,readyz):probe>", methods=["GET"])
    @app.route("/<any(healthz,livez,readyz):probe>/<path:check>", methods=["GET"])
    async def health_check(self, request: IRequest, probe: str, check: str = "") -> bytes:
        params = respond.query(request)
        verbose = "verbose" in params
        exclude = params.get("exclude", [])
        code, text = await run_endpoint(self.health[probe], check, verbose, exclude)
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return text.encode()

    @app.route("/metrics", methods=["GET"])
    def metrics_text(self, request: IRequest) -> bytes:
        """
        Prometheus' text exposition of the server's metrics.
        """
        if self.metrics is None:
            raise apierrors.server_not_found()
        request.setHeader(b"content-type", METRICS_CONTENT_TYPE)
        return self.metrics()

    @app.route(f"/apis/{GROUP}/<version>/<path:rest>", methods=ALL_METHODS)
    async def resource_route(self, request: IRequest, version: str, rest: str) -> bytes:
        return await self.resource(request)

    async def resource(self, request: IRequest) -> bytes:
        """
        Serve a resource request with the handler of its verb (the route
        above, or straight from L{wardled.api.dispatch}).
        """
        context = request_context(request)
        info = context.info
        version = info.api_version
        resource = resource_for(version, info.resource)
        if resource is None or info.subresource or (info.namespace and not resource.namespaced):
            raise apierrors.server_not_found()
        handler = self._handler(info.verb, all_namespaces=resource.namespaced and not info.namespace)
        warning = resource.deprecation_warning(version)
        if warning:
            respond.add_warning(request, warning)
        scope = Scope(
            resource, version, self.stores[resource.plural], info.namespace, info.name, context.user
        )
        return await handler(scope, request)

    def _handler(self, verb: str, all_namespaces: bool) -> Handler:
        """
        The handler for C{verb}; a namespaced resource's cross-namespace path
        only lists and watches.
        """
        handler = HANDLERS.get(verb)
        if handler is None or (all_namespaces and verb not in ("list", "watch")):
            raise apierrors.StatusError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                {},
            )
        return handler

    @app.route("/<path:anything>", methods=ALL_METHODS)
    def not_found(self, request: IRequest, anything: str) -> bytes:
        raise apierrors.server_not_found()
