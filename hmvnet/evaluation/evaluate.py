"""``hmvnet evaluate``: challenge metrics of predicted masks (and risks) against the truth.

    hmvnet evaluate --pred DIR --gt DIR [--clinical CSV --risks CSV|DIR] [--out results.json] [--per-case CSV]

Without ``--out`` the summary JSON goes to stdout (the table and the log to stderr). Which prediction belongs to
which truth case: :mod:`hmvnet.evaluation.matching`; the survival inputs and the sign option: :mod:`hmvnet.evaluation.risks`;
the definitions: :mod:`hmvnet.evaluation.metrics` and ``docs/evaluation.md``.

Checks, as the 2022 challenge checker did: a prediction holds only labels 0/1/2 and has the truth's spacing within
1e-6 mm. A prediction failing a check (or unreadable) is reported with its reason and scored as an empty
prediction, as the platform scores a failed case; ``--strict`` makes it an error instead. Other grid differences
(origin, size, direction) are resampled by nearest neighbour on physical geometry onto the truth grid and logged.

A truth case without a prediction is listed and scored as an empty prediction; a prediction without truth is
listed and ignored; no prediction matching any truth case is an error. Exit code 0 when every case was scored from
a valid prediction (and every patient had a risk), 1 when some were missing or invalid (results are still written;
``--allow-missing`` exits 0), 2 on unusable input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from hmvnet.data.writers import json_ready, write_json, write_with
from hmvnet.errors import InputError
from hmvnet.evaluation.bootstrap import segmentation_intervals
from hmvnet.evaluation.matching import find_predictions, find_truths, match_folders
from hmvnet.evaluation.metrics import SegmentationScorer
from hmvnet.evaluation.risks import SurvivalResult, evaluate_survival
from hmvnet.geometry import space_differences

__all__ = ["build_parser", "cli_main", "evaluate_folders", "find_predictions", "find_truths"]

log = logging.getLogger(__name__)

VALID_LABELS = (0, 1, 2)
SPACING_TOL_MM = 1e-6
SUMMARY_KEYS = ("gtvp_dsc", "gtvn_agg_dsc", "gtvn_agg_f1", "task1_score", "c_index")


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
    """Summary metrics, the per-case table and the problems of one segmentation evaluation.

    ``invalid_predictions`` maps case ID -> reason for predictions scored as empty because a check failed.
    """

    summary: dict[str, Any]
    per_case: pd.DataFrame
    missing_predictions: list[str] = field(default_factory=list)
    unmatched_predictions: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)
    invalid_predictions: dict[str, str] = field(default_factory=dict)


def _load_prediction(path: Path, truth_img: sitk.Image, cid: str) -> tuple[np.ndarray, bool]:
    pred_img, _ = _read_labels(path, cid, "prediction")
    pred_img, was_resampled = align_prediction(pred_img, truth_img, cid)
    return sitk.GetArrayFromImage(pred_img).astype(np.uint8), was_resampled


def evaluate_folders(
    pred_dir: Path,
    gt_dir: Path,
    with_hd95: bool = True,
    empty_both: float = 1.0,
    strict: bool = False,
    n_bootstrap: int = 0,
    seed: int = 0,
) -> SegmentationScores:
    """Task-1 metrics of the predictions in ``pred_dir`` against the truths in ``gt_dir`` (module docstring):
    summary (with ``{metric}_ci`` bootstrap intervals when ``n_bootstrap`` > 0), per case HD95 in mm, volumes
    in ml, and ``status`` ``ok`` / ``missing_prediction`` / ``invalid_prediction`` with its ``reason``."""
    matching = match_folders(Path(pred_dir), Path(gt_dir))
    if matching.missing:
        log.warning(
            "%d truth case(s) without prediction, scored as empty: %s",
            len(matching.missing), ", ".join(matching.missing),
        )  # fmt: skip
    if matching.unmatched:
        log.warning(
            "%d prediction(s) without truth, ignored: %s",
            len(matching.unmatched),
            ", ".join(matching.unmatched),
        )
    scorer = SegmentationScorer(with_hd95=with_hd95, empty_both=empty_both)
    rows, resampled, invalid = [], [], {}
    for cid, (pred_path, truth_path) in matching.pairs.items():
        truth_img, truth = _read_labels(truth_path, cid, "truth")
        status, reason, was_resampled, pred = "ok", "", False, np.zeros_like(truth)
        if pred_path is None:
            status, reason = "missing_prediction", "no prediction file"
        else:
            try:
                pred, was_resampled = _load_prediction(pred_path, truth_img, cid)
            except InputError as exc:
                if strict:
                    raise
                status, reason = "invalid_prediction", str(exc)
                invalid[cid] = reason
                log.warning("%s scored as an empty prediction: %s", cid, reason)
        if was_resampled:
            resampled.append(cid)
        row = scorer.update(pred, truth, truth_img.GetSpacing())
        rows.append({"case_id": cid, "status": status, "reason": reason, "resampled": was_resampled, **row})
    per_case = pd.DataFrame(rows)
    summary: dict[str, Any] = scorer.summary()
    summary["n_missing_predictions"] = len(matching.missing)
    summary["n_invalid_predictions"] = len(invalid)
    if n_bootstrap > 0:
        summary.update(segmentation_intervals(per_case, n_bootstrap, seed))
    return SegmentationScores(summary, per_case, matching.missing, matching.unmatched, resampled, invalid)


# ------------------------------------------------------------------------------------------ CLI
def _format_table(results: dict[str, Any]) -> str:
    lines = [f"{'metric':<22} {'value':>10}"]
    keys = (*SUMMARY_KEYS, "gtvn_tp", "gtvn_fp", "gtvn_fn", "n_cases", "n_missing_predictions",
            "n_invalid_predictions", "n_survival", "n_events", "n_missing_risks", "ba_t", "ba_n",
            "hecktor2026_score")  # fmt: skip
    for key in keys:
        if key in results:
            value = results[key]
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            if f"{key}_ci" in results:
                low, high = results[f"{key}_ci"]
                text += f"  (95% CI {low:.4f}-{high:.4f})"
            lines.append(f"{key:<22} {text:>10}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from hmvnet.app.parsers import evaluate_parser

    return evaluate_parser()


def _check_pairs(args: argparse.Namespace) -> None:
    if (args.pred is None) != (args.gt is None):
        raise InputError("--pred and --gt go together (both or neither)")
    if (args.clinical is None) != (args.risks is None):
        raise InputError("--clinical and --risks go together (both or neither)")
    if args.pred is None and args.clinical is None:
        raise InputError("nothing to evaluate: give --pred and --gt, and/or --clinical and --risks")


def _merge(per_case: pd.DataFrame | None, surv: SurvivalResult) -> pd.DataFrame:
    rows = surv.per_patient.rename_axis("case_id").reset_index()
    return rows if per_case is None else per_case.merge(rows, on="case_id", how="outer")


def cli_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    _check_pairs(args)
    results: dict[str, Any] = {}
    per_case: pd.DataFrame | None = None
    incomplete = []
    if args.pred is not None:
        seg = evaluate_folders(
            args.pred, args.gt, with_hd95=not args.no_hd95, empty_both=args.empty_both, strict=args.strict,
            n_bootstrap=args.n_bootstrap, seed=args.seed,
        )  # fmt: skip
        results.update(seg.summary)
        results["missing_predictions"] = seg.missing_predictions
        results["invalid_predictions"] = seg.invalid_predictions
        results["unmatched_predictions"] = seg.unmatched_predictions
        results["resampled"] = seg.resampled
        per_case = seg.per_case
        if seg.missing_predictions or seg.invalid_predictions:
            incomplete.append(
                f"{len(seg.missing_predictions)} missing, {len(seg.invalid_predictions)} invalid mask(s)"
            )
    if args.clinical is not None:
        surv = evaluate_survival(
            args.clinical, args.risks, args.risk_convention, args.n_bootstrap, args.seed, args.only_predicted
        )
        results.update(surv.summary)
        results["missing_risks"] = surv.missing
        results["unmatched_risks"] = surv.unknown
        per_case = _merge(per_case, surv)
        n_nan = surv.summary["n_nan_risks"]
        if surv.missing or n_nan:
            incomplete.append(f"{len(surv.missing)} missing, {n_nan} empty/NaN risk(s)")
    if args.stages is not None:
        from hmvnet.evaluation.staging_eval import combined_score, evaluate_staging

        if args.clinical is None:
            raise InputError("--stages needs --clinical (the table with T-stage and N-stage)")
        results.update(evaluate_staging(args.clinical, args.stages))
        results["hecktor2026_score"] = combined_score(results)
    text = json.dumps(json_ready(results), indent=2)
    if args.out is None:
        print(_format_table(results), file=sys.stderr)
        print(text)
    else:
        print(_format_table(results))
        write_json(json_ready(results), args.out, indent=2)
        log.info("results written to %s", args.out)
    if args.per_case is not None and per_case is not None:
        table = per_case
        write_with(args.per_case, lambda tmp: table.to_csv(tmp, index=False))
        log.info("per-case table written to %s", args.per_case)
    if incomplete and not args.allow_missing:
        log.error(
            "incomplete submission (%s): exit code 1 (--allow-missing to accept)", "; ".join(incomplete)
        )
        return 1
    return 0
