"""The composition root: read configuration, build the parts, wire the Starlette app."""

from __future__ import annotations

import gc
import sys
from functools import partial
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.changes import EVENTS
from adapters.config import Settings
from adapters import read_models
from adapters.http import analytics, api, audit, openapi
from adapters.http import keys as keys_api
from adapters.http.dispatch import Dispatcher
from adapters.http.errors import EXCEPTION_HANDLERS
from adapters.http.idempotency import IdempotencyStore
from adapters.http.observability import Metrics
from adapters.http.pipeline import RequestPipeline
from adapters.http.task_cache import TaskViewCache
from adapters.hot_reads import open_reads
from adapters.keys import KeyStore, new_secret
from adapters.recorder import WAL_AUTOCHECKPOINT, WAL_BACKSTOP_PAGES, WalCheckpointer
from adapters.services import Services
from adapters.sql import open_store, record_schema_version, startup_lock
from adapters.writer import CommandWriter
from domain.application import TaskApplication
from projections.runner import FollowerGroup


def service_version() -> str:
    try:
        return version("tasks-api")
    except PackageNotFoundError:
        return "0.0.0"


def build_services(settings: Settings) -> Services:
    """Open the store, the views and the keys, and start following the log."""
    with startup_lock(settings):  # one process at a time creates tables and the first key
        env = settings.eventsourcing_env()
        if not settings.is_postgres:  # the WalCheckpointer below checkpoints; a commit does only past this
            env[WAL_AUTOCHECKPOINT] = str(WAL_BACKSTOP_PAGES)
        app = TaskApplication(env=env)
        store = open_store(settings, settings.pool_size)
        if store.changes is not None:  # SQLite: tell every process's task cache that the log grew
            app.on_recorded = partial(store.changes.bump, EVENTS)
        views = read_models.open_views(store)  # every read model; the list view first
        read_models.check_views_follow(app, views)
        list_view = views[0]
        keys = KeyStore(store)
        keys.create_table()
        idempotency = IdempotencyStore(store, settings.idempotency_ttl)
        idempotency.create_table()
        record_schema_version(store)
        generated = None
        if settings.bootstrap_key:
            keys.add(settings.bootstrap_key, label="bootstrap")
        elif keys.count_active() == 0:
            generated = new_secret()
            keys.add(generated, label="first start")
    projections = read_models.runners(app, views, settings)  # none when a `tasks project` worker runs them
    if projections:  # the log read once for every view; then each view's follower takes over
        FollowerGroup(projections, views[0].store.together).catch_up()
    for runner in projections:
        runner.start()
    writer = CommandWriter(app)
    checkpointer = None if settings.is_postgres else WalCheckpointer(str(settings.sqlite_path))
    services = Services(settings, app, list_view, keys, store, projections, generated_key=generated, writer=writer,
                        checkpointer=checkpointer, idempotency=idempotency, views=views,
                        reads=open_reads(settings, store, app),
                        task_cache=TaskViewCache(settings.task_cache_mb * 1_048_576))
    if projections:
        writer.on_saved = services.apply_written
    writer.start()
    if checkpointer is not None:
        checkpointer.start()
    return services


_gc_tuned = False


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for a long-running server (once per process).

    CPython's full collections walk every tracked object — the writer's cached tasks, the
    libraries' start-up objects — and stopped the whole server for tens of milliseconds:
    with them, create's p99 was ~110 ms; with the collector off, ~45 ms. Objects alive after
    start-up are frozen (never walked again), and a young collection waits for 50,000 new
    container objects instead of 700; cycles are still collected."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def operations() -> list[api.Operation]:
    """Every endpoint of the service, from each area's operation table."""
    # analytics first: /agents/tasks/stats is no task id
    return [*analytics.operations(), *api.operations(), *audit.operations(), *keys_api.operations()]


def create_app(settings: Settings | None = None) -> Starlette:
    """The ASGI app; the database is opened when it starts, not at import."""
    settings = settings or Settings.from_env()
    ops = operations()
    spec = openapi.document(ops, service_version())
    metrics = Metrics()

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(spec)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        services = build_services(settings)
        tune_gc()
        if services.generated_key:
            print(
                "No API key was configured, so one admin key was created. It is shown only now:\n"
                f"    {services.generated_key}\n"
                "Send it as 'Authorization: Bearer <key>'.",
                file=sys.stderr,
                flush=True,
            )
        services.metrics = metrics
        metrics.watch(services)
        await services.reads.start()
        try:
            yield {"services": services}
        finally:
            await services.reads.close()
            services.close()

    routes = api.routes(ops)
    routes.append(Route("/openapi.json", openapi_json, methods=["GET"], name="openapi"))
    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestPipeline, metrics=metrics, rate=settings.rate_limit, burst=settings.rate_burst,
                               dispatcher=Dispatcher(routes, EXCEPTION_HANDLERS),
                               writes=frozenset((op.path, op.method) for op in ops if op.through_writer))],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
