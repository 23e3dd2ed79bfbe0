"""The long results table: validation, loading, and the tasks built from ``covseg evaluate``.

A long table has one row per (task, case, algorithm) with columns ``task, case, algorithm,
value``. A NaN value, or a row that is absent, is a missing result: it is left out of that
algorithm's aggregate and of the pairs it belongs to (R's ``na.rm`` / ``complete.cases``), unless
:func:`fill_missing` replaced it first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

COLUMNS = ("task", "case", "algorithm", "value")
SMALLER_IS_BETTER = frozenset({"nave", "hd95", "assd", "fp_lesions"})
"""Metrics of ``covseg evaluate`` where a smaller value is better."""
CHALLENGE_METRICS = ("dice", "nsd", "nave")
"""The metrics COVID-19-20 ranked, each on the "seen" and the "unseen" test cases."""
SUBSETS = ("seen", "unseen")


class RankingInputError(ValueError):
    """Input the ranking cannot use; the message is one line naming the problem."""


@dataclass(frozen=True)
class Task:
    """One task's results as a matrix, oriented so that larger is better.

    ``values[a, c]`` is algorithm ``a`` on case ``c`` times ``sign`` (-1 for a smaller-is-better
    task), NaN where missing.
    """

    name: str
    algorithms: tuple[str, ...]
    cases: tuple[str, ...]
    values: NDArray[np.float64]
    sign: float


def validate_table(table: pd.DataFrame) -> pd.DataFrame:
    """Check a long table and return a clean copy (string keys, float values).

    Raises :class:`RankingInputError` for missing columns, non-numeric values, duplicate
    (task, case, algorithm) rows, an empty table or fewer than two algorithms.
    """
    if "algorithm" not in table.columns and "algo" in table.columns:
        table = table.rename(columns={"algo": "algorithm"})  # challengeR's column name
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise RankingInputError(
            f"missing column(s) {', '.join(missing)} (need {', '.join(COLUMNS)})"
        )
    out = table.loc[:, list(COLUMNS)].copy()
    for key in ("task", "case", "algorithm"):
        if out[key].isna().any():
            row = int(np.flatnonzero(out[key].isna().to_numpy())[0])
            raise RankingInputError(f"row {row + 1}: empty {key}")
        out[key] = out[key].astype(str)
    numeric = pd.to_numeric(out["value"], errors="coerce")
    bad = numeric.isna() & out["value"].notna() & (out["value"].astype(str).str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise RankingInputError(f"row {row + 1}: value {out['value'].iloc[row]!r} is not a number")
    out["value"] = numeric.astype(np.float64)
    if np.isinf(out["value"]).any():
        row = int(np.flatnonzero(np.isinf(out["value"].to_numpy()))[0])
        raise RankingInputError(f"row {row + 1}: value is infinite")
    dup = out.duplicated(["task", "case", "algorithm"])
    if dup.any():
        r = out[dup].iloc[0]
        raise RankingInputError(
            f"duplicate rows for task {r.task}, case {r.case}, algorithm {r.algorithm}"
        )
    if out.empty:
        raise RankingInputError("the table has no rows")
    if out["algorithm"].nunique() < 2:
        raise RankingInputError("need at least two algorithms to rank")
    return out.reset_index(drop=True)


def fill_missing(
    table: pd.DataFrame, value: float | str, smaller_better: Iterable[str] = ()
) -> pd.DataFrame:
    """Give every algorithm a value on every case of every task where it has none.

    ``value`` is a number, or ``"worst"``: the worst value observed in that task (the minimum,
    or the maximum for a smaller-is-better task). Absent rows are added, NaN values replaced.
    """
    table = validate_table(table)
    smaller = set(smaller_better)
    parts = []
    for task, group in table.groupby("task", sort=False):
        full = pd.MultiIndex.from_product(
            [group["case"].unique(), table["algorithm"].unique()], names=["case", "algorithm"]
        )
        values = group.set_index(["case", "algorithm"])["value"].reindex(full)
        if value == "worst":
            fill = values.max() if task in smaller else values.min()
        else:
            fill = float(value)
        frame = values.fillna(fill).reset_index()
        frame.insert(0, "task", task)
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def build_tasks(table: pd.DataFrame, smaller_better: Iterable[str] = ()) -> list[Task]:
    """Split a validated long table into :class:`Task` matrices (tasks in order of appearance).

    Every algorithm must have at least one result in every task.
    """
    smaller = set(smaller_better)
    unknown = smaller - set(table["task"])
    if unknown:
        raise RankingInputError(f"smaller-is-better task(s) not in the table: {sorted(unknown)}")
    algorithms = tuple(sorted(table["algorithm"].unique()))
    tasks = []
    for name, group in table.groupby("task", sort=False):
        wide = group.pivot(index="algorithm", columns="case", values="value")
        wide = wide.reindex(index=list(algorithms), columns=sorted(wide.columns))
        empty = wide.index[wide.isna().all(axis=1)]
        if len(empty):
            raise RankingInputError(f"task {name}: algorithm {empty[0]} has no results")
        sign = -1.0 if name in smaller else 1.0
        tasks.append(
            Task(str(name), algorithms, tuple(map(str, wide.columns)), sign * wide.to_numpy(), sign)
        )
    return tasks


def table_from_evaluations(
    metrics: Mapping[str, pd.DataFrame],
) -> tuple[pd.DataFrame, set[str]]:
    """The challenge's tasks from ``covseg evaluate`` outputs, one ``metrics.csv`` per algorithm.

    Tasks are ``dice_seen, nsd_seen, nave_seen, dice_unseen, nsd_unseen, nave_unseen`` (only the
    subsets present). Failed cases (NaN metrics) stay NaN: missing results.

    Returns
    -------
    table, smaller_better
        The long table and the names of its smaller-is-better tasks (NAVE).
    """
    if not metrics:
        raise RankingInputError("no metrics.csv found")
    needed = {"case", "subset", *CHALLENGE_METRICS}
    parts = []
    for algorithm, frame in metrics.items():
        absent = needed - set(frame.columns)
        if absent:
            raise RankingInputError(f"{algorithm}: metrics lack column(s) {sorted(absent)}")
        for subset in SUBSETS:
            rows = frame[frame["subset"].astype(str) == subset]
            for metric in CHALLENGE_METRICS:
                parts.append(
                    pd.DataFrame(
                        {
                            "task": f"{metric}_{subset}",
                            "case": rows["case"].astype(str).to_numpy(),
                            "algorithm": algorithm,
                            "value": pd.to_numeric(rows[metric], errors="coerce").to_numpy(),
                        }
                    )
                )
    table = pd.concat(parts, ignore_index=True)
    if table.empty:
        raise RankingInputError("the metrics have no 'seen' or 'unseen' cases")
    order = [f"{m}_{s}" for s in SUBSETS for m in CHALLENGE_METRICS]
    table["task"] = pd.Categorical(table["task"], categories=order, ordered=True)
    table = table.sort_values("task", kind="stable").astype({"task": str}).reset_index(drop=True)
    smaller = {t for t in table["task"].unique() if t.split("_")[0] in SMALLER_IS_BETTER}
    return validate_table(table), smaller


def load_results(path: Path) -> tuple[pd.DataFrame, set[str]]:
    """Read a long CSV, or a folder of ``covseg evaluate`` outputs, into a long table.

    In a folder, each ``NAME/metrics.csv`` or ``NAME.csv`` is algorithm ``NAME``.

    Returns
    -------
    table, smaller_better
        Smaller-is-better tasks are known only for evaluation folders (empty for a CSV).
    """
    if path.is_dir():
        files = {p.parent.name: p for p in sorted(path.glob("*/metrics.csv"))}
        files.update({p.stem: p for p in sorted(path.glob("*.csv"))})
        if not files:
            raise RankingInputError("no NAME/metrics.csv or NAME.csv inside")
        return table_from_evaluations({name: _read_csv(p) for name, p in sorted(files.items())})
    return validate_table(_read_csv(path)), set()


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={k: str for k in ("task", "case", "algorithm", "algo")})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise RankingInputError(f"{path.name}: cannot read as CSV ({e})") from e
