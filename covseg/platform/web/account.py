"""The account page: change the password (log out everywhere) and manage API tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from covseg.platform.config import Settings
from covseg.platform.deps import COOKIE, DB, Throttle, client_address, get_settings
from covseg.platform.models import Challenge, User
from covseg.platform.services import accounts, challenges
from covseg.platform.services.errors import ServiceError
from covseg.platform.web.render import login_cookie, render
from covseg.platform.web.session import CSRF, PageUser

router = APIRouter(include_in_schema=False)


def _page(request: Request, db: DB, user: User, status_code: int = 200, **extra: Any) -> Response:
    context = {
        "tokens": accounts.api_tokens(db, user),
        "challenges": list(db.scalars(select(Challenge).order_by(Challenge.slug))),
        **extra,
    }
    return render(request, "account.html", context, status_code=status_code)


@router.get("/account")
def account_page(request: Request, db: DB, user: PageUser) -> Response:
    """Password and API tokens."""
    return _page(request, db, user)


@router.post("/account/password", dependencies=[CSRF])
def change_password(
    request: Request,
    db: DB,
    user: PageUser,
    throttle: Throttle,
    current_password: str = Form(max_length=accounts.MAX_PASSWORD),
    new_password: str = Form(max_length=accounts.MAX_PASSWORD),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Set a new password; every other session ends, this browser gets a new one."""
    try:
        token, _ = accounts.change_password(
            db,
            throttle,
            user,
            current_password,
            new_password,
            client_address(request),
            settings.session_hours,
        )
    except ServiceError as exc:
        return _page(request, db, user, exc.status_code, message=str(exc))
    db.commit()
    response = RedirectResponse("/account?changed=1", status_code=303)
    login_cookie(request, response, token, settings.session_hours)
    return response


@router.post("/account/tokens", dependencies=[CSRF])
def create_token(
    request: Request,
    db: DB,
    user: PageUser,
    name: str = Form(max_length=accounts.MAX_NAME),
    challenge: str = Form(max_length=64),
) -> Response:
    """Create a named token for one challenge and show it, once."""
    ch = challenges.get_challenge(db, challenge)
    token, row = accounts.create_api_token(db, user, ch, name)
    db.commit()
    return _page(request, db, user, new_token=token, new_token_name=row.name)


@router.post("/account/tokens/{token_id}/revoke", dependencies=[CSRF])
def revoke_token(token_id: int, db: DB, user: PageUser) -> Response:
    """Revoke one token."""
    accounts.revoke_api_token(db, user, token_id)
    db.commit()
    return RedirectResponse("/account", status_code=303)


@router.post("/account/logout-everywhere", dependencies=[CSRF])
def logout_everywhere(db: DB, user: PageUser) -> Response:
    """End every session of the account, this one included."""
    accounts.end_all_sessions(db, user)
    db.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response
