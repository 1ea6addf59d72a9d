#!/usr/bin/env python
"""Compare a container's output folder with the expected outputs of the sample case.

    python scripts/compare_outputs.py OUT EXPECTED [--files REL ...] [--absent REL ...]
                                      [--dice-min 0.99] [--risk-tol 1e-4] [--grid-tol 1e-6]

Every file under EXPECTED (or only ``--files``, paths relative to the folders) must exist in OUT and match:

- label images (``.mha``, ``.nii.gz``, ...): same size, and spacing, origin and direction within ``--grid-tol``
  (mm; the 2022 checker's 1e-6), labels within {0, 1, 2}, and a Dice >= ``--dice-min`` for each of label 1
  (GTVp) and 2 (GTVn); a label empty in both counts as a match.
- JSON files: numbers (``rfs.json``, a risk: higher = earlier relapse) within ``--risk-tol`` and finite,
  anything else equal.

``--absent REL`` requires that OUT does not hold REL (e.g. ``rfs.json`` for the segmentation-only profile).
Prints one line per check and exits 0 when all pass, 1 on any mismatch, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

IMAGE_SUFFIXES = (".mha", ".mhd", ".nii.gz", ".nii", ".nrrd")
LABELS = {1: "GTVp", 2: "GTVn"}


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean arrays; 1.0 when both are empty."""
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(pred, truth).sum()) / total


def compare_label(out: Path, expected: Path, dice_min: float, grid_tol: float) -> list[str]:
    """Problems found comparing two label images (empty list: they match)."""
    got, want = sitk.ReadImage(str(out)), sitk.ReadImage(str(expected))
    problems = []
    if got.GetSize() != want.GetSize():
        return [f"{out}: size {got.GetSize()} != expected {want.GetSize()}"]
    for name in ("Spacing", "Origin", "Direction"):
        a, b = np.asarray(getattr(got, f"Get{name}")()), np.asarray(getattr(want, f"Get{name}")())
        if np.max(np.abs(a - b)) > grid_tol:
            problems.append(f"{out}: {name.lower()} {tuple(a)} != expected {tuple(b)} (tolerance {grid_tol})")
    if got.GetPixelID() != want.GetPixelID():
        problems.append(
            f"{out}: pixel type {got.GetPixelIDTypeAsString()} != expected {want.GetPixelIDTypeAsString()}"
        )
    g, w = sitk.GetArrayViewFromImage(got), sitk.GetArrayViewFromImage(want)
    stray = sorted(set(np.unique(g).tolist()) - {0, *LABELS})
    if stray:
        problems.append(f"{out}: labels {stray} outside {{0, 1, 2}}")
    for label, name in LABELS.items():
        score = dice(g == label, w == label)
        status = "ok" if score >= dice_min else "MISMATCH"
        print(f"  {out.name} label {label} ({name}): Dice {score:.5f} (>= {dice_min}) {status}")
        if score < dice_min:
            problems.append(f"{out}: {name} Dice {score:.5f} < {dice_min}")
    return problems


def compare_json(out: Path, expected: Path, tol: float) -> list[str]:
    try:
        got = json.loads(out.read_text())
    except ValueError as exc:
        return [f"{out}: not valid JSON ({exc})"]
    want = json.loads(expected.read_text())
    number = (int, float)
    if isinstance(want, number) and not isinstance(want, bool):
        if not isinstance(got, number) or isinstance(got, bool) or not math.isfinite(got):
            return [f"{out}: {got!r} is not a finite number (expected {want})"]
        diff = abs(float(got) - float(want))
        print(f"  {out.name}: {got} vs expected {want} (|diff| {diff:.2e} <= {tol})")
        return [] if diff <= tol else [f"{out}: {got} differs from expected {want} by {diff:.2e} > {tol}"]
    return [] if got == want else [f"{out}: {got!r} != expected {want!r}"]


def expected_files(expected_dir: Path) -> list[Path]:
    return sorted(
        p.relative_to(expected_dir)
        for p in expected_dir.rglob("*")
        if p.is_file() and (p.name.endswith(IMAGE_SUFFIXES) or p.suffix == ".json")
    )


def compare(
    out_dir: Path,
    expected_dir: Path,
    files: list[Path] | None = None,
    absent: list[Path] = (),  # type: ignore[assignment]
    dice_min: float = 0.99,
    risk_tol: float = 1e-4,
    grid_tol: float = 1e-6,
) -> list[str]:
    """All problems found between ``out_dir`` and ``expected_dir`` (empty list: they match)."""
    files = expected_files(expected_dir) if files is None else [Path(f) for f in files]
    if not files:
        return [f"{expected_dir}: no expected outputs to compare with (no label image or .json file)"]
    problems = []
    for rel in files:
        got, want = out_dir / rel, expected_dir / rel
        print(f"{rel}:")
        if not want.is_file():
            problems.append(f"{want}: expected file missing")
        elif not got.is_file():
            problems.append(f"{got}: output missing")
        elif rel.name.endswith(IMAGE_SUFFIXES):
            problems += compare_label(got, want, dice_min, grid_tol)
        else:
            problems += compare_json(got, want, risk_tol)
    for rel in absent:
        if (out_dir / rel).exists():
            problems.append(f"{out_dir / rel}: present, but this outputs profile must not write it")
        else:
            print(f"{rel}: absent, as required")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder of the run")
    parser.add_argument("expected", type=Path, help="folder of expected outputs (test/expected)")
    parser.add_argument("--files", nargs="+", type=Path, default=None, help="compare only these (relative)")
    parser.add_argument("--absent", nargs="+", type=Path, default=[], help="files OUT must not hold")
    parser.add_argument("--dice-min", type=float, default=0.99)
    parser.add_argument("--risk-tol", type=float, default=1e-4)
    parser.add_argument("--grid-tol", type=float, default=1e-6, help="mm (spacing, origin) / cosines")
    args = parser.parse_args(argv)
    for folder in (args.out, args.expected):
        if not folder.is_dir():
            print(f"error: {folder} is not a folder", file=sys.stderr)
            return 2
    problems = compare(
        args.out, args.expected, args.files, args.absent, args.dice_min, args.risk_tol, args.grid_tol
    )
    for problem in problems:
        print(f"MISMATCH {problem}")
    print("outputs match" if not problems else f"{len(problems)} mismatch(es)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
