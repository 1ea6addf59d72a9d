"""Rendering of phantom structures and lesions onto CT, PET and label grids (shared by generators v1 and v2).

Arrays are (z, y, x); CT in HU, PET in SUV, labels uint8 (:class:`hmvnet.Label`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hmvnet import Label
from hmvnet.synthetic.anatomy_v1 import Structure
from hmvnet.synthetic.phantom import Axes, Grid, Lesion, lesion_mask, paint_lesion, paint_tube


def ct_value(lesion: Lesion, r: np.ndarray, pts: Axes) -> np.ndarray:
    return np.where(r < lesion.necrosis, lesion.hu - 25.0, lesion.hu)


def pet_value(lesion: Lesion, r: np.ndarray, pts: Axes) -> np.ndarray:
    profile = 0.6 + 0.4 * np.clip(1.0 - r**2, 0.0, 1.0)
    value = lesion.uptake * profile * lesion.texture(*pts)
    if lesion.necrosis > 0:
        cold = np.clip((r - lesion.necrosis) / 0.15 + 0.5, 0.0, 1.0)
        value = value * (0.2 + 0.8 * cold)
    return value


def render_ct(
    structures: Sequence[Structure], lesions: list[Lesion], grid: Grid, noise_hu: float, seed: int
) -> np.ndarray:
    """CT in HU, int16 (z, y, x); white Gaussian noise of ``noise_hu``."""
    axes = grid.axes()
    arr = np.full(tuple(reversed(grid.size)), -1000.0, dtype=np.float32)
    for shape, hu, _ in structures:
        paint_tube(arr, axes, shape, hu)
    for lesion in lesions:
        paint_lesion(arr, axes, lesion, ct_value)
    arr += np.random.default_rng([seed, 1]).standard_normal(arr.shape, dtype=np.float32) * np.float32(
        noise_hu
    )
    return np.clip(np.rint(arr), -1024, 3071).astype(np.int16)


def render_pet(
    structures: Sequence[Structure],
    lesions: list[Lesion],
    grid: Grid,
    fwhm_mm: float,
    noise: float,
    seed: int,
) -> np.ndarray:
    """PET in SUV, float32 (z, y, x): anti-aliased activity, Poisson-like noise, Gaussian PSF of ``fwhm_mm``."""
    axes = grid.axes()
    soft = float(np.mean(grid.spacing))
    arr = np.zeros(tuple(reversed(grid.size)), dtype=np.float32)
    for shape, _, suv in structures:
        paint_tube(arr, axes, shape, suv, soft_mm=soft)
    for lesion in lesions:
        paint_lesion(arr, axes, lesion, pet_value, soft_mm=soft)
    gauss = np.random.default_rng([seed, 2]).standard_normal(arr.shape, dtype=np.float32)
    arr += np.sqrt(np.clip(arr, 0.0, None) * np.float32(noise)) * gauss
    smoothed = sitk.SmoothingRecursiveGaussian(
        grid.image(arr), fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    )
    # quantised to 1/64 SUV, like the scaled integers scanners store (and it compresses the files ~2x)
    return (np.round(np.clip(sitk.GetArrayFromImage(smoothed), 0.0, None) * 64.0) / 64.0).astype(np.float32)


def render_label(gtvp: Lesion, nodes: list[Lesion], grid: Grid) -> np.ndarray:
    axes = grid.axes()
    shape = tuple(reversed(grid.size))
    label = np.zeros(shape, dtype=np.uint8)
    label[lesion_mask(nodes, axes, shape)] = Label.GTVN  # type: ignore[arg-type]
    label[lesion_mask([gtvp], axes, shape)] = Label.GTVP  # type: ignore[arg-type]
    return label


def lesion_suv(pet_suv: np.ndarray, lesions: list[Lesion], grid: Grid) -> tuple[float, float]:
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
