"""Synthetic PET/CT head-and-neck cohort (``hmvnet synth``): phantoms, labels, clinical table and RFS outcomes.

No patient data exists in this project: everything is developed and tested on these phantoms. Each case is an
anatomy defined in physical LPS space (see :mod:`hmvnet.synthetic.phantom`) sampled onto a CT grid (HU, int16) and a PET
grid (SUV or Bq/ml, float32) with different spacings, origins, sizes and sometimes flipped directions; the label
(uint8 0/1/2) is computed on the CT grid from the same physical lesion shapes. Recurrence-free survival is drawn
from a documented Weibull proportional-hazards model (:data:`HAZARD_COEFFICIENTS`, ``docs/synth.md``).

Determinism: case ``g`` of cohort seed ``S`` depends only on ``(S, g)`` (not on the number of cases, the start
index or the number of workers), so the same seed writes identical files.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hmvnet import Label
from hmvnet.data.task2 import TASK2_CSV
from hmvnet.data.writers import write_text, write_with
from hmvnet.errors import InputError
from hmvnet.geometry import STRUCTURE_26
from hmvnet.synthetic.phantom import (
    Axes,
    Grid,
    Lesion,
    Tube,
    ellipsoid,
    grid_covering,
    lesion_mask,
    make_lesion,
    paint_lesion,
    paint_tube,
    tube,
)

log = logging.getLogger(__name__)

TRUTH_NAME = "synth_truth.csv"
CSV_COLUMNS = (
    "PatientID",
    "Age",
    "Gender",
    "Tobacco Consumption",
    "Alcohol Consumption",
    "Performance Status",
    "Treatment",
    "M-stage",
    "CenterID",
    "HPV Status",
    "RFS",
    "Relapse",
    "T-stage",
    "N-stage",
)
CLINICAL_KEYS = CSV_COLUMNS[1:10]

# centre -> (CenterID, sampling weight, probability of Bq/ml PET, probability of HPV+)
CENTRES: dict[str, tuple[int, float, float, float]] = {
    "CHUM": (1, 0.13, 0.0, 0.55),
    "CHUP": (2, 0.12, 0.0, 0.45),
    "CHUS": (3, 0.14, 0.0, 0.50),
    "CHUV": (4, 0.08, 0.9, 0.45),
    "HGJ": (5, 0.12, 0.0, 0.50),
    "HMR": (6, 0.08, 0.9, 0.40),
    "MDA": (7, 0.33, 0.0, 0.75),
}
"""Seven training centres as in HECKTOR; CHUV and HMR store PET in Bq/ml (about 15 % of cases)."""

MISSING_RATE: dict[str, float] = {
    "Age": 0.10,
    "Gender": 0.10,
    "Tobacco Consumption": 0.35,
    "Alcohol Consumption": 0.35,
    "Performance Status": 0.30,
    "Treatment": 0.10,
    "M-stage": 0.15,
    "CenterID": 0.0,
    "HPV Status": 0.30,
}
"""Per-variable probability that a clinical value is missing (independent of its value); CenterID is never missing."""

HAZARD_COEFFICIENTS: dict[str, float] = {
    "log_total_volume": 0.60,  # per unit of ln(GTVp + GTVn volume in ml), centred at ln(20)
    "node_count": 0.25,  # per GTVn node, centred at 1.5
    "suv_max": 0.03,  # per SUV unit of the lesions' SUVmax, centred at 14
    "hpv_negative": 0.50,  # HPV- vs HPV+, indicator centred at 0.5
    "age": 0.015,  # per year, centred at 60
    "ecog": 0.30,  # per ECOG grade, centred at 0.6
    "m1": 1.00,  # M1 vs M0/Mx
    "chemoradiotherapy": -0.30,  # treatment 1 vs 0, indicator centred at 0.8
}
"""Log-hazard coefficients of the RFS model: ``true_risk = sum(coef * covariate)`` (higher = earlier relapse)."""

WEIBULL_SHAPE = 0.85
WEIBULL_SCALE_DAYS = 9000.0
"""Baseline Weibull: S0(t) = exp(-(t / scale)^shape); S(t | x) = S0(t)^exp(true_risk)."""
FOLLOW_UP_DAYS = (540.0, 2200.0)
DROPOUT_MEAN_DAYS = 6000.0

SIZES = ("full", "small")


@dataclass
class SynthCase:
    """One phantom patient: images with geometry, the clinical row (None = missing) and the ground truth."""

    pid: str
    ct: sitk.Image  # int16 HU, CT grid
    pet: sitk.Image  # float32, SUV or Bq/ml (truth["pet_units"]), PET grid
    label: sitk.Image  # uint8 0/1/2 on the CT grid
    clinical: dict[str, Any]  # CSV keys -> value or None (missing)
    truth: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- identifiers
def case_pid(seed: int, index: int) -> str:
    """The patient ID of case ``index`` in the cohort of ``seed``: ``<CENTRE>-<NNN>`` (NNN = index + 1)."""
    rng = np.random.default_rng([int(seed), int(index), 7])
    names = list(CENTRES)
    weights = np.array([CENTRES[n][1] for n in names])
    centre = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    return f"{centre}-{index + 1:03d}"


def case_seed(seed: int, index: int) -> int:
    """The RNG seed of case ``index`` in the cohort of ``seed`` (independent of cohort size and workers)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


# --------------------------------------------------------------------------------------------------- anatomy
@dataclass
class Patient:
    """Anatomical parameters in the patient frame (see :mod:`hmvnet.synthetic.phantom`); lengths in mm."""

    z_vertex: float
    x0: float
    y0: float
    s: float  # body scale
    fat: float  # subcutaneous fat thickness
    suv_body: float
    suv_brain: float
    suv_tonsil: float
    suv_gland: float
    suv_muscle: float

    def u(self, depth: float) -> float:
        return depth * self.s


def _airway(p: Patient) -> Tube:
    u = [p.u(d) for d in (108, 130, 160, 175, 200, 225, 280, 330)]
    cy = [p.y0 + p.s * v for v in (-30, -18, -15, -18, -25, -25, -5, -5)]
    a = [12.0, 13.0, 12.0, 10.0, 8.0, 9.0, 9.0, 0.0]
    b = [7.0, 8.0, 7.0, 8.0, 7.0, 8.0, 9.0, 0.0]
    return tube(p.z_vertex, u, p.x0, cy, a, b)


def _structures(p: Patient) -> list[tuple[Tube, float, float]]:
    """Anatomy in painter's order: (shape, CT value in HU, PET value in SUV)."""
    s, zv, x0, y0, u = p.s, p.z_vertex, p.x0, p.y0, p.u
    fat, soft, muscle, bone, cortex = -100.0, 40.0, 55.0, 450.0, 900.0
    out: list[tuple[Tube, float, float]] = []

    head = ((72 * s, 92 * s, 95 * s), u(95), y0)
    face = ((55 * s, 55 * s, 42 * s), u(150), y0 - 30 * s)
    trunk_u = [u(d) for d in (140, 225, 250, 275, 320, 700)]
    trunk_a = [57 * s, 60 * s, 120 * s, 170 * s, 175 * s, 175 * s]
    trunk_b = [60 * s, 62 * s, 80 * s, 100 * s, 110 * s, 110 * s]
    trunk_cy = [y0 + 5 * s, y0 + 5 * s, y0 + 10 * s, y0 + 15 * s, y0 + 15 * s, y0 + 15 * s]
    for t in (0.0, p.fat):  # outer skin-to-fat envelope, then the soft tissue inside the fat layer
        hu, suv = (fat, 0.35 * p.suv_body) if t == 0.0 else (soft, p.suv_body)
        for semi, cu, cy in (head, face):
            out.append((ellipsoid(zv, cu, x0, cy, (semi[0] - t, semi[1] - t, semi[2] - t)), hu, suv))
        out.append(
            (
                tube(zv, trunk_u, x0, trunk_cy, [a - t for a in trunk_a], [b - t for b in trunk_b]),
                hu,
                suv,
            )
        )
    # paraspinal and sternocleidomastoid muscles, tongue
    spine_u = [u(d) for d in (125, 200, 300, 700)]
    spine_cy = [y0 + v * s for v in (18, 20, 45, 50)]
    for side in (-1, 1):
        out.append(
            (
                tube(zv, spine_u, x0 + side * 20 * s, [c + 32 * s for c in spine_cy], 16 * s, 12 * s),
                muscle,
                p.suv_muscle,
            )
        )
        out.append(
            (
                tube(zv, [u(140), u(235)], x0 + side * 42 * s, y0 - 12 * s, 9 * s, 7 * s),
                muscle,
                p.suv_muscle * 1.1,
            )
        )
    out.append((ellipsoid(zv, u(150), x0, y0 - 45 * s, (28 * s, 25 * s, 18 * s)), muscle, p.suv_muscle * 1.2))
    # skull and brain (skull base is a flat bony floor), orbits, sinuses, nasal cavity
    out.append((_cut(ellipsoid(zv, u(80), x0, y0, (71 * s, 91 * s, 78 * s)), zv - u(128)), cortex, 0.5))
    out.append((_cut(ellipsoid(zv, u(80), x0, y0, (64 * s, 84 * s, 70 * s)), zv - u(122)), 35.0, p.suv_brain))
    # white matter (lower FDG uptake than the cortex)
    out.append((ellipsoid(zv, u(75), x0, y0 + 5 * s, (42 * s, 60 * s, 42 * s)), 28.0, 0.45 * p.suv_brain))
    for side in (-1, 1):
        out.append(
            (ellipsoid(zv, u(92), x0 + side * 32 * s, y0 - 72 * s, (16 * s, 16 * s, 15 * s)), -80.0, 0.4)
        )
        out.append(
            (ellipsoid(zv, u(92), x0 + side * 32 * s, y0 - 76 * s, (11 * s, 11 * s, 11 * s)), 15.0, 0.3)
        )
        out.append(
            (ellipsoid(zv, u(118), x0 + side * 28 * s, y0 - 52 * s, (13 * s, 15 * s, 14 * s)), -950.0, 0.0)
        )
    out.append((ellipsoid(zv, u(105), x0, y0 - 60 * s, (9 * s, 24 * s, 22 * s)), -950.0, 0.0))
    # salivary glands and tonsils (physiological PET distractors)
    for side in (-1, 1):
        out.append(
            (
                ellipsoid(zv, u(140), x0 + side * 45 * s, y0 + 5 * s, (10 * s, 16 * s, 18 * s)),
                -10.0,
                p.suv_gland,
            )
        )
        out.append(
            (
                ellipsoid(zv, u(172), x0 + side * 32 * s, y0 - 35 * s, (9 * s, 10 * s, 9 * s)),
                45.0,
                p.suv_gland * 1.1,
            )
        )
        out.append(
            (
                ellipsoid(zv, u(145), x0 + side * 18 * s, y0 - 17 * s, (6 * s, 8 * s, 11 * s)),
                45.0,
                p.suv_tonsil,
            )
        )
        out.append(
            (ellipsoid(zv, u(215), x0 + side * 15 * s, y0 - 22 * s, (7 * s, 9 * s, 14 * s)), 90.0, 1.3)
        )
    # mandible (a U-shaped ring), cervical/thoracic spine, clavicles, humeral heads
    out.append((tube(zv, [u(140), u(178)], x0, y0 - 10 * s, 48 * s, 55 * s, half="anterior"), cortex, 0.5))
    out.append(
        (tube(zv, [u(140), u(178)], x0, y0 - 10 * s, 41 * s, 48 * s, half="anterior"), muscle, p.suv_muscle)
    )
    for k in range(40):
        top, bottom = u(125 + 21 * k), u(125 + 21 * k + 16)
        cy_v = float(np.interp(top, spine_u, spine_cy))
        grow = 1.0 + min(k, 12) * 0.03
        out.append((tube(zv, [top, bottom], x0, cy_v, 11 * s * grow, 9 * s * grow), cortex, 0.6))
        out.append(
            (
                tube(zv, [top + 1.5, bottom - 1.5], x0, cy_v, (11 * s - 2) * grow, (9 * s - 2) * grow),
                bone,
                1.3,
            )
        )
        out.append(
            (tube(zv, [top, bottom], x0, cy_v + 19 * s, 12 * s, 10 * s, half="posterior"), cortex, 0.6)
        )
    out.append((tube(zv, spine_u, x0, [c + 19 * s for c in spine_cy], 7 * s, 6 * s), 15.0, 0.8))
    for side in (-1, 1):
        out.append(
            (ellipsoid(zv, u(245), x0 + side * 75 * s, y0 - 40 * s, (62 * s, 7 * s, 7 * s)), cortex, 0.6)
        )
        out.append(
            (ellipsoid(zv, u(280), x0 + side * 150 * s, y0 + 10 * s, (23 * s, 23 * s, 23 * s)), cortex, 0.6)
        )
        lung_u = [u(d) for d in (250, 290, 350, 450, 700)]
        out.append(
            (
                tube(
                    zv,
                    lung_u,
                    x0 + side * 62 * s,
                    y0 + 15 * s,
                    [0, 45 * s, 70 * s, 75 * s, 75 * s],
                    [0, 45 * s, 80 * s, 85 * s, 85 * s],
                ),
                -850.0,
                0.4,
            )
        )
    out.append((_airway(p), -990.0, 0.0))
    return out


def _cut(t: Tube, z_min: float) -> Tube:
    """``t`` without the part below ``z_min`` (a flat floor)."""
    keep = t.z >= z_min
    z = np.concatenate([[z_min], t.z[keep]])
    interp = {
        k: np.concatenate([[np.interp(z_min, t.z, getattr(t, k))], getattr(t, k)[keep]])
        for k in ("cx", "cy", "a", "b")
    }
    return Tube(z, interp["cx"], interp["cy"], interp["a"], interp["b"], t.half)


# --------------------------------------------------------------------------------------------------- draws
def _draw_patient(rng: np.random.Generator) -> Patient:
    return Patient(
        z_vertex=float(rng.uniform(-150.0, 250.0)),
        x0=float(rng.uniform(-15.0, 15.0)),
        y0=float(rng.uniform(-20.0, 20.0)),
        s=float(rng.uniform(0.92, 1.1)),
        fat=float(rng.uniform(5.0, 12.0)),
        suv_body=float(rng.uniform(0.5, 1.0)),
        suv_brain=float(rng.uniform(6.0, 12.0)),
        suv_tonsil=float(rng.uniform(2.0, 4.5)),
        suv_gland=float(rng.uniform(1.4, 2.6)),
        suv_muscle=float(rng.uniform(0.8, 1.5)),
    )


_FLIPS: list[tuple[int, int, int]] = [(-1, -1, 1), (1, 1, -1), (-1, 1, 1), (-1, -1, -1)]


def _draw_geometry(rng: np.random.Generator, p: Patient, size: str) -> tuple[Grid, Grid, dict[str, Any]]:
    """CT and PET grids (different spacing, origin, size; sometimes flipped directions) for patient ``p``."""
    flipped = rng.uniform() < 0.2
    ct_flips = _FLIPS[int(rng.choice(4, p=[0.5, 0.2, 0.15, 0.15]))] if flipped else (1, 1, 1)
    pet_flips = ct_flips if (flipped and rng.uniform() < 0.5) else (1, 1, 1)
    if size == "full":
        ct_sp = (float(rng.choice([0.9766, 0.9766, 0.9375, 1.0])),) * 2
        fov_xy = float(rng.uniform(260.0, 340.0))
        top_u = float(rng.uniform(-15.0, 60.0))
        length = float(rng.uniform(200.0, 260.0) if rng.uniform() < 0.45 else rng.uniform(380.0, 500.0))
        ct_dz = (
            float(rng.choice([1.5, 2.0, 2.5, 3.0])) if length < 300 else float(rng.choice([2.0, 2.5, 3.0]))
        )
        pet_sp_xy = float(rng.choice([2.734, 3.516, 4.0, 4.688, 5.469]))
        pet_dz = float(rng.choice([2.79, 3.27, 4.0, 5.0]))
        pet_fov = float(rng.uniform(450.0, 650.0))
    else:
        ct_sp = (float(rng.choice([1.95, 2.0])),) * 2
        fov_xy = float(rng.uniform(190.0, 210.0))
        top_u = float(rng.uniform(-10.0, 30.0))
        length = float(rng.uniform(240.0, 260.0))
        ct_dz = 3.0
        pet_sp_xy = float(rng.uniform(4.0, 5.0))
        pet_dz = float(rng.choice([4.0, 5.0]))
        pet_fov = float(rng.uniform(250.0, 300.0))
    z_hi = p.z_vertex - top_u
    z_lo = z_hi - length
    cx, cy = p.x0 + rng.uniform(-10.0, 10.0), p.y0 + rng.uniform(-5.0, 25.0)
    ct = grid_covering(
        (cx - fov_xy / 2, cy - fov_xy / 2, z_lo),
        (cx + fov_xy / 2, cy + fov_xy / 2, z_hi),
        (*ct_sp, ct_dz),
        ct_flips,
    )
    px, py = cx + rng.uniform(-15.0, 15.0), cy + rng.uniform(-15.0, 15.0)
    pz_lo, pz_hi = z_lo - rng.uniform(0.0, 60.0), z_hi + rng.uniform(-20.0, 40.0)
    pet = grid_covering(
        (px - pet_fov / 2, py - pet_fov / 2, pz_lo),
        (px + pet_fov / 2, py + pet_fov / 2, pz_hi),
        (pet_sp_xy, pet_sp_xy, pet_dz),
        pet_flips,
    )
    info = {"fov_z_mm": round(length, 1), "head_cut": bool(top_u > 5.0)}
    return ct, pet, info


def _draw_lesions(rng: np.random.Generator, p: Patient) -> tuple[Lesion, list[Lesion], str]:
    """The GTVp (next to the airway) and 0-6 GTVn (lateral neck levels II-IV)."""
    site = ["oropharynx", "larynx", "nasopharynx"][int(rng.choice(3, p=[0.55, 0.3, 0.15]))]
    depth = {"oropharynx": (132, 165), "larynx": (172, 208), "nasopharynx": (112, 124)}[site]
    z = p.z_vertex - p.u(rng.uniform(*depth))
    air = _airway(p)
    ax, ay = (float(np.interp(z, air.z, getattr(air, k))) for k in ("cx", "cy"))
    aa, ab = (float(np.interp(z, air.z, getattr(air, k))) for k in ("a", "b"))
    volume = float(np.exp(rng.uniform(np.log(2.5), np.log(65.0))))
    r_eq = np.cbrt(3 * volume * 1000 / (4 * np.pi))
    theta = [0.0, np.pi, -np.pi / 2][int(rng.choice(3, p=[0.3, 0.3, 0.4]))] + rng.uniform(-0.4, 0.4)
    reach = 0.45 * r_eq
    centre = np.array([ax + np.cos(theta) * (aa + reach), ay + np.sin(theta) * (ab + reach), z])
    gtvp = make_lesion(
        rng,
        centre,
        volume,
        satellites=int(rng.integers(1, 4)),
        wobble=float(rng.uniform(0.1, 0.25)),
        uptake=float(np.exp(rng.uniform(np.log(6.0), np.log(22.0)))),
        hu=40.0 + float(rng.uniform(10.0, 30.0)),
        necrosis=float(rng.uniform(0.3, 0.5)) if (volume > 12 and rng.uniform() < 0.35) else 0.0,
    )
    n_nodes = int(rng.choice(7, p=[0.26, 0.24, 0.2, 0.14, 0.08, 0.05, 0.03]))
    side = 1.0 if centre[0] >= p.x0 else -1.0
    nodes: list[Lesion] = []
    for _ in range(n_nodes):
        volume_n = float(np.exp(rng.uniform(np.log(0.4), np.log(18.0))))
        r_n = float(np.cbrt(3 * volume_n * 1000 / (4 * np.pi)))
        for _attempt in range(12):
            touching = bool(nodes) and rng.uniform() < 0.35
            if touching:  # touching (or nearly touching) the previous node
                d = rng.normal(size=3) * np.array([0.5, 0.5, 1.0])
                d /= np.linalg.norm(d)
                prev = nodes[-1]
                c = prev.centre + d * (prev.equivalent_radius + r_n) * rng.uniform(0.85, 1.05)
            else:
                sgn = side if rng.uniform() < 0.75 else -side
                x_max = max(26.0, 54.0 * p.s - r_n)
                c = np.array(
                    [
                        p.x0 + sgn * rng.uniform(24.0, x_max),
                        p.y0 + p.s * rng.uniform(-30.0, 5.0),
                        p.z_vertex - p.u(rng.uniform(150.0, 235.0)),
                    ]
                )
            clear_of_gtvp = np.linalg.norm(c - centre) > gtvp.radius + r_n + 2.0
            # an independently placed node does not overlap earlier ones (touching clusters are drawn above)
            separate = touching or all(
                np.linalg.norm(c - n.centre) > n.equivalent_radius * 1.3 + r_n + 1.0 for n in nodes
            )
            if clear_of_gtvp and separate and abs(c[0] - p.x0) < 60 * p.s:
                break
        else:
            continue
        weak = rng.uniform() < 0.3
        nodes.append(
            make_lesion(
                rng,
                c,
                volume_n,
                elongation=(1.0, 1.0, 1.5),
                wobble=float(rng.uniform(0.05, 0.15)),
                uptake=float(
                    rng.uniform(2.5, 4.5) if weak else np.exp(rng.uniform(np.log(4.0), np.log(15.0)))
                ),
                hu=40.0 + float(rng.uniform(5.0, 25.0)),
                necrosis=float(rng.uniform(0.3, 0.5)) if (volume_n > 5 and rng.uniform() < 0.25) else 0.0,
            )
        )
    return gtvp, nodes, site


def _draw_clinical(rng: np.random.Generator, centre: str, site: str) -> dict[str, Any]:
    """True (complete) clinical values with the HECKTOR encodings."""
    center_id, _, _, p_hpv = CENTRES.get(centre, (0, 0.0, 0.0, 0.5))
    hpv = int(rng.uniform() < (p_hpv if site == "oropharynx" else 0.3 * p_hpv))
    tobacco = int(rng.uniform() < (0.45 if hpv else 0.75))
    return {
        "Age": int(np.clip(round(rng.normal(61.0, 9.0)), 35, 88)),
        "Gender": int(rng.uniform() < 0.8),
        "Tobacco Consumption": tobacco,
        "Alcohol Consumption": int(rng.uniform() < (0.6 if tobacco else 0.4)),
        "Performance Status": int(rng.choice(5, p=[0.55, 0.33, 0.09, 0.025, 0.005])),
        "Treatment": int(rng.uniform() < 0.8),
        "M-stage": ["M0", "M1", "Mx"][int(rng.choice(3, p=[0.93, 0.03, 0.04]))],
        "CenterID": int(center_id),
        "HPV Status": hpv,
    }


def hazard_covariates(truth: dict[str, Any], clinical: dict[str, Any]) -> dict[str, float]:
    """The centred covariates of the RFS model (keys of :data:`HAZARD_COEFFICIENTS`)."""
    total = truth["gtvp_volume_ml"] + truth["gtvn_volume_ml"]
    return {
        "log_total_volume": math.log(max(total, 0.1)) - math.log(20.0),
        "node_count": truth["gtvn_count"] - 1.5,
        "suv_max": truth["suv_max"] - 14.0,
        "hpv_negative": float(clinical["HPV Status"] == 0) - 0.5,
        "age": clinical["Age"] - 60.0,
        "ecog": float(clinical["Performance Status"]) - 0.6,
        "m1": float(clinical["M-stage"] == "M1"),
        "chemoradiotherapy": float(clinical["Treatment"] == 1) - 0.8,
    }


def true_log_hazard(truth: dict[str, Any], clinical: dict[str, Any]) -> float:
    """``true_risk``: the linear predictor (log-hazard ratio) of the RFS model; higher = earlier relapse."""
    cov = hazard_covariates(truth, clinical)
    return float(sum(HAZARD_COEFFICIENTS[k] * v for k, v in cov.items()))


def _draw_outcome(rng: np.random.Generator, risk: float) -> dict[str, Any]:
    """Weibull proportional-hazards event time, independent censoring (administrative follow-up + dropout)."""
    u_event, u_follow, u_drop = (float(v) for v in rng.uniform(size=3))
    event = WEIBULL_SCALE_DAYS * (-math.log(1.0 - u_event) / math.exp(risk)) ** (1.0 / WEIBULL_SHAPE)
    follow = FOLLOW_UP_DAYS[0] + u_follow * (FOLLOW_UP_DAYS[1] - FOLLOW_UP_DAYS[0])
    censor = min(follow, -DROPOUT_MEAN_DAYS * math.log(1.0 - u_drop))
    observed = min(event, censor)
    return {
        "event_time_days": round(event, 1),
        "censor_time_days": round(censor, 1),
        "RFS": max(1, round(observed)),
        "Relapse": int(event <= censor),
    }


# --------------------------------------------------------------------------------------------------- images
def _ct_value(lesion: Lesion, r: np.ndarray, pts: Axes) -> np.ndarray:
    return np.where(r < lesion.necrosis, lesion.hu - 25.0, lesion.hu)


def _pet_value(lesion: Lesion, r: np.ndarray, pts: Axes) -> np.ndarray:
    profile = 0.6 + 0.4 * np.clip(1.0 - r**2, 0.0, 1.0)
    value = lesion.uptake * profile * lesion.texture(*pts)
    if lesion.necrosis > 0:
        cold = np.clip((r - lesion.necrosis) / 0.15 + 0.5, 0.0, 1.0)
        value = value * (0.2 + 0.8 * cold)
    return value


def _render_ct(p: Patient, lesions: list[Lesion], grid: Grid, noise_hu: float, seed: int) -> np.ndarray:
    """CT in HU, int16 (z, y, x); white Gaussian noise of ``noise_hu``."""
    axes = grid.axes()
    arr = np.full(tuple(reversed(grid.size)), -1000.0, dtype=np.float32)
    for shape, hu, _ in _structures(p):
        paint_tube(arr, axes, shape, hu)
    for lesion in lesions:
        paint_lesion(arr, axes, lesion, _ct_value)
    arr += np.random.default_rng([seed, 1]).standard_normal(arr.shape, dtype=np.float32) * np.float32(
        noise_hu
    )
    return np.clip(np.rint(arr), -1024, 3071).astype(np.int16)


def _render_pet(
    p: Patient, lesions: list[Lesion], grid: Grid, fwhm_mm: float, noise: float, seed: int
) -> np.ndarray:
    """PET in SUV, float32 (z, y, x): anti-aliased activity, Poisson-like noise, Gaussian PSF of ``fwhm_mm``."""
    axes = grid.axes()
    soft = float(np.mean(grid.spacing))
    arr = np.zeros(tuple(reversed(grid.size)), dtype=np.float32)
    for shape, _, suv in _structures(p):
        paint_tube(arr, axes, shape, suv, soft_mm=soft)
    for lesion in lesions:
        paint_lesion(arr, axes, lesion, _pet_value, soft_mm=soft)
    gauss = np.random.default_rng([seed, 2]).standard_normal(arr.shape, dtype=np.float32)
    arr += np.sqrt(np.clip(arr, 0.0, None) * np.float32(noise)) * gauss
    smoothed = sitk.SmoothingRecursiveGaussian(
        grid.image(arr), fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    )
    # quantised to 1/64 SUV, like the scaled integers scanners store (and it compresses the files ~2x)
    return (np.round(np.clip(sitk.GetArrayFromImage(smoothed), 0.0, None) * 64.0) / 64.0).astype(np.float32)


def _render_label(gtvp: Lesion, nodes: list[Lesion], grid: Grid) -> np.ndarray:
    axes = grid.axes()
    shape = tuple(reversed(grid.size))
    label = np.zeros(shape, dtype=np.uint8)
    label[lesion_mask(nodes, axes, shape)] = Label.GTVN  # type: ignore[arg-type]
    label[lesion_mask([gtvp], axes, shape)] = Label.GTVP  # type: ignore[arg-type]
    return label


def _lesion_suv(pet_suv: np.ndarray, lesions: list[Lesion], grid: Grid) -> tuple[float, float]:
    """(SUVmax, TLG in SUV*ml) of the PET voxels whose centres lie inside ``lesions``."""
    if not lesions:
        return 0.0, 0.0
    mask = lesion_mask(lesions, grid.axes(), pet_suv.shape)  # type: ignore[arg-type]
    if not mask.any():  # a lesion smaller than a PET voxel: the voxels around its centre
        for lesion in lesions:
            idx = tuple(int(np.argmin(np.abs(c - lesion.centre[d]))) for d, c in enumerate(grid.axes()))
            mask[idx[2], idx[1], idx[0]] = True
        mask = ndimage.binary_dilation(mask)
    return float(pet_suv[mask].max()), float(pet_suv[mask].sum() * grid.voxel_ml)


@dataclass
class CaseDraw:
    """Every random parameter of one case before rendering (cheap: no image is made)."""

    patient: Patient
    ct_grid: Grid
    pet_grid: Grid
    geometry: dict[str, Any]
    gtvp: Lesion
    nodes: list[Lesion]
    site: str
    clinical_true: dict[str, Any]
    missing: dict[str, bool]
    bq: bool
    weight_kg: float
    dose_mbq: float
    pet_scale: float  # PET value = SUV * pet_scale (1 for SUV)
    ct_noise: float  # HU
    fwhm: float  # mm
    pet_noise: float


def draw_case(
    pid: str,
    rng_seed: int,
    size: str = "full",
    flips: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
) -> CaseDraw:
    """The random parameters of case ``pid`` (see :func:`generate_case`), without rendering any image."""
    if size not in SIZES:
        raise InputError(f"size must be one of {SIZES}, got {size!r}")
    centre = pid.split("-")[0]
    rng = np.random.default_rng(int(rng_seed))
    patient = _draw_patient(rng)
    ct_grid, pet_grid, geo = _draw_geometry(rng, patient, size)
    if flips is not None:
        ct_grid = grid_covering(*_box(ct_grid), ct_grid.spacing, flips[0])
        pet_grid = grid_covering(*_box(pet_grid), pet_grid.spacing, flips[1])
    gtvp, nodes, site = _draw_lesions(rng, patient)
    clinical_true = _draw_clinical(rng, centre, site)
    missing = {k: bool(rng.uniform() < MISSING_RATE[k]) for k in CLINICAL_KEYS}
    bq = bool(rng.uniform() < CENTRES.get(centre, (0, 0.0, 0.0, 0.5))[2])
    weight_kg, dose_mbq = float(rng.uniform(55.0, 105.0)), float(rng.uniform(250.0, 450.0))
    pet_scale = float(np.clip(dose_mbq * 1e6 / (weight_kg * 1000.0), 3000.0, 8000.0)) if bq else 1.0
    return CaseDraw(
        patient,
        ct_grid,
        pet_grid,
        geo,
        gtvp,
        nodes,
        site,
        clinical_true,
        missing,
        bq,
        weight_kg,
        dose_mbq,
        pet_scale,
        float(rng.uniform(10.0, 20.0)),
        float(rng.uniform(5.0, 7.0)),
        float(rng.uniform(0.3, 0.6)),
    )


def generate_case(
    pid: str,
    rng_seed: int,
    size: str = "full",
    *,
    flips: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
) -> SynthCase:
    """One phantom patient.

    Args:
        pid: ``<CENTRE>-<NNN>``; the centre sets CenterID, PET units (CHUV/HMR: Bq/ml) and the HPV prevalence.
        rng_seed: all randomness of the case derives from it.
        size: "full" (CT ~0.98 mm in-plane, 1.5-3 mm slices) or "small" (CT ~2x2x3 mm, PET 4-5 mm, neck FOV).
        flips: optional (CT flips, PET flips) overriding the drawn directions (tests: the anatomy is unchanged).

    Returns:
        :class:`SynthCase` with CT (int16 HU), PET (float32 SUV or Bq/ml), label (uint8 on the CT grid), the clinical
        row (missing values as None) and the truth (true log-hazard ``true_risk``, volumes in ml, SUVmax, ...).
    """
    d = draw_case(pid, rng_seed, size, flips)
    patient, ct_grid, pet_grid, geo = d.patient, d.ct_grid, d.pet_grid, d.geometry
    gtvp, nodes, site, clinical_true, missing = d.gtvp, d.nodes, d.site, d.clinical_true, d.missing
    bq, weight_kg, dose_mbq, pet_scale = d.bq, d.weight_kg, d.dose_mbq, d.pet_scale
    ct_noise, fwhm, pet_noise = d.ct_noise, d.fwhm, d.pet_noise
    outcome_rng = np.random.default_rng([int(rng_seed), 3])

    lesions = [*nodes, gtvp]
    ct_arr = _render_ct(patient, lesions, ct_grid, ct_noise, int(rng_seed))
    label_arr = _render_label(gtvp, nodes, ct_grid)
    pet_suv = _render_pet(patient, lesions, pet_grid, fwhm, pet_noise, int(rng_seed))
    suv_max, tlg = _lesion_suv(pet_suv, lesions, pet_grid)
    gtvp_suv_max, _ = _lesion_suv(pet_suv, [gtvp], pet_grid)
    nodes_mask = label_arr == Label.GTVN
    boxes = ndimage.find_objects(nodes_mask.astype(np.uint8))
    n_components = int(ndimage.label(nodes_mask[boxes[0]], structure=STRUCTURE_26)[1]) if boxes else 0

    ct = ct_grid.image(ct_arr)
    label = ct_grid.image(label_arr)
    pet = pet_grid.image((pet_suv * np.float32(pet_scale)).astype(np.float32))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(label)
    centroid = stats.GetCentroid(Label.GTVP) if stats.HasLabel(Label.GTVP) else (math.nan,) * 3
    truth: dict[str, Any] = {
        "PatientID": pid,
        "gtvp_volume_ml": round(float((label_arr == Label.GTVP).sum()) * ct_grid.voxel_ml, 3),
        "gtvn_count": len(nodes),
        "gtvn_components": n_components,
        "gtvn_volume_ml": round(float((label_arr == Label.GTVN).sum()) * ct_grid.voxel_ml, 3),
        "suv_max": round(suv_max, 3),
        "gtvp_suv_max": round(gtvp_suv_max, 3),
        "tlg_suv_ml": round(tlg, 2),
    }
    risk = true_log_hazard(truth, clinical_true)
    outcome = _draw_outcome(outcome_rng, risk)
    truth = {
        "PatientID": pid,
        "true_risk": round(risk, 6),
        "pet_units": "Bq/ml" if bq else "SUV",
        "pet_scale": round(pet_scale, 3),
        **{k: v for k, v in truth.items() if k != "PatientID"},
        "gtvp_site": site,
        "gtvp_centroid_x_mm": round(centroid[0], 3),
        "gtvp_centroid_y_mm": round(centroid[1], 3),
        "gtvp_centroid_z_mm": round(centroid[2], 3),
        **outcome,
        **{f"true_{k}": v for k, v in clinical_true.items()},
        "weight_kg": round(weight_kg, 1),
        "dose_mbq": round(dose_mbq, 1),
        "ct_direction": "".join("+" if f > 0 else "-" for f in ct_grid.flips),
        "pet_direction": "".join("+" if f > 0 else "-" for f in pet_grid.flips),
        "ct_noise_hu": round(ct_noise, 2),
        "pet_fwhm_mm": round(fwhm, 2),
        **geo,
    }
    truth.update(_true_stages(label, patient.x0, rng_seed))
    clinical = {k: (None if missing[k] else v) for k, v in clinical_true.items()}
    return SynthCase(pid=pid, ct=ct, pet=pet, label=label, clinical=clinical, truth=truth)


def _true_stages(label: sitk.Image, midline_x_mm: float, rng_seed: int) -> dict[str, str]:
    """T-stage / N-stage columns from the true label and midline (hmvnet.staging.truth: rule + stated noise)."""
    from hmvnet.staging.geometry import staging_geometry
    from hmvnet.staging.truth import synthetic_stages

    geometry = staging_geometry(label, midline_x_mm=midline_x_mm)
    return synthetic_stages(geometry, np.random.default_rng([int(rng_seed), 13]))


def _box(grid: Grid) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Physical (lo, hi) corners of the voxel centres of ``grid``."""
    (x, y, z) = grid.axes()
    lo = (float(min(x[0], x[-1])), float(min(y[0], y[-1])), float(min(z[0], z[-1])))
    hi = (float(max(x[0], x[-1])), float(max(y[0], y[-1])), float(max(z[0], z[-1])))
    return lo, hi


# --------------------------------------------------------------------------------------------------- preview
def save_preview(case: SynthCase, png_path: Path | str) -> Path:
    """Axial, coronal and sagittal CT (top row) and PET (bottom row) slices through the GTVp, label contours.

    Both images are shown in LPS orientation (patient's right on the image left, anterior up in axial views,
    head up otherwise), with the PET resampled (linear) onto the CT grid so the panels align in mm.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ct = sitk.DICOMOrient(case.ct, "LPS")
    label = sitk.DICOMOrient(case.label, "LPS")
    pet_scale = float(case.truth.get("pet_scale", 1.0)) or 1.0
    pet = sitk.Resample(case.pet, case.ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    pet = sitk.DICOMOrient(pet, "LPS") / pet_scale
    ct_a, pet_a, lab_a = (sitk.GetArrayFromImage(im) for im in (ct, pet, label))
    sx, sy, sz = ct.GetSpacing()
    ox, oy, oz = ct.GetOrigin()
    nz, ny, nx = ct_a.shape
    fg = np.argwhere(lab_a == Label.GTVP)
    k, j, i = fg.mean(axis=0).round().astype(int) if fg.size else (nz // 2, ny // 2, nx // 2)
    ext_x, ext_y, ext_z = (ox, ox + nx * sx), (oy, oy + ny * sy), (oz, oz + nz * sz)
    views = [
        ("axial", lambda a: a[k], (ext_x[0], ext_x[1], ext_y[1], ext_y[0])),
        ("coronal", lambda a: a[:, j, :], (ext_x[0], ext_x[1], ext_z[0], ext_z[1])),
        ("sagittal", lambda a: a[:, :, i], (ext_y[0], ext_y[1], ext_z[0], ext_z[1])),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(12, 8.4))
    for col, (name, cut, extent) in enumerate(views):
        origin = "upper" if name == "axial" else "lower"
        for row, (arr, kw) in enumerate(
            (
                (ct_a, {"cmap": "gray", "vmin": -250, "vmax": 350}),
                (pet_a, {"cmap": "hot", "vmin": 0, "vmax": 12}),
            )
        ):
            ax = axes[row, col]
            ax.imshow(cut(arr), extent=extent, origin=origin, interpolation="nearest", **kw)
            lab = cut(lab_a)
            for value, colour in ((Label.GTVP, "cyan"), (Label.GTVN, "lime")):
                if (lab == value).any():
                    ax.contour(
                        (lab == value).astype(float),
                        levels=[0.5],
                        colors=colour,
                        linewidths=0.8,
                        extent=extent,
                        origin=origin,
                    )
            ax.set_title(f"{'CT (HU)' if row == 0 else 'PET (SUV)'} {name}", fontsize=9)
            ax.tick_params(labelsize=7)
    t = case.truth
    fig.suptitle(
        f"{case.pid}: GTVp {t['gtvp_volume_ml']:.1f} ml (cyan), {t['gtvn_count']} GTVn {t['gtvn_volume_ml']:.1f} ml "
        f"(green), SUVmax {t['suv_max']:.1f}, PET in {t['pet_units']}, CT direction {t['ct_direction']}",
        fontsize=10,
    )
    fig.tight_layout()
    png_path = write_with(png_path, lambda tmp: fig.savefig(tmp, dpi=80))
    plt.close(fig)
    return png_path


# --------------------------------------------------------------------------------------------------- writers
def _write_image(image: sitk.Image, path: Path) -> None:
    write_with(path, lambda tmp: sitk.WriteImage(image, str(tmp), True))


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_training_case(args: tuple[str, int, str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Worker: generate one case and write it in the HECKTOR training layout; returns (CSV row, truth row)."""
    pid, rng_seed, size, out_dir = args
    case = generate_case(pid, rng_seed, size)
    t1 = Path(out_dir) / "Task 1" / pid
    _write_image(case.ct, t1 / f"{pid}__CT.nii.gz")
    _write_image(case.pet, t1 / f"{pid}__PT.nii.gz")
    _write_image(case.label, t1 / f"{pid}.nii.gz")
    for suffix in ("__CT", "__PT"):
        _link_or_copy(t1 / f"{pid}{suffix}.nii.gz", Path(out_dir) / "Task 2" / pid / f"{pid}{suffix}.nii.gz")
    row = {"PatientID": pid, **case.clinical, "RFS": case.truth["RFS"], "Relapse": case.truth["Relapse"]}
    row.update({k: case.truth[k] for k in ("T-stage", "N-stage")})
    return row, case.truth


def _init_worker() -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})

    write_with(path, write)


def generate_cohort(
    out_dir: Path | str,
    n_cases: int,
    seed: int,
    *,
    start_index: int = 0,
    size: str = "full",
    workers: int = 1,
) -> list[dict[str, Any]]:
    """Write cases ``start_index .. start_index + n_cases - 1`` of the cohort of ``seed`` in the training layout.

    Writes ``Task 1/<PID>/`` (CT, PET, label), ``Task 2/<PID>/`` (CT, PET; hard links when possible), the Task 2
    CSV (missing values as empty cells) and ``synth_truth.csv``. Rows already in the CSVs for other patients are
    kept (so a cohort can be extended with ``start_index``). Returns the truth rows of the new cases.
    """
    if n_cases < 1:
        raise InputError(f"--cases must be >= 1, got {n_cases}")
    if size not in SIZES:
        raise InputError(f"--size must be one of {SIZES}, got {size!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (case_pid(seed, g), case_seed(seed, g), size, str(out))
        for g in range(start_index, start_index + n_cases)
    ]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
            results = list(pool.map(_write_training_case, jobs))
    else:
        results = []
        for k, job in enumerate(jobs):
            results.append(_write_training_case(job))
            log.info("case %d/%d %s written", k + 1, len(jobs), job[0])
    new_ids = {job[0] for job in jobs}
    for name, columns, new_rows in (
        (TASK2_CSV, CSV_COLUMNS, [r[0] for r in results]),
        (TRUTH_NAME, list(results[0][1]), [r[1] for r in results]),
    ):
        old = [r for r in _read_rows(out / name) if r.get("PatientID") not in new_ids]
        rows = sorted([*old, *new_rows], key=lambda r: int(str(r["PatientID"]).rsplit("-", 1)[1]))
        _write_rows(out / name, columns, rows)
    return [r[1] for r in results]


_EHR_MISSING_STYLES = ("absent", None, "NaN")


def write_gc_case(
    out_dir: Path | str, seed: int, size: str = "full", truth_out: Path | str | None = None
) -> SynthCase:
    """Write case 0 of the cohort of ``seed`` in the grand-challenge layout.

    ``out_dir/images/ct/<uuid>.mha``, ``out_dir/images/pet/<uuid>.mha`` (compressed; uuids derived from the seed)
    and ``out_dir/ehr.json`` (missing values as an absent key, null or "NaN"). The label and the truth go to
    ``truth_out`` only (``label.nii.gz``, ``truth.json``), never under ``out_dir``.
    """
    out = Path(out_dir)
    case = generate_case(case_pid(seed, 0), case_seed(seed, 0), size)
    rng = np.random.default_rng([int(seed), 99])
    ct_id, pet_id = (str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(2))
    _write_image(case.ct, out / "images" / "ct" / f"{ct_id}.mha")
    _write_image(case.pet, out / "images" / "pet" / f"{pet_id}.mha")
    ehr: dict[str, Any] = {}
    for key, value in case.clinical.items():
        if value is not None:
            ehr[key] = value
            continue
        style = _EHR_MISSING_STYLES[int(rng.integers(len(_EHR_MISSING_STYLES)))]
        if style != "absent":
            ehr[key] = style
    write_text(json.dumps(ehr, indent=2) + "\n", out / "ehr.json")
    if truth_out is not None:
        truth_dir = Path(truth_out)
        _write_image(case.label, truth_dir / "label.nii.gz")
        truth = {
            **case.truth,
            "clinical_observed": case.clinical,
            "ct_file": f"{ct_id}.mha",
            "pet_file": f"{pet_id}.mha",
        }
        write_text(json.dumps(truth, indent=2) + "\n", truth_dir / "truth.json")
    return case


def cli_main(argv: list[str]) -> int:
    from hmvnet.app.parsers import synth_parser

    parser = synth_parser()
    args = parser.parse_args(argv)
    if args.format == "dicom":
        from hmvnet.synthetic.dicom import write_tree

        phantom = "simple" if args.size == "small" else "cohort"
        truth = write_tree(args.out, args.cases or 6, args.seed, phantom=phantom)
        log.info("DICOM tree of %d studies written to %s/export (truth.json beside it)", len(truth), args.out)
        return 0
    if args.gc_case:
        case = write_gc_case(args.out, args.seed, args.size, args.truth_out)
        log.info("grand-challenge case %s written to %s", case.pid, args.out)
        return 0
    if args.cases is None:
        parser.error("--cases is required unless --gc-case is given")
    truths = generate_cohort(
        args.out, args.cases, args.seed, start_index=args.start_index, size=args.size, workers=args.workers
    )
    events = sum(t["Relapse"] for t in truths)
    log.info("%d cases written to %s (%d relapses)", len(truths), args.out, events)
    return 0
