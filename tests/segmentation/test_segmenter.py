"""Segmenter.load options: fold selection (-f/--folds) and test-time augmentation (--disable-tta)."""

from __future__ import annotations

import pytest

from hmvnet.config import SegmentationConfig
from hmvnet.errors import InputError
from hmvnet.segmentation.segmenter import Segmenter, select_models


def test_select_models_keeps_the_named_folds_and_sets_tta(tmp_path):
    config = SegmentationConfig(
        weights={"fold0.safetensors": "a", "fold1.safetensors": "b", "fold2.safetensors": "c"}
    )
    chosen = select_models(config, tmp_path, [0, 2], tta=False)
    assert list(chosen.weights) == ["fold0.safetensors", "fold2.safetensors"]
    assert chosen.inference.mirror_tta is False
    assert select_models(config, tmp_path, None, tta=True).inference.mirror_tta is True
    assert select_models(config, tmp_path, None, None) == config
    with pytest.raises(InputError, match=r"no fold3.safetensors .*lists fold0"):
        select_models(config, tmp_path, [3], None)


def test_segmenter_load_with_folds_and_tta(tiny_weights):
    segmenter = Segmenter.load(tiny_weights / "segmentation", "cpu", folds=[0], tta=True)
    assert list(segmenter.config.weights) == ["fold0.safetensors"] and segmenter.config.inference.mirror_tta
    with pytest.raises(InputError):
        Segmenter.load(tiny_weights / "segmentation", "cpu", folds=[4])
