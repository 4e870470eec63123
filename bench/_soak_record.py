# -*- test-case-name: tests.test_soak_smoke -*-
"""
What the soak's clients write down as they go: each operation's latency
and status, every failed response with the time it came, the writes the
server acknowledged, and the events a watcher should have seen.

These values travel between the soak's process and its watcher processes
(pickled through a pipe), so they are plain C{attrs} classes of numbers and
strings.  Times are C{time.monotonic()}: C{CLOCK_MONOTONIC} is machine-wide,
so a watcher process's times compare with the writer's.
"""

from __future__ import annotations

from collections import Counter

import attrs

CREATE = "create"
UPDATE = "update"
DELETE = "delete"

#: The watch event type a write of each kind produces.
EVENT_TYPES = {CREATE: "ADDED", UPDATE: "MODIFIED", DELETE: "DELETED"}

#: Event types as small numbers (what watcher processes store per event).
TYPE_CODES = {"ADDED": 1, "MODIFIED": 2, "DELETED": 3}

#: The status recorded for a request that got no HTTP response (refused,
#: reset, timed out).
NO_RESPONSE = 0


def name_index(name: str) -> int:
    """
    The number at the end of an object name the soak made (C{bench-000042}
    -> 42); -1 for any other name.
    """
    _, _, digits = name.rpartition("-")
    return int(digits) if digits.isdigit() else -1


@attrs.frozen
class Failure:
    """
    One response that was not a success (or no response at all).

    @ivar at: when it came (C{time.monotonic()}).
    @ivar operation: what was asked (C{"create"}, C{"list"}, C{"watch"}...).
    @ivar status: the HTTP status, or L{NO_RESPONSE}.
    @ivar detail: the start of the body, or the exception.
    """

    at: float
    operation: str
    status: int
    detail: str

    @property
    def server_error(self) -> bool:
        """
        Whether it is a 5xx.
        """
        return self.status >= 500

    @property
    def no_response(self) -> bool:
        """
        Whether no HTTP response came.
        """
        return self.status == NO_RESPONSE


@attrs.define
class Recorder:
    """
    Latencies and statuses of one client's requests, by operation.

    @ivar latencies: seconds from sending to the whole response, of the
        successful (2xx) requests only.
    @ivar statuses: how many responses of each status (L{NO_RESPONSE} for
        none).
    @ivar failures: every non-2xx response except those the caller
        expected (a 410 on a stale continue token).
    """

    latencies: dict[str, list[float]] = attrs.Factory(dict)
    statuses: dict[str, Counter[int]] = attrs.Factory(dict)
    failures: list[Failure] = attrs.Factory(list)

    def success(self, operation: str, status: int, seconds: float) -> None:
        """
        Note a 2xx that took C{seconds}.
        """
        self.latencies.setdefault(operation, []).append(seconds)
        self._count(operation, status)

    def failure(
        self,
        operation: str,
        status: int,
        detail: str,
        at: float,
        expected: bool = False,
    ) -> None:
        """
        Note a non-2xx (or no response, L{NO_RESPONSE}) that came at C{at};
        C{expected} ones are counted but not kept as failures.
        """
        self._count(operation, status)
        if not expected:
            self.failures.append(Failure(at, operation, status, detail[:300]))

    def _count(self, operation: str, status: int) -> None:
        self.statuses.setdefault(operation, Counter())[status] += 1

    def merge(self, other: Recorder) -> None:
        """
        Add C{other}'s records to these.
        """
        for operation, seconds in other.latencies.items():
            self.latencies.setdefault(operation, []).extend(seconds)
        for operation, counts in other.statuses.items():
            self.statuses.setdefault(operation, Counter()).update(counts)
        self.failures.extend(other.failures)


@attrs.frozen
class Ack:
    """
    A write the server acknowledged (answered 2xx).

    @ivar namespace: where.
    @ivar name: the object's L{name_index}.
    @ivar operation: L{CREATE}, L{UPDATE} or L{DELETE}.
    @ivar revision: the resourceVersion the response carried (0 for a
        delete: wardled answers a delete with a C{Status}, as the reference
        does, so its revision is not known).
    @ivar sent: when the request was sent.
    @ivar acked: when its whole response had arrived.
    """

    namespace: str
    name: int
    operation: str
    revision: int
    sent: float
    acked: float


@attrs.frozen
class Expected:
    """
    An event a watcher of C{namespace} must receive if its watch covered
    the write: the event's revision is known to lie strictly between
    C{after} and C{before} (exactly C{after + 1} for a create or update,
    whose response carried it; a range for a delete).

    @ivar name: the object's L{name_index}.
    @ivar type_code: the event type (L{TYPE_CODES}).
    """

    name: int
    type_code: int
    after: int
    before: int

    @property
    def exact(self) -> bool:
        """
        Whether the revision is known exactly.
        """
        return self.before - self.after == 2
