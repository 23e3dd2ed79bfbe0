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
    if plan.get("dimensions", 3) == 3 and plan.get("format_version") != FORMAT_VERSION:
        raise PlanError(
            f"{path}: plan format {plan.get('format_version')!r}, this covseg reads "
            f"{FORMAT_VERSION} (retrain the model or use the covseg version that made it)"
        )
    return plan


def _load_yaml(path: Path) -> Plan:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"{path}: unreadable plan ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise PlanError(f"{path}: a plan must be a YAML mapping")
    return data
