"""The final ranking's tasks come from the challenge file (``ranking: tasks``), checked once."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import update
from test_platform_security_results import both_teams_tested
from test_platform_support import Platform, build_platform, challenge_spec, write_truth

from covseg.platform.models import Challenge
from covseg.platform.services import challenges, ranking
from covseg.platform.services.errors import Invalid


def _create(p: Platform, base: Path, **extra: object) -> Challenge:
    spec = {**challenge_spec(), "slug": "second", **extra}
    with p.db() as db, db.begin():
        return challenges.create_challenge(db, p.settings, spec, base)


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(tmp_path)


def test_default_tasks_are_covid19_20s(platform: Platform) -> None:
    with platform.db() as db:
        assert challenges.get_challenge(db, "tiny").ranking_tasks == "dice,nsd,nave"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"tasks": ["dice", "bogus"]}, "ranking.tasks: unknown metric 'bogus'; known: dice, nsd"),
        ({"tasks": ["truth_ml"]}, "unknown metric 'truth_ml'"),  # a count has no direction
        ({"tasks": []}, "ranking.tasks: a non-empty list"),
        ({"tasks": ["dice", "dice"]}, "ranking.tasks: a metric is listed twice"),
        ({"metrics": ["dice"]}, "ranking: a mapping with one key, tasks"),
        ("dice", "ranking: a mapping with one key, tasks"),
    ],
)
def test_bad_ranking_tasks_are_one_line(
    platform: Platform, tmp_path: Path, spec: object, message: str
) -> None:
    write_truth(tmp_path / "org" / "truth")
    (tmp_path / "org" / "train").mkdir()
    with pytest.raises(Invalid) as info:
        _create(platform, tmp_path / "org", ranking=spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_final_ranking_ranks_the_challenges_tasks(platform: Platform, tmp_path: Path) -> None:
    write_truth(tmp_path / "org" / "truth")
    (tmp_path / "org" / "train").mkdir()
    second = _create(platform, tmp_path / "org", ranking={"tasks": ["nave", "lesion_f1"]})
    assert second.ranking_tasks == "nave,lesion_f1"
    with platform.db() as db, db.begin():  # the fixture's challenge, ranked on these tasks
        db.execute(
            update(Challenge).where(Challenge.slug == "tiny").values(ranking_tasks="nave,lesion_f1")
        )
    both_teams_tested(platform)
    with platform.db() as db, db.begin():
        report = ranking.run_final_ranking(
            db, platform.settings, None, challenges.get_challenge(db, "tiny"), bootstrap=0
        )
    rows = list(csv.DictReader(io.StringIO((report.parent / "rankings.csv").read_text())))
    assert {r["task"] for r in rows} == {
        "nave_seen",
        "nave_unseen",
        "lesion_f1_seen",
        "lesion_f1_unseen",
    }
