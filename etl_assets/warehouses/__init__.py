"""Warehouses: where validated partitions load. `base` is what every engine shares, `factory`
picks one per pipeline; `postgres` (default) and `clickhouse` implement it."""
