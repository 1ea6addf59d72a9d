"""Body-weight SUV from PET DICOM headers (the vendor-neutral QIBA rule).

``SUV = C * factor`` with ``C`` the stored PET value after rescale (Bq/ml) and::

    factor = PatientWeight [kg] * 1000 [g/kg] / (RadionuclideTotalDose [Bq] * 2 ** (-dt / RadionuclideHalfLife [s]))

where ``dt`` (s) runs from the injection (RadiopharmaceuticalStartDateTime, else SeriesDate + RadiopharmaceuticalStartTime)
to the reference time of the decay correction: SeriesDate/SeriesTime for DecayCorrection START (QIBA: the series
time, unless it is after the earliest AcquisitionTime, then the earliest acquisition), and the injection itself for
ADMIN (``dt = 0``). Units GML are already SUV (factor 1). Units CNTS use a vendor SUV scale factor when the header
carries one (Philips private (7053,1000)). Anything else, or a missing / implausible tag, gives ``None`` and a
reason naming the tag: the caller then falls back to the body-median "SUV-equivalent" scale of
:func:`hmvnet.survival.masks.pet_to_suv_equivalent` (``suv_source = "estimated"``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SUV_SOURCES = ("dicom-headers", "already-suv", "estimated")
PHILIPS_SUV_FACTOR = (0x7053, 0x1000)
MAX_UPTAKE_HOURS = 12.0
"""An injection-to-reference interval outside (0, 12] h is implausible (wrong date, crossing midnight unnoticed)."""


@dataclass(frozen=True)
class SuvResult:
    """``factor`` (SUV per stored unit, None when unknown), its ``source`` (one of :data:`SUV_SOURCES`) and why."""

    factor: float | None
    source: str
    reason: str = ""


def _datetime(date: Any, time: Any) -> dt.datetime | None:
    if not date or not time:
        return None
    text = str(time).split(".")[0].ljust(6, "0")
    try:
        return dt.datetime.strptime(str(date)[:8] + text[:6], "%Y%m%d%H%M%S") + dt.timedelta(
            seconds=float("0." + str(time).split(".")[1]) if "." in str(time) else 0.0
        )
    except ValueError:
        return None


def _parse_dt(value: Any) -> dt.datetime | None:
    text = str(value or "").split("+")[0].split("-")[0]
    if len(text) < 14:
        return None
    return _datetime(text[:8], text[8:])


def _fail(reason: str) -> SuvResult:
    return SuvResult(None, "estimated", reason)


def _reference_time(ds: Any, acquisitions: Sequence[dt.datetime]) -> dt.datetime | None:
    series = _datetime(getattr(ds, "SeriesDate", None), getattr(ds, "SeriesTime", None))
    if series is None:
        return min(acquisitions) if acquisitions else None
    if acquisitions and min(acquisitions) < series:
        return min(acquisitions)  # QIBA: series time was reset after the scan (e.g. a re-reconstruction)
    return series


def suv_factor(ds: Any, acquisitions: Sequence[dt.datetime] = ()) -> SuvResult:
    """The body-weight SUV factor of a PET series from one of its headers (``pydicom.Dataset``).

    Args:
        ds: a PET slice header (pixel data not needed).
        acquisitions: AcquisitionDate/Time of every slice, when known (QIBA reference-time rule).
    """
    units = str(getattr(ds, "Units", "")).upper()
    if units == "GML":
        return SuvResult(1.0, "already-suv", "Units GML")
    if units == "CNTS":
        element = ds.get(PHILIPS_SUV_FACTOR)
        if element is not None and float(element.value) > 0:
            return SuvResult(
                float(element.value), "dicom-headers", "Units CNTS, Philips SUV scale factor (7053,1000)"
            )
        return _fail("Units CNTS without a vendor SUV scale factor (7053,1000)")
    if units != "BQML":
        return _fail(f"Units {units or 'missing'} (expected BQML, GML or CNTS)")
    decay = str(getattr(ds, "DecayCorrection", "")).upper()
    if decay not in ("START", "ADMIN"):
        return _fail(f"DecayCorrection {decay or 'missing'} (expected START or ADMIN)")
    weight = float(getattr(ds, "PatientWeight", 0) or 0)
    if not 1.0 <= weight <= 400.0:
        return _fail(f"PatientWeight {weight:g} kg (expected 1..400)")
    info = getattr(ds, "RadiopharmaceuticalInformationSequence", None)
    if not info:
        return _fail("RadiopharmaceuticalInformationSequence missing")
    radio = info[0]
    dose = float(getattr(radio, "RadionuclideTotalDose", 0) or 0)
    half_life = float(getattr(radio, "RadionuclideHalfLife", 0) or 0)
    if dose <= 0:
        return _fail(f"RadionuclideTotalDose {dose:g} Bq (expected > 0)")
    if half_life <= 0:
        return _fail(f"RadionuclideHalfLife {half_life:g} s (expected > 0)")
    if decay == "ADMIN":
        return SuvResult(weight * 1000.0 / dose, "dicom-headers", "BQML, decay-corrected to ADMIN")
    injection = _parse_dt(getattr(radio, "RadiopharmaceuticalStartDateTime", None))
    if injection is None:
        injection = _datetime(
            getattr(ds, "SeriesDate", None), getattr(radio, "RadiopharmaceuticalStartTime", None)
        )
    if injection is None:
        return _fail("RadiopharmaceuticalStartDateTime / RadiopharmaceuticalStartTime missing")
    reference = _reference_time(ds, acquisitions)
    if reference is None:
        return _fail("SeriesDate/SeriesTime and AcquisitionTime missing")
    seconds = (reference - injection).total_seconds()
    if not 0 < seconds <= MAX_UPTAKE_HOURS * 3600:
        return _fail(
            f"injection (RadiopharmaceuticalStartTime) {injection:%H:%M:%S} is {seconds / 3600:.2f} h before the "
            "SeriesTime (expected 0..12 h; injection after acquisition or crossing midnight?)"
        )
    decayed = dose * math.pow(2.0, -seconds / half_life)
    return SuvResult(
        weight * 1000.0 / decayed, "dicom-headers", f"BQML, START, {seconds / 60:.1f} min uptake"
    )
