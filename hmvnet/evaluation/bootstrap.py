"""Percentile bootstrap 95 % intervals of the Task-1 summary metrics over cases.

Each resample draws cases with replacement (``numpy.random.default_rng(seed)``); a resample with case multiplicities
``w`` has GTVp mean Dice ``w·d / w·1`` (over cases with a finite Dice), GTVn aggregated Dice
``2 w·overlap / w·(pred + truth)`` (volumes in ml, so the mm^3 weighting carries over) and detection F1
``2 w·tp / (2 w·tp + w·fp + w·fn)``, so all resamples are one matrix product per metric. The intervals describe
case-sampling uncertainty only (not the uncertainty of the truth masks).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

ROW_COLUMNS = ("dice_gtvp", "vol_overlap_gtvn_ml", "vol_pred_gtvn_ml", "vol_truth_gtvn_ml", "tp", "fp", "fn")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def _interval(values: np.ndarray, alpha: float) -> list[float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return [math.nan, math.nan]
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return [float(low), float(high)]


def segmentation_intervals(
    per_case: pd.DataFrame, n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, list[float]]:
    """``{metric}_ci: [low, high]`` for ``gtvp_dsc``, ``gtvn_agg_dsc``, ``gtvn_agg_f1`` and ``task1_score`` from a
    per-case table with the columns of :func:`hmvnet.evaluation.metrics.case_metrics` (``ROW_COLUMNS``)."""
    n = len(per_case)
    if n == 0 or n_bootstrap <= 0:
        return {
            f"{k}_ci": [math.nan, math.nan]
            for k in ("gtvp_dsc", "gtvn_agg_dsc", "gtvn_agg_f1", "task1_score")
        }
    cols = {c: per_case[c].to_numpy(dtype=np.float64) for c in ROW_COLUMNS}
    finite = ~np.isnan(cols["dice_gtvp"])
    dice = np.where(finite, cols["dice_gtvp"], 0.0)
    rng = np.random.default_rng(seed)
    w = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_bootstrap)]).astype(
        np.float64
    )
    gtvp = _ratio(w @ dice, w @ finite.astype(np.float64))
    agg = _ratio(
        2 * (w @ cols["vol_overlap_gtvn_ml"]), w @ (cols["vol_pred_gtvn_ml"] + cols["vol_truth_gtvn_ml"])
    )
    tp, fp, fn = w @ cols["tp"], w @ cols["fp"], w @ cols["fn"]
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    score = 0.5 * gtvp + 0.25 * agg + 0.25 * f1
    return {
        "gtvp_dsc_ci": _interval(gtvp, alpha),
        "gtvn_agg_dsc_ci": _interval(agg, alpha),
        "gtvn_agg_f1_ci": _interval(f1, alpha),
        "task1_score_ci": _interval(score, alpha),
    }
