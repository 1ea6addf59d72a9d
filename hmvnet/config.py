"""One frozen, typed configuration, saved as ``config.json`` beside the weights by training.

Inference reads it and never repeats a training constant. Sizes and spacings are in SimpleITK order
``(x, y, z)`` and in mm unless the name says voxels; ``roi_size`` is in voxels in array order ``(z, y, x)``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmvnet.errors import WeightsError

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class PreprocessConfig:
    """Common-grid resampling, head localisation, crop and intensity normalisation (paper §2.2)."""

    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Isotropic working grid spacing (x, y, z) in mm."""
    crop_size_mm: tuple[float, float, float] = (200.0, 200.0, 310.0)
    """Box cropped around the head-and-neck centre (x, y, z) in mm, clipped at the image borders."""
    crop_centre_offset_mm: tuple[float, float, float] = (0.0, 0.0, -120.0)
    """Offset (x, y, z) from the brain centroid to the crop centre, in physical mm (z is superior-positive)."""
    ct_window_hu: tuple[float, float] = (-250.0, 250.0)
    """CT clipped to this HU window and scaled to [0, 1]."""
    image_interpolator: str = "linear"
    """Interpolator for images: "linear" or "bspline" (B-spline overshoots: negative PET, HU ringing)."""
    head_search_fraction: float = 0.25
    """Fraction of the superior z-extent searched for the brain."""
    head_zscore_threshold: float = 1.0
    """PET z-score threshold for the brain search."""


@dataclass(frozen=True)
class ModelConfig:
    """HM-VNet network sizes (paper §2.3-2.6)."""

    in_channels: int = 2
    """Input channels: 0 = CT, 1 = PET; each gets its own stem."""
    out_channels: int = 3
    """Classes: background, GTVp, GTVn."""
    stem_channels: int = 12
    """Channels of each modality stem; the fused tensor has 2 * stem_channels."""
    feature_size: int = 24
    """Swin embedding width; stage k has feature_size * 2**k channels."""
    depths: tuple[int, ...] = (2, 2, 2, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, int, int] = (7, 7, 7)
    patch_size: tuple[int, int, int] = (2, 2, 2)
    drop_path_rate: float = 0.0
    use_flash_attention: bool = True
    """MONAI's SDPA attention; the weights load either way."""


@dataclass(frozen=True)
class InferenceConfig:
    """Sliding-window inference settings."""

    roi_size: tuple[int, int, int] = (96, 96, 96)
    """Window in voxels, array order (z, y, x); also the training patch size."""
    overlap: float = 0.25
    blend_mode: str = "gaussian"
    sw_batch_size: int = 1
    mirror_tta: bool = False
    amp: bool = True
    """Mixed precision, used only on CUDA."""


@dataclass(frozen=True)
class PostprocessConfig:
    """Post-processing chain (paper §2.5); see hmvnet.segmentation.postprocessing for the presets."""

    preset: str = "label_aware"
    """"paper" (binary threshold, keep 3 largest) or "label_aware" (per-class probabilities)."""
    threshold: float = 0.7
    closing_radius_mm: float = 2.0
    min_volume_mm3: float = 50.0
    max_components: int = 3
    max_distance_mm: float = 150.0
    output_interpolation: str = "nearest"
    """How the final crop-grid label goes back onto the CT grid: "nearest" or "linear" (per-label linear shares,
    see hmvnet.geometry.label_to_reference)."""


@dataclass(frozen=True)
class SegmentationConfig:
    """Everything needed to reproduce segmentation inference from a weights folder."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    weights: dict[str, str] = field(default_factory=dict)
    """Weight file name (relative to the config) -> sha256 hex digest; one file per fold."""
    demo: bool = True
    """True for weights trained on synthetic phantoms (demo weights), never on patient data."""
    notes: str = ""


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build the dataclass ``cls`` from ``data``; unknown keys are an error, missing keys take defaults."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise WeightsError(f"{cls.__name__}: unknown configuration keys {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin in (typing.Union, types.UnionType) and value is not None:
        for arg in typing.get_args(hint):
            if arg is not type(None):
                return _coerce(arg, value)
    return value


def save_config(config: Any, folder: Path) -> Path:
    """Write ``config`` as ``folder/config.json`` (atomically)."""
    from hmvnet.data.writers import write_json

    return write_json(to_dict(config), Path(folder) / CONFIG_FILE, indent=2)


def load_config(cls: type, folder: Path) -> Any:
    """Read ``folder/config.json`` into ``cls``; a missing or broken file is a :class:`WeightsError`."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise WeightsError(f"no {CONFIG_FILE} in {folder}: expected the configuration saved by training")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path} is not valid JSON: {exc}") from exc
    return from_dict(cls, data)
