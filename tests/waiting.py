# -*- test-case-name: tests.test_waiting -*-
"""
Waiting for something outside the test to happen: a subprocess to listen
or answer its health check, a process to exit, a count to be reached.

Every harness used to write its own "poll until true, else raise with the
server's output" loop; they all use these instead.  A condition is asked
first, then again every C{interval} seconds while C{timeout} seconds have
not passed since the wait began; a condition that raises ends the wait with
that error.  The blocking helpers are for test code and benchmark drivers,
never for code under a reactor; L{poll_async} is for asyncio code.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

#: Seconds between two looks, unless a caller says otherwise.
POLL_INTERVAL = 0.05

T = TypeVar("T")


def poll(
    condition: Callable[[], T],
    timeout: float,
    interval: float = POLL_INTERVAL,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> T | None:
    """
    Call C{condition} until it returns something true.

    @param clock: the time in seconds (tests give a fake one).
    @param sleep: waits that many seconds (tests give a fake one).
    @return: that, or C{None} when C{timeout} seconds passed first.
    """
    deadline = clock() + timeout
    while clock() < deadline:
        result = condition()
        if result:
            return result
        sleep(interval)
    return None


def wait_for(
    condition: Callable[[], T],
    timeout: float,
    failure: Callable[[], Exception],
    interval: float = POLL_INTERVAL,
) -> T:
    """
    Call C{condition} until it returns something true, and return that.

    @param failure: makes the error raised when C{timeout} seconds pass
        first (called only then, so it can read the latest log).
    """
    result = poll(condition, timeout, interval)
    if result is None:
        raise failure()
    return result


def wait_serving(
    process: subprocess.Popen[Any],
    serving: Callable[[], object],
    timeout: float,
    exited: Callable[[int], Exception],
    timed_out: Callable[[], Exception],
    interval: float = POLL_INTERVAL,
) -> None:
    """
    Wait until C{serving()} is true while C{process} runs.

    @param exited: makes the error raised, from the exit status, as soon as
        C{process} is seen to have ended.
    @param timed_out: makes the error raised when C{timeout} seconds pass
        first.
    """

    def running_and_serving() -> object:
        if process.poll() is not None:
            raise exited(process.returncode)
        return serving()

    wait_for(running_and_serving, timeout, timed_out, interval)


def accepts_connections(host: str, port: int, timeout: float = 1.0) -> bool:
    """
    Whether a TCP connection to C{host:port} can be made right now.
    """
    try:
        socket.create_connection((host, port), timeout).close()
    except OSError:
        return False
    return True


def wait_listening(
    host: str,
    port: int,
    process: subprocess.Popen[Any],
    timeout: float,
    exited: Callable[[int], Exception],
    timed_out: Callable[[], Exception],
) -> None:
    """
    Wait until C{process} accepts TCP connections on C{host:port} (see
    L{wait_serving} for the errors).
    """
    wait_serving(
        process, lambda: accepts_connections(host, port), timeout, exited, timed_out
    )


async def poll_async(
    condition: Callable[[], Awaitable[object]] | Callable[[], object],
    timeout: float,
    interval: float = POLL_INTERVAL,
) -> bool:
    """
    L{poll} for asyncio code: C{condition} may be a coroutine function, and
    the loop keeps running between looks.

    @return: whether C{condition} became true within C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(interval)
    return False
