# -*- test-case-name: tests.test_reviews -*-
"""
Which cluster each delegated job talks to.

The reference needs three kubeconfigs (C{--authentication-kubeconfig} for
TokenReview and the authentication ConfigMap, C{--authorization-kubeconfig}
for SubjectAccessReview, C{--kubeconfig} for namespaces), each defaulting to
the pod's in-cluster configuration, and refuses to start without them.
wardled also runs stand-alone: a job with neither a flag nor an in-cluster
environment is simply not delegated (L{Clusters} holds C{None} for it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

from wardled.config import WardledConfig
from wardled.kube.kubeconfig import (
    SERVICE_ACCOUNT_ROOT,
    ClusterConfig,
    in_cluster_available,
    in_cluster_config,
    load_kubeconfig,
)


@attrs.frozen
class Clusters:
    """
    The cluster of each delegated job, or C{None} when it is not delegated.
    """

    authentication: ClusterConfig | None = None
    authorization: ClusterConfig | None = None
    core: ClusterConfig | None = None


def _resolve(
    path: str | None, environ: Mapping[str, str], root: str
) -> ClusterConfig | None:
    if path:
        return load_kubeconfig(path)
    if in_cluster_available(environ):
        return in_cluster_config(environ, root)
    return None


def resolve_clusters(
    config: WardledConfig,
    environ: Mapping[str, str] = os.environ,
    root: str = SERVICE_ACCOUNT_ROOT,
) -> Clusters:
    """
    Read the kubeconfig flags of C{config} (or the in-cluster
    configuration).

    @raise wardled.kube.kubeconfig.KubeconfigError: a kubeconfig, or the
        in-cluster service account, cannot be used.
    """
    return Clusters(
        authentication=_resolve(config.authentication_kubeconfig, environ, root),
        authorization=_resolve(config.authorization_kubeconfig, environ, root),
        core=_resolve(config.kubeconfig, environ, root),
    )
