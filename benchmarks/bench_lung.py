"""Speed and accuracy of the lung mask and of quantify on full-size CTs.

Draws full-size phantoms (512 x 512 in-plane; source B at 1.25 mm with ``--slices`` slices, 300
by default, and source A at 5 mm), then times :func:`covseg.lung.lung_mask` and
:func:`covseg.quantify.quantify` (lung mask included, as ``covseg quantify`` runs it) and prints
the Dice of the lung mask against the phantom's lungs (lesions included), the share of lesion
voxels inside the lung mask, and the lesion volume quantify reports against the truth.

The issue's goal: under 10 s for a 512 x 512 x 300 CT on 2 cores, Dice >= 0.95. Wall and CPU
time are printed: the work is single-threaded numpy/scipy, so on a machine shared with other
jobs the CPU time is the better estimate of the unloaded wall time.

Run: ``.venv/bin/python benchmarks/bench_lung.py [--slices 300] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from covseg.lung import lung_mask
from covseg.phantom import make_phantom
from covseg.quantify import quantify


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * (a & b).sum() / (a.sum() + b.sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    for source, slices in (("B", args.slices), ("A", None)):
        case = make_phantom(seed=7, source=source, size=512, n_slices=slices)
        lung_times, quantify_times = [], []
        for _ in range(args.repeat):
            start, cpu = time.perf_counter(), time.process_time()
            lungs = lung_mask(case.ct)
            lung_times.append((time.perf_counter() - start, time.process_time() - cpu))
            start, cpu = time.perf_counter(), time.process_time()
            record = quantify(case.ct, case.lesion.array)
            quantify_times.append((time.perf_counter() - start, time.process_time() - cpu))
        (lung_wall, lung_cpu), (q_wall, q_cpu) = min(lung_times), min(quantify_times)
        pred, truth = lungs.array, case.lung.array
        lesion = case.lesion.array > 0
        true_ml = lesion.sum() * case.ct.voxel_volume_ml
        print(
            f"source {source} {case.ct.shape} spacing "
            f"{tuple(round(s, 2) for s in case.ct.spacing)} mm: "
            f"lung_mask {lung_wall:.2f} s wall / {lung_cpu:.2f} s CPU, quantify (with lung "
            f"mask) {q_wall:.2f} s wall / {q_cpu:.2f} s CPU (best of {args.repeat}); "
            f"Dice lungs {_dice(pred > 0, truth > 0):.4f} right {_dice(pred == 1, truth == 1):.4f} "
            f"left {_dice(pred == 2, truth == 2):.4f}; lesion inside lung mask "
            f"{(pred > 0)[lesion].mean():.3f}; lesion {record['lesion_ml']:.1f} mL "
            f"(truth {true_ml:.1f}), involvement {record['involvement_pct']:.2f} %"
        )


if __name__ == "__main__":
    main()
