"""Semi-supervised ``slices-2d``: teacher -> pseudo-labels -> student, fold by fold.

The COVID-19-20 winner's recipe on single slices. In each cross-validation fold the teacher
networks are trained on that fold's labelled slices only; they label the unlabelled slices
(mean probability over the fold's networks); each slice gets a confidence (mean of
max(p, 1 - p) over the pixels with p > 0.1, :func:`covseg.model.pseudolabel.confidence`), and
those below ``pseudo_labels.min_confidence`` are dropped. Each teacher network is then trained
further (the student) on batches of ``batch_size`` labelled slices plus ``per_batch``
pseudo-labelled ones, drawn in proportion to their confidence. ``rounds`` > 1 repeats the
labelling with the students. The held-out slices of a fold never reach its teacher, its
pseudo-labels or its student, so the out-of-fold Dice stays honest.

``pseudo_labels.control: true`` also trains, in the same fold and from the same teacher, a
student without the unlabelled slices for as many iterations with the same seeds (the labelled
part of every batch is identical): the paired control that tells the unlabelled slices' gain from
the longer training's. Its out-of-fold Dice goes to ``cv_report.json`` (``dice_mean_control``)
beside the teacher's (``dice_mean_teacher``).

Also here: :func:`pseudo_label_folder` (``covseg pseudo-label`` with a slices-2d model) and
:func:`read_extra` (``covseg train --extra`` with slices-2d).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import yaml
from PIL import Image

from covseg.model.pseudolabel import confidence
from covseg.model.slices2d import budget, train_slices_2d
from covseg.model.slices2d.cv import (
    CVData,
    FoldOptions,
    FoldResult,
    _channels,
    _label,
    _lesion,
    _oof_variants,
    _seeds,
    cross_validate,
    member_path,
    save_member,
)
from covseg.model.slices2d.data import find_slice_cases, list_images, load_labelled, read_slice
from covseg.model.slices2d.evaluate import mean_dice
from covseg.model.slices2d.fit import Trained, train_network
from covseg.model.slices2d.net import targets_from_maps, to_tensor
from covseg.model.slices2d.predict import (
    inference_sizes,
    load_ensemble,
    predict_maps,
    predict_slices,
)
from covseg.model.slices2d.settings import Training, resolve_classes

Report = Callable[[str], None]

#: Name of the per-slice confidence file of a pseudo-label folder.
CONFIDENCE_FILE = "confidence.json"
#: The whole semi-supervised run's default budget (minutes) on a 2-core CPU.
DEFAULT_MINUTES = 30.0
#: Share of the budget given to the teachers: 13.5 of 30 minutes, the supervised preset's 14.
TEACHER_SHARE = 0.45
#: Labelling one slice with one network, relative to a training step's cost per slice: measured
#: 110 ms against a 0.72 s step of 4 slices (1 thread, bfloat16, benchmarks/RESULTS.md).
LABEL_COST = 0.6


def pseudo_config(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan's ``pseudo_labels`` section with its defaults, checked.

    Raises
    ------
    ValueError
        On a value out of range; the message names the key.
    """
    cfg = {
        "min_confidence": 0.0,
        "soft": False,
        "per_batch": 4,
        "augment": False,
        "rounds": 1,
        "iterations": 300,
        "max_slices": 400,
        "control": False,
        **plan.get("pseudo_labels", {}),
    }
    if not 0.0 <= float(cfg["min_confidence"]) <= 1.0:
        raise ValueError(f"pseudo_labels.min_confidence {cfg['min_confidence']}: choose 0..1")
    for key in ("per_batch", "rounds", "iterations"):
        if int(cfg[key]) < 1:
            raise ValueError(f"pseudo_labels.{key} must be at least 1, got {cfg[key]}")
    return cfg


def label_slices(
    nets: list[torch.nn.Module], images: torch.Tensor, bf16: bool, soft: bool
) -> tuple[torch.Tensor, npt.NDArray[np.float64]]:
    """Pseudo-label resized slices (N, 1, S, S): targets (N, C, S, S) and each slice's confidence.

    The targets are the mean probability over ``nets`` (``soft``) or it thresholded at 0.5; a
    second (consolidation) channel, where some net has class outputs, is always hard.
    """
    maps = predict_maps(nets, images, tta=False, bf16=bf16)
    hard = targets_from_maps(maps)
    targets = torch.cat([maps[:, :1], hard[:, 1:]], dim=1) if soft else hard
    scores = np.array([confidence(m[0].numpy(), None) for m in maps], dtype=np.float64)
    return targets, scores


def semi_fold(
    fold: int,
    data: CVData,
    options: FoldOptions | None = None,
    end: float = math.inf,
    on_message: Report | None = None,
) -> FoldResult:
    """Train fold ``fold`` (arguments as :func:`covseg.model.slices2d.cv.run_fold`).

    ``data.unlabelled`` is either resized unlabelled slices (N, 1, S, S): teacher ->
    pseudo-labels -> student; or fixed extra samples ``(images, targets, weights)`` (``covseg
    train --extra``), added to every batch of every network of the fold from the start. The
    teachers (or the networks with fixed extra samples) train by ``end`` less the prediction
    time; the students train for ``pseudo_labels.iterations`` (fitted to the budget by
    :func:`train_semi`). The fold's final networks are written to ``options.model_dir``.
    """
    options = options or FoldOptions()
    plan = data.plan
    cfg = pseudo_config(plan)
    control = options.control or bool(cfg["control"])
    train_idx = torch.from_numpy(np.flatnonzero(data.assignment != fold))
    val_index = np.flatnonzero(data.assignment == fold).tolist()
    val_images, bf16 = [data.originals[i] for i in val_index], Training.of(plan).bf16
    seeds, channels = _seeds(plan, fold), _channels(data)
    model_dir = options.model_dir
    paths = [member_path(model_dir, fold, m) for m in range(len(seeds))] if model_dir else []
    x, y = data.images[train_idx], data.masks[train_idx]
    fixed = data.unlabelled if isinstance(data.unlabelled, tuple) else None
    progress = on_message if options.progress else None
    # ``end`` is the fold's share of the whole run; with unlabelled slices its teachers get
    # TEACHER_SHARE of the window and the labelling and students the rest.
    student_end = end - options.predict_seconds
    now = time.time()
    train_end = student_end if fixed is not None else now + TEACHER_SHARE * (student_end - now)

    def extra_for(c: int, extra: tuple[torch.Tensor, ...] | None) -> Any:
        # Lesion-only extra masks cannot teach a class network its consolidation channel.
        if extra is None or extra[1].shape[1] < c:
            return None
        return (extra[0], extra[1][:, :c], extra[2])

    trained = [
        train_network(
            x,
            y[:, :c],
            plan,
            seed,
            deadline=budget.member_deadline(time.time(), train_end, len(seeds) - m),
            on_progress=progress,
            label=_label(fold, m, len(seeds)) + ("teacher " if fixed is None else ""),
            extra=extra_for(c, fixed),
            extra_per_batch=int(cfg["per_batch"]),
            extra_augment=bool(cfg["augment"]),
        )
        for m, (seed, c) in enumerate(zip(seeds, channels, strict=True))
    ]
    nets = [t.net for t in trained]
    iterations: list[int | None] = [t.iterations for t in trained]
    result = FoldResult(fold, val_index, [n.state_dict() for n in nets], {}, iterations)
    if fixed is None:
        assert isinstance(data.unlabelled, torch.Tensor)
        pool = _subset(data.unlabelled, cfg["max_slices"], seed=fold)
        sizes = inference_sizes(plan)
        result.probs["teacher"] = _lesion(predict_slices(nets, val_images, sizes, False, bf16))
        controls = nets
        kept: list[float] = []
        trained_iterations = [0] * len(nets)
        for round_ in range(int(cfg["rounds"])):
            targets, scores = label_slices(nets, pool, bf16, bool(cfg["soft"]))
            weights = torch.from_numpy(np.where(scores >= cfg["min_confidence"], scores, 0.0))
            kept.append(float((weights > 0).float().mean()))
            extra = (pool, targets, weights.float())
            # Each round (and its control) gets an equal part of the students' window left.
            parts = (int(cfg["rounds"]) - round_) * (2 if control else 1)
            deadline = budget.member_deadline(time.time(), student_end, parts)
            students = _students(
                nets, x, y, plan, seeds, channels, round_, cfg, extra, progress, fold, deadline
            )
            nets = [t.net for t in students]
            done = [t.iterations for t in students]
            for m, count in enumerate(done):
                trained_iterations[m] += count
            if control:
                # Paired: as many iterations as each student got, the same seeds and batches.
                controls = [
                    t.net
                    for t in _students(
                        controls,
                        x,
                        y,
                        plan,
                        seeds,
                        channels,
                        round_,
                        cfg,
                        None,
                        progress,
                        fold,
                        iterations=done,
                    )
                ]
        if control:
            result.probs["control"] = _lesion(
                predict_slices(controls, val_images, sizes, False, bf16)
            )
        result.probs["kept_share"] = [np.array(kept, dtype=np.float32)]
        result.states = [n.state_dict() for n in nets]
        result.iterations = list(trained_iterations)
    for path, state in zip(paths, result.states, strict=True):
        save_member(path, state)
    result.probs.update(_oof_variants(nets, val_images, plan))
    return result


def _students(
    teachers: list[torch.nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    plan: dict[str, Any],
    seeds: list[int],
    channels: list[int],
    round_: int,
    cfg: dict[str, Any],
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    on_progress: Report | None,
    fold: int,
    deadline: float = math.inf,
    iterations: list[int] | None = None,
) -> list[Trained]:
    """Each teacher trained further for ``cfg["iterations"]`` (or ``iterations[m]``), cut to end
    by ``deadline`` (an equal share of it each), with ``data`` added to every batch (``None``: the
    paired control; same seeds, so the same labelled batches)."""
    out = []
    for m, (teacher, seed, c) in enumerate(zip(teachers, seeds, channels, strict=True)):
        out.append(
            train_network(
                x,
                y[:, :c],
                plan,
                seed + 1 + round_,
                teacher.state_dict(),
                int(cfg["iterations"]) if iterations is None else iterations[m],
                deadline=budget.member_deadline(time.time(), deadline, len(teachers) - m),
                on_progress=on_progress,
                label=f"fold {fold} {'student' if data else 'control'} {m} ",
                extra=None if data is None else (data[0], data[1][:, :c], data[2]),
                extra_per_batch=int(cfg["per_batch"]),
                extra_augment=bool(cfg["augment"]),
            )
        )
    return out


def _subset(images: torch.Tensor, count: int | None, seed: int) -> torch.Tensor:
    """``count`` of ``images`` drawn without replacement (a fold's own draw), or all of them."""
    if count is None or count >= len(images):
        return images
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[: int(count)].sort().values]


def read_unlabelled_folder(folder: Path) -> list[npt.NDArray[np.uint8]]:
    """The 8-bit slices of ``folder`` (PNG/JPG, DICOM in HU converted; sub-folders too).

    Raises
    ------
    ValueError
        If the folder is missing or holds no slices; the message names it.
    """
    if not folder.is_dir():
        raise ValueError(f"{folder}: unlabelled folder not found")
    files = _slice_files(folder)
    if not files:
        raise ValueError(f"{folder}: no PNG/JPG/DICOM slices")
    return [read_slice(p) for p in files]


def _slice_files(folder: Path) -> list[Path]:
    return sorted(
        p for d in [folder, *sorted(folder.rglob("*"))] if d.is_dir() for p in list_images(d)
    )


def student_iterations(
    plan: dict[str, Any], n_folds: int, unlabelled: int, minutes: float, cores: int | None = None
) -> int:
    """Student iterations a network that fit the budget left after the teachers, here.

    ``minutes`` is the student stage's share of the budget. A student step costs a teacher step
    times (batch + per_batch) / batch (the measured step is mostly convolutions, linear in the
    batch); labelling a slice with a network costs :data:`LABEL_COST` of a step's share of one
    slice, each round. The plan's ``pseudo_labels.iterations`` is the most given.
    """
    cfg = pseudo_config(plan)
    cap = int(cfg["iterations"])
    if not minutes:
        return cap
    train = Training.of(plan)
    processes, threads = budget.fold_processes(n_folds, train.fold_processes, cores)
    waves = -(-n_folds // processes)
    batch = train.batch_size
    step = budget.step_seconds(plan, threads)
    count, rounds = train.members, int(cfg["rounds"])
    pool = min(unlabelled, int(cfg["max_slices"] or unlabelled))
    label = rounds * count * pool * step * LABEL_COST / batch
    per_iteration = step * (batch + int(cfg["per_batch"])) / batch * count * rounds
    per_iteration *= 2 if cfg["control"] else 1
    seconds = 60.0 * minutes * (1 - budget.RESERVE) / (waves * budget.SIDE_BY_SIDE) - label
    return max(1, min(cap, int(seconds / per_iteration)))


def train_semi(
    data_dir: Path,
    model_dir: Path,
    plan: dict[str, Any],
    unlabelled_dir: Path,
    folds: list[int] | None,
    progress: bool = False,
    *,
    on_message: Report | None = None,
    cores: int | None = None,
) -> dict[str, Any]:
    """``covseg train DATA -o MODEL --preset slices-2d --unlabelled DIR``: the whole recipe.

    ``training.max_minutes`` (default :data:`DEFAULT_MINUTES`) is the budget of everything:
    :data:`TEACHER_SHARE` of it fits the teachers as the supervised preset fits its networks,
    the rest the pseudo-labelling and the students. Writes a normal slices-2d model folder (the
    students' weights), with ``pseudo_labels`` in ``plan.yaml`` and the teacher's (and, with
    ``pseudo_labels.control``, the control's) out-of-fold Dice in ``cv_report.json``, which is
    returned.
    """
    start, start_wall = time.perf_counter(), time.time()
    say = on_message or _quiet
    train = Training.of(plan)
    cfg = pseudo_config(plan)
    plan, _ = resolve_classes(plan, data_dir)  # train_slices_2d says the note
    find_slice_cases(data_dir)  # a bad labelled folder is named before the slow reading
    slices = read_unlabelled_folder(unlabelled_dir)
    total = train.max_minutes if train.max_minutes is not None else DEFAULT_MINUTES
    n_folds = len(folds) if folds is not None else train.folds
    teacher_plan = {
        **plan,
        "training": {**plan["training"], "max_minutes": total * TEACHER_SHARE},
    }
    iterations = student_iterations(plan, n_folds, len(slices), total * (1 - TEACHER_SHARE), cores)
    cfg = {**cfg, "iterations": iterations, "enabled": False, "unlabelled_dir": str(unlabelled_dir)}
    teacher_plan["pseudo_labels"] = cfg
    say(
        f"{len(slices)} unlabelled slices from {unlabelled_dir}; students: {iterations} "
        f"iterations a network, {cfg['per_batch']} pseudo-labelled slices a batch, "
        f"{cfg['rounds']} round(s)"
    )
    pool = to_tensor(slices, int(plan["image_size"]), mask=False)
    runner = functools.partial(cross_validate, unlabelled=pool, worker=semi_fold)
    results: list[FoldResult] = []

    def keep(
        data: Path, plan: dict[str, Any], folds: list[int] | None, options: FoldOptions, **kw: Any
    ) -> Any:
        # The folds' deadlines come from the whole budget (teachers and students alike).
        whole = dataclasses.replace(options, end=start_wall + 60.0 * total * (1 - budget.RESERVE))
        out = runner(data, plan, folds, whole, **kw)
        results.extend(out[2])
        return out

    train_slices_2d(
        data_dir,
        model_dir,
        teacher_plan,
        folds,
        progress=progress,
        on_message=say,
        cores=cores,
        runner=keep,
    )
    return _add_report(model_dir, data_dir, results, time.perf_counter() - start, total, say)


def _quiet(_: str) -> None:
    pass


def _add_report(
    model_dir: Path,
    data_dir: Path,
    results: list[FoldResult],
    seconds: float,
    total: float,
    say: Report,
) -> dict[str, Any]:
    """Add the teacher's and control's out-of-fold Dice and the budget to the model's files."""
    cases = find_slice_cases(data_dir)
    truths = [t for _, t in load_labelled(cases)]
    report: dict[str, Any] = json.loads((model_dir / "cv_report.json").read_text())
    plan = yaml.safe_load((model_dir / "plan.yaml").read_text())
    threshold = plan["inference"]["threshold"]
    for name in ("teacher", "control"):
        if all(name in r.probs for r in results):
            probs = [p for r in results for p in r.probs[name]]
            truth = [truths[i] for r in results for i in r.val_index]
            report[f"dice_mean_{name}"] = mean_dice(probs, truth, threshold)
    report["pseudo_labelled_share_kept"] = {
        str(r.fold): r.probs["kept_share"][0].tolist() for r in results
    }
    report["semi_seconds"] = seconds
    report["budget_minutes"] = total
    (model_dir / "cv_report.json").write_text(json.dumps(report, indent=2))
    plan["training"]["max_minutes"] = total
    (model_dir / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    line = f"students {report['dice_mean']:.4f}"
    for name in ("teacher", "control"):
        if f"dice_mean_{name}" in report:
            line += f", {name} {report[f'dice_mean_{name}']:.4f}"
    say(f"CV Dice (one size, no TTA for teacher/control): {line}; {seconds:.0f}s")
    return report


def pseudo_label_folder(
    unlabelled: Path, model_dir: Path, out_dir: Path, min_confidence: float, progress: bool
) -> list[dict[str, Any]]:
    """``covseg pseudo-label`` with a slices-2d model: label every slice of ``unlabelled``.

    Each slice is predicted as ``covseg predict`` does (every network of the model, the plan's
    inference sizes); slices whose confidence reaches ``min_confidence`` are written as
    ``out_dir/images/<stem>.png`` (the 8-bit slice) and ``out_dir/lesion/<stem>.png`` (0/255),
    the training layout, with ``out_dir/soft/<stem>.png`` (the lesion probability x 255) for
    soft labels. ``out_dir/confidence.json`` records the threshold and every slice's confidence.

    Returns
    -------
    list of dict
        ``case_id``, ``confidence`` (0.5..1), ``kept`` for every slice, in name order.
    """
    ensemble = load_ensemble(model_dir)
    plan, nets = ensemble.plan, ensemble.nets
    files = _slice_files(unlabelled) if unlabelled.is_dir() else [unlabelled]
    if not files:
        raise ValueError(f"{unlabelled}: no PNG/JPG/DICOM slices")
    for sub in ("images", "lesion", "soft"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    sizes, bf16 = inference_sizes(plan), bool(plan["training"]["bf16"])
    threshold = float(plan["inference"]["threshold"])
    records = []
    for path in files:
        image = read_slice(path)
        (prob,) = predict_slices(nets, [image], sizes, False, bf16)
        score = confidence(prob[0], None)
        kept = score >= min_confidence
        if kept:
            Image.fromarray(image).save(out_dir / "images" / f"{path.stem}.png")
            mask = (prob[0] >= threshold).astype(np.uint8) * 255
            Image.fromarray(mask).save(out_dir / "lesion" / f"{path.stem}.png")
            soft = np.round(np.clip(prob[0], 0, 1) * 255).astype(np.uint8)
            Image.fromarray(soft).save(out_dir / "soft" / f"{path.stem}.png")
        records.append({"case_id": path.stem, "confidence": round(score, 4), "kept": kept})
        if progress:
            print(f"{path.name}: confidence {score:.3f}{'' if kept else ' (dropped)'}", flush=True)
    summary = {
        "min_confidence": min_confidence,
        "confidence": "mean of max(p, 1 - p) over the pixels with lesion probability p > 0.1 "
        "(1.0 where there are none)",
        "label_threshold": threshold,
        "model": str(model_dir),
        "slices": records,
    }
    (out_dir / CONFIDENCE_FILE).write_text(json.dumps(summary, indent=2))
    return records


def read_extra(folders: list[Path], size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Extra training-only slices (``covseg train --extra``) for slices-2d: images, targets and
    sampling weights (each slice's confidence from the folder's ``confidence.json``, else 1).

    Raises
    ------
    ValueError
        If a folder is not a slice folder (``images/`` + ``lesion/``); the message names it.
    """
    images, masks, weights = [], [], []
    for folder in folders:
        cases = find_slice_cases(folder)
        scores: dict[str, float] = {}
        path = folder / CONFIDENCE_FILE
        if path.is_file():
            scores = {r["case_id"]: r["confidence"] for r in json.loads(path.read_text())["slices"]}
        for case, (image, mask) in zip(cases, load_labelled(cases), strict=True):
            images.append(image)
            masks.append(mask)
            weights.append(float(scores.get(case.case_id, 1.0)))
    return (
        to_tensor(images, size, mask=False),
        to_tensor(masks, size, mask=True),
        torch.tensor(weights, dtype=torch.float32),
    )


def train_with_extra(
    data_dir: Path,
    model_dir: Path,
    plan: dict[str, Any],
    extra: list[Path],
    folds: list[int] | None,
    progress: bool = False,
    *,
    on_message: Report | None = None,
    cores: int | None = None,
) -> dict[str, Any]:
    """``covseg train --preset slices-2d --extra DIR``: the slices of ``extra`` join every batch
    of every fold's training (``pseudo_labels.per_batch`` of them), never its validation."""
    data = read_extra(extra, int(plan["image_size"]))
    runner = functools.partial(cross_validate, unlabelled=data, worker=semi_fold)
    return train_slices_2d(
        data_dir,
        model_dir,
        plan,
        folds,
        progress=progress,
        on_message=on_message,
        cores=cores,
        runner=runner,
    )
