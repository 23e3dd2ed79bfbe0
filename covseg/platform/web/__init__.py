"""Server-rendered pages (Jinja2): forms protected by CSRF tokens, sessions in expiring cookies."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from covseg.platform.services.errors import NotAuthenticated, ServiceError
from covseg.platform.web import account, admin, pages
from covseg.platform.web.render import render


def mount(app: FastAPI) -> None:
    """Add the pages and their static assets (CSS, JS; never data) to ``app``."""
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(admin.router)
    app.include_router(account.router)


def error_page(request: Request, exc: ServiceError) -> Response:
    """Send people who must log in to the log-in page; show other refusals as a page."""
    if isinstance(exc, NotAuthenticated):
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    return render(request, "error.html", {"message": str(exc)}, status_code=exc.status_code)
