"""Post-processing chains on hand-built probability maps with known answers."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from scipy import ndimage

from hmvnet.config import PostprocessConfig
from hmvnet.errors import WeightsError
from hmvnet.segmentation.postprocessing import (
    PRESETS,
    ball,
    close_mask,
    component_centroids_mm,
    component_volumes_mm3,
    components,
    postprocess,
    remove_small_components,
)

PAPER = PostprocessConfig(preset="paper")
AWARE = PostprocessConfig(preset="label_aware")
BOTH = [PAPER, AWARE]


def probs_from_labels(labels: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    """Probabilities ``(3, z, y, x)``: ``confidence`` on the voxel's label, the rest split over the others."""
    probs = np.full((3, *labels.shape), (1.0 - confidence) / 2.0, dtype=np.float32)
    for k in range(3):
        probs[k][labels == k] = confidence
    return probs


def box(labels: np.ndarray, corner: tuple[int, int, int], size: tuple[int, int, int], value: int) -> None:
    labels[tuple(slice(c, c + s) for c, s in zip(corner, size))] = value


def count(labels: np.ndarray) -> list[int]:
    return np.bincount(labels.ravel(), minlength=3).tolist()


# ------------------------------------------------------------------------------------------ building blocks
def test_ball_is_anisotropic_and_radius_aware():
    assert ball(2.0, (1.0, 1.0, 3.0)).shape == (1, 5, 5)  # z spacing 3 mm > radius: flat disk
    assert ball(2.0, (1.0, 1.0, 1.0)).sum() == 33  # 1 + 6 + 12 + 8 + 6 voxels within 2 voxels
    assert ball(0.5, (1.0, 1.0, 1.0)).sum() == 1


def test_closing_fills_a_one_voxel_hole():
    mask = np.zeros((15, 15, 15), bool)
    mask[4:11, 4:11, 4:11] = True
    mask[7, 7, 7] = False  # a cavity
    closed = close_mask(mask, 2.0, (1.0, 1.0, 1.0))
    assert closed[7, 7, 7]
    assert closed.sum() == 7**3  # nothing else added
    # a radius below the spacing is a one-voxel ball: nothing to close
    assert not close_mask(mask, 0.5, (1.0, 1.0, 1.0))[7, 7, 7]


def test_closing_fills_the_hole_in_the_chains_with_anisotropic_spacing():
    labels = np.zeros((12, 20, 20), np.uint8)
    box(labels, (3, 5, 5), (5, 9, 9), 1)
    labels[5, 9, 9] = 0
    for config in BOTH:
        out = postprocess(probs_from_labels(labels), (1.0, 1.0, 3.0), config)
        assert out[5, 9, 9] == 1
        assert count(out) == [labels.size - 5 * 9 * 9, 5 * 9 * 9, 0]


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 1.2, 2.5)])
def test_grouped_closing_equals_scipy_closing_of_the_padded_volume(spacing):
    rng = np.random.default_rng(1)
    mask = rng.random((30, 32, 28)) < 0.03  # scattered voxels, some close enough to merge
    mask[5:12, 5:12, 5:12] = True
    mask[8, 8, 8] = False
    structure = ball(2.5, spacing)
    half = np.array(structure.shape) // 2
    reference = ndimage.binary_closing(np.pad(mask, [(h, h) for h in half]), structure=structure)
    reference = reference[tuple(slice(h, h + n) for h, n in zip(half, mask.shape))]
    closed = close_mask(mask, 2.5, spacing)
    assert closed.sum() > mask.sum()  # the test exercises real closing
    np.testing.assert_array_equal(closed, reference)


def test_closing_does_not_erode_at_the_image_border():
    mask = np.zeros((6, 6, 6), bool)
    mask[:3, :3, :3] = True
    np.testing.assert_array_equal(close_mask(mask, 2.0, (1.0, 1.0, 1.0)), mask)


def test_component_volumes_and_centroids_in_mm():
    mask = np.zeros((10, 10, 10), bool)
    mask[1:3, 2:4, 5:9] = True  # 2 x 2 x 4 voxels
    mask[7, 7, 7] = True
    ids, n = components(mask)
    assert n == 2
    spacing = (0.5, 2.0, 3.0)  # (x, y, z)
    np.testing.assert_allclose(sorted(component_volumes_mm3(ids, n, spacing)), [3.0, 16 * 3.0])
    centres = component_centroids_mm(ids, n, spacing)
    np.testing.assert_allclose(centres[ids[1, 2, 5] - 1], [1.5 * 3.0, 2.5 * 2.0, 6.5 * 0.5])
    np.testing.assert_allclose(centres[ids[7, 7, 7] - 1], [21.0, 14.0, 3.5])


def test_components_are_26_connected():
    mask = np.zeros((4, 4, 4), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True  # corner contact only
    assert components(mask)[1] == 1


# ------------------------------------------------------------------------------------------ volume rule
@pytest.mark.parametrize("config", BOTH, ids=["paper", "label_aware"])
def test_small_blob_removed_and_one_just_above_kept_anisotropic(config):
    spacing = (0.8, 0.8, 2.5)  # voxel = 1.6 mm^3
    labels = np.zeros((20, 60, 60), np.uint8)
    box(labels, (2, 5, 5), (6, 12, 12), 1)  # GTVp, 864 voxels
    box(labels, (10, 40, 5), (2, 3, 5), 2)  # 30 voxels = 48.0 mm^3 < 50: removed
    box(labels, (10, 5, 40), (2, 4, 4), 2)  # 32 voxels = 51.2 mm^3 >= 50: kept
    out = postprocess(probs_from_labels(labels), spacing, config)
    assert count(out) == [labels.size - 864 - 32, 864, 32]
    assert (out[10:12, 5:9, 40:44] == 2).all()
    assert not out[10:12, 40:43, 5:10].any()


def test_remove_small_components_step_alone():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[0:2, 0:2, 0:2] = 1  # 8 voxels
    labels[5:8, 5:8, 5:8] = 2  # 27 voxels
    out = remove_small_components(labels, (2.0, 2.0, 2.0), PostprocessConfig(min_volume_mm3=100.0))
    assert count(out) == [1000 - 27, 0, 27]  # 8 * 8 = 64 mm^3 dropped, 27 * 8 = 216 mm^3 kept
    assert count(labels) == [1000 - 35, 8, 27]  # the input is not modified


# ------------------------------------------------------------------------------------------ component selection
def four_blobs() -> np.ndarray:
    """A GTVp (1000 voxels) and three GTVn (125, 80, 64 voxels), 1 mm spacing, all within 150 mm."""
    labels = np.zeros((40, 60, 60), np.uint8)
    box(labels, (15, 25, 25), (10, 10, 10), 1)
    box(labels, (2, 2, 2), (5, 5, 5), 2)
    box(labels, (30, 2, 50), (4, 4, 5), 2)
    box(labels, (2, 50, 50), (4, 4, 4), 2)
    return labels


def test_four_blobs_paper_keeps_three_label_aware_keeps_all_nodes():
    labels = four_blobs()
    probs = probs_from_labels(labels)
    paper = postprocess(probs, (1.0, 1.0, 1.0), PAPER)
    assert count(paper) == [labels.size - 1000 - 125 - 80, 1000, 125 + 80]
    assert not paper[2:6, 50:54, 50:54].any()  # the smallest node lost its slot
    aware = postprocess(probs, (1.0, 1.0, 1.0), AWARE)
    np.testing.assert_array_equal(aware, labels)


@pytest.mark.parametrize("config", BOTH, ids=["paper", "label_aware"])
def test_far_away_blob_removed(config):
    spacing = (1.0, 1.0, 3.0)  # z extent 80 * 3 = 240 mm
    labels = np.zeros((80, 40, 40), np.uint8)
    box(labels, (2, 15, 15), (6, 10, 10), 1)  # GTVp centroid z = 4.5 voxels = 13.5 mm
    box(labels, (48, 15, 15), (4, 5, 5), 2)  # centroid z = 49.5 -> 135 mm away: kept
    box(labels, (60, 15, 15), (4, 5, 5), 2)  # centroid z = 61.5 -> 171 mm away: removed
    out = postprocess(probs_from_labels(labels), spacing, config)
    assert (out[48:52, 15:20, 15:20] == 2).all()
    assert not out[60:64].any()
    assert count(out) == [labels.size - 600 - 100, 600, 100]
    # the threshold is the configuration's: move it and the far blob stays
    far = postprocess(probs_from_labels(labels), spacing, dataclasses.replace(config, max_distance_mm=200.0))
    assert (far[60:64, 15:20, 15:20] == 2).all()


def test_paper_labels_largest_component_gtvp_label_aware_follows_probabilities():
    labels = np.zeros((30, 40, 40), np.uint8)
    box(labels, (5, 5, 5), (8, 8, 8), 2)  # the network calls the big blob a node
    box(labels, (20, 25, 25), (4, 4, 4), 1)  # and the small one the primary
    probs = probs_from_labels(labels)
    paper = postprocess(probs, (1.0, 1.0, 1.0), PAPER)
    assert (paper[5:13, 5:13, 5:13] == 1).all() and (paper[20:24, 25:29, 25:29] == 2).all()
    aware = postprocess(probs, (1.0, 1.0, 1.0), AWARE)
    np.testing.assert_array_equal(aware, labels)


@pytest.mark.parametrize("config", BOTH, ids=["paper", "label_aware"])
def test_empty_prediction_gives_empty_output(config):
    probs = probs_from_labels(np.zeros((16, 20, 24), np.uint8))
    out = postprocess(probs, (1.0, 1.0, 1.0), config)
    assert out.dtype == np.uint8 and out.shape == (16, 20, 24) and not out.any()


# ------------------------------------------------------------------------------------------ label-aware details
def test_label_aware_keeps_nodes_without_gtvp():
    labels = np.zeros((80, 30, 30), np.uint8)
    box(labels, (2, 5, 5), (4, 5, 5), 2)
    box(labels, (74, 5, 5), (4, 5, 5), 2)  # 216 mm apart: no GTVp, so no distance rule
    out = postprocess(probs_from_labels(labels), (1.0, 1.0, 3.0), AWARE)
    np.testing.assert_array_equal(out, labels)
    paper = postprocess(probs_from_labels(labels), (1.0, 1.0, 3.0), PAPER)
    # paper: one of the equal blobs becomes GTVp and the other, 216 mm from it, is dropped
    assert count(paper) == [labels.size - 100, 100, 0]


def test_label_aware_relabels_a_second_gtvp_blob_as_gtvn():
    labels = np.zeros((30, 40, 40), np.uint8)
    box(labels, (5, 5, 5), (8, 8, 8), 1)
    box(labels, (20, 25, 25), (4, 4, 4), 1)
    out = postprocess(probs_from_labels(labels), (1.0, 1.0, 1.0), AWARE)
    assert (out[5:13, 5:13, 5:13] == 1).all()
    assert (out[20:24, 25:29, 25:29] == 2).all()


def test_label_aware_threshold_on_foreground_probability():
    probs = probs_from_labels(np.zeros((10, 20, 20), np.uint8))
    # touching GTVp / GTVn, each ~0.48: foreground 0.96 passes, no gap carved between them
    probs[:, 2:6, 2:8, 2:6] = np.array([0.04, 0.50, 0.46])[:, None, None, None]
    probs[:, 2:6, 2:8, 6:10] = np.array([0.04, 0.46, 0.50])[:, None, None, None]
    # a weak GTVp region: foreground 0.6 < 0.7
    probs[:, 2:6, 12:18, 12:18] = np.array([0.4, 0.6, 0.0])[:, None, None, None]
    out = postprocess(probs, (1.0, 1.0, 1.0), AWARE)
    assert (out[2:6, 2:8, 2:6] == 1).all() and (out[2:6, 2:8, 6:10] == 2).all()
    assert not out[:, 12:18, 12:18].any()
    lower = postprocess(probs, (1.0, 1.0, 1.0), dataclasses.replace(AWARE, threshold=0.5))
    assert (lower[2:6, 12:18, 12:18] > 0).all()


# ------------------------------------------------------------------------------------------ errors, presets
def test_presets_and_errors():
    assert set(PRESETS) == {"paper", "label_aware", "primary_mass"}
    probs = probs_from_labels(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(WeightsError, match=r"postprocess\.preset"):
        postprocess(probs, (1.0, 1.0, 1.0), PostprocessConfig(preset="nnunet"))
    with pytest.raises(ValueError, match=r"\(3, z, y, x\)"):
        postprocess(probs[:2], (1.0, 1.0, 1.0), AWARE)
    with pytest.raises(ValueError, match="spacing"):
        postprocess(probs, (1.0, 0.0, 1.0), AWARE)
    bad = probs.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        postprocess(bad, (1.0, 1.0, 1.0), AWARE)


@pytest.mark.slow
@pytest.mark.parametrize("config", BOTH, ids=["paper", "label_aware"])
def test_full_size_crop_is_fast(config):
    """200 x 200 x 310 mm crop at 1 mm: a GTVp, four nodes and 2000 speckles, under 2 s."""
    rng = np.random.default_rng(0)
    labels = np.zeros((310, 200, 200), np.uint8)
    speckles = rng.integers(0, (310, 200, 200), size=(2000, 3))
    labels[tuple(speckles.T)] = 2
    box(labels, (140, 90, 90), (25, 25, 25), 1)
    for corner in [(130, 50, 50), (160, 140, 60), (120, 60, 140), (170, 150, 150)]:
        box(labels, corner, (7, 7, 7), 2)
    probs = probs_from_labels(labels)
    start = time.perf_counter()
    out = postprocess(probs, (1.0, 1.0, 1.0), config)
    elapsed = time.perf_counter() - start
    assert (out[140:165, 90:115, 90:115] == 1).all()
    assert count(out)[1] < 25**3 + 100  # at most a few speckles touching the GTVp joined it
    assert elapsed < 2.0


def test_primary_mass_keeps_a_mislabelled_primary_whole_and_all_nodes():
    from hmvnet.config import PostprocessConfig as _Config
    from hmvnet.segmentation.postprocessing import postprocess as _postprocess

    probs = np.zeros((3, 40, 40, 60), dtype=np.float32)
    probs[0] = 1.0
    # a large primary the network calls mostly GTVn (p_GTVp 0.4, p_GTVn 0.6), and three small nodes (p_GTVn 0.9)
    probs[:, 10:20, 10:20, 10:20] = np.array([0.0, 0.4, 0.6])[:, None, None, None]
    for x in (30, 40, 50):
        probs[:, 25:28, 25:28, x : x + 3] = np.array([0.0, 0.1, 0.9])[:, None, None, None]
    labels = _postprocess(
        probs, (2.0, 2.0, 2.0), _Config(preset="primary_mass", threshold=0.5, min_volume_mm3=50)
    )
    assert (labels[10:20, 10:20, 10:20] == 1).all() and (labels == 1).sum() == 1000
    assert (labels == 2).sum() == 3 * 27
    label_aware = _postprocess(probs, (2.0, 2.0, 2.0), _Config(preset="label_aware", threshold=0.5))
    assert (label_aware == 1).sum() == 0  # the argmax rule loses the primary here
