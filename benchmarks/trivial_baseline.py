"""Trivial baseline (PET > SUV 3 after scale detection, brain removed, largest component GTVp, rest GTVn) and,
optionally, the shipped demo weights, scored per subgroup on a written synthetic cohort.

    python benchmarks/trivial_baseline.py --cohort DIR [--weights weights/segmentation] [--limit N] [--out JSON]

Subgroups come from the v2 truth table (metal, whole body, decoy-rich, touching node, no GTVp, misregistered
> 5 mm); a v1 cohort has only "all". Metrics are the challenge ones (hmvnet.evaluation.metrics.SegmentationScorer):
GTVp DSC = mean per-case Dice, GTVn aggregated Dice and detection F1. Predictions are resampled onto the label's
grid (nearest) as ``hmvnet evaluate`` does.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hmvnet.data.cases import read_case
from hmvnet.evaluation.evaluate import align_prediction
from hmvnet.evaluation.metrics import SegmentationScorer
from hmvnet.segmentation.baseline import segment

SUBGROUPS: dict[str, Callable[[dict[str, str]], bool]] = {
    "all": lambda r: True,
    "metal": lambda r: r.get("fillings", "0") not in ("", "0"),
    "whole body": lambda r: r.get("whole_body") == "True",
    "decoy-rich": lambda r: float(r.get("decoy_suv_max") or 0) > float(r.get("lowest_lesion_suv_max") or 1e9),
    "touching node": lambda r: r.get("node_touches_primary") == "True",
    "no GTVp": lambda r: r.get("gtvp_drawn") == "0",
    "misregistered > 5 mm": lambda r: float(r.get("pet_shift_mm") or 0) > 5.0,
}


def _score(
    scorers: dict[str, SegmentationScorer], row: dict[str, str], pred: sitk.Image, truth: sitk.Image
) -> None:
    pred, _ = align_prediction(pred, truth, row["PatientID"])
    p, t = (sitk.GetArrayFromImage(im).astype(np.uint8) for im in (pred, truth))
    for name, member in SUBGROUPS.items():
        if member(row):
            scorers[name].update(p, t, truth.GetSpacing())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cohort", type=Path, required=True)
    ap.add_argument("--weights", type=Path, help="also score these segmentation weights (hmvnet.Segmenter)")
    ap.add_argument("--limit", type=int, help="first N cases only")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with (args.cohort / "synth_truth.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))[: args.limit]
    methods = ["threshold SUV 3"] + (["demo weights"] if args.weights else [])
    scorers = {m: {g: SegmentationScorer() for g in SUBGROUPS} for m in methods}
    segmenter = None
    if args.weights:
        from hmvnet.segmentation.segmenter import Segmenter

        segmenter = Segmenter.load(args.weights, "cpu")
    t0 = time.time()
    for row in rows:
        case = read_case(args.cohort / "Task 1" / row["PatientID"])
        assert case.label is not None
        _score(scorers["threshold SUV 3"], row, segment(case.ct, case.pet), case.label)
        if segmenter is not None:
            _score(scorers["demo weights"], row, segmenter(case).label, case.label)
    out = {
        "cohort": args.cohort.name,
        "cases": len(rows),
        "seconds": round(time.time() - t0, 1),
        "machine": f"{platform.processor() or platform.machine()}, 2-core CPU shared with other engineers (loaded)",
        "results": {m: {g: s.summary() for g, s in sc.items()} for m, sc in scorers.items()},
    }
    print(f"{len(rows)} cases of {args.cohort.name} in {out['seconds']} s ({out['machine']})")
    print(f"{'method':18s} {'subgroup':22s} {'n':>4s} {'GTVp DSC':>9s} {'GTVn aggDSC':>12s} {'GTVn F1':>8s}")
    for m, groups in out["results"].items():
        for g, s in groups.items():
            if s["n_cases"]:
                print(
                    f"{m:18s} {g:22s} {s['n_cases']:4d} {s['gtvp_dsc']:9.3f} {s['gtvn_agg_dsc']:12.3f} {s['gtvn_agg_f1']:8.3f}"
                )
    if args.out:
        args.out.write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
