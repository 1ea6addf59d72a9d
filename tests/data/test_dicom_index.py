"""DICOM tree discovery (one case per study, reasons for the rest) and the series reader's ordering and checks."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from hmvnet.data.cases import discover_cases, read_case
from hmvnet.data.dicom_index import index_tree
from hmvnet.data.dicom_series import read_series
from hmvnet.errors import InputError


def test_one_case_per_study_with_reasons(dicom_tree):
    root, truth = dicom_tree
    studies = index_tree(root / "export")
    assert sorted(s.name for s in studies) == sorted(truth)
    for s in studies:
        assert re.fullmatch(r"SYN\d+_\d{8}_[0-9a-f]{6}", s.name)
        kind = truth[s.name]["kind"]
        assert s.usable == (kind != "no-pet"), (s.name, s.reason)
        if kind == "no-pet":
            assert "no usable PET" in s.reason
        else:  # the localiser (a CT of one slice, also in this study and frame of reference) is never chosen
            assert s.ct is not None and len(s.ct.files) == 40 and "LOCALIZER" not in s.ct.image_type
            assert s.ct.frame_of_reference == s.pet.frame_of_reference == truth[s.name]["frame_of_reference"]
    assert [s.name for s in index_tree(root / "export")] == [s.name for s in studies]  # stable ids


def test_series_sorted_along_the_normal_with_per_slice_slopes(dicom_tree):
    root, truth = dicom_tree
    study = next(s for s in discover_cases(root / "export") if truth[s.name]["kind"] == "normal")
    case = read_case(study)
    label = sitk.ReadImage(str(root / truth[study.name]["label"]))
    assert case.ct.GetSize() == label.GetSize()
    assert np.allclose(case.ct.GetOrigin(), label.GetOrigin()) and np.allclose(
        case.ct.GetSpacing(), (3, 3, 3)
    )
    z = [float(h.ImagePositionPatient[2]) for h in case.dicom_ct]
    assert z == sorted(z)  # InstanceNumber runs the other way in the generator
    ct = sitk.GetArrayViewFromImage(case.ct)
    lab = sitk.GetArrayViewFromImage(label)
    assert abs(np.median(ct[lab == 1]) - 65) < 5 and abs(np.median(ct[:, 0, 0]) + 1000) < 30
    suv = sitk.GetArrayViewFromImage(case.pet) * case.suv_factor
    assert 0.95 < np.median(suv[suv > 0.5]) < 1.1  # body uptake 1 SUV in the phantom


def _copy_ct(dicom_tree, tmp_path):
    root, truth = dicom_tree
    study = next(s for s in index_tree(root / "export") if truth[s.name]["kind"] == "normal")
    folder = tmp_path / "ct"
    shutil.copytree(study.ct.files[0].parent, folder)
    return sorted(folder.iterdir())


def test_missing_slice_is_an_error(dicom_tree, tmp_path):
    files = _copy_ct(dicom_tree, tmp_path)
    by_z = sorted(
        files, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
    )
    by_z[20].unlink()
    with pytest.raises(InputError, match="uneven slice spacing"):
        read_series([f for f in files if f.exists()], "CT")


def test_gantry_tilt_is_an_error(dicom_tree, tmp_path):
    files = _copy_ct(dicom_tree, tmp_path)
    for f in files:
        ds = pydicom.dcmread(f)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.2 * z, z]  # sheared stack: about 11 degrees
        ds.save_as(f)
    with pytest.raises(InputError, match="gantry tilt"):
        read_series(files, "CT")
