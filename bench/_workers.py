# -*- test-case-name: tests.test_soak_smoke -*-
"""
Watcher worker processes, for the fan-out benchmark (L{bench._phase}) and
the soak (L{bench.soak}): split the watchers among processes, start each
with a pipe, wait for their C{("ready", established, errors)} message, and
stop them.

Both benchmarks hold their watchers in C{spawn}ed processes that speak the
same small protocol over a pipe (only the worker function and the drain
and result messages differ); this is the parent's half of it.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import attrs

#: Seconds a worker gets to exit when told to, then again after SIGTERM.
JOIN_TIMEOUT = 10.0

_SPAWN = multiprocessing.get_context("spawn")


@attrs.define
class Worker:
    """
    A watcher process and this end of its pipe.
    """

    process: BaseProcess
    pipe: Connection

    def send(self, message: tuple[Any, ...]) -> None:
        """
        Send C{message}; a worker that died is not an error here (its
        missing reply says so).
        """
        try:
            self.pipe.send(message)
        except OSError:
            pass

    def receive(self, timeout: float) -> tuple[Any, ...] | None:
        """
        The next message, or C{None} when none came within C{timeout}
        seconds or the worker is gone.
        """
        try:
            if self.pipe.poll(timeout):
                message: tuple[Any, ...] = self.pipe.recv()
                return message
        except (EOFError, OSError):
            pass
        return None

    def stop(self) -> None:
        """
        Tell it to go (if it has not), wait, and kill it if it lingers.
        """
        self.send(("abort",))
        self.process.join(JOIN_TIMEOUT)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(JOIN_TIMEOUT)
        self.pipe.close()


def shares(total: int, parts: int) -> list[int]:
    """
    Split C{total} watchers over at most C{parts} processes, evenly.
    """
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def start_worker(target: Callable[..., None], arguments: tuple[Any, ...]) -> Worker:
    """
    Start C{target(*arguments, pipe)} in a new (spawned, daemonic) process.
    """
    parent_end, child_end = _SPAWN.Pipe()
    process = _SPAWN.Process(target=target, args=(*arguments, child_end), daemon=True)
    process.start()
    child_end.close()
    return Worker(process, parent_end)


def await_ready(workers: Sequence[Worker], timeout: float) -> tuple[int, list[str]]:
    """
    Wait up to C{timeout} seconds in all for every worker's "ready".

    @return: watchers established and the errors reported.
    """
    established, errors = 0, []
    deadline = time.monotonic() + timeout
    for worker in workers:
        message = worker.receive(max(deadline - time.monotonic(), 0.0))
        if message is None or message[0] != "ready":
            errors.append(f"watcher process {worker.process.pid} never got ready")
            continue
        established += message[1]
        errors.extend(message[2])
    return established, errors
