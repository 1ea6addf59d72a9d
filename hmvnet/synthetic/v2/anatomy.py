"""v2 anatomy on top of the v1 head and neck: physiological PET decoys, teeth and dental metal, neck vessels and
the body below the neck (arms, heart, liver, bladder) for long fields of view.

Every draw of a case is returned in a flat ``dict`` that goes into the truth table. Values: CT in HU, PET in SUV,
lengths in mm; ``u`` is the depth below the vertex as in :mod:`hmvnet.synthetic.phantom`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hmvnet.synthetic.anatomy_v1 import CORTEX_HU, MUSCLE_HU, SOFT_HU, Patient, Structure, _structures
from hmvnet.synthetic.phantom import ellipsoid, tube

METAL_HU = 3071.0  # the clipped maximum of real CT volumes
NECK_U = 300.0  # below this depth the body is rendered on a coarser in-plane grid


@dataclass
class Anatomy:
    """The painter's list of one v2 patient plus what later stages need (metal for streaks, brain for decoy stats)."""

    structures: list[Structure]
    metal: list[np.ndarray] = field(default_factory=list)  # (3,) mm centres of fillings
    draws: dict[str, Any] = field(default_factory=dict)


def _decoys(rng: np.random.Generator, p: Patient, whole_body: bool, d: dict[str, Any]) -> list[Structure]:
    """Tonsils (asymmetric), salivary glands, active muscles, brown fat; on long FOV heart, liver, bladder, arm."""
    s, zv, x0, y0, u = p.s, p.z_vertex, p.x0, p.y0, p.u
    out: list[Structure] = []
    tonsil = [float(rng.uniform(3.0, 8.0))]
    tonsil.append(float(tonsil[0] * rng.uniform(0.55, 1.0) if rng.uniform() < 0.6 else rng.uniform(3.0, 8.0)))
    gland = float(rng.uniform(2.0, 4.0))
    for k, side in enumerate((-1, 1)):
        out.append(
            (ellipsoid(zv, u(145), x0 + side * 18 * s, y0 - 17 * s, (6 * s, 8 * s, 11 * s)), 45.0, tonsil[k])
        )
        out.append(
            (ellipsoid(zv, u(140), x0 + side * 45 * s, y0 + 5 * s, (10 * s, 16 * s, 18 * s)), -10.0, gland)
        )
        out.append(
            (ellipsoid(zv, u(172), x0 + side * 32 * s, y0 - 35 * s, (9 * s, 10 * s, 9 * s)), 45.0, gland)
        )
    d.update(
        suv_tonsil_left=round(tonsil[1], 2), suv_tonsil_right=round(tonsil[0], 2), suv_gland=round(gland, 2)
    )
    d["active_muscle_suv"] = 0.0
    if rng.uniform() < 0.2:  # chewing / neck muscles or vocal cords
        act = float(rng.uniform(2.0, 6.0))
        d["active_muscle_suv"] = round(act, 2)
        for side in (-1, 1):
            out.append(
                (tube(zv, [u(140), u(235)], x0 + side * 42 * s, y0 - 12 * s, 9 * s, 7 * s), MUSCLE_HU, act)
            )
            out.append(
                (ellipsoid(zv, u(200), x0 + side * 5 * s, y0 - 22 * s, (3 * s, 6 * s, 4 * s)), 40.0, act)
            )
    n_fat = int(rng.integers(5, 21)) if rng.uniform() < 0.05 else 0
    d["brown_fat_blobs"] = n_fat
    for _ in range(n_fat):
        side = 1 if rng.uniform() < 0.5 else -1
        c = (x0 + side * rng.uniform(45, 95) * s, y0 + rng.uniform(-10, 40) * s, u(rng.uniform(235, 300)))
        r = float(rng.uniform(4.0, 8.0))
        out.append((ellipsoid(zv, c[2], c[0], c[1], (r, r, r * 1.3)), -90.0, float(rng.uniform(3.0, 15.0))))
    d["heart_suv"] = d["bladder_suv"] = d["injection_suv"] = d["blood_pool_suv"] = d["liver_suv"] = 0.0
    if whole_body:
        out.extend(_body_organs(rng, p, d))
    return out


def _body_organs(rng: np.random.Generator, p: Patient, d: dict[str, Any]) -> list[Structure]:
    """Blood pool, heart, liver, bladder and (in ~10 %) an injection site in an arm."""
    s, zv, x0, y0, u = p.s, p.z_vertex, p.x0, p.y0, p.u
    out: list[Structure] = []
    blood = float(rng.uniform(1.5, 2.0))
    heart = float(rng.uniform(5.0, 15.0) if rng.uniform() < 0.5 else rng.uniform(2.0, 3.0))
    liver = float(rng.uniform(2.0, 3.0))
    bladder = float(np.exp(rng.uniform(np.log(10.0), np.log(150.0))))
    out.append((tube(zv, [u(300), u(700)], x0 - 10 * s, y0 + 25 * s, 12 * s, 12 * s), SOFT_HU, blood))
    out.append((ellipsoid(zv, u(470), x0 + 25 * s, y0 - 10 * s, (55 * s, 45 * s, 50 * s)), SOFT_HU, heart))
    out.append((ellipsoid(zv, u(620), x0 - 70 * s, y0 + 10 * s, (80 * s, 70 * s, 70 * s)), 55.0, liver))
    out.append((ellipsoid(zv, u(870), x0, y0 - 20 * s, (40 * s, 35 * s, 30 * s)), 10.0, bladder))
    for side in (-1, 1):  # pelvic bones
        out.append(
            (
                ellipsoid(zv, u(820), x0 + side * 90 * s, y0 + 20 * s, (30 * s, 50 * s, 60 * s)),
                CORTEX_HU,
                0.6,
            )
        )
    d.update(blood_pool_suv=round(blood, 2), heart_suv=round(heart, 2), liver_suv=round(liver, 2))
    d["bladder_suv"] = round(bladder, 1)
    if rng.uniform() < 0.1:
        inj = float(np.exp(rng.uniform(np.log(10.0), np.log(100.0))))
        side = 1 if rng.uniform() < 0.5 else -1
        out.append((ellipsoid(zv, u(rng.uniform(420, 620)), x0 + side * 215 * s, y0, (6, 6, 12)), 40.0, inj))
        d["injection_suv"] = round(inj, 1)
    return out


def _body(p: Patient) -> list[Structure]:
    """Trunk continued to the thighs and the arms at the sides (from the shoulders down), soft tissue."""
    s, zv, x0, y0, u = p.s, p.z_vertex, p.x0, p.y0, p.u
    out: list[Structure] = [
        (tube(zv, [u(690), u(1450)], x0, y0 + 15 * s, 175 * s, 110 * s), -100.0, 0.35 * p.suv_body),
        (tube(zv, [u(690), u(1450)], x0, y0 + 15 * s, 175 * s - p.fat, 110 * s - p.fat), SOFT_HU, p.suv_body),
    ]
    for side in (-1, 1):
        out.append(
            (tube(zv, [u(290), u(900)], x0 + side * 215 * s, y0, 30 * s, 32 * s), MUSCLE_HU, p.suv_body)
        )
    return out


def _teeth(
    rng: np.random.Generator, p: Patient, d: dict[str, Any]
) -> tuple[list[Structure], list[np.ndarray]]:
    """Upper and lower dental arches (2000-3000 HU); fillings at the clipped 3071 HU in ~60 %."""
    s, zv, x0, y0, u = p.s, p.z_vertex, p.x0, p.y0, p.u
    out: list[Structure] = []
    metal: list[np.ndarray] = []
    enamel = float(rng.uniform(2000.0, 3000.0))
    n_fill = int(rng.integers(1, 6)) if rng.uniform() < 0.6 else 0
    fills = set(rng.choice(28, size=n_fill, replace=False).tolist()) if n_fill else set()
    for k in range(28):
        jaw, t = divmod(k, 14)
        ang = np.pi * (0.1 + 0.8 * t / 13.0)
        cx, cy = x0 + 40 * s * np.cos(ang), y0 - 10 * s - 52 * s * np.sin(ang)
        cu = u(150 if jaw == 0 else 163)
        hu = METAL_HU if k in fills else enamel
        out.append((ellipsoid(zv, cu, cx, cy, (3.5 * s, 3.5 * s, 4.5 * s)), hu, 0.5))
        if k in fills:
            metal.append(np.array([cx, cy, zv - cu]))
    d.update(teeth_hu=round(enamel, 0), fillings=n_fill)
    return out, metal


def _vessels(rng: np.random.Generator, p: Patient, d: dict[str, Any]) -> list[Structure]:
    """Carotids and jugulars (blood pool on PET); enhanced (200-320 HU) on a contrast CT."""
    s, zv, x0, y0, u = p.s, p.z_vertex, p.x0, p.y0, p.u
    contrast = bool(rng.uniform() < d["p_contrast"])
    hu = float(rng.uniform(200.0, 320.0)) if contrast else 45.0
    out: list[Structure] = []
    for side in (-1, 1):
        out.append((tube(zv, [u(130), u(290)], x0 + side * 27 * s, y0 - 5 * s, 3.5 * s, 3.5 * s), hu, 1.7))
        out.append(
            (tube(zv, [u(130), u(290)], x0 + side * 36 * s, y0 - 2 * s, 5.0 * s, 4.5 * s), hu * 0.9, 1.6)
        )
    d["contrast_ct"] = contrast
    return out


def build(rng: np.random.Generator, p: Patient, whole_body: bool, p_contrast: float) -> Anatomy:
    """The v2 patient: v1 structures, then the body, vessels, decoys and teeth (painter's order)."""
    draws: dict[str, Any] = {"p_contrast": p_contrast}
    structures = [*_structures(p), *_body(p), *_vessels(rng, p, draws), *_decoys(rng, p, whole_body, draws)]
    teeth, metal = _teeth(rng, p, draws)
    draws.pop("p_contrast")
    return Anatomy([*structures, *teeth], metal, draws)
