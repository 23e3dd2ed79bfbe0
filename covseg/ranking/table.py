"""The long results table: validation, loading, and the tasks built from ``covseg evaluate``.

A long table has one row per (task, case, algorithm) with columns ``task, case, algorithm,
value``. An algorithm takes part in a task when it has at least one row there. A NaN value, or
an absent row of a taking-part algorithm, is a missing result (challengeR's ``as.challenge``
inserts them as NA the same way); with ``na.rm`` it is left out of that algorithm's aggregate
and of the pairs it belongs to, and an algorithm without any result in a task is left out of
that task's aggregate-then-rank and test-then-rank rankings; rank-then-aggregate (which has no
``na.treat`` in challengeR) gives every missing value the worst rank of its case, so it ranks
such an algorithm too. :func:`fill_missing` replaces missing results first when asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from covseg.metrics import registry as metrics_registry

COLUMNS = ("task", "case", "algorithm", "value")
SMALLER_IS_BETTER = metrics_registry.SMALLER_IS_BETTER
"""Metrics of ``covseg evaluate`` where a smaller value is better (from the metric registry)."""
CHALLENGE_METRICS = ("dice", "nsd", "nave")
"""The metrics COVID-19-20 ranked, each on the "seen" and the "unseen" test cases."""
SUBSETS = ("seen", "unseen", "unknown")
"""Subsets of ``metrics.csv`` in task order; any other subset value follows, sorted. A case
whose source is unknown (an empty subset included) is its own ``unknown`` subset, never counted
as seen or unseen."""
MISSING = ("na.rm", "error")
"""What to do with missing results: leave them out (challengeR's ``na.treat="na.rm"``), or
refuse the table as challengeR does when no ``na.treat`` is given."""


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

    def with_results(self) -> Task:
        """The task without its algorithms that have no result at all (``na.rm``)."""
        keep: NDArray[np.bool_] = np.asarray(~np.isnan(self.values).all(axis=1), dtype=bool)
        if keep.all():
            return self
        names = tuple(a for a, k in zip(self.algorithms, keep, strict=True) if k)
        return Task(self.name, names, self.cases, self.values[keep], self.sign)


def validate_table(table: pd.DataFrame) -> pd.DataFrame:
    """Check a long table and return a clean copy (string keys, float values).

    Raises :class:`RankingInputError` for missing columns, non-numeric values, duplicate
    (task, case, algorithm) rows or an empty table. One algorithm is fine (it is ranked first).
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
    return out.reset_index(drop=True)


def fill_missing(
    table: pd.DataFrame, value: float | str, smaller_better: Iterable[str] = ()
) -> pd.DataFrame:
    """Give every algorithm taking part in a task a value on every case of that task.

    ``value`` is a number, or ``"worst"``: the worst value observed in that task (the minimum,
    or the maximum for a smaller-is-better task). Absent rows of an algorithm that has at least
    one row in the task are added and NaN values replaced; an algorithm without any row in a task
    is not added to it (as challengeR's ``na.treat``).
    """
    table = validate_table(table)
    smaller = set(smaller_better)
    parts = []
    for task, group in table.groupby("task", sort=False):
        full = pd.MultiIndex.from_product(
            [group["case"].unique(), group["algorithm"].unique()], names=["case", "algorithm"]
        )
        values = group.set_index(["case", "algorithm"])["value"].reindex(full)
        if value == "worst":
            fill = values.max() if task in smaller else values.min()
            if np.isnan(fill):
                raise RankingInputError(f"task {task}: no value to take the worst of")
        else:
            fill = float(value)
        frame = values.fillna(fill).reset_index()
        frame.insert(0, "task", task)
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def select_tasks(table: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The rows of the tasks ``names`` (in that order); an unknown name is refused."""
    present = list(dict.fromkeys(table["task"]))
    unknown = [n for n in names if n not in present]
    if unknown:
        raise RankingInputError(
            f"task {unknown[0]} is not in the table (tasks: {', '.join(present)})"
        )
    order = {n: i for i, n in enumerate(dict.fromkeys(names))}
    rows = table[table["task"].isin(order)]
    return rows.iloc[np.argsort(rows["task"].map(order).to_numpy(), kind="stable")].reset_index(
        drop=True
    )


def build_tasks(
    table: pd.DataFrame, smaller_better: Iterable[str] = (), missing: str = "na.rm"
) -> tuple[list[Task], list[str]]:
    """Split a validated long table into :class:`Task` matrices (tasks in order of appearance).

    Each task holds the algorithms that take part in it (sorted by name); those without any
    result are dropped by :meth:`Task.with_results` where a method leaves them out. With
    ``missing="error"`` any missing result is refused (challengeR without ``na.treat``).

    Returns
    -------
    tasks, notes
        The tasks, and one line per task on its missing results and left-out algorithms.
    """
    if missing not in MISSING:
        raise RankingInputError(f"unknown missing-value treatment {missing!r} (use na.rm, error)")
    smaller = set(smaller_better)
    unknown = smaller - set(table["task"])
    if unknown:
        raise RankingInputError(f"smaller-is-better task(s) not in the table: {sorted(unknown)}")
    tasks, notes = [], []
    for name, group in table.groupby("task", sort=False):
        wide = group.pivot(index="algorithm", columns="case", values="value")
        wide = wide.reindex(index=sorted(wide.index), columns=sorted(wide.columns))
        holes = wide.isna().to_numpy()
        if holes.any() and missing == "error":
            a, c = np.argwhere(holes)[0]
            raise RankingInputError(
                f"task {name}: {int(holes.sum())} missing result(s), the first for algorithm "
                f"{wide.index[a]} on case {wide.columns[c]}; choose a treatment "
                "(--missing na.rm, or --fill-missing VALUE|worst)"
            )
        empty: NDArray[np.bool_] = np.asarray(holes.all(axis=1), dtype=bool)
        if empty.all():
            raise RankingInputError(f"task {name}: no algorithm has a result")
        if holes.any():
            note = f"task {name}: {int(holes[~empty].sum())} missing result(s) left out (na.rm)"
            if empty.any():
                note += (
                    f"; without any result: {', '.join(wide.index[empty])} (left out of "
                    "aggregate-then-rank and test-then-rank, last on every case in "
                    "rank-then-aggregate)"
                )
            notes.append(note)
        sign = -1.0 if name in smaller else 1.0
        tasks.append(
            Task(
                str(name),
                tuple(map(str, wide.index)),
                tuple(map(str, wide.columns)),
                sign * wide.to_numpy(dtype=np.float64),
                sign,
            )
        )
    return tasks, notes


def subset_names(subsets: Iterable[object]) -> list[str]:
    """The subsets present, in task order: seen, unseen, unknown, then any other, sorted."""
    present = {_subset(s) for s in subsets}
    return [s for s in SUBSETS if s in present] + sorted(present - set(SUBSETS))


def _subset(value: object) -> str:
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    return text.strip() or "unknown"


def table_from_evaluations(
    metrics: Mapping[str, pd.DataFrame], tasks: Sequence[str] = CHALLENGE_METRICS
) -> tuple[pd.DataFrame, set[str]]:
    """Ranking tasks from ``covseg evaluate`` outputs, one ``metrics.csv`` per algorithm.

    Every metric in ``tasks`` (a column of ``metrics.csv`` with a direction in
    :data:`covseg.metrics.METRICS`) makes one task per subset present: ``dice_seen, nsd_seen,
    nave_seen, dice_unseen, ...`` for COVID-19-20's default, then ``..._unknown`` for cases of
    no known source. Failed cases (NaN metrics) stay NaN: missing results.

    Returns
    -------
    table, smaller_better
        The long table and the names of its smaller-is-better tasks (from the registry).

    Raises
    ------
    RankingInputError
        No metrics, an unknown metric, a metric without a direction, a column absent from a
        file, or a metric without any value in any file.
    """
    if not metrics:
        raise RankingInputError("no metrics.csv found")
    chosen = list(dict.fromkeys(tasks))
    if not chosen:
        raise RankingInputError("no metric chosen for the tasks")
    for name in chosen:
        try:
            info = metrics_registry.metric(name)
        except KeyError as e:
            raise RankingInputError(str(e.args[0])) from None
        if info.direction is None:
            raise RankingInputError(
                f"metric {name} has no direction (a descriptive {info.kind}): it cannot be ranked"
            )
    needed = {"case", "subset", *chosen}
    frames = {}
    for algorithm, frame in metrics.items():
        absent = needed - set(frame.columns)
        if absent:
            raise RankingInputError(f"{algorithm}: metrics lack column(s) {sorted(absent)}")
        frame = frame.assign(subset=frame["subset"].map(_subset))
        frames[algorithm] = frame
    for name in chosen:
        if all(pd.to_numeric(f[name], errors="coerce").isna().all() for f in frames.values()):
            raise RankingInputError(f"metric {name} has no value (all NaN) in any metrics.csv")
    subsets = subset_names(s for f in frames.values() for s in f["subset"])
    parts = []
    for algorithm, frame in frames.items():
        for subset in subsets:
            rows = frame[frame["subset"] == subset]
            for name in chosen:
                parts.append(
                    pd.DataFrame(
                        {
                            "task": f"{name}_{subset}",
                            "case": rows["case"].astype(str).to_numpy(),
                            "algorithm": algorithm,
                            "value": pd.to_numeric(rows[name], errors="coerce").to_numpy(),
                        }
                    )
                )
    table = pd.concat(parts, ignore_index=True)
    if table.empty:
        raise RankingInputError("the metrics have no cases")
    order = [f"{m}_{s}" for s in subsets for m in chosen]
    table["task"] = pd.Categorical(table["task"], categories=order, ordered=True)
    table = table.sort_values("task", kind="stable").astype({"task": str}).reset_index(drop=True)
    smaller = {
        f"{m}_{s}" for s in subsets for m in chosen if metrics_registry.METRICS[m].smaller_is_better
    }
    return validate_table(table), smaller & set(table["task"])


def load_results(path: Path, tasks: Sequence[str] | None = None) -> tuple[pd.DataFrame, set[str]]:
    """Read a long CSV, or a folder of ``covseg evaluate`` outputs, into a long table.

    In a folder, each ``NAME/metrics.csv`` or ``NAME.csv`` is algorithm ``NAME`` and ``tasks``
    names the metric columns to rank (COVID-19-20's Dice, NSD and NAVE by default); in a long
    CSV ``tasks`` selects task names (all by default).

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
        frames = {name: _read_csv(p) for name, p in sorted(files.items())}
        return table_from_evaluations(frames, CHALLENGE_METRICS if tasks is None else tasks)
    table = validate_table(_read_csv(path))
    return (table if tasks is None else select_tasks(table, tasks)), set()


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={k: str for k in ("task", "case", "algorithm", "algo")})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise RankingInputError(f"{path.name}: cannot read as CSV ({e})") from e
