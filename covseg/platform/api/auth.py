"""Accounts: register, log in (get a bearer token), log out, who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, status

from covseg.platform.api.schemas import LoginIn, MessageOut, RegisterIn, TokenOut, UserOut
from covseg.platform.config import Settings
from covseg.platform.deps import (
    DB,
    CurrentUser,
    Throttle,
    bearer_token,
    client_address,
    get_settings,
)
from covseg.platform.services import accounts

router = APIRouter(prefix="/auth", tags=["accounts"])


@router.post("/register", status_code=status.HTTP_202_ACCEPTED)
def register(body: RegisterIn, db: DB) -> MessageOut:
    """Create an account (the password is stored as an argon2 hash).

    The answer is the same whether or not the email already had an account (which is left
    unchanged), so that this route cannot tell who has one; log in to find out.
    """
    accounts.sign_up(db, body.email, body.password, body.name)
    db.commit()
    return MessageOut(detail=accounts.SIGNED_UP)


@router.post("/login")
def login(
    request: Request,
    body: LoginIn,
    db: DB,
    throttle: Throttle,
    settings: Settings = Depends(get_settings),
) -> TokenOut:
    """Exchange email and password for a bearer token that expires.

    Failed log-ins back off per account and per address: 429 with ``Retry-After``.
    """
    user = accounts.log_in(db, throttle, body.email, body.password, client_address(request))
    token, row = accounts.start_session(db, user, settings.session_hours)
    db.commit()
    return TokenOut(token=token, expires_at=row.expires_at)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, db: DB, user: CurrentUser) -> None:
    """End the session of the token used."""
    accounts.end_session(db, bearer_token(request))
    db.commit()


@router.get("/me")
def me(user: CurrentUser) -> UserOut:
    """The logged-in account."""
    return UserOut.model_validate(user)
