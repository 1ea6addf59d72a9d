"""Preprocessing (paper §2.2) and its exact inverse.

1. The CT and PET fields of view are intersected in physical space (they must overlap).
2. The head is located on a coarse copy of the PET: in the superior ``head_search_fraction`` of the overlap, the
   PET is z-scored, thresholded at ``head_zscore_threshold`` and the largest 26-connected component (the brain)
   gives the centre (see :func:`locate_head`); without one, the centre of that slab is used.
3. A box of ``crop_size_mm`` around ``brain centroid + crop_centre_offset_mm``, clipped to the overlap, defines the
   crop grid: identity direction, isotropic ``spacing_mm``. CT and PET are resampled straight onto it (one
   interpolation, never the full field of view at 1 mm, so a whole-body scan costs no more than a neck scan).
4. CT is clipped to ``ct_window_hu`` and scaled to [0, 1]; PET is z-scored over the crop, which is invariant to a
   global scale, so the same PET in SUV or in Bq/ml gives the same network input.

Mapping a label back onto the original CT grid is :func:`hmvnet.geometry.label_to_reference`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hmvnet.config import PreprocessConfig
from hmvnet.errors import InputError
from hmvnet.geometry import STRUCTURE_26, make_grid, physical_bounds, resample_image, resample_label

log = logging.getLogger(__name__)

COARSE_SPACING_MM = 4.0
"""Grid spacing (mm) of the PET copy used to locate the head."""


@dataclass
class PreprocessedCase:
    """A case on the crop grid.

    ``image`` is ``(2, z, y, x)`` float32: channel 0 CT in [0, 1], channel 1 PET z-scored. ``ct_hu`` and ``pet``
    are the same grid as ``sitk.Image`` in the original units (HU; SUV or Bq/ml) for radiomics; ``label`` is the
    truth on that grid when one was given. ``head_centre_mm`` is the brain centroid (x, y, z) in mm, or ``None``
    when the slab-centre fallback was used.
    """

    image: np.ndarray
    ct_hu: sitk.Image
    pet: sitk.Image
    label: sitk.Image | None
    head_centre_mm: tuple[float, float, float] | None
    crop_centre_mm: tuple[float, float, float]


def overlap_bounds(ct: sitk.Image, pet: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Physical intersection of the CT and PET boxes; :class:`InputError` when they do not overlap."""
    ct_lo, ct_hi = physical_bounds(ct)
    pet_lo, pet_hi = physical_bounds(pet)
    lo, hi = np.maximum(ct_lo, pet_lo), np.minimum(ct_hi, pet_hi)
    if np.any(hi - lo < 10.0):
        raise InputError(
            "CT and PET fields of view do not overlap (CT spans "
            f"{np.round(ct_lo, 1).tolist()}..{np.round(ct_hi, 1).tolist()} mm, PET spans "
            f"{np.round(pet_lo, 1).tolist()}..{np.round(pet_hi, 1).tolist()} mm; expected >= 10 mm of common extent "
            "on every axis)"
        )
    return lo, hi


def locate_head(
    pet: sitk.Image, lo: np.ndarray, hi: np.ndarray, config: PreprocessConfig
) -> tuple[np.ndarray, bool]:
    """Brain centroid (x, y, z) in mm from the PET inside the box [lo, hi], and whether it was found.

    On a coarse copy of the PET, the superior ``head_search_fraction`` of the box (z is superior-positive in LPS)
    gives the statistics: voxels above ``mean + head_zscore_threshold * std`` of that slab are labelled
    (26-connectivity) over the whole box, and the component with most voxels inside the slab is the brain. Its
    centroid is taken over the whole component, so a slab boundary cutting through the brain does not bias it.
    Falls back to the centre of the slab.
    """
    ref = make_grid(lo, hi, (COARSE_SPACING_MM,) * 3)
    coarse = sitk.GetArrayFromImage(resample_image(pet, ref, 0.0))  # (z, y, x), z increasing superior
    n_slab = max(1, round(config.head_search_fraction * coarse.shape[0]))
    slab = coarse[-n_slab:]
    slab_centre = np.array(
        ref.TransformContinuousIndexToPhysicalPoint(
            ((coarse.shape[2] - 1) / 2.0, (coarse.shape[1] - 1) / 2.0, coarse.shape[0] - (n_slab + 1) / 2.0)
        )
    )
    std = float(slab.std())
    if not np.isfinite(std) or std <= 0:
        return slab_centre, False
    components, n = ndimage.label(
        coarse > slab.mean() + config.head_zscore_threshold * std, structure=STRUCTURE_26
    )
    in_slab = np.bincount(components[-n_slab:].ravel(), minlength=n + 1)[1:]
    if n == 0 or in_slab.max() == 0:
        return slab_centre, False
    brain = int(np.argmax(in_slab)) + 1
    z, y, x = ndimage.center_of_mass(components == brain)
    return np.array(ref.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z)))), True


def crop_grid(
    ct: sitk.Image, pet: sitk.Image, config: PreprocessConfig
) -> tuple[sitk.Image, np.ndarray | None, np.ndarray]:
    """The crop reference grid, the brain centroid (or None) and the crop centre (mm)."""
    lo, hi = overlap_bounds(ct, pet)
    head, found = locate_head(pet, lo, hi, config)
    if not found:
        log.warning("head not found on the PET: crop centred on the superior slab of the field of view")
    centre = head + np.asarray(config.crop_centre_offset_mm, dtype=float)
    half = np.asarray(config.crop_size_mm, dtype=float) / 2.0
    box_lo, box_hi = np.maximum(centre - half, lo), np.minimum(centre + half, hi)
    if np.any(box_hi - box_lo < 10.0):  # the offset pushed the box out of the image: centre it on the overlap
        centre = np.clip(centre, lo + half, hi - half) if np.all(hi - lo > 2 * half) else (lo + hi) / 2.0
        box_lo, box_hi = np.maximum(centre - half, lo), np.minimum(centre + half, hi)
    return make_grid(box_lo, box_hi, config.spacing_mm), (head if found else None), centre


def normalise_ct(ct_hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Clip HU to ``window`` and scale to [0, 1] (float32)."""
    low, high = window
    return ((np.clip(ct_hu, low, high) - low) / (high - low)).astype(np.float32)


def normalise_pet(pet: np.ndarray) -> np.ndarray:
    """Z-score over the whole array (float32); invariant to a global scale (SUV vs Bq/ml). Constant -> zeros."""
    pet64 = pet.astype(np.float64)
    std = pet64.std()
    if not np.isfinite(std) or std <= 0:
        return np.zeros_like(pet, dtype=np.float32)
    return ((pet64 - pet64.mean()) / std).astype(np.float32)


def preprocess(
    ct: sitk.Image, pet: sitk.Image, config: PreprocessConfig, label: sitk.Image | None = None
) -> PreprocessedCase:
    """Resample CT, PET (and the label) onto the crop grid and normalise them. See the module docstring."""
    reference, head, centre = crop_grid(ct, pet, config)
    ct_crop = resample_image(ct, reference, -1024.0, config.image_interpolator)
    pet_crop = resample_image(pet, reference, 0.0, config.image_interpolator)
    if config.image_interpolator == "bspline":  # B-spline overshoots below zero: PET is non-negative
        pet_crop = sitk.Clamp(pet_crop, sitk.sitkFloat32, 0.0)
    ct_arr = sitk.GetArrayViewFromImage(ct_crop)
    pet_arr = sitk.GetArrayViewFromImage(pet_crop)
    image = np.stack([normalise_ct(ct_arr, config.ct_window_hu), normalise_pet(pet_arr)])
    return PreprocessedCase(
        image=image,
        ct_hu=ct_crop,
        pet=pet_crop,
        label=resample_label(label, reference) if label is not None else None,
        head_centre_mm=(float(head[0]), float(head[1]), float(head[2])) if head is not None else None,
        crop_centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
    )
