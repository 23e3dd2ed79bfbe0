"""The organizer and participant commands, and the final ranking they publish."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from test_platform_support import (
    PASSWORD,
    LiveServer,
    Platform,
    build_platform,
    good_zip,
    scored,
    write_truth,
)
from typer.testing import CliRunner

from covseg.cli import app

runner = CliRunner()


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    """A fresh platform on SQLite."""
    return build_platform(tmp_path)


def test_challenge_create_from_yaml(tmp_path: Path) -> None:
    write_truth(tmp_path / "labels")
    spec = {
        "slug": "lungs",
        "title": "Lungs",
        "organizers": ["boss@example.org"],
        "phases": [
            {"slug": "validation", "kind": "validation", "truth": "labels", "daily_limit": 2},
            {"slug": "test", "kind": "test", "truth": "labels", "requires": "validation"},
        ],
    }
    (tmp_path / "challenge.yaml").write_text(yaml.safe_dump(spec))
    args = ["challenge", "create", str(tmp_path / "challenge.yaml")]
    args += ["--data-dir", str(tmp_path / "data")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "phase validation (validation): 3 cases" in result.output
    assert "new organizer account boss@example.org" in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already exists" in again.output
    (tmp_path / "bad.yaml").write_text("slug: x\nphases: [{slug: v, truth: nowhere}]\n")
    bad = runner.invoke(app, [*args[:2], str(tmp_path / "bad.yaml"), *args[3:]])
    assert bad.exit_code == 1 and "not found" in bad.output


def _score_both_teams(p: Platform) -> None:
    for phase in ("validation", "test"):
        for shift, email in enumerate(("alice@example.org", "bob@example.org")):
            scored(p, email, phase, shift)


@pytest.fixture
def live(platform: Platform) -> Iterator[LiveServer]:
    """The platform on a real HTTP server."""
    server = LiveServer(platform)
    yield server
    server.close()


def test_final_ranking_is_published(platform: Platform, live: LiveServer) -> None:
    report = f"{live.url}/challenges/tiny/ranking/report.html"
    assert httpx.get(report).status_code == 404  # not before it is run
    too_few = runner.invoke(
        app, ["challenge", "rank", "tiny", "--data-dir", str(platform.settings.data_dir)]
    )
    assert too_few.exit_code == 1 and "at least two teams" in too_few.output
    _score_both_teams(platform)
    args = ["challenge", "rank", "tiny", "--bootstrap", "20"]
    result = runner.invoke(app, [*args, "--data-dir", str(platform.settings.data_dir)])
    assert result.exit_code == 0, result.output
    page = httpx.get(report)
    assert page.status_code == 200 and "team-alice" in page.text
    assert "ranking-report" in httpx.get(f"{live.url}/challenges/tiny").text
    escape = httpx.get(f"{live.url}/challenges/tiny/ranking/..%2Fdownloads%2Ftrain.zip")
    assert escape.status_code == 404


def test_submit_command(platform: Platform, live: LiveServer, tmp_path: Path) -> None:
    folder = tmp_path / "preds"
    folder.mkdir()
    with zipfile.ZipFile(io.BytesIO(good_zip())) as zf:
        zf.extractall(folder)
    base = ["submit", str(folder), "-c", "tiny", "--server", live.url]
    alice = [*base, "--email", "alice@example.org"]  # the password is asked for, never an option
    result = runner.invoke(app, alice, input=f"{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "accepted for team team-alice" in result.output and "dice 1.0000" in result.output
    again = runner.invoke(app, alice, input=f"{PASSWORD}\n")
    assert again.exit_code == 1 and "429" in again.output
    wrong = runner.invoke(app, alice, input="nope-nope\n")
    assert wrong.exit_code == 1 and "log-in failed" in wrong.output
    assert runner.invoke(app, [*alice, "--password", PASSWORD]).exit_code == 2  # no such option
