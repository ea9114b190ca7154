"""The source kinds: databases (PostgreSQL, MySQL, SQLAlchemy), CSV files and HTTP APIs."""

from __future__ import annotations

import codecs
import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from etl_assets.core.secrets import ENV_REF
from etl_assets.spec.base import (
    Strict,
    credential_refs,
    env_only,
    identifier,
    no_literal_secret_in_url,
)
from etl_assets.spec.sources import SourceBase


class Connection(Strict):
    url: str

    @field_validator("url")
    @classmethod
    def _no_literal_password(cls, v: str) -> str:
        return no_literal_secret_in_url(v, "postgresql://user:${PG_PASSWORD}@host/db")


class _DatabaseSource(SourceBase):
    """A table (`schema.table`) or a `query:` with :window_start, :window_end, :last_sync."""

    connection: Connection
    table: str | None = None
    query: str | None = None

    def connection_ref(self) -> str | None:
        return self.connection.url

    @model_validator(mode="after")
    def _table_or_query(self) -> _DatabaseSource:
        if bool(self.table) == bool(self.query):
            raise ValueError("give exactly one of table or query")
        if self.table:
            parts = self.table.split(".")
            if len(parts) > 2:
                raise ValueError(f"table {self.table!r} must be table or schema.table")
            for part in parts:
                identifier(part, "table name")
        return self


class PostgresSource(_DatabaseSource):
    """A PostgreSQL table or query, extracted with COPY."""

    kind: Literal["postgres"]


class MysqlSource(_DatabaseSource):
    """A MySQL or MariaDB table or query, streamed with a server-side cursor."""

    kind: Literal["mysql"]

    @field_validator("connection")
    @classmethod
    def _mysql_url(cls, v: Connection) -> Connection:
        if not ENV_REF.fullmatch(v.url) and not re.match(r"^(mysql|mariadb)(\+pymysql)?://", v.url):
            raise ValueError("url must look like mysql://user:${PASSWORD}@host:3306/db")
        return v


class SqlSource(_DatabaseSource):
    """Any SQLAlchemy database: sqlite, postgresql+psycopg, oracle+oracledb, mssql+pymssql."""

    kind: Literal["sql"]

    @field_validator("connection")
    @classmethod
    def _sqlalchemy_url(cls, v: Connection) -> Connection:
        if not ENV_REF.fullmatch(v.url) and not re.match(r"^\w+(\+\w+)?://", v.url):
            raise ValueError(
                "url must be a SQLAlchemy URL such as oracle+oracledb://user:${PW}@host/service"
            )
        return v


class CsvSource(SourceBase):
    """A folder of CSV files matched by a glob, local or on an object store."""

    kind: Literal["csv"]
    path: str
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"
    header: bool = True
    quotechar: str = Field(default='"', min_length=1, max_length=1)
    compression: Literal["infer", "none", "gzip", "zip"] = "infer"
    filename_date: str | None = None
    # As in pandas: fields equal to one of `na_values` are NULL, besides pyarrow's default
    # tokens ("", NULL, N/A, NaN, nan, ...) unless keep_default_na is false.
    na_values: list[str] = Field(default_factory=list)
    keep_default_na: bool = True

    @model_validator(mode="after")
    def _csv(self) -> CsvSource:
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {self.encoding!r}") from None
        if self.filename_date and not all(c in self.filename_date for c in ("%Y", "%m", "%d")):
            raise ValueError("filename_date needs %Y, %m and %d, e.g. orders_%Y%m%d.csv")
        return self

    def _dated_by_name(self) -> bool:
        # The date in each file's name picks the window's files; rows are not filtered.
        return bool(self.filename_date)


class HttpAuth(Strict):
    """`{type: bearer, token: ${TOKEN}}` or `{type: api_key, header: X-API-Key, value: ${KEY}}`."""

    type: Literal["bearer", "api_key"]
    token: str | None = None
    header: str = "X-API-Key"
    value: str | None = None
    # Hosts besides the source URL's own that may receive the credential when a redirect or
    # a next-page link leads there: `host` (the scheme's default port) or `host:port`.
    allowed_hosts: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")]] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _fields(self) -> HttpAuth:
        if self.type == "bearer":
            if self.token is None or self.value is not None:
                raise ValueError("bearer auth takes token (and no value)")
            env_only(self.token, "token")
        else:
            if self.value is None or self.token is not None:
                raise ValueError("api_key auth takes header and value (and no token)")
            env_only(self.value, "value")
        return self


_PAGINATION_FIELDS = {
    "page": {"param", "start", "size_param", "size"},
    "offset": {"offset_param", "limit_param", "limit"},
    "cursor": {"cursor_path", "param"},
    "link": set(),
}


class Pagination(Strict):
    """How the next page is asked for; the last page is the first one that says "no more".

    page: `param`=start, start+1, … until a page is empty or shorter than `size`.
    offset: `offset_param`=0, limit, 2·limit, … until a page is shorter than `limit`.
    cursor: the body's `cursor_path` value is sent as `param` until it is empty.
    link: follow the `Link: <…>; rel="next"` response header.
    """

    type: Literal["page", "offset", "cursor", "link"]
    param: str | None = None
    start: int = Field(default=1, ge=0)
    size_param: str | None = None
    size: int | None = Field(default=None, gt=0)
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(default=100, gt=0)
    cursor_path: str | None = None

    @model_validator(mode="after")
    def _fields(self) -> Pagination:
        allowed = _PAGINATION_FIELDS[self.type] | {"type"}
        stray = sorted(set(self.model_fields_set) - allowed)
        if stray:
            raise ValueError(f"{', '.join(stray)} does not apply to pagination type {self.type}")
        if self.type == "cursor" and not self.cursor_path:
            raise ValueError(
                "cursor pagination needs cursor_path (where the body holds the next cursor)"
            )
        if bool(self.size_param) != bool(self.size):
            raise ValueError("give size_param and size together")
        return self


class HttpSource(SourceBase):
    """A JSON API: `params` may use {window_start} and {window_end} (ISO-8601)."""

    kind: Literal["http"]
    url: str
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    auth: HttpAuth | None = None
    record_path: str | None = None  # e.g. data.items; default: the body is the list
    pagination: Pagination | None = None
    max_pages: int = Field(default=1000, gt=0)
    timeout_seconds: float = Field(default=30, gt=0)

    def connection_ref(self) -> str | None:
        return self.url

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(https?://|\$\{)", v):
            raise ValueError("url must start with http:// or https://")
        return no_literal_secret_in_url(v, "https://api.example.com/v1?key=${API_KEY}")

    @field_validator("headers", "params")
    @classmethod
    def _credentials(cls, v: dict[str, Any]) -> dict[str, Any]:
        for value in v.values():
            if isinstance(value, str):
                credential_refs(value)
        return v


SourceSpec = Annotated[
    PostgresSource | CsvSource | MysqlSource | SqlSource | HttpSource,
    Field(discriminator="kind"),
]
SOURCE_KINDS = ("postgres", "csv", "mysql", "sql", "http")
