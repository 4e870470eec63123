# -*- test-case-name: tests.test_reviews -*-
"""
A small time-limited cache for the answers of kube-apiserver's review APIs
(TokenReview, SubjectAccessReview), with one question in flight per key.

Every request that carries a bearer token, or that only a
SubjectAccessReview can authorize, would otherwise cost a round trip to the
cluster; Kubernetes caches both answers for 10 s by default, and so do we.
While a question is being asked, later requests with the same key wait for
that answer instead of asking again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred

Value = TypeVar("Value")

MAX_ENTRIES = 4096


class TTLCache(Generic[Value]):
    """
    Answers by key, each kept for the time L{ttl_of} gives it.

    @ivar clock: provides C{seconds()} (a L{twisted.internet.task.Clock} in
        tests).
    @ivar ttl_of: how long to keep an answer, in seconds (0: not at all).
    """

    def __init__(
        self,
        clock: Any,
        ttl_of: Callable[[Value], float],
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.clock = clock
        self.ttl_of = ttl_of
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Value]] = OrderedDict()
        self._asking: dict[str, list[Deferred[Value]]] = {}

    def cached(self, key: str) -> tuple[bool, Value | None]:
        """
        C{(True, answer)} while an answer for C{key} is fresh, else
        C{(False, None)}.
        """
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires, value = entry
        if expires <= self.clock.seconds():
            del self._entries[key]
            return False, None
        return True, value

    async def get(self, key: str, ask: Callable[[], Awaitable[Value]]) -> Value:
        """
        The fresh answer for C{key}, or the one C{ask()} gives (kept for
        L{ttl_of} of it).  An exception from C{ask} is not cached; it reaches
        every caller that waited for that question.
        """
        hit, value = self.cached(key)
        if hit:
            return value  # type: ignore[return-value]
        waiting = self._asking.get(key)
        if waiting is not None:
            answer: Deferred[Value] = Deferred()
            waiting.append(answer)
            return await answer
        self._asking[key] = []
        try:
            value = await ask()
        except Exception as error:
            for waiter in self._asking.pop(key):
                waiter.errback(error)
            raise
        self._store(key, value)
        for waiter in self._asking.pop(key):
            waiter.callback(value)
        return value

    def _store(self, key: str, value: Value) -> None:
        ttl = self.ttl_of(value)
        if ttl <= 0:
            return
        self._entries[key] = (self.clock.seconds() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

