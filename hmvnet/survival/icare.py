"""Binary-weighted ICARE survival models (paper §3.5): `IcareSurvival` and its bagged ensemble.

ICARE ("Individual Coefficient Approximation for Risk Estimation") keeps, per feature, only the *direction* of its
univariate association with the outcome: weight +1 when a larger value goes with an earlier event (Harrell's C of
the raw feature >= 0.5), -1 otherwise. The risk of a patient is the mean of ``sign * z`` over the kept features,
where ``z`` is the feature z-scored with training statistics. Bagging many such models over bootstrap samples and
random feature subsets, aggregated by the median, is the HECKTOR 2022 winning survival model and HM-VNet's.

Conventions
-----------
* ``X``: ``(n_patients, n_features)`` float array or pandas DataFrame; NaN marks a missing value.
* ``y``: scikit-survival structured array (``sksurv.util.Surv.from_arrays(event, time)``); any field names: the
  first boolean field is the event indicator (True = relapse observed), the first floating field the time.
* ``predict`` returns a risk, **higher = earlier event**, standardised so that the training predictions have mean
  0 and standard deviation 1; always finite (a patient with every kept feature missing gets 0.0, the training
  mean risk).

Written here rather than taken from the reference ``icare`` 0.1.0 package, which needs scikit-learn < 1.8, writes
``testoutput.txt`` into the working directory and returns NaN risks for all-missing rows; and because its
univariate C-index loop is the bottleneck of hundreds of bagged fits, which the vectorised
`harrell_c_per_feature` removes. Models are serialised to plain JSON (`to_json` / `from_json`), never pickled.

Bootstrap samples are represented by integer ``sample_weight`` (multiplicities) rather than repeated rows: every
statistic here (Harrell's C, means, standard deviations with ddof 1, correlations, the re-standardisation) is
computed with frequency weights and equals the value on the repeated rows, at a fraction of the cost.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from hmvnet.data.writers import json_ready
from hmvnet.errors import InputError, WeightsError

__all__ = [
    "BaggedIcareSurvival",
    "IcareSurvival",
    "NoFeatureKeptWarning",
    "harrell_c_per_feature",
    "survival_arrays",
]

JSON_FORMAT = "hmvnet-icare"
JSON_VERSION = 1
TIED_TOL = 1e-8
"""Absolute tolerance under which two values count as tied (the default of ``concordance_index_censored``)."""
_PAIR_BLOCK = 1 << 21
"""Pair x column elements per block in the pair algorithm of `harrell_c_per_feature` (16 MiB of float64)."""
_PAIRS_PER_STEP = 2500
"""Cost model of `harrell_c_per_feature` (measured on this project's CPU machine): one sweep step, per patient, costs
about as much as ``_PAIRS_PER_STEP * (1 + p / 125)`` pair-element operations of the pair algorithm."""
MIN_STD = 1e-12
"""A feature whose (weighted, ddof 1) standard deviation is at most this is dropped: it carries no ranking."""


class NoFeatureKeptWarning(UserWarning):
    """An ICARE model kept no feature (all pruned by ``cmin``, constant or missing): it predicts a constant 0.0."""


# ------------------------------------------------------------------------------------------ inputs
def survival_arrays(y: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(time, event)`` from a scikit-survival structured array: ``time`` float64 ``(n,)``, ``event`` bool ``(n,)``.

    The first boolean field is the event indicator and the first floating-point field the time, whatever their
    names. Raises `InputError` when ``y`` is not such an array, or a time is not finite.
    """
    arr = np.asarray(y)
    names = arr.dtype.names
    if not names:
        raise InputError(
            "survival outcome y must be a structured array with a boolean event field and a float time field "
            f"(sksurv.util.Surv.from_arrays(event, time)); got dtype {arr.dtype}"
        )
    event_field = next((f for f in names if arr.dtype[f].kind == "b"), None)
    time_field = next((f for f in names if arr.dtype[f].kind == "f"), None)
    if event_field is None or time_field is None:
        raise InputError(
            f"survival outcome y needs a boolean event field and a float time field; got fields "
            f"{[(f, str(arr.dtype[f])) for f in names]}"
        )
    time = np.asarray(arr[time_field], dtype=np.float64).reshape(-1)
    event = np.asarray(arr[event_field], dtype=bool).reshape(-1)
    if not np.all(np.isfinite(time)):
        raise InputError(f"survival outcome field {time_field!r} has non-finite times")
    return time, event


def _feature_matrix(X: Any) -> tuple[np.ndarray, list[str] | None]:
    """``(values, names)``: a float64 ``(n, p)`` copy of ``X`` (NaN = missing) and its column names if a DataFrame."""
    names = None
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        names = [str(c) for c in X.columns]
        bad = [c for c, kind in zip(names, X.dtypes) if getattr(kind, "kind", "O") not in "biuf"]
        if bad:
            raise InputError(
                f"feature table has non-numeric columns {bad[:5]}: encode them first "
                "(e.g. sksurv.column.encode_categorical)"
            )
        values = X.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        try:
            values = np.array(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"features must be a numeric 2-D array or DataFrame: {exc}") from exc
    if values.ndim != 2:
        raise InputError(f"features must be 2-D (n_patients, n_features); got shape {values.shape}")
    if np.isinf(values).any():
        raise InputError("features contain +/-inf; use NaN for missing values")
    return values, names


def _check_weights(sample_weight: Any, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.shape != (n,) or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise InputError(f"sample_weight must be {n} finite non-negative values; got shape {w.shape}")
    return w


# ------------------------------------------------------------------------------------------ univariate C
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


# ------------------------------------------------------------------------------------------ weighted stats
def _weighted_mean_std(X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _weighted_ranks(X: np.ndarray, w: np.ndarray) -> np.ndarray:
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


def _abs_correlation(X: np.ndarray, w: np.ndarray) -> np.ndarray:
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
        mean, _, _ = _weighted_mean_std(X, w)
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


# ------------------------------------------------------------------------------------------ estimator
def _rng(seed: Any) -> np.random.Generator:
    """A private generator (never the global numpy state): int seeds, None (fresh entropy) or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        raise InputError("random_state must be an int, None or numpy.random.Generator (not RandomState)")
    return np.random.default_rng(seed)


class _HarrellScoreMixin:
    """``score(X, y)``: Harrell's C-index of ``predict(X)`` (a risk) against ``y`` (one C-index helper,
    `hmvnet.evaluation.metrics.concordance_index`)."""

    def score(self, X: Any, y: Any) -> float:
        from hmvnet.evaluation.metrics import concordance_index

        time, event = survival_arrays(y)
        return concordance_index(time, event, self.predict(X))  # type: ignore[attr-defined]


class IcareSurvival(_HarrellScoreMixin, BaseEstimator):
    """Binary-weighted ICARE survival model (one member of the bagged ensemble; paper §3.5).

    Fit, in order:

    1. ``max_features`` (as in scikit-learn: a float is a fraction in (0, 1], an int a count): a random subset of the columns is considered;
       ``mandatory_features`` (names when fitted on a DataFrame, or column indices) are always included.
    2. Columns are taken in a random order (mandatory ones first, in the given order); with ``rho`` set, a column
       whose |correlation| (``correlation_method`` "pearson", or "spearman" = Pearson of ranks; on pairwise
       complete rows) with an earlier kept column exceeds ``rho`` is dropped, so which member of a correlated
       pair survives is random.
    3. Per remaining column, on its non-missing rows, Harrell's C of the raw value against the outcome; sign
       ``-1`` if C < 0.5 else ``+1``; with ``cmin`` set, only columns with ``max(C, 1 - C) >= cmin`` are kept.
       Constant columns, and columns with fewer than 2 values or no comparable pair, are dropped.
    4. z-score with the training mean and standard deviation (ddof 1).
    5. Risk = mean over kept features of ``sign * z`` (missing values skipped per patient), re-standardised by the
       mean and std of the training risks. Mandatory features are not exempt from steps 2-3: a mandatory feature
       with no association (below ``cmin``) is not forced into the score.

    Learned attributes: ``n_features_in_``, ``feature_names_in_`` (DataFrame input only), ``features_kept_``
    (``(k,)`` int column indices), ``signs_`` (``(k,)`` +1/-1), ``c_index_`` (``(k,)`` univariate training C),
    ``mean_`` and ``std_`` (``(k,)`` z-score statistics in feature units), ``risk_mean_`` and ``risk_std_``
    (statistics of the raw training risks used for the final re-standardisation).
    """

    n_features_in_: int
    feature_names_in_: np.ndarray
    features_kept_: np.ndarray
    signs_: np.ndarray
    c_index_: np.ndarray
    mean_: np.ndarray
    std_: np.ndarray
    risk_mean_: float
    risk_std_: float

    def __init__(
        self,
        rho: float | None = None,
        cmin: float | None = None,
        max_features: float | int | None = None,
        mandatory_features: Sequence[str | int] | None = None,
        random_state: int | np.random.Generator | None = None,
        correlation_method: str = "pearson",
    ):
        self.rho = rho
        self.cmin = cmin
        self.max_features = max_features
        self.mandatory_features = mandatory_features
        self.random_state = random_state
        self.correlation_method = correlation_method

    # -------------------------------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> IcareSurvival:
        """Fit on ``X`` ``(n, p)`` (NaN allowed) and outcome ``y``; ``sample_weight`` = bootstrap multiplicities."""
        values, names = _feature_matrix(X)
        time, event = survival_arrays(y)
        if time.shape[0] != values.shape[0]:
            raise InputError(f"X has {values.shape[0]} rows but y has {time.shape[0]} outcomes")
        w = _check_weights(sample_weight, values.shape[0])
        self._fit_arrays(values, names, time, event, w, warn_empty=True)
        return self

    def _check_params(self) -> None:
        if self.rho is not None and not 0.0 < float(self.rho) <= 1.0:
            raise InputError(f"rho must be in (0, 1] or None; got {self.rho}")
        if self.cmin is not None and not 0.5 <= float(self.cmin) <= 1.0:
            raise InputError(f"cmin must be in [0.5, 1] or None; got {self.cmin}")
        if self.correlation_method not in ("pearson", "spearman"):
            raise InputError(
                f"correlation_method must be 'pearson' or 'spearman'; got {self.correlation_method!r}"
            )
        mf = self.max_features
        is_count = isinstance(mf, numbers.Integral) and not isinstance(mf, bool) and mf >= 1
        is_fraction = isinstance(mf, float) and 0.0 < mf <= 1.0
        if mf is not None and not (is_count or is_fraction):
            raise InputError(
                f"max_features must be a float fraction in (0, 1], an int count >= 1, or None; got {mf!r}"
            )

    def _mandatory_indices(self, names: list[str] | None, p: int) -> list[int]:
        out: list[int] = []
        for item in self.mandatory_features or ():
            if isinstance(item, str):
                if names is None or item not in names:
                    raise InputError(
                        f"mandatory feature {item!r} is not a column of X "
                        f"({'no column names: pass a DataFrame or indices' if names is None else 'unknown name'})"
                    )
                idx = names.index(item)
            elif isinstance(item, numbers.Integral) and not isinstance(item, bool):
                idx = int(item)
                if not 0 <= idx < p:
                    raise InputError(f"mandatory feature index {idx} out of range for {p} columns")
            else:
                raise InputError(f"mandatory feature must be a column name or index; got {item!r}")
            if idx not in out:
                out.append(idx)
        return out

    def _fit_arrays(
        self,
        values: np.ndarray,
        names: list[str] | None,
        time: np.ndarray,
        event: np.ndarray,
        w: np.ndarray,
        warn_empty: bool,
    ) -> None:
        self._check_params()
        p = values.shape[1]
        rng = _rng(self.random_state)
        mandatory = self._mandatory_indices(names, p)

        # 1. feature subsampling (mandatory columns always in)
        others = np.setdiff1d(np.arange(p), mandatory)
        if self.max_features is None:
            chosen = others
        else:
            mf = self.max_features
            count = int(mf) if isinstance(mf, numbers.Integral) else math.ceil(float(mf) * p)
            count = max(0, min(count - len(mandatory), others.size))
            chosen = rng.choice(others, size=count, replace=False) if count else others[:0]
        # 2. random order, then greedy correlation pruning against earlier kept columns
        order = np.concatenate([np.asarray(mandatory, dtype=np.int64), rng.permutation(chosen)]).astype(
            np.int64
        )
        sub = values[:, order]
        active = w > 0
        sub, t, e, wa = sub[active], time[active], event[active], w[active]
        mean, std, count = _weighted_mean_std(sub, wa)
        usable = (count >= 2) & np.isfinite(std) & (std > MIN_STD)
        if self.rho is not None and float(self.rho) < 1.0 and usable.sum() > 1:
            cols = np.flatnonzero(usable)
            data = sub[:, cols]
            if self.correlation_method == "spearman":
                data = _weighted_ranks(data, wa)
            corr = _abs_correlation(data, wa)
            dropped = np.zeros(cols.size, dtype=bool)
            for a in range(cols.size):
                if not dropped[a]:
                    dropped[a + 1 :] |= corr[a, a + 1 :] > float(self.rho)
            usable[cols[dropped]] = False
        # 3. univariate Harrell C, sign and cmin filter
        c = np.full(order.size, np.nan)
        if usable.any():
            c[usable] = harrell_c_per_feature(sub[:, usable], t, e, wa)
        usable &= np.isfinite(c)
        strength = np.maximum(c, 1.0 - c)
        if self.cmin is not None:
            usable &= strength >= float(self.cmin) - 1e-12
        # Kept columns in increasing column index: the model does not depend on the permutation beyond the pruning.
        kept_pos = np.flatnonzero(usable)
        kept_pos = kept_pos[np.argsort(order[kept_pos], kind="stable")]
        self.n_features_in_ = p
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.features_kept_ = order[kept_pos].astype(np.int64)
        self.c_index_ = c[kept_pos]
        self.signs_ = np.where(self.c_index_ < 0.5, -1, 1).astype(np.int64)
        # 4. z-score statistics
        self.mean_ = mean[kept_pos]
        self.std_ = std[kept_pos]
        # 5. re-standardisation of the training risks
        self.risk_mean_, self.risk_std_ = 0.0, 1.0
        if self.features_kept_.size == 0:
            if warn_empty:
                warnings.warn(
                    "ICARE kept no feature (all constant, missing or below cmin): it predicts a constant 0.0",
                    NoFeatureKeptWarning,
                    stacklevel=3,
                )
            return
        raw = self._raw_risk(sub[:, kept_pos])
        ok = ~np.isnan(raw)
        if ok.any():
            r_mean, r_std, r_count = _weighted_mean_std(raw[ok, None], wa[ok])
            self.risk_mean_ = float(r_mean[0])
            if r_count[0] > 1 and np.isfinite(r_std[0]) and r_std[0] > MIN_STD:
                self.risk_std_ = float(r_std[0])

    # -------------------------------------------------------------------------------------- predict
    def _raw_risk(self, kept_values: np.ndarray) -> np.ndarray:
        """Mean of ``sign * z`` over the non-missing kept features, per row; NaN where all are missing."""
        z = (kept_values - self.mean_) / self.std_ * self.signs_
        valid = ~np.isnan(z)
        n_valid = valid.sum(axis=1)
        total = np.where(valid, z, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n_valid > 0, total / np.maximum(n_valid, 1), np.nan)

    def _check_X(self, X: Any) -> np.ndarray:
        if not hasattr(self, "features_kept_"):
            raise InputError(f"{type(self).__name__} is not fitted: call fit(X, y) first")
        values, names = _feature_matrix(X)
        if values.shape[1] != self.n_features_in_:
            raise InputError(
                f"X has {values.shape[1]} features; the model was fitted on {self.n_features_in_}"
            )
        fitted = getattr(self, "feature_names_in_", None)
        if names is not None and fitted is not None and list(names) != list(fitted):
            diff = [a for a, b in zip(names, fitted) if a != b][:3]
            raise InputError(f"feature columns differ from those seen in fit (first differences: {diff})")
        return values

    def predict(self, X: Any) -> np.ndarray:
        """Risk ``(n,)`` float64, higher = earlier event; training risks have mean 0 and std 1. Always finite."""
        values = self._check_X(X)
        if self.features_kept_.size == 0:
            return np.zeros(values.shape[0])
        raw = self._raw_risk(values[:, self.features_kept_])
        risk = (raw - self.risk_mean_) / self.risk_std_
        return np.where(np.isnan(risk), 0.0, risk)

    # -------------------------------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, Any]:
        """The fitted model as a JSON-compatible dict (parameters and learned attributes; no pickle)."""
        if not hasattr(self, "features_kept_"):
            raise InputError("cannot serialise an unfitted IcareSurvival")
        params = _json_params(self.get_params())
        state = {
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": _names_or_none(self),
            "features_kept": self.features_kept_.tolist(),
            "signs": self.signs_.tolist(),
            "c_index": self.c_index_.tolist(),
            "mean": self.mean_.tolist(),
            "std": self.std_.tolist(),
            "risk_mean": float(self.risk_mean_),
            "risk_std": float(self.risk_std_),
        }
        return {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "model": "IcareSurvival",
            "params": params,
            **state,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IcareSurvival:
        """Rebuild a fitted model from `to_json` output; raises `WeightsError` on a malformed document."""
        _check_header(data, "IcareSurvival")
        model = cls(**_get(data, "params", dict))
        model._load_state(data, "IcareSurvival")
        return model

    def _load_state(self, data: Mapping[str, Any], where: str) -> None:
        self.n_features_in_ = int(_get(data, "n_features_in", int, where))
        names = data.get("feature_names_in")
        if names is not None:
            self.feature_names_in_ = np.asarray([str(s) for s in names], dtype=object)
        self.features_kept_ = np.asarray(_get(data, "features_kept", list, where), dtype=np.int64)
        self.signs_ = np.asarray(_get(data, "signs", list, where), dtype=np.int64)
        self.c_index_ = np.asarray(_get(data, "c_index", list, where), dtype=np.float64)
        self.mean_ = np.asarray(_get(data, "mean", list, where), dtype=np.float64)
        self.std_ = np.asarray(_get(data, "std", list, where), dtype=np.float64)
        self.risk_mean_ = float(_get(data, "risk_mean", float, where))
        self.risk_std_ = float(_get(data, "risk_std", float, where))
        k = self.features_kept_.size
        sizes = {a: getattr(self, a).size for a in ("signs_", "c_index_", "mean_", "std_")}
        if any(s != k for s in sizes.values()) or (k and self.features_kept_.max() >= self.n_features_in_):
            raise WeightsError(f"{where}: inconsistent ICARE state ({k} kept features, sizes {sizes})")


# ------------------------------------------------------------------------------------------ bagging
def _fit_member(
    params: dict[str, Any],
    seed: int,
    values: np.ndarray,
    names: list[str] | None,
    time: np.ndarray,
    event: np.ndarray,
) -> IcareSurvival:
    """One bag member: bootstrap multiplicities and its own seed from ``seed`` (so results ignore ``n_jobs``)."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    weights = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
    member = IcareSurvival(**params, random_state=int(rng.integers(0, 2**63 - 1)))
    member._fit_arrays(values, names, time, event, weights, warn_empty=False)
    return member


class BaggedIcareSurvival(_HarrellScoreMixin, BaseEstimator):
    """Bagged binary-weighted ICARE (paper §3.5): ``n_estimators`` `IcareSurvival` fits on bootstrap samples.

    Each member draws, from its own seed (drawn from the bag's ``random_state``), a bootstrap sample of n rows
    with replacement and a hyper-parameter set: one of ``parameters_sets`` (a list of dicts of `IcareSurvival`
    parameters ``rho``, ``cmin``, ``max_features``, ``mandatory_features``, ``correlation_method``; drawn
    uniformly) or, when that is None, the base parameters given here. ``predict`` aggregates the members' risks
    with ``np.nanmedian`` (``aggregation_method="median"``, as in the paper) or ``np.nanmean`` ("mean"); higher =
    earlier event. Members are fitted in parallel with joblib when ``n_jobs`` != 1; results do not depend on it.

    Learned attributes: ``estimators_`` (list of fitted `IcareSurvival`), ``parameters_indices_`` (which set each
    member used, -1 for the base parameters), ``feature_importances_`` (``(p,)`` mean sign over the members that
    kept the feature, in [-1, 1], NaN if none did: +1 = always risk-increasing), ``feature_selection_frequency_``
    (``(p,)`` fraction of members keeping each feature), ``n_features_in_``, ``feature_names_in_``.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        parameters_sets: Sequence[Mapping[str, Any]] | None = None,
        aggregation_method: str = "median",
        n_jobs: int | None = 1,
        random_state: int | np.random.Generator | None = None,
        rho: float | None = None,
        cmin: float | None = None,
        max_features: float | int | None = None,
        mandatory_features: Sequence[str | int] | None = None,
        correlation_method: str = "pearson",
    ):
        self.n_estimators = n_estimators
        self.parameters_sets = parameters_sets
        self.aggregation_method = aggregation_method
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.rho = rho
        self.cmin = cmin
        self.max_features = max_features
        self.mandatory_features = mandatory_features
        self.correlation_method = correlation_method

    _BASE_KEYS = ("rho", "cmin", "max_features", "mandatory_features", "correlation_method")
    estimators_: list[IcareSurvival]
    parameters_indices_: np.ndarray
    n_features_in_: int
    feature_names_in_: np.ndarray
    feature_importances_: np.ndarray
    feature_selection_frequency_: np.ndarray

    def _parameter_sets(self) -> list[dict[str, Any]]:
        if self.parameters_sets is None:
            return []
        sets = []
        for k, item in enumerate(self.parameters_sets):
            if not isinstance(item, Mapping):
                raise InputError(
                    f"parameters_sets[{k}] must be a dict of IcareSurvival parameters; got {item!r}"
                )
            unknown = sorted(set(item) - set(self._BASE_KEYS))
            if unknown:
                raise InputError(
                    f"parameters_sets[{k}] has unknown keys {unknown}; allowed: {self._BASE_KEYS}"
                )
            sets.append(dict(item))
        if not sets:
            raise InputError("parameters_sets is an empty list: give at least one dict, or None")
        return sets

    def fit(self, X: Any, y: Any) -> BaggedIcareSurvival:
        """Fit ``n_estimators`` members on bootstrap samples of ``X`` ``(n, p)`` / ``y``; returns self."""
        from joblib import Parallel, delayed

        if self.aggregation_method not in ("median", "mean"):
            raise InputError(
                f"aggregation_method must be 'median' or 'mean'; got {self.aggregation_method!r}"
            )
        if not isinstance(self.n_estimators, numbers.Integral) or self.n_estimators < 1:
            raise InputError(f"n_estimators must be a positive integer; got {self.n_estimators!r}")
        values, names = _feature_matrix(X)
        time, event = survival_arrays(y)
        if time.shape[0] != values.shape[0]:
            raise InputError(f"X has {values.shape[0]} rows but y has {time.shape[0]} outcomes")
        sets = self._parameter_sets()
        base = {k: getattr(self, k) for k in self._BASE_KEYS}
        rng = _rng(self.random_state)
        seeds = rng.integers(0, 2**63 - 1, size=self.n_estimators)
        choice = (
            rng.integers(0, len(sets), size=self.n_estimators) if sets else np.full(self.n_estimators, -1)
        )
        jobs = [
            delayed(_fit_member)(sets[c] if c >= 0 else base, int(s), values, names, time, event)
            for s, c in zip(seeds, choice)
        ]
        if self.n_jobs == 1:
            self.estimators_ = [fn(*args, **kw) for fn, args, kw in jobs]
        else:
            self.estimators_ = list(Parallel(n_jobs=self.n_jobs)(jobs))
        self.parameters_indices_ = choice.astype(np.int64)
        self.n_features_in_ = values.shape[1]
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._summarise()
        empty = sum(m.features_kept_.size == 0 for m in self.estimators_)
        if empty:
            warnings.warn(
                f"{empty} of {self.n_estimators} ICARE members kept no feature and predict a constant 0.0",
                NoFeatureKeptWarning,
                stacklevel=2,
            )
        return self

    def _summarise(self) -> None:
        p = self.n_features_in_
        sign_sum, kept = np.zeros(p), np.zeros(p)
        for m in self.estimators_:
            np.add.at(sign_sum, m.features_kept_, m.signs_)
            np.add.at(kept, m.features_kept_, 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.feature_importances_ = np.where(kept > 0, sign_sum / np.maximum(kept, 1), np.nan)
        self.feature_selection_frequency_ = kept / len(self.estimators_)

    def predict_members(self, X: Any) -> np.ndarray:
        """``(n_estimators, n)`` risks of every member (each finite, higher = earlier event)."""
        if not hasattr(self, "estimators_"):
            raise InputError("BaggedIcareSurvival is not fitted: call fit(X, y) first")
        values = self.estimators_[0]._check_X(X)
        return np.stack([m.predict(values) for m in self.estimators_])

    def predict(self, X: Any) -> np.ndarray:
        """Aggregated risk ``(n,)`` float64 (median or mean over members), higher = earlier event; finite."""
        risks = self.predict_members(X)
        agg = np.nanmedian if self.aggregation_method == "median" else np.nanmean
        return agg(risks, axis=0)

    def to_json(self) -> dict[str, Any]:
        """The fitted ensemble as a JSON-compatible dict (parameters, summaries and every member)."""
        if not hasattr(self, "estimators_"):
            raise InputError("cannot serialise an unfitted BaggedIcareSurvival")
        params = _json_params(self.get_params())
        return {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "model": "BaggedIcareSurvival",
            "params": params,
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": _names_or_none(self),
            "parameters_indices": self.parameters_indices_.tolist(),
            "estimators": [m.to_json() for m in self.estimators_],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BaggedIcareSurvival:
        """Rebuild a fitted ensemble from `to_json` output; raises `WeightsError` on a malformed document."""
        _check_header(data, "BaggedIcareSurvival")
        model = cls(**_get(data, "params", dict))
        model.n_features_in_ = int(_get(data, "n_features_in", int))
        names = data.get("feature_names_in")
        if names is not None:
            model.feature_names_in_ = np.asarray([str(s) for s in names], dtype=object)
        members = _get(data, "estimators", list)
        if not members:
            raise WeightsError("BaggedIcareSurvival JSON: 'estimators' is empty")
        model.estimators_ = [IcareSurvival.from_json(m) for m in members]
        if any(m.n_features_in_ != model.n_features_in_ for m in model.estimators_):
            raise WeightsError("BaggedIcareSurvival JSON: members disagree on n_features_in")
        model.parameters_indices_ = np.asarray(_get(data, "parameters_indices", list), dtype=np.int64)
        model._summarise()
        return model


# ------------------------------------------------------------------------------------------ JSON helpers
def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    """Hyper-parameters as JSON; a Generator ``random_state`` (not serialisable) is stored as None."""
    out = {k: json_ready(v, nonfinite="keep") for k, v in params.items()}
    if isinstance(params.get("random_state"), np.random.Generator):
        out["random_state"] = None
    return out


def _names_or_none(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(s) for s in names]


def _check_header(data: Mapping[str, Any], model: str) -> None:
    from hmvnet.errors import WeightsError

    if not isinstance(data, Mapping):
        raise WeightsError(f"{model} JSON must be an object; got {type(data).__name__}")
    if data.get("format") != JSON_FORMAT or data.get("model") != model:
        raise WeightsError(
            f"not a {model} JSON document: expected format={JSON_FORMAT!r}, model={model!r}; "
            f"got format={data.get('format')!r}, model={data.get('model')!r}"
        )
    if data.get("version") != JSON_VERSION:
        raise WeightsError(
            f"{model} JSON version {data.get('version')!r} unsupported (expected {JSON_VERSION})"
        )


def _get(data: Mapping[str, Any], key: str, kind: type, where: str = "ICARE JSON") -> Any:
    from hmvnet.errors import WeightsError

    if key not in data:
        raise WeightsError(f"{where}: missing key {key!r}")
    value = data[key]
    ok = isinstance(value, numbers.Real) if kind in (int, float) else isinstance(value, kind)
    if not ok or isinstance(value, bool):
        raise WeightsError(f"{where}: key {key!r} must be {kind.__name__}; got {type(value).__name__}")
    return value
