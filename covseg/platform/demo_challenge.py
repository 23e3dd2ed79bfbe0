"""A ready demo challenge built from phantoms (``covseg serve --demo``).

:func:`build_demo` creates the challenge and its accounts; :func:`seed_submissions` then submits
``covseg demo``'s simulated teams (:mod:`covseg.demo.teams`: the truth perturbed in documented
ways) to both phases, scores them with the worker's own evaluation
(:func:`~covseg.platform.services.evaluation.evaluate_submission`) and runs the final ranking,
so that the boards, each team's per-case results and the ranking report are there to look at.
``covseg serve --demo`` seeds in the background while the server already answers. The printed
participants (alice, bob) have not submitted: their quota is a newcomer's.
"""

from __future__ import annotations

import io
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from covseg.platform.config import Settings
from covseg.platform.models import Challenge, Phase, SubmissionStatus, User, utcnow
from covseg.platform.security import hash_password
from covseg.platform.services import accounts, challenges, participants, submissions
from covseg.platform.services.errors import ServiceError
from covseg.platform.services.evaluation import evaluate_submission
from covseg.platform.services.leaderboard import counted_submissions
from covseg.platform.services.ranking import run_final_ranking

SLUG = "covid19-20-demo"
#: Test phantoms per source (seen A, unseen B): with 12 cases a team that beats another on every
#: case is significantly better after Holm's adjustment (one-sided Wilcoxon p = 2^-12); with 2-3
#: cases no difference can be, and the final ranking ties every team.
N_TEST = 12
#: The simulated team whose log-in is printed, to see a team's own submissions page.
SHOWN_TEAM = "team-boundary-noise"
LICENCE = (
    "Synthetic phantom data for trying the platform. You may use it for any purpose;\n"
    "the real COVID-19-20 data is under the TCIA data usage policy (CC BY 4.0)."
)


@dataclass
class DemoAccount:
    """A demo log-in to print."""

    role: str
    email: str
    password: str


def _dataset(root: Path, size: int, n_test: int) -> Path:
    """Phantoms in the COVID-19-20 layout, with validation and test labels moved aside."""
    from covseg.phantom import write_dataset

    source = root / "demo-source"
    shutil.rmtree(source, ignore_errors=True)
    write_dataset(
        source, n_train=2, n_validation=3, n_test_seen=n_test, n_test_unseen=n_test, size=size
    )
    for split, phase in (("Validation", "validation"), ("Test", "test")):
        truth = source / "truth" / phase
        truth.mkdir(parents=True)
        for seg in (source / split).glob("*_seg.nii.gz"):
            seg.rename(truth / seg.name)
    return source


def _spec(source: Path) -> dict[str, object]:
    now = utcnow().replace(microsecond=0)
    # Source A is the one training data comes from ("seen"), B the unseen one.
    sources = {
        p.name.removesuffix("_seg.nii.gz"): "seen" if "-A-" in p.name else "unseen"
        for p in (source / "truth").glob("*/*_seg.nii.gz")
    }
    return {
        "slug": SLUG,
        "title": "COVID-19-20 demo (phantoms)",
        "description": (
            "Segment COVID-19 lesions in lung CT. Submit a zip of binary masks named "
            "<case>.nii.gz; validation is scored live, the test board stays hidden until the "
            "organizers publish it and the final ranking."
        ),
        "licence": LICENCE,
        "auto_approve": False,
        "downloads": ["Train", "Validation", "Test"],
        "phases": [
            {
                "slug": "validation",
                "title": "Validation",
                "kind": "validation",
                "opens": now - timedelta(days=1),
                "closes": now + timedelta(days=30),
                "truth": "truth/validation",
                "sources": sources,
                "daily_limit": 1,
                "daily_attempts": 5,
            },
            {
                "slug": "test",
                "title": "Test",
                "kind": "test",
                "opens": now - timedelta(days=1),
                "closes": now + timedelta(days=30),
                "truth": "truth/test",
                "sources": sources,
                "requires": "validation",
                "daily_limit": 1,
                "daily_attempts": 5,
            },
        ],
    }


def build_demo(
    settings: Settings,
    factory: sessionmaker[Session],
    size: int = 32,
    n_test: int = N_TEST,
) -> list[DemoAccount]:
    """Create the demo challenge and its accounts; return the log-ins (new passwords each start).

    Participants ``alice`` and ``bob`` are approved and each leads a team, so they can submit
    at once; new sign-ups go through registration and approval like in a real challenge. Each
    simulated team has an account ``<team>@demo.covseg`` leading the team of that name; the
    log-in of :data:`SHOWN_TEAM` is returned too. :func:`seed_submissions` fills the boards.

    Parameters
    ----------
    size
        In-plane matrix of the phantoms.
    n_test
        Test phantoms per source.
    """
    from covseg.demo.teams import TEAMS

    with factory() as db, db.begin():
        if db.scalar(select(Challenge).where(Challenge.slug == SLUG)) is None:
            source = _dataset(settings.data_dir, size, n_test)
            org = _account(db, "organizer@demo.covseg", "Organizer", admin=True)
            spec = _spec(source)
            spec["organizers"] = [org.email]
            challenge = challenges.create_challenge(db, settings, spec, source, actor=org)
            for name in ("alice", "bob"):
                _participant(db, org, challenge, name, name.capitalize(), f"team-{name}")
            for name in TEAMS:
                _participant(db, org, challenge, name, name, name)
    out = []
    with factory() as db, db.begin():
        for role, name in (
            ("organizer", "organizer"),
            ("participant", "alice"),
            ("participant", "bob"),
            ("simulated team", SHOWN_TEAM),
        ):
            password = secrets.token_urlsafe(9)
            account = db.scalar(select(User).where(User.email == f"{name}@demo.covseg"))
            assert account is not None
            account.password_hash = hash_password(password)
            out.append(DemoAccount(role, account.email, password))
    return out


def seed_submissions(
    settings: Settings,
    factory: sessionmaker[Session],
    on_step: Callable[[str], None] | None = None,
) -> None:
    """Submit every simulated team's predictions to each phase, score them, rank the test phase.

    Idempotent, so that a start after an interrupted seeding completes it: a team with a
    successful submission to a phase is skipped, a queued one is scored, and the ranking is run
    only while it is unpublished.

    Parameters
    ----------
    on_step
        Called with a line describing each step (progress for the command line).
    """
    from covseg.demo.teams import TEAMS

    say = on_step or (lambda _: None)
    for phase_slug in ("validation", "test"):  # the test phase needs a validated team
        pending = []
        for name, perturb in TEAMS.items():
            with factory() as db, db.begin():
                phase = challenges.get_phase(db, challenges.get_challenge(db, SLUG), phase_slug)
                user = db.scalar(select(User).where(User.email == f"{name}@demo.covseg"))
                assert user is not None
                known = submissions.team_submissions(db, user, phase)
                if any(s.status is SubmissionStatus.succeeded for s in known):
                    continue
                queued = [s.id for s in known if s.status is SubmissionStatus.queued]
                if not queued:
                    try:
                        upload = _team_zip(settings, phase, perturb)
                        sub = submissions.create_submission(
                            db, settings, user, phase, upload, f"{name}.zip"
                        )
                    except ServiceError as exc:  # e.g. an interrupted start's stale submission
                        say(f"{name} not submitted to the {phase_slug} phase: {exc}")
                        continue
                    queued = [sub.id]
                pending += queued
        if pending:
            say(f"scoring {len(pending)} simulated team submission(s) to the {phase_slug} phase")
            for submission_id in pending:
                evaluate_submission(factory, settings, submission_id)
    with factory() as db, db.begin():
        challenge = challenges.get_challenge(db, SLUG)
        test = challenges.get_phase(db, challenge, "test")
        if not challenge.ranking_published and len(counted_submissions(db, test)) > 1:
            say("running the final ranking of the test phase (test-then-rank, 1,000 bootstraps)")
            run_final_ranking(db, settings, None, challenge)


def _team_zip(settings: Settings, phase: Phase, perturb: Callable[..., np.ndarray]) -> io.BytesIO:
    """A submission zip: every case of ``phase`` as the truth perturbed by one simulated team.

    Case ``k`` (in case-id order) uses seed ``k``, as ``covseg demo`` does; the lung masks of
    the phantoms (when still there) keep false positives inside the lungs.
    """
    from covseg.io import read_volume, write_mask

    lungs = settings.data_dir / "demo-source" / "lungs"
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(buffer, "w") as archive:
        for number, case in enumerate(sorted(phase.cases, key=lambda c: c.case_id)):
            truth = read_volume(settings.data_dir / case.truth_path)
            mask = np.asarray(truth.array) > 0
            lung_file = lungs / f"{case.case_id}_lung.nii.gz"
            lung = np.asarray(read_volume(lung_file).array) != 0 if lung_file.is_file() else None
            pred = perturb(mask, truth.spacing, lung, number)
            path = write_mask(pred.astype(np.uint8), truth, Path(tmp) / f"{case.case_id}.nii.gz")
            archive.write(path, path.name)
    buffer.seek(0)
    return buffer


def _participant(
    db: Session, org: User, challenge: Challenge, key: str, name: str, team: str
) -> User:
    """An approved participant ``<key>@demo.covseg`` leading ``team``."""
    user = _account(db, f"{key}@demo.covseg", name)
    reg = participants.request_registration(db, user, challenge, accept_licence=True)
    participants.decide_registration(db, org, challenge, reg.id, approve=True)
    participants.create_team(db, user, challenge, team)
    return user


def _account(db: Session, email: str, name: str, admin: bool = False) -> User:
    user = accounts.register_user(db, email, secrets.token_urlsafe(12), name)
    user.is_admin = admin
    return user
