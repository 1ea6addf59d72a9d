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
from sklearn.exceptions import NotFittedError

from hmvnet.data.writers import json_ready
from hmvnet.errors import WeightsError
from hmvnet.survival.icare_stats import (
    abs_correlation,
    check_weights,
    feature_matrix,
    harrell_c_per_feature,
    make_rng,
    survival_arrays,
    weighted_mean_std,
    weighted_ranks,
)

JSON_FORMAT = "hmvnet-icare"
JSON_VERSION = 1
MIN_STD = 1e-12
"""A feature whose (weighted, ddof 1) standard deviation is at most this is dropped: it carries no ranking."""


class NoFeatureKeptWarning(UserWarning):
    """An ICARE model kept no feature (all pruned by ``cmin``, constant or missing): it predicts a constant 0.0."""


# ------------------------------------------------------------------------------------------ inputs


# ------------------------------------------------------------------------------------------ univariate C


# ------------------------------------------------------------------------------------------ weighted stats


# ------------------------------------------------------------------------------------------ estimator


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
        values, names = feature_matrix(X)
        time, event = survival_arrays(y)
        if time.shape[0] != values.shape[0]:
            raise ValueError(f"X has {values.shape[0]} rows but y has {time.shape[0]} outcomes")
        w = check_weights(sample_weight, values.shape[0])
        self._fit_arrays(values, names, time, event, w, warn_empty=True)
        return self

    def _check_params(self) -> None:
        if self.rho is not None and not 0.0 < float(self.rho) <= 1.0:
            raise ValueError(f"rho must be in (0, 1] or None; got {self.rho}")
        if self.cmin is not None and not 0.5 <= float(self.cmin) <= 1.0:
            raise ValueError(f"cmin must be in [0.5, 1] or None; got {self.cmin}")
        if self.correlation_method not in ("pearson", "spearman"):
            raise ValueError(
                f"correlation_method must be 'pearson' or 'spearman'; got {self.correlation_method!r}"
            )
        mf = self.max_features
        is_count = isinstance(mf, numbers.Integral) and not isinstance(mf, bool) and mf >= 1
        is_fraction = isinstance(mf, float) and 0.0 < mf <= 1.0
        if mf is not None and not (is_count or is_fraction):
            raise ValueError(
                f"max_features must be a float fraction in (0, 1], an int count >= 1, or None; got {mf!r}"
            )

    def _mandatory_indices(self, names: list[str] | None, p: int) -> list[int]:
        out: list[int] = []
        for item in self.mandatory_features or ():
            if isinstance(item, str):
                if names is None or item not in names:
                    raise ValueError(
                        f"mandatory feature {item!r} is not a column of X "
                        f"({'no column names: pass a DataFrame or indices' if names is None else 'unknown name'})"
                    )
                idx = names.index(item)
            elif isinstance(item, numbers.Integral) and not isinstance(item, bool):
                idx = int(item)
                if not 0 <= idx < p:
                    raise ValueError(f"mandatory feature index {idx} out of range for {p} columns")
            else:
                raise ValueError(f"mandatory feature must be a column name or index; got {item!r}")
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
        rng = make_rng(self.random_state)
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
        mean, std, count = weighted_mean_std(sub, wa)
        usable = (count >= 2) & np.isfinite(std) & (std > MIN_STD)
        if self.rho is not None and float(self.rho) < 1.0 and usable.sum() > 1:
            cols = np.flatnonzero(usable)
            data = sub[:, cols]
            if self.correlation_method == "spearman":
                data = weighted_ranks(data, wa)
            corr = abs_correlation(data, wa)
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
            r_mean, r_std, r_count = weighted_mean_std(raw[ok, None], wa[ok])
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
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(X, y) first")
        values, names = feature_matrix(X)
        if values.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {values.shape[1]} features; the model was fitted on {self.n_features_in_}"
            )
        fitted = getattr(self, "feature_names_in_", None)
        if names is not None and fitted is not None and list(names) != list(fitted):
            diff = [a for a, b in zip(names, fitted) if a != b][:3]
            raise ValueError(f"feature columns differ from those seen in fit (first differences: {diff})")
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
            raise NotFittedError("cannot serialise an unfitted IcareSurvival")
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
                raise ValueError(
                    f"parameters_sets[{k}] must be a dict of IcareSurvival parameters; got {item!r}"
                )
            unknown = sorted(set(item) - set(self._BASE_KEYS))
            if unknown:
                raise ValueError(
                    f"parameters_sets[{k}] has unknown keys {unknown}; allowed: {self._BASE_KEYS}"
                )
            sets.append(dict(item))
        if not sets:
            raise ValueError("parameters_sets is an empty list: give at least one dict, or None")
        return sets

    def fit(self, X: Any, y: Any) -> BaggedIcareSurvival:
        """Fit ``n_estimators`` members on bootstrap samples of ``X`` ``(n, p)`` / ``y``; returns self."""
        from joblib import Parallel, delayed

        if self.aggregation_method not in ("median", "mean"):
            raise ValueError(
                f"aggregation_method must be 'median' or 'mean'; got {self.aggregation_method!r}"
            )
        if not isinstance(self.n_estimators, numbers.Integral) or self.n_estimators < 1:
            raise ValueError(f"n_estimators must be a positive integer; got {self.n_estimators!r}")
        values, names = feature_matrix(X)
        time, event = survival_arrays(y)
        if time.shape[0] != values.shape[0]:
            raise ValueError(f"X has {values.shape[0]} rows but y has {time.shape[0]} outcomes")
        sets = self._parameter_sets()
        base = {k: getattr(self, k) for k in self._BASE_KEYS}
        rng = make_rng(self.random_state)
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
            raise NotFittedError("BaggedIcareSurvival is not fitted: call fit(X, y) first")
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
            raise NotFittedError("cannot serialise an unfitted BaggedIcareSurvival")
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
