"""Platform services without HTTP: accounts, registrations, teams, limits, evaluation, boards."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from test_platform_support import (
    BACKENDS,
    CASES,
    PASSWORD,
    Platform,
    build_platform,
    evaluate,
    good_zip,
    make_zip,
    nifti_bytes,
    platform_on,
    submit,
    truth_mask,
)

from covseg.metrics import batch
from covseg.platform.models import AuthSession, Base, Submission, SubmissionStatus, utcnow
from covseg.platform.services import (
    accounts,
    challenges,
    evaluation,
    leaderboard,
    participants,
    submissions,
)
from covseg.platform.services.errors import (
    Conflict,
    Forbidden,
    Invalid,
    LimitReached,
    NotAuthenticated,
    NotFound,
    TooLarge,
)


@pytest.fixture(params=BACKENDS)
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Platform:
    """A fresh platform on SQLite (and on PostgreSQL where one runs)."""
    return platform_on(request.param, tmp_path)


def test_migration_matches_models(platform: Platform) -> None:
    engine = platform.factory.kw["bind"]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_accounts_and_expiring_sessions(platform: Platform) -> None:
    with platform.db() as db, db.begin():
        with pytest.raises(Conflict):
            with db.begin_nested():
                accounts.register_user(db, "ALICE@example.org", PASSWORD)
        with pytest.raises(Invalid):
            accounts.register_user(db, "dave@example.org", "short")
        with pytest.raises(NotAuthenticated):
            accounts.authenticate(db, "alice@example.org", "wrong password")
        user = accounts.authenticate(db, "alice@example.org", PASSWORD)
        assert user.password_hash.startswith("$argon2")
        token, row = accounts.start_session(db, user, hours=1)
        assert accounts.session_for(db, token) is row
        assert row.token_hash != token  # only the digest is stored
        row.expires_at = utcnow() - timedelta(seconds=1)
        assert accounts.session_for(db, token) is None
        accounts.end_session(db, token)
        assert db.scalar(select(AuthSession).where(AuthSession.id == row.id)) is None


def test_registration_approval_teams_and_audit(platform: Platform) -> None:
    with platform.db() as db, db.begin():
        ch = challenges.get_challenge(db, platform.slug)
        carol = platform.user(db, "carol@example.org")
        alice = platform.user(db, "alice@example.org")
        org = platform.user(db, "org@example.org")
        with pytest.raises(Forbidden):  # pending participants have no team and no data
            participants.create_team(db, carol, ch, "carols")
        with pytest.raises(Forbidden):  # participants cannot approve anyone
            participants.decide_registration(db, alice, ch, 1, approve=True)
        dave = accounts.register_user(db, "dave@example.org", PASSWORD)
        with pytest.raises(Invalid):
            participants.request_registration(db, dave, ch, accept_licence=False)
        reg = participants.registration_of(db, carol, ch)
        assert reg is not None
        participants.decide_registration(db, org, ch, reg.id, approve=True)
        code = participants.team_of(db, alice, ch).join_code  # type: ignore[union-attr]
        team = participants.join_team(db, carol, ch, code)
        assert team.name == "team-alice"
        with pytest.raises(Conflict):  # one team per user per challenge
            participants.create_team(db, carol, ch, "another")
        actions = [e.action for e in challenges.audit_log(db, org, ch)]
        assert "approved registration" in actions and "create challenge" in actions
        with pytest.raises(Forbidden):
            challenges.audit_log(db, alice, ch)


def test_good_submission_scores_and_ranks(platform: Platform) -> None:
    sub = evaluate(platform, submit(platform, "alice@example.org", good_zip()))
    assert sub.status is SubmissionStatus.succeeded, sub.message
    assert sub.times_scored == 1 and len(sub.results) == len(CASES)
    assert sub.summary["all"]["dice"]["mean"] == pytest.approx(1.0)
    assert set(sub.summary) == {"all", "seen", "unseen"}
    evaluate(platform, submit(platform, "bob@example.org", good_zip(shift=1)))
    with platform.db() as db:
        ch = challenges.get_challenge(db, platform.slug)
        board = leaderboard.leaderboard(db, None, challenges.get_phase(db, ch, "validation"))
        assert [e.team for e in board.entries] == ["team-alice", "team-bob"]
        csv_text = submissions.results_csv(db.get(Submission, sub.id))  # type: ignore[arg-type]
    # The columns of `covseg evaluate`'s metrics.csv; seen/unseen is the subset, not the source.
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert tuple(rows[0]) == batch.COLUMNS
    assert {r["subset"] for r in rows} == {"seen", "unseen"} and {r["source"] for r in rows} == {""}
    assert all(float(r["truth_lesions"]) >= 1 for r in rows)  # the counts are kept too


def test_daily_limit_counts_only_successful_or_pending(platform: Platform) -> None:
    bad = submit(platform, "alice@example.org", b"not a zip")
    assert evaluate(platform, bad).status is SubmissionStatus.failed
    first = submit(platform, "alice@example.org", good_zip())  # the failure did not count
    with pytest.raises(LimitReached, match="1 submission"):
        submit(platform, "alice@example.org", good_zip())
    evaluate(platform, first)
    with pytest.raises(LimitReached):
        submit(platform, "alice@example.org", good_zip())
    # Another team is unaffected.
    submit(platform, "bob@example.org", good_zip())


def test_attempt_cap_stops_repeated_failures(platform: Platform) -> None:
    for _ in range(3):
        evaluate(platform, submit(platform, "alice@example.org", b"junk"))
    with pytest.raises(LimitReached, match="attempts"):
        submit(platform, "alice@example.org", good_zip())


def test_concurrent_uploads_cannot_both_pass_a_limit_of_one(platform: Platform) -> None:
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def go(email: str) -> None:
        barrier.wait()
        try:
            submit(platform, email, good_zip())
            outcomes.append("ok")
        except LimitReached:
            outcomes.append("limit")

    threads = [threading.Thread(target=go, args=("alice@example.org",)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["limit", "limit", "limit", "ok"]
    with platform.db() as db:
        assert len(list(db.scalars(select(Submission)))) == 1


def test_upload_over_size_limit_is_refused_without_a_trace(platform: Platform) -> None:
    platform.settings.max_upload_bytes = 1000
    with pytest.raises(TooLarge):
        submit(platform, "alice@example.org", b"x" * 5000)
    with platform.db() as db:
        assert list(db.scalars(select(Submission))) == []
    assert list((platform.settings.data_dir / "uploads" / "incoming").iterdir()) == []


def _bomb() -> bytes:
    """A zip whose one member inflates far beyond the platform's unpacked-size limit."""
    return make_zip({"case-A-001.nii.gz": b"\0" * 3_000_000})


def _case_files(**override: bytes) -> dict[str, bytes]:
    files = {f"{c}.nii.gz": nifti_bytes(truth_mask(i)) for i, c in enumerate(sorted(CASES))}
    files.update(override)
    return files


BAD_UPLOADS = {
    "not a zip": (b"PK-not-really", "not a zip file"),
    "zip bomb": (_bomb(), "unpacked"),
    "escaping path": (make_zip({"../../evil/case-A-001.nii.gz": b"x"}), "leave the zip"),
    "missing case": (
        make_zip({k: v for k, v in _case_files().items() if "B-001" not in k}),
        "missing",
    ),
    "duplicate case": (
        make_zip({**_case_files(), "again/case-A-001.nii.gz": nifti_bytes(truth_mask(0))}),
        "more than once",
    ),
    "unknown case": (make_zip({**_case_files(), "case-Z-9.nii.gz": b"x"}), "not a case"),
    "wrong shape": (
        make_zip(_case_files(**{"case-A-001.nii.gz": nifti_bytes(np.zeros((8, 8, 4), "u1"))})),
        "shape",
    ),
    "wrong geometry": (
        make_zip(
            _case_files(
                **{"case-A-001.nii.gz": nifti_bytes(truth_mask(0), np.diag([1, 1, 1, 1.0]))}
            )
        ),
        "spacing",
    ),
    "non-binary": (
        make_zip(_case_files(**{"case-A-001.nii.gz": nifti_bytes(truth_mask(0) * 2)})),
        "binary",
    ),
    "unreadable mask": (make_zip(_case_files(**{"case-A-001.nii.gz": b"garbage"})), "read"),
}


@pytest.mark.parametrize("name", sorted(BAD_UPLOADS))
def test_bad_uploads_fail_clearly_and_do_not_count(platform: Platform, name: str) -> None:
    platform.settings.max_unzipped_bytes = 1_000_000
    data, needle = BAD_UPLOADS[name]
    sub = evaluate(platform, submit(platform, "alice@example.org", data))
    assert sub.status is SubmissionStatus.failed
    assert needle in sub.message + " ".join(r.error for r in sub.results)
    assert not (platform.settings.data_dir.parent / "evil").exists()
    assert not list((platform.settings.data_dir / "work").glob("*/*"))
    ok = evaluate(platform, submit(platform, "alice@example.org", good_zip()))
    assert ok.status is SubmissionStatus.succeeded  # the failure did not use the daily slot


def test_test_phase_needs_a_successful_validation_submission(platform: Platform) -> None:
    with pytest.raises(Forbidden, match="successful submission"):
        submit(platform, "alice@example.org", good_zip(), phase="test")
    evaluate(platform, submit(platform, "alice@example.org", good_zip()))
    assert (
        evaluate(platform, submit(platform, "alice@example.org", good_zip(), "test")).status
        is SubmissionStatus.succeeded
    )


def test_hidden_board_and_other_teams_submissions(platform: Platform) -> None:
    sub_id = submit(platform, "alice@example.org", good_zip())
    with platform.db() as db, db.begin():
        ch = challenges.get_challenge(db, platform.slug)
        test = challenges.get_phase(db, ch, "test")
        bob, org = platform.user(db, "bob@example.org"), platform.user(db, "org@example.org")
        with pytest.raises(NotFound):
            leaderboard.leaderboard(db, bob, test)
        leaderboard.leaderboard(db, org, test)
        with pytest.raises(NotFound):
            submissions.get_submission(db, bob, sub_id)
        assert submissions.get_submission(db, org, sub_id).id == sub_id
        with pytest.raises(Forbidden):
            challenges.set_board_public(db, bob, test, True)
        challenges.set_board_public(db, org, test, True)
        leaderboard.leaderboard(db, bob, test)
        with pytest.raises(Forbidden):
            leaderboard.export_results(db, bob, test)


def test_interrupted_evaluation_is_resumed_and_scored_once(platform: Platform) -> None:
    sub_id = submit(platform, "alice@example.org", good_zip())

    def crash(done: int) -> None:
        raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        evaluation.evaluate_submission(platform.factory, platform.settings, sub_id, on_case=crash)
    with platform.db() as db:
        assert db.get(Submission, sub_id).status is SubmissionStatus.evaluating  # type: ignore
    assert evaluation.requeue_stale(platform.factory, stale_after_s=3600) == []  # still fresh
    assert evaluation.requeue_stale(platform.factory, stale_after_s=0) == [sub_id]
    # A duplicate queue message is harmless: the second run finds nothing to claim.
    assert evaluation.evaluate_submission(platform.factory, platform.settings, sub_id)
    assert not evaluation.evaluate_submission(platform.factory, platform.settings, sub_id)
    sub = evaluate(platform, sub_id)
    assert sub.status is SubmissionStatus.succeeded and sub.times_scored == 1
    assert sub.attempts == 2 and len(sub.results) == len(CASES)


def test_sqlite_file_needs_no_setup(tmp_path: Path) -> None:
    p = build_platform(tmp_path)
    assert (p.settings.data_dir / "platform.db").is_file()
    assert (p.settings.data_dir / "challenges" / "tiny" / "downloads" / "train.zip").is_file()
