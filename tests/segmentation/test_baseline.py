"""Known answers of the trivial threshold baseline (hmvnet.segmentation.baseline)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from hmvnet import Label
from hmvnet.segmentation.baseline import segment, threshold_rule


def _phantom(scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    pet = np.full((60, 40, 40), 0.8)
    pet[50:58, 10:30, 10:30] = 8.0  # brain, superior
    pet[20:28, 15:25, 15:25] = 12.0  # primary (largest remaining blob)
    pet[10:13, 5:8, 30:33] = 6.0  # node
    pet[30:32, 30:32, 5:7] = 2.5  # below the threshold
    return pet * scale, np.full(pet.shape, 40.0)


def test_threshold_rule_brain_removed_largest_is_gtvp_rest_gtvn() -> None:
    pet, ct = _phantom()
    label = threshold_rule(pet, ct, (2.0, 2.0, 2.0))
    assert not label[50:58].any()
    assert (label[20:28, 15:25, 15:25] == Label.GTVP).all()
    assert (label[10:13, 5:8, 30:33] == Label.GTVN).all()
    assert int((label > 0).sum()) == 8 * 10 * 10 + 27


def test_bq_per_ml_pet_gives_the_same_label() -> None:
    pet, ct = _phantom()
    a = threshold_rule(pet, ct, (2.0, 2.0, 2.0))
    b = threshold_rule(*_phantom(5000.0), (2.0, 2.0, 2.0))
    assert np.array_equal(a, b)


def test_segment_returns_a_label_on_the_ct_grid_of_a_flipped_ct() -> None:
    pet, ct = _phantom()
    ct_img = sitk.GetImageFromArray(ct[::-1].copy())  # z flipped: superior at index 0
    ct_img.SetSpacing((2.0, 2.0, 2.0))
    ct_img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))
    ct_img.SetOrigin((0.0, 0.0, 118.0))
    pet_img = sitk.GetImageFromArray(pet)
    pet_img.SetSpacing((2.0, 2.0, 2.0))
    label = segment(ct_img, pet_img)
    arr = sitk.GetArrayFromImage(label)[::-1]
    assert label.GetSize() == ct_img.GetSize()
    assert (arr[20:28, 15:25, 15:25] == Label.GTVP).all() and not arr[50:58].any()
