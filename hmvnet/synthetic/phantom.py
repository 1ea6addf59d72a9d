"""Head-and-neck PET/CT phantom: anatomy and lesions as functions of PHYSICAL coordinates (LPS, mm).

Everything here is defined in physical space and *sampled* onto a grid, so a CT grid, a PET grid and a flipped grid
all see the same patient at the same place. Grids are restricted to axis-aligned directions (diagonal direction
cosines of +-1, i.e. flipped axes), which keeps the physical coordinates separable: ``x`` depends only on the
column index, ``y`` on the row, ``z`` on the slice. Structures are then painted slice by slice on their bounding
boxes (cheap), in painter's order.

Patient frame: ``u`` is the depth below the vertex in mm (``u = z_vertex - z``; LPS z grows towards the head).
x grows towards the patient's left, y towards the posterior.

Hand-written because no maintained library makes PET/CT phantoms with labelled lesions on two grids; the
geometry itself (origin, spacing, direction) is set and read through SimpleITK only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

Axes = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Grid:
    """An axis-aligned voxel grid: ``size``/``spacing``/``origin`` in SimpleITK order (x, y, z), mm.

    ``flips`` are the diagonal direction cosines (+1 or -1 per axis): ``(-1, -1, 1)`` is direction diag(-1,-1,1).
    """

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    flips: tuple[int, int, int] = (1, 1, 1)

    @property
    def direction(self) -> tuple[float, ...]:
        fx, fy, fz = (float(f) for f in self.flips)
        return (fx, 0.0, 0.0, 0.0, fy, 0.0, 0.0, 0.0, fz)

    def axes(self) -> Axes:
        """Physical coordinates of the voxel centres along each axis: ``x`` (nx,), ``y`` (ny,), ``z`` (nz,), mm."""
        return tuple(  # type: ignore[return-value]
            self.origin[d] + self.flips[d] * self.spacing[d] * np.arange(self.size[d], dtype=np.float64)
            for d in range(3)
        )

    def image(self, array: np.ndarray) -> sitk.Image:
        """A SimpleITK image of a (z, y, x) array on this grid."""
        if array.shape != tuple(reversed(self.size)):
            raise ValueError(
                f"array shape {array.shape} does not match grid size (z, y, x) {self.size[::-1]}"
            )
        image = sitk.GetImageFromArray(array)
        image.SetSpacing([float(s) for s in self.spacing])
        image.SetOrigin([float(o) for o in self.origin])
        image.SetDirection(self.direction)
        return image

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0


def grid_covering(
    lo: tuple[float, float, float],
    hi: tuple[float, float, float],
    spacing: tuple[float, float, float],
    flips: tuple[int, int, int] = (1, 1, 1),
) -> Grid:
    """The grid with the given spacing whose voxel centres cover the physical box ``[lo, hi]`` (mm, x/y/z).

    A flipped axis starts at ``hi``: the same voxel centres as the unflipped grid, traversed backwards.
    """
    # float32-representable spacing and origin: NIfTI stores them as float32, so a label written as .nii.gz and a
    # CT written as .mha then carry bit-identical geometry
    sp = tuple(float(np.float32(s)) for s in spacing)
    size = tuple(int(np.floor((h - low) / s + 1e-6)) + 1 for low, h, s in zip(lo, hi, sp))
    origin = tuple(
        float(np.float32(low if f > 0 else low + (n - 1) * s)) for low, n, s, f in zip(lo, size, sp, flips)
    )
    return Grid(size, sp, origin, tuple(int(f) for f in flips))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Tube:
    """A structure with an elliptic cross-section on every axial slice; knots in physical z (increasing).

    Between knots the centre (cx, cy) and semi-axes (a along x, b along y), mm, are linearly interpolated;
    outside the knots, or where a <= 0, the structure is absent. ``half`` keeps only the part with y < cy
    ("anterior") or y > cy ("posterior").
    """

    z: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray
    b: np.ndarray
    half: str | None = None


def tube(
    z_vertex: float,
    u: Sequence[float],
    cx: float | Sequence[float],
    cy: float | Sequence[float],
    a: float | Sequence[float],
    b: float | Sequence[float],
    half: str | None = None,
) -> Tube:
    """A :class:`Tube` from knots at depths ``u`` below the vertex (mm); scalars are broadcast to all knots."""
    u_arr = np.asarray(u, dtype=np.float64)

    def knots(v: float | Sequence[float]) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=np.float64), u_arr.shape).copy()

    z = z_vertex - u_arr
    order = np.argsort(z)
    return Tube(z[order], knots(cx)[order], knots(cy)[order], knots(a)[order], knots(b)[order], half)


def ellipsoid(
    z_vertex: float, centre_u: float, cx: float, cy: float, semi: tuple[float, float, float]
) -> Tube:
    """An axis-aligned ellipsoid (semi-axes x, y, z in mm) centred at depth ``centre_u`` as a :class:`Tube`."""
    t = np.linspace(-1.0, 1.0, 41)
    scale = np.sqrt(np.clip(1.0 - t**2, 0.0, None))
    return tube(z_vertex, list(centre_u + t * semi[2]), cx, cy, list(semi[0] * scale), list(semi[1] * scale))


def _index_range(coords: np.ndarray, lo: float, hi: float) -> tuple[int, int] | None:
    """The contiguous index range [i0, i1) of sorted (increasing or decreasing) ``coords`` inside [lo, hi]."""
    idx = np.nonzero((coords >= lo) & (coords <= hi))[0]
    if idx.size == 0:
        return None
    return int(idx[0]), int(idx[-1]) + 1


def paint_tube(
    array: np.ndarray, axes: Axes, structure: Tube, value: float, soft_mm: float | None = None
) -> None:
    """Paint ``value`` inside ``structure`` into the (z, y, x) ``array`` in place.

    With ``soft_mm`` the edge is a linear ramp about one voxel wide (partial-volume-like anti-aliasing, used for
    PET); otherwise the membership is the voxel centre's (hard, used for CT).
    """
    x, y, z = axes
    kr = _index_range(z, structure.z[0], structure.z[-1])
    if kr is None:
        return
    zs = z[kr[0] : kr[1]]
    a = np.interp(zs, structure.z, structure.a)
    b = np.interp(zs, structure.z, structure.b)
    cx = np.interp(zs, structure.z, structure.cx)
    cy = np.interp(zs, structure.z, structure.cy)
    present = (a > 0.1) & (b > 0.1)
    if not present.any():
        return
    margin = soft_mm or 0.0
    ir = _index_range(x, float((cx - a)[present].min() - margin), float((cx + a)[present].max() + margin))
    jr = _index_range(y, float((cy - b)[present].min() - margin), float((cy + b)[present].max() + margin))
    if ir is None or jr is None:
        return
    a = np.where(present, a, 1.0)[:, None, None]
    b = np.where(present, b, 1.0)[:, None, None]
    xs = x[ir[0] : ir[1]][None, None, :]
    ys = y[jr[0] : jr[1]][None, :, None]
    dx = (xs - cx[:, None, None]) / a
    dy = (ys - cy[:, None, None]) / b
    r = np.sqrt(dx * dx + dy * dy)
    r[~present] = np.inf
    if structure.half == "anterior":
        r = np.where(ys < cy[:, None, None], r, np.inf)
    elif structure.half == "posterior":
        r = np.where(ys > cy[:, None, None], r, np.inf)
    view = array[kr[0] : kr[1], jr[0] : jr[1], ir[0] : ir[1]]
    if soft_mm:
        dist = (r - 1.0) * np.minimum(a, b)
        m = np.clip(0.5 - dist / soft_mm, 0.0, 1.0)
        view *= (1.0 - m).astype(view.dtype)
        view += (m * value).astype(view.dtype)
    else:
        view[r <= 1.0] = value


@dataclass
class Lesion:
    """An irregular lesion: a union of rotated ellipsoids whose radius is perturbed by a smooth angular noise.

    ``field(x, y, z)`` is a normalised radius (<= 1 inside). ``uptake`` is the peak SUV (before blur),
    ``hu`` the CT value (HU), ``necrosis`` the normalised radius of a necrotic (cold, hypodense) core (0 = none).
    """

    centre: np.ndarray  # (3,) mm, x/y/z
    semis: list[np.ndarray]  # per component (3,) mm
    offsets: list[np.ndarray]  # per component (3,) mm from centre
    rotations: list[np.ndarray]  # per component (3, 3)
    wobble_k: np.ndarray  # (n, 3) unit vectors of the angular perturbation
    wobble_phase: np.ndarray  # (n,)
    wobble_amp: float
    uptake: float
    hu: float
    necrosis: float = 0.0
    texture_k: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    texture_phase: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def radius(self) -> float:
        """A bounding radius (mm) around ``centre``."""
        return float(
            max(np.linalg.norm(o) + s.max() for o, s in zip(self.offsets, self.semis)) * (1 + self.wobble_amp)
        )

    @property
    def equivalent_radius(self) -> float:
        return float(np.cbrt(np.prod(self.semis[0])))

    def field(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Normalised radius at physical points (broadcastable arrays, mm); <= 1 inside the lesion."""
        p = np.stack(np.broadcast_arrays(x, y, z), axis=-1) - self.centre
        norm = np.linalg.norm(p, axis=-1, keepdims=True)
        unit = p / np.maximum(norm, 1e-6)
        wobble = np.cos(np.pi * unit @ self.wobble_k.T + self.wobble_phase).mean(axis=-1)
        out = np.full(p.shape[:-1], np.inf)
        for semi, off, rot in zip(self.semis, self.offsets, self.rotations):
            q = (p - off) @ rot  # coordinates in the component's own axes
            out = np.minimum(out, np.sqrt(((q / semi) ** 2).sum(axis=-1)))
        return out / (1.0 + self.wobble_amp * wobble)

    def texture(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Smooth multiplicative heterogeneity (mean ~1, range 0.5-1.5) at physical points."""
        if self.texture_k.size == 0:
            return np.ones(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)))
        p = np.stack(np.broadcast_arrays(x, y, z), axis=-1)
        waves = np.cos(p @ self.texture_k.T + self.texture_phase).mean(axis=-1)
        return 1.0 + 0.5 * waves


def make_lesion(
    rng: np.random.Generator,
    centre: np.ndarray,
    volume_ml: float,
    *,
    elongation: tuple[float, float, float] = (1.0, 1.0, 1.0),
    satellites: int = 0,
    wobble: float = 0.15,
    uptake: float,
    hu: float,
    necrosis: float = 0.0,
    texture: bool = True,
) -> Lesion:
    """Draw an irregular lesion of roughly ``volume_ml`` (cm^3) around ``centre`` (mm)."""
    r_eq = float(np.cbrt(3.0 * volume_ml * 1000.0 / (4.0 * np.pi)))
    e = np.asarray(elongation) * rng.uniform(0.8, 1.25, 3)
    e = e / np.cbrt(np.prod(e))
    semis = [r_eq * e]
    offsets = [np.zeros(3)]
    rotations = [Rotation.random(random_state=rng).as_matrix()]
    for _ in range(satellites):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        offsets.append(direction * r_eq * rng.uniform(0.45, 0.7))
        semis.append(r_eq * rng.uniform(0.35, 0.6) * rng.uniform(0.8, 1.25, 3))
        rotations.append(Rotation.random(random_state=rng).as_matrix())
    k = rng.normal(size=(3, 3))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    tk = rng.normal(size=(4, 3))
    tk *= (2 * np.pi / rng.uniform(8.0, 16.0, (4, 1))) / np.linalg.norm(tk, axis=1, keepdims=True)
    return Lesion(
        centre=np.asarray(centre, dtype=np.float64),
        semis=semis,
        offsets=offsets,
        rotations=rotations,
        wobble_k=k * rng.uniform(1.0, 2.5, (3, 1)),
        wobble_phase=rng.uniform(0, 2 * np.pi, 3),
        wobble_amp=wobble,
        uptake=uptake,
        hu=hu,
        necrosis=necrosis,
        texture_k=tk if texture else np.zeros((0, 3)),
        texture_phase=rng.uniform(0, 2 * np.pi, 4) if texture else np.zeros(0),
    )


def lesion_box(lesion: Lesion, axes: Axes, margin_mm: float = 0.0) -> tuple[tuple[slice, ...], Axes] | None:
    """The (z, y, x) slices of the grid around a lesion and the physical coordinates there (broadcastable)."""
    x, y, z = axes
    rad = lesion.radius + margin_mm
    ranges = [
        _index_range(c, lesion.centre[d] - rad, lesion.centre[d] + rad) for d, c in enumerate((x, y, z))
    ]
    if any(r is None for r in ranges):
        return None
    (i0, i1), (j0, j1), (k0, k1) = ranges  # type: ignore[misc]
    sub = (z[k0:k1][:, None, None], y[j0:j1][None, :, None], x[i0:i1][None, None, :])
    return (slice(k0, k1), slice(j0, j1), slice(i0, i1)), (sub[2], sub[1], sub[0])


def paint_lesion(
    array: np.ndarray,
    axes: Axes,
    lesion: Lesion,
    value_fn: Callable[[Lesion, np.ndarray, Axes], np.ndarray],
    soft_mm: float | None = None,
) -> None:
    """Paint a lesion in place: ``value_fn(lesion, r, (x, y, z))`` gives the value at normalised radius ``r``."""
    box = lesion_box(lesion, axes, soft_mm or 0.0)
    if box is None:
        return
    slices, (xs, ys, zs) = box
    r = lesion.field(xs, ys, zs)
    values = value_fn(lesion, r, (xs, ys, zs))
    view = array[slices]
    if soft_mm:
        m = np.clip(0.5 - (r - 1.0) * lesion.equivalent_radius / soft_mm, 0.0, 1.0)
        view *= (1.0 - m).astype(view.dtype)
        view += (m * values).astype(view.dtype)
    else:
        inside = r <= 1.0
        view[inside] = np.broadcast_to(values, r.shape)[inside]


def lesion_mask(lesions: list[Lesion], axes: Axes, shape: tuple[int, int, int]) -> np.ndarray:
    """Boolean (z, y, x) mask of voxel centres inside any of ``lesions``."""
    mask = np.zeros(shape, dtype=bool)
    for lesion in lesions:
        box = lesion_box(lesion, axes)
        if box is None:
            continue
        slices, (xs, ys, zs) = box
        mask[slices] |= lesion.field(xs, ys, zs) <= 1.0
    return mask
