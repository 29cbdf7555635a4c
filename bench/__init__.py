"""Benchmarks for assetd, run by hand against real servers on 127.0.0.1 (not tests).

.venv/bin/python -m bench.run            # everything; see docs/benchmarks.md
.venv/bin/python -m bench.list_latency   # only the list-query latency part
"""
