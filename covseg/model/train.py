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

from covseg.datasets import Case
from covseg.model import distributed as dist
from covseg.model import rng
from covseg.model.data import CaseError, load_case, make_folds
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


def dice_score(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Dice of two binary masks; 1.0 when both are empty."""
    p, t = pred.bool(), truth.bool()
    total = int(p.sum()) + int(t.sum())
    return 1.0 if total == 0 else 2.0 * int((p & t).sum()) / total


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
        scores.append(dice_score(prob.argmax(0) > 0, case["label"][0] > 0))
    net.train()
    return float(np.mean(scores)) if scores else float("nan")


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
    from monai.data import DataLoader, Dataset
    from monai.utils import set_determinism

    check_plan(plan)
    training = plan["training"]
    device = device or dist.default_device()
    set_determinism(seed=int(training["seed"]) + dist.rank())
    fold_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path, log_path = (
        fold_dir / "last.pt",
        fold_dir / "best.pt",
        fold_dir / "log.csv",
    )
    state = load_checkpoint(last_path) if resume and last_path.is_file() else None
    start = int(state["epoch"]) if state else 0
    # A resumed run goes on with the clock where it stopped: the time budget and the poly
    # schedule's share of it count the whole training, not each run.
    spent = float(state.get("seconds", 0.0)) if state else 0.0
    max_minutes = training.get("max_minutes")
    if start >= int(training["epochs"]) or (
        max_minutes is not None and spent >= 60.0 * float(max_minutes)
    ):
        return []  # resumed a finished fold: nothing to load or train

    def cache(cases: Sequence[Case]) -> list[dict[str, Any]]:
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

    cached = cache(train_cases)
    if not cached:
        raise CaseError(f"{fold_dir}: no usable training case")
    transform = train_transforms(plan)
    data = Dataset(cached, transform=transform)
    val_data = cache(val_cases) if dist.is_main() else []
    sampler = dist.sampler(data, seed=int(training["seed"]))
    loader = DataLoader(
        data, batch_size=int(training["batch_size"]), shuffle=sampler is None, sampler=sampler
    )
    net = build_network(plan).to(device)
    optimizer = build_optimizer(net, training)
    loss_fn = build_loss(str(training["loss"]), batch=bool(training.get("batch_dice", False)))
    scaler = torch.amp.GradScaler(
        device.type, enabled=bool(training["amp"]) and device.type == "cuda"
    )
    best = float(state["best_dice"]) if state else -1.0
    logs: list[EpochLog] = []
    if state:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        # One process: go on with the generators where they stopped, so the resumed run draws
        # the batches and crops the uninterrupted one would have. Under torchrun each process
        # has its own generators and the checkpoint holds process 0's: those re-seed instead.
        if "rng" in state and not dist.active():
            rng.restore(state["rng"], transform)
    elif dist.is_main():
        log_path.write_text(",".join(LOG_COLUMNS) + "\n")
    model = dist.wrap(net)
    began = time.monotonic() - spent
    interval = int(training["validation_interval"])
    base_lr = float(training["learning_rate"])
    schedule = str(training.get("lr_schedule", "constant"))
    for epoch in range(start, int(training["epochs"])):
        if sampler is not None:
            sampler.set_epoch(epoch)
        losses = []
        model.train()
        for step, batch in enumerate(loader):
            progress = max(
                (epoch + step / len(loader)) / int(training["epochs"]),
                0.0 if max_minutes is None else (time.monotonic() - began) / (60 * max_minutes),
            )
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(base_lr, schedule, progress)
            image, label = batch["image"].to(device), batch["label"].to(device)
            optimizer.zero_grad(set_to_none=True)
            # Mixed precision on GPUs only: bfloat16 training on the CPU gained no speed here
            # and diverged (NaN loss) in a phantom run.
            with autocast(device, bool(training["amp"]) and device.type == "cuda"):
                out = model(image)
            loss = _deep_supervised_loss(loss_fn, out, label)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
        elapsed = time.monotonic() - began
        out_of_time = max_minutes is not None and elapsed >= 60.0 * float(max_minutes)
        last_epoch = epoch + 1 == int(training["epochs"]) or out_of_time
        dice = float("nan")
        if dist.is_main():
            if val_data and ((epoch + 1) % interval == 0 or last_epoch):
                dice = validate(net, val_data, plan, device)
            log = EpochLog(epoch + 1, dist.mean(float(np.mean(losses))), dice, round(elapsed, 1))
            improved = not np.isnan(dice) and dice > best
            best = dice if improved else best
            state = {
                "format": CHECKPOINT_FORMAT,
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch + 1,
                "best_dice": best,
                "seconds": elapsed,
                "rng": rng.capture(transform),
            }
            torch.save(state, last_path)
            if improved or not val_data:
                torch.save(state, best_path)
            with log_path.open("a", newline="") as f:
                csv.writer(f).writerow(
                    [log.epoch, f"{log.loss:.5f}", f"{log.val_dice:.5f}", log.seconds]
                )
            logs.append(log)
            if on_epoch:
                on_epoch(log)
        else:
            dist.mean(float(np.mean(losses)))
        dist.barrier()
        if dist.agree(out_of_time):
            break
    return logs


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
