"""The trivial baseline any user could write: PET above a fixed SUV, brain removed, the largest remaining
component GTVp, the rest GTVn. No learning; it is the floor that a trained model must clear.

Scale detection: PET whose 99.9th percentile inside the body exceeds ``BQ_DETECT`` is taken as Bq/ml and mapped
to an SUV-equivalent scale by :func:`hmvnet.survival.masks.pet_to_suv_equivalent` (body median -> ``BODY_SUV``).
The brain is the hot component with most voxels in the superior ``BRAIN_SLAB_MM`` of the field of view.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hmvnet import Label
from hmvnet.geometry import STRUCTURE_26, resample_image
from hmvnet.survival.masks import pet_to_suv_equivalent

BQ_DETECT = 500.0
BODY_SUV = 0.8
BRAIN_SLAB_MM = 120.0


def threshold_rule(
    pet: np.ndarray, ct: np.ndarray, spacing_zyx: tuple[float, float, float], suv_threshold: float = 3.0
) -> np.ndarray:
    """uint8 label ``(z, y, x)`` from PET and CT on one grid (z increasing superior, as SimpleITK LPS arrays).

    Args:
        pet: PET in SUV or Bq/ml. ct: CT in HU (the body is ``ct > -400``). spacing_zyx: voxel size in mm.
        suv_threshold: SUV above which a voxel is foreground.
    """
    body = ct > -400.0
    pet = np.asarray(pet, dtype=np.float64)
    if body.any() and float(np.percentile(pet[body], 99.9)) > BQ_DETECT:
        pet = pet_to_suv_equivalent(pet, ct, reference_body_suv=BODY_SUV)
    comps, n = ndimage.label(pet > suv_threshold, structure=STRUCTURE_26)
    out = np.zeros(pet.shape, dtype=np.uint8)
    if n == 0:
        return out
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    sizes[0] = 0
    n_slab = max(1, round(BRAIN_SLAB_MM / spacing_zyx[0]))
    in_slab = np.bincount(comps[-n_slab:].ravel(), minlength=n + 1)
    in_slab[0] = 0
    if in_slab.max() > 0:
        sizes[int(np.argmax(in_slab))] = 0  # the brain
    if sizes.max() == 0:
        return out
    gtvp = int(np.argmax(sizes))
    out[(comps > 0) & (sizes[comps] > 0)] = Label.GTVN
    out[comps == gtvp] = Label.GTVP
    return out


def segment(ct: sitk.Image, pet: sitk.Image, suv_threshold: float = 3.0) -> sitk.Image:
    """The baseline label (uint8) on the CT grid: computed on the CT oriented LPS (z index superior), PET resampled
    linearly onto it, then mapped back to the CT's own directions by nearest neighbour."""
    lps = sitk.DICOMOrient(ct, "LPS")
    pet_on_ct = sitk.GetArrayFromImage(resample_image(pet, lps, 0.0))
    sz, sy, sx = lps.GetSpacing()[::-1]
    label = threshold_rule(pet_on_ct, sitk.GetArrayFromImage(lps), (sz, sy, sx), suv_threshold)
    image = sitk.GetImageFromArray(label)
    image.CopyInformation(lps)
    return sitk.Resample(image, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
