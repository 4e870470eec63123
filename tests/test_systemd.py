# -*- test-case-name: tests.test_systemd -*-
"""
The systemd unit and its environment file agree with each other and with
the command line: every variable the file sets is passed by the unit, and
every flag the file names (set or in a commented example) is one
C{twistd wardled} knows.
"""

from __future__ import annotations

import os
import re

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
