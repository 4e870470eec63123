# -*- test-case-name: tests.test_dispatch -*-
"""
The route tree's front: resource requests of the API group go straight to
their handler, everything else through the Klein app.

Nearly every request an API server sees is a resource request
(C{/apis/wardle.example.com/<version>/...}), and the filters have already
parsed its L{RequestInfo} (verb, resource, namespace, name).  Matching it
again against Werkzeug's rule map and running it through Klein's
Deferred-per-layer rendering costs more CPU than serving a cached GET
itself, so a request whose path is plainly a resource path is dispatched
here, with Klein's semantics: the handler's bytes are written and the
response finished, a failure goes to the same error handler, and the work
is cancelled when the client goes away or the deadline passes.  Any path
Werkzeug might read differently (escapes, empty or dot segments, a
trailing slash) still goes through Klein, so both roads answer alike.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from wardled.api.app import ALL_METHODS, WardleAPI
from wardled.apis.wardle import GROUP
from wardled.limits import DeadlineCancelling, is_done, on_deadline
from wardled.requestend import when_finished

# /apis/<group>/<version>/<segment>[/<segment>...], each segment a plain
# name: what Klein's C{/apis/<group>/<version>/<path:rest>} rule matches
# with nothing for Werkzeug to decode, merge or redirect.
_PLAIN_RESOURCE_PATH = re.compile(
    rb"/apis/" + re.escape(GROUP.encode()) + rb"/[A-Za-z0-9]+(?:/[A-Za-z0-9][A-Za-z0-9._-]*)+"
)
_METHODS = frozenset(method.encode() for method in ALL_METHODS)


def is_plain_resource_request(request: IRequest) -> bool:
    """
    Whether C{request} may skip the route map: a method the resource route
    takes and a plain resource path.
    """
    return request.method in _METHODS and _PLAIN_RESOURCE_PATH.fullmatch(request.path) is not None


class Routes(Resource):
    """
    The routes of one server: L{WardleAPI.resource} for plain resource
    requests, the Klein app for the rest.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, api: WardleAPI) -> None:
        super().__init__()
        self.api = api
        # Klein stops a route's work when the client goes; stop it at the
        # request's deadline as well.
        self.klein: IResource = DeadlineCancelling(api.app.resource())

    def render(self, request: IRequest) -> Any:
        if not is_plain_resource_request(request):
            # Klein answers a path that is not UTF-8 once decoded with a bare
            # text 400; route it with U+FFFD in place, as the filters' request
            # info reads it.
            request.postpath = [
                segment.decode("utf-8", "replace").encode("utf-8")
                for segment in request.postpath
            ]
            return self.klein.render(request)
        serving = ensureDeferred(self.api.resource(request))
        outcome: list[object] = []
        serving.addBoth(outcome.append)
        if outcome:
            if is_done(request):
                return NOT_DONE_YET
            # Twisted writes the bytes returned, with a Content-Length.
            return self._body(request, outcome[0])
        # The handler waits (storage, a watch): answer when it is done,
        # unless the client has gone or the deadline has passed by then.
        gone: list[object] = []

        def cancel(reason: object = None) -> None:
            gone.append(reason)
            serving.cancel()

        when_finished(request, lambda reason: None if reason is None else cancel(reason))
        on_deadline(request, cancel)
        serving.addCallback(lambda _: self._write_later(request, outcome[0], gone))
        serving.addErrback(self._log_failure)
        return NOT_DONE_YET

    def _body(self, request: IRequest, outcome: object) -> bytes:
        if isinstance(outcome, Failure):
            return self.api.failure_body(request, outcome)
        assert isinstance(outcome, bytes)
        return outcome

    def _write_later(self, request: IRequest, outcome: object, gone: list[object]) -> None:
        if gone or is_done(request):
            # The client left (a streaming handler may end on that very
            # disconnection, before L{render} hears of it) or the deadline
            # passed (it answers itself).
            if isinstance(outcome, Failure) and not outcome.check(CancelledError):
                self.log.failure("serving {path} failed after the client left", outcome, path=request.path)
            return
        body = self._body(request, outcome)
        # Whole, as Twisted writes a body returned at once (and Go a small
        # one): with its length, not chunked.
        request.setHeader(b"content-length", b"%d" % len(body))
        if body:
            request.write(body)
        request.finish()

    def _log_failure(self, failure: Failure) -> None:
        self.log.failure("writing a response failed", failure)
