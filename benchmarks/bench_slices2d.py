"""Cross-validation of the ``slices-2d`` preset on MedSeg, with its ablation.

Parts (``--parts``), all on the same 5 folds:

* ``recipe``: the preset as configured, plus pseudo-labels on the unlabelled slices. Reports
  the teacher (before pseudo-labels), the pseudo-label stage, a control fine-tuned as long
  without pseudo-labels, and the final models without mirror TTA;
* ``no-aug``: the teacher stage trained without augmentation;
* ``seed1``: the teacher stage with another seed; its out-of-fold probabilities are saved, and
  ``--ensemble-with MODEL/cv_probs.npz`` (a seed-0 ``covseg train`` run) scores a 2-model
  ensemble against the single models (the fold ensemble itself cannot be scored in
  cross-validation: every other fold's model has seen the slice).

Prints mean per-slice Dice (threshold 0.5) per fold and overall for each row and merges them
into the JSON file ``-o``. Usage::

    .venv/bin/python benchmarks/bench_slices2d.py ../shared/data/medseg/train -o cv.json \
        --unlabelled ../../ny-sbu
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covseg.metrics import dice
from covseg.model.plan import apply_overrides, load_preset
from covseg.model.slices2d.cv import FoldOptions, cross_validate, fold_assignment
from covseg.model.slices2d.evaluate import choose_min_area
from covseg.model.slices2d.report import load_probs, save_probs


def scores(
    results: list[Any], truths: list[np.ndarray], variant: str, probs_of: Any = None
) -> dict[str, Any]:
    """Per-fold and mean per-slice Dice of one variant's out-of-fold probabilities."""
    per_fold, all_scores = {}, []
    for r in results:
        probs = probs_of(r) if probs_of else r.probs[variant]
        s = [dice(p >= 0.5, truths[i]) for p, i in zip(probs, r.val_index, strict=True)]
        per_fold[r.fold] = float(np.mean(s))
        all_scores += s
    return {"per_fold": per_fold, "mean": float(np.mean(all_scores))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with images/ and lesion/")
    parser.add_argument("-o", "--out", type=Path, default=Path("slices2d_cv.json"))
    parser.add_argument(
        "--parts", default="recipe,no-aug,seed1", help="comma-separated: recipe, no-aug, seed1"
    )
    parser.add_argument(
        "--ensemble-with",
        type=Path,
        help="cv_probs.npz of a seed-0 run (covseg train) to ensemble with the seed-1 teachers",
    )
    parser.add_argument(
        "--unlabelled",
        default="../../ny-sbu",
        help="unlabelled slices for the recipe's pseudo-labels, relative to DATA",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folds", help="comma-separated folds to run (default: all)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        help="plan override KEY=VALUE (YAML value), e.g. image_size=224; repeatable",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plan = apply_overrides(load_preset("slices-2d"), args.overrides)
    say = print
    rows: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}

    def record(name: str, row: dict[str, Any]) -> None:
        rows[name] = row
        folds = "  ".join(f"{v:.3f}" for v in row["per_fold"].values())
        print(f"{name:<44} {folds}  mean {row['mean']:.4f}", flush=True)
        args.out.write_text(json.dumps(rows, indent=2))

    parts = args.parts.split(",")
    only = [int(f) for f in args.folds.split(",")] if args.folds else None
    if "recipe" in parts:
        recipe = copy.deepcopy(plan)
        recipe["pseudo_labels"].update(enabled=True, unlabelled_dir=args.unlabelled)
        start = time.perf_counter()
        options = FoldOptions(control=True, progress=True)
        _, truths, folds = cross_validate(args.data, recipe, only, options, on_message=say)
        rows["recipe_seconds"] = time.perf_counter() - start
        record("teacher (preset, TTA)", scores(folds, truths, "teacher"))
        record("teacher + fine-tune without pseudo-labels", scores(folds, truths, "control"))
        record("teacher + fine-tune with pseudo-labels", scores(folds, truths, "tta"))
        record("  same, without TTA", scores(folds, truths, "no_tta"))
        probs = [p for r in folds for p in r.probs["final"]]
        best, pp = choose_min_area(probs, [truths[i] for r in folds for i in r.val_index])
        rows["postprocessing"] = {"chosen_min_area_fraction": best, "scores": pp}
        print(f"post-processing (pseudo-label model): {pp}, chosen {best}", flush=True)
    if "no-aug" in parts:
        no_aug = copy.deepcopy(plan)
        no_aug["training"]["augment"] = False
        no_aug["pseudo_labels"]["enabled"] = False
        _, truths, folds = cross_validate(args.data, no_aug, only, on_message=say)
        record("teacher without augmentation", scores(folds, truths, "tta"))
        record("  same, without TTA", scores(folds, truths, "no_tta"))
    if "seed1" in parts:
        seed1 = copy.deepcopy(plan)
        seed1["training"]["seed"] = 1
        seed1["pseudo_labels"]["enabled"] = False
        ids, truths, folds = cross_validate(args.data, seed1, only, on_message=say)
        record("teacher, seed 1", scores(folds, truths, "tta"))
        save_probs(
            args.out.with_suffix(".seed1.npz"),
            {ids[i]: p for r in folds for i, p in zip(r.val_index, r.probs["final"], strict=True)},
        )
    if args.ensemble_with:
        ids, truths, folds = cross_validate(args.data, plan, folds=[])
        other = load_probs(args.out.with_suffix(".seed1.npz"))
        seed0 = load_probs(args.ensemble_with)
        names = sorted(seed0, key=ids.index)
        fold_of = fold_assignment(
            len(ids), plan["training"]["folds"], plan["training"]["split_seed"]
        )
        for label, probs_of in (
            ("seed-0 run (single model per fold)", lambda k: seed0[k]),
            ("ensemble of seed-0 run and seed-1 teacher", lambda k: (seed0[k] + other[k]) / 2),
        ):
            per = {}
            for fold in sorted(set(fold_of.tolist())):
                keys = [k for k in names if fold_of[ids.index(k)] == fold]
                per[fold] = float(
                    np.mean([dice(probs_of(k) >= 0.5, truths[ids.index(k)]) for k in keys])
                )
            all_ = [dice(probs_of(k) >= 0.5, truths[ids.index(k)]) for k in names]
            record(label, {"per_fold": per, "mean": float(np.mean(all_))})


if __name__ == "__main__":
    main()
