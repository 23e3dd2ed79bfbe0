"""Segmentation losses a plan can name (``training.loss``), all on (B, C, ...) logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Added to the noise-robust Dice's denominator (both pipelines): Laplace smoothing, as the 2D
#: soft Dice's +1. It bounds the loss of a lesion-free patch or slice: predicting q everywhere
#: on N voxels costs N q^1.5 / (N q^2 + eps), whose peak over q is ~0.57 (N / eps)^0.25, i.e.
#: ~10 for a 10^5-voxel patch with eps = 1 against ~180 with eps = 1e-5. Where a patch holds a
#: lesion of n voxels the denominator is at least n, so the +1 moves the loss by under 1/n.
NOISE_ROBUST_EPS = 1.0


def noise_robust_dice(
    prob: torch.Tensor,
    target: torch.Tensor,
    dims: tuple[int, ...],
    gamma: float = 1.5,
    eps: float = NOISE_ROBUST_EPS,
) -> torch.Tensor:
    """COPLE-Net's noise-robust Dice loss (Wang et al., IEEE TMI 2020), the shared core.

    ``sum |p - g|^gamma / (sum p^2 + sum g^2 + eps)``, the sums over ``dims`` of the
    probabilities ``prob`` and targets ``target`` (same shape, values in [0, 1]), then the mean
    over the remaining dimensions. ``gamma`` in [1, 2]: 1.5 tolerates label noise better than
    Dice (gamma 2 ~ 1 - Dice).
    """
    num = ((prob - target).abs() ** gamma).sum(dims)
    return (num / ((prob**2).sum(dims) + (target**2).sum(dims) + eps)).mean()


class NoiseRobustDiceLoss(torch.nn.Module):
    """:func:`noise_robust_dice` of the foreground channels' softmax, per sample and channel."""

    def __init__(self, gamma: float = 1.5) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        prob = logits.float().softmax(1)[:, 1:]
        onehot = F.one_hot(target[:, 0].long(), logits.shape[1]).movedim(-1, 1)[:, 1:].float()
        return noise_robust_dice(prob, onehot, tuple(range(2, prob.ndim)), self.gamma)


class DiceTopKLoss(torch.nn.Module):
    """Dice plus the mean cross-entropy of the ``k`` percent hardest voxels (nnU-Net's DiceTopK)."""

    def __init__(self, k_percent: float = 10.0, batch: bool = False) -> None:
        super().__init__()
        from monai.losses import DiceLoss

        self.dice = DiceLoss(to_onehot_y=True, softmax=True, batch=batch)
        self.k = k_percent / 100.0

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), target[:, 0].long(), reduction="none").flatten()
        top = ce.topk(max(1, int(self.k * ce.numel()))).values
        return self.dice(logits.float(), target) + top.mean()


def build_loss(name: str, batch: bool = False) -> torch.nn.Module:
    """The loss called ``name``: ``dice_ce`` (baseline), ``dice_focal``, ``dice_topk`` or
    ``noise_robust_dice``; targets are (B, 1, ...) class indices.

    ``batch`` sums the Dice terms over the whole batch before dividing (nnU-Net's batch Dice):
    a patch without lesion then no longer scores a Dice loss of ~1 for a single stray voxel.
    """
    from monai.losses import DiceCELoss, DiceFocalLoss

    if name == "dice_ce":
        return DiceCELoss(to_onehot_y=True, softmax=True, batch=batch)
    if name == "dice_focal":
        return DiceFocalLoss(to_onehot_y=True, softmax=True, batch=batch)
    if name == "dice_topk":
        return DiceTopKLoss(batch=batch)
    if name == "noise_robust_dice":
        return NoiseRobustDiceLoss()
    raise ValueError(f"unknown loss {name!r} (dice_ce, dice_focal, dice_topk, noise_robust_dice)")
