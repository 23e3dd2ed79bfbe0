"""Does ``covseg train`` learn? Train on source-A phantoms, score held-out A and B phantoms.

Writes a phantom dataset (``covseg.phantom.write_dataset``: Train = source A, Test = seen A and
unseen B), runs ``covseg train`` with the given preset, budget and plan overrides, predicts every
test case with ``covseg predict`` and prints the mean Dice per source (``covseg.metrics.dice``).

Usage: python benchmarks/bench_training.py -o /tmp/run --size 64 --max-minutes 9.5 \
    --set training.learning_rate=0.001 ...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--size", type=int, default=64, help="phantom in-plane matrix")
    parser.add_argument("--train", type=int, default=20)
    parser.add_argument("--test", type=int, default=8, help="held-out cases per source")
    parser.add_argument("--max-minutes", type=float, default=9.5)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()

    from covseg.datasets import find_cases
    from covseg.io import read_volume
    from covseg.metrics import dice
    from covseg.phantom import write_dataset

    data, model, pred = args.output / "data", args.output / "model", args.output / "pred"
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
    covseg = [str(Path(sys.executable).with_name("covseg"))]  # the console script beside python
    train = [
        "train",
        str(data / "Train"),
        "-o",
        str(model),
        "--preset",
        args.preset,
        "--epochs",
        str(args.epochs),
        "--max-minutes",
        str(args.max_minutes),
        "--no-progress",
    ]
    threads = ["--threads", str(args.threads)] if args.threads else []
    train += threads
    for item in args.overrides:
        train += ["--set", item]
    began = time.perf_counter()
    subprocess.run([*covseg, *train], check=True)
    train_s = time.perf_counter() - began
    began = time.perf_counter()
    subprocess.run(
        [
            *covseg,
            "predict",
            str(data / "Test"),
            "-m",
            str(model),
            "-o",
            str(pred),
            "--no-progress",
            "--no-burden",
        ],
        check=True,
    )
    predict_s = time.perf_counter() - began
    scores: dict[str, list[float]] = {}
    for case in find_cases(data / "Test"):
        assert case.label is not None
        mask = read_volume(pred / f"{case.case_id}.nii.gz").array
        scores.setdefault(case.source, []).append(dice(mask, read_volume(case.label).array))
    summary = {
        "train_seconds": round(train_s, 1),
        "predict_seconds": round(predict_s, 1),
        "epochs": sum(1 for _ in (model / "fold_0" / "log.csv").open()) - 1,
        **{f"dice_{s}": round(float(np.mean(v)), 4) for s, v in sorted(scores.items())},
        **{f"dice_{s}_sd": round(float(np.std(v)), 4) for s, v in sorted(scores.items())},
    }
    print(json.dumps(summary, indent=2))
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
