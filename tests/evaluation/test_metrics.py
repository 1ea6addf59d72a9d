"""Known-answer tests of the challenge metrics (hand-built masks, a hand-computed C-index table)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sksurv.metrics import concordance_index_censored

from hmvnet import Label
from hmvnet.evaluation.metrics import (
    AggregateDice,
    DetectionCounts,
    SegmentationScorer,
    aggregated_dice,
    case_metrics,
    concordance_index,
    concordance_index_ci,
    crop_to_foreground,
    detection_f1,
    dice,
    evaluate_segmentations,
    hd95,
    match_components,
    mean_dice,
    task1_score,
    volume_ml,
)
from hmvnet.evaluation.metrics import _harrell as harrell

torch.set_num_threads(1)


def vol(shape=(12, 12, 24)):
    return np.zeros(shape, dtype=np.uint8)


# ------------------------------------------------------------------------------------------ Dice
def test_dice_known_values_and_edge_cases():
    pred, truth = vol(), vol()
    pred[2:4, 2:4, 2:4] = 1  # 8 voxels
    truth[2:4, 2:4, 2:5] = 1  # 12 voxels, 8 shared
    truth[8, 8, 8] = 2  # another label must not matter
    assert dice(pred, truth, 1) == pytest.approx(2 * 8 / 20)
    assert dice(vol(), vol(), 1) == 1.0
    assert dice(vol(), vol(), 1, empty_both=0.0) == 0.0
    assert math.isnan(dice(vol(), vol(), 1, empty_both=math.nan))
    assert dice(vol(), truth, 1) == 0.0  # empty prediction, non-empty truth
    assert dice(pred, vol(), 1) == 0.0
    assert dice(torch.from_numpy(pred), torch.from_numpy(truth), 1) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="shape"):
        dice(pred, truth[:-1], 1)


def test_mean_dice_uses_empty_both():
    pred, truth = vol(), vol()
    pred[2:4, 2:4, 2:4] = 1
    truth[2:4, 2:4, 2:5] = 1
    cases = [(pred, truth), (vol(), vol()), (vol(), truth)]  # 0.8, both empty, 0
    values, mean = mean_dice(cases)
    assert values == pytest.approx([0.8, 1.0, 0.0])
    assert mean == pytest.approx(0.6)
    _, mean_without_empty = mean_dice(cases, empty_both=math.nan)
    assert mean_without_empty == pytest.approx(0.4)


def test_aggregated_dice_without_spacing_counts_voxels():
    p1, g1 = vol(), vol()
    p1[0:2, 0:2, 0:2] = 2  # 8
    g1[0:2, 0:2, 0:3] = 2  # 12, 8 shared
    p2, g2 = vol(), vol()
    g2[5, 5, 0:10] = 2  # 10 missed voxels
    expected = 2 * 8 / (8 + 12 + 10)
    assert aggregated_dice([(p1, g1), (p2, g2)]) == pytest.approx(expected)
    acc = AggregateDice()
    acc.update(p1, g1)
    acc.update(vol(), vol())  # an empty case changes nothing
    acc.update(p2, g2)
    assert (acc.intersection_mm3, acc.total_mm3) == (8.0, 30.0)
    assert acc.value == pytest.approx(expected)
    assert math.isnan(aggregated_dice([(vol(), vol())]))
    assert math.isnan(AggregateDice().value)


def test_aggregated_dice_weighs_cases_by_voxel_volume_in_mm3():
    """Four cases on four grids, worked out by hand (voxel volume v in mm^3; |P∩G|·v and (|P|+|G|)·v):

    1. v = 1 x 1 x 1 = 1:     |P| 8,  |G| 12, |P∩G| 8  -> 8,  20
    2. v = 2 x 1 x 1.5 = 3:   |P| 10, |G| 10, |P∩G| 5  -> 15, 60
    3. v = 0.5 x 0.5 x 2 = 0.5: |P| 0, |G| 10, missed  -> 0,  5
    4. v = 1 x 2 x 2 = 4:     |P| 6,  |G| 0, false     -> 0,  24
    aggregated Dice = 2 (8 + 15) / (20 + 60 + 5 + 24) = 46 / 109; counting voxels instead would give
    2 (8 + 5) / (20 + 20 + 10 + 6) = 26 / 56.
    """
    cases = []
    p, g = vol(), vol()
    p[0:2, 0:2, 0:2] = 2
    g[0:2, 0:2, 0:3] = 2
    cases.append((p, g, (1.0, 1.0, 1.0)))
    p, g = vol(), vol()
    p[0, 0, 0:10] = 2
    g[0, 0, 5:15] = 2
    cases.append((p, g, (2.0, 1.0, 1.5)))
    p, g = vol(), vol()
    g[3, 0:10, 4] = 2
    cases.append((p, g, (0.5, 0.5, 2.0)))
    p, g = vol(), vol()
    p[7, 7, 0:6] = 2
    p[0, 0, 0] = Label.GTVP  # other labels do not count
    cases.append((p, g, (1.0, 2.0, 2.0)))
    assert aggregated_dice(cases) == pytest.approx(46 / 109)
    assert aggregated_dice([(p, g) for p, g, _ in cases]) == pytest.approx(26 / 56)
    acc = AggregateDice()
    for case in cases:
        acc.update(*case)
    assert (acc.intersection_mm3, acc.total_mm3) == pytest.approx((23.0, 109.0))
    assert evaluate_segmentations(cases)["gtvn_agg_dsc"] == pytest.approx(46 / 109)
    scorer = SegmentationScorer()
    rows = [scorer.update(*case) for case in cases]
    assert scorer.summary()["gtvn_agg_dsc"] == pytest.approx(46 / 109)
    overlap = sum(r["vol_overlap_gtvn_ml"] for r in rows)
    total = sum(r["vol_pred_gtvn_ml"] + r["vol_truth_gtvn_ml"] for r in rows)
    assert 2 * overlap / total == pytest.approx(46 / 109)  # the per-case table holds the same terms


# ------------------------------------------------------------------------------------------ detection
def test_two_nodes_merged_into_one_prediction():
    truth, pred = vol(), vol()
    truth[0:3, 0:3, 0:3] = 2  # 27 voxels
    truth[0:3, 0:3, 4:7] = 2  # 27 voxels, one-voxel gap
    pred[0:3, 0:3, 0:7] = 2  # one blob of 63 covering both: IoU 27/63 with each
    found = match_components(pred == 2, truth == 2)
    assert (found.n_pred, found.n_truth) == (1, 2)
    assert found.counts == DetectionCounts(tp=1, fp=0, fn=1)
    assert found.matches[0][2] == pytest.approx(27 / 63)


def test_split_node_gives_one_tp_and_one_fp():
    truth, pred = vol(), vol()
    truth[0:3, 0:3, 0:6] = 2  # 54 voxels
    pred[0:3, 0:3, 0:2] = 2  # 18 voxels, IoU 1/3
    pred[0:3, 0:3, 4:6] = 2  # 18 voxels, IoU 1/3
    found = match_components(pred == 2, truth == 2)
    assert found.counts == DetectionCounts(tp=1, fp=1, fn=0)
    assert found.matches == ((1, 1, pytest.approx(1 / 3)),)  # tie broken by the lower prediction id


def test_iou_threshold_is_strict_and_overlap_alone_is_not_a_match():
    truth, pred = vol(), vol()
    truth[0, 0, 0:10] = 2
    pred[0, 0, 0:3] = 2  # IoU exactly 3/10 = 0.3: not > 0.3
    assert match_components(pred == 2, truth == 2).counts == DetectionCounts(tp=0, fp=1, fn=1)
    pred[0, 0, 3] = 2  # IoU 0.4
    assert match_components(pred == 2, truth == 2).counts == DetectionCounts(tp=1, fp=0, fn=0)


def test_greedy_matching_takes_highest_iou_first():
    truth, pred = vol(), vol()
    truth[0, 0, 0:10] = 2  # one node of 10 voxels
    pred[0, 0, 0:5] = 2  # component 1: IoU 0.5
    pred[0, 0, 6:10] = 2  # component 2: IoU 0.4, also a candidate, but the node is taken
    found = match_components(pred == 2, truth == 2)
    assert found.matches == ((1, 1, pytest.approx(0.5)),)
    assert found.counts == DetectionCounts(tp=1, fp=1, fn=0)
    # one prediction overlapping two nodes goes to the one with the higher IoU
    truth2, pred2 = vol(), vol()
    truth2[0, 0, 0:4] = 2  # node 1: 4 voxels
    truth2[0, 0, 5:8] = 2  # node 2: 3 voxels
    pred2[0, 0, 0:6] = 2  # IoU 4/6 with node 1, 1/8 with node 2
    found2 = match_components(pred2 == 2, truth2 == 2)
    assert found2.matches == ((1, 1, pytest.approx(4 / 6)),)
    assert found2.counts == DetectionCounts(tp=1, fp=0, fn=1)


def test_26_connectivity_joins_corner_neighbours():
    truth = vol()
    truth[1, 1, 1] = truth[2, 2, 2] = 2  # touch at a corner only: one 26-connected component
    found = match_components(truth == 2, truth == 2)
    assert (found.n_pred, found.n_truth) == (1, 1)
    assert found.counts == DetectionCounts(tp=1, fp=0, fn=0)


def test_detection_f1_sums_counts_over_cases():
    merged_t, merged_p = vol(), vol()
    merged_t[0:3, 0:3, 0:3] = 2
    merged_t[0:3, 0:3, 4:7] = 2
    merged_p[0:3, 0:3, 0:7] = 2  # TP 1, FN 1
    fp_t, fp_p = vol(), vol()
    fp_t[5:8, 5:8, 5:8] = 2
    fp_p[5:8, 5:8, 5:8] = 2
    fp_p[0:2, 0:2, 20:22] = 2  # exact node + a false-positive blob: TP 1, FP 1
    empty = (vol(), vol())
    f1, counts = detection_f1([(merged_p, merged_t), (fp_p, fp_t), empty])
    assert counts == DetectionCounts(tp=2, fp=1, fn=1)
    assert f1 == pytest.approx(4 / 6)
    f1_empty, counts_empty = detection_f1([empty])
    assert counts_empty == DetectionCounts() and math.isnan(f1_empty)


def _brute_force_counts(pred: np.ndarray, truth: np.ndarray, threshold: float = 0.3) -> DetectionCounts:
    """One mask per pair: the slow, obvious version of the matching, for comparison."""
    from scipy import ndimage

    s = np.ones((3, 3, 3), bool)
    pl, n_p = ndimage.label(pred, s)
    tl, n_t = ndimage.label(truth, s)
    cands = []
    for i in range(1, n_p + 1):
        for j in range(1, n_t + 1):
            a, b = pl == i, tl == j
            iou = (a & b).sum() / (a | b).sum()
            if iou > threshold:
                cands.append((-iou, i, j))
    used_p, used_t, tp = set(), set(), 0
    for _, i, j in sorted(cands):
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            tp += 1
    return DetectionCounts(tp, n_p - tp, n_t - tp)


def test_bincount_matching_agrees_with_brute_force_on_random_blobs():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    cube = np.ones((3, 3, 3), bool)
    total_tp = total_fp = 0
    for _ in range(5):
        truth = ndimage.binary_dilation(rng.random((20, 20, 20)) < 0.004, cube)
        # shifted by one voxel, 30 % of voxels dropped (IoU around 0.3-0.6), plus small false blobs
        pred = np.roll(truth, 1, axis=int(rng.integers(0, 3))) & (rng.random(truth.shape) > 0.3)
        pred |= ndimage.binary_dilation(rng.random(truth.shape) < 0.001)
        counts = match_components(pred, truth).counts
        assert counts == _brute_force_counts(pred, truth)
        total_tp, total_fp = total_tp + counts.tp, total_fp + counts.fp
    assert total_tp > 20 and total_fp > 5  # the data exercise both matches and misses


# ------------------------------------------------------------------------------------------ task 1, HD95, volume
def test_task1_score_weights():
    assert task1_score(0.8, 0.6, 0.4) == pytest.approx(0.65)
    assert math.isnan(task1_score(0.8, math.nan, 0.4))


def test_hd95_in_mm_follows_spacing_axis_order():
    truth = vol()
    truth[4:7, 4:7, 4:7] = 1
    shifted_z, shifted_x = vol(), vol()
    shifted_z[5:8, 4:7, 4:7] = 1  # one voxel along z (array axis 0)
    shifted_x[4:7, 4:7, 5:8] = 1  # one voxel along x (array axis 2)
    spacing_xyz = (0.5, 1.0, 2.5)
    assert hd95(shifted_z, truth, 1, spacing_xyz) == pytest.approx(2.5)
    assert hd95(shifted_x, truth, 1, spacing_xyz) == pytest.approx(0.5)
    assert hd95(shifted_x, truth, 1) == pytest.approx(1.0)
    assert hd95(truth, truth, 1, spacing_xyz) == 0.0
    assert math.isnan(hd95(vol(), truth, 1, spacing_xyz))
    assert math.isnan(hd95(vol(), vol(), 1))


def test_volume_ml():
    mask = vol((10, 10, 10))
    mask[:] = 2
    assert volume_ml(mask, 2, (1.0, 1.0, 1.0)) == pytest.approx(1.0)
    assert volume_ml(mask, 2, (2.0, 2.0, 2.0)) == pytest.approx(8.0)
    assert volume_ml(mask, 1, (2.0, 2.0, 2.0)) == 0.0


def test_case_metrics_row_and_scorer_summary():
    truth, pred = vol(), vol()
    truth[2:4, 2:4, 2:5] = 1  # GTVp 12 voxels
    pred[2:4, 2:4, 2:4] = 1  # GTVp 8 voxels, all inside
    truth[8:10, 8:10, 10:12] = 2  # GTVn 8 voxels
    pred[0:2, 8:10, 20:22] = 2  # a false positive, no overlap
    spacing = (1.0, 2.0, 3.0)  # 6 mm^3 per voxel
    row, found = case_metrics(pred, truth, spacing)
    assert row["dice_gtvp"] == pytest.approx(0.8)
    assert row["dice_gtvn"] == 0.0
    assert row["hd95_gtvp_mm"] == pytest.approx(1.0)  # one missing voxel layer along x (1 mm)
    assert row["vol_truth_gtvp_ml"] == pytest.approx(12 * 6 / 1000)
    assert row["vol_diff_gtvp_ml"] == pytest.approx(-4 * 6 / 1000)
    assert (row["n_pred_gtvn"], row["n_truth_gtvn"], row["tp"], row["fp"], row["fn"]) == (1, 1, 0, 1, 1)
    assert found.counts == DetectionCounts(0, 1, 1)

    scorer = SegmentationScorer()
    scorer.update(pred, truth, spacing)
    scorer.update(truth, truth, spacing)  # perfect case
    summary = scorer.summary()
    assert summary["gtvp_dsc"] == pytest.approx(0.9)
    assert summary["gtvn_agg_dsc"] == pytest.approx(2 * 8 / (8 + 8 + 8 + 8))
    assert summary["gtvn_agg_f1"] == pytest.approx(2 / (2 + 1 + 1))
    assert summary["task1_score"] == pytest.approx(0.45 + 0.125 + 0.125)
    assert (summary["gtvn_tp"], summary["gtvn_fp"], summary["gtvn_fn"], summary["n_cases"]) == (1, 1, 1, 2)
    assert evaluate_segmentations([(pred, truth, spacing), (truth, truth, spacing)]) == summary


# ------------------------------------------------------------------------------------------ C-index
# Hand table (times in days; risk higher = earlier relapse). Comparable pairs (i event, t_j > t_i or t_j == t_i
# with j censored): from 0: 1,2,3,4,5 (all concordant, 5); from 1: 2 (tied time, j censored; discordant), 3, 4, 5
# (concordant, 3); from 3: 4 (tied risk, 0.5), 5 (concordant). C = (5 + 3 + 1.5) / 11.
TIME = np.array([2.0, 4.0, 4.0, 6.0, 8.0, 10.0])
EVENT = np.array([1, 1, 0, 1, 0, 1])
RISK = np.array([5.0, 3.0, 4.0, 2.0, 2.0, 1.0])


def test_c_index_hand_table():
    assert concordance_index(TIME, EVENT, RISK) == pytest.approx(9.5 / 11)
    assert harrell(TIME, EVENT.astype(bool), RISK) == pytest.approx(9.5 / 11)
    # a 7th patient with an event at the same time as patient 3: the two are not comparable with each other;
    # pairs (0, 6) and (1, 6) concordant, (6, 4) and (6, 5) discordant -> (9.5 + 2) / 15
    t, e, r = np.append(TIME, 6.0), np.append(EVENT, 1), np.append(RISK, 0.0)
    assert concordance_index(t, e, r) == pytest.approx(11.5 / 15)
    assert concordance_index_censored(e.astype(bool), t, r)[0] == pytest.approx(11.5 / 15)


def test_c_index_sign_convention():
    time = np.arange(1.0, 11.0)
    event = np.ones(10, int)
    assert concordance_index(time, event, -time) == 1.0  # earlier relapse, higher risk
    assert concordance_index(time, event, time) == 0.0
    assert concordance_index(time, event, np.zeros(10)) == 0.5


def test_c_index_nan_risk_counts_as_tie():
    risk = RISK.copy()
    risk[3] = np.nan
    # pairs (0,3), (1,3), (3,4), (3,5) become ties: (4.5 + 2.5 + 1.0) / 11
    assert concordance_index(TIME, EVENT, risk) == pytest.approx(8.0 / 11)
    assert concordance_index(TIME, EVENT, np.full(6, np.nan)) == 0.5
    assert math.isnan(concordance_index(TIME, np.zeros(6), RISK))  # all censored: no comparable pair


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_c_index_agrees_with_scikit_survival(seed):
    rng = np.random.default_rng(seed)
    n = 80
    for time, risk in [
        (rng.integers(1, 12, n).astype(float), rng.integers(0, 5, n).astype(float)),  # many ties
        (rng.exponential(900.0, n), rng.normal(size=n)),
    ]:
        event = rng.random(n) < 0.3
        event[0] = True
        expected = concordance_index_censored(event, time, risk)[0]
        assert concordance_index(time, event.astype(int), risk) == pytest.approx(expected, abs=1e-12)
        assert harrell(time, event, risk) == pytest.approx(expected, abs=1e-12)


def test_c_index_input_errors():
    with pytest.raises(ValueError, match="lengths"):
        concordance_index(TIME, EVENT[:-1], RISK)
    with pytest.raises(ValueError, match="event"):
        concordance_index(TIME, EVENT * 2, RISK)


def test_c_index_bootstrap_ci():
    rng = np.random.default_rng(0)
    n = 60
    time = rng.exponential(800.0, n)
    event = rng.random(n) < 0.4
    risk = -time + rng.normal(0.0, 600.0, n)
    c, low, high = concordance_index_ci(time, event, risk, n_bootstrap=200, seed=1)
    assert c == pytest.approx(concordance_index(time, event, risk))
    assert low < c < high
    assert (c, low, high) == concordance_index_ci(time, event, risk, n_bootstrap=200, seed=1)
    # the matrix form of the bootstrap equals recomputing the C-index on each explicit resample
    draws = np.random.default_rng(1)
    explicit = [harrell(time[i], event[i], risk[i]) for i in (draws.integers(0, n, n) for _ in range(200))]
    assert (low, high) == pytest.approx(tuple(np.quantile(explicit, [0.025, 0.975])), abs=1e-12)
    assert concordance_index_ci(np.arange(1.0, 21.0), np.ones(20), -np.arange(20.0), n_bootstrap=50) == (
        1.0,
        1.0,
        1.0,
    )


def test_cropping_to_the_foreground_changes_no_metric():
    truth = np.zeros((30, 40, 50), np.uint8)
    truth[2:5, 30:33, 40:43] = 2
    truth[20:23, 5:8, 10:13] = 2
    truth[10:16, 12:20, 20:27] = 1
    pred = np.roll(truth, 1, axis=2)
    pred[20:22, 6, 10:13] = 1  # a GTVp voxel slab inside a node
    cropped_pred, cropped_truth = crop_to_foreground(pred, truth)
    assert (
        cropped_pred.shape == cropped_truth.shape == (23, 30, 36)
    )  # z 1..23, y 4..33, x 9..44 (1 voxel margin)
    spacing = (0.8, 1.2, 3.0)
    for corner_fp in (False, True):
        if corner_fp:
            pred[0, 0, 0] = 2  # the box now touches the image border
        row, _ = case_metrics(pred, truth, spacing)
        for label, name in ((1, "gtvp"), (2, "gtvn")):
            assert row[f"dice_{name}"] == pytest.approx(dice(pred, truth, label))
            assert row[f"hd95_{name}_mm"] == pytest.approx(hd95(pred, truth, label, spacing))
            assert row[f"vol_pred_{name}_ml"] == pytest.approx(volume_ml(pred, label, spacing))
            assert row[f"n_pred_{name}"] == match_components(pred == label, truth == label).n_pred
    empty_row, found = case_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), spacing)
    assert empty_row["dice_gtvp"] == 1.0 and found.counts == DetectionCounts()
    assert math.isnan(empty_row["hd95_gtvn_mm"])


def test_risks_closer_than_1e_8_are_ties():
    time, event = [1.0, 2.0], [1, 0]  # one comparable pair: patient 0 relapsed first
    assert concordance_index(time, event, [1.0 + 5e-9, 1.0]) == 0.5  # tie, both code paths
    assert concordance_index(time, event, [np.nan, 1.0]) == 0.5
    assert concordance_index(time, event, [1.0 + 1e-6, 1.0]) == 1.0
    assert harrell(np.array(time), np.array(event, bool), np.array([1.0 + 5e-9, 1.0])) == 0.5
