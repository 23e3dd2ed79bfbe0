"""Page dependencies: the cookie session and CSRF protection of every form post."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from covseg.platform.deps import COOKIE, DB
from covseg.platform.models import AuthSession, User
from covseg.platform.security import same
from covseg.platform.services import accounts
from covseg.platform.services.errors import Forbidden, NotAuthenticated
from covseg.platform.web.render import CSRF_COOKIE


def page_session(request: Request, db: DB) -> AuthSession | None:
    """The visitor's live session from the cookie (kept on ``request.state`` for rendering)."""
    auth = accounts.session_for(db, request.cookies.get(COOKIE))
    request.state.auth = auth
    return auth


PageSession = Annotated[AuthSession | None, Depends(page_session)]


def page_user_optional(auth: PageSession) -> User | None:
    """The logged-in visitor, if any."""
    return auth.user if auth else None


def page_user(auth: PageSession) -> User:
    """The logged-in visitor; others are sent to the log-in page."""
    if auth is None:
        raise NotAuthenticated("log in first")
    return auth.user


async def csrf_protect(request: Request, auth: PageSession) -> None:
    """Refuse a form post whose ``csrf_token`` field does not match the visitor's token."""
    form = await request.form()
    sent = form.get("csrf_token")
    expected = auth.csrf_token if auth else request.cookies.get(CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not same(sent, expected):
        raise Forbidden("the form has expired or did not come from this site; reload and retry")


PageUser = Annotated[User, Depends(page_user)]
MaybeUser = Annotated[User | None, Depends(page_user_optional)]
CSRF = Depends(csrf_protect)
