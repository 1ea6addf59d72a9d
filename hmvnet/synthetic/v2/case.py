"""One v2 case: draw every parameter (recorded in the truth row), render CT / PET / label, measure the truth.

Determinism: everything derives from ``rng_seed`` (images from fixed sub-streams), so a case is identical for
the same seed whatever the cohort size or the number of workers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from hmvnet import Label
from hmvnet.errors import InputError
from hmvnet.geometry import STRUCTURE_26
from hmvnet.synthetic.anatomy_v1 import Patient, _airway, _draw_patient
from hmvnet.synthetic.common import SIZES, SynthCase, grid_box
from hmvnet.synthetic.phantom import Grid, Lesion, grid_covering, lesion_mask, paint_tube
from hmvnet.synthetic.render import lesion_suv
from hmvnet.synthetic.v2 import anatomy, lesions, outcomes, protocols, truth
from hmvnet.synthetic.v2.ct import render_ct_v2, render_pet_v2
from hmvnet.synthetic.v2.protocols import PROTOCOLS, _pick

case_pid = protocols.case_pid


def _label(p: Patient, observed: list[Lesion], n_primaries: int, grid: Grid) -> np.ndarray:
    """uint8 label on ``grid`` from the observer's lesions (primaries first in ``observed``), air excluded."""
    axes, shape = grid.axes(), tuple(reversed(grid.size))
    out = np.zeros(shape, dtype=np.uint8)
    out[lesion_mask(observed[n_primaries:], axes, shape)] = Label.GTVN  # type: ignore[arg-type]
    out[lesion_mask(observed[:n_primaries], axes, shape)] = Label.GTVP  # type: ignore[arg-type]
    air = np.zeros(shape, dtype=np.uint8)
    paint_tube(air, axes, _airway(p), 1)
    out[air > 0] = Label.BACKGROUND
    return out


def _pet_stats(p: Patient, pet: np.ndarray, grid: Grid, les: lesions.Lesions) -> dict[str, Any]:
    """SUV figures of the rendered PET: lesion SUVmax, whole-image max, hottest voxel outside lesions and brain."""
    primaries, nodes = les.primaries, les.nodes
    suv_max, tlg = lesion_suv(pet, [*primaries, *nodes], grid)
    per_lesion = [lesion_suv(pet, [les_], grid)[0] for les_ in [*primaries, *nodes]]
    x, y, z = grid.axes()
    brain = (
        ((x[None, None, :] - p.x0) / (75 * p.s)) ** 2
        + ((y[None, :, None] - p.y0) / (95 * p.s)) ** 2
        + ((z[:, None, None] - (p.z_vertex - p.u(80))) / (82 * p.s)) ** 2
    ) <= 1.0
    near = ndimage.binary_dilation(lesion_mask([*primaries, *nodes], grid.axes(), pet.shape), iterations=2)  # type: ignore[arg-type]
    outside = pet[~(brain | near)]
    return {
        "suv_max": round(suv_max, 3),
        "tlg_suv_ml": round(tlg, 2),
        "gtvp_suv_max": round(max(per_lesion[: len(primaries)], default=0.0), 3),
        "gtvn_suv_max": round(max(per_lesion[len(primaries) :], default=0.0), 3),
        "lowest_lesion_suv_max": round(min(per_lesion, default=0.0), 3),
        "pet_max_suv": round(float(pet.max()), 3),
        "decoy_suv_max": round(float(outside.max()) if outside.size else 0.0, 3),
    }


def _label_stats(label: np.ndarray, voxel_ml: float, les: lesions.Lesions, p: Patient) -> dict[str, Any]:
    nodes_mask = label == Label.GTVN
    boxes = ndimage.find_objects(nodes_mask.astype(np.uint8))
    n_comp = int(ndimage.label(nodes_mask[boxes[0]], structure=STRUCTURE_26)[1]) if boxes else 0
    gtvp_ml = float((label == Label.GTVP).sum()) * voxel_ml
    node_ml = [float(np.prod(n.semis[0])) * 4.0 / 3.0 * math.pi / 1000.0 for n in les.nodes]
    bilateral = len({bool(n.centre[0] >= p.x0) for n in les.nodes}) == 2
    t, n = outcomes.stage(gtvp_ml, len(les.primaries), node_ml, bilateral)
    return {
        "gtvp_volume_ml": round(gtvp_ml, 3),
        "gtvn_count": len(les.nodes),
        "gtvn_components": n_comp,
        "gtvn_volume_ml": round(float(nodes_mask.sum()) * voxel_ml, 3),
        "T-stage_num": t,
        "N-stage_num": n,
        "T-stage": f"T{t}",
        "N-stage": f"N{n}",
    }


def generate_case(
    pid: str,
    rng_seed: int,
    size: str = "full",
    *,
    flips: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
) -> SynthCase:
    """One v2 phantom patient (see :mod:`hmvnet.synthetic.v2`); ``flips`` overrides the (identity) directions."""
    if size not in SIZES:
        raise InputError(f"size must be one of {SIZES}, got {size!r}")
    centre = pid.split("-")[0]
    if centre not in PROTOCOLS:
        raise InputError(f"v2 patient ID {pid!r}: centre must be one of {sorted(PROTOCOLS)}")
    pr = PROTOCOLS[centre]
    rng = np.random.default_rng(int(rng_seed))
    p = _draw_patient(rng)
    ct_grid, pet_grid, geo = protocols.draw_grids(rng, p, centre, size)
    if flips is not None:
        ct_grid = grid_covering(*grid_box(ct_grid), ct_grid.spacing, flips[0])
        pet_grid = grid_covering(*grid_box(pet_grid), pet_grid.spacing, flips[1])
    anat = anatomy.build(rng, p, bool(geo["whole_body"]), pr.p_contrast)
    les = lesions.draw_lesions(rng, p)
    clinical_true = outcomes.draw_clinical(rng, pr.center_id, les.site)
    missing = outcomes.draw_missing(rng, centre)
    shift, reg = truth.draw_registration(rng)
    lab_grid, label_dk = truth.label_grid(rng, ct_grid)
    observed = [truth.observer_lesion(rng, les_) for les_ in [*les.primaries, *les.nodes]]
    bq = bool(rng.uniform() < pr.p_bq)
    weight_kg, dose_mbq = float(rng.uniform(55.0, 105.0)), float(rng.uniform(250.0, 450.0))
    pet_scale = float(np.clip(dose_mbq * 1e6 / (weight_kg * 1000.0), 3000.0, 8000.0)) if bq else 1.0
    ct_noise, fwhm, pet_noise = (
        float(rng.uniform(15.0, 40.0)),
        float(rng.uniform(*pr.pet_fwhm)),
        float(rng.uniform(*pr.pet_noise)),
    )
    pad_hu = int(_pick(rng, pr.padding))
    streak_hu, metal_gain = float(rng.uniform(300.0, 900.0)), float(rng.uniform(0.2, 0.5))

    all_lesions = [*les.nodes, *les.primaries]
    ct_arr = render_ct_v2(
        anat.structures, all_lesions, ct_grid, neck_z=p.z_vertex - p.u(anatomy.NECK_U), metal=anat.metal,
        noise_hu=ct_noise, pad_hu=pad_hu, streak_hu=streak_hu, seed=int(rng_seed),
    )  # fmt: skip
    render_grid = truth.shifted(pet_grid, -shift)
    pet_suv = render_pet_v2(
        anat.structures, all_lesions, render_grid, metal=anat.metal, metal_gain=metal_gain,
        fwhm_mm=fwhm, noise=pet_noise, seed=int(rng_seed),
    )  # fmt: skip
    label_arr = _label(p, observed, len(les.primaries), lab_grid)
    row: dict[str, Any] = {"PatientID": pid, **_label_stats(label_arr, lab_grid.voxel_ml, les, p)}
    row.update(_pet_stats(p, pet_suv, render_grid, les))
    risk = outcomes.true_log_hazard_v2(row, clinical_true)
    outcome = outcomes.draw_outcome_v2(np.random.default_rng([int(rng_seed), 3]), risk)
    stats = {k: v for k, v in row.items() if k != "PatientID"}
    truth_row: dict[str, Any] = {
        "PatientID": pid,
        "generator": "v2",
        "true_risk": round(risk, 6),
        "pet_units": "Bq/ml" if bq else "SUV",
        "pet_scale": round(pet_scale, 3),
        **stats,
        **les.draws,
        **outcome,
        **{f"true_{k}": v for k, v in clinical_true.items()},
        "weight_kg": round(weight_kg, 1),
        "dose_mbq": round(dose_mbq, 1),
        "ct_direction": "".join("+" if f > 0 else "-" for f in ct_grid.flips),
        "pet_direction": "".join("+" if f > 0 else "-" for f in pet_grid.flips),
        "ct_noise_hu": round(ct_noise, 2),
        "pet_fwhm_mm": round(fwhm, 2),
        "pet_noise": round(pet_noise, 3),
        "ct_pad_hu": pad_hu,
        "ct_max_hu": int(ct_arr.max()),
        "metal_streak_hu": round(streak_hu, 1) if anat.metal else 0.0,
        "pet_metal_gain": round(metal_gain, 3) if anat.metal else 0.0,
        "label_slices_minus_ct": label_dk,
        **reg,
        **anat.draws,
        **geo,
    }
    clinical = {k: (None if missing[k] else v) for k, v in clinical_true.items()}
    return SynthCase(
        pid=pid,
        ct=ct_grid.image(ct_arr),
        pet=pet_grid.image((pet_suv * np.float32(pet_scale)).astype(np.float32)),
        label=lab_grid.image(label_arr),
        clinical=clinical,
        truth=truth_row,
    )
