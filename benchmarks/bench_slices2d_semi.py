"""Paired benchmark of semi-supervised slices-2d: with vs without the unlabelled slices.

In every (fold, seed) the teachers are trained once (the preset's networks a fold and
iterations, on the fold's labelled slices only); every student variant and its control start
from those teachers and use the same seeds, so the labelled part of every batch is the same
with and without pseudo-labelled slices (:func:`covseg.model.slices2d.fit.train_network`).
Out-of-fold Dice: the fold's networks at the plan's inference sizes, no TTA, threshold 0.5,
mean over the 50 slices. Folds and seeds run in parallel processes.

    PYTHONPATH=. python benchmarks/bench_slices2d_semi.py MEDSEG_TRAIN UNLABELLED OUT_DIR \
        --device cuda --seeds 0 1 --deadline-s 480
    # a quick dry run on a CPU:
    PYTHONPATH=. python benchmarks/bench_slices2d_semi.py MEDSEG_TRAIN UNLABELLED OUT \
        --tiny --seeds 0 --workers 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: Variants in the order they run: (student iterations a network and round, pseudo-label
#: settings; None: the paired control, the same teachers trained as long on labelled slices).
VARIANTS: dict[str, tuple[int, dict[str, Any] | None]] = {
    "control_200": (200, None),
    "semi_200": (200, {}),
    "semi_200_conf95": (200, {"min_confidence": 0.95}),
    "semi_200_conf80": (200, {"min_confidence": 0.8}),
    "semi_200_soft": (200, {"soft": True}),
    "semi_200_pb2": (200, {"per_batch": 2}),
    "semi_200_pb8": (200, {"per_batch": 8}),
    "semi_200_aug": (200, {"augment": True}),
    "semi_200_400slices": (200, {"max_slices": 400}),
    "control_200_r2": (200, {"rounds": 2, "control": True}),
    "semi_200_r2": (200, {"rounds": 2}),
    "control_1000": (1000, None),
    "semi_1000": (1000, {}),
    "semi_1000_aug": (1000, {"augment": True}),
}


def _plan(device: str, seed: int, tiny: bool) -> dict[str, Any]:
    from covseg.model.plan import load_preset

    plan = load_preset("slices-2d")
    plan["training"].update(seed=seed, device=device, max_minutes=None, fold_processes=1)
    if device != "cpu":
        plan["training"]["bf16"] = False  # float16 autocast without a grad scaler: stay fp32
    if tiny:
        plan["image_size"] = 48
        plan["network"]["features"] = [4, 4, 8, 8, 16, 4]
        plan["training"]["iterations"] = 10
    return plan


def run_task(
    fold: int,
    seed: int,
    data: str,
    unlabelled: str,
    device: str,
    tiny: bool,
    deadline: float,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """One fold and seed: teachers, then every variant from them; per-slice Dice of each."""
    from covseg.metrics.overlap import dice_unchecked as dice
    from covseg.model.slices2d.cv import _lesion, fold_assignment
    from covseg.model.slices2d.data import find_slice_cases, load_consolidation, load_labelled
    from covseg.model.slices2d.fit import train_network
    from covseg.model.slices2d.net import to_tensor
    from covseg.model.slices2d.predict import inference_sizes, predict_slices
    from covseg.model.slices2d.semi import (
        _students,
        _subset,
        label_slices,
        read_unlabelled_folder,
    )
    from covseg.model.slices2d.settings import Training, resolve_classes

    torch.set_num_threads(1)
    started = time.perf_counter()
    plan, _ = resolve_classes(_plan(device, seed, tiny), Path(data))
    train = Training.of(plan)
    cases = find_slice_cases(Path(data))
    pairs = load_labelled(cases)
    truths = [t for _, t in pairs]
    size = int(plan["image_size"])
    images = to_tensor([i for i, _ in pairs], size, mask=False)
    masks = to_tensor(truths, size, mask=True)
    if train.uses_classes:
        solid = to_tensor(load_consolidation(Path(data), cases, truths), size, mask=True)
        masks = torch.cat([masks, solid * masks], dim=1)
    slices = read_unlabelled_folder(Path(unlabelled))
    if tiny:
        slices = slices[:16]
    pool_all = to_tensor(slices, size, mask=False)
    assignment = fold_assignment(len(cases), int(plan["training"]["folds"]), 0)
    train_idx = torch.from_numpy(np.flatnonzero(assignment != fold))
    val_index = np.flatnonzero(assignment == fold).tolist()
    val_images = [pairs[i][0] for i in val_index]
    x, y = images[train_idx], masks[train_idx]
    seeds = [train.seed * 100 + fold + 1000 * m for m in range(train.members)]
    channels = [masks.shape[1] if train.learns_classes(m) else 1 for m in range(len(seeds))]
    bf16, sizes = train.bf16, inference_sizes(plan)

    def score(nets: list[torch.nn.Module]) -> list[float]:
        probs = _lesion(predict_slices(nets, val_images, sizes, False, bf16))
        return [dice(p >= 0.5, truths[i]) for p, i in zip(probs, val_index, strict=True)]

    t0 = time.perf_counter()
    teachers = [
        train_network(x, y[:, :c], plan, s).net for s, c in zip(seeds, channels, strict=True)
    ]
    out: dict[str, Any] = {
        "fold": fold,
        "seed": seed,
        "val_index": val_index,
        "dice": {"teacher": score(teachers)},
        "seconds": {"teacher": time.perf_counter() - t0},
        "kept_share": {},
        "confidence_quantiles": None,
        "skipped": [],
    }
    for name, (iterations, settings) in VARIANTS.items():
        if only and name not in only:
            continue
        if time.time() > deadline:
            out["skipped"].append(name)
            continue
        t0 = time.perf_counter()
        cfg = {
            "min_confidence": 0.0,
            "soft": False,
            "per_batch": 4,
            "augment": False,
            "rounds": 1,
            "max_slices": None,
            **(settings or {}),
            "iterations": 10 if tiny else iterations,
        }
        control = settings is None or bool(cfg.pop("control", False))
        nets = teachers
        pool = _subset(pool_all, cfg["max_slices"], seed=fold)
        for round_ in range(int(cfg["rounds"])):
            data_ = None
            if not control:
                targets, scores = label_slices(nets, pool, bf16, bool(cfg["soft"]))
                weights = np.where(scores >= cfg["min_confidence"], scores, 0.0)
                out["kept_share"][name] = float((weights > 0).mean())
                if out["confidence_quantiles"] is None and round_ == 0:
                    q = np.quantile(scores, [0.05, 0.25, 0.5, 0.75, 0.95]).tolist()
                    out["confidence_quantiles"] = q
                data_ = (pool, targets, torch.from_numpy(weights).float())
            nets = _students(nets, x, y, plan, seeds, channels, round_, cfg, data_, None, fold)
        out["dice"][name] = score(nets)
        out["seconds"][name] = time.perf_counter() - t0
    out["seconds"]["total"] = time.perf_counter() - started
    out["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        out["max_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def summarise(results: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Mean Dice per seed and variant over the slices, and each variant's paired difference
    from the control of the same iterations (per slice, then averaged)."""
    summary: dict[str, Any] = {}
    for seed in sorted({r["seed"] for r in results}):
        runs = [r for r in results if r["seed"] == seed]
        names = [k for k in ["teacher", *VARIANTS] if all(k in r["dice"] for r in runs)]
        per: dict[str, np.ndarray] = {}
        for name in names:
            dice = np.full(n, np.nan)
            for r in runs:
                dice[r["val_index"]] = r["dice"][name]
            per[name] = dice
        complete = {k: v for k, v in per.items() if not np.isnan(v).any()}
        rows = {}
        for name, dice in complete.items():
            row: dict[str, Any] = {"dice_mean": float(dice.mean())}
            if name.startswith("semi"):
                it = name.split("_")[1]
                ctrl = f"control_{it}_r2" if name.endswith("_r2") else f"control_{it}"
                if ctrl in complete:
                    d = dice - complete[ctrl]
                    row["paired_vs"] = ctrl
                    row["diff_mean"] = float(d.mean())
                    row["diff_se"] = float(d.std(ddof=1) / np.sqrt(len(d)))
                    row["slices_better"] = int((d > 0).sum())
                    row["slices_worse"] = int((d < 0).sum())
            secs = [r["seconds"].get(name, np.nan) for r in runs]
            row["seconds_per_fold_mean"] = float(np.nanmean(secs))
            kept = [r["kept_share"].get(name) for r in runs if name in r["kept_share"]]
            if kept:
                row["kept_share_mean"] = float(np.mean(kept))
            rows[name] = row
        summary[str(seed)] = rows
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data")
    parser.add_argument("unlabelled")
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--deadline-s", type=float, default=1e9)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--only", nargs="*", help="run only these variants (and the teachers)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.deadline_s
    start = time.perf_counter()
    tasks = [(f, s) for s in args.seeds for f in range(args.folds)]
    results = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        jobs = [
            pool.submit(
                run_task,
                f,
                s,
                args.data,
                args.unlabelled,
                args.device,
                args.tiny,
                deadline,
                args.only,
            )
            for f, s in tasks
        ]
        for job in as_completed(jobs):
            r = job.result()
            results.append(r)
            print(
                f"fold {r['fold']} seed {r['seed']}: {r['seconds']['total']:.0f}s, "
                f"teacher {np.mean(r['dice']['teacher']):.4f}, skipped {r['skipped']}, "
                f"max RSS {r['max_rss_mib']:.0f} MiB, GPU {r.get('max_gpu_mib', 0):.0f} MiB",
                flush=True,
            )
            (args.out / "folds.json").write_text(json.dumps(results))
    summary = summarise(results, 50)
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    meta = {"device": device, "wall_seconds": time.perf_counter() - start, "variants": VARIANTS}
    (args.out / "summary.json").write_text(json.dumps({"meta": meta, "summary": summary}, indent=2))
    print(json.dumps(meta, default=str))
    for seed, rows in summary.items():
        for name, row in rows.items():
            print(f"seed {seed} {name:22s} " + " ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
