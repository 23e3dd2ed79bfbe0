"""covseg pseudo-label: confident scans become a labelled dataset that training can add."""

import json
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import one_thread, tiny_model  # noqa: F401 (fixture)
from typer.testing import CliRunner

from covseg.cli import app
from covseg.datasets import find_cases
from covseg.io import read_volume, write_volume
from covseg.model.pseudolabel import confidence
from covseg.phantom import make_phantom

pytestmark = pytest.mark.usefixtures("one_thread")


def test_confidence_is_the_mean_certainty_where_it_matters() -> None:
    prob = np.zeros((4, 4, 4), np.float32)
    assert confidence(prob, None) == 1.0  # a clear healthy prediction
    prob[0, 0, :2] = [0.5, 1.0]
    assert confidence(prob, None) == 0.75
    lung = np.zeros_like(prob, dtype=np.uint8)
    lung[1] = 1  # 16 lung voxels at p = 0, certain
    assert confidence(prob, lung) == pytest.approx((0.5 + 1.0 + 16) / 18)


def test_pseudo_labels_form_a_training_dataset(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "model", "inference.lung_crop=false")
    for seed in (1, 2):
        ct = make_phantom(seed=seed, source="B", size=64, n_slices=24).ct
        write_volume(ct, tmp_path / "unlabelled" / f"scan{seed}.nrrd")
    out = tmp_path / "pseudo"
    args = ["pseudo-label", str(tmp_path / "unlabelled"), "-m", str(model), "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--min-confidence", "0.5", "--no-progress"])
    assert result.exit_code == 0, result.output
    records = json.loads((out / "confidence.json").read_text())
    assert [r["case_id"] for r in records] == ["scan1", "scan2"] and all(r["kept"] for r in records)
    cases = find_cases(out, require_labels=True)
    assert [c.case_id for c in cases] == ["scan1", "scan2"]
    assert read_volume(cases[0].label).same_geometry(read_volume(cases[0].image))
