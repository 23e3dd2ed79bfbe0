"""Pydantic models of the API's requests and responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from covseg.platform.services.accounts import (
    MAX_EMAIL,
    MAX_NAME,
    MAX_PASSWORD,
    MAX_TOKEN,
    MIN_PASSWORD,
)


class Orm(BaseModel):
    """Read attributes from SQLAlchemy objects."""

    model_config = ConfigDict(from_attributes=True)


class RegisterIn(BaseModel):
    email: str = Field(max_length=MAX_EMAIL, examples=["ada@example.org"])
    password: str = Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)
    name: str = Field("", max_length=MAX_NAME)


class LoginIn(BaseModel):
    email: str = Field(max_length=MAX_EMAIL)
    password: str = Field(max_length=MAX_PASSWORD)


class MessageOut(BaseModel):
    detail: str


class PasswordIn(BaseModel):
    current_password: str = Field(max_length=MAX_PASSWORD)
    new_password: str = Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)


class ApiTokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_NAME, examples=["cluster job"])
    challenge: str = Field(max_length=64, description="The slug of the one challenge it serves.")


class ApiTokenOut(BaseModel):
    id: int
    name: str
    challenge: str
    created_at: datetime
    last_used_at: datetime | None


class NewApiTokenOut(ApiTokenOut):
    token: str = Field(
        description="Shown once. Give it to `covseg submit` through COVSEG_TOKEN or --token-file."
    )


class TokenOut(BaseModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>`.")
    expires_at: datetime


class UserOut(Orm):
    id: int
    email: str
    name: str
    is_admin: bool


class PhaseOut(Orm):
    slug: str
    title: str
    kind: str
    opens_at: datetime
    closes_at: datetime
    daily_limit: int
    daily_attempts: int
    board_public: bool
    ranking_method: str
    metrics: list[str]


class ChallengeOut(Orm):
    slug: str
    title: str
    description: str
    licence: str
    auto_approve: bool
    ranking_published: bool
    phases: list[PhaseOut]


class RegistrationIn(BaseModel):
    accept_licence: bool = Field(description="Must be true: you accept the data licence.")


class RegistrationOut(Orm):
    id: int
    status: str
    licence_accepted_at: datetime
    user: UserOut


class DecisionIn(BaseModel):
    approve: bool


class TeamIn(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_NAME)


class JoinIn(BaseModel):
    join_code: str = Field(max_length=MAX_TOKEN)


class TeamOut(Orm):
    id: int
    name: str
    join_code: str = Field(description="Give it to team mates so they can join.")
    members: list[str]


class CaseResultOut(Orm):
    case_id: str
    source: str
    status: str
    error: str
    metrics: dict[str, float | None]


class SubmissionOut(Orm):
    id: int
    phase: str
    team: str
    filename: str
    size_bytes: int
    status: str
    message: str
    created_at: datetime
    finished_at: datetime | None
    scores_hidden: bool = Field(
        description="True while the phase's board is hidden: `summary` and the per-case "
        "metrics stay empty until the organizers publish the board."
    )
    summary: dict[str, Any]


class SubmissionDetail(SubmissionOut):
    results: list[CaseResultOut]


class BoardEntryOut(BaseModel):
    rank: float
    team: str
    submission_id: int
    submitted_at: datetime
    score: float | None
    summary: dict[str, Any]


class BoardOut(BaseModel):
    phase: str
    public: bool
    ranking_method: str
    metrics: list[str]
    sources: list[str]
    entries: list[BoardEntryOut]


class VisibilityIn(BaseModel):
    public: bool


class ExclusionIn(BaseModel):
    excluded: bool = Field(description="True takes the team off the boards and the ranking.")
    reason: str = Field("", max_length=500, description="Shown to organizers and the team.")


class TeamStatusOut(BaseModel):
    id: int
    name: str
    members: list[str]
    rejected_members: list[str]
    excluded_at: datetime | None
    exclusion_reason: str
    competing: bool = Field(description="On the boards and in the final ranking.")


class AuditOut(Orm):
    at: datetime
    action: str
    detail: str
    user: UserOut | None


class RankingIn(BaseModel):
    phase: str = Field("test", max_length=64)
    bootstrap: int = Field(1000, ge=0, le=10000)
    seed: int = 0


class RankingOut(BaseModel):
    report_url: str
    files: list[str]
