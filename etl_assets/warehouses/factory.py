"""Which warehouse a pipeline loads into: `open_warehouse` and the Dagster resource."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from etl_assets.core.secrets import resolve
from etl_assets.sources.base import SourceDataError
from etl_assets.warehouses.base import BaseWarehouse
from etl_assets.warehouses.clickhouse.warehouse import ClickHouseWarehouse
from etl_assets.warehouses.postgres.warehouse import Warehouse

if TYPE_CHECKING:
    from etl_assets.spec import PipelineSpec, WarehouseSpec


def open_warehouse(spec: WarehouseSpec | None, default_url: str) -> BaseWarehouse:
    """The warehouse a pipeline's `warehouse:` block (a `WarehouseSpec` or None) selects.

    Without one, or with `kind: postgres` and no URL, it is the PostgreSQL warehouse at
    `default_url`. `${ENV}` references in the URL are resolved here, at run time.
    """
    kind = spec.kind if spec is not None else "postgres"
    url = spec.url if spec is not None else None
    resolved = resolve(url, where="warehouse.url") if url else None
    if kind == "postgres":
        return Warehouse(resolved or default_url)
    if kind == "clickhouse":
        if not resolved:
            raise SourceDataError("warehouse.url: a ClickHouse warehouse needs a url")
        # Run history stays in PostgreSQL; its database also serializes loads of a table.
        return ClickHouseWarehouse(resolved, lock_url=default_url)
    raise SourceDataError(f"warehouse.kind: unknown warehouse kind {kind!r}")


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse. The URL comes from ETL_WAREHOUSE_URL when a run launches.

    It also holds run history (`etl_meta`), whichever warehouse a pipeline loads into.
    """

    url: str

    def get(self) -> Warehouse:
        return Warehouse(self.url)

    def for_pipeline(self, spec: PipelineSpec) -> BaseWarehouse:
        """The warehouse `spec` loads into: its `warehouse:` block, else this one."""
        return open_warehouse(spec.warehouse, self.url)
