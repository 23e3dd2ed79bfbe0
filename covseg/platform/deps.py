"""FastAPI dependencies shared by the API and the pages: settings, DB session, current user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from covseg.platform.config import Settings
from covseg.platform.models import User
from covseg.platform.services import accounts
from covseg.platform.services.errors import NotAuthenticated
from covseg.platform.services.throttle import LoginThrottle
from covseg.platform.tasks import Queue

#: Name of the web pages' session cookie.
COOKIE = "covseg_session"


def get_settings(request: Request) -> Settings:
    """The instance's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_queue(request: Request) -> Queue:
    """The evaluation queue."""
    queue: Queue = request.app.state.queue
    return queue


def get_db(request: Request) -> Iterator[Session]:
    """A session per request; routes that change data commit explicitly."""
    with request.app.state.factory() as session:
        yield session


DB = Annotated[Session, Depends(get_db)]


def get_throttle(request: Request) -> LoginThrottle:
    """The back-off of failed log-ins of this server process."""
    throttle: LoginThrottle = request.app.state.login_throttle
    return throttle


def client_address(request: Request) -> str:
    """The caller's address (behind a trusted proxy: its ``X-Forwarded-For``)."""
    return request.client.host if request.client else "unknown"


Throttle = Annotated[LoginThrottle, Depends(get_throttle)]


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def api_caller(request: Request, db: DB) -> User | None:
    """Who the bearer token speaks for: a log-in session, or an API token within its scope.

    Bearer tokens only: the API ignores cookies, so a page on another site cannot make a
    logged-in browser call it.
    """
    token = bearer_token(request)
    if token is None:
        return None
    row = accounts.api_token_for(db, token)
    if row is not None:
        params = request.path_params
        accounts.check_token_scope(
            db, row, request.url.path, params.get("slug"), params.get("submission_id")
        )
        return row.user
    auth = accounts.session_for(db, token)
    return auth.user if auth else None


def api_user(user: Annotated[User | None, Depends(api_caller)]) -> User:
    """The authenticated API caller; 401 otherwise."""
    if user is None:
        raise NotAuthenticated(
            "log in first (Authorization: Bearer <token>), or the session expired"
        )
    return user


def api_user_optional(user: Annotated[User | None, Depends(api_caller)]) -> User | None:
    """The API caller if authenticated (public reads)."""
    return user


CurrentUser = Annotated[User, Depends(api_user)]
OptionalUser = Annotated[User | None, Depends(api_user_optional)]
