"""Generator v1 (``hmvnet synth --generator v1``): the original phantom cohort, kept reproducible bit for bit.

A case is drawn (:func:`draw_case`: anatomy, CT/PET grids, lesions, clinical values, missingness) then rendered
(:func:`generate_case`). Recurrence-free survival follows a Weibull proportional-hazards model
(:data:`HAZARD_COEFFICIENTS`, ``docs/synth.md``). The order of random draws is part of the v1 output: changing it
changes every v1 cohort (``tests/synthetic/test_cohort_v1_checksum.py`` guards it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hmvnet import Label
from hmvnet.errors import InputError
from hmvnet.geometry import STRUCTURE_26
from hmvnet.synthetic.anatomy_v1 import Patient, _airway, _draw_patient, _structures
from hmvnet.synthetic.common import CLINICAL_KEYS, SIZES, SynthCase, grid_box
from hmvnet.synthetic.phantom import Grid, Lesion, grid_covering, make_lesion
from hmvnet.synthetic.render import lesion_suv, render_ct, render_label, render_pet

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


def case_pid(seed: int, index: int) -> str:
    """The patient ID of case ``index`` in the cohort of ``seed``: ``<CENTRE>-<NNN>`` (NNN = index + 1)."""
    rng = np.random.default_rng([int(seed), int(index), 7])
    names = list(CENTRES)
    weights = np.array([CENTRES[n][1] for n in names])
    centre = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    return f"{centre}-{index + 1:03d}"


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
        ct_grid = grid_covering(*grid_box(ct_grid), ct_grid.spacing, flips[0])
        pet_grid = grid_covering(*grid_box(pet_grid), pet_grid.spacing, flips[1])
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
    ct_arr = render_ct(_structures(patient), lesions, ct_grid, ct_noise, int(rng_seed))
    label_arr = render_label(gtvp, nodes, ct_grid)
    pet_suv = render_pet(_structures(patient), lesions, pet_grid, fwhm, pet_noise, int(rng_seed))
    suv_max, tlg = lesion_suv(pet_suv, lesions, pet_grid)
    gtvp_suv_max, _ = lesion_suv(pet_suv, [gtvp], pet_grid)
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
