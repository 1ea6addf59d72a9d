"""Survival fusion network: shapes (demo and paper sizes), a training step, determinism, the standardiser."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from hmvnet.config import FusionConfig, from_dict, to_dict
from hmvnet.data.weights import count_parameters
from hmvnet.errors import WeightsError
from hmvnet.survival.fusion import FeatureStandardiser, FusionNet
from hmvnet.survival.losses import discretise, make_time_grid, total_loss

torch.set_num_threads(1)
N_CLINICAL = 23
STEPS = 8


def inputs(config, n=4, size=(32, 32, 32), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 2, *size, generator=g),
        torch.randn(n, N_CLINICAL, generator=g),
        torch.randn(n, config.radiomics_dim, generator=g),
    )


def test_demo_shapes_and_embed_matches_forward():
    torch.manual_seed(0)
    config = FusionConfig.demo()
    net = FusionNet(config, N_CLINICAL).eval()
    x = inputs(config)
    with torch.no_grad():
        out = net(*x)
        fused = net.embed(*x)
    assert out["fused"].shape == (4, config.fused_dim)
    assert out["deephit_logits"].shape == (4, config.n_bins + 1)
    assert out["risk"].shape == (4,)
    assert out["projection"].shape == (4, config.projection_dim)
    assert torch.equal(fused, out["fused"])
    assert ((out["risk"] >= 0) & (out["risk"] <= 1)).all()


def test_paper_config_builds_and_runs_one_forward_pass():
    torch.manual_seed(0)
    config = FusionConfig.paper()
    net = FusionNet(config, N_CLINICAL).eval()
    # 2592 = 512 (ResNet-18) + 32 (clinical) + 2048 (radiomics) enters the fusion MLP
    assert net.fusion_mlp[0].in_features == 2592
    assert isinstance(net.image_encoder, torch.nn.Module) and not isinstance(
        net.image_encoder, torch.nn.Sequential
    )
    assert 33e6 < count_parameters(net.image_encoder) < 34e6  # MONAI 3D ResNet-18, 2 input channels
    with torch.no_grad():
        out = net(*inputs(config, n=2))
    assert out["fused"].shape == (2, 256)
    assert out["deephit_logits"].shape == (2, config.n_bins + 1)
    assert torch.isfinite(out["risk"]).all()


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    torch.manual_seed(0)
    config = FusionConfig.demo()
    net = FusionNet(config, N_CLINICAL)
    x = inputs(config)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(*x)["risk"], net(*x)["risk"])
    net.train()
    with torch.no_grad():
        assert not torch.equal(net(*x)["fused"], net(*x)["fused"])


def test_construction_is_deterministic_under_manual_seed():
    config = FusionConfig.demo()
    torch.manual_seed(3)
    a = FusionNet(config, N_CLINICAL).state_dict()
    torch.manual_seed(3)
    b = FusionNet(config, N_CLINICAL).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_steps_reduce_the_loss_on_a_toy_batch():
    torch.manual_seed(0)
    config = FusionConfig.demo(radiomics_dim=16, n_bins=3)
    net = FusionNet(config, N_CLINICAL)
    n = 8
    times = np.array([100.0, 200, 300, 400, 500, 600, 700, 800])
    events = np.array([1, 1, 0, 1, 1, 1, 0, 1])
    bins = torch.as_tensor(discretise(times, make_time_grid(times, events, config.n_bins)))
    # the radiomics carry the answer (a noisy copy of the time), so the network can fit it quickly
    image, clinical, _ = inputs(config, n=n, size=(16, 16, 16))
    radiomics = torch.randn(n, 16, generator=torch.Generator().manual_seed(1))
    radiomics[:, 0] = torch.as_tensor((times - times.mean()) / times.std(), dtype=torch.float32)
    t, e = torch.as_tensor(times, dtype=torch.float32), torch.as_tensor(events)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def loss_value():
        out = net(image, clinical, radiomics)
        return total_loss(out["deephit_logits"], out["projection"], bins, t, e).total

    net.eval()
    with torch.no_grad():
        before = loss_value().item()
    net.train()
    for _ in range(STEPS):
        optimiser.zero_grad()
        loss = loss_value()
        loss.backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        optimiser.step()
    net.eval()
    with torch.no_grad():
        after = loss_value().item()
    assert np.isfinite(after) and after < before


def test_wrong_input_shapes_are_reported():
    config = FusionConfig.demo()
    net = FusionNet(config, N_CLINICAL).eval()
    image, clinical, radiomics = inputs(config, n=2, size=(16, 16, 16))
    with pytest.raises(ValueError, match="channel 0 = CT"):
        net(image[:, :1], clinical, radiomics)
    with pytest.raises(ValueError, match="clinical must be"):
        net(image, clinical[:, :5], radiomics)
    with pytest.raises(ValueError, match="radiomics must be"):
        net(image, clinical, radiomics[:, :5])


def test_config_round_trips_through_the_shared_config_helpers():
    config = FusionConfig.demo()
    assert from_dict(FusionConfig, json.loads(json.dumps(to_dict(config)))) == config


# ------------------------------------------------------------------------------------------------ standardiser
def test_standardiser_uses_training_statistics_and_imputes_nan():
    train = np.array([[1.0, 10.0, np.nan], [3.0, 10.0, np.nan], [5.0, 10.0, np.nan], [np.nan, 10.0, np.nan]])
    st = FeatureStandardiser(clip=None).fit(train)
    np.testing.assert_allclose(st.mean_, [3.0, 10.0, 0.0])
    np.testing.assert_allclose(st.std_, [2.0, 1.0, 1.0])  # ddof 1 on observed values; constant/empty -> 1
    z = st.transform(np.array([[7.0, 12.0, 4.0], [np.nan, np.inf, np.nan]]))
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, [[2.0, 2.0, 4.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(
        FeatureStandardiser(clip=1.5).fit(train).transform([[7.0, 12.0, 4.0]]), [[1.5] * 3]
    )


def test_standardiser_json_round_trip_and_errors():
    rng = np.random.default_rng(0)
    train = rng.normal(5, 2, size=(20, 6))
    train[3, 2] = np.nan
    st = FeatureStandardiser().fit(train)
    back = FeatureStandardiser.from_json(st.to_json())
    probe = rng.normal(5, 2, size=(4, 6))
    np.testing.assert_array_equal(back.transform(probe), st.transform(probe))
    with pytest.raises(ValueError, match="expected 6 features"):
        st.transform(probe[:, :5])
    with pytest.raises(NotFittedError):
        FeatureStandardiser().transform(probe)
    with pytest.raises(WeightsError):
        FeatureStandardiser.from_json('{"format": "x"}')
    with pytest.raises(WeightsError):
        FeatureStandardiser.from_json("not json")
