"""Reproducible load benchmarks: etl-assets against the physical and SQL limits and other tools.

`make bench` (or `.venv/bin/python -m benchmarks.run`) generates the data, runs every variant in
a fresh subprocess and writes `benchmarks/RESULTS.md`. `--smoke` runs tiny sizes in under a minute.
"""
