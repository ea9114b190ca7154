"""Job control against a running Dagster webserver, through its GraphQL API.

`dagster_graphql.DagsterGraphQLClient` launches runs; the schedule mutations and run listings
have no client wrapper, so they are plain GraphQL queries here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlparse

import requests
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from gql.transport.exceptions import TransportConnectionFailed

from etl_assets.core import tags as tag

LOCATION = "etl_assets"
REPOSITORY = "__repository__"


class JobControlError(Exception):
    pass


def client(url: str) -> DagsterGraphQLClient:
    u = urlparse(url)
    return DagsterGraphQLClient(u.hostname or "127.0.0.1", port_number=u.port or 80, use_https=u.scheme == "https",
                                path_prefix=u.path.rstrip("/"))  # a webserver under --path-prefix


def _gql(url: str, query: str, variables: dict[str, Any] | None = None, *, timeout: float = 30) -> dict[str, Any]:
    try:
        response = requests.post(
            f"{url.rstrip('/')}/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout
        )
        response.raise_for_status()
    except (requests.ConnectionError, requests.Timeout):
        raise JobControlError(not_answering(url)) from None
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
    flt: dict[str, Any] = {"tags": [{"key": tag.PIPELINE, "value": pipeline}]}
    if statuses:
        flt["statuses"] = statuses
    data = _gql(url, RUNS_QUERY, {"filter": flt, "limit": limit})["runsOrError"]
    if data["__typename"] != "Runs":
        raise JobControlError(data.get("message", data["__typename"]))
    return data["results"]


def _iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat() if ts else None


def list_jobs(url: str, pipelines: list[str]) -> list[dict[str, Any]]:
    return [job(url, p) for p in pipelines]


def job(url: str, p: str) -> dict[str, Any]:
    """One pipeline's schedule, state, last run, next tick and success rate (last 20 runs)."""
    s = schedule(url, p)
    recent = runs(url, p, limit=20)
    finished = [r for r in recent if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
    ok = sum(r["status"] == "SUCCESS" for r in finished)
    future = s["futureTicks"]["results"]
    return {
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


def run_job(url: str, pipeline: str, partition: str, *, tags: dict[str, str] | None = None) -> str:
    """Launch one partition; `tags` add to the run's (e.g. who started it)."""
    return launch(url, pipeline, {"dagster/partition": partition, tag.PARTITION_LOCK: f"{pipeline}:{partition}",
                                  **(tags or {})}, what=partition)


def run_range(url: str, pipeline: str, first: str, last: str, *, tags: dict[str, str] | None = None) -> str:
    """Launch partitions first..last as one run, as a single-run backfill from the UI is."""
    return launch(url, pipeline, {"dagster/asset_partition_range_start": first,
                                  "dagster/asset_partition_range_end": last, **(tags or {})},
                  what=f"{first}…{last}")


def launch(url: str, pipeline: str, tags: dict[str, str], *, what: str) -> str:
    try:
        return client(url).submit_job_execution(
            f"{pipeline}_job",
            repository_location_name=LOCATION,
            repository_name=REPOSITORY,
            tags={tag.PIPELINE: pipeline, tag.TRIGGER: "manual", **tags},
        )
    except DagsterGraphQLClientError as e:
        if isinstance(e.__cause__, TransportConnectionFailed):
            raise JobControlError(not_answering(url)) from None
        raise JobControlError(f"{pipeline}: could not launch {what}: {e}") from None


def not_answering(url: str) -> str:
    """No webserver at `url`: say so, and how to get one, instead of the socket's error."""
    return (
        f"no Dagster webserver answers at {url}: start one with `etl-assets dev`, "
        "or point --url (or ETL_WEBSERVER_URL) at the one that runs"
    )


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
    statuses = {"failed": ["FAILURE"], "partial": ["FAILURE"], "success": ["SUCCESS"], "canceled": ["CANCELED"],
                **IN_FLIGHT}.get(status or "")
    rows = runs(url, pipeline, statuses=statuses, limit=page * page_size)
    return [
        {
            "run_id": r["runId"],
            "status": r["status"],
            "started": _iso(r["startTime"]),
            "finished": _iso(r["endTime"]),
            "partition": next((t["value"] for t in r["tags"] if t["key"] == "dagster/partition"), None),
            "trigger": "schedule" if any(t["key"] == "dagster/schedule_name" for t in r["tags"]) else
            next((t["value"] for t in r["tags"] if t["key"] == tag.TRIGGER), "manual"),
        }
        for r in rows[(page - 1) * page_size : page * page_size]
    ]


RELOAD = """
mutation Reload($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry {
      locationOrLoadError { __typename ... on PythonError { message causes { message } } }
    }
    ... on PythonError { message }
    ... on RepositoryLocationNotFound { message }
    ... on ReloadNotSupported { message }
    ... on UnauthorizedError { message }
  }
}
"""

TERMINATE = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) {
    __typename
    ... on TerminateRunSuccess { run { runId status } }
    ... on TerminateRunFailure { message run { status } }
    ... on RunNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}
"""

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime tags { key value } }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

RELOAD_TIMEOUT_S = 300

# Dagster's run statuses by the words history uses for runs that have not finished.
IN_FLIGHT = {"queued": ["QUEUED", "NOT_STARTED", "STARTING"], "running": ["STARTED", "CANCELING"]}


class RunNotFound(JobControlError):
    pass


class RunFinished(JobControlError):
    pass


def reload_location(url: str) -> None:
    """Reload the code location, so added, changed or removed specs take effect."""
    # The answer waits for a new code server to import everything: far longer than a query.
    data = _gql(url, RELOAD, {"name": LOCATION}, timeout=RELOAD_TIMEOUT_S)["reloadRepositoryLocation"]
    if data["__typename"] != "WorkspaceLocationEntry":
        raise JobControlError(f"could not reload {LOCATION}: {data.get('message', data['__typename'])}")
    loaded = data["locationOrLoadError"] or {}
    if loaded.get("__typename") == "PythonError":
        # The innermost cause says what broke (a SyntaxError, a bad spec), not where it was caught.
        why = ([c["message"] for c in loaded.get("causes") or []] or [loaded["message"]])[-1]
        raise JobControlError(f"{LOCATION} failed to load: {why.strip().splitlines()[0]}")


def run_info(url: str, run_id: str) -> dict[str, Any] | None:
    """A run as the webserver sees it (also one not yet recorded in history), or None."""
    data = _gql(url, RUN_QUERY, {"runId": run_id})["runOrError"]
    if data["__typename"] == "RunNotFoundError":
        return None
    if data["__typename"] != "Run":
        raise JobControlError(data.get("message", data["__typename"]))
    return data


def terminate_run(url: str, run_id: str) -> str:
    """Cancel a queued run or terminate a running one; the run's status after the request."""
    data = _gql(url, TERMINATE, {"runId": run_id})["terminateRun"]
    kind = data["__typename"]
    if kind == "TerminateRunSuccess":
        return data["run"]["status"]
    if kind == "RunNotFoundError":
        raise RunNotFound(f"no run {run_id}")
    if kind == "TerminateRunFailure":
        raise RunFinished(f"run {run_id} cannot be canceled: {data['message']}")
    raise JobControlError(data.get("message", kind))


def in_flight(url: str, pipeline: str, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Runs of `pipeline` that have not finished (queued, running), newest first."""
    statuses = IN_FLIGHT.get(status or "") or [s for v in IN_FLIGHT.values() for s in v]
    return runs(url, pipeline, statuses=statuses, limit=limit)


def server_info(url: str) -> dict[str, Any]:
    """What the webserver at `url` says about itself (its Dagster version); JobControlError when
    it does not answer, in one sentence."""
    try:
        response = requests.get(f"{url.rstrip('/')}/server_info", timeout=10)
        response.raise_for_status()
        return response.json()
    except requests.ConnectionError:
        reason = "nothing accepts connections there"
    except requests.Timeout:
        reason = "no answer within 10s"
    except (requests.RequestException, ValueError) as e:
        reason = str(e)
    raise JobControlError(f"the Dagster webserver at {url} did not answer: {reason}")
