"""Numerical building blocks shared by the ranking methods, vectorised along the last axis.

Everything here matches R's semantics where challengeR relies on R: ``mean`` (an accurate sum,
so that equal values stay equal after aggregation), ``rank`` with its ties methods (and
challengeR's ``rankNA2``, missing values ranked worst), ``p.adjust`` and Kendall's tau-b
(``cor(method="kendall")``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

ADJUSTMENTS = ("holm", "bonferroni", "hochberg", "BH", "BY", "none")
"""P-value adjustments over all ordered pairs of a task (R's ``p.adjust`` names; ``fdr`` = BH)."""

_SPLITTER = 2.0**27 + 1.0  # Veltkamp splitting constant for float64


def _two_sum(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``a + b`` and its exact rounding error (Knuth's TwoSum)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _two_prod(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``a * b`` and its exact rounding error (Dekker's product with Veltkamp splits)."""
    p = a * b
    ca, cb = _SPLITTER * a, _SPLITTER * b
    ah = ca - (ca - a)
    bh = cb - (cb - b)
    al, bl = a - ah, b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def mean(x: NDArray[np.floating], axis: int = -1) -> FloatArray:
    """Mean ignoring NaN, correctly rounded like R's long-double ``mean``.

    Values are sorted, summed in double-double precision and divided with one final rounding,
    so the result does not depend on the order of the values and two samples with the same
    exact mean get the same double (a plain float sum can split such ties and flip ranks).
    All-NaN slices give NaN.
    """
    x = np.sort(np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1), axis=-1)  # NaN last
    valid = ~np.isnan(x)
    n = valid.sum(axis=-1).astype(np.float64)
    values = np.where(valid, x, 0.0)
    s = np.zeros(x.shape[:-1])
    c = np.zeros(x.shape[:-1])
    for k in range(x.shape[-1]):
        s, err = _two_sum(s, values[..., k])
        c += err
    with np.errstate(invalid="ignore", divide="ignore"):
        q = s / n
        p, p_err = _two_prod(q, n)
        # (s + c - q n) / n, exactly enough to round q + remainder once
        result = q + (((s - p) - p_err) + c) / n
    return np.where(n > 0, result, np.nan)


def aggregate(x: NDArray[np.floating], how: str) -> FloatArray:
    """Aggregate along the last axis ignoring NaN: ``mean``, ``median``, ``min`` or ``max``."""
    if how == "mean":
        return mean(x)
    reducers: dict[str, Callable[..., Any]] = {
        "median": np.nanmedian,
        "min": np.nanmin,
        "max": np.nanmax,
    }
    if how not in reducers:
        raise ValueError(f"unknown aggregate {how!r} (use mean, median, min or max)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
        return np.asarray(reducers[how](x, axis=-1), dtype=np.float64)


TIES = ("min", "max", "average", "first", "last")
"""Ties methods of R's ``rank`` that covseg offers (``random`` is not: a ranking by chance)."""


def _compare(
    x: NDArray[np.floating], larger_better: bool
) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    """Per entry of the last axis: how many others are strictly better, and which are equal.

    NaN compares false with everything, itself included.
    """
    a, b = x[..., :, None], x[..., None, :]
    better = ((b > a) if larger_better else (b < a)).sum(axis=-1)
    return better, b == a


def _apply_ties(
    better: NDArray[np.intp],
    equal: NDArray[np.bool_],
    ties: str,
    copies: FloatArray | float = 1.0,
) -> FloatArray:
    """R's rank from the comparison counts; ``copies`` k ranks k identical copies of each value
    together (challengeR's bootstrap groups a drawn case's copies: see ``docs/ranking.md``)."""
    n_equal = equal.sum(axis=-1)
    if ties == "min":
        return np.asarray(copies * better + 1.0, dtype=np.float64)
    if ties == "max":
        return np.asarray(copies * (better + n_equal), dtype=np.float64)
    if ties == "average":
        return np.asarray(copies * better + (copies * n_equal + 1.0) / 2.0, dtype=np.float64)
    if ties not in ("first", "last"):
        raise ValueError(f"unknown ties method {ties!r} (use {', '.join(TIES)})")
    if not np.all(np.asarray(copies) == 1):
        raise ValueError(f"ties {ties!r} is not defined for grouped copies")
    index = np.arange(equal.shape[-1])
    order = index[None, :] < index[:, None] if ties == "first" else index[None, :] > index[:, None]
    return np.asarray(better + (equal & order).sum(axis=-1) + 1.0, dtype=np.float64)


def rank(
    x: NDArray[np.floating],
    ties: str = "min",
    larger_better: bool = True,
    missing_last: bool = False,
) -> FloatArray:
    """R's ``rank`` along the last axis (1 = best) with ``ties`` one of :data:`TIES`.

    ``first``/``last`` break ties by position along the axis. NaN entries get NaN ranks, or with
    ``missing_last`` rank after all the others (tied among themselves by ``ties``).
    """
    x = np.asarray(x, dtype=np.float64)
    if missing_last:
        # present values must be finite (validate_table refuses inf), so -inf/inf ranks last
        x = np.where(np.isnan(x), -np.inf if larger_better else np.inf, x)
    better, equal = _compare(x, larger_better)
    return np.where(np.isnan(x), np.nan, _apply_ties(better, equal, ties))


def rank_missing_worst(
    x: NDArray[np.floating],
    ties: str = "min",
    larger_better: bool = True,
    copies: FloatArray | float = 1.0,
) -> FloatArray:
    """challengeR's ``rankNA2`` along the last axis: each missing value gets the worst rank.

    Present values are ranked with ``ties``; every NaN gets the largest present rank plus 1
    (``average``: plus the mean of 1..m over the m missing values), 1 if nothing is present.
    ``copies`` (broadcast against ``x[..., 0]``) ranks that many copies of each value together.
    """
    x = np.asarray(x, dtype=np.float64)
    missing = np.isnan(x)
    k = np.asarray(copies, dtype=np.float64)[..., None] if np.ndim(copies) else copies
    better, equal = _compare(x, larger_better)
    ranks = np.where(missing, -np.inf, _apply_ties(better, equal, ties, k))
    top = ranks.max(axis=-1, keepdims=True)
    top = np.where(np.isinf(top), 0.0, top)
    if ties == "average":
        fill = top + (k * missing.sum(axis=-1, keepdims=True) + 1.0) / 2.0
    else:
        fill = top + 1.0
    return np.where(missing, fill, ranks)


def rank_min(
    x: NDArray[np.floating], larger_better: bool = True, missing_last: bool = False
) -> FloatArray:
    """Ranks along the last axis, ties ``"min"`` (1 = best); see :func:`rank`."""
    return rank(x, "min", larger_better, missing_last)


def rank_average(x: NDArray[np.floating], larger_better: bool = True) -> FloatArray:
    """Ranks along the last axis, ties as average ranks (R's ``ties.method="average"``)."""
    return rank(x, "average", larger_better)


def adjust_pvalues(p: NDArray[np.floating], method: str = "holm") -> FloatArray:
    """R's ``p.adjust`` along the last axis (one family per row), same operation order as R."""
    p = np.asarray(p, dtype=np.float64)
    m = p.shape[-1]
    if method == "none" or m == 0:
        return p.astype(np.float64)  # a copy
    if method == "bonferroni":
        return np.asarray(np.minimum(1.0, m * p), dtype=np.float64)
    method = "BH" if method == "fdr" else method
    if method not in ADJUSTMENTS:
        raise ValueError(f"unknown p-value adjustment {method!r} (use {', '.join(ADJUSTMENTS)})")
    i = np.arange(1, m + 1, dtype=np.float64)
    if method == "holm":
        order = np.argsort(p, axis=-1)  # tied p-values get equal results in any order
        scaled = (m + 1 - i) * np.take_along_axis(p, order, axis=-1)
        adjusted = np.minimum(1.0, np.maximum.accumulate(scaled, axis=-1))
    else:  # step-up methods work from the largest p-value down
        order = np.argsort(-p, axis=-1)
        ranks_down = i[::-1]  # R: i <- lp:1
        if method == "hochberg":
            factor = m + 1 - ranks_down
        elif method == "BH":
            factor = m / ranks_down
        else:  # BY
            factor = np.sum(1.0 / i) * m / ranks_down
        scaled = factor * np.take_along_axis(p, order, axis=-1)
        adjusted = np.minimum(1.0, np.minimum.accumulate(scaled, axis=-1))
    out = np.empty_like(p)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def reject(p: NDArray[np.floating], method: str, alpha: float) -> NDArray[np.bool_]:
    """``adjust_pvalues(p, method) < alpha`` along the last axis, without the adjusted values.

    For Holm, the rejected p-values are those up to the last sorted one whose running maximum of
    ``(m + 1 - i) p_(i)`` stays below alpha: a sort, not an argsort and a scatter back.
    """
    p = np.asarray(p, dtype=np.float64)
    m = p.shape[-1]
    if method != "holm" or m == 0:
        return adjust_pvalues(p, method) < alpha
    ordered = np.sort(p, axis=-1)
    scaled = (m + 1 - np.arange(1, m + 1, dtype=np.float64)) * ordered
    passed = (np.minimum(1.0, np.maximum.accumulate(scaled, axis=-1)) < alpha).sum(axis=-1)
    cutoff = np.take_along_axis(ordered, np.maximum(passed - 1, 0)[..., None], axis=-1)
    return (p <= cutoff) & (passed > 0)[..., None]


def kendall_tau_b(ranks: NDArray[np.floating], reference: NDArray[np.floating]) -> FloatArray:
    """Kendall's tau-b of each row of ``ranks`` against the one ``reference`` ranking.

    NaN where either ranking is constant (every algorithm tied), as R's ``cor`` gives.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    i, j = np.triu_indices(ranks.shape[-1], k=1)
    s0 = np.sign(reference[i] - reference[j])
    tau = np.empty(ranks.shape[:-1])
    flat = ranks.reshape(-1, ranks.shape[-1])
    out = tau.reshape(-1)
    chunk = max(1, 2_000_000 // max(1, i.size))
    for start in range(0, flat.shape[0], chunk):
        s = np.sign(flat[start : start + chunk, i] - flat[start : start + chunk, j])
        untied = np.count_nonzero(s, axis=-1).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + chunk] = (s @ s0) / np.sqrt(untied * np.count_nonzero(s0))
    return tau
