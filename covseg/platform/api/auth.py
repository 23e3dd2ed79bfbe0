"""Accounts: register, log in (get a bearer token), log out, password, API tokens, who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, status

from covseg.platform.api.schemas import (
    ApiTokenIn,
    ApiTokenOut,
    LoginIn,
    MessageOut,
    NewApiTokenOut,
    PasswordIn,
    RegisterIn,
    TokenOut,
    UserOut,
)
from covseg.platform.config import Settings
from covseg.platform.deps import (
    DB,
    CurrentUser,
    Throttle,
    bearer_token,
    client_address,
    get_settings,
)
from covseg.platform.models import ApiToken
from covseg.platform.services import accounts, challenges

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


@router.post("/logout-everywhere", status_code=status.HTTP_204_NO_CONTENT)
def logout_everywhere(db: DB, user: CurrentUser) -> None:
    """End every session of the account (all browsers and API log-ins; API tokens stay)."""
    accounts.end_all_sessions(db, user)
    db.commit()


@router.post("/password")
def change_password(
    request: Request,
    body: PasswordIn,
    db: DB,
    user: CurrentUser,
    throttle: Throttle,
    settings: Settings = Depends(get_settings),
) -> TokenOut:
    """Set a new password: every session ends, and this answer carries a new one."""
    token, row = accounts.change_password(
        db,
        throttle,
        user,
        body.current_password,
        body.new_password,
        client_address(request),
        settings.session_hours,
    )
    db.commit()
    return TokenOut(token=token, expires_at=row.expires_at)


def _token_out(row: ApiToken) -> ApiTokenOut:
    return ApiTokenOut(
        id=row.id,
        name=row.name,
        challenge=row.challenge.slug,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
def create_token(body: ApiTokenIn, db: DB, user: CurrentUser) -> NewApiTokenOut:
    """A long-lived, named API token for one challenge (for ``covseg submit``; shown once)."""
    challenge = challenges.get_challenge(db, body.challenge)
    token, row = accounts.create_api_token(db, user, challenge, body.name)
    db.commit()
    return NewApiTokenOut(**_token_out(row).model_dump(), token=token)


@router.get("/tokens")
def list_tokens(db: DB, user: CurrentUser) -> list[ApiTokenOut]:
    """Your API tokens (never the tokens themselves)."""
    return [_token_out(row) for row in accounts.api_tokens(db, user)]


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: int, db: DB, user: CurrentUser) -> None:
    """Revoke one of your API tokens: it stops working at once."""
    accounts.revoke_api_token(db, user, token_id)
    db.commit()


@router.get("/me")
def me(user: CurrentUser) -> UserOut:
    """The logged-in account."""
    return UserOut.model_validate(user)
