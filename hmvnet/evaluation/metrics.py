"""Challenge metrics: GTVp Dice, GTVn aggregated Dice and detection F1, HD95, volumes, and the C-index.

Arrays are label maps as read from images, axis order ``(z, y, x)``, values 0 background, 1 GTVp, 2 GTVn.
Spacings are given the SimpleITK way, ``(x, y, z)`` in mm (as ``sitk.Image.GetSpacing()`` returns them), and are
reversed here to match the array axes. Survival predictions are risks: higher = earlier relapse.

Definitions (HECKTOR 2022 evaluation code and the 2025 challenge description; "unconfirmed" marks choices no
public source settles):

- GTVp: Dice per patient on label 1, averaged over patients. When prediction and truth are both empty the case
  scores ``empty_both`` (default 1.0; what the official code does is unconfirmed); an empty prediction with a
  non-empty truth scores 0.
- GTVn aggregated Dice: ``2 * sum_i |P_i ∩ G_i| v_i / sum_i (|P_i| + |G_i|) v_i`` over all cases, ``v_i`` the
  voxel volume of case ``i`` in mm^3 (each case on its own grid; as the 2022 notebook and the 2025 ``DiceAggScore``
  compute it), no matching; NaN when both sums are 0 (no GTVn anywhere; our choice).
- GTVn aggregated detection F1: 26-connected components of prediction and truth per case; a (prediction, truth)
  pair matches when IoU > 0.3; greedy one-to-one matching by descending IoU (connectivity and matching rule are
  unconfirmed); TP/FP/FN summed over cases, ``F1 = 2TP / (2TP + FP + FN)``, NaN when the denominator is 0.
- Task-1 proxy score: ``0.5 * GTVp + 0.25 * aggDSC + 0.25 * F1`` (the challenge ranks by Borda counts).
- C-index: Harrell's on the risk; tied risks count 0.5, a NaN risk counts as a tie in all its pairs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from hmvnet import Label
from hmvnet.geometry import STRUCTURE_26

LABEL_NAMES = {Label.GTVP: "gtvp", Label.GTVN: "gtvn"}
IOU_THRESHOLD = 0.3


def _array(a: Any) -> np.ndarray:
    """A label array from a numpy array or a CPU torch tensor (anything ``np.asarray`` accepts)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def crop_to_foreground(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both label maps cropped to the bounding box of any label in either, plus one voxel of margin.

    No metric here depends on what lies outside that box (Dice, components, volumes, surface distances), and
    every later step then runs on a small array; both-empty inputs crop to shape (0, 0, 0).
    """
    pred, truth = _array(pred), _array(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    foreground = (pred != 0) | (truth != 0)
    box = []
    for axis in range(foreground.ndim):
        other = tuple(a for a in range(foreground.ndim) if a != axis)
        hits = np.flatnonzero(foreground.any(axis=other))
        if hits.size == 0:
            return pred[tuple(slice(0, 0) for _ in pred.shape)], truth[
                tuple(slice(0, 0) for _ in truth.shape)
            ]
        box.append(slice(max(int(hits[0]) - 1, 0), int(hits[-1]) + 2))
    return pred[tuple(box)], truth[tuple(box)]


def _voxel_ml(spacing: Sequence[float]) -> float:
    """Volume of one voxel in ml for a spacing in mm (1 ml = 1000 mm^3)."""
    return float(np.prod(np.asarray(spacing, dtype=np.float64))) / 1000.0


# ------------------------------------------------------------------------------------------ Dice
def dice(pred: np.ndarray, truth: np.ndarray, label: int, empty_both: float = 1.0) -> float:
    """Dice of ``label`` between two label maps of the same shape.

    Returns ``2|P∩G| / (|P|+|G|)`` in [0, 1]; ``empty_both`` when the label is absent from both (default 1.0, the
    official behaviour is unconfirmed; pass ``nan`` to leave such cases out of a ``nanmean``); 0 when only one of
    them holds the label.
    """
    p, g = _array(pred) == label, _array(truth) == label
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {g.shape}")
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(g))
    if total == 0:
        return float(empty_both)
    return 2.0 * int(np.count_nonzero(p & g)) / total


def mean_dice(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], label: int = Label.GTVP, empty_both: float = 1.0
) -> tuple[list[float], float]:
    """Per-case Dice of ``label`` over ``(pred, truth)`` pairs and their mean (NaN entries are left out of the mean;
    NaN when there is no case)."""
    values = [dice(p, g, label, empty_both) for p, g in pairs]
    finite = [v for v in values if not math.isnan(v)]
    return values, (float(np.mean(finite)) if finite else math.nan)


@dataclass
class AggregateDice:
    """Accumulator of the aggregated Dice of one label over cases, weighted by physical volume:
    ``2 * sum_i |P_i ∩ G_i| v_i / sum_i (|P_i| + |G_i|) v_i`` with ``v_i`` the voxel volume of case ``i`` in mm^3.

    This is the organisers' definition (HECKTOR 2022 evaluation notebook, HECKTOR 2025 ``DiceAggScore``: per case
    TP and volume sums in mm^3 from the image spacing, summed over cases). Cases on different grids weigh by their
    lesion volume in mm^3, not by their voxel counts. ``update(pred, truth, spacing)`` once per case (``spacing``
    ``(x, y, z)`` mm; None = 1 mm isotropic); ``value`` is NaN while both sums are 0 (our choice: the 2025 code
    returns 1.0 there). ``intersection_mm3`` and ``total_mm3`` are the running sums in mm^3.
    """

    label: int = Label.GTVN
    intersection_mm3: float = 0.0
    total_mm3: float = 0.0

    def update(self, pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> None:
        p, g = _array(pred) == self.label, _array(truth) == self.label
        voxel_mm3 = 1.0 if spacing is None else 1000.0 * _voxel_ml(spacing)
        self.intersection_mm3 += int(np.count_nonzero(p & g)) * voxel_mm3
        self.total_mm3 += (int(np.count_nonzero(p)) + int(np.count_nonzero(g))) * voxel_mm3

    @property
    def value(self) -> float:
        return 2.0 * self.intersection_mm3 / self.total_mm3 if self.total_mm3 else math.nan


def aggregated_dice(pairs: Iterable[tuple[Any, ...]], label: int = Label.GTVN) -> float:
    """Aggregated Dice of ``label`` over ``(pred, truth)`` or ``(pred, truth, spacing)`` tuples, weighted by each
    case's voxel volume in mm^3 (see :class:`AggregateDice`; no spacing = 1 mm isotropic)."""
    acc = AggregateDice(label)
    for pred, truth, *rest in pairs:
        acc.update(pred, truth, rest[0] if rest else None)
    return acc.value


# ------------------------------------------------------------------------------------------ detection
@dataclass(frozen=True)
class DetectionCounts:
    """Lesion-detection counts; add them over cases, then read ``f1``."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        return DetectionCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def f1(self) -> float:
        """``2TP / (2TP + FP + FN)``; NaN when there is no lesion in any prediction or truth."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2.0 * self.tp / denominator if denominator else math.nan


@dataclass(frozen=True)
class CaseDetection:
    """Detection result of one case: counts, component numbers and the matched (pred, truth) component ids
    (1-based, as labelled by ``scipy.ndimage.label`` with 26-connectivity) with their IoU."""

    counts: DetectionCounts
    n_pred: int
    n_truth: int
    matches: tuple[tuple[int, int, float], ...]


def match_components(
    pred_mask: np.ndarray, truth_mask: np.ndarray, iou_threshold: float = IOU_THRESHOLD
) -> CaseDetection:
    """Match the 26-connected components of two binary masks (same shape) one-to-one.

    All pairwise intersections come from one ``np.bincount`` over combined component ids. Candidate pairs with
    ``IoU > iou_threshold`` are taken greedily by descending IoU (ties by ascending ids), each component at most
    once. TP = matches, FP = unmatched predicted components, FN = unmatched true components.
    """
    pred_mask, truth_mask = _array(pred_mask).astype(bool), _array(truth_mask).astype(bool)
    if pred_mask.shape != truth_mask.shape:
        raise ValueError(f"prediction shape {pred_mask.shape} differs from truth shape {truth_mask.shape}")
    pred_ids, n_pred = ndimage.label(pred_mask, structure=STRUCTURE_26)
    truth_ids, n_truth = ndimage.label(truth_mask, structure=STRUCTURE_26)
    matches: list[tuple[int, int, float]] = []
    if n_pred and n_truth:
        pred_sizes = np.bincount(pred_ids.ravel(), minlength=n_pred + 1)
        truth_sizes = np.bincount(truth_ids.ravel(), minlength=n_truth + 1)
        both = pred_mask & truth_mask
        combined = pred_ids[both].astype(np.int64) * (n_truth + 1) + truth_ids[both]
        inter = np.bincount(combined, minlength=(n_pred + 1) * (n_truth + 1)).reshape(n_pred + 1, n_truth + 1)
        p_idx, t_idx = np.nonzero(inter)
        inter_v = inter[p_idx, t_idx]
        iou = inter_v / (pred_sizes[p_idx] + truth_sizes[t_idx] - inter_v)
        keep = iou > iou_threshold
        p_idx, t_idx, iou = p_idx[keep], t_idx[keep], iou[keep]
        order = np.lexsort((t_idx, p_idx, -iou))
        used_p: set[int] = set()
        used_t: set[int] = set()
        for k in order:
            p, t = int(p_idx[k]), int(t_idx[k])
            if p not in used_p and t not in used_t:
                used_p.add(p)
                used_t.add(t)
                matches.append((p, t, float(iou[k])))
    tp = len(matches)
    counts = DetectionCounts(tp=tp, fp=n_pred - tp, fn=n_truth - tp)
    return CaseDetection(counts=counts, n_pred=int(n_pred), n_truth=int(n_truth), matches=tuple(matches))


def detection_f1(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    label: int = Label.GTVN,
    iou_threshold: float = IOU_THRESHOLD,
) -> tuple[float, DetectionCounts]:
    """Aggregated detection F1 of ``label`` over ``(pred, truth)`` label maps, with the summed counts."""
    total = DetectionCounts()
    for p, g in pairs:
        total = total + match_components(_array(p) == label, _array(g) == label, iou_threshold).counts
    return total.f1, total


def task1_score(gtvp_dsc: float, gtvn_agg_dsc: float, gtvn_f1: float) -> float:
    """Single-number Task-1 proxy ``0.5*GTVp + 0.25*aggDSC + 0.25*F1`` (NaN if any input is NaN)."""
    return 0.5 * gtvp_dsc + 0.25 * gtvn_agg_dsc + 0.25 * gtvn_f1


# ------------------------------------------------------------------------------------------ distances, volumes
def hd95(pred: np.ndarray, truth: np.ndarray, label: int, spacing: Sequence[float] | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance of ``label`` in mm (MONAI ``compute_hausdorff_distance``:
    the larger of the two directed 95th percentiles of surface-voxel distances).

    ``spacing`` is ``(x, y, z)`` in mm (SimpleITK order; None = 1 mm). NaN when the label is absent from the
    prediction or the truth (the distance is undefined then).
    """
    from monai.metrics import compute_hausdorff_distance

    p, g = _array(pred) == label, _array(truth) == label
    if not p.any() or not g.any():
        return math.nan
    zyx = None if spacing is None else [float(s) for s in reversed(tuple(spacing))]
    with warnings.catch_warnings():  # MONAI 1.6 passes its own deprecated argument internally
        warnings.filterwarnings("ignore", category=FutureWarning, module="monai")
        value = compute_hausdorff_distance(
            p[None, None], g[None, None], include_background=True, percentile=95, spacing=zyx
        )
    return float(value.reshape(-1)[0])


def volume_ml(mask: np.ndarray, label: int, spacing: Sequence[float]) -> float:
    """Volume of ``label`` in ml (``spacing`` in mm, any axis order: only the product matters)."""
    return int(np.count_nonzero(_array(mask) == label)) * _voxel_ml(spacing)


def case_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float] | None = None,
    with_hd95: bool = True,
    empty_both: float = 1.0,
) -> tuple[dict[str, float], CaseDetection]:
    """Per-case metrics of one ``(z, y, x)`` prediction against its truth.

    Returns a flat row (``dice_gtvp``, ``dice_gtvn``, ``hd95_gtvp_mm``, ``hd95_gtvn_mm`` (if ``with_hd95``),
    ``vol_pred_<l>_ml``, ``vol_truth_<l>_ml``, ``vol_diff_<l>_ml`` = prediction - truth, ``vol_overlap_<l>_ml`` =
    ``|P ∩ G|`` (the aggregated Dice's per-case terms), ``n_pred_<l>`` and
    ``n_truth_<l>`` 26-connected component counts, and GTVn ``tp``, ``fp``, ``fn``) and the GTVn detection.
    ``spacing`` is ``(x, y, z)`` mm; without it volumes are in voxels/1000 and HD95 in voxels.
    """
    pred, truth = crop_to_foreground(pred, truth)
    sp = (1.0, 1.0, 1.0) if spacing is None else tuple(float(s) for s in spacing)
    row: dict[str, float] = {}
    detection: CaseDetection | None = None
    for label, name in LABEL_NAMES.items():
        p, g = pred == label, truth == label
        n_p, n_g, n_pg = int(np.count_nonzero(p)), int(np.count_nonzero(g)), int(np.count_nonzero(p & g))
        row[f"dice_{name}"] = 2.0 * n_pg / (n_p + n_g) if n_p + n_g else float(empty_both)
        if with_hd95:
            row[f"hd95_{name}_mm"] = hd95(p, g, 1, sp) if n_p and n_g else math.nan
        row[f"vol_pred_{name}_ml"] = n_p * _voxel_ml(sp)
        row[f"vol_truth_{name}_ml"] = n_g * _voxel_ml(sp)
        row[f"vol_diff_{name}_ml"] = (n_p - n_g) * _voxel_ml(sp)
        row[f"vol_overlap_{name}_ml"] = n_pg * _voxel_ml(sp)
        found = match_components(p, g)
        row[f"n_pred_{name}"] = found.n_pred
        row[f"n_truth_{name}"] = found.n_truth
        if label == Label.GTVN:
            detection = found
    assert detection is not None
    row.update(tp=detection.counts.tp, fp=detection.counts.fp, fn=detection.counts.fn)
    return row, detection


class SegmentationScorer:
    """Accumulates the Task-1 metrics over cases (load one case, ``update``, drop it: memory stays flat).

    ``update(pred, truth, spacing)`` returns the per-case row of :func:`case_metrics`; ``summary()`` returns
    ``gtvp_dsc`` (mean per-case GTVp Dice), ``gtvn_agg_dsc``, ``gtvn_agg_f1``, ``task1_score``, ``gtvn_tp``,
    ``gtvn_fp``, ``gtvn_fn`` and ``n_cases``.
    """

    def __init__(self, with_hd95: bool = False, empty_both: float = 1.0) -> None:
        self.with_hd95 = with_hd95
        self.empty_both = empty_both
        self.gtvp_dice: list[float] = []
        self.gtvn_agg = AggregateDice(Label.GTVN)
        self.detection = DetectionCounts()

    def update(
        self, pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None
    ) -> dict[str, float]:
        pred, truth = crop_to_foreground(pred, truth)
        row, found = case_metrics(pred, truth, spacing, self.with_hd95, self.empty_both)
        self.gtvp_dice.append(row["dice_gtvp"])
        self.gtvn_agg.update(pred, truth, spacing)
        self.detection = self.detection + found.counts
        return row

    def summary(self) -> dict[str, float]:
        finite = [v for v in self.gtvp_dice if not math.isnan(v)]
        gtvp = float(np.mean(finite)) if finite else math.nan
        agg, f1 = self.gtvn_agg.value, self.detection.f1
        return {
            "gtvp_dsc": gtvp,
            "gtvn_agg_dsc": agg,
            "gtvn_agg_f1": f1,
            "task1_score": task1_score(gtvp, agg, f1),
            "gtvn_tp": self.detection.tp,
            "gtvn_fp": self.detection.fp,
            "gtvn_fn": self.detection.fn,
            "n_cases": len(self.gtvp_dice),
        }


def evaluate_segmentations(
    pairs: Iterable[tuple[Any, ...]], with_hd95: bool = False, empty_both: float = 1.0
) -> dict[str, float]:
    """Task-1 summary (see :class:`SegmentationScorer`) over ``(pred, truth)`` or ``(pred, truth, spacing)``
    tuples of ``(z, y, x)`` label maps; spacing ``(x, y, z)`` mm (None = 1 mm isotropic) weighs the aggregated
    Dice by voxel volume and scales HD95 (off by default)."""
    scorer = SegmentationScorer(with_hd95=with_hd95, empty_both=empty_both)
    for item in pairs:
        pred, truth, *rest = item
        scorer.update(pred, truth, rest[0] if rest else None)
    return scorer.summary()


# ------------------------------------------------------------------------------------------ C-index
def _survival_arrays(time, event, risk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(time, dtype=np.float64).reshape(-1)
    e = np.asarray(event).reshape(-1)
    r = np.asarray(risk, dtype=np.float64).reshape(-1)
    if not (len(t) == len(e) == len(r)):
        raise ValueError(f"time, event and risk lengths differ: {len(t)}, {len(e)}, {len(r)}")
    if np.isnan(t).any():
        raise ValueError("time holds NaN")
    if e.dtype != bool:
        if not np.isin(e, (0, 1)).all():
            raise ValueError(f"event must be 0/1 or boolean, found {np.unique(e)[:10].tolist()}")
        e = e.astype(bool)
    return t, e, r


def _pair_matrices(
    t: np.ndarray, e: np.ndarray, r: np.ndarray, tied_tol: float = 1e-8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(comparable, concordant, tied) n x n matrices with scikit-survival's pair rules, NaN risks as ties.

    Pair (i, j) is comparable when i has an event and ``t_j > t_i``, or ``t_j == t_i`` and j is censored; it is
    concordant when ``r_i > r_j``, tied (0.5) when ``|r_i - r_j| <= tied_tol`` or either risk is NaN.
    """
    ti, tj = t[:, None], t[None, :]
    comparable = e[:, None] & ((tj > ti) | ((tj == ti) & ~e[None, :]))
    diff = r[:, None] - r[None, :]
    with np.errstate(invalid="ignore"):
        tied = np.isnan(diff) | (np.abs(diff) <= tied_tol)
        concordant = ~tied & (diff > 0)
    return comparable, comparable & concordant, comparable & tied


def _harrell(t: np.ndarray, e: np.ndarray, r: np.ndarray) -> float:
    """Harrell's C over all pairs (see :func:`_pair_matrices`); NaN when no pair is comparable.

    Hand-written because ``sksurv.metrics.concordance_index_censored`` rejects NaN risks and raises when every
    sample is censored; tests check it against scikit-survival.
    """
    comparable, concordant, tied = _pair_matrices(t, e, r)
    n_comparable = int(np.count_nonzero(comparable))
    if n_comparable == 0:
        return math.nan
    return float((np.count_nonzero(concordant) + 0.5 * np.count_nonzero(tied)) / n_comparable)


def concordance_index(time, event, risk) -> float:
    """Harrell's C-index of a risk (higher = earlier event) against right-censored times.

    ``time`` any unit, ``event`` 1/True for an observed event (relapse), 0/False censored. Tied risks count 0.5;
    a NaN risk counts as a tie in all its pairs. Equal to ``sksurv.metrics.concordance_index_censored(event, time,
    risk)[0]`` (which it calls when there is no NaN risk and at least one event). NaN when no pair is comparable.
    THE C-index of the project: import it from here.
    """
    t, e, r = _survival_arrays(time, event, risk)
    if np.isnan(r).any() or not e.any():
        return _harrell(t, e, r)
    from sksurv.metrics import concordance_index_censored

    return float(concordance_index_censored(e, t, r)[0])


def concordance_index_ci(
    time, event, risk, n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """C-index with a percentile bootstrap interval over patients: ``(c, low, high)``.

    Each of ``n_bootstrap`` resamples draws patients with replacement (``numpy.random.default_rng(seed)``);
    resamples without a comparable pair are skipped; ``low``/``high`` are the ``alpha/2`` and ``1 - alpha/2``
    quantiles (NaN when no resample is usable).
    """
    t, e, r = _survival_arrays(time, event, risk)
    c = concordance_index(t, e, r)
    # A resample with patient multiplicities w has pair counts w^T M w for each pair matrix M of the full sample
    # (a patient's copies never form a comparable pair, as with sksurv), so all resamples are matrix products.
    comparable, concordant, tied = (m.astype(np.float64) for m in _pair_matrices(t, e, r))
    score_matrix = concordant + 0.5 * tied
    rng = np.random.default_rng(seed)
    n = len(t)
    values = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, 100):
        chunk = min(100, n_bootstrap - start)
        draws = [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(chunk)]
        w = np.stack(draws).astype(np.float64)
        n_comparable = np.einsum("bi,ij,bj->b", w, comparable, w, optimize=True)
        score = np.einsum("bi,ij,bj->b", w, score_matrix, w, optimize=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[start : start + chunk] = np.where(n_comparable > 0, score / n_comparable, np.nan)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return c, math.nan, math.nan
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return c, float(low), float(high)


# ------------------------------------------------------------------------------------------- HECKTOR 2026 staging
def balanced_accuracy(truth: Sequence[str], pred: Sequence[str]) -> float:
    """Balanced accuracy (mean per-class recall over the classes present in ``truth``), the 2026 T/N metric.

    scikit-learn's ``balanced_accuracy_score``; a predicted class absent from the truth lowers the recall of the
    true class only. NaN for no cases.
    """
    from sklearn.metrics import balanced_accuracy_score

    if len(truth) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
        return float(balanced_accuracy_score(list(truth), list(pred)))


HECKTOR2026_WEIGHTS = {"dice": 0.25, "staging": 0.35, "c_index": 0.40}


def hecktor2026_score(mean_dice_: float, ba_t: float, ba_n: float, c_index: float) -> float:
    """2026 ranking score ``0.25 * mean Dice + 0.35 * mean(BA_T, BA_N) + 0.40 * C-index``.

    ``c_index`` must already follow the 2026 convention (computed on the predicted RFS, higher = longer survival,
    i.e. on ``-risk``). NaN when any input is NaN.
    """
    w = HECKTOR2026_WEIGHTS
    return float(w["dice"] * mean_dice_ + w["staging"] * 0.5 * (ba_t + ba_n) + w["c_index"] * c_index)
