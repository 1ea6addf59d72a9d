#!/usr/bin/env python
"""Evaluation of segmentation weights with every post-processing preset, threshold and mapping back to the CT
grid (nearest / linear), one inference per case, metrics on the original CT grid.

    python benchmarks/postprocessing_comparison.py --data DATA --weights weights --out docs/results/postprocessing.json

DATA is a HECKTOR-layout folder with labels (e.g. `hmvnet synth --cases 24 --out data/seg_heldout --seed 202`).
``--split weights/segmentation/split.json`` restricts it to the training run's validation cases (``"val"``), which
is where the default is chosen; the held-out folder is then only reported. Writes a JSON summary per variant and a
per-case CSV for the weights' configured variant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import time
from pathlib import Path

import pandas as pd
import SimpleITK as sitk
import torch

from hmvnet.data.cases import discover_cases, read_case
from hmvnet.evaluation.metrics import SegmentationScorer
from hmvnet.segmentation.segmenter import Segmenter

PRESETS = ("paper", "label_aware", "primary_mass")
THRESHOLDS = (0.7, 0.5)
INTERPOLATIONS = ("nearest", "linear")
AGG_WEIGHTING = (
    "mm3"  # aggregated Dice weighted by each case's voxel volume (issue 14); older JSONs lack the key
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True, help="weights folder (holding segmentation/)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--split", type=Path, help="split.json of a training run: evaluate its 'val' cases only"
    )
    parser.add_argument(
        "--min-volumes",
        type=float,
        nargs="+",
        help="min_volume_mm3 values to compare (default: the weights' own)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    segmenter = Segmenter.load(args.weights / "segmentation", "cpu")
    base = segmenter.config.postprocess
    volumes = args.min_volumes or [base.min_volume_mm3]
    variants = [(p, t, v, i) for p in PRESETS for t in THRESHOLDS for v in volumes for i in INTERPOLATIONS]
    default = (base.preset, base.threshold, base.min_volume_mm3, base.output_interpolation)
    scorers = {v: SegmentationScorer(with_hd95=True) for v in variants}
    rows = []
    cases = discover_cases(args.data)
    if args.split:
        val = set(json.loads(args.split.read_text())["val"])
        cases = [c for c in cases if c.name in val]
        if len(cases) != len(val):
            raise SystemExit(
                f"{args.data}: found {len(cases)} of the {len(val)} validation cases in {args.split}"
            )
    start = time.perf_counter()
    for folder in cases:
        case = read_case(folder)
        pre = segmenter.preprocess(case)
        t0 = time.perf_counter()
        probs = segmenter.probabilities(pre.image)
        infer_s = time.perf_counter() - t0
        truth = sitk.GetArrayFromImage(case.label)
        crops = {}
        for variant in variants:
            preset, threshold, volume, interpolation = variant
            if variant[:3] not in crops:
                config = dataclasses.replace(base, preset=preset, threshold=threshold, min_volume_mm3=volume)
                crops[variant[:3]] = segmenter.postprocess(probs, pre.ct_hu.GetSpacing(), config)
            _, label = segmenter.to_ct_grid(crops[variant[:3]], pre, case.ct, interpolation)
            row = scorers[variant].update(sitk.GetArrayFromImage(label), truth, case.ct.GetSpacing())
            if variant == default:
                rows.append({"case_id": case.case_id, "inference_s": infer_s, **row})
        print(f"{case.case_id}: inference {infer_s:.1f} s", flush=True)
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "n_cases": len(cases),
        "data": str(args.data.name) + (" (validation cases of the split)" if args.split else ""),
        "default": {
            "preset": base.preset,
            "threshold": base.threshold,
            "min_volume_mm3": base.min_volume_mm3,
            "output_interpolation": base.output_interpolation,
        },
        "seconds": time.perf_counter() - start,
        "gtvn_agg_dsc_weighting": AGG_WEIGHTING,
        "results": [
            {
                "preset": p,
                "threshold": t,
                "min_volume_mm3": v,
                "output_interpolation": i,
                **scorers[(p, t, v, i)].summary(),
            }
            for p, t, v, i in variants
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=float))
    pd.DataFrame(rows).to_csv(args.out.with_name(args.out.stem + "_cases.csv"), index=False)
    for r in summary["results"]:
        print(
            f"{r['preset']:>12} thr {r['threshold']:.1f} min {r['min_volume_mm3']:5.0f} mm3 "
            f"{r['output_interpolation']:>7}: GTVp {r['gtvp_dsc']:.3f}  GTVn aggDSC "
            f"{r['gtvn_agg_dsc']:.3f}  F1 {r['gtvn_agg_f1']:.3f}  score {r['task1_score']:.3f}"
        )


if __name__ == "__main__":
    main()
