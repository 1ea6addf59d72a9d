"""Synthetic DICOM export trees with known answers (``hmvnet synth --format dicom``).

Each study is a head-and-neck phantom, either a small analytic one (64x64x40 CT at 3 mm: body ellipse, a hot
sphere, a GTVp and a GTVn sphere; fast, for the tests) or the realistic phantom of ``hmvnet synth`` ("small"
size; what the demo weights were trained on), written as a CT series (int16, RescaleIntercept -1024) and a PET series in BQML (uint16 with one RescaleSlope per
slice, DecayCorrection START) whose headers (PatientWeight, RadionuclideTotalDose, RadionuclideHalfLife,
RadiopharmaceuticalStartDateTime, SeriesTime) fix the true body-weight SUV factor; the PET voxels are the
phantom's SUV divided by that factor. Every study also has a CT localiser (one sagittal slice). Files land in
nested folders (``<patient>/<study>/<random>/``) under shuffled names. Two studies per patient.

Special studies (``kinds``): ``"normal"``, ``"no-pet"`` (CT only), ``"broken"`` (PET pixel data truncated: reading
fails), ``"no-weight"`` (PatientWeight 0: SUV falls back to the estimate). ``truth.json`` at the root maps each case
id to its kind, true SUV factor (None where not recoverable) and the label file ``truth/<case>.nii.gz`` (CT grid).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from hmvnet import Label

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
F18_HALF_LIFE_S = 6586.2
DEFAULT_KINDS = ("normal", "normal", "normal", "no-weight", "no-pet", "broken")


@dataclass(frozen=True)
class StudySpec:
    patient_id: str
    study_date: str
    kind: str
    seed: int
    ct_size: tuple[int, int, int] = (64, 64, 40)  # x, y, z
    ct_spacing: tuple[float, float, float] = (3.0, 3.0, 3.0)
    pet_size: tuple[int, int, int] = (40, 40, 30)
    pet_spacing: tuple[float, float, float] = (4.8, 4.8, 4.0)
    phantom: str = "simple"
    """"simple": the analytic 64x64x40 phantom (fast, tests); "cohort": the realistic ``hmvnet synth`` phantom."""


def _phantom(rng: np.random.Generator) -> dict[str, Any]:
    p = np.array([rng.uniform(-15, 15), rng.uniform(-15, 5), rng.uniform(-30, -10)])
    q = p + np.array([rng.choice([-30.0, 30.0]), 8.0, rng.uniform(-8, 8)])
    return {"p": p, "q": q, "rp": rng.uniform(9, 12), "rq": rng.uniform(6, 8)}


def _fields(ph: dict[str, Any], x, y, z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label, CT HU, PET SUV) at the points ``x, y, z`` (mm)."""

    def inside(c, r):
        return (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= r**2

    label = np.zeros(np.shape(x), np.uint8)
    label[inside(ph["q"], ph["rq"])] = Label.GTVN
    label[inside(ph["p"], ph["rp"])] = Label.GTVP
    body = (x / 80) ** 2 + (y / 70) ** 2 <= 1
    ct = np.where(body, 40.0, -1000.0) + 25.0 * (label > 0)
    pet = np.where(body, 1.0, 0.02) + 4.0 * inside((0, 0, 25), 18) + 7.0 * (label == Label.GTVP)
    pet = pet + 5.0 * (label == Label.GTVN)
    return label, ct, pet


def _points(size, spacing, origin):
    i, j, k = np.meshgrid(*(np.arange(n) for n in size), indexing="ij")
    x, y, z = (origin[a] + spacing[a] * (i, j, k)[a] for a in range(3))
    return x.transpose(2, 1, 0), y.transpose(2, 1, 0), z.transpose(2, 1, 0)  # (z, y, x)


def _base(spec: StudySpec, study: dict[str, str], sop_class: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.PatientID, ds.PatientName = spec.patient_id, f"SYNTH^{spec.patient_id}"
    ds.PatientBirthDate, ds.PatientSex = "19600101", "M"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study["uid"], spec.study_date, "090000"
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", study["accession"], ""
    ds.Manufacturer, ds.SeriesDate = "hmvnet synthetic", spec.study_date
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = study["for"], ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    return ds


def _write_slices(
    ds_base: Dataset, volume: np.ndarray, spacing, origin, folder: Path, rng, **per_slice
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ds_base.SeriesInstanceUID = generate_uid()
    ds_base.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds_base.PixelSpacing = [spacing[1], spacing[0]]
    ds_base.SliceThickness = spacing[2]
    ds_base.Rows, ds_base.Columns = volume.shape[1], volume.shape[2]
    names = rng.permutation(len(volume))
    for k, plane in enumerate(volume):
        ds = ds_base.copy()
        ds.file_meta = FileMetaDataset(ds_base.file_meta)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = int(len(volume) - k)  # deliberately reversed: readers must sort by position
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * spacing[2]]
        for key, values in per_slice.items():
            setattr(ds, key, values[k])
        ds.PixelData = plane.tobytes()
        ds.save_as(folder / f"IM{names[k]:05d}x{rng.integers(1 << 30):x}", enforce_file_format=True)


def _pet_headers(ds: Dataset, spec: StudySpec, rng: np.random.Generator) -> float:
    """Fill the SUV-relevant PET headers; return the true SUV factor (for ``no-weight`` not in the headers)."""
    weight = float(np.round(rng.uniform(55, 105), 1))
    dose = float(np.round(rng.uniform(180e6, 400e6), -4))
    injection = dt.datetime.strptime(spec.study_date + "083000", "%Y%m%d%H%M%S")
    start = injection + dt.timedelta(seconds=round(float(rng.uniform(50, 75) * 60)))
    ds.Units, ds.DecayCorrection, ds.CorrectedImage = "BQML", "START", ["ATTN", "DECY"]
    ds.PatientWeight = weight if spec.kind != "no-weight" else 0
    ds.SeriesTime = start.strftime("%H%M%S")
    radio = Dataset()
    radio.Radiopharmaceutical = "Fluorodeoxyglucose"
    radio.RadionuclideTotalDose = dose
    radio.RadionuclideHalfLife = F18_HALF_LIFE_S
    radio.RadiopharmaceuticalStartTime = injection.strftime("%H%M%S")
    radio.RadiopharmaceuticalStartDateTime = injection.strftime("%Y%m%d%H%M%S")
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([radio])
    seconds = (start - injection).total_seconds()
    factor = weight * 1000.0 / (dose * 2.0 ** (-seconds / F18_HALF_LIFE_S))
    return factor


def _simple_phantom(spec: StudySpec, rng: np.random.Generator) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """(CT HU, PET SUV, label) of the small analytic phantom, identity directions."""
    ph = _phantom(rng)
    out = []
    for size, spacing in ((spec.ct_size, spec.ct_spacing), (spec.pet_size, spec.pet_spacing)):
        origin = tuple(-(n - 1) * s / 2 for n, s in zip(size, spacing))
        label, hu, suv = _fields(ph, *_points(size, spacing, origin))
        for array in (
            label,
            hu + rng.normal(0, 8, hu.shape),
            np.clip(suv * rng.normal(1.0, 0.05, suv.shape), 0, None),
        ):
            image = sitk.GetImageFromArray(array)
            image.SetOrigin(origin)
            image.SetSpacing(spacing)
            out.append(image)
    return out[1], out[5], out[0]


def _cohort_phantom(spec: StudySpec, rng: np.random.Generator) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """(CT HU, PET SUV, label) of the realistic ``hmvnet synth`` phantom ("small" size), reoriented to LPS."""
    from hmvnet.synthetic.cohort import generate_case

    case = generate_case(
        f"CHUM-{spec.seed % 1000:03d}", int(rng.integers(1 << 31)), "small"
    )  # CHUM: PET in SUV
    ct, pet, label = (sitk.DICOMOrient(im, "LPS") for im in (case.ct, case.pet, case.label))
    return sitk.Cast(ct, sitk.sitkFloat64), sitk.Cast(pet, sitk.sitkFloat64), label


def _geometry(image: sitk.Image) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if not np.allclose(image.GetDirection(), np.eye(3).ravel()):
        raise ValueError("the DICOM writer expects identity directions (LPS)")
    return image.GetSpacing(), image.GetOrigin()


def _write_ct(spec: StudySpec, study: dict[str, str], ct: sitk.Image, folder: Path, rng) -> None:
    spacing, origin = _geometry(ct)
    hu = sitk.GetArrayFromImage(ct)
    ds = _base(spec, study, CT_STORAGE, "CT")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesNumber, ds.SeriesDescription, ds.SeriesTime = 2, "CT HEAD NECK", "092000"
    ds.PixelRepresentation, ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 1, -1024, 1, "HU"
    ds.KVP = 120
    stored = np.clip(np.round(hu + 1024), -32768, 32767).astype(np.int16)
    _write_slices(ds, stored, spacing, origin, folder, rng)


def _write_pet(spec: StudySpec, study: dict[str, str], pet: sitk.Image, folder: Path, rng) -> float | None:
    spacing, origin = _geometry(pet)
    suv = np.clip(sitk.GetArrayFromImage(pet), 0, None)
    ds = _base(spec, study, PET_STORAGE, "PT")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesNumber, ds.SeriesDescription = 3, "PET AC"
    factor = _pet_headers(ds, spec, rng)
    bqml = suv / factor
    slopes = np.maximum(bqml.reshape(len(bqml), -1).max(axis=1), 1e-3) / 65000.0
    stored = np.round(bqml / slopes[:, None, None]).astype(np.uint16)
    ds.PixelRepresentation, ds.RescaleIntercept = 0, 0
    start = dt.datetime.strptime(spec.study_date + ds.SeriesTime, "%Y%m%d%H%M%S")
    times = [(start + dt.timedelta(seconds=10 * (k // 8))).strftime("%H%M%S") for k in range(len(bqml))]
    _write_slices(ds, stored, spacing, origin, folder, rng, RescaleSlope=[f"{s:.10g}" for s in slopes],
                  AcquisitionTime=times, AcquisitionDate=[spec.study_date] * len(bqml))  # fmt: skip
    return None if spec.kind == "no-weight" else factor


def _write_localiser(spec: StudySpec, study: dict[str, str], folder: Path, rng) -> None:
    ds = _base(spec, study, CT_STORAGE, "CT")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.SeriesNumber, ds.SeriesDescription, ds.SeriesTime = 1, "TOPOGRAM", "091500"
    ds.PixelRepresentation, ds.RescaleIntercept, ds.RescaleSlope = 1, -1024, 1
    plane = np.full((1, 64, 64), 1024, np.int16)
    _write_slices(ds, plane, (3.0, 3.0, 1.0), (0.0, -96.0, 96.0), folder, rng)
    # sagittal: rows along -z, columns along y (patched after the generic axial writer)
    for path in folder.iterdir():
        from pydicom import dcmread

        one = dcmread(path)
        one.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        one.save_as(path, enforce_file_format=True)


def write_study(root: Path, spec: StudySpec) -> dict[str, Any]:
    """Write one study's series (CT, PET unless ``no-pet``, localiser) under ``root``; returns its truth."""
    rng = np.random.default_rng(spec.seed)
    study = {"uid": generate_uid(entropy_srcs=[f"{spec.patient_id}{spec.study_date}{spec.seed}"]),
             "for": generate_uid(entropy_srcs=[f"for{spec.patient_id}{spec.study_date}{spec.seed}"]),
             "accession": f"A{spec.seed:06d}"}  # fmt: skip
    ct, pet, label = (_cohort_phantom if spec.phantom == "cohort" else _simple_phantom)(spec, rng)
    base = root / spec.patient_id / f"{spec.study_date}_{rng.integers(1 << 20):05x}"
    _write_ct(spec, study, ct, base / f"s{rng.integers(1 << 20):05x}", rng)
    _write_localiser(spec, study, base / f"s{rng.integers(1 << 20):05x}", rng)
    factor = None
    if spec.kind != "no-pet":
        pet_dir = base / f"s{rng.integers(1 << 20):05x}"
        factor = _write_pet(spec, study, pet, pet_dir, rng)
        if spec.kind == "broken":
            for path in sorted(pet_dir.iterdir())[::3]:
                path.write_bytes(path.read_bytes()[:-2000])  # truncated pixel data
    return {"study_uid": study["uid"], "frame_of_reference": study["for"], "kind": spec.kind,
            "suv_factor": factor, "label": label}  # fmt: skip


def write_tree(
    root: Path,
    n_studies: int = 6,
    seed: int = 0,
    kinds: tuple[str, ...] = DEFAULT_KINDS,
    phantom: str = "simple",
) -> dict[str, Any]:
    """A DICOM export tree ``root/export`` of ``n_studies`` studies (two per patient, ``kinds`` in turn) with
    ``root/truth.json`` and ``root/truth/<case>.nii.gz``; returns the truth. ``phantom``: see :class:`StudySpec`."""
    from hmvnet.data.dicom_index import DicomStudy
    from hmvnet.data.writers import write_json, write_label

    root = Path(root)
    truth: dict[str, Any] = {}
    for i in range(n_studies):
        date = (dt.date(2024, 3, 1) + dt.timedelta(days=40 * (i % 2) + i)).strftime("%Y%m%d")
        spec = StudySpec(f"SYN{seed:02d}{i // 2:03d}", date, kinds[i % len(kinds)], seed * 1000 + i,
                         phantom=phantom)  # fmt: skip
        one = write_study(root / "export", spec)
        case = DicomStudy(one["study_uid"], spec.patient_id, date).name
        write_label(one.pop("label"), root / "truth" / f"{case}.nii.gz")
        one["label"] = f"truth/{case}.nii.gz"
        truth[case] = one
    (root / "export" / "README.txt").write_text("not a DICOM file: the index must ignore it\n")
    write_json(truth, root / "truth.json")
    return truth
