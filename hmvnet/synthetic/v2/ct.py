"""v2 CT and PET rendering: slab by slab with a coarser in-plane grid below the neck (bounded memory for
whole-body fields of view), spatially correlated noise, dental-metal streaks, padding outside the reconstruction
circle, and PET raised near metal (attenuation-correction over-correction)."""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hmvnet.synthetic.anatomy_v1 import Structure
from hmvnet.synthetic.phantom import Grid, Lesion, paint_lesion, paint_tube
from hmvnet.synthetic.render import ct_value, pet_value

SLAB = 32  # CT slices rendered at once
COARSE = 4  # in-plane subsampling factor of the CT below the neck
RECON_RADIUS_MM = 250.0


def _streaks(x: np.ndarray, y: np.ndarray, metal_xy: list[tuple[float, float]], amp: float) -> np.ndarray:
    """Bright/dark radial streaks around metal on one axial slice (HU, (ny, nx))."""
    out = np.zeros((y.size, x.size), dtype=np.float32)
    for k, (mx, my) in enumerate(metal_xy):
        dx, dy = x[None, :] - mx, y[:, None] - my
        theta = np.arctan2(dy, dx)
        r = np.hypot(dx, dy)
        rays = np.cos(7.0 * theta + 1.3 * k) * np.cos(3.0 * theta + 0.7 * k)
        out += (amp * np.sign(rays) * np.abs(rays) ** 6 * np.exp(-r / 70.0)).astype(np.float32)
    return out


def render_ct_v2(
    structures: list[Structure],
    lesions: list[Lesion],
    grid: Grid,
    *,
    neck_z: float,
    metal: list[np.ndarray],
    noise_hu: float,
    pad_hu: int,
    streak_hu: float,
    seed: int,
) -> np.ndarray:
    """CT in HU, int16 (z, y, x), clipped to [pad_hu, 3071]; slabs entirely below ``neck_z`` (mm) are painted on
    every ``COARSE``-th voxel in-plane and repeated (lesions are painted at full resolution everywhere)."""
    x, y, z = grid.axes()
    out = np.empty(tuple(reversed(grid.size)), dtype=np.int16)
    rng = np.random.default_rng([seed, 11])
    circle = (x[None, :] - x.mean()) ** 2 + (y[:, None] - y.mean()) ** 2 > RECON_RADIUS_MM**2
    for k0 in range(0, z.size, SLAB):
        zs = z[k0 : k0 + SLAB]
        f = COARSE if zs.max() < neck_z else 1
        xs, ys = x[::f], y[::f]
        slab = np.full((zs.size, ys.size, xs.size), -1000.0, dtype=np.float32)
        for shape, hu, _ in structures:
            paint_tube(slab, (xs, ys, zs), shape, hu)
        noise = rng.standard_normal(slab.shape, dtype=np.float32)
        noise = ndimage.gaussian_filter(noise, sigma=(0.0, 1.5 / f, 1.5 / f)) if f == 1 else noise
        slab += noise * np.float32(noise_hu / max(float(noise.std()), 1e-6))
        if f > 1:
            slab = np.repeat(np.repeat(slab, f, axis=1), f, axis=2)[:, : y.size, : x.size]
        for lesion in lesions:
            paint_lesion(slab, (x, y, zs), lesion, ct_value)
        for i, zk in enumerate(zs):
            near = [(float(m[0]), float(m[1])) for m in metal if abs(m[2] - zk) < 6.0]
            if near:
                slab[i] += _streaks(x, y, near, streak_hu)
        slab[:, circle] = pad_hu
        out[k0 : k0 + SLAB] = np.clip(np.rint(slab), pad_hu, 3071).astype(np.int16)
    return out


def render_pet_v2(
    structures: list[Structure],
    lesions: list[Lesion],
    grid: Grid,
    *,
    metal: list[np.ndarray],
    metal_gain: float,
    fwhm_mm: float,
    noise: float,
    seed: int,
) -> np.ndarray:
    """PET in SUV, float32 (z, y, x): anti-aliased activity, raised by ``metal_gain`` within 10 mm of metal,
    Poisson-like noise, Gaussian PSF of ``fwhm_mm``, quantised to 1/64 SUV."""
    axes = grid.axes()
    soft = float(np.mean(grid.spacing))
    arr = np.zeros(tuple(reversed(grid.size)), dtype=np.float32)
    for shape, _, suv in structures:
        paint_tube(arr, axes, shape, suv, soft_mm=soft)
    for lesion in lesions:
        paint_lesion(arr, axes, lesion, pet_value, soft_mm=soft)
    x, y, z = axes
    for m in metal:
        kz = np.nonzero(np.abs(z - m[2]) < 10.0)[0]
        if kz.size:
            d2 = (
                (x[None, None, :] - m[0]) ** 2
                + (y[None, :, None] - m[1]) ** 2
                + (z[kz, None, None] - m[2]) ** 2
            )
            arr[kz] *= np.where(d2 < 100.0, np.float32(1.0 + metal_gain), np.float32(1.0))
    gauss = np.random.default_rng([seed, 12]).standard_normal(arr.shape, dtype=np.float32)
    arr += np.sqrt(np.clip(arr, 0.0, None) * np.float32(noise)) * gauss
    sigma = fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    smoothed = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(grid.image(arr), sigma))
    return (np.round(np.clip(smoothed, 0.0, None) * 64.0) / 64.0).astype(np.float32)
