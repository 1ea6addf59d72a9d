"""Run-level guards: no stale outputs, the output folder checked first, HMVNET_OUTPUTS checked, the per-case time
budget and its fallback risk, the CT/PET overlap warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

from hmvnet.app import guards
from hmvnet.app.pipeline import RFS_JSON, SEG_2025, SEG_2026, Pipeline
from hmvnet.data.cases import read_gc_case
from hmvnet.errors import InputError
from tests.helpers import REPO


def _stale(out):
    for rel in (SEG_2025, SEG_2026, RFS_JSON):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("stale")
    partial = out / SEG_2025.parent / f".output.mha.abc{guards.PARTIAL_MARK}.mha"
    partial.write_text("killed")
    return partial


def test_a_failing_run_leaves_no_earlier_outputs(tiny_weights, gc_input, tmp_path):
    out = tmp_path / "out"
    partial = _stale(out)
    shutil.rmtree(gc_input / "images" / "pet")
    pipeline = Pipeline.load(tiny_weights, "cpu", survival=False)
    with pytest.raises(InputError, match="images/pet"):
        pipeline.process_case(gc_input, out, outputs="segmentation")
    assert not any((out / rel).exists() for rel in (SEG_2025, SEG_2026, RFS_JSON))
    assert not partial.exists()


def test_segmentation_profile_removes_a_stale_rfs_json(tiny_weights, gc_input, tmp_path):
    out = tmp_path / "out"
    _stale(out)
    result = Pipeline.load(tiny_weights, "cpu", survival=False).process_case(gc_input, out, "segmentation")
    assert (out / SEG_2025).read_bytes() != b"stale"
    assert not (out / RFS_JSON).exists() and not (out / SEG_2026).exists()
    assert result["warnings"] == []


def _process(env_extra, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO), **env_extra}
    return subprocess.run([sys.executable, str(REPO / "process.py"), *args], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip


def test_bogus_hmvnet_outputs_is_one_line_exit_2(tmp_path):
    run = _process({"HMVNET_OUTPUTS": "bogus"}, "--input", str(tmp_path), "--output", str(tmp_path / "o"))
    assert run.returncode == 2
    assert "HMVNET_OUTPUTS='bogus': expected one of" in run.stderr and "Traceback" not in run.stderr


def test_output_that_is_not_a_folder_is_reported_before_loading_models(gc_input, tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("a file, not a folder")
    run = _process(
        {}, "--input", str(gc_input), "--output", str(blocker), "--weights", str(tmp_path / "none")
    )
    assert run.returncode == 2, run.stderr
    assert "is not writable" in run.stderr and "weights" not in run.stderr.lower()
    assert "Traceback" not in run.stderr


def test_check_output_writable_accepts_a_new_folder(tmp_path):
    guards.check_output_writable(tmp_path / "new" / "out")
    assert list((tmp_path / "new" / "out").iterdir()) == []


@pytest.mark.parametrize("value", ["abc", "-1", "0", "nan"])
def test_case_budget_rejects_nonsense(value):
    with pytest.raises(InputError, match="HMVNET_CASE_BUDGET_S"):
        guards.case_budget_s(value)


def test_survival_past_the_budget_falls_back_to_the_documented_risk(full_weights, gc_input, tmp_path):
    pipeline = Pipeline.load(full_weights, "cpu")
    case = read_gc_case(gc_input)
    seg = pipeline.segmenter(case)

    def slow(*_args):
        time.sleep(5)
        return 1.0

    pipeline.survival.predict_risk = slow  # type: ignore[union-attr]
    start = time.perf_counter()
    out = pipeline._risk(case, seg, time.perf_counter() + guards.SURVIVAL_RESERVE_S + 0.3, 3.0, 1.0)
    assert time.perf_counter() - start < 2
    assert out["risk"] == pytest.approx(np.log1p(4.0))
    assert out["risk_source"].startswith("fallback log(1 + GTV ml): the survival model did not finish")

    def oom(*_args):
        raise MemoryError

    pipeline.survival.predict_risk = oom  # type: ignore[union-attr]
    out = pipeline._risk(case, seg, time.perf_counter() + 60, 0.0, 0.0)
    assert out["risk"] == 0.0 and "out of memory" in out["risk_source"]


def _box(origin_z, size_z):
    image = sitk.Image([50, 50, size_z], sitk.sitkFloat32)
    image.SetSpacing((4.0, 4.0, 4.0))
    image.SetOrigin((-100.0, -100.0, origin_z))
    return image


def test_overlap_warning_when_pet_misses_the_crop():
    ct = _box(0.0, 100)  # 400 mm along z
    assert guards.overlap_warning(ct, _box(0.0, 100), (200.0, 200.0, 310.0)) is None
    warning = guards.overlap_warning(ct, _box(388.0, 100), (200.0, 200.0, 310.0))
    assert warning is not None and "z 12 mm of 310 mm" in warning
