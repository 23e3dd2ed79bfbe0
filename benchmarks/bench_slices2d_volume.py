"""A ``slices-2d`` model on whole CT volumes: speed, and lesion found on real CT.

Parts (``--parts``):

* ``speed``: seconds to segment a 512 x 512 x 300 CT (lung mask + every thorax slice through the
  ensemble), made from TotalSegmentator's ``chest_cta_crop_2`` resampled (linear) to that grid,
  so lung is in nearly every slice (the worst case: all 300 slices go through the networks).
  Timed at each ``--threads``; prints the load average, the slices segmented and the time per
  slice and network, from which the time on another machine or ensemble size follows.
* ``specificity``: lesion found by the model on CT without COVID-19 (TotalSegmentator's two chest
  CTA crops, lungmask's two-slice DICOM series): lesion voxels inside the lung mask as a
  percentage of the lung volume, and lesion outside it in mL.
* ``nysbu``: the 20 NY-SBU COVID-19 slices (HU, no truth): lesion pixels per slice, as a
  percentage of the lung mask where :func:`covseg.lung.lung_mask` finds lungs on the single
  slice and of the field the networks saw (the lungs' box, or the body's where the slice has no
  lungs); overlays written to ``OUT/nysbu/``.

Usage::

    .venv/bin/python benchmarks/bench_slices2d_volume.py MODEL_DIR -o OUT [--parts speed,...]
        [--threads 1,2] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covseg.io import Volume, read_volume
from covseg.lung import lung_mask
from covseg.model.slices2d.predict import Ensemble, load_ensemble
from covseg.model.slices2d.volume import segment_volume


def speed(ensemble: Ensemble, data: Path, threads: list[int]) -> list[dict[str, Any]]:
    from scipy import ndimage

    src = read_volume(data / "totalseg" / "chest_cta_crop_2.nii.gz")
    shape = (512, 512, 300)
    factors = [n / s for n, s in zip(shape, src.shape, strict=True)]
    array = ndimage.zoom(np.asarray(src.array, np.float32), factors, order=1)
    affine = src.affine.copy()
    affine[:3, :3] = src.affine[:3, :3] @ np.diag([1 / f for f in factors])
    ct = Volume(array.astype(np.int16), affine)
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        lung = lung_mask(ct)
        lung_s = time.perf_counter() - start
        result = segment_volume(ct, ensemble, lung=lung)
        total = time.perf_counter() - start
        count = len(result.slices)
        row = {
            "threads": n,
            "shape": list(ct.shape),
            "slices_segmented": count,
            "networks": len(ensemble.nets),
            "sizes": ensemble.plan["inference"].get("scales"),
            "lung_mask_s": round(lung_s, 1),
            "total_s": round(total, 1),
            "ms_per_slice_and_network": round(
                1000 * (total - lung_s) / count / len(ensemble.nets), 1
            ),
            "load_average_1min": round(load, 1),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def specificity(ensemble: Ensemble, data: Path) -> list[dict[str, Any]]:
    cases = {
        "chest_cta_crop_1": data / "totalseg" / "chest_cta_crop_1.nii.gz",
        "chest_cta_crop_2": data / "totalseg" / "chest_cta_crop_2.nii.gz",
        "lungmask-dicom": data / "lungmask-dicom",
    }
    rows = []
    for name, path in cases.items():
        ct = read_volume(path)
        result = segment_volume(ct, ensemble, path)
        lung = result.lung.array > 0
        lesion = result.lesion.array > 0
        row = {
            "case": name,
            "shape": list(ct.shape),
            "lung_ml": round(float(lung.sum()) * ct.voxel_volume_ml, 1),
            "lesion_in_lung_pct": round(100 * float((lesion & lung).sum() / lung.sum()), 3),
            "lesion_outside_lung_ml": round(float((lesion & ~lung).sum()) * ct.voxel_volume_ml, 2),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def nysbu(model: Path, data: Path, out: Path) -> list[dict[str, Any]]:
    from PIL import Image

    from covseg.model.slices2d import predict_slices_2d
    from covseg.model.slices2d.data import read_dicom_slice, window_hu

    files = sorted((data / "ny-sbu").glob("*/*.dcm"))
    refused: list[str] = []
    masks = predict_slices_2d(files, model, out / "nysbu" / "masks", on_error=refused.append)
    by_stem = {m.stem: m for m in masks}
    rows = []
    for path in files:
        if path.stem not in by_stem:  # no lungs found in the slice: refused, one line
            row: dict[str, Any] = {"slice": f"{path.parent.name}_{path.stem}", "refused": True}
            print(json.dumps(row), flush=True)
            rows.append(row)
            continue
        hu, box, _, _ = read_dicom_slice(path)
        lesion = np.asarray(Image.open(by_stem[path.stem])) > 0
        try:
            lung = lung_mask(read_volume(path), path).array[:, :, 0].T > 0
            lung_pct: float | None = round(100 * float((lesion & lung).sum() / lung.sum()), 2)
        except ValueError:
            lung_pct = None  # the classical mask finds no lung on this one slice
        grey = window_hu(hu[box])
        rgb = np.stack([grey] * 3, axis=-1)
        red = lesion[box]
        rgb[red] = (0.5 * rgb[red] + [127, 0, 0]).astype(np.uint8)
        name = f"{path.parent.name}_{path.stem}"
        Image.fromarray(rgb).save(out / "nysbu" / f"{name}_overlay.png")
        row = {
            "slice": name,
            "refused": False,
            "lesion_pct_of_field": round(100 * float(lesion[box].mean()), 2),
            "lesion_pct_of_lung": lung_pct,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--parts", default="speed,specificity,nysbu")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared" / "data")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    ensemble = load_ensemble(args.model)
    report: dict[str, Any] = {"model": str(args.model)}
    parts = args.parts.split(",")
    if "specificity" in parts:
        report["specificity"] = specificity(ensemble, args.data)
    if "nysbu" in parts:
        report["nysbu"] = nysbu(args.model, args.data, args.output)
    if "speed" in parts:
        report["speed"] = speed(ensemble, args.data, [int(t) for t in args.threads.split(",")])
    (args.output / "bench_slices2d_volume.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
