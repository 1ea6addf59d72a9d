"""Clinical encoder of the survival branch (paper §3.2): z-scored continuous + one-hot categorical variables.

Input: :class:`hmvnet.data.clinical_record.ClinicalRecord` per patient. Output: a float32 matrix ``(n, d)`` with, in
this order (names in ``feature_names_``):

* ``age_z``: age in years, z-scored with the training mean and standard deviation (ddof 1) of the observed ages;
  a missing age is imputed with the training **median** before scaling.
* ``age_missing``: 1.0 where the age was missing (so the network can tell an imputed age from a real one).
* for each categorical variable (gender, tobacco, alcohol, performance_status, treatment, m_stage, hpv_status):
  one column per value seen in the training records (``gender=0``, ``gender=1``, ``m_stage=M0`` ...) in sorted
  order, plus ``<name>=unknown``, which is 1 for a missing value and for a value not seen in training.

``center_id`` is deliberately **not** an input: the HECKTOR test set comes from centres absent from training, so a
centre one-hot would only ever be "unknown" at test time, and a centre effect learned on training centres is a
site bias, not biology. Everything learned comes from the records passed to :meth:`ClinicalEncoder.fit`, which
must be the training fold only. The fitted state is saved as JSON (:meth:`to_json`), never pickled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import NotFittedError

from hmvnet.data.clinical_record import ClinicalRecord
from hmvnet.errors import InputError, WeightsError

__all__ = ["CATEGORICAL", "CONTINUOUS", "ClinicalEncoder"]

CONTINUOUS: tuple[str, ...] = ("age",)
CATEGORICAL: tuple[str, ...] = (
    "gender",
    "tobacco",
    "alcohol",
    "performance_status",
    "treatment",
    "m_stage",
    "hpv_status",
)
UNKNOWN = "unknown"
_FORMAT = "hmvnet.ClinicalEncoder/1"


def _category(value: Any) -> str | None:
    """Categorical value as its vocabulary key (``0`` -> ``"0"``, ``"M0"`` -> ``"M0"``); ``None`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


class ClinicalEncoder:
    """Encode clinical records as a numeric matrix with statistics learned on training records only.

    Follows the scikit-learn contract: settings in ``__init__``, learned attributes end in ``_``.

    Args:
        continuous: record fields z-scored (each also gets a ``<name>_missing`` indicator column).
        categorical: record fields one-hot encoded, each with an ``unknown`` column.

    Learned attributes: ``median_``, ``mean_``, ``std_`` (per continuous field), ``vocabulary_`` (per
    categorical field, the sorted values seen in training), ``feature_names_``.
    """

    def __init__(self, continuous: Sequence[str] = CONTINUOUS, categorical: Sequence[str] = CATEGORICAL):
        fields = set(ClinicalRecord.__dataclass_fields__)
        unknown = [name for name in (*continuous, *categorical) if name not in fields]
        if unknown:
            raise ValueError(f"ClinicalEncoder: {unknown} are not ClinicalRecord fields ({sorted(fields)})")
        self.continuous = tuple(continuous)
        self.categorical = tuple(categorical)

    # -------------------------------------------------------------------------------------------- fitting
    def fit(self, records: Sequence[ClinicalRecord]) -> ClinicalEncoder:
        """Learn medians, means, standard deviations and vocabularies from the training ``records``."""
        records = self._check(records)
        if not records:
            raise ValueError("ClinicalEncoder.fit needs at least one training record")
        self.median_: dict[str, float] = {}
        self.mean_: dict[str, float] = {}
        self.std_: dict[str, float] = {}
        for name in self.continuous:
            observed = np.array([v for r in records if (v := getattr(r, name)) is not None], dtype=np.float64)
            if observed.size == 0:
                # Nothing observed: the z-score column is constant 0 and only the missing flag carries information.
                self.median_[name], self.mean_[name], self.std_[name] = 0.0, 0.0, 1.0
                continue
            std = float(observed.std(ddof=1)) if observed.size > 1 else 0.0
            self.median_[name] = float(np.median(observed))
            self.mean_[name] = float(observed.mean())
            self.std_[name] = std if std > 0 else 1.0
        self.vocabulary_: dict[str, list[str]] = {}
        for name in self.categorical:
            seen = {c for r in records if (c := _category(getattr(r, name))) is not None}
            self.vocabulary_[name] = sorted(seen - {UNKNOWN})
        self._set_names()
        return self

    def _set_names(self) -> None:
        names: list[str] = []
        for name in self.continuous:
            names += [f"{name}_z", f"{name}_missing"]
        for name in self.categorical:
            names += [f"{name}={value}" for value in self.vocabulary_[name]] + [f"{name}={UNKNOWN}"]
        self.feature_names_ = names

    # -------------------------------------------------------------------------------------------- transform
    @property
    def n_features_(self) -> int:
        self._check_fitted()
        return len(self.feature_names_)

    def transform(self, records: Sequence[ClinicalRecord]) -> np.ndarray:
        """``n`` records -> ``(n, d)`` float32 matrix, columns as in ``feature_names_``; never NaN."""
        self._check_fitted()
        records = self._check(records)
        out = np.zeros((len(records), len(self.feature_names_)), dtype=np.float32)
        for row, record in enumerate(records):
            col = 0
            for name in self.continuous:
                value = getattr(record, name)
                missing = value is None or not math.isfinite(float(value))
                x = self.median_[name] if missing else float(value)
                out[row, col] = (x - self.mean_[name]) / self.std_[name]
                out[row, col + 1] = float(missing)
                col += 2
            for name in self.categorical:
                vocabulary = self.vocabulary_[name]
                key = _category(getattr(record, name))
                position = vocabulary.index(key) if key in vocabulary else len(vocabulary)
                out[row, col + position] = 1.0
                col += len(vocabulary) + 1
        return out

    def fit_transform(self, records: Sequence[ClinicalRecord]) -> np.ndarray:
        return self.fit(records).transform(records)

    # -------------------------------------------------------------------------------------------- persistence
    def to_json(self) -> str:
        """The fitted state as a JSON string (read back with :meth:`from_json`)."""
        self._check_fitted()
        return json.dumps(
            {
                "format": _FORMAT,
                "continuous": list(self.continuous),
                "categorical": list(self.categorical),
                "median": self.median_,
                "mean": self.mean_,
                "std": self.std_,
                "vocabulary": self.vocabulary_,
                "feature_names": self.feature_names_,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "clinical encoder JSON") -> ClinicalEncoder:
        """Rebuild a fitted encoder from :meth:`to_json` output; a broken state is a :class:`WeightsError`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WeightsError(f"{source} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise WeightsError(f"{source}: expected a JSON object with format {_FORMAT!r}")
        try:
            encoder = cls(data["continuous"], data["categorical"])
            encoder.median_ = {k: float(data["median"][k]) for k in encoder.continuous}
            encoder.mean_ = {k: float(data["mean"][k]) for k in encoder.continuous}
            encoder.std_ = {k: float(data["std"][k]) for k in encoder.continuous}
            encoder.vocabulary_ = {k: [str(v) for v in data["vocabulary"][k]] for k in encoder.categorical}
        except (KeyError, TypeError, ValueError, InputError) as exc:
            raise WeightsError(f"{source}: missing or invalid entry {exc}") from exc
        encoder._set_names()
        if encoder.feature_names_ != data.get("feature_names"):
            raise WeightsError(f"{source}: feature_names do not match the stored vocabularies")
        return encoder

    # -------------------------------------------------------------------------------------------- checks
    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise NotFittedError(
                "ClinicalEncoder is not fitted: call fit(training records) or from_json first"
            )

    @staticmethod
    def _check(records: Sequence[ClinicalRecord]) -> list[ClinicalRecord]:
        records = list(records)
        bad = [i for i, r in enumerate(records) if not isinstance(r, ClinicalRecord)]
        if bad:
            raise ValueError(
                f"ClinicalEncoder expects ClinicalRecord objects; item {bad[0]} is {type(records[bad[0]]).__name__}"
            )
        return records
