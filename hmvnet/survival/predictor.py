"""The RFS model at inference (paper §3): per case, radiomics of the segmented lesions, a CT/PET crop centred on
them and the clinical record go through each fold's fusion network; each fold's bagged ICARE model turns the
256-d fused features into a risk, and the case's risk combines the folds by the configuration's ``fold_rule`` (the median for the shipped weights;
higher = earlier relapse).

Everything is loaded from ``weights/survival/``: ``config.json`` (:class:`SurvivalConfig`, with the sha256 of every
file) and, per fold, ``fold{k}_fusion.safetensors`` plus ``fold{k}_state.json`` (clinical encoder, radiomics
standardiser, DeepHit time grid and the bagged ICARE model as JSON). No pickles.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk
import torch

from hmvnet.config import FoldRule, SurvivalConfig, load_config
from hmvnet.data.cases import Case
from hmvnet.data.clinical_record import ClinicalRecord
from hmvnet.data.weights import load_state_dict, sha256_file
from hmvnet.errors import WeightsError
from hmvnet.survival.clinical_encoder import ClinicalEncoder
from hmvnet.survival.features import FEATURE_NAMES, extract_features, make_executor
from hmvnet.survival.fusion import FeatureStandardiser, FusionNet
from hmvnet.survival.icare import BaggedIcareSurvival

if TYPE_CHECKING:
    from hmvnet.segmentation.segmenter import SegmentationResult

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ inputs
def lesion_centre(label: np.ndarray) -> tuple[int, int, int]:
    """Voxel centre ``(z, y, x)`` of the lesions' bounding box, or of the array when there is no lesion."""
    idx = np.nonzero(label > 0)
    if idx[0].size == 0:
        return tuple(s // 2 for s in label.shape)  # type: ignore[return-value]
    return tuple(int((i.min() + i.max()) // 2) for i in idx)  # type: ignore[return-value]


def crop_around(image: np.ndarray, centre: tuple[int, int, int], size: tuple[int, int, int]) -> np.ndarray:
    """A ``(C, *size)`` crop of ``image`` ``(C, z, y, x)`` centred at ``centre``, padded with each channel's
    minimum where it leaves the image."""
    channels = image.shape[0]
    out = np.empty((channels, *size), dtype=np.float32)
    out[:] = image.reshape(channels, -1).min(axis=1)[:, None, None, None]
    src, dst = [], []
    for c, s, n in zip(centre, size, image.shape[1:], strict=True):
        start = c - s // 2
        lo, hi = max(start, 0), min(start + s, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[(slice(None), *dst)] = image[(slice(None), *src)]
    return out


@dataclass
class SurvivalInputs:
    """One patient's survival inputs: image crop ``(2, z, y, x)``, radiomics ``(2048,)`` (NaN allowed), record."""

    image: np.ndarray
    radiomics: np.ndarray
    clinical: ClinicalRecord


def survival_inputs(
    image: np.ndarray,
    ct_hu: sitk.Image,
    pet: sitk.Image,
    crop_label: sitk.Image,
    clinical: ClinicalRecord,
    config: SurvivalConfig,
    executor: Any = None,
    suv_factor: float | None = None,
) -> SurvivalInputs:
    """Build the inputs from a preprocessed case (normalised ``image`` ``(2, z, y, x)`` and the crop-grid CT, PET
    and lesion label; ``suv_factor``: SUV per PET unit when known, see :func:`extract_features`). Without segmentation features, radiomics is empty and the crop is centred on the grid."""
    label = sitk.GetArrayViewFromImage(crop_label)
    if config.use_segmentation_features:
        centre = lesion_centre(label)
        try:
            feats = extract_features(ct_hu, pet, crop_label, config.radiomics, executor, suv_factor)
            radiomics = feats.to_numpy(dtype=np.float64)
        except ValueError as exc:  # e.g. a PET with no uptake in the body: impute every feature
            log.warning("radiomics not computable (%s): features imputed with training means", exc)
            radiomics = np.full(len(FEATURE_NAMES), np.nan)
    else:
        centre = tuple(s // 2 for s in label.shape)
        radiomics = np.zeros(0)
    crop = crop_around(image, centre, tuple(config.fusion.crop_size))  # type: ignore[arg-type]
    return SurvivalInputs(crop, radiomics, clinical)


def combine_folds(risks: np.ndarray, rule: FoldRule) -> float:
    """The case's risk from its fold models' risks by ``rule`` (median or mean), NaN folds ignored; 0.0 (the
    standardised population mean) when no fold gave a finite risk."""
    finite = risks[np.isfinite(risks)]
    if finite.size == 0:
        return 0.0
    return float(np.median(finite) if rule == FoldRule.MEDIAN else np.mean(finite))


# ------------------------------------------------------------------------------------------ fold model
class FoldModel:
    """One fold: clinical encoder, radiomics standardiser, fusion network and bagged ICARE."""

    def __init__(self, encoder: ClinicalEncoder, standardiser: FeatureStandardiser, net: FusionNet,
                 icare: BaggedIcareSurvival, time_grid: np.ndarray):  # fmt: skip
        self.encoder = encoder
        self.standardiser = standardiser
        self.net = net.eval()
        self.icare = icare
        self.time_grid = time_grid

    def tensors(self, inputs: list[SurvivalInputs]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.stack([i.image for i in inputs]).astype(np.float32))
        clinical = torch.from_numpy(self.encoder.transform([i.clinical for i in inputs]))
        if self.net.config.radiomics_dim:
            radiomics = torch.from_numpy(self.standardiser.transform(np.stack([i.radiomics for i in inputs])))
        else:
            radiomics = torch.zeros((len(inputs), 0))
        return image, clinical, radiomics

    @torch.inference_mode()
    def embed(self, inputs: list[SurvivalInputs]) -> np.ndarray:
        self.net.eval()
        return self.net.embed(*self.tensors(inputs)).numpy().astype(np.float64)

    def risk(self, inputs: list[SurvivalInputs]) -> np.ndarray:
        return self.icare.predict(self.embed(inputs))

    def state_json(self) -> dict[str, Any]:
        return {
            "clinical_encoder": json.loads(self.encoder.to_json()),
            "radiomics_standardiser": json.loads(self.standardiser.to_json()),
            "time_grid": [float(t) for t in self.time_grid],
            "icare": self.icare.to_json(),
        }


def load_fold(folder: Path, k: int, config: SurvivalConfig) -> FoldModel:
    state_name, net_name = f"fold{k}_state.json", f"fold{k}_fusion.safetensors"
    for name in (state_name, net_name):
        if name not in config.weights:
            raise WeightsError(f"{folder}/config.json does not list {name}")
    path = folder / state_name
    if not path.is_file():
        raise WeightsError(f"survival fold file {path} is missing")
    if sha256_file(path) != config.weights[state_name]:
        raise WeightsError(f"checksum mismatch for {path}: the file does not belong to this configuration")
    state = json.loads(path.read_text())
    encoder = ClinicalEncoder.from_json(json.dumps(state["clinical_encoder"]), str(path))
    standardiser = FeatureStandardiser.from_json(json.dumps(state["radiomics_standardiser"]), str(path))
    net = FusionNet(config.fusion, encoder.n_features_)
    try:
        net.load_state_dict(load_state_dict(folder / net_name, config.weights[net_name]))
    except RuntimeError as exc:
        raise WeightsError(
            f"{folder / net_name} does not match the fusion network in config.json: {exc}"
        ) from exc
    icare = BaggedIcareSurvival.from_json(state["icare"])
    return FoldModel(encoder, standardiser, net, icare, np.asarray(state["time_grid"]))


class SurvivalPredictor:
    """All folds, loaded once; ``predict_risk(case, segmentation)`` per case."""

    def __init__(self, config: SurvivalConfig, folds: list[FoldModel]):
        self.config = config
        self.folds = folds
        self._executor: Any = None

    @classmethod
    def load(cls, folder: Path) -> SurvivalPredictor:
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise WeightsError(
                f"survival weights missing: expected {folder}/config.json and its fold files "
                "(train them with `hmvnet train-survival`, or use --outputs segmentation)"
            )
        config: SurvivalConfig = load_config(SurvivalConfig, folder)
        n_folds = len([n for n in config.weights if n.endswith("_state.json")])
        if n_folds == 0:
            raise WeightsError(f"{folder}/config.json lists no fold files")
        if config.use_segmentation_features and config.fusion.radiomics_dim != len(FEATURE_NAMES):
            raise WeightsError(
                f"{folder}/config.json: fusion.radiomics_dim={config.fusion.radiomics_dim}, expected "
                f"{len(FEATURE_NAMES)} radiomics features"
            )
        torch.manual_seed(0)
        return cls(config, [load_fold(folder, k, config) for k in range(n_folds)])

    def inputs_for(self, case: Case, segmentation: SegmentationResult) -> SurvivalInputs:
        pre = segmentation.preprocessed
        if self._executor is None and self.config.radiomics.workers > 1:
            self._executor = make_executor(self.config.radiomics.workers)
        return survival_inputs(pre.image, pre.ct_hu, pre.pet, segmentation.crop_label, case.clinical,
                               self.config, self._executor, getattr(case, "suv_factor", None))  # fmt: skip

    def risk_from_inputs(self, inputs: SurvivalInputs) -> float:
        risks = np.array([fold.risk([inputs])[0] for fold in self.folds], dtype=np.float64)
        return combine_folds(risks, self.config.fold_rule)

    def predict_risk(self, case: Case, segmentation: SegmentationResult) -> float:
        """The risk (higher = earlier relapse) of a case (:class:`hmvnet.data.cases.Case`) and its
        :class:`hmvnet.segmentation.segmenter.SegmentationResult`; always finite."""
        return self.risk_from_inputs(self.inputs_for(case, segmentation))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None
