"""Discovery of a DICOM export tree: every file indexed once (headers only), grouped by study and series, one
CT + PET pair per study.

A PACS export is a folder tree with several studies mixed, series in sub-folders and arbitrary file names. Each
file is read once with ``pydicom.dcmread(stop_before_pixels=True)``; non-DICOM files are ignored. Series are
grouped by (StudyInstanceUID, SeriesInstanceUID) and a series is usable when its Modality is CT or PT and it is
not a localiser (ImageType LOCALIZER), not derived/secondary (ImageType DERIVED or SECONDARY), has >= 2 slices,
one ImageOrientationPatient and an axial slice normal (within 10 degrees of the patient z axis). Per study the
CT and the PT that share a FrameOfReferenceUID are chosen (the most slices win, then the lowest SeriesNumber); a
study without such a pair is returned with its reason. Case ids are ``<PatientID>_<StudyDate>_<6 hex of
sha1(StudyInstanceUID)>``: stable across runs and readable.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

log = logging.getLogger(__name__)

MAX_OBLIQUE_DEG = 10.0
"""A slice normal further than this from the patient z axis is a non-axial series (skipped)."""


@dataclass
class SeriesInfo:
    """One series of the tree: its identifiers and its files (unsorted)."""

    uid: str
    study_uid: str
    modality: str
    frame_of_reference: str
    number: int
    description: str
    image_type: tuple[str, ...]
    files: list[Path] = field(default_factory=list)
    orientations: set[tuple[float, ...]] = field(default_factory=set)

    def skip_reason(self) -> str | None:
        """Why this series cannot be a CT or PET input, or None when it can."""
        label = f"series {self.number} '{self.description}' ({self.modality}, {len(self.files)} files)"
        kinds = {t.upper() for t in self.image_type}
        if self.modality not in ("CT", "PT"):
            return f"{label}: modality {self.modality} is not CT or PT"
        if "LOCALIZER" in kinds:
            return f"{label}: localiser (ImageType {'/'.join(self.image_type)})"
        if kinds & {"DERIVED", "SECONDARY"}:
            return f"{label}: derived/secondary (ImageType {'/'.join(self.image_type)})"
        if len(self.files) < 2:
            return f"{label}: single slice"
        if len(self.orientations) != 1:
            return f"{label}: {len(self.orientations)} different ImageOrientationPatient values"
        row, col = np.array(next(iter(self.orientations))).reshape(2, 3)
        normal = np.cross(row, col)
        angle = np.degrees(np.arccos(min(1.0, abs(normal[2]) / max(np.linalg.norm(normal), 1e-12))))
        if angle > MAX_OBLIQUE_DEG:
            return f"{label}: not axial (slice normal {angle:.0f} degrees from the patient z axis)"
        if not self.frame_of_reference:
            return f"{label}: no FrameOfReferenceUID"
        return None


@dataclass
class DicomStudy:
    """One study: its chosen CT and PET series, or the reason there is no usable pair."""

    study_uid: str
    patient_id: str
    study_date: str
    series: list[SeriesInfo] = field(default_factory=list)
    ct: SeriesInfo | None = None
    pet: SeriesInfo | None = None
    reason: str = ""

    @property
    def name(self) -> str:
        """The case id ``<PatientID>_<StudyDate>_<hash>`` (also the output folder name)."""
        digest = hashlib.sha1(self.study_uid.encode()).hexdigest()[:6]
        pid = re.sub(r"[^A-Za-z0-9.-]+", "-", self.patient_id).strip("-") or "anon"
        return f"{pid}_{self.study_date or 'nodate'}_{digest}"

    @property
    def usable(self) -> bool:
        return self.ct is not None and self.pet is not None


def _index_file(path: Path) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None


def index_tree(root: Path) -> list[DicomStudy]:
    """Every study under ``root`` (sorted by case id), with its CT/PET choice made (see the module docstring)."""
    series: dict[tuple[str, str], SeriesInfo] = {}
    studies: dict[str, DicomStudy] = {}
    ignored = 0
    for folder, _dirs, names in os.walk(root):
        for file_name in sorted(names):
            path = Path(folder) / file_name
            ds = _index_file(path)
            if ds is None or "SeriesInstanceUID" not in ds or "StudyInstanceUID" not in ds:
                ignored += 1
                continue
            key = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
            if key not in series:
                series[key] = SeriesInfo(
                    uid=key[1], study_uid=key[0], modality=str(ds.get("Modality", "")),
                    frame_of_reference=str(ds.get("FrameOfReferenceUID", "")),
                    number=int(ds.get("SeriesNumber", 0) or 0), description=str(ds.get("SeriesDescription", "")),
                    image_type=tuple(str(v) for v in (ds.get("ImageType") or ())),
                )  # fmt: skip
                studies.setdefault(
                    key[0], DicomStudy(key[0], str(ds.get("PatientID", "")), str(ds.get("StudyDate", "")))
                ).series.append(series[key])
            series[key].files.append(path)
            iop = ds.get("ImageOrientationPatient")
            series[key].orientations.add(tuple(round(float(v), 4) for v in iop) if iop else ())
    log.info("DICOM index of %s: %d files in %d series of %d studies (%d non-DICOM files ignored)",
             root, sum(len(s.files) for s in series.values()), len(series), len(studies), ignored)  # fmt: skip
    for study in studies.values():
        choose_pair(study)
    return sorted(studies.values(), key=lambda s: s.name)


def choose_pair(study: DicomStudy) -> None:
    """Set ``study.ct`` / ``study.pet`` to the CT and PT sharing a FrameOfReferenceUID, else ``study.reason``."""
    usable: dict[str, list[SeriesInfo]] = defaultdict(list)
    for s in sorted(study.series, key=lambda s: (s.number, s.uid)):
        reason = s.skip_reason()
        if reason:
            log.info("%s: skipped %s", study.name, reason)
        else:
            usable[s.modality].append(s)
    if not usable["CT"] or not usable["PT"]:
        missing = " and ".join(m for m, name in (("CT", "CT"), ("PET", "PT")) if not usable[name])
        study.reason = f"no usable {missing} series ({len(study.series)} series in the study)"
        return
    pairs = [
        (ct, pt)
        for ct in usable["CT"]
        for pt in usable["PT"]
        if ct.frame_of_reference == pt.frame_of_reference
    ]
    if not pairs:
        study.reason = "no CT and PT series share a FrameOfReferenceUID (not registered by the scanner)"
        return
    study.ct, study.pet = max(
        pairs, key=lambda p: (len(p[0].files), len(p[1].files), -p[0].number, -p[1].number)
    )
