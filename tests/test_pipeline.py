"""The per-case pipeline with tiny trained weights: outputs on the CT grid, profiles, checksum refusal, and the
command-line contract of process.py (clear errors, exit codes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import write_tiny_cohort
from test_training import TINY, TRAIN

from hmvnet.errors import WeightsError
from hmvnet.pipeline import SEG_2025, SEG_2026, Pipeline
from hmvnet.training import train_fold

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("weights")
    write_tiny_cohort(tmp / "data", n_cases=4)
    train_fold(tmp / "data", tmp / "w" / "segmentation", TINY, TRAIN, 0, tmp / "cache", max_epochs=1)
    return tmp / "w"


@pytest.fixture
def gc_input(tmp_path):
    write_tiny_cohort(tmp_path / "data", n_cases=1, seed=5)
    case = next((tmp_path / "data" / "Task 1").iterdir())
    root = tmp_path / "input"
    for sub, name in (("ct", "__CT"), ("pet", "__PT")):
        (root / "images" / sub).mkdir(parents=True)
        image = sitk.ReadImage(str(case / f"{case.name}{name}.nii.gz"))
        sitk.WriteImage(image, str(root / "images" / sub / f"{sub}-uuid.mha"), useCompression=True)
    (root / "ehr.json").write_text(json.dumps({"Age": 60, "Gender": 1}))
    return root


def test_segmentation_profile_writes_a_mask_on_the_ct_grid(tiny_weights, gc_input, tmp_path):
    pipeline = Pipeline.load(tiny_weights, "cpu", survival=False)
    result = pipeline.process_case(gc_input, tmp_path / "out", outputs="segmentation")
    mask = sitk.ReadImage(str(tmp_path / "out" / SEG_2025))
    ct = sitk.ReadImage(str(next((gc_input / "images" / "ct").iterdir())))
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert mask.GetSize() == ct.GetSize() and mask.GetSpacing() == ct.GetSpacing()
    assert mask.GetOrigin() == ct.GetOrigin() and mask.GetDirection() == ct.GetDirection()
    assert set(np.unique(sitk.GetArrayFromImage(mask)).tolist()) <= {0, 1, 2}
    assert not (tmp_path / "out" / "rfs.json").exists()
    assert result["inference_s"] > 0
    # the 2026 profile needs the survival model, which this pipeline did not load: a clear refusal
    with pytest.raises(WeightsError, match="survival"):
        pipeline.process_case(gc_input, tmp_path / "out26", outputs="hecktor2026")
    assert not (tmp_path / "out26" / SEG_2026).exists()


def test_checksum_mismatch_is_refused(tiny_weights, tmp_path):
    broken = tmp_path / "w"
    shutil.copytree(tiny_weights, broken)
    path = broken / "segmentation" / "fold0.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        Pipeline.load(broken, "cpu", survival=False)


def _process(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "process.py"), *args], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def test_process_py_reports_missing_pet_folder_without_traceback(tiny_weights, gc_input, tmp_path):
    shutil.rmtree(gc_input / "images" / "pet")
    run = _process("--input", str(gc_input), "--output", str(tmp_path / "out"), "--weights", str(tiny_weights),
                   "--outputs", "segmentation")  # fmt: skip
    assert run.returncode == 2
    assert "images/pet does not exist" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out" / SEG_2025).exists()


def test_process_py_reports_missing_weights(gc_input, tmp_path):
    run = _process(
        "--input", str(gc_input), "--output", str(tmp_path / "out"), "--weights", str(tmp_path / "none")
    )
    assert run.returncode == 2 and "segmentation weights missing" in run.stderr
    assert "Traceback" not in run.stderr
