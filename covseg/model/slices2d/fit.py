"""Train one 2D U-Net of the ``slices-2d`` preset on fixed-size slices, within a deadline.

Training draws random batches (no epochs: the budget is a number of iterations), augments them
(:mod:`covseg.model.slices2d.augment`) and minimises the plan's loss
(:func:`covseg.model.slices2d.net.training_loss`) with AdamW under bfloat16 autocast, which runs
convolutions 2-3x faster on CPUs with AVX-512 BF16. The learning rate warms up over the first
5 % of the iterations and decays on a cosine to zero at the last one.

A deadline is checked after every iteration against the mean step time so far: where the
planned iterations would end past it, the count is cut to what fits and the cosine re-scaled to
the new end, so the network still ends on a small step (a busy machine slows steps 2-3x).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from covseg.model.inference import autocast
from covseg.model.slices2d.augment import augment
from covseg.model.slices2d.net import make_network, normalise, output_channels, training_loss
from covseg.model.slices2d.settings import Training

#: Iterations between two progress lines (and at most this many seconds).
LOG_EVERY, LOG_SECONDS = 50, 15.0


#: The deadline is fitted once this many steps have run, on the mean time of those after the
#: first (which sets up kernels and memory); before, only a passed deadline stops training.
TIMING_SKIP = 2


class Trained(NamedTuple):
    """A trained network (eval mode) and the iterations it was trained for."""

    net: torch.nn.Module
    iterations: int


class Schedule:
    """The learning-rate factor of iteration ``i``: linear warm-up, then cosine decay to the end.

    ``total`` may shrink while training (:meth:`fit`); the warm-up stays as planned.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.warmup = max(1, total // 20)

    def factor(self, i: int) -> float:
        """Factor of the base learning rate at iteration ``i`` (0-based)."""
        return float(min(1.0, (i + 1) / self.warmup) * 0.5 * (1 + np.cos(np.pi * i / self.total)))

    def fit(self, done: int, seconds_per_step: float, seconds_left: float) -> None:
        """Cut ``total`` so that the iterations after the ``done`` ones fit ``seconds_left`` at
        ``seconds_per_step`` (at least ``done``: nothing more once the deadline is past)."""
        fits = done + max(0, math.floor(seconds_left / max(seconds_per_step, 1e-9)))
        self.total = max(done, min(self.total, fits))


def train_network(
    images: torch.Tensor,
    masks: torch.Tensor,
    plan: dict[str, Any],
    seed: int,
    init: dict[str, torch.Tensor] | None = None,
    iterations: int | None = None,
    *,
    deadline: float = math.inf,
    on_progress: Callable[[str], None] | None = None,
    label: str = "",
    extra: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    extra_per_batch: int = 0,
    extra_augment: bool = False,
) -> Trained:
    """Train one network on (N, 1, S, S) ``images`` and (N, C, S, S) ``masks`` (C: 1 or 2).

    Parameters
    ----------
    plan
        The preset: ``network``, ``training`` (:class:`~covseg.model.slices2d.settings.Training`)
        and ``augmentation``.
    init
        Weights to start from (fine-tuning on pseudo-labels, at half the learning rate);
        ``None`` trains from scratch.
    iterations
        Overrides ``training.iterations``.
    deadline
        Wall clock (``time.time()``, s) by which training must end; the iterations are cut to
        fit it as measured while training (``inf``: none).
    on_progress
        Called with a progress line after the first iteration, then every :data:`LOG_EVERY`
        iterations or :data:`LOG_SECONDS` seconds, and when the deadline cuts the iterations.
    label
        Prefix of the progress lines (``"fold 2 "``: folds train side by side).
    extra
        Extra training-only samples (pseudo-labels): images (M, 1, S, S), targets (M, C, S, S),
        hard 0/1 or soft probabilities, and sampling weights (M,), e.g. the teacher's confidence
        (0: never drawn). Each batch adds ``extra_per_batch`` of them, drawn in proportion to
        their weights from a generator of their own, so the labelled part of every batch is the
        same as without ``extra`` (paired comparisons).
    extra_augment
        Augment the extra samples (``augmentation``) even when ``training.augment`` is off:
        strong augmentation on the student's pseudo-labelled slices only.
    """
    train = Training.of(plan)
    device = torch.device(train.device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    draw = None
    if extra is not None and extra_per_batch > 0 and bool((extra[2] > 0).any()):
        draw = _ExtraDraw(extra, extra_per_batch, extra_augment, seed)
    net = make_network(plan["network"], output_channels(masks.shape[1])).to(device)
    if init is not None:
        net.load_state_dict(init)
    schedule = Schedule(iterations or train.iterations)
    lr = train.learning_rate * (0.5 if init is not None else 1.0)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=train.weight_decay)
    ema = _ema(net, train.ema_decay)
    net.train()
    start = last_line = time.perf_counter()
    running, step, planned = 0.0, 0, schedule.total
    first = start
    while step < schedule.total:
        for group in opt.param_groups:
            group["lr"] = lr * schedule.factor(step)
        loss = _train_step(net, opt, images, masks, plan, train, gen, draw)
        if ema is not None:
            ema.update_parameters(net)
        running = 0.9 * running + 0.1 * loss if step else loss
        step += 1
        now = time.perf_counter()
        was = schedule.total
        if step == 1:
            first = now
        if deadline < math.inf:
            left = deadline - time.time()
            if left <= 0:
                schedule.fit(step, 1.0, left)  # past the deadline: stop now
            elif step > TIMING_SKIP:
                # The first step sets up kernels and memory (~3 s against 0.2 s, measured):
                # timed with the others it would cut the network to a tenth for nothing.
                schedule.fit(step, (now - first) / (step - 1), left)
        if on_progress and was == planned > schedule.total:  # the first cut is announced
            on_progress(
                f"    {label}cut to {schedule.total} of {planned} iterations to end by the "
                "deadline (training.max_minutes)"
            )
        if on_progress and (
            step == 1
            or step % LOG_EVERY == 0
            or now - last_line >= LOG_SECONDS
            or step == schedule.total
        ):
            on_progress(
                f"    {label}iter {step}/{schedule.total}  loss {running:.3f}  {now - start:.0f}s"
            )
            last_line = now
    if ema is not None:  # BasicUNet's instance norms keep no running statistics to recompute
        net.load_state_dict(ema.module.state_dict())
    net.eval()
    return Trained(net, step)


def _ema(net: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``net``'s weights, or none when ``decay`` is 0."""
    if decay <= 0:
        return None
    return torch.optim.swa_utils.AveragedModel(
        net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay)
    )


class _ExtraDraw:
    """Draws a batch's extra samples by weight, from a generator of their own (seed + 7919), so
    the labelled draws (and augmentations) stay those of a run without them."""

    def __init__(
        self,
        extra: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        per_batch: int,
        augment: bool,
        seed: int,
    ) -> None:
        self.images, self.targets, self.weights = extra
        self.per_batch, self.augment = per_batch, augment
        self.gen = torch.Generator().manual_seed(seed + 7919)

    def add(
        self, x: torch.Tensor, y: torch.Tensor, plan: dict[str, Any], train: Training
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch ``x``, ``y`` with ``per_batch`` extra samples appended."""
        pick = torch.multinomial(self.weights, self.per_batch, True, generator=self.gen)
        xe, ye = self.images[pick], self.targets[pick]
        if self.augment or train.augment:
            xe, ye = augment(xe, ye, plan["augmentation"], self.gen, hard=False)
        return torch.cat([x, xe]), torch.cat([y, ye])


def _train_step(
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    images: torch.Tensor,
    masks: torch.Tensor,
    plan: dict[str, Any],
    train: Training,
    gen: torch.Generator,
    draw: _ExtraDraw | None = None,
) -> float:
    """One optimiser step on a random (augmented) batch, plus ``draw``'s extra samples;
    returns its loss."""
    idx = torch.randint(len(images), (train.batch_size,), generator=gen)
    x, y = images[idx], masks[idx]
    if train.augment:
        x, y = augment(x, y, plan["augmentation"], gen)
    if draw is not None:
        x, y = draw.add(x, y, plan, train)
    device = next(net.parameters()).device
    x, y = x.to(device), y.to(device)
    with autocast(device, train.bf16):
        logits = net(normalise(x))
    loss = training_loss(logits.float(), y, train.batch_dice, train.loss)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()
