"""The final ranking: ``covseg.ranking`` on the counted test submissions, published as a report."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy.orm import Session

from covseg.platform.config import Settings
from covseg.platform.models import Challenge, User
from covseg.platform.services.challenges import (
    get_phase,
    is_organizer,
    record,
    require_organizer,
)
from covseg.platform.services.errors import Invalid, NotFound
from covseg.platform.services.leaderboard import counted_submissions

#: The COVID-19-20 final ranking's metrics; with two sources they make its six tasks.
RANKING_METRICS = ("dice", "nsd", "nave")


def ranking_dir(settings: Settings, challenge: Challenge) -> Path:
    """Where the report and its plots are written."""
    return settings.challenge_dir(challenge.slug) / "ranking"


def run_final_ranking(
    db: Session,
    settings: Settings,
    actor: User | None,
    challenge: Challenge,
    phase_slug: str = "test",
    bootstrap: int = 1000,
    seed: int = 0,
) -> Path:
    """Rank the teams of a phase (test-then-rank, Holm, bootstrap) and publish the report.

    ``actor`` ``None`` means the command line (``covseg challenge rank``), which has the
    server's files and so an organizer's rights. Returns the path of ``report.html``.
    """
    import pandas as pd

    from covseg.ranking import RankingInputError, run_ranking, table_from_evaluations

    if actor is not None:
        require_organizer(db, actor, challenge)
    phase = get_phase(db, challenge, phase_slug)
    subs = counted_submissions(db, phase)
    if len(subs) < 2:
        raise Invalid("the ranking needs at least two teams with a successful submission")
    evaluations = {}
    for sub in subs:
        rows = [
            {
                "case": r.case_id,
                "source": r.source,
                "subset": r.source,  # seen / unseen: the ranking's tasks split by it
                **{m: r.metrics.get(m) for m in RANKING_METRICS},
                "status": r.status,
                "error": r.error,
            }
            for r in sub.results
        ]
        evaluations[sub.team.name] = pd.DataFrame(rows)
    out = ranking_dir(settings, challenge)
    shutil.rmtree(out, ignore_errors=True)
    try:
        table, smaller_better = table_from_evaluations(evaluations)
        run_ranking(
            table,
            out,
            methods=("test-then-rank",),
            bootstrap=bootstrap,
            seed=seed,
            adjust="holm",
            smaller_better=tuple(smaller_better),
        )
    except RankingInputError as exc:
        raise Invalid(f"the ranking cannot run: {exc}") from exc
    challenge.ranking_published = True
    record(db, actor, challenge, "run final ranking", f"{phase.slug}, {len(subs)} teams")
    return out / "report.html"


def ranking_file(
    db: Session, settings: Settings, user: User | None, challenge: Challenge, name: str
) -> Path:
    """A file of the published report (organizers may look before it is published)."""
    if not challenge.ranking_published and not is_organizer(db, user, challenge):
        raise NotFound("the final ranking is not published")
    root = ranking_dir(settings, challenge).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound("no such file")
    return path
