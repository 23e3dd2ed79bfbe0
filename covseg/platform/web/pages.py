"""Participant pages: home, accounts, challenge, data, submit, my submissions, leaderboards."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse
from sqlalchemy import select

from covseg.metrics.registry import metric
from covseg.platform.config import Settings
from covseg.platform.deps import COOKIE, DB, Throttle, client_address, get_queue, get_settings
from covseg.platform.models import Challenge, Submission
from covseg.platform.services import (
    accounts,
    challenges,
    leaderboard,
    participants,
    ranking,
    submissions,
)
from covseg.platform.services.errors import Invalid, NotAuthenticated, TooManyAttempts
from covseg.platform.tasks import Queue
from covseg.platform.web.render import login_cookie, render
from covseg.platform.web.session import CSRF, MaybeUser, PageUser

router = APIRouter(include_in_schema=False)


def _safe_next(target: str) -> str:
    """Only same-site paths after log-in (no open redirects).

    Browsers read ``/\\host`` like ``//host`` and drop tabs and newlines, so a path must start
    with one ``/`` followed by neither slash nor backslash, and hold no control character.
    """
    if (
        not target.startswith("/")
        or target[1:2] in ("/", "\\")
        or any(ord(c) < 32 or ord(c) == 127 for c in target)
    ):
        return "/"
    return target


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/")
def home(request: Request, db: DB, user: MaybeUser) -> Response:
    """The list of challenges."""
    rows = list(db.scalars(select(Challenge).order_by(Challenge.id)))
    return render(request, "home.html", {"challenges": rows})


@router.get("/register")
def register_form(request: Request, user: MaybeUser) -> Response:
    """Sign-up form."""
    return render(request, "register.html")


@router.post("/register", dependencies=[CSRF])
def register(
    request: Request,
    db: DB,
    email: str = Form(max_length=accounts.MAX_EMAIL),
    password: str = Form(max_length=accounts.MAX_PASSWORD),
    name: str = Form("", max_length=accounts.MAX_NAME),
) -> Response:
    """Create the account, then ask for a log-in (the same whether the email was free or not)."""
    try:
        accounts.sign_up(db, email, password, name)
    except Invalid as exc:
        context = {"message": str(exc), "email": email, "name": name}
        return render(request, "register.html", context, status_code=exc.status_code)
    db.commit()
    return _see_other("/login?signed_up=1")


@router.get("/login")
def login_form(
    request: Request, user: MaybeUser, next: str = "/", signed_up: bool = False
) -> Response:
    """Log-in form (after a sign-up, with the sign-up's answer)."""
    notice = accounts.SIGNED_UP if signed_up else ""
    return render(request, "login.html", {"next": _safe_next(next), "notice": notice})


@router.post("/login", dependencies=[CSRF])
def login(
    request: Request,
    db: DB,
    throttle: Throttle,
    email: str = Form(max_length=accounts.MAX_EMAIL),
    password: str = Form(max_length=accounts.MAX_PASSWORD),
    next: str = Form("/", max_length=2000),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Check the password and start an expiring session; a refusal keeps the form and ``next``."""
    try:
        user = accounts.log_in(db, throttle, email, password, client_address(request))
    except (NotAuthenticated, TooManyAttempts) as exc:
        context = {"next": _safe_next(next), "message": str(exc), "email": email}
        response = render(request, "login.html", context, status_code=exc.status_code)
        if isinstance(exc, TooManyAttempts):
            response.headers["retry-after"] = str(exc.retry_after_s)
        return response
    token, _ = accounts.start_session(db, user, settings.session_hours)
    db.commit()
    response = _see_other(_safe_next(next))
    login_cookie(request, response, token, settings.session_hours)
    return response


@router.post("/logout", dependencies=[CSRF])
def logout(request: Request, db: DB) -> Response:
    """End the session."""
    accounts.end_session(db, request.cookies.get(COOKIE))
    db.commit()
    response = _see_other("/")
    response.delete_cookie(COOKIE)
    return response


@router.get("/challenges/{slug}")
def challenge_page(request: Request, slug: str, db: DB, user: MaybeUser) -> Response:
    """A challenge: phases, registration, team, links to data and boards."""
    ch = challenges.get_challenge(db, slug)
    context = {
        "challenge": ch,
        "registration": participants.registration_of(db, user, ch) if user else None,
        "team": participants.team_of(db, user, ch) if user else None,
        "organizer": challenges.is_organizer(db, user, ch),
    }
    return render(request, "challenge.html", context)


@router.post("/challenges/{slug}/register", dependencies=[CSRF])
def join_challenge(
    slug: str, db: DB, user: PageUser, accept_licence: bool = Form(False)
) -> Response:
    """Ask to take part, accepting the licence."""
    participants.request_registration(db, user, challenges.get_challenge(db, slug), accept_licence)
    db.commit()
    return _see_other(f"/challenges/{slug}")


@router.post("/challenges/{slug}/team", dependencies=[CSRF])
def create_team(
    slug: str, db: DB, user: PageUser, name: str = Form(max_length=accounts.MAX_NAME)
) -> Response:
    """Found a team."""
    participants.create_team(db, user, challenges.get_challenge(db, slug), name)
    db.commit()
    return _see_other(f"/challenges/{slug}")


@router.post("/challenges/{slug}/team/join", dependencies=[CSRF])
def join_team(
    slug: str, db: DB, user: PageUser, join_code: str = Form(max_length=accounts.MAX_TOKEN)
) -> Response:
    """Join a team by its code."""
    participants.join_team(db, user, challenges.get_challenge(db, slug), join_code)
    db.commit()
    return _see_other(f"/challenges/{slug}")


@router.get("/challenges/{slug}/data")
def data_page(
    request: Request, slug: str, db: DB, user: PageUser, settings: Settings = Depends(get_settings)
) -> Response:
    """The data files (approved participants only)."""
    ch = challenges.get_challenge(db, slug)
    participants.require_approved(db, user, ch)
    files = challenges.downloads(settings, ch)
    return render(request, "data.html", {"challenge": ch, "files": files})


@router.get("/challenges/{slug}/data/{name}")
def data_file(
    slug: str, name: str, db: DB, user: PageUser, settings: Settings = Depends(get_settings)
) -> FileResponse:
    """One data file, by name from the list (never a path)."""
    ch = challenges.get_challenge(db, slug)
    participants.require_approved(db, user, ch)
    return FileResponse(challenges.download(settings, ch, name), filename=name)


@router.get("/challenges/{slug}/phases/{phase}/submit")
def submit_form(request: Request, slug: str, phase: str, db: DB, user: PageUser) -> Response:
    """The upload form (with a progress bar)."""
    ph = challenges.get_phase(db, challenges.get_challenge(db, slug), phase)
    submissions.check_can_submit(db, user, ph)
    cases = [c.case_id for c in ph.cases]
    return render(request, "submit.html", {"challenge": ph.challenge, "phase": ph, "cases": cases})


@router.post("/challenges/{slug}/phases/{phase}/submit", dependencies=[CSRF])
def submit(
    slug: str,
    phase: str,
    db: DB,
    user: PageUser,
    file: UploadFile = File(),
    settings: Settings = Depends(get_settings),
    queue: Queue = Depends(get_queue),
) -> Response:
    """Accept the upload and queue its evaluation."""
    ph = challenges.get_phase(db, challenges.get_challenge(db, slug), phase)
    sub = submissions.create_submission(db, settings, user, ph, file.file, file.filename or "")
    db.commit()
    queue.enqueue(sub.id)
    return _see_other(f"/submissions/{sub.id}")


@router.get("/challenges/{slug}/submissions")
def my_submissions(request: Request, slug: str, db: DB, user: PageUser) -> Response:
    """The team's submissions in every phase."""
    ch = challenges.get_challenge(db, slug)
    team = participants.require_team(db, user, ch)
    rows = list(
        db.scalars(
            select(Submission).where(Submission.team_id == team.id).order_by(Submission.id.desc())
        )
    )
    pending = any(s.status.value in ("queued", "validating", "evaluating") for s in rows)
    context = {"challenge": ch, "team": team, "submissions": rows, "pending": pending}
    return render(request, "submissions.html", context)


@router.get("/submissions/{submission_id}")
def submission_page(request: Request, submission_id: int, db: DB, user: PageUser) -> Response:
    """One submission with its per-case results."""
    sub = submissions.get_submission(db, user, submission_id)
    pending = sub.status.value in ("queued", "validating", "evaluating")
    scores = submissions.scores_visible(db, user, sub.phase)
    columns = [metric(m) for m in sub.phase.metrics]  # the phase's board metrics
    return render(
        request,
        "submission.html",
        {"sub": sub, "pending": pending, "scores": scores, "columns": columns},
    )


@router.get("/submissions/{submission_id}/results.csv")
def submission_csv(submission_id: int, db: DB, user: PageUser) -> Response:
    """Per-case results as CSV (without the metric columns while the board is hidden)."""
    sub = submissions.get_submission(db, user, submission_id)
    return PlainTextResponse(
        submissions.results_csv(sub, submissions.scores_visible(db, user, sub.phase)),
        media_type="text/csv",
        headers={"content-disposition": f'attachment; filename="submission-{sub.id}.csv"'},
    )


@router.get("/challenges/{slug}/phases/{phase}/leaderboard")
def leaderboard_page(request: Request, slug: str, phase: str, db: DB, user: MaybeUser) -> Response:
    """A phase's leaderboard (hidden boards only for organizers)."""
    ph = challenges.get_phase(db, challenges.get_challenge(db, slug), phase)
    board = leaderboard.leaderboard(db, user, ph)
    return render(request, "leaderboard.html", {"board": board, "challenge": ph.challenge})


@router.get("/challenges/{slug}/ranking/{name:path}")
def ranking_report(
    slug: str, name: str, db: DB, user: MaybeUser, settings: Settings = Depends(get_settings)
) -> FileResponse:
    """The published final-ranking report and its plots."""
    ch = challenges.get_challenge(db, slug)
    return FileResponse(ranking.ranking_file(db, settings, user, ch, name))
