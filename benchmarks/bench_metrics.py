"""Speed of covseg's metrics against DeepMind ``surface-distance`` and MONAI on one full-size case.

Builds a realistic pair (512 x 512 x 300 voxels, 0.74 x 0.74 x 5 mm, several irregular lesions of
different sizes; the prediction a perturbed truth: lesions grown or shrunk, a missed small
lesion, a false positive), then times on that same pair:

- covseg: Dice + NSD@1mm + NAVE + HD95 (the challenge's metrics, through the public functions),
  and ``evaluate_case`` (all metrics, lesion-wise included);
- DeepMind ``surface-distance`` 0.1: NSD alone (``compute_surface_distances`` + surface Dice);
- MONAI: ``compute_surface_dice(use_subvoxels=True)``.

It prints every value, the speed ratios and covseg's peak traced memory against the masks' size.

Run: ``.venv/bin/python benchmarks/bench_metrics.py`` (``--repeat N``: best of N runs of each).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

from covseg import metrics

SHAPE = (512, 512, 300)
SPACING = (0.74, 0.74, 5.0)
TOLERANCE_MM = 1.0


def _blob(rng: np.random.Generator, radii_mm: np.ndarray) -> np.ndarray:
    """An irregular lesion: an ellipsoid with a smoothly noisy border, in a tight box."""
    half = np.ceil(1.5 * radii_mm / np.asarray(SPACING)).astype(int) + 1
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    radial = sum((g * s / r) ** 2 for g, s, r in zip(grid, SPACING, radii_mm, strict=True))
    noise = ndimage.gaussian_filter(rng.standard_normal(2 * half + 1), sigma=(8, 8, 1.5))
    noise /= noise.std()
    return np.sqrt(radial) + 0.2 * noise < 1.0


def make_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction) boolean masks of ``SHAPE`` with realistic lesions and errors."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(SHAPE, bool)
    pred = np.zeros(SHAPE, bool)
    radii = [45.0, 35.0, 28.0, 20.0, 15.0, 10.0, 7.0, 4.0]  # mm, large to small
    for index, radius in enumerate(radii):
        lesion = _blob(rng, radius * rng.uniform(0.6, 1.0, size=3))
        corner = [
            int(rng.integers(40, n - 40 - s)) for n, s in zip(SHAPE, lesion.shape, strict=True)
        ]
        window = tuple(slice(c, c + s) for c, s in zip(corner, lesion.shape, strict=True))
        truth[window] |= lesion
        if radius == radii[-1]:
            continue  # the smallest lesion is missed
        change = index % 3  # grown, shrunk or kept, in turn
        in_plane = np.zeros((3, 3, 3), bool)
        in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
        if change == 0:
            lesion = ndimage.binary_dilation(lesion, in_plane, iterations=2)
        elif change == 1:
            lesion = ndimage.binary_erosion(lesion, in_plane, iterations=2)
        pred[window] |= lesion
    false_positive = _blob(rng, np.array([8.0, 6.0, 10.0]))
    window = tuple(
        slice(c, c + s) for c, s in zip((300, 60, 20), false_positive.shape, strict=True)
    )
    pred[window] |= false_positive
    return truth, pred


def _time(function: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - start)
    return best, value


def covseg_core(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The challenge's four metrics through covseg's public functions."""
    surface = metrics.surface_distances(pred, truth, SPACING)
    return {
        "dice": metrics.dice(pred, truth),
        "nsd": surface.surface_dice(TOLERANCE_MM),
        "nave": metrics.normalized_absolute_volume_error(pred, truth, SPACING),
        "hd95": surface.hausdorff(95.0),
    }


def deepmind_nsd(pred: np.ndarray, truth: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """DeepMind's NSD, with its surface distances (to check HD95 outside the timing)."""
    import surface_distance

    distances = surface_distance.compute_surface_distances(truth, pred, SPACING)
    nsd = surface_distance.compute_surface_dice_at_tolerance(distances, TOLERANCE_MM)
    return float(nsd), distances


def monai_nsd(pred_tensor: Any, truth_tensor: Any) -> float:
    from monai.metrics import compute_surface_dice

    value = compute_surface_dice(
        pred_tensor,
        truth_tensor,
        [TOLERANCE_MM],
        include_background=True,
        spacing=SPACING,
        use_subvoxels=True,
    )
    return float(value.item())


def resident_bytes() -> int:
    """The process's resident memory now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_resident_bytes() -> int:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_traced_bytes(function: Callable[[], Any]) -> int:
    tracemalloc.start()
    function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs each (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    truth, pred = make_pair(args.seed)
    masks_bytes = truth.nbytes + pred.nbytes
    print(f"pair: {SHAPE} voxels, spacing {SPACING} mm, {masks_bytes / 2**20:.0f} MiB of masks")
    rss_before, peak_rss_before = resident_bytes(), peak_resident_bytes()

    t_core, core = _time(lambda: covseg_core(pred, truth), args.repeat)
    t_case, case = _time(lambda: metrics.evaluate_case(pred, truth, SPACING), args.repeat)
    peak_rss_after = peak_resident_bytes()
    # The process peak only says something once covseg pushed it above the earlier peak.
    rss_growth = (
        f"{(peak_rss_after - rss_before) / 2**20:.0f} MiB"
        if peak_rss_after > peak_rss_before
        else f"<= {(peak_rss_before - rss_before) / 2**20:.0f} MiB"
    )
    print(
        f"truth {case['truth_ml']:.1f} mL in {case['truth_lesions']:.0f} lesions, "
        f"prediction {case['pred_ml']:.1f} mL in {case['pred_lesions']:.0f}"
    )
    peak_core = peak_traced_bytes(lambda: covseg_core(pred, truth))
    peak_case = peak_traced_bytes(lambda: metrics.evaluate_case(pred, truth, SPACING))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # surface-distance uses deprecated scipy namespaces
        t_deepmind, (nsd_deepmind, deepmind_distances) = _time(
            lambda: deepmind_nsd(pred, truth), args.repeat
        )
        import surface_distance

        hd95_deepmind = surface_distance.compute_robust_hausdorff(deepmind_distances, 95)
        dice_deepmind = surface_distance.compute_dice_coefficient(truth, pred)
    import torch

    pred_tensor = torch.from_numpy(pred)[None, None].float()
    truth_tensor = torch.from_numpy(truth)[None, None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_monai, nsd_monai = _time(lambda: monai_nsd(pred_tensor, truth_tensor), args.repeat)

    print()
    print(f"{'implementation':<46}{'seconds':>9}  values")
    print(
        f"{'covseg Dice + NSD@1mm + NAVE + HD95':<46}{t_core:9.3f}  "
        + ", ".join(f"{k}={v:.10g}" for k, v in core.items())
    )
    print(
        f"{'covseg evaluate_case (all 13 metrics)':<46}{t_case:9.3f}  "
        + ", ".join(f"{k}={v:.6g}" for k, v in case.items())
    )
    print(
        f"{'DeepMind surface-distance NSD@1mm alone':<46}{t_deepmind:9.3f}  nsd={nsd_deepmind:.10g}"
    )
    print(f"{'MONAI compute_surface_dice(use_subvoxels)':<46}{t_monai:9.3f}  nsd={nsd_monai:.10g}")
    print()
    print(f"speed-up of covseg's four metrics over DeepMind NSD alone: {t_deepmind / t_core:.1f}x")
    print(f"speed-up of covseg's four metrics over MONAI NSD alone:    {t_monai / t_core:.1f}x")
    print(f"speed-up of evaluate_case over DeepMind NSD alone:         {t_deepmind / t_case:.1f}x")
    print(
        f"|NSD covseg - DeepMind| = {abs(core['nsd'] - nsd_deepmind):.2e}, "
        f"|NSD covseg - MONAI| = {abs(core['nsd'] - nsd_monai):.2e} (MONAI computes in float32)"
    )
    print(
        f"|HD95 covseg - DeepMind| = {abs(core['hd95'] - hd95_deepmind):.2e}, "
        f"|Dice covseg - DeepMind| = {abs(core['dice'] - dice_deepmind):.2e}"
    )
    print(f"load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"peak traced memory: four metrics {peak_core / 2**20:.0f} MiB "
        f"({peak_core / masks_bytes:.2f}x the masks), evaluate_case {peak_case / 2**20:.0f} MiB "
        f"({peak_case / masks_bytes:.2f}x the masks); peak resident memory growth over both "
        f"(incl. untraced C++ buffers): {rss_growth}"
    )


if __name__ == "__main__":
    main()
