"""The time budget of a ``slices-2d`` run (``training.max_minutes``): plan it, then hold it.

Before training, :func:`fit_budget` times a few training steps here and chooses the networks a
fold and iterations a network that fit (a fast machine trains exactly the preset). While
training, every fold and network gets a wall-clock deadline (:func:`wave_deadline`,
:func:`member_deadline`), and :func:`covseg.model.slices2d.fit.train_network` cuts its
iterations as measured, so the run ends on time on a machine slower or busier than the
start-up estimate said.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from covseg.model.slices2d.settings import Training

#: Slow-down of a training step when folds train side by side (shared caches and memory
#: bandwidth): measured 0.26 s a step side by side against 0.20 s alone.
SIDE_BY_SIDE = 1.3
#: Duration of a last, partial wave of folds (which share all the cores) relative to a full
#: one: measured 0.63-0.70 (one fold on 2 threads against two side by side on 1 each).
PARTIAL_WAVE = 0.75
#: Share of ``training.max_minutes`` kept for loading, the step timing and the report.
RESERVE = 0.1
#: Fewest iterations the plan gives a network (the deadline may still cut it).
MIN_ITERATIONS = 50
#: A slice's forward pass against a training step's forward and backward pass, per sample.
FORWARD_SHARE = 1 / 3


def fold_processes(
    n_folds: int, setting: int | str | None, cores: int | None = None
) -> tuple[int, int]:
    """(processes, torch threads each) for training ``n_folds`` folds on ``cores`` cores
    (default: all of this machine's).

    ``auto`` (or ``None``) trains as many folds at once as there are cores, each on the cores'
    share: small 2D convolutions use threads poorly (one 224 x 224 step: 1.55 s on 2 threads,
    2.1 s on 1), so two single-thread folds side by side do 1.4x the work of one on two.
    """
    cores = cores or os.cpu_count() or 1
    processes = cores if setting in (None, "auto") else int(setting)
    processes = max(1, min(processes, n_folds))
    return processes, max(1, cores // processes)


def waves(folds: Sequence[int], processes: int, threads: int) -> list[tuple[list[int], int, int]]:
    """The folds in waves of ``processes`` side by side: (folds, processes, threads each).

    Folds that would run short of a full set of workers at the end (5 folds on 2 cores: the
    fifth) form a last wave with the cores shared among them instead of leaving cores idle.
    """
    if processes == 1:
        return [([fold], 1, threads) for fold in folds]
    full = len(folds) - len(folds) % processes
    out = [(list(folds[i : i + processes]), processes, threads) for i in range(0, full, processes)]
    if full < len(folds):
        rest = len(folds) - full
        out.append((list(folds[full:]), rest, max(1, processes * threads // rest)))
    return out


def wave_weights(plan: list[tuple[list[int], int, int]], processes: int) -> list[float]:
    """Expected duration of each wave relative to a full one (:data:`PARTIAL_WAVE`)."""
    return [1.0 if len(folds) == processes else PARTIAL_WAVE for folds, _, _ in plan]


def wave_deadline(now: float, end: float, weights: Sequence[float]) -> float:
    """When the first of the waves left (``weights``, relative durations) must end, for all of
    them to end by ``end``: its share of the time left."""
    return now + (end - now) * weights[0] / sum(weights)


def member_deadline(now: float, end: float, left: int) -> float:
    """When the next of ``left`` networks of a fold must end for the last one to end by
    ``end``: an equal share of the time left."""
    return now + (end - now) / max(1, left)


def step_seconds(plan: dict[str, Any], threads: int, steps: int = 5) -> float:
    """Seconds one training step of the plan's network takes here, on ``threads`` threads.

    Times :func:`~covseg.model.slices2d.fit.train_network` on random slices for ``2 + steps``
    and for 2 iterations: the difference is ``steps`` steps without the set-up and the first,
    slower steps.
    """
    from covseg.model.slices2d.fit import train_network

    size, batch = int(plan["image_size"]), Training.of(plan).batch_size
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 1, size, size, generator=gen)
    channels = 2 if Training.of(plan).uses_classes else 1
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


def predict_seconds(plan: dict[str, Any], slices: int, step: float) -> float:
    """Estimated seconds of a fold's out-of-fold prediction of ``slices`` slices, from the
    seconds ``step`` of a training step: every network at every input size, with and without
    the 4 mirrorings, and once at ``image_size``; a forward pass costs about
    :data:`FORWARD_SHARE` of a sample's training step."""
    from covseg.model.slices2d.predict import inference_sizes

    size = float(plan["image_size"])
    area = sum((s / size) ** 2 for s in inference_sizes(plan))
    passes = 5 * area + (4 if plan["inference"]["tta"] else 1)
    train = Training.of(plan)
    return step * train.members * slices * passes * FORWARD_SHARE / train.batch_size


def fit_budget(
    plan: dict[str, Any], n_folds: int, cores: int | None = None
) -> tuple[int, int, float]:
    """Networks per fold and iterations per network that fit ``training.max_minutes`` here.

    Returns ``(members, iterations, step_seconds)``. The plan's ``training.members`` and
    ``training.iterations`` are the most a run gets (a fast machine trains exactly the preset).
    On a slower one the ensemble shrinks first, since a fully trained network is worth more than
    two half-trained ones; only when a single network a fold does not fit are its iterations cut.
    The optional pseudo-label fine-tuning is not counted. Without ``max_minutes`` the plan's
    values stand (and the step time is NaN). The values used are written to the model's
    ``plan.yaml``, so ``--set training.max_minutes=null`` with them repeats a run anywhere.
    """
    train = Training.of(plan)
    cap, wanted = train.iterations, train.members
    if not train.max_minutes:
        return wanted, cap, float("nan")
    processes, threads = fold_processes(n_folds, train.fold_processes, cores)
    full, rest = divmod(n_folds, processes)
    n_waves = full + (PARTIAL_WAVE if rest else 0.0)
    step = step_seconds(plan, threads)
    # Iterations the budget buys for one network in each fold.
    steps = 60.0 * train.max_minutes * (1 - RESERVE) / (n_waves * step * SIDE_BY_SIDE)
    count = max(1, min(wanted, int(steps // cap)))
    return count, max(MIN_ITERATIONS, min(cap, int(steps / count))), step
