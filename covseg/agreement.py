"""Agreement between two annotation sets of the same cases, reported as the COVID-19-20 paper.

The paper measured human inter-observer agreement on 245 cases as Dice 0.702 +/- 0.172 (median
0.756), NSD@1mm 0.538 +/- 0.147 (0.563) and NAVE 0.601 +/- 1.969 (0.180): mean +/- sample
standard deviation (median). Set A is the reference of the asymmetric NAVE,
``|V_B - V_A| / V_A``; Dice and NSD are symmetric.

Lesion volumes are compared with Bland-Altman statistics: the differences ``d = V_B - V_A``
(mL) against the means ``(V_A + V_B) / 2``; bias ``mean(d)``, 95 % limits of agreement
``bias +/- 1.96 sd(d)`` (sample sd) and the 95 % confidence interval of the bias (t
distribution).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covseg.datasets import Case

#: Per-case columns of the agreement table, after ``case`` and ``source``.
COLUMNS = ("dice", "nsd", "nave", "volume_a_ml", "volume_b_ml", "difference_ml")
#: Metrics summarised as mean +/- sd (median).
SUMMARY_METRICS = ("dice", "nsd", "nave")


def pair_cases(labels_a: str | Path, labels_b: str | Path) -> tuple[list[tuple[Case, Case]], Any]:
    """Cases of the two folders matched by case id, and the ids found in only one of them.

    Either folder may be any dataset layout :func:`covseg.datasets.find_cases` knows, or a flat
    folder of masks named by case id.

    Raises
    ------
    DatasetError
        A folder that is absent, empty or holds no masks (the message names set A or set B).

    Returns
    -------
    tuple
        ``(pairs, {"only_a": [...], "only_b": [...]})``.
    """
    from covseg.datasets import DatasetError
    from covseg.metrics.batch import truth_cases

    found = []
    for name, folder in (("set A", labels_a), ("set B", labels_b)):
        try:
            found.append({c.case_id: c for c in truth_cases(folder)})
        except DatasetError as exc:
            raise DatasetError(f"{name}: {exc}") from None
    a, b = found
    pairs = [(a[k], b[k]) for k in a if k in b]
    unmatched = {"only_a": sorted(set(a) - set(b)), "only_b": sorted(set(b) - set(a))}
    return pairs, unmatched


def compare_case(
    path_a: Path, path_b: Path, tolerance_mm: float = 1.0, label: int | None = None
) -> dict[str, float]:
    """Dice, NSD at ``tolerance_mm``, NAVE (A as reference) and both lesion volumes (mL).

    ``label`` picks one value of multi-label masks (``None``: masks must be 0/1). Set B's mask
    is brought onto set A's grid by :func:`covseg.io.to_reference_grid`.

    Raises
    ------
    ValueError
        When a file cannot be read, is not a binary mask, or the two grids differ.
    """
    from covseg.io import read_volume, to_reference_grid
    from covseg.metrics import dice, normalized_absolute_volume_error, normalized_surface_dice
    from covseg.metrics.batch import binary_mask

    vol_a = read_volume(path_a)
    vol_b = to_reference_grid(read_volume(path_b), vol_a, path=path_b, reference_name="set A")
    a, b = binary_mask(vol_a.array, path_a, label), binary_mask(vol_b.array, path_b, label)
    spacing = vol_a.spacing
    volume_a = float(a.sum()) * vol_a.voxel_volume_ml
    volume_b = float(b.sum()) * vol_a.voxel_volume_ml
    return {
        "dice": dice(b, a),
        "nsd": normalized_surface_dice(b, a, spacing, tolerance_mm=tolerance_mm),
        "nave": normalized_absolute_volume_error(b, a, spacing),
        "volume_a_ml": volume_a,
        "volume_b_ml": volume_b,
        "difference_ml": volume_b - volume_a,
    }


def summary_line(values: Iterable[float]) -> str:
    """``mean +/- sd (median)`` of the finite values, 3 decimals, as the paper writes it.

    Examples
    --------
    >>> summary_line([0.5, 0.7, 0.9])
    '0.700 ± 0.200 (0.700)'
    """
    stats = describe(values)
    if stats["n"] == 0:
        return "n/a"
    sd = "n/a" if stats["sd"] is None else f"{stats['sd']:.3f}"
    return f"{stats['mean']:.3f} ± {sd} ({stats['median']:.3f})"


def describe(values: Iterable[float]) -> dict[str, Any]:
    """Mean, sample sd, median and count of the finite values (``None`` where undefined)."""
    arr = np.asarray(list(values), dtype=float)
    finite = arr[np.isfinite(arr)]
    n = int(finite.size)
    return {
        "mean": float(finite.mean()) if n else None,
        "sd": float(finite.std(ddof=1)) if n > 1 else None,
        "median": float(np.median(finite)) if n else None,
        "n": n,
        "infinite": int(np.isinf(arr).sum()),
    }


def bland_altman(volume_a: Iterable[float], volume_b: Iterable[float]) -> dict[str, Any]:
    """Bland-Altman statistics of two sets of lesion volumes (mL), ``B - A``.

    Returns
    -------
    dict
        ``bias_ml``, ``sd_ml``, ``lower_loa_ml``, ``upper_loa_ml`` (bias -/+ 1.96 sd),
        ``bias_ci95_ml`` ([low, high], t distribution) and ``n``; ``None`` where undefined.

    Examples
    --------
    >>> stats = bland_altman([10.0, 20.0, 30.0], [12.0, 21.0, 33.0])
    >>> round(stats["bias_ml"], 3), round(stats["upper_loa_ml"], 3)
    (2.0, 3.96)
    """
    from scipy import stats as st

    a = np.asarray(list(volume_a), dtype=float)
    b = np.asarray(list(volume_b), dtype=float)
    diff = b - a
    n = int(diff.size)
    if n == 0:
        return {k: None for k in ("bias_ml", "sd_ml", "lower_loa_ml", "upper_loa_ml")} | {
            "bias_ci95_ml": None,
            "n": 0,
        }
    bias = float(diff.mean())
    sd = float(diff.std(ddof=1)) if n > 1 else None
    result: dict[str, Any] = {"bias_ml": bias, "sd_ml": sd, "n": n}
    if sd is None:
        return result | {"lower_loa_ml": None, "upper_loa_ml": None, "bias_ci95_ml": None}
    half = float(st.t.ppf(0.975, n - 1)) * sd / np.sqrt(n)
    return result | {
        "lower_loa_ml": bias - 1.96 * sd,
        "upper_loa_ml": bias + 1.96 * sd,
        "bias_ci95_ml": [bias - half, bias + half],
    }


def summarize(table: pd.DataFrame) -> dict[str, Any]:
    """The paper's summary of a per-case table: each metric's statistics and Bland-Altman.

    Rows with an ``error`` are left out.
    """
    ok = table[table["error"] == ""] if "error" in table else table
    summary: dict[str, Any] = {"cases": int(len(ok)), "failed": int(len(table) - len(ok))}
    for metric in SUMMARY_METRICS:
        values = pd.to_numeric(ok[metric], errors="coerce")
        summary[metric] = describe(values) | {"text": summary_line(values)}
    summary["bland_altman"] = bland_altman(ok["volume_a_ml"], ok["volume_b_ml"])
    return summary


def plot_bland_altman(table: pd.DataFrame, stats: dict[str, Any], path: str | Path) -> Path:
    """Bland-Altman plot of lesion volumes: difference B - A against the mean (mL)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = table[table["error"] == ""] if "error" in table else table
    a, b = ok["volume_a_ml"].to_numpy(float), ok["volume_b_ml"].to_numpy(float)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter((a + b) / 2.0, b - a, s=18, alpha=0.7)
    if stats.get("bias_ml") is not None:
        ax.axhline(stats["bias_ml"], color="k", label=f"bias {stats['bias_ml']:.2f} mL")
    if stats.get("lower_loa_ml") is not None:
        for key in ("lower_loa_ml", "upper_loa_ml"):
            ax.axhline(stats[key], color="k", linestyle="--")
        ax.plot(
            [],
            [],
            "k--",
            label=f"±1.96 sd: {stats['lower_loa_ml']:.2f} .. {stats['upper_loa_ml']:.2f} mL",
        )
    ax.set_xlabel("mean lesion volume (A + B) / 2 [mL]")
    ax.set_ylabel("difference B - A [mL]")
    ax.set_title(f"Bland-Altman, {len(ok)} cases")
    if ax.get_legend_handles_labels()[0]:  # no bias line for a single case
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
