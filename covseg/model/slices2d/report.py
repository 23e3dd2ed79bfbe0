"""The cross-validation report of a ``slices-2d`` run and its probability files.

``cv_report.json`` / ``.csv`` hold the out-of-fold Dice per slice (raw, post-processed, with and
without TTA, at ``image_size`` alone), per fold and the mean; ``cv_probs.npz`` the out-of-fold
probability maps by case id (8-bit), for ensembling across runs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from covseg.metrics.overlap import dice_unchecked
from covseg.model.slices2d.cv import FoldResult
from covseg.model.slices2d.data import CLASS_NAMES, find_slice_cases, load_consolidation
from covseg.model.slices2d.evaluate import choose_min_area, class_map, class_scores, segment
from covseg.model.slices2d.predict import inference_sizes
from covseg.model.slices2d.settings import Training

#: Columns of ``cv_report.csv``, in order.
COLUMNS = (
    "case_id",
    "fold",
    "dice",
    "dice_postprocessed",
    "dice_tta",
    "dice_no_tta",
    "dice_one_scale",
)


def _all(results: list[FoldResult], variant: str) -> list[npt.NDArray[np.float32]]:
    return [p for r in results for p in r.probs[variant]]


def _scores(
    results: list[FoldResult], variant: str, truths: list[npt.NDArray[np.bool_]], threshold: float
) -> list[float | None]:
    """Each validation slice's Dice of a variant (``None`` in folds that lack it: out of time)."""
    out: list[float | None] = []
    for r in results:
        maps = r.probs.get(variant)
        if maps is None:
            out += [None] * len(r.val_index)
        else:
            out += [
                dice_unchecked(p >= threshold, truths[i])
                for i, p in zip(r.val_index, maps, strict=True)
            ]
    return out


def cv_report(
    ids: list[str],
    truths: list[npt.NDArray[np.bool_]],
    results: list[FoldResult],
    plan: dict[str, Any],
) -> dict[str, Any]:
    """The report of a cross-validation: per-slice rows, per-fold and mean Dice of each
    variant, and the post-processing (minimum component area) chosen on the out-of-fold maps.
    """
    index = [i for r in results for i in r.val_index]
    probs = _all(results, "final")
    fold_of = {i: r.fold for r in results for i in r.val_index}
    threshold = plan["inference"]["threshold"]
    min_area, pp_scores = choose_min_area(probs, [truths[i] for i in index], threshold)
    variants = {
        f"dice_{name}": _scores(results, name, truths, threshold)
        for name in ("tta", "no_tta", "one_scale")
    }
    rows = [
        {
            "case_id": ids[i],
            "fold": fold_of[i],
            "dice": dice_unchecked(p >= threshold, truths[i]),
            "dice_postprocessed": dice_unchecked(segment(p, threshold, min_area), truths[i]),
            **{key: scores[n] for key, scores in variants.items()},
        }
        for n, (i, p) in enumerate(zip(index, probs, strict=True))
    ]

    def mean(key: str) -> float | None:
        """Mean over the slices; ``None`` where some fold had no time for the variant."""
        values = [row[key] for row in rows]
        numbers = [v for v in values if isinstance(v, float)]
        return float(np.mean(numbers)) if len(numbers) == len(values) else None

    train = Training.of(plan)
    return {
        "metric": "mean per-slice Dice at threshold 0.5 (both empty = 1), out-of-fold, "
        + ("mirror TTA" if plan["inference"]["tta"] else "no TTA"),
        "dice_per_fold": {
            r.fold: float(np.mean([row["dice"] for row in rows if row["fold"] == r.fold]))
            for r in results
        },
        "dice_mean": mean("dice"),
        "dice_mean_tta": mean("dice_tta"),
        "dice_mean_no_tta": mean("dice_no_tta"),
        "dice_mean_one_scale": mean("dice_one_scale"),
        "inference_sizes": inference_sizes(plan),
        "dice_mean_postprocessed": pp_scores[min_area],
        "postprocessing_scores": {str(k): v for k, v in pp_scores.items()},
        "min_area_fraction": min_area,
        "train_seconds": float("nan"),  # set by the caller when the run ends
        "iterations_per_network": train.iterations,
        "networks_per_fold": train.members,
        "iterations_trained": {r.fold: r.iterations for r in results},
        "slices": rows,
    }


def class_report(
    data_dir: Path,
    truths: list[npt.NDArray[np.bool_]],
    results: list[FoldResult],
    min_area: float,
    threshold: float,
) -> dict[str, dict[str, float]]:
    """Out-of-fold Dice of each lesion class, with the chosen post-processing; empty where no
    network learnt the classes."""
    if "consolidation" not in results[0].probs:
        return {}
    index = [i for r in results for i in r.val_index]
    solid = load_consolidation(data_dir, find_slice_cases(data_dir), truths)
    expected = [(truths[i] * (1 + solid[i])).astype(np.uint8) for i in index]
    predicted = [
        class_map(p, q, threshold, min_area)
        for p, q in zip(_all(results, "final"), _all(results, "consolidation"), strict=True)
    ]
    return {CLASS_NAMES[k]: v for k, v in class_scores(predicted, expected).items()}


def write_report(
    model_dir: Path, report: dict[str, Any], probs: dict[str, npt.NDArray[np.floating]]
) -> None:
    """Write ``cv_report.json``, ``cv_report.csv`` and ``cv_probs.npz`` into ``model_dir``."""
    (model_dir / "cv_report.json").write_text(json.dumps(report, indent=2))
    save_probs(model_dir / "cv_probs.npz", probs)
    with (model_dir / "cv_report.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(report["slices"])


def summary_lines(report: dict[str, Any], image_size: int) -> list[str]:
    """The lines a finished run prints: Dice per fold, per class, and the mean."""

    def f(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = [f"CV Dice fold {fold}: {score:.4f}" for fold, score in report["dice_per_fold"].items()]
    lines += [
        f"CV Dice {name}: {stats['mean']:.4f} a slice ({stats['slices']:.0f} slices with it), "
        f"{stats['pooled']:.4f} pooled"
        for name, stats in report.get("classes", {}).items()
    ]
    lines.append(
        f"CV Dice mean: {report['dice_mean']:.4f} (mirror TTA {f(report['dice_mean_tta'])}, "
        f"no TTA {f(report['dice_mean_no_tta'])}, "
        f"at {image_size} px only {f(report['dice_mean_one_scale'])}; "
        f"post-processed, min area {report['min_area_fraction']:g}: "
        f"{report['dice_mean_postprocessed']:.4f}); {report['train_seconds']:.0f}s"
    )
    return lines


def save_probs(path: Path, probs: dict[str, npt.NDArray[np.floating]]) -> None:
    """Store probability maps by case id, quantised to 8 bits (for ensembling across runs)."""
    quantised = {k: np.round(np.asarray(v) * 255).astype(np.uint8) for k, v in probs.items()}
    np.savez_compressed(path, **quantised)  # type: ignore[arg-type]


def load_probs(path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """Probability maps stored by :func:`save_probs`."""
    with np.load(path) as data:
        return {k: data[k].astype(np.float32) / 255 for k in data.files}
