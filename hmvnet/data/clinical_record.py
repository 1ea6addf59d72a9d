"""The clinical record of one patient (ehr.json / the Task 2 CSV), parsed defensively into typed fields.

Missing values arrive as an absent key, ``null``, NaN, ``""``, ``"NaN"``, ``"nan"``, ``"NA"``, ``"N/A"``;
all become ``None``. Unknown keys are ignored.
"""

from __future__ import annotations

import codecs
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


MAX_NUMBER_CHARS = 32
"""A clinical number longer than this (as text) is not a clinical value: treated as missing."""
MAX_EHR_BYTES = 1 << 20
"""An ehr.json larger than 1 MiB is not read (a real one is a few hundred bytes)."""


def _number(value: Any) -> float | None:
    if is_missing(value) or isinstance(value, bool):
        return None if not isinstance(value, bool) else float(value)
    if isinstance(value, int) and value.bit_length() > 128:
        return None
    if isinstance(value, str) and len(value.strip()) > MAX_NUMBER_CHARS:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
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
    except (RecursionError, ValueError) as exc:  # 100 000-deep nesting; an integer of > 4300 digits
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        log.warning("%s cannot be parsed (%s): clinical variables ignored", source, reason)
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
        if Path(path).stat().st_size > MAX_EHR_BYTES:
            log.warning("%s is larger than %d bytes: clinical variables ignored", path, MAX_EHR_BYTES)
            return ClinicalRecord()
        raw = Path(path).read_bytes()
    except OSError as exc:
        log.warning("cannot read %s (%s): clinical variables treated as missing", path, exc)
        return ClinicalRecord()
    return parse_ehr_text(decode_json_bytes(raw), str(path))


def decode_json_bytes(raw: bytes) -> str:
    """Decode JSON bytes by their BOM (UTF-8, UTF-16/32 LE/BE) or, without one, by the zero-byte pattern of the
    first four bytes (RFC 4627 section 3); undecodable bytes become U+FFFD."""
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if raw.startswith(bom):
            return raw[len(bom) :].decode(encoding, errors="replace")
    head = raw[:4]
    if len(head) == 4 and head[1:] == b"\0\0\0":
        encoding = "utf-32-le"
    elif len(head) == 4 and head[:3] == b"\0\0\0":
        encoding = "utf-32-be"
    elif len(head) >= 2 and head[1] == 0 and head[0] != 0:
        encoding = "utf-16-le"
    elif len(head) >= 2 and head[0] == 0 and head[1] != 0:
        encoding = "utf-16-be"
    else:
        encoding = "utf-8"
    return raw.decode(encoding, errors="replace")
