"""``hmvnet train-staging``: fit the learned T / N classifiers, compare them out of fold with the majority class
and the geometry rule (balanced accuracy, the 2026 metric), and write ``staging/`` weights.

    hmvnet train-staging --data DIR --out weights/staging [--folds 5] [--seed 0] [--C 1.0]

``DIR`` is the HECKTOR training layout: ``Task 1/<PID>/<PID>.nii.gz`` (label) and ``<PID>__CT.nii.gz`` (for the
midline), and the Task-2 CSV with the 2026 columns ``T-stage`` ("T0"-"T4") and ``N-stage`` ("N0"-"N3").
Features come from the **truth** labels (at inference they come from the predicted segmentation). Rows whose
stage is missing or unparseable are left out of that stage; ``T0`` rows are left out of T (T0 is no 2026
output) and kept for N. Per stage, the learned classifier ships only if its out-of-fold balanced accuracy beats
the rule's; otherwise ``config.json`` says "rule".
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from hmvnet.data.clinical_record import ClinicalRecord, record_from_mapping
from hmvnet.data.task2 import TASK2_CSV, read_table
from hmvnet.data.writers import write_json
from hmvnet.errors import InputError
from hmvnet.evaluation.metrics import balanced_accuracy
from hmvnet.staging.geometry import StagingGeometry, staging_geometry
from hmvnet.staging.model import ClinicalLevels, StageClassifier, StagingModel, design_row, rule_stages
from hmvnet.staging.rules import N_STAGES, T_STAGES
from hmvnet.staging.truth import N_COLUMN, T_COLUMN

log = logging.getLogger(__name__)

SCALES = {"t": T_STAGES, "n": N_STAGES}
COLUMNS = {"t": T_COLUMN, "n": N_COLUMN}


def parse_stage(value: Any, stage: str) -> str | None:
    """ "T2", "t2", "T2b", "2" -> "T2"; N2a-c -> "N2"; "T0" kept (callers drop it for T); anything else None."""
    letter = stage.upper()
    match = re.fullmatch(rf"\s*{letter}?\s*([0-4])[a-cA-C]?\s*", str(value), flags=re.IGNORECASE)
    if match is None:
        return None
    text = f"{letter}{match.group(1)}"
    return text if text in SCALES[stage] or text == "T0" else None


def load_examples(data: Path) -> tuple[list[str], list[StagingGeometry], list[ClinicalRecord], pd.DataFrame]:
    """Geometry and clinical record of every CSV row that has a label; the CSV table (index PatientID)."""
    csv = data / TASK2_CSV
    if not csv.is_file():
        raise InputError(f"no {TASK2_CSV} in {data}")
    table = read_table(csv, "--data Task-2 table (2026 columns)", required=(T_COLUMN, N_COLUMN))
    ids, geometries, records = [], [], []
    for _, row in table.iterrows():
        pid = str(row["PatientID"])
        folder = data / "Task 1" / pid
        label_path, ct_path = folder / f"{pid}.nii.gz", folder / f"{pid}__CT.nii.gz"
        if not label_path.is_file():
            log.warning("%s: no label at %s: skipped", pid, label_path)
            continue
        ct = sitk.ReadImage(str(ct_path)) if ct_path.is_file() else None
        geometries.append(staging_geometry(sitk.ReadImage(str(label_path)), ct))
        records.append(record_from_mapping(row.to_dict()))
        ids.append(pid)
    if not ids:
        raise InputError(f"no labelled case of {csv} found under {data / 'Task 1'}")
    return ids, geometries, records, table.set_index(table["PatientID"].astype(str))


def _levels(records: list[ClinicalRecord]) -> ClinicalLevels:
    return ClinicalLevels(sorted({r.center_id for r in records if r.center_id is not None}))


def out_of_fold(
    geometries: list[StagingGeometry], records: list[ClinicalRecord], labels: dict[str, list[str | None]],
    folds: int, seed: int, C: float,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Out-of-fold balanced accuracy of majority class, rule and learned classifier, per stage."""
    from sklearn.model_selection import StratifiedKFold

    report: dict[str, dict[str, Any]] = {}
    for stage, y_all in labels.items():
        keep = [i for i, y in enumerate(y_all) if y is not None]
        y = [str(y_all[i]) for i in keep]
        pred = {"majority": [""] * len(keep), "rule": [rule_stages(geometries[i])[stage] for i in keep]}
        pred["learned"] = [""] * len(keep)
        counts = pd.Series(y).value_counts()
        n_splits = int(min(folds, max(2, counts.max())))
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        strata = [label if counts[label] >= n_splits else "rare" for label in y]
        for train, test in splitter.split(np.zeros(len(y)), strata):
            sub = [keep[i] for i in train]
            levels = _levels([records[i] for i in sub])
            X = np.stack([design_row(geometries[i], records[i], levels) for i in sub])
            model = StageClassifier(SCALES[stage], C).fit(X, [y[i] for i in train])
            majority = pd.Series([y[i] for i in train]).value_counts().index[0]
            for i in test:
                row = design_row(geometries[keep[i]], records[keep[i]], levels)
                pred["learned"][i] = model.predict(row)[0]
                pred["majority"][i] = majority
        report[stage] = {
            "cases": len(y),
            "classes": {k: int(v) for k, v in counts.sort_index().items()},
            **{f"ba_{name}": round(balanced_accuracy(y, p), 4) for name, p in pred.items()},
        }
    return report


def train_staging(data: Path, out: Path, folds: int = 5, seed: int = 0, C: float = 1.0) -> dict[str, Any]:
    ids, geometries, records, table = load_examples(Path(data))
    labels: dict[str, list[str | None]] = {}
    for stage, column in COLUMNS.items():
        values = [parse_stage(table.loc[pid, column], stage) for pid in ids]
        labels[stage] = [None if v == "T0" else v for v in values]
    t0 = sum(parse_stage(table.loc[pid, T_COLUMN], "t") == "T0" for pid in ids)
    report = out_of_fold(geometries, records, labels, folds, seed, C)
    levels = _levels(records)
    methods, classifiers = {}, {}
    for stage, y_all in labels.items():
        keep = [i for i, y in enumerate(y_all) if y is not None]
        X = np.stack([design_row(geometries[i], records[i], levels) for i in keep])
        classifiers[stage] = StageClassifier(SCALES[stage], C).fit(X, [str(y_all[i]) for i in keep])
        methods[stage] = "learned" if report[stage]["ba_learned"] > report[stage]["ba_rule"] else "rule"
        log.info("%s stage: out-of-fold balanced accuracy majority %.3f, rule %.3f, learned %.3f -> ships %s",
                 stage.upper(), report[stage]["ba_majority"], report[stage]["ba_rule"],
                 report[stage]["ba_learned"], methods[stage])  # fmt: skip
    extra = {"trained_on": {"cases": len(ids), "t0_rows_left_out_of_t": int(t0), "folds": folds, "seed": seed,
                            "C": C, "features_from": "truth labels"}, "out_of_fold": report}  # fmt: skip
    StagingModel(methods, classifiers, levels).save(Path(out), extra)
    write_json(report, Path(out) / "out_of_fold.json")
    return {"methods": methods, **report}


def cli_main(argv: list[str]) -> int:
    from hmvnet.app.parsers import train_staging_parser

    args = train_staging_parser().parse_args(argv)
    result = train_staging(args.data, args.out, args.folds, args.seed, args.C)
    for stage in ("t", "n"):
        r = result[stage]
        print(f"{stage.upper()}: {r['cases']} cases {r['classes']}; balanced accuracy out of fold: majority "
              f"{r['ba_majority']:.3f}, rule {r['ba_rule']:.3f}, learned {r['ba_learned']:.3f} -> ships "
              f"{result['methods'][stage]}")  # fmt: skip
    return 0
