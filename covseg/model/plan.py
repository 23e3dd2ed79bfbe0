"""Plan files: the readable YAML that fixes every value of a training run.

A preset (``covseg/model/presets/<name>.yaml``) is a plan template; ``covseg train`` copies it,
applies ``--set KEY=VALUE`` overrides and writes the result to ``MODEL_DIR/plan.yaml``, which
``covseg predict`` then reads back.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

#: Plan format this version of covseg writes and reads.
FORMAT_VERSION = 1
PRESET_DIR = Path(__file__).with_name("presets")
PLAN_FILE = "plan.yaml"

Plan = dict[str, Any]

#: The pipelines a plan can name (``pipeline``): ``volume``, the 3D CT pipeline of the
#: ``baseline`` and ``auto`` presets (``auto-2d`` too: one-slice patches of volumes), and
#: ``slices-2d``, the pipeline of single 2D slices (:mod:`covseg.model.slices2d`).
PIPELINES = ("volume", "slices-2d")


class PlanError(ValueError):
    """A plan or model folder that cannot be used (message names the file and the problem)."""


def preset_names() -> list[str]:
    """Names of the presets shipped with covseg (YAML files and the ``auto`` planner)."""
    return sorted({p.stem for p in PRESET_DIR.glob("*.yaml")} | {"auto", "auto-2d"})


def load_preset(name: str) -> Plan:
    """The plan template of preset ``name`` (``baseline``, ``slices-2d``...)."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise PlanError(f"unknown preset {name!r} (choose from {', '.join(preset_names())})")
    return _load_yaml(path)


def pipeline_of(plan: Plan) -> str:
    """The pipeline that trains and applies ``plan``: its ``pipeline`` value; a plan written
    before that key is ``slices-2d`` with ``dimensions: 2``, else ``volume``.

    Raises
    ------
    PlanError
        For a ``pipeline`` value that is not one of :data:`PIPELINES`.
    """
    value = plan.get("pipeline")
    if value is None:
        return "slices-2d" if plan.get("dimensions") == 2 else "volume"
    if value not in PIPELINES:
        raise PlanError(f"plan: pipeline is {value!r}: use {' or '.join(PIPELINES)}")
    return str(value)


def apply_overrides(plan: Plan, overrides: list[str]) -> Plan:
    """A copy of ``plan`` with ``SECTION.KEY=VALUE`` overrides applied (VALUE parsed as YAML).

    Examples
    --------
    >>> apply_overrides({"training": {"epochs": 500}}, ["training.epochs=3"])["training"]
    {'epochs': 3}
    """
    plan = copy.deepcopy(plan)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise PlanError(f"override {item!r}: expected SECTION.KEY=VALUE")
        *parents, leaf = key.strip().split(".")
        node = plan
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise PlanError(f"override {item!r}: the plan has no section {part!r}")
            node = node[part]
        if leaf not in node:
            raise PlanError(f"override {item!r}: the plan has no value {key!r}")
        node[leaf] = yaml.safe_load(text)
    return plan


#: Named choices of a 3D plan (``SECTION.KEY``: allowed values); the builders name the same.
CHOICES: dict[str, tuple[str, ...]] = {
    "network.name": ("BasicUNet", "DynUNet"),
    "training.loss": ("dice_ce", "dice_focal", "dice_topk", "noise_robust_dice"),
    "training.optimizer": ("adam", "sgd"),
    "training.lr_schedule": ("constant", "poly"),
    "inference.blend_mode": ("gaussian", "constant"),
    "inference.padding_mode": ("constant", "reflect", "replicate", "circular"),
    "inference.resample": ("labels", "probabilities"),
}
#: Numbers of a 3D plan that must lie in an interval: (low, high, brackets), "[)": low
#: included, high excluded.
RANGES: dict[str, tuple[float, float, str]] = {
    "augmentation.affine_prob": (0.0, 1.0, "[]"),
    "augmentation.noise_prob": (0.0, 1.0, "[]"),
    "augmentation.flip_prob": (0.0, 1.0, "[]"),
    "augmentation.noise_std": (0.0, float("inf"), "[)"),
    "network.dropout": (0.0, 1.0, "[)"),
    "training.learning_rate": (0.0, float("inf"), "()"),
    "inference.overlap": (0.0, 1.0, "[)"),
    "inference.tta_noise_std": (0.0, float("inf"), "[)"),
    "inference.lung_margin_mm": (0.0, float("inf"), "[)"),
    "postprocess.min_component_ml": (0.0, float("inf"), "[)"),
    "postprocess.lung_dilation_mm": (0.0, float("inf"), "[)"),
}
#: Counts of a 3D plan and their least value.
COUNTS: dict[str, int] = {
    "augmentation.crop_samples": 1,
    "training.batch_size": 1,
    "training.epochs": 1,
    "training.validation_interval": 1,
    "training.folds": 2,
    "inference.sw_batch_size": 1,
    "inference.tta_noise_repeats": 0,
}
#: Sizes of a 3D plan: ``SECTION.KEY`` -> (length, integers?), every entry > 0.
SIZES: dict[str, tuple[int, bool]] = {
    "preprocessing.spacing_mm": (3, False),
    "augmentation.pad_to": (2, True),
    "augmentation.crop_size": (3, True),
    "inference.roi_size": (3, True),
}


def check_plan(plan: Plan, where: str = "plan") -> None:
    """Refuse a 3D plan value that would fail (or silently mislead) later, before any work.

    Only the values present are checked (an ``auto`` plan's network has other keys);
    ``slices-2d`` plans are checked by :class:`covseg.model.slices2d.settings.Training`.
    ``where`` (a file, or "plan") starts the message, which names the key, the value and what
    is allowed.
    """
    if pipeline_of(plan) != "volume":
        return

    def fail(key: str, value: Any, expected: str) -> PlanError:
        return PlanError(f"{where}: {key} is {value!r}: {expected}")

    for key, value in _values(plan):
        if key in CHOICES and value not in CHOICES[key]:
            raise fail(key, value, "use " + " or ".join(CHOICES[key]))
        if key in RANGES and not _in_interval(value, *RANGES[key]):
            low, high, brackets = RANGES[key]
            interval = f"{brackets[0]}{low:g}, {high:g}{brackets[1]}"
            raise fail(key, value, f"expected a number in {interval}")
        if key in COUNTS and not (_is_int(value) and value >= COUNTS[key]):
            raise fail(key, value, f"expected a whole number >= {COUNTS[key]}")
        if key in SIZES:
            length, whole = SIZES[key]
            ok = isinstance(value, list) and len(value) == length
            ok = ok and all((_is_int(v) if whole else _is_number(v)) and v > 0 for v in value)
            if not ok:
                kind = "whole numbers" if whole else "numbers"
                raise fail(key, value, f"expected {length} positive {kind}")
    window = plan.get("preprocessing", {}).get("intensity", {})
    if "hu_min" in window and not (
        _is_number(window["hu_min"])
        and _is_number(window.get("hu_max"))
        and window["hu_min"] < window["hu_max"]
    ):
        pair = [window.get("hu_min"), window.get("hu_max")]
        raise fail("preprocessing.intensity hu_min, hu_max", pair, "expected hu_min < hu_max (HU)")
    if "std" in window and not (_is_number(window["std"]) and window["std"] > 0):
        raise fail("preprocessing.intensity.std", window["std"], "expected a positive HU spread")
    budget = plan.get("training", {}).get("max_minutes")
    if budget is not None and not (_is_number(budget) and budget > 0):
        raise fail("training.max_minutes", budget, "expected a positive number of minutes or null")


def _values(plan: Plan) -> list[tuple[str, Any]]:
    """(``SECTION.KEY``, value) of every entry one level below the plan's sections."""
    return [
        (f"{section}.{key}", value)
        for section, entries in plan.items()
        if isinstance(entries, dict)
        for key, value in entries.items()
    ]


def _in_interval(value: Any, low: float, high: float, brackets: str) -> bool:
    if not _is_number(value):
        return False
    above = low <= value if brackets[0] == "[" else low < value
    below = value <= high if brackets[1] == "]" else value < high
    return above and below


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def write_plan(plan: Plan, model_dir: Path) -> Path:
    """Write ``plan`` to ``model_dir/plan.yaml`` (key order kept, so it reads like the preset)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / PLAN_FILE
    path.write_text(yaml.safe_dump(plan, sort_keys=False, default_flow_style=None))
    return path


def read_plan(model_dir: Path) -> Plan:
    """The plan of a trained model folder, refusing folders of another format version."""
    path = model_dir / PLAN_FILE
    if not path.is_file():
        raise PlanError(f"{model_dir}: not a covseg model folder (no {PLAN_FILE})")
    plan = _load_yaml(path)
    if pipeline_of(plan) == "volume" and plan.get("format_version") != FORMAT_VERSION:
        raise PlanError(
            f"{path}: plan format {plan.get('format_version')!r}, this covseg reads "
            f"{FORMAT_VERSION} (retrain the model or use the covseg version that made it)"
        )
    check_plan(plan, str(path))
    return plan


def _load_yaml(path: Path) -> Plan:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"{path}: unreadable plan ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise PlanError(f"{path}: a plan must be a YAML mapping")
    return data
