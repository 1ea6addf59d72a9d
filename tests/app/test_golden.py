"""Golden test: the shipped demo weights on the committed sample case reproduce the committed expected outputs
(``test/expected``): the mask voxel for voxel, the risk within 1e-6. Runs ``process.py`` as the container does,
with the weights found by the default search (no ``HMVNET_WEIGHTS``)."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import SimpleITK as sitk

from tests.helpers import REPO

SEG = "images/tumor-lymph-node-segmentation/output.mha"


def test_shipped_weights_reproduce_the_expected_sample_outputs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HMVNET_")}
    run = subprocess.run(
        [sys.executable, str(REPO / "process.py"), "--input", str(REPO / "test" / "input"), "--output",
         str(tmp_path), "--outputs", "both", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    umask = os.umask(0)
    os.umask(umask)
    for path in (tmp_path / SEG, tmp_path / "rfs.json"):  # readable by a host user (0644 under umask 022)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    got, want = sitk.ReadImage(str(tmp_path / SEG)), sitk.ReadImage(str(REPO / "test" / "expected" / SEG))
    assert got.GetSize() == want.GetSize()
    for name in ("GetSpacing", "GetOrigin", "GetDirection"):
        np.testing.assert_allclose(getattr(got, name)(), getattr(want, name)(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(want))
    risk = json.loads((tmp_path / "rfs.json").read_text())
    expected = json.loads((REPO / "test" / "expected" / "rfs.json").read_text())
    assert abs(risk - expected) <= 1e-6, (risk, expected)
