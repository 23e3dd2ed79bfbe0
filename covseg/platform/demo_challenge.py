"""A ready demo challenge built from phantoms (``covseg serve --demo``)."""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from covseg.platform.config import Settings
from covseg.platform.models import Challenge, User, utcnow
from covseg.platform.security import hash_password
from covseg.platform.services import accounts, challenges, participants

SLUG = "covid19-20-demo"
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


def _dataset(root: Path, size: int) -> Path:
    """Phantoms in the COVID-19-20 layout, with validation and test labels moved aside."""
    from covseg.phantom import write_dataset

    source = root / "demo-source"
    shutil.rmtree(source, ignore_errors=True)
    write_dataset(source, n_train=2, n_validation=3, n_test_seen=2, n_test_unseen=2, size=size)
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
    settings: Settings, factory: sessionmaker[Session], size: int = 32
) -> list[DemoAccount]:
    """Create the demo challenge and its accounts (new random passwords on every start).

    Participants ``alice`` and ``bob`` are approved and each leads a team, so they can submit
    at once; new sign-ups go through registration and approval like in a real challenge.
    """
    with factory() as db, db.begin():
        if db.scalar(select(Challenge).where(Challenge.slug == SLUG)) is None:
            source = _dataset(settings.data_dir, size)
            org = _account(db, "organizer@demo.covseg", "Organizer", admin=True)
            spec = _spec(source)
            spec["organizers"] = [org.email]
            challenge = challenges.create_challenge(db, settings, spec, source, actor=org)
            for name in ("alice", "bob"):
                user = _account(db, f"{name}@demo.covseg", name.capitalize())
                reg = participants.request_registration(db, user, challenge, accept_licence=True)
                participants.decide_registration(db, org, challenge, reg.id, approve=True)
                participants.create_team(db, user, challenge, f"team-{name}")
        out = []
        for role, name in (
            ("organizer", "organizer"),
            ("participant", "alice"),
            ("participant", "bob"),
        ):
            password = secrets.token_urlsafe(9)
            account = db.scalar(select(User).where(User.email == f"{name}@demo.covseg"))
            assert account is not None
            account.password_hash = hash_password(password)
            out.append(DemoAccount(role, account.email, password))
    return out


def _account(db: Session, email: str, name: str, admin: bool = False) -> User:
    user = accounts.register_user(db, email, secrets.token_urlsafe(12), name)
    user.is_admin = admin
    return user
