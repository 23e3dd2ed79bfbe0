"""The JSON API and the pages through FastAPI's test client, including the attacks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from test_platform_support import (
    BACKENDS,
    PASSWORD,
    Platform,
    good_zip,
    platform_on,
    write_truth,
)

from covseg.platform.app import create_app
from covseg.platform.models import AuthSession, Submission, utcnow
from covseg.platform.tasks import Queue, make_queue


@pytest.fixture(params=BACKENDS)
def env(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Platform, TestClient, Queue]]:
    """A platform, a client of its app and its queue (drained by hand)."""
    p = platform_on(request.param, tmp_path)
    queue = make_queue(p.settings, p.factory)
    with TestClient(create_app(p.settings, queue)) as client:
        yield p, client, queue


def login(client: TestClient, email: str) -> dict[str, str]:
    """Bearer headers of a fresh session."""
    r = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"authorization": f"Bearer {r.json()['token']}"}


def upload(client: TestClient, who: dict[str, str], data: bytes, phase: str = "validation"):
    """POST a submission zip."""
    files = {"file": ("masks.zip", data, "application/zip")}
    return client.post(f"/api/challenges/tiny/phases/{phase}/submissions", headers=who, files=files)


def test_participant_flow(env: tuple[Platform, TestClient, Queue]) -> None:
    _, client, queue = env
    r = client.post("/api/auth/register", json={"email": "eve@example.org", "password": PASSWORD})
    assert r.status_code == 202  # the same answer whether or not the email was taken
    eve = login(client, "eve@example.org")
    assert client.get("/api/auth/me", headers=eve).json()["email"] == "eve@example.org"
    r = client.post("/api/challenges/tiny/registration", json={"accept_licence": True}, headers=eve)
    assert r.json()["status"] == "pending"
    assert client.get("/api/challenges/tiny/downloads", headers=eve).status_code == 403
    org = login(client, "org@example.org")
    regs = client.get("/api/challenges/tiny/admin/registrations", headers=org).json()
    reg_id = next(r["id"] for r in regs if r["user"]["email"] == "eve@example.org")
    r = client.post(
        f"/api/challenges/tiny/admin/registrations/{reg_id}", json={"approve": True}, headers=org
    )
    assert r.json()["status"] == "approved"
    assert client.get("/api/challenges/tiny/downloads", headers=eve).json() == ["train.zip"]
    r = client.get("/api/challenges/tiny/downloads/train.zip", headers=eve)
    assert r.status_code == 200 and r.content[:2] == b"PK"
    team = client.post("/api/challenges/tiny/teams", json={"name": "eves"}, headers=eve).json()
    assert team["members"] == ["eve@example.org"]
    r = upload(client, eve, good_zip())
    assert r.status_code == 202 and r.json()["status"] == "queued"
    queue.drain()
    sub = client.get(f"/api/submissions/{r.json()['id']}", headers=eve).json()
    assert sub["status"] == "succeeded" and len(sub["results"]) == 3
    assert sub["summary"]["seen"]["dice"]["mean"] == pytest.approx(1.0)
    csv_text = client.get(f"/api/submissions/{sub['id']}/results.csv", headers=eve).text
    assert csv_text.startswith("case,source,subset,dice")
    assert upload(client, eve, good_zip()).status_code == 429  # one a day
    board = client.get("/api/challenges/tiny/phases/validation/leaderboard").json()
    assert [e["team"] for e in board["entries"]] == ["eves"]
    assert board["sources"] == ["seen", "unseen"]
    listed = client.get("/api/challenges/tiny/phases/validation/submissions", headers=eve).json()
    assert [s["id"] for s in listed] == [sub["id"]]


def test_openapi_documents_every_action(env: tuple[Platform, TestClient, Queue]) -> None:
    _, client, _ = env
    paths = client.get("/api/openapi.json").json()["paths"]
    assert "/api/challenges/{slug}/phases/{phase}/submissions" in paths
    assert "/api/challenges/{slug}/admin/ranking" in paths
    assert client.get("/api/docs").status_code == 200


def test_ground_truth_is_never_downloadable(env: tuple[Platform, TestClient, Queue]) -> None:
    p, client, _ = env
    alice = login(client, "alice@example.org")
    truth = "challenges/tiny/truth/validation/case-A-001.nii.gz"
    assert (p.settings.data_dir / truth).is_file()
    cookie_login(client, "alice@example.org")
    attempts = [
        "/api/challenges/tiny/downloads/../truth/validation/case-A-001.nii.gz",
        "/api/challenges/tiny/downloads/..%2Ftruth%2Fvalidation%2Fcase-A-001.nii.gz",
        "/api/challenges/tiny/downloads/%2e%2e%2f%2e%2e%2ftruth%2fvalidation%2fcase-A-001.nii.gz",
        "/challenges/tiny/data/..%2Ftruth%2Fvalidation%2Fcase-A-001.nii.gz",
        "/challenges/tiny/ranking/../truth/validation/case-A-001.nii.gz",
        "/challenges/tiny/ranking/..%2Ftruth%2Fvalidation%2Fcase-A-001.nii.gz",
        "/challenges/tiny/ranking/%2e%2e/truth/validation/case-A-001.nii.gz",
        "/static/../../data/" + truth,
        "/static/..%2F..%2F..%2Fdata%2F" + truth.replace("/", "%2F"),
        "/" + truth,
        "/data/" + truth,
        "/api/" + truth,
    ]
    for url in attempts:
        r = client.get(url, headers=alice)
        assert r.status_code in (400, 403, 404), url
        assert not r.content.startswith(b"\x1f\x8b"), url  # no gzip (NIfTI) body


def test_hidden_board_other_teams_and_admin_routes(env: tuple[Platform, TestClient, Queue]) -> None:
    _, client, queue = env
    alice, bob = login(client, "alice@example.org"), login(client, "bob@example.org")
    org = login(client, "org@example.org")
    assert (
        client.get("/api/challenges/tiny/phases/test/leaderboard", headers=bob).status_code == 404
    )
    assert client.get("/api/challenges/tiny/phases/test/leaderboard").status_code == 404
    assert (
        client.get("/api/challenges/tiny/phases/test/leaderboard", headers=org).status_code == 200
    )
    sub_id = upload(client, alice, good_zip()).json()["id"]
    queue.drain()
    assert client.get(f"/api/submissions/{sub_id}", headers=bob).status_code == 404
    assert client.get(f"/api/submissions/{sub_id}/results.csv", headers=bob).status_code == 404
    admin_calls = [
        ("get", "/api/challenges/tiny/admin/registrations", None),
        ("post", "/api/challenges/tiny/admin/registrations/1", {"approve": True}),
        ("post", "/api/challenges/tiny/admin/phases/test/board", {"public": True}),
        ("get", "/api/challenges/tiny/admin/phases/validation/export", None),
        ("get", "/api/challenges/tiny/admin/audit", None),
        ("post", "/api/challenges/tiny/admin/ranking", {"bootstrap": 10}),
        ("post", "/api/admin/challenges", {"spec": {"slug": "x"}, "base_dir": "/"}),
    ]
    for method, url, body in admin_calls:
        assert client.request(method, url, json=body, headers=bob).status_code == 403, url
        assert client.request(method, url, json=body).status_code == 401, url
    r = client.post(
        "/api/challenges/tiny/admin/phases/test/board", json={"public": True}, headers=org
    )
    assert r.status_code == 204
    assert (
        client.get("/api/challenges/tiny/phases/test/leaderboard", headers=bob).status_code == 200
    )
    audit = client.get("/api/challenges/tiny/admin/audit", headers=org).json()
    assert audit[0]["action"] == "publish board" and audit[0]["user"]["email"] == "org@example.org"
    export = client.get(
        "/api/challenges/tiny/admin/phases/validation/export?format=csv", headers=org
    )
    assert export.text.splitlines()[0].startswith("submission,team,")


def test_test_phase_and_acting_for_another_team(env: tuple[Platform, TestClient, Queue]) -> None:
    _, client, queue = env
    alice, bob = login(client, "alice@example.org"), login(client, "bob@example.org")
    r = upload(client, alice, good_zip(), phase="test")
    assert r.status_code == 403 and "successful submission" in r.json()["detail"]
    upload(client, alice, good_zip())
    queue.drain()
    assert upload(client, alice, good_zip(), phase="test").status_code == 202
    # There is no way to name a team: extra fields are ignored, the caller's team is used.
    files = {"file": ("m.zip", good_zip(), "application/zip")}
    r = client.post(
        "/api/challenges/tiny/phases/validation/submissions",
        headers=bob,
        files=files,
        data={"team_id": "1", "team": "team-alice"},
    )
    assert r.status_code == 202 and r.json()["team"] == "team-bob"
    r = client.post("/api/challenges/tiny/teams/join", json={"join_code": "guess"}, headers=bob)
    assert r.status_code == 404
    carol = login(client, "carol@example.org")  # registered, not approved
    assert upload(client, carol, good_zip()).status_code == 403


def test_oversize_upload_is_refused(env: tuple[Platform, TestClient, Queue]) -> None:
    p, client, _ = env
    p.settings.max_upload_bytes = 1000
    with TestClient(create_app(p.settings, make_queue(p.settings, p.factory))) as small:
        alice = login(small, "alice@example.org")
        assert upload(small, alice, b"x" * (2 << 20)).status_code == 413  # cut off by the server
        r = upload(small, alice, b"x" * 5000)  # within the multipart envelope: by the service
        assert r.status_code == 413 and "limit" in r.json()["detail"]
    with p.db() as db:
        assert db.scalar(select(func.count(Submission.id))) == 0


def test_api_sessions_expire_and_log_out(env: tuple[Platform, TestClient, Queue]) -> None:
    p, client, _ = env
    alice = login(client, "alice@example.org")
    assert client.get("/api/auth/me", headers=alice).status_code == 200
    with p.db() as db, db.begin():
        db.execute(update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/api/auth/me", headers=alice).status_code == 401
    bob = login(client, "bob@example.org")
    assert client.post("/api/auth/logout", headers=bob).status_code == 204
    assert client.get("/api/auth/me", headers=bob).status_code == 401
    r = client.post("/api/auth/login", json={"email": "bob@example.org", "password": "nope-nope"})
    assert r.status_code == 401


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def cookie_login(client: TestClient, email: str) -> str:
    """Log in through the form; returns the page's CSRF token afterwards."""
    token = csrf_of(client.get("/login").text)
    r = client.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/challenges/tiny").text)


def test_forms_need_the_csrf_token(env: tuple[Platform, TestClient, Queue]) -> None:
    _, client, _ = env
    form = {"email": "alice@example.org", "password": PASSWORD}
    client.get("/login")
    assert client.post("/login", data=form).status_code == 403
    assert client.post("/login", data={**form, "csrf_token": "forged"}).status_code == 403
    token = cookie_login(client, "bob@example.org")
    r = client.post("/challenges/tiny/team", data={"name": "x"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    # The API ignores the cookie: a page on another site cannot use the browser's session.
    cookie_login(client, "org@example.org")
    r = client.post("/api/challenges/tiny/admin/phases/test/board", json={"public": True})
    assert r.status_code == 401


def test_page_sessions_expire(env: tuple[Platform, TestClient, Queue]) -> None:
    p, client, _ = env
    cookie_login(client, "alice@example.org")
    assert client.get("/challenges/tiny/submissions", follow_redirects=False).status_code == 200
    with p.db() as db, db.begin():
        db.execute(update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    r = client.get("/challenges/tiny/submissions", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_pages_for_participants_and_organizers(env: tuple[Platform, TestClient, Queue]) -> None:
    _, client, queue = env
    token = cookie_login(client, "alice@example.org")
    assert "team-alice" in client.get("/challenges/tiny").text
    assert "train.zip" in client.get("/challenges/tiny/data").text
    assert client.get("/challenges/tiny/admin").status_code == 403
    assert client.get("/challenges/tiny/phases/test/leaderboard").status_code == 404
    r = client.post(
        "/challenges/tiny/phases/validation/submit",
        data={"csrf_token": token},
        files={"file": ("m.zip", good_zip(), "application/zip")},
        follow_redirects=False,
    )
    assert r.status_code == 303
    queue.drain()
    page = client.get(r.headers["location"]).text
    assert "succeeded" in page and "case-B-001" in page
    assert "team-alice" in client.get("/challenges/tiny/phases/validation/leaderboard").text
    client.cookies.clear()
    token = cookie_login(client, "org@example.org")
    admin = client.get("/challenges/tiny/admin").text
    assert "carol@example.org" in admin and "create challenge" in admin
    r = client.post(
        "/challenges/tiny/admin/phases/test/board",
        data={"csrf_token": token, "public": "true"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    export = client.get("/challenges/tiny/admin/phases/validation/export.json")
    assert export.json()[0]["team"] == "team-alice"


def test_site_admin_creates_a_challenge(
    env: tuple[Platform, TestClient, Queue], tmp_path: Path
) -> None:
    p, client, _ = env
    write_truth(tmp_path / "spec" / "labels")
    p.settings.source_dirs = [tmp_path / "spec"]  # covseg serve --source-dir
    with p.db() as db, db.begin():
        p.user(db, "org@example.org").is_admin = True
    org = login(client, "org@example.org")
    spec = {"slug": "second", "phases": [{"slug": "validation", "truth": "labels"}]}
    body = {"spec": spec, "base_dir": str(tmp_path / "spec")}
    r = client.post("/api/admin/challenges", json=body, headers=org)
    assert r.status_code == 201 and r.json()["phases"][0]["slug"] == "validation"
    assert client.post("/api/admin/challenges", json=body, headers=org).status_code == 409
    audit = client.get("/api/challenges/second/admin/audit", headers=org).json()
    assert (
        audit[0]["action"] == "create challenge" and audit[0]["user"]["email"] == "org@example.org"
    )
