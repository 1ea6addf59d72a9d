"""`hmvnet evaluate` on tiny synthetic truth/prediction folders in every layout, with hand-computed scores."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from hmvnet.app.cli import run_cli
from hmvnet.errors import InputError
from hmvnet.evaluation.evaluate import cli_main, evaluate_folders, find_predictions
from tests.helpers import REPO

torch.set_num_threads(1)


SPACING = (2.0, 1.0, 1.5)  # (x, y, z) mm: 3 mm^3 per voxel
ORIGIN = (-10.0, 5.0, 20.0)
SHAPE = (20, 20, 20)  # (z, y, x)


def write_mask(array: np.ndarray, path: Path, spacing=SPACING, origin=ORIGIN) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path), True)


def cohort() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Truth and prediction arrays with known scores.

    A: GTVp 4^3 shifted one voxel along x (Dice 48*2/128 = 0.75), GTVn node exact (TP).
    B: GTVp exact (1.0); GTVn two nodes, one exact (TP), one missed (FN), plus a 2^3 false blob (FP).
    C: no prediction at all (GTVp Dice 0, GTVn node FN).
    GTVp mean = (0.75 + 1 + 0) / 3; GTVn aggDSC = 2 * 54 / (54 + 89 + 27); TP 2, FP 1, FN 2 -> F1 = 4 / 7.
    """
    t = {k: np.zeros(SHAPE, np.uint8) for k in "ABC"}
    p = {k: np.zeros(SHAPE, np.uint8) for k in "AB"}
    t["A"][4:8, 4:8, 4:8] = 1
    p["A"][4:8, 4:8, 5:9] = 1
    t["A"][12:15, 12:15, 12:15] = p["A"][12:15, 12:15, 12:15] = 2
    t["B"][2:6, 2:6, 2:6] = p["B"][2:6, 2:6, 2:6] = 1
    t["B"][10:13, 2:5, 2:5] = p["B"][10:13, 2:5, 2:5] = 2
    t["B"][10:13, 10:13, 10:13] = 2
    p["B"][16:18, 16:18, 16:18] = 2
    t["C"][3:6, 3:6, 3:6] = 1
    t["C"][12:15, 3:6, 12:15] = 2
    return t, p


GTVP = (0.75 + 1.0 + 0.0) / 3
AGG = 2 * 54 / (54 + 89 + 27)
F1 = 4 / 7
PRED_LAYOUTS = {
    "flat": "{id}.nii.gz",
    "folder": "{id}/{id}.nii.gz",
    "predict": "{id}/mask.mha",
    "process": "{id}/images/tumor-lymph-node-segmentation/output.mha",
    "process2026": "{id}/images/head-neck-tumor-segmentation/output.mha",
    "mha": "{id}.mha",
    "organisers": "{id}_prediction.nii.gz",
    "pred": "{id}_pred.nii.gz",
    "hmvnet_predict": "{id}/{id}.mha",
}
GT_LAYOUTS = {"hecktor": "Task 1/{id}/{id}.nii.gz", "flat": "{id}.nii.gz"}


def build(tmp_path: Path, pred_layout="flat", gt_layout="hecktor", preds=None) -> tuple[Path, Path]:
    truths, default_preds = cohort()
    preds = default_preds if preds is None else preds
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for cid, array in truths.items():
        write_mask(array, gt / GT_LAYOUTS[gt_layout].format(id=cid))
    for cid, array in preds.items():
        write_mask(array, pred / PRED_LAYOUTS[pred_layout].format(id=cid))
    # a prediction without truth: ignored; non-mask files beside the masks: ignored
    write_mask(np.ones(SHAPE, np.uint8), pred / PRED_LAYOUTS[pred_layout].format(id="D"))
    (pred / "summary.csv").write_text("case_id,risk\n")
    write_mask(
        np.zeros(SHAPE, np.uint8), gt / GT_LAYOUTS[gt_layout].format(id="A").replace("A.nii", "A__CT.nii")
    )
    return pred, gt


@pytest.mark.parametrize("pred_layout", list(PRED_LAYOUTS))
def test_scores_in_every_prediction_layout(tmp_path, pred_layout):
    pred, gt = build(tmp_path, pred_layout=pred_layout)
    out = tmp_path / "results.json"
    argv = ["--pred", str(pred), "--gt", str(gt), "--out", str(out), "--no-hd95", "--n-bootstrap", "50"]
    assert cli_main(argv) == 1  # case C has no prediction: results written, exit code 1
    results = json.loads(out.read_text())
    assert results["n_missing_predictions"] == 1
    assert results["gtvp_dsc"] == pytest.approx(GTVP)
    assert results["gtvn_agg_dsc"] == pytest.approx(AGG)
    assert results["gtvn_agg_f1"] == pytest.approx(F1)
    assert results["task1_score"] == pytest.approx(0.5 * GTVP + 0.25 * AGG + 0.25 * F1)
    assert (results["gtvn_tp"], results["gtvn_fp"], results["gtvn_fn"], results["n_cases"]) == (2, 1, 2, 3)
    assert results["missing_predictions"] == ["C"]
    assert results["unmatched_predictions"] == ["D"]
    assert results["resampled"] == []
    assert "c_index" not in results


@pytest.mark.parametrize("gt_layout", list(GT_LAYOUTS))
def test_truth_layouts_and_per_case_table(tmp_path, gt_layout):
    pred, gt = build(tmp_path, gt_layout=gt_layout)
    gt_arg = gt / "Task 1" if gt_layout == "hecktor" else gt  # GT may point at 'Task 1' itself
    out, per_case = tmp_path / "r.json", tmp_path / "cases.csv"
    argv = ["--pred", str(pred), "--gt", str(gt_arg), "--out", str(out), "--per-case", str(per_case)]
    assert cli_main([*argv, "--allow-missing"]) == 0
    assert json.loads(out.read_text())["gtvp_dsc"] == pytest.approx(GTVP)
    table = pd.read_csv(per_case).set_index("case_id")
    assert list(table.index) == ["A", "B", "C"]
    assert table.loc["A", "dice_gtvp"] == pytest.approx(0.75)
    assert table.loc["A", "hd95_gtvp_mm"] == pytest.approx(2.0)  # one voxel along x at 2 mm
    assert table.loc["A", "vol_truth_gtvp_ml"] == pytest.approx(64 * 3 / 1000)
    assert table.loc["B", "dice_gtvn"] == pytest.approx(54 / 89)
    assert (table.loc["B", "n_pred_gtvn"], table.loc["B", "n_truth_gtvn"]) == (2, 2)
    assert (table.loc["B", "tp"], table.loc["B", "fp"], table.loc["B", "fn"]) == (1, 1, 1)
    assert table.loc["C", "status"] == "missing_prediction"
    assert table.loc["C", "dice_gtvp"] == 0.0
    assert math.isnan(table.loc["C", "hd95_gtvp_mm"])


def test_spacing_mismatch_is_scored_empty_or_an_error_with_strict(tmp_path):
    pred, gt = build(tmp_path)
    write_mask(cohort()[1]["B"], pred / "B.nii.gz", spacing=(2.0, 1.0, 1.5001))
    with pytest.raises(InputError, match=r"case B: spacing \(2, 1, 1.5001\d*\) mm .* \(2, 1, 1.5\) mm"):
        evaluate_folders(pred, gt, strict=True)
    # through the CLI wrapper with --strict: a one-line error and exit code 2, no results written
    out = tmp_path / "r.json"
    assert run_cli(cli_main, ["--pred", str(pred), "--gt", str(gt), "--out", str(out), "--strict"]) == 2
    assert not out.exists()
    # default: B is reported with its reason and scored as an empty prediction; the other cases still count
    result = evaluate_folders(pred, gt, with_hd95=False)
    assert list(result.invalid_predictions) == ["B"]
    assert "spacing" in result.invalid_predictions["B"]
    table = result.per_case.set_index("case_id")
    assert table.loc["B", "status"] == "invalid_prediction" and "1.5001" in table.loc["B", "reason"]
    assert result.summary["gtvp_dsc"] == pytest.approx((0.75 + 0.0 + 0.0) / 3)
    assert result.summary["n_invalid_predictions"] == 1
    assert run_cli(cli_main, ["--pred", str(pred), "--gt", str(gt), "--out", str(out), "--no-hd95"]) == 1
    assert json.loads(out.read_text())["invalid_predictions"]["B"].startswith("prediction of case B")


def test_labels_outside_0_1_2_are_scored_empty_or_an_error_with_strict(tmp_path):
    pred, gt = build(tmp_path)
    bad = cohort()[1]["A"].copy()
    bad[0, 0, 0] = 3
    write_mask(bad, pred / "A.nii.gz")
    with pytest.raises(InputError, match=r"prediction of case A: .*labels \{0, 1, 2, 3\}"):
        evaluate_folders(pred, gt, strict=True)
    result = evaluate_folders(pred, gt, with_hd95=False)
    assert "labels {0, 1, 2, 3}" in result.invalid_predictions["A"]
    assert result.summary["gtvp_dsc"] == pytest.approx((0.0 + 1.0 + 0.0) / 3)
    (pred / "B.nii.gz").write_bytes(b"not an image")  # unreadable: reported the same way
    assert "cannot read" in evaluate_folders(pred, gt, with_hd95=False).invalid_predictions["B"]


def test_no_matching_prediction_is_always_an_error(tmp_path):
    pred, gt = build(tmp_path, preds={})
    for path in pred.iterdir():
        path.unlink()
    with pytest.raises(InputError, match=r"no prediction matches any of the 3 truth cases .*found: nothing"):
        evaluate_folders(pred, gt)
    write_mask(cohort()[1]["A"], pred / "A_segmentation.nii.gz")  # an unknown naming
    argv = ["--pred", str(pred), "--gt", str(gt), "--allow-missing"]
    with pytest.raises(InputError, match=r"found: A_segmentation\.nii\.gz"):
        cli_main(argv)
    assert run_cli(cli_main, argv) == 2


def test_id_ending_in_pred_is_kept_when_it_is_a_truth_id(tmp_path):
    truths, preds = cohort()
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write_mask(truths["A"], gt / "X_pred.nii.gz")  # a truth ID that itself ends in _pred
    write_mask(truths["B"], gt / "Y.nii.gz")
    write_mask(preds["A"], pred / "X_pred.nii.gz")
    write_mask(preds["B"], pred / "Y_pred.nii.gz")
    result = evaluate_folders(pred, gt, with_hd95=False)
    assert result.missing_predictions == [] and result.unmatched_predictions == []
    assert result.summary["gtvp_dsc"] == pytest.approx((0.75 + 1.0) / 2)


def test_without_out_the_json_goes_to_stdout(tmp_path, capsys):
    pred, gt = build(tmp_path)
    assert run_cli(cli_main, ["--pred", str(pred), "--gt", str(gt), "--no-hd95", "--n-bootstrap", "100"]) == 1
    captured = capsys.readouterr()
    results = json.loads(captured.out)  # stdout is the JSON only; the table goes to stderr
    assert results["gtvp_dsc"] == pytest.approx(GTVP)
    assert results["missing_predictions"] == ["C"]
    assert "gtvp_dsc" in captured.err
    for key in ("gtvp_dsc", "gtvn_agg_dsc", "gtvn_agg_f1", "task1_score"):
        low, high = results[f"{key}_ci"]
        assert low <= results[key] <= high


def test_other_grid_is_resampled_onto_the_truth(tmp_path):
    _, preds = cohort()
    # case A's prediction on a larger grid whose origin is 3 voxels lower in every axis: same physical content
    big = np.zeros((26, 27, 28), np.uint8)
    big[3:23, 3:23, 3:23] = preds["A"]
    pred, gt = build(tmp_path, preds={"B": preds["B"]})
    origin = tuple(o - 3 * s for o, s in zip(ORIGIN, SPACING))
    write_mask(big, pred / "A.nii.gz", origin=origin)
    result = evaluate_folders(pred, gt, with_hd95=False)
    assert result.resampled == ["A"]
    assert result.summary["gtvp_dsc"] == pytest.approx(GTVP)
    assert result.summary["gtvn_agg_f1"] == pytest.approx(F1)
    assert result.per_case.set_index("case_id").loc["A", "resampled"]


def test_ambiguous_prediction_files_are_an_error(tmp_path):
    pred, _ = build(tmp_path, pred_layout="folder")
    write_mask(cohort()[1]["A"], pred / "A" / "mask.mha")
    with pytest.raises(InputError, match="case A: 2 candidate files"):
        find_predictions(pred)


def write_survival(tmp_path: Path, risks: list[str], id_column="PatientID") -> tuple[Path, Path]:
    clinical = tmp_path / "HECKTOR_2025_Training_Task_2.csv"
    pd.DataFrame(
        {
            "PatientID": ["P0", "P1", "P2", "P3", "P4", "P5", "P6"],
            "Age": [60, 61, 62, 63, 64, 65, 66],
            "RFS": [2, 4, 4, 6, 8, 10, None],  # P6 without outcome: left out
            "Relapse": [1, 1, 0, 1, 0, 1, 1],
        }
    ).to_csv(clinical, index=False)
    risk_csv = tmp_path / "risks.csv"
    ids = ["P0", "P1", "P2", "P3", "P4", "P5", "X9"]  # X9 has no outcome: ignored
    risk_csv.write_text(f"{id_column},risk\n" + "".join(f"{i},{r}\n" for i, r in zip(ids, risks)))
    return clinical, risk_csv


def test_c_index_from_clinical_and_risks(tmp_path):
    # the hand table of test_metrics: C = 9.5 / 11
    clinical, risks = write_survival(tmp_path, ["5", "3", "4", "2", "2", "1", "7"], id_column="case_id")
    out, per_case = tmp_path / "r.json", tmp_path / "cases.csv"
    argv = [
        "--clinical",
        str(clinical),
        "--risks",
        str(risks),
        "--out",
        str(out),
        "--per-case",
        str(per_case),
    ]
    assert cli_main([*argv, "--n-bootstrap", "200"]) == 0
    results = json.loads(out.read_text())
    assert results["c_index"] == pytest.approx(9.5 / 11)
    low, high = results["c_index_ci"]
    assert low <= results["c_index"] <= high
    assert (results["n_survival"], results["n_events"]) == (6, 4)
    assert "gtvp_dsc" not in results
    assert list(pd.read_csv(per_case)["case_id"]) == ["P0", "P1", "P2", "P3", "P4", "P5"]


def test_missing_risk_counts_as_tie(tmp_path):
    clinical, risks = write_survival(tmp_path, ["5", "3", "4", "", "2", "1", "7"])  # P3 failed: empty risk
    out = tmp_path / "r.json"
    argv = ["--clinical", str(clinical), "--risks", str(risks), "--out", str(out)]
    assert cli_main(argv) == 1  # an empty risk makes the run incomplete
    results = json.loads(out.read_text())
    assert results["c_index"] == pytest.approx(8.0 / 11)
    assert results["n_nan_risks"] == 1


def test_patient_without_prediction_row_is_a_tie_and_reported(tmp_path):
    clinical, risks = write_survival(tmp_path, ["5", "3", "4", "2", "2", "1", "7"])
    table = pd.read_csv(risks)
    table[table["PatientID"] != "P3"].to_csv(risks, index=False)  # P3 has no row at all
    out, per_case = tmp_path / "r.json", tmp_path / "c.csv"
    argv = [
        "--clinical",
        str(clinical),
        "--risks",
        str(risks),
        "--out",
        str(out),
        "--per-case",
        str(per_case),
    ]
    assert cli_main(argv) == 1
    results = json.loads(out.read_text())
    assert results["c_index"] == pytest.approx(8.0 / 11)  # as a NaN risk: tie in all its pairs
    assert (results["missing_risks"], results["n_missing_risks"], results["n_survival"]) == (["P3"], 1, 6)
    assert pd.read_csv(per_case).set_index("case_id").loc["P3", "risk_status"] == "missing"
    assert cli_main([*argv, "--allow-missing"]) == 0
    assert cli_main([*argv, "--only-predicted"]) == 0  # P3 left out: C over the other five
    assert json.loads(out.read_text())["n_survival"] == 5


def test_challenge_prediction_table_rfs_folder_and_2026_sign(tmp_path):
    clinical, _ = write_survival(tmp_path, ["5", "3", "4", "2", "2", "1", "7"])
    ids, values = ["P0", "P1", "P2", "P3", "P4", "P5"], [5, 3, 4, 2, 2, 1]
    challenge = tmp_path / "submission.csv"
    pd.DataFrame({"PatientID": ids, "Prediction": values}).to_csv(challenge, index=False)
    folder = tmp_path / "outputs"
    for cid, value in zip(ids, values):
        (folder / cid).mkdir(parents=True)
        (folder / cid / "rfs.json").write_text(json.dumps(-value))  # 2026: higher = longer survival
    out = tmp_path / "r.json"
    base = ["--clinical", str(clinical), "--out", str(out), "--n-bootstrap", "20"]
    assert cli_main([*base, "--risks", str(challenge)]) == 0
    assert json.loads(out.read_text())["c_index"] == pytest.approx(9.5 / 11)
    assert cli_main([*base, "--risks", str(folder), "--risk-convention", "rfs2026"]) == 0
    results = json.loads(out.read_text())
    assert results["c_index"] == pytest.approx(9.5 / 11)
    assert results["risk_convention"] == "rfs2026"
    assert cli_main([*base, "--risks", str(folder)]) == 0  # the wrong sign: every ordered pair flips
    assert json.loads(out.read_text())["c_index"] == pytest.approx(1 - 9.5 / 11)
    (folder / "P0" / "rfs.json").write_text('"T2"')
    with pytest.raises(InputError, match=r"P0.rfs.json: holds 'T2'; expected a bare JSON number"):
        cli_main([*base, "--risks", str(folder)])


def test_bad_survival_inputs_name_the_file(tmp_path):
    clinical, risks = write_survival(tmp_path, ["5", "3", "4", "2", "2", "1", "7"])
    risks.write_text("PatientID,score\nP0,1\n")
    with pytest.raises(
        InputError, match=r"--risks .*risks.csv: expected one value column, 'Prediction' or 'risk'"
    ):
        cli_main(["--clinical", str(clinical), "--risks", str(risks), "--out", str(tmp_path / "r.json")])
    with pytest.raises(InputError, match="--clinical and --risks go together"):
        cli_main(["--risks", str(risks), "--out", str(tmp_path / "r.json")])


def test_eval_py_help():
    done = subprocess.run(
        [sys.executable, str(REPO / "eval.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--pred" in done.stdout and "--risks" in done.stdout


def test_readme_command_works_verbatim(tmp_path, capsys):
    """README: `hmvnet evaluate --pred DIR --gt DIR` (no --out) through the real CLI entry point."""
    from hmvnet.app.cli import main

    truths, preds = cohort()
    pred, gt = build(tmp_path, preds={**preds, "C": truths["C"]})  # every case predicted (C perfectly)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--n-bootstrap", "50"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["gtvp_dsc"] == pytest.approx((0.75 + 1.0 + 1.0) / 3)
    assert results["n_missing_predictions"] == 0 and results["unmatched_predictions"] == ["D"]
