"""Preprocessing: crop-grid geometry, exact inverse, centroid preservation, PET-unit invariance, head search."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from hmvnet.config import PreprocessConfig
from hmvnet.errors import InputError
from hmvnet.geometry import label_to_reference
from hmvnet.segmentation.preprocessing import locate_head, overlap_bounds, preprocess
from tests.helpers import image_from_function, origin_for_direction

CONFIG = PreprocessConfig(spacing_mm=(2.0, 2.0, 2.0))


def centroid_mm(label: sitk.Image, value: int = 1) -> np.ndarray:
    arr = sitk.GetArrayFromImage(label) == value
    z, y, x = ndimage.center_of_mass(arr)
    return np.array(label.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z))))


def test_inverse_restores_ct_grid_exactly(head_neck_pair):
    ct, pet = head_neck_pair["ct"], head_neck_pair["pet"]
    pre = preprocess(ct, pet, CONFIG)
    crop_label = sitk.Cast(pre.ct_hu > 55, sitk.sitkUInt8)
    back = label_to_reference(crop_label, ct)
    assert back.GetSize() == ct.GetSize()
    assert back.GetSpacing() == ct.GetSpacing()
    assert back.GetOrigin() == ct.GetOrigin()
    assert back.GetDirection() == ct.GetDirection()
    assert back.GetPixelID() == sitk.sitkUInt8


def test_crop_grid_is_isotropic_identity_and_normalised(head_neck_pair):
    pre = preprocess(head_neck_pair["ct"], head_neck_pair["pet"], CONFIG)
    assert pre.ct_hu.GetSpacing() == (2.0, 2.0, 2.0)
    assert pre.ct_hu.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    assert pre.image.shape == (2, *reversed(pre.ct_hu.GetSize()))
    assert pre.image.dtype == np.float32
    assert 0.0 <= pre.image[0].min() and pre.image[0].max() <= 1.0
    assert abs(pre.image[1].mean()) < 1e-4 and abs(pre.image[1].std() - 1.0) < 1e-3
    # crop no larger than the configured box
    assert all(s * 2.0 <= c + 1e-6 for s, c in zip(pre.ct_hu.GetSize(), CONFIG.crop_size_mm, strict=True))


def test_sphere_centroid_preserved_forward_and_back(head_neck_pair):
    ct, pet, label = head_neck_pair["ct"], head_neck_pair["pet"], head_neck_pair["label"]
    truth = head_neck_pair["tumour"]
    original = centroid_mm(label)
    assert np.linalg.norm(original - truth) < 1.0
    pre = preprocess(ct, pet, CONFIG, label=label)
    forward = centroid_mm(pre.label)
    assert np.all(np.abs(forward - original) <= np.array(CONFIG.spacing_mm))
    back = label_to_reference(pre.label, ct)
    restored = centroid_mm(back)
    assert np.all(np.abs(restored - original) <= np.array(ct.GetSpacing()))
    # the CT intensity agrees with the label on the crop grid (no axis flips)
    ct_crop = sitk.GetArrayFromImage(pre.ct_hu)
    lab = sitk.GetArrayFromImage(pre.label).astype(bool)
    assert ct_crop[lab].mean() > 60 and ct_crop[~lab].mean() < 50


def test_bq_per_ml_and_suv_give_the_same_network_input(head_neck_pair):
    ct, pet = head_neck_pair["ct"], head_neck_pair["pet"]
    pet_bq = sitk.Cast(pet * 5000.0, sitk.sitkFloat32)
    a = preprocess(ct, pet, CONFIG)
    b = preprocess(ct, pet_bq, CONFIG)
    assert a.ct_hu.GetOrigin() == b.ct_hu.GetOrigin()
    np.testing.assert_allclose(a.image, b.image, rtol=0, atol=1e-5)


def _brain_pet(centre_z: float, z_extent: tuple[float, float], direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)):
    brain = np.array([5.0, -10.0, 100.0])

    def fn(x, y, z):
        suv = np.where((x / 90) ** 2 + (y / 80) ** 2 <= 1, 1.0, 0.0)
        rb = np.sqrt((x - brain[0]) ** 2 + (y - brain[1]) ** 2 + ((z - brain[2]) / 0.8) ** 2)
        suv = np.where(rb <= 50, 9.0, suv)
        # a hot bladder-like blob low in the thorax must not be taken for the brain
        rh = np.sqrt(x**2 + (y - 20) ** 2 + (z + 250) ** 2)
        return np.where(rh <= 45, 15.0, suv)

    spacing = (4.0, 4.0, 4.0)
    size = (70, 70, int((z_extent[1] - z_extent[0]) / 4))
    centre = (0.0, 0.0, (z_extent[0] + z_extent[1]) / 2)
    return image_from_function(
        fn, size, spacing, origin_for_direction(centre, size, spacing, direction), direction
    ), brain


@pytest.mark.parametrize(
    ("z_extent", "direction"),
    [
        ((-60, 170), (1, 0, 0, 0, 1, 0, 0, 0, 1)),  # head and neck only
        ((-400, 170), (1, 0, 0, 0, 1, 0, 0, 0, 1)),  # neck plus thorax with a hot distractor
        ((-400, 170), (-1, 0, 0, 0, -1, 0, 0, 0, -1)),
    ],  # same, all axes flipped
)
def test_head_localisation_finds_the_brain(z_extent, direction):
    pet, brain = _brain_pet(0.0, z_extent, direction)
    lo, hi = overlap_bounds(pet, pet)
    centre, found = locate_head(pet, lo, hi, CONFIG)
    assert found
    assert np.linalg.norm(centre - brain) < 8.0


def test_non_overlapping_fields_of_view_are_rejected(head_neck_pair):
    pet = sitk.Image(head_neck_pair["pet"])
    pet.SetOrigin((5000.0, 0.0, 0.0))
    with pytest.raises(InputError, match="do not overlap"):
        preprocess(head_neck_pair["ct"], pet, CONFIG)


def test_small_field_of_view_gives_a_smaller_crop(head_neck_pair):
    ct = head_neck_pair["ct"][30:80, 30:80, 20:60]
    pre = preprocess(ct, head_neck_pair["pet"], CONFIG)
    lo_ct = np.array(ct.TransformIndexToPhysicalPoint((0, 0, 0)))
    assert all(s > 0 for s in pre.ct_hu.GetSize())
    assert np.prod(pre.ct_hu.GetSize()) * 8 < np.prod(ct.GetSize()) * np.prod(ct.GetSpacing()) * 1.01
    assert np.isfinite(lo_ct).all()


# ------------------------------------------------------------------------------------------ label mapping
PRIMARY_C, PRIMARY_R = np.array([8.0, -6.0, 4.0]), 11.0
NODE_C, NODE_R = np.array([-22.0, 10.0, -6.0]), 6.0


def _two_spheres(x, y, z):
    rp = np.sqrt((x - PRIMARY_C[0]) ** 2 + (y - PRIMARY_C[1]) ** 2 + (z - PRIMARY_C[2]) ** 2)
    rn = np.sqrt((x - NODE_C[0]) ** 2 + (y - NODE_C[1]) ** 2 + (z - NODE_C[2]) ** 2)
    return np.where(rp <= PRIMARY_R, 1, np.where(rn <= NODE_R, 2, 0))


def _label_pair():
    """The same two spheres on a fine, flipped CT-like grid (truth) and on a coarse 2.5 mm crop-like grid."""
    fine_dir = (-1, 0, 0, 0, -1, 0, 0, 0, 1)
    fine_size, fine_sp = (90, 80, 50), (0.9, 0.9, 1.3)
    fine = image_from_function(
        _two_spheres,
        fine_size,
        fine_sp,
        origin_for_direction((0, 0, 0), fine_size, fine_sp, fine_dir),
        fine_dir,
        dtype=np.uint8,
    )
    coarse_size, coarse_sp = (24, 24, 20), (2.5, 2.5, 2.5)
    coarse = image_from_function(
        _two_spheres,
        coarse_size,
        coarse_sp,
        origin_for_direction((1.1, -0.7, 0.4), coarse_size, coarse_sp, (1, 0, 0, 0, 1, 0, 0, 0, 1)),
        dtype=np.uint8,
    )
    return fine, coarse


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_linear_label_mapping_is_closer_to_the_fine_truth_than_nearest():
    fine, coarse = _label_pair()
    truth = sitk.GetArrayFromImage(fine)
    nearest = sitk.GetArrayFromImage(label_to_reference(coarse, fine, "nearest"))
    mapped = label_to_reference(coarse, fine, "linear")
    assert mapped.GetSize() == fine.GetSize() and mapped.GetDirection() == fine.GetDirection()
    assert mapped.GetOrigin() == fine.GetOrigin() and mapped.GetPixelID() == sitk.sitkUInt8
    linear = sitk.GetArrayFromImage(mapped)
    assert set(np.unique(linear)) == {0, 1, 2}
    for value in (1, 2):
        d_lin, d_nn = _dice(linear == value, truth == value), _dice(nearest == value, truth == value)
        assert d_lin > d_nn, (value, d_lin, d_nn)
        assert d_lin > 0.9, (value, d_lin)
    # the two labels keep one component each and their centroids stay within a fine voxel
    for value, centre in ((1, PRIMARY_C), (2, NODE_C)):
        assert ndimage.label(linear == value, structure=np.ones((3, 3, 3)))[1] == 1
        assert np.all(np.abs(centroid_mm(mapped, value) - centre) <= np.array(fine.GetSpacing()))


def test_linear_label_mapping_of_an_empty_or_outside_label_is_all_background():
    fine, coarse = _label_pair()
    empty = sitk.Image(coarse.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(coarse)
    assert sitk.GetArrayFromImage(label_to_reference(empty, fine, "linear")).max() == 0
    far = sitk.Image(coarse)
    far.SetOrigin((500.0, 500.0, 500.0))
    assert sitk.GetArrayFromImage(label_to_reference(far, fine, "linear")).max() == 0
    with pytest.raises(ValueError, match="label interpolation"):
        label_to_reference(coarse, fine, "cubic")
