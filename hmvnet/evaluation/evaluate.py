"""``hmvnet evaluate``: challenge metrics of predicted masks (and risks) against the truth.

    hmvnet evaluate --pred DIR --gt DIR [--clinical CSV --risks CSV] --out results.json [--per-case CSV]

Predictions (one per case ID, first layout found):
``DIR/<id>.nii.gz|.nii|.mha``, ``DIR/<id>/<id>.nii.gz|.nii|.mha``, ``DIR/<id>/mask.nii.gz|.mha`` (``hmvnet predict``
output) and ``DIR/<id>/images/tumor-lymph-node-segmentation/output.mha`` (a ``process.py`` output folder per case;
the 2026 name ``head-neck-tumor-segmentation`` too). Truth: the HECKTOR training layout ``GT/Task 1/<id>/<id>.nii.gz``
(GT may also be the ``Task 1`` folder) or flat ``GT/<id>.nii.gz|.nii|.mha``. Flat files whose name holds ``__`` (the
HECKTOR ``__CT``/``__PT`` images) are not masks and are skipped.

Checks, as the 2022 challenge checker did: a prediction holds only labels 0/1/2 and has the truth's spacing within
1e-6 mm, else :class:`~hmvnet.errors.InputError`. Other grid differences (origin, size, direction) are resampled by
nearest neighbour on physical geometry onto the truth grid and logged. A truth case without a prediction counts as
an empty prediction (warned); a prediction without truth is warned about and ignored.

Survival: ``--risks`` (columns ``PatientID`` or ``case_id``, and ``risk``: higher = earlier relapse, e.g. the
``summary.csv`` of ``hmvnet predict``) against ``--clinical`` (HECKTOR Task 2 CSV: ``PatientID``, ``RFS``,
``Relapse``). The C-index is computed over patients in both tables; a missing or NaN risk of a listed patient
counts as a tie; clinical patients absent from the risks table are warned about and left out (the clinical table
usually covers the whole cohort, the risks only the evaluated split).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from hmvnet.data.task2 import outcomes, read_table
from hmvnet.data.writers import json_ready, write_json, write_with
from hmvnet.errors import InputError
from hmvnet.evaluation.metrics import SegmentationScorer, concordance_index_ci
from hmvnet.geometry import space_differences

log = logging.getLogger(__name__)

MASK_SUFFIXES = (".nii.gz", ".nii", ".mha")
GC_OUTPUT_DIRS = ("tumor-lymph-node-segmentation", "head-neck-tumor-segmentation")
VALID_LABELS = (0, 1, 2)
SPACING_TOL_MM = 1e-6
SUMMARY_KEYS = ("gtvp_dsc", "gtvn_agg_dsc", "gtvn_agg_f1", "task1_score", "c_index")


def _strip_suffix(name: str) -> str | None:
    lower = name.lower()
    for suffix in MASK_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _flat_masks(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        stem = _strip_suffix(path.name)
        if path.is_file() and stem and "__" not in stem and not path.name.startswith("."):
            found.setdefault(stem, []).append(path)
    return found


def _single(case_id: str, paths: list[Path], role: str) -> Path:
    if len(paths) > 1:
        names = ", ".join(str(p) for p in paths)
        raise InputError(
            f"{role} of case {case_id}: {len(paths)} candidate files ({names}); expected exactly one"
        )
    return paths[0]


def find_predictions(folder: Path) -> dict[str, Path]:
    """Case ID -> prediction mask file for every layout named in the module docstring."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--pred {folder}: not a folder (expected one mask per case)")
    found = _flat_masks(folder)
    for case_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        cid = case_dir.name
        candidates = [case_dir / f"{cid}{s}" for s in MASK_SUFFIXES]
        candidates += [case_dir / f"mask{s}" for s in (".nii.gz", ".mha")]
        candidates += [case_dir / "images" / d / "output.mha" for d in GC_OUTPUT_DIRS]
        existing = [p for p in candidates if p.is_file()]
        if existing:
            found.setdefault(cid, []).extend(existing)
    return {cid: _single(cid, paths, "prediction") for cid, paths in found.items()}


def find_truths(folder: Path) -> dict[str, Path]:
    """Case ID -> truth mask file: ``GT/Task 1/<id>/<id>.nii.gz``, ``GT/<id>/<id>.nii.gz`` or ``GT/<id>.nii.gz``."""
    folder = Path(folder)
    if (folder / "Task 1").is_dir():
        folder = folder / "Task 1"
    if not folder.is_dir():
        raise InputError(f"--gt {folder}: not a folder (expected 'Task 1/<id>/<id>.nii.gz' or '<id>.nii.gz')")
    found = _flat_masks(folder)
    for case_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        existing = [case_dir / f"{case_dir.name}{s}" for s in MASK_SUFFIXES]
        existing = [p for p in existing if p.is_file()]
        if existing:
            found.setdefault(case_dir.name, []).extend(existing)
    if not found:
        entries = ", ".join(p.name for p in sorted(folder.iterdir())[:10]) or "nothing"
        raise InputError(
            f"--gt {folder}: no truth mask (expected 'Task 1/<id>/<id>.nii.gz' or '<id>.nii.gz'; found: {entries})"
        )
    return {cid: _single(cid, paths, "truth") for cid, paths in found.items()}


def _read_labels(path: Path, case_id: str, role: str) -> tuple[sitk.Image, np.ndarray]:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{role} of case {case_id}: cannot read {path} ({exc})") from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{role} of case {case_id}: {path} is {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} components per voxel; expected a 3D scalar label image"
        )
    array = sitk.GetArrayFromImage(image)
    values = np.unique(array)
    if not np.isin(values, VALID_LABELS).all():
        shown = ", ".join(f"{v:g}" for v in values[:20])
        raise InputError(
            f"{role} of case {case_id}: {path} holds labels {{{shown}}}; expected only 0, 1, 2 "
            "(0 background, 1 GTVp, 2 GTVn)"
        )
    return image, array.astype(np.uint8)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.9g}" for v in values) + ")"


def align_prediction(pred: sitk.Image, truth: sitk.Image, case_id: str) -> tuple[sitk.Image, bool]:
    """The prediction on the truth grid: a spacing difference over 1e-6 mm is an error (as in the 2022 checker);
    other differences (origin, size, direction) are resampled by nearest neighbour on physical geometry.

    Returns the (possibly resampled) uint8 image and whether it was resampled.
    """
    sp_p, sp_t = np.asarray(pred.GetSpacing()), np.asarray(truth.GetSpacing())
    if np.abs(sp_p - sp_t).max() > SPACING_TOL_MM:
        raise InputError(
            f"prediction of case {case_id}: spacing {_fmt(sp_p)} mm differs from the truth spacing "
            f"{_fmt(sp_t)} mm (tolerance {SPACING_TOL_MM} mm); predictions must be on the CT grid"
        )
    if not space_differences(pred, truth):
        return pred, False
    log.info(
        "%s: prediction grid (size %s, origin %s) differs from the truth grid (size %s, origin %s): "
        "nearest-neighbour resampled onto the truth grid",
        case_id, pred.GetSize(), pred.GetOrigin(), truth.GetSize(), truth.GetOrigin(),
    )  # fmt: skip
    resampled = sitk.Resample(pred, truth, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return resampled, True


@dataclass
class SegmentationScores:
    """Summary metrics, the per-case table and the warnings of one segmentation evaluation."""

    summary: dict[str, float]
    per_case: pd.DataFrame
    missing_predictions: list[str] = field(default_factory=list)
    unmatched_predictions: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)


def evaluate_folders(
    pred_dir: Path, gt_dir: Path, with_hd95: bool = True, empty_both: float = 1.0
) -> SegmentationScores:
    """Task-1 metrics of the predictions in ``pred_dir`` against the truths in ``gt_dir`` (layouts and checks in the
    module docstring). HD95 in mm, volumes in ml, per case."""
    truths = find_truths(Path(gt_dir))
    preds = find_predictions(Path(pred_dir))
    missing = sorted(set(truths) - set(preds))
    unmatched = sorted(set(preds) - set(truths))
    if missing:
        log.warning(
            "%d truth case(s) without prediction, scored as empty: %s", len(missing), ", ".join(missing)
        )
    if unmatched:
        log.warning("%d prediction(s) without truth, ignored: %s", len(unmatched), ", ".join(unmatched))
    scorer = SegmentationScorer(with_hd95=with_hd95, empty_both=empty_both)
    rows, resampled = [], []
    for cid in sorted(truths):
        truth_img, truth = _read_labels(truths[cid], cid, "truth")
        status, was_resampled = "ok", False
        if cid in preds:
            pred_img, _ = _read_labels(preds[cid], cid, "prediction")
            pred_img, was_resampled = align_prediction(pred_img, truth_img, cid)
            pred = sitk.GetArrayFromImage(pred_img).astype(np.uint8)
        else:
            status, pred = "missing_prediction", np.zeros_like(truth)
        if was_resampled:
            resampled.append(cid)
        row = scorer.update(pred, truth, truth_img.GetSpacing())
        rows.append({"case_id": cid, "status": status, "resampled": was_resampled, **row})
    return SegmentationScores(scorer.summary(), pd.DataFrame(rows), missing, unmatched, resampled)


# ------------------------------------------------------------------------------------------ survival
def read_risks(path: Path) -> pd.Series:
    """Patient ID -> risk (float, NaN allowed) from a CSV with ``PatientID`` or ``case_id`` and ``risk``."""
    table = read_table(path, "--risks", required=("risk",))
    risk = pd.to_numeric(table["risk"], errors="coerce")
    bad = table["risk"].notna() & risk.isna()
    if bad.any():
        raise InputError(f"--risks {path}: non-numeric risk for {table['PatientID'][bad].tolist()[:10]}")
    return pd.Series(risk.to_numpy(dtype=float), index=table["PatientID"], name="risk")


def read_outcomes(path: Path) -> pd.DataFrame:
    """``RFS`` (days) and ``Relapse`` (1 event, 0 censored) indexed by patient ID from the Task-2 table; rows
    missing either are dropped with a warning."""
    return outcomes(read_table(path, "--clinical", required=("RFS", "Relapse")), f"--clinical {path}")


def evaluate_survival(
    clinical: Path, risks: Path, n_bootstrap: int = 1000, seed: int = 0, sign: float = 1.0
) -> tuple[dict[str, Any], pd.DataFrame]:
    """C-index of the risks against the outcomes with a bootstrap 95 % interval, and the joined table.

    ``sign`` -1 when the file holds the 2026 rfs.json value (higher = longer RFS): the C-index uses its negative.
    """
    outcomes, risk = read_outcomes(Path(clinical)), sign * read_risks(Path(risks))
    ids = [i for i in risk.index if i in outcomes.index]
    left_out = sorted(set(outcomes.index) - set(risk.index))
    unknown = sorted(set(risk.index) - set(outcomes.index))
    if left_out:
        log.warning("%d clinical patient(s) without a risk row, left out of the C-index", len(left_out))
    if unknown:
        log.warning("%d risk row(s) without outcome, ignored: %s", len(unknown), ", ".join(unknown[:20]))
    if not ids:
        raise InputError(f"--risks {risks} and --clinical {clinical} share no patient ID")
    joined = outcomes.loc[ids].assign(risk=risk.loc[ids].to_numpy())
    n_nan = int(joined["risk"].isna().sum())
    if n_nan:
        log.warning("%d patient(s) with a NaN risk, counted as ties", n_nan)
    c, low, high = concordance_index_ci(
        joined["RFS"].to_numpy(), joined["Relapse"].to_numpy().astype(int), joined["risk"].to_numpy(),
        n_bootstrap=n_bootstrap, seed=seed,
    )  # fmt: skip
    result = {
        "c_index": c,
        "c_index_ci": [low, high],
        "n_survival": len(ids),
        "n_events": int(joined["Relapse"].sum()),
        "n_nan_risks": n_nan,
    }
    return result, joined


# ------------------------------------------------------------------------------------------ CLI
def _print_table(results: dict[str, Any]) -> None:
    lines = [f"{'metric':<16} {'value':>10}"]
    for key in (
        *SUMMARY_KEYS,
        "ba_t",
        "ba_n",
        "hecktor2026_score",
        "gtvn_tp",
        "gtvn_fp",
        "gtvn_fn",
        "n_cases",
        "n_survival",
        "n_events",
    ):
        if key in results:
            value = results[key]
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            if key == "c_index" and "c_index_ci" in results:
                low, high = results["c_index_ci"]
                text += f"  (95% CI {low:.4f}-{high:.4f})"
            lines.append(f"{key:<16} {text:>10}")
    print("\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    from hmvnet.app.parsers import evaluate_parser

    return evaluate_parser()


def cli_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if (args.pred is None) != (args.gt is None):
        raise InputError("--pred and --gt go together (both or neither)")
    if (args.clinical is None) != (args.risks is None):
        raise InputError("--clinical and --risks go together (both or neither)")
    if args.pred is None and args.clinical is None:
        raise InputError("nothing to evaluate: give --pred and --gt, and/or --clinical and --risks")
    results: dict[str, Any] = {}
    per_case: pd.DataFrame | None = None
    if args.pred is not None:
        seg = evaluate_folders(args.pred, args.gt, with_hd95=not args.no_hd95, empty_both=args.empty_both)
        results.update(seg.summary)
        results["missing_predictions"] = seg.missing_predictions
        results["unmatched_predictions"] = seg.unmatched_predictions
        results["resampled"] = seg.resampled
        per_case = seg.per_case
    if args.clinical is not None:
        sign = -1.0 if args.rfs_convention == "longer" else 1.0
        surv, joined = evaluate_survival(args.clinical, args.risks, args.n_bootstrap, args.seed, sign)
        results.update(surv)
        survival_rows = joined.rename_axis("case_id").reset_index()
        per_case = (
            survival_rows if per_case is None else per_case.merge(survival_rows, on="case_id", how="outer")
        )
    if args.stages is not None:
        from hmvnet.evaluation.staging_eval import combined_score, evaluate_staging

        if args.clinical is None:
            raise InputError("--stages needs --clinical (the table with T-stage and N-stage)")
        results.update(evaluate_staging(args.clinical, args.stages))
        results["hecktor2026_score"] = combined_score(results)
    _print_table(results)
    write_json(json_ready(results), args.out, indent=2)
    log.info("results written to %s", args.out)
    if args.per_case is not None and per_case is not None:
        write_with(args.per_case, lambda tmp: per_case.to_csv(tmp, index=False))
        log.info("per-case table written to %s", args.per_case)
    return 0
