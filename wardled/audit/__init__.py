# -*- test-case-name: tests.test_audit -*-
"""
Kubernetes-style audit logging: an C{audit.k8s.io/v1} policy
(L{wardled.audit.policy}) decides which requests are logged and how much
of them; the filters' observer (L{wardled.audit.trail}) builds the events
(L{wardled.audit.event}); a writer thread puts them in a rotated file or on
standard output (L{wardled.audit.log}).
"""
