"""The learned T / N classifier and the staging model used at inference.

:class:`StageClassifier` is a class-weighted multinomial logistic regression (scikit-learn) on the geometry
features of :mod:`hmvnet.staging.geometry`, the rule's stage (as an ordinal number) and the clinical record
(HPV status, treatment, centre when seen in training; a missing value is its own indicator, an unseen centre is
all zeros). Class weights are "balanced" so rare stages are predicted (the 2026 metric is balanced accuracy).
It is saved as JSON (standardiser, coefficients, classes): no pickles; inference is numpy only.

:class:`StagingModel` holds, per stage, which method ships ("rule" or "learned"): ``hmvnet train-staging``
picks the learned classifier only where it beat the rule out of fold. Without a ``staging/`` weights folder the
rule is used for both.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hmvnet.data.clinical_record import ClinicalRecord
from hmvnet.data.weights import sha256_file
from hmvnet.errors import WeightsError
from hmvnet.staging.geometry import FEATURE_NAMES, StagingGeometry
from hmvnet.staging.rules import N_STAGES, T_STAGES, n_stage_rule, t_stage_rule

log = logging.getLogger(__name__)

MODEL_FILE = "model.json"
METHODS = ("rule", "learned")


def rule_stages(geometry: StagingGeometry) -> dict[str, str]:
    return {"t": t_stage_rule(geometry), "n": n_stage_rule(geometry)}


@dataclass
class ClinicalLevels:
    """Which clinical indicator columns exist (centres seen in training)."""

    centres: list[int] = field(default_factory=list)

    def names(self) -> list[str]:
        return [
            "hpv=0", "hpv=1", "hpv=missing", "treatment=0", "treatment=1", "treatment=missing",
            *[f"centre={c}" for c in self.centres],
        ]  # fmt: skip

    def encode(self, record: ClinicalRecord) -> list[float]:
        hpv, treat = record.hpv_status, record.treatment
        return [
            float(hpv == 0), float(hpv == 1), float(hpv is None),
            float(treat == 0), float(treat == 1), float(treat is None),
            *[float(record.center_id == c) for c in self.centres],
        ]  # fmt: skip


def design_row(geometry: StagingGeometry, record: ClinicalRecord, levels: ClinicalLevels) -> np.ndarray:
    """One row of the design matrix: geometry features, rule T and N as 0-3, clinical indicators."""
    rule = rule_stages(geometry)
    values = [*geometry.features().values(), T_STAGES.index(rule["t"]), N_STAGES.index(rule["n"])]
    return np.asarray([*values, *levels.encode(record)], dtype=float)


def design_names(levels: ClinicalLevels) -> list[str]:
    return [*FEATURE_NAMES, "rule_t", "rule_n", *levels.names()]


class StageClassifier:
    """Class-weighted multinomial logistic regression with a JSON form (scikit-learn estimator contract).

    Args:
        classes: every stage it may predict, in order (e.g. T1-T4); classes absent from the training labels get
            a probability of 0.
        C: inverse L2 regularisation strength.
    """

    def __init__(self, classes: tuple[str, ...], C: float = 1.0):
        self.classes = tuple(classes)
        self.C = C

    def fit(self, X: np.ndarray, y: list[str]) -> StageClassifier:
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=float)
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.where(X.std(axis=0) > 1e-9, X.std(axis=0), 1.0)
        seen = sorted(set(y), key=self.classes.index)
        self.coef_ = np.zeros((len(self.classes), X.shape[1]))
        self.intercept_ = np.full(len(self.classes), -1e6)  # absent classes: never predicted
        if len(seen) == 1:
            self.intercept_[self.classes.index(seen[0])] = 0.0
            return self
        model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000)
        model.fit((X - self.mean_) / self.scale_, y)
        coef, intercept = model.coef_, model.intercept_
        if len(seen) == 2:  # sklearn's binary form: one row for the second class
            coef, intercept = (
                np.vstack([-coef / 2, coef / 2]),
                np.array([-intercept[0] / 2, intercept[0] / 2]),
            )
        for row, name in enumerate(model.classes_):
            self.coef_[self.classes.index(name)] = coef[row]
            self.intercept_[self.classes.index(name)] = intercept[row]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, len(classes)) probabilities."""
        z = ((np.atleast_2d(X) - self.mean_) / self.scale_) @ self.coef_.T + self.intercept_
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(X).argmax(axis=1)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes), "C": self.C, "mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(), "intercept": self.intercept_.tolist(),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageClassifier:
        model = cls(tuple(data["classes"]), float(data["C"]))
        model.mean_ = np.asarray(data["mean"], dtype=float)
        model.scale_ = np.asarray(data["scale"], dtype=float)
        model.coef_ = np.asarray(data["coef"], dtype=float)
        model.intercept_ = np.asarray(data["intercept"], dtype=float)
        return model


@dataclass
class StagingModel:
    """Per stage ("t", "n") the shipped method and, for "learned", its classifier."""

    methods: dict[str, str] = field(default_factory=lambda: {"t": "rule", "n": "rule"})
    classifiers: dict[str, StageClassifier] = field(default_factory=dict)
    levels: ClinicalLevels = field(default_factory=ClinicalLevels)

    def predict(self, geometry: StagingGeometry, record: ClinicalRecord | None = None) -> dict[str, str]:
        """``{"t": "T1".."T4", "n": "N0".."N3"}``; never T0 (the learned T classifier is trained without T0)."""
        out = rule_stages(geometry)
        row = None
        for stage in ("t", "n"):
            if self.methods.get(stage) == "learned":
                if row is None:
                    row = design_row(geometry, record or ClinicalRecord(), self.levels)
                out[stage] = self.classifiers[stage].predict(row)[0]
        return out

    def save(self, folder: Path, extra: dict[str, Any] | None = None) -> Path:
        from hmvnet.data.writers import write_json

        folder = Path(folder)
        model = {
            "levels": {"centres": self.levels.centres},
            "feature_names": design_names(self.levels),
            "classifiers": {k: v.to_dict() for k, v in self.classifiers.items()},
        }
        write_json(model, folder / MODEL_FILE)
        config = {
            "kind": "hmvnet-staging",
            "methods": self.methods,
            "files": {MODEL_FILE: sha256_file(folder / MODEL_FILE)},
            **(extra or {}),
        }
        return write_json(config, folder / "config.json")

    @classmethod
    def load(cls, folder: Path | None) -> StagingModel:
        """Load ``folder/config.json`` (+ model.json, sha256 checked); no folder or no config: the rule for both."""
        if folder is None or not (Path(folder) / "config.json").is_file():
            log.info("no staging weights at %s: T and N stages by the 7th-edition geometry rule", folder)
            return cls()
        folder = Path(folder)
        try:
            config = json.loads((folder / "config.json").read_text())
            methods = {k: str(config["methods"][k]) for k in ("t", "n")}
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise WeightsError(
                f"{folder}/config.json: expected a staging config with methods.t/.n ({exc})"
            ) from exc
        if any(m not in METHODS for m in methods.values()):
            raise WeightsError(f"{folder}/config.json: methods must be one of {METHODS}, got {methods}")
        if "learned" not in methods.values():
            return cls(methods)
        path = folder / MODEL_FILE
        expected = config.get("files", {}).get(MODEL_FILE)
        if not path.is_file() or sha256_file(path) != expected:
            raise WeightsError(f"{path}: missing or its sha256 differs from {folder}/config.json")
        model = json.loads(path.read_text())
        levels = ClinicalLevels([int(c) for c in model["levels"]["centres"]])
        classifiers = {k: StageClassifier.from_dict(v) for k, v in model["classifiers"].items()}
        return cls(methods, classifiers, levels)
