"""The HECKTOR Task-2 table (``HECKTOR_2025_Training_Task_2.csv``): the one reader of the package.

One row per patient: ``PatientID``, the clinical variables (see :mod:`hmvnet.data.clinical_record`), ``RFS`` (days)
and ``Relapse`` (1 event, 0 censored); the 2026 release adds T/N stage columns. Read by training (outcomes and
clinical records), by ``hmvnet predict`` (clinical records beside a HECKTOR folder) and by ``hmvnet evaluate``
(``--clinical``). A patient ID column may also be spelled ``case_id`` (our own per-case tables).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from hmvnet.data.clinical_record import ClinicalRecord, record_from_mapping
from hmvnet.errors import InputError

log = logging.getLogger(__name__)

TASK2_CSV = "HECKTOR_2025_Training_Task_2.csv"
"""File name of the Task-2 table in the HECKTOR training layout (beside ``Task 1/``)."""
ID_COLUMNS = ("PatientID", "case_id")


def read_table(path: Path | str, role: str = "Task-2 table", required: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV as a DataFrame with a ``PatientID`` column (renamed from ``case_id`` when that is the spelling) of
    unique string IDs, and the ``required`` columns; unreadable, missing columns or duplicated IDs ->
    :class:`InputError` naming ``role`` and the file."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{role} {path}: cannot read as CSV ({exc})") from exc
    id_col = next((c for c in ID_COLUMNS if c in table.columns), None)
    if id_col is None:
        raise InputError(
            f"{role} {path}: no 'PatientID' or 'case_id' column (columns: {', '.join(table.columns)})"
        )
    table = table.rename(columns={id_col: "PatientID"})
    missing = [c for c in required if c not in table.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise InputError(f"{role} {path}: no {names} column (columns: {', '.join(table.columns)})")
    table["PatientID"] = table["PatientID"].astype(str)
    duplicated = table["PatientID"].duplicated()
    if duplicated.any():
        raise InputError(f"{role} {path}: duplicated IDs {sorted(set(table['PatientID'][duplicated]))[:10]}")
    return table


def find_table(root: Path) -> Path | None:
    """The Task-2 table inside ``root`` or beside it (``root`` may be the ``Task 1`` folder), if any."""
    for candidate in (Path(root) / TASK2_CSV, Path(root).parent / TASK2_CSV):
        if candidate.is_file():
            return candidate
    return None


def clinical_records(table: pd.DataFrame) -> dict[str, ClinicalRecord]:
    """Clinical record per PatientID of a table from :func:`read_table`."""
    return {str(row["PatientID"]): record_from_mapping(row.to_dict()) for _, row in table.iterrows()}


def outcomes(table: pd.DataFrame, source: Path | str, drop_incomplete: bool = True) -> pd.DataFrame:
    """``RFS`` (days) and ``Relapse`` (0/1) indexed by PatientID. Rows missing either are dropped with a warning
    (``drop_incomplete``) or refused; a Relapse other than 0/1 or a negative RFS is an :class:`InputError`."""
    out = pd.DataFrame(
        {
            "RFS": pd.to_numeric(table["RFS"], errors="coerce").to_numpy(),
            "Relapse": pd.to_numeric(table["Relapse"], errors="coerce").to_numpy(),
        },
        index=pd.Index(table["PatientID"].astype(str), name="PatientID"),
    )
    incomplete = out["RFS"].isna() | out["Relapse"].isna()
    if incomplete.any():
        if not drop_incomplete:
            raise InputError(f"{source}: RFS/Relapse missing for {out.index[incomplete].tolist()[:10]}")
        log.warning("%s: %d patient(s) without RFS/Relapse left out", source, int(incomplete.sum()))
        out = out[~incomplete]
    if not out["Relapse"].isin([0, 1]).all():
        raise InputError(f"{source}: 'Relapse' must be 0 or 1, found {sorted(out['Relapse'].unique())}")
    if (out["RFS"] < 0).any():
        raise InputError(f"{source}: negative RFS for {out.index[out['RFS'] < 0].tolist()[:10]}")
    return out
