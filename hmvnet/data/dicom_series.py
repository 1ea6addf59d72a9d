"""Reading one DICOM image series into a SimpleITK volume, slices ordered along the slice normal.

Slices are sorted by ``dot(ImagePositionPatient, normal)`` with ``normal = row x column`` of
ImageOrientationPatient (never by file name or InstanceNumber). Each slice's RescaleSlope/RescaleIntercept is
applied (PET series carry one slope per slice). Checks, each an :class:`hmvnet.errors.InputError` naming the series:

- two slices at the same position (duplicates or a 4-D series);
- gantry tilt: the line through the slice positions deviates from the normal by more than
  :data:`MAX_TILT_DEG` (resample the series in the scanner software or with a tilt-correcting reader first);
- uneven spacing: a gap differs from the median gap by more than :data:`SPACING_TOLERANCE` (relative), e.g. a
  missing slice; the error names the positions. Gaps within the tolerance are accepted and the median is used.

The image geometry is ITK's: origin = position of the first slice, direction columns = (row, column, normal),
spacing = (column spacing, row spacing, median gap) in mm.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from hmvnet.errors import InputError

log = logging.getLogger(__name__)

MAX_TILT_DEG = 0.5
SPACING_TOLERANCE = 0.01


def _normal(ds: pydicom.Dataset) -> np.ndarray:
    row, col = np.array([float(v) for v in ds.ImageOrientationPatient]).reshape(2, 3)
    return np.cross(row, col)


def sort_slices(datasets: Sequence[pydicom.Dataset], label: str) -> tuple[list[pydicom.Dataset], float]:
    """Datasets sorted by position along the slice normal, and the slice spacing (mm); checks as the module says."""
    if not datasets:
        raise InputError(f"{label}: no slices")
    normal = _normal(datasets[0])
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    order = np.argsort(positions @ normal, kind="stable")
    ordered = [datasets[i] for i in order]
    positions = positions[order]
    if len(ordered) < 2:
        raise InputError(f"{label}: a single slice; expected a 3-D series")
    gaps = np.diff(positions @ normal)
    if np.any(gaps < 1e-3):
        raise InputError(
            f"{label}: {int(np.sum(gaps < 1e-3))} slices share a position (duplicates or a 4-D series)"
        )
    step = positions[-1] - positions[0]
    tilt = np.degrees(np.arccos(min(1.0, float(abs(step @ normal) / np.linalg.norm(step)))))
    if tilt > MAX_TILT_DEG:
        raise InputError(
            f"{label}: gantry tilt / sheared stack of {tilt:.1f} degrees (slice positions off the slice normal); "
            "resample it to an orthogonal grid first"
        )
    spacing = float(np.median(gaps))
    bad = np.flatnonzero(np.abs(gaps - spacing) > SPACING_TOLERANCE * spacing)
    if bad.size:
        where = ", ".join(
            f"{(positions[i] @ normal):.1f}->{(positions[i + 1] @ normal):.1f} mm" for i in bad[:3]
        )
        raise InputError(
            f"{label}: uneven slice spacing (median {spacing:.3f} mm; gaps {where}); a missing slice? "
            f"expected every gap within {SPACING_TOLERANCE:.0%} of the median"
        )
    return ordered, spacing


def read_series(files: Sequence[Path], label: str) -> tuple[sitk.Image, list[pydicom.Dataset]]:
    """The series as a float32 ``sitk.Image`` (rescaled values) and its headers in slice order (pixels dropped)."""
    try:
        datasets = [pydicom.dcmread(f) for f in files]
    except Exception as exc:  # pydicom raises many types for broken files
        raise InputError(f"{label}: cannot read a file of the series ({type(exc).__name__}: {exc})") from exc
    ordered, spacing = sort_slices(datasets, label)
    try:
        slices = [
            ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1)
            + float(ds.get("RescaleIntercept", 0) or 0)
            for ds in ordered
        ]
    except Exception as exc:
        raise InputError(f"{label}: cannot decode the pixel data ({type(exc).__name__}: {exc})") from exc
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise InputError(f"{label}: slices of different sizes {sorted(shapes)}")
    image = sitk.GetImageFromArray(np.stack(slices).astype(np.float32))
    first = ordered[0]
    row, col = np.array([float(v) for v in first.ImageOrientationPatient]).reshape(2, 3)
    normal = np.cross(row, col)
    image.SetOrigin([float(v) for v in first.ImagePositionPatient])
    image.SetDirection(np.column_stack([row, col, normal]).ravel().tolist())
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    image.SetSpacing((col_spacing, row_spacing, spacing))
    for ds in ordered:
        del ds.PixelData
    return image, ordered


def read_dicom_study(study, clinical=None):
    """Read the chosen CT and PET of a :class:`hmvnet.data.dicom_index.DicomStudy` into a
    :class:`hmvnet.data.cases.Case` with ``suv_factor``/``suv_source`` from the PET headers and the CT headers
    (slice order) in ``case.dicom_ct`` for DICOM export. The PET stays in its stored unit (Bq/ml for BQML)."""
    from hmvnet.data.cases import Case
    from hmvnet.data.clinical_record import ClinicalRecord
    from hmvnet.data.suv import _datetime as header_datetime
    from hmvnet.data.suv import suv_factor

    if not study.usable:
        raise InputError(f"study {study.name}: {study.reason}")
    ct, ct_headers = read_series(study.ct.files, f"{study.name} CT series {study.ct.number}")
    pet, pet_headers = read_series(study.pet.files, f"{study.name} PET series {study.pet.number}")
    for role, image in (("CT", ct), ("PET", pet)):
        array = sitk.GetArrayViewFromImage(image)
        if array.min() == array.max():
            raise InputError(f"study {study.name}: {role} is empty: every voxel equals {array.min():g}")
    times = [header_datetime(h.get("AcquisitionDate"), h.get("AcquisitionTime")) for h in pet_headers]
    suv = suv_factor(pet_headers[0], [t for t in times if t is not None])
    if suv.factor is None:
        log.warning("%s: no SUV from the PET headers (%s): radiomics uses the SUV-equivalent scale",
                    study.name, suv.reason)  # fmt: skip
    else:
        log.info("%s: SUV factor %.6g (%s: %s)", study.name, suv.factor, suv.source, suv.reason)
    return Case(
        case_id=study.name, ct=ct, pet=pet, clinical=clinical or ClinicalRecord(),
        sources={"ct": str(study.ct.files[0].parent), "pet": str(study.pet.files[0].parent),
                 "study_uid": study.study_uid},
        suv_factor=suv.factor, suv_source=suv.source, dicom_ct=ct_headers,
    )  # fmt: skip
