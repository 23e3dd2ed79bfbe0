"""One-sided paired Wilcoxon signed-rank tests for every ordered pair of algorithms at once.

The test is R's ``wilcox.test(x, y, paired=TRUE, exact=FALSE, alternative="greater")``: zero
differences dropped, average ranks of ``|x - y|``, tie-corrected variance, continuity correction
0.5 and the normal upper tail. Cases are matched by position; a case missing (NaN) for either
algorithm is left out of that pair, as R's ``complete.cases`` does.

Bootstrap samples are given as case weights: a case drawn ``k`` times counts as ``k`` paired
observations. The signed-rank statistic of a weighted sample is a quadratic form in the weights,
``V = w' Q w + w' q``, where ``Q`` and ``q`` depend only on the full-data differences: a copy of
case ``c`` has average rank ``sum_{c'} w_{c'} [0 < |d_c'| < |d_c|] + (sum_{c'} w_{c'} [|d_c'| =
|d_c|] + 1) / 2``. So every pair and every sample is one matrix product, with no sorting per
sample. The tie term ``sum_g (t_g^3 - t_g)`` needs the weighted size ``t_g`` of each tie group,
again a matrix product. All these quantities are small integers or halves, so they are exact in
float32 for up to 100 cases (float64 beyond).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from scipy.special import ndtr

from covseg.ranking.stats import FloatArray

_PAIR_BLOCK = 4_000_000  # pairs x cases^2 elements built at once (~16 MB in float32)
_SAMPLE_BLOCK = 64  # bootstrap samples per matrix product


class _PairTerms:
    """The weight-independent parts of the statistic for a block of unordered pairs."""

    def __init__(self, d: NDArray[np.float64], dtype: type[np.floating]) -> None:
        n_pairs, n_cases = d.shape
        valid = ~np.isnan(d)
        absd = np.abs(np.where(valid, d, 0.0))
        nonzero = valid & (d != 0)
        positive = valid & (d > 0)
        below = nonzero[:, :, None] & (absd[:, :, None] < absd[:, None, :])  # [p, c', c]
        equal = nonzero[:, :, None] & nonzero[:, None, :] & (absd[:, :, None] == absd[:, None, :])
        quad = positive[:, None, :] * (below + 0.5 * equal)
        self.quad = quad.reshape(n_pairs, n_cases * n_cases).T.astype(dtype)
        group_size = equal.sum(axis=1)
        singleton = nonzero & (group_size == 1)
        # linear terms: V's 0.5 per positive copy, nonzero count, complete-pair count
        self.linear = np.concatenate([0.5 * positive, nonzero, valid], axis=0).T.astype(dtype)
        self.singleton = singleton.T.astype(dtype)
        # tie groups of two or more cases: indicator columns and the pair each belongs to
        first = np.argmax(equal, axis=1)  # first case of the group of each (p, c)
        p_idx, c_idx = np.nonzero(nonzero & (group_size > 1))
        keys, group = np.unique(p_idx * n_cases + first[p_idx, c_idx], return_inverse=True)
        self.groups = np.zeros((n_cases, keys.size), dtype=dtype)
        self.groups[c_idx, group] = 1
        self.group_pair = sparse.csr_matrix(
            (np.ones(keys.size, dtype=dtype), (np.arange(keys.size), keys // n_cases)),
            shape=(keys.size, n_pairs),
        )
        self.n_pairs = n_pairs

    def statistics(
        self, w: NDArray[np.floating]
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """``V``, nonzero count ``n``, tie term and complete-pair count per sample and pair."""
        ww = (w[:, :, None] * w[:, None, :]).reshape(w.shape[0], -1)
        lin = w @ self.linear
        p = self.n_pairs
        v = ww @ self.quad + lin[:, :p]
        ties = (w * w * w) @ self.singleton
        if self.groups.shape[1]:
            t = w @ self.groups
            ties = ties + np.asarray(self.group_pair.T @ (t * t * t).T).T
        n = lin[:, p : 2 * p]
        ties = ties - n  # sum over groups of t^3 - t; sum of t is n
        return (
            v.astype(np.float64),
            n.astype(np.float64),
            ties.astype(np.float64),
            lin[:, 2 * p :].astype(np.float64),
        )


def _pair_blocks(n_algorithms: int, n_cases: int) -> Iterator[tuple[NDArray[np.intp], ...]]:
    i, j = np.triu_indices(n_algorithms, k=1)
    step = max(1, _PAIR_BLOCK // max(1, n_cases * n_cases))
    for start in range(0, i.size, step):
        yield i[start : start + step], j[start : start + step]


def signed_rank_pvalues(
    values: NDArray[np.floating], weights: NDArray[np.floating] | None = None
) -> tuple[FloatArray, FloatArray]:
    """One-sided p-values that algorithm ``x`` is better than ``y``, for all ordered pairs.

    Parameters
    ----------
    values
        ``(algorithms, cases)``, larger is better, NaN where a result is missing.
    weights
        ``(samples, cases)`` case multiplicities (bootstrap draws); ``None`` is the full data.

    Returns
    -------
    p, n
        ``(samples, algorithms, algorithms)`` arrays: ``p[s, x, y]`` the p-value of "x greater
        than y" and ``n[s, x, y]`` the number of complete pairs; diagonals are NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    n_alg, n_cases = values.shape
    w = np.ones((1, n_cases)) if weights is None else np.asarray(weights, dtype=np.float64)
    dtype = np.float32 if n_cases <= 100 else np.float64
    p_out = np.full((w.shape[0], n_alg, n_alg), np.nan)
    n_out = np.full((w.shape[0], n_alg, n_alg), np.nan)
    for i, j in _pair_blocks(n_alg, n_cases):
        terms = _PairTerms(values[i] - values[j], dtype)
        for start in range(0, w.shape[0], _SAMPLE_BLOCK):
            rows = slice(start, start + _SAMPLE_BLOCK)
            v, n, ties, complete = terms.statistics(w[rows].astype(dtype))
            p_xy, p_yx = _upper_tails(v, n, ties)
            p_out[rows, i, j], p_out[rows, j, i] = p_xy, p_yx
            n_out[rows, i, j] = n_out[rows, j, i] = complete
    return p_out, n_out


def _upper_tails(v: FloatArray, n: FloatArray, ties: FloatArray) -> tuple[FloatArray, FloatArray]:
    """P-values of "x > y" (statistic ``v``) and "y > x" (``n(n+1)/2 - v``), as R computes."""
    sigma = np.sqrt(n * (n + 1) * (2 * n + 1) / 24 - ties / 48)
    centre = n * (n + 1) / 4
    with np.errstate(divide="ignore", invalid="ignore"):
        z_xy = (v - centre - 0.5) / sigma  # no nonzero difference: -0.5 / 0 = -inf, p = 1
        z_yx = ((n * (n + 1) / 2 - v) - centre - 0.5) / sigma
    return ndtr(-z_xy), ndtr(-z_yx)
