"""`python -m bench`: every benchmark on a stack of its own, one table, results under bench/results/.

Each workload lives in its own module and records `Figure`s on the shared `Bench` context
(bench/core.py); bench/report.py turns them into the table, the JSON file and the plot.
"""
