"""
A small client of the core kube-apiserver: how wardled finds the cluster
(kubeconfig or in-cluster service account), talks to it over mutual TLS
(TokenReview, SubjectAccessReview, ConfigMaps), and keeps a watched list of
cluster-scoped objects (namespaces) up to date.
"""
