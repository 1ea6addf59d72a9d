"""Sliding-window inference of the HM-VNet fold ensemble (paper §2.5 input side; style points 5 and 6).

Arrays follow the package convention: an input image is ``(2, z, y, x)`` float32 (channel 0 = CT, 1 = PET, already
normalised by :mod:`hmvnet.segmentation.preprocessing`), the output is class probabilities ``(3, z, y, x)`` float32 on the CPU
(channel 0 background, 1 GTVp, 2 GTVn; they sum to 1 per voxel).

Windows come from MONAI's :func:`~monai.inferers.sliding_window_inference` with Gaussian blending. Every window is
exactly ``InferenceConfig.roi_size`` voxels: MONAI pads an image smaller than the window (zeros, then crops the
output back), and a larger image is tiled with windows of that size. The roi must therefore be divisible by the
network's size multiple (32 for the Swin encoder). The ensemble and the optional mirroring are applied *inside*
each window (mean of the softmax over models x flips), so one stitching buffer serves the whole ensemble; because
blending is linear this equals blending each model separately and averaging.

Device policy: models are moved to the device once, when a :class:`SegmentationInferer` is built. On CUDA the
stitching buffer (output + MONAI's count map) lives on the GPU when it fits in half of the free GPU memory and on
the CPU otherwise; a CUDA out-of-memory error retries once with CPU stitching, then once entirely on the CPU (the
models go back to the GPU afterwards), each with a logged warning. Mixed precision (bfloat16 where supported, else
float16) is used only on CUDA and only when ``InferenceConfig.amp``; the softmax is always computed in float32.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from hmvnet.config import InferenceConfig
from hmvnet.errors import InputError, WeightsError

log = logging.getLogger("hmvnet")

SIZE_MULTIPLE = 32
"""Every spatial size the HM-VNet network sees must be divisible by this (five stride-2 stages)."""

MIRROR_FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,))
"""Mirroring TTA: identity plus one flip along each spatial axis (z, y, x of an ``(N, C, z, y, x)`` tensor).
Four passes rather than nnU-Net's eight axis combinations, to bound the cost under the challenge time limit."""

PROGRESS_EVERY_S = 10.0
"""Seconds between two sliding-window progress lines in the log (windows done / total, ETA)."""

STITCH_FRACTION_OF_FREE = 0.5
"""The stitching buffer goes on the GPU only if it needs at most this fraction of the free GPU memory."""


def select_device(requested: str | None = None) -> torch.device:
    """The torch device to run on: ``None``/``"auto"`` -> CUDA if available else CPU; ``"cpu"``; ``"cuda"`` or
    ``"cuda:N"`` -> that GPU, an :class:`InputError` when it does not exist."""
    name = "auto" if requested is None else str(requested).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(
                f"device {requested!r} requested but no CUDA GPU is available to torch "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}); use 'auto' or 'cpu'"
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return device
    raise InputError(f"unknown device {requested!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


@dataclass(frozen=True)
class Attempt:
    """One way of running the sliding window: where the network runs and where the output is stitched."""

    compute: torch.device
    stitch: torch.device


def plan_attempts(device: torch.device, output_bytes: int, free_bytes: int | None) -> list[Attempt]:
    """The fallback ladder for a run on ``device``.

    ``output_bytes`` is the size of the stitching buffer, ``free_bytes`` the free memory on the GPU (``None`` off
    CUDA). On CUDA: GPU stitching if the buffer fits in :data:`STITCH_FRACTION_OF_FREE` of the free memory, then
    CPU stitching, then the CPU entirely. Off CUDA: the CPU only.
    """
    cpu = torch.device("cpu")
    if device.type != "cuda":
        return [Attempt(device, device)]
    attempts = []
    if free_bytes is not None and output_bytes <= STITCH_FRACTION_OF_FREE * free_bytes:
        attempts.append(Attempt(device, device))
    attempts.append(Attempt(device, cpu))
    attempts.append(Attempt(cpu, cpu))
    return attempts


def run_with_fallback(attempts: Sequence[Attempt], run: Callable[[Attempt], torch.Tensor]) -> torch.Tensor:
    """``run(attempt)`` for the first attempt that does not raise a CUDA out-of-memory error (logged)."""
    for i, attempt in enumerate(attempts):
        try:
            return run(attempt)
        except torch.cuda.OutOfMemoryError:
            if i == len(attempts) - 1:
                raise
            nxt = attempts[i + 1]
            log.warning(
                "CUDA out of memory (network on %s, stitching on %s); retrying with network on %s, "
                "stitching on %s",
                attempt.compute,
                attempt.stitch,
                nxt.compute,
                nxt.stitch,
            )
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    raise ValueError("no inference attempt to run")  # only reachable with an empty ladder


def _free_cuda_bytes(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def _check_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 4 or array.shape[0] != 2 or min(array.shape[1:]) < 1:
        raise ValueError(
            f"image for inference has shape {array.shape}: expected (2, z, y, x) with channel 0 = CT, 1 = PET"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(
            "image for inference contains NaN or infinite values: expected a finite normalised image"
        )
    return array


def _autocast(device: torch.device, enabled: bool):
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def count_windows(spatial: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """Windows MONAI's sliding window evaluates over an image of ``spatial`` (z, y, x) voxels: per axis one window
    when the image fits in the roi, else ``ceil((size - roi) / interval) + 1`` with ``interval = int(roi * (1 -
    overlap))`` (at least 1), as in ``monai.inferers.utils._get_scan_interval``."""
    n = 1
    for size, r in zip(spatial, roi, strict=True):
        interval = max(int(r * (1 - overlap)), 1)
        n *= 1 if size <= r else math.ceil((size - r) / interval) + 1
    return n


class _Progress:
    """Logs ``windows done / total`` with an ETA at most every :data:`PROGRESS_EVERY_S` seconds (through the
    ``hmvnet`` logger, so ``logging_redirect_tqdm`` in batch mode keeps the progress bar intact)."""

    def __init__(self, total: int):
        self.total = total
        self.reset()

    def reset(self) -> None:
        self.done = 0
        self.start = time.perf_counter()
        self.last = self.start

    def step(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last < PROGRESS_EVERY_S or self.done >= self.total:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        log.info(
            "sliding window: %d/%d windows, %.0f s elapsed, ETA %.0f s",
            self.done,
            self.total,
            now - self.start,
            (self.total - self.done) / rate,
        )


def _ensemble_predictor(
    models: Sequence[nn.Module],
    config: InferenceConfig,
    counter: list[int],
    progress: _Progress | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Window batch ``(n, 2, z, y, x)`` -> mean softmax ``(n, 3, z, y, x)`` float32 over models and flips."""
    flips = MIRROR_FLIPS if config.mirror_tta else ((),)

    def predict(window: torch.Tensor) -> torch.Tensor:
        counter[0] += int(window.shape[0])
        if progress is not None:
            progress.step(int(window.shape[0]))
        total: torch.Tensor | None = None
        with _autocast(window.device, config.amp):
            for model, dims in itertools.product(models, flips):
                x = torch.flip(window, dims) if dims else window
                probs = torch.softmax(model(x).float(), dim=1)
                probs = torch.flip(probs, dims) if dims else probs
                total = probs if total is None else total + probs
        assert total is not None
        return total / float(len(models) * len(flips))

    return predict


def predict_probabilities(
    models: Sequence[nn.Module],
    image: np.ndarray,
    config: InferenceConfig,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Class probabilities ``(3, z, y, x)`` float32 on the CPU for an image ``(2, z, y, x)`` (CT, PET normalised).

    Sliding window over ``config.roi_size`` windows (Gaussian blending, ``config.overlap``, ``config.sw_batch_size``),
    mean softmax over ``models`` (and over mirrored copies when ``config.mirror_tta``), under
    ``torch.inference_mode()``. The models must already be on ``device`` and in eval mode
    (:class:`SegmentationInferer` does that once); they are never copied. Only the last-resort CPU fallback after
    CUDA out-of-memory errors moves them (in place) to the CPU and back.
    """
    probs, _windows = _predict(models, image, config, device)
    return probs


def _predict(
    models: Sequence[nn.Module], image: np.ndarray, config: InferenceConfig, device: torch.device | str | None
) -> tuple[np.ndarray, int]:
    array = _check_image(image)
    device = device if isinstance(device, torch.device) else select_device(device)
    spatial = array.shape[1:]
    padded = [max(s, r) for s, r in zip(spatial, config.roi_size)]
    # Output (3 channels) plus MONAI's count map, float32.
    stitch_bytes = 4 * (3 + 1) * int(np.prod(padded))
    attempts = plan_attempts(device, stitch_bytes, _free_cuda_bytes(device))
    counter = [0]
    progress = _Progress(count_windows(padded, config.roi_size, float(config.overlap)))
    predictor = _ensemble_predictor(models, config, counter, progress)

    def move_models(target: torch.device) -> None:
        for model in models:
            model.to(target)

    def run(attempt: Attempt) -> torch.Tensor:
        counter[0] = 0
        progress.reset()  # a fallback attempt starts over
        moved = attempt.compute != device
        if moved:
            move_models(attempt.compute)
        try:
            inputs = torch.from_numpy(array)[None].to(attempt.stitch)
            with torch.inference_mode():
                out = sliding_window_inference(
                    inputs,
                    roi_size=tuple(int(r) for r in config.roi_size),
                    sw_batch_size=int(config.sw_batch_size),
                    predictor=predictor,
                    overlap=float(config.overlap),
                    mode=config.blend_mode,
                    padding_mode="constant",
                    cval=0.0,
                    sw_device=attempt.compute,
                    device=attempt.stitch,
                )
            assert isinstance(out, torch.Tensor)
            return torch.as_tensor(out[0]).detach().to("cpu", torch.float32)
        finally:
            if moved:
                move_models(device)

    start = time.perf_counter()
    out = run_with_fallback(attempts, run)
    elapsed = time.perf_counter() - start
    log.info(
        "sliding window: %d windows of %s over %s (%d model(s), TTA %s) on %s in %.2f s",
        counter[0],
        tuple(config.roi_size),
        tuple(spatial),
        len(models),
        "on" if config.mirror_tta else "off",
        device,
        elapsed,
    )
    return np.ascontiguousarray(out.numpy(), dtype=np.float32), counter[0]


class SegmentationInferer:
    """A fold ensemble held on one device with its inference configuration; build once, call per case.

    ``models`` are ``nn.Module`` mapping ``(N, 2, z, y, x)`` to logits ``(N, 3, z, y, x)`` for spatial sizes
    divisible by ``size_multiple`` (an int, or per axis (z, y, x), e.g. ``hmvnet.segmentation.network.required_divisor``);
    they are put in eval mode and moved to ``device`` here, once, and never copied.
    Calling the inferer with an image ``(2, z, y, x)`` returns probabilities ``(3, z, y, x)`` float32 on the CPU.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        config: InferenceConfig,
        device: torch.device | str | None = None,
        size_multiple: int | Sequence[int] = SIZE_MULTIPLE,
    ):
        if len(models) == 0:
            raise WeightsError("no segmentation models given to the inferer: expected at least one fold")
        roi = tuple(int(r) for r in config.roi_size)
        multiple = (size_multiple,) * 3 if isinstance(size_multiple, int) else tuple(size_multiple)
        if len(roi) != 3 or any(r <= 0 or r % m for r, m in zip(roi, multiple)):
            raise WeightsError(
                f"inference.roi_size={list(config.roi_size)}: expected three positive sizes (z, y, x) divisible "
                f"by {multiple}, the network's size multiple (z, y, x)"
            )
        if not 0.0 <= config.overlap < 1.0:
            raise WeightsError(f"inference.overlap={config.overlap}: expected a value in [0, 1)")
        if config.sw_batch_size < 1:
            raise WeightsError(f"inference.sw_batch_size={config.sw_batch_size}: expected at least 1")
        self.config = config
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.models = [model.eval().to(self.device) for model in models]
        self.last_windows = 0
        """Windows evaluated by the last call (one per window, whatever the ensemble size and TTA)."""
        self.last_seconds = 0.0
        """Wall time of the last call, in seconds."""

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Probabilities ``(3, z, y, x)`` float32 on the CPU for an image ``(2, z, y, x)``."""
        start = time.perf_counter()
        probs, self.last_windows = _predict(self.models, image, self.config, self.device)
        self.last_seconds = time.perf_counter() - start
        return probs
