# -*- test-case-name: tests.test_api -*-
"""
What every resource handler needs to know about the request it serves
(k8s.io/apiserver's RequestScope): the resource and version, the store, the
namespace and name from the path, and the user.
"""

from __future__ import annotations

from typing import Any

import attrs

from wardled.apis.scheme import ResourceType
from wardled.auth.user import UserInfo
from wardled.registry.store import Store


@attrs.frozen
class Scope:
    resource: ResourceType
    version: str
    store: Store
    namespace: str
    name: str
    user: UserInfo
    cacher: Any = None
