"""Cross-validation of the ``slices-2d`` preset on MedSeg, with its ablation.

Runs, on the same 5 folds:

* ``recipe``: the preset with pseudo-labels on the unlabelled slices. Reports the teacher (before
  pseudo-labels), the pseudo-label stage, a control fine-tuned as long without pseudo-labels,
  and the final models without mirror TTA;
* ``no augmentation``: the teacher stage trained without augmentation;
* ``second seed``: the teacher stage with another seed, to measure a 2-model ensemble against
  single models (the fold ensemble itself cannot be scored in cross-validation: every other
  fold's model has seen the slice).

Prints mean per-slice Dice (threshold 0.5) per fold and overall for each row, and writes them as
JSON. Usage::

    .venv/bin/python benchmarks/bench_slices2d.py ../shared/data/medseg/train -o cv.json
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

from covseg.model.slices2d import cross_validate, load_preset
from covseg.model.slices2d_eval import choose_min_area, dice


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
    parser.add_argument("--iterations", type=int, help="override the teacher iterations")
    args = parser.parse_args()
    torch.set_num_threads(2)
    plan = load_preset()
    if args.iterations:
        plan["training"]["iterations"] = args.iterations
    rows: dict[str, Any] = {}

    def record(name: str, row: dict[str, Any]) -> None:
        rows[name] = row
        folds = "  ".join(f"{v:.3f}" for v in row["per_fold"].values())
        print(f"{name:<44} {folds}  mean {row['mean']:.4f}", flush=True)
        args.out.write_text(json.dumps(rows, indent=2))

    recipe = copy.deepcopy(plan)
    recipe["pseudo_labels"]["enabled"] = True
    start = time.perf_counter()
    _, truths, main_folds = cross_validate(args.data, recipe, control=True, progress=True)
    rows["recipe_seconds"] = time.perf_counter() - start
    record("teacher (aug, TTA)", scores(main_folds, truths, "teacher"))
    record("teacher + fine-tune without pseudo-labels", scores(main_folds, truths, "control"))
    record("teacher + fine-tune with pseudo-labels", scores(main_folds, truths, "final"))
    record("  same, without TTA", scores(main_folds, truths, "no_tta"))
    probs = [p for r in main_folds for p in r.probs["final"]]
    best, pp = choose_min_area(probs, [truths[i] for r in main_folds for i in r.val_index])
    rows["postprocessing"] = {"chosen_min_area_fraction": best, "scores": pp}
    print(f"post-processing (pseudo-label model): {pp}, chosen {best}", flush=True)

    no_aug = copy.deepcopy(plan)
    no_aug["training"]["augment"] = False
    _, _, plain = cross_validate(args.data, no_aug)
    record("teacher without augmentation", scores(plain, truths, "final"))

    seed2 = copy.deepcopy(plan)
    seed2["training"]["seed"] = 1
    _, _, other = cross_validate(args.data, seed2)
    record("teacher, seed 1", scores(other, truths, "final"))
    by_fold = {r.fold: r for r in other}
    record(
        "ensemble of 2 teachers (seeds 0, 1)",
        scores(
            main_folds,
            truths,
            "",
            lambda r: [
                (a + b) / 2
                for a, b in zip(r.probs["teacher"], by_fold[r.fold].probs["final"], strict=True)
            ],
        ),
    )


if __name__ == "__main__":
    main()
