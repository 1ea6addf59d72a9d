"""Sliding-window inference: pointwise models pass through unchanged, ensembles average, TTA, device choice."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from hmvnet.config import InferenceConfig
from hmvnet.errors import InputError, WeightsError
from hmvnet.segmentation import inference
from hmvnet.segmentation.inference import (
    Attempt,
    SegmentationInferer,
    count_windows,
    plan_attempts,
    predict_probabilities,
    run_with_fallback,
    select_device,
)

torch.set_num_threads(1)

ROI = (32, 32, 32)
CONFIG = InferenceConfig(roi_size=ROI, overlap=0.25, sw_batch_size=2)


def pointwise_model(weight: np.ndarray, bias: np.ndarray) -> nn.Conv3d:
    """A 1x1x1 convolution: logits ``(3,)`` = ``weight (3, 2) @ (ct, pet) + bias`` at every voxel."""
    conv = nn.Conv3d(2, 3, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(torch.as_tensor(weight, dtype=torch.float32).reshape(3, 2, 1, 1, 1))
        conv.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return conv


def expected_softmax(image: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    logits = np.einsum("kc,czyx->kzyx", weight.astype(np.float64), image.astype(np.float64))
    logits += bias[:, None, None, None]
    logits -= logits.max(axis=0, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=0, keepdims=True)


class ShapeRecorder(nn.Module):
    """Wraps a model and records the spatial size of every window it sees."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape[2:]))
        return self.model(x)


W1 = np.array([[1.0, -0.5], [-1.0, 2.0], [0.5, 0.5]])
B1 = np.array([0.1, -0.2, 0.3])
W2 = np.array([[-0.3, 1.0], [2.0, -1.0], [0.0, 0.7]])
B2 = np.array([0.0, 0.5, -0.5])


def random_image(shape, seed=0):
    return np.random.default_rng(seed).normal(size=(2, *shape)).astype(np.float32)


@pytest.mark.parametrize("shape", [(45, 50, 70), (20, 24, 16)], ids=["larger-than-roi", "smaller-than-roi"])
def test_pointwise_model_passes_through_unchanged(shape):
    image = random_image(shape)
    model = ShapeRecorder(pointwise_model(W1, B1))
    inferer = SegmentationInferer([model], CONFIG, "cpu")
    probs = inferer(image)
    assert probs.shape == (3, *shape)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, expected_softmax(image, W1, B1), atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    # every window is exactly the roi (the network needs sizes divisible by 32), padded when the image is smaller
    assert model.shapes and set(model.shapes) == {ROI}
    assert inferer.last_windows == (1 if max(shape) <= 32 else 2 * 2 * 3)


def test_ensemble_is_mean_of_softmax():
    image = random_image((40, 36, 33), seed=1)
    probs = SegmentationInferer([pointwise_model(W1, B1), pointwise_model(W2, B2)], CONFIG, "cpu")(image)
    expected = 0.5 * (expected_softmax(image, W1, B1) + expected_softmax(image, W2, B2))
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    # and it is not simply one of the two members
    assert np.abs(probs - expected_softmax(image, W1, B1)).max() > 0.05


def symmetric_conv(seed: int = 0) -> nn.Conv3d:
    """A 3x3x3 convolution whose kernels are mirror-symmetric along z, y and x: equivariant to flips."""
    conv = nn.Conv3d(2, 3, kernel_size=3, padding=1)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 2, 3, 3, 3, generator=g)
    for dim in (2, 3, 4):
        w = 0.5 * (w + torch.flip(w, (dim,)))
    with torch.no_grad():
        conv.weight.copy_(w)
    return conv


def test_mirror_tta_equals_plain_for_flip_equivariant_model():
    image = random_image((40, 34, 36), seed=2)
    model = symmetric_conv()
    plain = predict_probabilities([model], image, CONFIG, torch.device("cpu"))
    tta_config = InferenceConfig(roi_size=ROI, overlap=0.25, sw_batch_size=2, mirror_tta=True)
    tta = predict_probabilities([model], image, tta_config, torch.device("cpu"))
    np.testing.assert_allclose(tta, plain, atol=1e-5)


def test_mirror_tta_changes_a_non_equivariant_model():
    image = random_image((32, 32, 32), seed=3)
    conv = nn.Conv3d(2, 3, kernel_size=3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[1, :, 0, 1, 1] = 3.0  # the GTVp logit looks one voxel back along z only
    tta_config = InferenceConfig(roi_size=ROI, mirror_tta=True)
    plain = predict_probabilities([conv], image, InferenceConfig(roi_size=ROI), torch.device("cpu"))
    tta = predict_probabilities([conv], image, tta_config, torch.device("cpu"))
    assert np.abs(tta - plain).max() > 1e-2


def test_inferer_keeps_the_same_model_objects():
    model = pointwise_model(W1, B1).train()
    inferer = SegmentationInferer([model], CONFIG, "cpu")
    assert inferer.models[0] is model
    assert not model.training
    weight = model.weight
    inferer(random_image((8, 8, 8)))
    inferer(random_image((9, 8, 8)))
    assert inferer.models[0].weight is weight


def test_logs_windows_and_time(caplog):
    with caplog.at_level(logging.INFO, logger="hmvnet"):
        SegmentationInferer([pointwise_model(W1, B1)], CONFIG, "cpu")(random_image((40, 32, 32)))
    assert any("2 windows" in r.getMessage() and " s" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("shape", [(45, 50, 70), (20, 24, 16), (96, 33, 64)])
def test_count_windows_matches_monai(shape):
    inferer = SegmentationInferer([pointwise_model(W1, B1)], CONFIG, "cpu")
    inferer(random_image(shape))
    padded = [max(s, r) for s, r in zip(shape, ROI)]
    assert count_windows(padded, ROI, CONFIG.overlap) == inferer.last_windows


def test_progress_lines_count_windows_up_to_total(caplog, monkeypatch):
    monkeypatch.setattr(inference, "PROGRESS_EVERY_S", 0.0)
    with caplog.at_level(logging.INFO, logger="hmvnet"):
        SegmentationInferer([pointwise_model(W1, B1)], InferenceConfig(roi_size=ROI, sw_batch_size=1), "cpu")(
            random_image((45, 50, 70))
        )
    lines = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    # 12 windows one at a time: a line after each window but the last (the final summary line reports the total)
    assert [line.split()[2] for line in lines] == [f"{k}/12" for k in range(1, 12)]


def test_bad_inputs_are_reported():
    inferer = SegmentationInferer([pointwise_model(W1, B1)], CONFIG, "cpu")
    with pytest.raises(ValueError, match=r"\(2, z, y, x\)"):
        inferer(np.zeros((3, 8, 8, 8), np.float32))
    bad = random_image((8, 8, 8))
    bad[1, 2, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        inferer(bad)
    with pytest.raises(WeightsError, match="roi_size"):
        SegmentationInferer([pointwise_model(W1, B1)], InferenceConfig(roi_size=(96, 96, 80)), "cpu")
    with pytest.raises(WeightsError, match="roi_size"):
        SegmentationInferer([pointwise_model(W1, B1)], CONFIG, "cpu", size_multiple=(32, 64, 32))
    with pytest.raises(WeightsError, match="at least one"):
        SegmentationInferer([], CONFIG, "cpu")


def test_select_device(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device(None) == torch.device("cpu")
    assert select_device("auto") == torch.device("cpu")
    with pytest.raises(InputError, match="no CUDA"):
        select_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        select_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto").type == "cuda"


def test_fallback_ladder():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert plan_attempts(cpu, 10**9, None) == [Attempt(cpu, cpu)]
    roomy = plan_attempts(cuda, 10**9, 4 * 10**9)
    assert roomy == [Attempt(cuda, cuda), Attempt(cuda, cpu), Attempt(cpu, cpu)]
    tight = plan_attempts(cuda, 10**9, 15 * 10**8)
    assert tight == [Attempt(cuda, cpu), Attempt(cpu, cpu)]


def test_out_of_memory_falls_back_with_warnings(caplog):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    ladder = [Attempt(cuda, cuda), Attempt(cuda, cpu), Attempt(cpu, cpu)]
    tried = []

    def run(attempt):
        tried.append(attempt)
        if attempt.compute.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return torch.ones(1)

    with caplog.at_level(logging.WARNING, logger="hmvnet"):
        assert run_with_fallback(ladder, run).item() == 1.0
    assert tried == ladder
    assert sum("out of memory" in r.getMessage() for r in caplog.records) == 2

    def always_oom(attempt):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_with_fallback(ladder, always_oom)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_with_amp():
    image = random_image((70, 64, 40), seed=4)
    cpu = SegmentationInferer([pointwise_model(W1, B1)], CONFIG, "cpu")(image)
    gpu = SegmentationInferer([pointwise_model(W1, B1)], CONFIG, "cuda")(image)
    np.testing.assert_allclose(gpu, cpu, atol=2e-2)
