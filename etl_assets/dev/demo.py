"""`etl-assets demo seed`: a deterministic shop for the `demo_sales` pipeline.

Each week's orders come from a random generator seeded by that week alone, so seeding again
(today or next month) reproduces every past week row for row. The seed starts where the demo
pipeline's partitions start, so every partition it lists has its week of orders. The data carries the defects
the demo's checks are there to catch: null customer ids, a negative quantity, a duplicated
order and late updates to old orders.
"""

from __future__ import annotations

import datetime as dt
import io
import random
from pathlib import Path
from urllib.parse import unquote, urlparse
from zoneinfo import ZoneInfo

import psycopg
import pymysql

from etl_assets.core import settings
from etl_assets.spec import load_pipeline_file

TZ = ZoneInfo("America/Sao_Paulo")
EPOCH = dt.date(2024, 1, 7)  # a Sunday: week 0 of the order id scheme
CATEGORIES = {
    "coffee": ["Espresso beans", "Filter roast", "Decaf blend", "Cold brew pack"],
    "tea": ["Green tea", "Earl grey", "Mate", "Chamomile"],
    "kitchen": ["Grinder", "French press", "Kettle", "Scale"],
    "bakery": ["Croissant box", "Cheese bread", "Banana cake"],
    "merch": ["Mug", "Tote bag", "T-shirt", "Cap"],
}
CUSTOMERS = 120

ORDERS_DDL = """
CREATE SCHEMA IF NOT EXISTS shop;
CREATE TABLE IF NOT EXISTS shop.orders (
    order_id    bigint PRIMARY KEY,
    customer_id bigint,
    product_sku text NOT NULL,
    quantity    integer NOT NULL,
    unit_price  numeric(10, 2) NOT NULL,
    status      text NOT NULL,
    ordered_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_updated_at_idx ON shop.orders (updated_at);
"""


def products() -> list[dict[str, object]]:
    rng = random.Random(7)
    rows, n = [], 1
    for category, names in CATEGORIES.items():
        for name in names:
            rows.append(
                {
                    "sku": f"SKU-{n:04d}",
                    "name": name,
                    "category": category,
                    "list_price": round(rng.uniform(4, 180), 2),
                }
            )
            n += 1
    return rows


def week_orders(week_start: dt.date, now: dt.datetime) -> list[tuple]:
    """One week's orders as of `now`; a week's content depends only on its start date."""
    index = (week_start - EPOCH).days // 7
    rng = random.Random(index)
    catalog = products()
    start = dt.datetime.combine(week_start, dt.time(), TZ)
    rows = []
    count = rng.randint(140, 220)
    for i in range(count):
        p = rng.choice(catalog)
        ordered = start + dt.timedelta(seconds=rng.randrange(7 * 24 * 3600))
        customer: int | None = rng.randint(1, CUSTOMERS)
        quantity = rng.randint(1, 5)
        status, updated = "placed", ordered
        if rng.random() < 0.04:  # late update: returned 8-20 days later
            later = ordered + dt.timedelta(days=rng.randint(8, 20))
            if later <= now:
                status, updated = "returned", later
        if i in (3, 57):
            customer = None  # defect: checkout without a customer
        if i == 11 and index % 2 == 0:
            quantity = -1  # defect: a negative quantity
        rows.append(
            (index * 10_000 + i, customer, p["sku"], quantity, p["list_price"], status, ordered, updated)
        )
    # defect: the same order submitted twice under a new id
    rows.append((index * 10_000 + 9_999, *rows[20][1:]))
    return [r for r in rows if r[6] <= now]


def customers() -> list[tuple]:
    rng = random.Random(11)
    cities = ["São Paulo", "Campinas", "Santos", "Curitiba", "Rio de Janeiro", "Belo Horizonte"]
    first = ["Ana", "Bruno", "Carla", "Diego", "Elisa", "Fabio", "Gabi", "Hugo", "Iara", "João"]
    rows = []
    for cid in range(1, CUSTOMERS + 1):
        signed = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=rng.randrange(20_000))
        rows.append((cid, f"{rng.choice(first)} {chr(65 + cid % 26)}.", rng.choice(cities), signed.replace(tzinfo=None)))
    return rows


def seed_customers(mysql_url: str) -> int:
    """The demo CRM in MariaDB/MySQL: `demo_crm.customers`, the same rows every time."""
    u = urlparse(mysql_url)
    db = (u.path or "/demo_crm").lstrip("/") or "demo_crm"
    conn = pymysql.connect(
        host=u.hostname or "127.0.0.1", port=u.port or 3306, user=unquote(u.username or "root"),
        password=unquote(u.password or ""), autocommit=True, charset="utf8mb4",
    )
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4")  # name from our own URL
            cur.execute(f"USE `{db}`")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS customers (customer_id BIGINT PRIMARY KEY, name VARCHAR(100),"
                " city VARCHAR(100), signed_up_at DATETIME NOT NULL)"
            )
            cur.execute("DELETE FROM customers")
            rows = customers()
            cur.executemany("INSERT INTO customers VALUES (%s, %s, %s, %s)", rows)
    finally:
        conn.close()
    return len(rows)


def first_week() -> dt.date:
    """The first partition of the shipped demo pipeline: the seed's first week."""
    return load_pipeline_file(settings.PROJECT_ROOT / "pipelines" / "demo_sales.yaml").partitions.start


def seed(
    source_url: str,
    data_dir: Path,
    now: dt.datetime | None = None,
    weeks: int | None = None,
    mysql_url: str | None = None,
) -> dict[str, int]:
    """Create or refresh the demo source database, the products CSV folder and, when a
    MariaDB/MySQL URL is given, the customers table.

    `weeks` back from this week; by default, every week since the demo's first partition.
    """
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(TZ)
    today = now.date()
    this_week = today - dt.timedelta(days=(today.weekday() + 1) % 7)  # Sunday
    if weeks is None:
        weeks = max(0, (this_week - first_week()).days // 7)
    rows: list[tuple] = []
    for w in range(weeks, -1, -1):
        rows.extend(week_orders(this_week - dt.timedelta(weeks=w), now))
    with psycopg.connect(source_url) as conn:
        conn.execute(ORDERS_DDL)
        conn.execute("TRUNCATE shop.orders")
        with conn.cursor().copy(
            "COPY shop.orders (order_id, customer_id, product_sku, quantity, unit_price, status,"
            " ordered_at, updated_at) FROM STDIN"
        ) as copy:
            for r in rows:
                copy.write_row(r)
    folder = data_dir / "products"
    folder.mkdir(parents=True, exist_ok=True)
    catalog = products()
    # Two files, as a partner would drop them: the core range and this season's additions.
    for name, part in (("products_core.csv", catalog[:12]), ("products_season.csv", catalog[12:])):
        buf = io.StringIO()
        buf.write("sku,name,category,list_price\n")
        for p in part:
            buf.write(f"{p['sku']},{p['name']},{p['category']},{p['list_price']:.2f}\n")
        (folder / name).write_text(buf.getvalue(), encoding="utf-8")
    result = {"orders": len(rows), "products": len(catalog), "weeks": weeks + 1, "customers": 0}
    if mysql_url:
        result["customers"] = seed_customers(mysql_url)
    return result
