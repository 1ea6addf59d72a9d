"""Known answers for the 2026 metrics: balanced accuracy and the combined ranking score."""

import math

import pytest

from hmvnet.evaluation.metrics import balanced_accuracy, hecktor2026_score


def test_balanced_accuracy_is_the_mean_per_class_recall():
    truth = ["T1", "T1", "T1", "T1", "T2", "T2", "T3", "T3"]
    pred = ["T1", "T1", "T1", "T2", "T2", "T3", "T3", "T4"]  # recalls 3/4, 1/2, 1/2; T4 only lowers T3
    assert balanced_accuracy(truth, pred) == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert balanced_accuracy(truth, ["T1"] * 8) == pytest.approx(1 / 3)  # the majority class: 1 / n_classes
    assert math.isnan(balanced_accuracy([], []))


def test_hecktor2026_score_weights():
    assert hecktor2026_score(0.8, 0.6, 0.4, 0.7) == pytest.approx(0.25 * 0.8 + 0.35 * 0.5 + 0.40 * 0.7)
    assert hecktor2026_score(1.0, 1.0, 1.0, 1.0) == pytest.approx(1.0)


def test_evaluate_stages_truth_table_and_2026_sign(tmp_path):
    import json

    import pandas as pd

    from hmvnet.evaluation.evaluate import cli_main

    ids = [f"P{i}" for i in range(6)]
    pd.DataFrame({"PatientID": ids, "RFS": [100, 200, 300, 400, 500, 600], "Relapse": [1, 1, 1, 0, 1, 0],
                  "T-stage": ["T1", "T1", "T2", "T2", "T0", "T3"],
                  "N-stage": ["N0", "N1", "N2", "N2", "N3", "N0"]}).to_csv(tmp_path / "c.csv", index=False)  # fmt: skip
    pd.DataFrame({"case_id": ids, "t_stage": ["T1", "T2", "T2", "T2", "T1", "T3"],
                  "n_stage": ["N0", "N1", "N2", "N0", "N3", "N0"]}).to_csv(tmp_path / "s.csv", index=False)  # fmt: skip
    rfs = [100.0, 200.0, 300.0, 400.0, 500.0, 600.0]  # higher = longer: perfectly concordant in 2026's sense
    pd.DataFrame({"case_id": ids, "risk": rfs}).to_csv(tmp_path / "r.csv", index=False)
    base = [
        "--clinical",
        str(tmp_path / "c.csv"),
        "--risks",
        str(tmp_path / "r.csv"),
        "--stages",
        str(tmp_path / "s.csv"),
    ]
    assert (
        cli_main(
            [*base, "--out", str(tmp_path / "a.json"), "--risk-convention", "rfs2026", "--n-bootstrap", "10"]
        )
        == 0
    )
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["n_t_stage"] == 5  # the T0 row is left out of T
    assert a["ba_t"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert a["ba_n"] == pytest.approx((1.0 + 1.0 + 0.5 + 1.0) / 4)
    assert a["t_truth_table"]["T1"] == {"T1": 1, "T2": 1, "T3": 0}
    assert a["c_index"] == pytest.approx(1.0)
    assert a["hecktor2026_score"] is None  # NaN (written as null): no segmentation metrics given
    assert cli_main([*base, "--out", str(tmp_path / "b.json"), "--n-bootstrap", "10"]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["c_index"] == pytest.approx(0.0)  # read as a risk
