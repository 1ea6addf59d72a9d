"""The one atomic writer: normal permissions, no partial files, nothing left behind on failure."""

import json
import os
import stat

import numpy as np
import pytest
import SimpleITK as sitk

from hmvnet.data.writers import json_ready, write_json, write_label, write_with
from hmvnet.geometry import SAME_SPACE_TOL_MM, assert_same_space


def test_outputs_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json(1.5, tmp_path / "rfs.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert json.loads(path.read_text()) == 1.5


def test_a_failing_writer_leaves_no_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_with(path, broken)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_write_json_refuses_nan_and_json_ready_makes_it_null(tmp_path):
    with pytest.raises(ValueError):
        write_json(float("nan"), tmp_path / "x.json")
    assert not list(tmp_path.iterdir())
    assert json_ready({"a": np.float32(2.0), "b": [float("nan"), np.int64(3)], 4: (1, 2)}) == {
        "a": 2.0, "b": [None, 3], "4": [1, 2]
    }  # fmt: skip


def test_label_must_be_on_the_reference_grid(tmp_path):
    ref = sitk.Image(4, 4, 4, sitk.sitkUInt8)
    label = sitk.Image(ref)
    label.SetOrigin((SAME_SPACE_TOL_MM / 2, 0.0, 0.0))  # within the tolerance
    assert_same_space(label=label, reference=ref)
    write_label(label, tmp_path / "ok.nii.gz", reference=ref)
    label.SetOrigin((SAME_SPACE_TOL_MM * 3, 0.0, 0.0))
    with pytest.raises(ValueError, match="origin"):
        write_label(label, tmp_path / "bad.nii.gz", reference=ref)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.nii.gz"]
