"""Challenges, registration, data downloads and teams."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status
from fastapi.responses import FileResponse
from sqlalchemy import select

from covseg.platform.api.schemas import (
    ChallengeOut,
    JoinIn,
    RegistrationIn,
    RegistrationOut,
    TeamIn,
    TeamOut,
)
from covseg.platform.config import Settings
from covseg.platform.deps import DB, CurrentUser, get_settings
from covseg.platform.models import Challenge, Team
from covseg.platform.services import challenges, participants
from covseg.platform.services.errors import NotFound

router = APIRouter(prefix="/challenges", tags=["challenges"])


def team_out(team: Team) -> TeamOut:
    """A team with its members' emails."""
    return TeamOut(
        id=team.id,
        name=team.name,
        join_code=team.join_code,
        members=[m.user.email for m in team.members],
    )


@router.get("")
def list_challenges(db: DB) -> list[ChallengeOut]:
    """Every challenge with its phases."""
    rows = db.scalars(select(Challenge).order_by(Challenge.id))
    return [ChallengeOut.model_validate(c) for c in rows]


@router.get("/{slug}")
def get_challenge(slug: str, db: DB) -> ChallengeOut:
    """One challenge with its phases."""
    return ChallengeOut.model_validate(challenges.get_challenge(db, slug))


@router.post("/{slug}/registration", status_code=status.HTTP_201_CREATED)
def register(slug: str, body: RegistrationIn, db: DB, user: CurrentUser) -> RegistrationOut:
    """Ask to take part, accepting the data licence."""
    ch = challenges.get_challenge(db, slug)
    reg = participants.request_registration(db, user, ch, body.accept_licence)
    db.commit()
    return RegistrationOut.model_validate(reg)


@router.get("/{slug}/registration")
def my_registration(slug: str, db: DB, user: CurrentUser) -> RegistrationOut:
    """Your registration and its status."""
    reg = participants.registration_of(db, user, challenges.get_challenge(db, slug))
    if reg is None:
        raise NotFound("you have not registered for this challenge")
    return RegistrationOut.model_validate(reg)


@router.get("/{slug}/downloads")
def list_downloads(
    slug: str, db: DB, user: CurrentUser, settings: Settings = Depends(get_settings)
) -> list[str]:
    """Names of the data files (approved participants only)."""
    ch = challenges.get_challenge(db, slug)
    participants.require_approved(db, user, ch)
    return [p.name for p in challenges.downloads(settings, ch)]


@router.get("/{slug}/downloads/{name}", response_class=FileResponse)
def download(
    slug: str, name: str, db: DB, user: CurrentUser, settings: Settings = Depends(get_settings)
) -> FileResponse:
    """One data file. Only names from the list are served, never a path."""
    ch = challenges.get_challenge(db, slug)
    participants.require_approved(db, user, ch)
    return FileResponse(challenges.download(settings, ch, name), filename=name)


@router.post("/{slug}/teams", status_code=status.HTTP_201_CREATED)
def create_team(slug: str, body: TeamIn, db: DB, user: CurrentUser) -> TeamOut:
    """Found a team and join it."""
    team = participants.create_team(db, user, challenges.get_challenge(db, slug), body.name)
    db.commit()
    db.refresh(team)
    return team_out(team)


@router.post("/{slug}/teams/join")
def join_team(slug: str, body: JoinIn, db: DB, user: CurrentUser) -> TeamOut:
    """Join a team with the join code a member gave you."""
    team = participants.join_team(db, user, challenges.get_challenge(db, slug), body.join_code)
    db.commit()
    db.refresh(team)
    return team_out(team)


@router.get("/{slug}/team")
def my_team(slug: str, db: DB, user: CurrentUser) -> TeamOut:
    """Your team in this challenge."""
    team = participants.team_of(db, user, challenges.get_challenge(db, slug))
    if team is None:
        raise NotFound("you are not in a team of this challenge")
    return team_out(team)
