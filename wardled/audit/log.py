# -*- test-case-name: tests.test_audit -*-
"""
The audit log backend (C{--audit-log-path} and friends): events are
encoded and written on a thread of their own, so the reactor never waits
for the disk, into a file rotated as the reference's lumberjack rotates
it, or to standard output (C{--audit-log-path=-}).

Rotation (C{--audit-log-maxsize} MiB, 0 = never): the file is renamed to
C{<name>-<UTC time>.<ext>} (e.g. C{audit-2026-07-24T10-11-12.345.log}) and a
new one started; then at most C{--audit-log-maxbackup} backups are kept
(0 = all), those older than C{--audit-log-maxage} days (by the time in
their name; 0 = any age) are removed, and with C{--audit-log-compress} the
rest are gzipped.
"""

from __future__ import annotations

import datetime
import gzip
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage
from zope.interface import implementer

from wardled.api.negotiate import encode_json
from wardled.audit.event import legacy_line
from wardled.audit.policy import AuditPolicyError, load_audit_policy
from wardled.audit.trail import AuditTrail, IAuditSink
from wardled.config import WardledConfig

STDOUT = "-"
JSON = "json"
LEGACY = "legacy"
FORMATS = (JSON, LEGACY)

MEBIBYTE = 1024 * 1024
DAY = 86400.0

_BACKUP_TIME = "%Y-%m-%dT%H-%M-%S"

log = Logger()


class AuditConfigError(Exception):
    """
    The audit log cannot be set up; the message names the flag.
    """


# -- flags --------------------------------------------------------------------


def parse_count(flag: str, value: str) -> int:
    """
    C{--audit-log-maxage}, C{-maxbackup}, C{-maxsize}: a whole number >= 0.

    @raise usage.UsageError: not a number, or negative (worded as the
        reference words it).
    """
    try:
        number = int(value)
    except ValueError:
        raise usage.UsageError(f"invalid --{flag} {value!r}: want a whole number") from None
    if number < 0:
        raise usage.UsageError(f"--{flag} {number} can't be a negative number")
    return number


def parse_format(value: str) -> str:
    """
    C{--audit-log-format}: C{json} or C{legacy}.

    @raise usage.UsageError: another value.
    """
    if value not in FORMATS:
        raise usage.UsageError(
            f'invalid audit log format {value}, allowed formats are "{",".join(FORMATS)}"'
        )
    return value


def check_audit_config(config: WardledConfig) -> None:
    """
    Check that C{--audit-policy-file} parses (before the reactor runs).

    @raise usage.UsageError: it does not; the line says why.
    """
    if config.audit_policy_file:
        try:
            load_audit_policy(config.audit_policy_file)
        except AuditPolicyError as error:
            raise usage.UsageError(f"--audit-policy-file: {error}") from None


# -- outputs --------------------------------------------------------------------


class Output(Protocol):
    """
    Where encoded events are written (on the writer's thread).
    """

    def write(self, data: bytes) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class StreamOutput:
    """
    A binary stream (standard output) as an L{Output}.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


def open_stdout() -> StreamOutput:
    """
    The process's standard output, whatever twistd did to C{sys.stdout}
    (it routes C{print} into the log).
    """
    return StreamOutput(os.fdopen(os.dup(1), "wb"))


def _open_append(path: str) -> BinaryIO:
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return os.fdopen(descriptor, "ab")


def backup_name(path: str, seconds: float) -> str:
    """
    lumberjack's backup name for C{path} rotated at C{seconds}:
    C{<dir>/<name>-2006-01-02T15-04-05.000<ext>} (UTC).
    """
    directory, filename = os.path.split(path)
    stem, ext = os.path.splitext(filename)
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    stamp = f"{moment.strftime(_BACKUP_TIME)}.{moment.microsecond // 1000:03d}"
    return os.path.join(directory, f"{stem}-{stamp}{ext}")


class RotatingFile:
    """
    An append-only file rotated by size, keeping a bounded set of backups
    (see the module docstring).
    """

    def __init__(
        self,
        path: str,
        max_size_mb: int = 100,
        max_backups: int = 100,
        max_age_days: int = 366,
        compress: bool = False,
        now: Callable[[], float] = time.time,
    ) -> None:
        """
        Open (creating) C{path} and its directory.

        @raise OSError: it cannot be opened.
        """
        self.path = path
        self.max_bytes = max_size_mb * MEBIBYTE
        self.max_backups = max_backups
        self.max_age = max_age_days * DAY
        self.compress = compress
        self._now = now
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._file = _open_append(path)
        self._size = os.fstat(self._file.fileno()).st_size
        stem, ext = os.path.splitext(os.path.basename(path))
        self._backup = re.compile(
            re.escape(stem) + r"-(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3})" + re.escape(ext)
            + r"(\.gz)?$"
        )

    def write(self, data: bytes) -> None:
        """
        Append C{data}, rotating first if it would not fit.
        """
        if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
            self.rotate()
        self._file.write(data)
        self._size += len(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def rotate(self) -> None:
        """
        Rename the file to a backup name, start a new one, prune backups.
        """
        self._file.close()
        moment = self._now()
        target = backup_name(self.path, moment)
        while os.path.exists(target) or os.path.exists(target + ".gz"):
            moment += 0.001
            target = backup_name(self.path, moment)
        os.rename(self.path, target)
        self._file = _open_append(self.path)
        self._size = 0
        self._prune()

    def backups(self) -> list[tuple[float, str]]:
        """
        The backups, newest first, with the time in their name.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        found = []
        for name in os.listdir(directory):
            match = self._backup.match(name)
            if match is None:
                continue
            stamp = datetime.datetime.strptime(match.group(1), _BACKUP_TIME + ".%f")
            seconds = stamp.replace(tzinfo=datetime.UTC).timestamp()
            found.append((seconds, os.path.join(directory, name)))
        return sorted(found, reverse=True)

    def _prune(self) -> None:
        backups = self.backups()
        doomed = []
        if self.max_backups and len(backups) > self.max_backups:
            doomed += backups[self.max_backups:]
            backups = backups[: self.max_backups]
        if self.max_age:
            cutoff = self._now() - self.max_age
            doomed += [entry for entry in backups if entry[0] < cutoff]
            backups = [entry for entry in backups if entry[0] >= cutoff]
        for _, path in doomed:
            os.remove(path)
        if self.compress:
            for _, path in backups:
                if not path.endswith(".gz"):
                    _gzip(path)


def _gzip(path: str) -> None:
    with open(path, "rb") as source, gzip.open(path + ".gz", "wb") as target:
        shutil.copyfileobj(source, target)
    os.remove(path)


# -- the writer -----------------------------------------------------------------


_STOP = object()


def encoder(log_format: str) -> Callable[[dict[str, Any]], bytes]:
    """
    How events are written: one JSON object (as Go writes it) or one
    legacy line per line.
    """
    if log_format == LEGACY:
        return lambda event: (legacy_line(event) + "\n").encode("utf-8")
    return encode_json


@implementer(IAuditSink)
class AuditLogWriter(Service):
    """
    Takes events on the reactor thread (a queue put) and writes them on its
    own thread, flushing after each batch.
    """

    def __init__(
        self,
        output: Output,
        encode: Callable[[dict[str, Any]], bytes],
        reactor: Any,
    ) -> None:
        self._output = output
        self._encode = encode
        self._reactor = reactor
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: Deferred[None] = Deferred()

    def process(self, event: dict[str, Any]) -> None:
        self._queue.put(event)

    def startService(self) -> None:
        super().startService()
        self._thread = threading.Thread(target=self._run, name="wardled-audit-log", daemon=True)
        self._thread.start()

    def stopService(self) -> Deferred[None] | None:
        """
        Write what is queued, close the output; fires when done.
        """
        super().stopService()
        if self._thread is None:
            self._output.close()
            return None
        self._thread = None
        self._queue.put(_STOP)
        return self._stopped

    def drain(self, block: bool = False) -> bool:
        """
        Write every queued event (waiting for one if C{block}) and flush.

        @return: C{False} once told to stop.
        """
        try:
            batch = [self._queue.get(block=block)]
        except queue.Empty:
            return True
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        running = True
        for item in batch:
            if item is _STOP:
                running = False
            else:
                self._write(item)
        self._flush()
        return running

    def _write(self, event: dict[str, Any]) -> None:
        try:
            self._output.write(self._encode(event))
        except Exception as error:  # noqa: BLE001 - report, keep the server up
            self._report(error)

    def _flush(self) -> None:
        try:
            self._output.flush()
        except Exception as error:  # noqa: BLE001 - report, keep the server up
            self._report(error)

    def _report(self, error: Exception) -> None:
        self._reactor.callFromThread(
            log.error, "writing the audit log failed: {error}", error=error
        )

    def _run(self) -> None:
        try:
            while self.drain(block=True):
                pass
        finally:
            try:
                self._output.close()
            finally:
                self._reactor.callFromThread(self._stopped.callback, None)


# -- assembly -------------------------------------------------------------------


@attrs.frozen
class AuditBackend:
    """
    The audit observer for the filters and the service that writes its
    events.
    """

    trail: AuditTrail
    writer: AuditLogWriter


def open_output(config: WardledConfig, now: Callable[[], float] = time.time) -> Output:
    """
    The output C{--audit-log-path} names (created, mode 0600).

    @raise AuditConfigError: it cannot be opened.
    """
    path = config.audit_log_path or STDOUT
    if path == STDOUT:
        return open_stdout()
    try:
        return RotatingFile(
            path,
            config.audit_log_maxsize,
            config.audit_log_maxbackup,
            config.audit_log_maxage,
            config.audit_log_compress,
            now,
        )
    except OSError as error:
        raise AuditConfigError(
            f"cannot open --audit-log-path {path}: {error.strerror or error}"
        ) from None


def audit_backend(config: WardledConfig, reactor: Any) -> AuditBackend | None:
    """
    The audit backend C{config} asks for: none without C{--audit-log-path},
    and none (as in the reference) without C{--audit-policy-file}.

    @raise AuditConfigError: the policy or the log cannot be used.
    """
    if not config.audit_log_path:
        return None
    if not config.audit_policy_file:
        log.info("No audit policy file provided, no events will be recorded for log backend")
        return None
    try:
        policy = load_audit_policy(config.audit_policy_file)
    except AuditPolicyError as error:
        raise AuditConfigError(f"--audit-policy-file: {error}") from None
    writer = AuditLogWriter(open_output(config), encoder(config.audit_log_format), reactor)
    return AuditBackend(AuditTrail(policy, writer), writer)
