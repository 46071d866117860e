"""Benchmarks of pgjobs, each against a baseline measured in the same run on the same server.

`python -m bench` (or `make bench`) runs them all; `python -m bench --quick` is the small run.
See bench/README.md.
"""
