"""The survival deep-fusion network (paper §3.2, §3.4) and the radiomics standardiser.

Layout, for a batch of ``N`` patients (sizes of the paper configuration, :meth:`FusionConfig.paper`)::

    image (N, 2, z, y, x), ch 0 = CT, 1 = PET, a crop centred on the lesions
        -> 3D ResNet-18 (MONAI, classification head removed, global average pool) -> f_img (N, 512)
    clinical (N, n_clinical) from hmvnet.survival.clinical_encoder.ClinicalEncoder
        -> MLP: [Linear, ReLU, BatchNorm1d, Dropout] per layer -> f_clin (N, 32)
    radiomics (N, 2048), standardised with FeatureStandardiser (training statistics, NaN -> 0)
    concat [f_img, f_clin, radiomics] (N, 2592)
        -> [Linear, ReLU] x len(fusion_hidden) -> Linear -> f_fused (N, 256)   (linear output, paper eq. 7)
    heads (training only):
        DeepHit: Linear(256, n_bins + 1) -> logits; risk = expected cumulative incidence (higher = earlier relapse)
        projection: Linear, ReLU, Linear -> (N, projection_dim) for the survival contrastive loss

``f_fused`` is what the bagged ICARE model is fitted on (:meth:`FusionNet.embed`). The network accepts any crop
size (the ResNet ends in adaptive pooling); ``crop_size`` is the size the training and inference crops use.
Batch normalisation needs at least 2 patients per training batch.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from monai.networks.nets import ResNet, resnet18
from numpy.typing import ArrayLike
from sklearn.exceptions import NotFittedError
from torch import nn

from hmvnet.config import RESNET18_WIDTHS, FusionConfig
from hmvnet.errors import WeightsError
from hmvnet.survival.losses import risk_from_logits

__all__ = ["FeatureStandardiser", "FusionNet"]


def _image_encoder(config: FusionConfig) -> nn.Module:
    """``(N, 2, z, y, x) -> (N, image_dim)``: MONAI 3D ResNet-18 (or a narrower one) without its classifier."""
    common: dict[str, Any] = {"spatial_dims": 3, "n_input_channels": 2, "feed_forward": False}
    if tuple(config.resnet_widths) == RESNET18_WIDTHS:
        backbone: nn.Module = resnet18(**common)
    else:
        backbone = ResNet(
            block="basic", layers=[2, 2, 2, 2], block_inplanes=list(config.resnet_widths), **common
        )
    if config.image_dim == config.resnet_widths[-1]:
        return backbone
    return nn.Sequential(backbone, nn.Linear(config.resnet_widths[-1], config.image_dim))


class FusionNet(nn.Module):
    """Imaging + clinical + radiomics fusion network (paper §3.2-3.4) with DeepHit and projection heads.

    Args:
        config: the sizes.
        n_clinical: length of the encoded clinical vector (``ClinicalEncoder.n_features_``).
    """

    def __init__(self, config: FusionConfig, n_clinical: int):
        super().__init__()
        if n_clinical < 1:
            raise ValueError(f"n_clinical must be >= 1, got {n_clinical}")
        self.config = config
        self.n_clinical = n_clinical
        self.image_encoder = _image_encoder(config)

        layers: list[nn.Module] = []
        width = n_clinical
        for out in (*config.clinical_hidden, config.clinical_dim):
            layers += [nn.Linear(width, out), nn.ReLU(), nn.BatchNorm1d(out), nn.Dropout(config.dropout)]
            width = out
        self.clinical_mlp = nn.Sequential(*layers)

        layers = []
        width = config.image_dim + config.clinical_dim + config.radiomics_dim
        for out in config.fusion_hidden:
            layers += [nn.Linear(width, out), nn.ReLU()]
            if config.fusion_dropout > 0:
                layers.append(nn.Dropout(config.fusion_dropout))
            width = out
        layers.append(nn.Linear(width, config.fused_dim))
        self.fusion_mlp = nn.Sequential(*layers)

        self.deephit_head = nn.Linear(config.fused_dim, config.n_bins + 1)
        self.projection_head = nn.Sequential(
            nn.Linear(config.fused_dim, config.fused_dim),
            nn.ReLU(),
            nn.Linear(config.fused_dim, config.projection_dim),
        )

    def _check(self, image: torch.Tensor, clinical: torch.Tensor, radiomics: torch.Tensor) -> None:
        n = image.shape[0] if image.ndim else -1
        if image.ndim != 5 or image.shape[1] != 2:
            raise ValueError(
                f"image must be (N, 2, z, y, x) with channel 0 = CT, 1 = PET; got {tuple(image.shape)}"
            )
        if clinical.shape != (n, self.n_clinical):
            raise ValueError(f"clinical must be ({n}, {self.n_clinical}); got {tuple(clinical.shape)}")
        if radiomics.shape != (n, self.config.radiomics_dim):
            raise ValueError(
                f"radiomics must be ({n}, {self.config.radiomics_dim}); got {tuple(radiomics.shape)}"
            )

    def embed(self, image: torch.Tensor, clinical: torch.Tensor, radiomics: torch.Tensor) -> torch.Tensor:
        """The fused representation f_fused ``(N, fused_dim)`` (256 in the paper).

        Args:
            image: ``(N, 2, z, y, x)`` float, channel 0 = CT, 1 = PET, normalised as in preprocessing.
            clinical: ``(N, n_clinical)`` from :class:`hmvnet.survival.clinical_encoder.ClinicalEncoder`.
            radiomics: ``(N, radiomics_dim)`` standardised by :class:`FeatureStandardiser` (no NaN).
        """
        self._check(image, clinical, radiomics)
        f_img = self.image_encoder(image)
        f_clin = self.clinical_mlp(clinical)
        return self.fusion_mlp(torch.cat([f_img, f_clin, radiomics], dim=1))

    def forward(
        self, image: torch.Tensor, clinical: torch.Tensor, radiomics: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Inputs as in :meth:`embed`. Returns ``fused`` ``(N, fused_dim)``, ``deephit_logits``
        ``(N, n_bins + 1)``, ``risk`` ``(N,)`` (expected cumulative incidence, higher = earlier relapse) and
        ``projection`` ``(N, projection_dim)`` (input of the contrastive loss)."""
        fused = self.embed(image, clinical, radiomics)
        logits = self.deephit_head(fused)
        return {
            "fused": fused,
            "deephit_logits": logits,
            "risk": risk_from_logits(logits),
            "projection": self.projection_head(fused),
        }


class FeatureStandardiser:
    """Z-score features with training statistics; NaN/inf (e.g. radiomics of an empty mask) become 0 after
    scaling, i.e. the training mean.

    Args:
        clip: after scaling, values are clipped to ``[-clip, clip]`` (outliers from unseen centres), ``None`` to
            keep them.

    Learned (``fit`` on training rows only): ``mean_``, ``std_`` ``(p,)`` float64 (nan-aware, ddof 1; a zero, NaN
    or all-missing column gets mean 0 / std 1), ``n_features_in_``.
    """

    _FORMAT = "hmvnet.FeatureStandardiser/1"

    def __init__(self, clip: float | None = 10.0):
        self.clip = clip

    def fit(self, features: ArrayLike) -> FeatureStandardiser:
        """``features`` ``(n, p)`` training matrix, NaN allowed."""
        x = self._matrix(features)
        finite = np.isfinite(x)
        count = finite.sum(axis=0)
        filled = np.where(finite, x, 0.0)
        mean = np.divide(filled.sum(axis=0), count, out=np.zeros(x.shape[1]), where=count > 0)
        squares = np.where(finite, (x - mean) ** 2, 0.0).sum(axis=0)
        var = np.divide(squares, count - 1, out=np.zeros(x.shape[1]), where=count > 1)
        std = np.sqrt(var)
        self.mean_ = mean
        self.std_ = np.where(std > 0, std, 1.0)
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, features: ArrayLike) -> np.ndarray:
        """``(n, p)`` -> ``(n, p)`` float32, finite."""
        if not hasattr(self, "mean_"):
            raise NotFittedError(
                "FeatureStandardiser is not fitted: call fit(training features) or from_json first"
            )
        x = self._matrix(features)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features per row, got {x.shape[1]}")
        z = (x - self.mean_) / self.std_
        z = np.where(np.isfinite(z), z, 0.0)
        if self.clip is not None:
            z = np.clip(z, -self.clip, self.clip)
        return z.astype(np.float32)

    def fit_transform(self, features: ArrayLike) -> np.ndarray:
        return self.fit(features).transform(features)

    def to_json(self) -> str:
        if not hasattr(self, "mean_"):
            raise NotFittedError("FeatureStandardiser is not fitted")
        return json.dumps(
            {
                "format": self._FORMAT,
                "clip": self.clip,
                "mean": self.mean_.tolist(),
                "std": self.std_.tolist(),
            }
        )

    @classmethod
    def from_json(cls, text: str, source: str = "feature standardiser JSON") -> FeatureStandardiser:
        try:
            data = json.loads(text)
            if data.get("format") != cls._FORMAT:
                raise WeightsError(f"{source}: expected format {cls._FORMAT!r}, got {data.get('format')!r}")
            out = cls(clip=data["clip"])
            out.mean_ = np.asarray(data["mean"], dtype=np.float64)
            out.std_ = np.asarray(data["std"], dtype=np.float64)
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"{source}: not a saved FeatureStandardiser ({exc})") from exc
        if out.mean_.shape != out.std_.shape or out.mean_.ndim != 1 or not np.all(out.std_ > 0):
            raise WeightsError(f"{source}: 'mean' and 'std' must be equal-length lists with std > 0")
        out.n_features_in_ = out.mean_.size
        return out

    @staticmethod
    def _matrix(features: ArrayLike) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be a 2-D (patients, features) matrix, got shape {x.shape}")
        return x
