"""Quality-control pictures: CT and PET slices through the lesions with the predicted mask outlined, per case,
and one HTML contact sheet for a cohort, so a clinician can look instead of read."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hmvnet import Label
from hmvnet.data.writers import write_text, write_with
from hmvnet.geometry import IDENTITY, STRUCTURE_26, make_grid, physical_bounds, resample_image, resample_label

QC_SPACING_MM = 2.0
COLOURS = {Label.GTVP: "#ff3b30", Label.GTVN: "#34c759"}  # GTVp red, GTVn green


def _display_grid(ct: sitk.Image) -> sitk.Image:
    lo, hi = physical_bounds(ct)
    return make_grid(lo, hi, (QC_SPACING_MM,) * 3)


def save_case_qc(ct: sitk.Image, pet: sitk.Image, label: sitk.Image, path: Path, title: str = "") -> Path:
    """A PNG with axial and coronal CT and PET slices through the largest lesion (or the image centre), labels
    outlined (GTVp red, GTVn green). Everything is resampled to an identity-direction 2 mm grid for display, so
    images with flipped axes show the anatomy the right way up (patient right on the image left, head up)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = _display_grid(ct)
    assert grid.GetDirection() == IDENTITY
    ct_a = sitk.GetArrayFromImage(resample_image(ct, grid, -1024.0))
    pet_a = sitk.GetArrayFromImage(resample_image(pet, grid, 0.0))
    lab_a = sitk.GetArrayFromImage(resample_label(label, grid))
    if lab_a.any():
        components, _ = ndimage.label(lab_a > 0, structure=STRUCTURE_26)
        largest = int(np.argmax(np.bincount(components.ravel())[1:])) + 1
        z, y, _x = (round(c) for c in ndimage.center_of_mass(components == largest))
    else:
        z, y, _x = (s // 2 for s in lab_a.shape)
    pet_max = float(np.percentile(pet_a[pet_a > 0], 99.5)) if (pet_a > 0).any() else 1.0
    views = {
        "axial": (lambda a: a[z], "upper"),  # LPS y grows posterior: anterior at the top
        "coronal": (lambda a: a[:, y, :], "lower"),
    }
    fig, axes = plt.subplots(2, 2, figsize=(8, 8), dpi=80)
    for row, (name, (take, origin)) in enumerate(views.items()):
        for col, (arr, cmap, vmin, vmax) in enumerate(
            ((ct_a, "gray", -250, 250), (pet_a, "gray_r", 0, pet_max))
        ):
            ax = axes[row, col]
            ax.imshow(take(arr), cmap=cmap, vmin=vmin, vmax=vmax, origin=origin, interpolation="nearest")
            lab = take(lab_a)
            for value, colour in COLOURS.items():
                if (lab == value).any():
                    ax.contour(lab == value, levels=[0.5], colors=colour, linewidths=1.0)
            ax.set_title(f"{name} {'CT' if col == 0 else 'PET'}", fontsize=9)
            ax.axis("off")
    # LPS x grows to the patient's left, shown to the right: radiological convention (patient right on the left)
    fig.suptitle(title or path.stem, fontsize=10)
    fig.tight_layout()
    write_with(path, fig.savefig)
    plt.close(fig)
    return path


def write_contact_sheet(rows: list[dict], out_dir: Path) -> Path:
    """An HTML page listing every case with its QC picture, status, risk and lesion volumes."""
    cells = []
    for row in rows:
        picture = row.get("qc_png")
        image = (
            f'<img src="{html.escape(str(Path(picture).relative_to(out_dir)))}" width="320">'
            if picture and Path(picture).is_file()
            else "no picture"
        )
        facts = ", ".join(
            f"{k}={row[k]:.3g}" if isinstance(row.get(k), float) else f"{k}={row.get(k)}"
            for k in ("status", "risk", "gtvp_ml", "gtvn_ml", "n_gtvn")
            if row.get(k) not in (None, "")
        )
        cells.append(
            f"<figure><figcaption><b>{html.escape(str(row['case_id']))}</b> {html.escape(facts)}"
            f"</figcaption>{image}</figure>"
        )
    page = (
        "<!doctype html><meta charset='utf-8'><title>HM-VNet QC</title>"
        "<style>body{font-family:sans-serif}figure{display:inline-block;margin:6px;vertical-align:top}</style>"
        "<h1>HM-VNet predictions (GTVp red, GTVn green)</h1>" + "\n".join(cells)
    )
    return write_text(page, out_dir / "qc.html")
