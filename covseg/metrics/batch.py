"""Score a folder of predictions against a folder of truth masks, case by case, in parallel.

Conventions:

- Predictions are paired with truth cases by :func:`covseg.datasets.case_id_from_filename`
  (``<case>.nii.gz`` or ``<case>_seg.nii.gz``...). The truth folder may be in any layout
  :func:`covseg.datasets.find_cases` knows (its labels are the truth), or a flat folder of masks.
- A truth case without a prediction is scored against an empty mask and flagged ``missing``, as
  the challenge scored a missing submission.
- A case that cannot be scored is ``failed`` with a one-line ``error`` naming the file, and its
  metrics are empty (NaN); the other cases are still scored. Causes: an unreadable, corrupt or
  non-image file; a prediction on another voxel grid than the truth (shape, spacing, origin or a
  rotation; a grid that differs only in axis order or direction, LAS against LPS say, is
  reoriented exactly instead); NaN; label values other than 0/1 (2D PNG/JPG masks: 0/255)
  unless ``label`` picks one; several files for one case id.
- Metrics use the truth's spacing in mm (PNG/JPG slices: pixels). 2D cases have lesion areas
  (:data:`AREA_COLUMNS`) instead of volumes.
- A case's subset is seen, unseen or unknown (no source), see :func:`covseg.datasets.subset_of`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from covseg.datasets import (
    SUBSETS,
    Case,
    CaseError,
    DatasetError,
    files_by_case,
    find_cases,
    natural_key,
    source_from_case_id,
    subset_of,
)
from covseg.io import (
    SLICE_SUFFIXES,
    GridMismatchError,
    VolumeReadError,
    has_spacing,
    image_suffix,
    read_volume,
    to_reference_grid,
)
from covseg.metrics.case import METRIC_KEYS
from covseg.parallel import map_unordered

#: Metric columns of metrics.csv, in order: the keys of ``covseg.metrics.evaluate_case``.
METRICS = METRIC_KEYS
#: Every column of metrics.csv, in order; other code (ranking, the platform) relies on it.
COLUMNS = ("case", "source", "subset", *METRICS, "status", "error")
#: Lesion areas of 2D cases, which have no volume (their ``truth_ml``/``pred_ml`` stay empty):
#: pixel counts, and mm^2 where the slice has a spacing (not PNG/JPG). metrics.csv holds these
#: columns, after the metrics, only when it holds a 2D case.
AREA_COLUMNS = ("truth_px", "pred_px", "truth_mm2", "pred_mm2")


def score_case_files(
    case_id: str,
    pred_path: str | Path | None,
    truth_path: str | Path,
    source: str,
    label: int | None = None,
    *,
    seen_sources: Iterable[str] = ("A",),
    tolerance_mm: float = 1.0,
) -> dict[str, Any]:
    """Score one prediction file against its truth file; never raises.

    Parameters
    ----------
    case_id, source
        Copied into the row; ``source`` also decides the ``subset`` (seen/unseen).
    pred_path
        The prediction, or ``None`` when missing (scored as an empty mask, status ``missing``).
    truth_path
        The truth mask.
    label
        Evaluate this label value of both masks (multi-label files); ``None``: masks must be 0/1.
    seen_sources
        Sources whose cases are "seen" (COVID-19-20: ``("A",)``).
    tolerance_mm
        Normalized Surface Dice tolerance in mm.

    Returns
    -------
    dict
        One metrics.csv row: ``case, source, subset``, the metrics, ``status`` (``ok``,
        ``missing`` or ``failed``) and ``error`` (``""`` when ok).
    """
    from covseg.metrics import evaluate_case

    row = _failed_row(case_id, source, seen_sources, "")
    try:
        truth = read_volume(truth_path)
        truth_mask = binary_mask(truth.array, Path(truth_path), label)
        if pred_path is None:
            pred_mask = np.zeros_like(truth_mask)
            row["status"], row["error"] = "missing", "no prediction; scored as an empty mask"
        else:
            # Another tool's mask of the same voxels in another axis order: reoriented exactly.
            pred = to_reference_grid(
                read_volume(pred_path), truth, path=pred_path, reference_name="the truth"
            )
            pred_mask = binary_mask(pred.array, Path(pred_path), label)
            row["status"] = "ok"
        scores = evaluate_case(pred_mask, truth_mask, truth.spacing, tolerance_mm=tolerance_mm)
        row.update({name: float(scores[name]) for name in METRICS})
        if truth_mask.ndim == 2:
            row.update(_areas(pred_mask, truth_mask, truth.spacing, Path(truth_path)))
    except (VolumeReadError, GridMismatchError, CaseError) as exc:
        row["status"], row["error"] = "failed", str(exc)
    except Exception as exc:  # a row per case, whatever happens: the batch must go on
        where = pred_path if pred_path is not None else truth_path
        detail = str(exc).splitlines()[0] if str(exc) else ""
        row["status"], row["error"] = "failed", f"{where}: {exc.__class__.__name__}: {detail}"
    return row


def _areas(
    pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_], spacing: Sequence[float], path: Path
) -> dict[str, float]:
    """A 2D case's lesion areas in pixels and mm^2 (NaN without a spacing), and no volumes."""
    pixel_mm2 = math.prod(spacing) if has_spacing(path) else math.nan
    truth_px, pred_px = float(np.count_nonzero(truth)), float(np.count_nonzero(pred))
    return {
        "truth_ml": math.nan,
        "pred_ml": math.nan,
        "truth_px": truth_px,
        "pred_px": pred_px,
        "truth_mm2": truth_px * pixel_mm2,
        "pred_mm2": pred_px * pixel_mm2,
    }


def _failed_row(
    case_id: str, source: str, seen_sources: Iterable[str], error: str
) -> dict[str, Any]:
    return {
        "case": case_id,
        "source": source,
        "subset": subset_of(source, seen_sources),
        **dict.fromkeys(METRICS, math.nan),
        "status": "failed",
        "error": error,
    }


def binary_mask(
    array: npt.NDArray[np.generic], path: Path, label: int | None = None
) -> npt.NDArray[np.bool_]:
    """A file's mask as booleans: ``array == label``, else 0/1 values (0/255 for PNG/JPG slices).

    Raises
    ------
    CaseError
        NaN, or values other than 0/1 (0/255) when no ``label`` is given.
    """
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise CaseError(f"{path}: contains NaN")
    if label is not None:
        return np.asarray(array == label)
    if array.dtype == np.bool_:
        return array  # type: ignore[return-value]
    if array.dtype == np.uint8 and array.max(initial=0) <= 1:
        return array.view(np.bool_)  # the common case, without a copy
    foreground = 255 if image_suffix(path) in SLICE_SUFFIXES and array.max(initial=0) > 1 else 1
    valid = (array == 0) | (array == foreground)
    if not valid.all():
        others = np.unique(array[~valid])
        shown = ", ".join(f"{v:g}" for v in others[:5]) + (", ..." if len(others) > 5 else "")
        raise CaseError(
            f"{path}: label values other than 0/{foreground} ({shown}); pick one with --label N"
        )
    return ~(array == 0) if foreground == 255 else array.astype(bool)


@dataclass(frozen=True)
class _Job:
    """Everything one worker needs to score a case (picklable)."""

    case_id: str
    pred_path: Path | None
    truth_path: Path
    source: str
    label: int | None
    seen_sources: tuple[str, ...]
    tolerance_mm: float
    problem: str = ""


def _run(job: _Job) -> dict[str, Any]:
    if job.problem:
        return _failed_row(job.case_id, job.source, job.seen_sources, job.problem)
    return score_case_files(
        job.case_id,
        job.pred_path,
        job.truth_path,
        job.source,
        job.label,
        seen_sources=job.seen_sources,
        tolerance_mm=job.tolerance_mm,
    )


def truth_cases(truth_dir: str | Path) -> list[Case]:
    """The labelled cases of a truth folder: any :func:`find_cases` layout, or a flat folder of
    masks named by case id. Duplicate ids are kept (each once) for the caller to flag.

    Raises
    ------
    DatasetError
        Absent or empty folder, or no truth masks in it.
    """
    truth_dir = Path(truth_dir)
    try:
        cases = find_cases(truth_dir, allow_duplicates=True)
    except DatasetError:
        flat = files_by_case(truth_dir) if truth_dir.is_dir() else {}
        if not flat:
            raise
        ids = sorted(flat, key=natural_key)
        return [Case(i, None, path, source_from_case_id(i)) for i in ids for path in flat[i]]
    labelled = [case for case in cases if case.label is not None]
    if not labelled:
        raise DatasetError(f"{truth_dir}: {len(cases)} case(s) found but no masks (labels)")
    return labelled


def evaluate_folder(
    pred_dir: str | Path,
    truth_dir: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    label: int | None = None,
    seen_sources: Iterable[str] = ("A",),
    tolerance_mm: float = 1.0,
    progress: bool = True,
) -> pd.DataFrame:
    """Score every truth case against its prediction; one row per truth case.

    Parameters
    ----------
    pred_dir
        Folder of predictions named by case id.
    truth_dir
        Truth folder (see :func:`truth_cases`).
    workers, scheduler
        Local processes (default all cores) or a Dask scheduler address, as in
        :func:`covseg.parallel.map_unordered`.
    label, seen_sources, tolerance_mm
        As in :func:`score_case_files`.
    progress
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`, rows in case order. ``attrs["unmatched_predictions"]`` lists
        prediction files with no truth case (not scored).

    Raises
    ------
    DatasetError
        An absent or empty folder (no case can be scored at all).
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DatasetError(f"{pred_dir}: no such folder")
    predictions = files_by_case(pred_dir)
    if not predictions:
        raise DatasetError(f"{pred_dir}: no prediction files (.nii.gz, .nii, .nrrd, .mha, .png)")
    cases = truth_cases(truth_dir)
    seen = tuple(seen_sources)
    jobs = _jobs(cases, predictions, label, seen, float(tolerance_mm))
    rows = list(
        map_unordered(
            _run,
            jobs,
            workers=workers,
            scheduler=scheduler,
            progress=progress,
            description="evaluating",
        )
    )
    order = {job.case_id: n for n, job in enumerate(jobs)}
    rows.sort(key=lambda row: order[row["case"]])
    table = pd.DataFrame(rows, columns=list(table_columns(rows)))
    truth_ids = {case.case_id for case in cases}
    table.attrs["unmatched_predictions"] = [
        str(path)
        for case_id, paths in sorted(predictions.items())
        if case_id not in truth_ids
        for path in paths
    ]
    return table


def table_columns(rows: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """metrics.csv's columns for these rows: :data:`COLUMNS`, with :data:`AREA_COLUMNS` before
    ``status`` when a row is a 2D case."""
    if not any("truth_px" in row for row in rows):
        return COLUMNS
    return (*COLUMNS[:-2], *AREA_COLUMNS, *COLUMNS[-2:])


def _jobs(
    cases: list[Case],
    predictions: dict[str, list[Path]],
    label: int | None,
    seen_sources: tuple[str, ...],
    tolerance_mm: float,
) -> list[_Job]:
    by_id: dict[str, list[Case]] = {}
    for case in cases:
        by_id.setdefault(case.case_id, []).append(case)
    jobs = []
    for case_id, group in by_id.items():
        preds = predictions.get(case_id, [])
        truth = group[0].label
        assert truth is not None  # truth_cases keeps labelled cases only
        problem = ""
        if len(group) > 1:
            names = ", ".join(str(case.label) for case in group)
            problem = f"{names}: duplicate case id {case_id} in the truth"
        elif len(preds) > 1:
            problem = f"{', '.join(map(str, preds))}: several predictions for case {case_id}"
        jobs.append(
            _Job(
                case_id,
                preds[0] if preds else None,
                truth,
                group[0].source,
                label,
                seen_sources,
                tolerance_mm,
                problem,
            )
        )
    return jobs


def summarize(table: pd.DataFrame) -> dict[str, Any]:
    """Mean, std and median of each metric for all cases and each subset (paper Table 2).

    Failed cases are left out; missing ones count (scored as empty masks). A metric's statistics
    use its finite values only, ``n`` says how many and ``infinite`` how many were infinite (HD95,
    ASSD or NAVE against an empty mask, as for a missing prediction); ``std`` is the sample
    standard deviation (ddof=1); ``None`` where undefined. The area columns of 2D cases are
    summarised too when the table has them.

    Returns
    -------
    dict
        ``{"cases": {"ok": n, "missing": n, "failed": n}, "all": {...}, "seen": {...},
        "unseen": {...}, "unknown": {...}}``: every subset is there (``"n": 0`` when it has no
        case); each maps ``"n"`` to its number of scored cases and each metric name to
        ``{"mean", "std", "median", "n", "infinite"}``.
    """
    scored = table[table["status"] != "failed"]
    metrics = [*METRICS, *(c for c in AREA_COLUMNS if c in table.columns)]
    summary: dict[str, Any] = {
        "cases": {status: int((table["status"] == status).sum()) for status in _STATUSES}
    }
    for subset in ("all", *SUBSETS):
        part = scored if subset == "all" else scored[scored["subset"] == subset]
        stats: dict[str, Any] = {"n": len(part)}
        for metric in metrics:
            values = pd.to_numeric(part[metric], errors="coerce").to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            stats[metric] = {
                "mean": _finite(finite.mean()) if finite.size else None,
                "std": _finite(finite.std(ddof=1)) if finite.size > 1 else None,
                "median": _finite(np.median(finite)) if finite.size else None,
                "n": int(finite.size),
                "infinite": int(np.isinf(values).sum()),
            }
        summary[subset] = stats
    return summary


def present_subsets(table: pd.DataFrame) -> list[str]:
    """``"all"`` and the subsets that cases of ``table`` belong to, in report order."""
    return ["all", *(s for s in SUBSETS if (table["subset"] == s).any())]


def summary_path(output: str | Path) -> Path:
    """Where :func:`write_evaluation` puts the summary of ``output``: ``<stem>_summary.json``."""
    output = Path(output)
    return output.with_name(f"{output.name.removesuffix('.csv')}_summary.json")


def write_evaluation(table: pd.DataFrame, output: str | Path) -> dict[str, Any]:
    """Write a :func:`evaluate_folder` table to ``output`` (metrics.csv) and its
    :func:`summarize` to :func:`summary_path`; the one writer of evaluation outputs (the CLI,
    the demo). Returns the summary."""
    output = Path(output)
    summary = summarize(table)
    output.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(output, index=False)
    summary_path(output).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


_STATUSES = ("ok", "missing", "failed")


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
