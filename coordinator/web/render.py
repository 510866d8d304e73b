"""Jinja2 rendering of the portal's pages, with what every page shows (who, VO, role)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from coordinator.api.deps import AppContext
from coordinator.api.session import CSRF_FIELD, SESSION_COOKIE, csrf_token
from coordinator.logic.auth import TokenClaims
from protocol import __version__

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
STATIC_DIR = Path(__file__).parent / "static"
STATIC_MAX_AGE_S = 86_400
"""Static files are cached for a day: their URLs carry the version (``?v=``), so an upgrade
is fetched at once and a page load does not revalidate each script."""


class CachedStaticFiles(StaticFiles):
    """The portal's scripts, styles and Chart.js, with a ``Cache-Control`` lifetime."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE_S}"
        return response


NAV = (
    ("monitor", "/web/jobs", "Job Monitor"),
    ("launchpad", "/web/launchpad", "Job Launchpad"),
    ("pilots", "/web/pilots", "Pilots"),
    ("accounting", "/web/accounting", "Accounting"),
)
# DIRAC's status colours, as CSS classes (st-<Status>); the text always says the status too.
FINAL = ("Done", "Failed", "Killed", "Completed", "Deleted")


def page(
    request: Request,
    context: AppContext,
    template: str,
    claims: Optional[TokenClaims],
    *,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    csrf = ""
    if claims is not None:
        csrf = csrf_token(context.signing_key, request.cookies.get(SESSION_COOKIE, ""))
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "claims": claims,
            "csrf": csrf,
            "csrf_field": CSRF_FIELD,
            "nav": NAV,
            "version": __version__,
            "final_statuses": FINAL,
            **values,
        },
        status_code=status_code,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'"
    )
    response.headers["Referrer-Policy"] = "same-origin"
    return response
