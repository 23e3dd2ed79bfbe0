"""``covseg serve --demo``: a ready challenge from phantoms, seeded with the simulated teams."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from covseg.demo.teams import TEAMS
from covseg.platform.app import create_app
from covseg.platform.config import Settings
from covseg.platform.demo_challenge import SHOWN_TEAM, SLUG, build_demo, seed_submissions
from covseg.platform.models import Submission
from covseg.platform.services import challenges


def _login(client: TestClient, email: str, password: str) -> dict[str, str]:
    token = client.post("/api/auth/login", json={"email": email, "password": password})
    return {"authorization": f"Bearer {token.json()['token']}"}


def _board(client: TestClient, phase: str, headers: dict[str, str] | None = None) -> list[str]:
    url = f"/api/challenges/{SLUG}/phases/{phase}/leaderboard"
    board = client.get(url, headers=headers or {})
    assert board.status_code == 200, board.text
    return [e["team"] for e in board.json()["entries"]]


def test_demo_challenge_is_seeded_and_leaves_the_newcomers_quota(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(settings)
    logins = build_demo(settings, app.state.factory, size=24, n_test=3)
    assert [a.role for a in logins] == ["organizer", "participant", "participant", "simulated team"]
    client = TestClient(app)
    challenge = client.get(f"/api/challenges/{SLUG}").json()
    assert [(p["slug"], p["board_public"]) for p in challenge["phases"]] == [
        ("validation", True),
        ("test", False),
    ]
    assert _board(client, "validation") == []  # before seeding: the board a newcomer used to see

    steps: list[str] = []
    seed_submissions(settings, app.state.factory, steps.append)
    assert len(steps) == 3, steps  # validation, test, ranking
    # Every simulated team on the public validation board and, for the organizer, the test one.
    assert sorted(_board(client, "validation")) == sorted(TEAMS)
    organizer = _login(client, logins[0].email, logins[0].password)
    assert sorted(_board(client, "test", organizer)) == sorted(TEAMS)
    # A simulated team's own page shows its per-case results: every case scored.
    team = _login(client, logins[3].email, logins[3].password)
    assert logins[3].email == f"{SHOWN_TEAM}@demo.covseg"
    subs = [
        sub
        for phase in ("validation", "test")
        for sub in client.get(
            f"/api/challenges/{SLUG}/phases/{phase}/submissions", headers=team
        ).json()
    ]
    assert len(subs) == 2
    with app.state.factory() as db:
        phases = challenges.get_challenge(db, SLUG).phases
        n_cases = {p.slug: len(p.cases) for p in phases}
        seeded = db.query(Submission).count()
    assert n_cases == {"validation": 3, "test": 6}
    assert seeded == 2 * len(TEAMS)
    for sub in subs:
        csv = client.get(f"/api/submissions/{sub['id']}/results.csv", headers=team)
        rows = csv.text.strip().splitlines()[1:]
        assert len(rows) == n_cases[sub["phase"]], csv.text
        assert all(",ok," in row for row in rows)
    # The final ranking is published: anyone may open its report.
    assert (settings.challenge_dir(SLUG) / "ranking" / "report.html").is_file()
    report = client.get(f"/challenges/{SLUG}/ranking/report.html")
    assert report.status_code == 200 and SHOWN_TEAM in report.text

    # alice has not submitted: her team's quota is the newcomer's.
    alice = _login(client, logins[1].email, logins[1].password)
    assert client.get(f"/api/challenges/{SLUG}/team", headers=alice).json()["name"] == "team-alice"
    files = client.get(f"/api/challenges/{SLUG}/downloads", headers=alice).json()
    assert files == ["Test.zip", "Train.zip", "Validation.zip"]
    upload = client.post(
        f"/api/challenges/{SLUG}/phases/validation/submissions",
        headers=alice,
        files={"file": ("mine.zip", _empty_zip(), "application/zip")},
    )
    assert upload.status_code == 202, upload.text

    # A second start keeps the challenge and its submissions, and issues new passwords.
    again = build_demo(settings, app.state.factory, size=24, n_test=3)
    assert again[1].password != logins[1].password
    later: list[str] = []
    seed_submissions(settings, app.state.factory, later.append)
    assert later == []
    with app.state.factory() as db:
        assert db.query(Submission).count() == seeded + 1  # alice's


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "no masks yet")
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_a_started_demo_server_shows_a_board_within_two_minutes(tmp_path: Path) -> None:
    """``covseg serve --demo`` on loopback: the validation board fills while the server runs."""
    port = _free_port()
    command = [sys.executable, "-c", "from covseg.cli import main; main()", "serve", "--demo"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "d")]
    command += ["--no-worker"]
    log = (tmp_path / "serve.log").open("w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/api/challenges/{SLUG}/phases/validation/leaderboard"
    started = time.monotonic()
    teams: list[str] = []
    try:
        while time.monotonic() - started < 120 and server.poll() is None:
            try:
                teams = [e["team"] for e in httpx.get(url, timeout=5).json()["entries"]]
            except (httpx.HTTPError, KeyError, ValueError):
                teams = []
            if teams:
                break
            time.sleep(1)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert teams, output[-3000:]
    assert set(teams) <= set(TEAMS)
    assert "simulated team" in output and "validation board" in output
