"""Synthetic PET/CT head-and-neck cohort (``hmvnet synth``): the driver that writes cases, the CSVs and the CLI.

No patient data exists in this project: everything is developed and tested on these phantoms. Each case is an
anatomy defined in physical LPS space (see :mod:`hmvnet.synthetic.phantom`) sampled onto a CT grid (HU, int16) and a PET
grid (SUV or Bq/ml, float32); the label (uint8 0/1/2) is computed from the same physical lesion shapes.
Two generators: ``v2`` (the default, :mod:`hmvnet.synthetic.v2`: scanner protocols per centre, whole-body fields of
view, physiological decoys, dental metal, imperfect truth, a prognosis-like hazard) and ``v1``
(:mod:`hmvnet.synthetic.case_v1`, the original phantoms, reproducible bit for bit with ``--generator v1``).

Determinism: case ``g`` of cohort seed ``S`` depends only on ``(S, g)`` and the generator (not on the number of
cases, the start index or the number of workers), so the same seed writes identical files.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hmvnet import Label
from hmvnet.data.task2 import TASK2_CSV
from hmvnet.data.writers import write_text, write_with
from hmvnet.errors import InputError
from hmvnet.synthetic import case_v1
from hmvnet.synthetic.case_v1 import (  # noqa: F401  (re-exported: the v1 model's public names)
    CENTRES,
    DROPOUT_MEAN_DAYS,
    FOLLOW_UP_DAYS,
    HAZARD_COEFFICIENTS,
    MISSING_RATE,
    WEIBULL_SCALE_DAYS,
    WEIBULL_SHAPE,
    draw_case,
    hazard_covariates,
    true_log_hazard,
)
from hmvnet.synthetic.common import (  # noqa: F401  (re-exported)
    CLINICAL_KEYS,
    CSV_COLUMNS,
    SIZES,
    TRUTH_NAME,
    SynthCase,
    case_seed,
)
from hmvnet.synthetic.v2 import case as case_v2

log = logging.getLogger(__name__)

GENERATORS = ("v2", "v1")
SPLITS = ("train", "test")


def case_pid(seed: int, index: int, generator: str = "v1", split: str = "train") -> str:
    """The patient ID ``<CENTRE>-<NNN>`` of case ``index`` (v2: ``split="test"`` adds the test-only centres)."""
    if generator == "v1":
        return case_v1.case_pid(seed, index)
    return case_v2.case_pid(seed, index, split)


def generate_case(
    pid: str,
    rng_seed: int,
    size: str = "full",
    *,
    flips: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
    generator: str = "v1",
) -> SynthCase:
    """One phantom patient of ``generator`` (see :func:`hmvnet.synthetic.case_v1.generate_case`)."""
    _check_generator(generator)
    make: Callable[..., SynthCase] = case_v1.generate_case if generator == "v1" else case_v2.generate_case
    return make(pid, rng_seed, size, flips=flips)


def _check_generator(generator: str) -> None:
    if generator not in GENERATORS:
        raise InputError(f"--generator must be one of {GENERATORS}, got {generator!r}")


# --------------------------------------------------------------------------------------------------- preview
def save_preview(case: SynthCase, png_path: Path | str) -> Path:
    """Axial, coronal and sagittal CT (top row) and PET (bottom row) slices through the GTVp, label contours.

    Both images are shown in LPS orientation (patient's right on the image left, anterior up in axial views,
    head up otherwise), with the PET resampled (linear) onto the CT grid so the panels align in mm.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ct = sitk.DICOMOrient(case.ct, "LPS")
    label = sitk.DICOMOrient(case.label, "LPS")
    pet_scale = float(case.truth.get("pet_scale", 1.0)) or 1.0
    pet = sitk.Resample(case.pet, case.ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    pet = sitk.DICOMOrient(pet, "LPS") / pet_scale
    ct_a, pet_a, lab_a = (sitk.GetArrayFromImage(im) for im in (ct, pet, label))
    sx, sy, sz = ct.GetSpacing()
    ox, oy, oz = ct.GetOrigin()
    nz, ny, nx = ct_a.shape
    fg = np.argwhere(lab_a == Label.GTVP)
    k, j, i = fg.mean(axis=0).round().astype(int) if fg.size else (nz // 2, ny // 2, nx // 2)
    ext_x, ext_y, ext_z = (ox, ox + nx * sx), (oy, oy + ny * sy), (oz, oz + nz * sz)
    views = [
        ("axial", lambda a: a[k], (ext_x[0], ext_x[1], ext_y[1], ext_y[0])),
        ("coronal", lambda a: a[:, j, :], (ext_x[0], ext_x[1], ext_z[0], ext_z[1])),
        ("sagittal", lambda a: a[:, :, i], (ext_y[0], ext_y[1], ext_z[0], ext_z[1])),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(12, 8.4))
    for col, (name, cut, extent) in enumerate(views):
        origin = "upper" if name == "axial" else "lower"
        for row, (arr, kw) in enumerate(
            (
                (ct_a, {"cmap": "gray", "vmin": -250, "vmax": 350}),
                (pet_a, {"cmap": "hot", "vmin": 0, "vmax": 12}),
            )
        ):
            ax = axes[row, col]
            ax.imshow(cut(arr), extent=extent, origin=origin, interpolation="nearest", **kw)
            lab = cut(lab_a)
            for value, colour in ((Label.GTVP, "cyan"), (Label.GTVN, "lime")):
                if (lab == value).any():
                    ax.contour(
                        (lab == value).astype(float),
                        levels=[0.5],
                        colors=colour,
                        linewidths=0.8,
                        extent=extent,
                        origin=origin,
                    )
            ax.set_title(f"{'CT (HU)' if row == 0 else 'PET (SUV)'} {name}", fontsize=9)
            ax.tick_params(labelsize=7)
    t = case.truth
    fig.suptitle(
        f"{case.pid}: GTVp {t['gtvp_volume_ml']:.1f} ml (cyan), {t['gtvn_count']} GTVn {t['gtvn_volume_ml']:.1f} ml "
        f"(green), SUVmax {t['suv_max']:.1f}, PET in {t['pet_units']}, CT direction {t['ct_direction']}",
        fontsize=10,
    )
    fig.tight_layout()
    png_path = write_with(png_path, lambda tmp: fig.savefig(tmp, dpi=80))
    plt.close(fig)
    return png_path


# --------------------------------------------------------------------------------------------------- writers
def _write_image(image: sitk.Image, path: Path) -> None:
    write_with(path, lambda tmp: sitk.WriteImage(image, str(tmp), True))


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_training_case(args: tuple[str, int, str, str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Worker: generate one case and write it in the HECKTOR training layout; returns (CSV row, truth row)."""
    pid, rng_seed, size, out_dir, generator = args
    case = generate_case(pid, rng_seed, size, generator=generator)
    t1 = Path(out_dir) / "Task 1" / pid
    _write_image(case.ct, t1 / f"{pid}__CT.nii.gz")
    _write_image(case.pet, t1 / f"{pid}__PT.nii.gz")
    _write_image(case.label, t1 / f"{pid}.nii.gz")
    for suffix in ("__CT", "__PT"):
        _link_or_copy(t1 / f"{pid}{suffix}.nii.gz", Path(out_dir) / "Task 2" / pid / f"{pid}{suffix}.nii.gz")
    row = {"PatientID": pid, **case.clinical, "RFS": case.truth["RFS"], "Relapse": case.truth["Relapse"]}
    row.update({k: case.truth[k] for k in ("T-stage", "N-stage")})
    return row, case.truth


def _init_worker() -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})

    write_with(path, write)


def generate_cohort(
    out_dir: Path | str,
    n_cases: int,
    seed: int,
    *,
    start_index: int = 0,
    size: str = "full",
    workers: int = 1,
    generator: str = "v1",
    split: str = "train",
) -> list[dict[str, Any]]:
    """Write cases ``start_index .. start_index + n_cases - 1`` of the cohort of ``seed`` in the training layout.

    Writes ``Task 1/<PID>/`` (CT, PET, label), ``Task 2/<PID>/`` (CT, PET; hard links when possible), the Task 2
    CSV (missing values as empty cells) and ``synth_truth.csv``. Rows already in the CSVs for other patients are
    kept (so a cohort can be extended with ``start_index``). Returns the truth rows of the new cases.
    ``generator`` is "v1" (the library default, which the test fixtures use) or "v2" (the CLI default); ``split``
    ("train"/"test", v2 only) chooses the centre mix (the test split adds centres never seen in training).
    """
    _check_generator(generator)
    if split not in SPLITS:
        raise InputError(f"--split must be one of {SPLITS}, got {split!r}")
    if n_cases < 1:
        raise InputError(f"--cases must be >= 1, got {n_cases}")
    if size not in SIZES:
        raise InputError(f"--size must be one of {SIZES}, got {size!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (case_pid(seed, g, generator, split), case_seed(seed, g), size, str(out), generator)
        for g in range(start_index, start_index + n_cases)
    ]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
            results = list(pool.map(_write_training_case, jobs))
    else:
        results = []
        for k, job in enumerate(jobs):
            results.append(_write_training_case(job))
            log.info("case %d/%d %s written", k + 1, len(jobs), job[0])
    new_ids = {job[0] for job in jobs}
    for name, columns, new_rows in (
        (TASK2_CSV, CSV_COLUMNS, [r[0] for r in results]),
        (TRUTH_NAME, list(results[0][1]), [r[1] for r in results]),
    ):
        old = [r for r in _read_rows(out / name) if r.get("PatientID") not in new_ids]
        rows = sorted([*old, *new_rows], key=lambda r: int(str(r["PatientID"]).rsplit("-", 1)[1]))
        _write_rows(out / name, columns, rows)
    return [r[1] for r in results]


_EHR_MISSING_STYLES = ("absent", None, "NaN")


def write_gc_case(
    out_dir: Path | str,
    seed: int,
    size: str = "full",
    truth_out: Path | str | None = None,
    generator: str = "v1",
) -> SynthCase:
    """Write case 0 of the cohort of ``seed`` in the grand-challenge layout.

    ``out_dir/images/ct/<uuid>.mha``, ``out_dir/images/pet/<uuid>.mha`` (compressed; uuids derived from the seed)
    and ``out_dir/ehr.json`` (missing values as an absent key, null or "NaN"). The label and the truth go to
    ``truth_out`` only (``label.nii.gz``, ``truth.json``), never under ``out_dir``.
    """
    out = Path(out_dir)
    case = generate_case(case_pid(seed, 0, generator), case_seed(seed, 0), size, generator=generator)
    rng = np.random.default_rng([int(seed), 99])
    ct_id, pet_id = (str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(2))
    _write_image(case.ct, out / "images" / "ct" / f"{ct_id}.mha")
    _write_image(case.pet, out / "images" / "pet" / f"{pet_id}.mha")
    ehr: dict[str, Any] = {}
    for key, value in case.clinical.items():
        if value is not None:
            ehr[key] = value
            continue
        style = _EHR_MISSING_STYLES[int(rng.integers(len(_EHR_MISSING_STYLES)))]
        if style != "absent":
            ehr[key] = style
    write_text(json.dumps(ehr, indent=2) + "\n", out / "ehr.json")
    if truth_out is not None:
        truth_dir = Path(truth_out)
        _write_image(case.label, truth_dir / "label.nii.gz")
        truth = {
            **case.truth,
            "clinical_observed": case.clinical,
            "ct_file": f"{ct_id}.mha",
            "pet_file": f"{pet_id}.mha",
        }
        write_text(json.dumps(truth, indent=2) + "\n", truth_dir / "truth.json")
    return case


def cli_main(argv: list[str]) -> int:
    from hmvnet.app.parsers import synth_parser

    parser = synth_parser()
    args = parser.parse_args(argv)
    if args.format == "dicom":
        from hmvnet.synthetic.dicom import write_tree

        phantom = "simple" if args.size == "small" else "cohort"
        truth = write_tree(args.out, args.cases or 6, args.seed, phantom=phantom)
        log.info("DICOM tree of %d studies written to %s/export (truth.json beside it)", len(truth), args.out)
        return 0
    if args.report is not None:
        from hmvnet.synthetic.realism import write_report

        passed, total = write_report(args.report)
        print(f"{passed}/{total} realism figures within tolerance: {args.report / 'synth_realism.md'}")
        return 0
    if args.out is None or args.seed is None:
        parser.error("--out and --seed are required unless --report is given")
    if args.gc_case:
        case = write_gc_case(args.out, args.seed, args.size, args.truth_out, args.generator)
        log.info("grand-challenge case %s written to %s", case.pid, args.out)
        return 0
    if args.cases is None:
        parser.error("--cases is required unless --gc-case is given")
    truths = generate_cohort(
        args.out,
        args.cases,
        args.seed,
        start_index=args.start_index,
        size=args.size,
        workers=args.workers,
        generator=args.generator,
        split=args.split,
    )
    events = sum(t["Relapse"] for t in truths)
    log.info("%d cases written to %s (%d relapses)", len(truths), args.out, events)
    return 0
