"""Survival predictions and outcomes for ``hmvnet evaluate``: readers, the sign convention, and the C-index.

Predictions (``--risks``), one value per patient, in any of:

- a CSV with an ID column ``PatientID`` or ``case_id`` and a value column ``Prediction`` (the challenge's own
  submission table) or ``risk`` (e.g. the ``summary.csv`` of ``hmvnet predict``); an empty value is a failed case;
- a folder of per-case outputs ``DIR/<id>/rfs.json`` (``process.py`` / ``hmvnet process`` output folders), each a
  bare JSON number.

Sign (``--risk-convention``): ``risk`` (default) means higher = earlier relapse, as HECKTOR 2025's ``rfs.json`` and
this project's ``risk``; ``rfs2026`` means higher = longer recurrence-free survival, as HECKTOR 2026's ``rfs.json``
("RFS in days"), and is negated before scoring. The conversion happens once, in :func:`to_risk`.

Outcomes (``--clinical``): HECKTOR Task 2 CSV with ``PatientID``, ``RFS`` (days) and ``Relapse`` (1 event, 0
censored). Every patient with an outcome is scored; one without a prediction counts as a tie with every other
patient (the HECKTOR 2021 official rule) and is listed as missing. ``only_predicted=True`` scores only patients that
have a prediction row (for a clinical table that covers a larger cohort than the evaluated split).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hmvnet.data.task2 import outcomes, read_table
from hmvnet.errors import InputError
from hmvnet.evaluation.metrics import concordance_index_ci

log = logging.getLogger(__name__)

RISK_CONVENTIONS = {"risk": 1.0, "rfs2026": -1.0}  # factor that turns the value into a risk
VALUE_COLUMNS = ("Prediction", "risk")
RFS_JSON = "rfs.json"


def to_risk(values: pd.Series, convention: str) -> pd.Series:
    """Values in ``convention`` as risks (higher = earlier relapse): ``risk`` unchanged, ``rfs2026`` negated."""
    if convention not in RISK_CONVENTIONS:
        raise InputError(f"--risk-convention {convention!r}: expected one of {', '.join(RISK_CONVENTIONS)}")
    return values * RISK_CONVENTIONS[convention]


def _risk_table(path: Path) -> pd.Series:
    table = read_table(path, "--risks")
    present = [c for c in VALUE_COLUMNS if c in table.columns]
    if len(present) != 1:
        found = "both" if present else "neither"
        raise InputError(
            f"--risks {path}: expected one value column, 'Prediction' or 'risk', found {found} "
            f"(columns: {', '.join(map(str, table.columns))})"
        )
    ids = table["PatientID"]
    values = pd.to_numeric(table[present[0]], errors="coerce")
    bad = table[present[0]].notna() & values.isna()
    if bad.any():
        raise InputError(f"--risks {path}: non-numeric {present[0]} for {ids[bad].tolist()[:10]}")
    return pd.Series(values.to_numpy(dtype=float), index=ids, name="value")


def _rfs_folder(folder: Path) -> pd.Series:
    values: dict[str, float] = {}
    for case_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        path = case_dir / RFS_JSON
        if not path.is_file():
            continue
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"--risks {path}: not JSON ({exc}); expected a bare number") from exc
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"--risks {path}: holds {value!r}; expected a bare JSON number")
        values[case_dir.name] = float(value)
    if not values:
        raise InputError(f"--risks {folder}: no '<id>/{RFS_JSON}' in this folder (and it is not a CSV file)")
    return pd.Series(values, name="value", dtype=float)


def read_risks(path: Path, convention: str = "risk") -> pd.Series:
    """Patient ID -> risk (higher = earlier relapse; NaN for a failed case) from a CSV or an ``rfs.json`` folder
    (module docstring), converted from ``convention``."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"--risks {path}: no such file or folder (expected a CSV or a folder of <id>/rfs.json)"
        )
    values = _rfs_folder(path) if path.is_dir() else _risk_table(path)
    return to_risk(values, convention).rename("risk")


def read_outcomes(path: Path) -> pd.DataFrame:
    """``RFS`` (days) and ``Relapse`` (1 event, 0 censored) indexed by patient ID from the Task-2 table; rows
    missing either are dropped with a warning."""
    return outcomes(read_table(path, "--clinical", required=("RFS", "Relapse")), f"--clinical {path}")


@dataclass
class SurvivalResult:
    """Summary (``c_index``, ``c_index_ci``, counts), the per-patient table (``RFS``, ``Relapse``, ``risk``,
    ``risk_status``), patients without prediction (``missing``) and predictions without outcome (``unknown``)."""

    summary: dict[str, Any]
    per_patient: pd.DataFrame
    missing: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def evaluate_survival(
    clinical: Path,
    risks: Path,
    convention: str = "risk",
    n_bootstrap: int = 1000,
    seed: int = 0,
    only_predicted: bool = False,
) -> SurvivalResult:
    """Harrell's C-index of the predictions against the outcomes, with a percentile bootstrap 95 % interval."""
    table, risk = read_outcomes(Path(clinical)), read_risks(Path(risks), convention)
    unknown = sorted(set(risk.index) - set(table.index))
    ids = [i for i in table.index if i in risk.index] if only_predicted else list(table.index)
    if not set(ids) & set(risk.index):
        raise InputError(f"--risks {risks} and --clinical {clinical} share no patient ID")
    missing = sorted(set(ids) - set(risk.index))
    if missing:
        log.warning(
            "%d patient(s) without a prediction, counted as ties: %s", len(missing), ", ".join(missing[:20])
        )
    if unknown:
        log.warning("%d prediction(s) without outcome, ignored: %s", len(unknown), ", ".join(unknown[:20]))
    joined = table.loc[ids].assign(risk=risk.reindex(ids).to_numpy())
    joined["risk_status"] = np.where(
        joined.index.isin(missing), "missing", np.where(joined["risk"].isna(), "nan", "ok")
    )
    n_nan = int((joined["risk_status"] == "nan").sum())
    if n_nan:
        log.warning("%d patient(s) with an empty/NaN prediction, counted as ties", n_nan)
    c, low, high = concordance_index_ci(
        joined["RFS"].to_numpy(), joined["Relapse"].to_numpy().astype(int), joined["risk"].to_numpy(),
        n_bootstrap=n_bootstrap, seed=seed,
    )  # fmt: skip
    summary = {
        "c_index": c,
        "c_index_ci": [low, high],
        "n_survival": len(ids),
        "n_events": int(joined["Relapse"].sum()),
        "n_missing_risks": len(missing),
        "n_nan_risks": n_nan,
        "risk_convention": convention,
    }
    if math.isnan(c):
        log.warning("C-index undefined: no comparable pair (no event?)")
    return SurvivalResult(summary, joined, missing, unknown)
