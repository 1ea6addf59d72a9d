"""Mask variants and the SUV-equivalent PET scale: hand-built masks with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hmvnet.survival.masks import (
    MASK_VARIANTS,
    VARIANT_NAMES,
    bounding_box,
    build_mask_variants,
    count_components,
    max_reach_mm,
    pet_to_suv_equivalent,
)


def _brute_force_distance_mm(mask: np.ndarray, spacing_xyz) -> np.ndarray:
    """Distance (mm) from every voxel centre to the nearest True voxel centre, by exhaustive search."""
    sp = np.asarray(tuple(reversed(spacing_xyz)), dtype=float)
    grid = np.indices(mask.shape).reshape(3, -1).T * sp
    points = np.argwhere(mask) * sp
    d2 = ((grid[:, None, :] - points[None, :, :]) ** 2).sum(-1).min(axis=1)
    return np.sqrt(d2).reshape(mask.shape)


def _ball_volume(r: float) -> float:
    return 4.0 / 3.0 * math.pi * max(r, 0.0) ** 3


def _grown_cube_volume(side_mm: float, r: float) -> float:
    """Volume of the set of points within r of a solid cube of side ``side_mm`` (Steiner formula)."""
    r = max(r, 0.0)
    return side_mm**3 + 6 * side_mm**2 * r + 3 * math.pi * side_mm * r**2 + _ball_volume(r)


def test_variant_list_is_the_documented_eleven():
    assert len(MASK_VARIANTS) == 11
    assert len(set(VARIANT_NAMES)) == 11
    assert VARIANT_NAMES == (
        "lesions",
        "bbox",
        "pet40",
        "bboxsuv2.5",
        "bboxsuv4.0",
        "dil2",
        "dil4",
        "dil8",
        "dil16",
        "shell4",
        "shell8",
    )
    assert all("_" not in n for n in VARIANT_NAMES)  # feature names split into 4 fields
    assert max_reach_mm() == 16.0


def test_suv_equivalent_maps_body_median_to_reference_and_ignores_air():
    ct = np.full((4, 5, 6), -1000.0)
    ct[1:3, 1:4, 1:5] = 40.0  # 24 body voxels
    pet = np.full(ct.shape, 1e6)  # absurd values outside the body must not matter
    pet[ct > -400] = 3000.0
    pet[1, 1, 1] = 9000.0
    out = pet_to_suv_equivalent(pet, ct, reference_body_suv=1.2)
    assert out.dtype == np.float64
    assert out[2, 2, 2] == pytest.approx(1.2)
    assert out[1, 1, 1] == pytest.approx(3.6)


def test_suv_equivalent_is_exactly_scale_invariant():
    rng = np.random.default_rng(1)
    ct = np.where(rng.random((20, 21, 22)) < 0.7, 30.0, -900.0)
    pet_suv = rng.gamma(2.0, 1.0, ct.shape).astype(np.float32)
    pet_bqml = pet_suv.astype(np.float64) * 5000.0
    a = pet_to_suv_equivalent(pet_suv, ct)
    b = pet_to_suv_equivalent(pet_bqml, ct)
    np.testing.assert_array_equal(a, b)
    assert np.median(a[ct > -400]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("pet_value", "ct_value", "message"),
    [(1.0, -1000.0, "no body voxels"), (0.0, 40.0, "median"), (-2.0, 40.0, "median")],
)
def test_suv_equivalent_rejects_unusable_input(pet_value, ct_value, message):
    with pytest.raises(ValueError, match=message):
        pet_to_suv_equivalent(np.full((3, 3, 3), pet_value), np.full((3, 3, 3), ct_value))
    with pytest.raises(ValueError, match="shape"):
        pet_to_suv_equivalent(np.ones((3, 3, 3)), np.ones((3, 3, 2)))


def test_lesions_and_bbox_of_two_separate_blocks():
    label = np.zeros((20, 30, 40), np.uint8)
    label[3:6, 4:9, 5:8] = 1
    label[10:12, 20:22, 30:35] = 2
    label[0, 0, 0] = 3  # another structure: not a lesion
    v = build_mask_variants(label, np.ones(label.shape), (1.0, 1.0, 1.0))
    assert list(v) == list(VARIANT_NAMES)
    assert all(m.dtype == bool and m.shape == label.shape for m in v.values())
    np.testing.assert_array_equal(v["lesions"], (label == 1) | (label == 2))
    expected_box = np.zeros(label.shape, bool)
    expected_box[3:12, 4:22, 5:35] = True
    np.testing.assert_array_equal(v["bbox"], expected_box)
    assert bounding_box(v["bbox"]) == (slice(3, 12), slice(4, 22), slice(5, 35))


def test_pet40_and_suv_thresholds_select_expected_voxels():
    label = np.zeros((10, 10, 10), np.uint8)
    label[2:5, 2:5, 2:5] = 1
    suv = np.zeros(label.shape)
    suv[2:5, 2:5, 2:5] = 1.0
    suv[3, 3, 3] = 10.0  # lesion maximum
    suv[2, 2, 2] = 4.0  # exactly 40 % of the maximum: kept (>=)
    suv[2, 2, 3] = 3.99  # below 40 %
    suv[4, 4, 4] = 2.5  # exactly 2.5: not "above"
    suv[4, 4, 3] = 2.51
    suv[7, 7, 7] = 50.0  # outside the bounding box: never selected
    v = build_mask_variants(label, suv, (1.0, 1.0, 1.0))
    assert set(map(tuple, np.argwhere(v["pet40"]))) == {(3, 3, 3), (2, 2, 2)}
    assert set(map(tuple, np.argwhere(v["bboxsuv2.5"]))) == {(3, 3, 3), (2, 2, 2), (2, 2, 3), (4, 4, 3)}
    assert set(map(tuple, np.argwhere(v["bboxsuv4.0"]))) == {(3, 3, 3)}


def test_threshold_variants_are_scale_free_through_suv_eq():
    rng = np.random.default_rng(3)
    ct = np.full((16, 16, 16), 40.0)
    label = np.zeros(ct.shape, np.uint8)
    label[4:11, 5:12, 3:9] = 1
    pet = rng.gamma(3.0, 1.0, ct.shape).astype(np.float32)
    a = build_mask_variants(label, pet_to_suv_equivalent(pet, ct), (1.0, 1.0, 1.0))
    b = build_mask_variants(
        label, pet_to_suv_equivalent(pet.astype(np.float64) * 5000.0, ct), (1.0, 1.0, 1.0)
    )
    for name in VARIANT_NAMES:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert a["bboxsuv2.5"].any() and not a["bboxsuv2.5"].all()


@pytest.mark.parametrize("spacing_xyz", [(1.0, 1.0, 1.0), (0.8, 1.0, 2.0)])
def test_dilations_and_shells_match_brute_force_distances(spacing_xyz):
    label = np.zeros((22, 24, 26), np.uint8)
    label[9:13, 10:14, 11:15] = 1  # a cube of 4 voxels
    label[10, 20, 12] = 2
    v = build_mask_variants(label, np.ones(label.shape), spacing_xyz)
    lesions = label > 0
    dist = _brute_force_distance_mm(lesions, spacing_xyz)
    for r in (2, 4, 8):
        np.testing.assert_array_equal(v[f"dil{r}"], dist <= r + 1e-6, err_msg=f"dil{r}")
    for r in (4, 8):
        np.testing.assert_array_equal(v[f"shell{r}"], (dist <= r + 1e-6) & ~lesions, err_msg=f"shell{r}")
        assert not (v[f"shell{r}"] & lesions).any()
        np.testing.assert_array_equal(v[f"shell{r}"] | lesions, v[f"dil{r}"])


def test_dilated_voxel_is_a_euclidean_ball_not_an_iterated_dilation():
    label = np.zeros((41, 41, 41), np.uint8)
    label[20, 20, 20] = 1
    v = build_mask_variants(label, np.ones(label.shape), (1.0, 1.0, 1.0))
    d8 = v["dil8"]
    assert d8[20, 20, 28] and not d8[20, 20, 29]  # 8 mm along an axis
    assert d8[24, 24, 24] and not d8[25, 25, 25]  # 6.9 mm in, 8.7 mm out along the diagonal
    for r in (2, 4, 8, 16):
        n = int(v[f"dil{r}"].sum())
        # Voxel cubes around centres within r fill a region between balls of radius r -/+ half a voxel diagonal.
        h = math.sqrt(3) / 2
        assert _ball_volume(r - h) <= n <= _ball_volume(r + h), (r, n)


def test_dilated_cube_volume_within_a_voxel_shell():
    label = np.zeros((60, 60, 60), np.uint8)
    label[20:40, 20:40, 20:40] = 1  # 20 voxel centres per side: a solid hull of side 19 mm
    v = build_mask_variants(label, np.ones(label.shape), (1.0, 1.0, 1.0))
    h = math.sqrt(3) / 2
    for r in (4, 8, 16):
        n = int(v[f"dil{r}"].sum())
        assert _grown_cube_volume(19.0, r - h) <= n <= _grown_cube_volume(19.0, r + h), (r, n)
    assert int(v["shell4"].sum()) == int(v["dil4"].sum()) - 20**3


def test_empty_label_gives_all_variants_empty():
    label = np.zeros((8, 9, 10), np.uint8)
    label[0, 0, 0] = 5  # not a lesion label
    v = build_mask_variants(label, np.full(label.shape, 7.0), (1.0, 1.0, 1.0))
    assert list(v) == list(VARIANT_NAMES)
    assert not any(m.any() for m in v.values())


def test_count_components_uses_26_connectivity_and_minimum_volume():
    mask = np.zeros((10, 10, 10), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True  # corner-touching: one component under 26-connectivity
    mask[6:9, 6:9, 6:9] = True  # 27 voxels
    mask[1, 8, 8] = True  # isolated voxel
    assert count_components(mask, (1.0, 1.0, 1.0)) == 3
    assert count_components(mask, (1.0, 1.0, 1.0), min_volume_mm3=2.0) == 2
    assert count_components(mask, (2.0, 2.0, 2.0), min_volume_mm3=100.0) == 1  # 27 * 8 mm³ = 216 mm³
    assert count_components(np.zeros((3, 3, 3), bool), (1.0, 1.0, 1.0)) == 0
