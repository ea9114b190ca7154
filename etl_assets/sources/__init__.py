"""Source kinds, one module each, behind `extract(source, request) -> Extract`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from etl_assets.sources import csv, http, mysql, postgres, sql
from etl_assets.sources.base import Extract, ExtractRequest, SourceDataError, TransientSourceError
from etl_assets.spec import CsvSource, MysqlSource, PostgresSource, SqlSource

if TYPE_CHECKING:
    from etl_assets.spec import SourceSpec


def extract(source: SourceSpec, request: ExtractRequest) -> Extract:
    """Read one window of `source` with the module of its kind."""
    if isinstance(source, PostgresSource):
        return postgres.extract(source, request)
    if isinstance(source, CsvSource):
        return csv.extract(source, request)
    if isinstance(source, MysqlSource):
        return mysql.extract(source, request)
    if isinstance(source, SqlSource):
        return sql.extract(source, request)
    return http.extract(source, request)


__all__ = ["Extract", "ExtractRequest", "SourceDataError", "TransientSourceError", "extract"]
