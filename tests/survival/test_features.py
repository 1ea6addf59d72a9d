"""Radiomics extraction: names, equality with a direct uncropped pyradiomics call, PET scale invariance, NaNs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from radiomics import featureextractor

from hmvnet.survival import features as F
from hmvnet.survival.masks import VARIANT_NAMES, build_mask_variants, pet_to_suv_equivalent

torch.set_num_threads(1)

SPACING = (2.0, 2.0, 2.0)
N_RADIOMIC = len(F.FEATURE_NAMES) - len(F.COUNT_NAMES)


def _image(array: np.ndarray, spacing=SPACING, origin=(-30.0, 12.0, 7.5)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _small_case(seed: int = 0):
    """CT (HU, float32), PET (SUV, float32) and label on a 36 x 44 x 44 grid at 2 mm: a textured GTVp sphere
    (r 10 mm), a GTVn sphere (r 5 mm) and a single-voxel GTVn (below the component minimum volume)."""
    rng = np.random.default_rng(seed)
    shape = (36, 44, 44)
    z, y, x = np.indices(shape)
    body = ((x - 22) / 20) ** 2 + ((y - 22) / 18) ** 2 <= 1
    ct = np.where(body, 40.0, -1000.0) + rng.normal(0, 20, shape)
    pet = np.where(body, 1.0, 0.03) * rng.gamma(10.0, 0.1, shape)
    label = np.zeros(shape, np.uint8)
    r1 = np.sqrt((x - 20) ** 2 + (y - 21) ** 2 + (z - 18) ** 2)
    label[r1 <= 5] = 1
    pet[r1 <= 5] += 6.0 + 3.0 * np.sin(x[r1 <= 5]) + rng.normal(0, 0.8, int((r1 <= 5).sum()))
    ct[r1 <= 5] += 30.0
    r2 = np.sqrt((x - 31) ** 2 + (y - 26) ** 2 + (z - 14) ** 2)
    label[r2 <= 2.5] = 2
    pet[r2 <= 2.5] += 3.0
    label[28, 15, 12] = 2
    return (
        _image(ct.astype(np.float32)),
        _image(pet.astype(np.float32)),
        _image(label),
    )


@pytest.fixture(scope="module")
def case():
    return _small_case()


@pytest.fixture(scope="module")
def fast_inline(case):
    ct, pet, label = case
    return F.extract_features(ct, pet, label, F.RadiomicsConfig(workers=1))


def test_feature_names_are_2048_stable_and_documented():
    names = F.FEATURE_NAMES
    assert len(names) == 2048 and len(set(names)) == 2048
    assert len(F.MASK_FEATURE_NAMES) == 93
    per_class = {c: len(F.CLASS_FEATURE_NAMES[c]) for c in F.FEATURE_CLASSES}
    assert per_class == {"firstorder": 18, "glcm": 24, "glrlm": 16, "glszm": 16, "gldm": 14, "ngtdm": 5}
    assert names[0] == "lesions_CT_firstorder_10Percentile"
    assert names[93] == "lesions_PET_firstorder_10Percentile"
    assert names[186].startswith("bbox_CT_")
    assert names[-2:] == ("count_gtvp", "count_gtvn")
    assert "dil4_PET_glcm_Contrast" in names
    for name in names[:-2]:
        variant, modality, cls, _feature = name.split("_")
        assert variant in VARIANT_NAMES and modality in F.MODALITIES and cls in F.FEATURE_CLASSES


def test_fast_extraction_equals_direct_uncropped_pyradiomics(case, fast_inline):
    ct, pet, label = case
    config = F.RadiomicsConfig()
    suv_eq = pet_to_suv_equivalent(sitk.GetArrayFromImage(pet), sitk.GetArrayFromImage(ct))
    pet_img = sitk.GetImageFromArray(suv_eq)
    pet_img.CopyInformation(ct)
    variants = build_mask_variants(sitk.GetArrayFromImage(label), suv_eq, ct.GetSpacing())
    expected = {}
    for modality, image, width in (("CT", ct, config.ct_bin_width), ("PET", pet_img, config.pet_bin_width)):
        # An extractor built here (not through hmvnet), on the full images, with pyradiomics' default checks.
        extractor = featureextractor.RadiomicsFeatureExtractor(binWidth=width)
        extractor.disableAllFeatures()
        for cls in F.FEATURE_CLASSES:
            extractor.enableFeatureClassByName(cls)
        for name, mask in variants.items():
            mask_img = sitk.GetImageFromArray(mask.astype(np.uint8))
            mask_img.CopyInformation(ct)
            result = extractor.execute(image, mask_img, label=1)
            for key, value in result.items():
                if key.startswith("original_"):
                    expected[f"{name}_{modality}_{key[len('original_') :]}"] = float(value)
    assert len(expected) == N_RADIOMIC
    got = fast_inline[list(expected)].to_numpy()
    want = np.array(list(expected.values()))
    assert np.isfinite(want).all()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)
    # The texture really depends on the discretisation: PET at width 0.25 is not a one-bin image.
    assert fast_inline["lesions_PET_firstorder_Entropy"] > 1.0


def test_series_layout_and_lesion_counts(fast_inline):
    assert isinstance(fast_inline, pd.Series)
    assert tuple(fast_inline.index) == F.FEATURE_NAMES
    assert fast_inline.dtype == np.float64
    assert fast_inline["count_gtvp"] == 1
    assert fast_inline["count_gtvn"] == 1  # the single 8 mm³ voxel is below min_component_mm3 = 10
    assert np.isfinite(fast_inline.to_numpy()).all()


def test_process_pool_gives_the_same_values(case, fast_inline):
    ct, pet, label = case
    pooled = F.extract_features(ct, pet, label, F.RadiomicsConfig(workers=2))
    pd.testing.assert_series_equal(pooled, fast_inline, check_exact=True)


def test_pet_in_bqml_gives_identical_features(case, fast_inline):
    ct, pet, label = case
    pet_bqml = sitk.GetImageFromArray(sitk.GetArrayFromImage(pet).astype(np.float64) * 5000.0)
    pet_bqml.CopyInformation(pet)
    scaled = F.extract_features(ct, pet_bqml, label, F.RadiomicsConfig(workers=1))
    np.testing.assert_allclose(scaled.to_numpy(), fast_inline.to_numpy(), rtol=1e-6, atol=0)


def test_empty_label_gives_nan_features_and_zero_counts(case):
    ct, pet, label = case
    empty = sitk.Image(label.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(label)
    out = F.extract_features(ct, pet, empty, F.RadiomicsConfig(workers=1))
    assert tuple(out.index) == F.FEATURE_NAMES
    assert int(out.isna().sum()) == N_RADIOMIC
    assert out["count_gtvp"] == 0 and out["count_gtvn"] == 0


def test_tiny_lesion_gives_nan_for_unextractable_variants_only(case):
    ct, pet, _ = case
    arr = np.zeros(sitk.GetArrayViewFromImage(ct).shape, np.uint8)
    arr[18, 20, 20] = 1  # one voxel: pyradiomics refuses the lesion, pet40 and the SUV-box masks
    label = sitk.GetImageFromArray(arr)
    label.CopyInformation(ct)
    out = F.extract_features(ct, pet, label, F.RadiomicsConfig(workers=1, min_component_mm3=0.0))
    for variant in ("lesions", "bbox", "pet40"):
        assert out.filter(like=f"{variant}_").isna().all(), variant
    for variant in ("dil2", "dil4", "dil16", "shell4", "shell8"):
        assert np.isfinite(out.filter(regex=f"^{variant}_").to_numpy()).all(), variant
    assert out["count_gtvp"] == 1 and out["count_gtvn"] == 0


def test_mask_is_extractable_follows_pyradiomics_rules():
    m = np.zeros((5, 5, 5), bool)
    assert not F.mask_is_extractable(m, 2)
    m[2, 2, 1:4] = True  # a 1-D line: pyradiomics needs 2 dimensions
    assert not F.mask_is_extractable(m, 2)
    m[2, 3, 2] = True
    assert F.mask_is_extractable(m, 2)
    assert not F.mask_is_extractable(m, 5)


def test_images_on_different_grids_are_rejected(case):
    ct, pet, label = case
    moved = sitk.Image(pet)
    moved.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="pet and ct are not on the same grid: origin"):
        F.extract_features(ct, moved, label, F.RadiomicsConfig(workers=1))
    coarse = sitk.Image(label)
    coarse.SetSpacing((2.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="label and ct are not on the same grid: spacing"):
        F.extract_features(ct, pet, coarse, F.RadiomicsConfig(workers=1))


@pytest.mark.parametrize(
    "bad", [{"pet_bin_width": 0.0}, {"ct_bin_width": -25.0}, {"workers": 0}, {"margin_voxels": -1}]
)
def test_config_rejects_impossible_settings(bad):
    with pytest.raises(ValueError, match="RadiomicsConfig"):
        F.RadiomicsConfig(**bad)


def test_bin_width_is_widened_to_bound_the_grey_levels():
    values = np.array([0.0, 1000.0], dtype=np.float32)
    assert F.bounded_bin_width(values, 25.0, 256) == 25.0  # 41 bins
    wide = F.bounded_bin_width(values, 0.25, 256)  # would be 4001 bins
    assert np.floor(1000.0 / wide) - np.floor(0.0) + 1 <= 256


def test_pathological_intensities_and_huge_masks_stay_bounded(case, caplog):
    ct, pet, label = case
    # PET spanning 0..1e6 suv_eq in the lesion: 4 million bins of 0.25 without the bound (GLCM MemoryError)
    pet_arr = sitk.GetArrayFromImage(pet)
    lesion = sitk.GetArrayViewFromImage(label) > 0
    pet_arr[lesion] = np.linspace(0, 1e6, int(lesion.sum()), dtype=np.float32)
    wild = _image(pet_arr)
    out = F.extract_features(
        ct, wild, label, F.RadiomicsConfig(workers=1, max_mask_voxels=1000, max_grey_levels=64)
    )
    assert "bin width widened" in caplog.text
    assert "max_mask_voxels=1000" in caplog.text
    big = [
        v for v in VARIANT_NAMES if out[[n for n in F.FEATURE_NAMES if n.startswith(f"{v}_")]].isna().all()
    ]
    assert big  # the large dilations are NaN, not minutes of work
    assert out.notna().sum() > len(F.COUNT_NAMES)
