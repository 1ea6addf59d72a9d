"""The transparent staging rule: AJCC/UICC 7th edition, geometry-only approximation.

T (greatest dimension of the GTVp): T1 <= 20 mm, T2 > 20-40 mm, T3 > 40 mm. T4 means invasion of neighbouring
structures (and, for the larynx and hypopharynx, fixation or site extension), which geometry alone cannot read:
**the rule never says T4**. Without a GTVp in the mask the rule says T1 (the smallest stage: a primary the
segmentation missed is most likely a small one), never T0, which is not a 2026 output.

N (7th edition, N2a-c reported as N2): N0 no node; N3 any node > 60 mm; N1 a single ipsilateral node <= 30 mm;
N2 otherwise (a single ipsilateral node > 30-60 mm, several ipsilateral nodes, or any contralateral or bilateral
nodes, all <= 60 mm). Node sizes are 3-D Feret diameters (mm) of the GTVn connected components; ipsilateral means
on the primary's side of the body midline (see :mod:`hmvnet.staging.geometry`). Touching nodes segmented as one
component count as one node.
"""

from __future__ import annotations

from hmvnet.staging.geometry import StagingGeometry

T_STAGES: tuple[str, ...] = ("T1", "T2", "T3", "T4")
N_STAGES: tuple[str, ...] = ("N0", "N1", "N2", "N3")
T_LIMITS_MM = (20.0, 40.0)
N_SINGLE_MAX_MM = 30.0
N3_ABOVE_MM = 60.0


def t_stage_from_size(greatest_mm: float) -> str:
    """T1-T3 from the primary's greatest dimension (mm)."""
    if greatest_mm <= T_LIMITS_MM[0]:
        return "T1"
    if greatest_mm <= T_LIMITS_MM[1]:
        return "T2"
    return "T3"


def n_stage_from_nodes(sizes_mm: list[float], n_contralateral: int, bilateral: bool) -> str:
    """N0-N3 from the nodes' greatest dimensions (mm) and their laterality."""
    if not sizes_mm:
        return "N0"
    if max(sizes_mm) > N3_ABOVE_MM:
        return "N3"
    if len(sizes_mm) == 1 and n_contralateral == 0 and not bilateral and sizes_mm[0] <= N_SINGLE_MAX_MM:
        return "N1"
    return "N2"


def t_stage_rule(geometry: StagingGeometry) -> str:
    """T stage by the rule; T1 without a GTVp, never T4 (see the module docstring)."""
    if not geometry.gtvp_present:
        return "T1"
    return t_stage_from_size(geometry.gtvp_feret_mm)


def n_stage_rule(geometry: StagingGeometry) -> str:
    """N stage by the rule; N0 for an empty mask."""
    return n_stage_from_nodes(
        [n.feret_mm for n in geometry.nodes], geometry.n_contralateral, geometry.bilateral
    )
