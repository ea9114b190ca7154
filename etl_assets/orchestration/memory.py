"""Memory limits per step process: `resources: {memory_mb: N}` in a pipeline, or ETL_MEMORY_MB.

Each step runs in the run's process (the default executor, and `etl-assets run`), or in its
own process for a pipeline with `executor: multiprocess`; either way the limit holds only while
the step's body runs.

A watchdog thread samples the process's resident memory every 100 ms. Past the limit it
raises `MemoryLimitExceeded` in the step's thread, which becomes one sentence naming pipeline,
source, step and partition: a Failure that is never retried, since the same input needs the
same memory. Sampling cannot catch one allocation larger than the headroom, nor interrupt a
long C call, so the address space is capped too (RLIMIT_AS): what the process already maps
beyond its resident memory, plus twice the limit. An allocation past that cap raises
MemoryError (pyarrow's ArrowMemoryError and numpy's are MemoryErrors), told the same way.
Both are undone when the step ends, so the CLI process is left as it was found.
"""

from __future__ import annotations

import ctypes
import functools
import inspect
import resource
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import dagster as dg
import psutil

from etl_assets.core import settings
from etl_assets.core.errors import memory_limit_failure
from etl_assets.spec import PipelineSpec

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

MB = 1 << 20
SAMPLE_SECONDS = 0.1
# A step that swallowed the first interruption is interrupted again this many samples later.
REPEAT_SAMPLES = 20
# The address-space cap, as a multiple of the limit, on top of what is mapped but not resident.
ADDRESS_SPACE_FACTOR = 2

_DONE = object()
_active = threading.local()


class MemoryLimitExceeded(MemoryError):
    """Raised in a step's thread when its process holds more memory than its limit."""


def limit_for(spec: PipelineSpec) -> int | None:
    """The pipeline's own limit, else the instance's; None: unlimited."""
    return spec.resources.memory_mb or settings.memory_mb()


class Guard:
    """One step's limit: the watchdog, the address-space cap, and the sentence when exceeded."""

    def __init__(self, limit_mb: int, where: str, step: str) -> None:
        self.limit_mb, self.where, self.step = limit_mb, where, step
        self.peak_mb = 0.0
        self.tripped = False
        self._thread_id = threading.get_ident()
        self._armed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._saved_rlimit: tuple[int, int] | None = None
        self._watchdog = threading.Thread(target=self._watch, name="etl-memory-watchdog", daemon=True)

    def start(self) -> Guard:
        self._cap_address_space()
        self._watchdog.start()
        _active.guard = self
        return self

    def close(self) -> None:
        self._set_armed(False)
        self._stop.set()
        self._watchdog.join()
        if self._saved_rlimit is not None:
            resource.setrlimit(resource.RLIMIT_AS, self._saved_rlimit)
        _active.guard = None

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()` with interruptions allowed; raises MemoryLimitExceeded if the limit was passed."""
        self._set_armed(True)
        try:
            result = fn()
        finally:
            self._set_armed(False)
        if self.tripped:  # passed while not interruptible, or the interruption was swallowed
            raise MemoryLimitExceeded()
        return result

    def failure(self, where: str | None = None) -> dg.Failure:
        self.peak_mb = max(self.peak_mb, psutil.Process().memory_info().rss / MB)
        return memory_limit_failure(where or self.where, self.limit_mb, self.step, self.peak_mb)

    def _cap_address_space(self) -> None:
        mem = psutil.Process().memory_info()
        self.peak_mb = mem.rss / MB
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = mem.vms - mem.rss + ADDRESS_SPACE_FACTOR * self.limit_mb * MB
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        if soft != resource.RLIM_INFINITY and soft <= cap:
            return  # already capped tighter
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        self._saved_rlimit = (soft, hard)

    def _set_armed(self, armed: bool) -> None:
        with self._lock:
            self._armed = armed
            if not armed:  # an interruption not yet delivered is dropped
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), None)

    def _watch(self) -> None:
        process = psutil.Process()
        over = 0
        while not self._stop.wait(SAMPLE_SECONDS):
            rss_mb = process.memory_info().rss / MB
            self.peak_mb = max(self.peak_mb, rss_mb)
            if rss_mb <= self.limit_mb:
                over = 0
                continue
            self.tripped = True
            with self._lock:
                if self._armed and over % REPEAT_SAMPLES == 0:
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(
                        ctypes.c_ulong(self._thread_id), ctypes.py_object(MemoryLimitExceeded)
                    )
            over += 1


def limit_failure(exc: BaseException, where: str) -> dg.Failure | None:
    """The memory-limit Failure for `exc` raised in a step under a limit; None otherwise."""
    guard: Guard | None = getattr(_active, "guard", None)
    if guard is None or not isinstance(exc, MemoryError):
        return None
    return guard.failure(where)


def _open(context: dg.AssetExecutionContext, spec: PipelineSpec, source: str | None) -> Guard | None:
    where = f"{spec.name}/{source}" if source else spec.name
    try:
        limit = limit_for(spec)
    except ValueError as e:
        raise dg.Failure(description=f"{where}: {e}", allow_retries=False) from None
    if limit is None:
        return None
    where += f" partition {', '.join(context.partition_keys)}"
    return Guard(limit, where, context.get_step_execution_context().step.key).start()


def bounded(spec: PipelineSpec, source: str | None = None) -> Callable[[F], F]:
    """Run an asset's body under the pipeline's memory limit (a plain or a generator body)."""

    def decorate(fn: F) -> F:
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def steps(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> Any:
                guard = _open(context, spec, source)
                events = fn(context, *args, **kwargs)
                if guard is None:
                    return (yield from events)
                try:
                    # Interruptible only inside the body: not while Dagster handles what it yielded.
                    while (event := guard.call(lambda: next(events, _DONE))) is not _DONE:
                        yield event
                except MemoryError:
                    raise guard.failure() from None
                finally:
                    guard.close()

            return cast(F, steps)

        @functools.wraps(fn)
        def step(context: dg.AssetExecutionContext, *args: Any, **kwargs: Any) -> Any:
            guard = _open(context, spec, source)
            if guard is None:
                return fn(context, *args, **kwargs)
            try:
                return guard.call(lambda: fn(context, *args, **kwargs))
            except MemoryError:
                raise guard.failure() from None
            finally:
                guard.close()

        return cast(F, step)

    return decorate
