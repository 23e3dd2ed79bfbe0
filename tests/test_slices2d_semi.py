"""Semi-supervised slices-2d: pseudo-labels of slice folders, --extra, and teacher -> student."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from model_fixtures import disk_slice
from PIL import Image

from covseg.model.plan import load_preset
from covseg.model.pseudolabel import confidence
from covseg.model.slices2d import semi, train_slices_2d
from covseg.model.slices2d.cv import fold_assignment
from covseg.model.slices2d.data import find_slice_cases, load_labelled
from covseg.model.slices2d.fit import Trained, train_network
from covseg.model.slices2d.net import make_network, to_tensor
from covseg.model.slices2d.predict import load_ensemble, predict_slices


def _write_folder(root: Path, n: int, seed: int = 0, labels: bool = True) -> Path:
    """``n`` disk slices in ``images/`` (+ ``lesion/`` masks); without ``labels``, a flat folder."""
    rng = np.random.default_rng(seed)
    images = root / "images" if labels else root
    images.mkdir(parents=True)
    if labels:
        (root / "lesion").mkdir()
    for i in range(n):
        image, mask = disk_slice(rng, (int(rng.integers(40, 70)), int(rng.integers(40, 70))))
        Image.fromarray(image).save(images / f"s{seed}_{i}.png")
        if labels:
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "lesion" / f"s{seed}_{i}.png")
    return root


def _tiny_plan(**pseudo: Any) -> dict[str, Any]:
    plan = load_preset("slices-2d")
    plan["image_size"] = 32
    plan["network"]["features"] = [4, 4, 8, 8, 16, 4]
    plan["inference"]["scales"] = [1.0]
    plan["training"].update(
        folds=2,
        iterations=15,
        batch_size=2,
        learning_rate=0.01,
        members=1,
        classes=False,
        max_minutes=None,
        fold_processes=1,
    )
    plan["pseudo_labels"].update(iterations=5, per_batch=2, **pseudo)
    return plan


def _key(image: torch.Tensor) -> bytes:
    return image.numpy().tobytes()


def test_no_held_out_slice_reaches_its_folds_teacher_labels_or_student(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every network remembers the labelled slices it (or the network it started from) was
    trained on; the teacher that labels and the student of fold k must never have seen fold
    k's held-out slices."""
    data = _write_folder(tmp_path / "train", 6)
    unlabelled = _write_folder(tmp_path / "unlabelled", 4, seed=9, labels=False)
    plan = _tiny_plan(rounds=2, control=True)
    seen: dict[int, set[bytes]] = {}
    labelled_by: list[set[bytes]] = []

    def spy_train(images: torch.Tensor, *args: Any, **kwargs: Any) -> Trained:
        init = args[3] if len(args) > 3 else kwargs.get("init")
        inherited = seen[_state_key(init)] if init is not None else set()
        trained = train_network(images, *args, **kwargs)
        seen[_state_key(trained.net.state_dict())] = {_key(i) for i in images} | inherited
        return trained

    real_label = semi.label_slices

    def spy_label(nets: list[torch.nn.Module], *args: Any) -> Any:
        for net in nets:
            labelled_by.append(seen[_state_key(net.state_dict())])
        return real_label(nets, *args)

    monkeypatch.setattr(semi, "train_network", spy_train)
    monkeypatch.setattr(semi, "label_slices", spy_label)
    semi.train_semi(data, tmp_path / "model", plan, unlabelled, None, progress=False)

    images = load_labelled(find_slice_cases(data))
    resized = to_tensor([im for im, _ in images], 32, mask=False)
    folds = fold_assignment(len(images), 2, plan["training"]["split_seed"])
    held_out = {k: {_key(resized[i]) for i in np.flatnonzero(folds == k)} for k in (0, 1)}
    assert len(labelled_by) == 2 * 2  # 2 folds x 2 rounds x 1 network
    # Each labelling network saw exactly one fold's training slices and none of its held-out.
    for saw in labelled_by:
        fold = 0 if saw.isdisjoint(held_out[0]) else 1
        assert saw.isdisjoint(held_out[fold]) and saw
    report = json.loads((tmp_path / "model" / "cv_report.json").read_text())
    assert {"dice_mean_teacher", "dice_mean_control", "dice_mean"} <= set(report)
    assert len(report["slices"]) == 6  # the CV scores the labelled slices only
    # The saved students: each saw its own fold's training slices only.
    for fold in (0, 1):
        state = torch.load(tmp_path / "model" / f"fold_{fold}" / "model.pt", weights_only=True)
        assert seen[_state_key(state)].isdisjoint(held_out[fold])
    saved = yaml.safe_load((tmp_path / "model" / "plan.yaml").read_text())
    assert saved["pseudo_labels"]["rounds"] == 2 and saved["dimensions"] == 2


def _state_key(state: dict[str, torch.Tensor]) -> int:
    return hash(b"".join(v.detach().cpu().numpy().tobytes() for v in state.values()))


def test_pseudo_label_folder_writes_the_training_layout_and_confidences(tmp_path: Path) -> None:
    data = _write_folder(tmp_path / "train", 6)
    model = tmp_path / "model"
    train_slices_2d(data, model, _tiny_plan(), None, progress=False)
    unlabelled = _write_folder(tmp_path / "unlabelled", 6, seed=3, labels=False)
    first = semi.pseudo_label_folder(unlabelled, model, tmp_path / "all", 0.5, False)
    scores = sorted(r["confidence"] for r in first)
    threshold = (scores[2] + scores[3]) / 2  # half of them kept
    out = tmp_path / "pseudo"
    records = semi.pseudo_label_folder(unlabelled, model, out, threshold, False)
    summary = json.loads((out / "confidence.json").read_text())
    assert summary["min_confidence"] == threshold and summary["slices"] == records
    assert [r["case_id"] for r in records] == sorted(p.stem for p in unlabelled.iterdir())
    kept = {r["case_id"] for r in records if r["kept"]}
    assert kept == {r["case_id"] for r in records if r["confidence"] >= threshold}
    assert len(kept) == 3
    assert {p.stem for p in (out / "images").iterdir()} == kept
    assert {p.stem for p in (out / "lesion").iterdir()} == kept
    # The written pair is a training folder: same sizes, masks 0/255, confidence as recomputed.
    ensemble = load_ensemble(model)
    plan, nets = ensemble.plan, ensemble.nets
    for case, (image, mask) in zip(
        find_slice_cases(out), load_labelled(find_slice_cases(out)), strict=True
    ):
        original = np.asarray(Image.open(unlabelled / f"{case.case_id}.png"))
        assert np.array_equal(image, original)
        (prob,) = predict_slices(nets, [image], [32], False, bool(plan["training"]["bf16"]))
        assert np.array_equal(mask, prob[0] >= 0.5)
        expected = round(confidence(prob[0], None), 4)
        assert [r["confidence"] for r in records if r["case_id"] == case.case_id] == [expected]


def test_extra_slices_join_training_only_weighted_by_confidence(tmp_path: Path) -> None:
    data = _write_folder(tmp_path / "train", 6)
    extra = _write_folder(tmp_path / "pseudo", 3, seed=4)
    names = sorted(p.stem for p in (extra / "images").iterdir())
    (extra / "confidence.json").write_text(
        json.dumps(
            {
                "slices": [
                    {"case_id": n, "confidence": c}
                    for n, c in zip(names, [0.9, 0.0, 0.7], strict=True)
                ]
            }
        )
    )
    images, masks, weights = semi.read_extra([extra], 32)
    assert images.shape == (3, 1, 32, 32) and masks.shape == (3, 1, 32, 32)
    assert weights.tolist() == pytest.approx([0.9, 0.0, 0.7])
    model = tmp_path / "model"
    semi.train_with_extra(data, model, _tiny_plan(), [extra], None, progress=False)
    report = json.loads((model / "cv_report.json").read_text())
    assert len(report["slices"]) == 6 and not any(r["case_id"] in names for r in report["slices"])


def test_extra_samples_leave_the_labelled_batches_alone() -> None:
    """Extra samples of weight 0 are never drawn (the same network as without them); with
    weight, the same labelled batches plus the extra ones give another network."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 32, 32, generator=gen)
    y = (torch.rand(6, 1, 32, 32, generator=gen) > 0.7).float()
    plan = _tiny_plan()
    base = train_network(x, y, plan, seed=3, iterations=4).net.state_dict()
    zero = (x[:2], y[:2], torch.zeros(2))
    same = train_network(x, y, plan, seed=3, iterations=4, extra=zero, extra_per_batch=2)
    assert all(torch.equal(base[k], v) for k, v in same.net.state_dict().items())
    some = (x[:2], y[:2], torch.tensor([1.0, 0.0]))
    other = train_network(x, y, plan, seed=3, iterations=4, extra=some, extra_per_batch=2)
    assert any(not torch.equal(base[k], v) for k, v in other.net.state_dict().items())


def test_soft_labels_are_the_teachers_probabilities() -> None:
    torch.manual_seed(0)
    plan = _tiny_plan()
    net = make_network(plan["network"]).eval()
    images = torch.rand(3, 1, 32, 32)
    soft, scores = semi.label_slices([net], images, False, soft=True)
    hard, same = semi.label_slices([net], images, False, soft=False)
    assert np.array_equal(scores, same) and np.all((scores >= 0.5) & (scores <= 1.0))
    assert torch.equal(hard, (soft >= 0.5).float())
    assert ((soft > 0) & (soft < 1)).any()


def test_bad_semi_settings_and_folders_are_named(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from covseg.cli import app

    data = _write_folder(tmp_path / "train", 4)
    runner = CliRunner()
    base = ["train", str(data), "-o", str(tmp_path / "m"), "--preset", "slices-2d"]
    result = runner.invoke(app, [*base, "--unlabelled", str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "nowhere: unlabelled folder not found" in result.output
    result = runner.invoke(
        app, [*base, "--unlabelled", str(data), "--set", "pseudo_labels.per_batch=0"]
    )
    assert result.exit_code != 0 and "pseudo_labels.per_batch" in result.output
    result = runner.invoke(app, [*base, "--unlabelled", str(data), "--resume"])
    assert result.exit_code != 0 and "--resume: not with --unlabelled or --extra" in result.output
    assert "Traceback" not in result.output


def test_the_one_command_writes_a_model_that_predict_uses(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from covseg.cli import app

    data = _write_folder(tmp_path / "train", 6)
    unlabelled = _write_folder(tmp_path / "unlabelled", 4, seed=7, labels=False)
    model = tmp_path / "model"
    tiny = [
        "image_size=32",
        "network.features=[4,4,8,8,16,4]",
        "inference.scales=[1.0]",
        "training.folds=2",
        "training.iterations=10",
        "training.members=1",
        "training.fold_processes=1",
        "pseudo_labels.iterations=5",
    ]
    args = ["train", str(data), "-o", str(model), "--preset", "slices-2d"]
    args += ["--unlabelled", str(unlabelled), "--no-progress"]
    args += [a for s in tiny for a in ("--set", s)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    plan = yaml.safe_load((model / "plan.yaml").read_text())
    assert plan["training"]["max_minutes"] == semi.DEFAULT_MINUTES
    result = CliRunner().invoke(
        app, ["predict", str(unlabelled), "-m", str(model), "-o", str(tmp_path / "p")]
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "p").glob("*.png"))) == 4
    result = CliRunner().invoke(
        app,
        [
            "pseudo-label",
            str(unlabelled),
            "-m",
            str(model),
            "-o",
            str(tmp_path / "pl"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "of 4 slices pseudo-labelled" in result.output


def test_augment_keeps_soft_targets_soft_unless_hard() -> None:
    """The same draws warp image and target alike; ``hard=False`` skips only the > 0.5."""
    from covseg.model.slices2d.augment import augment

    plan = _tiny_plan()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.full((2, 1, 32, 32), 0.7)
    xs, soft = augment(x, y, plan["augmentation"], torch.Generator().manual_seed(5), hard=False)
    xh, hard = augment(x, y, plan["augmentation"], torch.Generator().manual_seed(5))
    assert torch.equal(xs, xh) and torch.equal(hard, (soft > 0.5).float())
    assert ((soft > 0) & (soft < 1)).any() and soft.max() <= 0.7 + 1e-6


def test_the_whole_recipe_holds_its_budget_where_steps_are_slower_than_estimated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The start-up timing says a step is nearly free, so teachers and students keep 100,000
    # iterations each; only the deadlines measured while training can end the run on time.
    from covseg.model.slices2d import budget

    torch.set_num_threads(1)
    monkeypatch.setattr(budget, "step_seconds", lambda plan, threads: 1e-6)
    data = _write_folder(tmp_path / "train", 6)
    unlabelled = _write_folder(tmp_path / "unlabelled", 4, seed=7, labels=False)
    plan = _tiny_plan(control=True)
    plan["training"].update(iterations=100_000, max_minutes=0.3)
    plan["pseudo_labels"]["iterations"] = 100_000
    start = time.time()
    report = semi.train_semi(data, tmp_path / "model", plan, unlabelled, None)
    elapsed = time.time() - start
    assert elapsed < 2 * 18, elapsed  # an 18 s budget, ended within twice it on a busy machine
    students = [n for counts in report["iterations_trained"].values() for n in counts]
    assert len(students) == 2 and all(1 <= n < 100_000 for n in students)
    assert "dice_mean_control" in report
