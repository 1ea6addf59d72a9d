"""Frequency-weighted statistics of the ICARE models (:mod:`hmvnet.survival.icare`): outcome arrays, the
vectorised univariate Harrell C per feature, weighted means / standard deviations / ranks and absolute
correlations, and the private random generator.

Bootstrap samples are integer ``sample_weight`` (multiplicities): every statistic equals the value on the repeated
rows. The univariate C-index per feature is written here (the model's bottleneck over hundreds of bagged fits);
the C-index of a prediction comes from :func:`hmvnet.evaluation.metrics.concordance_index`, the one C-index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TIED_TOL = 1e-8
"""Absolute tolerance under which two values count as tied (the default of ``concordance_index_censored``)."""
_PAIR_BLOCK = 1 << 21
"""Pair x column elements per block in the pair algorithm of `harrell_c_per_feature` (16 MiB of float64)."""
_PAIRS_PER_STEP = 2500
"""Cost model of `harrell_c_per_feature` (measured on this project's CPU machine): one sweep step, per patient, costs
about as much as ``_PAIRS_PER_STEP * (1 + p / 125)`` pair-element operations of the pair algorithm."""


def survival_arrays(y: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(time, event)`` from a scikit-survival structured array: ``time`` float64 ``(n,)``, ``event`` bool ``(n,)``.

    The first boolean field is the event indicator and the first floating-point field the time, whatever their
    names. Raises `InputError` when ``y`` is not such an array, or a time is not finite.
    """
    arr = np.asarray(y)
    names = arr.dtype.names
    if not names:
        raise ValueError(
            "survival outcome y must be a structured array with a boolean event field and a float time field "
            f"(sksurv.util.Surv.from_arrays(event, time)); got dtype {arr.dtype}"
        )
    event_field = next((f for f in names if arr.dtype[f].kind == "b"), None)
    time_field = next((f for f in names if arr.dtype[f].kind == "f"), None)
    if event_field is None or time_field is None:
        raise ValueError(
            f"survival outcome y needs a boolean event field and a float time field; got fields "
            f"{[(f, str(arr.dtype[f])) for f in names]}"
        )
    time = np.asarray(arr[time_field], dtype=np.float64).reshape(-1)
    event = np.asarray(arr[event_field], dtype=bool).reshape(-1)
    if not np.all(np.isfinite(time)):
        raise ValueError(f"survival outcome field {time_field!r} has non-finite times")
    return time, event


def feature_matrix(X: Any) -> tuple[np.ndarray, list[str] | None]:
    """``(values, names)``: a float64 ``(n, p)`` copy of ``X`` (NaN = missing) and its column names if a DataFrame."""
    names = None
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        names = [str(c) for c in X.columns]
        bad = [c for c, kind in zip(names, X.dtypes) if getattr(kind, "kind", "O") not in "biuf"]
        if bad:
            raise ValueError(
                f"feature table has non-numeric columns {bad[:5]}: encode them first "
                "(e.g. sksurv.column.encode_categorical)"
            )
        values = X.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        try:
            values = np.array(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"features must be a numeric 2-D array or DataFrame: {exc}") from exc
    if values.ndim != 2:
        raise ValueError(f"features must be 2-D (n_patients, n_features); got shape {values.shape}")
    if np.isinf(values).any():
        raise ValueError("features contain +/-inf; use NaN for missing values")
    return values, names


def check_weights(sample_weight: Any, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.shape != (n,) or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"sample_weight must be {n} finite non-negative values; got shape {w.shape}")
    return w


def _tolerant_ranks(X: np.ndarray, tied_tol: float) -> np.ndarray:
    """Per column dense ranks 1..m of ``X`` ``(n, p)``, values closer than ``tied_tol`` to the previous sorted
    value sharing a rank; NaN rows get an arbitrary rank (callers mask them)."""
    order = np.argsort(X, axis=0, kind="stable")  # NaN sort last
    sorted_x = np.take_along_axis(X, order, axis=0)
    step = np.diff(sorted_x, axis=0) > tied_tol
    sorted_rank = np.concatenate([np.zeros((1, X.shape[1]), np.int64), np.cumsum(step, axis=0)]) + 1
    ranks = np.empty_like(sorted_rank)
    np.put_along_axis(ranks, order, sorted_rank, axis=0)
    return ranks


def harrell_c_per_feature(
    X: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    sample_weight: np.ndarray | None = None,
    tied_tol: float = TIED_TOL,
) -> np.ndarray:
    """Harrell's C-index of every column of ``X`` used as a risk, all columns at once.

    Args:
        X: ``(n, p)`` float, NaN = missing; each column is scored on its own non-missing rows.
        time: ``(n,)`` follow-up times (any unit). event: ``(n,)`` bool, True = event observed.
        sample_weight: ``(n,)`` non-negative frequency weights (bootstrap multiplicities); None = all 1. A weight
            of k gives the same C as k copies of the row.
        tied_tol: values closer than this count as tied (0.5), as in ``concordance_index_censored``.

    Returns:
        ``(p,)`` float64 C in [0, 1]; > 0.5 means larger values go with earlier events. NaN for a column without a
        comparable pair among its non-missing rows. Equals ``sksurv.metrics.concordance_index_censored(event,
        time, X[:, k])[0]`` on the non-missing rows of column k (comparable pairs as there: ``i`` has an event
        and ``j`` a later time, or the same time and no event). One difference: tied values are grouped by
        chaining (sorted neighbours closer than ``tied_tol``), sksurv compares each pair; they differ only
        for runs of distinct values spaced by less than ``tied_tol``.

    Hand-written because scikit-survival scores one risk vector per call with a Python loop over events. Two exact
    vectorised algorithms, picked by estimated cost: for few pairs x features, the comparable pairs are built once
    from the outcome and all features are scored by blocks of pair differences; otherwise patients are swept in
    decreasing time while a Fenwick tree per feature (over its value ranks) holds the patients still at risk,
    every step updating all features at once: O(n log n) numpy calls on ``(p,)`` vectors.
    """
    X = np.asarray(X, dtype=np.float64)
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event, dtype=bool)
    w = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    keep = w > 0
    if not keep.all():
        X, time, event, w = X[keep], time[keep], event[keep], w[keep]
    n, p = X.shape
    out = np.full(p, np.nan)
    if n < 2 or p == 0 or not event.any():
        return out
    i, j = _comparable_pairs(time, event)
    if i.size == 0:
        return out
    # Pair blocks cost ~ pairs * p element operations; the sweep ~ n steps of a few numpy calls on (p, log n).
    if i.size * p <= _PAIRS_PER_STEP * n * (1 + p / 125):
        return _harrell_pairs(X, w, i, j, tied_tol)
    return _harrell_sweep(X, time, event, w, tied_tol)


def _comparable_pairs(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Harrell's comparable pairs ``(i, j)``: ``i`` has an event and ``j`` is still at risk after it.

    As in scikit-survival: ``time[j] > time[i]``, or equal times with ``j`` censored (two events at the same time
    are not comparable). Returns two int64 index arrays of equal length.
    """
    later = time[None, :] > time[:, None]
    tied_censored = (time[None, :] == time[:, None]) & ~event[None, :]
    i, j = np.nonzero((later | tied_censored) & event[:, None])
    return i, j


def _harrell_pairs(X: np.ndarray, w: np.ndarray, i: np.ndarray, j: np.ndarray, tied_tol: float) -> np.ndarray:
    """C per column from the comparable pairs ``(i, j)`` (weights ``w[i] * w[j]``), in blocks of columns."""
    p = X.shape[1]
    pair_w = w[i] * w[j]
    out = np.full(p, np.nan)
    chunk = max(1, _PAIR_BLOCK // max(i.size, 1))
    for start in range(0, p, chunk):
        block = X[:, start : start + chunk]
        diff = block[i] - block[j]  # > 0: concordant (i had the event first and the larger value)
        sign = (diff > tied_tol).astype(np.float64) - (diff < -tied_tol)
        net = pair_w @ sign  # NaN differences compare False: no contribution
        if np.isnan(block).any():
            comparable = pair_w @ (~np.isnan(diff)).astype(np.float64)
        else:
            comparable = np.full(block.shape[1], pair_w.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + block.shape[1]] = np.where(
                comparable > 0, 0.5 + 0.5 * net / comparable, np.nan
            )
    return out


def _harrell_sweep(
    X: np.ndarray, time: np.ndarray, event: np.ndarray, w: np.ndarray, tied_tol: float
) -> np.ndarray:
    """C per column by a decreasing-time sweep with one Fenwick tree per column over its value ranks."""
    n, p = X.shape
    valid = ~np.isnan(X)
    ranks = _tolerant_ranks(X, tied_tol)
    # Tree columns 1..n hold ranks; column 0 stays 0 (a query may run to rank 0) and column n + 1 is a sink for
    # the padding of insert paths. The Fenwick paths of every rank are tabulated once, padded to a common length,
    # so one insert or one batch of queries is a single fancy-indexed numpy operation over all features.
    width = n + 2
    levels = int(n).bit_length() + 1
    up = np.full((n + 1, levels), n + 1, dtype=np.int64)
    down = np.zeros((n + 1, levels), dtype=np.int64)
    for r in range(1, n + 1):
        k, idx = 0, r
        while idx <= n:
            up[r, k], idx, k = idx, idx + (idx & -idx), k + 1
        k, idx = 0, r
        while idx > 0:
            down[r, k], idx, k = idx, idx - (idx & -idx), k + 1
    tree = np.zeros(p * width)
    base = (np.arange(p) * width)[:, None]
    at_risk = np.zeros(p)  # total weight of non-missing patients in the tree, per feature
    net = np.zeros(p)  # weighted concordant - discordant pairs
    comparable = np.zeros(p)

    def insert(j: int) -> None:
        value = w[j] * valid[j]
        # within a row the path is strictly increasing, rows are distinct features: only the sink repeats
        tree[(base + up[ranks[j]]).ravel()] += np.repeat(value, levels)
        at_risk[:] += value

    def prefix(r: np.ndarray) -> np.ndarray:  # r: (k, p) ranks in 0..n; sum of tree weights with rank <= r
        return tree[base[None] + down[r]].sum(axis=-1)

    order = np.lexsort((event, -time))  # decreasing time; at equal times censored (False) first
    k = 0
    while k < n:
        end = k
        while end < n and time[order[end]] == time[order[k]]:
            end += 1
        group = order[k:end]
        events = group[event[group]]
        for j in group[~event[group]]:  # censored at this time are at risk for events at this time
            insert(int(j))
        if events.size:
            r = ranks[events]
            less, less_equal = prefix(r - 1), prefix(r)
            wi = w[events, None] * valid[events]
            net += (wi * (less - (at_risk - less_equal))).sum(axis=0)
            comparable += (wi * at_risk).sum(axis=0)
            for j in events:
                insert(int(j))
        k = end
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(comparable > 0, 0.5 + 0.5 * net / comparable, np.nan)
    return out


def weighted_mean_std(X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column ``(mean, std, count)`` over non-missing rows, frequency weights, std with ddof 1 (NaN if count<2)."""
    valid = ~np.isnan(X)
    wv = valid * w[:, None]
    count = wv.sum(axis=0)
    Xz = np.where(valid, X, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (wv * Xz).sum(axis=0) / count
        dev = np.where(valid, X - mean, 0.0)
        var = (w[:, None] * dev**2).sum(axis=0) / (count - 1)
    std = np.where(count > 1, np.sqrt(np.maximum(var, 0.0)), np.nan)
    return mean, std, count


def weighted_ranks(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per column average ranks of the non-missing values with frequency weights (NaN stays NaN).

    A value of weight k ranks as k tied copies would (``scipy.stats.rankdata`` has no weights).
    """
    out = np.full_like(X, np.nan)
    for k in range(X.shape[1]):
        col = X[:, k]
        rows = np.flatnonzero(~np.isnan(col))
        if rows.size == 0:
            continue
        values, inverse = np.unique(col[rows], return_inverse=True)
        group_w = np.bincount(inverse, weights=w[rows], minlength=values.size)
        before = np.concatenate([[0.0], np.cumsum(group_w)[:-1]])
        out[rows, k] = (before + (group_w + 1.0) / 2.0)[inverse]
    return out


def abs_correlation(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(p, p)`` |Pearson| correlation with frequency weights, each pair on its pairwise complete rows.

    Pairs with fewer than 3 (weighted) complete rows or a zero variance get 0 (never "correlated").
    """
    valid = ~np.isnan(X)
    if valid.all():
        mean = (w @ X) / w.sum()
        Xc = (X - mean) * np.sqrt(w)[:, None]
        cov = Xc.T @ Xc
        var = np.diag(cov).copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.sqrt(np.outer(var, var))
        n_pair = np.full(cov.shape, w.sum())
    else:
        # Centring by the column mean first keeps the sum-of-products formulas well conditioned.
        mean, _, _ = weighted_mean_std(X, w)
        Xc = np.where(valid, X - np.nan_to_num(mean), 0.0)
        V = valid.astype(np.float64) * w[:, None]
        Xw = Xc * w[:, None]
        n_pair = valid.astype(np.float64).T @ V
        s_a = Xw.T @ valid.astype(np.float64)  # [a, b]: sum of x_a over rows where both a and b are present
        s_aa = (Xc * Xw).T @ valid.astype(np.float64)
        s_ab = Xc.T @ Xw
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = s_ab - s_a * s_a.T / n_pair
            var_a = s_aa - s_a**2 / n_pair
            var_b = var_a.T
            corr = cov / np.sqrt(var_a * var_b)
    corr = np.abs(corr)
    bad = ~np.isfinite(corr) | (n_pair < 3)
    corr[bad] = 0.0
    return np.minimum(corr, 1.0)


def make_rng(seed: Any) -> np.random.Generator:
    """A private generator (never the global numpy state): int seeds, None (fresh entropy) or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        raise ValueError("random_state must be an int, None or numpy.random.Generator (not RandomState)")
    return np.random.default_rng(seed)
