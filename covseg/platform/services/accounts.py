"""Accounts, log-in sessions (the web cookie and the API bearer token) and API tokens."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from covseg.platform.models import ApiToken, AuthSession, Challenge, Submission, User, utcnow
from covseg.platform.security import (
    burn_verification,
    hash_password,
    needs_rehash,
    new_token,
    token_digest,
    verify_password,
)
from covseg.platform.services.errors import Conflict, Forbidden, Invalid, NotAuthenticated, NotFound
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
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)  # kept by the caller's commit
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


def change_password(
    db: Session,
    throttle: LoginThrottle,
    user: User,
    current: str,
    new: str,
    client: str,
    hours: float,
) -> tuple[str, AuthSession]:
    """Set a new password and log out everywhere: every session of ``user`` ends.

    The current password is checked behind the same back-off as a log-in (a stolen session
    must not be a way to guess it). Returns a fresh session for the caller. API tokens are
    kept: they are listed and revoked one by one (:func:`revoke_api_token`).
    """
    log_in(db, throttle, user.email, current, client)
    _checked(user.email, new, user.name)
    user.password_hash = hash_password(new)
    end_all_sessions(db, user)
    return start_session(db, user, hours)


def end_all_sessions(db: Session, user: User) -> None:
    """Log ``user`` out everywhere (every browser and API session; not the API tokens)."""
    db.execute(delete(AuthSession).where(AuthSession.user_id == user.id))


#: API tokens start with this, so that they are told from session tokens (and secret
#: scanners can find them in a leaked file).
API_TOKEN_PREFIX = "covseg_pat_"


def create_api_token(
    db: Session, user: User, challenge: Challenge, name: str
) -> tuple[str, ApiToken]:
    """A named token for ``challenge``; the token itself is returned once and stored hashed."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise Invalid(f"a token needs a name of 1 to {MAX_NAME} characters")
    token = API_TOKEN_PREFIX + new_token()
    row = ApiToken(
        user_id=user.id, challenge_id=challenge.id, name=name, token_hash=token_digest(token)
    )
    db.add(row)
    db.flush()
    return token, row


def api_tokens(db: Session, user: User) -> list[ApiToken]:
    """The user's API tokens, newest first."""
    rows = db.scalars(
        select(ApiToken)
        .options(joinedload(ApiToken.challenge))
        .where(ApiToken.user_id == user.id)
        .order_by(ApiToken.id.desc())
    )
    return list(rows)


def revoke_api_token(db: Session, user: User, token_id: int) -> None:
    """Delete one of the user's tokens (another user's is 'not found')."""
    row = db.get(ApiToken, token_id)
    if row is None or row.user_id != user.id:
        raise NotFound("no such token")
    db.delete(row)
    db.flush()


def api_token_for(db: Session, token: str) -> ApiToken | None:
    """The API token row of a presented token, or ``None``; notes when it was last used."""
    if not token.startswith(API_TOKEN_PREFIX):
        return None
    row = db.scalar(
        select(ApiToken)
        .options(joinedload(ApiToken.user), joinedload(ApiToken.challenge))
        .where(ApiToken.token_hash == token_digest(token))
    )
    if row is not None:
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
            row.last_used_at = now  # at most a write a minute for a polling script
            db.commit()
    return row


def check_token_scope(
    db: Session, row: ApiToken, path: str, slug: str | None, submission_id: str | None
) -> None:
    """Refuse a request an API token may not make.

    A token acts on its own challenge's participant routes (registration, data, teams,
    submissions, boards) and on that challenge's submissions; never on account or organizer
    routes, and never on another challenge.
    """
    if path.startswith("/api/auth/") or "/admin/" in path or path.endswith("/admin"):
        raise Forbidden("an API token cannot manage accounts or challenges; log in instead")
    if slug is not None:
        if slug != row.challenge.slug:
            raise Forbidden(f"this API token is for challenge {row.challenge.slug!r} only")
        return
    if submission_id is not None and submission_id.isdigit():
        sub = db.get(Submission, int(submission_id))
        if sub is None or sub.phase.challenge_id == row.challenge_id:
            return  # an unknown id is the route's own 404
        raise NotFound("no such submission")  # as for any submission not the caller's
    raise Forbidden(f"this API token is for challenge {row.challenge.slug!r} only")
