"""DICOM SEG and RTSTRUCT: written from a label on the CT grid, read back and compared (known answers)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from hmvnet import Label
from hmvnet.app.dicom_export import (
    parse_dicom_outputs,
    read_rtstruct_labels,
    read_seg_labels,
    write_dicom_outputs,
)
from hmvnet.data.cases import discover_cases, read_case
from hmvnet.errors import InputError


@pytest.fixture(scope="module")
def ct_case(dicom_tree):
    root, truth = dicom_tree
    study = next(s for s in discover_cases(root / "export") if truth[s.name]["kind"] == "normal")
    case = read_case(study)
    label = sitk.ReadImage(str(root / truth[study.name]["label"]))
    label.CopyInformation(case.ct)
    return case, label


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_seg_and_rtstruct_round_trip(ct_case, tmp_path, caplog):
    case, label = ct_case
    with caplog.at_level(logging.WARNING):
        paths = write_dicom_outputs(label, case.dicom_ct, tmp_path, "c1", ("seg", "rtstruct"), "demo")
    assert paths == {"dicom_seg": "c1_seg.dcm", "dicom_rtstruct": "c1_rtstruct.dcm"}
    truth = sitk.GetArrayFromImage(label)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seg_ds = pydicom.dcmread(tmp_path / "c1_seg.dcm")
        rt_ds = pydicom.dcmread(tmp_path / "c1_rtstruct.dcm")
        seg_back = read_seg_labels(tmp_path / "c1_seg.dcm", case.dicom_ct)
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]
    assert np.array_equal(seg_back, truth)  # exact
    rt_back = read_rtstruct_labels(tmp_path / "c1_rtstruct.dcm", case.dicom_ct)
    for value in (Label.GTVP, Label.GTVN):
        assert dice(rt_back == value, truth == value) >= 0.95
    ct0 = case.dicom_ct[0]
    assert [s.SegmentLabel for s in seg_ds.SegmentSequence] == ["GTVp", "GTVn"]
    assert seg_ds.StudyInstanceUID == rt_ds.StudyInstanceUID == ct0.StudyInstanceUID
    assert seg_ds.FrameOfReferenceUID == ct0.FrameOfReferenceUID
    assert seg_ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ct0.SeriesInstanceUID
    refs = {r.ReferencedSOPInstanceUID for r in seg_ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert refs == {h.SOPInstanceUID for h in case.dicom_ct}
    frame = rt_ds.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == ct0.FrameOfReferenceUID
    assert (
        frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0].SeriesInstanceUID
        == ct0.SeriesInstanceUID
    )
    assert [r.ROIName for r in rt_ds.StructureSetROISequence] == ["GTVp", "GTVn"]
    assert {r.ReferencedFrameOfReferenceUID for r in rt_ds.StructureSetROISequence} == {
        ct0.FrameOfReferenceUID
    }


def test_empty_label_still_writes_valid_objects(ct_case, tmp_path):
    case, label = ct_case
    only_gtvp = sitk.Cast(label == Label.GTVP, sitk.sitkUInt8)
    write_dicom_outputs(only_gtvp, case.dicom_ct, tmp_path, "c2", ("seg", "rtstruct"))
    seg_ds = pydicom.dcmread(tmp_path / "c2_seg.dcm")
    assert [s.SegmentLabel for s in seg_ds.SegmentSequence] == ["GTVp", "GTVn"]  # GTVn: an empty segment
    back = read_seg_labels(tmp_path / "c2_seg.dcm", case.dicom_ct)
    assert np.array_equal(back, sitk.GetArrayFromImage(only_gtvp))
    rt_ds = pydicom.dcmread(tmp_path / "c2_rtstruct.dcm")
    assert [r.ROIName for r in rt_ds.StructureSetROISequence] == ["GTVp"]  # no ROI for the empty GTVn


def test_bad_option_and_non_dicom_case(ct_case, tmp_path):
    with pytest.raises(InputError, match="--dicom-out"):
        parse_dicom_outputs("seg,nifti")
    assert parse_dicom_outputs("seg, rtstruct") == ("seg", "rtstruct")
    with pytest.raises(InputError, match="DICOM CT input"):
        write_dicom_outputs(ct_case[1], None, tmp_path, "c3", ("seg",))
