"""The ``auto`` presets: nnU-Net-style planning from the dataset fingerprint.

From ``covseg.fingerprint`` (median spacing and shape, foreground HU statistics) the planner
chooses the target spacing (the median), the patch (the median image, shrunk along its largest
axis until the estimated training memory fits the budget), the network depth (downsample each
axis while its feature map stays >= 4 voxels and its spacing is not coarser than twice the
finest), DynUNet filters and deep supervision, and a z-score normalisation on the foreground
0.5-99.5 percentiles. ``auto-2d`` plans the same with one-slice patches and in-plane kernels, on
the same model grid, so that 2D and 3D models can be ensembled.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from covseg.model.plan import FORMAT_VERSION, load_preset

#: Training memory (GiB) a plan aims to fit, nnU-Net's reference budget.
GPU_MEMORY_GB = 8.0
#: Empirical bytes of training memory per patch voxel and per first-level filter (fp16 AMP, Adam,
#: activations kept for the backward pass of DynUNet); calibrates :func:`memory_gb`.
BYTES_PER_VOXEL_FILTER = 22.0
BASE_FILTERS, MAX_FILTERS, MAX_LEVELS, MIN_FEATURE = 32, 320, 5, 4


def plan_from_data(
    data_dir: Path, variant: str = "3d", gpu_memory_gb: float = GPU_MEMORY_GB
) -> dict[str, Any]:
    """Fingerprint the labelled cases of ``data_dir`` and plan from it."""
    from covseg.datasets import find_cases
    from covseg.fingerprint import fingerprint

    _, summary = fingerprint(find_cases(data_dir, require_labels=True))
    return plan_from_fingerprint(summary, variant, gpu_memory_gb)


def plan_from_fingerprint(
    summary: dict[str, Any], variant: str = "3d", gpu_memory_gb: float = GPU_MEMORY_GB
) -> dict[str, Any]:
    """A complete plan (see ``docs/presets.md``) from a fingerprint summary."""
    if variant not in ("3d", "2d"):
        raise ValueError(f"unknown variant {variant!r} (3d or 2d)")
    fg = summary.get("foreground_hu") or {}
    if not summary.get("median_spacing_mm") or fg.get("std") in (None, 0):
        raise ValueError("the fingerprint has no spacing or no lesion voxels in HU to plan from")
    spacing = [float(s) for s in summary["median_spacing_mm"]]
    shape = [int(s) for s in summary["median_shape"]]
    patch = patch_size(shape, spacing, variant, gpu_memory_gb)
    kernels, strides = topology(patch, spacing)
    levels = len(strides)
    plan = copy.deepcopy(load_preset("baseline"))
    plan.update(
        preset=f"auto-{variant}" if variant == "2d" else "auto", format_version=FORMAT_VERSION
    )
    plan["preprocessing"]["spacing_mm"] = [round(s, 4) for s in spacing]
    plan["preprocessing"]["intensity"] = {
        "kind": "zscore",
        "clip_min": float(fg["percentile_00_5"]),
        "clip_max": float(fg["percentile_99_5"]),
        "mean": round(float(fg["mean"]), 3),
        "std": round(float(fg["std"]), 3),
    }
    aug = plan["augmentation"]
    aug.update(
        pad_to=patch[:2],
        crop_size=patch,
        crop_samples=1,
        affine_prob=0.2,
        rotate_range_rad=[0.0, 0.0, 0.52],  # +-30 degrees in-plane (about the slice axis)
        scale_range=[0.15, 0.15, 0.0],
        noise_prob=0.1,
        noise_std=0.1,  # z-scored intensities: 0.1 standard deviations
    )
    plan["network"] = {
        "name": "DynUNet",
        "kernels": kernels,
        "strides": strides,
        "filters": [min(BASE_FILTERS * 2**i, MAX_FILTERS) for i in range(levels)],
        "deep_supervision": max(1, levels - 3),
        "residual": False,
        "out_channels": 2,
    }
    # nnU-Net's optimiser and schedule (1.5x the Dice of Adam in a 5-minute CPU run,
    # benchmarks/RESULTS.md), trained on the lung box that prediction segments.
    plan["training"].update(
        batch_size=2,
        optimizer="sgd",
        learning_rate=0.01,
        lr_schedule="poly",
        lung_crop=True,
        epochs=500,
        validation_interval=10,
    )
    plan["inference"].update(
        roi_size=patch,
        sw_batch_size=2,
        tta_mirror=True,
        tta_noise_repeats=0,
        resample="probabilities",
    )
    plan["postprocess"].update(min_component_ml=0.1, outside_lung=True)
    plan["planning"] = {
        "variant": variant,
        "gpu_memory_gb": gpu_memory_gb,
        "estimated_memory_gb": round(memory_gb(patch, 2), 2),
        "median_shape": shape,
    }
    return plan


def memory_gb(patch: list[int], batch: int) -> float:
    """Estimated training memory (GiB) of a DynUNet patch batch (see BYTES_PER_VOXEL_FILTER)."""
    return batch * float(np.prod(patch)) * BASE_FILTERS * BYTES_PER_VOXEL_FILTER / 2**30


def patch_size(
    shape: list[int], spacing: list[float], variant: str, gpu_memory_gb: float
) -> list[int]:
    """The median image (voxels), shrunk along its physically largest axis until it fits."""
    patch = [max(MIN_FEATURE, s) for s in shape]
    if variant == "2d":
        patch[2] = 1
    while memory_gb(patch, 2) > gpu_memory_gb:
        extents = [p * s if p > 1 else 0.0 for p, s in zip(patch, spacing, strict=True)]
        axis = int(np.argmax(extents))
        patch[axis] = max(MIN_FEATURE, patch[axis] - 16 if patch[axis] > 32 else patch[axis] // 2)
    # Every axis a multiple of its total downsampling factor.
    _, strides = topology(patch, spacing)
    factor = np.prod(np.array(strides), axis=0)
    return [int(max(f, (p // f) * f)) for p, f in zip(patch, factor, strict=True)]


def topology(patch: list[int], spacing: list[float]) -> tuple[list[list[int]], list[list[int]]]:
    """DynUNet kernels and strides: downsample an axis while its feature map stays >= 4 voxels
    and its spacing is within 2x the finest; 3-voxel kernels except along axes still coarser
    than twice the finest spacing (1), as nnU-Net does for thick slices."""
    size, sp = list(patch), list(spacing)
    kernels, strides, stride = [], [], [1, 1, 1]
    for level in range(MAX_LEVELS + 1):
        finest = min(s for s, n in zip(sp, size, strict=True) if n > 1)
        fine = [n > 1 and s <= 2 * finest for s, n in zip(sp, size, strict=True)]
        kernels.append([3 if f else 1 for f in fine])
        strides.append(stride)
        stride = [2 if f and n >= 2 * MIN_FEATURE else 1 for f, n in zip(fine, size, strict=True)]
        if level == MAX_LEVELS or 2 not in stride:
            break
        size = [n // st for n, st in zip(size, stride, strict=True)]
        sp = [s * st for s, st in zip(sp, stride, strict=True)]
    return kernels, strides
