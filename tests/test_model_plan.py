"""The baseline preset reproduces the organizers' published MONAI baseline value for value
(tutorials 3d_segmentation/challenge_baseline/run_net.py); plan files round-trip."""

from pathlib import Path

import pytest

from covseg.datasets import Case
from covseg.model.data import make_folds
from covseg.model.plan import (
    PlanError,
    apply_overrides,
    check_plan,
    load_preset,
    read_plan,
    write_plan,
)


def test_baseline_plan_has_the_published_values() -> None:
    plan = load_preset("baseline")
    pre, aug, net = plan["preprocessing"], plan["augmentation"], plan["network"]
    train, infer = plan["training"], plan["inference"]
    assert pre["orientation"] == "LPS"
    assert pre["spacing_mm"] == [1.25, 1.25, 5.0]
    assert pre["intensity"] == {"hu_min": -1000.0, "hu_max": 500.0, "clip": True}
    assert (aug["pad_to"], aug["pad_mode"]) == ([192, 192], "reflect")
    assert aug["affine_prob"] == 0.15
    assert aug["rotate_range_rad"] == [0.05, 0.05, 0.0]
    assert aug["scale_range"] == [0.1, 0.1, 0.0]
    assert (aug["crop_size"], aug["crop_samples"]) == ([192, 192, 16], 3)
    assert (aug["noise_prob"], aug["noise_std"]) == (0.15, 0.01)
    assert (aug["flip_axes"], aug["flip_prob"]) == ([0, 1, 2], 0.5)
    assert net == {
        "name": "BasicUNet",
        "features": [32, 32, 64, 128, 256, 32],
        "dropout": 0.1,
        "out_channels": 2,
    }
    assert (train["batch_size"], train["loss"], train["optimizer"]) == (2, "dice_ce", "adam")
    assert (train["learning_rate"], train["epochs"], train["amp"]) == (1e-4, 500, True)
    assert train["seed"] == 0
    # The published baseline keeps a constant learning rate and per-patch Dice.
    assert (train["lr_schedule"], train["batch_dice"]) == ("constant", False)
    assert infer["roi_size"] == [192, 192, 16]
    assert (infer["sw_batch_size"], infer["overlap"]) == (2, 0.5)
    assert (infer["blend_mode"], infer["padding_mode"]) == ("gaussian", "replicate")
    # 13 TTA passes: the image, then 4 noisy copies (std 0.01) each also flipped on 2 axes.
    assert 1 + infer["tta_noise_repeats"] * (1 + len(infer["tta_flip_axes"])) == 13
    assert infer["tta_noise_std"] == 0.01


def test_plan_round_trip_and_overrides(tmp_path: Path) -> None:
    plan = apply_overrides(load_preset("baseline"), ["training.epochs=3", "inference.tta=true"])
    assert plan["training"]["epochs"] == 3 and plan["inference"]["tta"] is True
    write_plan(plan, tmp_path)
    assert read_plan(tmp_path) == plan
    with pytest.raises(PlanError, match="no value"):
        apply_overrides(plan, ["training.epoch=3"])


def test_a_model_folder_of_another_version_is_refused(tmp_path: Path) -> None:
    write_plan({**load_preset("baseline"), "format_version": 99}, tmp_path)
    with pytest.raises(PlanError, match="plan.yaml: plan format 99"):
        read_plan(tmp_path)


def test_folds_are_deterministic_disjoint_and_stratified() -> None:
    cases = [Case(f"volume-covid19-{s}-{i:04d}", None, None, s) for s in "AB" for i in range(10)]
    folds = make_folds(cases, 5, seed=0)
    assert folds == make_folds(list(reversed(cases)), 5, seed=0)
    assert sorted(i for f in folds for i in f) == sorted(c.case_id for c in cases)
    assert all(sum("-B-" in i for i in f) == 2 for f in folds)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("training.optimizer=adamw", "training.optimizer is 'adamw': use adam or sgd"),
        ("training.loss=dice", "training.loss is 'dice': use dice_ce or"),
        ("inference.resample=linear", "inference.resample is 'linear': use labels or"),
        ("inference.overlap=1.0", r"inference.overlap is 1.0: expected a number in \[0, 1\)"),
        ("augmentation.flip_prob=1.5", r"flip_prob is 1.5: expected a number in \[0, 1\]"),
        ("augmentation.noise_prob=yes", "noise_prob is True"),  # YAML reads yes as a boolean
        ("training.learning_rate=0", "learning_rate is 0"),
        ("training.batch_size=0", "batch_size is 0: expected a whole number >= 1"),
        ("training.folds=1", "folds is 1: expected a whole number >= 2"),
        ("augmentation.crop_size=[32, 32]", "crop_size is \\[32, 32\\]: expected 3 positive"),
        ("inference.roi_size=[32, 32.5, 16]", "expected 3 positive whole numbers"),
        ("preprocessing.spacing_mm=[1, 1, -5]", "spacing_mm is \\[1, 1, -5\\]"),
        ("postprocess.min_component_ml=-1", "min_component_ml is -1"),
        ("training.max_minutes=0", "max_minutes is 0: expected a positive number"),
        (
            "preprocessing.intensity={hu_min: 500, hu_max: -1000, clip: true}",
            r"hu_min, hu_max is \[500, -1000\]: expected hu_min < hu_max",
        ),
    ],
)
def test_a_bad_plan_value_is_refused_naming_the_key(override: str, expected: str) -> None:
    with pytest.raises(PlanError, match=expected):
        check_plan(apply_overrides(load_preset("baseline"), [override]))


def test_a_zscore_window_without_spread_is_refused() -> None:
    plan = load_preset("baseline")
    plan["preprocessing"]["intensity"] = {"kind": "zscore", "clip_min": -1000.0, "clip_max": 100.0}
    plan["preprocessing"]["intensity"].update(mean=-600.0, std=0.0)
    with pytest.raises(PlanError, match="intensity.std is 0.0: expected a positive HU spread"):
        check_plan(plan)


def test_the_presets_and_their_usual_overrides_pass_the_check() -> None:
    check_plan(load_preset("baseline"))
    check_plan(
        apply_overrides(
            load_preset("baseline"),
            ["training.max_minutes=9.5", "inference.overlap=0", "training.optimizer=sgd"],
        )
    )


def test_a_model_folder_with_a_bad_plan_value_is_refused_naming_the_file(tmp_path: Path) -> None:
    write_plan(apply_overrides(load_preset("baseline"), ["inference.resample=cubic"]), tmp_path)
    with pytest.raises(PlanError, match=r"plan.yaml: inference.resample is 'cubic'"):
        read_plan(tmp_path)


def test_the_pipeline_is_read_from_one_key_and_old_plans_by_their_dimensions() -> None:
    from covseg.model.plan import pipeline_of

    assert pipeline_of(load_preset("baseline")) == "volume"
    assert pipeline_of(load_preset("slices-2d")) == "slices-2d"
    assert pipeline_of({"dimensions": 2}) == "slices-2d"  # a model written before the key
    assert pipeline_of({"dimensions": 3}) == pipeline_of({}) == "volume"
    with pytest.raises(PlanError, match="pipeline is '2d': use volume or slices-2d"):
        pipeline_of({"pipeline": "2d"})


def test_the_model_package_imports_nothing_of_the_layers_above_it() -> None:
    import ast

    above = ("covseg.quantify", "covseg.ranking", "covseg.platform", "covseg.demo", "covseg.cli")
    package = Path(__file__).parents[1] / "covseg" / "model"
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(above), (path, node.module)
