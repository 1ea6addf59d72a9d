"""The per-case pipeline with tiny trained weights: outputs on the CT grid, profiles, checksum refusal, and the
command-line contract of process.py (clear errors, exit codes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from hmvnet.app.pipeline import SEG_2025, SEG_2026, Pipeline
from hmvnet.errors import WeightsError
from tests.helpers import REPO

ROOT = REPO


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


def _weights_with_postprocess(tiny_weights, folder, **changes):
    """A copy of ``tiny_weights`` in ``folder`` whose segmentation config.json has ``changes`` in "postprocess"."""
    shutil.copytree(tiny_weights, folder)
    config_path = folder / "segmentation" / "config.json"
    config = json.loads(config_path.read_text())
    config["postprocess"].update(changes)
    config_path.write_text(json.dumps(config))
    return folder


def test_unknown_output_interpolation_is_refused(tiny_weights, tmp_path):
    broken = _weights_with_postprocess(tiny_weights, tmp_path / "w", output_interpolation="cubic")
    with pytest.raises(WeightsError, match="output_interpolation"):
        Pipeline.load(broken, "cpu", survival=False)


def test_linear_output_mapping_gives_a_mask_on_the_ct_grid(tiny_weights, gc_input, tmp_path):
    weights = _weights_with_postprocess(tiny_weights, tmp_path / "w", output_interpolation="linear")
    Pipeline.load(weights, "cpu", survival=False).process_case(
        gc_input, tmp_path / "out", outputs="segmentation"
    )
    mask = sitk.ReadImage(str(tmp_path / "out" / SEG_2025))
    ct = sitk.ReadImage(str(next((gc_input / "images" / "ct").iterdir())))
    assert mask.GetSize() == ct.GetSize() and mask.GetDirection() == ct.GetDirection()
    assert set(np.unique(sitk.GetArrayFromImage(mask)).tolist()) <= {0, 1, 2}


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


def test_both_profile_writes_mask_and_finite_deterministic_risk(full_weights, gc_input, tmp_path):
    pipeline = Pipeline.load(full_weights, "cpu")
    first = pipeline.process_case(gc_input, tmp_path / "a", outputs="both")
    second = pipeline.process_case(gc_input, tmp_path / "b", outputs="both")
    risk_a = json.loads((tmp_path / "a" / "rfs.json").read_text())
    risk_b = json.loads((tmp_path / "b" / "rfs.json").read_text())
    assert isinstance(risk_a, float) and np.isfinite(risk_a)
    assert risk_a == risk_b == first["risk"] == second["risk"]
    assert (tmp_path / "a" / SEG_2025).is_file()
    # the 2026 profile writes its own segmentation path, -risk (higher = longer RFS) and T / N stages as strings
    result = pipeline.process_case(gc_input, tmp_path / "c", outputs="hecktor2026")
    assert (tmp_path / "c" / SEG_2026).is_file()
    rfs = json.loads((tmp_path / "c" / "rfs.json").read_text())
    assert isinstance(rfs, float) and rfs == -risk_a == result["rfs_value"] and result["risk"] == risk_a
    t_stage = json.loads((tmp_path / "c" / "t-stage.json").read_text())
    n_stage = json.loads((tmp_path / "c" / "n-stage.json").read_text())
    assert t_stage in {"T1", "T2", "T3", "T4"} and n_stage in {"N0", "N1", "N2", "N3"}
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "images",
        "n-stage.json",
        "rfs.json",
        "t-stage.json",
    ]
    # survival only: no mask written
    pipeline.process_case(gc_input, tmp_path / "d", outputs="survival")
    assert not (tmp_path / "d" / "images").exists() and (tmp_path / "d" / "rfs.json").is_file()


def test_risk_without_ehr_with_bq_per_ml_pet_and_empty_segmentation(full_weights, gc_input, tmp_path):
    from hmvnet.data.cases import read_gc_case

    pipeline = Pipeline.load(full_weights, "cpu")
    (gc_input / "ehr.json").unlink()
    pet_path = next((gc_input / "images" / "pet").iterdir())
    pet = sitk.ReadImage(str(pet_path))
    sitk.WriteImage(sitk.Cast(pet * 5000.0, sitk.sitkFloat32), str(pet_path))
    pipeline.process_case(gc_input, tmp_path / "o", outputs="both")
    assert np.isfinite(json.loads((tmp_path / "o" / "rfs.json").read_text()))
    # an empty segmentation still gives a finite risk
    case = read_gc_case(gc_input)
    seg = pipeline.segmenter(case)
    seg.crop_label = seg.crop_label * 0
    assert np.isfinite(pipeline.survival.predict_risk(case, seg))


def test_survival_checksum_mismatch_is_refused(full_weights, tmp_path):
    broken = tmp_path / "w"
    shutil.copytree(full_weights, broken)
    state = broken / "survival" / "fold0_state.json"
    state.write_text(state.read_text().replace("0", "1", 1))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        Pipeline.load(broken, "cpu")


def test_process_py_writes_nothing_in_the_working_directory(tiny_weights, gc_input, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    run = subprocess.run([sys.executable, str(ROOT / "process.py"), "--input", str(gc_input), "--output",
                          str(tmp_path / "out"), "--weights", str(tiny_weights), "--outputs", "segmentation"],
                         cwd=cwd, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == sorted(
        ["images", "tumor-lymph-node-segmentation", "output.mha"]
    )


@pytest.mark.slow
def test_whole_body_sized_ct(tiny_weights, gc_input, tmp_path):
    """A 512 x 512 x 800 CT (the phantom inside a whole-body-sized field of view) is processed."""
    ct_path = next((gc_input / "images" / "ct").iterdir())
    ct = sitk.ReadImage(str(ct_path))
    ref = sitk.Image((512, 512, 800), sitk.sitkInt16)
    ref.SetSpacing((0.98, 0.98, 2.0))
    centre = ct.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in ct.GetSize()])
    ref.SetOrigin((centre[0] - 250, centre[1] - 250, centre[2] - 1500))
    sitk.WriteImage(sitk.Resample(ct, ref, sitk.Transform(), sitk.sitkLinear, -1000, sitk.sitkInt16), str(ct_path),
                    useCompression=True)  # fmt: skip
    pipeline = Pipeline.load(tiny_weights, "cpu", survival=False)
    pipeline.process_case(gc_input, tmp_path / "out", outputs="segmentation")
    mask = sitk.ReadImage(str(tmp_path / "out" / SEG_2025))
    assert mask.GetSize() == (512, 512, 800)


def test_pipeline_makes_no_network_connection(full_weights, gc_input, tmp_path, monkeypatch):
    """Loading and processing a case never opens a network connection (the platform disqualifies any)."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network connection attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    pipeline = Pipeline.load(full_weights, "cpu")
    pipeline.process_case(gc_input, tmp_path / "out", outputs="both")
    assert np.isfinite(json.loads((tmp_path / "out" / "rfs.json").read_text()))


def test_hecktor2026_ehr_keys_give_a_valid_risk_and_stages(full_weights, gc_input, tmp_path):
    from hmvnet.data.clinical_record import read_ehr

    ehr = '{"CenterID": 5, "Age": 64, "Gender": 1, "Tobacco Consumption": 0, "Alcohol Consumption": 1, ' \
          '"Performance Status": 0, "Treatment": 1, "HPV Status": 1,}'  # fmt: skip  # the sample's trailing comma
    (gc_input / "ehr.json").write_text(ehr)
    record = read_ehr(gc_input / "ehr.json")
    assert (record.center_id, record.hpv_status, record.treatment, record.m_stage) == (5, 1, 1, None)
    result = Pipeline.load(full_weights, "cpu").process_case(gc_input, tmp_path / "o", outputs="hecktor2026")
    assert np.isfinite(result["risk"]) and result["rfs_value"] == -result["risk"]
    assert result["t_stage"] in {"T1", "T2", "T3", "T4"} and result["n_stage"] in {"N0", "N1", "N2", "N3"}
