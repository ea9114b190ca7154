"""The body of each asset step, one module per layer: raw, normalized, validated, loaded, report.

`orchestration.assets` declares the assets; each decorated function only hands its context,
inputs and resources to the module-level function here that does the work.
"""
