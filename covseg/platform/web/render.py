"""Rendering pages, with the current user and the CSRF token every form needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates

from covseg.platform.deps import COOKIE
from covseg.platform.hardening import is_secure
from covseg.platform.security import new_token

#: Cookie holding the CSRF token of visitors who are not logged in (log-in and sign-up forms).
CSRF_COOKIE = "covseg_csrf"

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    """A page. Logged-in forms carry the session's CSRF token; anonymous ones a cookie's."""
    auth = getattr(request.state, "auth", None)
    fresh = None
    if auth is not None:
        token = auth.csrf_token
    else:
        token = request.cookies.get(CSRF_COOKIE) or (fresh := new_token())
    ctx = {"user": auth.user if auth else None, "csrf_token": token, **(context or {})}
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    if fresh is not None:
        response.set_cookie(
            CSRF_COOKIE, fresh, httponly=True, samesite="strict", secure=_secure(request)
        )
    return response


def _secure(request: Request) -> bool:
    """Whether cookies are marked ``Secure`` (the ``secure_cookies`` setting)."""
    return is_secure(request, request.app.state.settings.secure_cookies)


def login_cookie(request: Request, response: Response, token: str, hours: float) -> None:
    """Set the session cookie; the browser drops it when the server-side session expires."""
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(hours * 3600),
        httponly=True,
        samesite="lax",
        path="/",
        secure=_secure(request),
    )
