# -*- test-case-name: tests.test_systemd -*-
"""
The systemd unit and its environment file agree with each other and with
the command line: every variable the file sets is passed by the unit, and
every flag the file names (set or in a commented example) is one
C{twistd wardled} knows.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys

import pytest

from tests.etcdserver import EtcdServer
from tests.harness import TestPKI, WardledProcess, venv_bin
from wardled.tap import Options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = os.path.join(ROOT, "conf", "wardled.conf")
UNIT = os.path.join(ROOT, "systemd", "wardled.service")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as source:
        return source.read()


def _assignments() -> list[tuple[str, str]]:
    found = []
    for line in _read(CONF).splitlines():
        match = re.match(r"#?(WARDLED_[A-Z0-9_]+)=(.*)$", line)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def test_every_variable_reaches_the_command_line() -> None:
    exec_start = _read(UNIT).split("ExecStart=", 1)[1].split("\nRestart", 1)[0]
    passed = set(re.findall(r"\$(WARDLED_[A-Z0-9_]+)", exec_start))
    assert {name for name, _ in _assignments()} == passed


def test_every_flag_named_is_known() -> None:
    known = {name.rstrip("=") for name in Options().longOpt}
    named = {
        flag
        for _, value in _assignments()
        for flag in re.findall(r"--([a-z0-9-]+)", value)
    }
    named |= set(re.findall(r"^# (?:\S+ )?--([a-z0-9-]+)", _read(CONF), re.MULTILINE))
    assert named, "the file names no flag"
    assert named <= known, named - known


# -- the units themselves (systemd integration, socket activation) ---------

SOCKET_UNIT = os.path.join(ROOT, "systemd", "wardled.socket")
UNIT_TWISTD = "/opt/wardled/venv/bin/twistd"

HARDENING = {
    "NoNewPrivileges": "true",
    "CapabilityBoundingSet": "",
    "ProtectSystem": "strict",
    "ProtectHome": "true",
    "PrivateTmp": "true",
    "ProtectKernelTunables": "true",
    "ProtectKernelModules": "true",
    "ProtectControlGroups": "true",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "LockPersonality": "true",
    "ReadWritePaths": "/var/lib/wardled",
}


def parse_unit(path: str) -> dict[str, dict[str, list[str]]]:
    """
    A unit file as sections of keys, each with its values in order
    (backslash continuations joined, comments dropped).
    """
    sections: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] = {}
    logical = ""
    for line in _read(path).splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        text, logical = logical.strip(), ""
        if text.startswith("[") and text.endswith("]"):
            section = sections.setdefault(text[1:-1], {})
            continue
        key, equals, value = text.partition("=")
        assert equals, f"not KEY=VALUE in {path}: {text!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return sections


def only(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, (key, values)
    return values[0]


def test_service_is_notify_with_watchdog_and_reload() -> None:
    unit = parse_unit(UNIT)
    service = unit["Service"]
    assert only(unit, "Service", "Type") == "notify"
    assert only(unit, "Service", "NotifyAccess") == "main"
    assert only(unit, "Service", "WatchdogSec") == "30s"
    assert only(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert only(unit, "Service", "KillSignal") == "SIGTERM"
    assert only(unit, "Service", "Restart") == "on-failure"
    assert only(unit, "Service", "LimitNOFILE") == "65536"
    assert (only(unit, "Service", "User"), only(unit, "Service", "Group")) == (
        "wardled",
        "wardled",
    )
    assert only(unit, "Service", "StateDirectory") == "wardled"
    assert only(unit, "Service", "WorkingDirectory") == "/var/lib/wardled"
    assert only(unit, "Service", "EnvironmentFile") == "/etc/wardled/wardled.conf"
    assert service["ExecStart"][0].startswith(f"{UNIT_TWISTD} --nodaemon ")
    assert "MemoryDenyWriteExecute" not in service


def test_stop_timeout_above_the_drain() -> None:
    """
    systemd's SIGKILL comes after the longest drain with the default
    --shutdown-delay-duration (the drain's own deadline plus a margin).
    """
    from wardled.shutdown import DRAIN_TIMEOUT
    from wardled.tap import parse_duration

    timeout = parse_duration("TimeoutStopSec", only(parse_unit(UNIT), "Service", "TimeoutStopSec"))
    default_delay = parse_duration("shutdown-delay-duration", Options().defaults["shutdown-delay-duration"])
    assert timeout >= default_delay + DRAIN_TIMEOUT + 30


def test_service_hardening() -> None:
    unit = parse_unit(UNIT)
    for key, value in HARDENING.items():
        assert only(unit, "Service", key) == value, key


def test_socket_unit() -> None:
    unit = parse_unit(SOCKET_UNIT)
    assert only(unit, "Socket", "ListenStream") == "8443"
    assert only(unit, "Socket", "Service") == "wardled.service"
    assert only(unit, "Install", "WantedBy") == "sockets.target"


def test_systemd_analyze_verify(tmp_path: pathlib.Path) -> None:
    """
    C{systemd-analyze verify} accepts both units (with the twistd of this
    virtualenv in place of /opt/wardled's, which verify insists exists).
    Without systemd-analyze on the machine the units are still parsed.
    """
    for source in (UNIT, SOCKET_UNIT):
        text = _read(source).replace(UNIT_TWISTD, venv_bin("twistd"))
        (tmp_path / os.path.basename(source)).write_text(text, encoding="utf-8")
    copies = [str(tmp_path / "wardled.service"), str(tmp_path / "wardled.socket")]
    for copy in copies:
        assert parse_unit(copy)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    result = subprocess.run(
        [analyze, "verify", *copies], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


# -- socket activation with a real twistd ----------------------------------

# What systemd does between fork and exec for a socket-activated service:
# the socket on fd 3 and LISTEN_* naming this process (exec keeps the pid).
_ACTIVATE = """
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="wardled.socket")
os.execv(sys.argv[2], sys.argv[2:])
"""


@pytest.mark.parametrize(
    ("family", "address"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")]
)
def test_socket_activation(
    etcd: EtcdServer, pki: TestPKI, tmp_path: pathlib.Path, family: int, address: str
) -> None:
    """
    Given a listening socket the way systemd passes one, wardled serves
    HTTPS on it and neither checks nor binds --secure-port (taken here),
    and tells systemd where it serves.
    """
    from tests.test_sdnotify import NotifyListener, fields

    listening = socket.socket(family, socket.SOCK_STREAM)
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    notify = NotifyListener()
    try:
        listening.bind((address, 0))
        listening.listen(16)
        port = listening.getsockname()[1]
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        taken_port = taken.getsockname()[1]
        twistd = WardledProcess.command(etcd.url, pki, taken_port)
        log_path = str(tmp_path / "wardled.log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", _ACTIVATE, str(listening.fileno()), *twistd],
                pass_fds=(listening.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(tmp_path),
                env={**os.environ, "PYTHONUNBUFFERED": "1", **notify.environ},
            )
        listening.close()
        server = WardledProcess(process, port, pki, twistd, log_path, str(tmp_path))
        try:
            server.wait_healthy()
            response = server.https("GET", "/apis/wardle.example.com/v1alpha1")
            assert response.status == 200, response.body
            assert response.json()["groupVersion"] == "wardle.example.com/v1alpha1"
            ready = notify.wait_for(lambda d: "READY=1" in d, timeout=20)[-1]
            assert fields(ready)["STATUS"] == "serving on the socket passed by systemd"
            assert server.stop() == 0, server.output()
        finally:
            server.stop()
    finally:
        listening.close()
        taken.close()
        notify.close()
