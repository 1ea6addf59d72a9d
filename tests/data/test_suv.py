"""Body-weight SUV from PET headers: the QIBA rule, its fallbacks, and the generator's known factors."""

from __future__ import annotations

import math

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from hmvnet.data.cases import discover_cases, read_case
from hmvnet.data.suv import suv_factor

HALF_LIFE = 6586.2


def pet_header(**changes) -> Dataset:
    ds = Dataset()
    ds.Units, ds.DecayCorrection, ds.PatientWeight = "BQML", "START", 80.0
    ds.SeriesDate, ds.SeriesTime = "20240301", "100000"
    radio = Dataset()
    radio.RadionuclideTotalDose, radio.RadionuclideHalfLife = 300e6, HALF_LIFE
    radio.RadiopharmaceuticalStartTime = "090000"
    ds.RadiopharmaceuticalInformationSequence = Sequence([radio])
    for key, value in changes.items():
        setattr(radio if key.startswith("Radio") else ds, key, value)
    return ds


def test_bqml_start_is_weight_over_decayed_dose():
    result = suv_factor(pet_header())
    expected = 80_000.0 / (300e6 * 2.0 ** (-3600.0 / HALF_LIFE))
    assert result.source == "dicom-headers" and math.isclose(result.factor, expected, rel_tol=1e-12)


def test_admin_gml_and_philips_cnts():
    assert math.isclose(suv_factor(pet_header(DecayCorrection="ADMIN")).factor, 80_000.0 / 300e6)
    assert suv_factor(pet_header(Units="GML")).factor == 1.0
    assert suv_factor(pet_header(Units="GML")).source == "already-suv"
    cnts = pet_header(Units="CNTS")
    cnts.add_new((0x7053, 0x1000), "DS", "0.00042")
    assert suv_factor(cnts).factor == pytest.approx(0.00042)
    assert suv_factor(pet_header(Units="CNTS")).factor is None


@pytest.mark.parametrize(
    ("changes", "tag"),
    [
        ({"PatientWeight": 0}, "PatientWeight"),
        ({"RadionuclideTotalDose": 0}, "RadionuclideTotalDose"),
        ({"RadionuclideHalfLife": 0}, "RadionuclideHalfLife"),
        ({"RadiopharmaceuticalStartTime": "110000"}, "RadiopharmaceuticalStartTime"),  # after the series
        (
            {"RadiopharmaceuticalStartTime": "235000", "SeriesTime": "005000"},
            "crossing midnight",
        ),  # crossing midnight
        ({"Units": "PROPCNTS"}, "Units"),
        ({"DecayCorrection": "NONE"}, "DecayCorrection"),
    ],
)
def test_implausible_tags_fall_back_naming_the_tag(changes, tag):
    result = suv_factor(pet_header(**changes))
    assert result.factor is None and result.source == "estimated" and tag in result.reason


def test_generator_factors_recovered_within_half_a_percent(dicom_tree):
    root, truth = dicom_tree
    checked = 0
    for study in discover_cases(root / "export"):
        expected = truth[study.name]["suv_factor"]
        if truth[study.name]["kind"] in ("normal", "no-weight"):
            case = read_case(study)
            if expected is None:
                assert case.suv_factor is None and case.suv_source == "estimated"
            else:
                assert case.suv_source == "dicom-headers"
                assert abs(case.suv_factor / expected - 1) < 0.005
                checked += 1
    assert checked == 3
