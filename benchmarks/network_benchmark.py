"""Speed and memory of HM-VNet against MONAI SwinUNETR of the same feature size, on the same inputs.

Usage::

    .venv/bin/python benchmarks/network_benchmark.py            # fs=12 and fs=24, full 310x200x200 case
    .venv/bin/python benchmarks/network_benchmark.py --quick    # fs=12 only, smaller stand-in volume

Every measurement runs in its own subprocess (one model, one task), so the peak resident memory (``VmHWM``
of the child) belongs to that model and task alone. Measured, per model:

* parameters;
* forward time on ``1 x 2 x 96^3`` under ``torch.inference_mode`` (median of ``--repeats`` runs after one
  warm-up) and the child's peak RSS;
* full-case sliding-window time (MONAI ``sliding_window_inference``, roi 96^3, gaussian, overlap 0.25,
  sw_batch_size 1) over ``1 x 2 x z x y x`` (default 310 x 200 x 200 voxels: the paper's 200 x 200 x 310 mm crop
  at 1 mm in (x, y, z), i.e. (z, y, x) = (310, 200, 200) in array order) and that child's peak RSS.

The results are printed as a table with the HM-VNet / SwinUNETR ratio and written to
``docs/benchmarks/network.md`` (``--out`` to change). The requirement is a ratio <= 1.2 for both times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROI = (96, 96, 96)
OVERLAP = 0.25
FULL_CASE = (310, 200, 200)
QUICK_CASE = (128, 160, 160)
RATIO_LIMIT = 1.2


def _peak_rss_mb() -> float:
    """Peak resident set size of this process (``VmHWM`` from /proc/self/status) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmHWM not found in /proc/self/status")


def _build(model: str, fs: int, flash: bool):
    if model == "hmvnet":
        from hmvnet.config import ModelConfig
        from hmvnet.segmentation.network import build_model

        return build_model(ModelConfig(feature_size=fs, use_flash_attention=flash))
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=2, out_channels=3, feature_size=fs, use_v2=False, use_flash_attention=flash)


def _input(shape: tuple[int, int, int]):
    import torch

    gen = torch.Generator().manual_seed(0)
    ct = torch.rand(1, 1, *shape, generator=gen)
    pet = torch.randn(1, 1, *shape, generator=gen)
    return torch.cat([ct, pet], dim=1)


def _child(args: argparse.Namespace) -> dict:
    """One model, one task, in this process; returns the measurements as a dict."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from hmvnet.data.weights import count_parameters

    model = _build(args.model, args.fs, args.flash).eval()
    result: dict = {"params": count_parameters(model), "rss_after_build_mb": _peak_rss_mb()}
    if args.task == "forward":
        x = _input(ROI)
        times, cpu_times = [], []
        with torch.inference_mode():
            model(x)  # warm-up
            for _ in range(args.repeats):
                start, cpu_start = time.perf_counter(), time.process_time()
                model(x)
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu_start)
        result.update(forward_s=statistics.median(times), forward_runs_s=times, forward_cpu_runs_s=cpu_times)
    else:
        from monai.inferers import sliding_window_inference

        x = _input(tuple(args.case))
        load_start = os.getloadavg()[0]
        with torch.inference_mode():
            start, cpu_start = time.perf_counter(), time.process_time()
            out = sliding_window_inference(
                x, roi_size=ROI, sw_batch_size=1, predictor=model, overlap=OVERLAP, mode="gaussian"
            )
            result["sliding_window_s"] = time.perf_counter() - start
            result["sliding_window_cpu_s"] = time.process_time() - cpu_start
        result["loadavg_1min"] = (load_start, os.getloadavg()[0])
        assert out.shape == (1, 3, *args.case), out.shape
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _run_child(model: str, fs: int, task: str, args: argparse.Namespace, case) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--model",
        model,
        "--fs",
        str(fs),
        "--task",
        task,
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
        "--case",
        *map(str, case),
    ]
    if not args.flash:
        cmd.append("--no-flash")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {model} fs={fs} {task} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _n_windows(case) -> int:
    """Window count of MONAI's sliding window for ``case`` (its scan interval: int(roi * (1 - overlap)))."""
    n = 1
    for size, roi in zip(case, ROI, strict=True):
        interval = int(roi * (1 - OVERLAP))
        n *= 1 if size <= roi else math.ceil((size - roi) / interval) + 1
    return n


def _machine(threads: int) -> dict:
    import monai
    import torch

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg(),
    }


def _table(rows: list[dict], case) -> list[str]:
    lines = [
        "| fs | model | params | forward 96³ wall (s) | forward CPU (s) | forward peak RSS (MiB) | "
        f"sliding window {'x'.join(map(str, case))} wall (s) | sliding window CPU (s) | "
        "sliding-window peak RSS (MiB) | 1-min load avg during sliding window |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        hm, sw = r["hmvnet"], r["swinunetr"]
        for name, m in (("HM-VNet", hm), ("SwinUNETR", sw)):
            load = m.get("sw_loadavg")
            lines.append(
                f"| {r['fs']} | {name} | {m['params'] / 1e6:.2f} M | {m['forward_s']:.2f} | "
                f"{_fmt(m.get('forward_cpu_s'), 2)} | {m['forward_peak_rss_mb']:.0f} | "
                f"{m['sliding_window_s']:.1f} | {_fmt(m.get('sliding_window_cpu_s'), 1)} | "
                f"{m['sw_peak_rss_mb']:.0f} | {f'{load[0]:.1f} -> {load[1]:.1f}' if load else 'n/a'} |"
            )
        lines.append(
            f"| {r['fs']} | **ratio HM-VNet / SwinUNETR** | {hm['params'] / sw['params']:.2f} | "
            f"**{hm['forward_s'] / sw['forward_s']:.2f}** | {_ratio(hm, sw, 'forward_cpu_s')} | "
            f"{hm['forward_peak_rss_mb'] / sw['forward_peak_rss_mb']:.2f} | "
            f"**{hm['sliding_window_s'] / sw['sliding_window_s']:.2f}** | "
            f"{_ratio(hm, sw, 'sliding_window_cpu_s')} | "
            f"{hm['sw_peak_rss_mb'] / sw['sw_peak_rss_mb']:.2f} | |"
        )
    return lines


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ratio(hm: dict, sw: dict, key: str) -> str:
    return f"**{hm[key] / sw[key]:.2f}**" if key in hm and key in sw else "n/a"


def _write_report(path: Path, rows, case, machine, args, quick: bool) -> None:
    ratios = [
        max(
            r["hmvnet"]["forward_s"] / r["swinunetr"]["forward_s"],
            r["hmvnet"]["sliding_window_s"] / r["swinunetr"]["sliding_window_s"],
        )
        for r in rows
    ]
    verdict = "met" if all(v <= RATIO_LIMIT for v in ratios) else "NOT met"
    cpu_ratios = [
        max(
            r["hmvnet"]["forward_cpu_s"] / r["swinunetr"]["forward_cpu_s"],
            r["hmvnet"]["sliding_window_cpu_s"] / r["swinunetr"]["sliding_window_cpu_s"],
        )
        for r in rows
        if all("sliding_window_cpu_s" in r[m] and "forward_cpu_s" in r[m] for m in ("hmvnet", "swinunetr"))
    ]
    cpu_verdict = (
        f" On CPU time: **{'met' if all(v <= RATIO_LIMIT for v in cpu_ratios) else 'NOT met'}** "
        f"(worst CPU-time ratio {max(cpu_ratios):.2f})."
        if cpu_ratios
        else ""
    )
    case_note = (
        f"the paper's full case, {case[2]} x {case[1]} x {case[0]} voxels (x, y, z) at 1 mm"
        if tuple(case) == FULL_CASE
        else f"a smaller stand-in volume of {case[2]} x {case[1]} x {case[0]} voxels (x, y, z) "
        f"(not the full 200 x 200 x 310 case; chosen to keep the run short)"
    )
    text = [
        "# HM-VNet vs MONAI SwinUNETR: speed and memory",
        "",
        f"Written by `benchmarks/network_benchmark.py{' --quick' if quick else ''}`; do not edit by hand.",
        "",
        "## Machine and conditions",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores visible; torch {machine['torch']} (CPU), "
        f"MONAI {machine['monai']}, Python {machine['python']}",
        f"- torch threads: {machine['threads']}; date: {machine['date']}",
        f"- load average (1, 5, 15 min) at start {tuple(round(v, 2) for v in machine['loadavg_start'])}, "
        f"at end {tuple(round(v, 2) for v in machine['loadavg_end'])}",
        "- **The machine was shared with other jobs** (other engineers' tests and builds on the same 2 cores), "
        "so absolute times may be pessimistic and noisy. The forward children alternate between the models; "
        "the sliding-window runs are single runs back to back, so their wall-time ratio is the most exposed "
        "to changes in load (see the load column and the CPU-time ratio).",
        "",
        "## Setup",
        "",
        "- HM-VNet: `HMVNet(ModelConfig(feature_size=fs))` with the other `ModelConfig` defaults "
        "(stem_channels 12, depths (2, 2, 2, 2), heads (3, 6, 12, 24), window 7, patch 2).",
        "- SwinUNETR: `monai.networks.nets.SwinUNETR(in_channels=2, out_channels=3, feature_size=fs, "
        f"use_v2=False, use_flash_attention={args.flash})` (MONAI defaults otherwise: window 7, "
        "depths (2, 2, 2, 2), heads (3, 6, 12, 24)).",
        f"- Both with `use_flash_attention={args.flash}`, `model.eval()`, `torch.inference_mode()`, float32.",
        f"- Forward: input 1 x 2 x 96³, {args.repeats} timed runs after one warm-up run per child, "
        f"{2 * args.forward_rounds} children in {'A B B A' if args.forward_rounds > 1 else 'A B'} order; "
        "median over all timed runs of a model.",
        f"- Sliding window: `monai.inferers.sliding_window_inference`, roi 96³, overlap {OVERLAP}, gaussian, "
        f"sw_batch_size 1, over {case_note}: {_n_windows(case)} windows; one run (no warm-up).",
        "- Each (model, task) runs in its own subprocess; peak RSS is that child's `VmHWM` "
        "(includes the Python/torch/MONAI baseline of a few hundred MiB).",
        "- Wall time is what a user waits; CPU time (`time.process_time()` of the child, user + system, all "
        "threads) is much less sensitive to other jobs competing for the cores, so its ratio is the fairer "
        "comparison when the load average exceeds the core count.",
        "",
        "## Results",
        "",
        *_table(rows, case),
        "",
        f"Requirement (HM-VNet no slower than {RATIO_LIMIT} x SwinUNETR, forward and sliding window): "
        f"on wall time **{verdict}** (worst wall-time ratio {max(ratios):.2f}).{cpu_verdict}",
        "",
        "Raw forward runs (s): "
        + "; ".join(
            f"fs={r['fs']} {name}: {', '.join(f'{t:.2f}' for t in r[key]['forward_runs_s'])}"
            for r in rows
            for name, key in (("HM-VNet", "hmvnet"), ("SwinUNETR", "swinunetr"))
        ),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fs=12 only, stand-in volume 160x160x128")
    parser.add_argument("--fs", type=int, nargs="+", default=None, help="feature sizes (default 12 24)")
    parser.add_argument("--case", type=int, nargs=3, default=None, help="sliding-window volume (z, y, x)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=3, help="timed forward runs per child")
    parser.add_argument(
        "--forward-rounds", type=int, choices=(1, 2), default=2, help="2: forward children in A B B A order"
    )
    parser.add_argument("--no-flash", dest="flash", action="store_false", help="standard attention")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "network.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=("hmvnet", "swinunetr"), help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=("forward", "sliding_window"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        args.fs = args.fs[0]
        print(json.dumps(_child(args)))
        return 0

    feature_sizes = args.fs or ([12] if args.quick else [12, 24])
    case = tuple(args.case or (QUICK_CASE if args.quick else FULL_CASE))
    machine = _machine(args.threads)
    rows = []
    for fs in feature_sizes:
        row: dict = {"fs": fs, "hmvnet": {}, "swinunetr": {}}
        # Forward children in A B B A order so that a drift in the shared machine's load hits both models.
        for model in ("hmvnet", "swinunetr", "swinunetr", "hmvnet")[: 4 if args.forward_rounds > 1 else 2]:
            print(f"fs={fs} {model} forward ...", file=sys.stderr, flush=True)
            res = _run_child(model, fs, "forward", args, case)
            entry = row[model]
            entry["params"] = res["params"]
            entry.setdefault("forward_runs_s", []).extend(res["forward_runs_s"])
            entry.setdefault("forward_cpu_runs_s", []).extend(res["forward_cpu_runs_s"])
            entry["forward_peak_rss_mb"] = max(entry.get("forward_peak_rss_mb", 0.0), res["peak_rss_mb"])
        for model in ("hmvnet", "swinunetr"):
            row[model]["forward_s"] = statistics.median(row[model]["forward_runs_s"])
            row[model]["forward_cpu_s"] = statistics.median(row[model]["forward_cpu_runs_s"])
            print(f"fs={fs} {model} sliding window ...", file=sys.stderr, flush=True)
            res = _run_child(model, fs, "sliding_window", args, case)
            row[model].update(
                sliding_window_s=res["sliding_window_s"],
                sliding_window_cpu_s=res["sliding_window_cpu_s"],
                sw_loadavg=res["loadavg_1min"],
                sw_peak_rss_mb=res["peak_rss_mb"],
            )
        rows.append(row)
    machine["loadavg_end"] = os.getloadavg()
    print("\n".join(_table(rows, case)))
    _write_report(args.out, rows, case, machine, args, args.quick)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
