"""Losses of the survival fusion network (paper §3.6): DeepHit + 0.1 x survival contrastive loss.

Discrete time. A grid of ``n_bins`` increasing cut points ``grid[0] < ... < grid[n_bins - 1]`` (in the unit of the
survival times, days for HECKTOR RFS) defines ``n_bins + 1`` bins: bin ``k < n_bins`` holds times
``grid[k - 1] < t <= grid[k]`` (``grid[-1]`` read as minus infinity), and bin ``n_bins`` holds every time beyond
the last cut point ("event later than the grid"). The DeepHit head outputs ``n_bins + 1`` logits per patient; their
softmax is the probability mass function ``pmf[k] = P(T in bin k)`` and ``F(k) = sum_{m <= k} pmf[m]`` is the
cumulative incidence (probability of relapse by the end of bin ``k``).

Sign convention everywhere: a **risk** is higher for an earlier event. :func:`risk_from_logits` gives the expected
cumulative incidence over the grid, ``mean_{k < n_bins} F(k)`` in [0, 1].

Hand-written because no maintained library in our stack has DeepHit or ConSurv losses: pycox (the DeepHit
reference, Lee et al. 2018) is unmaintained and pins old pandas/numba, and torchsurv has only Cox/Weibull losses.
The DeepHit terms follow pycox's ``nll_pmf`` and ``rank_loss_deephit_single`` with the differences listed in
:func:`deephit_loss`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike

__all__ = [
    "LossParts",
    "cumulative_incidence",
    "deephit_loss",
    "deephit_nll",
    "deephit_ranking_loss",
    "discretise",
    "make_time_grid",
    "risk_from_logits",
    "survival_contrastive_loss",
    "total_loss",
]


# ------------------------------------------------------------------------------------------------ time grid
def _as_survival_arrays(times: ArrayLike, events: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    e = np.asarray(events).reshape(-1)
    if t.shape != e.shape:
        raise ValueError(f"times ({t.size}) and events ({e.size}) must have the same length")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("survival times must be finite and >= 0")
    if not np.all(np.isin(e, (0, 1))):
        raise ValueError(f"events must be 0 (censored) or 1 (relapse), found {sorted(set(e.tolist()))}")
    return t, e.astype(bool)


def make_time_grid(times: ArrayLike, events: ArrayLike, n_bins: int) -> np.ndarray:
    """Cut points of the discrete-time grid from the quantiles of the **event** times of the training set.

    Args:
        times: ``(n,)`` follow-up times (e.g. days), training patients only.
        events: ``(n,)`` 1 = relapse observed at ``times``, 0 = censored.
        n_bins: number of cut points; the DeepHit head then has ``n_bins + 1`` outputs.

    Returns:
        ``(n_bins,)`` float64 strictly increasing cut points: the ``k / n_bins`` quantiles (``k = 1..n_bins``,
        linear interpolation) of the event times, so each bin holds about the same number of training events and
        the last cut point is the largest event time (later censoring times fall in the extra bin ``n_bins``).
        Censored times are not used for the quantiles: they carry no information on where events happen.

    Raises:
        InputError: fewer distinct event times than needed for ``n_bins`` strictly increasing cut points.
    """
    t, e = _as_survival_arrays(times, events)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    event_times = t[e]
    if np.unique(event_times).size < n_bins:
        raise ValueError(
            f"{np.unique(event_times).size} distinct event times cannot make {n_bins} time bins: lower n_bins"
        )
    grid = np.quantile(event_times, np.arange(1, n_bins + 1) / n_bins)
    if np.any(np.diff(grid) <= 0):
        raise ValueError(
            f"event-time quantiles for {n_bins} bins are not strictly increasing (ties): lower n_bins"
        )
    return grid


def discretise(times: ArrayLike, grid: ArrayLike) -> np.ndarray:
    """Bin index of each time: ``k`` with ``grid[k - 1] < t <= grid[k]``; ``len(grid)`` for ``t > grid[-1]``.

    Args:
        times: ``(n,)`` times in the unit of ``grid``.
        grid: ``(n_bins,)`` strictly increasing cut points from :func:`make_time_grid`.

    Returns:
        ``(n,)`` int64 indices in ``[0, n_bins]``.
    """
    g = np.asarray(grid, dtype=np.float64).reshape(-1)
    if g.size == 0 or np.any(np.diff(g) <= 0):
        raise ValueError("time grid must be a non-empty, strictly increasing sequence of cut points")
    return np.searchsorted(g, np.asarray(times, dtype=np.float64).reshape(-1), side="left").astype(np.int64)


# ------------------------------------------------------------------------------------------------ DeepHit
def cumulative_incidence(logits: torch.Tensor) -> torch.Tensor:
    """``(N, n_bins + 1)`` logits -> ``(N, n_bins + 1)`` cumulative incidence ``F(k) = P(T <= end of bin k)``;
    the last column is 1."""
    return torch.softmax(logits, dim=1).cumsum(dim=1)


def risk_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Scalar risk per patient: expected cumulative incidence over the grid, ``mean_{k < n_bins} F(k)``.

    ``(N, n_bins + 1)`` logits -> ``(N,)`` risk in [0, 1]; higher = earlier relapse (moving probability mass to an
    earlier bin raises every ``F(k)`` from that bin on, so the risk rises). It equals
    ``1 - E[min(bin, n_bins)] / n_bins``, a decreasing function of the expected event bin.
    """
    return cumulative_incidence(logits)[:, :-1].mean(dim=1)


def _check_targets(
    logits: torch.Tensor, bin_idx: torch.Tensor, events: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(
            f"DeepHit logits must be (N, n_bins + 1) with n_bins >= 1, got {tuple(logits.shape)}"
        )
    n, n_out = logits.shape
    idx = torch.as_tensor(bin_idx, device=logits.device).reshape(-1).long()
    ev = torch.as_tensor(events, device=logits.device).reshape(-1).to(logits.dtype)
    if idx.numel() != n or ev.numel() != n:
        raise ValueError(
            f"bin_idx ({idx.numel()}) and events ({ev.numel()}) must have one entry per row ({n})"
        )
    if n and (int(idx.min()) < 0 or int(idx.max()) >= n_out):
        raise ValueError(
            f"bin indices must lie in [0, {n_out - 1}], got [{int(idx.min())}, {int(idx.max())}]"
        )
    return idx, ev


def deephit_nll(logits: torch.Tensor, bin_idx: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the discrete-time pmf.

    Event in bin ``k``: ``-log pmf[k]``. Censored in bin ``k``: ``-log P(T > end of bin k - 1) =
    -log sum_{m >= k} pmf[m]`` (the patient is known to be relapse-free at the start of its censoring bin, not
    necessarily at its end; pycox instead moves censoring times to the previous cut point in its label
    transform). Computed with log-sum-exp on the logits for stability.
    """
    idx, ev = _check_targets(logits, bin_idx, events)
    log_pmf = torch.log_softmax(logits, dim=1)
    log_event = log_pmf.gather(1, idx[:, None]).squeeze(1)
    columns = torch.arange(logits.shape[1], device=logits.device)
    at_or_after = columns[None, :] >= idx[:, None]
    log_survival = torch.logsumexp(log_pmf.masked_fill(~at_or_after, float("-inf")), dim=1)
    return -(ev * log_event + (1.0 - ev) * log_survival).mean()


def deephit_ranking_loss(
    logits: torch.Tensor, bin_idx: torch.Tensor, events: torch.Tensor, sigma: float = 0.1
) -> torch.Tensor:
    """DeepHit ranking term: mean over comparable pairs of ``exp(-(F_i(k_i) - F_j(k_i)) / sigma)``.

    A pair ``(i, j)`` is comparable when ``i`` relapsed in bin ``k_i`` and ``j`` is known to be relapse-free
    longer: ``k_j > k_i``, or ``k_j == k_i`` and ``j`` censored (pycox's convention). The loss is small when the
    patient who relapsed first has the larger cumulative incidence at its own event time. Unlike pycox, which
    divides the sum by ``N**2``, this averages over the comparable pairs, so its scale does not depend on the
    censoring rate. With no comparable pair it returns 0 (still attached to the graph).
    """
    idx, ev = _check_targets(logits, bin_idx, events)
    cif = cumulative_incidence(logits)
    # cif_at[i, j] = F_j(k_i): every patient's cumulative incidence at patient i's bin.
    cif_at = cif[:, idx].T
    own = cif_at.diagonal()
    diff = own[:, None] - cif_at
    comparable = (ev[:, None] > 0) & (
        (idx[:, None] < idx[None, :]) | ((idx[:, None] == idx[None, :]) & (ev[None, :] == 0))
    )
    if not bool(comparable.any()):
        return logits.sum() * 0.0
    return torch.exp(-diff / sigma)[comparable].mean()


def deephit_loss(
    logits: torch.Tensor,
    bin_idx: torch.Tensor,
    events: torch.Tensor,
    alpha: float = 0.2,
    sigma: float = 0.1,
) -> torch.Tensor:
    """DeepHit loss (single risk): ``alpha * NLL + (1 - alpha) * ranking`` (pycox defaults alpha 0.2, sigma 0.1).

    Args:
        logits: ``(N, n_bins + 1)`` head outputs.
        bin_idx: ``(N,)`` bin of each patient's time (:func:`discretise`).
        events: ``(N,)`` 1 = relapse, 0 = censored.
        alpha: weight of the likelihood term; ``1 - alpha`` weighs the ranking term.
        sigma: temperature of the ranking term.

    Returns:
        Scalar loss; a correctly ordered prediction (earlier relapse, higher cumulative incidence) scores lower than
        the reversed one.
    """
    nll = deephit_nll(logits, bin_idx, events)
    rank = deephit_ranking_loss(logits, bin_idx, events, sigma)
    return alpha * nll + (1.0 - alpha) * rank


# ------------------------------------------------------------------------------------------------ contrastive
def survival_contrastive_loss(
    embeddings: torch.Tensor,
    times: torch.Tensor,
    events: torch.Tensor,
    temperature: float = 0.1,
    margin: float | None = None,
    k_nearest: int = 1,
) -> torch.Tensor:
    """ConSurv-style survival contrastive loss (InfoNCE with time-weighted negatives).

    Embeddings are L2-normalised; ``s_ij = <z_i, z_j> / temperature``. Anchors are patients with a relapse.

    * Positives of anchor ``i``: other relapsed patients with ``|t_j - t_i| <= m_i``, where ``m_i = margin`` or,
      with ``margin=None``, the time distance to the ``k_nearest``-th nearest relapsed patient in the batch.
    * Negatives: relapsed patients with ``|t_j - t_i| > m_i``, and censored patients with ``t_j > t_i + m_i``
      (known to be relapse-free well after the anchor). Censored patients whose follow-up ends before that are
      left out: their relapse time is unknown and could be close to the anchor's.
    * Each negative is weighted by ``w_ij = 1 - exp(-|t_j - t_i| / m_i)``: outcomes far apart push harder.

    Per anchor, ``-mean_{p in P_i} log(exp(s_ip) / (sum_{p' in P_i} exp(s_ip') + sum_{n in N_i} w_in exp(s_in)))``
    (supervised-contrastive form); averaged over anchors with at least one positive and one negative.

    Args:
        embeddings: ``(N, D)``, e.g. the projection head output.
        times: ``(N,)`` follow-up times. events: ``(N,)`` 1 = relapse, 0 = censored.
        temperature: softmax temperature. margin: positive window in time units, or ``None`` for nearest-k.
        k_nearest: with ``margin=None``, how many nearest relapsed patients (ties included) are positives.

    Returns:
        Scalar loss; 0 attached to the graph (finite gradient, no NaN) when the batch has no usable anchor.
    """
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got {tuple(embeddings.shape)}")
    n = embeddings.shape[0]
    t = torch.as_tensor(times, device=embeddings.device).reshape(-1).to(embeddings.dtype)
    ev = torch.as_tensor(events, device=embeddings.device).reshape(-1).bool()
    if t.numel() != n or ev.numel() != n:
        raise ValueError(f"times ({t.numel()}) and events ({ev.numel()}) must have one entry per row ({n})")
    zero = embeddings.sum() * 0.0
    if n < 3 or int(ev.sum()) < 2:
        return zero

    z = torch.nn.functional.normalize(embeddings, dim=1)
    sim = z @ z.T / temperature
    dt = (t[None, :] - t[:, None]).abs()  # dt[i, j] = |t_j - t_i|
    eye = torch.eye(n, dtype=torch.bool, device=embeddings.device)
    other_event = ev[None, :] & ~eye

    if margin is None:
        dist = dt.masked_fill(~other_event, float("inf"))
        k = min(k_nearest, int(ev.sum()) - 1)
        m = dist.sort(dim=1).values[:, k - 1]
    else:
        m = torch.full((n,), float(margin), dtype=t.dtype, device=t.device)
    m = m.clamp_min(torch.finfo(t.dtype).eps)[:, None].detach()

    positive = other_event & (dt <= m)
    later_censored = ~ev[None, :] & ((t[None, :] - t[:, None]) > m)
    negative = (other_event & (dt > m)) | later_censored
    weight = torch.where(negative, 1.0 - torch.exp(-dt / m), torch.zeros_like(dt))
    anchors = ev & positive.any(dim=1) & negative.any(dim=1)
    if not bool(anchors.any()):
        return zero

    # Only anchor rows enter the computation: a row without members would give logsumexp(-inf) and NaN gradients.
    sim, positive, weight = sim[anchors], positive[anchors], weight[anchors]
    # log of the weighted denominator via log-sum-exp with log(w); log 0 = -inf drops the non-members.
    log_w = torch.log(torch.where(positive, torch.ones_like(weight), weight))
    log_denominator = torch.logsumexp(sim + log_w, dim=1, keepdim=True)
    log_prob = (sim - log_denominator).masked_fill(~positive, 0.0)
    return (-log_prob.sum(dim=1) / positive.sum(dim=1)).mean()


# ------------------------------------------------------------------------------------------------ total
class LossParts(NamedTuple):
    """The training objective and its two parts (scalars)."""

    total: torch.Tensor
    deephit: torch.Tensor
    contrastive: torch.Tensor


def total_loss(
    logits: torch.Tensor,
    embeddings: torch.Tensor,
    bin_idx: torch.Tensor,
    times: torch.Tensor,
    events: torch.Tensor,
    contrastive_weight: float = 0.1,
    alpha: float = 0.2,
    sigma: float = 0.1,
    temperature: float = 0.1,
    margin: float | None = None,
) -> LossParts:
    """Paper eq. (9): ``L = L_DeepHit + contrastive_weight * L_contrastive`` (weight 0.1 in the paper).

    ``logits`` ``(N, n_bins + 1)`` from the DeepHit head; ``embeddings`` ``(N, D)`` for the contrastive term
    (the projection head output); ``bin_idx`` from :func:`discretise`; ``times`` in the grid's unit.
    """
    dh = deephit_loss(logits, bin_idx, events, alpha=alpha, sigma=sigma)
    con = survival_contrastive_loss(embeddings, times, events, temperature=temperature, margin=margin)
    return LossParts(dh + contrastive_weight * con, dh, con)
