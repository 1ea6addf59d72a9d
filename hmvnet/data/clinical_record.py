"""The clinical record of one patient (ehr.json / the Task 2 CSV), parsed defensively into typed fields.

Missing values arrive as an absent key, ``null``, NaN, ``""``, ``"NaN"``, ``"nan"``, ``"NA"``, ``"N/A"``;
all become ``None``. Unknown keys are ignored.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MISSING_STRINGS = frozenset({"", "nan", "na", "n/a", "none", "null"})

# ehr.json / CSV column name -> ClinicalRecord field
EHR_KEYS: dict[str, str] = {
    "Age": "age",
    "Gender": "gender",
    "Tobacco Consumption": "tobacco",
    "Alcohol Consumption": "alcohol",
    "Performance Status": "performance_status",
    "Treatment": "treatment",
    "M-stage": "m_stage",
    "CenterID": "center_id",
    "HPV Status": "hpv_status",
}


@dataclass(frozen=True)
class ClinicalRecord:
    """Typed clinical variables; ``None`` means missing.

    age in years; gender 0 = female, 1 = male; tobacco, alcohol, hpv_status 0/1; performance_status ECOG 0-4;
    treatment 0 = radiotherapy alone, 1 = chemoradiotherapy; m_stage "M0", "M1" or "Mx"; center_id an integer.
    """

    age: float | None = None
    gender: int | None = None
    tobacco: int | None = None
    alcohol: int | None = None
    performance_status: int | None = None
    treatment: int | None = None
    m_stage: str | None = None
    center_id: int | None = None
    hpv_status: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING_STRINGS


def _number(value: Any) -> float | None:
    if is_missing(value) or isinstance(value, bool):
        return None if not isinstance(value, bool) else float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _integer(value: Any, allowed: range) -> int | None:
    number = _number(value)
    if number is None or number != round(number) or int(number) not in allowed:
        return None
    return int(number)


def _gender(value: Any) -> int | None:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"m", "male"}:
            return 1
        if text in {"f", "female"}:
            return 0
    return _integer(value, range(2))


def _m_stage(value: Any) -> str | None:
    if is_missing(value):
        return None
    text = str(value).strip().upper()
    if text in {"0", "M0"}:
        return "M0"
    if text in {"1", "M1"} or text.startswith("M1"):
        return "M1"
    if text in {"X", "MX"}:
        return "Mx"
    return None


def record_from_mapping(data: dict[str, Any]) -> ClinicalRecord:
    """Parse a mapping with the ehr.json / CSV keys; invalid values become ``None`` (logged), unknown keys ignored."""
    raw = {field_: data.get(key) for key, field_ in EHR_KEYS.items()}
    age = _number(raw["age"])
    if age is not None and not 0 < age < 120:
        age = None
    record = ClinicalRecord(
        age=age,
        gender=_gender(raw["gender"]),
        tobacco=_integer(raw["tobacco"], range(2)),
        alcohol=_integer(raw["alcohol"], range(2)),
        performance_status=_integer(raw["performance_status"], range(5)),
        treatment=_integer(raw["treatment"], range(2)),
        m_stage=_m_stage(raw["m_stage"]),
        center_id=_integer(raw["center_id"], range(10_000)),
        hpv_status=_integer(raw["hpv_status"], range(2)),
    )
    for key, field_ in EHR_KEYS.items():
        if not is_missing(raw[field_]) and getattr(record, field_) is None:
            log.warning("clinical value %r=%r is not a valid value: treated as missing", key, raw[field_])
    return record


def parse_ehr_text(text: str, source: str = "ehr.json") -> ClinicalRecord:
    """Parse ehr.json text; tolerates NaN literals and trailing commas; a broken file gives an all-missing record."""
    cleaned = re.sub(r",\s*([}\]])", r"\1", text)
    try:
        data = json.loads(cleaned)
    except json.JSONDecodeError as exc:
        log.warning("%s is not valid JSON (%s): clinical variables treated as missing", source, exc)
        return ClinicalRecord()
    if not isinstance(data, dict):
        log.warning(
            "%s holds a %s, expected a JSON object: clinical variables treated as missing",
            source,
            type(data).__name__,
        )
        return ClinicalRecord()
    return record_from_mapping(data)


def read_ehr(path: Path | None) -> ClinicalRecord:
    """Read ehr.json; an absent or unreadable file gives an all-missing record and a warning, never an error."""
    if path is None or not Path(path).is_file():
        log.warning("no ehr.json at %s: clinical variables treated as missing", path)
        return ClinicalRecord()
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        log.warning("cannot read %s (%s): clinical variables treated as missing", path, exc)
        return ClinicalRecord()
    return parse_ehr_text(text, str(path))
