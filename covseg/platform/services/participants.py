"""Registrations (joining a challenge, accepting its licence, approval) and teams."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from covseg.platform.models import (
    Challenge,
    Registration,
    RegistrationStatus,
    Team,
    TeamMember,
    User,
    utcnow,
)
from covseg.platform.security import new_token
from covseg.platform.services.challenges import record, require_organizer
from covseg.platform.services.errors import Conflict, Forbidden, Invalid, NotFound

#: Longest reason an organizer may give for excluding a team (characters).
MAX_REASON = 500


def registration_of(db: Session, user: User, challenge: Challenge) -> Registration | None:
    """The user's registration for a challenge, if any."""
    return db.scalar(
        select(Registration).where(
            Registration.challenge_id == challenge.id, Registration.user_id == user.id
        )
    )


def is_approved(db: Session, user: User | None, challenge: Challenge) -> bool:
    """Whether ``user`` is an approved participant."""
    if user is None:
        return False
    reg = registration_of(db, user, challenge)
    return reg is not None and reg.status is RegistrationStatus.approved


def require_approved(db: Session, user: User, challenge: Challenge) -> None:
    """Refuse users whose registration is missing, pending or rejected."""
    if not is_approved(db, user, challenge):
        raise Forbidden("you are not an approved participant of this challenge")


def request_registration(
    db: Session, user: User, challenge: Challenge, accept_licence: bool
) -> Registration:
    """Ask to take part; the licence must be accepted. Auto-approving challenges admit at once."""
    if not accept_licence:
        raise Invalid("you must accept the data licence to register")
    if registration_of(db, user, challenge) is not None:
        raise Conflict("you have already registered for this challenge")
    status = RegistrationStatus.approved if challenge.auto_approve else RegistrationStatus.pending
    reg = Registration(
        challenge_id=challenge.id, user_id=user.id, status=status, licence_accepted_at=utcnow()
    )
    db.add(reg)
    try:
        db.flush()
    except IntegrityError as exc:
        raise Conflict("you have already registered for this challenge") from exc
    return reg


def list_registrations(db: Session, actor: User, challenge: Challenge) -> list[Registration]:
    """Every registration of a challenge (organizers only)."""
    require_organizer(db, actor, challenge)
    return list(
        db.scalars(
            select(Registration)
            .where(Registration.challenge_id == challenge.id)
            .order_by(Registration.id)
        )
    )


def decide_registration(
    db: Session, actor: User, challenge: Challenge, registration_id: int, approve: bool
) -> Registration:
    """Approve or reject a registration (organizers only; recorded in the audit log)."""
    require_organizer(db, actor, challenge)
    reg = db.get(Registration, registration_id)
    if reg is None or reg.challenge_id != challenge.id:
        raise NotFound("no such registration")
    reg.status = RegistrationStatus.approved if approve else RegistrationStatus.rejected
    record(db, actor, challenge, f"{reg.status.value} registration", reg.user.email)
    return reg


def team_of(db: Session, user: User, challenge: Challenge) -> Team | None:
    """The user's team in a challenge, if any."""
    return db.scalar(
        select(Team)
        .join(TeamMember, TeamMember.team_id == Team.id)
        .where(TeamMember.challenge_id == challenge.id, TeamMember.user_id == user.id)
    )


def _join(db: Session, user: User, team: Team) -> None:
    db.add(TeamMember(team_id=team.id, challenge_id=team.challenge_id, user_id=user.id))
    try:
        db.flush()
    except IntegrityError as exc:
        raise Conflict("you are already in a team of this challenge") from exc


def create_team(db: Session, user: User, challenge: Challenge, name: str) -> Team:
    """Found a team (approved participants only) and join it; returns it with its join code."""
    require_approved(db, user, challenge)
    name = name.strip()
    if not 1 <= len(name) <= 120:
        raise Invalid("a team name needs 1 to 120 characters")
    if team_of(db, user, challenge) is not None:
        raise Conflict("you are already in a team of this challenge")
    team = Team(challenge_id=challenge.id, name=name, join_code=new_token())
    db.add(team)
    try:
        db.flush()
    except IntegrityError as exc:
        raise Conflict(f"a team called {name!r} already exists") from exc
    _join(db, user, team)
    return team


def join_team(db: Session, user: User, challenge: Challenge, join_code: str) -> Team:
    """Join the team whose join code (given out by a member) matches."""
    require_approved(db, user, challenge)
    team = db.scalar(
        select(Team).where(Team.challenge_id == challenge.id, Team.join_code == join_code)
    )
    if team is None:
        raise NotFound("no team with this join code")
    if team_of(db, user, challenge) is not None:
        raise Conflict("you are already in a team of this challenge")
    _join(db, user, team)
    return team


def require_team(db: Session, user: User, challenge: Challenge) -> Team:
    """The user's team; refuse users without one."""
    require_approved(db, user, challenge)
    team = team_of(db, user, challenge)
    if team is None:
        raise Forbidden("create or join a team first")
    return team


def competing(challenge_id: int) -> ColumnElement[bool]:
    """SQL condition on :class:`Team`: the team appears on boards and in the final ranking.

    A team leaves them when an organizer excludes it or rejects one of its members.
    """
    rejected = (
        select(TeamMember.team_id)
        .join(
            Registration,
            and_(
                Registration.user_id == TeamMember.user_id,
                Registration.challenge_id == TeamMember.challenge_id,
            ),
        )
        .where(
            TeamMember.challenge_id == challenge_id,
            Registration.status == RegistrationStatus.rejected,
        )
    )
    return and_(Team.excluded_at.is_(None), Team.id.not_in(rejected))


@dataclass(frozen=True)
class TeamStatus:
    """A team as organizers see it: members, rejected members, whether it competes."""

    team: Team
    members: list[str]
    rejected: list[str]

    @property
    def competing(self) -> bool:
        """Whether the team is on the boards and in the final ranking."""
        return self.team.excluded_at is None and not self.rejected


def _statuses(db: Session, challenge: Challenge, teams: list[Team]) -> list[TeamStatus]:
    rows = db.execute(
        select(Registration.user_id, Registration.status).where(
            Registration.challenge_id == challenge.id
        )
    )
    decided = {user_id: status for user_id, status in rows}
    out = []
    for team in teams:
        users = sorted((m.user for m in team.members), key=lambda u: u.email)
        rejected = [u.email for u in users if decided.get(u.id) == RegistrationStatus.rejected]
        out.append(TeamStatus(team, [u.email for u in users], rejected))
    return out


def list_teams(db: Session, actor: User, challenge: Challenge) -> list[TeamStatus]:
    """Every team of a challenge with its members' emails (organizers only)."""
    require_organizer(db, actor, challenge)
    teams = db.scalars(select(Team).where(Team.challenge_id == challenge.id).order_by(Team.name))
    return _statuses(db, challenge, list(teams))


def set_team_excluded(
    db: Session, actor: User, challenge: Challenge, team_id: int, excluded: bool, reason: str = ""
) -> TeamStatus:
    """Take a team off the boards and the final ranking, or let it back (organizers only).

    Nothing is deleted: the team keeps its members and submissions and may go on submitting;
    only what the boards and the ranking count changes. Recorded in the audit log.
    """
    require_organizer(db, actor, challenge)
    team = db.get(Team, team_id)
    if team is None or team.challenge_id != challenge.id:
        raise NotFound("no such team")
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON:
        raise Invalid(f"the reason may hold at most {MAX_REASON} characters")
    if excluded:
        team.excluded_at = team.excluded_at or utcnow()
        team.exclusion_reason = reason
        record(db, actor, challenge, "exclude team", f"{team.name}: {reason or 'no reason given'}")
    else:
        team.excluded_at = None
        team.exclusion_reason = ""
        record(db, actor, challenge, "readmit team", team.name)
    return _statuses(db, challenge, [team])[0]
