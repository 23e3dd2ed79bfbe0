"""K-fold cross-validation of the ``slices-2d`` recipe, with the optional pseudo-label stage.

Each fold trains ``training.members`` networks (seeds apart) on the other folds' slices and
scores their mean probability; with pseudo-labels enabled, these teachers label the unlabelled
slices (mirror TTA, threshold 0.5) and each is fine-tuned on labelled plus pseudo-labelled
slices. Out-of-fold probabilities are kept at the slices' original sizes, so the Dice is
measured exactly as it would be on new slices.

Folds train side by side in worker processes (:func:`covseg.model.slices2d.budget.waves`);
their progress lines reach the caller's callback through a queue. Given a model folder, each
network's weights are written as soon as it is trained, so an interrupted run can be resumed.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from covseg.model.slices2d import budget
from covseg.model.slices2d.data import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    find_slice_cases,
    load_consolidation,
    load_labelled,
    read_slice,
)
from covseg.model.slices2d.evaluate import mean_dice
from covseg.model.slices2d.fit import train_network
from covseg.model.slices2d.net import make_network, outputs_of, targets_from_maps, to_tensor
from covseg.model.slices2d.predict import inference_sizes, predict_maps, predict_slices
from covseg.model.slices2d.settings import Training, resolve_classes

Report = Callable[[str], None]
#: Trains one fold: :func:`run_fold`'s arguments and result.
FoldWorker = Callable[..., "FoldResult"]


@dataclass
class FoldResult:
    """A trained fold: its validation slices, its members' weights and out-of-fold probabilities.

    ``probs`` maps a variant name to one probability map per validation slice: ``tta`` (the
    fold's members with mirror TTA, at the plan's ``inference.scales``), ``no_tta``, ``final``
    (one of those two, as the plan's ``inference.tta`` says), ``one_scale`` (as ``final``, at
    ``image_size`` only), and with pseudo-labels ``teacher`` (before fine-tuning)
    and, when asked for, ``control`` (fine-tuned as long, without the pseudo-labelled slices).
    A model trained with classes adds ``consolidation`` (probability, as ``final`` is made). A
    fold out of time (``training.max_minutes``) has ``final`` and its TTA variant only.
    ``iterations``: what each member was trained for in this run (``None``: kept from an
    earlier one by ``resume``).
    """

    fold: int
    val_index: list[int]
    states: list[dict[str, torch.Tensor]]
    probs: dict[str, list[npt.NDArray[np.float32]]] = field(default_factory=dict)
    iterations: list[int | None] = field(default_factory=list)


@dataclass(frozen=True)
class CVData:
    """What every fold reads: the plan, the fold of each slice, the resized slices and targets
    (``images``, ``masks``), the slices as read (``originals``) and the unlabelled slices
    (N, 1, S, S); a custom fold ``worker`` (:func:`cross_validate`) may put its own there, e.g.
    fixed extra samples ``(images, targets, weights)``."""

    plan: dict[str, Any]
    assignment: npt.NDArray[np.int64]
    images: torch.Tensor
    masks: torch.Tensor
    originals: list[npt.NDArray[np.uint8]]
    unlabelled: Any = None


@dataclass(frozen=True)
class FoldOptions:
    """How folds run: ``control`` (also fine-tune without pseudo-labels), ``progress`` (training
    progress lines), ``model_dir`` (write each network there when trained), ``resume`` (keep the
    networks already there), ``end`` (wall clock, ``time.time()`` s, by which every fold must be
    trained and predicted), ``predict_seconds`` (a fold's estimated out-of-fold prediction)."""

    control: bool = False
    progress: bool = False
    model_dir: Path | None = None
    resume: bool = False
    end: float = math.inf
    predict_seconds: float = 0.0


def fold_assignment(n: int, folds: int, seed: int) -> npt.NDArray[np.int64]:
    """Fold number of each of ``n`` slices: a seeded shuffle dealt round-robin."""
    order = np.random.default_rng(seed).permutation(n)
    assignment = np.empty(n, dtype=np.int64)
    assignment[order] = np.arange(n) % folds
    return assignment


def unlabelled_images(data_dir: Path, plan: dict[str, Any]) -> list[npt.NDArray[np.uint8]]:
    """The 8-bit unlabelled slices for pseudo-labelling (DICOM in HU converted), or none.

    ``pseudo_labels.unlabelled_dir`` is read relative to ``data_dir``; its files may lie in
    sub-folders (one per patient).
    """
    cfg = plan.get("pseudo_labels", {})
    if not cfg.get("enabled"):
        return []
    if not cfg.get("unlabelled_dir"):
        raise ValueError("pseudo_labels.enabled needs pseudo_labels.unlabelled_dir (a folder)")
    folder = (data_dir / cfg["unlabelled_dir"]).resolve()
    if not folder.is_dir():
        raise ValueError(f"{folder}: unlabelled folder for pseudo-labels not found")
    suffixes = IMAGE_SUFFIXES + DICOM_SUFFIXES
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"{folder}: no PNG/JPG/DICOM slices for pseudo-labels")
    return [read_slice(p) for p in files]


def prepare(
    images: list[npt.NDArray[np.uint8]],
    masks: list[npt.NDArray[np.bool_]],
    size: int,
    consolidation: list[npt.NDArray[np.bool_]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resized images (N, 1, S, S) and targets (N, C, S, S).

    The targets are the lesion masks, and with ``consolidation`` a second channel of it (kept
    inside the resized lesion).
    """
    targets = to_tensor(masks, size, mask=True)
    if consolidation is not None:
        solid = to_tensor(consolidation, size, mask=True) * targets
        targets = torch.cat([targets, solid], dim=1)
    return to_tensor(images, size, mask=False), targets


def member_path(model_dir: Path, fold: int, member: int) -> Path:
    """Where network ``member`` of ``fold`` is written: ``fold_K/model.pt``, ``model_1.pt`` ..."""
    return model_dir / f"fold_{fold}" / ("model.pt" if member == 0 else f"model_{member}.pt")


def save_member(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Write a network's weights whole or not at all (an interrupt leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".pt.partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_data(data_dir: Path, plan: dict[str, Any]) -> tuple[list[str], CVData, list[Any]]:
    """Read and check the labelled slices (and the unlabelled ones for pseudo-labels).

    Returns the case ids, what the folds read, and the masks as read.
    """
    train = Training.of(plan)
    cases = find_slice_cases(data_dir)
    if len(cases) < train.folds:
        raise ValueError(f"{data_dir}: {len(cases)} slices, fewer than {train.folds} folds")
    pairs = load_labelled(cases)
    originals, truths = [p[0] for p in pairs], [p[1] for p in pairs]
    solid = load_consolidation(data_dir, cases, truths) if train.uses_classes else None
    size = int(plan["image_size"])
    images, masks = prepare(originals, truths, size, solid)
    extra = unlabelled_images(data_dir, plan)
    data = CVData(
        plan,
        fold_assignment(len(cases), train.folds, train.split_seed),
        images,
        masks,
        originals,
        to_tensor(extra, size, mask=False) if extra else None,
    )
    return [c.case_id for c in cases], data, truths


def cross_validate(
    data_dir: Path,
    plan: dict[str, Any],
    folds: list[int] | None = None,
    options: FoldOptions | None = None,
    *,
    on_message: Report | None = None,
    cores: int | None = None,
    unlabelled: Any = None,
    worker: FoldWorker | None = None,
) -> tuple[list[str], list[npt.NDArray[np.bool_]], list[FoldResult]]:
    """Run the cross-validation; returns the case ids, the masks and the trained folds.

    Parameters
    ----------
    folds
        Folds to train (``None``: all).
    options
        How the folds run (:class:`FoldOptions`; default: no model folder, no deadline).
    on_message
        Called with each line of progress (training progress only with ``options.progress``)
        and each fold's Dice as it finishes.
    cores
        CPU cores to use (default: all).
    unlabelled
        When given, replaces the plan's ``pseudo_labels`` slices as ``CVData.unlabelled``
        (the semi-supervised stage of :mod:`covseg.model.slices2d.semi`).
    worker
        Trains one fold (:func:`run_fold`'s arguments and result; default :func:`run_fold`);
        a module-level function, as folds may run in worker processes.
    """
    options = options or FoldOptions()
    plan, note = resolve_classes(plan, data_dir)
    if note and on_message:
        on_message(note)
    ids, data, truths = load_data(data_dir, plan)
    if unlabelled is not None:
        data = replace(data, unlabelled=unlabelled)
    train = Training.of(plan)
    wanted = folds if folds is not None else list(range(train.folds))
    for fold in wanted:
        if not 0 <= fold < train.folds:
            raise ValueError(f"fold {fold} out of range 0..{train.folds - 1}")
    results = []
    for result, elapsed in run_folds(wanted, data, options, on_message, cores, worker):
        score = mean_dice(result.probs["final"], [truths[i] for i in result.val_index])
        if on_message:
            on_message(
                f"fold {result.fold}: Dice {score:.4f} ({len(result.val_index)} slices, "
                f"{elapsed:.0f}s)"
            )
        results.append(result)
    results.sort(key=lambda r: r.fold)
    return ids, truths, results


def run_folds(
    folds: list[int],
    data: CVData,
    options: FoldOptions,
    on_message: Report | None,
    cores: int | None = None,
    worker: FoldWorker | None = None,
) -> Iterator[tuple[FoldResult, float]]:
    """Train ``folds`` in waves (worker processes where more than one fold runs at a time), and
    yield each with its seconds as it finishes; the workers' lines go to ``on_message``.
    ``worker`` trains a fold (default :func:`run_fold`)."""
    train = Training.of(data.plan)
    processes, threads = budget.fold_processes(len(folds), train.fold_processes, cores)
    schedule = budget.waves(folds, processes, threads)
    weights = budget.wave_weights(schedule, processes)
    if processes == 1:
        if cores:
            torch.set_num_threads(threads)
        for wave, (wave_folds, _, _) in enumerate(schedule):  # one fold a wave
            yield _timed_fold(wave_folds[0], data, options, weights[wave:], on_message, worker)
        return
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    lines: Any = context.Queue()
    # Full waves share one pool (a fold starts as another ends); the partial wave has its own.
    partial = weights[-1] < 1
    groups = [(schedule[: len(schedule) - partial], processes)]
    if partial:
        groups.append((schedule[-1:], schedule[-1][1]))
    first = 0
    for group, workers in groups:
        each = group[0][2]
        with ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(lines, each, os.getpid()),
        ) as pool:
            jobs = [
                pool.submit(_timed_fold, fold, data, options, weights[first + w :], None, worker)
                for w, (wave_folds, _, _) in enumerate(group)
                for fold in wave_folds
            ]
            yield from _as_finished(jobs, lines, on_message)
        first += len(group)


_WORKER_REPORT: Report | None = None


def _start_worker(lines: Any, threads: int, parent: int) -> None:
    """A fold worker: torch on ``threads`` threads, progress lines into the queue ``lines``; it
    ends when the process ``parent`` that started it is gone."""
    global _WORKER_REPORT
    torch.set_num_threads(threads)
    _WORKER_REPORT = lines.put
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once ``parent`` is gone (a killed ``covseg train`` would otherwise leave
    its folds training for nobody, taking the cores from whatever runs next)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _as_finished(
    jobs: list[Future[tuple[FoldResult, float]]], lines: Any, on_message: Report | None
) -> Iterator[tuple[FoldResult, float]]:
    """The jobs' results as they finish, passing the workers' lines on meanwhile."""
    pending = set(jobs)
    while pending:
        done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        _drain(lines, on_message)
        for job in done:
            yield job.result()
    _drain(lines, on_message)


def _drain(lines: Any, on_message: Report | None) -> None:
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return
        if on_message:
            on_message(line)


def _timed_fold(
    fold: int,
    data: CVData,
    options: FoldOptions,
    weights: list[float],
    on_message: Report | None,
    worker: FoldWorker | None = None,
) -> tuple[FoldResult, float]:
    """Run a fold that must end within its wave's share (``weights[0]``) of the time left."""
    start = time.perf_counter()
    end = budget.wave_deadline(time.time(), options.end, weights)
    result = (worker or run_fold)(fold, data, options, end, on_message or _WORKER_REPORT)
    return result, time.perf_counter() - start


def run_fold(
    fold: int,
    data: CVData,
    options: FoldOptions | None = None,
    end: float = math.inf,
    on_message: Report | None = None,
) -> FoldResult:
    """Train fold ``fold`` (teacher, then the pseudo-label stage if there are unlabelled
    slices) and predict its validation slices, by ``end`` (wall clock, ``time.time()`` s).

    ``data.images`` and ``data.masks`` are the resized slices; ``data.originals`` the slices as
    read, which the out-of-fold maps are predicted from (at each of the plan's inference sizes).
    """
    options = options or FoldOptions()
    plan = data.plan
    train_idx = torch.from_numpy(np.flatnonzero(data.assignment != fold))
    val_index = np.flatnonzero(data.assignment == fold).tolist()
    train_end = end - options.predict_seconds
    if data.unlabelled is None:
        nets, trained = _train_members(fold, data, train_idx, options, train_end, on_message)
        result = FoldResult(fold, val_index, [net.state_dict() for net in nets], {}, trained)
    else:
        result, nets = _pseudo_label_fold(fold, data, train_idx, val_index, options, on_message)
    # Out of time for every variant: the plan's own only (a fifth of the passes).
    full = time.time() + options.predict_seconds <= end
    result.probs.update(_oof_variants(nets, [data.originals[i] for i in val_index], plan, full))
    return result


def _seeds(plan: dict[str, Any], fold: int) -> list[int]:
    """Each member's seed; member 0 keeps the seed of a one-member plan, so members=1
    reproduces it exactly."""
    train = Training.of(plan)
    return [train.seed * 100 + fold + 1000 * m for m in range(train.members)]


def _channels(data: CVData) -> list[int]:
    """Target channels of each member: 1 (lesion) or, for those that learn classes, all."""
    train = Training.of(data.plan)
    return [data.masks.shape[1] if train.learns_classes(m) else 1 for m in range(train.members)]


def _label(fold: int, member: int, members: int) -> str:
    return f"fold {fold} " + (f"member {member} " if members > 1 else "")


def _train_members(
    fold: int,
    data: CVData,
    train_idx: torch.Tensor,
    options: FoldOptions,
    end: float,
    on_message: Report | None,
) -> tuple[list[torch.nn.Module], list[int | None]]:
    """The fold's networks: each trained by its share of the time to ``end`` and written to
    the model folder when done; with ``options.resume``, those already there are read instead."""
    seeds, channels = _seeds(data.plan, fold), _channels(data)
    nets: list[torch.nn.Module] = []
    trained: list[int | None] = []
    for m, (seed, c) in enumerate(zip(seeds, channels, strict=True)):
        path = member_path(options.model_dir, fold, m) if options.model_dir else None
        if options.resume and path is not None and path.is_file():
            nets.append(_load_member(path, data.plan))
            trained.append(None)
            continue
        net, iterations = train_network(
            data.images[train_idx],
            data.masks[train_idx, :c],
            data.plan,
            seed,
            deadline=budget.member_deadline(time.time(), end, len(seeds) - m),
            on_progress=on_message if options.progress else None,
            label=_label(fold, m, len(seeds)),
        )
        if path is not None:
            save_member(path, net.state_dict())
        nets.append(net)
        trained.append(iterations)
    return nets, trained


def _load_member(path: Path, plan: dict[str, Any]) -> torch.nn.Module:
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = make_network(plan["network"], outputs_of(state))
    net.load_state_dict(state)
    return net.eval()


def _pseudo_label_fold(
    fold: int,
    data: CVData,
    train_idx: torch.Tensor,
    val_index: list[int],
    options: FoldOptions,
    on_message: Report | None,
) -> tuple[FoldResult, list[torch.nn.Module]]:
    """Teachers, their pseudo-labels on the unlabelled slices, and each teacher fine-tuned on
    labelled + pseudo-labelled slices (also without them, as a control, with
    ``options.control``). Not bound by the time budget; the fine-tuned networks are written to
    the model folder together, and a resumed run keeps a fold only when all of them are there."""
    plan, unlabelled = data.plan, data.unlabelled
    assert unlabelled is not None
    paths = (
        [member_path(options.model_dir, fold, m) for m in range(Training.of(plan).members)]
        if options.model_dir
        else []
    )
    if options.resume and paths and all(p.is_file() for p in paths):
        nets = [_load_member(p, plan) for p in paths]
        return FoldResult(
            fold, val_index, [n.state_dict() for n in nets], {}, [None] * len(nets)
        ), nets
    no_files = FoldOptions(progress=options.progress)
    teachers, _ = _train_members(fold, data, train_idx, no_files, math.inf, on_message)
    val_images, sizes, bf16 = (
        [data.originals[i] for i in val_index],
        inference_sizes(plan),
        _bf16(plan),
    )
    result = FoldResult(fold, val_index, [net.state_dict() for net in teachers])
    result.probs["teacher"] = _lesion(predict_slices(teachers, val_images, sizes, True, bf16))
    pseudo = targets_from_maps(predict_maps(teachers, unlabelled, tta=True, bf16=bf16))
    seeds, channels = _seeds(plan, fold), _channels(data)
    steps = int(plan["pseudo_labels"]["iterations"])

    def fine_tune(x: torch.Tensor, y: torch.Tensor) -> list[torch.nn.Module]:
        """Each teacher trained further on ``x``, ``y`` for the pseudo-label stage's steps."""
        return [
            train_network(x, y[:, :c], plan, seed + 1, state, steps).net
            for seed, state, c in zip(seeds, result.states, channels, strict=True)
        ]

    images, masks = data.images[train_idx], data.masks[train_idx]
    if options.control:
        controls = fine_tune(images, masks)
        result.probs["control"] = _lesion(predict_slices(controls, val_images, sizes, True, bf16))
    nets = fine_tune(
        torch.cat([images, unlabelled]), torch.cat([masks[:, : pseudo.shape[1]], pseudo])
    )
    result.states = [net.state_dict() for net in nets]
    result.iterations = [steps] * len(nets)
    for path, state in zip(paths, result.states, strict=False):
        save_member(path, state)
    return result, nets


def _bf16(plan: dict[str, Any]) -> bool:
    return Training.of(plan).bf16


def _oof_variants(
    nets: list[torch.nn.Module],
    images: list[npt.NDArray[np.uint8]],
    plan: dict[str, Any],
    full: bool = True,
) -> dict[str, list[npt.NDArray[np.float32]]]:
    """Out-of-fold maps at the slices' own sizes: with and without mirror TTA, the plan's
    choice of the two (``final``), at ``image_size`` alone, and the consolidation maps where
    some network learnt the classes. Not ``full``: ``final`` (and its TTA variant) only."""
    sizes, bf16, tta = inference_sizes(plan), _bf16(plan), bool(plan["inference"]["tta"])
    final = predict_slices(nets, images, sizes, tta, bf16)
    probs = {"final": _lesion(final), ("tta" if tta else "no_tta"): _lesion(final)}
    if full:
        other = predict_slices(nets, images, sizes, not tta, bf16)
        probs["no_tta" if tta else "tta"] = _lesion(other)
        one = predict_slices(nets, images, [int(plan["image_size"])], tta, bf16)
        probs["one_scale"] = _lesion(one)
    if final[0].shape[0] == 2:  # some member learnt the classes
        probs["consolidation"] = [m[1] for m in final]
    return probs


def _lesion(maps: list[npt.NDArray[np.float32]]) -> list[npt.NDArray[np.float32]]:
    return [m[0] for m in maps]
