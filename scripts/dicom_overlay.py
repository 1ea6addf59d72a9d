"""Picture of a DICOM SEG (read back with highdicom) and RTSTRUCT contours (read back with pydicom) on their CT.

Usage: python scripts/dicom_overlay.py --tree EXPORT_TREE --case-dir OUT/<case> --out docs/img/dicom_seg_overlay.png

Everything drawn comes from the written DICOM objects and the source CT series found in the tree through the
SEG's referenced series; nothing from the pipeline's NIfTI mask.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pydicom
import SimpleITK as sitk

from hmvnet.app.dicom_export import read_seg_labels
from hmvnet.data.dicom_index import index_tree
from hmvnet.data.dicom_series import read_series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, required=True)
    parser.add_argument("--case-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    seg_path = next(args.case_dir.glob("*_seg.dcm"))
    rt_path = next(args.case_dir.glob("*_rtstruct.dcm"))
    seg = pydicom.dcmread(seg_path)
    series_uid = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    ct_series = next(s.ct for s in index_tree(args.tree) if s.ct is not None and s.ct.uid == series_uid)
    ct, headers = read_series(ct_series.files, "CT")
    labels = read_seg_labels(seg_path, headers)
    p, n = ((labels == v).sum(axis=(1, 2)) for v in (1, 2))
    both = np.minimum(p, n)
    k = int(np.argmax(both if both.max() > 0 else p + n))  # a slice showing both labels when one exists
    hu = sitk.GetArrayViewFromImage(ct)[k]
    z = float(headers[k].ImagePositionPatient[2])
    x0, y0 = (float(v) for v in headers[k].ImagePositionPatient[:2])
    dy, dx = (float(v) for v in headers[k].PixelSpacing)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
    for ax, title in zip(axes, ("DICOM SEG (highdicom read-back)", "RTSTRUCT contours (pydicom read-back)")):
        ax.imshow(hu, cmap="gray", vmin=-250, vmax=250)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    colours = {1: (1.0, 0.25, 0.25), 2: (0.25, 0.63, 1.0)}
    overlay = np.zeros((*hu.shape, 4))
    for value, rgb in colours.items():
        overlay[labels[k] == value] = (*rgb, 0.55)
    axes[0].imshow(overlay)
    rt = pydicom.dcmread(rt_path)
    names = {r.ROINumber: r.ROIName for r in rt.StructureSetROISequence}
    for roi in getattr(rt, "ROIContourSequence", []):
        colour = colours[1 if names[roi.ReferencedROINumber] == "GTVp" else 2]
        for contour in getattr(roi, "ContourSequence", []):
            pts = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
            if abs(pts[0, 2] - z) < 1e-3:
                closed = np.vstack([pts, pts[:1]])
                axes[1].plot((closed[:, 0] - x0) / dx, (closed[:, 1] - y0) / dy, color=colour, lw=1.5)
    fig.suptitle(f"{args.case_dir.name}: slice z = {z:.1f} mm (red GTVp, blue GTVn)", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(
        f"wrote {args.out} (slice {k}, {int((labels[k] == 1).sum())} GTVp / {int((labels[k] == 2).sum())} GTVn pixels)"
    )


if __name__ == "__main__":
    main()
