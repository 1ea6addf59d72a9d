"""Every frozen, typed configuration of the package, saved as ``config.json`` beside the weights by training and
validated when it loads.

Inference reads it and never repeats a training constant. Sizes and spacings are in SimpleITK order ``(x, y, z)``
and in mm unless the name says voxels; ``roi_size`` and crop sizes are in voxels in array order ``(z, y, x)``.
Options are :class:`~enum.StrEnum` members (they compare equal to, and are saved as, their strings).

Loading (:func:`load_config`, :func:`from_dict`) validates with pydantic v2 in strict mode: unknown keys, wrong types
(``"threshold": "0.5"``, a float where an int is expected) and values outside the allowed options are a
:class:`~hmvnet.errors.ConfigError` naming the file, the key, the value and what was expected, raised before any
model is built or any case is read. Missing keys take their defaults.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from hmvnet import Label
from hmvnet.errors import ConfigError

CONFIG_FILE = "config.json"

_STRICT = ConfigDict(extra="forbid", strict=True)
"""pydantic settings of every configuration dataclass (``__pydantic_config__``)."""

T = TypeVar("T")


class ImageInterpolator(StrEnum):
    """Interpolator of intensity images (B-spline overshoots: negative PET, HU ringing)."""

    LINEAR = "linear"
    BSPLINE = "bspline"


class LabelInterpolation(StrEnum):
    """How a label goes back onto the CT grid (see :func:`hmvnet.geometry.label_to_reference`)."""

    NEAREST = "nearest"
    LINEAR = "linear"


class BlendMode(StrEnum):
    """MONAI sliding-window blending of overlapping windows."""

    GAUSSIAN = "gaussian"
    CONSTANT = "constant"


class PostprocessPreset(StrEnum):
    """The post-processing chains of :data:`hmvnet.segmentation.postprocessing.PRESETS`."""

    PAPER = "paper"
    LABEL_AWARE = "label_aware"
    PRIMARY_MASS = "primary_mass"


class Architecture(StrEnum):
    """Segmentation networks :func:`hmvnet.segmentation.network.build_model` can build."""

    HMVNET = "hmvnet"
    SWINUNETR = "swinunetr"


class MaskSource(StrEnum):
    """Masks a survival model was trained on."""

    PREDICTED = "predicted"
    GROUND_TRUTH = "ground_truth"


class FoldRule(StrEnum):
    """How fold models' risks are combined."""

    MEDIAN = "median"
    MEAN = "mean"


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
    image_interpolator: ImageInterpolator = ImageInterpolator.LINEAR
    """Interpolator for images: "linear" or "bspline" (B-spline overshoots: negative PET, HU ringing)."""
    head_search_fraction: float = 0.25
    """Fraction of the superior z-extent searched for the brain."""
    head_zscore_threshold: float = 1.0
    """PET z-score threshold for the brain search."""


@dataclass(frozen=True)
class ModelConfig:
    """The segmentation network: its architecture by name (as nnU-Net's plans name theirs) and its sizes
    (paper §2.3-2.6 for HM-VNet; MONAI's SwinUNETR reads in/out_channels, feature_size, depths, num_heads,
    window_size (its own, fixed 7), drop_path_rate and use_flash_attention)."""

    architecture: Architecture = Architecture.HMVNET
    """Which network :func:`hmvnet.segmentation.network.build_model` builds."""
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
    blend_mode: BlendMode = BlendMode.GAUSSIAN
    sw_batch_size: int = 1
    mirror_tta: bool = False
    amp: bool = True
    """Mixed precision, used only on CUDA."""


@dataclass(frozen=True)
class PostprocessConfig:
    """Post-processing chain (paper §2.5); see hmvnet.segmentation.postprocessing for the presets."""

    preset: PostprocessPreset = PostprocessPreset.LABEL_AWARE
    """"paper" (binary threshold, keep 3 largest) or "label_aware" (per-class probabilities)."""
    threshold: float = 0.7
    closing_radius_mm: float = 2.0
    min_volume_mm3: float = 50.0
    max_components: int = 3
    max_distance_mm: float = 150.0
    output_interpolation: LabelInterpolation = LabelInterpolation.NEAREST
    """How the final crop-grid label goes back onto the CT grid: "nearest" or "linear" (per-label linear shares,
    see hmvnet.geometry.label_to_reference)."""


@dataclass(frozen=True)
class SegmentationTrainConfig:
    """Training hyper-parameters (paper §4.2: AdamW, lr 1e-4, cosine, batch 2, 1000 epochs)."""

    epochs: int = 1000
    samples_per_epoch: int = 250
    """Patches per epoch (over all ranks)."""
    batch_size: int = 2
    lr: float = 1e-4
    weight_decay: float = 1e-5
    warmup_epochs: int = 0
    class_ratios: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Patch-centre sampling ratios for background, GTVp, GTVn."""
    val_every: int = 10
    checkpoint_every: int = 10
    seed: int = 0
    n_folds: int = 5
    num_workers: int = 0
    elastic_prob: float = 0.1
    zoom_prob: float = 0.2


@dataclass(frozen=True)
class SegmentationConfig:
    """Everything needed to reproduce segmentation inference from a weights folder."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    train: SegmentationTrainConfig = field(default_factory=SegmentationTrainConfig)
    """The training settings that produced the weights (recorded by ``hmvnet train-seg``; not read at inference)."""
    weights: dict[str, str] = field(default_factory=dict)
    """Weight file name (relative to the config) -> sha256 hex digest; one file per fold."""
    demo: bool = True
    """True for weights trained on synthetic phantoms (demo weights), never on patient data."""
    notes: str = ""
    """Free text (provenance); never restates a value configured above."""


RESNET18_WIDTHS = (64, 128, 256, 512)


@dataclass(frozen=True)
class FusionConfig:
    """Sizes of the survival fusion network; saved with its weights.

    The defaults are the paper configuration; :meth:`demo` is a narrow variant for CPU tests and demo runs.
    """

    crop_size: tuple[int, int, int] = (96, 96, 96)
    """Image crop around the lesions, voxels, array order (z, y, x)."""
    resnet_widths: tuple[int, int, int, int] = RESNET18_WIDTHS
    """Channels of the four ResNet-18 stages (MONAI ``block_inplanes``); (64, 128, 256, 512) is ResNet-18."""
    image_dim: int = 512
    """Length of f_img; a linear projection is added when it differs from ``resnet_widths[-1]``."""
    clinical_hidden: tuple[int, ...] = (64,)
    """Hidden widths of the clinical MLP (each layer Linear, ReLU, BatchNorm1d, Dropout)."""
    clinical_dim: int = 32
    """Length of f_clin."""
    radiomics_dim: int = 2048
    """Length of the radiomics vector."""
    fusion_hidden: tuple[int, ...] = (1024, 512)
    """Hidden widths E_t of the fusion MLP (Linear + ReLU each)."""
    fused_dim: int = 256
    """Length of f_fused (the features ICARE is fitted on)."""
    dropout: float = 0.3
    """Dropout of the clinical MLP."""
    fusion_dropout: float = 0.0
    """Dropout after each hidden fusion layer (0 = the paper's equation)."""
    n_bins: int = 10
    """Discrete-time bins of the DeepHit head, which has n_bins + 1 outputs."""
    projection_dim: int = 64
    """Output of the projection head used by the contrastive loss."""

    @classmethod
    def paper(cls) -> FusionConfig:
        """The paper's sizes: ResNet-18 (512) + clinical 32 + radiomics 2048 = 2592 -> 256."""
        return cls()

    @classmethod
    def demo(cls, radiomics_dim: int = 64, n_bins: int = 4) -> FusionConfig:
        """A narrow variant for CPU tests and demo weights (about 0.55 M parameters: the ResNet at 1/8 width)."""
        return cls(
            crop_size=(32, 32, 32),
            resnet_widths=(8, 16, 32, 64),
            image_dim=64,
            clinical_hidden=(16,),
            clinical_dim=8,
            radiomics_dim=radiomics_dim,
            fusion_hidden=(128,),
            fused_dim=32,
            dropout=0.1,
            n_bins=n_bins,
            projection_dim=16,
        )


@dataclass(frozen=True)
class RadiomicsConfig:
    """Settings of the radiomics stage (units in the field docs)."""

    ct_bin_width: float = 25.0
    """CT discretisation bin width in HU (pyradiomics default)."""
    pet_bin_width: float = 0.25
    """PET discretisation bin width on the suv_eq scale (see the module docstring)."""
    reference_body_suv: float = 1.0
    """Value the PET median over the body maps to (:func:`hmvnet.survival.masks.pet_to_suv_equivalent`)."""
    body_hu: float = -400.0
    """CT threshold (HU) of the body used for the PET median."""
    margin_voxels: int = 5
    """Extra voxels around the largest variant in the one-off crop (>= pyradiomics' padDistance, 5)."""
    workers: int = 2
    """Worker processes for the (variant, modality) extractions; 1 runs inline."""
    min_mask_voxels: int = 2
    """Variants with fewer voxels get NaN features."""
    gtvp_label: int = Label.GTVP
    gtvn_label: int = Label.GTVN
    min_component_mm3: float = 10.0
    """Components smaller than this (mm³) are not counted in count_gtvp / count_gtvn."""
    max_grey_levels: int = 256
    """Most bins of one (variant, modality) extraction: a wider range (pathological intensities) widens the bin
    to ``range / (max_grey_levels - 2)`` with a warning, which bounds GLCM/GLSZM memory (Ng² per angle)."""
    max_mask_voxels: int = 2_000_000
    """Variants with more voxels (2 l at 1 mm³; real lesions plus dilations stay under 0.5 l) get NaN features
    with a warning instead of minutes of GLRLM/GLSZM work."""

    def __post_init__(self) -> None:
        if not (self.ct_bin_width > 0 and self.pet_bin_width > 0 and self.reference_body_suv > 0):
            raise ValueError(
                "RadiomicsConfig: ct_bin_width, pet_bin_width and reference_body_suv must be > 0, got "
                f"{self.ct_bin_width}, {self.pet_bin_width}, {self.reference_body_suv}"
            )
        if self.workers < 1 or self.margin_voxels < 0 or self.min_mask_voxels < 1:
            raise ValueError(
                "RadiomicsConfig: expected workers >= 1, margin_voxels >= 0, min_mask_voxels >= 1, got "
                f"{self.workers}, {self.margin_voxels}, {self.min_mask_voxels}"
            )
        if self.max_grey_levels < 8 or self.max_mask_voxels < self.min_mask_voxels:
            raise ValueError(
                "RadiomicsConfig: expected max_grey_levels >= 8 and max_mask_voxels >= min_mask_voxels, got "
                f"{self.max_grey_levels}, {self.max_mask_voxels}"
            )


@dataclass(frozen=True)
class SurvivalTrainConfig:
    """Training of the fusion network (paper §4.2) and of the ICARE models (§3.5)."""

    rounds: int = 5
    epochs_per_round: int = 10
    """5 rounds of 10 epochs: ReduceLROnPlateau steps on the validation loss after each round."""
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    contrastive_weight: float = 0.1
    seed: int = 42
    n_folds: int = 5
    icare_estimators: int = 100
    icare_parameters_sets: tuple[dict[str, Any], ...] = (
        {"rho": 0.6, "cmin": 0.53},
        {"rho": 0.7, "cmin": 0.51},
        {"rho": 0.8, "cmin": 0.55},
        {"rho": 0.9, "cmin": 0.52},
        {"rho": 0.75, "cmin": 0.57},
    )
    """Hyper-parameter sets drawn per ICARE member (the 2022 winner's ranges: rho 0.57-0.87, cmin 0.51-0.59)."""


@dataclass(frozen=True)
class SurvivalConfig:
    """Everything the survival predictor needs besides the files it lists."""

    fusion: FusionConfig = field(default_factory=FusionConfig)
    radiomics: RadiomicsConfig = field(default_factory=RadiomicsConfig)
    train: SurvivalTrainConfig = field(default_factory=SurvivalTrainConfig)
    use_segmentation_features: bool = True
    """False: the "without segmentation" ablation (no radiomics, image crop at the crop-grid centre)."""
    masks: MaskSource = MaskSource.PREDICTED
    """Masks the model was trained on: "predicted" (by the segmentation weights) or "ground_truth"."""
    fold_rule: FoldRule = FoldRule.MEDIAN
    """How the fold models' risks combine into the case's risk (NaN folds ignored)."""
    weights: dict[str, str] = field(default_factory=dict)
    """File name -> sha256 of every fold file (``fold{k}_fusion.safetensors``, ``fold{k}_state.json``)."""
    demo: bool = True
    notes: str = ""
    """Free text (provenance); never restates a value configured above."""


CONFIG_CLASSES = (
    PreprocessConfig, ModelConfig, InferenceConfig, PostprocessConfig, SegmentationTrainConfig, SegmentationConfig,
    FusionConfig, RadiomicsConfig, SurvivalTrainConfig, SurvivalConfig,
)  # fmt: skip
for _cls in CONFIG_CLASSES:
    setattr(_cls, "__pydantic_config__", _STRICT)  # noqa: B010  (read by pydantic when it builds the schema)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass; tuples become lists, options their strings."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    return f"key {key!r} = {error['input']!r}: {error['msg']}"


def from_dict(cls: type[T], data: Any, source: str = "configuration") -> T:
    """Build the configuration dataclass ``cls`` from JSON-like ``data`` (lists for tuples, strings for options),
    strictly validated; ``source`` (a file name) starts the :class:`ConfigError` message."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    try:
        return TypeAdapter(cls).validate_json(json.dumps(data))
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())  # type: ignore[arg-type]
        raise ConfigError(f"{source}: invalid {cls.__name__}: {problems}") from None
    except ValueError as exc:  # a __post_init__ check
        raise ConfigError(f"{source}: invalid {cls.__name__}: {exc}") from None


def save_config(config: Any, folder: Path) -> Path:
    """Write ``config`` as ``folder/config.json`` (atomically)."""
    from hmvnet.data.writers import write_json

    return write_json(to_dict(config), Path(folder) / CONFIG_FILE, indent=2)


def read_config_file(cls: type[T], path: Path) -> T:
    """Read and validate a configuration JSON file; missing, unreadable or invalid -> :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    return from_dict(cls, data, source=str(path))


def load_config(cls: type[T], folder: Path) -> T:
    """Read ``folder/config.json`` into ``cls`` (see :func:`read_config_file`)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} in {folder}: expected the configuration saved by training")
    return read_config_file(cls, path)
