"""Training one fold: cached model-grid cases, the plan's augmentation, loss and optimiser,
sliding-window validation, checkpoints every epoch (``--resume``), a CSV log.

Runs on one device, or on several processes under ``torchrun`` (:mod:`covseg.model.distributed`):
each process then trains on its share of every epoch's cases and process 0 validates and writes.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covseg.datasets import Case, CaseError
from covseg.metrics.overlap import dice_unchecked
from covseg.model import distributed as dist
from covseg.model import rng
from covseg.model.data import load_case, make_folds
from covseg.model.inference import (
    CHECKPOINT_FORMAT,
    autocast,
    load_checkpoint,
    predict_probabilities,
)
from covseg.model.losses import build_loss
from covseg.model.networks import build_network
from covseg.model.plan import check_plan
from covseg.model.transforms import train_transforms

LOG_COLUMNS = ("epoch", "loss", "val_dice", "seconds")


@dataclass
class EpochLog:
    """One row of ``log.csv``: epoch (1-based), mean training loss, validation Dice (NaN when
    not validated this epoch), seconds of training so far (summed over resumed runs)."""

    epoch: int
    loss: float
    val_dice: float
    seconds: float


def split_fold(
    cases: Sequence[Case], plan: dict[str, Any], fold: int
) -> tuple[list[Case], list[Case]]:
    """(training, validation) cases of ``fold`` under the plan's deterministic k-fold split."""
    training = plan["training"]
    folds = make_folds(list(cases), int(training["folds"]), int(training["split_seed"]))
    held_out = set(folds[fold])
    return [c for c in cases if c.case_id not in held_out], [
        c for c in cases if c.case_id in held_out
    ]


def validate(
    net: torch.nn.Module, cases: list[dict[str, Any]], plan: dict[str, Any], device: torch.device
) -> float:
    """Mean Dice of the network's argmax over model-grid validation cases (sliding window)."""
    net.eval()
    scores = []
    for case in cases:
        prob = predict_probabilities(
            case["image"], [net], plan, bf16=bool(plan["training"]["amp"]), device=device
        )
        scores.append(dice_unchecked(prob.argmax(0).numpy() > 0, case["label"][0].numpy() > 0))
    net.train()
    return float(np.mean(scores)) if scores else float("nan")


@dataclass(frozen=True)
class Budget:
    """When a fold's training ends: after ``epochs`` epochs, or after the epoch that passes
    ``max_minutes`` of training (wall clock, summed over resumed runs) when set."""

    epochs: int
    max_minutes: float | None

    @classmethod
    def of(cls, training: dict[str, Any]) -> Budget:
        minutes = training.get("max_minutes")
        return cls(int(training["epochs"]), None if minutes is None else float(minutes))

    def spent(self, epoch: int, seconds: float) -> bool:
        """Whether a fold ``epoch`` epochs and ``seconds`` s into training is done."""
        return epoch >= self.epochs or (
            self.max_minutes is not None and seconds >= 60.0 * self.max_minutes
        )

    def progress(self, epochs: float, seconds: float) -> float:
        """Share of the training done (0..1, the larger of the epochs' and the clock's), the
        learning-rate schedule's clock: a time-boxed run decays by the clock."""
        by_clock = 0.0 if self.max_minutes is None else seconds / (60 * self.max_minutes)
        return max(epochs / self.epochs, by_clock)


@dataclass
class _Run:
    """What one fold's training loop works on."""

    net: torch.nn.Module
    model: torch.nn.Module  # the net, wrapped for DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    loss_fn: torch.nn.Module
    scaler: torch.amp.GradScaler
    loader: Any
    sampler: Any
    transform: Any
    val_data: list[dict[str, Any]]
    device: torch.device
    best: float
    began: float  # time.monotonic() of training's start, less the seconds of earlier runs


def train_fold(
    train_cases: Sequence[Case],
    val_cases: Sequence[Case],
    fold_dir: Path,
    plan: dict[str, Any],
    *,
    resume: bool = False,
    on_epoch: Callable[[EpochLog], None] | None = None,
    on_load: Callable[[str], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
    device: torch.device | None = None,
) -> list[EpochLog]:
    """Train one fold and write ``best.pt``, ``last.pt`` and ``log.csv`` into ``fold_dir``.

    Stops after ``training.epochs`` epochs, or after the epoch that passes
    ``training.max_minutes`` (wall clock of training) when set. With ``resume`` it goes on from
    ``last.pt``: its epoch, weights, optimiser state and training seconds (so the budget and the
    learning-rate schedule continue rather than restart), appending to ``log.csv``.
    ``on_load`` is called with each case id as it is cached, ``on_epoch`` after every epoch
    (progress bars), ``on_skip`` with the one-line error of a case that cannot be used (it is
    left out; without ``on_skip`` the error is raised).
    """
    from monai.utils import set_determinism

    check_plan(plan)
    training, budget = plan["training"], Budget.of(plan["training"])
    set_determinism(seed=int(training["seed"]) + dist.rank())
    fold_dir.mkdir(parents=True, exist_ok=True)
    state = _resume(fold_dir / "last.pt") if resume else None
    start = int(state["epoch"]) if state else 0
    if state and budget.spent(start, float(state.get("seconds", 0.0))):
        return []  # resumed a finished fold: nothing to load or train
    cached = _cache(train_cases, plan, on_load, on_skip)
    if not cached:
        raise CaseError(f"{fold_dir}: no usable training case")
    transform = train_transforms(plan)
    val_data = _cache(val_cases, plan, on_load, on_skip) if dist.is_main() else []
    run = _setup(cached, transform, val_data, plan, device or dist.default_device(), state)
    if not state and dist.is_main():
        (fold_dir / "log.csv").write_text(",".join(LOG_COLUMNS) + "\n")
    logs: list[EpochLog] = []
    for epoch in range(start, budget.epochs):
        loss = dist.mean(float(np.mean(_train_epoch(run, epoch, training, budget))))
        elapsed = time.monotonic() - run.began
        out_of_time = budget.spent(0, elapsed)
        if dist.is_main():
            last = epoch + 1 == budget.epochs or out_of_time
            dice = _validate(run, plan, epoch, last)
            log = EpochLog(epoch + 1, loss, dice, round(elapsed, 1))
            _checkpoint(run, fold_dir, log, elapsed)
            logs.append(log)
            if on_epoch:
                on_epoch(log)
        dist.barrier()
        if dist.agree(out_of_time):
            break
    return logs


def _resume(last_path: Path) -> dict[str, Any] | None:
    """The checkpoint a resumed fold goes on from, or none when it has not started."""
    return load_checkpoint(last_path) if last_path.is_file() else None


def _cache(
    cases: Sequence[Case],
    plan: dict[str, Any],
    on_load: Callable[[str], None] | None,
    on_skip: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    """The cases on the model grid; a case that cannot be used goes to ``on_skip`` (else
    raises)."""
    out = []
    for case in cases:
        try:
            out.append(load_case(case, plan))
        except ValueError as exc:  # CaseError, VolumeReadError: skip the case, name it
            if on_skip is None:
                raise
            on_skip(str(exc))
        if on_load:
            on_load(case.case_id)
    return out


def _setup(
    cached: list[dict[str, Any]],
    transform: Any,
    val_data: list[dict[str, Any]],
    plan: dict[str, Any],
    device: torch.device,
    state: dict[str, Any] | None,
) -> _Run:
    """Loader, network, optimiser, loss and scaler; from ``state`` when resuming."""
    from monai.data import DataLoader, Dataset

    training = plan["training"]
    data = Dataset(cached, transform=transform)
    sampler = dist.sampler(data, seed=int(training["seed"]))
    loader = DataLoader(
        data, batch_size=int(training["batch_size"]), shuffle=sampler is None, sampler=sampler
    )
    net = build_network(plan).to(device)
    optimizer = build_optimizer(net, training)
    if state:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        # One process: go on with the generators where they stopped, so the resumed run draws
        # the batches and crops the uninterrupted one would have. Under torchrun each process
        # has its own generators and the checkpoint holds process 0's: those re-seed instead.
        if "rng" in state and not dist.active():
            rng.restore(state["rng"], transform)
    # A resumed run goes on with the clock where it stopped: the time budget and the poly
    # schedule's share of it count the whole training, not each run.
    spent = float(state.get("seconds", 0.0)) if state else 0.0
    return _Run(
        net=net,
        model=dist.wrap(net),
        optimizer=optimizer,
        loss_fn=build_loss(str(training["loss"]), batch=bool(training.get("batch_dice", False))),
        scaler=torch.amp.GradScaler(
            device.type, enabled=bool(training["amp"]) and device.type == "cuda"
        ),
        loader=loader,
        sampler=sampler,
        transform=transform,
        val_data=val_data,
        device=device,
        best=float(state["best_dice"]) if state else -1.0,
        began=time.monotonic() - spent,
    )


def _train_epoch(run: _Run, epoch: int, training: dict[str, Any], budget: Budget) -> list[float]:
    """One pass over the loader; the learning rate follows the schedule step by step.
    Returns the batches' losses."""
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    base_lr = float(training["learning_rate"])
    schedule = str(training.get("lr_schedule", "constant"))
    amp = bool(training["amp"]) and run.device.type == "cuda"
    losses = []
    run.model.train()
    for step, batch in enumerate(run.loader):
        progress = budget.progress(epoch + step / len(run.loader), time.monotonic() - run.began)
        for group in run.optimizer.param_groups:
            group["lr"] = scheduled_lr(base_lr, schedule, progress)
        image, label = batch["image"].to(run.device), batch["label"].to(run.device)
        run.optimizer.zero_grad(set_to_none=True)
        # Mixed precision on GPUs only: bfloat16 training on the CPU gained no speed here
        # and diverged (NaN loss) in a phantom run.
        with autocast(run.device, amp):
            out = run.model(image)
        loss = _deep_supervised_loss(run.loss_fn, out, label)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        losses.append(float(loss.detach()))
    return losses


def _validate(run: _Run, plan: dict[str, Any], epoch: int, last: bool) -> float:
    """Validation Dice every ``validation_interval`` epochs and after the last; else NaN."""
    interval = int(plan["training"]["validation_interval"])
    if run.val_data and ((epoch + 1) % interval == 0 or last):
        return validate(run.net, run.val_data, plan, run.device)
    return float("nan")


def _checkpoint(run: _Run, fold_dir: Path, log: EpochLog, elapsed: float) -> None:
    """Write ``last.pt`` (and ``best.pt`` when the Dice improved, or without validation cases)
    and append the epoch to ``log.csv``."""
    improved = not np.isnan(log.val_dice) and log.val_dice > run.best
    run.best = log.val_dice if improved else run.best
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": run.net.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "epoch": log.epoch,
        "best_dice": run.best,
        "seconds": elapsed,
        "rng": rng.capture(run.transform),
    }
    torch.save(state, fold_dir / "last.pt")
    if improved or not run.val_data:
        torch.save(state, fold_dir / "best.pt")
    with (fold_dir / "log.csv").open("a", newline="") as f:
        csv.writer(f).writerow([log.epoch, f"{log.loss:.5f}", f"{log.val_dice:.5f}", log.seconds])


def build_optimizer(net: torch.nn.Module, training: dict[str, Any]) -> torch.optim.Optimizer:
    """``adam`` (the baseline's) or ``sgd`` (nnU-Net's: Nesterov, momentum 0.99, decay 3e-5)."""
    name, lr = str(training["optimizer"]), float(training["learning_rate"])
    if name == "adam":
        return torch.optim.Adam(net.parameters(), lr=lr)
    if name == "sgd":
        return torch.optim.SGD(
            net.parameters(), lr=lr, momentum=0.99, nesterov=True, weight_decay=3e-5
        )
    raise ValueError(f"training.optimizer must be adam or sgd, got {name!r}")


def scheduled_lr(base: float, schedule: str, progress: float) -> float:
    """Learning rate at ``progress`` (0..1: the larger of the epochs' and the budget's share spent).

    ``constant`` keeps ``base`` (the organizers' baseline); ``poly`` is nnU-Net's
    ``base * (1 - progress) ** 0.9``, which lets a short, time-boxed run settle instead of ending
    on a large step.
    """
    if schedule == "constant":
        return base
    if schedule == "poly":
        return base * (1.0 - min(max(progress, 0.0), 1.0)) ** 0.9
    raise ValueError(f"training.lr_schedule must be constant or poly, got {schedule!r}")


def _deep_supervised_loss(
    loss_fn: torch.nn.Module, out: torch.Tensor, label: torch.Tensor
) -> torch.Tensor:
    """The loss; for DynUNet's deep supervision (B, heads, C, ...) output, the heads' losses
    weighted 1, 1/2, 1/4... (normalised), each head already upsampled by MONAI."""
    out = out.float()
    if out.ndim != label.ndim + 1:
        return loss_fn(out, label)
    weights = torch.tensor([0.5**i for i in range(out.shape[1])])
    weights = weights / weights.sum()
    return sum(w * loss_fn(out[:, i], label) for i, w in enumerate(weights))
