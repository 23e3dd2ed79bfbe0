"""Accounts and log-in sessions (shared by the web cookie and the API bearer token)."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from covseg.platform.models import AuthSession, User, utcnow
from covseg.platform.security import (
    burn_verification,
    hash_password,
    new_token,
    token_digest,
    verify_password,
)
from covseg.platform.services.errors import Conflict, Invalid, NotAuthenticated
from covseg.platform.services.throttle import LoginThrottle

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8
#: Longest accepted text fields (characters): RFC 5321's path limit for emails; the rest
#: bound the work (hashing, storage) one request can cause.
MAX_EMAIL = 254
MAX_PASSWORD = 256
MAX_NAME = 120
#: Longest token a form or header may carry (``new_token`` makes 43 characters).
MAX_TOKEN = 100
#: What a sign-up answers, whether the email was free or already had an account.
SIGNED_UP = "signed up: log in with your email and password"


def _checked(email: str, password: str, name: str) -> tuple[str, str]:
    """The normalised email and name of a sign-up, or :class:`Invalid` naming the field."""
    email = email.strip().lower()
    if len(email) > MAX_EMAIL or not _EMAIL.match(email):
        raise Invalid("enter a valid email address")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Invalid(f"the password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise Invalid(f"the name has more than {MAX_NAME} characters")
    return email, name or email.split("@")[0]


def register_user(db: Session, email: str, password: str, name: str = "") -> User:
    """Create an account; the email is the log-in name and must be unique.

    For organizer tools (``covseg challenge create``); the public sign-up is :func:`sign_up`,
    which does not tell whether the email was taken.
    """
    email, name = _checked(email, password, name)
    user = User(email=email, name=name, is_admin=False)
    user.password_hash = hash_password(password)
    db.add(user)
    try:
        db.flush()
    except IntegrityError as exc:
        raise Conflict("an account with this email already exists") from exc
    return user


def sign_up(db: Session, email: str, password: str, name: str = "") -> User | None:
    """Create an account unless the email has one; same work and answer either way.

    Returns the new user, or ``None`` when the email was taken (the existing account is left
    as it was). Callers answer :data:`SIGNED_UP` in both cases, so that the sign-up form
    cannot be used to find out who has an account.
    """
    email, name = _checked(email, password, name)
    password_hash = hash_password(password)  # before the look-up: both paths pay for it
    if db.scalar(select(User.id).where(User.email == email)) is not None:
        return None
    user = User(email=email, name=name, is_admin=False, password_hash=password_hash)
    try:
        with db.begin_nested():  # a concurrent sign-up of the same email: same answer
            db.add(user)
    except IntegrityError:
        return None
    return user


def authenticate(db: Session, email: str, password: str) -> User:
    """The user whose email and password match; one message and one cost for both mistakes."""
    email = email.strip().lower()
    user = db.scalar(select(User).where(User.email == email)) if len(email) <= MAX_EMAIL else None
    if user is None:
        burn_verification(password)
        raise NotAuthenticated("wrong email or password")
    if not verify_password(user.password_hash, password):
        raise NotAuthenticated("wrong email or password")
    return user


def log_in(db: Session, throttle: LoginThrottle, email: str, password: str, client: str) -> User:
    """:func:`authenticate` behind the back-off of failed log-ins (per account and address)."""
    throttle.attempt(email, client)
    user = authenticate(db, email, password)
    throttle.succeeded(email, client)
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
