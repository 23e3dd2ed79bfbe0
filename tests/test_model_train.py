"""Training really learns: a small U-Net trained for a few dozen steps on tiny phantoms finds
lesions on a held-out phantom far better than an empty or an all-lung prediction."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from covseg.datasets import find_cases
from covseg.io import write_mask, write_volume
from covseg.metrics import dice
from covseg.model.inference import load_checkpoint, load_models
from covseg.model.plan import apply_overrides, load_preset, write_plan
from covseg.model.predict import segment
from covseg.model.train import split_fold, train_fold
from covseg.phantom import make_phantom

# Scaled down from the baseline so that it trains in about a minute on one CPU thread:
# a narrower network, 4 x 4 x 5 mm voxels, 32 x 32 x 16 patches, a larger learning rate and
# 60 epochs of 4 cases (120 steps). It only starts to find lesions then (held-out Dice ~0.1),
# so the bar is "clearly above what no learning gives": an empty mask scores 0, an all-lung
# mask the lesion share of the lungs (~0.04), random weights far below both.
SMALL = [
    "network.features=[8, 8, 16, 32, 64, 8]",
    "preprocessing.spacing_mm=[4.0, 4.0, 5.0]",
    "augmentation.pad_to=[32, 32]",
    "augmentation.crop_size=[32, 32, 16]",
    "inference.roi_size=[32, 32, 16]",
    "inference.lung_crop=false",
    "training.learning_rate=0.003",
    "training.epochs=60",
    "training.validation_interval=30",
    "training.folds=5",
]


def write_cases(folder: Path, seeds: range, source: str = "A") -> None:
    for seed in seeds:
        case = make_phantom(seed=seed, source=source, size=96, n_slices=32, n_lesions=9)
        write_volume(case.ct, folder / f"volume-covid19-{source}-{seed:04d}_ct.nii.gz")
        write_mask(
            case.lesion.array, case.ct, folder / f"volume-covid19-{source}-{seed:04d}_seg.nii.gz"
        )


@pytest.mark.slow
def test_training_learns_lesions(tmp_path: Path) -> None:
    # One thread: on 2 cores shared with other jobs, 2 OpenMP threads ran 10x slower.
    torch.set_num_threads(1)
    write_cases(tmp_path / "data", range(5))
    plan = apply_overrides(load_preset("baseline"), SMALL)
    write_plan(plan, tmp_path / "model")
    train_cases, val_cases = split_fold(find_cases(tmp_path / "data"), plan, 0)
    logs = train_fold(train_cases, val_cases, tmp_path / "model" / "fold_0", plan)
    assert logs[-1].loss < 0.7 * logs[0].loss
    assert (tmp_path / "model" / "fold_0" / "log.csv").read_text().count("\n") == 61

    held_out = make_phantom(seed=100, source="A", size=96, n_slices=32, n_lesions=9)
    nets = load_models(tmp_path / "model", plan)
    pred = segment(held_out.ct, nets, plan).mask.array
    truth = held_out.lesion.array
    found = dice(pred, truth)
    all_lung = dice(held_out.lung.array > 0, truth)
    assert found > max(0.05, 2 * all_lung), (found, all_lung)
    assert np.asarray(pred).shape == held_out.ct.shape


def test_bad_training_cases_are_named_and_skipped(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from covseg.cli import app

    torch.set_num_threads(1)
    write_cases(tmp_path / "data", range(3))
    bad = tmp_path / "data" / "volume-covid19-A-0001_seg.nii.gz"
    ct = make_phantom(seed=1, source="A", size=64, n_slices=24).ct
    write_mask(np.zeros(ct.shape, np.uint8), ct, bad)  # fewer slices than its image
    args = ["train", str(tmp_path / "data"), "-o", str(tmp_path / "model"), "--epochs", "1"]
    args += [a for s in [*SMALL, "training.folds=3"] for a in ("--set", s)]
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"{bad}: label does not match its image" in result.output
    assert (tmp_path / "model" / "fold_0" / "last.pt").is_file()

    (tmp_path / "data" / "volume-covid19-A-0002_seg.nii.gz").unlink()
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 1
    assert "volume-covid19-A-0002_ct.nii.gz: no label" in result.output


def test_a_bad_plan_value_stops_training_before_any_case_is_read(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from covseg.cli import app

    (tmp_path / "data").mkdir()  # no cases at all: the plan must be refused first
    args = ["train", str(tmp_path / "data"), "-o", str(tmp_path / "model")]
    result = CliRunner().invoke(app, [*args, "--set", "inference.overlap=1", "--no-progress"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: plan: inference.overlap is 1: expected a number in [0, 1)"
    ), result.output
    assert not (tmp_path / "model").exists()


def test_poly_schedule_follows_nnunet_and_constant_keeps_the_rate() -> None:
    from covseg.model.train import scheduled_lr

    assert scheduled_lr(0.01, "constant", 0.7) == 0.01
    assert scheduled_lr(0.01, "poly", 0.0) == 0.01
    assert scheduled_lr(0.01, "poly", 0.5) == pytest.approx(0.01 * 0.5**0.9)
    assert scheduled_lr(0.01, "poly", 1.3) == 0.0  # past the budget: no step at all
    with pytest.raises(ValueError, match="lr_schedule"):
        scheduled_lr(0.01, "cosine", 0.5)


def test_optimizers_of_a_plan() -> None:
    from covseg.model.train import build_optimizer

    net = torch.nn.Linear(2, 1)
    sgd = build_optimizer(net, {"optimizer": "sgd", "learning_rate": 0.01})
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.99 and sgd.defaults["nesterov"]
    assert isinstance(
        build_optimizer(net, {"optimizer": "adam", "learning_rate": 1e-4}), torch.optim.Adam
    )
    with pytest.raises(ValueError, match="optimizer"):
        build_optimizer(net, {"optimizer": "lbfgs", "learning_rate": 1.0})


def test_batch_dice_ignores_which_patch_holds_the_lesion() -> None:
    from covseg.model.losses import build_loss

    # Two patches: one with a lesion the prediction finds exactly, one empty with one stray
    # positive voxel. Per patch, the empty patch's Dice loss is ~1; over the batch it is small.
    label = torch.zeros(2, 1, 4, 4, 4, dtype=torch.long)
    label[0, 0, :2] = 1
    logits = torch.full((2, 2, 4, 4, 4), -20.0)
    logits[:, 0] = 20.0
    logits[0, 1, :2], logits[0, 0, :2] = 20.0, -20.0
    logits[1, 1, 0, 0, 0], logits[1, 0, 0, 0, 0] = 20.0, -20.0
    from monai.losses import DiceLoss

    per_patch = DiceLoss(to_onehot_y=True, softmax=True, include_background=False)
    batch = DiceLoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    assert float(per_patch(logits, label)) == pytest.approx(0.5, abs=1e-3)
    assert float(batch(logits, label)) == pytest.approx(1 - 64 / 65, abs=1e-3)
    assert float(build_loss("dice_ce", batch=True)(logits, label)) < float(
        build_loss("dice_ce")(logits, label)
    )


def test_training_lung_crop_keeps_every_lesion_and_drops_the_air(tmp_path: Path) -> None:
    from covseg.model.data import load_case

    write_cases(tmp_path, range(1))
    case = find_cases(tmp_path)[0]
    from covseg.io import read_volume

    spacing = [round(float(s), 6) for s in read_volume(case.image).spacing]
    grid = [f"preprocessing.spacing_mm={spacing}", "preprocessing.orientation=RAS"]
    whole = load_case(case, apply_overrides(load_preset("baseline"), grid))
    cropped = load_case(
        case, apply_overrides(load_preset("baseline"), [*grid, "training.lung_crop=true"])
    )
    assert cropped["image"].numel() < 0.7 * whole["image"].numel()
    # On the scan's own grid (no resampling), the box (lungs + 10 mm) holds every lesion voxel.
    assert int(cropped["label"].sum()) == int(whole["label"].sum()) > 0
    # Outside air (0 after the HU window) is mostly gone.
    assert (cropped["image"] == 0).float().mean() < 0.5 * (whole["image"] == 0).float().mean()


def test_a_training_label_stored_in_another_axis_order_is_reoriented(tmp_path: Path) -> None:
    """A label written with its first axis reversed (another tool's habit) trains the same."""
    from covseg.io import Volume, read_volume
    from covseg.model.data import load_case

    write_cases(tmp_path, range(1))
    case = find_cases(tmp_path)[0]
    assert case.label is not None
    label = read_volume(case.label)
    reverse = np.eye(4)
    reverse[0, 0], reverse[0, 3] = -1.0, label.shape[0] - 1  # new i -> old n - 1 - i
    flipped = write_volume(
        Volume(label.array[::-1].copy(), label.affine @ reverse), tmp_path / "flipped.nii.gz"
    )
    plan = apply_overrides(load_preset("baseline"), SMALL)
    expected = load_case(case, plan)
    got = load_case(replace(case, label=flipped), plan)
    assert torch.equal(got["label"], expected["label"]) and int(got["label"].sum()) > 0


def test_a_training_scan_without_lungs_is_named(tmp_path: Path) -> None:
    from covseg.datasets import Case
    from covseg.io import Volume
    from covseg.model.data import load_case

    body = np.full((40, 40, 12), 40.0, np.float32)  # soft tissue only
    body[:4] = -1000.0
    affine = np.diag([4.0, 4.0, 5.0, 1.0])
    ct = write_volume(Volume(body, affine), tmp_path / "volume-covid19-A-0009_ct.nii.gz")
    seg = write_mask(np.zeros(body.shape, np.uint8), Volume(body, affine), tmp_path / "seg.nii.gz")
    plan = apply_overrides(load_preset("baseline"), ["training.lung_crop=true"])
    with pytest.raises(ValueError, match="volume-covid19-A-0009_ct.nii.gz: no lungs"):
        load_case(Case("volume-covid19-A-0009", ct, seg, "A"), plan)


def test_resume_goes_on_from_the_last_epoch_and_keeps_the_clock(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    write_cases(tmp_path / "data", range(3))
    tiny = [*SMALL, "network.features=[4, 4, 8, 8, 8, 4]", "training.folds=3"]
    plan = apply_overrides(load_preset("baseline"), [*tiny, "training.epochs=2"])
    train_cases, val_cases = split_fold(find_cases(tmp_path / "data"), plan, 0)
    fold = tmp_path / "model" / "fold_0"
    first = train_fold(train_cases, val_cases, fold, plan)
    before = load_checkpoint(fold / "last.pt")

    more = apply_overrides(plan, ["training.epochs=4"])
    logs = train_fold(train_cases, val_cases, fold, more, resume=True)
    assert [log.epoch for log in logs] == [3, 4]
    assert logs[0].seconds >= first[-1].seconds  # the clock went on, it did not restart
    rows = (fold / "log.csv").read_text().splitlines()
    assert rows[0] == "epoch,loss,val_dice,seconds"
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3", "4"]
    state = load_checkpoint(fold / "last.pt")
    assert state["epoch"] == 4
    assert state["seconds"] > before["seconds"] > 0
    assert any(not torch.equal(state["model"][k], before["model"][k]) for k in before["model"])

    # The time budget counts the whole training: once spent, a resumed run trains no more
    # (and loads no case for it); neither does one resumed after its last epoch.
    spent = apply_overrides(more, ["training.epochs=10", "training.max_minutes=0.0001"])
    loaded: list[str] = []
    assert train_fold(train_cases, val_cases, fold, spent, resume=True, on_load=loaded.append) == []
    assert train_fold(train_cases, val_cases, fold, more, resume=True, on_load=loaded.append) == []
    assert loaded == []
    assert load_checkpoint(fold / "last.pt")["epoch"] == 4


def test_a_resumed_run_repeats_the_uninterrupted_one(tmp_path: Path) -> None:
    # Batches, crops, flips, noise and dropout come from generators the checkpoint restores:
    # 2 epochs + 2 resumed ones must give the weights of 4 epochs in one go.
    torch.set_num_threads(1)
    write_cases(tmp_path / "data", range(3))
    tiny = [*SMALL, "network.features=[4, 4, 8, 8, 8, 4]", "training.folds=3"]
    plan = apply_overrides(load_preset("baseline"), [*tiny, "training.epochs=4"])
    plan["augmentation"].update(affine_prob=0.5, noise_prob=0.5)  # every generator in use
    train_cases, val_cases = split_fold(find_cases(tmp_path / "data"), plan, 0)
    whole, parts = tmp_path / "whole" / "fold_0", tmp_path / "parts" / "fold_0"
    train_fold(train_cases, val_cases, whole, plan)
    train_fold(train_cases, val_cases, parts, apply_overrides(plan, ["training.epochs=2"]))
    train_fold(train_cases, val_cases, parts, plan, resume=True)
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(parts / "last.pt")
    assert a["epoch"] == b["epoch"] == 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    losses = [
        [r.split(",")[1] for r in (f / "log.csv").read_text().splitlines()[1:]]
        for f in (whole, parts)
    ]
    assert losses[0] == losses[1]
