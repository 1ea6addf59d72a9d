"""What every synthetic-cohort generator shares: the case record, the Task-2 CSV columns and the grid sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from hmvnet.synthetic.phantom import Grid

TRUTH_NAME = "synth_truth.csv"
CSV_COLUMNS = (
    "PatientID",
    "Age",
    "Gender",
    "Tobacco Consumption",
    "Alcohol Consumption",
    "Performance Status",
    "Treatment",
    "M-stage",
    "CenterID",
    "HPV Status",
    "RFS",
    "Relapse",
    "T-stage",
    "N-stage",
)
CLINICAL_KEYS = CSV_COLUMNS[1:10]

SIZES = ("full", "small")


@dataclass
class SynthCase:
    """One phantom patient: images with geometry, the clinical row (None = missing) and the ground truth."""

    pid: str
    ct: sitk.Image  # int16 HU, CT grid
    pet: sitk.Image  # float32, SUV or Bq/ml (truth["pet_units"]), PET grid
    label: sitk.Image  # uint8 0/1/2 on the CT grid
    clinical: dict[str, Any]  # CSV keys -> value or None (missing)
    truth: dict[str, Any] = field(default_factory=dict)


def case_seed(seed: int, index: int) -> int:
    """The RNG seed of case ``index`` in the cohort of ``seed`` (independent of cohort size and workers)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def grid_box(grid: Grid) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Physical (lo, hi) corners of the voxel centres of ``grid``."""
    (x, y, z) = grid.axes()
    lo = (float(min(x[0], x[-1])), float(min(y[0], y[-1])), float(min(z[0], z[-1])))
    hi = (float(max(x[0], x[-1])), float(max(y[0], y[-1])), float(max(z[0], z[-1])))
    return lo, hi
