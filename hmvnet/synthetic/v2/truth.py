"""Imperfect truth: a second observer's label edges (1-3 mm), air excluded from labels, rigid PET-CT
misregistration (0-5 mm; 5-10 mm in ~10 %) and, in ~8 %, a label grid one slice different from the CT's."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from hmvnet.synthetic.phantom import Grid, Lesion


def observer_lesion(rng: np.random.Generator, lesion: Lesion) -> Lesion:
    """``lesion`` as another observer draws it: every semi-axis grown or shrunk by 1-3 mm, the outline perturbed."""
    delta = float(rng.uniform(1.0, 3.0) * (1 if rng.uniform() < 0.5 else -1))
    r = max(lesion.equivalent_radius, 1.0)
    scale = max(0.5, 1.0 + delta / r)
    return replace(
        lesion,
        semis=[s * scale for s in lesion.semis],
        offsets=[o * scale for o in lesion.offsets],
        wobble_phase=lesion.wobble_phase + rng.normal(0.0, 0.4, lesion.wobble_phase.shape),
        centre=lesion.centre + rng.normal(0.0, 0.7, 3),
    )


def draw_registration(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Rigid PET shift (mm, x/y/z): magnitude U(0, 5), or U(5, 10) in ~10 % of cases."""
    large = rng.uniform() < 0.1
    mag = float(rng.uniform(5.0, 10.0) if large else rng.uniform(0.0, 5.0))
    d = rng.normal(size=3)
    shift = d / np.linalg.norm(d) * mag
    return shift, {
        "pet_shift_mm": round(mag, 2),
        **{f"pet_shift_{a}_mm": round(float(v), 2) for a, v in zip("xyz", shift)},
    }


def shifted(grid: Grid, shift: np.ndarray) -> Grid:
    """The grid whose voxels sample the patient displaced by ``-shift`` when written with ``grid``'s geometry."""
    return Grid(grid.size, grid.spacing, tuple(float(o + s) for o, s in zip(grid.origin, shift)), grid.flips)  # type: ignore[arg-type]


def label_grid(rng: np.random.Generator, ct: Grid) -> tuple[Grid, int]:
    """The label's grid: the CT's, or in ~8 % one slice more (at the top) or fewer (at the bottom)."""
    if rng.uniform() >= 0.08:
        return ct, 0
    dk = 1 if rng.uniform() < 0.5 else -1
    size = (ct.size[0], ct.size[1], ct.size[2] + dk)
    origin = ct.origin if dk > 0 else (ct.origin[0], ct.origin[1], ct.origin[2] + ct.spacing[2])
    return Grid(size, ct.spacing, origin, ct.flips), dk  # type: ignore[arg-type]
