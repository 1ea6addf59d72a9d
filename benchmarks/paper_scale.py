#!/usr/bin/env python
"""The whole `process.py` case at the paper's configuration (1 mm grid, feature size 24, 96³ windows over the
200 x 200 x 310 mm crop), one fresh process per case, with per-stage wall and CPU time and peak RSS.

    python benchmarks/paper_scale.py --out docs/benchmarks/paper_scale.md [--cases hn,thorax,whole] [--flops]

The segmentation weights are RANDOMLY INITIALISED (``torch.manual_seed(0)``) in the paper's configuration: the
timing of the network does not depend on the weight values, but the post-processing, mapping-back and radiomics
stages see whatever (meaningless) labels random weights produce. The survival model is the shipped demo one.

Cases are generated (``hmvnet synth --gc-case``, a head-and-neck CT of the phantom's own field of view); the larger
cases put that phantom into a longer CT field of view (air outside the phantom, 0.98 x 0.98 x 2 mm) with a PET of
the same extent (4 mm): "thorax" 600 mm (neck + thorax), "whole" 1600 mm (whole body). The anatomy does not extend,
but the arrays are the sizes of those scans, which is what reading, locating the head and mapping back cost.

Each case runs in a child process (``--child``) that does exactly what ``process.py`` does (``Pipeline.load`` then
``Pipeline.process_case``) with the segmenter's and survival model's steps wrapped in timers (wall and process CPU
time); the parent reads the child's peak RSS from ``os.wait4``. ``--flops`` counts the network's FLOPs for one 96³
window with :class:`torch.utils.flop_counter.FlopCounterMode` and multiplies by the window count of each case.

nnU-Net v2 side-by-side is NOT implemented here (see docs/benchmarks/paper_scale.md for why and how to install it
in a benchmark-only environment: ``python3 -m venv nnunet-venv; nnunet-venv/bin/pip install torch==2.13.0;
nnunet-venv/bin/pip install nnunetv2``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASE_FOV_MM = {"hn": None, "thorax": 600.0, "whole": 1600.0}
CASE_TITLES = {
    "hn": "head and neck (phantom field of view)",
    "thorax": "neck + thorax (CT field of view 600 mm)",
    "whole": "whole body (CT field of view 1600 mm)",
}
STAGES = ("read", "load_models", "preprocess", "sliding_window", "postprocess", "map_back", "radiomics",
          "survival_total")  # fmt: skip
PAPER = {"spacing_mm": (1.0, 1.0, 1.0), "feature_size": 24, "roi_size": (96, 96, 96)}


# ---------------------------------------------------------------------------------------------- machine
def machine() -> dict:
    """CPU model, cores, SIMD flags, clock and the peak-FLOP/s derivation; load average now."""
    info = {"cpu": "unknown", "mhz": None, "flags": []}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and info["cpu"] == "unknown":
            info["cpu"] = value.strip()
        elif key == "cpu MHz" and info["mhz"] is None:
            info["mhz"] = float(value)
        elif key == "flags" and not info["flags"]:
            wanted = {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
            info["flags"] = sorted(wanted & set(value.split()))
    import torch

    cores = os.cpu_count() or 1
    lanes = 16 if "avx512f" in info["flags"] else 8
    # assumption: two FMA units per core (Xeon Scalable with AVX-512), one FMA = 2 FLOP
    peak = cores * lanes * 2 * 2 * (info["mhz"] or 0.0) / 1e3
    return {
        **info,
        "cores": cores,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg(),
        "peak_fp32_gflops": peak,
        "peak_derivation": f"{cores} cores x {lanes} fp32 lanes x 2 (FMA) x 2 FMA units (assumed) x "
        f"{info['mhz']} MHz (reported clock, no turbo)",
    }


# ---------------------------------------------------------------------------------------------- setup
def paper_weights(src: Path, dst: Path) -> None:
    """A weights folder with the paper's segmentation configuration and random weights; survival copied."""
    import torch

    from hmvnet.config import SegmentationConfig, load_config, save_config
    from hmvnet.data.weights import save_state_dict
    from hmvnet.segmentation.network import build_model

    shutil.copytree(src / "survival", dst / "survival")
    config = load_config(SegmentationConfig, src / "segmentation")
    config = dataclasses.replace(
        config,
        preprocess=dataclasses.replace(config.preprocess, spacing_mm=PAPER["spacing_mm"]),
        model=dataclasses.replace(config.model, feature_size=PAPER["feature_size"]),
        inference=dataclasses.replace(config.inference, roi_size=PAPER["roi_size"]),
        weights={},
    )
    torch.manual_seed(0)
    (dst / "segmentation").mkdir(parents=True)
    digest = save_state_dict(
        build_model(config.model).state_dict(), dst / "segmentation" / "fold0.safetensors"
    )
    config = dataclasses.replace(config, weights={"fold0.safetensors": digest})
    save_config(config, dst / "segmentation")


def long_fov_case(src: Path, dst: Path, fov_mm: float) -> None:
    """The phantom of ``src`` inside a CT of ``fov_mm`` axial extent (head near the top) and a PET of that extent."""
    import SimpleITK as sitk

    ct = sitk.ReadImage(str(next((src / "images" / "ct").iterdir())))
    pet = sitk.ReadImage(str(next((src / "images" / "pet").iterdir())))
    spacing = (0.977, 0.977, 2.0)
    size = (512, 512, round(fov_mm / spacing[2]))
    centre = ct.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in ct.GetSize()])
    top = ct.TransformIndexToPhysicalPoint([0, 0, ct.GetSize()[2] - 1])[2]
    ref = sitk.Image(size, sitk.sitkInt16)
    ref.SetSpacing(spacing)
    ref.SetOrigin((centre[0] - 250.0, centre[1] - 250.0, top + 20.0 - fov_mm))
    big_ct = sitk.Resample(ct, ref, sitk.Transform(), sitk.sitkLinear, -1000, sitk.sitkInt16)
    pet_ref = sitk.Image((128, 128, round(fov_mm / 4.0)), sitk.sitkFloat32)
    pet_ref.SetSpacing((4.0, 4.0, 4.0))
    pet_ref.SetOrigin(ref.GetOrigin())
    big_pet = sitk.Resample(pet, pet_ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    for sub, image in (("ct", big_ct), ("pet", big_pet)):
        (dst / "images" / sub).mkdir(parents=True)
        sitk.WriteImage(image, str(dst / "images" / sub / f"{sub}.mha"), useCompression=True)
    shutil.copy(src / "ehr.json", dst / "ehr.json")


# ---------------------------------------------------------------------------------------------- child
def _timed(record: dict, name: str, fn):
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            entry = record.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
            entry["wall_s"] += time.perf_counter() - wall
            entry["cpu_s"] += time.process_time() - cpu

    return wrapper


def child(args: argparse.Namespace) -> int:
    """What process.py does, with per-stage timers; writes a JSON of the stages to ``args.result``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from hmvnet.app.pipeline import Pipeline
    from hmvnet.data import cases

    stages: dict = {}
    wall, cpu = time.perf_counter(), time.process_time()
    pipeline = _timed(stages, "load_models", Pipeline.load)(args.weights, args.device, survival=True)
    seg = pipeline.segmenter
    seg.preprocess = _timed(stages, "preprocess", seg.preprocess)  # type: ignore[method-assign]
    seg.probabilities = _timed(stages, "sliding_window", seg.probabilities)  # type: ignore[method-assign]
    seg.postprocess = _timed(stages, "postprocess", seg.postprocess)  # type: ignore[method-assign]
    seg.to_ct_grid = _timed(stages, "map_back", seg.to_ct_grid)  # type: ignore[method-assign]
    survival = pipeline.survival
    import hmvnet.survival.predictor as predictor_module

    predictor_module.extract_features = _timed(stages, "radiomics", predictor_module.extract_features)
    survival.predict_risk = _timed(stages, "survival_total", survival.predict_risk)
    import hmvnet.app.pipeline as pipeline_module

    pipeline_module.read_gc_case = _timed(stages, "read", cases.read_gc_case)
    result = pipeline.process_case(args.input, args.output, "both")
    out = {
        "stages": stages,
        "total_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "windows": seg.inferer.last_windows,
        "crop_shape": list(result.get("crop_shape", [])),
        "risk": result.get("risk"),
        "gtvp_ml": result.get("gtvp_ml"),
        "gtvn_ml": result.get("gtvn_ml"),
        "device": str(seg.inferer.device),
    }
    import torch

    if torch.cuda.is_available():
        out["max_gpu_memory_allocated_gb"] = torch.cuda.max_memory_allocated() / 1024**3
    Path(args.result).write_text(json.dumps(out, indent=2))
    return 0


def run_child(case: Path, out: Path, weights: Path, log_path: Path, device: str = "cpu") -> dict:
    result = out.with_suffix(".result.json")
    cmd = [sys.executable, __file__, "--child", "--input", str(case), "--output", str(out), "--weights",
           str(weights), "--result", str(result), "--device", device]  # fmt: skip
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        _pid, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"child failed ({status}); see {log_path}")
    data = json.loads(result.read_text())
    data["peak_rss_gb"] = usage.ru_maxrss / 1024**2
    data["child_cpu_s"] = usage.ru_utime + usage.ru_stime
    return data


# ---------------------------------------------------------------------------------------------- flops
def window_flops() -> dict:
    """FLOPs of one forward pass of the paper network over one 96³ window (batch 1) and its wall time here."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hmvnet.config import ModelConfig
    from hmvnet.segmentation.network import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(feature_size=PAPER["feature_size"])).eval()
    x = torch.randn(1, 2, *PAPER["roi_size"])
    with torch.inference_mode():  # no warm-up (CPU budget): the first fp32 pass is the counted one
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
        start = time.perf_counter()
        ref = model(x)
        fp32_s = time.perf_counter() - start
        with torch.autocast("cpu", dtype=torch.bfloat16):
            start = time.perf_counter()
            y = model(x)
            bf16_s = time.perf_counter() - start  # first bf16 call: includes oneDNN's kernel set-up
    agree = float((ref.argmax(1) == y.float().argmax(1)).float().mean())
    return {"gflop_per_window": counter.get_total_flops() / 1e9, "forward_fp32_s": fp32_s,
            "forward_bf16_autocast_s": bf16_s, "bf16_argmax_agreement": agree}  # fmt: skip


# ---------------------------------------------------------------------------------------------- report
def report(data: dict, path: Path) -> None:
    m = data["machine"]
    lines = [
        "# Paper-scale benchmark: the whole `process.py` case at the paper's configuration",
        "",
        f"Measured {m['date']} with `python benchmarks/paper_scale.py` on {m['cpu']}, {m['cores']} cores "
        f"({', '.join(m['flags'])}), torch {m['torch']} ({m['torch_threads']} threads), Python {m['python']}. "
        f"**The machine was shared with other engineers' jobs** (load average at start "
        f"{m['loadavg_start'][0]:.1f} on {m['cores']} cores): the figures are pessimistic and noisy.",
        "",
        "Configuration: 1 mm grid, feature size 24, 96³ windows, overlap 0.25, 200 x 200 x 310 mm crop, one fold, "
        "no TTA. **Segmentation weights are random** (timing only); survival is the demo model.",
        "",
        "| case | windows | total (s) | CPU (s) | peak RSS (GB) | read | load models | preprocess | sliding window "
        "| postprocess | map back | radiomics | survival (incl. radiomics) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in data["cases"].items():
        st = row["stages"]

        def cell(key: str, st=st) -> str:
            return f"{st[key]['wall_s']:.1f} / {st[key]['cpu_s']:.1f}" if key in st else "-"

        lines.append(
            f"| {CASE_TITLES[name]} | {row['windows']} | {row['total_s']:.1f} | {row['child_cpu_s']:.1f} | "
            f"{row['peak_rss_gb']:.2f} | " + " | ".join(cell(k) for k in STAGES) + " |"
        )
    lines += [
        "",
        "Stage cells are wall / CPU seconds in the child process (CPU > wall = both cores busy).",
        "",
    ]
    if "flops" in data:
        f = data["flops"]
        lines += [
            "## FLOPs and fraction of peak",
            "",
            f"- One 96³ window: **{f['gflop_per_window']:.0f} GFLOP** (`FlopCounterMode`, forward, batch 1).",
            f"- Peak: {m['peak_fp32_gflops']:.0f} GFLOP/s fp32 = {m['peak_derivation']}.",
            f"- Isolated forward here: {f['forward_fp32_s']:.1f} s fp32 = "
            f"{f['gflop_per_window'] / f['forward_fp32_s']:.0f} GFLOP/s "
            f"({100 * f['gflop_per_window'] / f['forward_fp32_s'] / m['peak_fp32_gflops']:.1f} % of peak); "
            f"bfloat16 autocast {f['forward_bf16_autocast_s']:.1f} s (argmax agreement with fp32 on random "
            f"input {f['bf16_argmax_agreement']:.4f}; not adopted, see below).",
        ]
        for name, row in data["cases"].items():
            sw = row["stages"]["sliding_window"]["wall_s"]
            gflop = f["gflop_per_window"] * row["windows"]
            lines.append(
                f"- {CASE_TITLES[name]}: {row['windows']} windows = {gflop:.0f} GFLOP in {sw:.1f} s = "
                f"{gflop / sw:.0f} GFLOP/s ({100 * gflop / sw / m['peak_fp32_gflops']:.1f} % of peak)."
            )
        lines.append("")
    lines += data.get("notes", [])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--weights", type=Path, default=ROOT / "weights", help="demo weights folder (survival)"
    )
    parser.add_argument("--cases", default="hn,thorax,whole", help="comma list of hn, thorax, whole")
    parser.add_argument("--flops", action="store_true", help="count FLOPs of one window and time fp32/bf16")
    parser.add_argument("--seed", type=int, default=500)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "paper_scale.md")
    parser.add_argument(
        "--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)"
    )
    parser.add_argument("--from-json", type=Path, default=None,
                        help="re-report (and with --flops, add FLOPs to) a JSON written before; run no case")  # fmt: skip
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.from_json is not None:
        data = json.loads(args.from_json.read_text())
        if args.flops:
            data["flops"] = window_flops()
        notes = args.out.with_suffix(".notes.md")
        data["notes"] = notes.read_text().splitlines() if notes.exists() else []
        report(data, args.out)
        return 0
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="hmvnet-paper-"))
    tmp.mkdir(parents=True, exist_ok=True)
    weights = tmp / "weights-paper"
    if not weights.exists():
        paper_weights(args.weights, weights)
    base = tmp / "case-hn"
    if not base.exists():
        subprocess.run([sys.executable, "-m", "hmvnet.app.cli", "synth", "--gc-case", "--out", str(base), "--seed",
                        str(args.seed)], check=True, capture_output=True)  # fmt: skip
    data: dict = {"machine": machine(), "config": PAPER, "random_weights": True, "cases": {}}
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        case = tmp / f"case-{name}"
        if not case.exists():
            long_fov_case(base, case, CASE_FOV_MM[name])  # type: ignore[arg-type]
        print(f"running {name} ...", flush=True)
        row = run_child(case, tmp / f"out-{name}", weights, tmp / f"{name}.log", args.device)
        row["loadavg_after"] = os.getloadavg()
        data["cases"][name] = row
        print(json.dumps(row), flush=True)
    if args.flops:
        data["flops"] = window_flops()
    data["notes_file"] = str(args.out.with_suffix(".notes.md").name)
    notes = args.out.with_suffix(".notes.md")
    data["notes"] = notes.read_text().splitlines() if notes.exists() else []
    report(data, args.out)
    if args.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
