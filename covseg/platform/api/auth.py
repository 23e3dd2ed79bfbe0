"""Accounts: register, log in (get a bearer token), log out, who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, status

from covseg.platform.api.schemas import LoginIn, RegisterIn, TokenOut, UserOut
from covseg.platform.config import Settings
from covseg.platform.deps import DB, CurrentUser, bearer_token, get_settings
from covseg.platform.services import accounts

router = APIRouter(prefix="/auth", tags=["accounts"])


@router.post("/register", status_code=status.HTTP_201_CREATED)
def register(body: RegisterIn, db: DB) -> UserOut:
    """Create an account (the password is stored as an argon2 hash)."""
    user = accounts.register_user(db, body.email, body.password, body.name)
    db.commit()
    return UserOut.model_validate(user)


@router.post("/login")
def login(body: LoginIn, db: DB, settings: Settings = Depends(get_settings)) -> TokenOut:
    """Exchange email and password for a bearer token that expires."""
    user = accounts.authenticate(db, body.email, body.password)
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
