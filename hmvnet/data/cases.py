"""Reading and writing cases: the grand-challenge layout, the HECKTOR training layout, explicit CT/PET pairs and
DICOM series, plus atomic writers for the label image and JSON outputs.

Every reader returns images with their geometry untouched (``sitk.Image``, float32 for CT and PET, uint8 for
labels). Problems with the input raise :class:`hmvnet.errors.InputError` naming the path and what was expected.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hmvnet.data.clinical_record import ClinicalRecord, read_ehr
from hmvnet.data.safe_read import check_image_file, itk_reason, plausible_ct
from hmvnet.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".mha", ".mhd", ".nii.gz", ".nii", ".nrrd", ".tif", ".tiff")
MAX_NONFINITE_FRACTION = 0.05
"""Up to this fraction of NaN/inf voxels is cleaned (CT -> -1024 HU, PET -> 0) with a warning; more is rejected."""
CT_FILL_HU = -1024.0
"""The clinical/outcome table of a HECKTOR 2025 release, next to ``Task 1`` and ``Task 2``."""
GC_CT_DIR = Path("images") / "ct"
GC_PET_DIR = Path("images") / "pet"


@dataclass
class Case:
    """One patient: CT and PET on their own grids, the clinical record, and the label when known."""

    case_id: str
    ct: sitk.Image
    pet: sitk.Image
    clinical: ClinicalRecord = field(default_factory=ClinicalRecord)
    label: sitk.Image | None = None
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """Input problems corrected or tolerated while reading (also logged); recorded in the case's result."""
    suv_factor: float | None = None
    """SUV per PET unit when known (DICOM headers, :mod:`hmvnet.data.suv`); None: radiomics estimates the scale."""
    suv_source: str = "estimated"
    dicom_ct: list[Any] | None = None
    """The CT's pydicom headers in slice order (DICOM input only): what DICOM SEG / RTSTRUCT reference."""


def _has_image_suffix(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in IMAGE_SUFFIXES)


def _is_dicom_folder(folder: Path) -> bool:
    try:
        return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError:
        return False


def find_image(folder: Path, role: str) -> Path:
    """The single image file (or DICOM series folder) in ``folder``; ``role`` ("CT", "PET") names it in errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            f"{role}: folder {folder} does not exist (expected one .mha, .nii.gz or DICOM series)"
        )
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    images = [p for p in entries if p.is_file() and _has_image_suffix(p)]
    if len(images) > 1:
        names = ", ".join(p.name for p in images)
        raise InputError(f"{role}: {len(images)} image files in {folder} ({names}); expected exactly one")
    if images:
        return images[0]
    if _is_dicom_folder(folder):
        return folder
    found = ", ".join(p.name for p in entries[:10]) or "nothing"
    raise InputError(
        f"{role}: no .mha, .nii.gz, .nii, .nrrd, .tif or DICOM series in {folder} (found: {found})"
    )


def _read_dicom_series(folder: Path) -> sitk.Image:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if len(series) != 1:
        raise InputError(f"{folder}: {len(series)} DICOM series; expected exactly one")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))
    return reader.Execute()


def read_image(
    path: Path,
    role: str,
    pixel_type: int = sitk.sitkFloat32,
    root: Path | None = None,
    warnings: list[str] | None = None,
) -> sitk.Image:
    """Read a 3-D scalar image (file or DICOM folder), check it and cast it to ``pixel_type``.

    A file is first checked without reading its voxels (:func:`hmvnet.data.safe_read.check_image_file`: claimed
    size, file-size plausibility, external data files, symlinks staying inside ``root``). Rejects unreadable or
    truncated files, 2-D or 4-D images, multi-component images and empty images; cleans up to
    :data:`MAX_NONFINITE_FRACTION` of non-finite voxels (logged) and rejects more. A CT (``role == "CT"``) must
    hold plausible HU (:func:`~hmvnet.data.safe_read.plausible_ct`); corrections are appended to ``warnings``.
    """
    path = Path(path)
    if not path.is_dir():
        check_image_file(path, role, root)
    if path.name.lower().endswith(".gz"):
        _check_gzip(path, role)
    try:
        image = _read_dicom_series(path) if path.is_dir() else sitk.ReadImage(str(path.resolve()))
    except RuntimeError as exc:
        raise InputError(
            f"{role}: cannot read {path} (unreadable or truncated image: {itk_reason(exc)})"
        ) from exc
    stored_pixel_id = image.GetPixelID()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{role}: {path} has {image.GetNumberOfComponentsPerPixel()} components per voxel; expected a scalar image"
        )
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise InputError(
            f"{role}: {path} is {image.GetDimension()}-D with size {image.GetSize()}; expected a 3-D volume"
        )
    if min(image.GetSize()) < 2:
        raise InputError(
            f"{role}: {path} has size {image.GetSize()}; expected a 3-D volume with >= 2 voxels per axis"
        )
    image = sitk.Cast(image, pixel_type)
    if pixel_type in (sitk.sitkFloat32, sitk.sitkFloat64):
        image = _clean_nonfinite(image, path, role)
        array = sitk.GetArrayViewFromImage(image)
        if array.min() == array.max():
            raise InputError(f"{role}: {path} is empty: every voxel equals {array.min():g}")
        if role == "CT":
            image, note = plausible_ct(image, path, stored_pixel_id)
            if note and warnings is not None:
                warnings.append(note)
    return image


def _check_gzip(path: Path, role: str) -> None:
    """ITK zero-fills a truncated .nii.gz without an error: check the gzip stream reaches its end marker."""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{role}: cannot read {path} (truncated or corrupt gzip stream: {exc})") from exc


def _clean_nonfinite(image: sitk.Image, path: Path, role: str) -> sitk.Image:
    array = sitk.GetArrayViewFromImage(image)
    bad = ~np.isfinite(array)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return image
    fraction = n_bad / bad.size
    if fraction > MAX_NONFINITE_FRACTION:
        raise InputError(
            f"{role}: {path} has {n_bad} non-finite voxels ({fraction:.1%}); at most "
            f"{MAX_NONFINITE_FRACTION:.0%} can be cleaned"
        )
    fill = CT_FILL_HU if role.upper().startswith("CT") else 0.0
    log.warning(
        "%s: %s has %d non-finite voxels (%.3f%%): replaced by %g", role, path, n_bad, 100 * fraction, fill
    )
    cleaned = np.where(bad, fill, array).astype(array.dtype)
    out = sitk.GetImageFromArray(cleaned)
    out.CopyInformation(image)
    return out


def read_label(path: Path) -> sitk.Image:
    """Read a label image (uint8); values other than 0/1/2 are an error naming them."""
    label = read_image(path, "label", sitk.sitkUInt8)
    values = np.unique(sitk.GetArrayViewFromImage(label))
    extra = sorted(set(values.tolist()) - {0, 1, 2})
    if extra:
        raise InputError(f"label: {path} holds values {extra}; expected only 0, 1, 2")
    return label


def read_gc_case(input_dir: Path, case_id: str | None = None) -> Case:
    """Read the grand-challenge layout: ``images/ct/*.mha``, ``images/pet/*.mha`` and ``ehr.json``.

    Other folders under ``images/`` (planning CT, dose) are ignored; a missing or broken ehr.json is a warning.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist")
    ct_path = find_image(input_dir / GC_CT_DIR, "CT")
    pet_path = find_image(input_dir / GC_PET_DIR, "PET")
    ehr_path = input_dir / "ehr.json"
    notes: list[str] = []
    return Case(
        case_id=case_id or input_dir.name,
        ct=read_image(ct_path, "CT", root=input_dir, warnings=notes),
        pet=read_image(pet_path, "PET", root=input_dir),
        clinical=read_ehr(ehr_path),
        sources={"ct": str(ct_path), "pet": str(pet_path), "ehr": str(ehr_path)},
        warnings=notes,
    )


def _training_file(case_dir: Path, suffix: str) -> Path | None:
    for ext in (".nii.gz", ".nii", ".mha"):
        path = case_dir / f"{case_dir.name}{suffix}{ext}"
        if path.is_file():
            return path
    return None


def read_training_case(
    case_dir: Path, clinical: ClinicalRecord | None = None, with_label: bool = True
) -> Case:
    """Read ``<PID>/<PID>__CT.nii.gz``, ``<PID>__PT.nii.gz`` and (if present and wanted) the label ``<PID>.nii.gz``."""
    case_dir = Path(case_dir)
    ct_path = _training_file(case_dir, "__CT")
    pet_path = _training_file(case_dir, "__PT")
    if ct_path is None or pet_path is None:
        missing = "CT" if ct_path is None else "PET"
        raise InputError(
            f"{case_dir}: no {case_dir.name}__{'CT' if missing == 'CT' else 'PT'}.nii.gz ({missing})"
        )
    label_path = _training_file(case_dir, "") if with_label else None
    notes: list[str] = []
    return Case(
        case_id=case_dir.name,
        ct=read_image(ct_path, "CT", root=case_dir, warnings=notes),
        pet=read_image(pet_path, "PET", root=case_dir),
        clinical=clinical or ClinicalRecord(),
        label=read_label(label_path) if label_path else None,
        sources={"ct": str(ct_path), "pet": str(pet_path), "label": str(label_path or "")},
        warnings=notes,
    )


def read_pair(
    ct_path: Path, pet_path: Path, ehr_path: Path | None = None, case_id: str | None = None
) -> Case:
    """Read an explicit CT/PET pair (files or DICOM series folders)."""
    ct_path, pet_path = Path(ct_path), Path(pet_path)
    notes: list[str] = []
    return Case(
        case_id=case_id or ct_path.name.split(".")[0],
        ct=read_image(ct_path, "CT", warnings=notes),
        pet=read_image(pet_path, "PET"),
        clinical=read_ehr(ehr_path) if ehr_path else ClinicalRecord(),
        sources={"ct": str(ct_path), "pet": str(pet_path)},
        warnings=notes,
    )


def detect_layout(path: Path) -> str:
    """ "gc" (images/ct + images/pet), "training" (<PID>__CT.nii.gz) or "dicom" (CT/ and PET/ series folders)."""
    path = Path(path)
    if (path / GC_CT_DIR).is_dir() or (path / GC_PET_DIR).is_dir():
        return "gc"
    if _training_file(path, "__CT") is not None:
        return "training"
    if (path / "CT").is_dir() and (path / "PET").is_dir():
        return "dicom"
    raise InputError(
        f"{path}: not a case folder (expected images/ct + images/pet, <name>__CT.nii.gz + <name>__PT.nii.gz, "
        "or CT/ + PET/ DICOM series folders)"
    )


def read_case(path: Any, clinical: ClinicalRecord | None = None) -> Case:
    """Read a case folder in any supported layout (see :func:`detect_layout`), or a study of a DICOM tree
    (:class:`hmvnet.data.dicom_index.DicomStudy`, see :func:`discover_cases`)."""
    if not isinstance(path, str | Path):
        from hmvnet.data.dicom_series import read_dicom_study

        return read_dicom_study(path, clinical)
    path = Path(path)
    layout = detect_layout(path)
    if layout == "gc":
        return read_gc_case(path)
    if layout == "training":
        return read_training_case(path, clinical)
    ehr = path / "ehr.json"
    return read_pair(
        find_image(path / "CT", "CT"),
        find_image(path / "PET", "PET"),
        ehr if ehr.is_file() else None,
        case_id=path.name,
    )


def discover_cases(root: Path) -> list[Any]:
    """Case folders under ``root``: a HECKTOR release (``Task 1/<PID>``), or sub-folders in any layout; when
    none is found, the studies of a DICOM tree (:func:`hmvnet.data.dicom_index.index_tree`; each has ``.name``
    and is read by :func:`read_case`; studies without a usable CT/PET pair are included with their reason)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    for task in ("Task 1", "Task 2"):
        if (root / task).is_dir():
            root = root / task
            break
    cases = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            detect_layout(sub)
        except InputError:
            continue
        cases.append(sub)
    if not cases:
        from hmvnet.data.dicom_index import index_tree

        return list(index_tree(root))
    return cases
