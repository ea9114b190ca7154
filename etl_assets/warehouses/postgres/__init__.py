"""The PostgreSQL warehouse, the default: typed tables, idempotent all-or-nothing partition loads.

Laid out like dlt's destinations: `configuration` (types, names), `sql_client` (connections,
COPY), `schema` (DDL and drift), `load` (strategies), `scd2` (versioned loads) and `warehouse`
(the `BaseWarehouse` they make up). The names below are what other code imports from here.
"""

from etl_assets.warehouses.base import (
    REPLACING,
    BaseWarehouse,
    DriftEvent,
    LoadCounts,
    MissingColumnPolicy,
    current_view,
    failures_table,
    lock_key,
    missing_columns_error,
    quarantine_table,
    side_table,
)
from etl_assets.warehouses.factory import WarehouseResource, open_warehouse
from etl_assets.warehouses.postgres.configuration import PG_TYPES
from etl_assets.warehouses.postgres.warehouse import Warehouse

__all__ = [
    "PG_TYPES",
    "REPLACING",
    "BaseWarehouse",
    "DriftEvent",
    "LoadCounts",
    "MissingColumnPolicy",
    "Warehouse",
    "WarehouseResource",
    "current_view",
    "failures_table",
    "lock_key",
    "missing_columns_error",
    "open_warehouse",
    "quarantine_table",
    "side_table",
]
