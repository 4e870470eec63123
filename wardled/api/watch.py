# -*- test-case-name: tests.test_watch -*-
"""
The watch verb: C{?watch=true} on collection and item paths, and the
deprecated C{/watch/} paths (k8s.io/apiserver's C{ListResource} with
C{opts.Watch}, and C{handlers/watch.go}).

The request's options are parsed and validated as Kubernetes'
C{validateWatchOptions} does (422 C{ListOptions.meta.k8s.io "" is
invalid}), the starting point is settled against the resource's watch cache
(waiting up to 3 s for a C{resourceVersion} the cache has not reached, then
504), and a L{WatchStream} streams the cache's events to the client.  A
C{resourceVersion} older than the cache's history still gets a 200, then one
ERROR event with the 410 Expired Status.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any, cast

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.web import server
from twisted.web.iweb import IRequest

from wardled import apierrors
from wardled.api import negotiate, respond, table
from wardled.api.listoptions import LIST_OPTIONS_KIND
from wardled.api.scope import Scope
from wardled.api.watchstream import (
    EventEncoder,
    StreamSettings,
    WatchStream,
    expired_line,
    start_response,
)
from wardled.apis import field
from wardled.apis.field import FieldError
from wardled.cache.interfaces import (
    CachedObject,
    ICacher,
    IWatcher,
    NotReady,
    TooLarge,
    TooOld,
)
from wardled.registry.store import NOT_OLDER_THAN, parse_resource_version
from wardled.selectors import (
    FieldSelector,
    FieldTerm,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from wardled.storage.interfaces import Unavailable

Predicate = Callable[[CachedObject], bool]

NAME_FIELD = "metadata.name"
NAMESPACE_FIELD = "metadata.namespace"

_INT64 = re.compile(r"[+-]?[0-9]+")


@attrs.frozen
class WatchSettings:
    """
    Server-side knobs of every watch.

    @ivar capacity: the most events a watcher may hold that its client has
        not taken; a client further behind is ended (it re-lists).
    @ivar min_request_timeout: a watch without C{timeoutSeconds} lasts a
        random time in [this, twice this) (the reference's
        C{--min-request-timeout}, 1800 s).
    @ivar revision_wait: how long a watch from a C{resourceVersion} the
        cache has not reached waits before the 504.
    @ivar keepalive_interval: see L{StreamSettings.keepalive_interval}.
    @ivar bookmark_interval: see L{StreamSettings.bookmark_interval}.
    @ivar batch_size: see L{StreamSettings.batch_size}.
    @ivar stall_timeout: see L{StreamSettings.stall_timeout}.
    @ivar random: a float in [0, 1), for the default lifetime.
    """

    capacity: int = 1000
    min_request_timeout: float = 1800.0
    revision_wait: float = 3.0
    keepalive_interval: float = 30.0
    bookmark_interval: float = 30.0
    batch_size: int = 500
    stall_timeout: float = 60.0
    random: Callable[[], float] = random.random

    def lifetime(self, timeout_seconds: int | None) -> float:
        """
        How long a watch lasts: C{timeoutSeconds} if given and not 0, else
        the randomised default.
        """
        if timeout_seconds:
            return float(timeout_seconds)
        return self.min_request_timeout * (1.0 + self.random())


DEFAULT_SETTINGS = WatchSettings()


@attrs.frozen
class WatchOptions:
    """
    A parsed, validated watch request.

    @ivar resource_version: as sent (C{""}, C{"0"} or digits).
    @ivar send_initial_events: the C{sendInitialEvents} parameter (None when
        not sent).
    @ivar allow_bookmarks: C{allowWatchBookmarks}.
    @ivar timeout_seconds: C{timeoutSeconds}, None when not sent.
    """

    label_selector: LabelSelector | None = None
    field_selector: FieldSelector | None = None
    resource_version: str = ""
    send_initial_events: bool | None = None
    allow_bookmarks: bool = False
    timeout_seconds: int | None = None

    @property
    def initial_events(self) -> bool:
        """
        Whether the watch opens with the current state: asked for, or the
        WatchList default for C{resourceVersion} unset or C{"0"}.
        """
        if self.send_initial_events is not None:
            return self.send_initial_events
        return self.resource_version in ("", "0")

    @property
    def initial_events_end(self) -> bool:
        """
        Whether a BOOKMARK marks the end of the initial events: only when
        C{sendInitialEvents=true} was sent with C{allowWatchBookmarks=true}
        (the reference's C{isListWatchRequest}).
        """
        return bool(self.send_initial_events) and self.allow_bookmarks

    def predicate(self) -> Predicate | None:
        """
        The selectors as a test on cached objects, or None for everything.
        """
        labels, fields = self.label_selector, self.field_selector
        if labels is None and fields is None:
            return None

        def matches(cached: CachedObject) -> bool:
            if labels is not None and not labels.matches(cached.labels):
                return False
            return fields is None or fields.matches(
                {NAME_FIELD: cached.name, NAMESPACE_FIELD: cached.namespace}
            )

        return matches


def go_bool(value: str) -> bool:
    """
    A boolean query parameter as Kubernetes' parameter codec reads it:
    only C{0} and C{false} (any case) are false; anything else, even
    empty, is true.
    """
    return not (value == "0" or value.lower() == "false")


def _flag(value: str | None) -> bool:
    return value is not None and go_bool(value)


def parse_watch_options(request: IRequest, name: str = "") -> WatchOptions:
    """
    The options of a watch request.

    @param name: the object name of an item path (a C{metadata.name}
        selector), or empty for a collection.
    @raise apierrors.StatusError: 400 for unparseable values or a
        C{fieldSelector} naming another object; 422 for combinations
        C{validateWatchOptions} forbids.
    """
    arg = respond.query_arg
    send_initial = arg(request, "sendInitialEvents")
    options = WatchOptions(
        label_selector=_label_selector(arg(request, "labelSelector")),
        field_selector=_field_selector(arg(request, "fieldSelector")),
        resource_version=arg(request, "resourceVersion") or "",
        send_initial_events=None if send_initial is None else go_bool(send_initial),
        allow_bookmarks=_flag(arg(request, "allowWatchBookmarks")),
        timeout_seconds=_timeout_seconds(arg(request, "timeoutSeconds")),
    )
    errors = validate_watch_options(
        options.send_initial_events,
        arg(request, "resourceVersionMatch") or "",
        arg(request, "continue") or "",
    )
    if errors:
        raise apierrors.invalid(LIST_OPTIONS_KIND, "", errors)
    options = attrs.evolve(options, field_selector=_named(options.field_selector, name))
    parse_resource_version(options.resource_version)
    return options


def validate_watch_options(
    send_initial_events: bool | None, match: str, continue_token: str
) -> list[FieldError]:
    """
    Kubernetes' C{validateWatchOptions}, with the WatchList feature on.
    """
    errors: list[FieldError] = []
    if send_initial_events is not None and match != NOT_OLDER_THAN:
        errors.append(
            field.forbidden(
                "resourceVersionMatch",
                f"sendInitialEvents requires setting resourceVersionMatch to {NOT_OLDER_THAN}",
            )
        )
    if match:
        if send_initial_events is None:
            errors.append(
                field.forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents "
                    "is provided",
                )
            )
        if match != NOT_OLDER_THAN:
            errors.append(field.not_supported("resourceVersionMatch", match, [NOT_OLDER_THAN]))
        if continue_token:
            errors.append(
                field.forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                )
            )
    return errors


def _label_selector(text: str | None) -> LabelSelector | None:
    if not text:
        return None
    try:
        selector = parse_label_selector(text)
    except SelectorError as error:
        raise apierrors.bad_request(str(error)) from None
    return None if selector.is_empty() else selector


def _field_selector(text: str | None) -> FieldSelector | None:
    if not text:
        return None
    try:
        selector = parse_field_selector(text)
    except SelectorError as error:
        raise apierrors.bad_request(str(error)) from None
    return None if selector.is_empty() else selector


def _named(selector: FieldSelector | None, name: str) -> FieldSelector | None:
    """
    An item watch's selector: the name, or the client's selector if it
    requires exactly that name.
    """
    if not name:
        return selector
    if selector is None:
        return FieldSelector((FieldTerm(NAME_FIELD, name),))
    if selector.required_value(NAME_FIELD) != name:
        raise apierrors.bad_request("fieldSelector metadata.name doesn't match requested name")
    return selector


def _timeout_seconds(text: str | None) -> int | None:
    if not text:
        return None
    if not _INT64.fullmatch(text):
        raise apierrors.bad_request(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    return int(text)


def storage_initializing() -> apierrors.StatusError:
    """
    The 429 of a watch on a cache that is not ready (first sync or
    rebuild).
    """
    return apierrors.StatusError(
        429, "TooManyRequests", "storage is (re)initializing", {"retryAfterSeconds": 1}
    )


async def start_revision(
    cacher: ICacher, options: WatchOptions, settings: WatchSettings
) -> int | None:
    """
    Where the watch starts: None for the current state first (initial
    events), else the revision after which events are sent.

    C{resourceVersion} unset is a consistent read (see
    L{consistent_start}); C{"0"} is whatever the cache holds; N waits until
    the cache has reached N.

    @raise apierrors.StatusError: 504 when the cache does not reach the
        revision in time.
    """
    if options.resource_version == "0":
        current = int(cacher.revision)
    elif options.resource_version == "":
        current = await consistent_start(cacher, strict=bool(options.send_initial_events))
    else:
        current = parse_resource_version(options.resource_version)
        try:
            await cacher.wait_for_revision(current, settings.revision_wait)
        except TooLarge as error:
            raise apierrors.timeout(str(error), 1) from None
    return None if options.initial_events else current


async def consistent_start(cacher: ICacher, strict: bool) -> int:
    """
    The storage's current revision, once the cache has caught up with it.
    If the cache lags or storage cannot be asked, a legacy watch starts
    from what the cache holds; a C{strict} one (the client asked for
    initial events explicitly, a WatchList) fails.

    @raise apierrors.StatusError: 504 or 503, only when C{strict}.
    """
    try:
        return int(await cacher.consistent_revision())
    except TooLarge as error:
        if strict:
            raise apierrors.timeout(str(error), 1) from None
    except Unavailable as error:
        if strict:
            raise apierrors.service_unavailable(f"storage is unavailable: {error}") from None
    return int(cacher.revision)


def scope_cacher(scope: Scope) -> ICacher | None:
    """
    The watch cache of the scope's resource: the scope's, else its store's.
    """
    cacher: Any = scope.cacher
    if cacher is None:
        cacher = getattr(scope.store, "cacher", None)
    return cacher


def request_reactor(request: server.Request) -> IReactorTime:
    """
    The reactor serving C{request} (its Site's): the stream's timers run
    on the clock of the connection whose idle timeout they beat.
    """
    site = request.site
    if site is None:
        raise RuntimeError("a watch must be served through a Site")
    reactor: IReactorTime = site.reactor
    return reactor


async def watch(scope: Scope, request: IRequest, settings: WatchSettings = DEFAULT_SETTINGS) -> bytes:
    """
    Serve a watch: HTTP 200 and a stream of events until the lifetime ends,
    the cache ends the watcher or the client goes away.

    @return: nothing more to write (Klein then finishes the response).
    @raise apierrors.StatusError: before the stream starts: 405 without a
        cache, 406, 400, 422, 429 (cache not ready), 504 (resourceVersion
        not reached).
    """
    cacher = scope_cacher(scope)
    if cacher is None:
        raise apierrors.method_not_supported(scope.resource.group_resource, "watch")
    encoder = _encoder(scope, request)
    options = parse_watch_options(request, scope.name)
    streaming = cast(server.Request, request)
    try:
        watcher = await open_watcher(cacher, scope, options, settings)
    except TooOld as error:
        start_response(streaming)
        request.write(expired_line(error))
        return b""
    stream = WatchStream(
        streaming, watcher, encoder, request_reactor(streaming), stream_settings(options, settings)
    )
    await stream.start()
    return b""


def _encoder(scope: Scope, request: IRequest) -> EventEncoder:
    """
    The encoder of the negotiated format (JSON, maybe as Table or
    PartialObjectMetadata).

    @raise apierrors.StatusError: 406, or 400 for a bad C{includeObject}.
    """
    output = negotiate.negotiate_output(
        respond.header(request, "accept"), allow_table=True, allow_partial=True, stream=True
    )
    include_object = table.INCLUDE_METADATA
    if output.as_kind == negotiate.TABLE:
        include_object = table.parse_include_object(respond.query_arg(request, "includeObject"))
    return EventEncoder(scope.resource, scope.version, output, include_object)


async def open_watcher(
    cacher: ICacher, scope: Scope, options: WatchOptions, settings: WatchSettings
) -> IWatcher:
    """
    Subscribe to the scope's objects from where the options say.

    @raise TooOld: the requested revision is older than the cache's history.
    @raise apierrors.StatusError: 429 while the cache is not ready, 504.
    """
    if not cacher.ready:
        raise storage_initializing()
    try:
        after = await start_revision(cacher, options, settings)
        watcher: IWatcher = cacher.watch(
            scope.store.list_prefix(scope.namespace),
            after,
            capacity=settings.capacity,
            predicate=options.predicate(),
        )
    except NotReady:
        raise storage_initializing() from None
    return watcher


def stream_settings(options: WatchOptions, settings: WatchSettings) -> StreamSettings:
    """
    The stream settings of one watch.
    """
    return StreamSettings(
        lifetime=settings.lifetime(options.timeout_seconds),
        bookmarks=options.allow_bookmarks,
        initial_events_end=options.initial_events_end,
        keepalive_interval=settings.keepalive_interval,
        bookmark_interval=settings.bookmark_interval,
        batch_size=settings.batch_size,
        stall_timeout=settings.stall_timeout,
    )
