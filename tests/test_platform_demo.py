"""``covseg serve --demo``: a ready challenge from phantoms with printed log-ins."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from covseg.platform.app import create_app
from covseg.platform.config import Settings
from covseg.platform.demo_challenge import SLUG, build_demo
from covseg.platform.services import challenges


def test_demo_challenge_is_ready(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(settings)
    logins = build_demo(settings, app.state.factory, size=24)
    assert [a.role for a in logins] == ["organizer", "participant", "participant"]
    client = TestClient(app)
    challenge = client.get(f"/api/challenges/{SLUG}").json()
    assert [(p["slug"], p["board_public"]) for p in challenge["phases"]] == [
        ("validation", True),
        ("test", False),
    ]
    alice = logins[1]
    token = client.post(
        "/api/auth/login", json={"email": alice.email, "password": alice.password}
    ).json()["token"]
    headers = {"authorization": f"Bearer {token}"}
    assert (
        client.get(f"/api/challenges/{SLUG}/team", headers=headers).json()["name"] == "team-alice"
    )
    files = client.get(f"/api/challenges/{SLUG}/downloads", headers=headers).json()
    assert files == ["Test.zip", "Train.zip", "Validation.zip"]
    with app.state.factory() as db:  # two sources in the test phase
        test = challenges.get_phase(db, challenges.get_challenge(db, SLUG), "test")
        assert {c.source for c in test.cases} == {"seen", "unseen"}
    # A second start keeps the challenge and issues new passwords.
    again = build_demo(settings, app.state.factory, size=24)
    assert again[1].password != alice.password
