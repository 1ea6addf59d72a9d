"""Scanner protocols tied to centres: CT/PET grids and fields of view (mm) drawn per case.

Figures follow the 524 HECKTOR 2022 training cases (per-centre examples in the project's real-data notes):
CT 512 x 512 at 0.98 / 1.17 / 1.37 mm in-plane, slices 3.27 / 1.5 / 3.0 mm, axial extent from ~270 mm to whole body
(>= 800 mm in ~30 %), PET 128-256 matrices at 2.7-5.5 mm, PET >= 800 mm in ~45 %, PET longer than the CT by
> 100 mm in ~14 % (CHUS-like). Two centres (``USZ``, ``CHB``) appear only in the test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hmvnet.synthetic.anatomy_v1 import Patient
from hmvnet.synthetic.phantom import Grid, grid_covering


@dataclass(frozen=True)
class Protocol:
    """One centre's acquisition: choices with probabilities, lengths in mm, PET noise as a relative factor."""

    center_id: int
    weight: float  # training-split sampling weight (cases in HECKTOR 2022 training)
    ct_xy: tuple[tuple[float, float], ...]  # (spacing, probability)
    ct_dz: tuple[tuple[float, float], ...]
    p_whole_body: float  # probability of a CT field of view >= 800 mm
    hn_extent: tuple[float, float]  # head-and-neck CT extent range
    pet_xy: tuple[float, int]  # (spacing, matrix)
    pet_dz: float
    pet_long: float  # probability that the PET covers the whole body while the CT does not
    pet_fwhm: tuple[float, float]  # mm
    pet_noise: tuple[float, float]
    p_bq: float  # probability of PET stored in Bq/ml
    padding: tuple[tuple[int, float], ...]  # (HU outside the reconstruction circle, probability)
    p_contrast: float


_PAD_MIX = ((-1024, 0.37), (-2048, 0.36), (-3024, 0.27))
PROTOCOLS: dict[str, Protocol] = {
    "MDA": Protocol(
        7,
        198,
        ((0.977, 1.0),),
        ((3.27, 0.9), (2.5, 0.1)),
        0.12,
        (370, 470),
        (5.47, 128),
        3.27,
        0.05,
        (6.5, 8.0),
        (0.5, 0.8),
        0.0,
        ((-1024, 0.3), (-2048, 0.4), (-3024, 0.3)),
        0.25,
    ),
    "CHUP": Protocol(
        2,
        72,
        ((1.172, 1.0),),
        ((1.5, 0.85), (3.0, 0.15)),
        0.9,
        (380, 480),
        (4.07, 144),
        2.03,
        0.0,
        (5.0, 6.5),
        (0.3, 0.5),
        0.0,
        _PAD_MIX,
        0.1,
    ),
    "CHUS": Protocol(
        3,
        72,
        ((0.977, 1.0),),
        ((3.0, 0.75), (1.5, 0.25)),
        0.0,
        (380, 425),
        (4.0, 168),
        4.0,
        1.0,
        (5.5, 7.0),
        (0.4, 0.6),
        0.0,
        _PAD_MIX,
        0.1,
    ),
    "CHUM": Protocol(
        1,
        56,
        ((0.977, 0.85), (1.172, 0.15)),
        ((1.5, 0.45), (3.0, 0.25), (2.0, 0.3)),
        0.4,
        (340, 500),
        (4.0, 144),
        4.0,
        0.0,
        (5.5, 7.0),
        (0.4, 0.6),
        0.0,
        _PAD_MIX,
        0.1,
    ),
    "HGJ": Protocol(
        5,
        55,
        ((0.977, 1.0),),
        ((3.27, 1.0),),
        0.05,
        (271, 330),
        (3.52, 128),
        3.27,
        0.0,
        (6.0, 7.5),
        (0.4, 0.7),
        0.0,
        ((-1024, 0.6), (-2048, 0.2), (-3024, 0.2)),
        0.05,
    ),
    "CHUV": Protocol(
        4,
        53,
        ((1.367, 1.0),),
        ((3.27, 1.0),),
        0.9,
        (380, 480),
        (2.73, 256),
        2.73,
        0.0,
        (4.5, 5.5),
        (0.5, 0.8),
        0.9,
        _PAD_MIX,
        0.1,
    ),
    "HMR": Protocol(
        6,
        18,
        ((0.977, 1.0),),
        ((3.27, 1.0),),
        0.05,
        (271, 330),
        (3.52, 128),
        3.27,
        0.0,
        (6.0, 7.5),
        (0.4, 0.7),
        0.9,
        ((-1024, 0.6), (-2048, 0.2), (-3024, 0.2)),
        0.05,
    ),
    # test-only centres (never drawn in the training split)
    "USZ": Protocol(
        8,
        0,
        ((0.977, 0.5), (1.172, 0.5)),
        ((2.0, 0.5), (3.0, 0.5)),
        0.5,
        (300, 460),
        (3.65, 192),
        3.0,
        0.2,
        (4.0, 5.5),
        (0.3, 0.6),
        0.5,
        _PAD_MIX,
        0.3,
    ),
    "CHB": Protocol(
        9,
        0,
        ((0.977, 1.0),),
        ((2.5, 1.0),),
        0.3,
        (300, 420),
        (4.0, 144),
        2.5,
        0.1,
        (6.0, 8.0),
        (0.5, 0.9),
        0.0,
        _PAD_MIX,
        0.2,
    ),
}
TEST_ONLY = ("USZ", "CHB")
CT_MATRIX = 512


def case_pid(seed: int, index: int, split: str = "train") -> str:
    """``<CENTRE>-<NNN>`` of case ``index``: training centres by their HECKTOR 2022 share; the test split draws
    the test-only centres for 40 % of its cases."""
    rng = np.random.default_rng([int(seed), int(index), 17])
    train = [c for c in PROTOCOLS if c not in TEST_ONLY]
    weights = np.array([PROTOCOLS[c].weight for c in train], dtype=float)
    if split == "test" and rng.uniform() < 0.4:
        centre = TEST_ONLY[int(rng.integers(len(TEST_ONLY)))]
    else:
        centre = train[int(rng.choice(len(train), p=weights / weights.sum()))]
    return f"{centre}-{index + 1:03d}"


def _pick(rng: np.random.Generator, options: tuple[tuple[Any, float], ...]) -> Any:
    p = np.array([w for _, w in options], dtype=float)
    return options[int(rng.choice(len(options), p=p / p.sum()))][0]


def draw_grids(
    rng: np.random.Generator, p: Patient, centre: str, size: str
) -> tuple[Grid, Grid, dict[str, Any]]:
    """CT and PET grids of one case (identity directions) and the protocol draws for the truth table.

    ``size="small"`` keeps the protocol's choices but samples a coarse CT (2 mm in-plane, 3 mm slices, 200 mm
    in-plane, head-and-neck extent only) for fast tests; ``"full"`` is the real protocol (512 x 512 CT).
    """
    pr = PROTOCOLS[centre]
    whole_body = bool(rng.uniform() < pr.p_whole_body)
    ct_xy, ct_dz = float(_pick(rng, pr.ct_xy)), float(_pick(rng, pr.ct_dz))
    top_u = float(rng.uniform(-15.0, 40.0))  # CT top above (-) or below (+) the vertex
    length = float(rng.uniform(850.0, 1331.0) if whole_body else rng.uniform(*pr.hn_extent))
    pet_long = (not whole_body) and bool(rng.uniform() < pr.pet_long)
    pet_len = length + float(rng.uniform(-10.0, 40.0)) if not pet_long else float(rng.uniform(950.0, 1100.0))
    if size == "small":
        ct_xy, ct_dz, length, pet_len = 2.0, 3.0, min(length, 260.0), min(pet_len, 300.0)
    fov = CT_MATRIX * ct_xy if size == "full" else 200.0
    z_hi = p.z_vertex - top_u
    cx, cy = p.x0 + rng.uniform(-5.0, 5.0), p.y0 + rng.uniform(0.0, 20.0)
    ct = grid_covering(
        (cx - fov / 2 + ct_xy / 2, cy - fov / 2 + ct_xy / 2, z_hi - length),
        (cx + fov / 2 - ct_xy / 2, cy + fov / 2 - ct_xy / 2, z_hi),
        (ct_xy, ct_xy, ct_dz),
    )
    pet_sp, pet_n = pr.pet_xy if size == "full" else (4.0, 64)
    pet_fov = pet_sp * pet_n
    pz_hi = z_hi + float(rng.uniform(0.0, 30.0))
    pet = grid_covering(
        (cx - pet_fov / 2 + pet_sp / 2, cy - pet_fov / 2 + pet_sp / 2, pz_hi - pet_len),
        (cx + pet_fov / 2 - pet_sp / 2, cy + pet_fov / 2 - pet_sp / 2, pz_hi),
        (pet_sp, pet_sp, pr.pet_dz if size == "full" else 4.0),
    )
    info = {
        "ct_spacing_xy_mm": round(ct_xy, 3),
        "ct_spacing_z_mm": round(ct_dz, 3),
        "ct_matrix": f"{ct.size[0]}x{ct.size[1]}",
        "fov_z_mm": round(ct.size[2] * ct_dz, 1),
        "pet_fov_z_mm": round(pet.size[2] * pet.spacing[2], 1),
        "pet_spacing_xy_mm": round(pet.spacing[0], 3),
        "pet_spacing_z_mm": round(pet.spacing[2], 3),
        "pet_matrix": f"{pet.size[0]}x{pet.size[1]}",
        "whole_body": whole_body,
        "head_cut": bool(top_u > 5.0),
    }
    return ct, pet, info
