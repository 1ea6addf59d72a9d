"""Run-level guards of the per-case pipeline: output-folder hygiene, the per-case time budget with its fallback
risk, and the CT/PET overlap check. Kept apart from :mod:`hmvnet.app.pipeline` so the pipeline stays a sequence
of stage calls.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import SimpleITK as sitk

from hmvnet.data.writers import PARTIAL_MARK
from hmvnet.errors import InputError
from hmvnet.geometry import physical_bounds

log = logging.getLogger("hmvnet")

T = TypeVar("T")

ENV_CASE_BUDGET = "HMVNET_CASE_BUDGET_S"
DEFAULT_CASE_BUDGET_S = 480.0
"""Seconds from the start of a case by which its required outputs are written: 8 min, inside the platform's
10 min per case (HECKTOR 2025 Task 1; 15 min Task 2, 25 min for everything in 2026)."""
SURVIVAL_RESERVE_S = 5.0
"""Seconds kept back from the budget for writing rfs.json after the survival step."""
MIN_OVERLAP_FRACTION = 0.9
"""CT/PET overlap along an axis below this fraction of the crop extent there (clipped to the CT) is warned about."""


def case_budget_s(value: float | str | None = None) -> float:
    """The per-case time budget in s: ``value``, else ``$HMVNET_CASE_BUDGET_S``, else the default (480 s)."""
    raw = value if value is not None else os.environ.get(ENV_CASE_BUDGET)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return DEFAULT_CASE_BUDGET_S
    try:
        budget = float(raw)
    except ValueError as exc:
        raise InputError(f"{ENV_CASE_BUDGET}={raw!r}: expected a number of seconds > 0") from exc
    if not np.isfinite(budget) or budget <= 0:
        raise InputError(f"{ENV_CASE_BUDGET}={raw!r}: expected a number of seconds > 0")
    return budget


def run_within(fn: Callable[[], T], seconds: float) -> tuple[T | None, BaseException | None, bool]:
    """Run ``fn`` on a daemon thread for at most ``seconds``: ``(value, exception, timed_out)``.

    A call that overruns keeps running in the background (Python cannot stop a thread), but the caller goes on;
    in ``process.py`` the process exits after writing the outputs and the daemon thread dies with it.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller, which decides
            box["error"] = exc

    thread = threading.Thread(target=target, name="hmvnet-budgeted", daemon=True)
    thread.start()
    thread.join(max(0.0, seconds))
    if thread.is_alive():
        return None, None, True
    return box.get("value"), box.get("error"), False


def fallback_risk(gtvp_ml: float, gtvn_ml: float) -> float:
    """The documented simpler risk used when the survival model cannot run within the budget:
    ``log(1 + GTVp ml + GTVn ml)``, the total tumour burden (higher = earlier relapse), the strongest single
    imaging prognostic factor in head-and-neck cancer. It ranks cases, but is not on the fusion model's scale."""
    return float(np.log1p(max(0.0, gtvp_ml) + max(0.0, gtvn_ml)))


def check_output_writable(folder: Path) -> None:
    """Create ``folder`` if needed and write (then remove) a probe file: a read-only, full or non-directory output
    is reported in one line before any model is loaded."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".hmvnet-probe.", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise InputError(f"output folder {folder} is not writable: {exc.strerror or exc}") from exc


def clear_outputs(output_dir: Path, relative_paths: Iterable[Path]) -> list[Path]:
    """Remove earlier runs' outputs (``relative_paths`` under ``output_dir``) and orphan ``.partial`` files beside
    them, so the folder holds only what this run writes; returns what was removed."""
    removed = []
    for rel in relative_paths:
        path = Path(output_dir) / rel
        candidates = [path]
        if path.parent.is_dir():
            candidates += list(path.parent.glob(f".{path.name}.*{PARTIAL_MARK}*"))
        for candidate in candidates:
            if candidate.is_file() or candidate.is_symlink():
                candidate.unlink()
                removed.append(candidate)
    if removed:
        log.info(
            "removed %d output(s) of an earlier run: %s", len(removed), ", ".join(str(p) for p in removed)
        )
    return removed


def remove_orphan_partials(folder: Path) -> list[Path]:
    """Remove ``.<name>.<random>.partial*`` files left under ``folder`` by a killed run."""
    removed = [p for p in Path(folder).rglob(f".*{PARTIAL_MARK}*") if p.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        log.info("removed %d orphan partial file(s) of a killed run under %s", len(removed), folder)
    return removed


def file_digest(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file, recorded in result.json and checked on resume."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return {"bytes": Path(path).stat().st_size, "sha256": digest.hexdigest()}


def overlap_warning(ct: sitk.Image, pet: sitk.Image, crop_size_mm: tuple[float, float, float]) -> str | None:
    """A warning when the CT/PET overlap along some axis covers less than :data:`MIN_OVERLAP_FRACTION` of the
    head-and-neck crop there (the crop clipped to the CT's extent); ``None`` when it covers it."""
    ct_lo, ct_hi = physical_bounds(ct)
    pet_lo, pet_hi = physical_bounds(pet)
    overlap = np.minimum(ct_hi, pet_hi) - np.maximum(ct_lo, pet_lo)
    needed = np.minimum(np.asarray(crop_size_mm, dtype=float), ct_hi - ct_lo)
    short = [
        f"{axis} {max(o, 0.0):.0f} mm of {n:.0f} mm"
        for axis, o, n in zip("xyz", overlap, needed)
        if o < MIN_OVERLAP_FRACTION * n
    ]
    if not short:
        return None
    return (
        "CT/PET overlap does not cover the head-and-neck crop (" + ", ".join(short) + "): the segmentation "
        "outside the overlap has no PET and is unreliable"
    )
