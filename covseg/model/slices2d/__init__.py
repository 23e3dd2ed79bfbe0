"""The ``slices-2d`` pipeline: train and apply a 2D U-Net ensemble on single CT slices.

``train_slices_2d`` runs the k-fold cross-validation, chooses the post-processing on the
out-of-fold predictions and writes the fold models, ``plan.yaml`` and a CV report;
``predict_slices_2d`` applies the fold ensemble to slice files at the plan's input sizes
(``inference.scales``; mirror TTA too with ``inference.tta``). For arrays rather than files:
:func:`~covseg.model.slices2d.predict.load_ensemble` and
:func:`~covseg.model.slices2d.predict.predict_hu_slices`.

Modules, one job each: ``data`` (read slices, masks, class maps; the HU window), ``settings``
(the plan's ``training`` section, typed), ``net`` (network, outputs, loss), ``augment``,
``fit`` (train one network within a deadline), ``predict`` (ensemble inference), ``cv`` (the
folds, side by side), ``budget`` (fit and hold ``training.max_minutes``), ``evaluate``
(per-slice Dice, post-processing, classes), ``report`` (CV report and probability files) and
``semi`` (semi-supervised: teacher -> pseudo-labels -> student, ``covseg train --unlabelled``).

Model folder layout::

    plan.yaml              the preset as trained, plus the chosen post-processing (written at
                           the start, completed at the end)
    fold_K/model.pt        weights of fold K (its further members: model_1.pt, model_2.pt ...),
                           each written as soon as it is trained
    cv_report.json/.csv    out-of-fold Dice per slice, per fold and overall
    cv_probs.npz           out-of-fold probability maps by case id (8-bit)

With ``training.classes: true`` the networks also tell ground glass from consolidation (trained
on the folder's ``classes/`` maps); with ``mixed`` (the preset) every second network of a fold
does. The CV report then adds each class's Dice and ``covseg predict`` writes class maps (0/1/2)
to ``OUT_DIR/classes/`` beside the lesion masks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml
from PIL import Image

from covseg.model.slices2d import budget
from covseg.model.slices2d.cv import FoldOptions, cross_validate, member_path
from covseg.model.slices2d.data import (
    DICOM_SUFFIXES,
    HU_WINDOW,
    find_slice_cases,
    list_images,
    read_dicom_slice,
    read_slice,
)
from covseg.model.slices2d.predict import (
    Ensemble,
    keep_lung_lesions,
    label_map,
    load_ensemble,
    predict_8bit_slices,
    predict_hu_slices,
)
from covseg.model.slices2d.report import class_report, cv_report, summary_lines, write_report
from covseg.model.slices2d.settings import Training, resolve_classes

Report = Callable[[str], None]
#: The ``pipeline`` value of a slices-2d plan.
PIPELINE = "slices-2d"


def train_slices_2d(
    data_dir: Path,
    model_dir: Path,
    plan: dict[str, Any],
    folds: list[int] | None = None,
    *,
    progress: bool = False,
    on_message: Report | None = None,
    resume: bool = False,
    cores: int | None = None,
    runner: Callable[..., Any] = cross_validate,
) -> dict[str, Any]:
    """Cross-validate the slices-2d recipe on ``data_dir`` and write the fold models.

    Parameters
    ----------
    data_dir
        Folder with ``images/`` (PNG/JPG) and ``lesion/`` (or ``labels/``) masks, 0/255.
    model_dir
        Output folder (created): ``plan.yaml``, ``fold_K/model.pt``, ``cv_report.json/.csv``.
    plan
        The preset (``covseg.model.plan.load_preset("slices-2d")``).
    folds
        Folds to train (``None``: all).
    progress
        Also pass training progress lines (loss and time, a network's first iteration, then
        every 50 iterations or 15 s) to ``on_message``.
    on_message
        Called with each line to show: the budget's decision, each fold's Dice, the summary.
    resume
        Keep the networks already written in ``model_dir`` (and its plan's networks a fold and
        iterations); train only the missing ones. The time budget counts this run.
    cores
        CPU cores to use (default: all of this machine's).
    runner
        The cross-validation (:func:`~covseg.model.slices2d.cv.cross_validate`'s arguments and
        result); the semi-supervised recipe passes its own (:mod:`covseg.model.slices2d.semi`).

    Returns
    -------
    dict
        The CV report (as written to ``cv_report.json``).

    Examples
    --------
    >>> from covseg.model.plan import load_preset
    >>> train_slices_2d(Path("medseg/train"), Path("model"), load_preset("slices-2d"), None,
    ...                 on_message=print)  # doctest: +SKIP
    """
    start = time.time()
    say = on_message or _quiet
    Training.of(plan)  # a bad setting is named before any timing or reading
    n_slices = len(find_slice_cases(data_dir))  # a folder without slices: its error first
    plan, note = resolve_classes(plan, data_dir)
    if note:
        say(note)
    wanted = folds if folds is not None else list(range(Training.of(plan).folds))
    say(f"slices-2d: {n_slices} slices, fold(s) {', '.join(map(str, wanted))}")
    kept = resume and (model_dir / "plan.yaml").is_file()
    plan, step = _fit_budget(plan, len(wanted), cores, kept, say)
    _start_model_dir(model_dir, plan, wanted, resume)
    options = FoldOptions(
        progress=progress,
        model_dir=model_dir,
        resume=resume,
        end=_end(start, plan),
        predict_seconds=_predict_seconds(plan, n_slices, len(wanted), step, cores),
    )
    ids, truths, results = runner(data_dir, plan, folds, options, on_message=say, cores=cores)
    report = cv_report(ids, truths, results, plan)
    threshold = plan["inference"]["threshold"]
    per_class = class_report(data_dir, truths, results, report["min_area_fraction"], threshold)
    if per_class:
        report["classes"] = per_class
    report["train_seconds"] = time.time() - start
    index = [i for r in results for i in r.val_index]
    probs = [p for r in results for p in r.probs["final"]]
    write_report(model_dir, report, {ids[i]: p for i, p in zip(index, probs, strict=True)})
    _write_plan(model_dir, plan, report["min_area_fraction"], [r.fold for r in results])
    for line in summary_lines(report, int(plan["image_size"])):
        say(line)
    return report


def _quiet(_: str) -> None:
    pass


def _fit_budget(
    plan: dict[str, Any], n_folds: int, cores: int | None, kept: bool, say: Report
) -> tuple[dict[str, Any], float]:
    """The plan with the networks a fold and iterations that fit the budget, and the measured
    seconds of a step (NaN without a budget). A resumed model (``kept``) keeps its plan's."""
    train = Training.of(plan)
    if train.max_minutes:
        say("timing a training step for training.max_minutes ...")
    count, iterations, step = budget.fit_budget(plan, n_folds, cores)
    if kept:
        return plan, step
    if (count, iterations) != (train.members, train.iterations):
        say(
            f"{count} network(s) a fold x {iterations} iterations instead of "
            f"{train.members} x {train.iterations}: a training step takes "
            f"{step:.2f} s here, and {n_folds} folds must fit "
            f"training.max_minutes={train.max_minutes:g}"
        )
    return {
        **plan,
        "training": {**plan["training"], "members": count, "iterations": iterations},
    }, step


def _end(start: float, plan: dict[str, Any]) -> float:
    """When the folds must be trained and predicted: the budget less :data:`budget.RESERVE`."""
    minutes = Training.of(plan).max_minutes
    return start + 60.0 * minutes * (1 - budget.RESERVE) if minutes else math.inf


def _predict_seconds(
    plan: dict[str, Any], n_slices: int, n_folds: int, step: float, cores: int | None
) -> float:
    """A fold's estimated out-of-fold prediction time (0 without a measured step)."""
    if math.isnan(step):
        return 0.0
    train = Training.of(plan)
    processes, _ = budget.fold_processes(n_folds, train.fold_processes, cores)
    slowdown = budget.SIDE_BY_SIDE if processes > 1 else 1.0
    return budget.predict_seconds(plan, math.ceil(n_slices / train.folds), step * slowdown)


def _saved_plan(plan: dict[str, Any]) -> dict[str, Any]:
    return {
        **plan,
        "preset": "slices-2d",
        "pipeline": PIPELINE,
        "dimensions": 2,
        "hu_window": list(HU_WINDOW),
    }


def _start_model_dir(model_dir: Path, plan: dict[str, Any], folds: list[int], resume: bool) -> None:
    """Write ``plan.yaml`` before training; a fresh run removes the weights it will replace
    (a smaller ensemble than last time would otherwise leave stale members behind)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        for fold in folds:
            for old in member_path(model_dir, fold, 0).parent.glob("model*.pt"):
                old.unlink()
    saved = _saved_plan(plan)
    if resume and (model_dir / "plan.yaml").is_file():
        previous = yaml.safe_load((model_dir / "plan.yaml").read_text())
        for key in ("inference", "folds_trained"):  # what the finished run chose stays
            if key in previous:
                saved[key] = previous[key]
    (model_dir / "plan.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))


def _write_plan(model_dir: Path, plan: dict[str, Any], min_area: float, folds: list[int]) -> None:
    """The final ``plan.yaml``: the plan as trained, the chosen post-processing, the folds."""
    saved = _saved_plan(plan)
    saved["inference"] = {**plan["inference"], "min_area_fraction": min_area}
    saved["folds_trained"] = folds
    (model_dir / "plan.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))


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
    inputs: list[Path],
    model_dir: Path,
    out_dir: Path,
    on_message: Report | None = None,
    on_error: Report | None = None,
) -> list[Path]:
    """Segment slices with the fold ensemble; write ``out_dir/<stem>.png`` (0/255, input size).

    Parameters
    ----------
    inputs
        PNG/JPG/DICOM slices or folders of them (a folder's ``images/`` if it has one).
    model_dir
        A folder written by :func:`train_slices_2d`.
    on_message
        Called with a line per slice written.
    on_error
        Called with a one-line message for each slice that cannot be read, and the others go
        on; ``None`` raises the first such error.

    Returns
    -------
    list of Path
        The masks written, in input order.
    """
    ensemble = load_ensemble(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in _expand(inputs):
        try:
            labels = _slice_labels(ensemble, path)
        except ValueError as err:
            if on_error is None:
                raise
            message = str(err)
            on_error(message if str(path) in message else f"{path}: {message}")
            continue
        target = out_dir / f"{path.stem}.png"
        mask = labels > 0
        Image.fromarray(mask.astype(np.uint8) * 255).save(target)
        if ensemble.classes:
            (out_dir / "classes").mkdir(exist_ok=True)
            Image.fromarray(labels).save(out_dir / "classes" / f"{path.stem}.png")
        written.append(target)
        if on_message:
            on_message(f"{path.name} -> {target} ({mask.mean():.1%} lesion)")
    return written


def _slice_labels(ensemble: Ensemble, path: Path) -> npt.NDArray[np.uint8]:
    """The class map (0/1/2) of one slice file; a binary model's lesion is class 1."""
    if path.suffix.lower() not in DICOM_SUFFIXES:
        (prob,) = predict_8bit_slices(ensemble, [read_slice(path)])
        return label_map(ensemble, prob)
    hu, box, lungs, pixel = read_dicom_slice(path)
    if lungs is None:  # as for a CT volume: a lung-lesion model has nothing to look at
        raise ValueError(f"{path}: no lungs in the field of view (nothing segmented)")
    (prob,) = predict_hu_slices(ensemble, [hu], [box])
    # The post-processing's area fraction is of the field, the size trained on.
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[box] = label_map(ensemble, prob[(slice(None), *box)])
    return keep_lung_lesions(labels, lungs, pixel)
