"""v2 lesions: primary sites beyond the oropharynx, heavy-tailed uptake, missing GTVp / GTVn, nodes at levels
Ib-V, retropharyngeal and supraclavicular (some > 150 mm below the primary), nodes touching the primary.

Frequencies (per case): no GTVp 3 %, second primary 2 %, no GTVn 11.5 %, a node touching the primary in 20 % of
node-positive cases. Volumes in ml, uptake as the peak SUV before the PET blur, positions in mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hmvnet.synthetic.anatomy_v1 import Patient, _airway
from hmvnet.synthetic.phantom import Lesion, make_lesion

SITES = {  # site -> (probability, depth range below the vertex in mm)
    "oropharynx": (0.55, (132.0, 165.0)),
    "oral cavity": (0.1, (150.0, 168.0)),
    "larynx": (0.15, (180.0, 208.0)),
    "hypopharynx": (0.1, (195.0, 220.0)),
    "nasopharynx": (0.1, (110.0, 124.0)),
}
LEVELS = {  # nodal level -> (probability, depth range, lateral range (mm, scaled), antero-posterior range)
    "II": (0.42, (150.0, 185.0), (26.0, 50.0), (-25.0, 5.0)),
    "III": (0.2, (185.0, 215.0), (26.0, 48.0), (-25.0, 0.0)),
    "IV": (0.1, (215.0, 245.0), (24.0, 46.0), (-20.0, 5.0)),
    "Ib": (0.08, (158.0, 178.0), (20.0, 36.0), (-55.0, -38.0)),
    "V": (0.08, (160.0, 240.0), (45.0, 60.0), (5.0, 25.0)),
    "retropharyngeal": (0.05, (115.0, 140.0), (12.0, 22.0), (-5.0, 5.0)),
    "supraclavicular": (0.07, (250.0, 285.0), (30.0, 60.0), (-20.0, 10.0)),
}


@dataclass
class Lesions:
    primaries: list[Lesion]  # 0, 1 or 2
    nodes: list[Lesion]
    site: str  # "none" when there is no GTVp
    draws: dict[str, Any]


def _primary_uptake(rng: np.random.Generator) -> float:
    """Peak SUV with tails: ~10 % low (3.5-6.5), ~6 % very hot (28-45), else log-normal around 14."""
    v = rng.uniform()
    if v < 0.1:
        return float(rng.uniform(3.5, 6.5))
    if v < 0.16:
        return float(rng.uniform(28.0, 45.0))
    return float(np.exp(rng.normal(np.log(14.5), 0.3)))


def _primary(rng: np.random.Generator, p: Patient, site: str) -> Lesion:
    z = p.z_vertex - p.u(rng.uniform(*SITES[site][1]))
    air = _airway(p)
    ax, ay, aa, ab = (float(np.interp(z, air.z, getattr(air, k))) for k in ("cx", "cy", "a", "b"))
    volume = float(np.exp(rng.uniform(np.log(2.0), np.log(70.0))))
    r_eq = np.cbrt(3 * volume * 1000 / (4 * np.pi))
    theta = [0.0, np.pi, -np.pi / 2][int(rng.choice(3, p=[0.3, 0.3, 0.4]))] + rng.uniform(-0.4, 0.4)
    centre = np.array([ax + np.cos(theta) * (aa + 0.45 * r_eq), ay + np.sin(theta) * (ab + 0.45 * r_eq), z])
    return make_lesion(
        rng,
        centre,
        volume,
        satellites=int(rng.integers(1, 4)),
        wobble=float(rng.uniform(0.1, 0.25)),
        uptake=_primary_uptake(rng),
        hu=40.0 + float(rng.uniform(10.0, 30.0)),
        necrosis=float(rng.uniform(0.3, 0.5)) if (volume > 12 and rng.uniform() < 0.35) else 0.0,
    )


def _node_centre(rng: np.random.Generator, p: Patient, level: str, side: float) -> np.ndarray:
    _, depth, lat, ap = LEVELS[level]
    return np.array(
        [
            p.x0 + side * p.s * rng.uniform(*lat),
            p.y0 + p.s * rng.uniform(*ap),
            p.z_vertex - p.u(rng.uniform(*depth)),
        ]
    )


def _node(rng: np.random.Generator, centre: np.ndarray, volume: float) -> Lesion:
    weak = rng.uniform() < 0.25
    uptake = rng.uniform(2.5, 4.5) if weak else np.exp(rng.normal(np.log(10.0), 0.45))
    return make_lesion(
        rng,
        centre,
        volume,
        elongation=(1.0, 1.0, 1.5),
        wobble=float(rng.uniform(0.05, 0.15)),
        uptake=float(min(uptake, 40.0)),
        hu=40.0 + float(rng.uniform(5.0, 25.0)),
        necrosis=float(rng.uniform(0.3, 0.5)) if (volume > 5 and rng.uniform() < 0.3) else 0.0,
    )


def _touching(rng: np.random.Generator, other: Lesion, r_n: float) -> np.ndarray:
    d = rng.normal(size=3) * np.array([1.0, 0.6, 0.8])
    d /= np.linalg.norm(d)
    return other.centre + d * (other.equivalent_radius + r_n) * rng.uniform(0.8, 1.0)


def draw_lesions(rng: np.random.Generator, p: Patient) -> Lesions:
    """Primaries and nodes of one case; ``draws`` records site, counts, levels and the touching flag."""
    names = list(SITES)
    site = names[int(rng.choice(len(names), p=[SITES[n][0] for n in names]))]
    no_gtvp = bool(rng.uniform() < 0.03)
    primaries = [] if no_gtvp else [_primary(rng, p, site)]
    if primaries and rng.uniform() < 0.02:
        primaries.append(_primary(rng, p, names[int(rng.integers(len(names)))]))
    n_nodes = 0 if rng.uniform() < 0.115 else min(int(rng.geometric(0.4)) + int(rng.integers(0, 2)), 9)
    side = 1.0 if (not primaries or primaries[0].centre[0] >= p.x0) else -1.0
    touch_primary = bool(primaries) and n_nodes > 0 and rng.uniform() < 0.2
    lv_names = list(LEVELS)
    nodes: list[Lesion] = []
    levels: list[str] = []
    for k in range(n_nodes):
        volume = float(np.clip(np.exp(rng.normal(np.log(2.0), 1.2)), 0.05, 60.0))
        r_n = float(np.cbrt(3 * volume * 1000 / (4 * np.pi)))
        level = lv_names[int(rng.choice(len(lv_names), p=[LEVELS[n][0] for n in lv_names]))]
        if k == 0 and touch_primary:
            centre, level = _touching(rng, primaries[0], r_n), "touching-primary"
        elif nodes and rng.uniform() < 0.3:
            centre, level = _touching(rng, nodes[-1], r_n), levels[-1]
        else:
            centre = _node_centre(rng, p, level, side if rng.uniform() < 0.75 else -side)
        nodes.append(_node(rng, centre, volume))
        levels.append(level)
    far = [round(float(np.linalg.norm(n.centre - primaries[0].centre)), 1) for n in nodes if primaries]
    draws = {
        "gtvp_site": site if primaries else "none",
        "gtvp_drawn": len(primaries),
        "gtvp_uptake": round(primaries[0].uptake, 2) if primaries else 0.0,
        "gtvn_levels": ";".join(levels),
        "node_touches_primary": touch_primary,
        "max_node_distance_mm": max(far) if far else 0.0,
    }
    return Lesions(primaries, nodes, site if primaries else "none", draws)
