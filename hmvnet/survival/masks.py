"""Mask variants for radiomics (paper §3.3) and the PET "SUV-equivalent" scale they are thresholded on.

Arrays are numpy ``(z, y, x)`` on ONE common grid (the preprocessing stage's grid); spacings are given in
SimpleITK order ``(x, y, z)`` in mm, as ``image.GetSpacing()`` returns them. Labels: 0 background, 1 GTVp,
2 GTVn.

PET units
---------
PET arrives either in SUV or in Bq/ml (a factor of roughly 3 000-8 000 apart, and the factor is rarely known).
:func:`pet_to_suv_equivalent` maps both to one "SUV-equivalent" scale::

    suv_eq = pet / median(pet[body]) * reference_body_suv,   body = CT > body_hu (default -400 HU)

computed in float64 (when the PET headers give a true SUV factor, :mod:`hmvnet.data.suv`, that factor takes
precedence: ``suv = pet * suv_factor``, see ``suv_factor`` below). The median of the body uptake is a robust reference that scales with the image, so
``suv_eq`` is invariant to any global factor: a float32 PET multiplied by an integer factor below 2**29 gives
bit-identical ``suv_eq`` (float64 holds the products exactly and both quotients are correctly rounded), and
in general the result agrees to float rounding. ``reference_body_suv`` (default 1.0, a typical soft-tissue
SUV) fixes what "1" means, so the SUV thresholds below (2.5, 4.0) keep their usual meaning and select the same
voxels for the SUV and the Bq/ml export of the same patient. It is not a calibrated SUV: a patient whose body
median uptake is 0.7 SUV gets values 1/0.7 times their SUV.

Mask variants
-------------
:data:`MASK_VARIANTS` is the single list of the 11 variants (order = feature order). All are built from the
union of GTVp and GTVn ("lesions"); variant names contain no underscore, so a feature name
``<variant>_<CT|PET>_<class>_<feature>`` splits into exactly four fields with ``name.split("_")``.

========== =========== ==========================================================================
name       kind        definition
========== =========== ==========================================================================
lesions    lesions     GTVp ∪ GTVn
bbox       bbox        axis-aligned bounding box (in voxel indices, inclusive) of the lesions
pet40      pet_frac    lesion voxels with suv_eq >= 40 % of the lesions' suv_eq maximum
bboxsuv2.5 bbox_suv    bounding-box voxels with suv_eq > 2.5
bboxsuv4.0 bbox_suv    bounding-box voxels with suv_eq > 4.0
dil2       dilation    voxels whose centre is <= 2 mm (+1e-6) from the centre of a lesion voxel
dil4       dilation    same, 4 mm
dil8       dilation    same, 8 mm
dil16      dilation    same, 16 mm
shell4     shell       dil4 minus the lesions
shell8     shell       dil8 minus the lesions
========== =========== ==========================================================================

Dilations use the exact Euclidean distance transform in mm (``scipy.ndimage.distance_transform_edt`` with the
grid spacing), so they are round in mm on anisotropic grids, unlike iterated binary dilation (a cube-ish
"ball"). The variants follow the HECKTOR 2022 winner's family (original, bounding box, 40 % SUVmax, SUV > 2.5,
SUV > 4, dilations, shells), trimmed to 11: the 1 mm dilation (about one voxel on a 1 mm grid, nearly the lesion
itself) and the 2 mm shell (a one-to-two-voxel rind, dominated by partial-volume voxels) were dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from hmvnet import LESION_LABELS
from hmvnet.geometry import STRUCTURE_26

VariantKind = Literal["lesions", "bbox", "pet_frac", "bbox_suv", "dilation", "shell"]


@dataclass(frozen=True)
class MaskVariant:
    """One mask variant: ``kind`` says how it is built, ``parameter`` its number (see the module table)."""

    name: str
    kind: VariantKind
    parameter: float | None = None
    """pet_frac: fraction of the lesion suv_eq maximum; bbox_suv: suv_eq threshold; dilation/shell: mm."""


MASK_VARIANTS: tuple[MaskVariant, ...] = (
    MaskVariant("lesions", "lesions"),
    MaskVariant("bbox", "bbox"),
    MaskVariant("pet40", "pet_frac", 0.40),
    MaskVariant("bboxsuv2.5", "bbox_suv", 2.5),
    MaskVariant("bboxsuv4.0", "bbox_suv", 4.0),
    MaskVariant("dil2", "dilation", 2.0),
    MaskVariant("dil4", "dilation", 4.0),
    MaskVariant("dil8", "dilation", 8.0),
    MaskVariant("dil16", "dilation", 16.0),
    MaskVariant("shell4", "shell", 4.0),
    MaskVariant("shell8", "shell", 8.0),
)
"""The 11 mask variants, in feature order."""

VARIANT_NAMES: tuple[str, ...] = tuple(v.name for v in MASK_VARIANTS)

_DISTANCE_TOL_MM = 1e-6


def max_reach_mm(variants: tuple[MaskVariant, ...] = MASK_VARIANTS) -> float:
    """How far (mm) beyond the lesions' bounding box any variant can reach (the largest dilation/shell)."""
    reach = [
        float(v.parameter) for v in variants if v.kind in ("dilation", "shell") and v.parameter is not None
    ]
    return max(reach, default=0.0)


def pet_to_suv_equivalent(
    pet: np.ndarray,
    ct: np.ndarray,
    reference_body_suv: float = 1.0,
    body_hu: float = -400.0,
    suv_factor: float | None = None,
) -> np.ndarray:
    """PET on the SUV-equivalent scale ``pet / median(pet[ct > body_hu]) * reference_body_suv`` (float64).

    Args:
        pet: PET ``(z, y, x)`` in SUV or Bq/ml (any global scale).
        ct: CT ``(z, y, x)`` in HU on the same grid; the body is ``ct > body_hu``.
        reference_body_suv: the value the body median maps to (a typical soft-tissue SUV).
        body_hu: HU threshold of the body.
        suv_factor: SUV per PET unit known from the DICOM headers (body-weight SUV); when given (> 0 and
            finite) it takes precedence and the result is the true SUV ``pet * suv_factor`` (float64).

    Returns:
        float64 array ``(z, y, x)``, invariant to a global scale factor of ``pet`` (see the module docstring).

    Raises:
        ValueError: shapes differ, the body has no voxels, or the PET median over the body is <= 0 or not finite.
    """
    pet = np.asarray(pet)
    ct = np.asarray(ct)
    if pet.shape != ct.shape:
        raise ValueError(f"PET shape {pet.shape} differs from CT shape {ct.shape}; both must be on one grid")
    if suv_factor is not None and math.isfinite(suv_factor) and suv_factor > 0:
        return pet.astype(np.float64) * float(suv_factor)
    body = ct > body_hu
    if not body.any():
        raise ValueError(f"no body voxels: no CT voxel is above {body_hu} HU, cannot normalise the PET")
    pet64 = pet.astype(np.float64, copy=False)
    median = float(np.median(pet64[body]))
    if not math.isfinite(median) or median <= 0.0:
        raise ValueError(
            f"PET median over the body (CT > {body_hu} HU, {int(body.sum())} voxels) is {median}; "
            "expected a positive uptake (is the PET empty or misregistered?)"
        )
    return pet64 / median * float(reference_body_suv)


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Inclusive voxel bounding box of ``mask`` as slices per axis (array order), or None when empty."""
    if not mask.any():
        return None
    slices = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        slices.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(slices)


def build_mask_variants(
    label: np.ndarray,
    suv_eq: np.ndarray,
    spacing_xyz: Sequence[float],
    lesion_labels: tuple[int, ...] = LESION_LABELS,
    variants: tuple[MaskVariant, ...] = MASK_VARIANTS,
) -> dict[str, np.ndarray]:
    """Build every mask variant from a label map.

    Args:
        label: label map ``(z, y, x)``, integers (0 background, 1 GTVp, 2 GTVn).
        suv_eq: PET on the SUV-equivalent scale ``(z, y, x)`` (see :func:`pet_to_suv_equivalent`).
        spacing_xyz: voxel spacing ``(x, y, z)`` in mm.
        lesion_labels: label values whose union is "the lesions".
        variants: the variants to build (default :data:`MASK_VARIANTS`).

    Returns:
        ``{variant name: bool array (z, y, x)}`` in the order of ``variants``. An empty lesion set gives all
        variants empty.
    """
    label = np.asarray(label)
    suv_eq = np.asarray(suv_eq)
    if label.shape != suv_eq.shape:
        raise ValueError(f"label shape {label.shape} differs from PET shape {suv_eq.shape}")
    lesions = np.isin(label, lesion_labels)
    box = bounding_box(lesions)
    if box is None:
        return {v.name: np.zeros(label.shape, dtype=bool) for v in variants}

    box_mask = np.zeros(label.shape, dtype=bool)
    box_mask[box] = True
    distance_mm: np.ndarray | None = None
    out: dict[str, np.ndarray] = {}
    for v in variants:
        if v.kind == "lesions":
            out[v.name] = lesions.copy()
        elif v.kind == "bbox":
            out[v.name] = box_mask.copy()
        elif v.kind == "pet_frac":
            peak = float(suv_eq[lesions].max())
            out[v.name] = lesions & (suv_eq >= _param(v) * peak)
        elif v.kind == "bbox_suv":
            out[v.name] = box_mask & (suv_eq > _param(v))
        elif v.kind in ("dilation", "shell"):
            if distance_mm is None:
                # Distance (mm) from each voxel centre to the nearest lesion voxel centre; 0 inside lesions.
                spacing_zyx = tuple(float(s) for s in reversed(spacing_xyz))
                distance_mm = ndimage.distance_transform_edt(~lesions, sampling=spacing_zyx)
            # The tolerance keeps voxels exactly r mm away (e.g. 5 x 0.8 mm) whatever the float rounding.
            grown = distance_mm <= _param(v) + _DISTANCE_TOL_MM
            out[v.name] = grown if v.kind == "dilation" else grown & ~lesions
        else:  # pragma: no cover - guarded by the Literal type
            raise ValueError(f"unknown mask variant kind {v.kind!r} for {v.name!r}")
    return out


def _param(variant: MaskVariant) -> float:
    if variant.parameter is None:
        raise ValueError(f"mask variant {variant.name!r} of kind {variant.kind!r} needs a parameter")
    return float(variant.parameter)


def count_components(mask: np.ndarray, spacing_xyz: Sequence[float], min_volume_mm3: float = 0.0) -> int:
    """Number of 26-connected components of ``mask`` ``(z, y, x)`` with volume >= ``min_volume_mm3`` (mm³)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return 0
    components, n = ndimage.label(mask, structure=STRUCTURE_26)
    voxel_mm3 = float(np.prod(spacing_xyz))
    sizes = np.bincount(components.ravel(), minlength=n + 1)[1:]
    return int(np.count_nonzero(sizes * voxel_mm3 >= min_volume_mm3))
