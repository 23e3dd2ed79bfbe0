"""Accounts and log-in sessions (shared by the web cookie and the API bearer token)."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from covseg.platform.models import AuthSession, User, utcnow
from covseg.platform.security import hash_password, new_token, token_digest, verify_password
from covseg.platform.services.errors import Conflict, Invalid, NotAuthenticated

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8


def register_user(db: Session, email: str, password: str, name: str = "") -> User:
    """Create an account; the email is the log-in name and must be unique."""
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise Invalid("enter a valid email address")
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"the password needs at least {MIN_PASSWORD} characters")
    user = User(email=email, name=name.strip() or email.split("@")[0], is_admin=False)
    user.password_hash = hash_password(password)
    db.add(user)
    try:
        db.flush()
    except IntegrityError as exc:
        raise Conflict("an account with this email already exists") from exc
    return user


def authenticate(db: Session, email: str, password: str) -> User:
    """The user whose email and password match; one message for both mistakes."""
    user = db.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not verify_password(user.password_hash, password):
        raise NotAuthenticated("wrong email or password")
    return user


def start_session(db: Session, user: User, hours: float) -> tuple[str, AuthSession]:
    """Log ``user`` in for ``hours``; returns the token (shown once) and the session row."""
    token = new_token()
    row = AuthSession(
        token_hash=token_digest(token),
        csrf_token=new_token(),
        user_id=user.id,
        expires_at=utcnow() + timedelta(hours=hours),
    )
    db.add(row)
    db.flush()
    return token, row


def session_for(db: Session, token: str | None) -> AuthSession | None:
    """The live session of a token, or ``None`` when unknown or expired."""
    if not token:
        return None
    row = db.scalar(
        select(AuthSession)
        .options(joinedload(AuthSession.user))  # pages render the user after the request
        .where(AuthSession.token_hash == token_digest(token))
    )
    if row is None or row.expires_at <= utcnow():
        return None
    return row


def end_session(db: Session, token: str | None) -> None:
    """Log out: forget the session (and, while at it, every expired one)."""
    if token:
        db.execute(delete(AuthSession).where(AuthSession.token_hash == token_digest(token)))
    db.execute(delete(AuthSession).where(AuthSession.expires_at <= utcnow()))
