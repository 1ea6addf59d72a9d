"""QC pictures: orientation of the panels and outlines, lesion summary, and the contact sheet."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import SimpleITK as sitk

from hmvnet import Label
from hmvnet.app.qc import _display_volumes, _lesion_points, _slice_panel, lesion_summary, save_case_qc
from hmvnet.app.qc_html import risk_percentiles, write_contact_sheet
from tests.helpers import image_from_function, origin_for_direction

# patient left (+x in LPS), anterior (-y), superior (+z) of the centre: GTVp; a node on the patient's right
GTVP_MM, NODE_MM = np.array([30.0, -25.0, 20.0]), np.array([-35.0, 10.0, -20.0])


def _case(direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)):
    size, spacing = (60, 60, 40), (2.0, 2.0, 3.0)
    origin = origin_for_direction((0, 0, 0), size, spacing, direction)

    def dist(x, y, z, c):
        return np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)

    ct = image_from_function(lambda x, y, z: np.where(x**2 + y**2 < 50**2, 40.0, -1000.0), size, spacing,
                             origin, direction)  # fmt: skip
    pet = image_from_function(lambda x, y, z: 1.0 + 9.0 * (dist(x, y, z, GTVP_MM) < 10), size, spacing, origin,
                              direction)  # fmt: skip
    label = image_from_function(
        lambda x, y, z: np.where(dist(x, y, z, GTVP_MM) < 10, Label.GTVP, 0)
        + np.where(dist(x, y, z, NODE_MM) < 14, Label.GTVN, 0),
        size, spacing, origin, direction, dtype=np.uint8,
    )  # fmt: skip
    return ct, pet, label


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1)])
def test_radiological_orientation_and_outline_over_the_lesion(direction):
    """Axial: patient left on the image right, anterior up; coronal: superior up; the outline sits on the hot
    spot (whatever the file's axis directions)."""
    ct, pet, label = _case(direction)
    vols = _display_volumes(ct, pet, label)
    point = _lesion_points(vols.label)["GTVp"]
    assert point is not None
    fig, axes = plt.subplots(1, 2)
    for ax, plane in zip(axes, ("axial", "coronal"), strict=True):
        _slice_panel(ax, vols, plane, point, fused=True, pet_max=10.0)
        image = ax.images[-1]  # the PET overlay, in display coordinates of the axes
        hot = np.argwhere(np.ma.filled(image.get_array(), 0) > 5).mean(axis=0)  # (row, col) of the hot spot
        outline = np.concatenate([p.vertices for c in ax.collections for p in c.get_paths()]).mean(axis=0)
        assert np.allclose(outline[::-1], hot, atol=1.5), (plane, outline, hot)  # outline (x, y) on the spot
        rows, cols = image.get_array().shape
        top_is_row0 = ax.get_ylim()[0] > ax.get_ylim()[1]
        shown_row = hot[0] if top_is_row0 else rows - 1 - hot[0]  # 0 = top of the picture
        assert hot[1] > cols / 2, plane  # patient left on the image right
        assert shown_row < rows / 2, plane  # anterior (axial) / superior (coronal) in the upper half
    plt.close(fig)


def test_lesion_summary_and_points():
    _, _, label = _case()
    summary = lesion_summary(label)
    assert summary["n_gtvn"] == 1
    assert summary["gtvp_ml"] == pytest.approx(4 / 3 * np.pi * 10**3 / 1000, rel=0.15)
    assert summary["gtvn_ml"] == pytest.approx(4 / 3 * np.pi * 14**3 / 1000, rel=0.15)


def test_save_case_qc_without_nodes(tmp_path):
    ct, pet, label = _case()
    array = sitk.GetArrayFromImage(label)
    array[array == Label.GTVN] = 0
    no_nodes = sitk.GetImageFromArray(array)
    no_nodes.CopyInformation(label)
    path = save_case_qc(ct, pet, no_nodes, tmp_path / "qc.png", "CASE-1", "hmvnet test")
    assert path.stat().st_size > 10_000 and path.read_bytes()[:4] == b"\x89PNG"


def test_contact_sheet_sorts_links_and_lists_failures(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "qc.png").write_bytes(b"png")
    rows = [
        {"case_id": "A", "status": "ok", "risk": 0.5, "gtvp_ml": 1.234, "gtvn_ml": 0.0, "n_gtvn": 0,
         "qc_png": str(tmp_path / "A" / "qc.png"), "t_stage": "T2", "n_stage": "N0"},
        {"case_id": "B", "status": "ok", "risk": -1.0, "gtvp_ml": 3.0, "gtvn_ml": 2.0, "n_gtvn": 2},
        {"case_id": "C", "status": "failed", "error": "InputError: cannot read PET"},
    ]  # fmt: skip
    text = write_contact_sheet(rows, tmp_path).read_text()
    assert '<a href="A/qc.png"><img src="A/qc.png"' in text
    assert "InputError: cannot read PET" in text and "T stage" in text and ">T2<" in text
    assert "higher = earlier relapse" in text and "data-col" in text and "1.23" in text
    assert risk_percentiles(rows) == {"A": 100.0, "B": 0.0}
    assert "T stage" not in write_contact_sheet(rows[1:], tmp_path).read_text()
