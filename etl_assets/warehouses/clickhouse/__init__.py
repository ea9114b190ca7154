"""The ClickHouse warehouse: the same idempotent, all-or-nothing partition loads as PostgreSQL.

Laid out like dlt's destinations: `configuration` (URL, types), `sql_client` (quoting, bound
parameters, the client), `locks`, `schema` (DDL), `load` (partition swaps) and `warehouse`
(the `BaseWarehouse` they make up). The names below are what other code imports from here.
"""

from etl_assets.warehouses.clickhouse.configuration import CH_TYPES, Endpoint, parse_url
from etl_assets.warehouses.clickhouse.sql_client import Connection, bind_named
from etl_assets.warehouses.clickhouse.warehouse import ClickHouseWarehouse

__all__ = ["CH_TYPES", "ClickHouseWarehouse", "Connection", "Endpoint", "bind_named", "parse_url"]
