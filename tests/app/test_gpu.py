"""GPU checks (``-m gpu``, run by scripts/gpu_check.sh): a real CUDA out-of-memory error falls back to the CPU,
and the sample case gives the same outputs on the GPU (with mixed precision) as on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from hmvnet import Label
from hmvnet.config import InferenceConfig
from hmvnet.evaluation.metrics import dice
from hmvnet.segmentation.inference import SegmentationInferer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

ROOT = Path(__file__).resolve().parents[2]


class HungryOnGpu(nn.Module):
    """A pointwise model that, on CUDA only, first asks for more memory than the GPU has (a real OOM error)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            total = torch.cuda.get_device_properties(x.device).total_memory
            torch.empty(int(total), dtype=torch.uint8, device=x.device)  # raises torch.cuda.OutOfMemoryError
        return self.conv(x)


def test_real_out_of_memory_falls_back_to_cpu(caplog):
    torch.manual_seed(0)
    model = HungryOnGpu()
    image = np.random.default_rng(0).normal(size=(2, 40, 40, 40)).astype(np.float32)
    config = InferenceConfig(roi_size=(32, 32, 32), overlap=0.25, sw_batch_size=2)
    expected = SegmentationInferer([model], config, "cpu")(image)
    got = SegmentationInferer([model], config, "cuda")(image)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert any("out of memory" in r.getMessage() for r in caplog.records)
    assert next(model.parameters()).is_cuda  # the models went back to the GPU


def test_sample_case_agrees_on_cpu_and_gpu(tmp_path):
    from hmvnet.app.pipeline import Pipeline

    results = {}
    for device in ("cpu", "cuda"):
        pipeline = Pipeline.load(ROOT / "weights", device)  # the shipped config: amp on (used on CUDA only)
        assert pipeline.segmenter.config.inference.amp
        results[device] = pipeline.process_case(ROOT / "test" / "input", tmp_path / device, "both")
    labels = {d: sitk.GetArrayFromImage(sitk.ReadImage(r["segmentation"])) for d, r in results.items()}
    for label in (Label.GTVP, Label.GTVN):
        assert dice(labels["cuda"], labels["cpu"], label) >= 0.99
    assert abs(results["cuda"]["risk"] - results["cpu"]["risk"]) <= 1e-3
