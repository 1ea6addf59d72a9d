"""The segmentation chain, written once: preprocess -> sliding-window inference -> post-processing -> map back to
the CT grid. Used by the pipeline (``process.py``, ``hmvnet predict``, the service), by training-time validation
(:meth:`Segmenter.segment_array` on cached crops) and by the post-processing benchmark (the steps one by one).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from hmvnet.config import PostprocessConfig, SegmentationConfig, load_config
from hmvnet.data.cases import Case
from hmvnet.data.weights import load_state_dict
from hmvnet.errors import InputError, WeightsError
from hmvnet.geometry import array_to_image, label_to_reference
from hmvnet.segmentation.preprocessing import PreprocessedCase, preprocess


@dataclass
class SegmentationResult:
    """One case segmented: ``label`` on the original CT grid (uint8 :class:`~hmvnet.Label` ids), the preprocessed
    case and the label on its crop grid (``crop_label``, used by radiomics), and per-step timings in seconds."""

    label: sitk.Image
    preprocessed: PreprocessedCase
    crop_label: sitk.Image
    timings: dict[str, float] = field(default_factory=dict)


def select_models(
    config: SegmentationConfig, folder: Path, folds: Sequence[int] | None, tta: bool | None
) -> SegmentationConfig:
    """``config`` with only the weight files of ``folds`` and with ``mirror_tta`` set to ``tta`` (None: keep)."""
    if folds is not None:
        wanted = {f"fold{k}.safetensors" for k in folds}
        missing = sorted(wanted - set(config.weights))
        if missing:
            raise InputError(
                f"--folds {' '.join(map(str, folds))}: {folder}/config.json has no {', '.join(missing)} "
                f"(it lists {', '.join(sorted(config.weights))})"
            )
        config = dataclasses.replace(config, weights={k: v for k, v in config.weights.items() if k in wanted})
    if tta is not None:
        config = dataclasses.replace(config, inference=dataclasses.replace(config.inference, mirror_tta=tta))
    return config


class Segmenter:
    """HM-VNet fold ensemble with its configuration; load once, call per case."""

    def __init__(self, config: SegmentationConfig, models: Sequence[torch.nn.Module], device: torch.device):
        from hmvnet.segmentation.inference import SegmentationInferer
        from hmvnet.segmentation.network import required_divisor

        self.config = config
        self.inferer = SegmentationInferer(
            models, config.inference, device, size_multiple=required_divisor(config.model)
        )

    @classmethod
    def load(
        cls,
        folder: Path,
        device: str | None = None,
        folds: Sequence[int] | None = None,
        tta: bool | None = None,
    ) -> Segmenter:
        """Build the fold models named in ``folder/config.json`` and load their checksummed weights.

        ``folds`` keeps only ``fold<k>.safetensors`` of those folds (default: every listed file); ``tta``
        overrides ``inference.mirror_tta`` (default: as configured)."""
        from hmvnet.segmentation.inference import select_device
        from hmvnet.segmentation.network import build_model

        config: SegmentationConfig = load_config(SegmentationConfig, folder)
        if not config.weights:
            raise WeightsError(f"{folder}/config.json lists no weight files")
        config = select_models(config, folder, folds, tta)
        models = []
        for name, digest in sorted(config.weights.items()):
            model = build_model(config.model)
            try:
                model.load_state_dict(load_state_dict(folder / name, digest))
            except RuntimeError as exc:
                raise WeightsError(f"{folder / name} does not match the model in config.json: {exc}") from exc
            models.append(model.eval())
        return cls(config, models, select_device(device))

    # ------------------------------------------------------------------------------------------ the steps
    def preprocess(self, case: Case) -> PreprocessedCase:
        return preprocess(case.ct, case.pet, self.config.preprocess)

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """``(2, z, y, x)`` network input -> ``(3, z, y, x)`` class probabilities (fold ensemble, sliding window)."""
        return self.inferer(image)

    def postprocess(
        self,
        probs: np.ndarray,
        spacing_xyz: Sequence[float],
        config: PostprocessConfig | None = None,
    ) -> np.ndarray:
        """Class probabilities -> uint8 label array on the same grid (the configured chain, or ``config``)."""
        from hmvnet.segmentation.postprocessing import postprocess

        return postprocess(probs, tuple(spacing_xyz), config or self.config.postprocess).astype(np.uint8)

    def to_ct_grid(
        self, crop: np.ndarray, pre: PreprocessedCase, ct: sitk.Image, interpolation: str | None = None
    ):
        """The crop-grid label array as an image on the crop grid, and mapped onto the original CT grid."""
        crop_label = array_to_image(crop.astype(np.uint8), pre.ct_hu)
        mode = interpolation or self.config.postprocess.output_interpolation
        return crop_label, label_to_reference(crop_label, ct, mode)

    def segment_array(self, image: np.ndarray, spacing_xyz: Sequence[float]) -> np.ndarray:
        """Inference and post-processing of one preprocessed ``(2, z, y, x)`` array (training-time validation)."""
        return self.postprocess(self.probabilities(image), spacing_xyz)

    # ------------------------------------------------------------------------------------------ the chain
    def __call__(self, case: Case) -> SegmentationResult:
        timings = {}
        start = time.perf_counter()
        pre = self.preprocess(case)
        timings["preprocess_s"] = time.perf_counter() - start
        start = time.perf_counter()
        probs = self.probabilities(pre.image)
        timings["inference_s"] = time.perf_counter() - start
        start = time.perf_counter()
        crop = self.postprocess(probs, pre.ct_hu.GetSpacing())
        crop_label, label = self.to_ct_grid(crop, pre, case.ct)
        timings["postprocess_s"] = time.perf_counter() - start
        return SegmentationResult(label, pre, crop_label, timings)
