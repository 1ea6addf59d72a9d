"""Quality-control picture of one case, for a clinician to look at instead of read (``hmvnet predict --qc``).

One PNG per case (``qc.png``), all panels resampled to an identity-direction 2 mm grid so flipped or oblique
images show the anatomy the right way round, in radiological convention (patient right on the image left;
anterior up in axial views; superior up in coronal and sagittal views, anterior on the left in sagittal views):

* rows axial, coronal, sagittal; columns: fused PET/CT and CT alone through the GTVp centroid, then fused PET/CT
  and CT alone through the centroid of the largest GTVn component (each view a 200 mm window around its point);
* a full-field-of-view coronal maximum-intensity projection of the PET with the outlines projected, where a hot
  spot without an outline (a missed lesion) shows at a glance;
* outlines GTVp cyan, GTVn magenta, with a legend giving volumes (ml, on the original CT grid) and the node count;
  orientation letters on every view, a 10 mm scale bar, a PET colour bar (SUV, or the file's units when they are
  evidently not SUV), the case id and the model/weights version.

The cohort's contact sheet is :func:`hmvnet.app.qc_html.write_contact_sheet` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hmvnet import Label
from hmvnet.app.qc_html import write_contact_sheet
from hmvnet.data.writers import write_with
from hmvnet.geometry import IDENTITY, STRUCTURE_26, make_grid, physical_bounds, resample_image, resample_label

__all__ = ["COLOURS", "QC_SPACING_MM", "model_version", "save_case_qc", "write_contact_sheet"]

QC_SPACING_MM = 2.0
WINDOW_MM = 200.0
"""Side of the square window each slice view shows around its point."""
SCALE_BAR_MM = 10.0
COLOURS = {
    Label.GTVP: "#00d5ff",
    Label.GTVN: "#ff3df5",
}  # cyan and magenta: distinct from grey and the PET map
NAMES = {Label.GTVP: "GTVp", Label.GTVN: "GTVn"}
SUV_PLAUSIBLE_MAX = 200.0
"""A PET whose 99.9th percentile exceeds this is not in SUV (Bq/ml images are in the thousands)."""
CT_WINDOW = (-160.0, 240.0)  # soft-tissue window, HU

# plane -> (array axes kept as (rows, columns), row-0 origin, letters (top, bottom, left, right))
PLANES = {
    "axial": ((1, 2), "upper", ("A", "P", "R", "L")),
    "coronal": ((0, 2), "lower", ("S", "I", "R", "L")),
    "sagittal": ((0, 1), "lower", ("S", "I", "A", "P")),
}


@dataclass
class QCVolumes:
    """The case on the display grid, ``(z, y, x)`` arrays: CT in HU, PET in its file's units, labels."""

    ct: np.ndarray
    pet: np.ndarray
    label: np.ndarray


def _display_volumes(ct: sitk.Image, pet: sitk.Image, label: sitk.Image) -> QCVolumes:
    lo, hi = physical_bounds(ct)
    grid = make_grid(lo, hi, (QC_SPACING_MM,) * 3)
    assert grid.GetDirection() == IDENTITY  # LPS axes: x to the patient's left, y posterior, z superior
    return QCVolumes(
        sitk.GetArrayFromImage(resample_image(ct, grid, -1024.0)),
        sitk.GetArrayFromImage(resample_image(pet, grid, 0.0)),
        sitk.GetArrayFromImage(resample_label(label, grid)),
    )


def _lesion_points(label: np.ndarray) -> dict[str, tuple[int, int, int] | None]:
    """Voxel ``(z, y, x)`` of the GTVp centroid and of the largest GTVn component's centroid (None if absent)."""
    points: dict[str, tuple[int, int, int] | None] = {"GTVp": None, "largest GTVn": None}
    if (label == Label.GTVP).any():
        points["GTVp"] = tuple(round(c) for c in ndimage.center_of_mass(label == Label.GTVP))  # type: ignore[assignment]
    components, n = ndimage.label(label == Label.GTVN, structure=STRUCTURE_26)
    if n:
        largest = int(np.argmax(np.bincount(components.ravel())[1:])) + 1
        points["largest GTVn"] = tuple(round(c) for c in ndimage.center_of_mass(components == largest))  # type: ignore[assignment]
    return points


def lesion_summary(label: sitk.Image) -> dict[str, float | int]:
    """GTVp and GTVn volumes in ml on the label's own grid, and the GTVn component count (26-connectivity)."""
    array = sitk.GetArrayViewFromImage(label)
    voxel_ml = float(np.prod(label.GetSpacing())) / 1000.0
    _, n_nodes = ndimage.label(array == Label.GTVN, structure=STRUCTURE_26)
    return {
        "gtvp_ml": float((array == Label.GTVP).sum() * voxel_ml),
        "gtvn_ml": float((array == Label.GTVN).sum() * voxel_ml),
        "n_gtvn": int(n_nodes),
    }


def _pet_scale(pet: np.ndarray) -> tuple[float, str]:
    """Colour-bar maximum and label: SUV when the values are plausible SUVs, else the file's units."""
    positive = pet[pet > 0]
    top = float(np.percentile(positive, 99.9)) if positive.size else 1.0
    if top <= SUV_PLAUSIBLE_MAX:
        return max(top, 1.0), "PET SUV"
    return top, "PET (file units, not SUV: e.g. Bq/ml)"


def _window(array2d: np.ndarray, centre: tuple[int, int]) -> tuple[slice, slice]:
    half = int(WINDOW_MM / QC_SPACING_MM / 2)
    out = []
    for axis, c in enumerate(centre):
        size = array2d.shape[axis]
        lo = int(np.clip(c - half, 0, max(0, size - 2 * half)))
        out.append(slice(lo, min(size, lo + 2 * half)))
    return out[0], out[1]


def _section(vol: np.ndarray, plane: str, point: tuple[int, int, int]) -> np.ndarray:
    axis = {"axial": 0, "coronal": 1, "sagittal": 2}[plane]
    return np.take(vol, point[axis], axis=axis)


def _draw_outlines(ax, label2d: np.ndarray) -> None:
    # no origin= here: contour puts label2d[0, 0] at y = 0, which the imshow beneath already placed at the top
    # (origin "upper") or bottom ("lower"); passing the origin again would flip the outline against the image
    for value, colour in COLOURS.items():
        if (label2d == value).any():
            ax.contour(label2d == value, levels=[0.5], colors=colour, linewidths=1.2)


def _decorate(
    ax, shape: tuple[int, int], origin: str, letters: tuple[str, str, str, str], dark: bool = True
) -> None:
    """Orientation letters at the edge midpoints and a 10 mm scale bar in the lower right (light marks on a
    dark picture, dark marks on a light one)."""
    top, bottom, left, right = letters
    mark = "white" if dark else "black"
    style = {
        "color": "yellow" if dark else "#b00000",
        "fontsize": 9,
        "fontweight": "bold",
        "ha": "center",
        "va": "center",
    }
    rows, cols = shape
    for text, (x, y) in (
        (top, (0.5, 0.97)),
        (bottom, (0.5, 0.03)),
        (left, (0.03, 0.5)),
        (right, (0.97, 0.5)),
    ):
        ax.text(x, y, text, transform=ax.transAxes, **style)
    bar = SCALE_BAR_MM / QC_SPACING_MM
    y_bar = rows * (0.92 if origin == "upper" else 0.08)
    x_end = cols * 0.95
    ax.plot([x_end - bar, x_end], [y_bar, y_bar], color=mark, linewidth=3, solid_capstyle="butt")
    ax.text(x_end - bar / 2, y_bar + rows * (-0.035 if origin == "upper" else 0.035), "10 mm", color=mark,
            fontsize=7, ha="center", va="center")  # fmt: skip


def _slice_panel(ax, vols: QCVolumes, plane: str, point, fused: bool, pet_max: float):
    """One view; returns the PET image handle when fused (for the colour bar)."""
    _, origin, letters = PLANES[plane]
    ct2d, pet2d, lab2d = (_section(v, plane, point) for v in (vols.ct, vols.pet, vols.label))
    keep = {"axial": (1, 2), "coronal": (0, 2), "sagittal": (0, 1)}[plane]
    rows, cols = _window(ct2d, (point[keep[0]], point[keep[1]]))
    ct2d, pet2d, lab2d = ct2d[rows, cols], pet2d[rows, cols], lab2d[rows, cols]
    ax.imshow(ct2d, cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1], origin=origin, interpolation="nearest")
    handle = None
    if fused:
        shown = np.ma.masked_less(pet2d, 0.05 * pet_max)
        handle = ax.imshow(shown, cmap="inferno", vmin=0, vmax=pet_max, alpha=0.6, origin=origin,
                           interpolation="bilinear")  # fmt: skip
    _draw_outlines(ax, lab2d)
    _decorate(ax, ct2d.shape, origin, letters)
    ax.set_xticks([])
    ax.set_yticks([])
    return handle


def _mip_panel(ax, vols: QCVolumes, pet_max: float) -> None:
    """Coronal maximum-intensity projection over the whole field of view, outlines projected along y."""
    mip = vols.pet.max(axis=1)
    ax.imshow(mip, cmap="gray_r", vmin=0, vmax=pet_max, origin="lower", interpolation="bilinear",
              aspect="equal")  # fmt: skip
    for value, colour in COLOURS.items():
        projected = (vols.label == value).any(axis=1)
        if projected.any():
            ax.contour(projected, levels=[0.5], colors=colour, linewidths=1.0)
    _decorate(ax, mip.shape, "lower", ("S", "I", "R", "L"), dark=False)
    ax.set_title("PET MIP (coronal, whole field)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(fig, summary: dict[str, float | int]) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=COLOURS[Label.GTVP], linewidth=2, label=f"GTVp  {summary['gtvp_ml']:.2f} ml"),
        Line2D([], [], color=COLOURS[Label.GTVN], linewidth=2,
               label=f"GTVn  {summary['gtvn_ml']:.2f} ml in {summary['n_gtvn']} node(s)"),
    ]  # fmt: skip
    fig.legend(
        handles=handles, loc="lower left", ncol=2, fontsize=9, frameon=False, bbox_to_anchor=(0.01, 0.0)
    )


def model_version(weights: dict[str, str] | None) -> str:
    """``hmvnet <version>, weights <sha256 prefix>``: the code version and a digest of the segmentation weight
    files' sha256 (``config.json`` ``weights``), so two pictures say whether the same model drew them."""
    import hashlib
    import json

    from hmvnet import __version__

    text = f"hmvnet {__version__}"
    if weights:
        digest = hashlib.sha256(json.dumps(weights, sort_keys=True).encode()).hexdigest()[:10]
        text += f", weights {digest} ({len(weights)} fold file(s))"
    return text


def save_case_qc(
    ct: sitk.Image, pet: sitk.Image, label: sitk.Image, path: Path, title: str = "", model_version: str = ""
) -> Path:
    """Write the QC picture of one case (see the module docstring) to ``path``; returns ``path``.

    ``label`` holds :class:`~hmvnet.Label` ids on any grid (resampled with the images); ``title`` is the case id,
    ``model_version`` a short string naming the code and weights that produced the label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vols = _display_volumes(ct, pet, label)
    pet_max, pet_units = _pet_scale(vols.pet)
    summary = lesion_summary(label)
    points = _lesion_points(vols.label)
    fig = plt.figure(figsize=(17, 10.5), dpi=72)
    grid = fig.add_gridspec(3, 6, width_ratios=[1, 1, 1, 1, 1.15, 0.06], left=0.01, right=0.96, top=0.93,
                            bottom=0.06, wspace=0.04, hspace=0.12)  # fmt: skip
    handle = None
    for col, (target, fused) in enumerate((t, f) for t in points for f in (True, False)):
        point = points[target]
        for row, plane in enumerate(PLANES):
            ax = fig.add_subplot(grid[row, col])
            if point is None:
                ax.text(
                    0.5, 0.5, f"no {target.split()[-1]}\npredicted", ha="center", va="center", fontsize=11
                )
                ax.set_axis_off()
            else:
                handle = _slice_panel(ax, vols, plane, point, fused, pet_max) or handle
            if row == 0:
                ax.set_title(f"{'PET/CT' if fused else 'CT'} through {target}", fontsize=9)
            if col == 0:
                ax.set_ylabel(plane, fontsize=9)
    _mip_panel(fig.add_subplot(grid[:, 4]), vols, pet_max)
    if handle is None:  # no lesion at all: the colour bar still describes the MIP's grey scale
        handle = plt.cm.ScalarMappable(cmap="inferno", norm=plt.Normalize(0, pet_max))
    fig.colorbar(handle, cax=fig.add_subplot(grid[:, 5]), label=pet_units)
    _legend(fig, summary)
    fig.suptitle(f"{title or path.stem}    {model_version}".strip(), fontsize=12, x=0.01, ha="left")
    fig.text(0.99, 0.005, "radiological convention: patient right on image left; 2 mm display grid",
             fontsize=8, ha="right", va="bottom")  # fmt: skip
    write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path
