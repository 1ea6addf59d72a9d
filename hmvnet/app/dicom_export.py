"""DICOM outputs of ``hmvnet predict --dicom-out seg,rtstruct``: a DICOM Segmentation and an RT Structure Set
on the source CT, for treatment-planning systems and viewers (3D Slicer, OHIF).

- ``<case>_seg.dcm``: a BINARY Segmentation written by highdicom with two segments, 1 = GTVp (SCT 86049000
  "Malignant neoplasm, primary") and 2 = GTVn (SCT 14799000 "Neoplasm, metastatic"), category SCT 49755003
  "Morphologically abnormal structure", algorithm type AUTOMATIC with the algorithm identification (HM-VNet, the
  package version, and the weights' provenance note). One frame per CT slice (empty frames kept), so it
  references every CT instance, the CT's StudyInstanceUID and FrameOfReferenceUID. An empty label still gets its
  segment description with all-zero frames (highdicom accepts that; viewers show an empty segment).
- ``<case>_rtstruct.dcm``: an RT Structure Set by rt-utils (contours from OpenCV, one closed planar contour per
  connected region and slice, holes joined by rt-utils' "pin hole") with ROIs GTVp and GTVn on the CT's frame of
  reference. An empty label has no ROI (an RTSTRUCT cannot hold an ROI without contours in rt-utils); the file is
  still written and valid. rt-utils was chosen because highdicom has no RT Structure Set writer; the round trip
  (contours rasterised back) is measured by the tests (Dice >= 0.95 per label on the synthetic cases).

The label must be on the CT grid in the reader's slice order (:func:`hmvnet.data.dicom_series.read_series`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from hmvnet import Label, __version__
from hmvnet.data.writers import write_with
from hmvnet.errors import InputError

log = logging.getLogger(__name__)

DICOM_OUTPUTS = ("seg", "rtstruct")
CATEGORY = Code("49755003", "SCT", "Morphologically abnormal structure")
SEGMENTS: tuple[tuple[Label, str, Code, tuple[int, int, int]], ...] = (
    (Label.GTVP, "GTVp", Code("86049000", "SCT", "Malignant neoplasm, primary"), (255, 64, 64)),
    (Label.GTVN, "GTVn", Code("14799000", "SCT", "Neoplasm, metastatic"), (64, 160, 255)),
)
MANUFACTURER = "hmvnet"


def parse_dicom_outputs(text: str | None) -> tuple[str, ...]:
    """``"seg,rtstruct"`` -> ``("seg", "rtstruct")``; an unknown name is an InputError."""
    names = tuple(t.strip().lower() for t in (text or "").split(",") if t.strip())
    bad = [n for n in names if n not in DICOM_OUTPUTS]
    if bad:
        raise InputError(
            f"--dicom-out {text!r}: unknown {bad}; expected a comma list of {list(DICOM_OUTPUTS)}"
        )
    return names


def _label_array(label: sitk.Image, ct_headers: Sequence[pydicom.Dataset]) -> np.ndarray:
    array = sitk.GetArrayFromImage(label).astype(np.uint8)
    first = ct_headers[0]
    if array.shape != (len(ct_headers), int(first.Rows), int(first.Columns)):
        raise InputError(
            f"label shape {array.shape} does not match the CT series ({len(ct_headers)} slices of "
            f"{first.Rows}x{first.Columns})"
        )
    return array


def write_seg(
    label: sitk.Image, ct_headers: Sequence[pydicom.Dataset], path: Path, model_note: str = ""
) -> Path:
    """Write the DICOM Segmentation of ``label`` (on the CT grid, slice order of ``ct_headers``) to ``path``."""
    array = _label_array(label, ct_headers)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="HM-VNet", family=codes.cid7162.ArtificialIntelligence, version=__version__,
        source=model_note[:64] or None,
    )  # fmt: skip
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=int(value),
            segment_label=name,
            segmented_property_category=CATEGORY,
            segmented_property_type=code,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*rgb),
        )
        for value, name, code, rgb in SEGMENTS
    ]
    seg = hd.seg.Segmentation(
        source_images=list(ct_headers), pixel_array=array, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=901,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="HM-VNet", software_versions=__version__, device_serial_number="0",
        series_description="HM-VNet GTVp GTVn", omit_empty_frames=False,
        content_description=(model_note or "HM-VNet automatic segmentation")[:64],
    )  # fmt: skip
    return write_with(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))


def write_rtstruct(
    label: sitk.Image, ct_headers: Sequence[pydicom.Dataset], path: Path, model_note: str = ""
) -> Path:
    """Write the RT Structure Set of ``label`` (ROIs GTVp, GTVn; absent when empty) to ``path``."""
    from rt_utils import RTStruct, ds_helper

    array = _label_array(label, ct_headers)
    series = list(ct_headers)
    pydicom_log = logging.getLogger("pydicom")
    level = pydicom_log.level
    pydicom_log.setLevel(
        logging.ERROR
    )  # rt-utils sets FileDataset.is_little_endian (deprecated in pydicom 3)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            rt = RTStruct(series, ds_helper.create_rtstruct_dataset(series))
    finally:
        pydicom_log.setLevel(level)
    rt.ds.SeriesDescription = "HM-VNet GTVp GTVn"
    rt.ds.StructureSetLabel = "HM-VNet"
    rt.ds.Manufacturer, rt.ds.SoftwareVersions = MANUFACTURER, __version__
    if model_note:
        rt.ds.StructureSetDescription = model_note[:1024]
    for value, name, _code, rgb in SEGMENTS:
        mask = np.transpose(array == value, (1, 2, 0))  # rt-utils: (rows, columns, slices)
        if not mask.any():
            log.info("%s: %s is empty: no ROI written", path.name, name)
            continue
        rt.add_roi(
            mask=mask, color=list(rgb), name=name, description=f"HM-VNet {name}", approximate_contours=False
        )
    return write_with(path, lambda tmp: rt.ds.save_as(tmp, enforce_file_format=True))


def write_dicom_outputs(
    label: sitk.Image, ct_headers: Sequence[pydicom.Dataset] | None, case_dir: Path, case_id: str,
    which: Sequence[str], model_note: str = "",
) -> dict[str, str]:  # fmt: skip
    """Write the requested DICOM objects into ``case_dir``; returns ``{"dicom_seg": path, ...}`` (relative names)."""
    if not which:
        return {}
    if not ct_headers:
        raise InputError(f"{case_id}: --dicom-out needs a DICOM CT input (this case was not read from DICOM)")
    out: dict[str, str] = {}
    if "seg" in which:
        out["dicom_seg"] = write_seg(
            label, ct_headers, Path(case_dir) / f"{case_id}_seg.dcm", model_note
        ).name
    if "rtstruct" in which:
        path = Path(case_dir) / f"{case_id}_rtstruct.dcm"
        out["dicom_rtstruct"] = write_rtstruct(label, ct_headers, path, model_note).name
    return out


def model_note(weights_dir: Path | None) -> str:
    """The weights' provenance for the DICOM objects, e.g. "demo weights trained on synthetic data"."""
    import json

    try:
        notes = json.loads((Path(weights_dir or "") / "segmentation" / "config.json").read_text()).get(
            "notes", ""
        )
    except (OSError, ValueError):
        return ""
    return "demo weights trained on synthetic data" if "synthetic" in str(notes).lower() else ""


def read_seg_labels(path: Path, ct_headers: Sequence[pydicom.Dataset]) -> np.ndarray:
    """A SEG read back with highdicom as a label array ``(z, y, x)`` in the slice order of ``ct_headers``."""
    seg = hd.seg.segread(path)
    uids = [str(h.SOPInstanceUID) for h in ct_headers]
    return seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[int(v) for v, *_ in SEGMENTS], combine_segments=True
    ).astype(np.uint8)


def read_rtstruct_labels(path: Path, ct_headers: Sequence[pydicom.Dataset]) -> np.ndarray:
    """An RTSTRUCT's contours rasterised back by rt-utils on the CT grid: label array ``(z, y, x)``."""
    from rt_utils import RTStruct

    rt = RTStruct(list(ct_headers), pydicom.dcmread(path))
    out = np.zeros((len(ct_headers), int(ct_headers[0].Rows), int(ct_headers[0].Columns)), np.uint8)
    names = set(rt.get_roi_names())
    for value, name, *_ in SEGMENTS:
        if name in names:
            out[np.transpose(rt.get_roi_mask_by_name(name), (2, 0, 1))] = value
    return out
