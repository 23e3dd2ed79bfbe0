"""Segmentation losses a plan can name (``training.loss``), all on (B, C, ...) logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class NoiseRobustDiceLoss(torch.nn.Module):
    """COPLE-Net's noise-robust Dice loss (Wang et al., IEEE TMI 2020).

    ``sum |p - g|^gamma / (sum p^2 + sum g^2 + eps)`` over the foreground channels, with
    ``gamma`` in [1, 2]; gamma 1.5 tolerates label noise better than Dice (gamma 2 ~ 1 - Dice).
    """

    def __init__(self, gamma: float = 1.5, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma, self.eps = gamma, eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        prob = logits.float().softmax(1)[:, 1:]
        onehot = F.one_hot(target[:, 0].long(), logits.shape[1]).movedim(-1, 1)[:, 1:].float()
        dims = tuple(range(2, prob.ndim))
        num = ((prob - onehot).abs() ** self.gamma).sum(dims)
        den = (prob**2).sum(dims) + (onehot**2).sum(dims) + self.eps
        return (num / den).mean()


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
