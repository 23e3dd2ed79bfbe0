"""SQLAlchemy 2 tables of the platform. Times are naive UTC (the same on SQLite and PostgreSQL)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """The current time as naive UTC, the form every column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of every platform table."""


class User(Base):
    """An account; ``is_admin`` users may act as organizer of every challenge."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuthSession(Base):
    """A log-in: the cookie of the web pages or the bearer token of the API (stored hashed)."""

    __tablename__ = "auth_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    user: Mapped[User] = relationship()


class ApiToken(Base):
    """A long-lived, named API token of one user for one challenge (stored hashed).

    For scripts (``covseg submit``): it may act only on that challenge's participant routes
    and is revoked by deleting it.
    """

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    user: Mapped[User] = relationship()
    challenge: Mapped[Challenge] = relationship()


class Challenge(Base):
    """A challenge: its licence, how participants are admitted, its phases and organizers."""

    __tablename__ = "challenges"
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    licence: Mapped[str] = mapped_column(Text, default="")
    auto_approve: Mapped[bool] = mapped_column(Boolean, default=False)
    ranking_published: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The final ranking's metrics, comma-separated (each makes one task per subset).
    ranking_tasks: Mapped[str] = mapped_column(String(200), default="dice,nsd,nave")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    phases: Mapped[list[Phase]] = relationship(
        back_populates="challenge", order_by="Phase.id", cascade="all, delete-orphan"
    )


class ChallengeOrganizer(Base):
    """A user who runs a challenge (approves participants, publishes boards, ranks)."""

    __tablename__ = "challenge_organizers"
    challenge_id: Mapped[int] = mapped_column(
        ForeignKey("challenges.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class PhaseKind(enum.StrEnum):
    """Validation boards are live; test boards hidden until published, last submission counts."""

    validation = "validation"
    test = "test"


class Phase(Base):
    """A submission window with its cases, limits and leaderboard settings."""

    __tablename__ = "phases"
    __table_args__ = (UniqueConstraint("challenge_id", "slug"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    kind: Mapped[PhaseKind] = mapped_column(Enum(PhaseKind, native_enum=False, length=20))
    opens_at: Mapped[datetime] = mapped_column(DateTime)
    closes_at: Mapped[datetime] = mapped_column(DateTime)
    #: Successful (or still pending) submissions a team may make per rolling 24 h.
    daily_limit: Mapped[int] = mapped_column(Integer, default=1)
    #: All attempts, failed ones included, per team per rolling 24 h (stops abuse).
    daily_attempts: Mapped[int] = mapped_column(Integer, default=5)
    #: Phase in which a team needs a successful submission before it may submit here.
    requires_phase_id: Mapped[int | None] = mapped_column(
        ForeignKey("phases.id", ondelete="SET NULL"), nullable=True
    )
    board_public: Mapped[bool] = mapped_column(Boolean, default=True)
    #: ``mean-position`` (mean of the per-metric ranks) or the name of one metric.
    ranking_method: Mapped[str] = mapped_column(String(40), default="mean-position")
    #: Metrics shown on the board, in order.
    metrics: Mapped[list[str]] = mapped_column(JSON, default=list)
    challenge: Mapped[Challenge] = relationship(back_populates="phases")
    cases: Mapped[list[Case]] = relationship(
        back_populates="phase", order_by="Case.case_id", cascade="all, delete-orphan"
    )


class Case(Base):
    """One ground-truth mask of a phase; ``truth_path`` is relative to the data folder."""

    __tablename__ = "cases"
    __table_args__ = (UniqueConstraint("phase_id", "case_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    phase_id: Mapped[int] = mapped_column(ForeignKey("phases.id", ondelete="CASCADE"))
    case_id: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(40), default="")
    truth_path: Mapped[str] = mapped_column(String(500))
    phase: Mapped[Phase] = relationship(back_populates="cases")


class RegistrationStatus(enum.StrEnum):
    """Where a request to join a challenge stands."""

    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class Registration(Base):
    """A user's request to take part, with the time the data licence was accepted."""

    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("challenge_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[RegistrationStatus] = mapped_column(
        Enum(RegistrationStatus, native_enum=False, length=20)
    )
    licence_accepted_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    user: Mapped[User] = relationship()


class Team(Base):
    """The unit that limits and leaderboards count by; ``lock_counter`` serializes submissions."""

    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("challenge_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    join_code: Mapped[str] = mapped_column(String(64))
    #: Bumped at the start of every submission transaction: the row write lock it takes makes
    #: concurrent submissions of one team wait for each other on SQLite and PostgreSQL alike.
    lock_counter: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: When an organizer took the team off the boards and the final ranking (``None``: it
    #: competes). The team, its members and its submissions are kept.
    excluded_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    exclusion_reason: Mapped[str] = mapped_column(Text, default="")
    members: Mapped[list[TeamMember]] = relationship(back_populates="team")


class TeamMember(Base):
    """Membership; the unique (challenge, user) pair means one team per user per challenge."""

    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("challenge_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    team: Mapped[Team] = relationship(back_populates="members")
    user: Mapped[User] = relationship()


class SubmissionStatus(enum.StrEnum):
    """Life of a submission; ``failed`` ones do not count against the daily limit."""

    queued = "queued"
    validating = "validating"
    evaluating = "evaluating"
    succeeded = "succeeded"
    failed = "failed"


#: States in which a worker holds the submission.
IN_PROGRESS = (SubmissionStatus.validating, SubmissionStatus.evaluating)


class Submission(Base):
    """An uploaded zip of masks and the outcome of its evaluation."""

    __tablename__ = "submissions"
    id: Mapped[int] = mapped_column(primary_key=True)
    phase_id: Mapped[int] = mapped_column(ForeignKey("phases.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[SubmissionStatus] = mapped_column(
        Enum(SubmissionStatus, native_enum=False, length=20), default=SubmissionStatus.queued
    )
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: Token of the worker run that holds the submission; results only commit under it.
    claim_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: How many times results were committed; exactly 1 for every succeeded submission.
    times_scored: Mapped[int] = mapped_column(Integer, default=0)
    #: Mean and sd per metric per source, filled on success.
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    team: Mapped[Team] = relationship()
    user: Mapped[User] = relationship()
    phase: Mapped[Phase] = relationship()
    results: Mapped[list[CaseResult]] = relationship(
        back_populates="submission", order_by="CaseResult.case_id", cascade="all, delete-orphan"
    )


class CaseResult(Base):
    """Per-case outcome of a submission: the metrics, or why the case failed."""

    __tablename__ = "case_results"
    __table_args__ = (UniqueConstraint("submission_id", "case_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"))
    case_id: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(40), default="")
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict[str, float | None]] = mapped_column(JSON, default=dict)
    submission: Mapped[Submission] = relationship(back_populates="results")


class AuditEvent(Base):
    """An organizer action: who did what to which object, and when."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    challenge_id: Mapped[int | None] = mapped_column(
        ForeignKey("challenges.id", ondelete="CASCADE"), nullable=True, index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    action: Mapped[str] = mapped_column(String(80))
    detail: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    user: Mapped[User | None] = relationship()


__all__ = [
    "IN_PROGRESS",
    "AuditEvent",
    "AuthSession",
    "Base",
    "Case",
    "CaseResult",
    "Challenge",
    "ChallengeOrganizer",
    "Phase",
    "PhaseKind",
    "Registration",
    "RegistrationStatus",
    "Submission",
    "SubmissionStatus",
    "Team",
    "TeamMember",
    "User",
    "utcnow",
]
