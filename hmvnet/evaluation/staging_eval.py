"""HECKTOR 2026 additions to ``hmvnet evaluate``: T / N balanced accuracy with truth tables, and the combined
2026 score. Kept apart from evaluate.py's mask and risk matching.

Predicted stages: a CSV with ``PatientID`` or ``case_id`` and ``t_stage``, ``n_stage`` (``hmvnet predict
--outputs hecktor2026`` writes them in ``summary.csv``). Truth: the 2026 training table's ``T-stage`` and
``N-stage`` columns in the ``--clinical`` CSV. Cases with a missing or unparseable truth stage, and T0 truth
rows (T0 is no 2026 output), are left out of that stage (counted in the results).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from hmvnet.errors import InputError
from hmvnet.evaluation.metrics import balanced_accuracy, hecktor2026_score
from hmvnet.staging.rules import N_STAGES, T_STAGES
from hmvnet.staging.training import parse_stage
from hmvnet.staging.truth import N_COLUMN, T_COLUMN

log = logging.getLogger(__name__)

_STAGES = {"t": (T_COLUMN, "t_stage", T_STAGES), "n": (N_COLUMN, "n_stage", N_STAGES)}


def _by_id(table: pd.DataFrame, path: Any, role: str) -> pd.DataFrame:
    for column in ("PatientID", "case_id"):
        if column in table.columns:
            return table.set_index(table[column].astype(str))
    raise InputError(
        f"{role} {path}: no 'PatientID' or 'case_id' column (columns: {', '.join(table.columns)})"
    )


def evaluate_staging(clinical_path: Any, stages_path: Any) -> dict[str, Any]:
    """Balanced accuracy of T and N and the truth tables (rows truth, columns prediction, case counts)."""
    truth = _by_id(pd.read_csv(clinical_path), clinical_path, "--clinical")
    pred = _by_id(pd.read_csv(stages_path), stages_path, "--stages")
    results: dict[str, Any] = {}
    for stage, (truth_col, pred_col, scale) in _STAGES.items():
        if truth_col not in truth.columns:
            raise InputError(f"--clinical {clinical_path}: no {truth_col!r} column for the staging metrics")
        if pred_col not in pred.columns:
            raise InputError(f"--stages {stages_path}: no {pred_col!r} column")
        pairs = []
        for pid in pred.index.intersection(truth.index):
            t = parse_stage(truth.loc[pid, truth_col], stage)
            if t is not None and t != "T0":
                pairs.append((t, str(pred.loc[pid, pred_col])))
        if not pairs:
            raise InputError(
                f"--stages {stages_path} and --clinical {clinical_path} share no case with {truth_col}"
            )
        y, p = zip(*pairs)
        table = pd.crosstab(pd.Series(y, name="truth"), pd.Series(p, name="pred"))
        results[f"ba_{stage}"] = balanced_accuracy(list(y), list(p))
        results[f"n_{stage}_stage"] = len(pairs)
        results[f"{stage}_truth_table"] = {
            str(r): {str(c): int(table.loc[r, c]) for c in table.columns} for r in table.index
        }
        log.info("%s stage, %d cases (rows truth, columns prediction; classes %s):\n%s",
                 stage.upper(), len(pairs), ", ".join(scale), table.to_string())  # fmt: skip
    return results


def combined_score(results: dict[str, Any]) -> float:
    """The 2026 score from ``results`` (mean Dice = mean of GTVp Dice and GTVn aggregated Dice); NaN if a part
    is missing. The C-index in ``results`` must be the 2026-convention one (see ``--rfs-convention``)."""
    parts = [results.get(k, math.nan) for k in ("gtvp_dsc", "gtvn_agg_dsc", "ba_t", "ba_n", "c_index")]
    gtvp, gtvn, ba_t, ba_n, c = (float(v) for v in parts)
    return hecktor2026_score(0.5 * (gtvp + gtvn), ba_t, ba_n, c)
