"""Version-1 phantom anatomy (``hmvnet synth --generator v1``): the patient's structures in painter's order.

Every structure is a :class:`~hmvnet.synthetic.phantom.Tube` with a CT value (HU) and a PET value (SUV). The list
order is part of the v1 output (later structures paint over earlier ones): do not reorder, or v1 cohorts change.
Lengths in mm, patient frame as in :mod:`hmvnet.synthetic.phantom`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hmvnet.synthetic.phantom import Tube, ellipsoid, tube

Structure = tuple[Tube, float, float]
"""(shape, CT value in HU, PET value in SUV)."""

FAT_HU, SOFT_HU, MUSCLE_HU, BONE_HU, CORTEX_HU = -100.0, 40.0, 55.0, 450.0, 900.0


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


def _structures(p: Patient) -> list[Structure]:
    """Anatomy in painter's order: (shape, CT value in HU, PET value in SUV)."""
    return [*_envelope(p), *_muscles(p), *_head(p), *_glands(p), *_skeleton(p), (_airway(p), -990.0, 0.0)]


def _spine_path(p: Patient) -> tuple[list[float], list[float]]:
    """Depths (mm below the vertex) and antero-posterior centres (mm) of the spinal column's path."""
    return [p.u(d) for d in (125, 200, 300, 700)], [p.y0 + v * p.s for v in (18, 20, 45, 50)]


def _envelope(p: Patient) -> list[Structure]:
    """Skin-to-fat envelope of head, face and trunk, then the soft tissue inside the fat layer."""
    s, zv, x0, y0, u = p.s, p.z_vertex, p.x0, p.y0, p.u
    out: list[Structure] = []

    head = ((72 * s, 92 * s, 95 * s), u(95), y0)
    face = ((55 * s, 55 * s, 42 * s), u(150), y0 - 30 * s)
    trunk_u = [u(d) for d in (140, 225, 250, 275, 320, 700)]
    trunk_a = [57 * s, 60 * s, 120 * s, 170 * s, 175 * s, 175 * s]
    trunk_b = [60 * s, 62 * s, 80 * s, 100 * s, 110 * s, 110 * s]
    trunk_cy = [y0 + 5 * s, y0 + 5 * s, y0 + 10 * s, y0 + 15 * s, y0 + 15 * s, y0 + 15 * s]
    for t in (0.0, p.fat):  # outer skin-to-fat envelope, then the soft tissue inside the fat layer
        hu, suv = (FAT_HU, 0.35 * p.suv_body) if t == 0.0 else (SOFT_HU, p.suv_body)
        for semi, cu, cy in (head, face):
            out.append((ellipsoid(zv, cu, x0, cy, (semi[0] - t, semi[1] - t, semi[2] - t)), hu, suv))
        out.append(
            (
                tube(zv, trunk_u, x0, trunk_cy, [a - t for a in trunk_a], [b - t for b in trunk_b]),
                hu,
                suv,
            )
        )
    return out


def _muscles(p: Patient) -> list[Structure]:
    """Paraspinal and sternocleidomastoid muscles, tongue."""
    s, zv, x0, y0, u = p.s, p.z_vertex, p.x0, p.y0, p.u
    out: list[Structure] = []
    # paraspinal and sternocleidomastoid muscles, tongue
    spine_u, spine_cy = _spine_path(p)
    for side in (-1, 1):
        out.append(
            (
                tube(zv, spine_u, x0 + side * 20 * s, [c + 32 * s for c in spine_cy], 16 * s, 12 * s),
                MUSCLE_HU,
                p.suv_muscle,
            )
        )
        out.append(
            (
                tube(zv, [u(140), u(235)], x0 + side * 42 * s, y0 - 12 * s, 9 * s, 7 * s),
                MUSCLE_HU,
                p.suv_muscle * 1.1,
            )
        )
    out.append(
        (ellipsoid(zv, u(150), x0, y0 - 45 * s, (28 * s, 25 * s, 18 * s)), MUSCLE_HU, p.suv_muscle * 1.2)
    )
    return out


def _head(p: Patient) -> list[Structure]:
    """Skull, brain, orbits, sinuses and nasal cavity."""
    s, zv, x0, y0, u = p.s, p.z_vertex, p.x0, p.y0, p.u
    out: list[Structure] = []
    # skull and brain (skull base is a flat bony floor), orbits, sinuses, nasal cavity
    out.append((_cut(ellipsoid(zv, u(80), x0, y0, (71 * s, 91 * s, 78 * s)), zv - u(128)), CORTEX_HU, 0.5))
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
    return out


def _glands(p: Patient) -> list[Structure]:
    """Salivary glands, tonsils and the larynx (physiological PET distractors)."""
    s, zv, x0, y0, u = p.s, p.z_vertex, p.x0, p.y0, p.u
    out: list[Structure] = []
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
    return out


def _skeleton(p: Patient) -> list[Structure]:
    """Mandible, spine, clavicles, humeral heads and lungs."""
    s, zv, x0, y0, u = p.s, p.z_vertex, p.x0, p.y0, p.u
    out: list[Structure] = []
    spine_u, spine_cy = _spine_path(p)
    # mandible (a U-shaped ring), cervical/thoracic spine, clavicles, humeral heads
    out.append((tube(zv, [u(140), u(178)], x0, y0 - 10 * s, 48 * s, 55 * s, half="anterior"), CORTEX_HU, 0.5))
    out.append(
        (
            tube(zv, [u(140), u(178)], x0, y0 - 10 * s, 41 * s, 48 * s, half="anterior"),
            MUSCLE_HU,
            p.suv_muscle,
        )
    )
    for k in range(40):
        top, bottom = u(125 + 21 * k), u(125 + 21 * k + 16)
        cy_v = float(np.interp(top, spine_u, spine_cy))
        grow = 1.0 + min(k, 12) * 0.03
        out.append((tube(zv, [top, bottom], x0, cy_v, 11 * s * grow, 9 * s * grow), CORTEX_HU, 0.6))
        out.append(
            (
                tube(zv, [top + 1.5, bottom - 1.5], x0, cy_v, (11 * s - 2) * grow, (9 * s - 2) * grow),
                BONE_HU,
                1.3,
            )
        )
        out.append(
            (tube(zv, [top, bottom], x0, cy_v + 19 * s, 12 * s, 10 * s, half="posterior"), CORTEX_HU, 0.6)
        )
    out.append((tube(zv, spine_u, x0, [c + 19 * s for c in spine_cy], 7 * s, 6 * s), 15.0, 0.8))
    for side in (-1, 1):
        out.append(
            (ellipsoid(zv, u(245), x0 + side * 75 * s, y0 - 40 * s, (62 * s, 7 * s, 7 * s)), CORTEX_HU, 0.6)
        )
        out.append(
            (
                ellipsoid(zv, u(280), x0 + side * 150 * s, y0 + 10 * s, (23 * s, 23 * s, 23 * s)),
                CORTEX_HU,
                0.6,
            )
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
