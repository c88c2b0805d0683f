"""Operations: Prometheus metrics, JSON access logs with the requestId, readiness."""

from __future__ import annotations

import contextvars
import itertools
import logging
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
access_log = logging.getLogger("tasks.access")


MAX_LABEL_SETS = 4096  # (route, method) pairs counted apart
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)  # seconds
_LE = [floatToGoString(bound) for bound in (*LATENCY_BUCKETS, float("inf"))]  # the buckets' "le" labels


class Metrics:
    """This process's instruments, in a registry of its own (one per app).

    The requests, their latencies and the commands are plain counts, changed only on the event
    loop's thread (the pipeline and the endpoints that count run there), and handed to the
    registry as metric families at each scrape (``_Counts``: a custom collector, the library's
    way to export numbers kept elsewhere). prometheus_client's Counter and Histogram take a lock
    for every change: 27k instructions a create, 5% of it (README: "Counts without locks")."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # per (route, method): the answers' counts by status, and a count per bucket of
        # LATENCY_BUCKETS, then of those over the last, then the sum of the seconds
        self.requests: dict[tuple[str, str], tuple[dict[int, int], list[float]]] = {}
        self.commands: dict[tuple[str, str], int] = {}
        self.registry.register(_Counts(self))

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count an answered request and its time."""
        kept = self.requests.get((route, method))
        if kept is None:
            if len(self.requests) >= MAX_LABEL_SETS:  # methods come from clients (h11 takes any token):
                method = "OTHER"  # past the bound, new pairs count under one label, in bounded memory
            kept = self.requests.setdefault((route, method), ({}, [0] * (len(LATENCY_BUCKETS) + 2)))
        statuses, timed = kept
        statuses[status] = statuses.get(status, 0) + 1
        timed[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # its bucket: the first bound ≥ seconds
        timed[-1] += seconds

    def command(self, command: str, outcome: str) -> None:
        """Count a command's outcome ("ok" or the error's type)."""
        key = (command, outcome)
        self.commands[key] = self.commands.get(key, 0) + 1

    def watch(self, services: Any) -> None:
        """Report the live state of a process's parts at every scrape."""
        self.registry.register(_LiveState(services))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Counts(Collector):
    """The counts of ``Metrics`` as the families prometheus_client's Counter and Histogram
    would expose (the same names, labels and buckets; no ``_created`` series)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        requests = CounterMetricFamily("tasks_http_requests", "HTTP requests answered",
                                       labels=["route", "method", "status"])
        latency = HistogramMetricFamily("tasks_http_request_duration_seconds",
                                        "Time to answer an HTTP request", labels=["route", "method"])
        for (route, method), (statuses, timed) in list(metrics.requests.items()):
            for status, count in list(statuses.items()):
                requests.add_metric([route, method, str(status)], count)
            cumulative = list(itertools.accumulate(timed[:-1]))
            latency.add_metric([route, method], list(zip(_LE, cumulative)), timed[-1])
        yield requests
        yield latency
        commands = CounterMetricFamily("tasks_commands", "Commands run, by type and outcome",
                                       labels=["command", "outcome"])
        for (command, outcome), count in list(metrics.commands.items()):
            commands.add_metric([command, outcome], count)
        yield commands


class _LiveState(Collector):
    def __init__(self, services: Any) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        svc = self.services
        app = svc.app
        yield _gauge("tasks_events_appended", "Events this process appended", app.events_appended)
        yield _gauge("tasks_conflicts_retried", "Commands re-run on fresh state after losing a race",
                     app.conflicts_retried)
        if svc.writer is not None:
            yield _gauge("tasks_command_batches", "Group commits made by this process", svc.writer.batches)
        head = GaugeMetricFamily("tasks_log_head", "Last position in the event log")
        try:
            head_position = app.recorder.max_notification_id() or 0
        except Exception:  # noqa: BLE001 - the store is down: readiness says so, metrics carry on
            head_position = -1
        head.add_metric([], head_position)
        yield head
        position = GaugeMetricFamily("tasks_projection_position", "Last log position a view applied", labels=["projection"])
        lag = GaugeMetricFamily("tasks_projection_lag", "Events a view is behind the log", labels=["projection"])
        failed = GaugeMetricFamily("tasks_projection_failed", "1 while a view's runner is failing", labels=["projection"])
        for runner in svc.projections:
            name = runner.view.name
            position.add_metric([name], runner.position)
            lag.add_metric([name], max(0, head_position - runner.position) if head_position >= 0 else 0)
            failed.add_metric([name], 1 if runner.status == "failed" else 0)
        yield position
        yield lag
        yield failed
        if svc.task_cache is not None:
            cache = svc.task_cache
            yield _gauge("tasks_task_cache_hits", "GETs served from a cached task that was still current", cache.hits)
            yield _gauge("tasks_task_cache_misses", "GETs that replayed the task", cache.misses)
            yield _gauge("tasks_task_cache_bytes", "Memory the task cache accounts for", cache.bytes)
        pool = getattr(svc.store.datastore, "pool", None)
        stats = pool.get_stats() if hasattr(pool, "get_stats") else None
        if stats:
            in_use = GaugeMetricFamily("tasks_db_pool_connections", "Database pool connections", labels=["state"])
            size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
            in_use.add_metric(["in_use"], size - available)
            in_use.add_metric(["idle"], available)
            in_use.add_metric(["waiting_requests"], stats.get("requests_waiting", 0))
            yield in_use


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


class RequestIdFilter(logging.Filter):
    """Stamp every log record with the requestId of the request being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.requestId = request_id_var.get()
        return True


def configure_json_logging(level: str) -> None:
    """One JSON object per line on stderr, each with its requestId where there is one."""
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(requestId)s",
                                       rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our access log carries the requestId
