"""Independent second implementations, in the tests only: MONAI's ``DiceMetric`` for per-case Dice, a direct
re-statement of the organisers' aggregated Dice (per-case TP and volume sums in mm^3) and scikit-survival's
``concordance_index_censored`` for the C-index, compared with ours on random cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric
from sksurv.metrics import concordance_index_censored

from hmvnet import Label
from hmvnet.evaluation.metrics import SegmentationScorer, _harrell, concordance_index

torch.set_num_threads(1)


def random_case(rng: np.random.Generator, shape=(10, 12, 14)) -> tuple[np.ndarray, np.ndarray, tuple]:
    """A truth with a few random boxes of both labels and a prediction that perturbs it."""
    truth = np.zeros(shape, np.uint8)
    for label in (Label.GTVP, Label.GTVN, Label.GTVN):
        if rng.random() < 0.8:
            lo = rng.integers(0, np.array(shape) - 3)
            size = rng.integers(1, 5, size=3)
            truth[tuple(slice(a, a + s) for a, s in zip(lo, size))] = label
    pred = truth.copy()
    flip = rng.random(shape) < 0.05
    pred[flip] = rng.integers(0, 3, size=int(flip.sum()))
    pred = np.roll(pred, int(rng.integers(-1, 2)), axis=int(rng.integers(0, 3)))
    spacing = tuple(float(s) for s in rng.choice([0.5, 0.98, 1.0, 1.5, 2.0, 3.0], size=3))
    return pred.astype(np.uint8), truth, spacing


def one_hot(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([labels == k for k in (0, 1, 2)])[None].astype(np.float32))


def test_per_case_dice_agrees_with_monai():
    rng = np.random.default_rng(7)
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=False)
    scorer = SegmentationScorer()
    for _ in range(25):
        pred, truth, spacing = random_case(rng)
        row = scorer.update(pred, truth, spacing)
        monai = metric(one_hot(pred), one_hot(truth))[0].numpy()  # (GTVp, GTVn); both empty -> 1.0
        assert row["dice_gtvp"] == pytest.approx(float(monai[0]), abs=1e-6)
        assert row["dice_gtvn"] == pytest.approx(float(monai[1]), abs=1e-6)


def test_aggregated_dice_agrees_with_a_restatement_of_the_organisers_code():
    """The 2025 ``DiceAggScore`` keeps per case ``TP = DSC * vol_sum / 2`` and ``vol_sum = vol_gt + vol_pred`` in
    mm^3 (``voxel count * sx * sy * sz``) and returns ``2 * sum TP / sum vol_sum``; restated with MONAI's Dice."""
    rng = np.random.default_rng(11)
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=False)
    scorer = SegmentationScorer()
    tp_sum = vol_sum = 0.0
    for _ in range(25):
        pred, truth, spacing = random_case(rng)
        scorer.update(pred, truth, spacing)
        voxel = spacing[0] * spacing[1] * spacing[2]
        volume = (np.count_nonzero(pred == Label.GTVN) + np.count_nonzero(truth == Label.GTVN)) * voxel
        dsc = float(metric(one_hot(pred), one_hot(truth))[0, 1]) if volume else 0.0
        tp_sum += dsc * volume / 2
        vol_sum += volume
    assert scorer.summary()["gtvn_agg_dsc"] == pytest.approx(2 * tp_sum / vol_sum, rel=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_c_index_agrees_with_scikit_survival(seed):
    rng = np.random.default_rng(seed)
    n = 40
    time = rng.integers(1, 30, n).astype(float)  # integer days: tied times happen
    event = rng.random(n) < 0.6
    risk = np.round(rng.normal(size=n), 1)  # rounded: tied risks happen
    expected = concordance_index_censored(event, time, risk)[0]
    ours = concordance_index(time, event, risk)
    assert ours == pytest.approx(expected, abs=1e-12)
    assert _harrell(time, event, risk) == pytest.approx(expected, abs=1e-12)  # the path NaN risks take


def test_missing_risk_as_tie_agrees_with_scikit_survival_on_the_other_pairs():
    """A NaN risk is a tie in its pairs: C = (sksurv's concordant count over the pairs without it + 0.5 * its
    comparable pairs) / all comparable pairs, from sksurv's own counts on the complete data."""
    rng = np.random.default_rng(3)
    n = 30
    time = rng.integers(1, 30, n).astype(float)
    event = rng.random(n) < 0.6
    risk = rng.normal(size=n)
    risk[4] = np.nan
    # sksurv rejects NaN: count all comparable pairs with any finite stand-in, then the pairs without patient 4
    _, conc_all, disc_all, tied_all, _ = concordance_index_censored(event, time, np.nan_to_num(risk, nan=0.0))
    keep = np.arange(n) != 4
    _, conc, disc, tied, _ = concordance_index_censored(event[keep], time[keep], risk[keep])
    n_pairs_with_4 = (conc_all + disc_all + tied_all) - (conc + disc + tied)
    expected = (conc + 0.5 * tied + 0.5 * n_pairs_with_4) / (conc_all + disc_all + tied_all)
    assert concordance_index(time, event, risk) == pytest.approx(expected, abs=1e-12)
    assert _harrell(time, event, risk.astype(float)) == pytest.approx(expected, abs=1e-12)
