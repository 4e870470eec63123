"""
wardled: a Kubernetes-style extension API server for the wardle.example.com group.

The package is laid out in the layers of k8s.io/apiserver: L{wardled.api} (HTTP
endpoints: decode, negotiate, encode), L{wardled.registry} (strategies,
admission, validation), L{wardled.storage} (etcd and friends behind one
interface).
"""

__version__ = "0.1.0"
