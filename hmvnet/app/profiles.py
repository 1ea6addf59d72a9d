"""THE table of output profiles: which files one run writes, and with which sign convention.

Used by ``process.py`` / ``hmvnet process`` (``--outputs`` or ``$HMVNET_OUTPUTS``), ``hmvnet predict`` and
``hmvnet serve``; README.md shows the same table.

| profile | segmentation | rfs.json | t-stage.json, n-stage.json |
|---|---|---|---|
| segmentation | images/tumor-lymph-node-segmentation/output.mha | - | - |
| survival | - (segmentation still runs internally) | risk (higher = earlier relapse) | - |
| both | images/tumor-lymph-node-segmentation/output.mha | risk | - |
| hecktor2026 | images/head-neck-tumor-segmentation/output.mha | -risk (higher = longer RFS) | yes |

The survival model predicts a risk, not a time: the 2026 ``rfs.json`` is ``-risk`` (the evaluator's convention,
higher = longer recurrence-free survival), not days.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hmvnet.errors import InputError

SEG_2025 = Path("images") / "tumor-lymph-node-segmentation" / "output.mha"
SEG_2026 = Path("images") / "head-neck-tumor-segmentation" / "output.mha"
RFS_JSON = Path("rfs.json")
T_STAGE_JSON = Path("t-stage.json")
N_STAGE_JSON = Path("n-stage.json")
RFS_SIGNS = {"risk": 1.0, "-risk": -1.0}


@dataclass(frozen=True)
class OutputProfile:
    """One row of the table: ``segmentation`` relative to the output folder (None: not written), ``rfs`` the
    sign convention of rfs.json ("risk", "-risk" or None: not written), ``staging`` whether T/N are written."""

    segmentation: Path | None
    rfs: str | None
    staging: bool
    description: str

    @property
    def needs_survival(self) -> bool:
        return self.rfs is not None

    def rfs_value(self, risk: float) -> float:
        """The number written to rfs.json for a risk (higher = earlier relapse)."""
        assert self.rfs is not None
        return RFS_SIGNS[self.rfs] * float(risk)


PROFILES: dict[str, OutputProfile] = {
    "segmentation": OutputProfile(SEG_2025, None, False, "HECKTOR 2025 Task 1 upload"),
    "survival": OutputProfile(
        None, "risk", False, "HECKTOR 2025 Task 2 upload (segmentation runs internally)"
    ),
    "both": OutputProfile(SEG_2025, "risk", False, "HECKTOR 2025 Task 1 and Task 2 outputs"),
    "hecktor2026": OutputProfile(SEG_2026, "-risk", True, "HECKTOR 2026: every output of one run"),
}


def get_profile(name: str) -> OutputProfile:
    """The profile called ``name``; an unknown name is an :class:`InputError` listing the choices."""
    if name not in PROFILES:
        raise InputError(f"unknown outputs profile {name!r}; expected one of {sorted(PROFILES)}")
    return PROFILES[name]
