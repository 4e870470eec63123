"""
Benchmarks of wardled against raw etcd on the same machine in the same run.

Nothing here runs in the test suite: tests check behaviour, these scripts
measure speed.  Run one from the repository root, e.g.
C{python -m bench.watch_fanout --help}.
"""
