"""Batch augmentation of 2D slices on the CPU, in torch, for the ``slices-2d`` preset.

Augmenting a whole batch with one ``grid_sample`` call is several times cheaper than per-sample
transforms, which matters when a 5-fold cross-validation has to fit in 15 minutes on 2 cores.
Images are grey values in [0, 1] with air at 0 (the padding value), masks are 0/1.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def spatial_grid(batch: int, size: int, cfg: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    """Sampling grid (B, H, W, 2) of a random flip, rotation, scaling, shift and elastic warp.

    Parameters
    ----------
    cfg
        ``rotate_deg`` (max absolute angle), ``scale`` ([low, high] zoom), ``shift`` (max
        fraction of the half-width), ``elastic`` (max displacement, fraction of the half-width,
        of a smooth field drawn on a 5 x 5 control grid), ``flip`` (bool: random left-right and
        up-down mirroring).
    """
    angle = torch.deg2rad(_uniform(batch, -cfg["rotate_deg"], cfg["rotate_deg"], gen))
    scale = _uniform(batch, cfg["scale"][0], cfg["scale"][1], gen)
    aspect = _uniform(batch, 0.9, 1.1, gen)  # slight anisotropy: slices differ in aspect
    flips = torch.ones(batch, 2)
    if cfg["flip"]:
        flips = torch.where(torch.rand(batch, 2, generator=gen) < 0.5, -1.0, 1.0)
    sx, sy = flips[:, 0] / (scale * aspect), flips[:, 1] * aspect / scale
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * sx, -sin * sy
    theta[:, 1, 0], theta[:, 1, 1] = sin * sx, cos * sy
    theta[:, :, 2] = (torch.rand(batch, 2, generator=gen) * 2 - 1) * cfg["shift"]
    grid = F.affine_grid(theta, [batch, 1, size, size], align_corners=False)
    if cfg["elastic"] > 0:
        coarse = (torch.rand(batch, 2, 5, 5, generator=gen) * 2 - 1) * cfg["elastic"]
        field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1)
    return grid


def intensity(x: torch.Tensor, cfg: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    """Random gamma, contrast, brightness and Gaussian noise; the result stays in [0, 1].

    Parameters
    ----------
    cfg
        ``gamma`` and ``contrast`` ([low, high], gamma drawn log-uniformly), ``brightness``
        (max absolute shift) and ``noise_std`` (max standard deviation).
    """
    b = x.shape[0]
    shape = (b, 1, 1, 1)
    log_g = torch.log(torch.tensor(cfg["gamma"], dtype=torch.float32))
    gamma = torch.exp(_uniform(b, float(log_g[0]), float(log_g[1]), gen)).view(shape)
    x = x.clamp_min(0).pow(gamma)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _uniform(b, cfg["contrast"][0], cfg["contrast"][1], gen).view(shape)
    brightness = _uniform(b, -cfg["brightness"], cfg["brightness"], gen).view(shape)
    x = (x - mean) * contrast + mean + brightness
    noise = _uniform(b, 0.0, cfg["noise_std"], gen).view(shape)
    x = x + noise * torch.randn(x.shape, generator=gen)
    return x.clamp(0.0, 1.0)


def augment(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: dict[str, Any],
    gen: torch.Generator,
    hard: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch of images ``x`` (B, 1, S, S) and masks ``y`` (B, C, S, S) together.

    ``cfg["probability"]`` (default 1) is the share of the samples augmented; the others pass
    unchanged, so the network also sees the slices as they are (nnU-Net draws each transform
    with a probability for the same reason). ``hard=False`` keeps the warped targets as they
    are interpolated (soft pseudo-labels stay soft; hard ones get soft edges), else > 0.5.
    """
    grid = spatial_grid(x.shape[0], x.shape[-1], cfg, gen)
    xa = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ya = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    xa = intensity(xa, cfg, gen)
    ya = (ya > 0.5).float() if hard else ya
    probability = float(cfg.get("probability", 1.0))
    if probability >= 1.0:
        return xa, ya
    chosen = (torch.rand(x.shape[0], generator=gen) < probability).view(-1, 1, 1, 1)
    return torch.where(chosen, xa, x), torch.where(chosen, ya, y)
