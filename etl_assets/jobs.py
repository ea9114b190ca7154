"""Job control against a running Dagster webserver, through its GraphQL API.

`dagster_graphql.DagsterGraphQLClient` launches runs; the schedule mutations and run listings
have no client wrapper, so they are plain GraphQL queries here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlparse

from dagster_graphql import DagsterGraphQLClient

LOCATION = "etl_assets"
REPOSITORY = "__repository__"


class JobControlError(Exception):
    pass


def client(url: str) -> DagsterGraphQLClient:
    u = urlparse(url)
    return DagsterGraphQLClient(u.hostname or "127.0.0.1", port_number=u.port or 80, use_https=u.scheme == "https")


def _gql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    import requests

    try:
        response = requests.post(
            f"{url.rstrip('/')}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
        )
        response.raise_for_status()
    except requests.RequestException as e:
        raise JobControlError(f"the Dagster webserver at {url} did not answer: {e}") from None
    body = response.json()
    if body.get("errors"):
        raise JobControlError("; ".join(e.get("message", "?") for e in body["errors"]))
    return body["data"]


SCHEDULE_QUERY = """
query Schedule($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule {
      name cronSchedule executionTimezone
      scheduleState { id status }
      futureTicks(limit: 1) { results { timestamp } }
    }
    ... on PythonError { message }
    ... on ScheduleNotFoundError { message }
  }
}
"""

RUNS_QUERY = """
query Runs($filter: RunsFilter, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs {
      results { runId status startTime endTime tags { key value } }
    }
    ... on PythonError { message }
  }
}
"""

START_SCHEDULE = """
mutation Start($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}
"""

STOP_SCHEDULE = """
mutation Stop($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}
"""


def _selector(pipeline: str) -> dict[str, str]:
    return {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "scheduleName": f"{pipeline}_schedule",
    }


def schedule(url: str, pipeline: str) -> dict[str, Any]:
    data = _gql(url, SCHEDULE_QUERY, {"selector": _selector(pipeline)})["scheduleOrError"]
    if data["__typename"] != "Schedule":
        raise JobControlError(f"{pipeline}: {data.get('message', data['__typename'])}")
    return data


def runs(url: str, pipeline: str, *, statuses: list[str] | None = None, limit: int = 20) -> list[dict[str, Any]]:
    flt: dict[str, Any] = {"tags": [{"key": "etl/pipeline", "value": pipeline}]}
    if statuses:
        flt["statuses"] = statuses
    data = _gql(url, RUNS_QUERY, {"filter": flt, "limit": limit})["runsOrError"]
    if data["__typename"] != "Runs":
        raise JobControlError(data.get("message", data["__typename"]))
    return data["results"]


def _iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat() if ts else None


def list_jobs(url: str, pipelines: list[str]) -> list[dict[str, Any]]:
    out = []
    for p in pipelines:
        s = schedule(url, p)
        recent = runs(url, p, limit=20)
        finished = [r for r in recent if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
        ok = sum(r["status"] == "SUCCESS" for r in finished)
        future = s["futureTicks"]["results"]
        out.append(
            {
                "pipeline": p,
                "schedule": s["name"],
                "cron": s["cronSchedule"],
                "timezone": s["executionTimezone"],
                "state": s["scheduleState"]["status"],
                "last_run": recent[0]["runId"] if recent else None,
                "last_status": recent[0]["status"] if recent else None,
                "last_started": _iso(recent[0]["startTime"]) if recent else None,
                "next_tick": _iso(future[0]["timestamp"]) if future else None,
                "success_rate": round(ok / len(finished), 3) if finished else None,
                "runs_counted": len(finished),
            }
        )
    return out


def run_job(url: str, pipeline: str, partition: str) -> str:
    from dagster_graphql import DagsterGraphQLClientError

    try:
        return client(url).submit_job_execution(
            f"{pipeline}_job",
            repository_location_name=LOCATION,
            repository_name=REPOSITORY,
            tags={"dagster/partition": partition, "etl/pipeline": pipeline, "etl/trigger": "manual",
                  "etl/partition_lock": f"{pipeline}:{partition}"},
        )
    except DagsterGraphQLClientError as e:
        raise JobControlError(f"{pipeline}: could not launch {partition}: {e}") from None


def set_schedule(url: str, pipeline: str, enabled: bool) -> str:
    if enabled:
        data = _gql(url, START_SCHEDULE, {"selector": _selector(pipeline)})["startSchedule"]
    else:
        state_id = schedule(url, pipeline)["scheduleState"]["id"]
        data = _gql(url, STOP_SCHEDULE, {"id": state_id})["stopRunningSchedule"]
    if data["__typename"] != "ScheduleStateResult":
        raise JobControlError(f"{pipeline}: {data.get('message', data['__typename'])}")
    return data["scheduleState"]["status"]


def logs(url: str, pipeline: str, *, status: str | None, page: int, page_size: int) -> list[dict[str, Any]]:
    statuses = {"failed": ["FAILURE"], "success": ["SUCCESS"], "canceled": ["CANCELED"]}.get(status or "")
    rows = runs(url, pipeline, statuses=statuses, limit=page * page_size)
    return [
        {
            "run_id": r["runId"],
            "status": r["status"],
            "started": _iso(r["startTime"]),
            "finished": _iso(r["endTime"]),
            "partition": next((t["value"] for t in r["tags"] if t["key"] == "dagster/partition"), None),
            "trigger": "schedule" if any(t["key"] == "dagster/schedule_name" for t in r["tags"]) else
            next((t["value"] for t in r["tags"] if t["key"] == "etl/trigger"), "manual"),
        }
        for r in rows[(page - 1) * page_size : page * page_size]
    ]
