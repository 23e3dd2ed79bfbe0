"""Inference speed: covseg's predict path against plain MONAI on one full-size CT.

One synthetic CT (512 x 512 x 70 at 0.74 x 0.74 x 5 mm, ``covseg.phantom``), the baseline network
with random weights (seed 0), no test-time augmentation. The reference is the organizers'
pipeline in plain MONAI: LoadImaged, Orientationd LPS, Spacingd 1.25 x 1.25 x 5 mm,
ScaleIntensityRanged, ``sliding_window_inference`` (192 x 192 x 16, batch 2, overlap 0.5,
Gaussian, replicate) under ``torch.no_grad``, argmax, Invertd (nearest) back to the CT grid.
covseg runs ``covseg.model.predict.segment`` from the same file, with cropping off (must give the
same mask: Dice >= 0.999), with and without the lung crop and bfloat16 autocast.
Each variant runs in its own process, so its peak memory (max RSS) is its own.

Usage: python benchmarks/bench_inference.py [--threads N] [--slices 70] [-o results.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

VARIANTS = {
    "monai": {},
    "covseg-fp32": {"lung_crop": False, "bf16": False},
    "covseg-bf16": {"lung_crop": False, "bf16": True},
    "covseg-fp32-crop": {"lung_crop": True, "bf16": False},
    "covseg-bf16-crop": {"lung_crop": True, "bf16": True},
}


def _monai(ct_path: Path) -> np.ndarray:
    import monai.transforms as mt
    import torch
    from monai.inferers import sliding_window_inference

    from covseg.model.networks import build_network
    from covseg.model.plan import load_preset

    plan = load_preset("baseline")
    torch.manual_seed(0)
    net = build_network(plan).eval()
    pre = mt.Compose(
        [
            mt.LoadImaged("image", ensure_channel_first=True),
            mt.Orientationd("image", axcodes="LPS"),
            mt.Spacingd("image", pixdim=(1.25, 1.25, 5.0), mode="bilinear"),
            mt.ScaleIntensityRanged("image", -1000.0, 500.0, 0.0, 1.0, clip=True),
        ]
    )
    data = pre({"image": str(ct_path)})
    with torch.no_grad():
        logits = sliding_window_inference(
            data["image"][None], (192, 192, 16), 2, net, 0.5, "gaussian", padding_mode="replicate"
        )
    data["pred"] = logits[0].argmax(0, keepdim=True).float()
    inv = mt.Invertd("pred", transform=pre, orig_keys="image", nearest_interp=True)
    return np.asarray(inv(data)["pred"][0]).astype(np.uint8)


def _covseg(ct_path: Path, options: dict[str, bool]) -> np.ndarray:
    import torch

    from covseg.io import read_volume
    from covseg.model.networks import build_network
    from covseg.model.plan import load_preset
    from covseg.model.predict import segment

    plan = load_preset("baseline")
    torch.manual_seed(0)
    net = build_network(plan).eval()
    return segment(read_volume(ct_path), [net], plan, **options).mask.array


def _run(name: str, ct_path: Path, out: Path, threads: int) -> dict[str, float]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    began = time.perf_counter()
    mask = _monai(ct_path) if name == "monai" else _covseg(ct_path, VARIANTS[name])
    seconds = time.perf_counter() - began
    np.save(out, mask)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB -> MB on Linux
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1)}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--slices", type=int, default=70)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()

    from covseg.io import write_volume
    from covseg.phantom import make_phantom

    tmp = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    ct = make_phantom(seed=0, source="A", size=512, n_slices=args.slices).ct
    ct_path = write_volume(ct, tmp / "volume-covid19-A-0000_ct.nii.gz")
    print(f"CT {ct.shape} at {tuple(round(s, 2) for s in ct.spacing)} mm")
    ctx = mp.get_context("spawn")
    results: dict[str, dict[str, float]] = {}
    for name in args.variants.split(","):
        with ctx.Pool(1) as pool:
            results[name] = pool.apply(
                _run, (name, ct_path, tmp / f"{len(results)}.npy", args.threads)
            )
        mask = np.load(tmp / f"{len(results) - 1}.npy")
        if "monai" in results and name != "monai":
            reference = np.load(tmp / "0.npy")
            results[name]["dice_vs_monai"] = round(_dice(mask > 0, reference > 0), 5)
            results[name]["speedup"] = round(
                results["monai"]["seconds"] / results[name]["seconds"], 2
            )
        results[name]["foreground_voxels"] = int(mask.sum())
        print(name, results[name], flush=True)
    if args.output:
        args.output.write_text(json.dumps({"shape": ct.shape, "results": results}, indent=2))


if __name__ == "__main__":
    main()
