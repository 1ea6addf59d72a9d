"""v2 clinical values, missingness by centre, T/N stage and a prognosis-like recurrence-free-survival model.

Hazard (higher ``true_risk`` = earlier relapse): HPV status, T stage, N stage and the total tumour volume dominate,
uptake and node count matter less (:data:`HAZARD_V2`). An unobserved frailty ``N(0, FRAILTY_SD)`` is added to the
log-hazard before the event time is drawn, so a perfect model of ``true_risk`` reaches a C-index of about 0.72
rather than ~0.9 (measured in ``docs/synth_realism.md``). T/N stage here is a volume/count approximation of
AJCC 8 (documented in :func:`stage`), not a radiologist's staging.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hmvnet.synthetic.common import CLINICAL_KEYS

# centre -> probability that a value is missing (tobacco, alcohol, performance status, HPV, treatment, M-stage);
# age, gender and CenterID are never missing (HECKTOR 2022 clinical tables)
MISSING_BY_CENTRE: dict[str, tuple[float, ...]] = {
    "MDA": (0.35, 0.40, 0.25, 0.08, 0.02, 0.05),
    "CHUP": (0.90, 0.90, 0.90, 0.55, 0.05, 0.10),
    "CHUS": (0.70, 0.80, 0.70, 0.40, 0.05, 0.10),
    "CHUM": (0.70, 0.80, 0.70, 0.45, 0.05, 0.10),
    "HGJ": (0.60, 0.70, 0.60, 0.50, 0.05, 0.10),
    "CHUV": (0.90, 0.95, 0.90, 0.91, 0.05, 0.10),
    "HMR": (0.90, 0.90, 0.90, 0.60, 0.05, 0.10),
    "USZ": (0.50, 0.60, 0.50, 0.30, 0.05, 0.10),
    "CHB": (0.80, 0.80, 0.80, 0.60, 0.05, 0.10),
}
_MISSABLE = (
    "Tobacco Consumption",
    "Alcohol Consumption",
    "Performance Status",
    "HPV Status",
    "Treatment",
    "M-stage",
)

HAZARD_V2: dict[str, float] = {
    "hpv_negative": 1.35,  # HPV- (or unknown HPV treated as its true value) vs HPV+
    "t_stage": 0.45,  # per T category (0-4), centred at 2.5
    "n_stage": 0.45,  # per N category (0-3), centred at 1.5
    "log_total_volume": 0.60,  # per ln(ml) of GTVp + GTVn, centred at ln(20)
    "suv_max": 0.015,  # per SUV, centred at 14
    "node_count": 0.075,  # per node, centred at 2
    "age": 0.015,  # per year, centred at 60
    "ecog": 0.30,  # per grade, centred at 1
    "m1": 1.20,
    "chemoradiotherapy": -0.30,  # centred at 0.87
}
FRAILTY_SD = 0.5
WEIBULL_SHAPE_V2 = 1.0
WEIBULL_SCALE_V2_DAYS = 11000.0
FOLLOW_UP_V2_DAYS = (900.0, 3300.0)  # administrative follow-up: several years
DROPOUT_V2_MEAN_DAYS = 9000.0


def stage(
    gtvp_volume_ml: float, gtvp_count: int, node_volumes_ml: list[float], bilateral: bool
) -> tuple[int, int]:
    """(T, N) approximated from the true geometry: T from the GTVp volume (equivalent diameter <= 2 cm: T1,
    <= 4 cm: T2, <= 5.5 cm: T3, else T4; no GTVp: T0); N0 no node, N1 one node <= 3 cm, N3 a node > 6 cm, else N2."""
    if gtvp_count == 0:
        t = 0
    else:
        d_cm = 2.0 * (3.0 * gtvp_volume_ml / (4.0 * math.pi)) ** (1.0 / 3.0)
        t = 1 if d_cm <= 2.0 else 2 if d_cm <= 4.0 else 3 if d_cm <= 5.5 else 4
    if not node_volumes_ml:
        return t, 0
    d_max = max(2.0 * (3.0 * v / (4.0 * math.pi)) ** (1.0 / 3.0) for v in node_volumes_ml)
    if d_max > 6.0:
        return t, 3
    return t, 1 if (len(node_volumes_ml) == 1 and d_max <= 3.0 and not bilateral) else 2


def draw_clinical(rng: np.random.Generator, center_id: int, site: str) -> dict[str, Any]:
    """True (complete) clinical values with the HECKTOR encodings; HPV+ ~82 % overall (mostly oropharynx)."""
    hpv = int(rng.uniform() < (0.93 if site == "oropharynx" else 0.65))
    tobacco = int(rng.uniform() < (0.45 if hpv else 0.75))
    return {
        "Age": int(np.clip(round(rng.normal(61.0, 9.0)), 35, 88)),
        "Gender": int(rng.uniform() < 0.8),
        "Tobacco Consumption": tobacco,
        "Alcohol Consumption": int(rng.uniform() < (0.6 if tobacco else 0.4)),
        "Performance Status": int(rng.choice(5, p=[0.30, 0.56, 0.10, 0.03, 0.01])),
        "Treatment": int(rng.uniform() < 0.87),
        "M-stage": ["M0", "M1", "Mx"][int(rng.choice(3, p=[0.93, 0.03, 0.04]))],
        "CenterID": int(center_id),
        "HPV Status": hpv,
    }


def draw_missing(rng: np.random.Generator, centre: str) -> dict[str, bool]:
    """Which clinical values are missing: by centre (:data:`MISSING_BY_CENTRE`), independent of the value."""
    rates = dict(zip(_MISSABLE, MISSING_BY_CENTRE[centre]))
    return {k: bool(rng.uniform() < rates.get(k, 0.0)) for k in CLINICAL_KEYS}


def hazard_covariates_v2(truth: dict[str, Any], clinical: dict[str, Any]) -> dict[str, float]:
    """The centred covariates of :data:`HAZARD_V2` from the truth row and the true clinical values."""
    total = truth["gtvp_volume_ml"] + truth["gtvn_volume_ml"]
    return {
        "hpv_negative": float(clinical["HPV Status"] == 0) - 0.2,
        "t_stage": truth["T-stage_num"] - 2.5,
        "n_stage": truth["N-stage_num"] - 1.5,
        "log_total_volume": math.log(max(total, 0.1)) - math.log(20.0),
        "suv_max": truth["suv_max"] - 14.0,
        "node_count": truth["gtvn_count"] - 2.0,
        "age": clinical["Age"] - 60.0,
        "ecog": float(clinical["Performance Status"]) - 1.0,
        "m1": float(clinical["M-stage"] == "M1"),
        "chemoradiotherapy": float(clinical["Treatment"] == 1) - 0.87,
    }


def true_log_hazard_v2(truth: dict[str, Any], clinical: dict[str, Any]) -> float:
    """``true_risk``: the linear predictor of the v2 model (without the frailty); higher = earlier relapse."""
    cov = hazard_covariates_v2(truth, clinical)
    return float(sum(HAZARD_V2[k] * v for k, v in cov.items()))


def draw_outcome_v2(rng: np.random.Generator, risk: float) -> dict[str, Any]:
    """Weibull PH event time with a log-normal frailty; administrative follow-up and dropout censoring."""
    frailty = float(rng.normal(0.0, FRAILTY_SD))
    u_event, u_follow, u_drop = (float(v) for v in rng.uniform(size=3))
    rate = math.exp(risk + frailty)
    event = WEIBULL_SCALE_V2_DAYS * (-math.log(1.0 - u_event) / rate) ** (1.0 / WEIBULL_SHAPE_V2)
    follow = FOLLOW_UP_V2_DAYS[0] + u_follow * (FOLLOW_UP_V2_DAYS[1] - FOLLOW_UP_V2_DAYS[0])
    censor = min(follow, -DROPOUT_V2_MEAN_DAYS * math.log(1.0 - u_drop))
    return {
        "frailty": round(frailty, 4),
        "event_time_days": round(event, 1),
        "censor_time_days": round(censor, 1),
        "RFS": max(1, round(min(event, censor))),
        "Relapse": int(event <= censor),
    }
