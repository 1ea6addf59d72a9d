"""The realism report (``hmvnet synth --report DIR``): every figure of the real-data tables measured on a written
synthetic cohort, beside the real HECKTOR value, with a pass/fail tolerance.

Reads ``DIR/synth_truth.csv`` (every per-case draw and the measured image figures) and the Task-2 CSV (the observed,
partly missing clinical values); writes ``DIR/synth_realism.md`` and returns the rows. The tolerances are ours
(a real figure is matched when the synthetic one lies in the stated interval); they are printed in the report.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hmvnet.data.task2 import TASK2_CSV
from hmvnet.data.writers import write_text
from hmvnet.errors import InputError
from hmvnet.evaluation.metrics import concordance_index
from hmvnet.synthetic.common import TRUTH_NAME

Rows = list[dict[str, str]]


@dataclass(frozen=True)
class Figure:
    """One reference figure: how it is measured, the real value (text) and the accepted interval."""

    section: str
    name: str
    real: str
    lo: float
    hi: float
    measure: Callable[[Rows, Rows], float]
    unit: str = ""


def _f(rows: Rows, key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows if r.get(key, "") not in ("", "nan")])


def _share(rows: Rows, pred: Callable[[dict[str, str]], bool]) -> float:
    return 100.0 * sum(pred(r) for r in rows) / max(len(rows), 1)


def _eq(key: str, value: float, tol: float = 0.02) -> Callable[[dict[str, str]], bool]:
    return lambda r: abs(float(r[key]) - value) < tol


def _missing(key: str, centre: str | None = None) -> Callable[[Rows, Rows], float]:
    def measure(truth: Rows, clin: Rows) -> float:
        rows = [r for r in clin if centre is None or r["PatientID"].startswith(centre + "-")]
        return _share(rows, lambda r: r[key] == "") if rows else float("nan")

    return measure


def _pct(
    key: str, q: float, sel: Callable[[dict[str, str]], bool] = lambda r: True
) -> Callable[[Rows, Rows], float]:
    return lambda t, c: (
        float(np.percentile(_f([r for r in t if sel(r)], key), q)) if any(sel(r) for r in t) else float("nan")
    )


def _hpv_pos(truth: Rows, clin: Rows) -> float:
    known = [r for r in clin if r["HPV Status"] != ""]
    return _share(known, lambda r: float(r["HPV Status"]) == 1)


def _oracle(truth: Rows, clin: Rows) -> float:
    return concordance_index(_f(truth, "RFS"), _f(truth, "Relapse"), _f(truth, "true_risk"))


def _decoy(truth: Rows, clin: Rows) -> float:
    rows = [r for r in truth if float(r["lowest_lesion_suv_max"]) > 0]
    return _share(rows, lambda r: float(r["decoy_suv_max"]) > float(r["lowest_lesion_suv_max"]))


def _touch(truth: Rows, clin: Rows) -> float:
    pos = [r for r in truth if int(r["gtvn_count"]) > 0 and int(r["gtvp_drawn"]) > 0]
    return _share(pos, lambda r: r["node_touches_primary"] == "True")


def _wb(r: dict[str, str]) -> bool:
    return r["whole_body"] == "True"


def _n_sites(truth: Rows, clin: Rows) -> float:
    return float(len({r["gtvp_site"] for r in truth} - {"none"}))


_T = "Scanner protocols and fields of view"
_L = "Lesions"
_P = "Physiological uptake"
_O = "Outcome and clinical variables"
FIGURES: list[Figure] = [
    Figure(
        _T,
        "CT in-plane 0.98 mm",
        "76 %",
        66,
        86,
        lambda t, c: _share(t, _eq("ct_spacing_xy_mm", 0.977, 0.01)),
        "%",
    ),
    Figure(
        _T,
        "CT in-plane 1.17 mm",
        "14 %",
        6,
        22,
        lambda t, c: _share(t, _eq("ct_spacing_xy_mm", 1.172, 0.01)),
        "%",
    ),
    Figure(
        _T,
        "CT in-plane 1.37 mm",
        "9 %",
        3,
        16,
        lambda t, c: _share(t, _eq("ct_spacing_xy_mm", 1.367, 0.01)),
        "%",
    ),
    Figure(
        _T,
        "CT matrix 512 x 512",
        "523/524 (99.8 %)",
        95,
        100,
        lambda t, c: _share(t, lambda r: r["ct_matrix"] == "512x512"),
        "%",
    ),
    Figure(
        _T, "CT slices 3.27 mm", "59 %", 47, 71, lambda t, c: _share(t, _eq("ct_spacing_z_mm", 3.27)), "%"
    ),
    Figure(_T, "CT slices 1.5 mm", "21 %", 11, 31, lambda t, c: _share(t, _eq("ct_spacing_z_mm", 1.5)), "%"),
    Figure(_T, "CT slices 3.0 mm", "11 %", 4, 18, lambda t, c: _share(t, _eq("ct_spacing_z_mm", 3.0)), "%"),
    Figure(_T, "CT axial extent, median", "415 mm", 360, 480, _pct("fov_z_mm", 50), "mm"),
    Figure(_T, "CT axial extent, minimum", "271 mm", 250, 300, _pct("fov_z_mm", 0), "mm"),
    Figure(_T, "CT axial extent, maximum", "1 331 mm", 1100, 1340, _pct("fov_z_mm", 100), "mm"),
    Figure(
        _T,
        "CT axial extent >= 800 mm",
        "31 %",
        21,
        41,
        lambda t, c: _share(t, lambda r: float(r["fov_z_mm"]) >= 800),
        "%",
    ),
    Figure(
        _T,
        "PET in-plane spacing in 2.7-5.5 mm",
        "all",
        100,
        100,
        lambda t, c: _share(t, lambda r: 2.69 <= float(r["pet_spacing_xy_mm"]) <= 5.5),
        "%",
    ),
    Figure(
        _T,
        "PET slices in 2.0-4.25 mm",
        "all",
        100,
        100,
        lambda t, c: _share(t, lambda r: 2.0 <= float(r["pet_spacing_z_mm"]) <= 4.25),
        "%",
    ),
    Figure(
        _T,
        "PET >= 800 mm",
        "45 %",
        35,
        55,
        lambda t, c: _share(t, lambda r: float(r["pet_fov_z_mm"]) >= 800),
        "%",
    ),
    Figure(
        _T,
        "PET longer than CT by > 100 mm",
        "14 %",
        7,
        21,
        lambda t, c: _share(t, lambda r: float(r["pet_fov_z_mm"]) - float(r["fov_z_mm"]) > 100),
        "%",
    ),
    Figure(
        _T,
        "label grid differs from CT by a slice",
        "8 %",
        3,
        14,
        lambda t, c: _share(t, lambda r: r["label_slices_minus_ct"] != "0"),
        "%",
    ),
    Figure(
        _T,
        "CT padding -1024",
        "37 %",
        25,
        49,
        lambda t, c: _share(t, lambda r: r["ct_pad_hu"] == "-1024"),
        "%",
    ),
    Figure(
        _T,
        "CT padding -2048",
        "34 %",
        22,
        46,
        lambda t, c: _share(t, lambda r: r["ct_pad_hu"] == "-2048"),
        "%",
    ),
    Figure(
        _T,
        "CT padding -3024",
        "25 %",
        14,
        36,
        lambda t, c: _share(t, lambda r: r["ct_pad_hu"] == "-3024"),
        "%",
    ),
    Figure(
        _T,
        "CT maximum 3071 HU (dental metal)",
        "66 %",
        54,
        78,
        lambda t, c: _share(t, lambda r: int(r["ct_max_hu"]) >= 3071),
        "%",
    ),
    Figure(_T, "whole-image PET maximum, median", "21 SUV", 14, 30, _pct("pet_max_suv", 50), "SUV"),
    Figure(
        _T,
        "whole-image PET maximum, median on whole-body scans",
        "46 SUV",
        25,
        70,
        _pct("pet_max_suv", 50, _wb),
        "SUV",
    ),
    Figure(
        _T, "whole-image PET maximum, 95th percentile", "117 SUV", 60, 180, _pct("pet_max_suv", 95), "SUV"
    ),
    Figure(
        _L,
        "GTVp SUVmax, median",
        "13.4",
        10.5,
        16.5,
        _pct("gtvp_suv_max", 50, lambda r: int(r["gtvp_drawn"]) > 0),
    ),
    Figure(
        _L,
        "GTVp SUVmax, 25th percentile",
        "9.1",
        7.0,
        11.5,
        _pct("gtvp_suv_max", 25, lambda r: int(r["gtvp_drawn"]) > 0),
    ),
    Figure(
        _L,
        "GTVp SUVmax, 75th percentile",
        "16.6",
        13.5,
        20.0,
        _pct("gtvp_suv_max", 75, lambda r: int(r["gtvp_drawn"]) > 0),
    ),
    Figure(
        _L,
        "GTVp SUVmax, 5th percentile",
        "5.0",
        3.5,
        7.0,
        _pct("gtvp_suv_max", 5, lambda r: int(r["gtvp_drawn"]) > 0),
    ),
    Figure(
        _L,
        "GTVp SUVmax, 95th percentile",
        "25.4",
        20.0,
        32.0,
        _pct("gtvp_suv_max", 95, lambda r: int(r["gtvp_drawn"]) > 0),
    ),
    Figure(
        _L,
        "hottest GTVn SUVmax, median",
        "9.6",
        7.0,
        12.5,
        _pct("gtvn_suv_max", 50, lambda r: int(r["gtvn_count"]) > 0),
    ),
    Figure(
        _L,
        "hottest GTVn SUVmax, 5th percentile",
        "3.1",
        2.0,
        5.0,
        _pct("gtvn_suv_max", 5, lambda r: int(r["gtvn_count"]) > 0),
    ),
    Figure(
        _L,
        "hottest GTVn SUVmax, 95th percentile",
        "20",
        15.0,
        27.0,
        _pct("gtvn_suv_max", 95, lambda r: int(r["gtvn_count"]) > 0),
    ),
    Figure(_L, "hottest GTVn SUVmax, maximum", "35", 20.0, 45.0, _pct("gtvn_suv_max", 100), ""),
    Figure(_L, "no GTVp", "3.1 %", 0.5, 7.0, lambda t, c: _share(t, lambda r: r["gtvp_drawn"] == "0"), "%"),
    Figure(_L, "no GTVn", "11.5 %", 5.0, 19.0, lambda t, c: _share(t, lambda r: r["gtvn_count"] == "0"), "%"),
    Figure(
        _L,
        "primary sites represented",
        "5 (oropharynx, larynx, hypopharynx, nasopharynx, oral cavity)",
        5,
        5,
        _n_sites,
    ),
    Figure(
        _L,
        "node touching the primary (of node-positive with GTVp)",
        "'sometimes' (issue: ~20 %)",
        10,
        30,
        _touch,
        "%",
    ),
    Figure(
        _P,
        "hottest voxel outside lesions and brain > lowest lesion SUVmax",
        "issue: >= 30 %",
        30,
        100,
        _decoy,
        "%",
    ),
    Figure(
        _O,
        "events (relapse)",
        "about 20 %",
        13,
        27,
        lambda t, c: _share(t, lambda r: r["Relapse"] == "1"),
        "%",
    ),
    Figure(
        _O,
        "follow-up (RFS of censored), median",
        "~1 300 (43 months) to 2 360 days",
        1200,
        2500,
        _pct("RFS", 50, lambda r: r["Relapse"] == "0"),
        "days",
    ),
    Figure(_O, "tobacco missing", "58 %", 46, 70, _missing("Tobacco Consumption"), "%"),
    Figure(_O, "alcohol missing", "65 %", 53, 77, _missing("Alcohol Consumption"), "%"),
    Figure(_O, "performance status missing", "54 %", 42, 66, _missing("Performance Status"), "%"),
    Figure(_O, "HPV missing", "35 %", 25, 45, _missing("HPV Status"), "%"),
    Figure(_O, "HPV missing at CHUV", "91 %", 75, 100, _missing("HPV Status", "CHUV"), "%"),
    Figure(_O, "HPV missing at MDA", "8 %", 0, 18, _missing("HPV Status", "MDA"), "%"),
    Figure(
        _O,
        "age or gender missing",
        "never",
        0,
        0,
        lambda t, c: _share(c, lambda r: r["Age"] == "" or r["Gender"] == ""),
        "%",
    ),
    Figure(_O, "HPV+ among known", "82 %", 74, 90, _hpv_pos, "%"),
    Figure(
        _O,
        "chemoradiotherapy",
        "87 %",
        80,
        94,
        lambda t, c: _share(t, lambda r: r["true_Treatment"] == "1"),
        "%",
    ),
    Figure(
        _O,
        "performance status 1",
        "56 % (most common)",
        46,
        66,
        lambda t, c: _share(t, lambda r: r["true_Performance Status"] == "1"),
        "%",
    ),
    Figure(
        _O,
        "T stages present (T0-T4)",
        "T1-T4 plus T0",
        4,
        5,
        lambda t, c: float(len({r["T-stage"] for r in t})),
        "",
    ),
    Figure(
        _O, "N stages present (N0-N3)", "N0-N3", 3, 4, lambda t, c: float(len({r["N-stage"] for r in t})), ""
    ),
    Figure(_O, "oracle C-index (true_risk vs observed RFS)", "issue: 0.70-0.75", 0.70, 0.75, _oracle, ""),
]


def _read(path: Path) -> Rows:
    if not path.is_file():
        raise InputError(f"{path}: not found (expected a cohort written by 'hmvnet synth --generator v2')")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def measure(cohort_dir: Path | str) -> list[tuple[Figure, float, bool]]:
    """(figure, measured value, passed) for every :data:`FIGURES` entry on the v2 cohort in ``cohort_dir``."""
    d = Path(cohort_dir)
    truth, clin = _read(d / TRUTH_NAME), _read(d / TASK2_CSV)
    if not truth or "whole_body" not in truth[0]:
        raise InputError(f"{d / TRUTH_NAME}: not a v2 truth table (no 'whole_body' column)")
    out = []
    for fig in FIGURES:
        value = float(fig.measure(truth, clin))
        out.append((fig, value, bool(fig.lo <= value <= fig.hi)))
    return out


def write_report(cohort_dir: Path | str, out_md: Path | str | None = None) -> tuple[int, int]:
    """Write the markdown report (default ``cohort_dir/synth_realism.md``); returns (passed, total)."""
    d = Path(cohort_dir)
    results = measure(d)
    n = len(_read(d / TRUTH_NAME))
    passed = sum(ok for _, _, ok in results)
    lines = [
        f"# Realism of the synthetic cohort ({n} cases): {passed}/{len(results)} figures within tolerance",
        "",
        "Measured by `hmvnet synth --report` on the truth table and Task-2 CSV of the cohort; real values from",
        "the project's real-data statistics (HECKTOR 2022 training, 524 cases). Tolerance = our accepted interval.",
    ]
    section = ""
    for fig, value, ok in results:
        if fig.section != section:
            section = fig.section
            lines += [
                "",
                f"## {section}",
                "",
                "| figure | real | synthetic | accepted | |",
                "|---|---|---|---|---|",
            ]
        lines.append(
            f"| {fig.name} | {fig.real} | {value:.3g} {fig.unit} | {fig.lo:g}-{fig.hi:g} | {'pass' if ok else '**FAIL**'} |"
        )
    write_text("\n".join(lines) + "\n", Path(out_md) if out_md else d / "synth_realism.md")
    return passed, len(results)
