"""hmvnet predict on a DICOM export tree: one case per study, reasons for the others, SUV in result.json, DICOM
outputs, and shards taken from the job-array environment."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hmvnet.app.batch import cli_main, shard_from_environment
from hmvnet.app.dicom_export import read_seg_labels
from hmvnet.data.cases import discover_cases, read_case
from hmvnet.errors import InputError


def test_environment_shards_partition_the_cohort(dicom_tree):
    names = [c.name for c in discover_cases(dicom_tree[0] / "export")]
    for env in ({"SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}, {"HMVNET_SHARD_COUNT": "4"}):
        key = "SLURM_ARRAY_TASK_ID" if "SLURM_ARRAY_TASK_COUNT" in env else "JOB_COMPLETION_INDEX"
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        parts = []
        for task in range(first, first + 4):
            k, n = shard_from_environment({**env, key: str(task)})
            parts.extend(names[k::n])
        assert sorted(parts) == sorted(names)  # none lost, none twice
    assert shard_from_environment({}) == (0, 1)
    with pytest.raises(InputError, match="HMVNET_SHARD_COUNT"):
        shard_from_environment({"JOB_COMPLETION_INDEX": "0"})


@pytest.mark.slow  # ~30 s: four cases through the full pipeline
def test_predict_dicom_tree_in_two_slurm_shards(full_weights, dicom_tree, tmp_path, monkeypatch):
    root, truth = dicom_tree
    out = tmp_path / "out"
    args = ["--input", str(root / "export"), "--output", str(out), "--weights", str(full_weights),
            "--device", "cpu", "--dicom-out", "seg,rtstruct"]  # fmt: skip
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    for task in ("0", "1"):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
        cli_main(args)
    table = pd.read_csv(out / "summary.csv").set_index("case_id")
    assert sorted(table.index) == sorted(truth)  # every study once, after both shards
    for case_id, row in table.iterrows():
        kind = truth[case_id]["kind"]
        expected = {"no-pet": "skipped", "broken": "failed"}.get(kind, "ok")
        assert row["status"] == expected, (case_id, row["error"])
        if kind == "no-pet":
            assert "no usable PET" in row["error"]
        if expected != "ok":
            continue
        result = json.loads((out / case_id / "result.json").read_text())
        if truth[case_id]["suv_factor"] is None:
            assert result["suv_source"] == "estimated" and result["suv_factor"] is None
        else:
            assert result["suv_source"] == "dicom-headers"
            assert abs(result["suv_factor"] / truth[case_id]["suv_factor"] - 1) < 0.005
        assert (out / case_id / result["dicom_seg"]).is_file() and (
            out / case_id / result["dicom_rtstruct"]
        ).is_file()
    import SimpleITK as sitk

    case_id = next(c for c in table.index if table.loc[c, "status"] == "ok")
    case = read_case(next(s for s in discover_cases(root / "export") if s.name == case_id))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / case_id / f"{case_id}.nii.gz")))
    assert (read_seg_labels(out / case_id / f"{case_id}_seg.dcm", case.dicom_ct) == mask).all()
