"""``create_app(settings)``: the coordinator's FastAPI application.

Routers are thin; the work happens in ``coordinator.logic`` over ``coordinator.store``.
One exception handler turns every error into ``{code, message, details}``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from coordinator.api import (
    accounting,
    events,
    health,
    jobs,
    logs,
    metrics,
    outputs,
    pilot_state,
    pilots,
    registry,
    sandboxes,
    search,
    tokens,
)
from coordinator.api.deps import AppContext
from coordinator.api.failures import database_outages, error_answer
from coordinator.api.limits import BodyLimitMiddleware
from coordinator.api.openapi import install_openapi
from coordinator.errors import CoordinatorError
from coordinator.logic.auth import load_or_create_signing_key
from coordinator.logic.ratelimit import TokenBuckets
from coordinator.logic.sandboxes import SandboxFiles
from coordinator.logic.tokens import RevocationList
from coordinator.logic.verified_tokens import VerifiedTokens
from coordinator.settings import Settings
from coordinator.storage import open_store
from coordinator.store import revisions
from coordinator.store.database import Database
from coordinator.sweeper import running_sweeper
from coordinator.web import forms as web_forms
from coordinator.web import pages as web_pages
from coordinator.web.render import STATIC_DIR, CachedStaticFiles
from protocol import __version__

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    context = build_context(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with running_sweeper(context.db, context.settings):
            yield
        context.db.dispose()

    app = FastAPI(
        title="gridpilot coordinator",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.context = context
    routers = (health, search, jobs, logs, metrics, pilots, pilot_state, registry, sandboxes)
    for module in (*routers, tokens, events, accounting, outputs, web_pages, web_forms):
        app.include_router(module.router)
    app.mount("/web/static", CachedStaticFiles(directory=STATIC_DIR), name="static")
    # Database disconnects have handlers of their own: starlette re-raises (and logs as a
    # crash) whatever reaches the catch-all ``Exception`` handler, even after our reply.
    handled = (CoordinatorError, RequestValidationError, HTTPException)
    outages = database_outages(settings.database_url)
    for exc_class in (*handled, *outages, Exception):
        app.add_exception_handler(exc_class, error_response)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    install_openapi(app)
    return app


def build_context(settings: Settings) -> AppContext:
    """Create the data directory, key, database schema and sandbox store."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    revisions.check(db)
    key_file = Path(settings.signing_key_file) if settings.signing_key_file else None
    signing_key = load_or_create_signing_key(settings.data_dir, key_file)
    store = open_store(settings.sandbox_store, settings.data_dir)
    logger.info("sandboxes and logs in %s; database %s", store.describe(), db.describe())
    return AppContext(
        revocations=RevocationList(db, settings.revocation_refresh_s),
        rate_limits=TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst),
        settings=settings,
        db=db,
        signing_key=signing_key,
        public_key=signing_key.public_key(),
        verified_tokens=VerifiedTokens(signing_key.public_key()),
        sandbox_files=SandboxFiles(store),
        store=store,
    )


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    """The one error handler: every failure leaves as ``ErrorBody`` JSON."""
    status, body, headers = error_answer(exc, f"{request.method} {request.url.path}")
    return JSONResponse(body.to_dict(), status_code=status, headers=headers)
