"""Submissions: who may submit where, the daily limits, and who may see what."""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from covseg.datasets import SUBSETS
from covseg.metrics.batch import METRICS as CSV_METRICS
from covseg.platform.config import Settings
from covseg.platform.models import (
    Phase,
    Submission,
    SubmissionStatus,
    Team,
    User,
    utcnow,
)
from covseg.platform.services.challenges import is_organizer
from covseg.platform.services.errors import Forbidden, Invalid, LimitReached, NotFound, TooLarge
from covseg.platform.services.participants import require_team, team_of
from covseg.platform.services.uploads import screen_upload
from covseg.platform.spreadsheet import to_csv

WINDOW = timedelta(hours=24)
_CHUNK = 1 << 20


def check_can_submit(db: Session, user: User, phase: Phase) -> Team:
    """The user's team if it may submit to ``phase`` now (limits aside), else refuse."""
    team = require_team(db, user, phase.challenge)
    now = utcnow()
    if not phase.opens_at <= now < phase.closes_at:
        raise Forbidden(f"the {phase.title} phase is not open now")
    if phase.requires_phase_id is not None:
        ok = db.scalar(
            select(func.count(Submission.id)).where(
                Submission.phase_id == phase.requires_phase_id,
                Submission.team_id == team.id,
                Submission.status == SubmissionStatus.succeeded,
            )
        )
        if not ok:
            raise Forbidden(
                f"the {phase.title} phase needs a successful submission in the earlier phase first"
            )
    return team


def _check_limits(db: Session, team: Team, phase: Phase) -> None:
    since = utcnow() - WINDOW
    recent = select(func.count(Submission.id)).where(
        Submission.phase_id == phase.id,
        Submission.team_id == team.id,
        Submission.created_at > since,
    )
    attempts = db.scalar(recent) or 0
    counted = db.scalar(recent.where(Submission.status != SubmissionStatus.failed)) or 0
    if counted >= phase.daily_limit:
        raise LimitReached(
            f"your team has used its {phase.daily_limit} submission(s) for the last 24 hours"
        )
    if attempts >= phase.daily_attempts:
        raise LimitReached(
            f"your team has made {phase.daily_attempts} attempts in the last 24 hours"
        )


def _receive(upload: BinaryIO, folder: Path, limit: int) -> tuple[Path, int]:
    """Stream an upload to a temporary file, stopping as soon as it passes ``limit`` bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    size = 0
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as out:
        tmp = Path(out.name)
        try:
            while chunk := upload.read(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the upload is over the limit of {limit / 1e6:.0f} MB")
                out.write(chunk)
        except BaseException:
            out.close()
            tmp.unlink(missing_ok=True)
            raise
    return tmp, size


def create_submission(
    db: Session, settings: Settings, user: User, phase: Phase, upload: BinaryIO, filename: str
) -> Submission:
    """Accept an upload as a queued submission of the user's team.

    The limits are checked again after the upload under a write lock on the team row (an
    ``UPDATE`` that is the transaction's first write), so two uploads arriving at the same
    instant are counted one after the other and cannot both pass a limit of one. An upload that
    :func:`~covseg.platform.services.uploads.screen` refuses (damaged, zip bomb, bad names,
    mask headers that do not match the truth) is stored as ``failed`` at once, which does not
    count against the daily limit. The caller commits, then queues the evaluation.
    """
    team = check_can_submit(db, user, phase)
    _check_limits(db, team, phase)  # fail fast, before receiving a large file
    tmp, size = _receive(
        upload, settings.data_dir / "uploads" / "incoming", settings.max_upload_bytes
    )
    try:
        # Before the write lock below, which serializes uploads: screening reads headers.
        problem = screen_upload(settings, phase, tmp)
        db.execute(
            update(Team).where(Team.id == team.id).values(lock_counter=Team.lock_counter + 1)
        )
        _check_limits(db, team, phase)
        sub = Submission(
            phase_id=phase.id,
            team_id=team.id,
            user_id=user.id,
            filename=Path(filename or "upload.zip").name[:255],
            size_bytes=size,
            status=SubmissionStatus.queued,
            created_at=utcnow(),
        )
        db.add(sub)
        db.flush()
        shutil.move(tmp, settings.upload_path(sub.id))
        if problem is not None:  # fails at once, without waiting in the queue for a worker
            sub.status, sub.message, sub.finished_at = SubmissionStatus.failed, problem, utcnow()
    finally:
        tmp.unlink(missing_ok=True)
    return sub


def get_submission(db: Session, user: User, submission_id: int) -> Submission:
    """A submission of the user's own team (organizers see all); others look nonexistent."""
    sub = db.get(Submission, submission_id)
    if sub is None:
        raise NotFound("no such submission")
    if is_organizer(db, user, sub.phase.challenge):
        return sub
    team = team_of(db, user, sub.phase.challenge)
    if team is None or team.id != sub.team_id:
        raise NotFound("no such submission")
    return sub


def team_submissions(db: Session, user: User, phase: Phase) -> list[Submission]:
    """The submissions of the user's team to a phase, newest first."""
    team = require_team(db, user, phase.challenge)
    return list(
        db.scalars(
            select(Submission)
            .where(Submission.phase_id == phase.id, Submission.team_id == team.id)
            .order_by(Submission.id.desc())
        )
    )


def scores_visible(db: Session, user: User | None, phase: Phase) -> bool:
    """Whether ``user`` may see the scores of submissions to ``phase``.

    While a phase's board is hidden (the test phase until the organizers publish it), its
    participants see only the status of their submissions (queued, scored, failed and why),
    never a score: otherwise each daily submission would probe the test set. Organizers see
    everything.
    """
    return phase.board_public or is_organizer(db, user, phase.challenge)


def results_csv(sub: Submission, scores: bool = True) -> str:
    """Per-case results as CSV, with the columns of ``covseg evaluate``'s metrics.csv.

    A case's label in the challenge file (``sources``) is its subset when it names one
    (``seen``, ``unseen``), else its source (whose subset the platform does not know). With
    ``scores`` false (see :func:`scores_visible`) the metric columns are left out.
    """
    if not sub.results and sub.status not in (SubmissionStatus.succeeded, SubmissionStatus.failed):
        raise Invalid("this submission has not been evaluated yet")
    metrics = list(CSV_METRICS) if scores else []
    rows = (
        [
            r.case_id,
            *_source_subset(r.source),
            *(r.metrics.get(m) for m in metrics),
            r.status,
            r.error,
        ]
        for r in sub.results
    )
    return to_csv(["case", "source", "subset", *metrics, "status", "error"], rows)


def _source_subset(label: str) -> tuple[str, str]:
    """(source, subset) of a case's label in the challenge file."""
    if label in SUBSETS:
        return "", label
    return label, "unknown"
