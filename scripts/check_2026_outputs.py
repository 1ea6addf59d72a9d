#!/usr/bin/env python
"""Check one HECKTOR 2026 output folder: all four files, their JSON types, the mask on the input CT grid.

    python scripts/check_2026_outputs.py OUT INPUT [--expected-risk FILE] [--risk-tol 1e-4]

- ``images/head-neck-tumor-segmentation/output.mha``: uint8, labels within {0, 1, 2}, the CT's grid (size, and
  spacing, origin, direction within 1e-6) of ``INPUT/images/ct/*.mha``;
- ``t-stage.json``: a JSON string among "T1"-"T4"; ``n-stage.json``: a JSON string among "N0"-"N3";
- ``rfs.json``: a bare finite JSON float (higher = longer RFS); with ``--expected-risk`` (a 2025 rfs.json of the
  same input, a risk) it must equal minus that risk within ``--risk-tol``.
Prints one line per check; exit 0 when all pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("input", type=Path)
    parser.add_argument("--expected-risk", type=Path)
    parser.add_argument("--risk-tol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    failures: list[str] = []

    def check(ok: bool, text: str) -> None:
        print(("ok    " if ok else "FAIL  ") + text)
        if not ok:
            failures.append(text)

    seg = args.out / "images" / "head-neck-tumor-segmentation" / "output.mha"
    check(seg.is_file(), f"{seg.relative_to(args.out)} exists")
    if seg.is_file():
        mask = sitk.ReadImage(str(seg))
        ct = sitk.ReadImage(str(sorted((args.input / "images" / "ct").glob("*.mha"))[0]))
        check(mask.GetPixelID() == sitk.sitkUInt8, "mask is uint8")
        check(set(np.unique(sitk.GetArrayViewFromImage(mask)).tolist()) <= {0, 1, 2}, "labels within {0,1,2}")
        same = mask.GetSize() == ct.GetSize() and all(
            np.allclose(getattr(mask, f)(), getattr(ct, f)(), atol=1e-6, rtol=0)
            for f in ("GetSpacing", "GetOrigin", "GetDirection")
        )
        check(same, "mask on the input CT grid")
    for name, allowed in (
        ("t-stage.json", ("T1", "T2", "T3", "T4")),
        ("n-stage.json", ("N0", "N1", "N2", "N3")),
    ):
        path = args.out / name
        value = json.loads(path.read_text()) if path.is_file() else None
        check(isinstance(value, str) and value in allowed, f"{name} = {value!r}: a JSON string in {allowed}")
    path = args.out / "rfs.json"
    rfs = json.loads(path.read_text()) if path.is_file() else None
    check(isinstance(rfs, float) and math.isfinite(rfs), f"rfs.json = {rfs!r}: a finite JSON float")
    if args.expected_risk is not None and isinstance(rfs, float):
        risk = json.loads(args.expected_risk.read_text())
        check(
            abs(rfs + risk) <= args.risk_tol, f"rfs.json = -risk of {args.expected_risk.name} ({-risk:.6f})"
        )
    print("all 2026 checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
