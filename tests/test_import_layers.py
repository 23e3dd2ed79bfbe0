"""The one-way flow of DESIGN.md is enforced: `lint-imports` keeps the contracts of
pyproject.toml on today's code and breaks them on a back-edge."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_todays_code_keeps_the_layers() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "back_edge", "broken"),
    [
        ("io.py", "import covseg.cli._app", "covseg.io is not allowed to import covseg.cli"),
        (
            "metrics/case.py",
            "import covseg.ranking",
            "covseg.metrics is not allowed to import covseg.ranking",
        ),
        (
            "ranking/run.py",
            "import covseg.ranking.report",
            "covseg.ranking.run is not allowed to import covseg.ranking.report",
        ),
    ],
)
def test_a_back_edge_breaks_the_contract(
    tmp_path: Path, module: str, back_edge: str, broken: str
) -> None:
    shutil.copytree(ROOT / "covseg", tmp_path / "covseg", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "covseg" / module).open("a") as handle:
        handle.write(f"\n\ndef _back() -> None:\n    {back_edge}  # noqa\n")  # even a lazy one
    done = _lint(tmp_path)
    assert done.returncode != 0 and broken in done.stdout, done.stdout
