"""The one fold splitter of the package (segmentation and survival cross-validation) and the centre of a case ID.

Cases are sorted by their stratum (e.g. the centre; the event and the centre for survival) and, within a stratum,
by a random key drawn from ``random.Random(seed)`` in input order, then dealt round-robin over the folds: fold sizes
differ by at most one and every stratum is spread evenly over the folds. Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence

import numpy as np


def centre_of(case_id: str) -> str:
    """The centre of a HECKTOR patient ID (``CHUM-001`` -> ``CHUM``)."""
    return case_id.split("-")[0] if "-" in case_id else case_id.rstrip("0123456789_") or case_id


def stratified_folds(n_folds: int, strata: Sequence[Hashable], seed: int) -> list[np.ndarray]:
    """``n_folds`` validation folds as sorted index arrays into ``strata`` (one stratum per item)."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    rng = random.Random(seed)
    keys = [(stratum, rng.random()) for stratum in strata]
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for position, index in enumerate(order):
        folds[position % n_folds].append(index)
    return [np.array(sorted(f), dtype=int) for f in folds]


def centre_folds(case_ids: Sequence[str], n_folds: int = 5, seed: int = 0) -> list[list[str]]:
    """Case IDs split into ``n_folds`` folds stratified by centre (the segmentation folds), IDs sorted."""
    ids = sorted(set(case_ids))
    folds = stratified_folds(n_folds, [centre_of(i) for i in ids], seed)
    return [[ids[i] for i in fold] for fold in folds]


def event_centre_folds(
    pids: Sequence[str], events: Sequence[bool], n_folds: int, seed: int
) -> list[np.ndarray]:
    """Index arrays of folds stratified by event and centre (the survival folds)."""
    strata = [(bool(e), centre_of(p)) for p, e in zip(pids, events, strict=True)]
    return stratified_folds(n_folds, strata, seed)
