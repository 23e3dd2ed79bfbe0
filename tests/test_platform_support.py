"""Shared helpers of the platform tests: a tiny challenge on SQLite (or PostgreSQL) in a temp dir.

The masks are 16 x 16 x 4 voxels, so scoring a whole submission takes milliseconds.
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from covseg.platform import security
from covseg.platform.config import Settings
from covseg.platform.db import make_engine, session_factory, upgrade
from covseg.platform.models import Submission, User, utcnow
from covseg.platform.services import accounts, challenges, evaluation, participants, submissions

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])
SHAPE = (16, 16, 4)
CASES = {"case-A-001": "seen", "case-A-002": "seen", "case-B-001": "unseen"}
PASSWORD = "correct horse battery"

security.set_hash_cost(time_cost=1, memory_kib=64)  # the default cost takes ~0.3 s per log-in


def truth_mask(seed: int) -> np.ndarray:
    """A small box lesion whose place depends on ``seed``."""
    mask = np.zeros(SHAPE, dtype=np.uint8)
    x = 3 + seed % 5
    mask[x : x + 5, 4:10, 1:3] = 1
    return mask


def nifti_bytes(array: np.ndarray, affine: np.ndarray = AFFINE) -> bytes:
    """A gzipped NIfTI file in memory."""
    return gzip.compress(nib.Nifti1Image(array, affine).to_bytes(), compresslevel=1)


def make_zip(files: dict[str, bytes]) -> bytes:
    """A zip with the given member names and contents."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def good_zip(shift: int = 0) -> bytes:
    """A valid submission: every case, a mask close to its truth."""
    files = {}
    for i, case in enumerate(sorted(CASES)):
        files[f"{case}.nii.gz"] = nifti_bytes(np.roll(truth_mask(i), shift, axis=0))
    return make_zip(files)


def write_truth(folder: Path) -> None:
    """Ground-truth masks named like COVID-19-20's (``<case>_seg.nii.gz``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(sorted(CASES)):
        (folder / f"{case}_seg.nii.gz").write_bytes(nifti_bytes(truth_mask(i)))


def challenge_spec(**validation: object) -> dict[str, object]:
    """A two-phase challenge (validation then test) on the fixture's cases."""
    now = utcnow()
    return {
        "slug": "tiny",
        "title": "Tiny challenge",
        "licence": "CC BY 4.0",
        "organizers": ["org@example.org"],
        "downloads": ["train"],
        "phases": [
            {
                "slug": "validation",
                "kind": "validation",
                "opens": now - timedelta(days=1),
                "closes": now + timedelta(days=10),
                "truth": "truth",
                "sources": CASES,
                "daily_limit": 1,
                "daily_attempts": 3,
                **validation,
            },
            {
                "slug": "test",
                "kind": "test",
                "opens": now - timedelta(days=1),
                "closes": now + timedelta(days=10),
                "truth": "truth",
                "sources": CASES,
                "requires": "validation",
                "daily_limit": 1,
                "daily_attempts": 3,
            },
        ],
    }


@dataclass
class Platform:
    """A ready platform: settings, session factory and the accounts of the tiny challenge."""

    settings: Settings
    factory: sessionmaker[Session]
    slug: str

    def db(self) -> Session:
        """A new session."""
        return self.factory()

    def user(self, db: Session, email: str) -> User:
        """Reload a user in ``db``."""
        from sqlalchemy import select

        found = db.scalar(select(User).where(User.email == email))
        assert found is not None
        return found


def build_platform(root: Path, url: str | None = None, **validation: object) -> Platform:
    """Data folder, migrated database, accounts (org, alice, bob, carol) and the challenge.

    alice and bob are approved and each has a team; carol registered but is pending.
    """
    source = root / "source"
    write_truth(source / "truth")
    (source / "train").mkdir(parents=True)
    (source / "train" / "case-T-001_ct.nii.gz").write_bytes(nifti_bytes(truth_mask(9)))
    settings = Settings(data_dir=root / "data", database_url=url, stale_after_s=60)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.url)
    upgrade(engine)
    factory = session_factory(engine)
    with factory() as db, db.begin():
        org = accounts.register_user(db, "org@example.org", PASSWORD, "Organizer")
        challenge = challenges.create_challenge(db, settings, challenge_spec(**validation), source)
        for name in ("alice", "bob", "carol"):
            user = accounts.register_user(db, f"{name}@example.org", PASSWORD)
            reg = participants.request_registration(db, user, challenge, accept_licence=True)
            if name != "carol":
                participants.decide_registration(db, org, challenge, reg.id, approve=True)
                participants.create_team(db, user, challenge, f"team-{name}")
    return Platform(settings, factory, "tiny")


def submit(
    p: Platform, email: str, data: bytes, phase: str = "validation", filename: str = "masks.zip"
) -> int:
    """Upload ``data`` as ``email``'s team into ``phase``; returns the submission id."""
    with p.db() as db, db.begin():
        ch = challenges.get_challenge(db, p.slug)
        sub = submissions.create_submission(
            db,
            p.settings,
            p.user(db, email),
            challenges.get_phase(db, ch, phase),
            io.BytesIO(data),
            filename,
        )
        return sub.id


def evaluate(p: Platform, sub_id: int) -> Submission:
    """Evaluate inline (raising whatever the evaluation raises) and reload the submission."""
    evaluation.evaluate_submission(p.factory, p.settings, sub_id)
    with p.db() as db:
        sub = db.get(Submission, sub_id)
        assert sub is not None
        sub.results  # noqa: B018  (load before the session closes)
        return sub


def scored(p: Platform, email: str, phase: str, shift: int = 0) -> int:
    """Submit a good zip for ``email``'s team and evaluate it inline; returns its id."""
    sub_id = submit(p, email, good_zip(shift), phase)
    evaluation.evaluate_submission(p.factory, p.settings, sub_id)
    return sub_id


class LiveServer:
    """The platform served by uvicorn on a free localhost port, with an inline evaluation loop."""

    def __init__(self, platform: Platform) -> None:
        import socket
        import threading

        import uvicorn

        from covseg.platform.app import create_app
        from covseg.platform.tasks import make_queue

        self.queue = make_queue(platform.settings, platform.factory)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(platform.settings, self.queue),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self.server.run, daemon=True),
            threading.Thread(target=self._evaluate, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        while not self.server.started:
            self._stop.wait(0.05)

    def _evaluate(self) -> None:
        while not self._stop.wait(0.2):
            self.queue.drain()

    def close(self) -> None:
        """Stop the server and the evaluation loop."""
        self._stop.set()
        self.server.should_exit = True
        for thread in self._threads:
            thread.join(timeout=10)


#: Backends the database tests run on; PostgreSQL only where CI started one.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def platform_on(backend: str, root: Path) -> Platform:
    """A fresh platform on SQLite, or on the PostgreSQL of ``COVSEG_TEST_POSTGRES_URL``."""
    if backend == "sqlite":
        return build_platform(root)
    url = os.environ.get("COVSEG_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("COVSEG_TEST_POSTGRES_URL is not set (CI's .ci/services.sh sets it)")
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:  # an empty schema for every test
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return build_platform(root, url)
