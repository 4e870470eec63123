# -*- test-case-name: tests.fuzz -*-
"""
Fuzzing wardled over HTTP: requests generated from its own OpenAPI
documents (schemathesis) and from hypothesis strategies aimed at the
parsers (selectors, continue tokens, names, bodies, patches).

Whatever is sent, the server must answer below 500, every error must be a
Kubernetes C{Status}, and the server must still be ready afterwards.  The
number of examples is C{FUZZ_EXAMPLES} (small by default, so that the
normal test run stays quick; C{make fuzz} raises it).
"""
