"""Run tags etl-assets sets and reads: one name per fact, shared by every layer."""

from __future__ import annotations

PREFIX = "etl/"
PIPELINE = "etl/pipeline"  # the pipeline a run belongs to
TRIGGER = "etl/trigger"  # who started it: schedule, backfill, cli, api, ui …
STARTED_BY = "etl/started_by"  # the API token or user behind a manual run
TICK = "etl/tick"  # the schedule tick that launched it
CAUGHT_UP = "etl/caught_up"  # a catch-up run after downtime
OUTSIDE_WINDOW = "etl/outside_window"  # a manual run outside the schedule's window
PARTITION_LOCK = "etl/partition_lock"  # one run per (pipeline, partition): dagster.yaml limits it
BACKFILL = "etl/backfill"  # the backfill a run belongs to
BACKFILL_LANE = "etl/backfill_lane"  # `backfill --max-concurrent N` lanes: dagster.yaml limits it
CPU_S = "etl/cpu_s"  # CPU seconds the run worker used
PEAK_RSS_MB = "etl/peak_rss_mb"  # its peak resident memory
