"""The ``slices-2d`` preset: train and apply a 2D U-Net ensemble on single CT slices.

``train_slices_2d`` runs the k-fold cross-validation (printing the Dice of each fold and the
mean), chooses the post-processing on the out-of-fold predictions and writes the fold models,
``plan.yaml`` and a CV report. ``predict_slices_2d`` applies the fold ensemble at the plan's
input sizes (``inference.scales``; mirror TTA too with ``inference.tta``).

Model folder layout::

    plan.yaml              the preset as trained, plus the chosen post-processing
    fold_K/model.pt        weights of fold K (its further members: model_1.pt, model_2.pt ...)
    cv_report.json/.csv    out-of-fold Dice per slice, per fold and overall
    cv_probs.npz           out-of-fold probability maps by case id (8-bit)

With ``training.classes: true`` the networks also tell ground glass from consolidation (trained
on the folder's ``classes/`` maps); with ``mixed`` (the preset) every second network of a fold
does. The CV report then adds each class's Dice and ``covseg predict`` writes class maps (0/1/2)
to ``OUT_DIR/classes/`` beside the lesion masks.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import yaml
from PIL import Image

from covseg.model.slices2d_cv import FoldResult, fold_assignment, members, prepare, run_fold
from covseg.model.slices2d_cv import unlabelled_images as read_unlabelled
from covseg.model.slices2d_data import (
    CLASS_FOLDER,
    CLASS_NAMES,
    DICOM_SUFFIXES,
    HU_WINDOW,
    body_box,
    find_slice_cases,
    hu_to_8bit,
    list_images,
    load_consolidation,
    load_labelled,
    read_hu,
    read_slice,
)
from covseg.model.slices2d_eval import choose_min_area, class_map, class_scores, dice, segment
from covseg.model.slices2d_net import (
    inference_sizes,
    make_network,
    outputs_of,
    predict_slices,
    to_tensor,
)

#: The preset file shipped with covseg.
PRESET_PATH = Path(__file__).parent / "presets" / "slices-2d.yaml"


def load_preset() -> dict[str, Any]:
    """The default ``slices-2d`` plan, read from :data:`PRESET_PATH`."""
    with PRESET_PATH.open() as f:
        plan: dict[str, Any] = yaml.safe_load(f)
    return plan


def cross_validate(
    data_dir: Path,
    plan: dict[str, Any],
    folds: list[int] | None = None,
    control: bool = False,
    progress: bool = False,
) -> tuple[list[str], list[npt.NDArray[np.bool_]], list[FoldResult]]:
    """Run the cross-validation; returns the case ids, the masks and the trained folds."""
    plan = resolve_classes(plan, data_dir)
    cases = find_slice_cases(data_dir)
    pairs = load_labelled(cases)
    k = plan["training"]["folds"]
    if len(cases) < k:
        raise ValueError(f"{data_dir}: {len(cases)} slices, fewer than {k} folds")
    size = plan["image_size"]
    truths = [p[1] for p in pairs]
    solid = load_consolidation(data_dir, cases, truths) if uses_classes(plan) else None
    originals = [p[0] for p in pairs]
    images, masks = prepare(originals, truths, size, solid)
    extra = read_unlabelled(data_dir, plan)
    unlabelled = to_tensor(extra, size, mask=False) if extra else None
    assignment = fold_assignment(len(cases), k, plan["training"]["split_seed"])
    wanted = folds if folds is not None else list(range(k))
    for fold in wanted:
        if not 0 <= fold < k:
            raise ValueError(f"fold {fold} out of range 0..{k - 1}")
    args = (assignment, images, masks, originals, unlabelled, plan, control, progress)
    processes, threads = fold_processes(len(wanted), plan["training"].get("fold_processes"))
    results = []
    for result, elapsed in _run_folds(wanted, args, processes, threads):
        truths = [pairs[i][1] for i in result.val_index]
        score = np.mean(
            [dice(p >= 0.5, t) for p, t in zip(result.probs["final"], truths, strict=True)]
        )
        print(
            f"fold {result.fold}: Dice {score:.4f} ({len(truths)} slices, {elapsed:.0f}s)",
            flush=True,
        )
        results.append(result)
    results.sort(key=lambda r: r.fold)
    return [c.case_id for c in cases], [p[1] for p in pairs], results


def uses_classes(plan: dict[str, Any]) -> bool:
    """Whether some of the plan's networks learn the lesion classes (``training.classes``:
    ``true`` or ``mixed``; default false), so the folder's ``classes/`` maps are needed."""
    value = plan["training"].get("classes", False)
    if not (isinstance(value, bool) or value == "mixed"):
        raise ValueError(f"training.classes must be true, false or mixed, got {value!r}")
    return value is not False


def resolve_classes(plan: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """The plan to train on ``data_dir``: ``training.classes: mixed`` without a ``classes/``
    folder there becomes ``false`` (a binary ensemble), with a printed note."""
    if plan["training"].get("classes") == "mixed" and not (data_dir / CLASS_FOLDER).is_dir():
        print(
            f"{data_dir}: no {CLASS_FOLDER}/ maps, so every network learns the lesion only "
            "(training.classes: mixed -> false)",
            flush=True,
        )
        return {**plan, "training": {**plan["training"], "classes": False}}
    return plan


def fold_processes(n_folds: int, setting: int | str | None) -> tuple[int, int]:
    """(processes, torch threads each) for training ``n_folds`` folds on this machine.

    ``auto`` (or ``None``) trains as many folds at once as there are cores, each on the cores'
    share: small 2D convolutions use threads poorly (one 224 x 224 step: 1.55 s on 2 threads,
    2.1 s on 1), so two single-thread folds side by side do 1.4x the work of one on two.
    """
    cores = os.cpu_count() or 1
    processes = cores if setting in (None, "auto") else int(setting)
    processes = max(1, min(processes, n_folds))
    return processes, max(1, cores // processes)


#: Slow-down of a training step when folds train side by side (shared caches and memory
#: bandwidth): measured 0.26 s a step side by side against 0.20 s alone.
SIDE_BY_SIDE = 1.3
#: Duration of a last, partial wave of folds (which share all the cores) relative to a full
#: one: measured 0.63-0.70 (one fold on 2 threads against two side by side on 1 each).
PARTIAL_WAVE = 0.75
#: Share of ``training.max_minutes`` kept for loading, out-of-fold prediction and the report.
RESERVE = 0.1
#: Fewest iterations a network is given, whatever the budget says.
MIN_ITERATIONS = 50


def step_seconds(plan: dict[str, Any], threads: int, steps: int = 5) -> float:
    """Seconds one training step of the plan's network takes here, on ``threads`` threads.

    Times :func:`train_network` on random slices for ``2 + steps`` and for 2 iterations: the
    difference is ``steps`` steps without the set-up and the first, slower steps.
    """
    from covseg.model.slices2d_net import train_network

    size, batch = int(plan["image_size"]), int(plan["training"]["batch_size"])
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 1, size, size, generator=gen)
    channels = 2 if uses_classes(plan) else 1
    masks = (torch.rand(batch, channels, size, size, generator=gen) > 0.8).float()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = []
        for n in (2, 2 + steps):
            start = time.perf_counter()
            train_network(images, masks, plan, seed=0, iterations=n)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return max(times[1] - times[0], 1e-6) / steps


def fit_budget(plan: dict[str, Any], n_folds: int) -> tuple[int, int, float]:
    """Networks per fold and iterations per network that fit ``training.max_minutes`` here.

    Returns ``(members, iterations, step_seconds)``. The plan's ``training.members`` and
    ``training.iterations`` are the most a run gets (a fast machine trains exactly the preset).
    On a slower one the ensemble shrinks first, since a fully trained network is worth more than
    two half-trained ones; only when a single network a fold does not fit are its iterations cut.
    The optional pseudo-label fine-tuning is not counted. Without ``max_minutes`` the plan's
    values stand. The values used are written to the model's
    ``plan.yaml``, so ``--set training.max_minutes=null`` with them repeats a run anywhere.
    """
    train = plan["training"]
    cap, wanted = int(train["iterations"]), members(plan)
    budget = train.get("max_minutes")
    if not budget:
        return wanted, cap, float("nan")
    processes, threads = fold_processes(n_folds, train.get("fold_processes"))
    full, rest = divmod(n_folds, processes)
    waves = full + (PARTIAL_WAVE if rest else 0.0)
    step = step_seconds(plan, threads)
    # Iterations the budget buys for one network in each fold.
    steps = 60.0 * float(budget) * (1 - RESERVE) / (waves * step * SIDE_BY_SIDE)
    count = max(1, min(wanted, int(steps // cap)))
    return count, max(MIN_ITERATIONS, min(cap, int(steps / count))), step


def _timed_fold(fold: int, args: tuple[Any, ...], threads: int) -> tuple[FoldResult, float]:
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    result = run_fold(fold, *args)
    return result, time.perf_counter() - start


def _run_folds(
    folds: list[int], args: tuple[Any, ...], processes: int, threads: int
) -> Iterator[tuple[FoldResult, float]]:
    """Train ``folds`` (in ``processes`` worker processes when more than one), as they finish.

    Folds that would run short of a full set of workers at the end (5 folds on 2 cores: the
    fifth) run afterwards with the cores shared among them instead of leaving cores idle.
    """
    if processes == 1:
        for fold in folds:
            yield _timed_fold(fold, args, 0)  # keep the caller's thread setting
        return
    full = len(folds) - len(folds) % processes
    waves = [(folds[:full], processes, threads)]
    if full < len(folds):
        rest = len(folds) - full
        waves.append((folds[full:], rest, max(1, processes * threads // rest)))
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    for wave, workers, each in waves:  # fold_processes caps processes at len(folds): no empty wave
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            jobs = [pool.submit(_timed_fold, fold, args, each) for fold in wave]
            for job in as_completed(jobs):
                yield job.result()


def train_slices_2d(
    data_dir: Path, model_dir: Path, plan: dict[str, Any], folds: list[int] | None, progress: bool
) -> None:
    """Cross-validate the slices-2d recipe on ``data_dir`` and write the fold models.

    Parameters
    ----------
    data_dir
        Folder with ``images/`` (PNG/JPG) and ``lesion/`` (or ``labels/``) masks, 0/255.
    model_dir
        Output folder (created): ``plan.yaml``, ``fold_K/model.pt``, ``cv_report.json/.csv``.
    plan
        The preset (see :func:`load_preset`).
    folds
        Folds to train (``None``: all).
    progress
        Print the training loss every 50 iterations.

    Examples
    --------
    >>> train_slices_2d(Path("medseg/train"), Path("model"), load_preset(), None, True)
    ... # doctest: +SKIP
    """
    start = time.perf_counter()
    uses_classes(plan)  # a bad setting is named before any timing or reading
    plan = resolve_classes(plan, data_dir)
    n_folds = len(folds) if folds is not None else int(plan["training"]["folds"])
    count, iterations, step = fit_budget(plan, n_folds)
    if (count, iterations) != (members(plan), plan["training"]["iterations"]):
        print(
            f"{count} network(s) a fold x {iterations} iterations instead of "
            f"{members(plan)} x {plan['training']['iterations']}: a training step takes "
            f"{step:.2f} s here, and {n_folds} folds must fit "
            f"training.max_minutes={plan['training']['max_minutes']}",
            flush=True,
        )
    plan = {**plan, "training": {**plan["training"], "members": count, "iterations": iterations}}
    ids, truths, results = cross_validate(data_dir, plan, folds, progress=progress)
    model_dir.mkdir(parents=True, exist_ok=True)
    for result in results:
        (model_dir / f"fold_{result.fold}").mkdir(exist_ok=True)
        for member, state in enumerate(result.states):
            name = "model.pt" if member == 0 else f"model_{member}.pt"
            torch.save(state, model_dir / f"fold_{result.fold}" / name)
    index = [i for r in results for i in r.val_index]
    probs = [p for r in results for p in r.probs["final"]]
    fold_of = {i: r.fold for r in results for i in r.val_index}
    threshold = plan["inference"]["threshold"]
    min_area, pp_scores = choose_min_area(probs, [truths[i] for i in index], threshold)
    rows = [
        {
            "case_id": ids[i],
            "fold": fold_of[i],
            "dice": dice(p >= threshold, truths[i]),
            "dice_postprocessed": dice(segment(p, threshold, min_area), truths[i]),
            "dice_tta": dice(r_tta >= threshold, truths[i]),
            "dice_no_tta": dice(r_no_tta >= threshold, truths[i]),
            "dice_one_scale": dice(r_one >= threshold, truths[i]),
        }
        for i, p, r_tta, r_no_tta, r_one in zip(
            index,
            probs,
            [q for r in results for q in r.probs["tta"]],
            [q for r in results for q in r.probs["no_tta"]],
            [q for r in results for q in r.probs["one_scale"]],
            strict=True,
        )
    ]
    per_fold = {
        r.fold: float(np.mean([row["dice"] for row in rows if row["fold"] == r.fold]))
        for r in results
    }
    report = {
        "metric": "mean per-slice Dice at threshold 0.5 (both empty = 1), out-of-fold, "
        + ("mirror TTA" if plan["inference"]["tta"] else "no TTA"),
        "dice_per_fold": per_fold,
        "dice_mean": float(np.mean([row["dice"] for row in rows])),
        "dice_mean_tta": float(np.mean([row["dice_tta"] for row in rows])),
        "dice_mean_no_tta": float(np.mean([row["dice_no_tta"] for row in rows])),
        "dice_mean_one_scale": float(np.mean([row["dice_one_scale"] for row in rows])),
        "inference_sizes": inference_sizes(plan),
        "dice_mean_postprocessed": pp_scores[min_area],
        "postprocessing_scores": {str(k): v for k, v in pp_scores.items()},
        "min_area_fraction": min_area,
        "train_seconds": time.perf_counter() - start,
        "iterations_per_network": iterations,
        "networks_per_fold": members(plan),
        "slices": rows,
    }
    per_class = (
        _class_report(data_dir, truths, index, results, min_area, threshold)
        if "consolidation" in results[0].probs
        else {}
    )
    if per_class:
        report["classes"] = per_class
    (model_dir / "cv_report.json").write_text(json.dumps(report, indent=2))
    save_probs(model_dir / "cv_probs.npz", {ids[i]: p for i, p in zip(index, probs, strict=True)})
    with (model_dir / "cv_report.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    saved = {**plan, "preset": "slices-2d", "dimensions": 2, "hu_window": list(HU_WINDOW)}
    saved["inference"] = {**plan["inference"], "min_area_fraction": min_area}
    saved["folds_trained"] = [r.fold for r in results]
    (model_dir / "plan.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    for fold, score in per_fold.items():
        print(f"CV Dice fold {fold}: {score:.4f}")
    for name, stats in per_class.items():
        print(
            f"CV Dice {name}: {stats['mean']:.4f} a slice ({stats['slices']:.0f} slices with it), "
            f"{stats['pooled']:.4f} pooled"
        )
    print(
        f"CV Dice mean: {report['dice_mean']:.4f} (mirror TTA {report['dice_mean_tta']:.4f}, "
        f"no TTA {report['dice_mean_no_tta']:.4f}, "
        f"at {plan['image_size']} px only {report['dice_mean_one_scale']:.4f}; "
        f"post-processed, min area {min_area:g}: {report['dice_mean_postprocessed']:.4f}); "
        f"{report['train_seconds']:.0f}s",
        flush=True,
    )


def _class_report(
    data_dir: Path,
    truths: list[npt.NDArray[np.bool_]],
    index: list[int],
    results: list[FoldResult],
    min_area: float,
    threshold: float,
) -> dict[str, dict[str, float]]:
    """Out-of-fold Dice of each lesion class, with the chosen post-processing."""
    solid = load_consolidation(data_dir, find_slice_cases(data_dir), truths)
    expected = [(truths[i] * (1 + solid[i])).astype(np.uint8) for i in index]
    lesion = [p for r in results for p in r.probs["final"]]
    consolidation = [p for r in results for p in r.probs["consolidation"]]
    predicted = [
        class_map(p, q, threshold, min_area) for p, q in zip(lesion, consolidation, strict=True)
    ]
    return {CLASS_NAMES[k]: v for k, v in class_scores(predicted, expected).items()}


def save_probs(path: Path, probs: dict[str, npt.NDArray[np.floating]]) -> None:
    """Store probability maps by case id, quantised to 8 bits (for ensembling across runs)."""
    quantised = {k: np.round(np.asarray(v) * 255).astype(np.uint8) for k, v in probs.items()}
    np.savez_compressed(path, **quantised)  # type: ignore[arg-type]


def load_probs(path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """Probability maps stored by :func:`save_probs`."""
    with np.load(path) as data:
        return {k: data[k].astype(np.float32) / 255 for k in data.files}


def _read_for_prediction(path: Path) -> tuple[npt.NDArray[np.uint8], tuple[slice, slice] | None]:
    """The 8-bit slice to segment and, for HU (DICOM) input, the body box it was cropped to."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        hu = read_hu(path)
        return hu_to_8bit(hu), body_box(hu)
    return read_slice(path), None


def _expand(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            folder = path / "images" if (path / "images").is_dir() else path
            files += list_images(folder)
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder")
    if not files:
        raise ValueError(f"no PNG/JPG/DICOM slices in {', '.join(map(str, inputs))}")
    return files


def predict_slices_2d(
    inputs: list[Path], model_dir: Path, out_dir: Path, progress: bool
) -> list[Path]:
    """Segment slices with the fold ensemble; write ``out_dir/<stem>.png`` (0/255, input size).

    Parameters
    ----------
    inputs
        PNG/JPG/DICOM slices or folders of them (a folder's ``images/`` if it has one).
    model_dir
        A folder written by :func:`train_slices_2d`.

    Returns
    -------
    list of Path
        The masks written, in input order.
    """
    plan_path = model_dir / "plan.yaml"
    if not plan_path.is_file():
        raise ValueError(f"{plan_path}: not found (train with --preset slices-2d first)")
    plan = yaml.safe_load(plan_path.read_text())
    weights = sorted(model_dir.glob("fold_*/model*.pt"))
    if not weights:
        raise ValueError(f"{model_dir}: no fold_*/model.pt")
    nets, outputs = [], set()
    for w in weights:
        state = torch.load(w, map_location="cpu", weights_only=True)
        count = outputs_of(state)  # 1, or 3 with classes
        outputs.add(count)
        net = make_network(plan["network"], count)
        net.load_state_dict(state)
        nets.append(net.eval())
    classes = 3 in outputs
    inference, sizes = plan["inference"], inference_sizes(plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in _expand(inputs):
        image, box = _read_for_prediction(path)
        (prob,) = predict_slices(nets, [image], sizes, inference["tta"], plan["training"]["bf16"])
        # Class map 0/1/2 whose lesion is the mask (a binary model's has class 1 only).
        labels = class_map(
            prob[0],
            prob[1] if classes else np.zeros_like(prob[0]),
            inference["threshold"],
            inference.get("min_area_fraction", 0.0),
        )
        if box is not None:
            full = np.zeros(read_hu(path).shape, dtype=np.uint8)
            full[box] = labels
            labels = full
        target = out_dir / f"{path.stem}.png"
        mask = labels > 0
        Image.fromarray(mask.astype(np.uint8) * 255).save(target)
        if classes:
            (out_dir / "classes").mkdir(exist_ok=True)
            Image.fromarray(labels).save(out_dir / "classes" / f"{path.stem}.png")
        written.append(target)
        if progress:
            print(f"{path.name} -> {target} ({mask.mean():.1%} lesion)", flush=True)
    return written
