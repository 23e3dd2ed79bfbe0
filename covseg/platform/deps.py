"""FastAPI dependencies shared by the API and the pages: settings, DB session, current user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from covseg.platform.config import Settings
from covseg.platform.models import AuthSession, User
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


def api_session(request: Request, db: DB) -> AuthSession | None:
    """The API caller's live session (bearer token only: the API ignores cookies, so a page
    on another site cannot make a logged-in browser call it)."""
    return accounts.session_for(db, bearer_token(request))


def api_user(auth: Annotated[AuthSession | None, Depends(api_session)]) -> User:
    """The authenticated API caller; 401 otherwise."""
    if auth is None:
        raise NotAuthenticated(
            "log in first (Authorization: Bearer <token>), or the session expired"
        )
    return auth.user


def api_user_optional(
    auth: Annotated[AuthSession | None, Depends(api_session)],
) -> User | None:
    """The API caller if authenticated (public reads)."""
    return auth.user if auth else None


CurrentUser = Annotated[User, Depends(api_user)]
OptionalUser = Annotated[User | None, Depends(api_user_optional)]
