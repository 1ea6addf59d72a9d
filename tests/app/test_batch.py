"""hmvnet predict: a cohort with one broken case, resume, shards, summary and QC pictures, and evaluate on it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hmvnet.app.batch import cli_main, parse_shard
from hmvnet.errors import InputError
from hmvnet.evaluation.evaluate import cli_main as evaluate_main
from tests.helpers import write_tiny_cohort


@pytest.fixture
def cohort(tmp_path):
    write_tiny_cohort(tmp_path / "data", n_cases=3, seed=21)
    broken = tmp_path / "data" / "Task 1" / "MDA-001" / "MDA-001__PT.nii.gz"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated file
    return tmp_path / "data"


def test_predict_cohort_with_a_broken_case_resume_and_evaluate(full_weights, cohort, tmp_path):
    out = tmp_path / "pred"
    args = ["--input", str(cohort), "--output", str(out), "--weights", str(full_weights), "--device", "cpu"]
    assert cli_main([*args, "--qc", "--num-workers", "2"]) == 1  # one case failed
    table = pd.read_csv(out / "summary.csv")
    assert sorted(table["case_id"]) == ["CHUM-000", "CHUM-002", "MDA-001"]
    failed = table.set_index("case_id").loc["MDA-001"]
    assert failed["status"] == "failed" and "cannot read" in failed["error"]
    ok = table[table["status"] == "ok"]
    assert len(ok) == 2 and ok["risk"].notna().all() and (ok["gtvp_ml"] >= 0).all()
    for case in ok["case_id"]:
        assert (out / case / f"{case}.nii.gz").is_file() and (out / case / "qc.png").is_file()
    assert "CHUM-000" in (out / "qc.html").read_text()
    before = {c: (out / c / "result.json").stat().st_mtime_ns for c in ok["case_id"]}
    assert cli_main(args) == 1  # resume: finished cases skipped, the broken one retried
    after = {c: (out / c / "result.json").stat().st_mtime_ns for c in ok["case_id"]}
    assert before == after
    results = tmp_path / "results.json"
    argv = ["--pred", str(out), "--gt", str(cohort), "--out", str(results), "--no-hd95"]
    assert evaluate_main(argv) == 1  # the failed case has no mask: scored as empty, named, exit code 1
    scores = json.loads(results.read_text())
    assert scores["n_cases"] == 3 and 0.0 <= scores["gtvp_dsc"] <= 1.0
    assert scores["missing_predictions"] == ["MDA-001"]
    assert evaluate_main([*argv, "--allow-missing"]) == 0


def test_shards_split_the_cohort(full_weights, cohort, tmp_path):
    out = tmp_path / "pred"
    base = ["--input", str(cohort), "--output", str(out), "--weights", str(full_weights), "--outputs",
            "segmentation", "--device", "cpu"]  # fmt: skip
    cli_main([*base, "--shard", "0/2"])
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["CHUM-000", "MDA-001"]
    cli_main([*base, "--shard", "1/2"])
    table = pd.read_csv(out / "summary.csv")
    assert sorted(table["case_id"]) == ["CHUM-000", "CHUM-002", "MDA-001"]


@pytest.mark.parametrize("text", ["2/2", "a/b", "1", "-1/3"])
def test_bad_shard(text):
    with pytest.raises(InputError, match="--shard"):
        parse_shard(text)


def test_summary_precision():
    from hmvnet.app.batch import SUMMARY_COLUMNS, rounded

    row = {"case_id": "A", "gtvp_ml": 12.34567, "gtvn_ml": 0.004, "total_s": 12.3456, "risk": -0.48812345678,
           "n_gtvn": 2.0}  # fmt: skip
    table = rounded(pd.DataFrame([row, {"case_id": "B", "status": "failed"}], columns=SUMMARY_COLUMNS))
    out = table.iloc[0]
    assert (out["gtvp_ml"], out["gtvn_ml"], out["total_s"], out["risk"]) == (12.35, 0.0, 12.3, -0.488123)
    assert table.to_csv(index=False).splitlines()[1].split(",")[7] == "2"  # a count, not "2.0"


def test_skipped_folders_orphan_partials_and_truncated_masks(full_weights, tmp_path):
    write_tiny_cohort(tmp_path / "data", n_cases=1, seed=3)
    task = tmp_path / "data" / "Task 1"
    (task / "X").mkdir()
    (task / "X" / "X_CT.nii.gz").write_bytes(b"misnamed")
    out = tmp_path / "pred"
    args = ["--input", str(tmp_path / "data"), "--output", str(out), "--weights", str(full_weights),
            "--outputs", "segmentation", "--device", "cpu"]  # fmt: skip
    assert cli_main(args) == 0  # a skipped folder is listed, not a failure
    table = pd.read_csv(out / "summary.csv").set_index("case_id")
    assert table.loc["X", "status"] == "skipped" and "not a case folder" in table.loc["X", "error"]
    case = next(c for c in table.index if c != "X")
    result = json.loads((out / case / "result.json").read_text())
    mask = out / case / f"{case}.nii.gz"
    assert result["mask_bytes"] == mask.stat().st_size and len(result["mask_sha256"]) == 64
    orphan = out / case / f".{case}.nii.gz.x1y2.partial.nii.gz"
    orphan.write_bytes(b"killed mid-write")
    mask.write_bytes(mask.read_bytes()[:100])  # truncated after result.json said ok
    assert cli_main(args) == 0
    assert not orphan.exists()
    redone = json.loads((out / case / "result.json").read_text())
    assert redone["status"] == "ok" and redone["mask_bytes"] == mask.stat().st_size > 100


@pytest.mark.slow  # two predict runs over three cases (about 30 s here)
def test_predict_hecktor2026_rfs_is_anti_ordered_with_the_2025_risk(full_weights, tmp_path):
    write_tiny_cohort(tmp_path / "data", n_cases=3, seed=23)
    base = ["--input", str(tmp_path / "data"), "--weights", str(full_weights), "--device", "cpu"]
    assert cli_main([*base, "--output", str(tmp_path / "a"), "--outputs", "both"]) == 0
    assert cli_main([*base, "--output", str(tmp_path / "b"), "--outputs", "hecktor2026"]) == 0
    risk = {
        c: json.loads((tmp_path / "a" / c / "rfs.json").read_text())
        for c in ("CHUM-000", "MDA-001", "CHUM-002")
    }
    rfs = {c: json.loads((tmp_path / "b" / c / "rfs.json").read_text()) for c in risk}
    assert all(rfs[c] == -risk[c] for c in risk)
    summary = pd.read_csv(tmp_path / "b" / "summary.csv")
    assert set(summary["t_stage"]) <= {"T1", "T2", "T3", "T4"} and set(summary["n_stage"]) <= {
        "N0",
        "N1",
        "N2",
        "N3",
    }
    for c in risk:
        assert isinstance(json.loads((tmp_path / "b" / c / "t-stage.json").read_text()), str)
