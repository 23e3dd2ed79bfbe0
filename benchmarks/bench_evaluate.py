"""End-to-end speed of ``covseg evaluate`` on a test-set-sized folder of full-size cases.

Writes, into a temporary folder, 46 truth masks in the COVID-19-20 layout
(``volume-covid19-X-NNNN_seg.nii.gz``; like the challenge's test set, about half from source A,
0.74 x 0.74 x 5 mm with 60-90 slices, and half from source B, 0.8 x 0.8 x 1.25 mm with 200-300
slices; all 512 x 512 in-plane) and one prediction per case (the truth perturbed: lesions moved
by a voxel and grown or shrunk, the smallest one missed, a false positive added). Then it runs
``covseg evaluate PRED TRUTH -o metrics.csv --workers N`` as a user would (a subprocess: reading,
checking, scoring, writing) and prints the wall time and cases per second.

Run: ``.venv/bin/python benchmarks/bench_evaluate.py [--cases 46] [--workers 2] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from covseg.io import Volume, write_mask

SOURCES = {"A": ((0.74, 0.74, 5.0), (60, 90)), "B": ((0.8, 0.8, 1.25), (200, 300))}


def _lesion(rng: np.random.Generator, radii_mm: np.ndarray, spacing: tuple[float, ...]):
    """An irregular ellipsoidal lesion in a tight box (boolean array)."""
    half = np.ceil(1.3 * radii_mm / np.asarray(spacing)).astype(int) + 1
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    radial = np.sqrt(sum((g * s / r) ** 2 for g, s, r in zip(grid, spacing, radii_mm, strict=True)))
    noise = ndimage.gaussian_filter(rng.standard_normal(2 * half + 1), sigma=3.0)
    return radial + noise / (noise.std() + 1e-9) * 0.15 < 1.0


def make_case(seed: int, source: str) -> tuple[Volume, np.ndarray, np.ndarray]:
    """(reference geometry, truth, prediction) for one synthetic case."""
    rng = np.random.default_rng(seed)
    spacing, (low, high) = SOURCES[source]
    shape = (512, 512, int(rng.integers(low, high + 1)))
    reference = Volume.from_geometry(
        np.zeros(shape, np.uint8), spacing, (-190.0, -190.0, -float(shape[2]) * spacing[2])
    )
    truth = np.zeros(shape, bool)
    pred = np.zeros(shape, bool)
    radii = sorted(rng.uniform(4.0, 35.0, size=int(rng.integers(3, 9))), reverse=True)
    for index, radius in enumerate(radii):
        lesion = _lesion(rng, radius * rng.uniform(0.6, 1.0, size=3), spacing)
        lesion = lesion[
            tuple(slice(0, min(a, b - 2)) for a, b in zip(lesion.shape, shape, strict=True))
        ]
        corner = [int(rng.integers(1, n - s)) for n, s in zip(shape, lesion.shape, strict=True)]
        window = tuple(slice(c, c + s) for c, s in zip(corner, lesion.shape, strict=True))
        truth[window] |= lesion
        if index == len(radii) - 1:
            continue  # the smallest lesion is missed
        moved = np.roll(lesion, 1, axis=int(rng.integers(0, 2)))
        grow = index % 2 == 0
        moved = (ndimage.binary_dilation if grow else ndimage.binary_erosion)(moved)
        pred[window] |= moved
    pred[20:30, 250:262, shape[2] // 2 : shape[2] // 2 + 2] = True  # a false positive
    return reference, truth, pred


def write_dataset(root: Path, cases: int) -> tuple[Path, Path, int]:
    """Truth and prediction folders; returns them and the total number of voxels of the truths."""
    voxels = 0
    for n in range(cases):
        source = "A" if n % 2 == 0 else "B"
        reference, truth, pred = make_case(n, source)
        case = f"volume-covid19-{source}-{n:04d}"
        write_mask(truth, reference, root / "truth" / f"{case}_seg.nii.gz")
        write_mask(pred, reference, root / "pred" / f"{case}.nii.gz")
        voxels += truth.size
    return root / "pred", root / "truth", voxels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=46)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="write the data here and keep it")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="covseg-bench-evaluate-"))
    try:
        start = time.perf_counter()
        pred, truth, voxels = write_dataset(root, args.cases)
        disk_mb = sum(p.stat().st_size for p in root.rglob("*.nii.gz")) / 1e6
        print(
            f"data: {args.cases} cases, {voxels / 1e6:.0f} M voxels in all, {disk_mb:.0f} MB "
            f"on disk (.nii.gz), written in {time.perf_counter() - start:.0f} s"
        )
        covseg = Path(sys.executable).with_name("covseg")
        command = [str(covseg), "evaluate", str(pred), str(truth)]
        command += ["-o", str(root / "metrics.csv"), "--workers", str(args.workers)]
        print("command:", " ".join(command))
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stdout, done.stderr)
            raise SystemExit(f"covseg evaluate exited with {done.returncode}")
        table = pd.read_csv(root / "metrics.csv")
        assert (table["status"] == "ok").all() and len(table) == args.cases
        print(f"mean Dice {table['dice'].mean():.3f}, mean NSD {table['nsd'].mean():.3f}")
        print(
            f"covseg evaluate --workers {args.workers}: {seconds:.1f} s for {args.cases} cases = "
            f"{args.cases / seconds:.2f} cases/s ({seconds / args.cases:.2f} s a case)"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
