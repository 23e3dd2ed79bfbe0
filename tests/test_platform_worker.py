"""The Huey queue and ``covseg worker``: queued work is evaluated, dead workers' work resumed."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from test_platform_support import BACKENDS, Platform, good_zip, platform_on

from covseg.platform.models import Submission, SubmissionStatus, utcnow
from covseg.platform.services import challenges, evaluation, submissions
from covseg.platform.tasks import make_queue


@pytest.fixture(params=BACKENDS)
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Platform:
    """A fresh platform on SQLite (and on PostgreSQL where one runs)."""
    return platform_on(request.param, tmp_path)


def _submit(p: Platform, email: str) -> int:
    with p.db() as db, db.begin():
        ch = challenges.get_challenge(db, p.slug)
        phase = challenges.get_phase(db, ch, "validation")
        user = p.user(db, email)
        return submissions.create_submission(
            db, p.settings, user, phase, io.BytesIO(good_zip()), "m.zip"
        ).id


def _status(p: Platform, sub_id: int) -> tuple[SubmissionStatus, int]:
    with p.db() as db:
        sub = db.get(Submission, sub_id)
        assert sub is not None
        return sub.status, sub.times_scored


def test_queue_runs_each_submission_once_even_when_enqueued_twice(platform: Platform) -> None:
    queue = make_queue(platform.settings, platform.factory)
    sub_id = _submit(platform, "alice@example.org")
    queue.enqueue(sub_id)
    queue.enqueue(sub_id)
    assert queue.drain() == 2
    assert _status(platform, sub_id) == (SubmissionStatus.succeeded, 1)


def test_worker_restart_resumes_work_of_a_dead_worker(platform: Platform) -> None:
    alice = _submit(platform, "alice@example.org")
    bob = _submit(platform, "bob@example.org")
    # alice's evaluation was claimed by a worker that then died; bob's message was lost.
    assert evaluation.claim(platform.factory, alice) is not None
    with platform.db() as db, db.begin():
        db.execute(
            update(Submission).values(
                heartbeat_at=utcnow() - timedelta(hours=1),
                created_at=utcnow() - timedelta(hours=1),
            )
        )
    command = [sys.executable, "-c", "from covseg.cli import main; main()", "worker"]
    args = ["--data-dir", str(platform.settings.data_dir), "--burst", "--stale-after", "60"]
    args += ["--database", platform.settings.url]
    done = subprocess.run(command + args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"re-queued 2 submission(s): [{alice}, {bob}]" in done.stdout
    assert _status(platform, alice) == (SubmissionStatus.succeeded, 1)
    assert _status(platform, bob) == (SubmissionStatus.succeeded, 1)
