"""Geometry: physical bounds, grids, image vs label resampling, arrays wrapped in images, and the ONE same-space
check of the package.

Sizes, spacings and origins are SimpleITK order ``(x, y, z)`` in mm; arrays are ``(z, y, x)``. An image resampler
(:func:`resample_image`, linear or B-spline) and a label resampler (:func:`resample_label`, nearest neighbour) are
distinct functions: the type chooses the interpolator.

:func:`label_to_reference` maps a label image (e.g. on the crop grid) back onto the original CT grid by physical
geometry (no index arithmetic): by nearest neighbour, or ``"linear"``: each label's indicator is resampled linearly
and every voxel takes the label with the largest interpolated share (background when the labels' shares sum to less
than half). The linear mapping removes the staircase a 2 mm label leaves on a 1 mm CT grid; it runs only inside the
labels' bounding box, so a whole-body CT costs no more than a neck CT.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from hmvnet.config import ImageInterpolator, LabelInterpolation

SAME_SPACE_TOL_MM = 1e-4
"""Tolerance of :func:`assert_same_space` on spacing and origin (mm) and on direction cosines: ITK's own default
coordinate tolerance is 1e-6 x the spacing; 1e-4 mm absorbs the float32 round-trip of a NIfTI header."""

STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)
"""26-connectivity for 3-D connected components (``scipy.ndimage.label`` structure), used everywhere."""

_INTERPOLATORS: dict[str, int] = {
    ImageInterpolator.LINEAR: sitk.sitkLinear,
    ImageInterpolator.BSPLINE: sitk.sitkBSpline,
}


IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned physical box (x, y, z) in mm covering the image's voxels (corners at +-half a voxel)."""
    size = np.array(image.GetSize())
    corners = []
    for cx in (-0.5, size[0] - 0.5):
        for cy in (-0.5, size[1] - 0.5):
            for cz in (-0.5, size[2] - 0.5):
                corners.append(
                    image.TransformContinuousIndexToPhysicalPoint((float(cx), float(cy), float(cz)))
                )
    pts = np.array(corners)
    return pts.min(axis=0), pts.max(axis=0)


def make_grid(lo: np.ndarray, hi: np.ndarray, spacing: tuple[float, float, float]) -> sitk.Image:
    """An empty uint8 reference image with identity direction covering the box [lo, hi] (mm) at ``spacing``."""
    spacing_arr = np.asarray(spacing, dtype=float)
    size = np.maximum(np.floor((hi - lo) / spacing_arr + 1e-6).astype(int), 1)
    ref = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    ref.SetSpacing([float(s) for s in spacing_arr])
    ref.SetDirection(IDENTITY)
    centre = (lo + hi) / 2.0
    ref.SetOrigin([float(v) for v in centre - (size - 1) / 2.0 * spacing_arr])
    return ref


def resample_image(
    image: sitk.Image, reference: sitk.Image, default: float, interpolator: str = "linear"
) -> sitk.Image:
    """Resample an intensity image onto ``reference``'s grid (linear or B-spline), float32."""
    out = sitk.Resample(
        image, reference, sitk.Transform(), _INTERPOLATORS[interpolator], float(default), sitk.sitkFloat32
    )
    return out


def resample_label(label: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Resample a label image onto ``reference``'s grid by nearest neighbour, uint8, background 0."""
    return sitk.Resample(label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


LABEL_INTERPOLATIONS = tuple(str(m) for m in LabelInterpolation)


def label_to_reference(
    label: sitk.Image, reference_ct: sitk.Image, interpolation: str = "nearest"
) -> sitk.Image:
    """Map a label image (e.g. on the crop grid) onto the original CT grid: exactly its size, spacing, origin and
    direction, uint8, 0 outside the crop. ``interpolation`` is one of :data:`LABEL_INTERPOLATIONS`."""
    if interpolation == "nearest":
        return resample_label(label, reference_ct)
    if interpolation != "linear":
        raise ValueError(f"label interpolation must be one of {LABEL_INTERPOLATIONS}, got {interpolation!r}")
    out = np.zeros(tuple(reversed(reference_ct.GetSize())), dtype=np.uint8)
    sub = _foreground_subgrid(label, reference_ct)
    if sub is not None:
        subgrid, (x0, y0, z0) = sub
        values = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(label)) if v != 0]
        shares = np.stack(
            [
                sitk.GetArrayFromImage(
                    sitk.Resample(
                        sitk.Cast(label == v, sitk.sitkFloat32),
                        subgrid,
                        sitk.Transform(),
                        sitk.sitkLinear,
                        0.0,
                        sitk.sitkFloat32,
                    )
                )
                for v in values
            ]
        )
        best = np.argmax(shares, axis=0)
        winner = np.take_along_axis(shares, best[None], axis=0)[0]
        # label v wins when its share beats every other label and the background share 1 - sum(shares)
        keep = winner > 1.0 - shares.sum(axis=0)
        block = np.where(keep, np.asarray(values, dtype=np.uint8)[best], 0).astype(np.uint8)
        dz, dy, dx = block.shape
        out[z0 : z0 + dz, y0 : y0 + dy, x0 : x0 + dx] = block
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(reference_ct)
    return image


def _foreground_subgrid(
    label: sitk.Image, reference: sitk.Image
) -> tuple[sitk.Image, tuple[int, int, int]] | None:
    """The part of ``reference``'s grid covering ``label``'s non-zero voxels (plus one voxel), and its start index
    (x, y, z); None when the label is empty or falls outside the reference."""
    nonzero = np.nonzero(sitk.GetArrayViewFromImage(label))
    if nonzero[0].size == 0:
        return None
    lo = [max(int(a.min()) - 1, 0) for a in reversed(nonzero)]  # x, y, z
    hi = [min(int(a.max()) + 1, n - 1) for a, n in zip(reversed(nonzero), label.GetSize(), strict=True)]
    corners = np.array(
        [
            reference.TransformPhysicalPointToContinuousIndex(
                label.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z)))
            )
            for x in (lo[0], hi[0])
            for y in (lo[1], hi[1])
            for z in (lo[2], hi[2])
        ]
    )
    start = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    stop = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, np.array(reference.GetSize()))
    if np.any(stop <= start):
        return None
    region = sitk.RegionOfInterest(reference, [int(v) for v in stop - start], [int(v) for v in start])
    return region, (int(start[0]), int(start[1]), int(start[2]))


def array_to_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a ``(z, y, x)`` array in an image carrying ``reference``'s geometry (shape must match)."""
    expected = tuple(reversed(reference.GetSize()))
    if array.shape != expected:
        raise ValueError(f"array shape {array.shape} does not match the reference grid (z, y, x) {expected}")
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def space_differences(a: sitk.Image, b: sitk.Image, tol: float = SAME_SPACE_TOL_MM) -> list[str]:
    """How ``a`` and ``b`` differ in size, spacing, origin or direction (empty: the same space, within ``tol``)."""
    problems = []
    if a.GetSize() != b.GetSize():
        problems.append(f"size {a.GetSize()} vs {b.GetSize()}")
    for what, va, vb in (
        ("spacing", a.GetSpacing(), b.GetSpacing()),
        ("origin", a.GetOrigin(), b.GetOrigin()),
        ("direction", a.GetDirection(), b.GetDirection()),
    ):
        if len(va) != len(vb) or not np.allclose(va, vb, atol=tol, rtol=0):
            problems.append(f"{what} {tuple(round(v, 6) for v in va)} vs {tuple(round(v, 6) for v in vb)}")
    return problems


def assert_same_space(**images: sitk.Image) -> None:
    """Raise ValueError unless all images (given by name) share size, spacing, origin and direction within
    :data:`SAME_SPACE_TOL_MM`: an internal invariant (callers resample first), not a user-input check."""
    (ref_name, ref), *rest = images.items()
    for name, image in rest:
        problems = space_differences(image, ref)
        if problems:
            raise ValueError(f"{name} and {ref_name} are not on the same grid: " + "; ".join(problems))
