"""Geometry of the final label for staging: greatest dimensions (3-D Feret diameters), volumes, extents, nodes
and their sides relative to the patient's sagittal midline.

All lengths are in mm and volumes in ml, measured in physical space (the label's spacing and direction are
honoured). Patient left/right follow ITK's LPS convention: physical +x is the patient's **left**.

The midline is the x position (mm) halfway between the left and right edges of the body outline on the CT
(HU > ``body_hu``), the median over the axial slices spanning the lesions; it is not assumed to be the image
centre (the patient is rarely centred in the field of view).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from hmvnet import Label
from hmvnet.geometry import STRUCTURE_26

log = logging.getLogger(__name__)

MIDLINE_TOLERANCE_MM = 5.0
"""A lesion whose centroid lies within this distance of the midline has no side (it counts as midline)."""


@dataclass(frozen=True)
class NodeGeometry:
    """One GTVn connected component (26-connectivity)."""

    feret_mm: float  # greatest 3-D dimension, voxel corners included
    volume_ml: float
    centroid_mm: tuple[float, float, float]  # physical (x, y, z)
    offset_mm: float  # centroid x minus the midline x: > 0 patient left, < 0 patient right
    side: str  # "left", "right" or "midline"
    relation: str  # "ipsilateral" or "contralateral" to the primary (see StagingGeometry)


@dataclass(frozen=True)
class StagingGeometry:
    """Everything the staging rule and the learned classifier read from one label.

    ``primary_side`` is the GTVp's side; without a GTVp, or for a GTVp on the midline, it is the side of the
    largest node (so a single node is ipsilateral), or "midline" when there is no lateral node either.
    """

    midline_x_mm: float
    midline_source: str  # "body outline", "given" or "image centre" (fallback, logged)
    gtvp_present: bool
    gtvp_feret_mm: float  # 0 without a GTVp
    gtvp_volume_ml: float
    gtvp_extent_mm: tuple[float, float, float]  # physical bounding box size (x, y, z); zeros without a GTVp
    gtvp_components: int
    gtvp_offset_mm: float  # GTVp centroid x minus the midline x (0 without a GTVp)
    primary_side: str
    nodes: list[NodeGeometry] = field(default_factory=list)

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    @property
    def largest_node_feret_mm(self) -> float:
        return max((n.feret_mm for n in self.nodes), default=0.0)

    @property
    def largest_node_ml(self) -> float:
        return max((n.volume_ml for n in self.nodes), default=0.0)

    @property
    def total_nodal_ml(self) -> float:
        return float(sum(n.volume_ml for n in self.nodes))

    @property
    def n_ipsilateral(self) -> int:
        return sum(n.relation == "ipsilateral" for n in self.nodes)

    @property
    def n_contralateral(self) -> int:
        return sum(n.relation == "contralateral" for n in self.nodes)

    @property
    def bilateral(self) -> bool:
        """Nodes on both sides of the midline."""
        sides = {n.side for n in self.nodes}
        return {"left", "right"} <= sides

    def features(self) -> dict[str, float]:
        """The numeric features (:data:`FEATURE_NAMES`, in that order) for the learned classifier."""
        return {
            "gtvp_present": float(self.gtvp_present),
            "gtvp_feret_mm": self.gtvp_feret_mm,
            "gtvp_log_volume_ml": float(np.log1p(self.gtvp_volume_ml)),
            "gtvp_extent_x_mm": self.gtvp_extent_mm[0],
            "gtvp_extent_y_mm": self.gtvp_extent_mm[1],
            "gtvp_extent_z_mm": self.gtvp_extent_mm[2],
            "gtvp_components": float(self.gtvp_components),
            "gtvp_abs_offset_mm": abs(self.gtvp_offset_mm),
            "node_count": float(self.node_count),
            "largest_node_feret_mm": self.largest_node_feret_mm,
            "largest_node_log_ml": float(np.log1p(self.largest_node_ml)),
            "total_nodal_log_ml": float(np.log1p(self.total_nodal_ml)),
            "n_ipsilateral": float(self.n_ipsilateral),
            "n_contralateral": float(self.n_contralateral),
            "bilateral": float(self.bilateral),
            "contralateral": float(self.n_contralateral > 0),
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            node_count=self.node_count,
            largest_node_feret_mm=self.largest_node_feret_mm,
            total_nodal_ml=self.total_nodal_ml,
            bilateral=self.bilateral,
            n_ipsilateral=self.n_ipsilateral,
            n_contralateral=self.n_contralateral,
        )
        return out


FEATURE_NAMES: tuple[str, ...] = tuple(
    StagingGeometry(0.0, "given", False, 0.0, 0.0, (0.0, 0.0, 0.0), 0, 0.0, "midline").features()
)


def _index_to_physical(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(origin (3,), matrix (3, 3)) with physical = origin + matrix @ (i, j, k) for (x, y, z) voxel indices."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return np.asarray(image.GetOrigin(), dtype=float), direction * np.asarray(image.GetSpacing(), dtype=float)


def _physical_points(mask_zyx: np.ndarray, image: sitk.Image, offset_zyx=(0, 0, 0)) -> np.ndarray:
    """Physical (x, y, z) mm of the True voxels of ``mask_zyx`` (a crop starting at ``offset_zyx``): (n, 3)."""
    origin, matrix = _index_to_physical(image)
    kji = np.argwhere(mask_zyx) + np.asarray(offset_zyx)
    return origin + kji[:, ::-1].astype(float) @ matrix.T


def feret_and_extent(
    mask_zyx: np.ndarray, image: sitk.Image, offset_zyx=(0, 0, 0)
) -> tuple[float, np.ndarray]:
    """Greatest 3-D dimension (mm) and physical bounding-box size (x, y, z mm) of a binary mask.

    Measured on the voxel corners (a voxel counts with its whole extent), so one voxel of 1 x 1 x 2 mm has a
    Feret diameter of sqrt(6) mm. Exact: the hull of the corners is the hull of the voxel centres (scipy's
    Qhull) plus one voxel, whose vertices are the hull vertices' corners; the maximum pairwise distance of those.
    """
    boundary = mask_zyx & ~ndimage.binary_erosion(mask_zyx)
    centres = _physical_points(boundary, image, offset_zyx)
    if len(centres) == 0:
        return 0.0, np.zeros(3)
    if len(centres) > 4:
        try:
            centres = centres[ConvexHull(centres).vertices]
        except QhullError:  # all points coplanar (a one-voxel-thick lesion): keep them all
            pass
    _, matrix = _index_to_physical(image)
    signs = np.array([[a, b, c] for a in (-0.5, 0.5) for b in (-0.5, 0.5) for c in (-0.5, 0.5)])
    corners = (centres[:, None, :] + (signs @ matrix.T)[None]).reshape(-1, 3)
    if len(corners) > 4000:  # only hull vertices can be farthest apart
        corners = corners[ConvexHull(corners).vertices]
    return float(pdist(corners).max()), corners.max(axis=0) - corners.min(axis=0)


def body_midline_x(
    ct: sitk.Image, z_range_mm: tuple[float, float] | None = None, body_hu: float = -400.0
) -> float:
    """Physical x (mm) of the sagittal midline: median over axial slices of the body outline's x centre.

    The body is the largest 26-connected component of HU > ``body_hu`` (the couch and air are excluded) on a
    grid subsampled to about 4 mm in-plane. Slices whose centre lies in ``z_range_mm`` (physical z) are used
    when there are any. Raises ValueError when the CT shows no body.
    """
    spacing = np.asarray(ct.GetSpacing())
    step = np.maximum(1, np.round(np.array([4.0, 4.0, 3.0]) / spacing).astype(int))  # x, y, z
    arr = sitk.GetArrayViewFromImage(ct)[:: step[2], :: step[1], :: step[0]]
    body = arr > body_hu
    labels, n = ndimage.label(body)
    if n == 0:
        raise ValueError("no voxel above the body threshold")
    sizes = np.bincount(labels.ravel())[1:]
    body = labels == 1 + int(np.argmax(sizes))
    origin, matrix = _index_to_physical(ct)
    kji = np.argwhere(body) * step[::-1]
    xyz = origin + kji[:, ::-1].astype(float) @ matrix.T
    slices = kji[:, 0]
    if z_range_mm is not None:
        inside = (xyz[:, 2] >= z_range_mm[0]) & (xyz[:, 2] <= z_range_mm[1])
        if inside.any():
            xyz, slices = xyz[inside], slices[inside]
    centres = []
    for k in np.unique(slices):
        x = xyz[slices == k, 0]
        centres.append(0.5 * (x.min() + x.max()))
    return float(np.median(centres))


def _components(mask_zyx: np.ndarray) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    """Connected components (26-connectivity) as (cropped mask, crop offset z, y, x)."""
    if not mask_zyx.any():
        return []
    labels, _ = ndimage.label(mask_zyx, structure=STRUCTURE_26)
    out = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None:
            out.append((labels[box] == index, tuple(s.start for s in box)))
    return out  # type: ignore[return-value]


def _side(offset_mm: float) -> str:
    if offset_mm > MIDLINE_TOLERANCE_MM:
        return "left"
    if offset_mm < -MIDLINE_TOLERANCE_MM:
        return "right"
    return "midline"


def _find_midline(
    label: sitk.Image, ct: sitk.Image | None, arr: np.ndarray, base: np.ndarray, midline_x_mm: float | None
):
    if midline_x_mm is not None:
        return float(midline_x_mm), "given"
    if ct is not None:
        z_range = None
        if arr.any():
            z = _physical_points(arr > 0, label, base)[:, 2]
            z_range = (float(z.min()) - 20.0, float(z.max()) + 20.0)
        try:
            return body_midline_x(ct, z_range), "body outline"
        except ValueError:
            log.warning("no body outline on the CT (no voxel above -400 HU): midline at the image centre")
    size = np.asarray(label.GetSize(), dtype=float)
    centre = label.TransformContinuousIndexToPhysicalPoint(tuple((size - 1) / 2))
    return float(centre[0]), "image centre"


def staging_geometry(
    label: sitk.Image,
    ct: sitk.Image | None = None,
    midline_x_mm: float | None = None,
    min_node_ml: float = 0.05,
) -> StagingGeometry:
    """Staging geometry of a 0/1/2 label image (typically the final label on the CT grid).

    Args:
        label: uint8 label image, Label.GTVP / Label.GTVN.
        ct: the CT on any grid, for the midline from the body outline; not needed when ``midline_x_mm`` is given.
        midline_x_mm: a known midline (physical x, mm), e.g. the phantom's true one.
        min_node_ml: GTVn components smaller than this (ml) are ignored (specks are not nodes).
    """
    full = sitk.GetArrayViewFromImage(label)
    boxes = ndimage.find_objects((full > 0).astype(np.uint8))
    # work on the lesions' bounding box only (a whole-body CT grid has ~1e8 voxels); base = its (z, y, x) start
    arr = np.asarray(full[boxes[0]]) if boxes else np.zeros((0, 0, 0), np.uint8)
    base = np.array([s.start for s in boxes[0]]) if boxes else np.zeros(3, int)
    voxel_ml = float(np.prod(label.GetSpacing())) / 1000.0
    midline, source = _find_midline(label, ct, arr, base, midline_x_mm)
    gtvp = arr == Label.GTVP
    gtvp_present = bool(gtvp.any())
    feret, extent, offset, n_parts = 0.0, np.zeros(3), 0.0, 0
    if gtvp_present:
        box = ndimage.find_objects(gtvp.astype(np.uint8))[0]
        crop, start = gtvp[box], base + [s.start for s in box]
        feret, extent = feret_and_extent(crop, label, start)
        offset = float(_physical_points(crop, label, start)[:, 0].mean() - midline)
        n_parts = len(_components(crop))
    raw_nodes = []
    for comp, local in _components(arr == Label.GTVN):
        volume = float(comp.sum()) * voxel_ml
        if volume < min_node_ml:
            continue
        node_feret, _ = feret_and_extent(comp, label, base + local)
        centroid = _physical_points(comp, label, base + local).mean(axis=0)
        raw_nodes.append((node_feret, volume, centroid))
    primary_side = _side(offset) if gtvp_present else "midline"
    if primary_side == "midline":
        lateral = [n for n in raw_nodes if _side(n[2][0] - midline) != "midline"]
        if lateral:
            primary_side = _side(max(lateral, key=lambda n: n[1])[2][0] - midline)
    nodes = []
    for node_feret, volume, centroid in raw_nodes:
        node_offset = float(centroid[0] - midline)
        side = _side(node_offset)
        contra = primary_side != "midline" and side not in ("midline", primary_side)
        nodes.append(
            NodeGeometry(
                round(node_feret, 3),
                round(volume, 4),
                tuple(round(float(c), 3) for c in centroid),  # type: ignore[arg-type]
                round(node_offset, 3),
                side,
                "contralateral" if contra else "ipsilateral",
            )
        )
    return StagingGeometry(
        midline_x_mm=round(midline, 3),
        midline_source=source,
        gtvp_present=gtvp_present,
        gtvp_feret_mm=round(feret, 3),
        gtvp_volume_ml=round(float(gtvp.sum()) * voxel_ml, 4),
        gtvp_extent_mm=tuple(round(float(e), 3) for e in extent),  # type: ignore[arg-type]
        gtvp_components=n_parts,
        gtvp_offset_mm=round(offset, 3),
        primary_side=primary_side,
        nodes=nodes,
    )
