#!/usr/bin/env python
"""End-to-end timing and peak memory of `process.py` (model loading included), one fresh process per case, as the
platform runs it; plus one whole-body-sized case and the batch throughput of `hmvnet predict`.

    python benchmarks/end_to_end.py --weights weights --cases 5 --out docs/benchmarks/end_to_end.md

Cases are generated phantoms in the grand-challenge layout (`hmvnet synth --gc-case`, full size). The whole-body
case puts one phantom inside a 512 x 512 x 800 CT (0.98 x 0.98 x 2 mm, air outside the phantom's field of view) and
a PET covering the same extent: the anatomy does not reach the legs, but the arrays are whole-body sized, which is
what the memory limit is about.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent


def run_case(input_dir: Path, output_dir: Path, weights: Path, outputs: str) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (GB) of the child process, exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    env = {**os.environ, "HMVNET_WEIGHTS": str(weights), "HMVNET_OUTPUTS": outputs}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "process.py"), "--input", str(input_dir), "--output",
                           str(output_dir)], env=env, capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode:
        print(proc.stderr[-2000:], file=sys.stderr)
    # ru_maxrss of children is the max over all children so far: measure the big case last
    return wall, max(peak, before) / 1024**2, proc.returncode


def whole_body_case(src: Path, dst: Path) -> None:
    ct = sitk.ReadImage(str(next((src / "images" / "ct").iterdir())))
    pet = sitk.ReadImage(str(next((src / "images" / "pet").iterdir())))
    size, spacing = (512, 512, 800), (0.977, 0.977, 2.0)
    centre = ct.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in ct.GetSize()])
    ref = sitk.Image(size, sitk.sitkInt16)
    ref.SetSpacing(spacing)
    # the phantom's head near the top of the 1.6 m field of view
    ref.SetOrigin((centre[0] - 250.0, centre[1] - 250.0, centre[2] - 1450.0))
    big_ct = sitk.Resample(ct, ref, sitk.Transform(), sitk.sitkLinear, -1000, sitk.sitkInt16)
    pet_ref = sitk.Image((150, 150, 400), sitk.sitkFloat32)
    pet_ref.SetSpacing((4.0, 4.0, 4.0))
    pet_ref.SetOrigin(ref.GetOrigin())
    big_pet = sitk.Resample(pet, pet_ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    for sub, image in (("ct", big_ct), ("pet", big_pet)):
        (dst / "images" / sub).mkdir(parents=True)
        sitk.WriteImage(image, str(dst / "images" / sub / f"{sub}.mha"), useCompression=True)
    shutil.copy(src / "ehr.json", dst / "ehr.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "weights")
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--seed", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "end_to_end.md")
    parser.add_argument("--no-whole-body", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hmvnet-bench-"))
    rows = []
    for k in range(args.cases):
        case = tmp / f"case{k}"
        subprocess.run([sys.executable, "-m", "hmvnet.app.cli", "synth", "--gc-case", "--out", str(case), "--seed",
                        str(args.seed + k)], check=True, capture_output=True)  # fmt: skip
        wall, rss, rc = run_case(case, tmp / f"out{k}", args.weights, "both")
        rows.append({"case": f"phantom seed {args.seed + k}", "wall_s": wall, "peak_rss_gb": rss, "rc": rc})
        print(rows[-1], flush=True)
    # batch mode: the same cases through `hmvnet predict`, models loaded once
    batch_in = tmp / "batch"
    for k in range(args.cases):
        shutil.copytree(tmp / f"case{k}", batch_in / f"case{k}")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hmvnet.app.cli", "predict", "--input", str(batch_in), "--output",
                    str(tmp / "batch_out"), "--weights", str(args.weights)], capture_output=True)  # fmt: skip
    batch_s = time.perf_counter() - start
    whole = None
    if not args.no_whole_body:
        whole_body_case(tmp / "case0", tmp / "whole")
        wall, rss, rc = run_case(tmp / "whole", tmp / "out_whole", args.weights, "both")
        whole = {"case": "whole-body sized (CT 512x512x800)", "wall_s": wall, "peak_rss_gb": rss, "rc": rc}
        print(whole, flush=True)
    walls = [r["wall_s"] for r in rows]
    lines = [
        "# End-to-end benchmark: `process.py` per case, model loading included",
        "",
        f"Measured {date.today().isoformat()} with `python benchmarks/end_to_end.py --cases {args.cases}` on "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        "demo weights; one fresh process per case (as on the platform). The machine may have been shared with other "
        "jobs: figures are pessimistic.",
        "",
        "| case | wall (s) | peak RSS so far (GB) | exit |",
        "|---|---|---|---|",
        *[f"| {r['case']} | {r['wall_s']:.1f} | {r['peak_rss_gb']:.2f} | {r['rc']} |" for r in rows],
    ]
    if whole:
        lines.append(
            f"| {whole['case']} | {whole['wall_s']:.1f} | {whole['peak_rss_gb']:.2f} | {whole['rc']} |"
        )
    lines += [
        "",
        f"Median per case: **{statistics.median(walls):.1f} s** (targets: ≤ 180 s end to end; platform limit 600 s).",
        f"Batch mode (`hmvnet predict`, models loaded once): {args.cases} cases in {batch_s:.1f} s = "
        f"**{3600 * args.cases / batch_s:.0f} cases/hour** (model loading included once).",
        "",
        "Peak RSS is `ru_maxrss` of the child processes, a running maximum: the whole-body case runs last so its "
        "figure is its own peak (or an earlier larger one).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    (args.out.with_suffix(".json")).write_text(json.dumps({"cases": rows, "whole_body": whole,
                                                            "batch_s": batch_s}, indent=2))  # fmt: skip
    print("\n".join(lines))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
