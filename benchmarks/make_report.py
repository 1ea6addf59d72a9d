#!/usr/bin/env python
"""Regenerates docs/results.md (and its plots) from the measured artefacts committed in the repository:

    python benchmarks/make_report.py

Inputs (each written by the command named in the report): docs/results/postprocessing.json and its _cases.csv,
weights/segmentation/log*.csv (training stages), docs/results/survival_ablation.md, docs/results/survival_oof.csv (+ the
cohort's outcomes in the same file), docs/benchmarks/*.md. Nothing is recomputed here: the report only gathers.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RESULTS = DOCS / "results"
IMG = DOCS / "img"
WEIGHTS = ROOT / "weights" / "segmentation"

PUBLISHED = """| system (HECKTOR 2025 validation ≈ 50 cases unless noted) | GTVp DSC | GTVn aggDSC | GTVn F1 | C-index |
|---|---|---|---|---|
| HM-VNet paper | 0.683 | 0.745 | 0.454 | 0.7045 ± 0.057 (0.6826 without segmentation features) |
| stock nnU-Net v2 (organisers' report) | 0.744 | 0.796 | 0.587 | |
| best 2025 segmentation team (STU-Net, 10-fold ensemble) | 0.765 | 0.793 | 0.664 | |
| 2025 test set best (≈ 400 cases) | mean Dice 0.75 | | | 0.66 |
| 2022 best (test) | | aggDSC 0.788 | | 0.682 (ICARE) |
| HM-VNet paper survival ablation | | | | ICARE alone 0.6705, CoxPH 0.6073 |"""


def fmt(v) -> str:
    return "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


VARIANT_KEY = ("preset", "threshold", "min_volume_mm3", "output_interpolation")
PAPER_LITERAL = {
    "preset": "paper",
    "threshold": 0.7,
    "min_volume_mm3": 50.0,
    "output_interpolation": "nearest",
}
TARGETS = "GTVp DSC ≥ 0.85, GTVn aggDSC ≥ 0.75, GTVn F1 ≥ 0.70"


def is_variant(row: dict, variant: dict) -> bool:
    return all(row[k] == variant[k] for k in VARIANT_KEY)


def variant_table(data: dict, default: dict, compact: bool = False) -> list[str]:
    """One row per (preset, threshold, smallest component, mapping back to the CT grid) of a
    postprocessing_comparison.py JSON; ``default`` (the shipped weights' setting) is marked. ``compact`` keeps the
    rows with the default's smallest component and mapping, plus the paper's literal chain."""
    lines = [
        "| post-processing | threshold | min volume (mm³) | to CT grid | GTVp DSC | GTVn aggDSC | GTVn F1 (TP/FP/FN) "
        "| Task-1 proxy | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        same_tail = all(r[k] == default[k] for k in ("min_volume_mm3", "output_interpolation"))
        if compact and not (same_tail or is_variant(r, PAPER_LITERAL)):
            continue
        mark = (
            "**default**"
            if is_variant(r, default)
            else ("paper as written" if is_variant(r, PAPER_LITERAL) else "")
        )
        lines.append(
            f"| {r['preset']} | {r['threshold']:.1f} | {r['min_volume_mm3']:.0f} | {r['output_interpolation']} | "
            f"{fmt(r['gtvp_dsc'])} | {fmt(r['gtvn_agg_dsc'])} | "
            f"{fmt(r['gtvn_agg_f1'])} ({r['gtvn_tp']}/{r['gtvn_fp']}/{r['gtvn_fn']}) | {fmt(r['task1_score'])} | {mark} |"
        )
    return lines


def voxel_note(data: dict) -> str:
    """A mark for a results JSON whose aggregated Dice still counts voxels (written before issue 14)."""
    return (
        "" if data.get("gtvn_agg_dsc_weighting") == "mm3" else " (aggDSC counted in voxels, not regenerated)"
    )


def default_row(data: dict, default: dict) -> dict:
    return next(r for r in data["results"] if is_variant(r, default))


def segmentation_section() -> list[str]:
    path = RESULTS / "postprocessing.json"
    if not path.is_file():
        return ["*No held-out segmentation results yet (run benchmarks/postprocessing_comparison.py).*", ""]
    data = json.loads(path.read_text())
    default = data["default"]
    sets = [("validation (where the default was chosen)", RESULTS / "postprocessing_val.json"),
            ("held-out A", path), ("held-out B (fresh)", RESULTS / "postprocessing_heldout2.json")]  # fmt: skip
    summary = [
        "| phantoms | cases | GTVp DSC | GTVn aggDSC | GTVn F1 (TP/FP/FN) | Task-1 proxy |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in sets:
        if p.is_file():
            d = json.loads(p.read_text())
            r = default_row(d, default)
            summary.append(
                f"| {name}{voxel_note(d)} | {d['n_cases']} | {fmt(r['gtvp_dsc'])} | {fmt(r['gtvn_agg_dsc'])} | "
                f"{fmt(r['gtvn_agg_f1'])} ({r['gtvn_tp']}/{r['gtvn_fp']}/{r['gtvn_fn']}) | {fmt(r['task1_score'])} |"
            )
    lines = [
        f"Demo weights with the default post-processing ({default['preset']}, threshold {default['threshold']}, "
        f"components ≥ {default['min_volume_mm3']:.0f} mm³, {default['output_interpolation']} mapping to the CT "
        f"grid); metrics on the original CT grid through the same code as `process.py` ({data['machine']}). "
        f"Targets for the demo weights (issue): {TARGETS}. GTVn aggDSC weighs each case by its voxel volume in "
        "mm³, as the organisers' code does (docs/evaluation.md); the tables were regenerated with it in issue 14.",
        "",
        *summary,
        "",
        "* **validation**: the 12 validation phantoms of the training run (`weights/segmentation/split.json`), used "
        "to keep the best epoch and to choose the post-processing; optimistic by construction.",
        "* **held-out A** (`hmvnet synth --generator v1 --cases 24 --seed 202`): never trained on, but scored after each earlier "
        "training stage, and once before a choice: the first default chosen on validation without a volume sweep "
        "(primary_mass, 0.7, 50 mm³, nearest; GTVp 0.845, aggDSC 0.702 counted in voxels, F1 0.620 with the "
        "stage-1 weights) showed "
        "many small false-positive nodes there, which prompted the sweep of the smallest kept component, decided "
        "on validation only. Mildly optimistic.",
        "* **held-out B** (`hmvnet synth --generator v1 --cases 24 --seed 404`): generated before the stage-2 training, scored "
        "once, after every choice had been made: the cleanest estimate here.",
        "",
    ]
    val_path = RESULTS / "postprocessing_val.json"
    if val_path.is_file():
        val = json.loads(val_path.read_text())
        lines += [
            f"**Validation ({val['n_cases']} phantoms), every variant{voxel_note(val)}.** Command: `python "
            "benchmarks/postprocessing_comparison.py --data data/seg_train --split weights/segmentation/split.json "
            "--weights weights --min-volumes 50 100 200 400 600 --out docs/results/postprocessing_val.json`. The "
            "default is the row with the best Task-1 proxy (a tie between smallest-component volumes goes to the smaller). Phantom nodes are at least 0.4 ml by construction, so the "
            "smallest-component volume is tuned to the phantoms and must be re-selected on real validation data.",
            "",
            *variant_table(val, default),
            "",
        ]
    lines += [
        f"**Held-out A ({data['n_cases']} phantoms), every variant{voxel_note(data)}.** Command: `python "
        "benchmarks/postprocessing_comparison.py --data data/seg_heldout --weights weights "
        "--min-volumes 50 100 200 400 600 --out docs/results/postprocessing.json`.",
        "",
        *variant_table(data, default),
        "",
    ]
    fresh = RESULTS / "postprocessing_heldout2.json"
    if fresh.is_file():
        lines += [
            f"**Held-out B ({json.loads(fresh.read_text())['n_cases']} phantoms){voxel_note(json.loads(fresh.read_text()))}, "
            "default volume and mapping per "
            "preset and threshold, and the paper's chain as written.** Command: `python "
            "benchmarks/postprocessing_comparison.py --data data/seg_heldout2 --weights weights "
            "--min-volumes 50 400 --out docs/results/postprocessing_heldout2.json`.",
            "",
            *variant_table(json.loads(fresh.read_text()), default, compact=True),
            "",
        ]
    cases = RESULTS / "postprocessing_cases.csv"
    if cases.is_file():
        table = pd.read_csv(cases)
        fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
        cols = [c for c in ("dice_gtvp", "dice_gtvn") if c in table]
        ax.boxplot([table[c].dropna() for c in cols], tick_labels=["GTVp", "GTVn"][: len(cols)], vert=False)
        for i, c in enumerate(cols, start=1):
            ax.scatter(table[c], np.full(len(table), i) + np.random.default_rng(0).uniform(-0.1, 0.1, len(table)),
                       s=10, alpha=0.6)  # fmt: skip
        ax.set_xlabel("Dice per held-out case (default post-processing)")
        ax.set_xlim(0, 1)
        fig.tight_layout()
        fig.savefig(IMG / "results_dice_per_case.png")
        plt.close(fig)
        lines += ["![Dice per case](img/results_dice_per_case.png)", ""]
    stages = [p for p in (WEIGHTS / "log_stage1.csv", WEIGHTS / "log.csv") if p.is_file()]
    if stages:
        fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
        offset = 0
        for i, path in enumerate(stages):
            table = pd.read_csv(path)
            epochs = table["epoch"] + offset
            ax.plot(
                epochs,
                table["train_loss"],
                color="C0",
                label="training loss (0.5 Dice + 0.5 CE)" if i == 0 else None,
            )
            val = table.dropna(subset=["val_task1_score"])
            ax.plot(val["epoch"] + offset, val["val_task1_score"], "o-", ms=3, color=f"C{i + 1}",
                    label=f"validation Task-1 proxy, stage {i + 1}" if len(stages) > 1 else "validation Task-1 proxy")  # fmt: skip
            if i:
                ax.axvline(offset + 0.5, color="grey", lw=0.8, ls="--")
            offset += int(table["epoch"].max())
        ax.set_xlabel("epoch (stages one after the other)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(IMG / "results_training_curve.png")
        plt.close(fig)
        lines += [
            "![Training curve](img/results_training_curve.png)",
            "",
            "Training curve from `weights/segmentation/log*.csv`. Each stage validated with the post-processing "
            "of its own training configuration (stage 1: `label_aware`, then `paper` at 0.5; stage 2: the "
            "shipped `primary_mass` chain), on the crop grid, so the stages' validation scores are not on one scale.",
            "",
        ]
    return lines


def survival_section() -> list[str]:
    path = RESULTS / "survival_ablation.md"
    if not path.is_file():
        return ["*No survival ablation yet (run `hmvnet train-survival ... --ablation`).*", ""]
    lines = [*path.read_text().splitlines()[2:], ""]
    oof = RESULTS / "survival_oof.csv"
    if oof.is_file():
        from sksurv.nonparametric import kaplan_meier_estimator

        table = pd.read_csv(oof).dropna(subset=["risk"])
        groups = pd.qcut(table["risk"], 3, labels=["low", "middle", "high"])
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        for name in ("low", "middle", "high"):
            sub = table[groups == name]
            t, s = kaplan_meier_estimator(sub["Relapse"].astype(bool), sub["RFS"].astype(float))
            ax.step(t, s, where="post", label=f"{name} predicted risk (n={len(sub)})")
        ax.set_xlabel("days")
        ax.set_ylabel("relapse-free survival")
        ax.set_ylim(0, 1.02)
        ax.legend()
        fig.tight_layout()
        fig.savefig(IMG / "results_km.png")
        plt.close(fig)
        lines += ["Kaplan–Meier curves of the out-of-fold predicted risk tertiles (phantom cohort):", "",
                  "![KM](img/results_km.png)", ""]  # fmt: skip
    return lines


def staging_section() -> list[str]:
    """The T/N staging section, written by hand from `hmvnet train-staging`'s out-of-fold output
    (docs/results/staging.md, whose first line is its heading)."""
    path = DOCS / "results" / "staging.md"
    return [*path.read_text().rstrip().splitlines(), ""] if path.is_file() else []


def benchmarks_section() -> list[str]:
    lines = []
    for path in sorted((DOCS / "benchmarks").glob("*.md")):
        lines.append(
            f"* [{path.stem}](benchmarks/{path.name}): " + path.read_text().splitlines()[0].lstrip("# ")
        )
    icare = DOCS / "icare_validation.md"
    if icare.is_file():
        lines.append("* [ICARE validation on scikit-survival datasets](icare_validation.md)")
    return [*lines, ""]


def main() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Results",
        "",
        "Regenerated by `python benchmarks/make_report.py` from the artefacts in `docs/results/` and "
        "`docs/benchmarks/`. **Everything measured here is on synthetic phantoms with demo weights**: it shows "
        "that the code learns the task and runs within the limits, not how it performs on patients.",
        "",
        "## Segmentation (demo weights, held-out phantoms)",
        "",
        *segmentation_section(),
        "## Survival (phantom cohort, out-of-fold)",
        "",
        *survival_section(),
        *staging_section(),
        "## Benchmarks",
        "",
        *benchmarks_section(),
        "## For orientation only: published HECKTOR 2025 numbers (not ours, real patients)",
        "",
        "These come from the paper and the challenge reports (see `../shared/reference/hecktor-interface.md` §9). "
        "They are on real data and are **not comparable** with the phantom numbers above.",
        "",
        PUBLISHED,
        "",
    ]
    (DOCS / "results.md").write_text("\n".join(lines))
    print(f"wrote {DOCS / 'results.md'}")


if __name__ == "__main__":
    main()
