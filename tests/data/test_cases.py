"""Case I/O: layouts, ehr.json parsing, atomic writers, and a clear error for every kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from hmvnet.data.cases import discover_cases, read_case, read_gc_case, read_image
from hmvnet.data.clinical_record import ClinicalRecord, parse_ehr_text, read_ehr
from hmvnet.data.writers import write_json, write_label
from hmvnet.errors import InputError


def _volume(value=1.0, size=(8, 9, 10), spacing=(2.0, 2.0, 3.0)):
    """A non-constant image (value plus a small ramp along x) with flipped x/y directions."""
    ramp = np.broadcast_to(np.arange(size[0], dtype=np.float32) / size[0], tuple(reversed(size)))
    image = sitk.GetImageFromArray(np.ascontiguousarray(value + ramp))
    image.SetSpacing(spacing)
    image.SetOrigin((-5.0, 3.0, 7.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return image


@pytest.fixture
def gc_case(tmp_path):
    root = tmp_path / "input"
    (root / "images" / "ct").mkdir(parents=True)
    (root / "images" / "pet").mkdir(parents=True)
    (root / "images" / "rt-dose").mkdir(parents=True)  # extra folders are ignored
    sitk.WriteImage(_volume(40.0), str(root / "images" / "ct" / "1b4e28ba-2fa1-11d2-883f-0016d3cca427.mha"))
    sitk.WriteImage(_volume(2.0, (5, 5, 6), (4.0, 4.0, 4.0)), str(root / "images" / "pet" / "a.mha"))
    (root / "ehr.json").write_text(json.dumps({"Age": 71, "Gender": 1, "M-stage": "M0", "Unknown key": 3}))
    return root


def test_read_gc_case_keeps_geometry_and_ignores_extras(gc_case):
    case = read_gc_case(gc_case)
    assert case.ct.GetSpacing() == (2.0, 2.0, 3.0)
    assert case.ct.GetDirection() == (-1, 0, 0, 0, -1, 0, 0, 0, 1)
    assert case.pet.GetSize() == (5, 5, 6)
    assert case.clinical == ClinicalRecord(age=71.0, gender=1, m_stage="M0")
    assert read_case(gc_case).ct.GetSize() == (8, 9, 10)


def test_training_layout_and_discovery(tmp_path):
    task = tmp_path / "Task 1"
    for pid in ("CHUM-001", "MDA-002"):
        d = task / pid
        d.mkdir(parents=True)
        sitk.WriteImage(_volume(), str(d / f"{pid}__CT.nii.gz"))
        sitk.WriteImage(_volume(), str(d / f"{pid}__PT.nii.gz"))
        sitk.WriteImage(sitk.Cast(_volume(2.0), sitk.sitkUInt8), str(d / f"{pid}.nii.gz"))
    (task / "notes").mkdir()
    cases = discover_cases(tmp_path)
    assert [c.name for c in cases] == ["CHUM-001", "MDA-002"]
    case = read_case(cases[0])
    assert case.case_id == "CHUM-001" and case.label is not None


def test_missing_pet_folder(gc_case):
    for f in (gc_case / "images" / "pet").iterdir():
        f.unlink()
    (gc_case / "images" / "pet").rmdir()
    with pytest.raises(InputError, match=r"PET: folder .*images/pet does not exist"):
        read_gc_case(gc_case)


def test_empty_ct_folder_names_what_was_found(gc_case):
    ct_dir = gc_case / "images" / "ct"
    for f in ct_dir.iterdir():
        f.unlink()
    (ct_dir / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"no \.mha.*found: notes\.txt"):
        read_gc_case(gc_case)


def test_two_files_in_one_folder(gc_case):
    sitk.WriteImage(_volume(), str(gc_case / "images" / "ct" / "second.mha"))
    with pytest.raises(InputError, match="2 image files"):
        read_gc_case(gc_case)


def test_truncated_mha(gc_case, tmp_path):
    path = next((gc_case / "images" / "ct").iterdir())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read"):
        read_gc_case(gc_case)


def test_garbage_file(tmp_path):
    path = tmp_path / "x.mha"
    path.write_text("this is not an image")
    with pytest.raises(InputError, match=r"CT: cannot read .*x\.mha"):
        read_image(path, "CT")


def test_2d_and_4d_images_rejected(tmp_path):
    two_d = sitk.Image((8, 8), sitk.sitkFloat32)
    sitk.WriteImage(two_d, str(tmp_path / "a.mha"))
    with pytest.raises(InputError, match="2-D"):
        read_image(tmp_path / "a.mha", "CT")
    four_d = sitk.Image((4, 4, 4, 3), sitk.sitkFloat32)
    sitk.WriteImage(four_d, str(tmp_path / "b.mha"))
    with pytest.raises(InputError, match="4-D"):
        read_image(tmp_path / "b.mha", "PET")


def test_degenerate_image_rejected(tmp_path):
    sitk.WriteImage(sitk.Image((8, 8, 1), sitk.sitkFloat32), str(tmp_path / "flat.mha"))
    with pytest.raises(InputError, match=">= 2 voxels"):
        read_image(tmp_path / "flat.mha", "CT")


def test_nonfinite_voxels_cleaned_or_rejected(tmp_path):
    arr = np.full((10, 10, 10), 5.0, dtype=np.float32)
    arr[0, 0, :3] = np.nan
    img = sitk.GetImageFromArray(arr)
    sitk.WriteImage(img, str(tmp_path / "few.mha"))
    cleaned = sitk.GetArrayFromImage(read_image(tmp_path / "few.mha", "PET"))
    assert np.isfinite(cleaned).all() and cleaned[0, 0, 0] == 0.0
    ct = sitk.GetArrayFromImage(read_image(tmp_path / "few.mha", "CT"))
    assert ct[0, 0, 0] == -1024.0
    arr[:2] = np.inf
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "many.mha"))
    with pytest.raises(InputError, match="non-finite"):
        read_image(tmp_path / "many.mha", "PET")


@pytest.mark.parametrize("missing", [None, "null", "NaN", '""', '"NaN"', '"nan"', '"NA"', '"N/A"'])
def test_ehr_missing_value_variants(missing):
    text = '{"Age": 60}' if missing is None else f'{{"Age": 60, "Performance Status": {missing}}}'
    record = parse_ehr_text(text)
    assert record.age == 60.0 and record.performance_status is None


def test_ehr_broken_absent_and_trailing_comma(tmp_path):
    assert read_ehr(tmp_path / "absent.json") == ClinicalRecord()
    (tmp_path / "broken.json").write_text("{not json")
    assert read_ehr(tmp_path / "broken.json") == ClinicalRecord()
    (tmp_path / "list.json").write_text("[1, 2]")
    assert read_ehr(tmp_path / "list.json") == ClinicalRecord()
    record = parse_ehr_text(
        '{"Gender": "F", "Treatment": 1, "M-stage": "Mx", "HPV Status": 1, "CenterID": 5,}'
    )
    assert record == ClinicalRecord(gender=0, treatment=1, m_stage="Mx", hpv_status=1, center_id=5)
    assert parse_ehr_text('{"Age": -3, "Performance Status": 7}') == ClinicalRecord()


def test_atomic_writers(tmp_path):
    label = sitk.Cast(_volume(1.0), sitk.sitkUInt8)
    out = write_label(label, tmp_path / "out" / "images" / "seg" / "output.mha", reference=_volume())
    back = sitk.ReadImage(str(out))
    assert back.GetPixelID() == sitk.sitkUInt8 and back.GetDirection() == label.GetDirection()
    assert sorted(p.name for p in out.parent.iterdir()) == ["output.mha"]
    write_json(-0.25, tmp_path / "rfs.json")
    assert json.loads((tmp_path / "rfs.json").read_text()) == -0.25
    with pytest.raises(ValueError):
        write_json(float("nan"), tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_write_label_refuses_another_grid(tmp_path):
    label = sitk.Cast(_volume(1.0, size=(8, 9, 11)), sitk.sitkUInt8)
    with pytest.raises(ValueError, match="same grid"):
        write_label(label, tmp_path / "o.mha", reference=_volume())


def test_truncated_nii_gz_is_rejected_not_zero_filled(tmp_path):
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((20, 30, 40)).astype(np.float32))
    sitk.WriteImage(image, str(tmp_path / "ok.nii.gz"))
    data = (tmp_path / "ok.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    assert read_image(tmp_path / "ok.nii.gz", "PET").GetSize() == (40, 30, 20)
    with pytest.raises(InputError, match="truncated or corrupt gzip"):
        read_image(tmp_path / "cut.nii.gz", "PET")


def test_constant_image_is_rejected(tmp_path):
    sitk.WriteImage(sitk.Image((8, 9, 10), sitk.sitkFloat32), str(tmp_path / "zeros.mha"))
    with pytest.raises(InputError, match="empty: every voxel equals 0"):
        read_image(tmp_path / "zeros.mha", "PET")


def test_dicom_series_folder(tmp_path):
    """A CT written as a DICOM series (one file per slice) is read by the series reader with its geometry."""
    volume = _volume(40.0, size=(6, 7, 5), spacing=(1.5, 1.5, 2.5))
    volume = sitk.Cast(volume * 10, sitk.sitkInt16)
    folder = tmp_path / "case" / "CT"
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1"
    for k in range(volume.GetSize()[2]):
        slice_ = volume[:, :, k]
        origin = volume.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in (
            ("0020|000e", series_uid),
            ("0008|0060", "CT"),
            ("0020|0032", "\\".join(f"{v:.6f}" for v in origin)),
            ("0020|0013", str(k + 1)),
            ("0020|0037", "\\".join(f"{v:.1f}" for v in (-1, 0, 0, 0, -1, 0))),
            ("0028|0030", "1.5\\1.5"),
            ("0018|0050", "2.5"),
        ):
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_)
    image = read_image(folder, "CT")
    assert image.GetSize() == (6, 7, 5)
    np.testing.assert_allclose(image.GetSpacing(), (1.5, 1.5, 2.5), atol=1e-4)
    np.testing.assert_allclose(image.GetOrigin(), volume.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(image.GetDirection(), volume.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(volume), atol=1e-3)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_ehr_json_decoded_by_bom_or_encoding(tmp_path, encoding):
    path = tmp_path / "ehr.json"
    path.write_bytes(json.dumps({"Age": 64, "Gender": "Male"}).encode(encoding))
    record = read_ehr(path)
    assert record.age == 64 and record.gender == 1


def test_ehr_json_deep_nesting_and_huge_numbers_are_ignored_with_a_warning(tmp_path, caplog):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert read_ehr(deep) == ClinicalRecord()
    assert "nested too deeply" in caplog.text
    huge = tmp_path / "huge.json"
    huge.write_text('{"Age": ' + "9" * 5001 + ', "Gender": 1}')
    assert read_ehr(huge) == ClinicalRecord()
    huge_str = tmp_path / "huge_str.json"
    huge_str.write_text(json.dumps({"Age": "9" * 5001, "Gender": 1}))
    assert read_ehr(huge_str) == ClinicalRecord(gender=1)
