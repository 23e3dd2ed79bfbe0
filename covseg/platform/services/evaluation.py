"""Evaluating a submission durably: claim, validate, score, commit once.

The queue (Huey) only carries submission ids; the database is the source of truth. A worker
*claims* a queued submission with a conditional ``UPDATE`` (so duplicate queue messages are
harmless), reports a heartbeat while it works, and commits the results in one transaction that
only succeeds while it still holds the claim. A submission whose worker died keeps its stale
heartbeat; :func:`requeue_stale` puts it back in the queue, and the next claim starts it afresh.
Hence every accepted submission is scored, and scored exactly once.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from covseg.platform.config import Settings
from covseg.platform.models import (
    IN_PROGRESS,
    CaseResult,
    Submission,
    SubmissionStatus,
    utcnow,
)
from covseg.platform.security import new_token
from covseg.platform.services.challenges import METRICS
from covseg.platform.services.errors import Invalid
from covseg.platform.services.uploads import check_mask, unpack

#: A submission whose evaluation crashed this many times is failed instead of retried.
MAX_ATTEMPTS = 3

Factory = sessionmaker[Session]


def claim(factory: Factory, submission_id: int) -> str | None:
    """Take a queued submission for evaluation; ``None`` when it is not queued (any more)."""
    token = new_token()
    with factory() as db, db.begin():
        done = db.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.status == SubmissionStatus.queued)
            .values(
                status=SubmissionStatus.validating,
                claim_token=token,
                heartbeat_at=utcnow(),
                attempts=Submission.attempts + 1,
            )
        )
        if getattr(done, "rowcount", 0) != 1:
            return None
        sub = db.get(Submission, submission_id)
        if sub is not None and sub.attempts > MAX_ATTEMPTS:
            sub.status = SubmissionStatus.failed
            sub.message = "the evaluation crashed repeatedly; please contact the organizers"
            sub.finished_at = utcnow()
            return None
    return token


def _touch(factory: Factory, submission_id: int, token: str, status: SubmissionStatus) -> None:
    with factory() as db, db.begin():
        db.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.claim_token == token)
            .values(status=status, heartbeat_at=utcnow())
        )


def requeue_stale(factory: Factory, stale_after_s: float) -> list[int]:
    """Submissions to (re-)queue: those whose worker went silent, and those never picked up.

    In-progress submissions with a heartbeat older than ``stale_after_s`` go back to
    ``queued``; queued ones older than that (their queue message may have been lost) are
    listed too.
    """
    limit = utcnow() - timedelta(seconds=stale_after_s)
    with factory() as db, db.begin():
        db.execute(
            update(Submission)
            .where(Submission.status.in_(IN_PROGRESS), Submission.heartbeat_at <= limit)
            .values(status=SubmissionStatus.queued, claim_token=None, heartbeat_at=None)
        )
        ids = db.scalars(
            select(Submission.id)
            .where(
                Submission.status == SubmissionStatus.queued,
                or_(Submission.created_at <= limit, Submission.attempts > 0),
            )
            .order_by(Submission.id)
        )
        return list(ids)


def _finish(
    factory: Factory,
    submission_id: int,
    token: str,
    status: SubmissionStatus,
    message: str,
    rows: list[dict[str, Any]],
    summary: dict[str, Any],
) -> bool:
    """Commit the outcome, only while ``token`` still holds the claim."""
    with factory() as db, db.begin():
        done = db.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.claim_token == token)
            .values(
                status=status,
                message=message,
                summary=summary,
                finished_at=utcnow(),
                claim_token=None,
                times_scored=Submission.times_scored + int(status is SubmissionStatus.succeeded),
            )
        )
        if getattr(done, "rowcount", 0) != 1:
            db.rollback()
            return False
        for row in rows:
            db.add(CaseResult(submission_id=submission_id, **row))
    return True


def _finite(value: Any) -> float | None:
    """Metric values as JSON-safe floats; NaN and infinities become ``None``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Mean and sd of each metric per source, and over all cases (``"all"``)."""
    groups: dict[str, list[dict[str, Any]]] = {"all": rows}
    for row in rows:
        if row["source"]:
            groups.setdefault(row["source"], []).append(row)
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, group in groups.items():
        out[name] = {}
        for metric in METRICS:
            values = [v for r in group if (v := r["metrics"].get(metric)) is not None]
            arr = np.asarray(values, dtype=float)
            out[name][metric] = {
                "mean": float(arr.mean()) if arr.size else None,
                "sd": float(arr.std(ddof=1)) if arr.size > 1 else None,
                "n": int(arr.size),
            }
    return out


def score_one(item: tuple[str, str, str, str]) -> dict[str, Any]:
    """Score one case with the challenge metrics (runs in a worker process or on Dask)."""
    from covseg.metrics.batch import score_case_files

    case_id, pred, truth, source = item
    return dict(score_case_files(case_id, pred, truth, source))


def evaluate_submission(
    factory: Factory,
    settings: Settings,
    submission_id: int,
    on_case: Callable[[int], None] | None = None,
) -> bool:
    """Claim, validate and score one submission; ``False`` when it was not ours to evaluate.

    Bad uploads end as ``failed`` with a message (and per-case errors); an unexpected crash
    leaves the submission claimed, for :func:`requeue_stale` to retry once its heartbeat is
    stale. ``on_case`` is called with the number of cases scored so far (progress, tests).
    """
    token = claim(factory, submission_id)
    if token is None:
        return False
    with factory() as db:
        sub = db.get(Submission, submission_id)
        assert sub is not None
        cases = {c.case_id: (settings.data_dir / c.truth_path, c.source) for c in sub.phase.cases}
    work = settings.data_dir / "work" / f"{submission_id}-{token[:8]}"
    try:
        try:
            preds = unpack(
                settings.upload_path(submission_id),
                set(cases),
                work,
                settings.max_unzipped_bytes,
                settings.max_zip_files,
            )
        except Invalid as exc:
            return _finish(factory, submission_id, token, SubmissionStatus.failed, str(exc), [], {})
        errors = {case: check_mask(preds[case], cases[case][0]) for case in sorted(cases)}
        bad = {case: err for case, err in errors.items() if err}
        if bad:
            rows = [
                {"case_id": c, "source": cases[c][1], "status": "failed", "error": e, "metrics": {}}
                for c, e in bad.items()
            ]
            first = next(iter(bad.items()))
            message = f"{len(bad)} case(s) failed the checks, e.g. {first[0]}: {first[1]}"
            return _finish(
                factory, submission_id, token, SubmissionStatus.failed, message, rows, {}
            )
        _touch(factory, submission_id, token, SubmissionStatus.evaluating)
        rows = _score_all(factory, settings, submission_id, token, preds, cases, on_case)
        failed = [r for r in rows if r["status"] != "ok"]
        if failed:
            message = f"{len(failed)} case(s) could not be scored, e.g. {failed[0]['error']}"
            return _finish(
                factory, submission_id, token, SubmissionStatus.failed, message, rows, {}
            )
        return _finish(
            factory, submission_id, token, SubmissionStatus.succeeded, "", rows, summarize(rows)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _score_all(
    factory: Factory,
    settings: Settings,
    submission_id: int,
    token: str,
    preds: dict[str, Path],
    cases: dict[str, tuple[Path, str]],
    on_case: Callable[[int], None] | None,
) -> list[dict[str, Any]]:
    """Score every case through :mod:`covseg.parallel`, reporting a heartbeat as results arrive."""
    from covseg.parallel import map_unordered

    items = [(c, str(preds[c]), str(truth), src) for c, (truth, src) in sorted(cases.items())]
    rows: list[dict[str, Any]] = []
    for result in map_unordered(
        score_one, items, workers=settings.workers, scheduler=settings.scheduler
    ):
        rows.append(
            {
                "case_id": str(result["case"]),
                "source": str(result.get("source") or ""),
                "status": str(result.get("status", "ok")),
                "error": str(result.get("error") or ""),
                "metrics": {m: _finite(result.get(m)) for m in METRICS},
            }
        )
        _touch(factory, submission_id, token, SubmissionStatus.evaluating)
        if on_case is not None:
            on_case(len(rows))
    return rows
