"""COVID-19-20's final ranking at full size: the command as a user runs it, and the library.

Synthetic results with realistic ties (Dice/NSD-like values rounded to 3 decimals, some empty
predictions scoring 0; NAVE smaller-is-better): 6 tasks x 23 cases, for 12 and 98 algorithms.

1. The command (issue 23): ``covseg rank TABLE -o OUT --method test-then-rank --bootstrap 1000
   --seed 1`` on 98 algorithms, run as a separate process with every output it writes (CSVs,
   plots, ``report.html``), timed from start to exit (goal: under 30 s on 2 cores), then the
   same work split in this process: statistics (full data), bootstrap, plots, report (CSVs and
   HTML).
2. The library (issue 3): ``run_ranking`` (test-then-rank, one-sided Wilcoxon + Holm,
   consensus; no files written) on the full data alone and with 1,000 bootstrap samples, with
   the ratios to challengeR 1.0.5's times on this kind of machine: 36.5 s for the full-data
   test-then-rank at 98 algorithms, 33 s per bootstrap sample at 98 algorithms (about 9 hours
   for 1,000), 500 s for 1,000 samples at 12 algorithms.

The load average is printed before and after: on a shared machine, wall times say as much
about the neighbours as about covseg. Usage::

    .venv/bin/python benchmarks/bench_ranking.py [--samples 1000] [--plots png|svg|both]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from covseg.ranking import run_ranking
from covseg.ranking.plots import write_plots
from covseg.ranking.report import write_outputs

CHALLENGER_FULL_98 = 36.5  # s, full-data test-then-rank, 98 algorithms
CHALLENGER_PER_SAMPLE_98 = 33.0  # s per bootstrap sample, 98 algorithms
CHALLENGER_1000_12 = 500.0  # s, 1,000-sample test-then-rank bootstrap, 12 algorithms


def synthetic(n_algorithms: int, n_cases: int = 23, seed: int = 0) -> tuple[pd.DataFrame, set[str]]:
    """Six COVID-19-20-like tasks: team skill + case difficulty + noise, with ties."""
    rng = np.random.default_rng(seed)
    rows = []
    smaller = set()
    for subset in ("seen", "unseen"):
        difficulty = rng.normal(0, 0.12, n_cases)
        skill = rng.normal(0.65, 0.08, n_algorithms)
        base = skill[:, None] + difficulty[None, :] + rng.normal(0, 0.08, (n_algorithms, n_cases))
        empty = rng.random((n_algorithms, n_cases)) < 0.03  # missed every lesion
        for metric in ("dice", "nsd", "nave"):
            if metric == "nave":
                values = np.round(np.abs(rng.normal(0, 0.3, base.shape)) / (0.5 + base), 3)
                smaller.add(f"nave_{subset}")
            else:
                values = np.round(np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1), 3)
                values[empty] = 0.0
            for a in range(n_algorithms):
                for c in range(n_cases):
                    rows.append(
                        (f"{metric}_{subset}", f"case{c:02d}", f"team{a:03d}", values[a, c])
                    )
    return pd.DataFrame(rows, columns=["task", "case", "algorithm", "value"]), smaller


def timed(table: pd.DataFrame, smaller: set[str], samples: int) -> float:
    start = time.perf_counter()
    run_ranking(table, methods=["test-then-rank"], bootstrap=samples, smaller_better=smaller)
    return time.perf_counter() - start


def command(table: pd.DataFrame, smaller: set[str], samples: int, plots: str) -> None:
    """Time ``covseg rank`` end to end in its own process, then its parts in this one."""
    covseg = shutil.which("covseg", path=str(Path(sys.executable).parent)) or "covseg"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.csv"
        table.to_csv(path, index=False)
        args = [covseg, "rank", str(path), "-o", str(Path(tmp) / "out")]
        args += ["--method", "test-then-rank", "--bootstrap", str(samples), "--seed", "1"]
        args += ["--plots", plots, *(a for t in sorted(smaller) for a in ("--smaller", t))]
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(
            f"covseg rank, 98 algorithms x 6 tasks x 23 cases, {samples} samples, every output "
            f"({plots} plots): {wall:.1f} s wall, {cpu:.1f} s CPU (goal < 30 s wall: "
            f"{'met' if wall < 30 else 'NOT met'}); load average after: {os.getloadavg()[0]:.1f}"
        )
        out = Path(tmp) / "split"
        t0 = time.perf_counter()
        run_ranking(table, bootstrap=0, smaller_better=smaller)
        t1 = time.perf_counter()
        result = run_ranking(table, bootstrap=samples, seed=1, smaller_better=smaller)
        t2 = time.perf_counter()
        write_plots(result, out / "plots", plots)
        t3 = time.perf_counter()
        write_outputs(result, out, "none")  # the CSVs and report.html, without the plots
        t4 = time.perf_counter()
        statistics, bootstrap = t1 - t0, (t2 - t1) - (t1 - t0)
        plotting, report = t3 - t2, t4 - t3
        print(
            f"  split: statistics {statistics:.1f} s, bootstrap {bootstrap:.1f} s, plots "
            f"{plotting:.1f} s, report (CSVs + HTML) {report:.1f} s; the rest of the wall time "
            "is start-up (imports) and reading the CSV"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--plots", default="png", choices=("png", "svg", "both"))
    args = parser.parse_args()
    timed(*synthetic(4), 10)  # warm-up: imports, thread pool
    command(*synthetic(98), args.samples, args.plots)
    results = {}
    for n in (12, 98):
        table, smaller = synthetic(n)
        full = timed(table, smaller, 0)
        boot = timed(table, smaller, args.samples)
        results[n] = (full, boot)
        print(
            f"{n:3d} algorithms: full data {full:6.2f} s; with {args.samples} bootstrap samples "
            f"{boot:6.2f} s ({(boot - full) / args.samples * 1000:.1f} ms a sample)"
        )
    full98, boot98 = results[98]
    per_sample = (boot98 - full98) / args.samples
    scale = args.samples / 1000
    print("ratios to challengeR 1.0.5 (its time / ours):")
    print(f"  full-data test-then-rank, 98 algorithms: {CHALLENGER_FULL_98 / full98:8.0f} x")
    print(
        f"  one bootstrap sample, 98 algorithms:     {CHALLENGER_PER_SAMPLE_98 / per_sample:8.0f} x"
    )
    print(
        f"  {args.samples} samples + full, 98 algorithms:    "
        f"{(CHALLENGER_FULL_98 + CHALLENGER_PER_SAMPLE_98 * args.samples) / boot98:8.0f} x"
    )
    print(
        f"  {args.samples} samples, 12 algorithms:           "
        f"{CHALLENGER_1000_12 * scale / results[12][1]:8.0f} x"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:.0f} MiB")
    print(f"goal (98 algorithms, 1,000 samples, < 30 s): {'met' if boot98 < 30 else 'NOT met'}")


if __name__ == "__main__":
    main()
