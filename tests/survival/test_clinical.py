"""Clinical encoder: known vectors, unknown categories, training-only statistics, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from hmvnet.data.clinical_record import ClinicalRecord
from hmvnet.errors import WeightsError
from hmvnet.survival.clinical_encoder import ClinicalEncoder

TRAIN = [
    ClinicalRecord(age=50.0, gender=1, tobacco=1, alcohol=0, performance_status=0, treatment=1, m_stage="M0",
                   center_id=1, hpv_status=1),
    ClinicalRecord(age=60.0, gender=0, tobacco=0, alcohol=1, performance_status=1, treatment=0, m_stage="M0",
                   center_id=2, hpv_status=0),
    ClinicalRecord(age=70.0, gender=1, tobacco=None, alcohol=1, performance_status=None, treatment=1, m_stage="M1",
                   center_id=3, hpv_status=None),
    ClinicalRecord(age=None, gender=1, tobacco=1, alcohol=None, performance_status=0, treatment=1, m_stage=None,
                   center_id=1, hpv_status=1),
]  # fmt: skip


def test_feature_names_and_known_vector():
    enc = ClinicalEncoder().fit(TRAIN)
    assert enc.feature_names_ == [
        "age_z", "age_missing",
        "gender=0", "gender=1", "gender=unknown",
        "tobacco=0", "tobacco=1", "tobacco=unknown",
        "alcohol=0", "alcohol=1", "alcohol=unknown",
        "performance_status=0", "performance_status=1", "performance_status=unknown",
        "treatment=0", "treatment=1", "treatment=unknown",
        "m_stage=M0", "m_stage=M1", "m_stage=unknown",
        "hpv_status=0", "hpv_status=1", "hpv_status=unknown",
    ]  # fmt: skip
    assert not any(name.startswith("center_id") for name in enc.feature_names_)
    x = enc.transform(TRAIN[:1])
    assert x.dtype == np.float32 and x.shape == (1, 23)
    # age 50 against observed ages 50, 60, 70: mean 60, std (ddof 1) 10
    expected = [-1.0, 0.0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0]
    np.testing.assert_allclose(x[0], expected, atol=1e-6)


def test_missing_values_go_to_unknown_and_age_is_imputed_with_training_median():
    enc = ClinicalEncoder().fit(TRAIN)
    x = enc.transform([ClinicalRecord()])[0]
    names = enc.feature_names_
    assert x[names.index("age_z")] == pytest.approx(0.0)  # median 60 == mean 60
    assert x[names.index("age_missing")] == 1.0
    for var in ("gender", "tobacco", "alcohol", "performance_status", "treatment", "m_stage", "hpv_status"):
        assert x[names.index(f"{var}=unknown")] == 1.0
    assert x.sum() == pytest.approx(1.0 + 7.0)  # the missing flag + one "unknown" per categorical variable


def test_value_unseen_in_training_is_unknown():
    enc = ClinicalEncoder().fit(TRAIN)
    x = enc.transform([ClinicalRecord(performance_status=3, m_stage="Mx", center_id=99)])[0]
    names = enc.feature_names_
    assert x[names.index("performance_status=unknown")] == 1.0
    assert x[names.index("m_stage=unknown")] == 1.0
    assert x[[names.index("performance_status=0"), names.index("performance_status=1")]].sum() == 0.0


def test_imputation_uses_training_statistics_only():
    train = [ClinicalRecord(age=a) for a in (40.0, 50.0, 90.0)]  # median 50, mean 60, std 26.458
    enc = ClinicalEncoder().fit(train)
    test = [ClinicalRecord(age=None), ClinicalRecord(age=10.0), ClinicalRecord(age=10.0)]
    x = enc.transform(test)
    std = np.std([40.0, 50.0, 90.0], ddof=1)
    assert x[0, 0] == pytest.approx((50.0 - 60.0) / std, rel=1e-6)
    assert x[1, 0] == pytest.approx((10.0 - 60.0) / std, rel=1e-6)
    # the test rows did not change what was learned
    assert enc.median_["age"] == 50.0 and enc.mean_["age"] == 60.0


def test_json_round_trip_gives_identical_output():
    enc = ClinicalEncoder().fit(TRAIN)
    text = enc.to_json()
    json.loads(text)  # plain JSON, no pickle
    back = ClinicalEncoder.from_json(text)
    probe = [*TRAIN, ClinicalRecord(), ClinicalRecord(age=33.0, performance_status=4)]
    np.testing.assert_array_equal(back.transform(probe), enc.transform(probe))
    assert back.feature_names_ == enc.feature_names_


def test_errors_are_specific():
    with pytest.raises(NotFittedError):
        ClinicalEncoder().transform(TRAIN)
    with pytest.raises(ValueError, match="ClinicalRecord"):
        ClinicalEncoder().fit([{"age": 50}])
    with pytest.raises(ValueError, match="not ClinicalRecord fields"):
        ClinicalEncoder(categorical=("stage",))
    with pytest.raises(WeightsError, match="format"):
        ClinicalEncoder.from_json('{"format": "other"}')
    broken = json.loads(ClinicalEncoder().fit(TRAIN).to_json())
    del broken["vocabulary"]["gender"]
    with pytest.raises(WeightsError, match="missing or invalid"):
        ClinicalEncoder.from_json(json.dumps(broken))


def test_constant_or_absent_age_gives_finite_output():
    enc = ClinicalEncoder().fit([ClinicalRecord(age=None), ClinicalRecord(gender=1)])
    x = enc.transform([ClinicalRecord(age=55.0), ClinicalRecord()])
    assert np.isfinite(x).all()
    enc = ClinicalEncoder().fit([ClinicalRecord(age=60.0)])
    assert enc.transform([ClinicalRecord(age=70.0)])[0, 0] == pytest.approx(10.0)  # std 0 -> 1
