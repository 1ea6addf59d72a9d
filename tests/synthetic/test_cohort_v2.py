"""Tests of generator v2 (hmvnet.synthetic.v2) on small cases: determinism, recorded draws, truth consistency."""

from __future__ import annotations

import csv

import numpy as np
import SimpleITK as sitk

from hmvnet import Label
from hmvnet.synthetic.cohort import TRUTH_NAME, case_pid, case_seed, cli_main, generate_case
from hmvnet.synthetic.realism import FIGURES, write_report
from hmvnet.synthetic.v2 import outcomes, protocols


def _case(g: int, seed: int = 4):
    return generate_case(case_pid(seed, g, "v2"), case_seed(seed, g), "small", generator="v2")


def test_v2_case_is_deterministic_per_seed() -> None:
    a, b = _case(1), _case(1)
    for x, y in ((a.ct, b.ct), (a.pet, b.pet), (a.label, b.label)):
        assert np.array_equal(sitk.GetArrayViewFromImage(x), sitk.GetArrayViewFromImage(y))
    assert a.truth == b.truth and a.clinical == b.clinical


def test_v2_truth_is_consistent_with_the_images() -> None:
    keys = None
    for g in range(4):
        case = _case(g)
        t = case.truth
        keys = keys or list(t)
        assert list(t) == keys  # one fixed column set for the truth CSV
        label = sitk.GetArrayViewFromImage(case.label)
        assert (label == Label.GTVP).any() == (t["gtvp_drawn"] > 0)
        assert case.label.GetSize()[2] - case.ct.GetSize()[2] == t["label_slices_minus_ct"]
        assert int(sitk.GetArrayViewFromImage(case.ct).max()) == t["ct_max_hu"]
        assert 0.0 <= t["pet_shift_mm"] <= 10.0
        assert t["T-stage"] in {"T0", "T1", "T2", "T3", "T4"} and t["N-stage"] in {"N0", "N1", "N2", "N3"}
        assert (t["gtvn_count"] == 0) == (t["N-stage"] == "N0")


def test_stage_rule_known_answers() -> None:
    assert outcomes.stage(0.0, 0, [], False) == (0, 0)
    assert outcomes.stage(3.0, 1, [2.0], False) == (1, 1)  # 1.8 cm primary, one 1.6 cm node
    assert outcomes.stage(20.0, 1, [2.0, 1.0], False) == (2, 2)
    assert outcomes.stage(80.0, 1, [150.0], False) == (3, 3)  # 5.35 cm primary, a 6.6 cm node
    assert outcomes.stage(100.0, 1, [1.0], True) == (4, 2)


def test_test_split_adds_unseen_centres_only_there() -> None:
    train = {case_pid(1, g, "v2", "train").split("-")[0] for g in range(200)}
    test = {case_pid(1, g, "v2", "test").split("-")[0] for g in range(200)}
    assert not train & set(protocols.TEST_ONLY)
    assert set(protocols.TEST_ONLY) <= test


def test_cli_generator_option_and_report(tmp_path) -> None:
    out = tmp_path / "c"
    assert cli_main(["--out", str(out), "--seed", "2", "--cases", "3", "--size", "small"]) == 0
    with (out / TRUTH_NAME).open() as f:
        rows = list(csv.DictReader(f))
    assert [r["generator"] for r in rows] == ["v2"] * 3
    passed, total = write_report(out)
    assert total == len(FIGURES) and 0 <= passed < total  # 3 small cases cannot match the real protocols
    text = (out / "synth_realism.md").read_text()
    assert "CT axial extent >= 800 mm" in text and "**FAIL**" in text
    v1 = tmp_path / "v1"
    assert (
        cli_main(["--out", str(v1), "--seed", "2", "--cases", "1", "--size", "small", "--generator", "v1"])
        == 0
    )
    with (v1 / TRUTH_NAME).open() as f:
        assert "generator" not in next(csv.DictReader(f))
