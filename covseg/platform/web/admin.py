"""Organizer pages: approve participants, exclude teams, publish boards, export, rank, audit
log, new challenge."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse

from covseg.platform.config import Settings
from covseg.platform.deps import DB, get_settings
from covseg.platform.services import challenges, leaderboard, participants, ranking
from covseg.platform.services.errors import Forbidden, Invalid
from covseg.platform.web.render import render
from covseg.platform.web.session import CSRF, PageUser

router = APIRouter(include_in_schema=False)


def _back(slug: str) -> RedirectResponse:
    return RedirectResponse(f"/challenges/{slug}/admin", status_code=303)


@router.get("/challenges/{slug}/admin")
def admin_page(request: Request, slug: str, db: DB, user: PageUser) -> Response:
    """Everything an organizer does, on one page."""
    ch = challenges.get_challenge(db, slug)
    context = {
        "challenge": ch,
        "registrations": participants.list_registrations(db, user, ch),
        "teams": participants.list_teams(db, user, ch),
        "events": challenges.audit_log(db, user, ch)[:100],
    }
    return render(request, "admin.html", context)


@router.post("/challenges/{slug}/admin/registrations/{registration_id}", dependencies=[CSRF])
def decide(
    slug: str, registration_id: int, db: DB, user: PageUser, approve: bool = Form()
) -> Response:
    """Approve or reject a registration."""
    ch = challenges.get_challenge(db, slug)
    participants.decide_registration(db, user, ch, registration_id, approve)
    db.commit()
    return _back(slug)


@router.post("/challenges/{slug}/admin/teams/{team_id}/exclusion", dependencies=[CSRF])
def exclusion(
    slug: str,
    team_id: int,
    db: DB,
    user: PageUser,
    excluded: bool = Form(),
    reason: str = Form(""),
) -> Response:
    """Exclude a team from the boards and the final ranking, or readmit it."""
    ch = challenges.get_challenge(db, slug)
    participants.set_team_excluded(db, user, ch, team_id, excluded, reason)
    db.commit()
    return _back(slug)


@router.post("/challenges/{slug}/admin/phases/{phase}/board", dependencies=[CSRF])
def board(slug: str, phase: str, db: DB, user: PageUser, public: bool = Form()) -> Response:
    """Publish or hide a leaderboard."""
    ph = challenges.get_phase(db, challenges.get_challenge(db, slug), phase)
    challenges.set_board_public(db, user, ph, public)
    db.commit()
    return _back(slug)


@router.get("/challenges/{slug}/admin/phases/{phase}/export.{fmt}")
def export(slug: str, phase: str, fmt: str, db: DB, user: PageUser) -> Response:
    """All results of a phase as CSV or JSON."""
    if fmt not in ("csv", "json"):
        raise Invalid("export as csv or json")
    ph = challenges.get_phase(db, challenges.get_challenge(db, slug), phase)
    rows = leaderboard.export_results(db, user, ph)
    challenges.record(db, user, ph.challenge, "export results", f"{phase} as {fmt}")
    db.commit()
    body = leaderboard.rows_to_csv(rows) if fmt == "csv" else json.dumps(rows, default=str)
    return Response(
        body,
        media_type="text/csv" if fmt == "csv" else "application/json",
        headers={"content-disposition": f'attachment; filename="{slug}-{phase}.{fmt}"'},
    )


@router.post("/challenges/{slug}/admin/ranking", dependencies=[CSRF])
def final_ranking(
    slug: str,
    db: DB,
    user: PageUser,
    phase: str = Form("test"),
    bootstrap: int = Form(1000),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Run and publish the final ranking."""
    ch = challenges.get_challenge(db, slug)
    ranking.run_final_ranking(db, settings, user, ch, phase, max(0, min(bootstrap, 10000)))
    db.commit()
    return RedirectResponse(f"/challenges/{slug}/ranking/report.html", status_code=303)


@router.get("/admin/challenges/new")
def new_challenge_form(request: Request, user: PageUser) -> Response:
    """Create a challenge from a challenge.yaml whose files lie on the server (site admins)."""
    if not user.is_admin:
        raise Forbidden("only site admins may create challenges")
    return render(request, "new_challenge.html")


@router.post("/admin/challenges/new", dependencies=[CSRF])
def new_challenge(
    db: DB,
    user: PageUser,
    spec: str = Form(),
    base_dir: str = Form(),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Create the challenge and open its admin page."""
    import yaml

    if not user.is_admin:
        raise Forbidden("only site admins may create challenges")
    try:
        parsed = yaml.safe_load(spec)
    except yaml.YAMLError as exc:
        raise Invalid(f"the spec is not valid YAML: {exc}") from exc
    if not isinstance(parsed, dict):
        raise Invalid("the spec must be a YAML mapping")
    ch = challenges.create_challenge(
        db, settings, parsed, Path(base_dir), actor=user, roots=settings.spec_roots
    )
    db.commit()
    return _back(ch.slug)
