# -*- test-case-name: tests.test_logjson -*-
"""
JSON log lines for log collectors: C{twistd --logger=wardled.logjson.observer
-n wardled ...} writes every log event to standard output as one JSON
object per line (Twisted's C{jsonFileLogObserver} format, record separator
and all), instead of twistd's text lines.

twistd sets logging up itself, after the plugin has built the service, so
this is a twistd option rather than a wardled flag.
"""

from __future__ import annotations

import sys

from twisted.logger import FileLogObserver, jsonFileLogObserver


def observer() -> FileLogObserver:
    """
    The log observer factory for C{twistd --logger}.
    """
    return jsonFileLogObserver(sys.stdout, recordSeparator="")
