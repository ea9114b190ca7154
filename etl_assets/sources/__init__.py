"""Source kinds, one module each, behind `extract(source, request) -> Extract`."""

from __future__ import annotations

from typing import Any

from etl_assets.sources import csv, http, mysql, postgres, sql
from etl_assets.sources.base import Extract, ExtractRequest, SourceDataError, TransientSourceError

EXTRACTORS = {
    "postgres": postgres.extract,
    "csv": csv.extract,
    "mysql": mysql.extract,
    "sql": sql.extract,
    "http": http.extract,
}


def extract(source: Any, request: ExtractRequest) -> Extract:
    return EXTRACTORS[source.kind](source, request)


__all__ = ["Extract", "ExtractRequest", "SourceDataError", "TransientSourceError", "extract"]
