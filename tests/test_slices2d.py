"""The ``slices-2d`` preset: slice folders, bad input, a tiny training run and prediction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from model_fixtures import disk_slice
from PIL import Image

from covseg.metrics import dice
from covseg.model.plan import load_preset as load_any_preset
from covseg.model.slices2d import predict_slices_2d, train_slices_2d
from covseg.model.slices2d.data import (
    body_box,
    field_box,
    find_slice_cases,
    load_consolidation,
    load_labelled,
    read_consolidation,
    read_mask,
    window_hu,
)
from covseg.model.slices2d.evaluate import choose_min_area, class_map, class_scores, remove_small
from covseg.model.slices2d.net import targets_from_maps, to_maps
from covseg.model.slices2d.report import load_probs


def _write_folder(root: Path, n: int, seed: int = 0, classes: bool = False) -> Path:
    """``n`` disk slices; with ``classes``, the left half of each disk is a brighter
    "consolidation" (class 2), the rest "ground glass" (class 1), in ``classes/``."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "lesion").mkdir()
    if classes:
        (root / "classes").mkdir()
    for i in range(n):
        shape = (int(rng.integers(40, 80)), int(rng.integers(40, 80)))
        image, mask = disk_slice(rng, shape)
        if classes:
            cols = np.flatnonzero(mask.any(axis=0))
            solid = mask & (np.arange(shape[1]) < (cols.min() + cols.max()) / 2)[None, :]
            image = np.where(solid, 250, image).astype(np.uint8)
            Image.fromarray((mask * (1 + solid)).astype(np.uint8)).save(
                root / "classes" / f"{i}.png"
            )
        Image.fromarray(image).save(root / "images" / f"{i}.jpg", quality=95)
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "lesion" / f"{i}.png")
    return root


def load_preset() -> dict[str, Any]:
    return load_any_preset("slices-2d")


def _tiny_plan() -> dict[str, Any]:
    plan = load_preset()
    plan["image_size"] = 48
    plan["network"]["features"] = [8, 8, 16, 16, 32, 8]
    plan["training"].update(folds=2, iterations=60, batch_size=4, learning_rate=0.01, members=2)
    return plan


def test_find_slice_cases_missing_mask_names_file(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "data", 3)
    (root / "lesion" / "1.png").unlink()
    with pytest.raises(ValueError, match=r"1\.jpg: no label"):
        find_slice_cases(root)


def test_mask_of_other_size_names_file(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "data", 2)
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(root / "lesion" / "0.png")
    with pytest.raises(ValueError, match=r"0\.png: mask size \(7, 5\) differs"):
        load_labelled(find_slice_cases(root))


def test_mask_with_other_values_names_file(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 128], [255, 0]], np.uint8)).save(path)
    with pytest.raises(ValueError, match=r"m\.png: mask values must be 0/255.*128"):
        read_mask(path, (2, 2))


def test_body_box_and_window() -> None:
    hu = np.full((64, 64), -1000.0, np.float32)
    hu[10:50, 20:40] = 40.0  # body
    hu[20:30, 25:35] = -850.0  # lung inside it
    out = window_hu(hu[body_box(hu)], window=(-1100.0, 300.0))
    assert out.shape == (40, 20)
    assert out[0, 0] == round(1140 / 1400 * 255)
    assert out[15, 10] == round(250 / 1400 * 255)


def test_the_field_is_the_lungs_box_grown_to_the_least_size_inside_the_slice() -> None:
    hu = np.full((400, 500), 40.0, np.float32)
    lungs = np.zeros(hu.shape, bool)
    lungs[100:300, 50:450] = True  # 200 x 400 px: at 1 mm, both sides exceed 180 mm
    assert field_box(hu, lungs, (1.0, 1.0)) == (slice(100, 300), slice(50, 450))
    # 0.5 mm pixels: 180 mm is 360 px; the rows grow about their centre, the columns stay.
    assert field_box(hu, lungs, (0.5, 0.5)) == (slice(20, 380), slice(50, 450))
    # Near an edge the growth shifts inside the slice; a field larger than the slice is all of it.
    small = np.zeros(hu.shape, bool)
    small[0:20, 480:500] = True
    assert field_box(hu, small, (1.0, 1.0)) == (slice(0, 180), slice(320, 500))
    assert field_box(hu, small, (0.2, 0.2)) == (slice(0, 400), slice(0, 500))
    # No lungs: the body's box.
    body = np.full((64, 64), -1000.0, np.float32)
    body[10:50, 20:40] = 40.0
    assert field_box(body, None, (1.0, 1.0)) == body_box(body)
    assert field_box(body, np.zeros((64, 64), bool), (1.0, 1.0)) == body_box(body)


def test_dice_convention_and_small_components() -> None:
    empty = np.zeros((4, 4), bool)
    assert dice(empty, empty) == 1.0
    assert dice(empty, ~empty) == 0.0
    mask = np.zeros((100, 100), bool)
    mask[:20, :20] = True
    mask[50, 50] = True
    assert remove_small(mask, 0.001).sum() == 400
    best, scores = choose_min_area([mask.astype(float)], [remove_small(mask, 0.001)])
    assert best > 0 and scores[best] == 1.0


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    data = _write_folder(tmp_path_factory.mktemp("slices") / "train", 8)
    model = tmp_path_factory.mktemp("model")
    train_slices_2d(data, model, _tiny_plan(), None, progress=False)
    return data, model


def test_tiny_training_learns_the_easy_case(tiny_model: tuple[Path, Path]) -> None:
    _, model = tiny_model
    report = json.loads((model / "cv_report.json").read_text())
    assert set(report["dice_per_fold"]) == {"0", "1"}
    assert len(report["slices"]) == 8
    # An untrained network scores about the lesion fraction (~0.1); the disks are easy.
    assert report["dice_mean"] > 0.6
    plan = yaml.safe_load((model / "plan.yaml").read_text())
    assert plan["preset"] == "slices-2d" and plan["dimensions"] == 2
    assert sorted(p.parent.name for p in model.glob("fold_*/model.pt")) == ["fold_0", "fold_1"]
    # Two networks a fold (training.members), both kept for the ensemble.
    assert sorted(p.parent.name for p in model.glob("fold_*/model_1.pt")) == ["fold_0", "fold_1"]
    assert report["networks_per_fold"] == 2 and report["iterations_per_network"] == 60
    probs = load_probs(model / "cv_probs.npz")
    assert sorted(probs) == sorted(map(str, range(8)))
    assert all(0 <= p.min() and p.max() <= 1 for p in probs.values())


def test_predict_writes_masks_of_input_size(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    data, model = tiny_model
    written = predict_slices_2d([data], model, tmp_path / "out")
    assert [p.name for p in written] == [f"{i}.png" for i in sorted(map(str, range(8)))]
    for path in written:
        mask = np.asarray(Image.open(path))
        with Image.open(data / "images" / f"{path.stem}.jpg") as image:
            assert mask.shape == image.size[::-1]
        assert set(np.unique(mask)) <= {0, 255}


def test_predict_without_model_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plan.yaml: not found"):
        predict_slices_2d([tmp_path], tmp_path, tmp_path / "out")


def test_real_medseg_folder_is_found(shared_data: Path) -> None:
    cases = find_slice_cases(shared_data / "medseg" / "train")
    assert len(cases) == 50
    assert all(c.label is not None and c.label.parent.name == "lesion" for c in cases)


def test_weight_ema_keeps_the_average_not_the_last_step() -> None:
    from covseg.model.slices2d.fit import train_network

    rng = np.random.default_rng(0)
    pairs = [disk_slice(rng, (32, 32)) for _ in range(4)]
    images = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None].float() / 255
    masks = torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None].float()
    plan = _tiny_plan()
    plan["training"].update(bf16=False)

    def weights(iterations: int, decay: float) -> torch.Tensor:
        plan["training"].update(iterations=iterations, ema_decay=decay)
        net = train_network(images, masks, plan, seed=0).net
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    # The first step is the same in every run (same seed, batch and learning rate); an average
    # that barely moves (decay ~1) stays at the weights after it, plain training does not.
    first = weights(1, 0.0)
    assert torch.allclose(weights(6, 1 - 1e-9), first, atol=1e-6)
    assert not torch.allclose(weights(6, 0.0), first, atol=1e-3)


def test_fast_dropout_is_a_bernoulli_mask_scaled_like_torchs() -> None:
    from covseg.model.slices2d.net import FastDropout, make_network

    drop = FastDropout(0.1)
    x = torch.full((2, 8, 250, 250), 3.0, requires_grad=True)  # 1e6 elements
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    # Kept values scaled by exactly 1 / 0.9; the kept share within 5 s.d. (3e-4) of 0.9.
    assert torch.allclose(y[kept], torch.tensor(3.0 / 0.9))
    assert abs(kept.float().mean().item() - 0.9) < 1.5e-3
    # The gradient passes through the same mask with the same scale.
    y.sum().backward()
    assert x.grad is not None and torch.equal(x.grad != 0, kept)
    assert torch.allclose(x.grad[kept], torch.tensor(1 / 0.9))
    # Seeded like the rest of training; a different draw each call; identity when evaluating.
    torch.manual_seed(0)
    assert torch.equal(drop(x) != 0, kept)
    assert not torch.equal(drop(x) != 0, kept)
    assert drop.eval()(x) is x
    # Mask bits come 4 to a 64-bit draw: no position within the 4 is biased.
    lanes = kept.flatten().reshape(-1, 4).float().mean(dim=0)
    assert torch.all((lanes - 0.9).abs() < 3e-3)
    # The network holds no torch Dropout (each was replaced, probability kept).
    net = make_network({"features": [4, 4, 8, 8, 8, 4], "dropout": 0.25})
    kinds = [type(m) for m in net.modules()]
    assert torch.nn.Dropout not in kinds and FastDropout in kinds
    assert {m.p for m in net.modules() if isinstance(m, FastDropout)} == {0.25}
    with pytest.raises(ValueError, match="dropout probability 1"):
        FastDropout(1.0)


def test_inference_sizes_are_factors_of_the_image_size_and_bad_ones_are_named() -> None:
    from covseg.model.slices2d.predict import inference_sizes

    plan = load_preset()
    assert inference_sizes({"image_size": 160, "inference": {}}) == [160]
    assert inference_sizes({**plan, "image_size": 160}) == [160, 192, 224]
    # Rounded to the U-Net's stride of 16: 1.1 x 160 = 176, 1.3 x 100 = 130 -> 128.
    assert inference_sizes({"image_size": 160, "inference": {"scales": [1.1]}}) == [176]
    assert inference_sizes({"image_size": 100, "inference": {"scales": [1.3]}}) == [128]
    for bad in ([], [0], [1.0, -1], "1.2", [True], 1.2):
        with pytest.raises(ValueError, match="inference.scales is .*positive factors"):
            inference_sizes({"image_size": 160, "inference": {"scales": bad}})


def test_prediction_averages_the_scales_at_each_slices_own_size() -> None:
    from covseg.model.slices2d.net import to_tensor
    from covseg.model.slices2d.predict import predict_maps, predict_slices, restore_size

    # A 1 x 1 convolution: the logit of a pixel is 2 x its normalised grey value + 0.5.
    net = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        net.weight.fill_(2.0)
        net.bias.fill_(0.5)
    net.eval()
    flat = np.full((30, 50), 153, dtype=np.uint8)  # grey 0.6: logit 2 x (0.6 - 0.45) / 0.3 + 0.5
    expected = 1 / (1 + np.exp(-1.5))
    (out,) = predict_slices([net], [flat], [16, 48], tta=True, bf16=False)
    assert out.shape == (1, 30, 50)
    assert np.allclose(out, expected, atol=1e-5)
    # A structured slice: the mean of the one-size predictions, each back at the slice's size.
    rng = np.random.default_rng(0)
    slices = [rng.integers(0, 256, (37, 61), dtype=np.uint8), flat]
    both = predict_slices([net], slices, [32, 64], tta=False, bf16=False)
    for image, got in zip(slices, both, strict=True):
        each = [
            restore_size(
                predict_maps([net], to_tensor([image], s, False), False, False)[0], image.shape
            )
            for s in (32, 64)
        ]
        assert got.shape == (1, *image.shape)
        assert np.allclose(got, (each[0] + each[1]) / 2, atol=1e-6)
        assert not np.allclose(each[0], each[1], atol=1e-3) or image is flat


def test_soft_and_noise_robust_dice_per_batch_and_per_slice() -> None:
    from covseg.model.slices2d.net import _noise_robust_dice, soft_dice, training_loss

    # Probabilities exactly 0 or 1: slice 0 is predicted right (4 pixels), slice 1 predicts
    # 1 pixel where the truth has 3 others.
    prob = torch.zeros(2, 1, 4, 4)
    target = torch.zeros(2, 1, 4, 4)
    prob[0, 0, :2, :2] = 1
    target[0, 0, :2, :2] = 1
    prob[1, 0, 3, 3] = 1
    target[1, 0, 0, :3] = 1
    # Dice, batch: overlap 4, predicted 5, truth 7 -> 1 - (2*4+1)/(5+7+1).
    assert soft_dice(prob, target, batch=True).item() == pytest.approx(1 - 9 / 13, abs=1e-6)
    # Per slice: 1 - 9/9 = 0 and 1 - 1/5 = 0.8, mean 0.4.
    assert soft_dice(prob, target, batch=False).item() == pytest.approx(0.4, abs=1e-6)
    # Noise-robust Dice: 4 wrong pixels over 5 + 7 squared probabilities (+1).
    assert _noise_robust_dice(prob, target, batch=True).item() == pytest.approx(4 / 13)
    assert _noise_robust_dice(prob, target, batch=False).item() == pytest.approx((0 + 4 / 5) / 2)
    # A half-sure pixel on the truth costs 0.5^1.5 / (0.25 + 1 + 1), not Dice's 1 - 2/2.5.
    half, one = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    half[0, 0, 0, 0], one[0, 0, 0, 0] = 0.5, 1.0
    assert _noise_robust_dice(half, one, batch=True).item() == pytest.approx(0.5**1.5 / 2.25)
    # As a training loss: BCE (4 pixels wrong by 50 logits, of 32) plus the overlap term.
    logits = torch.where(prob > 0, 50.0, -50.0)
    both = training_loss(logits, target, True, "bce_noise_robust_dice")
    assert both.item() == pytest.approx(4 / 13 + 4 * 50 / 32, rel=1e-4)


def test_augmentation_probability_leaves_the_other_samples_as_they_are() -> None:
    from covseg.model.slices2d.augment import augment

    cfg = {**load_preset()["augmentation"], "elastic": 0.0}
    x = torch.rand(64, 1, 24, 24)
    y = (torch.rand(64, 1, 24, 24) > 0.7).float()

    def changed(probability: float) -> torch.Tensor:
        xa, ya = augment(
            x, y, {**cfg, "probability": probability}, torch.Generator().manual_seed(3)
        )
        same = (xa == x).flatten(1).all(1) & (ya == y).flatten(1).all(1)
        return ~same

    assert not changed(0.0).any()
    assert changed(1.0).all()  # noise alone changes every augmented image
    share = changed(0.5).float().mean().item()
    assert 0.25 < share < 0.75  # 64 coin flips at p = 0.5


def test_the_ensemble_then_the_iterations_shrink_to_fit_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from covseg.model.slices2d import budget

    plan = load_preset()
    plan["training"].update(iterations=450, members=2, fold_processes=1, max_minutes=1.0)

    def fit(step: float) -> tuple[int, int]:
        monkeypatch.setattr(budget, "step_seconds", lambda plan, threads: step)
        members, iterations, measured = budget.fit_budget(plan, 5)
        assert measured == step
        return members, iterations

    # 5 folds one after another: 60 s x 0.9 / (5 x step x 1.3) iterations a fold.
    assert fit(0.001) == (2, 450)  # never more than the plan's
    assert fit(0.0045) == (2, 450)  # 1846 iterations a fold: 2 x 450 fit
    assert fit(0.01) == (1, 450)  # 830: one full network rather than two of 415
    assert fit(0.02) == (1, 415)  # 415: one network, cut short
    assert fit(10.0) == (1, budget.MIN_ITERATIONS)
    # 5 folds on 2 processes: two full waves and a last one of a single fold (0.75 of a wave).
    plan["training"]["fold_processes"] = 2
    assert fit(0.02) == (1, 450)  # 60 x 0.9 / (2.75 x 0.02 x 1.3) = 755
    plan["training"]["max_minutes"] = None
    assert budget.fit_budget(plan, 5)[:2] == (2, 450)


def test_step_time_is_measured_on_the_plans_network() -> None:
    from covseg.model.slices2d.budget import step_seconds

    plan = _tiny_plan()
    small = step_seconds(plan, threads=1, steps=3)
    plan["image_size"] = 192  # 16 times the pixels: a gap that load does not hide
    assert 0 < small < step_seconds(plan, threads=1, steps=3)


def test_train_command_names_a_bad_mask_or_plan_value_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from covseg.cli import app

    data = _write_folder(tmp_path / "train", 6)
    Image.fromarray(np.zeros((7, 9), dtype=np.uint8)).save(data / "lesion" / "3.png")
    runner = CliRunner()
    result = runner.invoke(
        app, ["train", str(data), "-o", str(tmp_path / "m"), "--preset", "slices-2d"]
    )
    assert result.exit_code == 1, result.output
    assert "3.png: mask size (9, 7) differs from image" in result.output
    assert "Traceback" not in result.output
    (data / "lesion" / "3.png").unlink()
    _write_folder(tmp_path / "ok", 6)
    result = runner.invoke(
        app,
        [
            "train",
            str(tmp_path / "ok"),
            "-o",
            str(tmp_path / "m"),
            "--preset",
            "slices-2d",
            "--set",
            "training.members=0",
        ],
    )
    assert result.exit_code == 1
    assert "training.members must be at least 1, got 0" in result.output
    args = ["train", str(tmp_path / "ok"), "-o", str(tmp_path / "m"), "--preset", "slices-2d"]
    result = runner.invoke(app, [*args, "--set", "training.loss=dice"])
    assert result.exit_code == 1
    assert "training.loss is 'dice': use bce_dice or bce_noise_robust_dice" in result.output


def test_pseudo_label_stage_fine_tunes_every_member(tmp_path: Path) -> None:
    from covseg.model.slices2d.cv import FoldOptions, cross_validate

    _write_folder(tmp_path / "train", 6)
    _write_folder(tmp_path / "unlabelled", 4, seed=5)
    plan = _tiny_plan()
    plan["training"].update(iterations=20, fold_processes=1)
    plan["pseudo_labels"].update(enabled=True, unlabelled_dir="../unlabelled/images", iterations=10)
    options = FoldOptions(control=True)
    _, _, (result,) = cross_validate(tmp_path / "train", plan, [0], options)
    assert len(result.states) == 2
    assert set(result.probs) == {"teacher", "control", "tta", "no_tta", "final", "one_scale"}
    # Fine-tuning (with or without the pseudo-labelled slices) changes the teachers' output.
    for variant in ("control", "tta"):  # all three with mirror TTA
        assert any(
            not np.array_equal(a, b)
            for a, b in zip(result.probs["teacher"], result.probs[variant], strict=True)
        )


def test_class_maps_are_checked_against_the_lesion_mask(tmp_path: Path) -> None:
    lesion = np.array([[0, 1], [1, 1]], dtype=bool)
    path = tmp_path / "c.png"
    Image.fromarray(np.array([[0, 1], [2, 2]], np.uint8)).save(path)
    assert read_consolidation(path, lesion).tolist() == [[False, False], [True, True]]
    Image.fromarray(np.array([[0, 3], [2, 2]], np.uint8)).save(path)
    with pytest.raises(ValueError, match=r"c\.png: class values must be 0/1/2, found \[0, 2, 3\]"):
        read_consolidation(path, lesion)
    Image.fromarray(np.array([[1, 1], [2, 0]], np.uint8)).save(path)
    with pytest.raises(ValueError, match=r"c\.png: 2 pixels disagree with the lesion mask"):
        read_consolidation(path, lesion)
    Image.fromarray(np.zeros((3, 2), np.uint8)).save(path)
    with pytest.raises(ValueError, match=r"c\.png: class map size \(2, 3\) differs"):
        read_consolidation(path, lesion)


def test_a_missing_class_map_is_named(tmp_path: Path) -> None:
    data = _write_folder(tmp_path / "train", 3, classes=True)
    (data / "classes" / "2.png").unlink()
    cases = find_slice_cases(data)
    masks = [m for _, m in load_labelled(cases)]
    with pytest.raises(ValueError, match=r"classes/2\.png: class map missing"):
        load_consolidation(data, cases, masks)


def test_class_outputs_lesion_and_consolidation_probabilities() -> None:
    # Softmax of (background, ground glass, consolidation) logits (0, log 2, 0): 1/4, 1/2, 1/4.
    logits = torch.tensor([0.0, float(np.log(2.0)), 0.0]).view(1, 3, 1, 1)
    maps = to_maps(logits)
    assert torch.allclose(maps.flatten(), torch.tensor([0.75, 0.25]))
    # Lesion 0.75 >= 0.5; consolidation 0.25 < ground glass 0.5: ground glass.
    assert targets_from_maps(maps).flatten().tolist() == [1.0, 0.0]
    assert targets_from_maps(torch.tensor([0.9, 0.5]).view(1, 2, 1, 1)).flatten().tolist() == [1, 1]
    prob = np.array([[0.9, 0.9, 0.2]])
    solid = np.array([[0.6, 0.3, 0.2]])
    assert class_map(prob, solid, 0.5, 0.0).tolist() == [[2, 1, 0]]


def test_class_scores_average_the_slices_that_hold_the_class() -> None:
    truth = [np.array([[1, 1, 2, 0]]), np.array([[1, 0, 0, 0]])]
    pred = [np.array([[1, 2, 2, 0]]), np.array([[1, 0, 0, 2]])]
    scores = class_scores(pred, truth)
    # Ground glass: slice 1 2*1/(1+2), slice 2 1; pooled 2*2/(2+3).
    assert scores[1]["mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert scores[1]["pooled"] == pytest.approx(4 / 5) and scores[1]["slices"] == 2
    # Consolidation is only in slice 1's truth: 2*1/(2+1); pooled 2*1/(3+1).
    assert scores[2]["mean"] == pytest.approx(2 / 3) and scores[2]["slices"] == 1
    assert scores[2]["pooled"] == pytest.approx(0.5)


@pytest.mark.parametrize(("classes", "members", "outputs"), [(True, 1, [3]), ("mixed", 2, [1, 3])])
def test_training_with_classes_reports_and_predicts_them(
    tmp_path: Path, classes: bool | str, members: int, outputs: list[int]
) -> None:
    from covseg.model.slices2d.net import outputs_of

    data = _write_folder(tmp_path / "train", 8, classes=True)
    plan = _tiny_plan()
    plan["training"].update(classes=classes, members=members, iterations=80)
    train_slices_2d(data, tmp_path / "model", plan, None, progress=False)
    # "mixed": member 0 learns the lesion only, member 1 the classes too.
    for fold in ("fold_0", "fold_1"):
        weights = sorted((tmp_path / "model" / fold).glob("model*.pt"))
        assert [outputs_of(torch.load(w, weights_only=True)) for w in weights] == outputs
    report = json.loads((tmp_path / "model" / "cv_report.json").read_text())
    assert report["dice_mean"] > 0.6
    # Bright half-disks (consolidation) against grey ones: both classes are found.
    assert set(report["classes"]) == {"ground-glass", "consolidation"}
    for stats in report["classes"].values():
        assert stats["slices"] == 8 and stats["mean"] > 0.4 and 0 < stats["pooled"] <= 1
    written = predict_slices_2d([data], tmp_path / "model", tmp_path / "out")
    for path in written:
        mask = np.asarray(Image.open(path)) > 0
        labels = np.asarray(Image.open(tmp_path / "out" / "classes" / path.name))
        assert set(np.unique(labels)) <= {0, 1, 2} and np.array_equal(labels > 0, mask)


def test_mixed_classes_without_class_maps_train_the_lesion_only(
    tmp_path: Path,
) -> None:
    data = _write_folder(tmp_path / "train", 6)
    plan = _tiny_plan()
    plan["training"].update(classes="mixed", folds=2, iterations=10, fold_processes=1)
    lines: list[str] = []
    train_slices_2d(data, tmp_path / "model", plan, None, on_message=lines.append)
    assert any("no classes/ maps, so every network learns the lesion only" in x for x in lines)
    saved = yaml.safe_load((tmp_path / "model" / "plan.yaml").read_text())
    assert saved["training"]["classes"] is False
    report = json.loads((tmp_path / "model" / "cv_report.json").read_text())
    assert "classes" not in report and report["networks_per_fold"] == 2


def test_a_mixed_ensemble_averages_the_lesion_over_all_and_classes_over_class_networks() -> None:
    from covseg.model.slices2d.predict import predict_maps

    class Constant(torch.nn.Module):
        def __init__(self, logits: list[float]) -> None:
            super().__init__()
            self.logits = torch.tensor(logits).view(1, -1, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.logits.expand(x.shape[0], -1, *x.shape[2:])

    binary = Constant([0.0])  # lesion 0.5
    # Softmax of (0, ln 1, ln 2): background 1/4, ground glass 1/4, consolidation 1/2.
    three = Constant([0.0, 0.0, float(np.log(2.0))])
    maps = predict_maps([binary, three], torch.zeros(2, 1, 8, 8), tta=False, bf16=False)
    assert maps.shape == (2, 2, 8, 8)
    assert torch.allclose(maps[:, 0], torch.tensor((0.5 + 0.75) / 2))  # over both networks
    assert torch.allclose(maps[:, 1], torch.tensor(0.5))  # over the class network only
    assert predict_maps([binary], torch.zeros(1, 1, 8, 8), False, False).shape == (1, 1, 8, 8)


def test_a_bad_classes_setting_is_refused(tmp_path: Path) -> None:
    from covseg.model.slices2d.settings import uses_classes

    plan = _tiny_plan()
    plan["training"]["classes"] = "yes"
    with pytest.raises(
        ValueError, match="training.classes must be true, false or mixed, got 'yes'"
    ):
        uses_classes(plan)


def test_the_volume_and_slice_losses_share_one_noise_robust_dice() -> None:
    from covseg.model.losses import NOISE_ROBUST_EPS, NoiseRobustDiceLoss

    # The 3D loss on two classes whose softmax is exactly 0/1: the slice test's case above,
    # 4 wrong voxels over 5 + 7 squared probabilities, + eps (1: Laplace smoothing, as 2D).
    target = torch.zeros(1, 1, 2, 4, 4, dtype=torch.long)
    fg = torch.zeros(1, 2, 4, 4)
    fg[0, 0, :2, :2] = 1
    target[0, 0, 0, :2, :2] = 1
    fg[0, 1, 3, 3] = 1
    target[0, 0, 1, 0, :3] = 1
    logits = torch.stack([torch.where(fg > 0, -50.0, 50.0), torch.where(fg > 0, 50.0, -50.0)], 1)
    assert NOISE_ROBUST_EPS == 1.0
    assert NoiseRobustDiceLoss()(logits, target).item() == pytest.approx(4 / 13, rel=1e-6)


def test_hu_slices_are_windowed_in_their_field_and_predicted_at_full_size() -> None:
    from covseg.model.slices2d.data import window_hu
    from covseg.model.slices2d.predict import Ensemble, predict_hu_slices, predict_slices

    net = torch.nn.Conv2d(1, 1, 1)  # logit 2 x normalised grey + 0.5, as above
    with torch.no_grad():
        net.weight.fill_(2.0)
        net.bias.fill_(0.5)
    net.eval()
    plan = {
        "image_size": 32,
        "hu_window": [-1000.0, 200.0],
        "inference": {"tta": False, "scales": [1.0], "threshold": 0.5},
        "training": {"bf16": False},
    }
    hu = np.full((50, 60), -1000.0, np.float32)
    hu[10:40, 15:45] = 40.0  # the body
    hu[20:30, 20:30] = -700.0  # a lung inside it
    field = (slice(10, 40), slice(15, 45))
    (prob,) = predict_hu_slices(Ensemble([net], plan, classes=False), [hu], [field])
    assert prob.shape == (1, 50, 60)
    # Outside the field nothing; inside, the map of the windowed crop.
    outside = np.ones((50, 60), bool)
    outside[10:40, 15:45] = False
    assert not prob[0][outside].any()
    crop = window_hu(hu[10:40, 15:45], (-1000.0, 200.0))
    (expected,) = predict_slices([net], [crop], [32], tta=False, bf16=False)
    assert np.allclose(prob[:, 10:40, 15:45], expected, atol=1e-6)


def test_the_hu_window_fit_recovers_a_known_window() -> None:
    from covseg.model.slices2d.data import fit_hu_window

    rng = np.random.default_rng(0)
    hu_slices = []
    for _ in range(3):
        hu = np.full((64, 64), -1000.0, np.float32)
        hu[8:56, 8:56] = rng.uniform(-950, 400, (48, 48))  # a body of every density
        hu_slices.append(hu)
    images = [window_hu(s[body_box(s)], (-1100.0, 150.0)) for s in hu_slices]
    assert fit_hu_window(images, hu_slices) == (-1100.0, 150.0)


def test_the_shipped_preset_names_no_folder_of_a_developers_machine(tmp_path: Path) -> None:
    from covseg.model.slices2d.cv import unlabelled_images

    plan = load_preset()
    assert plan["pipeline"] == "slices-2d"
    assert plan["pseudo_labels"]["unlabelled_dir"] is None
    plan["pseudo_labels"]["enabled"] = True
    with pytest.raises(ValueError, match="pseudo_labels.enabled needs pseudo_labels.unlabelled"):
        unlabelled_images(tmp_path, plan)


def test_predict_reads_an_old_plan_by_its_dimensions(
    tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from covseg.cli import app

    data, model = tiny_model
    old = tmp_path / "old"
    old.mkdir()
    plan = yaml.safe_load((model / "plan.yaml").read_text())
    del plan["pipeline"]  # written before the key: dimensions 2 says slices-2d
    (old / "plan.yaml").write_text(yaml.safe_dump(plan))
    for weights in model.glob("fold_*/model*.pt"):
        (old / weights.parent.name).mkdir(exist_ok=True)
        (old / weights.parent.name / weights.name).write_bytes(weights.read_bytes())
    image = data / "images" / "0.jpg"
    result = CliRunner().invoke(app, ["predict", str(image), "-m", str(old), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "0.png").is_file()
