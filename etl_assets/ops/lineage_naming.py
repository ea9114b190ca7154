"""OpenLineage names: event types, the job namespace, and dataset namespaces and names per
the naming spec.

Dataset names are built from scheme, host, port and path alone, so a credential in a URL
cannot reach them. Nothing here needs openlineage-python, which only sending an event loads.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import dagster as dg
from sqlalchemy.engine import make_url

from etl_assets.core.secrets import resolve
from etl_assets.spec import PipelineSpec

# Database URL backends: (OpenLineage scheme, default port).
_DATABASES = {
    "postgresql": ("postgres", 5432), "postgres": ("postgres", 5432), "mysql": ("mysql", 3306),
    "mariadb": ("mysql", 3306), "oracle": ("oracle", 1521), "mssql": ("sqlserver", 1433),
}
# Default schema of an unqualified table, where the engine has one.
_DEFAULT_SCHEMA = {"postgres": "public", "sqlserver": "dbo"}

# The OpenLineage event type of each run status a lineage sensor reacts to.
EVENT_TYPES = {
    dg.DagsterRunStatus.STARTED: "START", dg.DagsterRunStatus.SUCCESS: "COMPLETE",
    dg.DagsterRunStatus.FAILURE: "FAIL", dg.DagsterRunStatus.CANCELED: "ABORT",
}
DEFAULT_JOB_NAMESPACE = "etl-assets"


def job_namespace() -> str:
    return os.environ.get("OPENLINEAGE_NAMESPACE") or DEFAULT_JOB_NAMESPACE


def _host_port(host: str | None, port: int | None) -> str:
    host = host or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def database_location(url: str) -> tuple[str, str]:
    """(namespace, database) of a database URL, from its scheme, host and port only."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return "file", u.database or ""
    scheme, port = _DATABASES.get(backend, (backend, None))
    database = u.database or str(u.query.get("service_name") or "")
    return f"{scheme}://{_host_port(u.host, u.port or port)}", database


def table_name(namespace: str, database: str, table: str) -> str:
    """`database.schema.table` (MySQL: `database.table`), as the naming spec spells it."""
    if namespace == "file":  # SQLite: the table inside the database file
        return f"{database}/{table}"
    scheme = namespace.split("://", 1)[0]
    if scheme == "mysql":
        return table if "." in table else f"{database}.{table}"
    if "." not in table and scheme in _DEFAULT_SCHEMA:
        table = f"{_DEFAULT_SCHEMA[scheme]}.{table}"
    return f"{database}.{table}" if database else table


def url_dataset(url: str) -> tuple[str, str]:
    """An API endpoint: `scheme://host:port` and its path; no userinfo, query or fragment."""
    split = urlsplit(url)
    port = split.port or {"http": 80, "https": 443}.get(split.scheme)
    return f"{split.scheme}://{_host_port(split.hostname, port)}", split.path or "/"


def file_dataset(pattern: str, path: str) -> tuple[str, str]:
    """A file a CSV glob matched: `file` and its path, or `s3://bucket` and its key."""
    split = urlsplit(pattern)
    if split.scheme in ("", "file", "local") or len(split.scheme) == 1:  # `C:` is a drive
        return "file", path
    host = split.hostname or ""
    name = path.removeprefix(host).lstrip("/") if host and path.startswith(host) else path.lstrip("/")
    return f"{split.scheme}://{_host_port(host, split.port) if host else ''}", name


def warehouse_location(spec: PipelineSpec, default_url: str) -> tuple[str, str]:
    """(namespace, database) of where the pipeline loads."""
    wh = spec.warehouse
    url = resolve(wh.url, where="warehouse.url") if wh and wh.url else default_url
    if wh is not None and wh.kind == "clickhouse":
        split = urlsplit(url)
        if split.scheme == "chdb":
            return "file", split.path
        return f"clickhouse://{_host_port(split.hostname, split.port or 8123)}", ""
    return database_location(url)
