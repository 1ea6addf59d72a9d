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

from hmvnet.data.task2 import read_table
from hmvnet.errors import InputError
from hmvnet.evaluation.metrics import balanced_accuracy, hecktor2026_score
from hmvnet.staging.rules import N_STAGES, T_STAGES
from hmvnet.staging.training import parse_stage
from hmvnet.staging.truth import N_COLUMN, T_COLUMN

log = logging.getLogger(__name__)

_STAGES = {"t": (T_COLUMN, "t_stage", T_STAGES), "n": (N_COLUMN, "n_stage", N_STAGES)}


def _by_id(path: Any, role: str, required: tuple[str, ...]) -> pd.DataFrame:
    return read_table(path, role, required).set_index("PatientID")


def evaluate_staging(clinical_path: Any, stages_path: Any) -> dict[str, Any]:
    """Balanced accuracy of T and N and the truth tables (rows truth, columns prediction, case counts)."""
    truth = _by_id(clinical_path, "--clinical", (T_COLUMN, N_COLUMN))
    pred = _by_id(stages_path, "--stages", ("t_stage", "n_stage"))
    results: dict[str, Any] = {}
    for stage, (truth_col, pred_col, scale) in _STAGES.items():
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
    is missing. The C-index in ``results`` must be the 2026-convention one (see ``--risk-convention``)."""
    parts = [results.get(k, math.nan) for k in ("gtvp_dsc", "gtvn_agg_dsc", "ba_t", "ba_n", "c_index")]
    gtvp, gtvn, ba_t, ba_n, c = (float(v) for v in parts)
    return hecktor2026_score(0.5 * (gtvp + gtvn), ba_t, ba_n, c)
