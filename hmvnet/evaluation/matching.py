"""Which prediction file belongs to which truth case (``hmvnet evaluate``).

Truth (``--gt``): the HECKTOR training layout ``GT/Task 1/<id>/<id>.nii.gz`` (GT may also be the ``Task 1`` folder),
``GT/<id>/<id>.nii.gz`` or flat ``GT/<id>.nii.gz|.nii|.mha``. Flat files whose name holds ``__`` (the HECKTOR
``__CT``/``__PT`` images) are not masks and are skipped.

Predictions (``--pred``), for each case ID, every one of these is a candidate:

- flat files ``DIR/<id>.nii.gz|.nii|.mha``, also named ``<id>_prediction.*`` (the organisers' baseline) or
  ``<id>_pred.*``;
- ``DIR/<id>/<id>.*`` and ``DIR/<id>/mask.nii.gz|.mha`` (``hmvnet predict`` output);
- ``DIR/<id>/images/tumor-lymph-node-segmentation/output.mha`` (a ``process.py`` output folder per case; the 2026
  name ``head-neck-tumor-segmentation`` too).

A name is first taken as the case ID as it stands; only when no truth case has that ID is a ``_prediction`` or
``_pred`` suffix removed. Two candidates for one case are an error (which one to score would be a guess).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hmvnet.errors import InputError

MASK_SUFFIXES = (".nii.gz", ".nii", ".mha")
PREDICTION_NAME_SUFFIXES = ("_prediction", "_pred")
GC_OUTPUT_DIRS = ("tumor-lymph-node-segmentation", "head-neck-tumor-segmentation")


def strip_mask_suffix(name: str) -> str | None:
    """``name`` without its image extension (case-insensitive), or None when it is not a mask file name."""
    lower = name.lower()
    for suffix in MASK_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _flat_masks(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        stem = strip_mask_suffix(path.name)
        if path.is_file() and stem and "__" not in stem and not path.name.startswith("."):
            found.setdefault(stem, []).append(path)
    return found


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _single(case_id: str, paths: list[Path], role: str) -> Path:
    if len(paths) > 1:
        names = ", ".join(str(p) for p in paths)
        raise InputError(
            f"{role} of case {case_id}: {len(paths)} candidate files ({names}); expected exactly one"
        )
    return paths[0]


def find_truths(folder: Path) -> dict[str, Path]:
    """Case ID -> truth mask file (layouts in the module docstring); no truth at all is an :class:`InputError`."""
    folder = Path(folder)
    if (folder / "Task 1").is_dir():
        folder = folder / "Task 1"
    if not folder.is_dir():
        raise InputError(f"--gt {folder}: not a folder (expected 'Task 1/<id>/<id>.nii.gz' or '<id>.nii.gz')")
    found = _flat_masks(folder)
    for case_dir in _subfolders(folder):
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


def _prediction_candidates(folder: Path) -> dict[str, list[Path]]:
    """Name (before any ``_prediction``/``_pred`` is removed) -> candidate files."""
    found = _flat_masks(folder)
    for case_dir in _subfolders(folder):
        cid = case_dir.name
        candidates = [case_dir / f"{cid}{s}" for s in MASK_SUFFIXES]
        candidates += [case_dir / f"mask{s}" for s in (".nii.gz", ".mha")]
        candidates += [case_dir / "images" / d / "output.mha" for d in GC_OUTPUT_DIRS]
        existing = [p for p in candidates if p.is_file()]
        if existing:
            found.setdefault(cid, []).extend(existing)
    return found


def _case_id(name: str, truth_ids: set[str]) -> str:
    if name in truth_ids:
        return name
    for suffix in PREDICTION_NAME_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def find_predictions(folder: Path, truth_ids: set[str] | None = None) -> dict[str, Path]:
    """Case ID -> prediction file for every naming in the module docstring (``truth_ids`` decides whether a
    ``_pred`` suffix is part of an ID; without it, the suffix is removed only where the rest names no file)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--pred {folder}: not a folder (expected one mask per case)")
    candidates = _prediction_candidates(folder)
    ids = set(candidates) if truth_ids is None else set(truth_ids)
    found: dict[str, list[Path]] = {}
    for name, paths in candidates.items():
        found.setdefault(_case_id(name, ids), []).extend(paths)
    return {cid: _single(cid, sorted(paths), "prediction") for cid, paths in found.items()}


@dataclass(frozen=True)
class Matching:
    """Predictions matched to truth cases: ``pairs`` case ID -> (prediction or None, truth), in ID order;
    ``missing`` truth IDs without prediction; ``unmatched`` prediction IDs without truth."""

    pairs: dict[str, tuple[Path | None, Path]]
    missing: list[str]
    unmatched: list[str]


def match_folders(pred_dir: Path, gt_dir: Path) -> Matching:
    """Match ``pred_dir`` to ``gt_dir``; no prediction matching any truth case is an :class:`InputError` that lists
    what was found (a wrong folder or an unknown naming must not be scored as an all-empty submission)."""
    truths = find_truths(Path(gt_dir))
    preds = find_predictions(Path(pred_dir), set(truths))
    matched = set(truths) & set(preds)
    if not matched:
        shown = ", ".join(sorted(p.name for p in Path(pred_dir).iterdir())[:10]) or "nothing"
        raise InputError(
            f"--pred {pred_dir}: no prediction matches any of the {len(truths)} truth cases (e.g. "
            f"{sorted(truths)[0]}); expected '<id>.nii.gz', '<id>.mha', '<id>_prediction.nii.gz', '<id>_pred.nii.gz', "
            f"'<id>/<id>.nii.gz' or '<id>/images/<task>/output.mha'; found: {shown}"
        )
    pairs = {cid: (preds.get(cid), truths[cid]) for cid in sorted(truths)}
    return Matching(pairs, sorted(set(truths) - matched), sorted(set(preds) - set(truths)))
