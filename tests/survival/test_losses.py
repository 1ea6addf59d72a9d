"""Survival losses: time grid, DeepHit terms (sign!), contrastive loss, risk direction, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hmvnet.survival.losses import (
    cumulative_incidence,
    deephit_loss,
    deephit_nll,
    deephit_ranking_loss,
    discretise,
    make_time_grid,
    risk_from_logits,
    survival_contrastive_loss,
    total_loss,
)

torch.set_num_threads(1)


def peaked_logits(bins, n_out, height=6.0):
    """Logits with most of the mass in ``bins[i]`` for row ``i``."""
    logits = torch.zeros(len(bins), n_out)
    logits[torch.arange(len(bins)), torch.as_tensor(bins)] = height
    return logits


# ------------------------------------------------------------------------------------------------ time grid
def test_time_grid_uses_event_time_quantiles_only():
    times = np.array([10, 20, 30, 40, 1000, 2000], dtype=float)
    events = np.array([1, 1, 1, 1, 0, 0])
    grid = make_time_grid(times, events, 4)
    # quantiles 1/4 .. 4/4 of the event times 10, 20, 30, 40 (linear interpolation); censored times ignored
    np.testing.assert_allclose(grid, [17.5, 25.0, 32.5, 40.0])


def test_discretise_bins_are_right_closed_and_last_bin_is_beyond_the_grid():
    grid = np.array([10.0, 20.0, 30.0])
    idx = discretise([0.0, 10.0, 10.5, 20.0, 29.9, 30.0, 31.0, 500.0], grid)
    np.testing.assert_array_equal(idx, [0, 0, 1, 1, 2, 2, 3, 3])
    assert idx.dtype == np.int64


def test_time_grid_rejects_too_few_event_times():
    with pytest.raises(ValueError, match="distinct event times"):
        make_time_grid([1, 2, 3, 4], [1, 1, 0, 0], 5)
    with pytest.raises(ValueError, match="events must be 0"):
        make_time_grid([1, 2], [1, 2], 1)


# ------------------------------------------------------------------------------------------------ DeepHit
def test_nll_known_values():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    # event in bin 2: -log pmf[2]
    assert deephit_nll(logits, torch.tensor([2]), torch.tensor([1])).item() == pytest.approx(
        -math.log(0.3), 1e-6
    )
    # censored in bin 2: relapse-free at the start of bin 2 -> -log(pmf[2] + pmf[3])
    assert deephit_nll(logits, torch.tensor([2]), torch.tensor([0])).item() == pytest.approx(
        -math.log(0.7), 1e-6
    )
    # censored in bin 0 carries no information
    assert deephit_nll(logits, torch.tensor([0]), torch.tensor([0])).item() == pytest.approx(0.0, abs=1e-6)


def test_ranking_loss_known_value():
    # two patients, 1 relapses in bin 0, 2 censored in bin 2: one comparable pair
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.125, 0.125], [0.25, 0.25, 0.25, 0.25]]))
    loss = deephit_ranking_loss(logits, torch.tensor([0, 2]), torch.tensor([1, 0]), sigma=0.1)
    assert loss.item() == pytest.approx(math.exp(-(0.5 - 0.25) / 0.1), rel=1e-5)


def _ordered_batch():
    """8 patients, relapse in bins 0..3 (or censored later); correct logits put mass at the true bin."""
    bins = torch.tensor([0, 1, 1, 2, 3, 3, 4, 4])
    events = torch.tensor([1, 1, 0, 1, 1, 0, 0, 1])
    n_out = 5
    right = peaked_logits(bins.tolist(), n_out, height=3.0)
    reversed_ = peaked_logits((n_out - 1 - bins).tolist(), n_out, height=3.0)
    return bins, events, right, reversed_


def test_perfect_ranking_beats_reversed_ranking_term_and_total():
    bins, events, right, reversed_ = _ordered_batch()
    rank_right = deephit_ranking_loss(right, bins, events)
    rank_reversed = deephit_ranking_loss(reversed_, bins, events)
    assert rank_right < rank_reversed
    assert deephit_loss(right, bins, events) < deephit_loss(reversed_, bins, events)
    # also for alpha = 0 (ranking only) and alpha = 1 (likelihood only)
    for alpha in (0.0, 1.0):
        assert deephit_loss(right, bins, events, alpha=alpha) < deephit_loss(
            reversed_, bins, events, alpha=alpha
        )


def test_ranking_loss_gradient_raises_risk_of_earlier_relapse():
    # identical predictions: the gradient step must make the early patient riskier than the late one
    bins, events = torch.tensor([0, 3]), torch.tensor([1, 1])
    logits = torch.zeros(2, 5, requires_grad=True)
    deephit_ranking_loss(logits, bins, events).backward()
    with torch.no_grad():
        stepped = logits - 0.5 * logits.grad
    risk = risk_from_logits(stepped)
    assert risk[0] > risk[1]


def test_ranking_loss_without_comparable_pairs_is_zero_with_grad():
    logits = torch.randn(3, 4, requires_grad=True)
    loss = deephit_ranking_loss(logits, torch.tensor([1, 2, 3]), torch.tensor([0, 0, 0]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_deephit_rejects_bad_targets():
    with pytest.raises(ValueError, match="bin indices"):
        deephit_loss(torch.zeros(2, 4), torch.tensor([0, 4]), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="one entry per row"):
        deephit_loss(torch.zeros(2, 4), torch.tensor([0]), torch.tensor([1, 1]))


# ------------------------------------------------------------------------------------------------ risk
def test_risk_rises_when_mass_moves_to_an_earlier_bin():
    pmf = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    earlier = torch.tensor([[0.1, 0.4, 0.3, 0.2]])  # 0.2 moved from bin 3 to bin 1
    r_late = risk_from_logits(torch.log(pmf))
    r_early = risk_from_logits(torch.log(earlier))
    assert r_early > r_late
    # known value: F over the 3 grid bins = 0.1, 0.3, 0.6 -> mean 1/3
    assert r_late.item() == pytest.approx((0.1 + 0.3 + 0.6) / 3, rel=1e-6)
    assert cumulative_incidence(torch.log(pmf))[0, -1].item() == pytest.approx(1.0, rel=1e-6)


def test_risk_is_monotone_in_the_event_bin():
    risks = risk_from_logits(peaked_logits([0, 1, 2, 3, 4], 5))
    assert torch.all(risks[:-1] > risks[1:])


# ------------------------------------------------------------------------------------------------ contrastive
def _time_embeddings(times, dim=8, seed=0):
    """Unit vectors whose angle grows with the survival time (similar times -> similar embeddings)."""
    angle = torch.as_tensor(times, dtype=torch.float32) / float(max(times)) * math.pi
    emb = torch.zeros(len(times), dim)
    emb[:, 0], emb[:, 1] = torch.cos(angle), torch.sin(angle)
    return emb + 0.01 * torch.randn(len(times), dim, generator=torch.Generator().manual_seed(seed))


def test_contrastive_prefers_embeddings_clustered_by_time():
    times = torch.tensor([100.0, 120, 400, 430, 800, 820, 1200, 1250, 300, 1500])
    events = torch.tensor([1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
    clustered = _time_embeddings(times.tolist())
    generator = torch.Generator().manual_seed(1)
    for margin in (None, 60.0):
        loss_clustered = survival_contrastive_loss(clustered, times, events, margin=margin)
        shuffled_losses = [
            survival_contrastive_loss(
                clustered[torch.randperm(10, generator=generator)], times, events, margin=margin
            )
            for _ in range(10)
        ]
        assert torch.isfinite(loss_clustered)
        assert all(loss_clustered < s for s in shuffled_losses)


def test_contrastive_without_events_is_zero_with_grad():
    emb = torch.randn(6, 4, requires_grad=True)
    loss = survival_contrastive_loss(emb, torch.arange(6.0), torch.zeros(6))
    assert loss.item() == 0.0
    loss.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()


def test_contrastive_gradients_are_finite_with_censoring_and_ties():
    emb = torch.randn(8, 4, requires_grad=True)
    times = torch.tensor([5.0, 5.0, 5.0, 9.0, 1.0, 2.0, 30.0, 30.0])
    events = torch.tensor([1, 1, 0, 1, 0, 0, 1, 0])
    loss = survival_contrastive_loss(emb, times, events)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all()


# ------------------------------------------------------------------------------------------------ total
def test_total_loss_is_deephit_plus_a_tenth_of_contrastive_and_deterministic():
    def run():
        torch.manual_seed(0)
        logits, emb = torch.randn(8, 5), torch.randn(8, 6)
        times = torch.tensor([3.0, 7, 1, 9, 4, 6, 2, 8])
        events = torch.tensor([1, 0, 1, 1, 1, 0, 1, 1])
        bins = torch.as_tensor(discretise(times.numpy(), make_time_grid(times.numpy(), events.numpy(), 4)))
        return total_loss(logits, emb, bins, times, events)

    parts = run()
    assert parts.total.item() == pytest.approx(
        parts.deephit.item() + 0.1 * parts.contrastive.item(), rel=1e-6
    )
    assert parts.contrastive.item() > 0
    again = run()
    assert torch.equal(parts.total, again.total)
