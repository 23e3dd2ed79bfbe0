"""Submissions: upload, list your team's, per-case results (JSON and CSV)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, UploadFile, status
from fastapi.responses import PlainTextResponse

from covseg.platform.api.schemas import CaseResultOut, SubmissionDetail, SubmissionOut
from covseg.platform.config import Settings
from covseg.platform.deps import DB, CurrentUser, get_queue, get_settings
from covseg.platform.models import Submission
from covseg.platform.services import challenges, submissions
from covseg.platform.tasks import Queue

router = APIRouter(tags=["submissions"])


def submission_out(sub: Submission, scores: bool) -> SubmissionOut:
    """The API view of a submission; without ``scores`` its summary stays empty."""
    return SubmissionOut.model_validate(
        {
            "id": sub.id,
            "phase": sub.phase.slug,
            "team": sub.team.name,
            "filename": sub.filename,
            "size_bytes": sub.size_bytes,
            "status": sub.status.value,
            "message": sub.message,
            "created_at": sub.created_at,
            "finished_at": sub.finished_at,
            "scores_hidden": not scores,
            "summary": sub.summary if scores else {},
        }
    )


def submission_detail(sub: Submission, scores: bool) -> SubmissionDetail:
    """A submission with its per-case results (their metrics only with ``scores``)."""
    results = [
        CaseResultOut(
            case_id=r.case_id,
            source=r.source,
            status=r.status,
            error=r.error,
            metrics=r.metrics if scores else {},
        )
        for r in sub.results
    ]
    return SubmissionDetail.model_validate(
        {**submission_out(sub, scores).model_dump(), "results": results}
    )


@router.post("/challenges/{slug}/phases/{phase}/submissions", status_code=status.HTTP_202_ACCEPTED)
def submit(
    slug: str,
    phase: str,
    db: DB,
    user: CurrentUser,
    file: UploadFile = File(description="A .zip with one NIfTI mask per case, named <case>.nii.gz"),
    settings: Settings = Depends(get_settings),
    queue: Queue = Depends(get_queue),
) -> SubmissionOut:
    """Upload a zip of masks for your team; it is checked and scored by a worker."""
    ph = challenges.get_phase(db, challenges.get_challenge(db, slug), phase)
    sub = submissions.create_submission(db, settings, user, ph, file.file, file.filename or "")
    db.commit()
    queue.enqueue(sub.id)
    return submission_out(sub, submissions.scores_visible(db, user, ph))


@router.get("/challenges/{slug}/phases/{phase}/submissions")
def team_submissions(slug: str, phase: str, db: DB, user: CurrentUser) -> list[SubmissionOut]:
    """Your team's submissions to a phase, newest first (no scores while its board is hidden)."""
    ph = challenges.get_phase(db, challenges.get_challenge(db, slug), phase)
    scores = submissions.scores_visible(db, user, ph)
    return [submission_out(s, scores) for s in submissions.team_submissions(db, user, ph)]


@router.get("/submissions/{submission_id}")
def get_submission(submission_id: int, db: DB, user: CurrentUser) -> SubmissionDetail:
    """One of your team's submissions with its per-case results (no scores while its phase's
    board is hidden: only the status, and why it failed)."""
    sub = submissions.get_submission(db, user, submission_id)
    return submission_detail(sub, submissions.scores_visible(db, user, sub.phase))


@router.get("/submissions/{submission_id}/results.csv", response_class=PlainTextResponse)
def results_csv(submission_id: int, db: DB, user: CurrentUser) -> PlainTextResponse:
    """Per-case results as CSV (without the metric columns while the board is hidden)."""
    sub = submissions.get_submission(db, user, submission_id)
    return PlainTextResponse(
        submissions.results_csv(sub, submissions.scores_visible(db, user, sub.phase)),
        media_type="text/csv",
        headers={"content-disposition": f'attachment; filename="submission-{sub.id}.csv"'},
    )
