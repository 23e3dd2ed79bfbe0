"""Leaderboards: the counted submission of each team, its scores, and the board's order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scipy.stats import rankdata
from sqlalchemy import select
from sqlalchemy.orm import Session

from covseg.metrics.registry import metric as metric_entry
from covseg.platform.models import Phase, Submission, SubmissionStatus, Team, User
from covseg.platform.services.challenges import METRICS, is_organizer, require_organizer
from covseg.platform.services.errors import NotFound
from covseg.platform.services.participants import competing
from covseg.platform.spreadsheet import to_csv


@dataclass
class Entry:
    """One team's line: its counted submission and mean/sd per metric per source."""

    rank: float
    team: str
    submission_id: int
    submitted_at: datetime
    summary: dict[str, dict[str, dict[str, float | None]]]
    score: float | None = None


@dataclass
class Board:
    """A phase's leaderboard, best first."""

    phase: Phase
    metrics: list[str]
    sources: list[str]
    entries: list[Entry] = field(default_factory=list)


def counted_submissions(db: Session, phase: Phase) -> list[Submission]:
    """Each competing team's last successful submission to the phase (the one that counts).

    Teams an organizer excluded, or with a rejected member, are left out (see
    :func:`~covseg.platform.services.participants.competing`).
    """
    subs = db.scalars(
        select(Submission)
        .join(Team, Team.id == Submission.team_id)
        .where(
            Submission.phase_id == phase.id,
            Submission.status == SubmissionStatus.succeeded,
            competing(phase.challenge_id),
        )
        .order_by(Submission.created_at, Submission.id)
    )
    last: dict[int, Submission] = {}
    for sub in subs:
        last[sub.team_id] = sub
    return list(last.values())


def _mean(sub: Submission, metric: str) -> float | None:
    return sub.summary.get("all", {}).get(metric, {}).get("mean")


def _order(subs: list[Submission], phase: Phase) -> list[tuple[float, float | None, Submission]]:
    """(rank, score, submission), ranked by mean position over metrics or by one metric."""
    if not subs:
        return []
    metrics = phase.metrics if phase.ranking_method == "mean-position" else [phase.ranking_method]
    per_metric = []
    for metric in metrics:
        sign = 1.0 if metric_entry(metric).smaller_is_better else -1.0  # rank 1 = best
        values = [_mean(s, metric) for s in subs]
        keys = [sign * v if v is not None else float("inf") for v in values]
        per_metric.append(rankdata(keys, method="average"))
    scores = [float(sum(r[i] for r in per_metric) / len(per_metric)) for i in range(len(subs))]
    if phase.ranking_method != "mean-position":
        shown: list[float | None] = [_mean(s, phase.ranking_method) for s in subs]
    else:
        shown = list(scores)
    final = rankdata(scores, method="min")
    ordered = sorted(zip(final, shown, subs, strict=True), key=lambda t: (t[0], t[2].id))
    return [(float(r), s, sub) for r, s, sub in ordered]


def leaderboard(db: Session, user: User | None, phase: Phase) -> Board:
    """The board of a phase; a hidden board looks nonexistent to everyone but organizers."""
    if not phase.board_public and not is_organizer(db, user, phase.challenge):
        raise NotFound("this leaderboard is not published")
    subs = counted_submissions(db, phase)
    sources = sorted({c.source for c in phase.cases if c.source})
    board = Board(phase=phase, metrics=list(phase.metrics), sources=sources)
    for rank, score, sub in _order(subs, phase):
        board.entries.append(Entry(rank, sub.team.name, sub.id, sub.created_at, sub.summary, score))
    return board


def export_results(db: Session, actor: User, phase: Phase) -> list[dict[str, Any]]:
    """Every per-case result of every evaluated submission of a phase (organizers only)."""
    require_organizer(db, actor, phase.challenge)
    subs = db.scalars(
        select(Submission).where(Submission.phase_id == phase.id).order_by(Submission.id)
    )
    rows: list[dict[str, Any]] = []
    for sub in subs:
        for r in sub.results:
            rows.append(
                {
                    "submission": sub.id,
                    "team": sub.team.name,
                    "submitted_at": sub.created_at.isoformat(),
                    "submission_status": sub.status.value,
                    "case": r.case_id,
                    "source": r.source,
                    **{m: r.metrics.get(m) for m in METRICS},
                    "status": r.status,
                    "error": r.error,
                    "filename": sub.filename,
                    "submitted_by": sub.user.email,
                }
            )
    return rows


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """Rows of :func:`export_results` as CSV text that opens safely in a spreadsheet."""
    if not rows:
        return ""
    header = list(rows[0])
    return to_csv(header, ([row[k] for k in header] for row in rows))
