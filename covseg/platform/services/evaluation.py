"""Evaluating a submission durably: claim, validate, score, commit once.

The queue (Huey) only carries submission ids; the database is the source of truth. A worker
*claims* a queued submission with a conditional ``UPDATE`` (so duplicate queue messages are
harmless), reports a heartbeat while it works, and commits the results in one transaction that
only succeeds while it still holds the claim. A submission whose worker died keeps its stale
heartbeat; :func:`requeue_stale` puts it back in the queue, and the next claim starts it afresh.
Hence every accepted submission is scored, and scored exactly once.

What a participant sent is judged before it costs anything: the zip from its table of contents,
each mask from its header (:mod:`~covseg.platform.services.uploads`); only then are voxels read,
in a child process under a memory and a wall-time limit (:mod:`covseg.platform.sandbox`). Bad
uploads fail in one step with one line naming the member or case, never a server path; a worker
that is stopping gives its submission back to the queue instead.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from covseg.metrics.registry import METRICS as CSV_METRICS
from covseg.platform.config import Settings
from covseg.platform.models import (
    IN_PROGRESS,
    CaseResult,
    Submission,
    SubmissionStatus,
    utcnow,
)
from covseg.platform.sandbox import Limits, ScoringFailed, thread_sandbox
from covseg.platform.security import new_token
from covseg.platform.services.challenges import METRICS
from covseg.platform.services.errors import Invalid
from covseg.platform.services.uploads import (
    Reference,
    check_header,
    checks_message,
    read_reference,
    unpack,
)

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


class _HandBack(Exception):
    """The worker is stopping: give the submission back to the queue instead of finishing."""


class _Heartbeat:
    """Reports that the evaluation is alive, at most every ``every_s`` seconds.

    Called while unpacking (every MB) and while the cases are scored; raises
    :class:`_HandBack` once ``stop`` is set.
    """

    def __init__(
        self,
        factory: Factory,
        submission_id: int,
        token: str,
        every_s: float,
        stop: threading.Event | None,
    ) -> None:
        self.factory, self.submission_id, self.token = factory, submission_id, token
        self.every_s, self.stop = every_s, stop
        self.status = SubmissionStatus.validating
        self._last = time.monotonic()

    def __call__(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise _HandBack
        if time.monotonic() - self._last >= self.every_s:
            _touch(self.factory, self.submission_id, self.token, self.status)
            self._last = time.monotonic()

    def touch(self, status: SubmissionStatus) -> None:
        """Report now, with a new status."""
        self.status = status
        _touch(self.factory, self.submission_id, self.token, status)
        self._last = time.monotonic()


def _release(factory: Factory, submission_id: int, token: str) -> None:
    """Give a claimed submission back to the queue; the interrupted try is not an attempt."""
    with factory() as db, db.begin():
        db.execute(
            update(Submission)
            .where(Submission.id == submission_id, Submission.claim_token == token)
            .values(
                status=SubmissionStatus.queued,
                claim_token=None,
                heartbeat_at=None,
                attempts=Submission.attempts - 1,
            )
        )


def memory_limit(settings: Settings, references: dict[str, Reference]) -> int:
    """Bytes of address space the scoring of one submission may use.

    ``settings.eval_memory_mb`` when set; else 1 GiB (the interpreter, numpy, scipy and
    nibabel take ~350 MB of it) plus 64 bytes per voxel of the largest truth mask: scoring
    a case peaked at ~55 bytes per voxel on a mask made of many small lesions (a float64
    prediction, distance maps and surfaces), ~3 bytes per voxel on compact lesions.
    """
    if settings.eval_memory_mb is not None:
        return settings.eval_memory_mb * 1_000_000
    voxels = max((int(np.prod(r.shape, dtype=np.int64)) for r in references.values()), default=0)
    return 1024**3 + 64 * voxels


class _Public:
    """Rewrites scoring errors for participants: their member names, never a server path."""

    def __init__(
        self,
        settings: Settings,
        preds: dict[str, tuple[Path, str]],
        cases: dict[str, tuple[Path, str]],
    ) -> None:
        self._names = [(str(path), name) for path, name in preds.values()]
        self._names += [(str(truth), f"the truth of {case}") for case, (truth, _) in cases.items()]
        self._root = str(settings.data_dir)

    def __call__(self, message: str) -> str:
        for path, name in self._names:
            message = message.replace(path, name)
        # The CLI's hint does not apply to uploads: a platform mask holds one label.
        message = message.replace("; pick one with --label N", "; masks must be binary (0/1)")
        return message.replace(self._root, "<data>")


def evaluate_submission(
    factory: Factory,
    settings: Settings,
    submission_id: int,
    on_case: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> bool:
    """Claim, validate and score one submission; ``False`` when it was not ours to evaluate.

    Bad uploads end as ``failed`` at once with a message naming the member or case (and
    per-case errors): damaged archives, zip bombs, masks whose header does not match the
    truth's, and masks that need more than the evaluation's memory or time limits. An
    unexpected crash leaves the submission claimed, for :func:`requeue_stale` to retry once its
    heartbeat is stale. When ``stop`` is set (the worker is shutting down) the submission goes
    back to the queue and ``False`` is returned. ``on_case`` is called with the number of
    cases scored so far (progress, tests).
    """
    token = claim(factory, submission_id)
    if token is None:
        return False
    with factory() as db:
        sub = db.get(Submission, submission_id)
        assert sub is not None
        cases = {c.case_id: (settings.data_dir / c.truth_path, c.source) for c in sub.phase.cases}
    work = settings.work_dir(submission_id, token)
    every_s = min(30.0, max(0.5, settings.stale_after_s / 5))
    beat = _Heartbeat(factory, submission_id, token, every_s, stop)

    def fail(message: str, rows: list[dict[str, Any]] | None = None) -> bool:
        status = SubmissionStatus.failed
        return _finish(factory, submission_id, token, status, message, rows or [], {})

    try:
        references = {case: read_reference(truth) for case, (truth, _) in cases.items()}
        try:
            preds = unpack(
                settings.upload_path(submission_id),
                references,
                work,
                settings.max_unzipped_bytes,
                settings.max_zip_files,
                settings.max_zip_ratio,
                alive=beat,
            )
        except Invalid as exc:
            return fail(str(exc))
        errors = {case: check_header(preds[case][0], references[case]) for case in sorted(cases)}
        bad = {case: err for case, err in errors.items() if err}
        if bad:
            rows = [
                {"case_id": c, "source": cases[c][1], "status": "failed", "error": e, "metrics": {}}
                for c, e in bad.items()
            ]
            return fail(checks_message(bad), rows)
        beat.touch(SubmissionStatus.evaluating)
        public = _Public(settings, preds, cases)
        limits = Limits(memory_limit(settings, references), settings.eval_timeout_s)
        try:
            rows = _score_all(settings, preds, cases, limits, beat, public, on_case)
        except ScoringFailed as exc:
            return fail(str(exc))
        failed = [r for r in rows if r["status"] != "ok"]
        if failed:
            return fail(
                f"{len(failed)} case(s) could not be scored, e.g. {failed[0]['error']}", rows
            )
        return _finish(
            factory, submission_id, token, SubmissionStatus.succeeded, "", rows, summarize(rows)
        )
    except _HandBack:
        _release(factory, submission_id, token)
        return False
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _score_all(
    settings: Settings,
    preds: dict[str, tuple[Path, str]],
    cases: dict[str, tuple[Path, str]],
    limits: Limits,
    beat: _Heartbeat,
    public: Callable[[str], str],
    on_case: Callable[[int], None] | None,
) -> list[dict[str, Any]]:
    """Score every case in a limited child process, reporting a heartbeat as results arrive."""
    items = [(c, str(preds[c][0]), str(truth), src) for c, (truth, src) in sorted(cases.items())]
    rows: list[dict[str, Any]] = []

    def on_row(result: dict[str, Any]) -> None:
        rows.append(
            {
                "case_id": str(result["case"]),
                "source": str(result.get("source") or ""),
                "status": str(result.get("status", "ok")),
                "error": public(str(result.get("error") or "")),
                # every column of metrics.csv, the descriptive counts too
                "metrics": {m: _finite(result.get(m)) for m in CSV_METRICS},
            }
        )
        if on_case is not None:
            on_case(len(rows))

    thread_sandbox().score(
        items,
        limits,
        workers=settings.workers,
        scheduler=settings.scheduler,
        on_row=on_row,
        tick=beat,
        tick_every_s=1.0,  # how soon a stopping worker notices; the beat limits DB writes
    )
    return rows


def remove_orphan_work(factory: Factory, settings: Settings) -> list[str]:
    """Delete the scratch folders of evaluation runs that no longer hold a claim.

    A worker killed mid-evaluation leaves its unpacked masks behind; once its submission is
    re-queued (or finished by another run) nobody owns them. The folders are listed before the
    claims are read, so a run that claims meanwhile is never mistaken for a dead one.
    """
    root = settings.data_dir / "work"
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        return []
    with factory() as db:
        claims = db.execute(
            select(Submission.id, Submission.claim_token).where(Submission.claim_token.is_not(None))
        )
        live = {settings.work_dir(i, t).name for i, t in claims if t}
    removed = [p.name for p in folders if p.name not in live]
    for name in removed:
        shutil.rmtree(root / name, ignore_errors=True)
    return removed
