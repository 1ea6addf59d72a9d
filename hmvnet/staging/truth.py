"""The "true" T and N stage of a synthetic case: the 7th-edition rule on the drawn lesions' geometry plus
stated label noise, so a learned classifier has something honest (and imperfect) to learn.

Noise model (each draw from the given generator, in this order):

1. T4 for large primaries: a primary with greatest dimension > 40 mm is T4 with probability
   :data:`T4_PROBABILITY_LARGE` (invasion of neighbouring structures, which geometry does not show).
2. One stage off: T and N each independently move one stage up or down with probability :data:`ONE_OFF_RATE`
   (15 %; at the ends of the scale the only neighbour), as staging by clinicians from other information would.
3. T0: with probability :data:`T0_RATE` the T stage is "T0" (the real 2026 table has 3 of 782), so training
   code meets T0 rows.
"""

from __future__ import annotations

import numpy as np

from hmvnet.staging.geometry import StagingGeometry
from hmvnet.staging.rules import N_STAGES, T_STAGES, n_stage_rule, t_stage_rule

T4_PROBABILITY_LARGE = 0.30
ONE_OFF_RATE = 0.15
T0_RATE = 0.005
T_COLUMN = "T-stage"
N_COLUMN = "N-stage"
"""Column names of the 2026 training table; values "T0"-"T4" and "N0"-"N3"."""


def _one_off(stage: str, scale: tuple[str, ...], rng: np.random.Generator) -> str:
    index = scale.index(stage)
    if rng.uniform() >= ONE_OFF_RATE:
        return stage
    step = int(rng.choice([-1, 1]))
    if not 0 <= index + step < len(scale):
        step = -step
    return scale[index + step]


def synthetic_stages(geometry: StagingGeometry, rng: np.random.Generator) -> dict[str, str]:
    """``{"T-stage": "T0".."T4", "N-stage": "N0".."N3"}`` for a phantom's true label geometry (noise above)."""
    t = t_stage_rule(geometry)
    large = rng.uniform() < T4_PROBABILITY_LARGE
    if geometry.gtvp_present and geometry.gtvp_feret_mm > 40.0 and large:
        t = "T4"
    t = _one_off(t, T_STAGES, rng)
    n = _one_off(n_stage_rule(geometry), N_STAGES, rng)
    if rng.uniform() < T0_RATE:
        t = "T0"
    return {T_COLUMN: t, N_COLUMN: n}
