"""Batch inference (``hmvnet predict``): many cases, models loaded once.

Input: a folder of cases in the HECKTOR training layout (``Task 1/<PID>/...`` or ``<PID>/<PID>__CT.nii.gz``), the
grand-challenge layout per case (``<case>/images/ct``, ``<case>/images/pet``, ``<case>/ehr.json``) or DICOM series
(``<case>/CT/``, ``<case>/PET/``). For HECKTOR folders the clinical table ``HECKTOR_2025_Training_Task_2.csv`` beside
``Task 1`` is used when present.

Output: ``OUT/<case>/<case>.nii.gz`` (or ``.mha``; on the CT grid), ``OUT/<case>/result.json`` (status, risk,
volumes, counts, timings; its presence with status "ok" marks a finished case), optional ``OUT/<case>/qc.png``, and
``OUT/summary.csv`` (+ ``OUT/qc.html``) rebuilt from every ``result.json`` at the end of each run, so shards and
resumed runs compose.

A DICOM export tree (studies mixed, series in sub-folders, any file names) is indexed once and gives one case per
study (:mod:`hmvnet.data.dicom_index`); studies without a usable CT/PET pair get ``result.json`` with status
"skipped" and the reason. ``--dicom-out seg,rtstruct`` adds ``<case>_seg.dcm`` / ``<case>_rtstruct.dcm``
(:mod:`hmvnet.app.dicom_export`). ``result.json`` records ``suv_factor`` and ``suv_source`` (docs/batch.md).

Sharding for job arrays: ``--shard K/N`` (K = 0..N-1) takes every N-th case starting at K. Without ``--shard`` it
is read from the environment: SLURM (``SLURM_ARRAY_TASK_ID`` - ``SLURM_ARRAY_TASK_MIN`` of
``SLURM_ARRAY_TASK_COUNT``) or a Kubernetes Indexed Job (``JOB_COMPLETION_INDEX`` of ``HMVNET_SHARD_COUNT``, set it
to the Job's ``completions``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import SimpleITK as sitk
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from hmvnet import Label
from hmvnet.app import guards
from hmvnet.app.case_log import case_context
from hmvnet.app.profiles import PROFILES
from hmvnet.data.cases import Case, detect_layout, discover_cases, read_case
from hmvnet.data.clinical_record import ClinicalRecord
from hmvnet.data.task2 import clinical_records, find_table, read_table
from hmvnet.data.writers import json_ready, write_json, write_text, write_with
from hmvnet.errors import InputError
from hmvnet.survival.masks import count_components

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = [
    "case_id", "status", "error", "risk", "gtvp_ml", "gtvn_ml", "n_gtvp", "n_gtvn", "rfs_value", "t_stage", "n_stage",
    "read_s", "preprocess_s", "inference_s", "postprocess_s", "survival_s", "total_s", "mask", "qc_png",
    "suv_factor", "suv_source", "dicom_seg", "dicom_rtstruct",
]  # fmt: skip
RESULT_EXTRA = ("mask_bytes", "mask_sha256", "warnings", "risk_source")
"""Kept in result.json beyond the summary columns (the mask's size and sha256 are checked on resume)."""


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError as exc:
        raise InputError(f"--shard {text!r}: expected K/N with integers, e.g. 0/4") from exc
    if n < 1 or not 0 <= k < n:
        raise InputError(f"--shard {text!r}: expected 0 <= K < N")
    return k, n


def shard_from_environment(environ: dict[str, str] | None = None) -> tuple[int, int]:
    """(K, N) from a SLURM job array or a Kubernetes Indexed Job (see the module docstring); (0, 1) otherwise."""
    env = os.environ if environ is None else environ
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        k = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        return parse_shard(f"{k}/{env['SLURM_ARRAY_TASK_COUNT']}")
    if "JOB_COMPLETION_INDEX" in env:
        if "HMVNET_SHARD_COUNT" not in env:
            raise InputError(
                "JOB_COMPLETION_INDEX is set but HMVNET_SHARD_COUNT is not: set it to the Job's completions"
            )
        return parse_shard(f"{env['JOB_COMPLETION_INDEX']}/{env['HMVNET_SHARD_COUNT']}")
    return 0, 1


def load_clinical_table(root: Path) -> dict[str, ClinicalRecord]:
    """Clinical records by PatientID from a HECKTOR Task 2 CSV next to (or inside) ``root``, if any."""
    path = find_table(root)
    return clinical_records(read_table(path)) if path is not None else {}


def _is_done(case_dir: Path) -> bool:
    """A finished case: result.json says "ok" and its mask still has the recorded size and sha256."""
    path = case_dir / "result.json"
    if not path.is_file():
        return False
    try:
        result = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    if not isinstance(result, dict) or result.get("status") != "ok":
        return False
    mask = case_dir.parent / str(result.get("mask", ""))
    if not result.get("mask_sha256") or not mask.is_file():
        log.warning("%s: result.json says ok but its mask is missing or unrecorded: redone", case_dir.name)
        return False
    if guards.file_digest(mask) != {"bytes": result.get("mask_bytes"), "sha256": result["mask_sha256"]}:
        log.warning(
            "%s: %s differs from the size/sha256 in result.json (truncated?): redone", case_dir.name, mask
        )
        return False
    return True


def skipped_folders(input_dir: Path, cases: list[Path]) -> list[dict[str, str]]:
    """Every visible sub-folder of the case root that is not a case, with the reason (logged)."""
    root = Path(input_dir)
    for task in ("Task 1", "Task 2"):
        if (root / task).is_dir():
            root = root / task
            break
    found = {c.resolve() for c in cases}
    rows = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.resolve() in found:
            continue
        try:
            detect_layout(sub)
            reason = "not a case folder"
        except InputError as exc:
            reason = str(exc)
        log.warning("skipped %s: %s", sub.name, reason)
        rows.append({"case_id": sub.name, "status": "skipped", "error": reason})
    return rows


def predict_cohort(
    pipeline,
    input_dir: Path,
    output_dir: Path,
    outputs: str = "both",
    mask_format: str = "nii.gz",
    overwrite: bool = False,
    shard: tuple[int, int] = (0, 1),
    num_workers: int = 1,
    qc: bool = False,
    dicom_out: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Run ``pipeline`` (a :class:`hmvnet.app.pipeline.Pipeline`) over every case; returns the summary table."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    cases = discover_cases(input_dir)
    if not cases:
        raise InputError(
            f"no cases found under {input_dir} (expected HECKTOR, grand-challenge or DICOM layouts)"
        )
    skipped = skipped_folders(input_dir, cases)
    if output_dir.is_dir():
        guards.remove_orphan_partials(output_dir)
    k, n = shard
    mine = cases[k::n]
    clinical = load_clinical_table(input_dir)
    mine = [c for c in mine if not _skip_unusable(c, output_dir)]
    todo = [c for c in mine if overwrite or not _is_done(output_dir / c.name)]
    log.info("%d cases found, %d in shard %d/%d, %d to do (%d finished before)",
             len(cases), len(mine), k, n, len(todo), len(mine) - len(todo))  # fmt: skip

    start = time.perf_counter()

    def read(folder: Path) -> Case:
        return read_case(folder, clinical.get(folder.name))

    # log lines (e.g. the sliding window's progress) are written above the progress bar, not through it
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool, logging_redirect_tqdm():
        ahead = max(1, num_workers)
        futures: list[Future] = [pool.submit(read, c) for c in todo[:ahead]]
        with logging_redirect_tqdm():
            for index, folder in enumerate(tqdm(todo, desc="cases", unit="case")):
                if index + ahead < len(todo):
                    futures.append(pool.submit(read, todo[index + ahead]))
                with case_context(folder.name):
                    _run_one(
                        pipeline, folder, futures[index], output_dir, outputs, mask_format, qc, dicom_out
                    )
            futures[index] = None  # type: ignore[call-overload]  # release the case's images
    seconds = time.perf_counter() - start
    if todo:
        log.info("%d cases in %.1f s this run: %.0f cases/hour (model loading excluded)",
                 len(todo), seconds, 3600 * len(todo) / seconds)  # fmt: skip
    return write_summary(output_dir, qc, skipped)


def _skip_unusable(case: Any, output_dir: Path) -> bool:
    """A DICOM study without a usable CT/PET pair: log it, write result.json "skipped" with the reason."""
    if getattr(case, "usable", True):
        return False
    log.warning("%s skipped: %s", case.name, case.reason)
    row = {"case_id": case.name, "status": "skipped", "error": case.reason}
    write_json(row, output_dir / case.name / "result.json")
    return True


def _run_one(
    pipeline, folder: Any, future: Future, output_dir: Path, outputs: str, mask_format: str, qc: bool,
    dicom_out: tuple[str, ...] = (),
) -> None:  # fmt: skip
    case_dir = output_dir / folder.name
    case_dir.mkdir(parents=True, exist_ok=True)
    guards.clear_outputs(case_dir, [Path(f"{folder.name}.{mask_format}"), Path("qc.png"), Path("error.txt")])
    row: dict[str, Any] = {"case_id": folder.name}
    start = time.perf_counter()
    try:
        read_start = time.perf_counter()
        case: Case = future.result()
        row["read_s"] = time.perf_counter() - read_start
        mask_path = case_dir / f"{folder.name}.{mask_format}"
        result = pipeline.run(case, case_dir, outputs, segmentation_path=mask_path)
        for key in ("rfs", "t_stage_json", "n_stage_json"):
            result.pop(key, None)
        row.update(result)
        row["mask"] = str(mask_path.relative_to(output_dir))
        digest = guards.file_digest(mask_path)
        row["mask_bytes"], row["mask_sha256"] = digest["bytes"], digest["sha256"]
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path)))
        spacing = case.ct.GetSpacing()
        row["n_gtvp"] = count_components(labels == Label.GTVP, spacing)
        row["n_gtvn"] = count_components(labels == Label.GTVN, spacing)
        row["suv_factor"], row["suv_source"] = case.suv_factor, case.suv_source
        if dicom_out:
            from hmvnet.app.dicom_export import model_note, write_dicom_outputs

            label = sitk.ReadImage(str(mask_path))
            row.update(write_dicom_outputs(label, case.dicom_ct, case_dir, folder.name, dicom_out,
                                           model_note(pipeline.weights_dir)))  # fmt: skip
        if qc:
            from hmvnet.app.qc import model_version, save_case_qc

            weights = getattr(getattr(getattr(pipeline, "segmenter", None), "config", None), "weights", None)
            png = save_case_qc(case.ct, case.pet, sitk.ReadImage(str(mask_path)), case_dir / "qc.png",
                               folder.name, model_version(weights))  # fmt: skip
            row["qc_png"] = str(png.relative_to(output_dir))
        row["status"] = "ok"
    except Exception as exc:  # one failing case (HMVNetError or any other) must not stop the cohort
        row["status"] = "failed"
        row["error"] = f"{type(exc).__name__}: {exc}"
        write_text(traceback.format_exc(), case_dir / "error.txt")
        log.error("%s failed: %s", folder.name, row["error"])
    row["total_s"] = time.perf_counter() - start
    row.pop("segmentation", None)
    keep = (*SUMMARY_COLUMNS, *RESULT_EXTRA)
    write_json(json_ready({k: v for k, v in row.items() if k in keep}), case_dir / "result.json")


SUMMARY_DECIMALS = {"gtvp_ml": 2, "gtvn_ml": 2, **{c: 1 for c in SUMMARY_COLUMNS if c.endswith("_s")}}
"""Decimals written to summary.csv: volumes to 0.01 ml, times to 0.1 s (risk: 6 significant digits)."""


def rounded(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as summary.csv shows it: :data:`SUMMARY_DECIMALS`, risk to 6 significant digits (result.json
    keeps full precision)."""
    out = table.copy()
    for column, decimals in SUMMARY_DECIMALS.items():
        out[column] = pd.to_numeric(out[column], errors="coerce").round(decimals)
    for column in ("n_gtvp", "n_gtvn"):
        out[column] = pd.to_numeric(out[column], errors="coerce").round().astype("Int64")
    risk = pd.to_numeric(out["risk"], errors="coerce")
    out["risk"] = [float(f"{v:.6g}") if pd.notna(v) else v for v in risk]
    return out


def write_summary(
    output_dir: Path, qc: bool = False, skipped: list[dict[str, str]] | None = None
) -> pd.DataFrame:
    """Rebuild ``summary.csv`` (and ``qc.html``) from every ``<case>/result.json`` under ``output_dir``, plus a
    "skipped" row (with the reason) for every input folder that is not a case."""
    rows: list[dict[str, Any]] = []
    for path in sorted(output_dir.glob("*/result.json")):
        try:
            rows.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            log.warning("%s is not valid JSON: skipped in the summary", path)
    table = pd.DataFrame(rows + list(skipped or []), columns=SUMMARY_COLUMNS)
    write_with(output_dir / "summary.csv", lambda tmp: rounded(table).to_csv(tmp, index=False))
    if qc or (output_dir / "qc.html").is_file():
        from hmvnet.app.qc import write_contact_sheet

        write_contact_sheet(
            [{**r, "qc_png": str(output_dir / r["qc_png"]) if r.get("qc_png") else None} for r in rows],
            output_dir,
        )
    return table


def cli_main(argv: list[str]) -> int:
    from hmvnet.app.parsers import predict_parser

    args = predict_parser().parse_args(argv)
    from hmvnet.app.pipeline import Pipeline

    shard = parse_shard(args.shard) if args.shard else shard_from_environment()
    from hmvnet.app.dicom_export import parse_dicom_outputs

    dicom_out = parse_dicom_outputs(args.dicom_out)
    pipeline = Pipeline.load(
        args.weights, args.device, PROFILES[args.outputs].needs_survival, folds=args.folds, tta=args.tta
    )
    table = predict_cohort(pipeline, args.input, args.output, args.outputs, args.mask_format, args.overwrite,
                           shard, args.num_workers, args.qc, dicom_out)  # fmt: skip
    ok = int((table["status"] == "ok").sum())
    failed = table[~table["status"].isin(["ok", "skipped"])]
    skipped = table[table["status"] == "skipped"]
    log.info(
        "%d ok, %d failed, %d skipped; summary: %s",
        ok,
        len(failed),
        len(skipped),
        args.output / "summary.csv",
    )
    for _, row in skipped.iterrows():
        log.warning("skipped: %s: %s", row["case_id"], row["error"])
    for _, row in failed.iterrows():
        log.error("failed: %s: %s", row["case_id"], row["error"])
    return 0 if failed.empty else 1
