"""The final ranking: ``covseg.ranking`` on the counted test submissions, published as a report.

A ranking is built in a fresh folder beside the published one and replaces it in one atomic
step (a symbolic link ``ranking`` switched by ``rename``) only once it is complete: a ranking
that fails, for whatever reason, leaves the published report as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
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
from covseg.platform.services.errors import Invalid, NotFound, ServiceError
from covseg.platform.services.leaderboard import counted_submissions
from covseg.platform.spreadsheet import neutralise_file

#: Prefix of the folders rankings are built in (the published one is the link's target).
_BUILD_PREFIX = ".ranking-"

log = logging.getLogger(__name__)


class RankingFailed(ServiceError):
    """The ranking stopped on an unexpected error; the published report is unchanged."""

    status_code = 422


def ranking_dir(settings: Settings, challenge: Challenge) -> Path:
    """Where the published report and its plots are (a link to the folder of the last run)."""
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
    from covseg.ranking.report import write_outputs

    if actor is not None:
        require_organizer(db, actor, challenge)
    phase = get_phase(db, challenge, phase_slug)
    subs = counted_submissions(db, phase)
    if len(subs) < 2:
        raise Invalid("the ranking needs at least two teams with a successful submission")
    tasks = challenge.ranking_tasks.split(",")  # validated at creation (ranking: tasks)
    evaluations = {}
    for sub in subs:
        rows = [
            {
                "case": r.case_id,
                "source": r.source,
                "subset": r.source,  # seen / unseen: the ranking's tasks split by it
                **{m: r.metrics.get(m) for m in tasks},
                "status": r.status,
                "error": r.error,
            }
            for r in sub.results
        ]
        evaluations[sub.team.name] = pd.DataFrame(rows)
    published = ranking_dir(settings, challenge)
    build: Path | None = None
    try:
        published.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=_BUILD_PREFIX, dir=published.parent))
        table, smaller_better = table_from_evaluations(evaluations, tasks=tasks)
        result = run_ranking(
            table,
            methods=("test-then-rank",),
            bootstrap=bootstrap,
            seed=seed,
            adjust="holm",
            smaller_better=tuple(smaller_better),
        )
        write_outputs(result, build)
        for path in build.glob("*.csv"):  # team names may start a spreadsheet formula
            neutralise_file(path)
        _publish(build, published)
    except Exception as exc:
        if build is not None:
            shutil.rmtree(build, ignore_errors=True)
        if isinstance(exc, RankingInputError):
            raise Invalid(f"the ranking cannot run: {exc}") from exc
        log.exception("the final ranking of %s failed", challenge.slug)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise RankingFailed(
            f"the final ranking failed ({reason[:300]}); the published report is unchanged"
        ) from exc
    challenge.ranking_published = True
    record(db, actor, challenge, "run final ranking", f"{phase.slug}, {len(subs)} teams")
    return published / "report.html"


def _publish(build: Path, link: Path) -> None:
    """Point ``link`` at the finished folder ``build`` in one atomic rename, then remove the
    folder it pointed at before (a reader still holding one of its files keeps it open)."""
    staged = build.with_name(f"{build.name}.link")
    staged.symlink_to(build.name)  # relative, so the data folder can be moved
    try:
        if link.is_symlink() or not link.exists():
            previous = link.resolve() if link.is_symlink() else None
        else:  # a report written before reports were published through a link
            previous = build.with_name(f"{build.name}.old")
            link.rename(previous)
        os.replace(staged, link)
    finally:
        staged.unlink(missing_ok=True)
    if (
        previous is not None
        and previous.parent.resolve() == build.parent.resolve()
        and previous.name.startswith(_BUILD_PREFIX)
    ):
        shutil.rmtree(previous, ignore_errors=True)


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
