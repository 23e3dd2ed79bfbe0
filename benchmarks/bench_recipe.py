"""Which training recipe learns fastest in a few CPU minutes? One model, held-out A and B Dice.

Trains one network in-process on all the source-A training phantoms of
``covseg.phantom.write_dataset(size=SIZE, seed=1)`` (no validation split) with the demo's
scaled-down baseline plan (model grid as coarse as the phantoms, 64-voxel patches, 16-128
features, learning rate 1e-2, float32, lung and small-component post-processing) plus the given
``--set`` overrides, for ``--minutes`` of wall clock, then segments the held-out A and B test
phantoms with ``covseg.model.predict.segment`` and prints one JSON line: epochs, seconds, first
and last loss, mean Dice per source and per case.

Usage (two recipes side by side on two cores, one thread each)::

    python benchmarks/bench_recipe.py --threads 1 --minutes 5 -o /tmp/r1 \
        --set training.optimizer=sgd --set training.lr_schedule=poly

``--score-only`` trains nothing: it scores the model already in ``-o`` with the ``--set``
overrides applied to its plan (inference and post-processing settings on the same weights).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="model folder")
    parser.add_argument("--data", type=Path, help="phantom folder (default: /tmp/recipe-SIZE-N)")
    parser.add_argument("--size", type=int, default=96, help="phantom in-plane matrix")
    parser.add_argument("--train", type=int, default=16, help="source-A training phantoms")
    parser.add_argument("--test", type=int, default=4, help="held-out phantoms per source")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--score-only", action="store_true", help="score the model in -o as is")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from covseg.datasets import find_cases
    from covseg.io import read_volume
    from covseg.metrics import dice
    from covseg.model.inference import load_models
    from covseg.model.plan import apply_overrides, load_preset, read_plan, write_plan
    from covseg.model.predict import segment
    from covseg.model.train import train_fold
    from covseg.phantom import FULL_SIZE, SOURCES, write_dataset

    data = args.data or Path(f"/tmp/recipe-{args.size}-{args.train}")
    if not (data / "Test").is_dir():
        write_dataset(
            data,
            n_train=args.train,
            n_validation=0,
            n_test_seen=args.test,
            n_test_unseen=args.test,
            size=args.size,
            seed=1,
        )
    if args.score_only:
        plan = apply_overrides(read_plan(args.output), args.overrides)
        logs, train_s = [], 0.0
    else:
        in_plane = SOURCES["A"].spacing[0] * FULL_SIZE / args.size  # exactly the phantoms' grid
        demo_like = [
            f"preprocessing.spacing_mm=[{in_plane}, {in_plane}, 5.0]",
            "augmentation.pad_to=[64, 64]",
            "augmentation.crop_size=[64, 64, 16]",
            "inference.roi_size=[64, 64, 16]",
            "network.features=[16, 16, 32, 64, 128, 16]",
            "training.learning_rate=0.01",
            "training.amp=false",
            "training.epochs=100000",
            f"training.max_minutes={args.minutes}",
            "training.validation_interval=100000",
            "postprocess.outside_lung=true",
            "postprocess.min_component_ml=0.5",
        ]
        plan = apply_overrides(load_preset("baseline"), demo_like + args.overrides)
        shutil.rmtree(args.output, ignore_errors=True)
        write_plan(plan, args.output)
        began = time.perf_counter()
        logs = train_fold(find_cases(data / "Train"), [], args.output / "fold_0", plan)
        train_s = time.perf_counter() - began
    nets = load_models(args.output, plan)
    scores: dict[str, list[float]] = {}
    began = time.perf_counter()
    for case in find_cases(data / "Test"):
        assert case.image is not None and case.label is not None
        mask = segment(read_volume(case.image), nets, plan).mask.array
        scores.setdefault(case.source, []).append(dice(mask, read_volume(case.label).array))
    result = {
        "overrides": args.overrides,
        "epochs": len(logs),
        "train_seconds": round(train_s),
        "predict_seconds": round(time.perf_counter() - began),
        "loss_first_last": [round(logs[0].loss, 3), round(logs[-1].loss, 3)] if logs else None,
        **{f"dice_{s}": round(float(np.mean(v)), 3) for s, v in sorted(scores.items())},
        "per_case": {s: [round(x, 2) for x in v] for s, v in sorted(scores.items())},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
