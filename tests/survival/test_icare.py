"""Bagged binary-weighted ICARE: known answers on synthetic survival data (CPU, fast)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from hmvnet.errors import WeightsError
from hmvnet.survival import icare_stats
from hmvnet.survival.icare import (
    BaggedIcareSurvival,
    IcareSurvival,
    NoFeatureKeptWarning,
    harrell_c_per_feature,
    survival_arrays,
)


def monotone_cohort(n=200, n_noise=8, seed=0, censoring=True):
    """Risk = exp(x1) - x2**3 (monotone up in x1, down in x2) plus independent noise columns.

    Event times are a decreasing function of the risk with a little jitter, so a model with the right signs ranks
    almost perfectly. Returns (DataFrame, y, true risk).
    """
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    risk = np.exp(x1) - x2**3
    order = np.argsort(np.argsort(-risk))  # 0 for the highest risk
    time = 1.0 + order + rng.uniform(0, 0.5, n)
    event = rng.random(n) < 0.7 if censoring else np.ones(n, bool)
    noise = rng.normal(size=(n, n_noise))
    X = pd.DataFrame(
        np.column_stack([x1, x2, noise]), columns=["x1", "x2"] + [f"n{k}" for k in range(n_noise)]
    )
    return X, Surv.from_arrays(event, time), risk


def c_index(y, risk):
    time, event = survival_arrays(y)
    return concordance_index_censored(event, time, risk)[0]


def test_vectorised_harrell_equals_sksurv_per_feature():
    rng = np.random.default_rng(3)
    n = 120
    time = np.round(rng.exponential(5, n), 0) + 1  # many tied times
    event = rng.random(n) < 0.6
    X = np.column_stack(
        [
            rng.normal(size=n),
            np.round(rng.normal(size=n)),  # many tied values
            -time + rng.normal(size=n),  # strong negative... of time: risk-like
            time + rng.normal(size=n),
            rng.integers(0, 2, n).astype(float),  # binary
        ]
    )
    X[rng.random(X.shape) < 0.15] = np.nan
    w = np.ones(n)
    i, j = icare_stats._comparable_pairs(time, event)
    for got in (
        harrell_c_per_feature(X, time, event),
        icare_stats._harrell_pairs(X, w, i, j, 1e-8),  # both exact algorithms, whichever the cost model picks
        icare_stats._harrell_sweep(X, time, event, w, 1e-8),
    ):
        for k in range(X.shape[1]):
            rows = ~np.isnan(X[:, k])
            want = concordance_index_censored(event[rows], time[rows], X[rows, k])[0]
            assert got[k] == pytest.approx(want, abs=1e-12)
        assert got[2] > 0.8 and got[3] < 0.2


def test_harrell_weights_equal_repeated_rows_and_no_pair_gives_nan():
    rng = np.random.default_rng(4)
    n = 60
    time, event = rng.exponential(3, n), rng.random(n) < 0.5
    X = rng.normal(size=(n, 4))
    X[rng.random(X.shape) < 0.1] = np.nan
    w = np.bincount(rng.integers(0, n, n), minlength=n)
    rep = np.repeat(np.arange(n), w)
    np.testing.assert_allclose(
        harrell_c_per_feature(X, time, event, w),
        harrell_c_per_feature(X[rep], time[rep], event[rep]),
        atol=1e-12,
    )
    assert np.isnan(harrell_c_per_feature(X, time, np.zeros(n, bool))).all()  # no event: no comparable pair


def test_monotone_risk_ranks_nearly_perfectly_with_right_signs():
    X, y, _ = monotone_cohort()
    model = IcareSurvival(cmin=0.6, random_state=0).fit(X, y)
    kept = list(model.feature_names_in_[model.features_kept_])
    assert kept == ["x1", "x2"]  # noise columns have C near 0.5 and fall below cmin
    assert dict(zip(kept, model.signs_.tolist())) == {"x1": 1, "x2": -1}
    assert model.score(X, y) > 0.85  # mean of two z-scores: not the exact risk, but close in rank
    reversed_c = c_index(y, -model.predict(X))
    assert reversed_c < 0.15  # higher predicted = earlier event, not the reverse
    train_risk = model.predict(X)
    assert train_risk.mean() == pytest.approx(0.0, abs=1e-9) and train_risk.std(ddof=1) == pytest.approx(1.0)


def test_correlation_pruning_drops_one_of_two_duplicates_at_random():
    X, y, _ = monotone_cohort(n_noise=2)
    X["x1_copy"] = X["x1"] * 2.0 + 1.0  # |Pearson| = 1 with x1
    survivors = set()
    for seed in range(12):
        model = IcareSurvival(rho=0.9, random_state=seed).fit(X, y)
        kept = set(model.feature_names_in_[model.features_kept_])
        assert len(kept & {"x1", "x1_copy"}) == 1
        assert "x2" in kept
        survivors |= kept & {"x1", "x1_copy"}
    assert survivors == {"x1", "x1_copy"}  # which one survives depends on the random order
    # without rho both stay
    both = IcareSurvival(random_state=0).fit(X, y)
    assert {"x1", "x1_copy"} <= set(both.feature_names_in_[both.features_kept_])


def test_mandatory_feature_survives_subsampling_and_wins_correlation():
    X, y, _ = monotone_cohort(n_noise=20)
    X["x1_copy"] = X["x1"] + 1e-3 * np.arange(len(X))
    for seed in range(5):
        model = IcareSurvival(max_features=3, mandatory_features=["x1_copy"], rho=0.9, random_state=seed).fit(
            X, y
        )
        kept = set(model.feature_names_in_[model.features_kept_])
        assert "x1_copy" in kept and "x1" not in kept and len(kept) <= 3
    with pytest.raises(ValueError, match="nope"):
        IcareSurvival(mandatory_features=["nope"]).fit(X, y)


def test_cmin_filter_keeps_exactly_the_features_above_threshold():
    X, y, _ = monotone_cohort(n_noise=10, seed=1)
    time, event = survival_arrays(y)
    c = harrell_c_per_feature(X.to_numpy(), time, event)
    strength = np.maximum(c, 1 - c)
    cmin = float(np.sort(strength)[5])  # half the noise columns fall below
    model = IcareSurvival(cmin=cmin, random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.features_kept_, np.flatnonzero(strength >= cmin))
    np.testing.assert_array_equal(model.signs_, np.where(c[model.features_kept_] < 0.5, -1, 1))


def test_missing_values_are_skipped_and_all_missing_gives_finite_zero():
    X, y, _ = monotone_cohort(n_noise=0)
    model = IcareSurvival(random_state=0).fit(X, y)
    assert list(model.feature_names_in_[model.features_kept_]) == ["x1", "x2"]
    test = X.iloc[:3].copy()
    test.iloc[0] = np.nan  # everything missing: the training mean risk
    test.iloc[1, 1] = np.nan  # x2 missing: risk from x1 alone
    risk = model.predict(test)
    assert np.isfinite(risk).all() and risk[0] == 0.0
    z1 = (test.iloc[1, 0] - model.mean_[0]) / model.std_[0]  # sign +1
    assert risk[1] == pytest.approx((z1 - model.risk_mean_) / model.risk_std_)
    # training data with missing values: fit still works and predictions stay finite
    Xm = X.copy()
    Xm.iloc[::3, 0] = np.nan
    Xm.iloc[5] = np.nan
    assert np.isfinite(IcareSurvival().fit(Xm, y).predict(Xm)).all()


def test_no_kept_feature_predicts_constant_zero_and_warns():
    X, y, _ = monotone_cohort(n_noise=2)
    with pytest.warns(NoFeatureKeptWarning):
        model = IcareSurvival(cmin=0.999).fit(X, y)
    np.testing.assert_array_equal(model.predict(X), np.zeros(len(X)))
    constant = pd.DataFrame({"a": np.ones(len(X))})
    with pytest.warns(NoFeatureKeptWarning):
        assert (IcareSurvival().fit(constant, y).predict(constant) == 0.0).all()


def test_any_field_names_and_array_input():
    X, y, _ = monotone_cohort(n_noise=1)
    time, event = survival_arrays(y)
    other = np.empty(len(time), dtype=[("months", "f8"), ("relapse", "?")])
    other["months"], other["relapse"] = time, event
    a = IcareSurvival(random_state=0).fit(X.to_numpy(), other).predict(X.to_numpy())
    b = IcareSurvival(random_state=0).fit(X, y).predict(X)
    np.testing.assert_allclose(a, b)
    with pytest.raises(ValueError, match="structured array"):
        IcareSurvival().fit(X, time)
    with pytest.raises(ValueError, match="features"):
        IcareSurvival().fit(X, y).predict(X.to_numpy()[:, :2])


SETS = [{"rho": 0.8, "cmin": 0.55}, {"max_features": 0.5, "mandatory_features": ["x1"], "cmin": 0.55}]


def bag_pair(backend=None):
    """The same bag fitted with n_jobs=1 and n_jobs=2 (joblib ``backend``: None = joblib's default, processes)."""
    import joblib

    X, y, _ = monotone_cohort(n=120)
    X.iloc[::7, 3] = np.nan
    a = BaggedIcareSurvival(n_estimators=12, parameters_sets=SETS, random_state=7).fit(X, y)
    bag = BaggedIcareSurvival(n_estimators=12, parameters_sets=SETS, random_state=7, n_jobs=2)
    if backend is None:
        b = bag.fit(X, y)
    else:
        with joblib.parallel_config(backend=backend):
            b = bag.fit(X, y)
    return X, y, a, b


def test_bag_n_jobs_2_threads_gives_identical_predictions():
    X, _, a, b = bag_pair("threading")  # seeds are drawn before dispatch: the backend cannot matter
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


@pytest.mark.slow
def test_bag_n_jobs_2_processes_gives_identical_predictions():
    X, _, a, b = bag_pair()  # loky worker start-up costs several seconds on a loaded machine
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_bag_is_deterministic_for_a_seed():
    sets = SETS
    X, y, _ = monotone_cohort(n=120)
    X.iloc[::7, 3] = np.nan
    a = BaggedIcareSurvival(n_estimators=12, parameters_sets=sets, random_state=7).fit(X, y)
    b = BaggedIcareSurvival(n_estimators=12, parameters_sets=sets, random_state=7).fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert set(a.parameters_indices_.tolist()) == {0, 1}
    c = BaggedIcareSurvival(n_estimators=12, parameters_sets=sets, random_state=8).fit(X, y)
    assert not np.array_equal(a.predict(X), c.predict(X))
    assert a.score(X, y) > 0.85
    assert a.feature_importances_[0] == 1.0 and a.feature_importances_[1] == -1.0
    assert a.feature_selection_frequency_[0] == 1.0  # x1 mandatory (set 1) and strong (set 0)


def test_bag_member_equals_single_model_on_its_bootstrap_rows():
    X, y, _ = monotone_cohort(n=80)
    bag = BaggedIcareSurvival(n_estimators=1, rho=0.7, random_state=3).fit(X, y)
    member = bag.estimators_[0]
    # rebuild the member's bootstrap as repeated rows: same model as the weighted fit
    seed = int(np.random.default_rng(3).integers(0, 2**63 - 1, size=1)[0])
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.integers(0, len(X), size=len(X)))
    single = IcareSurvival(rho=0.7, random_state=int(rng.integers(0, 2**63 - 1))).fit(X.iloc[rows], y[rows])
    np.testing.assert_array_equal(single.features_kept_, member.features_kept_)
    np.testing.assert_allclose(single.predict(X), member.predict(X), atol=1e-10)


def test_median_and_mean_aggregation():
    X, y, _ = monotone_cohort(n=100)
    bag = BaggedIcareSurvival(n_estimators=5, random_state=0).fit(X, y)
    members = bag.predict_members(X)
    np.testing.assert_allclose(bag.predict(X), np.median(members, axis=0))
    bag.set_params(aggregation_method="mean")
    np.testing.assert_allclose(bag.predict(X), members.mean(axis=0))


def test_sklearn_clone_and_params():
    bag = BaggedIcareSurvival(n_estimators=3, rho=0.8, parameters_sets=[{"cmin": 0.55}], random_state=1)
    copy = clone(bag)
    assert copy.get_params() == bag.get_params() and copy is not bag
    single = clone(IcareSurvival(rho=0.5, max_features=0.3))
    assert single.get_params()["rho"] == 0.5 and single.get_params()["max_features"] == 0.3
    assert not hasattr(single, "features_kept_")


def test_json_round_trip_gives_identical_predictions():
    X, y, _ = monotone_cohort(n=100)
    X.iloc[::5, 2] = np.nan
    bag = BaggedIcareSurvival(n_estimators=6, rho=0.9, cmin=0.51, random_state=2).fit(X, y)
    doc = json.loads(json.dumps(bag.to_json()))  # through real JSON text
    loaded = BaggedIcareSurvival.from_json(doc)
    np.testing.assert_array_equal(loaded.predict(X), bag.predict(X))
    np.testing.assert_array_equal(loaded.feature_importances_, bag.feature_importances_)
    assert loaded.get_params() == bag.get_params()
    single = bag.estimators_[0]
    again = IcareSurvival.from_json(json.loads(json.dumps(single.to_json())))
    np.testing.assert_array_equal(again.predict(X), single.predict(X))
    broken = dict(doc, model="IcareSurvival")
    with pytest.raises(WeightsError, match="BaggedIcareSurvival"):
        BaggedIcareSurvival.from_json(broken)
    member = dict(single.to_json())
    del member["signs"]
    with pytest.raises(WeightsError, match="signs"):
        IcareSurvival.from_json(member)


def test_unfitted_models_raise_sklearn_not_fitted():
    from sklearn.exceptions import NotFittedError

    for model in (IcareSurvival(), BaggedIcareSurvival(n_estimators=2)):
        with pytest.raises(NotFittedError):
            model.predict(np.zeros((2, 3)))
        with pytest.raises(NotFittedError):
            model.to_json()
