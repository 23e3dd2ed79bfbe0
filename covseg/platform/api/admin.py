"""Organizer actions: registrations, teams, board visibility, exports, audit log, final ranking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Response, status

from covseg.platform.api.schemas import (
    AuditOut,
    ChallengeOut,
    DecisionIn,
    ExclusionIn,
    RankingIn,
    RankingOut,
    RegistrationOut,
    TeamStatusOut,
    VisibilityIn,
)
from covseg.platform.config import Settings
from covseg.platform.deps import DB, CurrentUser, get_settings
from covseg.platform.services import challenges, leaderboard, participants, ranking
from covseg.platform.services.errors import Forbidden

router = APIRouter(tags=["organizers"])


@router.post("/admin/challenges", status_code=status.HTTP_201_CREATED)
def create_challenge(
    db: DB,
    user: CurrentUser,
    spec: dict[str, Any] = Body(description="The content of a challenge.yaml"),
    base_dir: str = Body(description="Folder on the server that the spec's paths start from"),
    settings: Settings = Depends(get_settings),
) -> ChallengeOut:
    """Define a challenge from a spec whose files lie on the server (site admins only)."""
    if not user.is_admin:
        raise Forbidden("only site admins may create challenges")
    challenge = challenges.create_challenge(
        db, settings, spec, Path(base_dir), actor=user, roots=settings.spec_roots
    )
    db.commit()
    return ChallengeOut.model_validate(challenge)


@router.get("/challenges/{slug}/admin/registrations")
def registrations(slug: str, db: DB, user: CurrentUser) -> list[RegistrationOut]:
    """Every registration, to approve or reject."""
    ch = challenges.get_challenge(db, slug)
    return [
        RegistrationOut.model_validate(r) for r in participants.list_registrations(db, user, ch)
    ]


@router.post("/challenges/{slug}/admin/registrations/{registration_id}")
def decide(
    slug: str, registration_id: int, body: DecisionIn, db: DB, user: CurrentUser
) -> RegistrationOut:
    """Approve or reject a registration."""
    ch = challenges.get_challenge(db, slug)
    reg = participants.decide_registration(db, user, ch, registration_id, body.approve)
    db.commit()
    return RegistrationOut.model_validate(reg)


def team_status_out(status: participants.TeamStatus) -> TeamStatusOut:
    """A team as organizers see it."""
    team = status.team
    return TeamStatusOut(
        id=team.id,
        name=team.name,
        members=status.members,
        rejected_members=status.rejected,
        excluded_at=team.excluded_at,
        exclusion_reason=team.exclusion_reason,
        competing=status.competing,
    )


@router.get("/challenges/{slug}/admin/teams")
def teams(slug: str, db: DB, user: CurrentUser) -> list[TeamStatusOut]:
    """Every team, its members and whether it is on the boards and in the final ranking."""
    ch = challenges.get_challenge(db, slug)
    return [team_status_out(t) for t in participants.list_teams(db, user, ch)]


@router.post("/challenges/{slug}/admin/teams/{team_id}/exclusion")
def exclusion(
    slug: str, team_id: int, body: ExclusionIn, db: DB, user: CurrentUser
) -> TeamStatusOut:
    """Exclude a team from the boards and the final ranking (nothing is deleted), or readmit it."""
    ch = challenges.get_challenge(db, slug)
    status = participants.set_team_excluded(db, user, ch, team_id, body.excluded, body.reason)
    db.commit()
    return team_status_out(status)


@router.post("/challenges/{slug}/admin/phases/{phase}/board", status_code=204)
def board_visibility(slug: str, phase: str, body: VisibilityIn, db: DB, user: CurrentUser) -> None:
    """Publish or hide a phase's leaderboard."""
    ph = challenges.get_phase(db, challenges.get_challenge(db, slug), phase)
    challenges.set_board_public(db, user, ph, body.public)
    db.commit()


@router.get("/challenges/{slug}/admin/phases/{phase}/export")
def export(
    slug: str, phase: str, db: DB, user: CurrentUser, format: Literal["json", "csv"] = "json"
) -> Response:
    """Every per-case result of every submission of a phase, as JSON or CSV."""
    ph = challenges.get_phase(db, challenges.get_challenge(db, slug), phase)
    rows = leaderboard.export_results(db, user, ph)
    challenges.record(db, user, ph.challenge, "export results", f"{phase} as {format}")
    db.commit()
    if format == "csv":
        return Response(
            leaderboard.rows_to_csv(rows),
            media_type="text/csv",
            headers={"content-disposition": f'attachment; filename="{slug}-{phase}.csv"'},
        )
    return Response(json.dumps(rows, default=str), media_type="application/json")


@router.get("/challenges/{slug}/admin/audit")
def audit(slug: str, db: DB, user: CurrentUser) -> list[AuditOut]:
    """Every organizer action, newest first."""
    ch = challenges.get_challenge(db, slug)
    return [AuditOut.model_validate(e) for e in challenges.audit_log(db, user, ch)]


@router.post("/challenges/{slug}/admin/ranking")
def final_ranking(
    slug: str,
    body: RankingIn,
    db: DB,
    user: CurrentUser,
    settings: Settings = Depends(get_settings),
) -> RankingOut:
    """Run the statistical final ranking on the phase's counted submissions and publish it."""
    ch = challenges.get_challenge(db, slug)
    report = ranking.run_final_ranking(
        db, settings, user, ch, body.phase, body.bootstrap, body.seed
    )
    db.commit()
    files = sorted(p.relative_to(report.parent).as_posix() for p in report.parent.rglob("*"))
    return RankingOut(report_url=f"/challenges/{slug}/ranking/report.html", files=files)
